//! assay-server: the HTTP API of `assay serve`, one server on one port.
//!
//! It owns the routes (OpenAI-compatible chat completions, completions, models and embeddings;
//! `/v1/judge`, `/v1/reward`; the evaluation loop under `/v1/projects`; optimisation under
//! `/v1/optimise`; `/health`, `/metrics`,
//! `/openapi.json`; the expert workbench under `/ui`, `ui/`), request parsing and validation, admission (bounded queues, deadlines,
//! body size, context length), API-key auth, metrics, the mapping of every failure to a status
//! and an OpenAI-shaped error (`error.rs`, the only place), and the pipeline runs it carries
//! out in the background on the loaded models (`background.rs`, `pipeline_backend.rs`). It must
//! not compute anything itself: every model runs in its `assay_engine::Engine` (one thread,
//! one scheduler, shared by HTTP clients and background runs); tokens, sampling and judgments
//! come from `assay-engine`, the loop's steps from `assay-pipeline`,
//! whose functions are the same ones the CLI calls, and it must not read model files or flags
//! (the binary loads the models and hands them over).

mod background;
pub mod error;
mod judge_api;
pub mod limits;
pub mod metrics;
mod openai;
mod openapi;
mod optimise_api;
mod pipeline_backend;
mod projects_api;
mod ui;
mod word_diff;

use crate::background::BackgroundRuns;
use crate::error::ApiError;
pub use crate::limits::Limits;
use crate::metrics::Metrics;
use assay_engine::{Embedder, Engine, EngineConfig, EngineModel, LanguageModel, RequestOptions};
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, MatchedPath, Request, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// How the server listens and what it admits.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub addr: SocketAddr,
    /// Every route but `/health` needs `Authorization: Bearer <key>` when set.
    pub api_key: Option<String>,
    /// Requests waiting or running per model before 429.
    pub max_queue: usize,
    pub request_timeout: Duration,
    pub max_body_bytes: usize,
    /// The KV pool of each language model (its shared prefixes included).
    pub kv_cache_bytes: usize,
    /// Most tokens per engine step.
    pub step_tokens: usize,
    /// The store of `/v1/projects` (and of `/v1/judge` by project and version).
    pub db: std::path::PathBuf,
    /// What project configurations set over HTTP may call (`--allow-backend`).
    pub outbound: assay_pipeline::OutboundPolicy,
    /// Bounds of every request (`limits.rs`).
    pub limits: Limits,
    /// Time to read a request's headers, and its body, before the connection is closed (408 for
    /// a body).
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    /// Connections open at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
}

/// The models a server runs, loaded by the caller.
pub struct LoadedModels {
    /// Chat and completion models; requests name them. The first is listed first.
    pub language: Vec<LanguageModel>,
    /// Name of the language model `/v1/judge` uses when a request names none.
    pub judge: String,
    pub embedder: Option<Embedder>,
}

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("loading models failed: {0}")]
    Load(String),
    #[error("the engine of {0} stopped; exiting so that a supervisor restarts the server")]
    EngineDied(String),
    #[error("cannot start an engine: {0}")]
    Engine(assay_engine::EngineError),
    #[error("server error: {0}")]
    Io(std::io::Error),
}

const LOADING: u8 = 0;
const READY: u8 = 1;
const DRAINING: u8 = 2;

pub(crate) struct Models {
    /// Language models, then the embedding model if any.
    engines: Vec<Engine>,
    judge: String,
    embedder: Option<Engine>,
    request_timeout: Duration,
}

impl Models {
    /// The language model called `name`.
    pub(crate) fn engine(&self, name: &str) -> Result<&Engine, ApiError> {
        self.engines.iter().find(|e| e.name() == name).ok_or_else(|| ApiError::ModelNotFound { name: name.to_string(), loaded: self.names().join(", ") })
    }

    /// The language model called `name`, with its tokenizer and template.
    pub(crate) fn language(&self, name: &str) -> Result<(&Engine, &Arc<LanguageModel>), ApiError> {
        let engine = self.engine(name)?;
        let lm = engine.language_model().ok_or_else(|| ApiError::Internal(format!("{name} is not a language model")))?;
        Ok((engine, lm))
    }

