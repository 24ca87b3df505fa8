//! The engine: one thread per loaded model, fed by a channel. Callers never drive a model;
//! they send requests and get results back:
//!
//! - `generate`: prompts (a request's choices) whose text streams back as `GenEvent`s;
//! - `judge`: items x checks in any mode, with progress, as `JudgeEvent`s;
//! - `embed`: sentence embeddings, where the model embeds.
//!
//! The thread owns the model's scheduler (KV pool, radix tree): every request's sequences join
//! the same steps. Between steps it takes new requests, drops those whose caller stopped
//! listening or whose deadline passed (their blocks are freed at once), and starts the next
//! units of judge requests. A request that can never fit (prompt and output over the context
//! or the KV pool) is refused when it is sent, naming the limit; a full pool makes requests
//! wait or preempts, never fails them. Requests admitted as `Admission::Queued` (HTTP clients)
//! count against `max_queue` and are refused beyond it; `Background` ones (the server's own
//! pipeline work) are never refused. Requests a client waits on (`Priority::Interactive`: HTTP
//! requests, and pipeline work a request waits for) start before waiting background work. A
//! panic inside a step fails the requests of that step and the engine goes on with a fresh
//! pool.
//!
//! The request channels are tokio's, so both async callers (the server) and blocking ones (the
//! CLI, the pipeline's local backend: the `*_blocking` helpers) can wait on them.

use crate::embed::Embedder;
use crate::error::{EngineError, Result};
use crate::judge::{JudgeJob, Labels};
use crate::kv_pool::KvPool;
use crate::language_model::LanguageModel;
pub use crate::scheduler::Priority;
use crate::scheduler::{Scheduler, SchedulerConfig, SchedulerStats};
use crate::sequence::{Owner, SeqOutput, Sequence};
use assay_core::{Check, Generation, JudgeItem, JudgeOptions, Judgment, SamplingParams, TokenLogprob};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Instant;
use tokio::sync::{mpsc as tmpsc, oneshot};

/// Default KV pool per model.
pub const DEFAULT_KV_CACHE_MB: usize = 1024;
/// Default tokens per step: large enough to keep the CPU's matmuls efficient, small enough
/// that a step of judge work does not stall streams for long.
pub const DEFAULT_STEP_TOKENS: usize = 2048;
/// Units of one judge request in flight at once: enough to fill several steps.
const JUDGE_WINDOW: usize = 512;

/// How an engine runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineConfig {
    /// Bytes of the KV pool.
    pub kv_cache_bytes: usize,
    pub step_tokens: usize,
    /// `Queued` requests waiting or running before more are refused.
    pub max_queue: usize,
    pub prefix_sharing: bool,
}

impl EngineConfig {
    /// Many concurrent sequences, prefixes shared (every engine: a row's arithmetic does not
    /// depend on the rows beside it, so one sequence alone computes the same).
    pub fn batched(kv_cache_bytes: usize) -> Self {
        Self { kv_cache_bytes, step_tokens: DEFAULT_STEP_TOKENS, max_queue: usize::MAX, prefix_sharing: true }
    }
}

/// Whether a request counts against the queue limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// An HTTP client's request: refused (`Overloaded`) when `max_queue` requests wait or run.
    Queued,
    /// The server's own work: never refused, never counted.
    Background,
}

/// When a request gives up, how it is admitted, and whether a client waits on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestOptions {
    pub deadline: Option<Instant>,
    pub admission: Admission,
    pub priority: Priority,
}

impl Default for RequestOptions {
    fn default() -> Self {
        Self { deadline: None, admission: Admission::Background, priority: Priority::Background }
    }
}

/// What a generation request hears, per choice `index`.
#[derive(Debug)]
pub enum GenEvent {
    /// New text, and the log-probabilities of the tokens sampled since the previous event.
    Text {
        index: usize,
        text: String,
        logprobs: Vec<TokenLogprob>,
    },
    Finished {
        index: usize,
        generation: Generation,
    },
    /// The whole request failed; nothing follows.
    Failed(EngineError),
}

/// What a judge request hears.
#[derive(Debug)]
pub enum JudgeEvent {
    /// Judgments complete so far, of `total`.
    Progress { done: usize, total: usize },
    /// Per item its judgments in check order; nothing follows.
    Done(Result<Vec<Vec<Judgment>>>),
}

/// Figures of an engine, for `/metrics` and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EngineStats {
    pub scheduler: SchedulerStats,
    /// Requests waiting or running (all admissions).
    pub requests: usize,
    pub generated_tokens: u64,
    pub judge_checks: u64,
}

/// Sentence embeddings of some texts.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    /// One unit vector per text.
    pub vectors: Vec<Vec<f32>>,
    /// Tokens of all texts (what embedding them cost).
    pub tokens: usize,
    /// Positions of the texts longer than the model's window of `window` tokens, which were
    /// truncated.
    pub truncated: Vec<usize>,
    pub window: usize,
}

