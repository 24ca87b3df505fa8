//! `GET /openapi.json`: an OpenAPI 3.1 description of every route, written by hand next to the
//! routes it describes (`lib.rs`, `openai.rs`, `judge_api.rs`, `projects_api.rs`,
//! `optimise_api.rs`).

use axum::Json;
use serde_json::{json, Value};

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

/// Path parameters (all required) and optional query parameters, by name and JSON type.
fn parameters(path: &[(&str, &str)], query: &[(&str, &str, &str)]) -> Value {
    let path = path.iter().map(|(name, kind)| json!({"name": name, "in": "path", "required": true, "schema": {"type": kind}}));
    let query = query.iter().map(|(name, kind, description)| json!({"name": name, "in": "query", "required": false, "schema": {"type": kind}, "description": description}));
    Value::Array(path.chain(query).collect())
}

/// `/v1/projects/...`: the evaluation loop (`projects_api.rs`).
fn project_paths() -> Value {
    let project = [("project", "string")];
    let version = [("project", "string"), ("version", "integer")];
    let run = [("project", "string"), ("run", "integer")];
    let judge_options = json!({
        "mode": {"enum": ["verdict", "rationale"], "default": "verdict"}, "samples": {"type": "integer", "minimum": 1, "default": 1},
        "temperature": {"type": "number", "default": 0.7}, "rationale_tokens": {"type": "integer", "minimum": 1, "default": 48}, "seed": {"type": "integer", "default": 0}});
    let mut run_body = json!({"type": "object", "properties": {
        "set": {"type": "integer", "description": "Evaluator-set version (default: the latest)"},
        "dataset": {"type": "string", "description": "Default: the project's most recent dataset"},
        "chunk_items": {"type": "integer", "minimum": 1, "default": 8, "description": "Items judged between two writes to the store"}}});
    for (k, v) in judge_options.as_object().expect("an object") {
        run_body["properties"][k] = v.clone();
    }
    let item = json!({"type": "object", "required": ["input"], "properties": {"id": {"type": ["string", "number"]}, "input": {"type": "string"}, "output": {"type": "string"}, "context": {"type": "string"}, "reference": {}, "metadata": {"type": "object"}}});
    let label = json!({"type": "object", "required": ["item"], "properties": {"item": {"type": "string", "description": "The item's id in the dataset"}, "check": {"type": "string"}, "verdict": {"enum": ["PASS", "FAIL"]}, "score": {"type": "number"}, "note": {"type": "string"}}, "description": "Either check and verdict, or score"});
    json!({
        "/v1/projects": {
            "get": {"summary": "Projects in the server's store (--db)", "responses": ok("{projects: [{id, name, task, generation_prompt, expert_notes, config, created_at}]}", "application/json")},
            "post": {"summary": "Create a project (`assay project create`)", "requestBody": body(json!({"type": "object", "required": ["name", "generation_prompt"], "properties": {
                "name": {"type": "string"}, "generation_prompt": {"type": "string"}, "task": {"type": "string"}, "expert_notes": {"type": "string"},
                "config": {"type": "object", "description": "Backend and model per role, discovery generators, answer_tokens (`assay project config`); default: every default"}}})),
                "responses": answers("201", "the project", "application/json")}},
        "/v1/projects/{project}": {"get": {"summary": "A project: its configuration with defaults, datasets, evaluator-set versions (number, reason, hash, check count) and runs", "parameters": parameters(&project, &[]),
            "responses": ok("{project, config, datasets, sets: [{number, parent, reason, content_hash, checks, created_at}], runs}", "application/json")}},
        "/v1/projects/{project}/config": {"put": {"summary": "Replace the project's configuration (validated; unknown fields refused)", "parameters": parameters(&project, &[]),
            "requestBody": body(json!({"type": "object"})), "responses": ok("the configuration with defaults", "application/json")}},
        "/v1/projects/{project}/datasets": {"post": {"summary": "Import a dataset, all or nothing (`assay data import`)", "parameters": parameters(&project, &[]),
            "requestBody": body(json!({"type": "object", "required": ["name", "items"], "properties": {"name": {"type": "string"}, "source": {"type": "string"}, "items": {"type": "array", "items": item}}})),
            "responses": answers("201", "{id, project, name, source, item_count, created_at}", "application/json")}},
        "/v1/projects/{project}/sets": {"post": {"summary": "Checks as the next immutable evaluator-set version (`assay set import`); 409 when identical to the latest", "parameters": parameters(&project, &[]),
            "requestBody": body(json!({"type": "object", "required": ["checks"], "properties": {"checks": {"description": "A list of {id, question, name?, pass_criteria?, fail_examples?, threshold?}, or {version?, checks}"}, "reason": {"type": "string"}}})),
            "responses": answers("201", "{id, project, number, parent, content_hash, reason, created_at, set: {version, checks}}", "application/json")}},
        "/v1/projects/{project}/sets/{version}": {"get": {"summary": "An evaluator-set version", "parameters": parameters(&version, &[]), "responses": ok("{id, project, number, parent, content_hash, reason, created_at, set}", "application/json")}},
        "/v1/projects/{project}/sets/{from}/diff/{to}": {"get": {"summary": "What changed between two versions (`assay set diff`)", "parameters": parameters(&[("project", "string"), ("from", "integer"), ("to", "integer")], &[]),
            "responses": ok("{from, to, added, removed, changed: [{id, fields, before, after}], order_changed}", "application/json")}},
        "/v1/projects/{project}/discover": {"post": {"summary": "Start discovery (`assay discover`) on the server's models; answers at once, the run goes on in the background", "parameters": parameters(&project, &[]),
            "requestBody": body(json!({"type": "object", "properties": {"dataset": {"type": "string", "description": "Default: the project's most recent dataset"}, "checks": {"type": "integer", "minimum": 1, "default": 10}, "seed": {"type": "integer", "default": 0}}})),
            "responses": answers("202", "{run}: poll GET .../runs/{run}", "application/json")}},
        "/v1/projects/{project}/runs": {"post": {"summary": "Start a judge run (`assay run`) on the server's models, or resume the unfinished one with the same set, dataset, judge and options (after a crash or a shutdown); answers at once", "parameters": parameters(&project, &[]),
            "requestBody": body(run_body), "responses": answers("202", "{run, resumed}: poll GET .../runs/{run}", "application/json")}},
        "/v1/projects/{project}/runs/{run}": {"get": {"summary": "A run: status (queued, running, done, failed), progress_done / progress_total (judgments), error; stage while this server works on it", "parameters": parameters(&run, &[]),
            "responses": ok("{run: {id, kind, status, set_version, dataset, params, progress_done, progress_total, error, created_at, updated_at}, stage: {stage, done, total} | null}", "application/json")}},
        "/v1/projects/{project}/runs/{run}/judgments": {"get": {"summary": "The judgments a judge run has stored", "parameters": parameters(&run, &[]),
            "responses": ok("{judgments: [{item_id, check_id, verdict, p_pass, logprob_pass, logprob_fail, off_format_mass, rationale?, samples?, flip_rate?}]}", "application/json")}},
        "/v1/projects/{project}/report": {"get": {"summary": "Per-check consistency, separation, cohesion and agreement with expert labels (`assay report --json`, no plots)",
            "parameters": parameters(&project, &[("set", "integer", "Default: the latest version"), ("run", "integer", "Default: the set's latest finished judge run")]),
            "responses": ok("{project, set, run, run_status, dataset, judge, items, checks: [...], agreement, total_spearman}", "application/json")}},
        "/v1/projects/{project}/questions": {"get": {"summary": "Questions for the expert (`assay questions`): open ones, or all with their rulings",
            "parameters": parameters(&project, &[("all", "boolean", "Include answered questions")]),
            "responses": ok("{questions: [{id, project, item, item_key, check, why, options, status, ruling, created_at}]}", "application/json")}},
        "/v1/projects/{project}/questions/{question}/answer": {"post": {"summary": "The expert's ruling (`assay answer`); with label, also the expert's label of the question's check on its item; 409 if already answered",
            "parameters": parameters(&[("project", "string"), ("question", "integer")], &[]),
            "requestBody": body(json!({"type": "object", "required": ["ruling"], "properties": {"ruling": {"type": "string"}, "label": {"enum": ["PASS", "FAIL"]}}})), "responses": ok("the answered question", "application/json")}},
        "/v1/projects/{project}/labels": {"post": {"summary": "Expert labels of checks on items, or whole-output scores, all or nothing (`assay label`)", "parameters": parameters(&project, &[]),
            "requestBody": body(json!({"type": "object", "required": ["labels"], "properties": {"dataset": {"type": "string", "description": "Default: the project's most recent dataset"}, "labels": {"type": "array", "items": label}}})),
            "responses": ok("{dataset, check_labels, score_labels}", "application/json")}},
        "/v1/projects/{project}/refine": {"post": {"summary": "A new evaluator-set version from rulings and the latest report (`assay refine`); waits for it", "parameters": parameters(&project, &[]),
            "requestBody": body(json!({"type": "object", "properties": {"set": {"type": "integer", "description": "Default: the latest version"}, "seed": {"type": "integer", "default": 0}}})),
            "responses": ok("{from, to (null: no new version), changes: [{check, action, why}], unreadable_rewrites}", "application/json")}}
    })
}

