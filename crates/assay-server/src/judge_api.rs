//! `POST /v1/judge`: inline checks (an evaluator set, as `assay judge --checks` reads it), or a
//! project's evaluator-set version from the store (`--db`), asked of every item in the
//! requested mode, through the judge model's engine (its steps shared with every other
//! request, its prefixes with every earlier one), so the verdicts equal the CLI's for the same
//! input.

use crate::error::ApiError;
use crate::limits::JudgeOptionsRequest;
use crate::{ApiJson, AppState};
use assay_core::{parse_items_jsonl, EvaluatorSet, ItemScore, Judgment};
use assay_engine::judge::Labels;
use assay_engine::JudgeEvent;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Deserialize)]
pub(crate) struct JudgeRequest {
    /// Judge model; the server's `--judge-model` when absent.
    model: Option<String>,
    /// A list of checks, or `{"version", "checks"}`; or else `project` (and `set`).
    checks: Option<Value>,
    /// A project in the server's store (`--db`) whose evaluator set to use.
    project: Option<String>,
    /// The set's version number (default: the project's latest).
    set: Option<u32>,
    /// `{id, input, output, context?}` objects.
    #[serde(default)]
    items: Vec<Value>,
    /// `/v1/reward`'s name for the items (`id` optional).
    #[serde(default)]
    pairs: Option<Vec<Value>>,
    pass_label: Option<String>,
    fail_label: Option<String>,
    /// `mode` (verdict | rationale), `samples`, `temperature`, `rationale_tokens`, `seed`, as
    /// `assay judge` takes them.
    #[serde(flatten)]
    options: JudgeOptionsRequest,
}

pub(crate) async fn judge(State(state): State<AppState>, ApiJson(req): ApiJson<JudgeRequest>) -> Result<Response, ApiError> {
    if req.items.is_empty() {
        return Err(ApiError::InvalidRequest("'items' is required: a non-empty list of {id, input, output, context?}".into()));
    }
    let judged = judged(&state, req).await?;
    let results = judged.items.iter().zip(&judged.judgments).map(|(item, js)| ItemResult { item_id: &item.id, judgments: js, score: ItemScore::of(&item.id, js) }).collect();
    Ok(Json(JudgeResponse { model: &judged.model, evaluator_set: judged.set_ref(), results }).into_response())
}

/// What `/v1/judge` and `/v1/reward` share: the evaluator set, the items and their judgments.
struct Judged {
    model: String,
    set: EvaluatorSet,
    items: Vec<assay_core::JudgeItem>,
    judgments: Vec<Vec<Judgment>>,
}

impl Judged {
    fn set_ref(&self) -> EvaluatorSetRef<'_> {
        EvaluatorSetRef { version: self.set.version.as_deref(), content_hash: self.set.content_hash() }
    }
}

async fn judged(state: &AppState, req: JudgeRequest) -> Result<Judged, ApiError> {
    let models = state.models()?;
    let limits = &state.0.config.limits;
    let engine = models.engine(req.model.as_deref().unwrap_or(&models.judge))?;
    limits.items(req.items.len())?;
    let options = limits.judge(&req.options)?;
    // The same parsers and checks as the CLI's files: a JSON evaluator set and JSONL items
    // (an error names the item by its line, i.e. its position in `items`, from 1).
    let set = match (req.checks, req.project) {
        (Some(checks), None) if req.set.is_none() => EvaluatorSet::from_json(&checks.to_string())?,
        (None, Some(project)) => {
            let db = state.0.config.db.clone();
            let version = req.set;
            tokio::task::spawn_blocking(move || stored_set(&db, &project, version)).await.map_err(|e| ApiError::Internal(e.to_string()))??
        }
        _ => return Err(ApiError::InvalidRequest("give either 'checks' or 'project' (with an optional 'set' version), not both or neither".into())),
    };
    limits.checks(set.checks.len())?;
    let jsonl = req.items.iter().map(Value::to_string).collect::<Vec<_>>().join("\n");
    limits.prompt_bytes(jsonl.len())?;
    let items = parse_items_jsonl(&jsonl)?;
    if let Some(lm) = engine.language_model() {
        for item in &items {
            let bytes = item.input.len() + item.output.len() + item.context.as_ref().map_or(0, String::len);
            crate::openai::fits_context(lm, || format!("item '{}'", item.id), bytes)?;
        }
    }
    let defaults = Labels::default();
    let labels = Labels { pass: req.pass_label.unwrap_or(defaults.pass), fail: req.fail_label.unwrap_or(defaults.fail) };
    // Building the prompts tokenizes every item: off the request threads.
    let (submitter, checks, request, to_judge) = (engine.clone(), set.checks.clone(), models.client_request(), items.clone());
    let mut events = crate::openai::off_request_threads(state, move || Ok(submitter.judge(&to_judge, checks, &labels, options, request)?)).await?;
    let judgments = loop {
        match events.recv().await {
            Some(JudgeEvent::Progress { .. }) => {}
            Some(JudgeEvent::Done(result)) => break result?,
            None => return Err(ApiError::Internal("the engine dropped the request".into())),
        }
    };
    Ok(Judged { model: engine.name().to_string(), set, items, judgments })
}

