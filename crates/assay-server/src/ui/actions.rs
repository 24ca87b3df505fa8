//! The workbench's forms: each takes the fields of its `/v1` twin's request, calls the same
//! function, and answers with a redirect to the page that shows the result (post/redirect/get),
//! or the form again with what was wrong.

use super::pages::{question_page, safe_next, Draft, LoginView, UploadView};
use super::{page, percent_encode, reviewer, see_other, set_cookie, Frame, UiError, REVIEWER_COOKIE, SESSION_COOKIE};
use crate::error::ApiError;
use crate::limits::JudgeOptionsRequest;
use crate::optimise_api::{critique_output, start_optimise, CritiqueRequest, StartOptimise};
use crate::projects_api::{
    answer as record_answer, new_project, record_labels, refine_version, remove_label, rule_on_check, ruling_preview, start_discovery_run, start_judge, store_dataset, waited_for, with_store,
    AddLabels, Answer, CheckRuling, CreateProject, Discover, PreviewRuling, Refine, RemoveLabel, ReviewFilter, StartJudgeRun,
};
use crate::{ApiPath, AppState};
use assay_core::Verdict;
use assay_pipeline::labels::LabelRecord;
use assay_store::dataset_file::{read_items, FieldMap, Format};
use axum::extract::{Multipart, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use serde::Deserialize;
use subtle::ConstantTimeEq;

type Action = Result<Response, UiError>;

/// A number from a form field; blank is absent.
fn number<T: std::str::FromStr>(field: &str, text: &str) -> Result<Option<T>, UiError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| UiError(ApiError::InvalidRequest(format!("{field}: {text:?} is not a number"))))
}

fn verdict(text: &str) -> Result<Option<Verdict>, UiError> {
    match text.trim().to_ascii_uppercase().as_str() {
        "" => Ok(None),
        "PASS" => Ok(Some(Verdict::Pass)),
        "FAIL" => Ok(Some(Verdict::Fail)),
        other => Err(UiError(ApiError::InvalidRequest(format!("verdict: {other:?} is neither PASS nor FAIL")))),
    }
}

#[derive(Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    key: String,
    #[serde(default)]
    reviewer: String,
    #[serde(default)]
    next: String,
}

/// Takes the API key (when the server has one) and the reviewer's name; gives the session
/// cookie for the key, never the key itself.
pub(crate) async fn login(State(state): State<AppState>, headers: HeaderMap, Form(form): Form<LoginForm>) -> Action {
    let next = safe_next(Some(&form.next));
    let mut response = see_other(&next);
    if let Some(key) = &state.0.config.api_key {
        if !bool::from(form.key.as_bytes().ct_eq(key.as_bytes())) {
            let view = LoginView { next, needs_key: true, error: Some("That key is not this server's API key.".into()) };
            return page("login.html", Frame::new(&state, &headers, "Log in", None, None), view, StatusCode::UNAUTHORIZED);
        }
        response.headers_mut().append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, &state.0.session, None));
    }
    let name = form.reviewer.trim();
    response.headers_mut().append(header::SET_COOKIE, set_cookie(REVIEWER_COOKIE, &percent_encode(name), Some(400 * 24 * 3600)));
    Ok(response)
}

pub(crate) async fn logout() -> Response {
    let mut response = see_other("/ui/login");
    response.headers_mut().append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, "", Some(0)));
    response
}

#[derive(Deserialize)]
pub(crate) struct ProjectForm {
    name: String,
    #[serde(default)]
    task: String,
    generation_prompt: String,
}

pub(crate) async fn create_project(State(state): State<AppState>, Form(form): Form<ProjectForm>) -> Action {
    let req = CreateProject { name: form.name.trim().to_string(), generation_prompt: form.generation_prompt, task: form.task, expert_notes: String::new(), config: None };
    let project = new_project(&state, req).await?;
    Ok(see_other(&format!("/ui/p/{}", project.name)))
}

