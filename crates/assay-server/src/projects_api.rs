//! `/v1/projects/...`: the evaluation loop over HTTP. The same operations as the CLI's
//! `project`, `data import`, `set`, `discover`, `run`, `report`, `questions`, `answer`,
//! `label` and `refine`, through the same `assay-store` and `assay-pipeline` functions; the
//! handlers only map JSON and errors. Each opens its own connection to the server's store
//! (`--db`) on a blocking thread. Discovery and judge runs answer 202 with the run at once and
//! carry on in the background (`background.rs`) on the server's own models
//! (`pipeline_backend.rs`); clients poll the run.

use crate::background::{spawn_run, Stage};
use crate::error::ApiError;
use crate::limits::JudgeOptionsRequest;
use crate::pipeline_backend::ServerBackend;
use crate::{ApiJson, ApiPath, ApiQuery, AppState};
use assay_core::{EvaluatorSet, Judgment, Verdict};
use assay_pipeline::labels::{labels_of, LabelRecord};
use assay_pipeline::refine::{refine, RefineReport};
use assay_pipeline::report::{report, report_run, SetReport};
use assay_pipeline::{run_discovery, run_judging, start_discovery, start_judge_run, Backends, DiscoverOptions, ProjectConfig, DEFAULT_CHUNK_ITEMS};
use assay_store::dataset_file::{read_items, DatasetFileError, FieldMap, Format};
use assay_store::{ConfigOrigin, Dataset, NewProject, Project, Question, QuestionId, QuestionStatus, Run, RunId, RunStatus, SetDiff, SetVersion, Store};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Discovery's defaults, as `assay discover` has them.
const DEFAULT_DISCOVER_CHECKS: usize = 10;

/// Runs `work` on a blocking thread with a connection of its own to the server's store.
pub(crate) async fn with_store<T: Send + 'static>(state: &AppState, work: impl FnOnce(&mut Store) -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    let db = state.0.config.db.clone();
    tokio::task::spawn_blocking(move || work(&mut Store::open(&db)?)).await.map_err(|e| ApiError::Internal(e.to_string()))?
}

/// Runs pipeline work the request waits for (`with_store`, and backends on the server's
/// models) within the request timeout, like every other request. When the request ends first
/// (the deadline, the client gone, which drops this future) its model calls stop.
pub(crate) async fn waited_for<T: Send + 'static>(state: &AppState, work: impl FnOnce(&mut Store, &Backends) -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    state.models()?;
    let (_stops_work_when_dropped, stop) = tokio::sync::watch::channel(false);
    let backends = ServerBackend::stopped_by(state, stop);
    let timeout = state.0.config.request_timeout;
    tokio::time::timeout(timeout, with_store(state, move |store| work(store, &backends))).await.map_err(|_| ApiError::Timeout(timeout.as_secs()))?
}

/// A configuration read with its defaults, and the JSON to store: the configuration as read,
/// like `assay project config`. It goes through its JSON text so that a temperature reads as
/// written (0.2), not widened from f32. Its token counts are bounded like a request's, and its
/// models must be ones a configuration set over HTTP may use (`--allow-backend`): refused now
/// rather than when a run starts.
fn validated_config(value: &Value, state: &AppState) -> Result<(ProjectConfig, Value), ApiError> {
    let (limits, outbound) = (&state.0.config.limits, &state.0.config.outbound);
    // Serde reads a struct from a list too: `[]` would be every default.
    if !value.is_object() {
        return Err(ApiError::InvalidRequest("a project configuration is a JSON object".into()));
    }
    let mut config = ProjectConfig::from_json(value)?;
    // Token counts given are checked; defaults are lowered to the limit.
    let given = |field: &Value| !field.is_null();
    if given(&value["answer_tokens"]) {
        limits.max_tokens(config.answer_tokens)?;
    }
    config.answer_tokens = config.answer_tokens.min(limits.max_tokens);
    for (i, generator) in config.generators.iter_mut().enumerate() {
        if given(&value["generators"][i]["max_tokens"]) {
            limits.max_tokens(generator.max_tokens)?;
        }
        generator.max_tokens = generator.max_tokens.min(limits.max_tokens);
    }
    for model in config.models() {
        outbound.check(model)?;
    }
    let text = serde_json::to_string(&config).map_err(|e| ApiError::Internal(e.to_string()))?;
    let stored = serde_json::from_str(&text).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok((config, stored))
}

