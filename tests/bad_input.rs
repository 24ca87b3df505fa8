//! Bad model files and bad requests end in a clear error that names the file or the limit,
//! a non-zero exit status from the CLI, and never a panic.

mod common;

use assay_engine::{EngineError, LanguageModel, ModelFiles};
use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use std::path::Path;
use std::process::Command;

fn load(path: &Path) -> Result<LanguageModel, EngineError> {
    LanguageModel::load("test", &ModelFiles::Gguf(path.to_path_buf()), &Device::Cpu)
}

/// Runs the CLI; returns (exit success, stdout, stderr).
fn assay(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(common::assay_bin()).args(args).current_dir(common::repo_root()).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn truncated_gguf_names_the_file_and_the_missing_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(common::smollm2_path()).unwrap();
    let cut = dir.path().join("cut.gguf");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let err = load(&cut).err().expect("a truncated file must not load").to_string();
    assert!(err.contains("cut.gguf") && err.contains("truncated"), "{err}");
    let header_only = dir.path().join("header.gguf");
    std::fs::write(&header_only, &bytes[..100]).unwrap();
    let err = load(&header_only).err().unwrap().to_string();
    assert!(err.contains("header.gguf") && err.contains("not a valid GGUF"), "{err}");
    let (ok, _, stderr) = assay(&["generate", "--model", cut.to_str().unwrap(), "--prompt", "hi"]);
    assert!(!ok && stderr.contains("cut.gguf") && !stderr.contains("panicked"), "{stderr}");
}

#[test]
fn not_a_gguf_and_missing_files_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.gguf");
    std::fs::write(&junk, b"this is not a model").unwrap();
    assert!(load(&junk).err().unwrap().to_string().contains("junk.gguf"));
    let missing = dir.path().join("absent.gguf");
    assert!(matches!(load(&missing), Err(EngineError::FileNotFound(_))));
    let (ok, _, stderr) = assay(&["generate", "--model", "no-such-model", "--prompt", "hi"]);
    assert!(!ok && stderr.contains("unknown model 'no-such-model'") && stderr.contains("manifest"), "{stderr}");
}

#[test]
fn unknown_architecture_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("neox.gguf");
    let t = QTensor::quantize(&Tensor::zeros((4, 32), candle_core::DType::F32, &Device::Cpu).unwrap(), GgmlDType::F32).unwrap();
    let arch = gguf_file::Value::String("gptneox".into());
    let mut f = std::fs::File::create(&path).unwrap();
    gguf_file::write(&mut f, &[("general.architecture", &arch)], &[("token_embd.weight", &t)]).unwrap();
    drop(f);
    let err = load(&path).err().unwrap().to_string();
    assert!(err.contains("unsupported architecture 'gptneox'") && err.contains("neox.gguf"), "{err}");
}

#[test]
fn missing_tokenizer_in_a_checkpoint_folder_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), r#"{"model_type": "llama"}"#).unwrap();
    let err = LanguageModel::load("ckpt", &ModelFiles::Checkpoint(dir.path().to_path_buf()), &Device::Cpu).err().unwrap().to_string();
    assert!(err.contains("tokenizer.json"), "{err}");
}

#[test]
fn cli_rejects_bad_flags_and_over_long_prompts_without_panicking() {
    let (ok, _, stderr) = assay(&["generate", "--prompt", "hi", "--top-p", "3"]);
    assert!(!ok && stderr.contains("top_p"), "{stderr}");
    let (ok, _, stderr) = assay(&["generate", "--prompt", "hi", "--device", "tpu"]);
    assert!(!ok && stderr.contains("invalid device 'tpu'"), "{stderr}");
    let long = "lorem ipsum ".repeat(9000);
    let (ok, _, stderr) = assay(&["generate", "--raw", "--prompt", &long, "--max-tokens", "1"]);
    assert!(!ok && stderr.contains("does not fit the context of 8192"), "{stderr}");
}

#[test]
fn cli_generates_and_lists_models() {
    let (ok, stdout, stderr) = assay(&["generate", "--model", "smollm2", "--prompt", "Write one sentence about the sea.", "--max-tokens", "16"]);
    assert!(ok, "{stderr}");
    assert!(!stdout.trim().is_empty());
    assert!(stderr.contains("generated"), "{stderr}");
    let (ok, stdout, _) = assay(&["models"]);
    assert!(ok && stdout.contains("smollm2") && stdout.contains("present"), "{stdout}");
    let (ok, stdout, stderr) = assay(&["embed", "first text", "second text"]);
    assert!(ok, "{stderr}");
    let lines: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["embedding"].as_array().unwrap().len(), 384);
}

#[test]
fn a_missing_or_mis_shaped_tensor_names_the_folder_and_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let config = serde_json::json!({"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
        "intermediate_size": 128, "vocab_size": 300, "max_position_embeddings": 128, "rms_norm_eps": 1e-5});
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    assay_engine::model::random::synthetic_tokenizer(300).unwrap().save(dir.path().join("tokenizer.json"), false).unwrap();
    let save = |embed_rows: usize| {
        let mut tensors = std::collections::HashMap::new();
        tensors.insert("model.embed_tokens.weight".to_string(), Tensor::zeros((embed_rows, 64), candle_core::DType::F32, &Device::Cpu).unwrap());
        candle_core::safetensors::save(&tensors, dir.path().join("model.safetensors")).unwrap();
        LanguageModel::load("ckpt", &ModelFiles::Checkpoint(dir.path().to_path_buf()), &Device::Cpu).err().expect("an incomplete model must not load").to_string()
    };
    let err = save(299);
    assert!(err.contains(&dir.path().display().to_string()) && err.contains("model.embed_tokens.weight has shape [299, 64], expected [300, 64]"), "{err}");
    let err = save(300);
    assert!(err.contains("missing tensor model.layers.0.self_attn.q_proj.weight"), "{err}");
}
