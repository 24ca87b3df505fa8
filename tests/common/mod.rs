//! Shared helpers of the end-to-end tests: where the real models are, loading them once.

#![allow(dead_code)] // each test binary uses a different subset

pub mod browser;
pub mod server;

use assay_engine::{Embedder, Engine, EngineConfig, EngineModel, LanguageModel, ModelFiles};
use candle_core::Device;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

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

/// The Python of the virtual environment `.venv-<name>` in the checkout with `requirements`
/// installed, made on first use (`python3 -m venv`, then pip) so that the test command sets up
/// what it needs by itself; `.ci/run` makes them ahead. A marker file records a finished setup,
/// so an interrupted one is redone.
pub fn python_venv(name: &str, requirements: &[&str]) -> PathBuf {
    let dir = repo_root().join(format!(".venv-{name}"));
    let (python, marker) = (dir.join("bin/python"), dir.join(format!("bin/{name}-ok")));
    if marker.is_file() {
        return python;
    }
    let run = |program: &std::path::Path, args: &[&str]| {
        let status = std::process::Command::new(program).args(args).status().unwrap_or_else(|e| panic!("{}: {e}", program.display()));
        assert!(status.success(), "{} {args:?} failed: the test needs Python 3 with venv and pip, and the package registry (or run .ci/run)", program.display());
    };
    run(std::path::Path::new("python3"), &["-m", "venv", dir.to_str().expect("a UTF-8 path")]);
    run(&python, &[&["-m", "pip", "install", "--quiet"][..], requirements].concat());
    std::fs::write(&marker, requirements.join("\n")).unwrap();
    python
}

/// SmolLM2 loaded once per test binary with the CPU's default paths.
pub fn smollm2() -> &'static Arc<LanguageModel> {
    static LM: OnceLock<Arc<LanguageModel>> = OnceLock::new();
    LM.get_or_init(|| Arc::new(LanguageModel::load("smollm2", &ModelFiles::Gguf(smollm2_path()), &Device::Cpu).expect("load smollm2")))
}

/// SmolLM2 as a plain model (tokenizer, template), for tests that only need its token ids.
pub fn smollm2_model() -> &'static LanguageModel {
    smollm2()
}

/// An engine of its own (its own KV pool of `kv_mb` MiB and prefix tree) over the shared
/// SmolLM2, batched as the server runs it.
pub fn smollm2_engine(kv_mb: usize) -> Engine {
    Engine::start(EngineModel::Language(smollm2().clone()), EngineConfig::batched(kv_mb << 20)).expect("start an engine")
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