/// The model an engine runs.
pub enum EngineModel {
    /// Shared, so that several engines (tests, benchmarks) can run one loaded model.
    Language(Arc<LanguageModel>),
    Embedding(Box<Embedder>),
}

struct Shared {
    name: String,
    language: Option<Arc<LanguageModel>>,
    config: EngineConfig,
    /// Tokens the KV pool holds (0 for embedders).
    capacity_tokens: usize,
    queued: AtomicUsize,
    requests: AtomicUsize,
    stats: Mutex<EngineStats>,
    /// False once the thread has ended (every handle dropped, a panic outside a step, or a
    /// pool that could not be rebuilt): a server then stops so that its supervisor restarts it.
    alive: AtomicBool,
}

/// Marks the engine dead when its thread ends, however it ends.
struct AliveGuard(Arc<Shared>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.alive.store(false, Ordering::Release);
    }
}

/// A counted place in the queue, freed when the request ends.
struct QueueSlot(Option<Arc<Shared>>);

impl Drop for QueueSlot {
    fn drop(&mut self) {
        if let Some(s) = &self.0 {
            s.queued.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

enum Command {
    Generate {
        choices: Vec<(Vec<u32>, SamplingParams, usize)>,
        events: tmpsc::UnboundedSender<GenEvent>,
        options: RequestOptions,
        slot: QueueSlot,
    },
    Judge {
        job: Box<JudgeJob>,
        events: tmpsc::UnboundedSender<JudgeEvent>,
        options: RequestOptions,
        slot: QueueSlot,
    },
    Embed {
        texts: Vec<String>,
        reply: oneshot::Sender<Result<Embeddings>>,
    },
    /// Drops every prefix no sequence uses (benchmarks that must start cold).
    ClearPrefixes {
        done: oneshot::Sender<()>,
    },
}

/// A handle to an engine thread; cheap to clone. The thread ends once every handle is dropped
/// and its last request has finished.
#[derive(Clone)]
pub struct Engine {
    shared: Arc<Shared>,
    commands: mpsc::Sender<Command>,
}

impl Engine {
    /// Starts the thread of `model`.
    pub fn start(model: EngineModel, config: EngineConfig) -> Result<Self> {
        let (commands, inbox) = mpsc::channel();
        let shared = match model {
            EngineModel::Language(lm) => {
                let pool = new_pool(&lm, config)?;
                let shared = Shared::new(lm.name.clone(), Some(lm.clone()), config, pool.capacity_tokens());
                spawn(&shared, move |shared| Worker::new(lm, pool, shared).run(&inbox))?;
                shared
            }
            EngineModel::Embedding(embedder) => {
                let shared = Shared::new(embedder.name.clone(), None, config, 0);
                spawn(&shared, move |_| run_embedder(&embedder, &inbox))?;
                shared
            }
        };
        Ok(Self { shared, commands })
    }

    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Whether the engine thread still runs (see `Shared::alive`).
    pub fn is_alive(&self) -> bool {
        self.shared.alive.load(Ordering::Acquire)
    }

    /// The language model (tokenizer, chat template, configuration), or `None` for embedders.
    pub fn language_model(&self) -> Option<&Arc<LanguageModel>> {
        self.shared.language.as_ref()
    }

    fn language(&self, what: &'static str) -> Result<&Arc<LanguageModel>> {
        self.shared.language.as_ref().ok_or_else(|| EngineError::Unsupported { model: self.shared.name.clone(), what })
    }

    pub fn stats(&self) -> EngineStats {
        EngineStats { requests: self.shared.requests.load(Ordering::Acquire), ..*self.shared.stats.lock().expect("stats lock") }
    }

    /// Tokens the KV pool holds.
    pub fn kv_capacity_tokens(&self) -> usize {
        self.shared.capacity_tokens
    }

    fn slot(&self, admission: Admission) -> Result<QueueSlot> {
        if admission == Admission::Background {
            return Ok(QueueSlot(None));
        }
        let limit = self.shared.config.max_queue;
        let taken = self.shared.queued.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < limit).then_some(n + 1));
        match taken {
            Ok(_) => Ok(QueueSlot(Some(self.shared.clone()))),
            Err(_) => Err(EngineError::Overloaded { model: self.shared.name.clone(), limit }),
        }
    }

    fn send(&self, command: Command) -> Result<()> {
        self.commands.send(command).map_err(|_| EngineError::EngineStopped(self.shared.name.clone()))
    }

    /// Checks a prompt and its parameters as `generate` would, without sending anything:
    /// valid parameters, token ids in the vocabulary, room in the context for at least one new
    /// token, and prompt plus output within the KV pool. Returns the tokens it may generate.
    pub fn check_prompt(&self, prompt: &[u32], params: &SamplingParams) -> Result<usize> {
        let lm = self.language("generate")?;
        params.validate()?;
        if prompt.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        let vocab = lm.model.config().vocab_size;
        if let Some(&bad) = prompt.iter().find(|&&t| t as usize >= vocab) {
            return Err(EngineError::Tokenizer { model: lm.name.clone(), reason: format!("token id {bad} is outside the vocabulary of {vocab}") });
        }
        let limit = lm.context_length();
        if prompt.len() >= limit {
            return Err(EngineError::ContextOverflow { tokens: prompt.len(), reserved: 1, limit });
        }
        let max_new = params.max_tokens.min(limit - prompt.len());
        if prompt.len() + max_new > self.shared.capacity_tokens {
            return Err(EngineError::ExceedsKvCache { tokens: prompt.len() + max_new, capacity: self.shared.capacity_tokens });
        }
        Ok(max_new)
    }

    /// Queues the choices of one request (each a prompt and its parameters); events arrive on
    /// the returned channel. Dropping the receiver cancels the request.
    pub fn generate(&self, choices: Vec<(Vec<u32>, SamplingParams)>, options: RequestOptions) -> Result<tmpsc::UnboundedReceiver<GenEvent>> {
        let choices = choices
            .into_iter()
            .map(|(prompt, params)| {
                let max_new = self.check_prompt(&prompt, &params)?;
                Ok((prompt, params, max_new))
            })
            .collect::<Result<Vec<_>>>()?;
        let slot = self.slot(options.admission)?;
        let (events, receiver) = tmpsc::unbounded_channel();
        self.send(Command::Generate { choices, events, options, slot })?;
        Ok(receiver)
    }

    /// Queues a judge request: every check asked of every item. Builds the prompts on the
    /// calling thread. Dropping the receiver cancels the request.
    pub fn judge(&self, items: &[JudgeItem], checks: Vec<Check>, labels: &Labels, options: JudgeOptions, request: RequestOptions) -> Result<tmpsc::UnboundedReceiver<JudgeEvent>> {
        let lm = self.language("judge")?;
        let limit = lm.context_length().min(self.shared.capacity_tokens);
        let job = JudgeJob::new(lm, items, checks, labels, options, limit)?;
        let slot = self.slot(request.admission)?;
        let (events, receiver) = tmpsc::unbounded_channel();
        self.send(Command::Judge { job: Box::new(job), events, options: request, slot })?;
        Ok(receiver)
    }

    /// Embeds `texts` (embedding models only).
    pub fn embed(&self, texts: Vec<String>) -> Result<oneshot::Receiver<Result<Embeddings>>> {
        if self.shared.language.is_some() {
            return Err(EngineError::Unsupported { model: self.shared.name.clone(), what: "embed" });
        }
        let (reply, receiver) = oneshot::channel();
        self.send(Command::Embed { texts, reply })?;
        Ok(receiver)
    }

    /// Drops every computed prefix no running sequence holds, and waits until it is done: the
    /// next request computes its prompt from scratch (benchmarks).
    pub fn clear_prefix_cache(&self) -> Result<()> {
        let (done, wait) = oneshot::channel();
        self.send(Command::ClearPrefixes { done })?;
        wait.blocking_recv().map_err(|_| EngineError::EngineStopped(self.shared.name.clone()))
    }

    /// Generates from one prompt on the calling thread (not inside an async runtime).
    /// `on_text` receives each new piece of text; returning `false` cancels, and the call
    /// returns `None`.
    pub fn generate_blocking(&self, prompt: Vec<u32>, params: SamplingParams, on_text: &mut dyn FnMut(&str) -> bool) -> Result<Option<Generation>> {
        let mut events = self.generate(vec![(prompt, params)], RequestOptions::default())?;
        loop {
            match events.blocking_recv() {
                Some(GenEvent::Text { text, .. }) => {
                    if !on_text(&text) {
                        return Ok(None);
                    }
                }
                Some(GenEvent::Finished { generation, .. }) => return Ok(Some(generation)),
                Some(GenEvent::Failed(e)) => return Err(e),
                None => return Err(EngineError::EngineStopped(self.shared.name.clone())),
            }
        }
    }

    /// Generates from many prompts together on the calling thread; one answer per prompt (a
    /// prompt the engine refuses is its own failed answer). `progress` gets answers so far.
    pub fn generate_many_blocking(&self, prompts: Vec<(Vec<u32>, SamplingParams)>, progress: &mut dyn FnMut(usize)) -> Result<Vec<Result<Generation>>> {
        let mut answers: Vec<Option<Result<Generation>>> = (0..prompts.len()).map(|_| None).collect();
        let mut valid = Vec::new();
        let mut index = Vec::new();
        for (i, (prompt, params)) in prompts.into_iter().enumerate() {
            match self.check_prompt(&prompt, &params) {
                Ok(_) => {
                    index.push(i);
                    valid.push((prompt, params));
                }
                Err(e) => answers[i] = Some(Err(e)),
            }
        }
        let mut done = answers.iter().filter(|a| a.is_some()).count();
        if !valid.is_empty() {
            let mut events = self.generate(valid, RequestOptions::default())?;
            let mut left = index.len();
            while left > 0 {
                match events.blocking_recv() {
                    Some(GenEvent::Text { .. }) => {}
                    Some(GenEvent::Finished { index: k, generation }) => {
                        answers[index[k]] = Some(Ok(generation));
                        left -= 1;
                        done += 1;
                        progress(done);
                    }
                    Some(GenEvent::Failed(e)) => return Err(e),
                    None => return Err(EngineError::EngineStopped(self.shared.name.clone())),
                }
            }
        }
        Ok(answers.into_iter().map(|a| a.expect("every prompt answered")).collect())
    }

    /// Judges on the calling thread; `progress` gets judgments done so far.
    pub fn judge_blocking(&self, items: &[JudgeItem], checks: Vec<Check>, labels: &Labels, options: JudgeOptions, progress: &mut dyn FnMut(usize)) -> Result<Vec<Vec<Judgment>>> {
        let mut events = self.judge(items, checks, labels, options, RequestOptions::default())?;
        loop {
            match events.blocking_recv() {
                Some(JudgeEvent::Progress { done, .. }) => progress(done),
                Some(JudgeEvent::Done(result)) => return result,
                None => return Err(EngineError::EngineStopped(self.shared.name.clone())),
            }
        }
    }

    /// Embeds on the calling thread.
    pub fn embed_blocking(&self, texts: Vec<String>) -> Result<Embeddings> {
        self.embed(texts)?.blocking_recv().map_err(|_| EngineError::EngineStopped(self.shared.name.clone()))?
    }
}

fn new_pool(lm: &LanguageModel, config: EngineConfig) -> Result<KvPool> {
    KvPool::new(lm.model.kv_layout(), config.kv_cache_bytes, lm.model.device(), lm.model.wants_cpu_blocks())
}

impl Shared {
    fn new(name: String, language: Option<Arc<LanguageModel>>, config: EngineConfig, capacity_tokens: usize) -> Arc<Self> {
        Arc::new(Self { name, language, config, capacity_tokens, queued: AtomicUsize::new(0), requests: AtomicUsize::new(0), stats: Mutex::new(EngineStats::default()), alive: AtomicBool::new(true) })
    }
}

fn spawn(shared: &Arc<Shared>, work: impl FnOnce(Arc<Shared>) + Send + 'static) -> Result<()> {
    let (name, thread_shared) = (shared.name.clone(), shared.clone());
    std::thread::Builder::new()
        .name(format!("engine-{name}"))
        .spawn(move || {
            let _alive = AliveGuard(thread_shared.clone());
            work(thread_shared)
        })
        .map(|_| ())
        .map_err(|e| EngineError::Internal(format!("cannot start the engine thread of {name}: {e}")))
}

/// Hands memory freed by a burst (activations, request buffers) back to the system; the engine
/// calls it when it goes idle, the server when no request is in flight: glibc keeps freed
/// memory in its arenas otherwise, and a server's resident size would stay at its peak. Cheap
/// when nothing is free.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of the allocator's arenas to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn run_embedder(embedder: &Embedder, inbox: &mpsc::Receiver<Command>) {
    while let Ok(command) = inbox.recv() {
        match command {
            Command::Embed { texts, reply } => {
                let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                let embedded = || -> Result<Embeddings> {
                    let (tokens, truncated) = embedder.usage(&refs)?;
                    Ok(Embeddings { vectors: embedder.embed(&refs)?, tokens, truncated, window: embedder.window() })
                };
                let _ = reply.send(embedded());
            }
            Command::ClearPrefixes { done } => {
                let _ = done.send(());
            }
            // Refused when sent (`Engine::generate` and `judge` check the model first).
            Command::Generate { .. } | Command::Judge { .. } => {}
        }
        release_freed_memory();
    }
}