/// `POST /v1/reward`: the same request as `/v1/judge` with `pairs` (`{input, output, context?,
/// id?}`) in place of items; per pair the reward vector (P(PASS) per check, in the set's
/// order), its sum and its mean (the normalised total), and the number of passes, for RL
/// trainers.
pub(crate) async fn reward(State(state): State<AppState>, ApiJson(mut req): ApiJson<JudgeRequest>) -> Result<Response, ApiError> {
    let pairs = std::mem::take(&mut req.pairs).filter(|p| !p.is_empty()).ok_or_else(|| ApiError::InvalidRequest("'pairs' is required: a non-empty list of {input, output, context?, id?}".into()))?;
    req.items = pairs
        .into_iter()
        .enumerate()
        .map(|(i, mut pair)| {
            if let Some(fields) = pair.as_object_mut() {
                fields.entry("id").or_insert_with(|| Value::String(i.to_string()));
            }
            pair
        })
        .collect();
    let judged = judged(&state, req).await?;
    let checks: Vec<&str> = judged.set.checks.iter().map(|c| c.id.as_str()).collect();
    let results = judged
        .items
        .iter()
        .zip(&judged.judgments)
        .map(|(item, js)| {
            let rewards: Vec<f32> = js.iter().map(|j| j.p_pass).collect();
            let total: f32 = rewards.iter().sum();
            RewardResult { id: &item.id, total, normalised: total / rewards.len().max(1) as f32, passed: ItemScore::of(&item.id, js).passed, rewards }
        })
        .collect();
    Ok(Json(RewardResponse { model: &judged.model, evaluator_set: judged.set_ref(), checks, results }).into_response())
}

#[derive(Serialize)]
struct RewardResponse<'a> {
    model: &'a str,
    evaluator_set: EvaluatorSetRef<'a>,
    /// The order of every result's `rewards`.
    checks: Vec<&'a str>,
    results: Vec<RewardResult<'a>>,
}

#[derive(Serialize)]
struct RewardResult<'a> {
    id: &'a str,
    rewards: Vec<f32>,
    total: f32,
    normalised: f32,
    passed: usize,
}

/// The evaluator set of `project` at `version` (default: the latest) from the store at `db`.
fn stored_set(db: &std::path::Path, project: &str, version: Option<u32>) -> Result<EvaluatorSet, ApiError> {
    if !db.is_file() {
        return Err(ApiError::RecordNotFound(format!("no store at {} (start the server with --db)", db.display())));
    }
    let store = assay_store::Store::open(db)?;
    let project = store.project_by_name(project)?;
    Ok(store.set_version_or_latest(&project, version)?.set)
}

// Typed rather than `serde_json::Value`: floats keep their shortest f32 form, exactly as
// `assay judge` writes them.
#[derive(Serialize)]
struct JudgeResponse<'a> {
    model: &'a str,
    evaluator_set: EvaluatorSetRef<'a>,
    results: Vec<ItemResult<'a>>,
}

#[derive(Serialize)]
struct EvaluatorSetRef<'a> {
    version: Option<&'a str>,
    content_hash: String,
}

#[derive(Serialize)]
struct ItemResult<'a> {
    item_id: &'a str,
    judgments: &'a [Judgment],
    score: ItemScore,
}
