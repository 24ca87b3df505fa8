//! Pipeline runs that outlive the request that started them (discovery, judge runs). Each
//! runs on a blocking thread with its own store connection. This registry knows which runs
//! this server is working on, so that a second request for the same judge run does not start
//! it twice, and what each is doing (discovery stores no progress of its own). On shutdown it
//! tells them to stop, which makes their next model call fail, so the pipeline records the run
//! as failed (a later POST of the same judge run resumes it), and waits until they have.
//! Every run keeps an event log, from when this server started (or resumed) it to an `end`
//! event with its final record: `progress` events (`stage`, `done`, `total`, at most
//! `PROGRESS_PER_SECOND` a second) and whatever the run publishes itself (an optimise run's
//! generations and gold outputs). `event_stream` replays and follows a log as server-sent
//! events, each with its index as `id:` so that a client reconnecting with `Last-Event-ID`
//! gets only what it missed; `/v1/.../events` sends the events as JSON and the workbench as
//! HTML fragments. The logs of the last `KEPT_LOGS` ended runs are kept.

use crate::error::ApiError;
use crate::AppState;
use assay_store::{Run, RunId, RunStatus, Store};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use serde::Serialize;
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Ended runs whose event logs are kept for late followers.
const KEPT_LOGS: usize = 64;

/// How long a request restarting a run waits for its ending worker to let go
/// (`start_or_resume`).
const ENDING_POLL: Duration = Duration::from_millis(10);

/// Progress events logged per second and run at most; a new stage or the last step of one is
/// always logged.
const PROGRESS_PER_SECOND: u32 = 4;

/// What a live run is doing, as the pipeline last reported it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Stage {
    pub stage: String,
    pub done: usize,
    pub total: usize,
}

/// What a run has published so far; `ended` once its last event (its final record) is in.
#[derive(Debug, Default, Clone)]
pub(crate) struct EventLog {
    pub events: Vec<serde_json::Value>,
    pub ended: bool,
}

pub(crate) struct BackgroundRuns {
    /// Becomes true when the server shuts down.
    stop: watch::Sender<bool>,
    live: Mutex<HashMap<RunId, Option<Stage>>>,
    logs: Mutex<HashMap<RunId, watch::Sender<EventLog>>>,
    /// Runs whose logs have ended, oldest first.
    ended: Mutex<VecDeque<RunId>>,
    tasks: Mutex<JoinSet<()>>,
    /// Held while a resumable run is found or created and then claimed (`start_or_resume`),
    /// so that two identical requests at once get one run and one worker.
    starting: Mutex<()>,
}

impl Default for BackgroundRuns {
    fn default() -> Self {
        Self { stop: watch::Sender::new(false), live: Mutex::default(), logs: Mutex::default(), ended: Mutex::default(), tasks: Mutex::default(), starting: Mutex::default() }
    }
}