/// A request in progress on the engine thread.
struct Request {
    kind: RequestKind,
    priority: Priority,
    deadline: Option<Instant>,
    started: Instant,
    _slot: QueueSlot,
}

/// Events a pass over the outputs of a step (or a reaping) produced, and the requests that
/// failed, told once the figures are published.
#[derive(Default)]
struct Mail {
    generate: Vec<(tmpsc::UnboundedSender<GenEvent>, GenEvent)>,
    judge: Vec<(tmpsc::UnboundedSender<JudgeEvent>, JudgeEvent)>,
    failed: Vec<(Request, EngineError)>,
}

enum RequestKind {
    Generate { events: tmpsc::UnboundedSender<GenEvent>, remaining: usize },
    Judge { job: Box<JudgeJob>, events: tmpsc::UnboundedSender<JudgeEvent>, reported: usize },
}

impl Request {
    fn abandoned(&self) -> bool {
        match &self.kind {
            RequestKind::Generate { events, .. } => events.is_closed(),
            RequestKind::Judge { events, .. } => events.is_closed(),
        }
    }

    /// Tells the caller the request failed, its queue slot freed first (a caller that retries at
    /// once finds it free).
    fn fail(self, error: EngineError) {
        let Request { kind, _slot, .. } = self;
        drop(_slot);
        match kind {
            RequestKind::Generate { events, .. } => {
                let _ = events.send(GenEvent::Failed(error));
            }
            RequestKind::Judge { events, .. } => {
                let _ = events.send(JudgeEvent::Done(Err(error)));
            }
        }
    }
}

