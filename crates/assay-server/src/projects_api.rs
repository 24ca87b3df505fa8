//! `/v1/projects/...`: the evaluation loop over HTTP. The same operations as the CLI's
//! `project`, `data import`, `set`, `discover`, `run`, `report`, `questions`, `answer`,
//! `label` and `refine`, through the same `assay-store` and `assay-pipeline` functions; the
//! handlers only map JSON and errors. Each opens its own connection to the server's store
//! (`--db`) on a blocking thread. Discovery and judge runs answer 202 with the run at once and
//! carry on in the background (`background.rs`) on the server's own models
//! (`pipeline_backend.rs`); clients poll the run.

use crate::background::{event_stream, first_unseen, json_event, spawn_run, start_or_resume, Stage};
use crate::error::ApiError;
use crate::limits::JudgeOptionsRequest;
use crate::pipeline_backend::ServerBackend;
use crate::{ApiJson, ApiPath, ApiQuery, AppState};
use assay_core::{EvaluatorSet, Judgment, Verdict};
use assay_pipeline::labels::{labels_of, LabelRecord};
use assay_pipeline::preview::{preview_ruling, RulingPreview};
use assay_pipeline::refine::{fail_rationale_groups, refine, RefineReport};
use assay_pipeline::report::{latest_judge_run, report, report_run, SetReport};
use assay_pipeline::{run_discovery, run_judging, start_discovery, start_judge_run, Backends, DiscoverOptions, ProjectConfig, DEFAULT_CHUNK_ITEMS};
use assay_store::dataset_file::{read_items, DatasetFileError, FieldMap, Format};
use assay_store::{CheckLabel, ConfigOrigin, Dataset, Item, ItemId, NewItem, NewProject, Project, Question, QuestionId, QuestionStatus, Run, RunId, SetDiff, SetVersion, Store};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;

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
    let backends = ServerBackend::for_request(state, stop);
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

pub(crate) fn project_list(store: &Store) -> Result<ProjectList, ApiError> {
    Ok(ProjectList { projects: store.projects()? })
}

pub(crate) async fn list_projects(State(state): State<AppState>) -> Result<Json<ProjectList>, ApiError> {
    Ok(Json(with_store(&state, |store| project_list(store)).await?))
}

#[derive(Deserialize)]
pub(crate) struct CreateProject {
    pub(crate) name: String,
    pub(crate) generation_prompt: String,
    #[serde(default)]
    pub(crate) task: String,
    #[serde(default)]
    pub(crate) expert_notes: String,
    /// A `ProjectConfig`; absent: every default.
    pub(crate) config: Option<Value>,
}

/// Creates a project: `POST /v1/projects` and the workbench's form.
pub(crate) async fn new_project(state: &AppState, req: CreateProject) -> Result<Project, ApiError> {
    let config = req.config.as_ref().map(|c| validated_config(c, state)).transpose()?.map_or_else(|| Value::Object(Default::default()), |(_, stored)| stored);
    let new = NewProject { name: req.name, task: req.task, generation_prompt: req.generation_prompt, expert_notes: req.expert_notes, config, config_origin: ConfigOrigin::Http };
    with_store(state, move |store| Ok(store.create_project(&new)?)).await
}

