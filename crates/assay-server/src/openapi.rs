//! `GET /openapi.json`: an OpenAPI 3.1 description of every route, written by hand next to the
//! routes it describes (`lib.rs`, `openai.rs`, `judge_api.rs`, `projects_api.rs`,
//! `optimise_api.rs`). It publishes this server's limits (`--limit-*`) as the bounds of the
//! fields they bound, and every constraint the server checks that JSON Schema can state (ranges,
//! non-empty lists and texts, name patterns, closed objects where unknown fields are refused), so
//! that a request valid by the document is accepted: schemathesis holds the server to that
//! (`tests/schemathesis.rs`). What JSON Schema cannot state (ids unique within a list, a prompt
//! that fits the model's context) is said in descriptions.

use crate::limits::Limits;
use crate::AppState;
use assay_core::{JudgeOptions, SamplingParams};
use assay_pipeline::optimise::{OptimiseOptions, MAX_BUDGET, MAX_POPULATION};
use assay_pipeline::OutboundPolicy;
use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

/// A reference to a schema of `components.schemas`.
fn schema(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// A non-negative integer up to `max`.
fn count(min: usize, max: usize) -> Value {
    json!({"type": "integer", "minimum": min, "maximum": max})
}

/// `text` as a regular expression matching itself.
fn regex_escape(text: &str) -> String {
    text.chars().fold(String::new(), |mut out, c| {
        if !c.is_ascii_alphanumeric() {
            out.push('\\');
        }
        out.push(c);
        out
    })
}

/// Text the server refuses when empty or blank.
fn text() -> Value {
    json!({"type": "string", "pattern": "\\S"})
}

fn body(schema: Value) -> Value {
    json!({"required": true, "content": {"application/json": {"schema": schema}}})
}

fn ok(description: &str, content_type: &str) -> Value {
    answers("200", description, content_type)
}

/// The response with `status`, and the error responses.
fn answers(status: &str, description: &str, content_type: &str) -> Value {
    json!({
        status: {"description": description, "content": {content_type: {}}},
        "default": {"description": "Error: {\"error\": {\"message\", \"type\", \"code\"}}; 400 bad input or prompt over the context, 401 missing or wrong key, 404 unknown model or record, 409 conflict (a record exists, or nothing would change), 413 body too large, 429 queue full (Retry-After), 502 a project role's remote server failed, 503 loading or draining, 504 deadline passed",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    })
}

/// A generation's response: one JSON object, or server-sent events with `stream`.
fn generated(object: &str, pieces: &str) -> Value {
    let mut responses = ok(&format!("{object}, or with stream: {pieces} events ending with data: [DONE]"), "application/json");
    responses["200"]["content"]["text/event-stream"] = json!({});
    responses
}

/// Path parameters (all required; schemas from `components.schemas`) and optional query
/// parameters.
fn parameters(path: &[(&str, &str)], query: &[(&str, Value, &str)]) -> Value {
    let path = path.iter().map(|(name, kind)| json!({"name": name, "in": "path", "required": true, "schema": schema(kind)}));
    let query = query.iter().map(|(name, kind, description)| json!({"name": name, "in": "query", "required": false, "schema": kind, "description": description}));
    Value::Array(path.chain(query).collect())
}

/// The named schemas, with this server's limits as the bounds of the fields they bound.
fn schemas(limits: &Limits, outbound: &OutboundPolicy) -> Value {
    let seed = json!({"type": "integer", "minimum": 0, "maximum": u64::MAX});
    let version = count(1, u32::MAX as usize);
    let texts = |what: &str| json!({"oneOf": [{"type": "string", "minLength": 1}, {"type": "array", "minItems": 1, "maxItems": limits.items, "items": {"type": "string", "minLength": 1}}], "description": format!("{what}: one text or a list of at most --limit-items texts, together at most --limit-prompt-bytes ({} bytes)", limits.prompt_bytes)});
    let sampling = json!({
        "max_tokens": {"type": "integer", "minimum": 0, "maximum": limits.max_tokens, "description": "New tokens at most (chat default 256, completions 16; never above --limit-max-tokens); prompt and output must fit the model's context"},
        "max_completion_tokens": {"type": "integer", "minimum": 0, "maximum": limits.max_tokens, "description": "Same as max_tokens; wins when both are given"},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2, "default": 1, "description": "0 is greedy"},
        "top_p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1, "default": 1},
        "seed": {"$ref": "#/components/schemas/Seed", "description": "Seeded requests repeat exactly, alone or batched; choice i uses seed + i"},
        "stop": {"oneOf": [{"type": "string", "minLength": 1}, {"type": "array", "maxItems": 16, "items": {"type": "string", "minLength": 1}}]},
        "n": {"type": "integer", "minimum": 1, "maximum": limits.n, "default": 1, "description": "Choices per prompt (--limit-n)"},
        "stream": {"type": "boolean", "default": false, "description": "Server-sent events ending with data: [DONE]; each piece carries the logprobs of its tokens; at most --limit-streams open at once (429 past it)"},
        "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}}
    });
    let with_sampling = |mut schema: Value| {
        for (k, v) in sampling.as_object().expect("an object") {
            schema["properties"][k] = v.clone();
        }
        schema
    };
    let part =
        json!({"type": "object", "required": ["type"], "properties": {"type": {"type": "string", "description": "Parts of type text are joined; others are ignored"}, "text": {"type": "string"}}});
    let message = json!({"type": "object", "required": ["role", "content"], "properties": {"role": {"enum": ["system", "user", "assistant"]}, "content": {"oneOf": [{"type": "string"}, {"type": "array", "items": part}]}}});
    let judge_options = json!({
        "mode": {"enum": ["verdict", "rationale"], "default": "verdict", "description": "rationale: a short generated rationale per check, then the verdict after it"},
        "samples": {"type": "integer", "minimum": 1, "maximum": limits.samples.min(JudgeOptions::MAX_SAMPLES), "default": 1, "description": "Rationales sampled per check at `temperature` (--limit-samples); > 1 reports each sample and the flip rate"},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2, "default": 0.7, "description": "Above 0 when samples > 1"},
        "rationale_tokens": {"type": "integer", "minimum": 1, "maximum": limits.rationale_tokens.min(JudgeOptions::MAX_RATIONALE_TOKENS), "default": 48, "description": "--limit-rationale-tokens"},
        "seed": schema("Seed")
    });
    // Sampling several rationales needs a temperature.
    let sampled_needs_temperature = json!({"if": {"required": ["samples"], "properties": {"samples": {"minimum": 2}}}, "then": {"properties": {"temperature": {"exclusiveMinimum": 0}}}});
    let with_judge_options = |mut schema: Value| {
        for (k, v) in judge_options.as_object().expect("an object") {
            schema["properties"][k] = v.clone();
        }
        schema["allOf"] = json!([sampled_needs_temperature.clone()]);
        schema
    };
    let check = json!({"type": "object", "additionalProperties": false, "required": ["id", "question"], "properties": {
        "id": text(), "question": text(), "name": {"type": "string"}, "pass_criteria": {"type": "string"},
        "fail_examples": {"type": "array", "items": {"type": "string"}}, "threshold": {"type": "number", "minimum": 0, "maximum": 1}}});
    let check_list = json!({"type": "array", "minItems": 1, "maxItems": limits.checks, "items": check, "description": "Check ids unique within the list"});
    let checks = json!({"oneOf": [check_list, {"type": "object", "required": ["checks"], "properties": {"version": {"type": "string"}, "checks": check_list}}],
        "description": format!("A list of at most {} checks (--limit-checks), or {{version?, checks}}", limits.checks)});
    let judge_item = |id_required: bool| {
        let required = if id_required { json!(["id", "input", "output"]) } else { json!(["input", "output"]) };
        json!({"type": "object", "required": required, "properties": {"id": text(), "input": {"type": "string"}, "output": {"type": "string", "minLength": 1}, "context": {"type": "string"}}})
    };
    let items = |item: Value| json!({"type": "array", "minItems": 1, "maxItems": limits.items, "items": item, "description": "Ids unique within the list; at most --limit-items, their text together at most --limit-prompt-bytes"});
    let judge_common = json!({
        "project": {"$ref": "#/components/schemas/Name", "description": "Instead of checks: a project in the server's store (--db)"},
        "set": {"type": "integer", "minimum": 1, "maximum": u32::MAX, "description": "With project: the evaluator-set version (default: the latest)"},
        "model": {"type": "string", "description": "Default: the server's judge model"},
        "checks": schema("Checks"),
        "pass_label": {"type": "string", "minLength": 1, "default": " PASS", "description": "Distinct from fail_label"}, "fail_label": {"type": "string", "minLength": 1, "default": " FAIL"}
    });
    // Checks inline, or a project's stored set (with an optional version), never both.
    let checks_or_project =
        json!({"oneOf": [{"required": ["checks"], "not": {"anyOf": [{"required": ["project"]}, {"required": ["set"]}]}}, {"required": ["project"], "not": {"required": ["checks"]}}]});
    let judge_request = |list: &str, item: Value| {
        let mut schema = json!({"type": "object", "required": [list], "properties": judge_common.clone()});
        schema["properties"][list] = items(item);
        let mut schema = with_judge_options(schema);
        schema["allOf"].as_array_mut().expect("a list").push(checks_or_project.clone());
        schema
    };
    // A model by plain name (a configuration set over HTTP opens no files), or a server under a
    // prefix the operator allows, with only the key variable allowed for it.
    let model_name = json!({"type": "string", "pattern": "^[A-Za-z0-9_][A-Za-z0-9_:-]*$", "description": "A model by name (a manifest or served name): a configuration set over HTTP names no paths"});
    let role_model = json!({"anyOf": std::iter::once(json!({"type": "object", "additionalProperties": false, "required": ["model"], "properties": {"model": model_name}}))
        .chain(outbound.allowed.iter().map(|allowed| {
            let mut properties = json!({"model": {"type": "string", "minLength": 1}, "base_url": {"type": "string", "pattern": format!("^{}(/[A-Za-z0-9_~-]*)*$", regex_escape(&allowed.prefix))}});
            if let Some(var) = &allowed.key_env {
                properties["api_key_env"] = json!({"const": var});
            }
            json!({"type": "object", "additionalProperties": false, "required": ["model", "base_url"], "properties": properties})
        }))
        .collect::<Vec<_>>(), "description": "base_url: an OpenAI-compatible server under a prefix the operator allows (--allow-backend), api_key_env: the variable allowed for it"});
    let generator = json!({"type": "object", "additionalProperties": false, "required": ["name", "temperature", "variant"], "properties": {
        "name": text(), "model": role_model, "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "variant": {"enum": ["as_written", "terse", "input_only"]}, "max_tokens": count(1, limits.max_tokens)}});
    // The budget covers the seeds: at least the population (JSON Schema compares a field with a
    // constant only, hence one case per population).
    let default_population = OptimiseOptions::default().population;
    let budget_covers_seeds: Vec<Value> = [json!({"not": {"required": ["budget"]}}), json!({"not": {"required": ["population"]}, "properties": {"budget": {"minimum": default_population}}})]
        .into_iter()
        .chain((2..=limits.population.min(MAX_POPULATION)).map(|p| json!({"required": ["population"], "properties": {"population": {"const": p}, "budget": {"minimum": p}}})))
        .collect();
    let roles = ["generator", "annotator", "judge", "embedder", "check_writer"].map(|r| (r.to_string(), role_model.clone())).into_iter().collect::<serde_json::Map<_, _>>();
    json!({
        "Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {"message": {"type": "string"}, "type": {"type": "string"}, "code": {"type": "string"}}}}},
        "Seed": seed,
        "Name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]*$", "maxLength": assay_store::MAX_NAME_LEN, "description": "ASCII letters, digits, '.', '_' or '-', starting with a letter or digit"},
        "Version": version,
        "Id": count(1, i64::MAX as usize),
        "ChatCompletionRequest": with_sampling(json!({"type": "object", "required": ["model", "messages"], "properties": {
            "model": {"type": "string"}, "messages": {"type": "array", "minItems": 1, "items": message},
            "logprobs": {"type": "boolean"}, "top_logprobs": count(0, SamplingParams::MAX_TOP_LOGPROBS)}})),
        "CompletionRequest": with_sampling(json!({"type": "object", "required": ["model", "prompt"], "properties": {
            "model": {"type": "string"}, "prompt": texts("prompt"), "logprobs": count(0, SamplingParams::MAX_TOP_LOGPROBS)}})),
        "EmbeddingRequest": {"type": "object", "required": ["model", "input"], "properties": {"model": {"type": "string"}, "input": texts("input"), "encoding_format": {"enum": ["float", "base64"]}},
            "description": "Each input must fit the embedding model's window (400 otherwise)"},
        "Checks": checks,
        "JudgeRequest": judge_request("items", judge_item(true)),
        "RewardRequest": judge_request("pairs", judge_item(false)),
        "ProjectConfig": {"type": "object", "additionalProperties": false, "properties": {
            "roles": {"type": "object", "additionalProperties": false, "properties": roles},
            "generators": {"type": "array", "minItems": 1, "items": generator, "description": "Names distinct; strongest first"},
            "answer_tokens": count(1, limits.max_tokens)}},
        "JudgeRunRequest": with_judge_options(json!({"type": "object", "properties": {
            "set": {"type": "integer", "minimum": 1, "maximum": u32::MAX, "description": "Evaluator-set version (default: the latest)"},
            "dataset": {"$ref": "#/components/schemas/Name", "description": "Default: the project's most recent dataset"},
            "chunk_items": {"type": "integer", "minimum": 1, "maximum": u64::MAX, "default": 8, "description": "Items judged between two writes to the store"}}})),
        "OptimiseRequest": {"type": "object", "required": ["project"], "properties": {
            "project": schema("Name"), "set": {"type": "integer", "minimum": 1, "maximum": u32::MAX, "description": "Default: the latest version"},
            "dataset": {"$ref": "#/components/schemas/Name", "description": "Default: the project's most recent dataset"},
            "items": {"type": "integer", "minimum": 1, "maximum": limits.items, "default": 10, "description": "The dataset's first items"},
            "generations": {"type": "integer", "minimum": 0, "maximum": u64::MAX, "default": 4},
            "population": {"type": "integer", "minimum": 2, "maximum": limits.population.min(MAX_POPULATION), "default": 4, "description": "--limit-population"},
            "budget": {"type": "integer", "minimum": 2, "maximum": limits.budget.min(MAX_BUDGET), "description": "Most candidate evaluations per item, seeds included: at least the population (default 20, or the population if larger; --limit-budget)"},
            "max_tokens": count(1, limits.max_tokens), "seed": schema("Seed"),
            "compare": {"type": "boolean", "default": false, "description": "Also best-of-N with the same evaluations per item"},
            "rationales": {"type": "boolean", "default": false, "description": "Judge in rationale mode so that rewrites are told why checks failed (slower)"}},
            "anyOf": budget_covers_seeds}
    })
}

/// `/v1/projects/...`: the evaluation loop (`projects_api.rs`).
fn project_paths(limits: &Limits) -> Value {
    let project = [("project", "Name")];
    let version = [("project", "Name"), ("version", "Version")];
    let run = [("project", "Name"), ("run", "Id")];
    let item = json!({"type": "object", "required": ["input"], "properties": {"id": {"oneOf": [{"type": "string", "pattern": "\\S"}, {"type": "integer", "minimum": i64::MIN, "maximum": u64::MAX}]}, "input": text(), "output": {"type": "string"}, "context": {"type": "string"}, "reference": {}, "metadata": {"type": "object"}}});
    let label = json!({"type": "object", "additionalProperties": false, "required": ["item"], "properties": {"item": {"type": "string", "description": "The item's id in the dataset"}, "check": text(), "verdict": {"enum": ["PASS", "FAIL"]}, "score": {"type": "number"}, "note": {"type": "string"}, "rater": {"type": "string", "description": "Who gives it (a reviewer name)"}},
        "oneOf": [{"required": ["check", "verdict"], "not": {"required": ["score"]}}, {"required": ["score"], "not": {"anyOf": [{"required": ["check"]}, {"required": ["verdict"]}]}}], "description": "Either check and verdict, or score"});
    let query_version = json!({"type": "integer", "minimum": 1, "maximum": u32::MAX});
    let dataset = [("project", "Name"), ("dataset", "Name")];
    let question = [("project", "Name"), ("question", "Id")];
    let verdict = json!({"enum": ["PASS", "FAIL"]});
    let dataset_query = ("dataset", schema("Name"), "Default: the project's most recent dataset");
    let ruling =
        json!({"type": "object", "required": ["ruling"], "properties": {"ruling": text(), "label": verdict.clone(), "rater": {"type": "string", "description": "Who answers (a reviewer name)"}}});
    let mut paths = workbench_paths(&dataset, &question, &verdict);
    let loop_paths = json!({
        "/v1/projects": {
            "get": {"summary": "Projects in the server's store (--db)", "responses": ok("{projects: [{id, name, task, generation_prompt, expert_notes, config, created_at}]}", "application/json")},
            "post": {"summary": "Create a project (`assay project create`); 409 when the name is taken", "requestBody": body(json!({"type": "object", "required": ["name", "generation_prompt"], "properties": {
                "name": schema("Name"), "generation_prompt": text(), "task": {"type": "string"}, "expert_notes": {"type": "string"},
                "config": {"$ref": "#/components/schemas/ProjectConfig", "description": "Backend and model per role, discovery generators, answer_tokens (`assay project config`); default: every default"}}})),
                "responses": answers("201", "the project", "application/json")}},
        "/v1/projects/{project}": {"get": {"summary": "A project: its configuration with defaults, datasets, evaluator-set versions (number, reason, hash, check count) and runs", "parameters": parameters(&project, &[]),
            "responses": ok("{project, config, datasets, sets: [{number, parent, reason, content_hash, checks, created_at}], runs}", "application/json")}},
        "/v1/projects/{project}/config": {"put": {"summary": "Replace the project's configuration (validated; unknown fields refused)", "parameters": parameters(&project, &[]),
            "requestBody": body(schema("ProjectConfig")), "responses": ok("the configuration with defaults", "application/json")}},
        "/v1/projects/{project}/datasets": {"post": {"summary": "Import a dataset, all or nothing (`assay data import`); 409 when the name is taken", "parameters": parameters(&project, &[]),
            "requestBody": body(json!({"type": "object", "required": ["name", "items"], "properties": {"name": schema("Name"), "source": {"type": "string"}, "items": {"type": "array", "minItems": 1, "items": item, "description": "Ids unique within the list"}}})),
            "responses": answers("201", "{id, project, name, source, item_count, created_at}", "application/json")}},
        "/v1/projects/{project}/sets": {"post": {"summary": "Checks as the next immutable evaluator-set version (`assay set import`); 409 when identical to the latest", "parameters": parameters(&project, &[]),
            "requestBody": body(json!({"type": "object", "required": ["checks"], "properties": {"checks": schema("Checks"), "reason": text()}})),
            "responses": answers("201", "{id, project, number, parent, content_hash, reason, created_at, set: {version, checks}}", "application/json")}},
        "/v1/projects/{project}/sets/{version}": {"get": {"summary": "An evaluator-set version", "parameters": parameters(&version, &[]), "responses": ok("{id, project, number, parent, content_hash, reason, created_at, set}", "application/json")}},
        "/v1/projects/{project}/sets/{from}/diff/{to}": {"get": {"summary": "What changed between two versions (`assay set diff`)", "parameters": parameters(&[("project", "Name"), ("from", "Version"), ("to", "Version")], &[]),
            "responses": ok("{from, to, added, removed, changed: [{id, fields, before, after}], order_changed}", "application/json")}},
        "/v1/projects/{project}/discover": {"post": {"summary": "Start discovery (`assay discover`) on the server's models; answers at once, the run goes on in the background", "parameters": parameters(&project, &[]),
            "requestBody": body(json!({"type": "object", "properties": {"dataset": {"$ref": "#/components/schemas/Name", "description": "Default: the project's most recent dataset"}, "checks": {"type": "integer", "minimum": 1, "maximum": limits.checks, "default": 10, "description": "--limit-checks"}, "seed": schema("Seed")}})),
            "responses": answers("202", "{run}: poll GET .../runs/{run}", "application/json")}},
        "/v1/projects/{project}/runs": {"post": {"summary": "Start a judge run (`assay run`) on the server's models, or resume the unfinished one with the same set, dataset, judge and options (after a crash or a shutdown); answers at once", "parameters": parameters(&project, &[]),
            "requestBody": body(schema("JudgeRunRequest")), "responses": answers("202", "{run, resumed}: poll GET .../runs/{run}", "application/json")}},
        "/v1/projects/{project}/runs/{run}": {"get": {"summary": "A run: status (queued, running, done, failed), progress_done / progress_total (judgments), error; stage while this server works on it", "parameters": parameters(&run, &[]),
            "responses": ok("{run: {id, kind, status, set_version, dataset, params, progress_done, progress_total, error, created_at, updated_at}, stage: {stage, done, total} | null}", "application/json")}},
        "/v1/projects/{project}/runs/{run}/judgments": {"get": {"summary": "The judgments a judge run has stored", "parameters": parameters(&run, &[("item", json!({"type": "string"}), "Only this item's (its id in the dataset)"), ("check", json!({"type": "string"}), "Only this check's")]),
            "responses": ok("{judgments: [{item_id, check_id, verdict, p_pass, logprob_pass, logprob_fail, off_format_mass, rationale?, samples?, flip_rate?}]}", "application/json")}},
        "/v1/projects/{project}/report": {"get": {"summary": "Per-check consistency, separation, cohesion and agreement with expert labels (`assay report --json`, no plots)",
            "parameters": parameters(&project, &[("set", query_version.clone(), "Default: the latest version"), ("run", schema("Id"), "Default: the set's latest finished judge run")]),
            "responses": ok("{project, set, run, run_status, dataset, judge, items, checks: [...], agreement, total_spearman}", "application/json")}},
        "/v1/projects/{project}/questions": {"get": {"summary": "Questions for the expert (`assay questions`): open ones, or all with their rulings",
            "parameters": parameters(&project, &[("all", json!({"type": "boolean"}), "Include answered questions")]),
            "responses": ok("{questions: [{id, project, item, item_key, check, why, options, status, ruling, created_at}]}", "application/json")}},
        "/v1/projects/{project}/questions/{question}/answer": {"post": {"summary": "The expert's ruling (`assay answer`); with label, also the expert's label of the question's check on its item; 409 if already answered",
            "parameters": parameters(&[("project", "Name"), ("question", "Id")], &[]),
            "requestBody": body(ruling), "responses": ok("the answered question", "application/json")}},
        "/v1/projects/{project}/labels": {"get": {"summary": "The expert's labels of checks on items of a dataset, with who gave them and when", "parameters": parameters(&project, &[dataset_query]),
            "responses": ok("{dataset, labels: [{item, check, verdict, note, rater, created_at}]}", "application/json")}, "post": {"summary": "Expert labels of checks on items, or whole-output scores, all or nothing (`assay label`)", "parameters": parameters(&project, &[]),
            "requestBody": body(json!({"type": "object", "required": ["labels"], "properties": {"dataset": {"$ref": "#/components/schemas/Name", "description": "Default: the project's most recent dataset"}, "labels": {"type": "array", "minItems": 1, "items": label, "description": "Items of the dataset"}}})),
            "responses": ok("{dataset, check_labels, score_labels}", "application/json")}},
        "/v1/projects/{project}/refine": {"post": {"summary": "A new evaluator-set version from rulings and the latest report (`assay refine`); waits for it", "parameters": parameters(&project, &[]),
            "requestBody": body(json!({"type": "object", "properties": {"set": {"type": "integer", "minimum": 1, "maximum": u32::MAX, "description": "Default: the latest version"}, "seed": schema("Seed"), "run": {"allOf": [schema("Id")], "description": "Judge run whose report refinement reads. Default: the set's latest finished judge run"}}})),
            "responses": ok("{from, to (null: no new version), changes: [{check, action, why}], unreadable_rewrites, probed: [{check, question, auroc, wording (rewrite | folded | null: a draft from notes), replaces, rulings, particular, adopted}]}", "application/json")}}
    });
    for (path, item) in loop_paths.as_object().expect("an object") {
        match paths.get_mut(path) {
            Some(Value::Object(methods)) => methods.extend(item.as_object().expect("an object").clone()),
            _ => paths[path] = item.clone(),
        }
    }
    paths
}

/// The routes the expert workbench reads and writes through (`projects_api.rs`), as any client.
fn workbench_paths(dataset: &[(&str, &str)], question: &[(&str, &str)], verdict: &Value) -> Value {
    let project = [("project", "Name")];
    let positive = json!({"type": "integer", "minimum": 1, "maximum": u32::MAX});
    json!({
        "/v1/projects/{project}/datasets/{dataset}/items": {"get": {"summary": "One page of a dataset's items in file order, those whose id, input or output contain q",
            "parameters": parameters(dataset, &[("q", json!({"type": "string"}), "Text to search for"), ("page", positive.clone(), "From 1"), ("per_page", json!({"type": "integer", "minimum": 1, "maximum": 500}), "Default 50")]),
            "responses": ok("{dataset, q, page, per_page, total, pages, items: [{id, dataset, key, input, output, context, reference, metadata}]}", "application/json")}},
        "/v1/projects/{project}/datasets/{dataset}/items/{item}": {"get": {"summary": "One item with the expert's labels and the verdicts of the latest judge run on its dataset",
            "parameters": [{"name": "project", "in": "path", "required": true, "schema": schema("Name")}, {"name": "dataset", "in": "path", "required": true, "schema": schema("Name")}, {"name": "item", "in": "path", "required": true, "schema": {"type": "string", "minLength": 1}}],
            "responses": ok("{dataset, item, labels, run, set, judgments}", "application/json")}},
        "/v1/projects/{project}/sets/{version}/checks/{check}": {"get": {"summary": "One check of a version: its rulings, its line of the report, the error cluster it was written from, its FAIL rationales clustered",
            "parameters": [{"name": "project", "in": "path", "required": true, "schema": schema("Name")}, {"name": "version", "in": "path", "required": true, "schema": schema("Version")}, {"name": "check", "in": "path", "required": true, "schema": {"type": "string", "minLength": 1}}],
            "responses": ok("{set, check, rulings, run, report, origin: {cluster, run, label, errors} | null, fail_groups}", "application/json")}},
        "/v1/projects/{project}/checks/{check}/ruling": {"post": {"summary": "The expert's ruling on a check of the latest version, unasked (recorded as an answered question): \"drop ...\" drops it and \"split ...\" splits it by its FAIL rationales at the next refinement; other words are folded in",
            "parameters": [{"name": "project", "in": "path", "required": true, "schema": schema("Name")}, {"name": "check", "in": "path", "required": true, "schema": {"type": "string", "minLength": 1}}],
            "requestBody": body(json!({"type": "object", "required": ["ruling"], "properties": {"ruling": text(), "rater": {"type": "string"}}})), "responses": answers("201", "the answered question", "application/json")}},
        "/v1/projects/{project}/runs/{run}/events": {"get": {"summary": "A run's events as server-sent events (id: its index; Last-Event-ID resumes after it): progress {stage, done, total}, then end {run}",
            "parameters": parameters(&[("project", "Name"), ("run", "Id")], &[]), "responses": ok("event stream", "text/event-stream")}},
        "/v1/projects/{project}/questions/{question}": {"get": {"summary": "One question with its item, its check, the judge's verdict on the pair, and its place among the open questions",
            "parameters": parameters(question, &[]), "responses": ok("{id, ..., item, check, judgment, position, open, next}", "application/json")}},
        "/v1/projects/{project}/questions/{question}/preview": {"post": {"summary": "What a draft ruling would change, nothing stored: the question's check judged again with the ruling folded in on the latest run's items; the verdicts that flip and kappa before and after on labelled items",
            "parameters": parameters(question, &[]), "requestBody": body(json!({"type": "object", "required": ["ruling"], "properties": {"ruling": text(), "label": verdict.clone()}})),
            "responses": ok("{question, check, set, run, judged, flips: [{item, before, after, p_pass_before, p_pass_after}], labelled, kappa_before, kappa_after}", "application/json")}},
        "/v1/projects/{project}/questions/{question}/reopen": {"post": {"summary": "Take back the ruling on a question (an undo): it is open again; 409 if it is open",
            "parameters": parameters(question, &[]), "responses": ok("the question", "application/json")}},
        "/v1/projects/{project}/review": {"get": {"summary": "The labelling queue: the (item, check) pairs of the latest version's judge run a filter keeps, and the one at position i with the judge's verdict and the expert's label",
            "parameters": parameters(&project, &[
                ("filter", json!({"enum": ["all", "unlabelled", "disagree", "flips", "near"]}), "Default all"), ("check", json!({"type": "string"}), "Only this check's pairs"),
                ("judge", verdict.clone(), "Only pairs the judge gave this verdict"), ("expert", verdict.clone(), "Only pairs the expert labelled so"), ("i", positive, "Position, from 1"),
                ("last_item", json!({"type": "string"}), "The pair labelled just before, offered for undo"), ("last_check", json!({"type": "string"}), "Its check")]),
            "responses": ok("{query, set, run, dataset, checks, total, position, labelled, pairs, pair: {item, check, judgment, label} | null}", "application/json")}},
        "/v1/projects/{project}/labels/remove": {"post": {"summary": "Remove the expert's label of a check on an item (an undo); 404 if there is none", "parameters": parameters(&project, &[]),
            "requestBody": body(json!({"type": "object", "required": ["item", "check"], "properties": {"dataset": schema("Name"), "item": {"type": "string"}, "check": {"type": "string"}}})), "responses": ok("{removed}", "application/json")}},
    })
}

/// `/v1/optimise...` and gold outputs (`optimise_api.rs`).
fn optimise_paths() -> Value {
    let id = [("id", "Id")];
    json!({
        "/v1/optimise": {"post": {"summary": "Start an optimise run (`assay optimise`): per item a gold output evolved with the evaluator set as fitness, on the server's models; resumes the unfinished run with the same parameters; answers at once",
            "requestBody": body(schema("OptimiseRequest")),
            "responses": answers("202", "{run, resumed}: follow GET /v1/optimise/{id}/events or poll GET /v1/optimise/{id}", "application/json")}},
        "/v1/optimise/{id}": {"get": {"summary": "An optimise run, its progress in items while this server works on it, and its gold outputs with every candidate's lineage", "parameters": parameters(&id, &[]),
            "responses": ok("{run, stage, gold: [{id, run, set_version, item, output, p_pass, passes, evaluations, lineage: {candidates: [{id, generation, origin, text, p_pass, passes, rationales?}], best, evaluations, generations}, best_of_n, status, critique, created_at}]}", "application/json")}},
        "/v1/optimise/{id}/events": {"get": {"summary": "Server-sent events of the run from its start (id: its index; Last-Event-ID resumes after it): `progress` {stage, done, total}, `generation` {item, position, items, generation, best_passes, best_score, evaluations} per evaluated generation, `gold` {item, position, items, stored, passes, checks, score, evaluations, best_of_n} per stored gold output, then `end` {run}; replayed from when this server started or resumed the run; a run it keeps no log of sends only `end` with the run as stored",
            "parameters": parameters(&id, &[]), "responses": ok("event stream", "text/event-stream")}},
        "/v1/projects/{project}/gold": {"get": {"summary": "The newest gold output of each item under a version (`assay gold`)", "parameters": parameters(&[("project", "Name")], &[("set", json!({"type": "integer", "minimum": 1, "maximum": u32::MAX}), "Default: the latest version")]),
            "responses": ok("{set, gold: [...]}", "application/json")}},
        "/v1/projects/{project}/gold/{id}/critique": {"post": {"summary": "The expert rejects a gold output with a note (`assay critique`); one that passes every check becomes a candidate check (check writer) raised as a question; 409 if already rejected",
            "parameters": parameters(&[("project", "Name"), ("id", "Id")], &[]),
            "requestBody": body(json!({"type": "object", "required": ["note"], "properties": {"note": text(), "seed": schema("Seed")}})),
            "responses": ok("{gold, candidate_check, question, from_note}", "application/json")}}
    })
}

/// The document for this server: its routes, and its limits as the bounds of the fields.
pub(crate) async fn document(State(state): State<AppState>) -> Json<Value> {
    Json(build(&state.0.config.limits, &state.0.config.outbound))
}

fn build(limits: &Limits, outbound: &OutboundPolicy) -> Value {
    let mut document = json!({
        "openapi": "3.1.0",
        "info": {"title": "assay", "version": env!("CARGO_PKG_VERSION"), "description": "OpenAI-compatible generation, judging with binary checks, embeddings, and the evaluation loop over projects (datasets, evaluator-set versions, discovery and judge runs, reports, the expert's questions and labels, refinement), optimisation of gold outputs, and rewards. With --api-key every route but /health needs Authorization: Bearer <key>. Unknown fields are ignored, except in checks and project configurations (closed objects here); fields of the wrong type are rejected. Bounds marked --limit-* are this server's limits (400 naming the flag past them, 413 for bytes)."},
        "paths": {
            "/v1/chat/completions": {"post": {"summary": "Chat completion (OpenAI)", "requestBody": body(schema("ChatCompletionRequest")), "responses": generated("chat.completion", "chat.completion.chunk")}},
            "/v1/completions": {"post": {"summary": "Text completion (OpenAI legacy)", "requestBody": body(schema("CompletionRequest")), "responses": generated("text_completion", "text_completion pieces")}},
            "/v1/models": {"get": {"summary": "Loaded models", "responses": ok("{object: list, data: [{id, object: model}]}", "application/json")}},
            "/v1/embeddings": {"post": {"summary": "Sentence embeddings (OpenAI)", "requestBody": body(schema("EmbeddingRequest")), "responses": ok("{object: list, data: [{object: embedding, index, embedding}], usage}", "application/json")}},
            "/v1/judge": {"post": {"summary": "Judge items with binary checks (inline, or a project's stored evaluator set); the same verdicts as `assay judge`", "requestBody": body(schema("JudgeRequest")),
                "responses": ok("{model, evaluator_set: {version, content_hash}, results: [{item_id, judgments: [{item_id, check_id, verdict, p_pass, logprob_pass, logprob_fail, off_format_mass, rationale?, samples?: [{rationale, verdict, p_pass, logprob_pass, logprob_fail, off_format_mass}], flip_rate?}], score: {item_id, passed, total}}]}", "application/json")}},
            "/v1/reward": {"post": {"summary": "Rewards for RL trainers: per (input, output) pair (id default: the position) the P(PASS) of every check (the reward vector, in the set's order), its sum (total) and mean (normalised), and the passes; judged as /v1/judge judges", "requestBody": body(schema("RewardRequest")),
                "responses": ok("{model, evaluator_set: {version, content_hash}, checks: [check id], results: [{id, rewards: [p_pass], total, normalised, passed}]}", "application/json")}},
            "/health": {"get": {"summary": "Liveness: 200 {status: ok} once loaded; 503 {status: loading | draining}; never needs a key", "security": [], "responses": ok("status", "application/json")}},
            "/ready": {"get": {"summary": "Readiness: 200 {ready: true, problems: []} when every model is loaded, every engine runs and the store (--db) opens, reads and takes writes; 503 with the problems otherwise", "responses": ok("{ready, problems}", "application/json")}},
            "/metrics": {"get": {"summary": "Prometheus text: requests by route and status, latency histograms, refused connections; per model queue depth, KV pool blocks used / free / cached, prompt tokens and those reused from the prefix tree (hit rate), preemptions, waiting sequences, steps, rows per step, generated tokens, judged checks", "responses": ok("metrics", "text/plain")}},
            "/openapi.json": {"get": {"summary": "This document", "responses": ok("OpenAPI 3.1", "application/json")}}
        },
        "components": {"schemas": schemas(limits, outbound), "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "The key given to assay serve (--api-key-file, ASSAY_API_KEY); without one, no route needs it"}}},
        "security": [{"bearer": []}]
    });
    for (path, item) in project_paths(limits).as_object().expect("an object").iter().chain(optimise_paths().as_object().expect("an object")) {
        document["paths"][path] = item.clone();
    }
    document
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `$ref` names a schema of the document.
    fn refs(value: &Value, found: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    found.push(r.clone());
                }
                map.values().for_each(|v| refs(v, found));
            }
            Value::Array(list) => list.iter().for_each(|v| refs(v, found)),
            _ => {}
        }
    }

    #[test]
    fn every_reference_resolves_and_limits_are_the_bounds() {
        let limits = Limits { samples: 7, n: 3, population: 5, ..Limits::default() };
        let doc = build(&limits, &OutboundPolicy::default());
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(!found.is_empty());
        for r in found {
            let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("{r}"));
            assert!(doc["components"]["schemas"][name].is_object(), "{r} does not resolve");
        }
        let schemas = &doc["components"]["schemas"];
        assert_eq!(schemas["JudgeRequest"]["properties"]["samples"]["maximum"], 7);
        assert_eq!(schemas["ChatCompletionRequest"]["properties"]["n"]["maximum"], 3);
        // One case per population from 2 to the limit, and the two without both fields.
        assert_eq!(schemas["OptimiseRequest"]["anyOf"].as_array().unwrap().len(), 2 + 4);
    }
}
