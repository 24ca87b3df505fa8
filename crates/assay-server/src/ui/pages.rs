//! The workbench's pages: each renders the view struct of its `/v1` twin, got through the same
//! query function, into its template.

use super::{page, percent_encode, Frame, UiError};
use crate::background::{event_stream, first_unseen};
use crate::optimise_api::{gold_list, optimise_view, GoldQuery};
use crate::projects_api::{
    check_view, item_detail, item_page, project_detail, project_list, project_report, question_detail, question_list, review_queue, run_view, set_diff, set_version, waited_for, with_store,
    ItemsQuery, ReportQuery, ReviewQuery,
};
use crate::{ApiPath, ApiQuery, AppState};
use assay_pipeline::report::{render_plots, Plot, SetReport};
use assay_store::Run;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;

type Page = Result<Response, UiError>;

#[derive(Deserialize)]
pub(crate) struct LoginQuery {
    next: Option<String>,
}

#[derive(Serialize)]
pub(crate) struct LoginView {
    pub next: String,
    pub needs_key: bool,
    pub error: Option<String>,
}

pub(crate) async fn login(State(state): State<AppState>, headers: HeaderMap, axum::extract::Query(q): axum::extract::Query<LoginQuery>) -> Page {
    let view = LoginView { next: safe_next(q.next.as_deref()), needs_key: state.0.config.api_key.is_some(), error: None };
    page("login.html", Frame::new(&state, &headers, "Log in", None, None), view, StatusCode::OK)
}

/// Where to go after logging in: a workbench path only, never another site.
pub(crate) fn safe_next(next: Option<&str>) -> String {
    next.filter(|n| n.starts_with("/ui") && !n.starts_with("//") && !n.contains("\\")).unwrap_or("/ui").to_string()
}

pub(crate) async fn projects(State(state): State<AppState>, headers: HeaderMap) -> Page {
    let view = with_store(&state, |store| project_list(store)).await?;
    page("projects.html", Frame::new(&state, &headers, "Projects", None, Some("/v1/projects".into())), view, StatusCode::OK)
}

pub(crate) async fn project(State(state): State<AppState>, headers: HeaderMap, ApiPath(name): ApiPath<String>) -> Page {
    let frame = Frame::new(&state, &headers, name.clone(), Some(&name), Some(format!("/v1/projects/{name}")));
    let view = with_store(&state, move |store| project_detail(store, &name)).await?;
    page("project.html", frame, view, StatusCode::OK)
}

#[derive(Serialize)]
pub(crate) struct UploadView {
    pub project: String,
    pub name: String,
    pub error: Option<String>,
}

pub(crate) async fn upload(State(state): State<AppState>, headers: HeaderMap, ApiPath(name): ApiPath<String>) -> Page {
    let frame = Frame::new(&state, &headers, format!("Upload data · {name}"), Some(&name), None);
    page("upload.html", frame, UploadView { project: name, name: String::new(), error: None }, StatusCode::OK)
}

pub(crate) async fn items(State(state): State<AppState>, headers: HeaderMap, ApiPath((name, dataset)): ApiPath<(String, String)>, ApiQuery(query): ApiQuery<ItemsQuery>) -> Page {
    let json = format!("/v1/projects/{name}/datasets/{dataset}/items?q={}&page={}", percent_encode(&query.q), query.page.unwrap_or(1));
    let frame = Frame::new(&state, &headers, format!("{dataset} · {name}"), Some(&name), Some(json));
    let view = with_store(&state, move |store| item_page(store, &name, &dataset, &query)).await?;
    page("items.html", frame, view, StatusCode::OK)
}

pub(crate) async fn item(State(state): State<AppState>, headers: HeaderMap, ApiPath((name, dataset, key)): ApiPath<(String, String, String)>) -> Page {
    let frame = Frame::new(&state, &headers, format!("Item {key} · {dataset}"), Some(&name), Some(format!("/v1/projects/{name}/datasets/{dataset}/items/{}", percent_encode(&key))));
    let view = with_store(&state, move |store| item_detail(store, &name, &dataset, &key)).await?;
    page("item.html", frame, view, StatusCode::OK)
}

pub(crate) async fn discover(State(state): State<AppState>, headers: HeaderMap, ApiPath(name): ApiPath<String>) -> Page {
    let frame = Frame::new(&state, &headers, format!("Discover checks · {name}"), Some(&name), Some(format!("/v1/projects/{name}")));
    let view = with_store(&state, move |store| project_detail(store, &name)).await?;
    page("discover.html", frame, view, StatusCode::OK)
}

/// What the run page's status block shows: the first load and every live update render it
/// with `run_status.html`.
#[derive(Serialize)]
pub(crate) struct RunStatusView {
    project: String,
    run: i64,
    kind: String,
    status: String,
    stage: Option<String>,
    done: u64,
    total: u64,
    error: Option<String>,
}