pub(crate) async fn create_project(State(state): State<AppState>, ApiJson(req): ApiJson<CreateProject>) -> Result<(StatusCode, Json<Project>), ApiError> {
    Ok((StatusCode::CREATED, Json(new_project(&state, req).await?)))
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
    /// Questions waiting for the expert.
    open_questions: usize,
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

/// The project `name` with its datasets, versions and runs: `GET /v1/projects/{p}` and its page.
pub(crate) fn project_detail(store: &Store, name: &str) -> Result<ProjectDetail, ApiError> {
    let project = store.project_by_name(name)?;
    let sets = store
        .set_versions(project.id)?
        .into_iter()
        .map(|v| SetSummary { number: v.number, parent: v.parent, checks: v.set.checks.len(), reason: v.reason, content_hash: v.content_hash, created_at: v.created_at })
        .collect();
    let open_questions = store.questions(project.id, Some(QuestionStatus::Open))?.len();
    Ok(ProjectDetail { config: ProjectConfig::from_json(&project.config)?, datasets: store.datasets(project.id)?, sets, runs: store.runs(project.id)?, open_questions, project })
}

pub(crate) async fn show_project(State(state): State<AppState>, ApiPath(name): ApiPath<String>) -> Result<Json<ProjectDetail>, ApiError> {
    Ok(Json(with_store(&state, move |store| project_detail(store, &name)).await?))
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
    Ok((StatusCode::CREATED, Json(store_dataset(&state, name, req.name, source, items).await?)))
}

/// Stores read items as a new dataset: the JSON import and the workbench's file upload.
pub(crate) async fn store_dataset(state: &AppState, project: String, dataset: String, source: String, items: Vec<NewItem>) -> Result<Dataset, ApiError> {
    with_store(state, move |store| {
        let project = store.project_by_name(&project)?;
        Ok(store.import_dataset(project.id, &dataset, &source, &items)?)
    })
    .await
}

/// Items per page of a dataset, unless the request asks for another size (at most `MAX_PER_PAGE`).
const ITEMS_PER_PAGE: usize = 50;
const MAX_PER_PAGE: usize = 500;

#[derive(Deserialize)]
pub(crate) struct ItemsQuery {
    /// Only items whose key, input or output contain this text.
    #[serde(default)]
    pub(crate) q: String,
    /// From 1.
    pub(crate) page: Option<usize>,
    pub(crate) per_page: Option<usize>,
}

/// One page of a dataset's items, paged by the database.
#[derive(Serialize)]
pub(crate) struct ItemPage {
    dataset: Dataset,
    q: String,
    page: usize,
    per_page: usize,
    /// Items matching `q` in all, and pages of them.
    total: usize,
    pages: usize,
    items: Vec<Item>,
}

pub(crate) fn item_page(store: &Store, name: &str, dataset: &str, query: &ItemsQuery) -> Result<ItemPage, ApiError> {
    let project = store.project_by_name(name)?;
    let dataset = store.dataset_or_latest(&project, Some(dataset))?;
    let per_page = query.per_page.unwrap_or(ITEMS_PER_PAGE);
    if per_page == 0 || per_page > MAX_PER_PAGE {
        return Err(ApiError::InvalidRequest(format!("per_page must be 1 to {MAX_PER_PAGE}")));
    }
    let page = query.page.unwrap_or(1).max(1);
    let offset = (page - 1).saturating_mul(per_page);
    let (items, total) = store.items_page(dataset.id, Some(query.q.as_str()), offset, per_page)?;
    Ok(ItemPage { dataset, q: query.q.clone(), page, per_page, total, pages: total.div_ceil(per_page).max(1), items })
}

pub(crate) async fn list_items(State(state): State<AppState>, ApiPath((name, dataset)): ApiPath<(String, String)>, ApiQuery(query): ApiQuery<ItemsQuery>) -> Result<Json<ItemPage>, ApiError> {
    Ok(Json(with_store(&state, move |store| item_page(store, &name, &dataset, &query)).await?))
}

/// One item with the expert's labels and, per check, the verdict of the latest judge run on
/// its dataset.
#[derive(Serialize)]
pub(crate) struct ItemDetail {
    dataset: String,
    item: Item,
    labels: Vec<CheckLabel>,
    /// The judge run the judgments come from and its version; none before any run.
    run: Option<i64>,
    set: Option<u32>,
    judgments: Vec<Judgment>,
}

pub(crate) fn item_detail(store: &Store, name: &str, dataset: &str, key: &str) -> Result<ItemDetail, ApiError> {
    let project = store.project_by_name(name)?;
    let dataset = store.dataset_or_latest(&project, Some(dataset))?;
    let item = store.item_by_key(dataset.id, key)?;
    let runs = store.runs(project.id)?;
    let (run, set, judgments) = match latest_judge_run(&runs, |r| r.dataset == Some(dataset.id)) {
        Some(r) => {
            let set = r.set_version.map(|v| store.set_version_by_id(v)).transpose()?.map(|v| v.number);
            (Some(r.id.0), set, store.item_judgments(r.id, item.id)?)
        }
        None => (None, None, Vec::new()),
    };
    Ok(ItemDetail { dataset: dataset.name, labels: store.item_check_labels(item.id)?, item, run, set, judgments })
}

pub(crate) async fn show_item(State(state): State<AppState>, ApiPath((name, dataset, key)): ApiPath<(String, String, String)>) -> Result<Json<ItemDetail>, ApiError> {
    Ok(Json(with_store(&state, move |store| item_detail(store, &name, &dataset, &key)).await?))
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

pub(crate) fn set_version(store: &Store, name: &str, number: u32) -> Result<SetVersion, ApiError> {
    let project = store.project_by_name(name)?;
    Ok(store.set_version_or_latest(&project, Some(number))?)
}

pub(crate) async fn show_set(State(state): State<AppState>, ApiPath((name, number)): ApiPath<(String, u32)>) -> Result<Json<SetVersion>, ApiError> {
    Ok(Json(with_store(&state, move |store| set_version(store, &name, number)).await?))
}

/// One check of a version: its text, the expert's rulings about it, its line of the version's
/// report, the error cluster discovery wrote it from, and its FAIL rationales clustered.
#[derive(Serialize)]
pub(crate) struct CheckView {
    set: SetVersion,
    check: assay_core::Check,
    rulings: Vec<QuestionView>,
    /// The judge run the report line and rationales come from; none before any.
    run: Option<i64>,
    report: Option<assay_pipeline::report::CheckReport>,
    origin: Option<assay_store::CheckOrigin>,
    fail_groups: Vec<Vec<String>>,
}

pub(crate) fn check_view(store: &Store, backends: &Backends, name: &str, number: u32, key: &str) -> Result<CheckView, ApiError> {
    let project = store.project_by_name(name)?;
    let set = store.set_version_or_latest(&project, Some(number))?;
    let check = set.set.checks.iter().find(|c| c.id == key).cloned().ok_or_else(|| ApiError::RecordNotFound(format!("check '{key}' of v{number} not found")))?;
    let rulings = question_list(store, name, true)?.questions.into_iter().filter(|q| q.question.asked.check.as_deref() == Some(key)).collect();
    let (run, report, fail_groups) = match report_run(store, &project, &set, None) {
        Ok(run) => {
            let line = report(store, backends, &project, &set, &run, None)?.checks.into_iter().find(|c| c.id == key);
            let embedder = backends.role(&ProjectConfig::of(&project)?.roles.embedder)?;
            (Some(run.id.0), line, fail_rationale_groups(&embedder, &store.judgments(run.id)?, key)?)
        }
        Err(_) => (None, None, Vec::new()),
    };
    Ok(CheckView { origin: store.check_origin(project.id, set.number, key)?, set, check, rulings, run, report, fail_groups })
}

pub(crate) async fn show_check(State(state): State<AppState>, ApiPath((name, number, check)): ApiPath<(String, u32, String)>) -> Result<Json<CheckView>, ApiError> {
    Ok(Json(waited_for(&state, move |store, backends| check_view(store, backends, &name, number, &check)).await?))
}

#[derive(Deserialize)]
pub(crate) struct CheckRuling {
    /// Kept verbatim: "drop ..." drops the check at the next refinement, "split ..." splits it
    /// by its FAIL rationales, anything else is folded into it.
    pub(crate) ruling: String,
    #[serde(default)]
    pub(crate) rater: String,
}

/// The expert rules on a check unasked (the check page's "drop" and "split"): recorded as an
/// answered question about it, which the next refinement reads like any other.
pub(crate) fn rule_on_check(store: &mut Store, name: &str, key: &str, req: &CheckRuling) -> Result<QuestionView, ApiError> {
    let project = store.project_by_name(name)?;
    let set = store.set_version_or_latest(&project, None)?;
    if !set.set.checks.iter().any(|c| c.id == key) {
        return Err(ApiError::RecordNotFound(format!("check '{key}' of v{} not found", set.number)));
    }
    if req.ruling.trim().is_empty() {
        return Err(ApiError::InvalidRequest("a ruling cannot be blank".into()));
    }
    let asked = assay_store::NewQuestion { item: None, check: Some(key.to_string()), why: format!("the expert ruled on check '{key}' from its page"), ..Default::default() };
    let id = store.add_questions(project.id, &[asked])?[0];
    let answered = store.answer_question_with_label(id, &req.ruling, None, &req.rater)?;
    QuestionView::of(store, answered)
}

pub(crate) async fn rule_check(
    State(state): State<AppState>,
    ApiPath((name, check)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<CheckRuling>,
) -> Result<(StatusCode, Json<QuestionView>), ApiError> {
    Ok((StatusCode::CREATED, Json(with_store(&state, move |store| rule_on_check(store, &name, &check, &req)).await?)))
}

/// Two versions compared: their checks (added, removed, changed, with a word-level diff of
/// each changed text), and their latest judge runs on the same dataset: which verdicts changed
/// and the agreement with the expert's labels under each.
#[derive(Serialize)]
pub(crate) struct SetDiffView {
    #[serde(flatten)]
    diff: SetDiff,
    words: Vec<FieldWords>,
    /// Pairs judged under both versions whose verdict differs (empty without runs of both on
    /// one dataset).
    verdicts_changed: Vec<VerdictChange>,
    kappa_from: Option<f64>,
    kappa_to: Option<f64>,
    /// Labelled pairs the kappas are computed on.
    labelled_from: usize,
    labelled_to: usize,
}

#[derive(Serialize)]
struct FieldWords {
    check: String,
    field: String,
    segments: Vec<crate::word_diff::WordSegment>,
}

#[derive(Serialize)]
struct VerdictChange {
    item: String,
    check: String,
    from: Verdict,
    to: Verdict,
}

pub(crate) fn set_diff(store: &Store, name: &str, from: u32, to: u32) -> Result<SetDiffView, ApiError> {
    let project = store.project_by_name(name)?;
    let (a, b) = (store.set_version_or_latest(&project, Some(from))?, store.set_version_or_latest(&project, Some(to))?);
    let diff = SetDiff::between(&a, &b);
    let mut words = Vec::new();
    for change in &diff.changed {
        let text = |c: &assay_core::Check, field: &str| match field {
            "name" => c.name.clone(),
            "question" => c.question.clone(),
            "pass_criteria" => c.pass_criteria.clone(),
            "fail_examples" => c.fail_examples.join("\n"),
            _ => c.threshold.map_or("0.5 (default)".into(), |t| t.to_string()),
        };
        for field in &change.fields {
            words.push(FieldWords { check: change.id.clone(), field: field.clone(), segments: crate::word_diff::word_diff(&text(&change.before, field), &text(&change.after, field)) });
        }
    }
    // The latest judge run of each version, on the dataset the newer one was judged on.
    let runs = store.runs(project.id)?;
    let run_b = latest_judge_run(&runs, |r| r.set_version == Some(b.id));
    let run_a = run_b.and_then(|rb| latest_judge_run(&runs, |r| r.set_version == Some(a.id) && r.dataset == rb.dataset));
    let (mut verdicts_changed, mut kappas) = (Vec::new(), [(None, 0), (None, 0)]);
    if let (Some(ra), Some(rb)) = (run_a, run_b) {
        let dataset = rb.dataset.ok_or_else(|| ApiError::Internal(format!("run {} has no dataset", rb.id)))?;
        let keys: HashMap<ItemId, String> = store.items(dataset)?.into_iter().map(|i| (i.id, i.fields.key)).collect();
        let check_labels = store.check_labels(dataset)?;
        let labels: HashMap<(&str, &str), Verdict> = check_labels.iter().filter_map(|l| Some(((keys.get(&l.item)?.as_str(), l.check.as_str()), l.verdict))).collect();
        let (ja, jb) = (store.judgments(ra.id)?, store.judgments(rb.id)?);
        let before: HashMap<(&str, &str), Verdict> = ja.iter().map(|j| ((j.item_id.as_str(), j.check_id.as_str()), j.verdict)).collect();
        for j in &jb {
            if let Some(&was) = before.get(&(j.item_id.as_str(), j.check_id.as_str())) {
                if was != j.verdict {
                    verdicts_changed.push(VerdictChange { item: j.item_id.clone(), check: j.check_id.clone(), from: was, to: j.verdict });
                }
            }
        }
        for (slot, judgments) in kappas.iter_mut().zip([&ja, &jb]) {
            let (judge, expert): (Vec<bool>, Vec<bool>) =
                judgments.iter().filter_map(|j| Some((j.verdict == Verdict::Pass, *labels.get(&(j.item_id.as_str(), j.check_id.as_str()))? == Verdict::Pass))).unzip();
            *slot = (assay_core::metrics::cohen_kappa(&judge, &expert), judge.len());
        }
    }
    let [(kappa_from, labelled_from), (kappa_to, labelled_to)] = kappas;
    Ok(SetDiffView { diff, words, verdicts_changed, kappa_from, kappa_to, labelled_from, labelled_to })
}

pub(crate) async fn diff_sets(State(state): State<AppState>, ApiPath((name, from, to)): ApiPath<(String, u32, u32)>) -> Result<Json<SetDiffView>, ApiError> {
    Ok(Json(with_store(&state, move |store| set_diff(store, &name, from, to)).await?))
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
    pub(crate) dataset: Option<String>,
    /// How many checks to keep.
    pub(crate) checks: Option<usize>,
    pub(crate) seed: Option<u64>,
}

pub(crate) async fn discover(State(state): State<AppState>, ApiPath(name): ApiPath<String>, ApiJson(req): ApiJson<Discover>) -> Result<(StatusCode, Json<StartedRun>), ApiError> {
    Ok((StatusCode::ACCEPTED, Json(StartedRun { run: start_discovery_run(&state, name, req).await?, resumed: None })))
}

/// Starts a discovery run in the background: `POST /v1/.../discover` and the workbench's form.
pub(crate) async fn start_discovery_run(state: &AppState, name: String, req: Discover) -> Result<Run, ApiError> {
    state.models()?;
    let options = DiscoverOptions { checks: req.checks.unwrap_or(DEFAULT_DISCOVER_CHECKS.min(state.0.config.limits.checks)), seed: req.seed.unwrap_or(0) };
    state.0.config.limits.checks(options.checks)?;
    let state = state.clone();
    with_store(&state.clone(), move |store| {
        let project = store.project_by_name(&name)?;
        let dataset = store.dataset_or_latest(&project, req.dataset.as_deref())?;
        let run = start_discovery(store, &project, &dataset, &options)?;
        let (db, backends, id) = (state.0.config.db.clone(), ServerBackend::for_background(&state), run.id);
        spawn_run(&state, id, move |progress| run_discovery(&mut Store::open(&db)?, &backends, &project, id, &options, progress).map(drop));
        Ok(run)
    })
    .await
}

#[derive(Deserialize)]
pub(crate) struct StartJudgeRun {
    /// Evaluator-set version; default the latest.
    pub(crate) set: Option<u32>,
    /// Default: the project's most recent dataset.
    pub(crate) dataset: Option<String>,
    /// Items judged between two writes to the store.
    pub(crate) chunk_items: Option<usize>,
    /// `mode`, `samples`, `temperature`, `rationale_tokens`, `seed`, as `assay run` takes them.
    #[serde(flatten)]
    pub(crate) options: JudgeOptionsRequest,
}

pub(crate) async fn start_run(State(state): State<AppState>, ApiPath(name): ApiPath<String>, ApiJson(req): ApiJson<StartJudgeRun>) -> Result<(StatusCode, Json<StartedRun>), ApiError> {
    let (run, resumed) = start_judge(&state, name, req).await?;
    Ok((StatusCode::ACCEPTED, Json(StartedRun { run, resumed: Some(resumed) })))
}

/// Starts (or resumes) a judge run in the background: `POST /v1/.../runs` and the workbench's
/// button. Returns the run and whether an earlier one was picked up.
pub(crate) async fn start_judge(state: &AppState, name: String, req: StartJudgeRun) -> Result<(Run, bool), ApiError> {
    state.models()?;
    let state = state.clone();
    let options = state.0.config.limits.judge(&req.options)?;
    with_store(&state.clone(), move |store| {
        let find = |store: &mut Store| {
            let project = store.project_by_name(&name)?;
            let set = store.set_version_or_latest(&project, req.set)?;
            let dataset = store.dataset_or_latest(&project, req.dataset.as_deref())?;
            let backends = ServerBackend::for_background(&state);
            let (run, resumed) = start_judge_run(store, &backends, &project, &set, &dataset, &options)?;
            Ok((run, resumed, (backends, project)))
        };
        let (db, chunk_items) = (state.0.config.db.clone(), req.chunk_items.unwrap_or(DEFAULT_CHUNK_ITEMS));
        start_or_resume(&state, store, find, |id, (backends, project)| {
            move |progress: &mut dyn FnMut(&str, usize, usize)| run_judging(&mut Store::open(&db)?, &backends, &project, id, chunk_items, progress).map(drop)
        })
    })
    .await
}

#[derive(Serialize)]
pub(crate) struct RunView {
    run: Run,
    /// While this server works on the run: its stage and progress in it.
    stage: Option<Stage>,
}

impl RunView {
    pub(crate) fn run(&self) -> &Run {
        &self.run
    }

    pub(crate) fn stage(&self) -> Option<&Stage> {
        self.stage.as_ref()
    }
}

/// A run with its live stage: `GET /v1/.../runs/{id}` and its page.
pub(crate) async fn run_view(state: &AppState, name: String, id: i64) -> Result<RunView, ApiError> {
    let run = with_store(state, move |store| project_run(store, &store.project_by_name(&name)?, id)).await?;
    Ok(RunView { stage: state.0.background.stage(run.id), run })
}

pub(crate) async fn show_run(State(state): State<AppState>, ApiPath((name, id)): ApiPath<(String, i64)>) -> Result<Json<RunView>, ApiError> {
    Ok(Json(run_view(&state, name, id).await?))
}

#[derive(Serialize)]
pub(crate) struct JudgmentList {
    judgments: Vec<Judgment>,
}

#[derive(Deserialize)]
pub(crate) struct JudgmentsQuery {
    /// Only the judgments of this item (its key).
    item: Option<String>,
    /// Only the judgments of this check.
    check: Option<String>,
}

pub(crate) async fn run_judgments(State(state): State<AppState>, ApiPath((name, id)): ApiPath<(String, i64)>, ApiQuery(query): ApiQuery<JudgmentsQuery>) -> Result<Json<JudgmentList>, ApiError> {
    let judgments = with_store(&state, move |store| {
        let run = project_run(store, &store.project_by_name(&name)?, id)?;
        let wanted = |j: &Judgment| query.item.as_ref().is_none_or(|i| *i == j.item_id) && query.check.as_ref().is_none_or(|c| *c == j.check_id);
        Ok(store.judgments(run.id)?.into_iter().filter(wanted).collect())
    })
    .await?;
    Ok(Json(JudgmentList { judgments }))
}

/// A run's events as JSON (`background::event_stream`): `progress`, then `end`.
pub(crate) async fn run_events(State(state): State<AppState>, ApiPath((name, id)): ApiPath<(String, i64)>, headers: HeaderMap) -> Result<impl axum::response::IntoResponse, ApiError> {
    let run = with_store(&state, move |store| project_run(store, &store.project_by_name(&name)?, id)).await?;
    Ok(event_stream(&state, &run, first_unseen(&headers), json_event))
}

// ---- reports, the expert's questions and labels, refinement ----

#[derive(Deserialize, Serialize)]
pub(crate) struct ReportQuery {
    /// Default: the latest version.
    pub(crate) set: Option<u32>,
    /// Default: the set's latest finished judge run.
    pub(crate) run: Option<i64>,
}

pub(crate) fn project_report(store: &Store, backends: &Backends, name: &str, query: &ReportQuery) -> Result<SetReport, ApiError> {
    let project = store.project_by_name(name)?;
    let set = store.set_version_or_latest(&project, query.set)?;
    let run = report_run(store, &project, &set, query.run.map(RunId))?;
    Ok(report(store, backends, &project, &set, &run, None)?)
}

pub(crate) async fn show_report(State(state): State<AppState>, ApiPath(name): ApiPath<String>, ApiQuery(query): ApiQuery<ReportQuery>) -> Result<Json<SetReport>, ApiError> {
    Ok(Json(waited_for(&state, move |store, backends| project_report(store, backends, &name, &query)).await?))
}

/// A question with the key of the item it is about (labels name items by key).
#[derive(Serialize)]
pub(crate) struct QuestionView {
    #[serde(flatten)]
    pub(crate) question: Question,
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
    pub(crate) questions: Vec<QuestionView>,
}

#[derive(Deserialize)]
pub(crate) struct QuestionsQuery {
    /// Also the answered questions, with their rulings.
    #[serde(default)]
    all: bool,
}

/// The project's questions; the open ones ordered by how much an answer would settle (the
/// number of its check's judgments in doubt, then the oldest first).
pub(crate) fn question_list(store: &Store, name: &str, all: bool) -> Result<QuestionList, ApiError> {
    let project = store.project_by_name(name)?;
    let mut questions: Vec<QuestionView> = store.questions(project.id, (!all).then_some(QuestionStatus::Open))?.into_iter().map(|q| QuestionView::of(store, q)).collect::<Result<_, _>>()?;
    let mut weight: HashMap<String, usize> = HashMap::new();
    for q in &questions {
        if let Some(check) = &q.question.asked.check {
            *weight.entry(check.clone()).or_default() += 1;
        }
    }
    questions.sort_by_key(|q| (q.question.status != QuestionStatus::Open, std::cmp::Reverse(q.question.asked.check.as_ref().map_or(0, |c| weight[c])), q.question.id.0));
    Ok(QuestionList { questions })
}

pub(crate) async fn list_questions(State(state): State<AppState>, ApiPath(name): ApiPath<String>, ApiQuery(query): ApiQuery<QuestionsQuery>) -> Result<Json<QuestionList>, ApiError> {
    Ok(Json(with_store(&state, move |store| question_list(store, &name, query.all)).await?))
}

/// One question with what the expert needs to answer it: the item, the check, the judge's
/// verdict on the pair, and where it stands in the open queue.
#[derive(Serialize)]
pub(crate) struct QuestionDetail {
    #[serde(flatten)]
    view: QuestionView,
    item: Option<Item>,
    check: Option<assay_core::Check>,
    judgment: Option<Judgment>,
    /// Its place among the open questions (from 1; 0 when answered), how many are open, and the
    /// open question after it.
    position: usize,
    open: usize,
    next: Option<i64>,
}

impl QuestionDetail {
    /// The open question to go to after this one is answered.
    pub(crate) fn next_question(&self) -> Option<i64> {
        self.next.filter(|&n| n != self.view.question.id.0)
    }
}

pub(crate) fn question_detail(store: &Store, name: &str, id: i64) -> Result<QuestionDetail, ApiError> {
    let project = store.project_by_name(name)?;
    let question = project_question(store, &project, id)?;
    let item = question.asked.item.map(|i| store.item(i)).transpose()?;
    let set = store.latest_set_version(project.id)?;
    let check = question.asked.proposed_check.clone().or_else(|| set.as_ref().and_then(|s| s.set.checks.iter().find(|c| Some(&c.id) == question.asked.check.as_ref()).cloned()));
    let judgment = match (&item, &question.asked.check, &set) {
        (Some(item), Some(check), Some(set)) => match report_run(store, &project, set, None) {
            Ok(run) => store.item_judgments(run.id, item.id)?.into_iter().find(|j| j.check_id == *check),
            Err(_) => None,
        },
        _ => None,
    };
    let open: Vec<i64> = question_list(store, name, false)?.questions.iter().map(|q| q.question.id.0).collect();
    let at = open.iter().position(|&q| q == id);
    let next = match at {
        Some(i) => open.get(i + 1).copied(),
        None => open.first().copied(),
    };
    Ok(QuestionDetail { view: QuestionView::of(store, question)?, item, check, judgment, position: at.map_or(0, |i| i + 1), open: open.len(), next })
}

pub(crate) async fn show_question(State(state): State<AppState>, ApiPath((name, id)): ApiPath<(String, i64)>) -> Result<Json<QuestionDetail>, ApiError> {
    Ok(Json(with_store(&state, move |store| question_detail(store, &name, id)).await?))
}

#[derive(Deserialize)]
pub(crate) struct Answer {
    /// Kept verbatim; refinement folds it into the check.
    pub(crate) ruling: String,
    /// For a question about one check on one item: also the expert's label of that pair.
    pub(crate) label: Option<Verdict>,
    /// Who answers (a reviewer name), kept with the ruling and the label.
    #[serde(default)]
    pub(crate) rater: String,
}

/// A question of `project`; another project's question is not found here.
pub(crate) fn project_question(store: &Store, project: &Project, id: i64) -> Result<Question, ApiError> {
    let question = store.question(QuestionId(id))?;
    if question.project != project.id {
        return Err(ApiError::RecordNotFound(format!("question {id} of project '{}' not found", project.name)));
    }
    Ok(question)
}

/// Records an answer: `POST /v1/.../answer` and the workbench's answer form.
pub(crate) fn answer(store: &mut Store, name: &str, id: i64, req: &Answer) -> Result<QuestionView, ApiError> {
    let project = store.project_by_name(name)?;
    project_question(store, &project, id)?;
    let answered = store.answer_question_with_label(QuestionId(id), &req.ruling, req.label, &req.rater)?;
    QuestionView::of(store, answered)
}

pub(crate) async fn answer_question(State(state): State<AppState>, ApiPath((name, id)): ApiPath<(String, i64)>, ApiJson(req): ApiJson<Answer>) -> Result<Json<QuestionView>, ApiError> {
    Ok(Json(with_store(&state, move |store| answer(store, &name, id, &req)).await?))
}

/// Takes back the ruling on a question (an undo): it is open again.
pub(crate) async fn reopen_question(State(state): State<AppState>, ApiPath((name, id)): ApiPath<(String, i64)>) -> Result<Json<QuestionView>, ApiError> {
    let reopened = with_store(&state, move |store| {
        let project = store.project_by_name(&name)?;
        project_question(store, &project, id)?;
        let q = store.reopen_question(QuestionId(id))?;
        QuestionView::of(store, q)
    })
    .await?;
    Ok(Json(reopened))
}

#[derive(Deserialize)]
pub(crate) struct PreviewRuling {
    /// The draft ruling.
    pub(crate) ruling: String,
    /// The draft label of the question's pair, counted among the labels.
    pub(crate) label: Option<Verdict>,
}

/// What a draft ruling would change (`assay_pipeline::preview`): judged now, nothing stored.
pub(crate) fn ruling_preview(store: &Store, backends: &Backends, name: &str, id: i64, req: &PreviewRuling) -> Result<RulingPreview, ApiError> {
    if req.ruling.trim().is_empty() {
        return Err(ApiError::InvalidRequest("a ruling cannot be blank".into()));
    }
    let project = store.project_by_name(name)?;
    let question = project_question(store, &project, id)?;
    let set = store.set_version_or_latest(&project, None)?;
    Ok(preview_ruling(store, backends, &project, &set, &question, &req.ruling, req.label)?)
}

pub(crate) async fn preview_answer(State(state): State<AppState>, ApiPath((name, id)): ApiPath<(String, i64)>, ApiJson(req): ApiJson<PreviewRuling>) -> Result<Json<RulingPreview>, ApiError> {
    Ok(Json(waited_for(&state, move |store, backends| ruling_preview(store, backends, &name, id, &req)).await?))
}

#[derive(Deserialize)]
pub(crate) struct AddLabels {
    /// Default: the project's most recent dataset.
    pub(crate) dataset: Option<String>,
    /// `{"item", "check", "verdict": "PASS"|"FAIL", "note"?}` or `{"item", "score", "note"?}`.
    pub(crate) labels: Vec<LabelRecord>,
}

#[derive(Serialize)]
pub(crate) struct LabelsAdded {
    dataset: String,
    check_labels: usize,
    score_labels: usize,
}

/// Records labels: `POST /v1/.../labels` and the workbench's label buttons.
pub(crate) fn record_labels(store: &mut Store, name: &str, req: &AddLabels) -> Result<LabelsAdded, ApiError> {
    if req.labels.is_empty() {
        return Err(ApiError::InvalidRequest("labels is empty".into()));
    }
    let project = store.project_by_name(name)?;
    let dataset = store.dataset_or_latest(&project, req.dataset.as_deref())?;
    let (checks, scores) = labels_of(&req.labels, &store.items(dataset.id)?)?;
    store.set_check_labels(&checks)?;
    store.set_score_labels(&scores)?;
    Ok(LabelsAdded { dataset: dataset.name, check_labels: checks.len(), score_labels: scores.len() })
}

pub(crate) async fn add_labels(State(state): State<AppState>, ApiPath(name): ApiPath<String>, ApiJson(req): ApiJson<AddLabels>) -> Result<Json<LabelsAdded>, ApiError> {
    Ok(Json(with_store(&state, move |store| record_labels(store, &name, &req)).await?))
}

/// An expert label, its item named by key (as labels are given).
#[derive(Serialize)]
pub(crate) struct LabelView {
    item: String,
    check: String,
    verdict: Verdict,
    note: String,
    rater: String,
    created_at: String,
}

#[derive(Serialize)]
pub(crate) struct LabelList {
    dataset: String,
    labels: Vec<LabelView>,
}

#[derive(Deserialize)]
pub(crate) struct DatasetQuery {
    /// Default: the project's most recent dataset.
    dataset: Option<String>,
}

pub(crate) async fn list_labels(State(state): State<AppState>, ApiPath(name): ApiPath<String>, ApiQuery(query): ApiQuery<DatasetQuery>) -> Result<Json<LabelList>, ApiError> {
    let list = with_store(&state, move |store| {
        let project = store.project_by_name(&name)?;
        let dataset = store.dataset_or_latest(&project, query.dataset.as_deref())?;
        let keys: HashMap<ItemId, String> = store.items(dataset.id)?.into_iter().map(|i| (i.id, i.fields.key)).collect();
        let labels = store
            .check_labels(dataset.id)?
            .into_iter()
            .map(|l| LabelView { item: keys.get(&l.item).cloned().unwrap_or_default(), check: l.check, verdict: l.verdict, note: l.note, rater: l.rater, created_at: l.created_at })
            .collect();
        Ok(LabelList { dataset: dataset.name, labels })
    })
    .await?;
    Ok(Json(list))
}

/// How far from its check's threshold a P(PASS) is "near" it in the review filter.
const NEAR_THRESHOLD: f32 = 0.15;

/// Which (item, check) pairs the review queue walks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ReviewFilter {
    #[default]
    All,
    /// Pairs without an expert label.
    Unlabelled,
    /// Labelled pairs whose label differs from the judge's verdict.
    Disagree,
    /// Pairs whose sampled verdicts flipped.
    Flips,
    /// Pairs whose P(PASS) is within `NEAR_THRESHOLD` of the check's threshold.
    Near,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub(crate) struct ReviewQuery {
    /// Only this check's pairs.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub(crate) check: Option<String>,
    #[serde(default)]
    pub(crate) filter: ReviewFilter,
    /// Only pairs the judge gave this verdict, and the expert this label (a cell of the
    /// report's confusion matrix).
    pub(crate) judge: Option<Verdict>,
    pub(crate) expert: Option<Verdict>,
    /// Position in the filtered queue, from 1.
    pub(crate) i: Option<usize>,
    /// The pair labelled just before (item key, check), which the page offers to undo.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub(crate) last_item: Option<String>,
    #[serde(default, deserialize_with = "empty_as_none")]
    pub(crate) last_check: Option<String>,
}

/// A form's empty field (a select's "any") as absent.
fn empty_as_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.filter(|s| !s.is_empty()))
}

/// The labelling queue: the (item, check) pairs of the latest version's judge run that the
/// filter keeps, in item then check order, and the one at the position asked for, with the
/// judge's verdict as the suggestion and the expert's label if any.
#[derive(Serialize)]
pub(crate) struct ReviewView {
    query: ReviewQuery,
    set: u32,
    run: i64,
    dataset: String,
    checks: Vec<String>,
    /// Pairs in the filtered queue, the position shown (from 1; 0 when empty), and labelled
    /// pairs of the whole run.
    total: usize,
    position: usize,
    labelled: usize,
    pairs: usize,
    pair: Option<ReviewPair>,
}

#[derive(Serialize)]
struct ReviewPair {
    item: Item,
    check: assay_core::Check,
    judgment: Judgment,
    label: Option<CheckLabel>,
}

pub(crate) fn review_queue(store: &Store, name: &str, query: &ReviewQuery) -> Result<ReviewView, ApiError> {
    let project = store.project_by_name(name)?;
    let set = store.set_version_or_latest(&project, None)?;
    let run = report_run(store, &project, &set, None)?;
    let dataset = store.dataset(run.dataset.ok_or_else(|| ApiError::Internal(format!("run {} has no dataset", run.id)))?)?;
    let items: HashMap<String, Item> = store.items(dataset.id)?.into_iter().map(|i| (i.fields.key.clone(), i)).collect();
    let check_labels = store.check_labels(dataset.id)?;
    let labels: HashMap<(ItemId, &str), &CheckLabel> = check_labels.iter().map(|l| ((l.item, l.check.as_str()), l)).collect();
    let checks: HashMap<&str, (usize, &assay_core::Check)> = set.set.checks.iter().enumerate().map(|(n, c)| (c.id.as_str(), (n, c))).collect();
    let mut judged: Vec<(ItemId, usize, Judgment)> = store.judgments(run.id)?.into_iter().filter_map(|j| Some((items.get(&j.item_id)?.id, checks.get(j.check_id.as_str())?.0, j))).collect();
    judged.sort_by_key(|(item, check, _)| (item.0, *check));
    let pairs = judged.len();
    let labelled = judged.iter().filter(|(item, _, j)| labels.contains_key(&(*item, j.check_id.as_str()))).count();
    let kept: Vec<(ItemId, Judgment)> = judged
        .into_iter()
        .filter(|(item, _, j)| {
            let label = labels.get(&(*item, j.check_id.as_str()));
            query.check.as_ref().is_none_or(|c| *c == j.check_id)
                && query.judge.is_none_or(|v| v == j.verdict)
                && query.expert.is_none_or(|v| label.is_some_and(|l| l.verdict == v))
                && match query.filter {
                    ReviewFilter::All => true,
                    ReviewFilter::Unlabelled => label.is_none(),
                    ReviewFilter::Disagree => label.is_some_and(|l| l.verdict != j.verdict),
                    ReviewFilter::Flips => j.flip_rate.is_some_and(|f| f > 0.0),
                    ReviewFilter::Near => (j.p_pass - checks[j.check_id.as_str()].1.threshold()).abs() < NEAR_THRESHOLD,
                }
        })
        .map(|(item, _, j)| (item, j))
        .collect();
    let total = kept.len();
    let position = query.i.unwrap_or(1).clamp(1, total.max(1)).min(total);
    let pair = (position > 0).then(|| kept.into_iter().nth(position - 1)).flatten().map(|(item, judgment)| {
        let label = labels.get(&(item, judgment.check_id.as_str())).map(|l| (*l).clone());
        let check = checks[judgment.check_id.as_str()].1.clone();
        ReviewPair { item: items[&judgment.item_id].clone(), check, judgment, label }
    });
    Ok(ReviewView {
        query: query.clone(),
        set: set.number,
        run: run.id.0,
        dataset: dataset.name,
        checks: set.set.checks.iter().map(|c| c.id.clone()).collect(),
        total,
        position,
        labelled,
        pairs,
        pair,
    })
}

pub(crate) async fn show_review(State(state): State<AppState>, ApiPath(name): ApiPath<String>, ApiQuery(query): ApiQuery<ReviewQuery>) -> Result<Json<ReviewView>, ApiError> {
    Ok(Json(with_store(&state, move |store| review_queue(store, &name, &query)).await?))
}

#[derive(Deserialize)]
pub(crate) struct RemoveLabel {
    /// Default: the project's most recent dataset.
    pub(crate) dataset: Option<String>,
    pub(crate) item: String,
    pub(crate) check: String,
}

#[derive(Serialize)]
pub(crate) struct LabelRemoved {
    removed: bool,
}

/// Removes one label (an undo): `POST /v1/.../labels/remove` and the workbench's undo.
pub(crate) fn remove_label(store: &mut Store, name: &str, req: &RemoveLabel) -> Result<LabelRemoved, ApiError> {
    let project = store.project_by_name(name)?;
    let dataset = store.dataset_or_latest(&project, req.dataset.as_deref())?;
    let item = store.item_by_key(dataset.id, &req.item)?;
    let removed = store.delete_check_label(item.id, &req.check)?;
    if !removed {
        return Err(ApiError::RecordNotFound(format!("no label of check '{}' on item '{}'", req.check, req.item)));
    }
    Ok(LabelRemoved { removed })
}

pub(crate) async fn delete_label(State(state): State<AppState>, ApiPath(name): ApiPath<String>, ApiJson(req): ApiJson<RemoveLabel>) -> Result<Json<LabelRemoved>, ApiError> {
    Ok(Json(with_store(&state, move |store| remove_label(store, &name, &req)).await?))
}

#[derive(Deserialize)]
pub(crate) struct Refine {
    /// Default: the latest version.
    pub(crate) set: Option<u32>,
    /// Seed of the check writer.
    pub(crate) seed: Option<u64>,
    /// Judge run whose report refinement reads. Default: the set's latest finished judge run.
    pub(crate) run: Option<i64>,
}

/// A new version from the rulings and the latest report: `POST /v1/.../refine` and the
/// workbench's button.
pub(crate) fn refine_version(store: &mut Store, backends: &Backends, name: &str, req: &Refine) -> Result<RefineReport, ApiError> {
    let project = store.project_by_name(name)?;
    let set = store.set_version_or_latest(&project, req.set)?;
    Ok(refine(store, backends, &project, &set, req.run.map(RunId), req.seed.unwrap_or(0), &mut |_, _, _| {})?)
}

/// Waits for the refinement: a few check-writer calls, far shorter than a run.
pub(crate) async fn refine_set(State(state): State<AppState>, ApiPath(name): ApiPath<String>, ApiJson(req): ApiJson<Refine>) -> Result<Json<RefineReport>, ApiError> {
    Ok(Json(waited_for(&state, move |store, backends| refine_version(store, backends, &name, &req)).await?))
}