/// The engine thread of a language model.
struct Worker {
    lm: Arc<LanguageModel>,
    scheduler: Scheduler,
    requests: HashMap<u64, Request>,
    next_request: u64,
    shared: Arc<Shared>,
    generated: u64,
    judged: u64,
}

impl Worker {
    fn new(lm: Arc<LanguageModel>, pool: KvPool, shared: Arc<Shared>) -> Self {
        let c = shared.config;
        let scheduler = Scheduler::new(pool, SchedulerConfig { step_tokens: c.step_tokens, prefix_sharing: c.prefix_sharing });
        Self { lm, scheduler, requests: HashMap::new(), next_request: 0, shared, generated: 0, judged: 0 }
    }

    fn run(mut self, inbox: &mpsc::Receiver<Command>) {
        loop {
            // Idle: block for work; busy: take whatever arrived since the last step.
            if self.scheduler.is_idle() && self.requests.is_empty() {
                release_freed_memory();
                match inbox.recv() {
                    Ok(command) => self.take(command),
                    Err(_) => return,
                }
            }
            while let Ok(command) = inbox.try_recv() {
                self.take(command);
            }
            self.reap();
            self.feed_judges();
            if !self.scheduler.is_idle() && !self.step() {
                return;
            }
            self.publish();
        }
    }