    /// The embedding model called `name`.
    pub(crate) fn embedder(&self, name: &str) -> Result<&Engine, ApiError> {
        let embedder = self.embedder.as_ref().ok_or(ApiError::RoleNotLoaded { what: "embedding", flag: "--embed-model" })?;
        if embedder.name() != name {
            return Err(ApiError::ModelNotFound { name: name.to_string(), loaded: self.names().join(", ") });
        }
        Ok(embedder)
    }

    fn names(&self) -> Vec<String> {
        self.all().map(|e| e.name().to_string()).collect()
    }

    fn all(&self) -> impl Iterator<Item = &Engine> {
        self.engines.iter().chain(&self.embedder)
    }

    /// An HTTP client's request: counted against the queue, with the server's deadline, ahead
    /// of background work.
    pub(crate) fn client_request(&self) -> RequestOptions {
        RequestOptions { deadline: Some(Instant::now() + self.request_timeout), admission: assay_engine::Admission::Queued, priority: assay_engine::Priority::Interactive }
    }
}

pub(crate) struct Shared {
    config: ServerConfig,
    phase: AtomicU8,
    models: OnceLock<Models>,
    metrics: Metrics,
    background: BackgroundRuns,
    /// One permit per open streamed response (`Limits::streams`).
    streams: Arc<tokio::sync::Semaphore>,
    /// One permit per core: tokenizations running at once (`openai::off_request_threads`).
    tokenizing: tokio::sync::Semaphore,
    /// Requests being handled, and handled since the server started (`release_memory_when_idle`).
    in_flight: AtomicUsize,
    handled: AtomicU64,
    /// The workbench's session token (`ui::SESSION_COOKIE`), drawn at start.
    session: String,
}

#[derive(Clone)]
pub(crate) struct AppState(Arc<Shared>);

impl AppState {
    /// The loaded models, or 503 while loading or draining.
    pub(crate) fn models(&self) -> Result<&Models, ApiError> {
        match self.0.phase.load(Ordering::Acquire) {
            LOADING => Err(ApiError::Unavailable("loading models")),
            DRAINING => Err(ApiError::Unavailable("shutting down")),
            _ => Ok(self.0.models.get().expect("models are set before the server is ready")),
        }
    }
}

/// A JSON body whose rejections (syntax, types, size) go through `ApiError`.
pub(crate) struct ApiJson<T>(pub T);

impl<T: serde::de::DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let config = &state.0.config;
        // A client that trickles its body holds a connection and a task: bounded in time.
        let read = tokio::time::timeout(config.body_timeout, axum::Json::<Value>::from_request(req, state)).await;
        let mut value = match read.map_err(|_| ApiError::BodyTimeout(config.body_timeout.as_secs()))? {
            Ok(axum::Json(v)) => v,
            Err(rejection) => return Err(ApiError::from_json_rejection(rejection, config.max_body_bytes)),
        };
        integral_numbers_as_integers(&mut value);
        serde_path_to_error::deserialize(value).map(Self).map_err(|e| ApiError::WrongTypes(e.to_string()))
    }
}

/// JSON has one number type: `2.0` is the integer 2 (JSON Schema agrees), but serde reads an
/// integer field only from an integer token. Numbers with no fraction that fit 64 bits become
/// integer tokens, so `"n": 2.0` reads as `"n": 2`; float fields read integers as floats.
fn integral_numbers_as_integers(value: &mut Value) {
    match value {
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            if f.fract() == 0.0 && f >= i64::MIN as f64 && f < u64::MAX as f64 {
                *n = if f < 0.0 { (f as i64).into() } else { (f as u64).into() };
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_numbers_as_integers),
        Value::Object(fields) => fields.values_mut().for_each(integral_numbers_as_integers),
        _ => {}
    }
}

/// Path parameters whose rejections (a version that is not a number) go through `ApiError`.
pub(crate) struct ApiPath<T>(pub T);

impl<T: serde::de::DeserializeOwned + Send> FromRequestParts<AppState> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Ok(Self(axum::extract::Path::<T>::from_request_parts(parts, state).await?.0))
    }
}

/// A query string whose rejections go through `ApiError`.
pub(crate) struct ApiQuery<T>(pub T);

