//! The pipeline's `Backend` on this server's own loaded models: projects-API work chats,
//! judges and embeds through the same engines (and prefix trees) as HTTP clients
//! rather than loading the models a second time. Roles name models as the server loaded them
//! (`--model`, `--judge-model`, `--embed-model`); a role with a `base_url` goes to that server
//! instead, as in the CLI.
//!
//! Pipeline calls are blocking: they run on tokio's blocking threads and wait there for the
//! engine. Their requests are admitted as the engine's `Background` ones: never refused, never
//! counted in the HTTP clients' queue, and memory-bounded by the engine's scheduler like any
//! other. Work a request waits for (a preview, a refinement) starts with the HTTP clients'
//! requests, ahead of background runs (`Priority`). Work stops on a signal: background runs
//! when the server shuts down, work a request waits for when the request ends (its deadline,
//! or the client gone). Pending engine requests are then dropped, which cancels them in the
//! engine, and the call fails.

use crate::error::ApiError;
use crate::{AppState, Models};
use assay_core::{Check, JudgeItem, JudgeOptions, Judgment};
use assay_engine::judge::Labels;
use assay_engine::{Engine, GenEvent, JudgeEvent, LanguageModel, Priority, RequestOptions};
use assay_pipeline::{Backend, Backends, ChatRequest, Completion, PipelineError, Result};
use std::future::Future;
use std::sync::Arc;
use tokio::sync::watch;

pub(crate) struct ServerBackend {
    state: AppState,
    runtime: tokio::runtime::Handle,
    /// Work stops when this turns true or its sender is dropped.
    stop: watch::Receiver<bool>,
    /// The engine requests' options: admitted as background work, prioritised as asked.
    requests: RequestOptions,
}

impl ServerBackend {
    /// Backends for background runs: they stop when the server shuts down.
    pub(crate) fn for_background(state: &AppState) -> Backends {
        Self::backends(state, state.0.background.stop_signal(), Priority::Background)
    }

    /// Backends for work a request waits for: they stop on `stop` (the request's end).
    pub(crate) fn for_request(state: &AppState, stop: watch::Receiver<bool>) -> Backends {
        Self::backends(state, stop, Priority::Interactive)
    }

    /// Call from the async runtime or one of its blocking threads.
    fn backends(state: &AppState, stop: watch::Receiver<bool>, priority: Priority) -> Backends {
        let requests = RequestOptions { priority, ..RequestOptions::default() };
        Backends::new(Arc::new(Self { state: state.clone(), runtime: tokio::runtime::Handle::current(), stop, requests })).with_policy(state.0.config.outbound.clone())
    }

    fn models(&self) -> Result<&Models> {
        // Not `AppState::models`: it refuses while draining, when runs must still end cleanly.
        self.state.0.models.get().ok_or_else(|| PipelineError::Config("the server's models are still loading".into()))
    }

    fn language(&self, model: &str) -> Result<(&Engine, &Arc<LanguageModel>)> {
        self.models()?.language(model).map_err(not_loaded)
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

impl Backend for ServerBackend {
    /// Every valid request is queued at once, so the engine decodes them together with
    /// whatever else it runs; a request it refuses is its own failed answer.
    fn chat(&self, model: &str, requests: &[ChatRequest], progress: &mut dyn FnMut(usize)) -> Result<Vec<Completion>> {
        let (engine, lm) = self.language(model)?;
        // The stage is shown from its start, not from its first answer.
        progress(0);
        let mut answers: Vec<Option<Completion>> = vec![None; requests.len()];
        let (mut queued, mut index) = (Vec::new(), Vec::new());
        for (i, request) in requests.iter().enumerate() {
            match request.prompt_ids(lm).and_then(|prompt| engine.check_prompt(&prompt, &request.params).map(|_| prompt)) {
                Ok(prompt) => {
                    index.push(i);
                    queued.push((prompt, request.params.clone()));
                }
                Err(refused) => answers[i] = Some(Err(refused.to_string())),
            }
        }
        let mut done = requests.len() - index.len();
        if !queued.is_empty() {
            let mut events = engine.generate(queued, self.requests).map_err(|e| engine_failure(model, e.into()))?;
            self.wait_for(async {
                let mut left = index.len();
                while left > 0 {
                    match events.recv().await {
                        Some(GenEvent::Text { .. }) => {}
                        Some(GenEvent::Finished { index: k, generation }) => {
                            let i = index[k];
                            answers[i] = Some(Ok(format!("{}{}", requests[i].answer_prefix, generation.text)));
                            left -= 1;
                            done += 1;
                            progress(done);
                        }
                        Some(GenEvent::Failed(e)) => return Err(engine_failure(model, e.into())),
                        None => return Err(engine_failure(model, ApiError::Internal("the engine dropped the request".into()))),
                    }
                }
                Ok(())
            })?;
        }
        Ok(answers.into_iter().map(|a| a.expect("every request is answered")).collect())
    }

    /// One engine request for all items: their checks share steps and prefixes with every
    /// other request on the engine.
    fn judge(&self, model: &str, items: &[JudgeItem], checks: &[Check], options: &JudgeOptions, progress: &mut dyn FnMut(usize)) -> Result<Vec<Vec<Judgment>>> {
        let (engine, _) = self.language(model)?;
        options.validate()?;
        progress(0);
        let mut events = engine.judge(items, checks.to_vec(), &Labels::default(), options.clone(), self.requests).map_err(|e| engine_failure(model, e.into()))?;
        self.wait_for(async {
            loop {
                match events.recv().await {
                    Some(JudgeEvent::Progress { done, .. }) => progress(done),
                    Some(JudgeEvent::Done(result)) => return result.map_err(|e| engine_failure(model, e.into())),
                    None => return Err(engine_failure(model, ApiError::Internal("the engine dropped the request".into()))),
                }
            }
        })
    }

    fn embed(&self, model: &str, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        let embedder = self.models()?.embedder(model).map_err(not_loaded)?;
        let reply = embedder.embed(texts.to_vec()).map_err(|e| engine_failure(model, e.into()))?;
        self.wait_for(async { Ok(reply.await.map_err(|_| engine_failure(model, ApiError::Internal("the engine dropped the request".into())))?.map_err(|e| engine_failure(model, e.into()))?.vectors) })
    }
}
