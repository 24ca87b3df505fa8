//! Optimisation over HTTP: `POST /v1/optimise` starts (or resumes) an optimise run in the
//! background and answers 202 with it; `GET /v1/optimise/{id}/events` streams its progress
//! (SSE: one `generation` event per evaluated generation, one `gold` event per stored gold
//! output, then `end` with the run's final record); `GET /v1/optimise/{id}` returns the run
//! with its gold outputs and their lineage. The expert's side: `GET
//! /v1/projects/{project}/gold` lists a version's gold outputs and `POST
//! /v1/projects/{project}/gold/{id}/critique` rejects one. Same pipeline calls as `assay
//! optimise`, `assay gold` and `assay critique`.

use crate::background::{event_stream, first_unseen, json_event, start_or_resume, Stage};
use crate::error::ApiError;
use crate::pipeline_backend::ServerBackend;
use crate::projects_api::{waited_for, with_store};
use crate::{ApiJson, ApiPath, ApiQuery, AppState};
use assay_pipeline::gold::{critique, run_optimisation, start_optimise_run, Critique, OptimiseEvent, OptimiseRunOptions, DEFAULT_OPTIMISE_ITEMS};
use assay_pipeline::optimise::OptimiseOptions;
use assay_pipeline::Backends;
use assay_store::{GoldOutput, GoldOutputId, Run, RunId, RunKind, Store};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

#[derive(Deserialize, Default)]
pub(crate) struct StartOptimise {
    pub(crate) project: String,
    /// Evaluator-set version; default the latest.
    pub(crate) set: Option<u32>,
    /// Default: the project's most recent dataset.
    pub(crate) dataset: Option<String>,
    /// How many of the dataset's items (the first ones); default `DEFAULT_OPTIMISE_ITEMS`.
    pub(crate) items: Option<usize>,
    pub(crate) generations: Option<usize>,
    pub(crate) population: Option<usize>,
    pub(crate) budget: Option<usize>,
    pub(crate) max_tokens: Option<usize>,
    pub(crate) seed: Option<u64>,
    /// Also sample best-of-N with the same number of evaluations per item.
    #[serde(default)]
    pub(crate) compare: bool,
    /// Judge in rationale mode so that rewrites are told why checks failed.
    #[serde(default)]
    pub(crate) rationales: bool,
}

#[derive(Serialize)]
pub(crate) struct StartedOptimise {
    run: Run,
    /// An interrupted or unfinished run with the same parameters was picked up.
    resumed: bool,
}

pub(crate) async fn start(State(state): State<AppState>, ApiJson(req): ApiJson<StartOptimise>) -> Result<(StatusCode, Json<StartedOptimise>), ApiError> {
    let (run, resumed) = start_optimise(&state, req).await?;
    Ok((StatusCode::ACCEPTED, Json(StartedOptimise { run, resumed })))
}

/// Starts (or resumes) an optimise run in the background: `POST /v1/optimise` and the
/// workbench's form. Returns the run and whether an earlier one was picked up.
pub(crate) async fn start_optimise(state: &AppState, req: StartOptimise) -> Result<(Run, bool), ApiError> {
    state.models()?;
    let state = state.clone();
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
    with_store(&state.clone(), move |store| {
        let find = |store: &mut Store| {
            let project = store.project_by_name(&req.project)?;
            let set = store.set_version_or_latest(&project, req.set)?;
            let dataset = store.dataset_or_latest(&project, req.dataset.as_deref())?;
            let backends = ServerBackend::for_background(&state);
            let (run, resumed) = start_optimise_run(store, &backends, &project, &set, &dataset, &options)?;
            Ok((run, resumed, (backends, project)))
        };
        let (db, publisher) = (state.0.config.db.clone(), state.clone());
        start_or_resume(&state, store, find, |id, (backends, project)| {
            move |progress: &mut dyn FnMut(&str, usize, usize)| {
                let mut store = Store::open(&db)?;
                run_optimisation(&mut store, &backends, &project, id, &mut |event| {
                    if let OptimiseEvent::Gold { stored, items, .. } = event {
                        progress("optimising", *stored, *items);
                    }
                    publisher.0.background.publish(id, serde_json::to_value(event).unwrap_or_default());
                })
                .map(drop)
            }
        })
    })
    .await
}