/// A run of `project`; another project's run is not found here.
fn project_run(store: &Store, project: &Project, id: i64) -> Result<Run, ApiError> {
    let run = store.run(RunId(id))?;
    if run.project != project.id {
        return Err(ApiError::RecordNotFound(format!("run {id} of project '{}' not found", project.name)));
    }
    Ok(run)
}

// ---- projects ----

#[derive(Serialize)]
pub(crate) struct ProjectList {
    projects: Vec<Project>,
}

pub(crate) async fn list_projects(State(state): State<AppState>) -> Result<Json<ProjectList>, ApiError> {
    Ok(Json(ProjectList { projects: with_store(&state, |store| Ok(store.projects()?)).await? }))
}

#[derive(Deserialize)]
pub(crate) struct CreateProject {
    name: String,
    generation_prompt: String,
    #[serde(default)]
    task: String,
    #[serde(default)]
    expert_notes: String,
    /// A `ProjectConfig`; absent: every default.
    config: Option<Value>,
}

pub(crate) async fn create_project(State(state): State<AppState>, ApiJson(req): ApiJson<CreateProject>) -> Result<(StatusCode, Json<Project>), ApiError> {
    let config = req.config.as_ref().map(|c| validated_config(c, &state)).transpose()?.map_or_else(|| Value::Object(Default::default()), |(_, stored)| stored);
    let new = NewProject { name: req.name, task: req.task, generation_prompt: req.generation_prompt, expert_notes: req.expert_notes, config, config_origin: ConfigOrigin::Http };
    let project = with_store(&state, move |store| Ok(store.create_project(&new)?)).await?;
    Ok((StatusCode::CREATED, Json(project)))
}

/// A project and everything in it, by summary.
#[derive(Serialize)]
pub(crate) struct ProjectDetail {
    project: Project,
    /// The configuration in effect: the stored one with every default filled in.
    config: ProjectConfig,
    datasets: Vec<Dataset>,
    sets: Vec<SetSummary>,
    runs: Vec<Run>,
}

#[derive(Serialize)]
struct SetSummary {
    number: u32,
    parent: Option<u32>,
    reason: String,
    content_hash: String,
    checks: usize,
    created_at: String,
}

pub(crate) async fn show_project(State(state): State<AppState>, ApiPath(name): ApiPath<String>) -> Result<Json<ProjectDetail>, ApiError> {
    let detail = with_store(&state, move |store| {
        let project = store.project_by_name(&name)?;
        let sets = store
            .set_versions(project.id)?
            .into_iter()
            .map(|v| SetSummary { number: v.number, parent: v.parent, checks: v.set.checks.len(), reason: v.reason, content_hash: v.content_hash, created_at: v.created_at })
            .collect();
        Ok(ProjectDetail { config: ProjectConfig::from_json(&project.config)?, datasets: store.datasets(project.id)?, sets, runs: store.runs(project.id)?, project })
    })
    .await?;
    Ok(Json(detail))
}

pub(crate) async fn put_config(State(state): State<AppState>, ApiPath(name): ApiPath<String>, ApiJson(body): ApiJson<Value>) -> Result<Json<ProjectConfig>, ApiError> {
    let (config, stored) = validated_config(&body, &state)?;
    with_store(&state, move |store| {
        let project = store.project_by_name(&name)?;
        store.update_project_notes_and_config(project.id, &project.expert_notes, &stored, ConfigOrigin::Http)?;
        Ok(())
    })
    .await?;
    Ok(Json(config))
}

// ---- datasets and evaluator sets ----

#[derive(Deserialize)]
pub(crate) struct ImportDataset {
    name: String,
    /// `{id, input, output?, context?, reference?, metadata?}` objects, as lines of a JSONL file.
    items: Vec<Value>,
    /// Where the items came from, for the record.
    source: Option<String>,
}