    fn take(&mut self, command: Command) {
        let id = self.next_request;
        self.next_request += 1;
        match command {
            Command::Generate { choices, events, options: RequestOptions { deadline, priority, .. }, slot } => {
                self.requests.insert(id, Request { kind: RequestKind::Generate { events, remaining: choices.len() }, priority, deadline, started: Instant::now(), _slot: slot });
                let mut outputs = Vec::new();
                for (index, (prompt, params, max_new)) in choices.into_iter().enumerate() {
                    outputs.extend(self.scheduler.add(Sequence::generate(Owner { request: id, index }, prompt, params, max_new, false), priority));
                }
                self.route(outputs);
            }
            Command::Judge { job, events, options: RequestOptions { deadline, priority, .. }, slot } => {
                let total = job.total();
                let _ = events.send(JudgeEvent::Progress { done: 0, total });
                self.requests.insert(id, Request { kind: RequestKind::Judge { job, events, reported: 0 }, priority, deadline, started: Instant::now(), _slot: slot });
                let mut mail = Mail::default();
                self.finish_judge_if_done(id, &mut mail);
                self.deliver(mail);
            }
            Command::Embed { reply, .. } => {
                let _ = reply.send(Err(EngineError::Unsupported { model: self.lm.name.clone(), what: "embed" }));
            }
            Command::ClearPrefixes { done } => {
                self.scheduler.clear_prefixes();
                let _ = done.send(());
            }
        }
        self.shared.requests.store(self.requests.len(), Ordering::Release);
    }

    /// Drops requests whose caller is gone or whose deadline passed.
    fn reap(&mut self) {
        let now = Instant::now();
        let gone: Vec<u64> = self.requests.iter().filter(|(_, r)| r.abandoned() || r.deadline.is_some_and(|d| now > d)).map(|(&id, _)| id).collect();
        let mut mail = Mail::default();
        for id in gone {
            self.scheduler.cancel(id);
            if let Some(r) = self.requests.remove(&id) {
                let seconds = r.deadline.map_or(0, |d| d.saturating_duration_since(r.started).as_secs_f64().round() as u64);
                mail.failed.push((r, EngineError::Timeout { seconds }));
            }
        }
        self.deliver(mail);
    }

    fn feed_judges(&mut self) {
        for (&id, request) in self.requests.iter_mut() {
            if let RequestKind::Judge { job, .. } = &mut request.kind {
                for seq in job.start_units(id, JUDGE_WINDOW) {
                    let finished = self.scheduler.add(seq, request.priority);
                    debug_assert!(finished.is_empty(), "judge sequences always want a pass");
                }
            }
        }
    }

