//! Command-line options. Each flag has help text and an environment variable.

use assay_pipeline::optimise::OptimiseOptions;
use assay_server::Limits;
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
    /// SQLite file holding projects, datasets, evaluator sets, runs and judgments (created if missing).
    #[arg(long, global = true, env = "ASSAY_DB", default_value = "assay.db")]
    pub db: PathBuf,
    /// KV cache per loaded language model (MiB): preallocated blocks holding every sequence's keys
    /// and values and the shared prefixes kept for reuse. A request whose prompt and output cannot
    /// fit it is refused; a full cache makes requests wait.
    #[arg(long, global = true, env = "ASSAY_KV_CACHE_MB", default_value_t = assay_engine::engine::DEFAULT_KV_CACHE_MB)]
    pub kv_cache_mb: usize,
    /// A server that project configurations set over HTTP may call, as URL_PREFIX or
    /// URL_PREFIX=VAR (VAR: the one environment variable whose value may be sent to it as the API
    /// key); repeatable. Without it such configurations run local models only, by name.
    #[arg(long, global = true, env = "ASSAY_ALLOW_BACKEND", value_delimiter = ',')]
    pub allow_backend: Vec<assay_pipeline::AllowedBackend>,
    /// Most tokens one engine step computes (rows of one forward pass); decode rows always run.
    #[arg(long, global = true, env = "ASSAY_STEP_TOKENS", default_value_t = assay_engine::engine::DEFAULT_STEP_TOKENS)]
    pub step_tokens: usize,
    /// CPU matmul kernel on the model file's quantized blocks: auto (vnni where the CPU has
    /// AVX512-VNNI, else avx2 where it has AVX2, else dense f32 copies of the weights, faster
    /// there than the portable kernel), vnni, avx2, or portable (int8 in plain Rust, any CPU).
    /// A named kernel the CPU lacks is an error.
    #[arg(long, global = true, env = "ASSAY_CPU_KERNEL", default_value = "auto")]
    pub cpu_kernel: String,
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
    /// Create projects: a task, its generation prompt and everything evaluated for it.
    Project(ProjectArgs),
    /// Import datasets of items (JSONL or CSV) into a project.
    Data(DataArgs),
    /// Evaluator sets: import checks as a new immutable version, compare two versions.
    Set(SetArgs),
    /// Write a run's judgments or an evaluator-set version to a file or stdout.
    Export(ExportArgs),
    /// Serve the OpenAI-compatible API, /v1/judge, /health and /metrics on one port.
    Serve(ServeArgs),
    /// Discover how outputs fail and turn the failures into checks (a new evaluator-set version).
    Discover(DiscoverArgs),
    /// Judge a dataset with an evaluator-set version, stored and resumable.
    Run(RunArgs),
    /// Per-check consistency, separation, cohesion and agreement with expert labels; plots.
    Report(ReportArgs),
    /// List the questions raised for the expert (ambiguous judgments, uncovered constraints).
    Questions(QuestionsArgs),
    /// Record the expert's ruling on a question.
    Answer(AnswerArgs),
    /// Record expert PASS/FAIL labels of checks on items, or whole-output scores.
    Label(LabelArgs),
    /// Rewrite, split or drop the checks that rulings and the report point at: a new version.
    Refine(RefineArgs),
    /// Evolve a gold output per input with the evaluator set as fitness (genetic search), stored and resumable; optionally against best-of-N.
    Optimise(OptimiseArgs),
    /// List the gold outputs of an evaluator-set version.
    Gold(GoldArgs),
    /// Reject a gold output with a note; one that passes every check proposes a new check.
    Critique(CritiqueArgs),
}