impl<T: serde::de::DeserializeOwned + Send> FromRequestParts<AppState> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Ok(Self(axum::extract::Query::<T>::from_request_parts(parts, state).await?.0))
    }
}

/// Listens on `config.addr` at once (answering 503 while loading), loads the models with
/// `load` on a thread of its own, then serves until SIGTERM or ctrl-c; on either it stops
/// accepting, lets in-flight requests finish (each is bounded by the request timeout), stops
/// the background pipeline runs (recorded as failed, to be resumed) and returns. It returns an
/// error when loading fails or an engine thread dies, so that a supervisor restarts it.
pub async fn serve(config: ServerConfig, load: impl FnOnce() -> Result<LoadedModels, String> + Send + 'static) -> Result<(), ServeError> {
    let listener = tokio::net::TcpListener::bind(config.addr).await.map_err(|source| ServeError::Bind { addr: config.addr, source })?;
    let engine_config = EngineConfig { max_queue: config.max_queue, step_tokens: config.step_tokens, ..EngineConfig::batched(config.kv_cache_bytes) };
    let request_timeout = config.request_timeout;
    let streams = Arc::new(tokio::sync::Semaphore::new(config.limits.streams));
    let state = AppState(Arc::new(Shared {
        config,
        phase: AtomicU8::new(LOADING),
        models: OnceLock::new(),
        metrics: Metrics::default(),
        background: BackgroundRuns::default(),
        streams,
        tokenizing: tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(1, |n| n.get())),
        in_flight: AtomicUsize::new(0),
        handled: AtomicU64::new(0),
        session: ui::new_session_token(),
    }));
    tracing::info!("listening on {}", listener.local_addr().map_err(ServeError::Io)?);

    let (loaded_tx, loaded_rx) = tokio::sync::oneshot::channel();
    let loader = state.clone();
    std::thread::spawn(move || {
        // A loader that panics (a malformed model file) fails the start like one that errs.
        let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(load)).unwrap_or_else(|panic| Err(format!("the loader panicked: {}", panic_message(&*panic))));
        let result = loaded.and_then(|models| start_engines(models, engine_config, request_timeout).map_err(|e| e.to_string()));
        let result = result.map(|models| {
            let names = models.names().join(", ");
            let _ = loader.0.models.set(models);
            // A shutdown that began while loading keeps the server draining.
            let _ = loader.0.phase.compare_exchange(LOADING, READY, Ordering::AcqRel, Ordering::Acquire);
            tracing::info!("ready: {names}");
        });
        let _ = loaded_tx.send(result);
    });

    let failed = async {
        match loaded_rx.await {
            Ok(Err(e)) => ServeError::Load(e),
            Err(_) => ServeError::Load("the loader ended without a result".into()),
            Ok(Ok(())) => engine_died(&state).await,
        }
    };
    let result = tokio::select! {
        result = accept_loop(listener, state.clone()) => result,
        e = failed => Err(e),
        never = release_memory_when_idle(&state) => match never {},
    };
    // After the server: every request that could start a run has ended.
    state.0.background.drain().await;
    result
}

/// Once a second: when requests were handled since the last look and none is in flight, the
/// memory they freed (a long prompt's tokens, response buffers) goes back to the system.
async fn release_memory_when_idle(state: &AppState) -> std::convert::Infallible {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut released_at = 0;
    loop {
        tick.tick().await;
        let handled = state.0.handled.load(Ordering::Acquire);
        if handled != released_at && state.0.in_flight.load(Ordering::Acquire) == 0 {
            released_at = handled;
            let _ = tokio::task::spawn_blocking(assay_engine::engine::release_freed_memory).await;
        }
    }
}

/// Resolves when an engine thread has ended (see `Engine::is_alive`), naming its model.
async fn engine_died(state: &AppState) -> ServeError {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        if let Some(dead) = state.0.models.get().and_then(|m| m.all().find(|e| !e.is_alive())) {
            tracing::error!("the engine of {} stopped", dead.name());
            return ServeError::EngineDied(dead.name().to_string());
        }
    }
}

