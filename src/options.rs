//! Command-line options. Each flag has help text and an environment variable.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "assay", version, about = "Self-hosted LLM evaluation engine: local models, binary checks, expert-aligned judges")]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOptions,
    #[command(subcommand)]
    pub command: Command,
}

/// Options shared by every subcommand.
#[derive(Debug, Clone, Args)]
pub struct GlobalOptions {
    /// Device to run models on: cpu, cuda or cuda:N.
    #[arg(long, global = true, env = "ASSAY_DEVICE", default_value = "cpu")]
    pub device: String,
    /// Folder holding manifest.json and the fetched models (local/).
    #[arg(long, global = true, env = "ASSAY_MODELS", default_value = "models")]
    pub models_dir: PathBuf,
    /// Folder the manifest's files were fetched into (default: <models-dir>/local).
    #[arg(long, global = true, env = "ASSAY_MODELS_DIR")]
    pub models_local_dir: Option<PathBuf>,
    /// CPU threads for matrix products (default: one per physical core).
    #[arg(long, global = true, env = "ASSAY_THREADS")]
    pub threads: Option<usize>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the models available locally and where they were looked for.
    Models,
    /// Generate text from a prompt, streaming it to stdout.
    Generate(GenerateArgs),
    /// Print sentence embeddings of texts as JSON lines.
    Embed(EmbedArgs),
    /// Judge items (JSONL) with binary checks (JSON): every check of an item in one packed pass.
    Judge(JudgeArgs),
    /// Measure engine throughput.
    Bench(BenchArgs),
    /// Serve the OpenAI-compatible API, /v1/judge, /health and /metrics on one port.
    Serve(ServeArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Generation model: a manifest name, a GGUF path, a checkpoint folder or a cached repo id; requests name it by this text.
    #[arg(long, env = "ASSAY_MODEL", default_value = "smollm2")]
    pub model: String,
    /// Judge model for /v1/judge (default: --model); loaded once if it is the same.
    #[arg(long, env = "ASSAY_JUDGE_MODEL")]
    pub judge_model: Option<String>,
    /// Embedding model for /v1/embeddings (a manifest name or a checkpoint folder); none when absent.
    #[arg(long, env = "ASSAY_EMBED_MODEL")]
    pub embed_model: Option<String>,
    /// Address to listen on.
    #[arg(long, env = "ASSAY_HOST", default_value = "127.0.0.1")]
    pub host: std::net::IpAddr,
    /// Port to listen on.
    #[arg(long, env = "ASSAY_PORT", default_value_t = 8080)]
    pub port: u16,
    /// Require 'Authorization: Bearer <key>' on every route but /health.
    #[arg(long, env = "ASSAY_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Requests waiting or running per model; past it, 429 with Retry-After.
    #[arg(long, env = "ASSAY_MAX_QUEUE", default_value_t = 256)]
    pub max_queue: usize,
    /// Seconds a request may wait and run before it is cancelled (504).
    #[arg(long, env = "ASSAY_REQUEST_TIMEOUT_S", default_value_t = 600)]
    pub request_timeout_s: u64,
    /// Largest request body in bytes (413 past it).
    #[arg(long, env = "ASSAY_MAX_BODY_BYTES", default_value_t = 8 << 20)]
    pub max_body_bytes: usize,
    /// Memory for judge prompt prefixes kept for reuse, per model (MiB).
    #[arg(long, env = "ASSAY_PREFIX_CACHE_MB", default_value_t = 512)]
    pub prefix_cache_mb: usize,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Model: a manifest name (smollm2), a GGUF path, a checkpoint folder, or a cached Hugging Face repo id.
    #[arg(long, env = "ASSAY_MODEL", default_value = "smollm2")]
    pub model: String,
    /// The user message (or the raw prompt with --raw).
    #[arg(long, env = "ASSAY_PROMPT")]
    pub prompt: String,
    /// A system message placed before the prompt.
    #[arg(long, env = "ASSAY_SYSTEM")]
    pub system: Option<String>,
    /// Send the prompt as is, without the chat template.
    #[arg(long, env = "ASSAY_RAW")]
    pub raw: bool,
    /// Maximum number of tokens to generate.
    #[arg(long, env = "ASSAY_MAX_TOKENS", default_value_t = 256)]
    pub max_tokens: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, env = "ASSAY_TEMPERATURE", default_value_t = 0.0)]
    pub temperature: f32,
    /// Nucleus sampling mass.
    #[arg(long, env = "ASSAY_TOP_P", default_value_t = 1.0)]
    pub top_p: f32,
    /// Keep only the k most likely tokens (0: all).
    #[arg(long, env = "ASSAY_TOP_K", default_value_t = 0)]
    pub top_k: usize,
    /// Penalty > 1 for tokens already seen.
    #[arg(long, env = "ASSAY_REPETITION_PENALTY", default_value_t = 1.0)]
    pub repetition_penalty: f32,
    /// Seed for sampling.
    #[arg(long, env = "ASSAY_SEED")]
    pub seed: Option<u64>,
    /// Stop before this string (repeatable).
    #[arg(long, env = "ASSAY_STOP")]
    pub stop: Vec<String>,
    /// Print each token's log-probability and this many alternatives to stderr after the text.
    #[arg(long, env = "ASSAY_LOGPROBS")]
    pub logprobs: Option<usize>,
}