#[derive(Debug, Args)]
pub struct GoldArgs {
    #[command(flatten)]
    pub project: ProjectArg,
    #[command(flatten)]
    pub set: SetVersionArg,
    /// Print JSON (with every candidate's lineage) instead of a summary per output.
    #[arg(long, env = "ASSAY_JSON")]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CritiqueArgs {
    #[command(flatten)]
    pub project: ProjectArg,
    #[command(flatten)]
    pub set: SetVersionArg,
    /// The gold output, by id (from `assay gold`).
    #[arg(long, env = "ASSAY_GOLD", required_unless_present = "item", conflicts_with = "item")]
    pub gold: Option<i64>,
    /// The gold output of this item (its key) under --set.
    #[arg(long, env = "ASSAY_ITEM")]
    pub item: Option<String>,
    /// What is wrong with the output, in the expert's words.
    #[arg(long, env = "ASSAY_NOTE")]
    pub note: String,
    /// Seed of the check writer's call.
    #[arg(long, env = "ASSAY_SEED", default_value_t = 0)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct OptimiseArgs {
    #[command(flatten)]
    pub project: ProjectArg,
    #[command(flatten)]
    pub set: SetVersionArg,
    #[command(flatten)]
    pub dataset: DatasetArg,
    /// How many of the dataset's inputs to optimise (the first ones).
    #[arg(long, env = "ASSAY_OPTIMISE_ITEMS", default_value_t = assay_pipeline::gold::DEFAULT_OPTIMISE_ITEMS)]
    pub items: usize,
    /// Most generations after the seed population.
    #[arg(long, env = "ASSAY_GENERATIONS", default_value_t = OptimiseOptions::default().generations)]
    pub generations: usize,
    /// Candidates per generation.
    #[arg(long, env = "ASSAY_POPULATION", default_value_t = OptimiseOptions::default().population)]
    pub population: usize,
    /// Most candidate evaluations per input (each judges every check once), seeds included;
    /// default 20, or the population if larger.
    #[arg(long, env = "ASSAY_BUDGET")]
    pub budget: Option<usize>,
    /// Most tokens of a generated or rewritten output.
    #[arg(long, env = "ASSAY_MAX_TOKENS", default_value_t = OptimiseOptions::default().max_tokens)]
    pub max_tokens: usize,
    /// Seed of sampling and parent choice.
    #[arg(long, env = "ASSAY_SEED", default_value_t = OptimiseOptions::default().seed)]
    pub seed: u64,
    /// Also run best-of-N with the same number of evaluations per input, and compare.
    #[arg(long, env = "ASSAY_COMPARE")]
    pub compare: bool,
    /// Judge candidates in rationale mode, so that rewrites are told why checks failed (slower).
    #[arg(long, env = "ASSAY_OPTIMISE_RATIONALES")]
    pub rationales: bool,
    /// Also write the run's gold outputs (with every candidate's lineage and the baseline) as JSON.
    #[arg(long, env = "ASSAY_OUT")]
    pub out: Option<PathBuf>,
}

/// An evaluator-set version of the project.
#[derive(Debug, Args)]
pub struct SetVersionArg {
    /// Evaluator-set version (2 or v2; default: the latest).
    #[arg(long, env = "ASSAY_SET", value_parser = parse_set_version)]
    pub set: Option<u32>,
}

/// A dataset of the project, by name.
#[derive(Debug, Args)]
pub struct DatasetArg {
    /// Dataset name (default: the project's most recent dataset).
    #[arg(long, env = "ASSAY_DATASET")]
    pub data: Option<String>,
}