/// A dataset file (JSONL or CSV by its name), read by `assay data import`'s reader: a bad line
/// is named and nothing is stored.
pub(crate) async fn upload(State(state): State<AppState>, headers: HeaderMap, ApiPath(project): ApiPath<String>, mut form: Multipart) -> Action {
    let (mut name, mut file): (String, Option<(String, Vec<u8>)>) = (String::new(), None);
    while let Some(field) = form.next_field().await.map_err(|e| UiError(ApiError::InvalidRequest(format!("the upload: {e}"))))? {
        match field.name() {
            Some("name") => name = field.text().await.map_err(|e| UiError(ApiError::InvalidRequest(e.to_string())))?.trim().to_string(),
            Some("file") => {
                let file_name = field.file_name().unwrap_or("").to_string();
                file = Some((file_name, field.bytes().await.map_err(|e| UiError(ApiError::InvalidRequest(e.to_string())))?.to_vec()));
            }
            _ => {}
        }
    }
    let refused = |error: String, name: String| {
        let frame = Frame::new(&state, &headers, format!("Upload data · {project}"), Some(&project), None);
        page("upload.html", frame, UploadView { project: project.clone(), name, error: Some(error) }, StatusCode::UNPROCESSABLE_ENTITY)
    };
    let Some((file_name, bytes)) = file.filter(|(n, _)| !n.is_empty()) else { return refused("Choose a file to upload.".into(), name) };
    let format = match Format::of_path(std::path::Path::new(&file_name)) {
        Ok(f) => f,
        Err(e) => return refused(e.to_string(), name),
    };
    let Ok(text) = String::from_utf8(bytes) else { return refused(format!("{file_name} is not UTF-8 text"), name) };
    let items = match read_items(&text, format, &FieldMap::default()) {
        Ok(items) => items,
        Err(e) => return refused(format!("{file_name}: {e}"), name),
    };
    let dataset_name = if name.is_empty() { std::path::Path::new(&file_name).file_stem().and_then(|s| s.to_str()).unwrap_or("data").to_string() } else { name.clone() };
    match store_dataset(&state, project.clone(), dataset_name, format!("upload of {file_name}"), items).await {
        Ok(dataset) => Ok(see_other(&format!("/ui/p/{project}/data/{}", dataset.name))),
        Err(e) if e.status() == StatusCode::BAD_REQUEST || e.status() == StatusCode::CONFLICT => refused(e.to_string(), name),
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub(crate) struct DiscoverForm {
    #[serde(default)]
    dataset: String,
    #[serde(default)]
    checks: String,
    #[serde(default)]
    seed: String,
}

pub(crate) async fn discover(State(state): State<AppState>, ApiPath(project): ApiPath<String>, Form(form): Form<DiscoverForm>) -> Action {
    let req = Discover { dataset: Some(form.dataset).filter(|d| !d.is_empty()), checks: number("checks", &form.checks)?, seed: number("seed", &form.seed)? };
    let run = start_discovery_run(&state, project.clone(), req).await?;
    Ok(see_other(&format!("/ui/p/{project}/runs/{}", run.id)))
}

#[derive(Deserialize)]
pub(crate) struct JudgeForm {
    #[serde(default)]
    set: String,
    #[serde(default)]
    dataset: String,
}

pub(crate) async fn start_run(State(state): State<AppState>, ApiPath(project): ApiPath<String>, Form(form): Form<JudgeForm>) -> Action {
    let req = StartJudgeRun { set: number("set", &form.set)?, dataset: Some(form.dataset).filter(|d| !d.is_empty()), chunk_items: None, options: JudgeOptionsRequest::default() };
    let (run, _) = start_judge(&state, project.clone(), req).await?;
    Ok(see_other(&format!("/ui/p/{project}/runs/{}", run.id)))
}

#[derive(Deserialize)]
pub(crate) struct AnswerForm {
    #[serde(default)]
    ruling: String,
    #[serde(default)]
    label: String,
}

/// Saves the ruling (and label) and goes on to the next open question.
pub(crate) async fn answer(State(state): State<AppState>, headers: HeaderMap, ApiPath((project, id)): ApiPath<(String, i64)>, Form(form): Form<AnswerForm>) -> Action {
    let req = Answer { ruling: form.ruling.clone(), label: verdict(&form.label)?, rater: reviewer(&headers) };
    let name = project.clone();
    let saved = with_store(&state, move |store| {
        record_answer(store, &name, id, &req)?;
        crate::projects_api::question_detail(store, &name, id)
    })
    .await;
    match saved {
        Ok(detail) => Ok(see_other(&detail.next_question().map_or(format!("/ui/p/{project}/questions"), |n| format!("/ui/p/{project}/questions/{n}")))),
        Err(e) if e.status() == StatusCode::BAD_REQUEST => {
            let draft = Draft { ruling: form.ruling, label: form.label, preview: None, error: Some(e.to_string()) };
            question_page(&state, &headers, project, id, draft, StatusCode::BAD_REQUEST).await
        }
        Err(e) => Err(e.into()),
    }
}

/// What the draft ruling would change, shown on the question page with the draft kept.
pub(crate) async fn preview(State(state): State<AppState>, headers: HeaderMap, ApiPath((project, id)): ApiPath<(String, i64)>, Form(form): Form<AnswerForm>) -> Action {
    let req = PreviewRuling { ruling: form.ruling.clone(), label: verdict(&form.label)? };
    let name = project.clone();
    let preview = waited_for(&state, move |store, backends| ruling_preview(store, backends, &name, id, &req)).await?;
    question_page(&state, &headers, project, id, Draft { ruling: form.ruling, label: form.label, preview: Some(preview), error: None }, StatusCode::OK).await
}

pub(crate) async fn reopen(State(state): State<AppState>, ApiPath((project, id)): ApiPath<(String, i64)>) -> Action {
    let name = project.clone();
    with_store(&state, move |store| {
        let p = store.project_by_name(&name)?;
        crate::projects_api::project_question(store, &p, id)?;
        Ok(store.reopen_question(assay_store::QuestionId(id))?)
    })
    .await?;
    Ok(see_other(&format!("/ui/p/{project}/questions/{id}")))
}

/// A label given in the review queue, with where the queue stood.
#[derive(Deserialize)]
pub(crate) struct LabelForm {
    dataset: String,
    item: String,
    check: String,
    #[serde(default)]
    verdict: String,
    #[serde(default)]
    filter: ReviewFilter,
    #[serde(default)]
    only: String,
    #[serde(default)]
    judge: String,
    #[serde(default)]
    expert: String,
    #[serde(default)]
    i: String,
}

impl LabelForm {
    fn queue(&self, at: usize) -> String {
        let filter = serde_json::to_value(self.filter).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        let cell: String = [("judge", &self.judge), ("expert", &self.expert)].iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| format!("&{k}={}", percent_encode(v))).collect();
        format!("review?filter={filter}&check={}{cell}&i={at}", percent_encode(&self.only))
    }
}

/// Records the label and moves on: to the next pair, or, in the unlabelled queue (which the
/// pair just left), to the one that took its place.
pub(crate) async fn label(State(state): State<AppState>, headers: HeaderMap, ApiPath(project): ApiPath<String>, Form(form): Form<LabelForm>) -> Action {
    let verdict = verdict(&form.verdict)?.ok_or_else(|| UiError(ApiError::InvalidRequest("verdict: choose PASS or FAIL".into())))?;
    let record = LabelRecord { item: form.item.clone(), check: Some(form.check.clone()), verdict: Some(verdict), score: None, note: String::new(), rater: reviewer(&headers) };
    let req = AddLabels { dataset: Some(form.dataset.clone()), labels: vec![record] };
    let name = project.clone();
    with_store(&state, move |store| record_labels(store, &name, &req)).await?;
    let at = number::<usize>("i", &form.i)?.unwrap_or(1);
    let next = if form.filter == ReviewFilter::Unlabelled { at } else { at + 1 };
    Ok(see_other(&format!("/ui/p/{project}/{}&last_item={}&last_check={}", form.queue(next), percent_encode(&form.item), percent_encode(&form.check))))
}

/// Takes back a label (`u` in the review queue) and shows its pair again.
pub(crate) async fn undo_label(State(state): State<AppState>, ApiPath(project): ApiPath<String>, Form(form): Form<LabelForm>) -> Action {
    let req = RemoveLabel { dataset: Some(form.dataset.clone()), item: form.item.clone(), check: form.check.clone() };
    let name = project.clone();
    with_store(&state, move |store| remove_label(store, &name, &req)).await?;
    // Back to the position the label was given at: the pair is there again.
    let at = number::<usize>("i", &form.i)?.unwrap_or(1);
    let back = if form.filter == ReviewFilter::Unlabelled { at } else { at.saturating_sub(1).max(1) };
    Ok(see_other(&format!("/ui/p/{project}/{}", form.queue(back))))
}

#[derive(Deserialize)]
pub(crate) struct CheckActionForm {
    /// "drop" or "split".
    action: String,
    #[serde(default)]
    why: String,
}

/// "Drop this check" and "split this check": the expert's ruling on the check, then a
/// refinement, which reads it like any other; shows the diff to the new version.
pub(crate) async fn check_action(State(state): State<AppState>, headers: HeaderMap, ApiPath((project, check)): ApiPath<(String, String)>, Form(form): Form<CheckActionForm>) -> Action {
    if form.action != "drop" && form.action != "split" {
        return Err(UiError(ApiError::InvalidRequest(format!("action: {:?} is neither drop nor split", form.action))));
    }
    let ruling = format!("{} this check{}", form.action, if form.why.trim().is_empty() { String::new() } else { format!(": {}", form.why.trim()) });
    let req = CheckRuling { ruling, rater: reviewer(&headers) };
    let name = project.clone();
    let refined = waited_for(&state, move |store, backends| {
        rule_on_check(store, &name, &check, &req)?;
        refine_version(store, backends, &name, &Refine { set: None, seed: None, run: None })
    })
    .await?;
    Ok(refined_to(&project, &refined))
}

/// The diff to the version a refinement made, or the version when nothing changed.
fn refined_to(project: &str, refined: &assay_pipeline::refine::RefineReport) -> Response {
    see_other(&match refined.to {
        Some(to) => format!("/ui/p/{project}/sets/{}/diff/{to}", refined.from),
        None => format!("/ui/p/{project}/sets/{}", refined.from),
    })
}

#[derive(Deserialize)]
pub(crate) struct RefineForm {
    #[serde(default)]
    set: String,
}

/// Refines the version; shows the diff to the new one (or the version, when nothing changed).
pub(crate) async fn refine(State(state): State<AppState>, ApiPath(project): ApiPath<String>, Form(form): Form<RefineForm>) -> Action {
    let req = Refine { set: number("set", &form.set)?, seed: None, run: None };
    let name = project.clone();
    let refined = waited_for(&state, move |store, backends| refine_version(store, backends, &name, &req)).await?;
    Ok(refined_to(&project, &refined))
}

#[derive(Deserialize)]
pub(crate) struct CritiqueForm {
    note: String,
}

/// Rejects a gold output; when the check writer proposes a check, the question that carries it
/// is next.
pub(crate) async fn critique(State(state): State<AppState>, ApiPath((project, id)): ApiPath<(String, i64)>, Form(form): Form<CritiqueForm>) -> Action {
    let req = CritiqueRequest { note: form.note, seed: 0 };
    let name = project.clone();
    let done = waited_for(&state, move |store, backends| critique_output(store, backends, &name, id, &req)).await?;
    Ok(see_other(&match done.question {
        Some(q) => format!("/ui/p/{project}/questions/{q}"),
        None => format!("/ui/p/{project}/gold"),
    }))
}

#[derive(Deserialize)]
pub(crate) struct OptimiseForm {
    #[serde(default)]
    items: String,
    #[serde(default)]
    population: String,
    #[serde(default)]
    generations: String,
    #[serde(default)]
    budget: String,
    #[serde(default)]
    max_tokens: String,
}

pub(crate) async fn optimise(State(state): State<AppState>, ApiPath(project): ApiPath<String>, Form(form): Form<OptimiseForm>) -> Action {
    let req = StartOptimise {
        project,
        items: number("items", &form.items)?,
        population: number("population", &form.population)?,
        generations: number("generations", &form.generations)?,
        budget: number("budget", &form.budget)?,
        max_tokens: number("max_tokens", &form.max_tokens)?,
        ..StartOptimise::default()
    };
    let (run, _) = start_optimise(&state, req).await?;
    Ok(see_other(&format!("/ui/optimise/{}", run.id)).into_response())
}
