//! Every architecture against candle-transformers' implementation of it, on the same random
//! weights: a small model is built by candle-transformers (which names and shapes every tensor
//! its own way, as Hugging Face checkpoints do), its weights are randomised and saved as a
//! checkpoint folder, and our engine loads that folder. The logits of a whole prompt, and of
//! every position when the same prompt is decoded one token at a time, must agree within 1e-4
//! relative (max |ours - theirs| / max |theirs|).
//!
//! Sliding windows: candle-transformers' masks let a row see `window + 1` keys where Hugging
//! Face and llama.cpp see `window` (we follow them), so for a whole prompt candle's model is
//! built with one less. Its Mistral decodes without the window, so Mistral's decoding is
//! compared within it; its Gemma 3 decodes through a rotating cache of exactly `window` keys
//! (compared far past the window), but cannot take a prompt of several tokens in one pass
//! (candle 0.11 writes a non-contiguous value tensor into its cache), so Gemma 3 is compared
//! position by position only. Our own whole-prompt logits must equal our decoded ones for
//! every architecture.

use assay_engine::model::random::synthetic_tokenizer;
use assay_engine::{LanguageModel, MatmulPolicy, ModelFiles};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use candle_transformers::models as ct;
use serde_json::{json, Value};

const TOLERANCE: f32 = 1e-4;

/// Their model, fed from position `offset`: logits of the last input position.
trait Theirs {
    fn last_logits(&mut self, input: &[u32], offset: usize) -> Vec<f32>;
}

fn input(ids: &[u32]) -> Tensor {
    Tensor::new(ids, &Device::Cpu).unwrap().unsqueeze(0).unwrap()
}

fn flat(t: Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

struct Llama(ct::llama::Llama, ct::llama::Cache);
impl Theirs for Llama {
    fn last_logits(&mut self, ids: &[u32], offset: usize) -> Vec<f32> {
        flat(self.0.forward(&input(ids), offset, &mut self.1).unwrap())
    }
}

macro_rules! theirs_with_offset {
    ($name:ident, $model:ty) => {
        struct $name($model);
        impl Theirs for $name {
            fn last_logits(&mut self, ids: &[u32], offset: usize) -> Vec<f32> {
                flat(self.0.forward(&input(ids), offset).unwrap())
            }
        }
    };
}
theirs_with_offset!(Mistral, ct::mistral::Model);
theirs_with_offset!(Qwen2, ct::qwen2::ModelForCausalLM);
theirs_with_offset!(Qwen3, ct::qwen3::ModelForCausalLM);
theirs_with_offset!(Gemma3, ct::gemma3::Model);

/// Randomises every weight candle-transformers created (norms near 1, the rest small), saves
/// them with `config` as a checkpoint folder, and loads it with our engine (exact f32 paths).
fn ours(varmap: &VarMap, config: &Value, dir: &std::path::Path) -> LanguageModel {
    for (name, var) in varmap.data().lock().unwrap().iter() {
        let noise = Tensor::randn(0f32, 1.0, var.shape(), &Device::Cpu).unwrap();
        let value = if name.contains("norm") { ((noise * 0.1).unwrap() + 1.0).unwrap() } else { (noise * 0.05).unwrap() };
        var.set(&value).unwrap();
    }
    varmap.save(dir.join("model.safetensors")).unwrap();
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let vocab = config["vocab_size"].as_u64().unwrap() as usize;
    synthetic_tokenizer(vocab).unwrap().save(dir.join("tokenizer.json"), false).unwrap();
    let exact = MatmulPolicy::dense_f32(&Device::Cpu);
    LanguageModel::load_with_policy("test", &ModelFiles::Checkpoint(dir.to_path_buf()), &Device::Cpu, exact).unwrap()
}

fn relative(ours: &[f32], theirs: &[f32]) -> f32 {
    assert_eq!(ours.len(), theirs.len());
    let diff = ours.iter().zip(theirs).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    diff / theirs.iter().map(|x| x.abs()).fold(0f32, f32::max)
}

/// A prompt of `n` ids spread over the vocabulary.
fn prompt(n: usize, vocab: usize) -> Vec<u32> {
    (0..n).map(|i| ((i * 7919 + 13) % vocab) as u32).collect()
}

/// Whole-prompt logits (`prefill_len` tokens, when `theirs` takes a prompt) and, with a fresh
/// model of theirs, per-position logits when decoding `decode_len` tokens one at a time.
fn compare(name: &str, lm: &LanguageModel, theirs: Option<&mut dyn Theirs>, fresh: &mut dyn Theirs, prefill_len: usize, decode_len: usize) {
    let vocab = lm.model.config().vocab_size;
    let mut worst = 0f32;
    let ids = prompt(prefill_len, vocab);
    let whole = lm.logits_along(&ids, ids.len()).unwrap();
    let decoded = lm.logits_along(&ids, 1).unwrap();
    for (pos, (a, b)) in whole.iter().zip(&decoded).enumerate() {
        let r = relative(a, b);
        assert!(r <= TOLERANCE, "{name}: our prompt and our decoding differ at {pos}: {r:.2e}");
    }
    if let Some(theirs) = theirs {
        let r = relative(whole.last().unwrap(), &theirs.last_logits(&ids, 0));
        worst = r;
        assert!(r <= TOLERANCE, "{name}: prompt of {prefill_len}: relative difference {r:.2e}");
    }
    let ids = prompt(decode_len, vocab);
    let ours = lm.logits_along(&ids, 1).unwrap();
    for (pos, row) in ours.iter().enumerate() {
        let r = relative(row, &fresh.last_logits(&ids[pos..pos + 1], pos));
        worst = worst.max(r);
        assert!(r <= TOLERANCE, "{name}: decode position {pos}: relative difference {r:.2e}");
    }
    println!("{name}: max relative logit difference {worst:.2e}");
}

fn base(model_type: &str, head_dim: usize) -> Value {
    json!({"model_type": model_type, "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 3, "num_attention_heads": 4,
        "num_key_value_heads": 2, "head_dim": head_dim, "vocab_size": 512, "max_position_embeddings": 256, "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0, "tie_word_embeddings": false, "hidden_act": "silu"})
}

fn varbuilder(varmap: &VarMap) -> VarBuilder<'_> {
    VarBuilder::from_varmap(varmap, DType::F32, &Device::Cpu)
}

#[test]
fn llama_with_llama3_rope_scaling_equals_candle_transformers() {
    let mut config = base("llama", 32);
    config["rope_scaling"] = json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 64});
    config["rope_theta"] = json!(500000.0);
    let theirs_config: ct::llama::LlamaConfig = serde_json::from_value(config.clone()).unwrap();
    let theirs_config = theirs_config.into_config(false);
    let varmap = VarMap::new();
    let model = ct::llama::Llama::load(varbuilder(&varmap), &theirs_config).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lm = ours(&varmap, &config, dir.path());
    let cache = || ct::llama::Cache::new(true, DType::F32, &theirs_config, &Device::Cpu).unwrap();
    compare("llama", &lm, Some(&mut Llama(model.clone(), cache())), &mut Llama(model, cache()), 70, 40);
}