    /// One scheduler step; false when the engine cannot go on.
    fn step(&mut self) -> bool {
        let lm = self.lm.clone();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.scheduler.step(&lm)));
        match result {
            Ok(Ok(outputs)) => self.route(outputs),
            Ok(Err(e)) => {
                tracing::error!("step of {} failed: {e}", self.lm.name);
                self.fail_all(&e.to_string());
            }
            Err(panic) => {
                let message = panic.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| panic.downcast_ref::<String>().cloned()).unwrap_or_else(|| "unknown panic".into());
                tracing::error!("step of {} panicked: {message}", self.lm.name);
                self.fail_all(&format!("the engine step panicked: {message}"));
                // The pool and tree may be half-updated: start over with fresh ones.
                match new_pool(&self.lm, self.shared.config) {
                    Ok(pool) => {
                        let c = self.shared.config;
                        self.scheduler = Scheduler::new(pool, SchedulerConfig { step_tokens: c.step_tokens, prefix_sharing: c.prefix_sharing });
                    }
                    Err(e) => {
                        tracing::error!("cannot rebuild the KV pool of {}, stopping its engine: {e}", self.lm.name);
                        return false;
                    }
                }
            }
        }
        true
    }

    /// Fails every request after a step that could not run.
    fn fail_all(&mut self, message: &str) {
        self.scheduler.clear();
        let failed = self.requests.drain().map(|(_, r)| (r, EngineError::Internal(message.to_string()))).collect();
        self.deliver(Mail { failed, ..Mail::default() });
    }

    /// Sends sequence outputs to their requests, feeds judge jobs, ends finished requests.
    fn route(&mut self, outputs: Vec<SeqOutput>) {
        let mut mail = Mail::default();
        let mut touched = Vec::new();
        for output in outputs {
            let owner = match &output {
                SeqOutput::Text { owner, .. } | SeqOutput::Finished { owner, .. } | SeqOutput::Scored { owner, .. } => *owner,
            };
            let Some(request) = self.requests.get_mut(&owner.request) else { continue };
            match &mut request.kind {
                RequestKind::Generate { events, remaining } => {
                    let event = match output {
                        SeqOutput::Text { text, logprobs, .. } => GenEvent::Text { index: owner.index, text, logprobs },
                        SeqOutput::Finished { generation, .. } => {
                            self.generated += generation.token_ids.len() as u64;
                            *remaining -= 1;
                            GenEvent::Finished { index: owner.index, generation }
                        }
                        SeqOutput::Scored { .. } => continue,
                    };
                    mail.generate.push((events.clone(), event));
                    if *remaining == 0 {
                        self.requests.remove(&owner.request);
                    }
                }
                RequestKind::Judge { job, .. } => {
                    match job.on_output(&self.lm, output) {
                        Ok(next) => {
                            for seq in next {
                                self.scheduler.add(seq, request.priority);
                            }
                        }
                        Err(e) => {
                            self.scheduler.cancel(owner.request);
                            if let Some(r) = self.requests.remove(&owner.request) {
                                mail.failed.push((r, e));
                            }
                            continue;
                        }
                    }
                    touched.push(owner.request);
                }
            }
        }
        touched.dedup();
        for id in touched {
            self.finish_judge_if_done(id, &mut mail);
        }
        self.deliver(mail);
    }

    /// Reports a judge request's progress, and its result once complete.
    fn finish_judge_if_done(&mut self, id: u64, mail: &mut Mail) {
        let Some(Request { kind: RequestKind::Judge { job, events, reported }, .. }) = self.requests.get_mut(&id) else { return };
        if job.done() > *reported {
            *reported = job.done();
            mail.judge.push((events.clone(), JudgeEvent::Progress { done: job.done(), total: job.total() }));
        }
        if job.is_complete() {
            let Some(Request { kind: RequestKind::Judge { job, events, .. }, .. }) = self.requests.remove(&id) else { return };
            self.judged += job.total() as u64;
            mail.judge.push((events, JudgeEvent::Done(Ok(job.into_judgments()))));
        }
    }

    /// Publishes the figures, then sends the events: a caller woken by its result (and reading
    /// `/metrics` next) finds its request already counted as done.
    fn deliver(&self, mail: Mail) {
        self.shared.requests.store(self.requests.len(), Ordering::Release);
        self.publish();
        for (to, event) in mail.generate {
            let _ = to.send(event);
        }
        for (to, event) in mail.judge {
            let _ = to.send(event);
        }
        for (request, error) in mail.failed {
            request.fail(error);
        }
    }

    fn publish(&self) {
        let stats = EngineStats { scheduler: self.scheduler.stats(), requests: self.requests.len(), generated_tokens: self.generated, judge_checks: self.judged };
        *self.shared.stats.lock().expect("stats lock") = stats;
    }
}

#[cfg(test)]
mod tests {
    //! The scheduler's promises, on tiny random-weight models (fast; the same tests run end to
    //! end on the real SmolLM2 in `tests/`).
    use super::*;
    use crate::chat::ChatMessage;
    use crate::judge::{judge_prompts, score_alone};
    use crate::registry::ModelResolver;
    use assay_core::JudgeMode;
    use candle_core::Device;