#[derive(Debug, Args)]
pub struct JudgeArgs {
    /// Judge model: a manifest name, a GGUF path, a checkpoint folder or a cached repo id.
    #[arg(long, env = "ASSAY_JUDGE_MODEL", default_value = "smollm2")]
    pub model: String,
    /// Checks: a JSON list of {id, question, name?, pass_criteria?, fail_examples?, threshold?}, or {version?, checks}.
    #[arg(long, env = "ASSAY_CHECKS")]
    pub checks: PathBuf,
    /// Items: JSONL, one {id, input, output, context?} per line.
    #[arg(long, env = "ASSAY_ITEMS")]
    pub items: PathBuf,
    /// Write judgments here as JSONL (written whole at the end; default: stdout).
    #[arg(long, env = "ASSAY_OUT")]
    pub out: Option<PathBuf>,
    /// Text of the passing answer after "Verdict:".
    #[arg(long, env = "ASSAY_PASS_LABEL", default_value = " PASS")]
    pub pass_label: String,
    /// Text of the failing answer after "Verdict:".
    #[arg(long, env = "ASSAY_FAIL_LABEL", default_value = " FAIL")]
    pub fail_label: String,
    /// Memory for computed prompt prefixes kept for reuse (MiB); items sharing a prefix compute it once.
    #[arg(long, env = "ASSAY_PREFIX_CACHE_MB", default_value_t = 512)]
    pub prefix_cache_mb: usize,
}

#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// Embedding model: a manifest name (minilm) or a folder with config.json, model.safetensors, tokenizer.json.
    #[arg(long, env = "ASSAY_EMBED_MODEL", default_value = "minilm")]
    pub model: String,
    /// Texts to embed (default: one per line of stdin).
    #[arg(env = "ASSAY_EMBED_TEXT")]
    pub texts: Vec<String>,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: BenchKind,
}

#[derive(Debug, Subcommand)]
pub enum BenchKind {
    /// Prefill and decode tokens per second for one sequence.
    Gen(BenchGenArgs),
    /// Dense (gemm) versus quantized matmul time by number of rows, for the model's shapes.
    Matmul(BenchMatmulArgs),
    /// Workload J1: one ~1,000-token context and 25 checks of ~60 tokens, judged naively (each
    /// check a full prompt), with prefix reuse (checks one after another) and packed.
    Judge(BenchJudgeArgs),
}

#[derive(Debug, Args)]
pub struct BenchJudgeArgs {
    /// Judge model to measure.
    #[arg(long, env = "ASSAY_JUDGE_MODEL", default_value = "smollm2")]
    pub model: String,
    /// K-QA questions file the context and checks are made from.
    #[arg(long, env = "ASSAY_BENCH_KQA", default_value = "../shared/data/kqa/questions_w_answers.jsonl")]
    pub kqa: PathBuf,
    /// Timed repetitions of each mode after one warm-up; the median is reported.
    #[arg(long, env = "ASSAY_BENCH_REPEATS", default_value_t = 3)]
    pub repeats: usize,
    /// Modes to run, in order (naive, prefix_reuse, packed); the first is the reference for p_pass.
    #[arg(long, env = "ASSAY_BENCH_MODES", value_delimiter = ',', default_value = "naive,prefix_reuse,packed")]
    pub modes: Vec<String>,
    /// Write the workload's token ids (prefix, suffixes, labels) to this JSON file, for peers.
    #[arg(long, env = "ASSAY_BENCH_DUMP")]
    pub dump_workload: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BenchGenArgs {
    /// Model to measure.
    #[arg(long, env = "ASSAY_MODEL", default_value = "smollm2")]
    pub model: String,
    /// Text file the prompt is cut from (default: K-QA answers from ../shared/data).
    #[arg(long, env = "ASSAY_BENCH_PROMPT_FILE")]
    pub prompt_file: Option<PathBuf>,
    /// Prompt length in tokens.
    #[arg(long, env = "ASSAY_BENCH_PROMPT_TOKENS", default_value_t = 498)]
    pub prompt_tokens: usize,
    /// Tokens to decode after the prompt.
    #[arg(long, env = "ASSAY_BENCH_GEN_TOKENS", default_value_t = 64)]
    pub gen_tokens: usize,
    /// Timed repetitions after one warm-up; the median is reported.
    #[arg(long, env = "ASSAY_BENCH_REPEATS", default_value_t = 3)]
    pub repeats: usize,
}

#[derive(Debug, Args)]
pub struct BenchMatmulArgs {
    /// Model whose projection shapes are measured.
    #[arg(long, env = "ASSAY_MODEL", default_value = "smollm2")]
    pub model: String,
    /// Row counts to measure.
    #[arg(long, env = "ASSAY_BENCH_ROWS", value_delimiter = ',', default_value = "1,2,4,8,16,64,256")]
    pub rows: Vec<usize>,
}
