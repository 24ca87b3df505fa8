//! `GET /openapi.json`: an OpenAPI 3.1 description of every route, written by hand next to the
//! routes it describes (`lib.rs`, `openai.rs`, `judge_api.rs`).

use axum::Json;
use serde_json::{json, Value};

fn body(schema: Value) -> Value {
    json!({"required": true, "content": {"application/json": {"schema": schema}}})
}

fn ok(description: &str, content_type: &str) -> Value {
    json!({
        "200": {"description": description, "content": {content_type: {}}},
        "default": {"description": "Error: {\"error\": {\"message\", \"type\", \"code\"}}; 400 bad input or prompt over the context, 401 missing or wrong key, 404 unknown model, 413 body too large, 429 queue full (Retry-After), 503 loading or draining, 504 deadline passed",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
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
        "stream": {"type": "boolean", "default": false, "description": "Server-sent events ending with data: [DONE]; a choice's logprobs arrive whole in its finish chunk"},
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
    Json(json!({
        "openapi": "3.1.0",
        "info": {"title": "assay", "version": env!("CARGO_PKG_VERSION"), "description": "OpenAI-compatible generation, judging with binary checks, embeddings. With --api-key every route but /health needs Authorization: Bearer <key>. Unknown fields are ignored; fields of the wrong type are rejected."},
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
            "/health": {"get": {"summary": "200 {status: ok} when ready; 503 {status: loading | draining}; never needs a key", "responses": ok("status", "application/json")}},
            "/metrics": {"get": {"summary": "Prometheus text: requests by route and status, latency histograms, queue depth, batch size, prompt and generated tokens, judge checks, prefix-cache hits", "responses": ok("metrics", "text/plain")}},
            "/openapi.json": {"get": {"summary": "This document", "responses": ok("OpenAPI 3.1", "application/json")}}
        },
        "components": {"schemas": {"Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {"message": {"type": "string"}, "type": {"type": "string"}, "code": {"type": "string"}}}}}}}
    }))
}