pub(crate) async fn import_dataset(State(state): State<AppState>, ApiPath(name): ApiPath<String>, ApiJson(req): ApiJson<ImportDataset>) -> Result<(StatusCode, Json<Dataset>), ApiError> {
    // The reader of `assay data import`'s JSONL files, so the same items pass and fail.
    let lines: Vec<String> = req.items.iter().map(Value::to_string).collect();
    let items = read_items(&lines.join("\n"), Format::Jsonl, &FieldMap::default()).map_err(|e| match e {
        DatasetFileError::Line { line, reason } => ApiError::InvalidRequest(format!("items[{}]: {reason}", line - 1)),
        DatasetFileError::Empty => ApiError::InvalidRequest("items is empty".into()),
        other => ApiError::InvalidRequest(other.to_string()),
    })?;
    let source = req.source.unwrap_or_else(|| "HTTP upload".into());
    let dataset = with_store(&state, move |store| {
        let project = store.project_by_name(&name)?;
        Ok(store.import_dataset(project.id, &req.name, &source, &items)?)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(dataset)))
}

#[derive(Deserialize)]
pub(crate) struct ImportSet {
    /// A list of checks, or `{"version", "checks"}`, as `assay set import` reads them.
    checks: Value,
    reason: Option<String>,
}

pub(crate) async fn import_set(State(state): State<AppState>, ApiPath(name): ApiPath<String>, ApiJson(req): ApiJson<ImportSet>) -> Result<(StatusCode, Json<SetVersion>), ApiError> {
    let set = EvaluatorSet::from_json(&req.checks.to_string())?;
    state.0.config.limits.checks(set.checks.len())?;
    let reason = req.reason.unwrap_or_else(|| "imported over HTTP".into());
    let version = with_store(&state, move |store| {
        let project = store.project_by_name(&name)?;
        Ok(store.create_set_version(project.id, &set, &reason)?)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(version)))
}

pub(crate) async fn show_set(State(state): State<AppState>, ApiPath((name, number)): ApiPath<(String, u32)>) -> Result<Json<SetVersion>, ApiError> {
    let version = with_store(&state, move |store| {
        let project = store.project_by_name(&name)?;
        Ok(store.set_version_or_latest(&project, Some(number))?)
    })
    .await?;
    Ok(Json(version))
}

pub(crate) async fn diff_sets(State(state): State<AppState>, ApiPath((name, from, to)): ApiPath<(String, u32, u32)>) -> Result<Json<SetDiff>, ApiError> {
    let diff = with_store(&state, move |store| {
        let project = store.project_by_name(&name)?;
        let (from, to) = (store.set_version_or_latest(&project, Some(from))?, store.set_version_or_latest(&project, Some(to))?);
        Ok(SetDiff::between(&from, &to))
    })
    .await?;
    Ok(Json(diff))
}

// ---- discovery and judge runs ----

#[derive(Serialize)]
pub(crate) struct StartedRun {
    run: Run,
    /// For judge runs: an interrupted or unfinished run with the same parameters was picked up.
    #[serde(skip_serializing_if = "Option::is_none")]
    resumed: Option<bool>,
}

#[derive(Deserialize)]
pub(crate) struct Discover {
    /// Default: the project's most recent dataset.
    dataset: Option<String>,
    /// How many checks to keep.
    checks: Option<usize>,
    seed: Option<u64>,
}

pub(crate) async fn discover(State(state): State<AppState>, ApiPath(name): ApiPath<String>, ApiJson(req): ApiJson<Discover>) -> Result<(StatusCode, Json<StartedRun>), ApiError> {
    state.models()?;
    let options = DiscoverOptions { checks: req.checks.unwrap_or(DEFAULT_DISCOVER_CHECKS.min(state.0.config.limits.checks)), seed: req.seed.unwrap_or(0) };
    state.0.config.limits.checks(options.checks)?;
    let run = with_store(&state.clone(), move |store| {
        let project = store.project_by_name(&name)?;
        let dataset = store.dataset_or_latest(&project, req.dataset.as_deref())?;
        let run = start_discovery(store, &project, &dataset, &options)?;
        let (db, backends, id) = (state.0.config.db.clone(), ServerBackend::for_background(&state), run.id);
        spawn_run(&state, id, move |progress| run_discovery(&mut Store::open(&db)?, &backends, &project, id, &options, progress).map(drop));
        Ok(run)
    })
    .await?;
    Ok((StatusCode::ACCEPTED, Json(StartedRun { run, resumed: None })))
}