#[derive(Debug, Args)]
pub struct DiscoverArgs {
    #[command(flatten)]
    pub project: ProjectArg,
    #[command(flatten)]
    pub dataset: DatasetArg,
    /// How many checks to keep (the largest, most severe error clusters first).
    #[arg(long, env = "ASSAY_DISCOVER_CHECKS", default_value_t = 10)]
    pub checks: usize,
    /// Seed of every sampled generation, annotation and check writing.
    #[arg(long, env = "ASSAY_SEED", default_value_t = 0)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub project: ProjectArg,
    #[command(flatten)]
    pub set: SetVersionArg,
    #[command(flatten)]
    pub dataset: DatasetArg,
    #[command(flatten)]
    pub options: JudgeOptionArgs,
    /// Items judged between two writes to the database (an interruption loses at most these).
    #[arg(long, env = "ASSAY_CHUNK_ITEMS", default_value_t = assay_pipeline::DEFAULT_CHUNK_ITEMS)]
    pub chunk_items: usize,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub project: ProjectArg,
    #[command(flatten)]
    pub set: SetVersionArg,
    /// Judge run to report on (default: the set's latest finished judge run).
    #[arg(long, env = "ASSAY_RUN")]
    pub run: Option<i64>,
    /// Folder for the SVG plots (default: reports/project-<id>-v<set>).
    #[arg(long, env = "ASSAY_PLOTS")]
    pub plots: Option<PathBuf>,
    /// Print the report as JSON instead of a table.
    #[arg(long, env = "ASSAY_JSON")]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct QuestionsArgs {
    #[command(flatten)]
    pub project: ProjectArg,
    /// Include answered questions and their rulings.
    #[arg(long, env = "ASSAY_ALL")]
    pub all: bool,
    /// Print as JSON lines.
    #[arg(long, env = "ASSAY_JSON")]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AnswerArgs {
    /// Id of the question (from `assay questions`).
    #[arg(env = "ASSAY_QUESTION", required_unless_present = "from_labels", conflicts_with = "from_labels")]
    pub question: Option<i64>,
    /// The expert's ruling, kept verbatim (refinement folds it into the check).
    #[arg(long, env = "ASSAY_RULING", required_unless_present = "from_labels", conflicts_with = "from_labels")]
    pub ruling: Option<String>,
    /// For a question about an item and a check: also record this as the expert's label.
    #[arg(long, env = "ASSAY_LABEL", value_parser = ["pass", "fail"], conflicts_with = "from_labels")]
    pub label: Option<String>,
    /// Who gives the ruling (a reviewer name), kept with it (with --from-labels: default "simulated-expert").
    #[arg(long, env = "ASSAY_RATER", default_value = "")]
    pub rater: String,
    /// Benchmarks only: an expert simulated from a labels file (the format of `assay label --file`)
    /// answers every open question about one check on one item of --data that the file labels:
    /// the label as the ruling's verdict and as the expert's label, its note as the ruling's words.
    /// Give it the training split's labels only.
    #[arg(long, env = "ASSAY_FROM_LABELS", requires = "project")]
    pub from_labels: Option<PathBuf>,
    /// The project whose questions --from-labels answers.
    #[arg(long, env = "ASSAY_PROJECT")]
    pub project: Option<String>,
    #[command(flatten)]
    pub dataset: DatasetArg,
}

