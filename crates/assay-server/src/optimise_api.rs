//! Optimisation over HTTP: `POST /v1/optimise` starts (or resumes) an optimise run in the
//! background and answers 202 with it; `GET /v1/optimise/{id}/events` streams its progress
//! (SSE: one `generation` event per evaluated generation, one `gold` event per stored gold
//! output, then `end` with the run's final record); `GET /v1/optimise/{id}` returns the run
//! with its gold outputs and their lineage. The expert's side: `GET
//! /v1/projects/{project}/gold` lists a version's gold outputs and `POST
//! /v1/projects/{project}/gold/{id}/critique` rejects one. Same pipeline calls as `assay
//! optimise`, `assay gold` and `assay critique`.

use crate::background::{spawn_run, EventLog, Stage};
use crate::error::ApiError;
use crate::pipeline_backend::ServerBackend;
use crate::projects_api::{waited_for, with_store};
use crate::{ApiJson, ApiPath, ApiQuery, AppState};
use assay_pipeline::gold::{critique, run_optimisation, start_optimise_run, Critique, OptimiseEvent, OptimiseRunOptions, DEFAULT_OPTIMISE_ITEMS};
use assay_pipeline::optimise::OptimiseOptions;
use assay_store::{GoldOutput, GoldOutputId, Run, RunId, RunKind, RunStatus, Store};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::convert::Infallible;

#[derive(Deserialize)]
pub(crate) struct StartOptimise {
    project: String,
    /// Evaluator-set version; default the latest.
    set: Option<u32>,
    /// Default: the project's most recent dataset.
    dataset: Option<String>,
    /// How many of the dataset's items (the first ones); default `DEFAULT_OPTIMISE_ITEMS`.
    items: Option<usize>,
    generations: Option<usize>,
    population: Option<usize>,
    budget: Option<usize>,
    max_tokens: Option<usize>,
    seed: Option<u64>,
    /// Also sample best-of-N with the same number of evaluations per item.
    #[serde(default)]
    compare: bool,
    /// Judge in rationale mode so that rewrites are told why checks failed.
    #[serde(default)]
    rationales: bool,
}

#[derive(Serialize)]
pub(crate) struct StartedOptimise {
    run: Run,
    /// An interrupted or unfinished run with the same parameters was picked up.
    resumed: bool,
}

pub(crate) async fn start(State(state): State<AppState>, ApiJson(req): ApiJson<StartOptimise>) -> Result<(StatusCode, Json<StartedOptimise>), ApiError> {
    state.models()?;
    // The CLI's defaults, so that either can resume a run the other started.
    let defaults = OptimiseOptions::default();
    let population = req.population.unwrap_or(defaults.population);
    let options = OptimiseRunOptions {
        search: OptimiseOptions {
            generations: req.generations.unwrap_or(defaults.generations),
            population,
            budget: req.budget.unwrap_or_else(|| OptimiseOptions::default_budget(population)),
            seed: req.seed.unwrap_or(defaults.seed),
            max_tokens: req.max_tokens.unwrap_or(defaults.max_tokens.min(state.0.config.limits.max_tokens)),
            rationales: req.rationales,
        },
        items: Some(req.items.unwrap_or(DEFAULT_OPTIMISE_ITEMS.min(state.0.config.limits.items))),
        compare: req.compare,
    };
    let limits = &state.0.config.limits;
    limits.optimise(&options.search)?;
    limits.items(options.items.unwrap_or(0))?;
    let (run, resumed) = with_store(&state.clone(), move |store| {
        let runs = &state.0.background;
        let _one_at_a_time = runs.starting();
        let project = store.project_by_name(&req.project)?;
        let set = store.set_version_or_latest(&project, req.set)?;
        let dataset = store.dataset_or_latest(&project, req.dataset.as_deref())?;
        let backends = ServerBackend::for_background(&state);
        let (mut run, resumed) = start_optimise_run(store, &backends, &project, &set, &dataset, &options)?;
        if !runs.is_live(run.id) {
            if run.status != RunStatus::Queued {
                run = store.set_run_status(run.id, RunStatus::Running, None)?;
            }
            runs.open_log(run.id);
            let (db, id, publisher) = (state.0.config.db.clone(), run.id, state.clone());
            spawn_run(&state, id, move |progress| {
                let mut store = Store::open(&db)?;
                run_optimisation(&mut store, &backends, &project, id, &mut |event| {
                    if let OptimiseEvent::Gold { stored, items, .. } = event {
                        progress("optimising", *stored, *items);
                    }
                    publisher.0.background.publish(id, serde_json::to_value(event).unwrap_or_default());
                })
                .map(drop)
            });
        }
        Ok((run, resumed))
    })
    .await?;
    Ok((StatusCode::ACCEPTED, Json(StartedOptimise { run, resumed })))
}

