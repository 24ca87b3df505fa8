//! The pipeline's `Backend` on this server's own loaded models: projects-API work chats,
//! judges and embeds through the same engine threads (and prefix caches) as HTTP clients
//! rather than loading the models a second time. Roles name models as the server loaded them
//! (`--model`, `--judge-model`, `--embed-model`); a role with a `base_url` goes to that server
//! instead, as in the CLI.
//!
//! Pipeline calls are blocking: they run on tokio's blocking threads and wait there for the
//! engine. Requests are admitted through the engine's background window (see engine.rs), never
//! the HTTP clients' queue. Work stops on a signal: background runs when the server shuts
//! down, work a request waits for when the request ends (its deadline, or the client gone).
//! Pending engine requests are then dropped, which cancels them in the engine, and the call
//! fails.

use crate::engine::{Engine, GenEvent};
use crate::error::ApiError;
use crate::{AppState, Models};
use assay_core::{Check, JudgeItem, JudgeOptions, Judgment};
use assay_engine::batch::check_request;
use assay_engine::judge::Labels;
use assay_engine::Embedder;
use assay_pipeline::{Backend, Backends, ChatRequest, Completion, PipelineError, Result};
use std::future::Future;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub(crate) struct ServerBackend {
    state: AppState,
    runtime: tokio::runtime::Handle,
    /// Work stops when this turns true or its sender is dropped.
    stop: watch::Receiver<bool>,
}

impl ServerBackend {
    /// Backends for background runs: they stop when the server shuts down.
    pub(crate) fn for_background(state: &AppState) -> Backends {
        Self::stopped_by(state, state.0.background.stop_signal())
    }

    /// Backends whose work stops on `stop`. Call from the async runtime or one of its
    /// blocking threads.
    pub(crate) fn stopped_by(state: &AppState, stop: watch::Receiver<bool>) -> Backends {
        Backends::new(Arc::new(Self { state: state.clone(), runtime: tokio::runtime::Handle::current(), stop }))
    }

    fn models(&self) -> Result<&Models> {
        // Not `AppState::models`: it refuses while draining, when runs must still end cleanly.
        self.state.0.models.get().ok_or_else(|| PipelineError::Config("the server's models are still loading".into()))
    }

    fn engine(&self, model: &str) -> Result<&Engine> {
        self.models()?.engine(model).map_err(not_loaded)
    }

    fn embedder(&self, model: &str) -> Result<&Embedder> {
        let models = self.models()?;
        match &models.embedder {
            Some(e) if e.name == model => Ok(e),
            _ => Err(not_loaded(ApiError::ModelNotFound { name: model.to_string(), loaded: models.names().join(", ") })),
        }
    }

    /// Runs `work` to its end on this blocking thread, or until it is told to stop.
    fn wait_for<T>(&self, work: impl Future<Output = Result<T>>) -> Result<T> {
        let mut stop = self.stop.clone();
        self.runtime.block_on(async {
            tokio::select! {
                result = work => result,
                // Also when the sender is gone. Dropping `work` drops its answer channels,
                // which cancels its requests.
                _ = stop.wait_for(|stopping| *stopping) => Err(stopped()),
            }
        })
    }

    fn stopping(&self) -> bool {
        *self.stop.borrow() || self.stop.has_changed().is_err()
    }
}

/// A model the server has not loaded: the project's configuration names the wrong one.
fn not_loaded(e: ApiError) -> PipelineError {
    PipelineError::Config(format!("{e}; name a loaded model for the role, or give the role a base_url"))
}

fn stopped() -> PipelineError {
    let why = "stopped before the work finished: the server shut down, or the request waiting for it ended";
    PipelineError::Io { what: "assay serve".into(), source: std::io::Error::new(std::io::ErrorKind::Interrupted, why) }
}

/// The engine's errors arrive as `ApiError`s: what it refused as bad input is the pipeline's
/// invalid input (400 when a request waits for it); anything else is the model's failure.
fn engine_failure(model: &str, e: ApiError) -> PipelineError {
    if e.status().is_client_error() {
        PipelineError::Invalid(e.to_string())
    } else {
        PipelineError::Io { what: format!("model '{model}'"), source: std::io::Error::other(e.to_string()) }
    }
}

/// Answers of requests queued one by one on an engine. Each answer is awaited on a task of
/// its own, so answers arrive while more requests wait for room in the background window,
/// and dropping this cancels every request still pending.
struct Answers<T> {
    pending: JoinSet<(usize, T)>,
    answers: Vec<Option<T>>,
    done: usize,
}