#[test]
fn mistral_with_a_sliding_window_equals_candle_transformers() {
    let window = 24;
    let mut config = base("mistral", 32);
    config["sliding_window"] = json!(window);
    let mut theirs_config: ct::mistral::Config = serde_json::from_value(config.clone()).unwrap();
    theirs_config.sliding_window = Some(window - 1);
    let varmap = VarMap::new();
    let build = || ct::mistral::Model::new(&theirs_config, varbuilder(&varmap)).unwrap();
    let model = build();
    let dir = tempfile::tempdir().unwrap();
    let lm = ours(&varmap, &config, dir.path());
    // 70 tokens: rows far past the window see only its last 24 keys.
    compare("mistral", &lm, Some(&mut Mistral(model)), &mut Mistral(build()), 70, window);
}

#[test]
fn qwen2_equals_candle_transformers() {
    let mut config = base("qwen2", 32);
    for (k, v) in [("sliding_window", json!(4096)), ("max_window_layers", json!(3)), ("use_sliding_window", json!(false))] {
        config[k] = v;
    }
    let theirs_config: ct::qwen2::Config = serde_json::from_value(config.clone()).unwrap();
    let varmap = VarMap::new();
    let build = || ct::qwen2::ModelForCausalLM::new(&theirs_config, varbuilder(&varmap)).unwrap();
    let model = build();
    let dir = tempfile::tempdir().unwrap();
    let lm = ours(&varmap, &config, dir.path());
    compare("qwen2", &lm, Some(&mut Qwen2(model)), &mut Qwen2(build()), 70, 40);
}

#[test]
fn qwen3_equals_candle_transformers() {
    let mut config = base("qwen3", 64);
    for (k, v) in [("sliding_window", Value::Null), ("max_window_layers", json!(3)), ("use_sliding_window", json!(false)), ("attention_bias", json!(false))] {
        config[k] = v;
    }
    let theirs_config: ct::qwen3::Config = serde_json::from_value(config.clone()).unwrap();
    let varmap = VarMap::new();
    let build = || ct::qwen3::ModelForCausalLM::new(&theirs_config, varbuilder(&varmap)).unwrap();
    let model = build();
    let dir = tempfile::tempdir().unwrap();
    let lm = ours(&varmap, &config, dir.path());
    compare("qwen3", &lm, Some(&mut Qwen3(model)), &mut Qwen3(build()), 70, 40);
}

#[test]
fn gemma3_equals_candle_transformers() {
    let window = 20;
    let mut config = base("gemma3_text", 64);
    for (k, v) in [
        ("hidden_activation", json!("gelu_pytorch_tanh")),
        ("attention_bias", json!(false)),
        ("rope_theta", json!(1000000.0)),
        ("rope_local_base_freq", json!(10000.0)),
        ("final_logit_softcapping", Value::Null),
        ("attn_logit_softcapping", Value::Null),
        ("query_pre_attn_scalar", json!(64)),
        ("sliding_window", json!(window)),
        ("sliding_window_pattern", json!(3)),
    ] {
        config[k] = v;
    }
    let theirs_config: ct::gemma3::Config = serde_json::from_value(config.clone()).unwrap();
    let varmap = VarMap::new();
    let model = ct::gemma3::Model::new(false, &theirs_config, varbuilder(&varmap)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lm = ours(&varmap, &config, dir.path());
    // 60 positions: the windowed layers (two of three) see only the last 20 keys.
    compare("gemma3", &lm, None, &mut Gemma3(model), 60, 60);
}
