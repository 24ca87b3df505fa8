//! A Hugging Face checkpoint folder (config.json + safetensors + tokenizer.json) loads with the
//! HF weight names and half-rotation RoPE and computes the same function as the GGUF file it
//! was exported from. The export undoes llama.cpp's q/k row permutation, so this also checks
//! that the two RoPE conventions match their weight layouts.

mod common;

use assay_engine::gguf::GgufFile;
use assay_engine::{LanguageModel, MatmulPolicy, ModelFiles, TextTokenizer};
use candle_core::{Device, Tensor};
use std::collections::HashMap;

/// GGUF stores q/k rows of each head as (pairs, 2) for interleaved rotation; HF as (2, half).
fn unpermute(w: &Tensor, heads: usize) -> Tensor {
    let (out, inp) = w.dims2().unwrap();
    w.reshape((heads, out / heads / 2, 2, inp)).unwrap().transpose(1, 2).unwrap().contiguous().unwrap().reshape((out, inp)).unwrap()
}

#[test]
fn exported_checkpoint_matches_the_gguf_model() {
    let dev = Device::Cpu;
    let gguf_path = common::smollm2_path();
    let file = GgufFile::open(&gguf_path).unwrap();
    let cfg = assay_engine::language_model::model_config(&ModelFiles::Gguf(gguf_path.clone())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut tensors = HashMap::new();
    let get = |name: &str| file.tensor(name, &dev).unwrap().dequantize(&dev).unwrap();
    tensors.insert("model.embed_tokens.weight".to_string(), get("token_embd.weight"));
    tensors.insert("model.norm.weight".to_string(), get("output_norm.weight"));
    for i in 0..cfg.n_layers {
        let hf = |s: &str| format!("model.layers.{i}.{s}");
        let gg = |s: &str| format!("blk.{i}.{s}.weight");
        tensors.insert(hf("self_attn.q_proj.weight"), unpermute(&get(&gg("attn_q")), cfg.n_heads));
        tensors.insert(hf("self_attn.k_proj.weight"), unpermute(&get(&gg("attn_k")), cfg.n_kv_heads));
        for (h, g) in [
            ("self_attn.v_proj.weight", "attn_v"),
            ("self_attn.o_proj.weight", "attn_output"),
            ("mlp.gate_proj.weight", "ffn_gate"),
            ("mlp.up_proj.weight", "ffn_up"),
            ("mlp.down_proj.weight", "ffn_down"),
            ("input_layernorm.weight", "attn_norm"),
            ("post_attention_layernorm.weight", "ffn_norm"),
        ] {
            tensors.insert(hf(h), get(&gg(g)));
        }
    }
    candle_core::safetensors::save(&tensors, dir.path().join("model.safetensors")).unwrap();
    let config = serde_json::json!({
        "model_type": "llama", "hidden_size": cfg.hidden_size, "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads, "num_key_value_heads": cfg.n_kv_heads,
        "intermediate_size": cfg.intermediate_size, "vocab_size": cfg.vocab_size,
        "rms_norm_eps": cfg.rms_norm_eps, "rope_theta": cfg.rope_theta,
        "max_position_embeddings": cfg.context_length, "tie_word_embeddings": true
    });
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    TextTokenizer::from_gguf(&file).unwrap().save(&dir.path().join("tokenizer.json")).unwrap();

    let dense = MatmulPolicy::dense_f32(&dev);
    let from_gguf = LanguageModel::load_with_policy("gguf", &ModelFiles::Gguf(gguf_path), &dev, dense).unwrap();
    let from_dir = LanguageModel::load_with_policy("dir", &ModelFiles::Checkpoint(dir.path().to_path_buf()), &dev, dense).unwrap();
    let text = "Patients with iron deficiency anemia often report fatigue, pallor and shortness of breath.";
    let ids = from_gguf.tokenizer.encode(text).unwrap();
    assert_eq!(from_dir.tokenizer.encode(text).unwrap(), ids);
    let a = from_gguf.logits_along(&ids, ids.len()).unwrap();
    let b = from_dir.logits_along(&ids, ids.len()).unwrap();
    let diff = a.last().unwrap().iter().zip(b.last().unwrap()).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    assert!(diff < 1e-3, "logits differ by {diff}");
}
