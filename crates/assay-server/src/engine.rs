//! One engine thread per loaded language model. The thread owns the model's batch and prefix
//! cache and is fed by a channel: generation requests join the running batch between steps
//! (continuous batching) and stream their events back on a tokio channel; judge requests are
//! worked through one item per step, so they share the thread with running streams. A request
//! whose receiver is gone (client disconnected) or whose deadline has passed is cancelled. Admission is a semaphore of `max_queue` permits: a request holds its
//! permit while it waits or runs, and is refused (429) when none is left.
//!
//! The server's own pipeline work (projects API runs) is admitted differently: it never takes
//! those permits, so background runs can neither fill the queue and get HTTP clients refused
//! nor be refused themselves. It has a window of its own (`BACKGROUND_WINDOW` sequences or
//! judge requests per model) that it waits for instead of being refused; each request holds
//! one permit from it until it ends, and never waits for a second one while holding the first,
//! so no set of requests can wait on each other. It has no deadline: it ends when done or
//! when its caller stops listening. HTTP requests join the same batch between steps, so they
//! share the engine with background work but are never starved by it: a background judge
//! request is one item, and the judge queue is first come, first served.

use crate::error::ApiError;
use crate::metrics::EngineMetrics;
use assay_core::{Check, Generation, JudgeItem, JudgeOptions, Judgment, SamplingParams, TokenLogprob};
use assay_engine::judge::{judge_items, Labels};
use assay_engine::{BatchConfig, BatchGenerator, LanguageModel, PrefixCache, SeqId, SequenceEvent};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc::UnboundedSender, oneshot, OwnedSemaphorePermit, Semaphore};

/// What a generation request hears from the engine, per choice `index`.
#[derive(Debug)]
pub enum GenEvent {
    Text {
        index: usize,
        piece: String,
        /// Of the tokens sampled since the previous event (empty unless asked for).
        logprobs: Vec<TokenLogprob>,
    },
    Finished {
        index: usize,
        generation: Generation,
    },
    /// The whole request failed; nothing follows.
    Failed(ApiError),
}

pub type JudgeResult = Result<Vec<Vec<Judgment>>, ApiError>;

enum Job {
    /// `deadline`: none for background work.
    Generate { choices: Vec<(Vec<u32>, SamplingParams)>, events: UnboundedSender<GenEvent>, deadline: Option<Instant>, permit: OwnedSemaphorePermit },
    Judge(JudgeWork),
}

/// Background (pipeline) sequences or judge requests running or queued at once per model:
/// enough to fill the batched matmuls, few enough to bound KV-cache memory (discovery alone
/// asks for items x generators answers).
pub const BACKGROUND_WINDOW: usize = 32;

/// Limits an engine enforces.
#[derive(Debug, Clone, Copy)]
pub struct EngineLimits {
    pub max_queue: usize,
    pub request_timeout: Duration,
    pub prefix_cache_bytes: usize,
}

/// The server's side of an engine thread.
pub struct Engine {
    pub lm: Arc<LanguageModel>,
    pub metrics: Arc<EngineMetrics>,
    jobs: mpsc::Sender<Job>,
    admission: Arc<Semaphore>,
    /// The window of the server's own pipeline work (see the module comment).
    background: Arc<Semaphore>,
    limits: EngineLimits,
}

impl Engine {
    /// Starts the engine thread of `lm`. The thread ends once every `Engine` handle is dropped
    /// and its last request has finished.
    pub fn start(lm: LanguageModel, limits: EngineLimits) -> std::io::Result<(Self, std::thread::JoinHandle<()>)> {
        let lm = Arc::new(lm);
        let metrics = Arc::new(EngineMetrics::default());
        let (jobs, inbox) = mpsc::channel();
        let thread = {
            let (lm, metrics) = (lm.clone(), metrics.clone());
            std::thread::Builder::new().name(format!("engine-{}", lm.name)).spawn(move || run(&lm, &inbox, &metrics, limits))?
        };
        let (admission, background) = (Arc::new(Semaphore::new(limits.max_queue)), Arc::new(Semaphore::new(BACKGROUND_WINDOW)));
        Ok((Self { lm, metrics, jobs, admission, background, limits }, thread))
    }

    pub fn name(&self) -> &str {
        &self.lm.name
    }

    /// Requests waiting or running.
    pub fn queue_depth(&self) -> usize {
        self.limits.max_queue - self.admission.available_permits()
    }