    fn tiny(preset: &str) -> LanguageModel {
        let files = ModelResolver::default().resolve(&format!("random:{preset}:1")).unwrap();
        LanguageModel::load(preset, &files, &Device::Cpu).unwrap()
    }

    fn engine(preset: &str, kv_blocks: usize, step_tokens: usize) -> Engine {
        let lm = tiny(preset);
        let bytes = kv_blocks * lm.model.kv_layout().bytes_per_block();
        Engine::start(EngineModel::Language(Arc::new(lm)), EngineConfig { step_tokens, ..EngineConfig::batched(bytes) }).unwrap()
    }

    fn chat(e: &Engine, system: &str, user: &str) -> Vec<u32> {
        e.language_model().unwrap().chat_prompt(&[ChatMessage::new("system", system), ChatMessage::new("user", user)]).unwrap()
    }

    fn sampled(seed: u64, max_tokens: usize) -> SamplingParams {
        SamplingParams { temperature: 0.9, top_p: 0.95, seed: Some(seed), logprobs: true, max_tokens, ..SamplingParams::default() }
    }

    /// Collects every choice's streamed text and final generation.
    fn collect(mut events: tmpsc::UnboundedReceiver<GenEvent>, n: usize) -> Vec<(String, Generation)> {
        let mut texts = vec![String::new(); n];
        let mut done: Vec<Option<Generation>> = vec![None; n];
        while done.iter().any(Option::is_none) {
            match events.blocking_recv().expect("the engine answers") {
                GenEvent::Text { index, text, .. } => texts[index].push_str(&text),
                GenEvent::Finished { index, generation } => done[index] = Some(generation),
                GenEvent::Failed(e) => panic!("{e}"),
            }
        }
        texts.into_iter().zip(done.into_iter().map(Option::unwrap)).collect()
    }

    #[test]
    fn many_seeded_generations_through_a_small_pool_equal_each_run_alone() {
        // 24 sequences of up to ~70 tokens; the pool holds about 8 of them at once.
        let e = engine("tiny-llama", 26, 256);
        let prompts: Vec<Vec<u32>> = (0..24).map(|i| chat(&e, "You write.", &format!("Story number {i} about {}", ["a fox", "the sea", "tea"][i % 3]))).collect();
        let choices: Vec<(Vec<u32>, SamplingParams)> = prompts.iter().enumerate().map(|(i, p)| (p.clone(), sampled(i as u64, 40))).collect();
        let together = collect(e.generate(choices.clone(), RequestOptions::default()).unwrap(), choices.len());
        assert!(e.stats().scheduler.preemptions > 0, "the pool was meant to run out: {:?}", e.stats());
        let alone = engine("tiny-llama", 64, 256);
        for ((prompt, params), (streamed, g)) in choices.into_iter().zip(together) {
            let want = alone.generate_blocking(prompt, params, &mut |_| true).unwrap().unwrap();
            assert_eq!(g, want);
            assert_eq!(streamed, g.text, "streamed pieces add up to the text");
        }
        let s = e.stats().scheduler;
        assert_eq!((s.running, s.waiting), (0, 0));
        assert_eq!(s.pool.used, s.cached_blocks, "only the tree holds blocks once all is done");
    }

    #[test]
    fn chats_with_one_system_prompt_share_its_blocks_and_eviction_keeps_them_while_used() {
        let e = engine("tiny-llama", 64, 512);
        let system = "You are a careful assistant. ".repeat(8);
        let first = chat(&e, &system, "Hello there.");
        e.generate_blocking(first.clone(), SamplingParams::greedy(4), &mut |_| true).unwrap();
        let before = e.stats().scheduler;
        let second = chat(&e, &system, "Something else entirely.");
        let shared = first.iter().zip(&second).take_while(|(a, b)| a == b).count();
        assert!(shared >= 64, "{shared} common tokens");
        e.generate_blocking(second, SamplingParams::greedy(4), &mut |_| true).unwrap();
        let after = e.stats().scheduler;
        let reused = after.reused_tokens - before.reused_tokens;
        assert_eq!(reused as usize, shared / crate::kv_pool::BLOCK_SIZE * crate::kv_pool::BLOCK_SIZE + shared % crate::kv_pool::BLOCK_SIZE, "every common token reused, the last block copied");
    }

    fn checks() -> Vec<Check> {
        let c = |id: &str, q: &str| Check { id: id.into(), name: id.into(), question: q.into(), pass_criteria: String::new(), fail_examples: vec![], threshold: None };
        vec![c("a", "Is the answer short?"), c("b", "Does the answer mention tea?"), c("c", "Is it polite?")]
    }

    fn items() -> Vec<JudgeItem> {
        let long = "The patient should rest and drink fluids. ".repeat(6);
        (0..3).map(|i| JudgeItem { id: format!("i{i}"), input: format!("Question {i}: what helps a cold?"), output: format!("{long} Answer {i}."), context: None }).collect()
    }