impl RunStatusView {
    fn of_run(project: &str, run: &Run, stage: Option<(&str, u64, u64)>) -> Self {
        let (stage, done, total) = match stage {
            Some((s, d, t)) => (Some(s.to_string()), d, t),
            None => (None, run.progress_done, run.progress_total),
        };
        Self { project: project.to_string(), run: run.id.0, kind: run.kind.to_string(), status: run.status.to_string(), stage, done, total, error: run.error.clone() }
    }

    /// The status after a logged event: a `progress` event moves the bar, `end` settles it.
    fn after(mut self, event: &Value) -> Self {
        match event["event"].as_str() {
            Some("end") => {
                if let Ok(run) = serde_json::from_value::<Run>(event["run"].clone()) {
                    return Self::of_run(&self.project, &run, None);
                }
                self.status = "failed".into();
            }
            Some("progress") => {
                self.status = "running".into();
                self.stage = event["stage"].as_str().map(str::to_string);
                self.done = event["done"].as_u64().unwrap_or(0);
                self.total = event["total"].as_u64().unwrap_or(0);
            }
            _ => {}
        }
        self
    }
}

#[derive(Serialize)]
struct RunPage {
    #[serde(flatten)]
    view: crate::projects_api::RunView,
    status: RunStatusView,
}

pub(crate) async fn run(State(state): State<AppState>, headers: HeaderMap, ApiPath((name, id)): ApiPath<(String, i64)>) -> Page {
    let frame = Frame::new(&state, &headers, format!("Run {id} · {name}"), Some(&name), Some(format!("/v1/projects/{name}/runs/{id}")));
    let view = run_view(&state, name.clone(), id).await?;
    let status = RunStatusView::of_run(&name, view.run(), view.stage().map(|s| (s.stage.as_str(), s.done as u64, s.total as u64)));
    page("run.html", frame, RunPage { view, status }, StatusCode::OK)
}

/// The run's event log as HTML fragments of its status block (unnamed events, which htmx's SSE
/// extension swaps in), then a `done` event that closes the stream.
pub(crate) async fn run_live(State(state): State<AppState>, headers: HeaderMap, ApiPath((name, id)): ApiPath<(String, i64)>) -> Result<Response, UiError> {
    let view = run_view(&state, name.clone(), id).await?;
    Ok(live_status(&state, view.run(), name, &headers))
}

fn live_status(state: &AppState, run: &Run, project: String, headers: &HeaderMap) -> Response {
    let run_copy = run.clone();
    event_stream(state, run, first_unseen(headers), move |index, event| {
        let status = RunStatusView::of_run(&project, &run_copy, None).after(event);
        let html = super::render_fragment("run_status.html", &status).unwrap_or_else(|e| format!("<p>{e}</p>"));
        let mut events = vec![Event::default().id(index.to_string()).data(html)];
        if event["event"] == "end" {
            events.push(Event::default().event("done").data("end"));
        }
        events
    })
    .into_response()
}

pub(crate) async fn set(State(state): State<AppState>, headers: HeaderMap, ApiPath((name, number)): ApiPath<(String, u32)>) -> Page {
    let frame = Frame::new(&state, &headers, format!("v{number} · {name}"), Some(&name), Some(format!("/v1/projects/{name}/sets/{number}")));
    let view = with_store(&state, move |store| set_version(store, &name, number)).await?;
    page("set.html", frame, view, StatusCode::OK)
}

pub(crate) async fn check(State(state): State<AppState>, headers: HeaderMap, ApiPath((name, number, check)): ApiPath<(String, u32, String)>) -> Page {
    let json = format!("/v1/projects/{name}/sets/{number}/checks/{}", percent_encode(&check));
    let frame = Frame::new(&state, &headers, format!("{check} · v{number} · {name}"), Some(&name), Some(json));
    let view = waited_for(&state, move |store, backends| check_view(store, backends, &name, number, &check)).await?;
    page("check.html", frame, view, StatusCode::OK)
}

pub(crate) async fn diff(State(state): State<AppState>, headers: HeaderMap, ApiPath((name, from, to)): ApiPath<(String, u32, u32)>) -> Page {
    let frame = Frame::new(&state, &headers, format!("v{from} → v{to} · {name}"), Some(&name), Some(format!("/v1/projects/{name}/sets/{from}/diff/{to}")));
    let view = with_store(&state, move |store| set_diff(store, &name, from, to)).await?;
    page("diff.html", frame, view, StatusCode::OK)
}

/// The report and its plots (rendered from it, with the numbers they show).
#[derive(Serialize)]
struct ReportPage {
    #[serde(flatten)]
    report: SetReport,
    plots: Vec<Plot>,
}

pub(crate) async fn report(State(state): State<AppState>, headers: HeaderMap, ApiPath(name): ApiPath<String>, ApiQuery(query): ApiQuery<ReportQuery>) -> Page {
    let json = format!("/v1/projects/{name}/report{}", query_string(&query));
    let frame = Frame::new(&state, &headers, format!("Report · {name}"), Some(&name), Some(json));
    let view = waited_for(&state, move |store, backends| {
        let report = project_report(store, backends, &name, &query)?;
        Ok(ReportPage { plots: render_plots(&report)?, report })
    })
    .await?;
    page("report.html", frame, view, StatusCode::OK)
}