impl<T: Send + 'static> Answers<T> {
    fn new(count: usize) -> Self {
        Self { pending: JoinSet::new(), answers: std::iter::repeat_with(|| None).take(count).collect(), done: 0 }
    }

    fn expect(&mut self, index: usize, answer: impl Future<Output = T> + Send + 'static) {
        self.pending.spawn(async move { (index, answer.await) });
    }

    fn set(&mut self, index: usize, answer: T, progress: &mut dyn FnMut(usize)) {
        self.answers[index] = Some(answer);
        self.done += 1;
        progress(self.done);
    }

    fn arrived(&mut self, joined: std::result::Result<(usize, T), tokio::task::JoinError>, progress: &mut dyn FnMut(usize)) -> Result<()> {
        let (index, answer) = joined.map_err(|e| PipelineError::Io { what: "waiting for the engine".into(), source: std::io::Error::other(e.to_string()) })?;
        self.set(index, answer, progress);
        Ok(())
    }

    /// Takes the answers that have arrived so far.
    fn take_arrived(&mut self, progress: &mut dyn FnMut(usize)) -> Result<()> {
        while let Some(joined) = self.pending.try_join_next() {
            self.arrived(joined, progress)?;
        }
        Ok(())
    }

    /// Waits for every answer; in request order.
    async fn all(mut self, progress: &mut dyn FnMut(usize)) -> Result<Vec<T>> {
        while let Some(joined) = self.pending.join_next().await {
            self.arrived(joined, progress)?;
        }
        Ok(self.answers.into_iter().map(|a| a.expect("every request is answered")).collect())
    }
}

/// The request's prompt (as `LocalBackend` builds it), checked against the model's context
/// and the parameters.
fn chat_prompt(engine: &Engine, request: &ChatRequest) -> std::result::Result<Vec<u32>, String> {
    let prompt = request.prompt_ids(&engine.lm).map_err(|e| e.to_string())?;
    check_request(&engine.lm, &prompt, &request.params).map_err(|e| e.to_string())?;
    Ok(prompt)
}

/// Waits for one sequence's text; the answer begins with the request's answer prefix.
async fn completion(mut events: tokio::sync::mpsc::UnboundedReceiver<GenEvent>, answer_prefix: String) -> Completion {
    loop {
        match events.recv().await {
            Some(GenEvent::Text { .. }) => {}
            Some(GenEvent::Finished { generation, .. }) => return Ok(format!("{answer_prefix}{}", generation.text)),
            Some(GenEvent::Failed(e)) => return Err(e.to_string()),
            None => return Err("the engine dropped the request".into()),
        }
    }
}

impl Backend for ServerBackend {
    /// Every request is queued as soon as the background window has room, so the engine
    /// decodes them together (continuous batching) with whatever else it is running; one
    /// request's failure is its own answer.
    fn chat(&self, model: &str, requests: &[ChatRequest], progress: &mut dyn FnMut(usize)) -> Result<Vec<Completion>> {
        let engine = self.engine(model)?;
        // The stage is shown from its start, not from its first answer.
        progress(0);
        self.wait_for(async {
            let mut answers = Answers::new(requests.len());
            for (i, request) in requests.iter().enumerate() {
                let queued = match chat_prompt(engine, request) {
                    Ok(prompt) => engine.generate_background(prompt, request.params.clone()).await.map_err(|e| e.to_string()),
                    Err(refused) => Err(refused),
                };
                match queued {
                    Ok(events) => answers.expect(i, completion(events, request.answer_prefix.clone())),
                    Err(refused) => answers.set(i, Err(refused), progress),
                }
                answers.take_arrived(progress)?;
            }
            answers.all(progress).await
        })
    }

    /// One engine request per item, so that items of background runs and HTTP judge requests
    /// take turns on the engine thread.
    fn judge(&self, model: &str, items: &[JudgeItem], checks: &[Check], options: &JudgeOptions, progress: &mut dyn FnMut(usize)) -> Result<Vec<Vec<Judgment>>> {
        let engine = self.engine(model)?;
        options.validate()?;
        let per_item = checks.len();
        let mut judged = |items_done: usize| progress(items_done * per_item);
        judged(0);
        let answers = self.wait_for(async {
            let mut answers = Answers::new(items.len());
            for (i, item) in items.iter().enumerate() {
                let reply = engine.judge_background(vec![item.clone()], checks.to_vec(), Labels::default(), options.clone()).await.map_err(|e| engine_failure(model, e))?;
                answers.expect(i, async move { reply.await.unwrap_or_else(|_| Err(ApiError::Internal("the engine dropped the request".into()))) });
                answers.take_arrived(&mut judged)?;
            }
            answers.all(&mut judged).await
        })?;
        answers.into_iter().map(|judged| judged.map(|mut one| one.remove(0)).map_err(|e| engine_failure(model, e))).collect()
    }

    /// On the calling thread, as `/v1/embeddings` does.
    fn embed(&self, model: &str, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        let embedder = self.embedder(model)?;
        if self.stopping() {
            return Err(stopped());
        }
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        Ok(embedder.embed(&texts)?)
    }
}
