//! Random-weight models of any supported architecture and size, for tests and for throughput
//! work where no weights exist (`--model random:llama-8b`, `random:tiny-gemma3:7`, or
//! `random:path/to/config.json`): a Hugging Face `config.json` (a preset's or the user's),
//! seeded normal weights, and a byte-level tokenizer with ChatML markup padded to the
//! vocabulary. Speed does not depend on weight values, so these run exactly the code real
//! models run.

use crate::error::{EngineError, Result};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// What `random:` names.
#[derive(Debug, Clone, PartialEq)]
pub struct RandomSpec {
    /// The preset's name or the config file's path.
    pub source: String,
    /// A Hugging Face `config.json`.
    pub config: Value,
    pub seed: u64,
}

pub const PREFIX: &str = "random:";

/// Shapes of real models (their `config.json` fields) and tiny ones for tests.
pub fn presets() -> Vec<(&'static str, Value)> {
    let llama = |hidden: usize, layers: usize, heads: usize, kv: usize, ffn: usize, vocab: usize, ctx: usize, theta: f64| {
        json!({"model_type": "llama", "hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv,
            "intermediate_size": ffn, "vocab_size": vocab, "max_position_embeddings": ctx, "rms_norm_eps": 1e-5, "rope_theta": theta})
    };
    let with = |mut base: Value, extra: Value| {
        for (k, v) in extra.as_object().expect("an object") {
            base[k] = v.clone();
        }
        base
    };
    vec![
        ("llama-8b", llama(4096, 32, 32, 8, 14336, 128256, 8192, 500000.0)),
        (
            "llama-1b",
            with(
                llama(2048, 16, 32, 8, 8192, 128256, 131072, 500000.0),
                json!({"head_dim": 64,
            "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}),
            ),
        ),
        ("mistral-7b", with(llama(4096, 32, 32, 8, 14336, 32000, 32768, 10000.0), json!({"model_type": "mistral", "sliding_window": 4096}))),
        ("smollm2-135m", llama(576, 30, 9, 3, 1536, 49152, 8192, 100000.0)),
        ("qwen2.5-1.5b", with(llama(1536, 28, 12, 2, 8960, 151936, 32768, 1e6), json!({"model_type": "qwen2", "rms_norm_eps": 1e-6}))),
        ("qwen3-0.6b", with(llama(1024, 28, 16, 8, 3072, 151936, 40960, 1e6), json!({"model_type": "qwen3", "head_dim": 128, "rms_norm_eps": 1e-6}))),
        ("gemma3-270m", gemma3(640, 18, 4, 1, 256, 2048, 262144, 32768, 512)),
        ("tiny-llama", llama(256, 2, 4, 2, 512, 1024, 4096, 10000.0)),
        ("tiny-mistral", with(llama(256, 2, 4, 2, 512, 1024, 4096, 10000.0), json!({"model_type": "mistral", "sliding_window": 48}))),
        ("tiny-qwen2", with(llama(256, 2, 4, 2, 512, 1024, 4096, 1e6), json!({"model_type": "qwen2"}))),
        ("tiny-qwen3", with(llama(192, 2, 4, 2, 512, 1024, 4096, 1e6), json!({"model_type": "qwen3", "head_dim": 64}))),
        ("tiny-gemma3", gemma3(256, 4, 2, 1, 256, 512, 1024, 4096, 40)),
    ]
}

#[allow(clippy::too_many_arguments)]
fn gemma3(hidden: usize, layers: usize, heads: usize, kv: usize, head_dim: usize, ffn: usize, vocab: usize, ctx: usize, window: usize) -> Value {
    json!({"model_type": "gemma3_text", "hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv,
        "head_dim": head_dim, "intermediate_size": ffn, "vocab_size": vocab, "max_position_embeddings": ctx, "rms_norm_eps": 1e-6,
        "rope_theta": 1e6, "rope_local_base_freq": 10000.0, "sliding_window": window, "sliding_window_pattern": 3, "query_pre_attn_scalar": head_dim,
        "hidden_activation": "gelu_pytorch_tanh"})
}

/// Parses `random:<preset or config.json>[:<seed>]`; `None` when `spec` is not a random model.
pub fn parse(spec: &str) -> Result<Option<RandomSpec>> {
    let Some(rest) = spec.strip_prefix(PREFIX) else { return Ok(None) };
    let (source, seed) = match rest.rsplit_once(':') {
        Some((s, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => (s, n.parse().map_err(|_| bad(spec, format!("seed '{n}' is too large")))?),
        _ => (rest, 0),
    };
    let config = match presets().into_iter().find(|(name, _)| *name == source) {
        Some((_, config)) => config,
        None if source.ends_with(".json") => {
            let path = PathBuf::from(source);
            let text = std::fs::read_to_string(&path).map_err(|e| EngineError::Io { path: path.clone(), source: e })?;
            serde_json::from_str(&text).map_err(|e| EngineError::InvalidModel { path, reason: e.to_string() })?
        }
        None => {
            let names: Vec<&str> = presets().iter().map(|(n, _)| *n).collect();
            return Err(bad(spec, format!("unknown preset '{source}' (presets: {}; or a config.json path)", names.join(", "))));
        }
    };
    Ok(Some(RandomSpec { source: source.to_string(), config, seed }))
}

fn bad(spec: &str, reason: String) -> EngineError {
    EngineError::UnknownModel { name: spec.to_string(), looked: reason }
}

impl RandomSpec {
    /// Where errors say the model came from.
    pub fn origin(&self) -> PathBuf {
        Path::new(PREFIX.trim_end_matches(':')).join(&self.source)
    }
}

/// Tokens every synthetic vocabulary has after the 256 bytes: end of text and ChatML markup.
pub const SPECIAL_TOKENS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// A byte-level tokenizer over `vocab_size` ids: the 256 bytes, `SPECIAL_TOKENS`, then filler
/// tokens `<rN>` that text never encodes to but a random model may sample (they decode to
/// their name).
pub fn synthetic_tokenizer(vocab_size: usize) -> Result<tokenizers::Tokenizer> {
    use tokenizers::models::bpe::BPE;
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    let fail = |reason: String| EngineError::Tokenizer { model: "random".into(), reason };
    if vocab_size < 256 + SPECIAL_TOKENS.len() {
        return Err(fail(format!("a random model needs a vocabulary of at least {} tokens, got {vocab_size}", 256 + SPECIAL_TOKENS.len())));
    }
    let mut vocab: Vec<String> = ByteLevel::alphabet().into_iter().map(|c| c.to_string()).collect();
    vocab.sort();
    vocab.extend(SPECIAL_TOKENS.iter().map(|s| s.to_string()));
    vocab.extend((vocab.len()..vocab_size).map(|i| format!("<r{i}>")));
    let map: tokenizers::models::bpe::Vocab = vocab.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
    let bpe = BPE::builder().vocab_and_merges(map, Vec::new()).build().map_err(|e| fail(e.to_string()))?;
    let mut tok = tokenizers::Tokenizer::new(bpe);
    tok.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    tok.with_decoder(Some(tokenizers::decoders::byte_level::ByteLevel::default()));
    tok.add_special_tokens(SPECIAL_TOKENS.map(|s| tokenizers::AddedToken::from(s, true).normalized(false))).map_err(|e| fail(e.to_string()))?;
    Ok(tok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_name_presets_files_and_seeds() {
        let s = parse("random:tiny-llama:7").unwrap().unwrap();
        assert_eq!((s.source.as_str(), s.seed), ("tiny-llama", 7));
        assert_eq!(parse("random:llama-8b").unwrap().unwrap().config["hidden_size"], 4096);
        assert!(parse("smollm2").unwrap().is_none());
        let err = parse("random:nope").unwrap_err().to_string();
        assert!(err.contains("unknown preset 'nope'") && err.contains("tiny-gemma3"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        std::fs::write(&path, presets()[0].1.to_string()).unwrap();
        let s = parse(&format!("random:{}:3", path.display())).unwrap().unwrap();
        assert_eq!((s.config["num_hidden_layers"].as_u64(), s.seed), (Some(32), 3));
    }

    #[test]
    fn the_synthetic_tokenizer_round_trips_text_and_knows_its_markup() {
        let tok = synthetic_tokenizer(600).unwrap();
        let text = "Héllo <|im_start|>user\nhi<|im_end|>";
        let ids = tok.encode(text, false).unwrap().get_ids().to_vec();
        assert!(ids.iter().all(|&i| i < 600));
        assert_eq!(tok.decode(&ids, false).unwrap(), text);
        assert_eq!(tok.token_to_id("<|im_end|>"), Some(258));
        assert_eq!(tok.decode(&[599], false).unwrap(), "<r599>");
        assert!(synthetic_tokenizer(100).is_err());
    }
}