    #[test]
    fn judging_through_the_pool_equals_each_full_prompt_alone() {
        for preset in ["tiny-llama", "tiny-gemma3"] {
            let e = engine(preset, 256, 512);
            let lm = e.language_model().unwrap().clone();
            let (items, checks, labels) = (items(), checks(), Labels::default());
            let judged = e.judge_blocking(&items, checks.clone(), &labels, JudgeOptions::default(), &mut |_| {}).unwrap();
            let prompts = judge_prompts(&lm, &items, &checks, &JudgeOptions::default()).unwrap();
            for (i, row) in judged.iter().enumerate() {
                for (c, j) in row.iter().enumerate() {
                    let alone = score_alone(&lm, &prompts.full(i, c), &labels).unwrap();
                    let diff = (alone.logprob_pass - j.logprob_pass).abs().max((alone.logprob_fail - j.logprob_fail).abs());
                    assert!(diff <= 1e-4, "{preset} {i}/{c}: {diff}");
                }
            }
            let s = e.stats().scheduler;
            assert!(s.reused_tokens > 0, "{preset}: {s:?}");
        }
    }

    #[test]
    fn checks_of_one_item_sent_separately_find_its_blocks() {
        let e = engine("tiny-llama", 256, 512);
        let lm = e.language_model().unwrap().clone();
        let (items, checks, labels) = (items(), checks(), Labels::default());
        let item_tokens = judge_prompts(&lm, &items[..1], &checks, &JudgeOptions::default()).unwrap();
        let prefix = item_tokens.instructions.len() + item_tokens.item(0).len();
        e.judge_blocking(&items[..1], checks[..1].to_vec(), &labels, JudgeOptions::default(), &mut |_| {}).unwrap();
        let before = e.stats().scheduler.reused_tokens;
        e.judge_blocking(&items[..1], checks[1..2].to_vec(), &labels, JudgeOptions::default(), &mut |_| {}).unwrap();
        let reused = (e.stats().scheduler.reused_tokens - before) as usize;
        // The second request's label sequences both find at least the item's prompt.
        assert!(reused >= 2 * prefix, "reused {reused} of a {prefix}-token item prefix");
    }

    #[test]
    fn rationale_and_sampled_modes_are_reproducible_and_ordered() {
        let e = engine("tiny-llama", 256, 512);
        let (items, checks, labels) = (items(), checks(), Labels::default());
        let options = JudgeOptions { mode: JudgeMode::Rationale, samples: 3, temperature: 0.8, rationale_tokens: 6, seed: 5, examples: Vec::new() };
        let a = e.judge_blocking(&items, checks.clone(), &labels, options.clone(), &mut |_| {}).unwrap();
        let fresh = engine("tiny-llama", 256, 64);
        let b = fresh.judge_blocking(&items, checks.clone(), &labels, options, &mut |_| {}).unwrap();
        assert_eq!(a, b, "the same judgments whatever the step size and what was cached");
        for (item, row) in items.iter().zip(&a) {
            for (check, j) in checks.iter().zip(row) {
                assert_eq!((j.item_id.as_str(), j.check_id.as_str()), (item.id.as_str(), check.id.as_str()));
                assert_eq!(j.samples.len(), 3);
                assert!(j.flip_rate.is_some());
            }
        }
    }

    #[test]
    fn refusals_name_the_limit_and_a_dropped_receiver_frees_the_blocks() {
        let e = engine("tiny-llama", 4, 512);
        let prompt = chat(&e, "s", "hi");
        let err = e.generate(vec![(prompt.clone(), SamplingParams::greedy(1000))], RequestOptions::default()).unwrap_err().to_string();
        assert!(err.contains("KV cache of 128 tokens"), "{err}");
        let queued = Engine::start(EngineModel::Language(Arc::new(tiny("tiny-llama"))), EngineConfig { max_queue: 1, ..EngineConfig::batched(1 << 20) }).unwrap();
        let held = queued.generate(vec![(prompt.clone(), SamplingParams::greedy(50))], RequestOptions { admission: Admission::Queued, ..RequestOptions::default() }).unwrap();
        let err = queued.generate(vec![(prompt.clone(), SamplingParams::greedy(5))], RequestOptions { admission: Admission::Queued, ..RequestOptions::default() }).unwrap_err();
        assert!(matches!(err, EngineError::Overloaded { limit: 1, .. }), "{err}");
        drop(held);
        // Once the engine has seen the cancellation, blocks are back and the slot is free.
        let g = queued.generate_blocking(prompt, SamplingParams::greedy(3), &mut |_| true).unwrap().unwrap();
        assert_eq!(g.token_ids.len(), 3);
        let s = queued.stats().scheduler;
        assert_eq!(s.pool.used, s.cached_blocks);
    }
}