fn query_string(query: &impl Serialize) -> String {
    let pairs: Vec<String> = match serde_json::to_value(query) {
        Ok(Value::Object(fields)) => {
            fields.into_iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| format!("{k}={}", percent_encode(&v.as_str().map_or_else(|| v.to_string(), str::to_string)))).collect()
        }
        _ => Vec::new(),
    };
    if pairs.is_empty() {
        String::new()
    } else {
        format!("?{}", pairs.join("&"))
    }
}

pub(crate) async fn questions(State(state): State<AppState>, headers: HeaderMap, ApiPath(name): ApiPath<String>) -> Page {
    let frame = Frame::new(&state, &headers, format!("Questions · {name}"), Some(&name), Some(format!("/v1/projects/{name}/questions?all=true")));
    let view = with_store(&state, move |store| question_list(store, &name, true)).await?;
    page("questions.html", frame, view, StatusCode::OK)
}

/// The question focus view, with a ruling preview when one was asked for.
#[derive(Serialize)]
pub(crate) struct QuestionPage {
    #[serde(flatten)]
    pub question: crate::projects_api::QuestionDetail,
    pub project: String,
    pub draft: String,
    pub draft_label: String,
    pub preview: Option<assay_pipeline::preview::RulingPreview>,
    /// Why the draft was not saved.
    pub error: Option<String>,
}

pub(crate) async fn question(State(state): State<AppState>, headers: HeaderMap, ApiPath((name, id)): ApiPath<(String, i64)>) -> Page {
    question_page(&state, &headers, name, id, Draft::default(), StatusCode::OK).await
}

/// What the expert wrote on the question page, shown again with a preview or an error.
#[derive(Default)]
pub(crate) struct Draft {
    pub ruling: String,
    pub label: String,
    pub preview: Option<assay_pipeline::preview::RulingPreview>,
    pub error: Option<String>,
}

pub(crate) async fn question_page(state: &AppState, headers: &HeaderMap, name: String, id: i64, draft: Draft, status: StatusCode) -> Page {
    let frame = Frame::new(state, headers, format!("Question {id} · {name}"), Some(&name), Some(format!("/v1/projects/{name}/questions/{id}")));
    let project = name.clone();
    let question = with_store(state, move |store| question_detail(store, &name, id)).await?;
    let view = QuestionPage { question, project, draft: draft.ruling, draft_label: draft.label, preview: draft.preview, error: draft.error };
    page("question.html", frame, view, status)
}

pub(crate) async fn review(State(state): State<AppState>, headers: HeaderMap, ApiPath(name): ApiPath<String>, ApiQuery(query): ApiQuery<ReviewQuery>) -> Page {
    let frame = Frame::new(&state, &headers, format!("Review · {name}"), Some(&name), Some(format!("/v1/projects/{name}/review{}", query_string(&query))));
    let view = with_store(&state, move |store| review_queue(store, &name, &query)).await?;
    page("review.html", frame, view, StatusCode::OK)
}

pub(crate) async fn gold(State(state): State<AppState>, headers: HeaderMap, ApiPath(name): ApiPath<String>, ApiQuery(query): ApiQuery<GoldQuery>) -> Page {
    let frame = Frame::new(&state, &headers, format!("Gold outputs · {name}"), Some(&name), Some(format!("/v1/projects/{name}/gold")));
    let view = with_store(&state, move |store| gold_list(store, &name, &query)).await?;
    page("gold.html", frame, view, StatusCode::OK)
}

#[derive(Serialize)]
struct OptimisePage {
    #[serde(flatten)]
    view: crate::optimise_api::OptimiseView,
    status: RunStatusView,
}

pub(crate) async fn optimise(State(state): State<AppState>, headers: HeaderMap, ApiPath(id): ApiPath<i64>) -> Page {
    let view = optimise_view(&state, id).await?;
    let project = with_store(&state, {
        let p = view.run().project;
        move |store| Ok(store.project(p)?.name)
    })
    .await?;
    let frame = Frame::new(&state, &headers, format!("Optimise run {id}"), Some(&project), Some(format!("/v1/optimise/{id}")));
    let status = RunStatusView::of_run(&project, view.run(), view.stage().map(|s| (s.stage.as_str(), s.done as u64, s.total as u64)));
    page("optimise.html", frame, OptimisePage { view, status }, StatusCode::OK)
}

pub(crate) async fn optimise_live(State(state): State<AppState>, headers: HeaderMap, ApiPath(id): ApiPath<i64>) -> Result<Response, UiError> {
    let view = optimise_view(&state, id).await?;
    let project = with_store(&state, {
        let p = view.run().project;
        move |store| Ok(store.project(p)?.name)
    })
    .await?;
    Ok(live_status(&state, view.run(), project, &headers))
}