#[derive(Debug, Args)]
pub struct LabelArgs {
    #[command(flatten)]
    pub project: ProjectArg,
    #[command(flatten)]
    pub dataset: DatasetArg,
    /// Item id (its key in the dataset).
    #[arg(long, env = "ASSAY_ITEM", required_unless_present = "file")]
    pub item: Option<String>,
    /// Check id the verdict is about (with --verdict).
    #[arg(long, env = "ASSAY_CHECK", requires = "verdict")]
    pub check: Option<String>,
    /// The expert's verdict of --check on --item.
    #[arg(long, env = "ASSAY_VERDICT", value_parser = ["pass", "fail"], requires = "check")]
    pub verdict: Option<String>,
    /// The expert's score of the whole output of --item.
    #[arg(long, env = "ASSAY_SCORE", conflicts_with = "verdict")]
    pub score: Option<f64>,
    /// A note kept with the label.
    #[arg(long, env = "ASSAY_NOTE", default_value = "")]
    pub note: String,
    /// Who gives the labels (a reviewer name), kept with each (a file's own "rater" fields win).
    #[arg(long, env = "ASSAY_RATER", default_value = "")]
    pub rater: String,
    /// Many labels: JSONL of {"item", "check", "verdict": "PASS"|"FAIL", "note"?} or {"item", "score", "note"?}, all or nothing.
    #[arg(long, env = "ASSAY_LABEL_FILE", conflicts_with_all = ["item", "check", "verdict", "score"])]
    pub file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RefineArgs {
    #[command(flatten)]
    pub project: ProjectArg,
    #[command(flatten)]
    pub set: SetVersionArg,
    /// Seed of the check writer.
    #[arg(long, env = "ASSAY_SEED", default_value_t = 0)]
    pub seed: u64,
    /// Judge run whose report refinement reads (default: the set's latest finished judge run).
    #[arg(long, env = "ASSAY_RUN")]
    pub run: Option<i64>,
}

/// The project a command works on.
#[derive(Debug, Args)]
pub struct ProjectArg {
    /// Project name.
    #[arg(long, env = "ASSAY_PROJECT")]
    pub project: String,
}

/// Reads an evaluator-set version number written as `2` or `v2`.
fn parse_set_version(s: &str) -> Result<u32, String> {
    s.strip_prefix('v').unwrap_or(s).parse().map_err(|_| format!("'{s}' is not a version number (write 2 or v2)"))
}

#[derive(Debug, Args)]
pub struct ProjectArgs {
    #[command(subcommand)]
    pub what: ProjectCommand,
}

#[derive(Debug, Subcommand)]
pub enum ProjectCommand {
    /// Create a project from its generation prompt.
    Create(ProjectCreateArgs),
    /// Show a project's configuration (backend and model per role, generators), or replace it from a JSON file.
    Config(ProjectConfigArgs),
}

#[derive(Debug, Args)]
pub struct ProjectConfigArgs {
    /// Project name.
    #[arg(env = "ASSAY_PROJECT")]
    pub name: String,
    /// JSON file with the new configuration (see `assay project config NAME` for the fields).
    #[arg(long, env = "ASSAY_PROJECT_CONFIG")]
    pub file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ProjectCreateArgs {
    /// Name of the new project (unique in the database).
    #[arg(env = "ASSAY_PROJECT")]
    pub name: String,
    /// File holding the prompt the task's outputs are generated with.
    #[arg(long, env = "ASSAY_PROMPT_FILE")]
    pub prompt_file: PathBuf,
    /// Short name of the task (e.g. "clinical note summary").
    #[arg(long, env = "ASSAY_TASK", default_value = "")]
    pub task: String,
}

#[derive(Debug, Args)]
pub struct DataArgs {
    #[command(subcommand)]
    pub what: DataCommand,
}

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Import a JSONL or CSV file as a new dataset, all or nothing.
    Import(DataImportArgs),
}

#[derive(Debug, Args)]
pub struct DataImportArgs {
    #[command(flatten)]
    pub project: ProjectArg,
    /// Items: .jsonl (one object per line) or .csv (header row); fields id, input, output?, context?, reference?, metadata?.
    #[arg(long, env = "ASSAY_DATA_FILE")]
    pub file: PathBuf,
    /// Where each item field comes from when the file names it differently, e.g. input=prompt,id=key.
    #[arg(long, env = "ASSAY_DATA_MAP")]
    pub map: Option<String>,
    /// Name of the new dataset (default: the file's name without extension).
    #[arg(long, env = "ASSAY_DATASET")]
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct SetArgs {
    #[command(subcommand)]
    pub what: SetCommand,
}

#[derive(Debug, Subcommand)]
pub enum SetCommand {
    /// Store checks (JSON) as the project's next evaluator-set version, with the latest as parent.
    Import(SetImportArgs),
    /// Show the checks added, removed and changed from one version to another.
    Diff(SetDiffArgs),
}

#[derive(Debug, Args)]
pub struct SetImportArgs {
    #[command(flatten)]
    pub project: ProjectArg,
    /// Checks: a JSON list of {id, question, name?, pass_criteria?, fail_examples?, threshold?}, or {version?, checks}.
    #[arg(long, env = "ASSAY_CHECKS")]
    pub checks: PathBuf,
    /// Why this version was made (default: "imported from <file>").
    #[arg(long, env = "ASSAY_SET_REASON")]
    pub reason: Option<String>,
}

#[derive(Debug, Args)]
pub struct SetDiffArgs {
    #[command(flatten)]
    pub project: ProjectArg,
    /// The version compared from (2 or v2).
    #[arg(env = "ASSAY_SET_FROM", value_parser = parse_set_version)]
    pub from: u32,
    /// The version compared to.
    #[arg(env = "ASSAY_SET_TO", value_parser = parse_set_version)]
    pub to: u32,
    /// Print the diff as JSON instead of text.
    #[arg(long, env = "ASSAY_JSON")]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(subcommand)]
    pub what: ExportCommand,
}

#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// A run's judgments as JSONL, in the format `assay judge` writes.
    Judgments(ExportJudgmentsArgs),
    /// An evaluator-set version as JSON, usable as --checks.
    Set(ExportSetArgs),
    /// SFT JSONL by rejection sampling: judged outputs passing at least --min-score of the checks, as chat messages.
    Sft(ExportSftArgs),
    /// DPO JSONL: per input, the best against the worst judged output when they differ by --min-margin.
    Dpo(ExportDpoArgs),
}

/// The judge run whose outputs and scores become training data.
#[derive(Debug, Args)]
pub struct TrainingRunArgs {
    #[command(flatten)]
    pub project: ProjectArg,
    /// Judge run, or optimise run (every candidate it evaluated) (default: the latest finished judge run of --set).
    #[arg(long, env = "ASSAY_RUN")]
    pub run: Option<i64>,
    #[command(flatten)]
    pub set: SetVersionArg,
    /// Write here (whole, at the end) instead of stdout.
    #[arg(long, env = "ASSAY_OUT")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ExportSftArgs {
    #[command(flatten)]
    pub from: TrainingRunArgs,
    /// Least share of the checks an output must pass (1.0: every check).
    #[arg(long, env = "ASSAY_MIN_SCORE", default_value_t = 1.0)]
    pub min_score: f64,
}

#[derive(Debug, Args)]
pub struct ExportDpoArgs {
    #[command(flatten)]
    pub from: TrainingRunArgs,
    /// Least difference between the chosen and the rejected output's shares of passed checks.
    #[arg(long, env = "ASSAY_MIN_MARGIN", default_value_t = 0.2)]
    pub min_margin: f64,
}

#[derive(Debug, Args)]
pub struct ExportJudgmentsArgs {
    #[command(flatten)]
    pub project: ProjectArg,
    /// Id of the run.
    #[arg(long, env = "ASSAY_RUN")]
    pub run: i64,
    /// Write here (whole, at the end) instead of stdout.
    #[arg(long, env = "ASSAY_OUT")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ExportSetArgs {
    #[command(flatten)]
    pub project: ProjectArg,
    /// The version to export (2 or v2).
    #[arg(long, env = "ASSAY_SET", value_parser = parse_set_version)]
    pub set: u32,
    /// Write here (whole, at the end) instead of stdout.
    #[arg(long, env = "ASSAY_OUT")]
    pub out: Option<PathBuf>,
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
    /// File holding the API key (first line); keeps the key out of `ps`. Overrides --api-key.
    #[arg(long, env = "ASSAY_API_KEY_FILE")]
    pub api_key_file: Option<std::path::PathBuf>,
    /// Seconds a client may take to send a request's headers before the connection is closed.
    #[arg(long, env = "ASSAY_HEADER_TIMEOUT_S", default_value_t = 10)]
    pub header_timeout_s: u64,
    /// Seconds a client may take to send a request's body before it is answered 408.
    #[arg(long, env = "ASSAY_BODY_TIMEOUT_S", default_value_t = 30)]
    pub body_timeout_s: u64,
    /// Connections open at once; more are closed as soon as they are accepted.
    #[arg(long, env = "ASSAY_MAX_CONNECTIONS", default_value_t = 512)]
    pub max_connections: usize,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// The `--limit-*` flags' defaults.
const LIMITS: Limits = Limits::DEFAULT;

/// The bounds every request is checked against (400/413 naming the flag past them); published
/// in /openapi.json.
#[derive(Debug, Clone, Args)]
pub struct LimitArgs {
    /// Most new tokens per choice (`max_tokens`), and per generation of optimise runs.
    #[arg(long, env = "ASSAY_LIMIT_MAX_TOKENS", default_value_t = LIMITS.max_tokens)]
    pub limit_max_tokens: usize,
    /// Most choices per generation request (`n`).
    #[arg(long, env = "ASSAY_LIMIT_N", default_value_t = LIMITS.n)]
    pub limit_n: usize,
    /// Most rationales sampled per check (`samples`); at most 256.
    #[arg(long, env = "ASSAY_LIMIT_SAMPLES", default_value_t = LIMITS.samples)]
    pub limit_samples: usize,
    /// Most tokens of one judge rationale (`rationale_tokens`); at most 4096.
    #[arg(long, env = "ASSAY_LIMIT_RATIONALE_TOKENS", default_value_t = LIMITS.rationale_tokens)]
    pub limit_rationale_tokens: usize,
    /// Most items (pairs, embedding inputs, optimise inputs x population) per request.
    #[arg(long, env = "ASSAY_LIMIT_ITEMS", default_value_t = LIMITS.items)]
    pub limit_items: usize,
    /// Most checks per judge request.
    #[arg(long, env = "ASSAY_LIMIT_CHECKS", default_value_t = LIMITS.checks)]
    pub limit_checks: usize,
    /// Most candidates per generation of an optimise run (`population`); 2 to 64.
    #[arg(long, env = "ASSAY_LIMIT_POPULATION", default_value_t = LIMITS.population)]
    pub limit_population: usize,
    /// Most candidate evaluations per item of an optimise run (`budget`); at most 4096.
    #[arg(long, env = "ASSAY_LIMIT_BUDGET", default_value_t = LIMITS.budget)]
    pub limit_budget: usize,
    /// Most bytes of text to tokenize per request (413 past it, before tokenizing).
    #[arg(long, env = "ASSAY_LIMIT_PROMPT_BYTES", default_value_t = LIMITS.prompt_bytes)]
    pub limit_prompt_bytes: usize,
    /// Most streamed responses open at once (429 past it).
    #[arg(long, env = "ASSAY_LIMIT_STREAMS", default_value_t = LIMITS.streams)]
    pub limit_streams: usize,
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
    #[command(flatten)]
    pub options: JudgeOptionArgs,
}

/// How each check is judged: `assay judge` and `assay run` take the same flags.
#[derive(Debug, Clone, Args)]
pub struct JudgeOptionArgs {
    /// verdict: label likelihoods right after the prompt (one pass); rationale: a short
    /// generated rationale per check first, then the verdict after it.
    #[arg(long, env = "ASSAY_JUDGE_MODE", default_value = "verdict", value_parser = ["verdict", "rationale"])]
    pub mode: String,
    /// Rationales sampled per check at --temperature; more than one reports each sample's
    /// verdict and the flip rate (implies rationale mode).
    #[arg(long, env = "ASSAY_JUDGE_SAMPLES", default_value_t = 1)]
    pub samples: usize,
    /// Sampling temperature of the rationales when --samples > 1.
    #[arg(long, env = "ASSAY_JUDGE_TEMPERATURE", default_value_t = 0.7)]
    pub temperature: f32,
    /// Most tokens of a rationale (it also ends at the first line break).
    #[arg(long, env = "ASSAY_JUDGE_RATIONALE_TOKENS", default_value_t = 48)]
    pub rationale_tokens: usize,
    /// Seed of the rationale samplers.
    #[arg(long, env = "ASSAY_JUDGE_SEED", default_value_t = 0)]
    pub seed: u64,
}

impl JudgeOptionArgs {
    pub fn judge_options(&self) -> assay_core::JudgeOptions {
        assay_core::JudgeOptions {
            mode: if self.mode == "rationale" { assay_core::JudgeMode::Rationale } else { assay_core::JudgeMode::Verdict },
            samples: self.samples,
            temperature: self.temperature,
            rationale_tokens: self.rationale_tokens,
            seed: self.seed,
            examples: Vec::new(),
        }
    }
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
    /// One layer's attention at judge shapes (sequences that share a prefix, each with its own
    /// suffix rows), through each code of the fused CPU kernel and the candle-ops reference.
    Attention(BenchAttentionArgs),
    /// Judge workloads J1 (one ~1,000-token context, 25 checks of ~60 tokens) and J2 (64 items
    /// x 25 checks), judged naively (each check a full prompt), with prefix reuse (checks one
    /// after another) and packed.
    Judge(BenchJudgeArgs),
    /// Judge quality on ../shared/data's labelled datasets, test split of a seeded split: (a) one
    /// holistic check, (b) five generic checks, (c) the set discovery writes from the train
    /// split, (d) that set after each round of the loop with an expert simulated from the train
    /// labels. A table per dataset on stderr, JSON on stdout.
    Quality(BenchQualityArgs),
}

#[derive(Debug, Args)]
pub struct BenchQualityArgs {
    /// The model in every language role (judge, annotator, check writer, generator).
    #[arg(long, env = "ASSAY_JUDGE_MODEL", default_value = "smollm2")]
    pub judge: String,
    /// Embedding model (discovery's error clustering, refine's rationale clusters).
    #[arg(long, env = "ASSAY_EMBED_MODEL", default_value = "minilm")]
    pub embed_model: String,
    /// Datasets, in order: llmbar (pairwise accuracy), ifeval (every instruction followed, per
    /// the official verifier), medec (the note is free of the injected error), kqa (the answer
    /// states every must-have statement physicians checked; also Spearman against its recall).
    #[arg(long, env = "ASSAY_BENCH_DATASETS", value_delimiter = ',', default_value = "llmbar,ifeval,medec,kqa")]
    pub datasets: Vec<String>,
    /// The folder of the labelled datasets.
    #[arg(long, env = "ASSAY_BENCH_DATA", default_value = "../shared/data")]
    pub data: PathBuf,
    /// Outputs per dataset (LLMBar: pairs); the others take half acceptable, half not (K-QA has
    /// 11 acceptable answers in all).
    #[arg(long, env = "ASSAY_BENCH_ITEMS", default_value_t = 40)]
    pub items: usize,
    /// Seed of the train/test split (and of discovery and refinement).
    #[arg(long, env = "ASSAY_BENCH_SPLIT_SEED", default_value_t = 1)]
    pub split_seed: u64,
    /// Share of the inputs held out for the test split, in (0, 1); rounded per stratum, and each
    /// stratum of two or more groups keeps at least one in each split.
    #[arg(long, env = "ASSAY_BENCH_TEST_SHARE", default_value_t = 0.5)]
    pub test_share: f64,
    /// Rounds of the loop for (d).
    #[arg(long, env = "ASSAY_BENCH_ROUNDS", default_value_t = 2)]
    pub rounds: usize,
    /// Show the judge one accepted and one rejected train output (the expert's verdicts and
    /// notes) in the loop's train runs and probes, the "c few-shot" row and a "d few-shot" row
    /// per kept round; figures on train leave them out.
    #[arg(long, env = "ASSAY_BENCH_FEW_SHOT")]
    pub few_shot: bool,
    /// Checks discovery keeps for (c).
    #[arg(long, env = "ASSAY_BENCH_CHECKS", default_value_t = 5)]
    pub checks: usize,
    /// Most tokens of discovery's one generator (its outputs are annotated beside the train split's own).
    #[arg(long, env = "ASSAY_BENCH_GENERATOR_TOKENS", default_value_t = 96)]
    pub generator_tokens: usize,
    /// Where the scratch store goes (kept); default: a temporary folder, removed at the end.
    #[arg(long, env = "ASSAY_BENCH_WORK_DIR")]
    pub work_dir: Option<PathBuf>,
    /// Also write the JSON result to this file.
    #[arg(long, env = "ASSAY_BENCH_OUT")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub options: JudgeOptionArgs,
}

#[derive(Debug, Args)]
pub struct BenchJudgeArgs {
    /// Judge model to measure.
    #[arg(long, env = "ASSAY_JUDGE_MODEL", default_value = "smollm2")]
    pub model: String,
    /// j1: one K-QA context and 25 checks from its must-have statements; j2: 64 K-QA answers
    /// x the 25 checks of --j2-checks; j3: a population, 8 candidate outputs for one K-QA
    /// input (with context) x the same 25 checks.
    #[arg(long, env = "ASSAY_BENCH_WORKLOAD", default_value = "j1", value_parser = ["j1", "j2", "j3"])]
    pub workload: String,
    /// K-QA questions file the contexts (and J1's checks) are made from.
    #[arg(long, env = "ASSAY_BENCH_KQA", default_value = "../shared/data/kqa/questions_w_answers.jsonl")]
    pub kqa: PathBuf,
    /// Evaluator set of J2.
    #[arg(long, env = "ASSAY_BENCH_J2_CHECKS", default_value = "examples/medical_answer_checks.json")]
    pub j2_checks: PathBuf,
    /// Timed runs of each mode; the median is reported.
    #[arg(long, env = "ASSAY_BENCH_REPEATS", default_value_t = 3)]
    pub repeats: usize,
    /// Modes to run, in order (naive, prefix_reuse, packed, packed_unshared_inputs: packed with
    /// every item's input made distinct); the first is the reference for p_pass. Default:
    /// naive,prefix_reuse,packed for J1; prefix_reuse,packed for J2 (naive J2 is 1,600 full
    /// prompts); packed,packed_unshared_inputs for J3.
    #[arg(long, env = "ASSAY_BENCH_MODES", value_delimiter = ',')]
    pub modes: Option<Vec<String>>,
    /// Write J1's token ids (prefix, suffixes, labels) to this JSON file, for peers.
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
pub struct BenchAttentionArgs {
    /// Query heads (12: Qwen2.5-1.5B).
    #[arg(long, env = "ASSAY_BENCH_HEADS", default_value_t = 12)]
    pub heads: usize,
    /// Key/value heads.
    #[arg(long, env = "ASSAY_BENCH_KV_HEADS", default_value_t = 2)]
    pub kv_heads: usize,
    /// Head size (64, 128 or 256).
    #[arg(long, env = "ASSAY_BENCH_HEAD_DIM", default_value_t = 128)]
    pub head_dim: usize,
    /// Tokens of the prefix every sequence shares (a judge's instructions and item).
    #[arg(long, env = "ASSAY_BENCH_PREFIX", default_value_t = 1024)]
    pub prefix: usize,
    /// Sequences (checks), each with its own suffix.
    #[arg(long, env = "ASSAY_BENCH_SEQUENCES", default_value_t = 25)]
    pub sequences: usize,
    /// Suffix rows per sequence to measure (1 is a decode step).
    #[arg(long, env = "ASSAY_BENCH_ROWS", value_delimiter = ',', default_value = "1,64")]
    pub rows: Vec<usize>,
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