    fn admit(&self, n: usize) -> Result<OwnedSemaphorePermit, ApiError> {
        let overloaded = || ApiError::Overloaded { model: self.lm.name.clone(), limit: self.limits.max_queue, retry_after_s: 1 };
        let n = u32::try_from(n).map_err(|_| overloaded())?;
        self.admission.clone().try_acquire_many_owned(n).map_err(|_| overloaded())
    }

    fn send(&self, job: Job) -> Result<(), ApiError> {
        self.jobs.send(job).map_err(|_| ApiError::Unavailable("shutting down"))
    }

    /// Queues the choices of one request (each a prompt and its parameters, already checked
    /// with `assay_engine::batch::check_request`); events arrive on the returned channel.
    pub fn generate(&self, choices: Vec<(Vec<u32>, SamplingParams)>) -> Result<tokio::sync::mpsc::UnboundedReceiver<GenEvent>, ApiError> {
        let permit = self.admit(choices.len())?;
        self.queue_generation(choices, permit, Some(self.deadline()))
    }

    /// Queues a judge request: every check asked of every item.
    pub fn judge(&self, items: Vec<JudgeItem>, checks: Vec<Check>, labels: Labels, options: JudgeOptions) -> Result<oneshot::Receiver<JudgeResult>, ApiError> {
        options.validate()?;
        let permit = self.admit(1)?;
        self.queue_judging(items, checks, labels, options, permit, Some(self.deadline()))
    }

    /// Queues one background prompt (checked like `generate`'s) once the background window
    /// has room; no deadline.
    pub async fn generate_background(&self, prompt: Vec<u32>, params: SamplingParams) -> Result<tokio::sync::mpsc::UnboundedReceiver<GenEvent>, ApiError> {
        let permit = self.background_permit().await?;
        self.queue_generation(vec![(prompt, params)], permit, None)
    }

    /// Queues a background judge request once the background window has room; no deadline.
    pub async fn judge_background(&self, items: Vec<JudgeItem>, checks: Vec<Check>, labels: Labels, options: JudgeOptions) -> Result<oneshot::Receiver<JudgeResult>, ApiError> {
        options.validate()?;
        let permit = self.background_permit().await?;
        self.queue_judging(items, checks, labels, options, permit, None)
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.limits.request_timeout
    }

    async fn background_permit(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        // The semaphore is never closed; an error could only mean the engine is gone.
        self.background.clone().acquire_owned().await.map_err(|_| ApiError::Unavailable("shutting down"))
    }

    fn queue_generation(&self, choices: Vec<(Vec<u32>, SamplingParams)>, permit: OwnedSemaphorePermit, deadline: Option<Instant>) -> Result<tokio::sync::mpsc::UnboundedReceiver<GenEvent>, ApiError> {
        let (events, receiver) = tokio::sync::mpsc::unbounded_channel();
        self.send(Job::Generate { choices, events, deadline, permit })?;
        Ok(receiver)
    }

    fn queue_judging(&self, items: Vec<JudgeItem>, checks: Vec<Check>, labels: Labels, options: JudgeOptions, permit: OwnedSemaphorePermit, deadline: Option<Instant>) -> Result<oneshot::Receiver<JudgeResult>, ApiError> {
        let (reply, receiver) = oneshot::channel();
        self.send(Job::Judge(JudgeWork { items, checks, labels, options, reply, deadline, done: Vec::new(), _permit: permit }))?;
        Ok(receiver)
    }
}

/// A sequence of the batch and where its events go.
struct Live {
    index: usize,
    events: UnboundedSender<GenEvent>,
    deadline: Option<Instant>,
    /// Shared by the choices of one request: released when the last one ends.
    _permit: Arc<OwnedSemaphorePermit>,
}