fn optimise_run(store: &Store, id: i64) -> Result<Run, ApiError> {
    let run = store.run(RunId(id))?;
    if run.kind != RunKind::Optimise {
        return Err(ApiError::RecordNotFound(format!("optimise run {id} not found (run {id} is a {} run)", run.kind)));
    }
    Ok(run)
}

#[derive(Serialize)]
pub(crate) struct OptimiseView {
    run: Run,
    /// While this server works on the run: its progress in items.
    stage: Option<Stage>,
    /// The gold outputs stored so far, with every candidate's lineage.
    gold: Vec<GoldOutput>,
}

pub(crate) async fn show(State(state): State<AppState>, ApiPath(id): ApiPath<i64>) -> Result<Json<OptimiseView>, ApiError> {
    let (run, gold) = with_store(&state, move |store| {
        let run = optimise_run(store, id)?;
        let gold = store.run_gold_outputs(run.id)?;
        Ok((run, gold))
    })
    .await?;
    Ok(Json(OptimiseView { stage: state.0.background.stage(run.id), run, gold }))
}

/// The run's events since this server started (or resumed) it, replayed from its log, then
/// followed live; for a run it keeps no log of, only `end` with the run as stored (an
/// interrupted run shows as running until it is resumed).
pub(crate) async fn events(State(state): State<AppState>, ApiPath(id): ApiPath<i64>) -> Result<impl axum::response::IntoResponse, ApiError> {
    let run = with_store(&state, move |store| optimise_run(store, id)).await?;
    let mut log = match state.0.background.follow(run.id) {
        Some(log) => log,
        None => tokio::sync::watch::channel(EventLog { events: vec![json!({"event": "end", "run": run})], ended: true }).1,
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Event, Infallible>>(16);
    tokio::spawn(async move {
        let mut sent = 0;
        loop {
            let (fresh, ended) = {
                let l = log.borrow_and_update();
                (l.events[sent..].to_vec(), l.ended)
            };
            for event in fresh {
                let kind = event["event"].as_str().unwrap_or("message").to_string();
                if tx.send(Ok(Event::default().event(kind).data(event.to_string()))).await.is_err() {
                    return;
                }
                sent += 1;
            }
            // The log's sender goes when a resumed run replaces it: nothing more comes here.
            if ended || log.changed().await.is_err() {
                return;
            }
        }
    });
    Ok(Sse::new(tokio_stream::wrappers::ReceiverStream::new(rx)).keep_alive(KeepAlive::default()))
}

#[derive(Deserialize)]
pub(crate) struct GoldQuery {
    /// Evaluator-set version; default the latest.
    set: Option<u32>,
}

#[derive(Serialize)]
pub(crate) struct GoldList {
    set: u32,
    gold: Vec<GoldOutput>,
}

pub(crate) async fn list_gold(State(state): State<AppState>, ApiPath(name): ApiPath<String>, ApiQuery(query): ApiQuery<GoldQuery>) -> Result<Json<GoldList>, ApiError> {
    let list = with_store(&state, move |store| {
        let project = store.project_by_name(&name)?;
        let set = store.set_version_or_latest(&project, query.set)?;
        Ok(GoldList { set: set.number, gold: store.gold_outputs(set.id)? })
    })
    .await?;
    Ok(Json(list))
}

#[derive(Deserialize)]
pub(crate) struct CritiqueRequest {
    /// What is wrong with the output, in the expert's words.
    note: String,
    #[serde(default)]
    seed: u64,
}

pub(crate) async fn critique_gold(State(state): State<AppState>, ApiPath((name, id)): ApiPath<(String, i64)>, ApiJson(req): ApiJson<CritiqueRequest>) -> Result<Json<Critique>, ApiError> {
    let done = waited_for(&state, move |store, backends| {
        let project = store.project_by_name(&name)?;
        Ok(critique(store, backends, &project, GoldOutputId(id), &req.note, req.seed)?)
    })
    .await?;
    Ok(Json(done))
}