#[derive(Deserialize)]
pub(crate) struct StartJudgeRun {
    /// Evaluator-set version; default the latest.
    set: Option<u32>,
    /// Default: the project's most recent dataset.
    dataset: Option<String>,
    /// Items judged between two writes to the store.
    chunk_items: Option<usize>,
    /// `mode`, `samples`, `temperature`, `rationale_tokens`, `seed`, as `assay run` takes them.
    #[serde(flatten)]
    options: JudgeOptionsRequest,
}

pub(crate) async fn start_run(State(state): State<AppState>, ApiPath(name): ApiPath<String>, ApiJson(req): ApiJson<StartJudgeRun>) -> Result<(StatusCode, Json<StartedRun>), ApiError> {
    state.models()?;
    let options = state.0.config.limits.judge(&req.options)?;
    let (run, resumed) = with_store(&state.clone(), move |store| {
        let runs = &state.0.background;
        let _one_at_a_time = runs.starting();
        let project = store.project_by_name(&name)?;
        let set = store.set_version_or_latest(&project, req.set)?;
        let dataset = store.dataset_or_latest(&project, req.dataset.as_deref())?;
        let backends = ServerBackend::for_background(&state);
        let (mut run, resumed) = start_judge_run(store, &backends, &project, &set, &dataset, &options)?;
        if !runs.is_live(run.id) {
            if run.status != RunStatus::Queued {
                // An interrupted or failed run runs again from now: a client polling it must
                // not read its old outcome.
                run = store.set_run_status(run.id, RunStatus::Running, None)?;
            }
            let (db, chunk_items, id) = (state.0.config.db.clone(), req.chunk_items.unwrap_or(DEFAULT_CHUNK_ITEMS), run.id);
            spawn_run(&state, id, move |progress| run_judging(&mut Store::open(&db)?, &backends, &project, id, chunk_items, progress).map(drop));
        }
        Ok((run, resumed))
    })
    .await?;
    Ok((StatusCode::ACCEPTED, Json(StartedRun { run, resumed: Some(resumed) })))
}

#[derive(Serialize)]
pub(crate) struct RunView {
    run: Run,
    /// While this server works on the run: its stage and progress in it.
    stage: Option<Stage>,
}

pub(crate) async fn show_run(State(state): State<AppState>, ApiPath((name, id)): ApiPath<(String, i64)>) -> Result<Json<RunView>, ApiError> {
    let run = with_store(&state, move |store| project_run(store, &store.project_by_name(&name)?, id)).await?;
    Ok(Json(RunView { stage: state.0.background.stage(run.id), run }))
}

#[derive(Serialize)]
pub(crate) struct JudgmentList {
    judgments: Vec<Judgment>,
}

pub(crate) async fn run_judgments(State(state): State<AppState>, ApiPath((name, id)): ApiPath<(String, i64)>) -> Result<Json<JudgmentList>, ApiError> {
    let judgments = with_store(&state, move |store| {
        let run = project_run(store, &store.project_by_name(&name)?, id)?;
        Ok(store.judgments(run.id)?)
    })
    .await?;
    Ok(Json(JudgmentList { judgments }))
}

// ---- reports, the expert's questions and labels, refinement ----

#[derive(Deserialize)]
pub(crate) struct ReportQuery {
    /// Default: the latest version.
    set: Option<u32>,
    /// Default: the set's latest finished judge run.
    run: Option<i64>,
}

pub(crate) async fn show_report(State(state): State<AppState>, ApiPath(name): ApiPath<String>, ApiQuery(query): ApiQuery<ReportQuery>) -> Result<Json<SetReport>, ApiError> {
    let report = waited_for(&state, move |store, backends| {
        let project = store.project_by_name(&name)?;
        let set = store.set_version_or_latest(&project, query.set)?;
        let run = report_run(store, &project, &set, query.run.map(RunId))?;
        Ok(report(store, backends, &project, &set, &run, None)?)
    })
    .await?;
    Ok(Json(report))
}

/// A question with the key of the item it is about (labels name items by key).
#[derive(Serialize)]
pub(crate) struct QuestionView {
    #[serde(flatten)]
    question: Question,
    item_key: Option<String>,
}