/// A registry lock; a panic elsewhere while it was held leaves nothing half-done in it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl BackgroundRuns {
    /// Changes to true when the server shuts down.
    pub(crate) fn stop_signal(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    pub(crate) fn is_live(&self, run: RunId) -> bool {
        lock(&self.live).contains_key(&run)
    }

    /// The stage of a run this server is working on.
    pub(crate) fn stage(&self, run: RunId) -> Option<Stage> {
        lock(&self.live).get(&run).cloned().flatten()
    }

    /// Records the run's stage and logs it as a `progress` event unless one was logged less
    /// than 1/`PROGRESS_PER_SECOND` s ago (`last`) for the same stage and this is not its end.
    fn report(&self, run: RunId, stage: &str, done: usize, total: usize, last: &mut Option<(String, Instant)>) {
        let current = Stage { stage: stage.to_string(), done, total };
        let due = match last {
            Some((s, at)) => s != stage || done >= total || at.elapsed() >= Duration::from_secs(1) / PROGRESS_PER_SECOND,
            None => true,
        };
        if due {
            *last = Some((stage.to_string(), Instant::now()));
            self.publish(run, serde_json::json!({"event": "progress", "stage": stage, "done": done, "total": total}));
        }
        lock(&self.live).insert(run, Some(current));
    }

    /// Opens (or reopens, for a resumed run) the run's event log.
    pub(crate) fn open_log(&self, run: RunId) {
        lock(&self.ended).retain(|r| *r != run);
        lock(&self.logs).insert(run, watch::Sender::new(EventLog::default()));
    }

    pub(crate) fn publish(&self, run: RunId, event: serde_json::Value) {
        if let Some(log) = lock(&self.logs).get(&run) {
            log.send_modify(|l| l.events.push(event));
        }
    }

    /// Follows the run's event log, if this server keeps one.
    pub(crate) fn follow(&self, run: RunId) -> Option<watch::Receiver<EventLog>> {
        lock(&self.logs).get(&run).map(watch::Sender::subscribe)
    }

    fn end_log(&self, run: RunId, last: serde_json::Value) {
        let mut logs = lock(&self.logs);
        let Some(log) = logs.get(&run) else { return };
        log.send_modify(|l| {
            l.events.push(last);
            l.ended = true;
        });
        let mut ended = lock(&self.ended);
        ended.retain(|r| *r != run);
        ended.push_back(run);
        while ended.len() > KEPT_LOGS {
            if let Some(old) = ended.pop_front() {
                logs.remove(&old);
            }
        }
    }

    /// Tells every run to stop and waits until each has ended (recorded as failed unless it
    /// finished first).
    pub(crate) async fn drain(&self) {
        self.stop.send_replace(true);
        let mut tasks = std::mem::take(&mut *lock(&self.tasks));
        if !tasks.is_empty() {
            tracing::info!("stopping {} background run(s): recorded as failed; a judge run resumes when posted again", tasks.len());
        }
        while tasks.join_next().await.is_some() {}
    }
}

/// Starts or resumes a run that a request may post again (judge and optimise runs): `find`
/// finds or creates it (returning it, whether it was resumed, and what its worker needs), and
/// unless this server already works on it, a run that ran before reads "running" again at once
/// (a client polling it must not read its old outcome) and `worker` makes its work for
/// `spawn_run`. Two identical requests at once get one run and one worker. A run found failed
/// while its worker is still letting go of it (which takes `starting`) is looked up again once
/// the worker has, so that a client that read "failed" and restarts runs it again. Returns the
/// run and whether it was resumed.
pub(crate) fn start_or_resume<T, W>(
    state: &AppState,
    store: &mut Store,
    mut find: impl FnMut(&mut Store) -> Result<(Run, bool, T), ApiError>,
    worker: impl FnOnce(RunId, T) -> W,
) -> Result<(Run, bool), ApiError>
where
    W: FnOnce(&mut dyn FnMut(&str, usize, usize)) -> assay_pipeline::Result<()> + Send + 'static,
{
    let runs = &state.0.background;
    loop {
        let one_at_a_time = lock(&runs.starting);
        let (mut run, resumed, needs) = find(store)?;
        if run.status == RunStatus::Failed && runs.is_live(run.id) {
            drop(one_at_a_time);
            std::thread::sleep(ENDING_POLL);
            continue;
        }
        if !runs.is_live(run.id) {
            if run.status != RunStatus::Queued {
                run = store.set_run_status(run.id, RunStatus::Running, None)?;
            }
            spawn_run(state, run.id, worker(run.id, needs));
        }
        return Ok((run, resumed));
    }
}