fn optimise_run(store: &Store, id: i64) -> Result<Run, ApiError> {
    let run = store.run(RunId(id))?;
    if run.kind != RunKind::Optimise {
        return Err(ApiError::RecordNotFound(format!("optimise run {id} not found (run {id} is a {} run)", run.kind)));
    }
    Ok(run)
}

impl OptimiseView {
    pub(crate) fn run(&self) -> &Run {
        &self.run
    }

    pub(crate) fn stage(&self) -> Option<&Stage> {
        self.stage.as_ref()
    }
}

#[derive(Serialize)]
pub(crate) struct OptimiseView {
    run: Run,
    /// While this server works on the run: its progress in items.
    stage: Option<Stage>,
    /// The gold outputs stored so far, with every candidate's lineage.
    gold: Vec<GoldOutput>,
}

/// An optimise run with its gold outputs: `GET /v1/optimise/{id}` and its page.
pub(crate) async fn optimise_view(state: &AppState, id: i64) -> Result<OptimiseView, ApiError> {
    let (run, gold) = with_store(state, move |store| {
        let run = optimise_run(store, id)?;
        let gold = store.run_gold_outputs(run.id)?;
        Ok((run, gold))
    })
    .await?;
    Ok(OptimiseView { stage: state.0.background.stage(run.id), run, gold })
}

pub(crate) async fn show(State(state): State<AppState>, ApiPath(id): ApiPath<i64>) -> Result<Json<OptimiseView>, ApiError> {
    Ok(Json(optimise_view(&state, id).await?))
}

/// The run's events (`background::event_stream`), from after `Last-Event-ID` when given.
pub(crate) async fn events(State(state): State<AppState>, ApiPath(id): ApiPath<i64>, headers: HeaderMap) -> Result<impl axum::response::IntoResponse, ApiError> {
    let run = with_store(&state, move |store| optimise_run(store, id)).await?;
    Ok(event_stream(&state, &run, first_unseen(&headers), json_event))
}

#[derive(Deserialize)]
pub(crate) struct GoldQuery {
    /// Evaluator-set version; default the latest.
    pub(crate) set: Option<u32>,
}

#[derive(Serialize)]
pub(crate) struct GoldList {
    set: u32,
    gold: Vec<GoldView>,
}

/// A gold output with the key and input of its item.
#[derive(Serialize)]
struct GoldView {
    #[serde(flatten)]
    gold: GoldOutput,
    item_key: String,
    input: String,
}

pub(crate) fn gold_list(store: &Store, name: &str, query: &GoldQuery) -> Result<GoldList, ApiError> {
    let project = store.project_by_name(name)?;
    let set = store.set_version_or_latest(&project, query.set)?;
    let gold = store
        .gold_outputs(set.id)?
        .into_iter()
        .map(|gold| {
            let item = store.item(gold.found.item)?;
            Ok(GoldView { gold, item_key: item.fields.key, input: item.fields.input })
        })
        .collect::<Result<_, ApiError>>()?;
    Ok(GoldList { set: set.number, gold })
}

pub(crate) async fn list_gold(State(state): State<AppState>, ApiPath(name): ApiPath<String>, ApiQuery(query): ApiQuery<GoldQuery>) -> Result<Json<GoldList>, ApiError> {
    Ok(Json(with_store(&state, move |store| gold_list(store, &name, &query)).await?))
}

#[derive(Deserialize)]
pub(crate) struct CritiqueRequest {
    /// What is wrong with the output, in the expert's words.
    pub(crate) note: String,
    #[serde(default)]
    pub(crate) seed: u64,
}

/// The expert rejects a gold output: `POST /v1/.../gold/{id}/critique` and the workbench's box.
pub(crate) fn critique_output(store: &mut Store, backends: &Backends, name: &str, id: i64, req: &CritiqueRequest) -> Result<Critique, ApiError> {
    let project = store.project_by_name(name)?;
    Ok(critique(store, backends, &project, GoldOutputId(id), &req.note, req.seed)?)
}

pub(crate) async fn critique_gold(State(state): State<AppState>, ApiPath((name, id)): ApiPath<(String, i64)>, ApiJson(req): ApiJson<CritiqueRequest>) -> Result<Json<Critique>, ApiError> {
    Ok(Json(waited_for(&state, move |store, backends| critique_output(store, backends, &name, id, &req)).await?))
}
