//! Shared helpers of the end-to-end tests: where the real models are, loading them once.

#![allow(dead_code)] // each test binary uses a different subset

pub mod server;

use assay_engine::{Embedder, LanguageModel, ModelFiles};
use candle_core::Device;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::OnceLock;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fetched(rel: &str) -> PathBuf {
    let p = repo_root().join("models/local").join(rel);
    assert!(p.exists(), "{} is missing: run models/fetch first", p.display());
    p
}

pub fn smollm2_path() -> PathBuf {
    fetched("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
}

pub fn minilm_dir() -> PathBuf {
    fetched("minilm")
}

/// SmolLM2 loaded once per test binary with the CPU's default paths.
pub fn smollm2() -> &'static LanguageModel {
    static LM: OnceLock<LanguageModel> = OnceLock::new();
    LM.get_or_init(|| LanguageModel::load("smollm2", &ModelFiles::Gguf(smollm2_path()), &Device::Cpu).expect("load smollm2"))
}

pub fn minilm() -> &'static Embedder {
    static E: OnceLock<Embedder> = OnceLock::new();
    E.get_or_init(|| Embedder::load("minilm", &minilm_dir(), &Device::Cpu).expect("load minilm"))
}

/// Path of the built `assay` binary.
pub fn assay_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_assay"))
}

/// Runs the CLI from the repository root on the database `db`; returns (exit success, stdout,
/// stderr). A panic is never an acceptable way to fail.
pub fn assay_on(db: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(assay_bin()).args(args).env("ASSAY_DB", db).current_dir(repo_root()).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    assert!(!stderr.contains("panicked"), "{stderr}");
    (out.status.success(), stdout, stderr)
}

/// SmolLM2 with every matmul on the dense f32 path: for tests of batching and caching, where
/// the 8-bit path's rounding (it flips on changes of 1e-5) would hide the exact equalities.
pub fn smollm2_dense() -> &'static LanguageModel {
    static LM: OnceLock<LanguageModel> = OnceLock::new();
    LM.get_or_init(|| {
        let policy = assay_engine::MatmulPolicy { dense_min_rows: 0, keep_quantized: false, ..assay_engine::MatmulPolicy::for_device(&Device::Cpu) };
        LanguageModel::load_with_policy("smollm2", &ModelFiles::Gguf(smollm2_path()), &Device::Cpu, policy).expect("load smollm2")
    })
}

/// Two checks any IFEval response can be judged by.
pub const IFEVAL_CHECKS: &str = r#"{"version": "v1", "checks": [
  {"id": "follows_format", "question": "Does the response follow every formatting instruction of the prompt (sections, bullet points, capital letters, punctuation)?"},
  {"id": "on_topic", "question": "Does the response address the task in the prompt?"}
]}"#;

/// The first `n` IFEval prompts with GPT-4's responses, as judge items.
pub fn ifeval_items(n: usize) -> Vec<Value> {
    let data = repo_root().join("../shared/data/ifeval");
    let responses = std::fs::read_to_string(data.join("input_response_data_gpt4_20231107_145030.jsonl")).unwrap();
    responses
        .lines()
        .take(n)
        .enumerate()
        .map(|(i, l)| {
            let r: Value = serde_json::from_str(l).unwrap();
            json!({"id": format!("ifeval-{i}"), "input": r["prompt"], "output": r["response"]})
        })
        .collect()
}