/// Carries out `work` (the pipeline's work on `run`, given its progress callback) on a
/// blocking thread, unless this server is already working on that run; returns whether it
/// started. However `work` ends (an error before the pipeline recorded one, a panic), the run
/// is left done or failed, never running.
pub(crate) fn spawn_run(state: &AppState, run: RunId, work: impl FnOnce(&mut dyn FnMut(&str, usize, usize)) -> assay_pipeline::Result<()> + Send + 'static) -> bool {
    let runs = &state.0.background;
    if lock(&runs.live).insert(run, None).is_some() {
        return false;
    }
    runs.open_log(run);
    let state = state.clone();
    let mut tasks = lock(&runs.tasks);
    tasks.spawn_blocking(move || {
        let runs = &state.0.background;
        let mut last = None;
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| work(&mut |stage, done, total| runs.report(run, stage, done, total, &mut last))));
        let error = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some("internal error: the run's thread panicked".to_string()),
        };
        let last = settle(&state.0.config.db, run, error.as_deref());
        // While a request may be resuming this run: its new log must not receive this end.
        let _no_request_is_starting_a_run = lock(&runs.starting);
        runs.end_log(run, serde_json::json!({"event": "end", "run": last}));
        lock(&runs.live).remove(&run);
    });
    // Finished runs' results are not needed: drop them so the set does not grow.
    while tasks.try_join_next().is_some() {}
    true
}

/// Marks `run` failed with `error` if the pipeline left it queued or running; returns its
/// final record (null when it cannot be read).
fn settle(db: &Path, run: RunId, error: Option<&str>) -> serde_json::Value {
    if let Some(e) = error {
        tracing::warn!("background run {run} failed: {e}");
    }
    let recorded = Store::open(db).and_then(|mut store| {
        let mut last = store.run(run)?;
        if matches!(last.status, RunStatus::Queued | RunStatus::Running) {
            last = store.set_run_status(run, RunStatus::Failed, Some(error.unwrap_or("the run ended without finishing")))?;
        }
        Ok(last)
    });
    match recorded {
        Ok(last) => serde_json::to_value(last).unwrap_or_default(),
        Err(e) => {
            tracing::error!("background run {run}: cannot record how it ended: {e}");
            serde_json::Value::Null
        }
    }
}

/// The index of the first event a client still lacks: one past its `Last-Event-ID`, else 0.
pub(crate) fn first_unseen(headers: &HeaderMap) -> usize {
    headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<usize>().ok()).map_or(0, |id| id + 1)
}

/// Server-sent events of `run`'s log from index `from` on: replayed, then followed live until
/// its `end`. `render` turns each logged event (with its index, the SSE id) into the events
/// sent for it. For a run this server keeps no log of (one it never ran, or ran long ago), the
/// log is one `end` event with the run as stored (an interrupted run shows as running until it
/// is resumed).
pub(crate) fn event_stream(state: &AppState, run: &Run, from: usize, render: impl Fn(usize, &Value) -> Vec<Event> + Send + 'static) -> impl axum::response::IntoResponse {
    let mut log = state.0.background.follow(run.id).unwrap_or_else(|| watch::channel(EventLog { events: vec![serde_json::json!({"event": "end", "run": run})], ended: true }).1);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Event, Infallible>>(16);
    tokio::spawn(async move {
        let mut sent = from;
        loop {
            let (fresh, ended) = {
                let l = log.borrow_and_update();
                (l.events.get(sent..).unwrap_or_default().to_vec(), l.ended)
            };
            for event in fresh {
                for e in render(sent, &event) {
                    if tx.send(Ok(e)).await.is_err() {
                        return;
                    }
                }
                sent += 1;
            }
            // The log's sender goes when a resumed run replaces it: nothing more comes here.
            if ended || log.changed().await.is_err() {
                return;
            }
        }
    });
    Sse::new(tokio_stream::wrappers::ReceiverStream::new(rx)).keep_alive(KeepAlive::default())
}

/// A logged event as JSON: its `event` field names it, its index is its id.
pub(crate) fn json_event(index: usize, event: &Value) -> Vec<Event> {
    vec![Event::default().id(index.to_string()).event(event["event"].as_str().unwrap_or("message")).data(event.to_string())]
}