impl QuestionView {
    fn of(store: &Store, question: Question) -> Result<Self, ApiError> {
        let item_key = question.asked.item.map(|item| store.item(item)).transpose()?.map(|i| i.fields.key);
        Ok(Self { question, item_key })
    }
}

#[derive(Serialize)]
pub(crate) struct QuestionList {
    questions: Vec<QuestionView>,
}

#[derive(Deserialize)]
pub(crate) struct QuestionsQuery {
    /// Also the answered questions, with their rulings.
    #[serde(default)]
    all: bool,
}

pub(crate) async fn list_questions(State(state): State<AppState>, ApiPath(name): ApiPath<String>, ApiQuery(query): ApiQuery<QuestionsQuery>) -> Result<Json<QuestionList>, ApiError> {
    let questions = with_store(&state, move |store| {
        let project = store.project_by_name(&name)?;
        store.questions(project.id, (!query.all).then_some(QuestionStatus::Open))?.into_iter().map(|q| QuestionView::of(store, q)).collect()
    })
    .await?;
    Ok(Json(QuestionList { questions }))
}

#[derive(Deserialize)]
pub(crate) struct Answer {
    /// Kept verbatim; refinement folds it into the check.
    ruling: String,
    /// For a question about one check on one item: also the expert's label of that pair.
    label: Option<Verdict>,
}

pub(crate) async fn answer_question(State(state): State<AppState>, ApiPath((name, id)): ApiPath<(String, i64)>, ApiJson(req): ApiJson<Answer>) -> Result<Json<QuestionView>, ApiError> {
    let answered = with_store(&state, move |store| {
        let project = store.project_by_name(&name)?;
        if store.question(QuestionId(id))?.project != project.id {
            return Err(ApiError::RecordNotFound(format!("question {id} of project '{}' not found", project.name)));
        }
        let answered = store.answer_question_with_label(QuestionId(id), &req.ruling, req.label)?;
        QuestionView::of(store, answered)
    })
    .await?;
    Ok(Json(answered))
}

#[derive(Deserialize)]
pub(crate) struct AddLabels {
    /// Default: the project's most recent dataset.
    dataset: Option<String>,
    /// `{"item", "check", "verdict": "PASS"|"FAIL", "note"?}` or `{"item", "score", "note"?}`.
    labels: Vec<LabelRecord>,
}

#[derive(Serialize)]
pub(crate) struct LabelsAdded {
    dataset: String,
    check_labels: usize,
    score_labels: usize,
}

pub(crate) async fn add_labels(State(state): State<AppState>, ApiPath(name): ApiPath<String>, ApiJson(req): ApiJson<AddLabels>) -> Result<Json<LabelsAdded>, ApiError> {
    if req.labels.is_empty() {
        return Err(ApiError::InvalidRequest("labels is empty".into()));
    }
    let added = with_store(&state, move |store| {
        let project = store.project_by_name(&name)?;
        let dataset = store.dataset_or_latest(&project, req.dataset.as_deref())?;
        let (checks, scores) = labels_of(&req.labels, &store.items(dataset.id)?)?;
        store.set_check_labels(&checks)?;
        store.set_score_labels(&scores)?;
        Ok(LabelsAdded { dataset: dataset.name, check_labels: checks.len(), score_labels: scores.len() })
    })
    .await?;
    Ok(Json(added))
}

#[derive(Deserialize)]
pub(crate) struct Refine {
    /// Default: the latest version.
    set: Option<u32>,
    /// Seed of the check writer.
    seed: Option<u64>,
}

/// Waits for the refinement: a few check-writer calls, far shorter than a run.
pub(crate) async fn refine_set(State(state): State<AppState>, ApiPath(name): ApiPath<String>, ApiJson(req): ApiJson<Refine>) -> Result<Json<RefineReport>, ApiError> {
    let refined = waited_for(&state, move |store, backends| {
        let project = store.project_by_name(&name)?;
        let set = store.set_version_or_latest(&project, req.set)?;
        Ok(refine(store, backends, &project, &set, req.seed.unwrap_or(0), &mut |_, _, _| {})?)
    })
    .await?;
    Ok(Json(refined))
}