/// Accepts connections until SIGTERM or ctrl-c: at most `max_connections` open (more are
/// closed at once), each closed if its headers take longer than `header_timeout`; then drains.
async fn accept_loop(listener: tokio::net::TcpListener, state: AppState) -> Result<(), ServeError> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let config = &state.0.config;
    let service = hyper_util::service::TowerToHyperService::new(router(state.clone()));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(config.header_timeout);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let open = Arc::new(tokio::sync::Semaphore::new(config.max_connections));
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of descriptors or the like: wait instead of spinning, keep serving.
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Ok(permit) = Arc::clone(&open).try_acquire_owned() else {
            state.0.metrics.record_refused_connection();
            continue;
        };
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service.clone()));
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = connection.await {
                tracing::debug!("connection ended: {e}");
            }
        });
    }
    tracing::info!("shutting down: refusing new requests, finishing in-flight ones");
    state.0.phase.store(DRAINING, Ordering::Release);
    drop(listener);
    // A client that stops reading a stream must not hold the exit forever.
    let grace = config.request_timeout + Duration::from_secs(5);
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!("connections still open after {}s; closing them", grace.as_secs());
    }
    Ok(())
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| panic.downcast_ref::<String>().cloned()).unwrap_or_else(|| "unknown panic".into())
}

fn start_engines(models: LoadedModels, config: EngineConfig, request_timeout: Duration) -> Result<Models, ServeError> {
    // Each thread runs until its last handle is dropped at exit; none is joined.
    let start = |model| Engine::start(model, config).map_err(ServeError::Engine);
    let engines = models.language.into_iter().map(|lm| start(EngineModel::Language(Arc::new(lm)))).collect::<Result<Vec<_>, _>>()?;
    let embedder = models.embedder.map(|e| start(EngineModel::Embedding(Box::new(e)))).transpose()?;
    Ok(Models { engines, judge: models.judge, embedder, request_timeout })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

fn router(state: AppState) -> Router {
    let max_body = state.0.config.max_body_bytes;
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi::document))
        .route("/v1/models", get(openai::models))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/completions", post(openai::completions))
        .route("/v1/embeddings", post(openai::embeddings))
        .route("/v1/judge", post(judge_api::judge))
        .route("/v1/reward", post(judge_api::reward))
        .route("/v1/projects", get(projects_api::list_projects).post(projects_api::create_project))
        .route("/v1/projects/{project}", get(projects_api::show_project))
        .route("/v1/projects/{project}/config", put(projects_api::put_config))
        .route("/v1/projects/{project}/datasets", post(projects_api::import_dataset))
        .route("/v1/projects/{project}/datasets/{dataset}/items", get(projects_api::list_items))
        .route("/v1/projects/{project}/datasets/{dataset}/items/{item}", get(projects_api::show_item))
        .route("/v1/projects/{project}/sets", post(projects_api::import_set))
        .route("/v1/projects/{project}/sets/{version}", get(projects_api::show_set))
        .route("/v1/projects/{project}/sets/{from}/diff/{to}", get(projects_api::diff_sets))
        .route("/v1/projects/{project}/sets/{version}/checks/{check}", get(projects_api::show_check))
        .route("/v1/projects/{project}/checks/{check}/ruling", post(projects_api::rule_check))
        .route("/v1/projects/{project}/discover", post(projects_api::discover))
        .route("/v1/projects/{project}/runs", post(projects_api::start_run))
        .route("/v1/projects/{project}/runs/{run}", get(projects_api::show_run))
        .route("/v1/projects/{project}/runs/{run}/judgments", get(projects_api::run_judgments))
        .route("/v1/projects/{project}/runs/{run}/events", get(projects_api::run_events))
        .route("/v1/projects/{project}/report", get(projects_api::show_report))
        .route("/v1/projects/{project}/questions", get(projects_api::list_questions))
        .route("/v1/projects/{project}/questions/{question}", get(projects_api::show_question))
        .route("/v1/projects/{project}/review", get(projects_api::show_review))
        .route("/v1/projects/{project}/questions/{question}/answer", post(projects_api::answer_question))
        .route("/v1/projects/{project}/questions/{question}/preview", post(projects_api::preview_answer))
        .route("/v1/projects/{project}/questions/{question}/reopen", post(projects_api::reopen_question))
        .route("/v1/projects/{project}/labels", get(projects_api::list_labels).post(projects_api::add_labels))
        .route("/v1/projects/{project}/labels/remove", post(projects_api::delete_label))
        .route("/v1/projects/{project}/refine", post(projects_api::refine_set))
        .route("/v1/projects/{project}/gold", get(optimise_api::list_gold))
        .route("/v1/projects/{project}/gold/{id}/critique", post(optimise_api::critique_gold))
        .route("/v1/optimise", post(optimise_api::start))
        .route("/v1/optimise/{id}", get(optimise_api::show))
        .route("/v1/optimise/{id}/events", get(optimise_api::events))
        .merge(ui::routes())
        .fallback(|req: Request| async move { ApiError::RouteNotFound(format!("{} {}", req.method(), req.uri().path())) })
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(middleware::from_fn_with_state(state.clone(), record))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