/// `/v1/optimise...` and gold outputs (`optimise_api.rs`).
fn optimise_paths() -> Value {
    let id = [("id", "integer")];
    json!({
        "/v1/optimise": {"post": {"summary": "Start an optimise run (`assay optimise`): per item a gold output evolved with the evaluator set as fitness, on the server's models; resumes the unfinished run with the same parameters; answers at once",
            "requestBody": body(json!({"type": "object", "required": ["project"], "properties": {
                "project": {"type": "string"}, "set": {"type": "integer", "description": "Default: the latest version"}, "dataset": {"type": "string", "description": "Default: the project's most recent dataset"},
                "items": {"type": "integer", "minimum": 1, "default": 10, "description": "The dataset's first items"}, "generations": {"type": "integer", "default": 4}, "population": {"type": "integer", "minimum": 2, "maximum": 64, "default": 4},
                "budget": {"type": "integer", "maximum": 4096, "default": 20, "description": "Most candidate evaluations per item, seeds included (at least the population)"}, "max_tokens": {"type": "integer", "minimum": 1, "default": 128}, "seed": {"type": "integer", "default": 0},
                "compare": {"type": "boolean", "default": false, "description": "Also best-of-N with the same evaluations per item"},
                "rationales": {"type": "boolean", "default": false, "description": "Judge in rationale mode so that rewrites are told why checks failed (slower)"}}})),
            "responses": answers("202", "{run, resumed}: follow GET /v1/optimise/{id}/events or poll GET /v1/optimise/{id}", "application/json")}},
        "/v1/optimise/{id}": {"get": {"summary": "An optimise run, its progress in items while this server works on it, and its gold outputs with every candidate's lineage", "parameters": parameters(&id, &[]),
            "responses": ok("{run, stage, gold: [{id, run, set_version, item, output, p_pass, passes, evaluations, lineage: {candidates: [{id, generation, origin, text, p_pass, passes, rationales?}], best, evaluations, generations}, best_of_n, status, critique, created_at}]}", "application/json")}},
        "/v1/optimise/{id}/events": {"get": {"summary": "Server-sent events of the run from its start: `generation` {item, position, items, generation, best_passes, best_score, evaluations} per evaluated generation, `gold` {item, position, items, stored, passes, checks, score, evaluations, best_of_n} per stored gold output, then `end` {run}; replayed from when this server started or resumed the run; a run it keeps no log of sends only `end` with the run as stored",
            "parameters": parameters(&id, &[]), "responses": ok("event stream", "text/event-stream")}},
        "/v1/projects/{project}/gold": {"get": {"summary": "The newest gold output of each item under a version (`assay gold`)", "parameters": parameters(&[("project", "string")], &[("set", "integer", "Default: the latest version")]),
            "responses": ok("{set, gold: [...]}", "application/json")}},
        "/v1/projects/{project}/gold/{id}/critique": {"post": {"summary": "The expert rejects a gold output with a note (`assay critique`); one that passes every check becomes a candidate check (check writer) raised as a question; 409 if already rejected",
            "parameters": parameters(&[("project", "string"), ("id", "integer")], &[]),
            "requestBody": body(json!({"type": "object", "required": ["note"], "properties": {"note": {"type": "string"}, "seed": {"type": "integer", "default": 0}}})),
            "responses": ok("{gold, candidate_check, question, from_note}", "application/json")}}
    })
}