fn run(lm: &LanguageModel, inbox: &mpsc::Receiver<Job>, metrics: &EngineMetrics, limits: EngineLimits) {
    let mut batch = BatchGenerator::new(lm, BatchConfig::batched());
    let mut prefixes = PrefixCache::new(limits.prefix_cache_bytes);
    let mut live: HashMap<SeqId, Live> = HashMap::new();
    let mut judging: VecDeque<JudgeWork> = VecDeque::new();
    let timeout_s = limits.request_timeout.as_secs();
    loop {
        // Idle: block for work; busy: take whatever arrived since the last step.
        let first = if batch.is_empty() && judging.is_empty() {
            match inbox.recv() {
                Ok(job) => Some(job),
                Err(_) => return,
            }
        } else {
            None
        };
        for job in first.into_iter().chain(std::iter::from_fn(|| inbox.try_recv().ok())) {
            match job {
                Job::Generate { choices, events, deadline, permit } => {
                    let permit = Arc::new(permit);
                    let mut added = Vec::with_capacity(choices.len());
                    for (index, (prompt, params)) in choices.into_iter().enumerate() {
                        EngineMetrics::add(&metrics.prompt_tokens, prompt.len());
                        match batch.add(prompt, params) {
                            Ok(id) => {
                                added.push(id);
                                live.insert(id, Live { index, events: events.clone(), deadline, _permit: permit.clone() });
                            }
                            Err(e) => {
                                for id in added.drain(..) {
                                    batch.cancel(id);
                                    live.remove(&id);
                                }
                                let _ = events.send(GenEvent::Failed(e.into()));
                                break;
                            }
                        }
                    }
                }
                Job::Judge(work) => judging.push_back(work),
            }
        }
        // One judged item per step, so that judge requests do not stall running generations.
        if let Some(work) = judging.front_mut() {
            if let Some(result) = work.advance(lm, &mut prefixes, timeout_s) {
                let work = judging.pop_front().expect("the front job");
                EngineMetrics::add(&metrics.judge_checks, result.as_ref().map_or(0, |r| r.len() * work.checks.len()));
                let stats = prefixes.stats();
                metrics.prefix_cache_hits.store(stats.hits, Ordering::Relaxed);
                metrics.prefix_cache_misses.store(stats.misses, Ordering::Relaxed);
                let _ = work.reply.send(result);
            }
        }
        // Drop sequences nobody listens to any more, and those past their deadline.
        let now = Instant::now();
        let gone: Vec<SeqId> = live.iter().filter(|(_, l)| l.events.is_closed() || l.deadline.is_some_and(|d| now > d)).map(|(&id, _)| id).collect();
        for id in gone {
            batch.cancel(id);
            if let Some(l) = live.remove(&id) {
                let _ = l.events.send(GenEvent::Failed(ApiError::Timeout(timeout_s)));
            }
        }
        if batch.is_empty() {
            continue;
        }
        metrics.batch_size.store(batch.len() as u64, Ordering::Relaxed);
        EngineMetrics::add(&metrics.steps, 1);
        match batch.step() {
            Ok(events) => {
                for (id, event) in events {
                    let Some(l) = live.get(&id) else { continue };
                    let event = match event {
                        SequenceEvent::Text { text, logprobs } => GenEvent::Text { index: l.index, piece: text, logprobs },
                        SequenceEvent::Finished(generation) => {
                            EngineMetrics::add(&metrics.generated_tokens, generation.token_ids.len());
                            GenEvent::Finished { index: l.index, generation }
                        }
                    };
                    let finished = matches!(event, GenEvent::Finished { .. });
                    let _ = l.events.send(event);
                    if finished {
                        live.remove(&id);
                    }
                }
            }
            Err(e) => {
                tracing::error!("forward pass of {} failed: {e}", lm.name);
                let message = e.to_string();
                for id in batch.ids() {
                    batch.cancel(id);
                    if let Some(l) = live.remove(&id) {
                        let _ = l.events.send(GenEvent::Failed(ApiError::Internal(message.clone())));
                    }
                }
            }
        }
    }
}

/// A judge request in progress: its items are judged one per engine step.
struct JudgeWork {
    items: Vec<JudgeItem>,
    checks: Vec<Check>,
    labels: Labels,
    options: JudgeOptions,
    reply: oneshot::Sender<JudgeResult>,
    deadline: Option<Instant>,
    /// Judgments of the items judged so far, in order.
    done: Vec<Vec<Judgment>>,
    _permit: OwnedSemaphorePermit,
}

impl JudgeWork {
    /// Judges the next item; returns the request's result once it is complete or has failed
    /// (the client gone, the deadline passed, an item refused).
    fn advance(&mut self, lm: &LanguageModel, prefixes: &mut PrefixCache, timeout_s: u64) -> Option<JudgeResult> {
        if self.reply.is_closed() {
            return Some(Err(ApiError::Unavailable("gone: the client disconnected")));
        }
        if self.deadline.is_some_and(|d| Instant::now() > d) {
            return Some(Err(ApiError::Timeout(timeout_s)));
        }
        let item = std::slice::from_ref(&self.items[self.done.len()]);
        match judge_items(lm, prefixes, item, &self.checks, &self.labels, &self.options, &mut |_| {}) {
            Ok(mut judgments) => self.done.push(judgments.remove(0)),
            Err(e) => return Some(Err(e.into())),
        }
        (self.done.len() == self.items.len()).then(|| Ok(std::mem::take(&mut self.done)))
    }
}