/// One request in `Shared::in_flight` until dropped: also when the client leaves and the
/// request's future is dropped before it answers.
struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn enter(shared: &'a Shared) -> Self {
        shared.in_flight.fetch_add(1, Ordering::AcqRel);
        Self(shared)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.handled.fetch_add(1, Ordering::AcqRel);
    }
}

/// Counts every response by route and status and times it.
async fn record(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_string();
    let started = Instant::now();
    let _counted = InFlight::enter(&state.0);
    let response = next.run(req).await;
    state.0.metrics.record_request(&route, response.status().as_u16(), started.elapsed().as_secs_f64());
    response
}

/// With an API key configured, every route but `/health`, the workbench's login and its static
/// files needs it: as a bearer token, or the session cookie the login gives for it. A browser
/// without either is sent to the login page, an API client gets 401. A state-changing request
/// from a page of another origin is refused whatever it carries (CSRF).
async fn authenticate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(why) = ui::cross_origin(&req) {
        return ApiError::CrossOrigin(why).into_response();
    }
    let Some(key) = &state.0.config.api_key else { return next.run(req).await };
    let path = req.uri().path();
    if path == "/health" || ui::is_open(path) {
        return next.run(req).await;
    }
    let presented = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(bearer_token).unwrap_or("");
    // Constant time in the key's content; only its length can leak.
    if bool::from(presented.as_bytes().ct_eq(key.as_bytes())) || ui::has_session(req.headers(), &state.0.session) {
        next.run(req).await
    } else if path == "/ui" || path.starts_with("/ui/") {
        ui::to_login(&req)
    } else {
        ApiError::Unauthorized.into_response()
    }
}

/// The token of an `Authorization: Bearer <token>` value; the scheme is case-insensitive
/// (RFC 9110) and surrounding spaces are ignored.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Readiness, for load balancers: 200 only when the models are loaded, every engine runs and
/// the store opens and takes a write; otherwise 503 with what is wrong. `/health` says only
/// that the process answers.
async fn ready(State(state): State<AppState>) -> Response {
    let mut problems = Vec::new();
    match state.models() {
        Ok(models) => problems.extend(models.all().filter(|e| !e.is_alive()).map(|e| format!("the engine of {} stopped", e.name()))),
        Err(e) => problems.push(e.to_string()),
    }
    let db = state.0.config.db.clone();
    match tokio::task::spawn_blocking(move || assay_store::Store::probe(&db)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => problems.push(format!("the store is not usable: {e}")),
        Err(e) => problems.push(format!("the store check failed: {e}")),
    }
    let code = if problems.is_empty() { axum::http::StatusCode::OK } else { axum::http::StatusCode::SERVICE_UNAVAILABLE };
    (code, axum::Json(serde_json::json!({"ready": problems.is_empty(), "problems": problems}))).into_response()
}

async fn health(State(state): State<AppState>) -> Response {
    let (status, code) = match state.0.phase.load(Ordering::Acquire) {
        LOADING => ("loading", axum::http::StatusCode::SERVICE_UNAVAILABLE),
        DRAINING => ("draining", axum::http::StatusCode::SERVICE_UNAVAILABLE),
        _ => ("ok", axum::http::StatusCode::OK),
    };
    (code, axum::Json(serde_json::json!({"status": status}))).into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    let engines: Vec<(String, assay_engine::EngineStats)> = state.0.models.get().map(|m| m.engines.iter().map(|e| (e.name().to_string(), e.stats())).collect()).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.0.metrics.render(&engines)).into_response()
}