pub(crate) async fn document() -> Json<Value> {
    let sampling = json!({
        "max_tokens": {"type": "integer", "minimum": 0, "description": "New tokens at most (chat default 256, completions 16)"},
        "max_completion_tokens": {"type": "integer", "minimum": 0, "description": "Same as max_tokens; wins when both are given"},
        "temperature": {"type": "number", "minimum": 0, "default": 1, "description": "0 is greedy"},
        "top_p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1, "default": 1},
        "seed": {"type": "integer", "description": "Seeded requests repeat exactly, alone or batched; choice i uses seed + i"},
        "stop": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        "n": {"type": "integer", "minimum": 1, "maximum": 16, "default": 1},
        "stream": {"type": "boolean", "default": false, "description": "Server-sent events ending with data: [DONE]; each piece carries the logprobs of its tokens"},
        "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}}
    });
    let mut chat = json!({"type": "object", "required": ["model", "messages"], "properties": {
        "model": {"type": "string"},
        "messages": {"type": "array", "items": {"type": "object", "required": ["role", "content"], "properties": {"role": {"type": "string"}, "content": {"oneOf": [{"type": "string"}, {"type": "array"}]}}}},
        "logprobs": {"type": "boolean"},
        "top_logprobs": {"type": "integer", "minimum": 0, "maximum": 20}
    }});
    let mut completion = json!({"type": "object", "required": ["model", "prompt"], "properties": {
        "model": {"type": "string"},
        "prompt": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        "logprobs": {"type": "integer", "minimum": 0, "maximum": 20}
    }});
    for schema in [&mut chat, &mut completion] {
        for (k, v) in sampling.as_object().expect("an object") {
            schema["properties"][k] = v.clone();
        }
    }
    let mut document = json!({
        "openapi": "3.1.0",
        "info": {"title": "assay", "version": env!("CARGO_PKG_VERSION"), "description": "OpenAI-compatible generation, judging with binary checks, embeddings, and the evaluation loop over projects (datasets, evaluator-set versions, discovery and judge runs, reports, the expert's questions and labels, refinement), optimisation of gold outputs, and rewards. With --api-key every route but /health needs Authorization: Bearer <key>. Unknown fields are ignored; fields of the wrong type are rejected."},
        "paths": {
            "/v1/chat/completions": {"post": {"summary": "Chat completion (OpenAI)", "requestBody": body(chat), "responses": ok("chat.completion, or chat.completion.chunk events when streaming", "application/json")}},
            "/v1/completions": {"post": {"summary": "Text completion (OpenAI legacy)", "requestBody": body(completion), "responses": ok("text_completion", "application/json")}},
            "/v1/models": {"get": {"summary": "Loaded models", "responses": ok("{object: list, data: [{id, object: model}]}", "application/json")}},
            "/v1/embeddings": {"post": {"summary": "Sentence embeddings (OpenAI)", "requestBody": body(json!({"type": "object", "required": ["model", "input"], "properties": {
                "model": {"type": "string"}, "input": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}, "encoding_format": {"enum": ["float", "base64"]}}})),
                "responses": ok("{object: list, data: [{object: embedding, index, embedding}], usage}", "application/json")}},
            "/v1/judge": {"post": {"summary": "Judge items with binary checks (inline, or a project's stored evaluator set); the same verdicts as `assay judge`", "requestBody": body(json!({"type": "object", "required": ["items"], "properties": {
                "project": {"type": "string", "description": "Instead of checks: a project in the server's store (--db)"}, "set": {"type": "integer", "description": "With project: the evaluator-set version (default: the latest)"},
                "model": {"type": "string", "description": "Default: the server's judge model"},
                "checks": {"description": "A list of {id, question, name?, pass_criteria?, fail_examples?, threshold?}, or {version?, checks}"},
                "items": {"type": "array", "items": {"type": "object", "required": ["id", "input", "output"], "properties": {"id": {"type": "string"}, "input": {"type": "string"}, "output": {"type": "string"}, "context": {"type": "string"}}}},
                "pass_label": {"type": "string", "default": " PASS"}, "fail_label": {"type": "string", "default": " FAIL"},
                "mode": {"enum": ["verdict", "rationale"], "default": "verdict", "description": "rationale: a short generated rationale per check, then the verdict after it"},
                "samples": {"type": "integer", "minimum": 1, "default": 1, "description": "Rationales sampled per check at `temperature`; > 1 reports each sample and the flip rate"},
                "temperature": {"type": "number", "default": 0.7}, "rationale_tokens": {"type": "integer", "minimum": 1, "default": 48}, "seed": {"type": "integer", "default": 0}}})),
                "responses": ok("{model, evaluator_set: {version, content_hash}, results: [{item_id, judgments: [{item_id, check_id, verdict, p_pass, logprob_pass, logprob_fail, off_format_mass, rationale?, samples?: [{rationale, verdict, p_pass, logprob_pass, logprob_fail, off_format_mass}], flip_rate?}], score: {item_id, passed, total}}]}", "application/json")}},
            "/v1/reward": {"post": {"summary": "Rewards for RL trainers: per (input, output) pair the P(PASS) of every check (the reward vector, in the set's order), its sum (total) and mean (normalised), and the passes; judged as /v1/judge judges", "requestBody": body(json!({"type": "object", "required": ["pairs"], "properties": {
                "pairs": {"type": "array", "items": {"type": "object", "required": ["input", "output"], "properties": {"id": {"type": "string", "description": "Default: the position"}, "input": {"type": "string"}, "output": {"type": "string"}, "context": {"type": "string"}}}},
                "checks": {"description": "As /v1/judge"}, "project": {"type": "string"}, "set": {"type": "integer"}, "model": {"type": "string"},
                "mode": {"enum": ["verdict", "rationale"]}, "samples": {"type": "integer"}, "temperature": {"type": "number"}, "rationale_tokens": {"type": "integer"}, "seed": {"type": "integer"}}})),
                "responses": ok("{model, evaluator_set: {version, content_hash}, checks: [check id], results: [{id, rewards: [p_pass], total, normalised, passed}]}", "application/json")}},
            "/health": {"get": {"summary": "200 {status: ok} when ready; 503 {status: loading | draining}; never needs a key", "responses": ok("status", "application/json")}},
            "/metrics": {"get": {"summary": "Prometheus text: requests by route and status, latency histograms; per model queue depth, KV pool blocks used / free / cached, prompt tokens and those reused from the prefix tree (hit rate), preemptions, waiting sequences, steps, rows per step, generated tokens, judged checks", "responses": ok("metrics", "text/plain")}},
            "/openapi.json": {"get": {"summary": "This document", "responses": ok("OpenAPI 3.1", "application/json")}}
        },
        "components": {"schemas": {"Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {"message": {"type": "string"}, "type": {"type": "string"}, "code": {"type": "string"}}}}}}}
    });
    for (path, item) in project_paths().as_object().expect("an object").iter().chain(optimise_paths().as_object().expect("an object")) {
        document["paths"][path] = item.clone();
    }
    Json(document)
}
