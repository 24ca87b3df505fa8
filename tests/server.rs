//! `assay serve` end to end with the real SmolLM2, over HTTP: batched requests give the same
//! text as alone, overload is refused with 429 while /health answers, bad input gets the right
//! status and an OpenAI-shaped error, /metrics counts, /v1/judge equals `assay judge`, and the
//! official `openai` Python client works against it.

mod common;

use common::server::Server;
use common::{ifeval_items, IFEVAL_CHECKS};
use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};

fn chat(prompt: &str, seed: u64, max_tokens: usize) -> Value {
    json!({"model": "smollm2", "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens, "temperature": 0.9, "seed": seed})
}

fn text_of(response: &Value) -> String {
    response["choices"][0]["message"]["content"].as_str().unwrap_or_else(|| panic!("no text in {response}")).to_string()
}

#[test]
fn thirty_two_concurrent_seeded_chats_equal_each_run_alone() {
    let server = Server::start(&[]);
    let topics = ["the sea", "bread", "a lighthouse", "winter", "iron deficiency", "a red fox", "the moon", "tea"];
    let requests: Vec<Value> = (0..32).map(|i| chat(&format!("Write one sentence about {}.", topics[i % topics.len()]), i as u64, 12)).collect();
    let alone: Vec<String> = requests
        .iter()
        .map(|r| {
            let (status, body) = server.post("/v1/chat/completions", r);
            assert_eq!(status, 200, "{body}");
            text_of(&body)
        })
        .collect();
    let together: Vec<(u16, Value)> = std::thread::scope(|s| {
        let handles: Vec<_> = requests.iter().map(|r| s.spawn(|| server.post("/v1/chat/completions", r))).collect();
        // The server keeps answering while the batch runs.
        assert_eq!(server.get("/health").0, 200);
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, ((status, body), want)) in together.iter().zip(&alone).enumerate() {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(&text_of(body), want, "request {i} differs when batched");
        assert!(body["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    }
    let (_, metrics) = server.get("/metrics");
    let batch = metrics.lines().find(|l| l.starts_with("assay_engine_steps_total")).unwrap();
    let steps: u64 = batch.rsplit(' ').next().unwrap().parse().unwrap();
    // 32 requests of at most 12 tokens alone take >= 32 steps; batched they share steps.
    assert!(steps < 32 * 13 * 2, "{batch}");
}

#[test]
fn a_burst_past_max_queue_gets_429s_while_health_answers() {
    let server = Server::start(&["--max-queue", "4"]);
    let body = chat("Tell me a long story about a lighthouse keeper.", 7, 24);
    let outcomes: Vec<(u16, Option<String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|_| {
                s.spawn(|| {
                    let (status, _, retry) = server.call(ureq::post(&format!("{}/v1/chat/completions", server.base)), Some(&body.to_string()));
                    (status, retry)
                })
            })
            .collect();
        for _ in 0..5 {
            assert_eq!(server.get("/health").0, 200, "health must answer during the burst");
            std::thread::sleep(Duration::from_millis(100));
        }
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok = outcomes.iter().filter(|o| o.0 == 200).count();
    let refused: Vec<_> = outcomes.iter().filter(|o| o.0 == 429).collect();
    assert_eq!(ok + refused.len(), 16, "only 200 or 429: {outcomes:?}");
    assert!(ok >= 1 && !refused.is_empty(), "{outcomes:?}");
    assert!(refused.iter().all(|o| o.1.as_deref() == Some("1")), "429 carries Retry-After: {refused:?}");
    // Once the burst is over the queue is free again.
    assert_eq!(server.post("/v1/chat/completions", &body).0, 200);
    let (_, metrics) = server.get("/metrics");
    assert!(metrics.contains(&format!("assay_requests_total{{route=\"/v1/chat/completions\",status=\"429\"}} {}", refused.len())), "{metrics}");
}

#[test]
fn bad_input_gets_the_right_status_and_a_json_error() {
    let server = Server::start(&["--api-key", "sekret", "--max-body-bytes", "100000"]);
    let url = |p: &str| format!("{}{p}", server.base);
    let with_key = |r: ureq::Request| r.set("Authorization", "Bearer sekret");
    let good = chat("Hi", 1, 2).to_string();
    let long_prompt = json!({"model": "smollm2", "messages": [{"role": "user", "content": "word ".repeat(9000)}]}).to_string();
    let cases: Vec<(&str, ureq::Request, Option<String>, u16, &str)> = vec![
        ("no key", ureq::post(&url("/v1/chat/completions")), Some(good.clone()), 401, "invalid_api_key"),
        ("wrong key", ureq::post(&url("/v1/chat/completions")).set("Authorization", "Bearer sekreT"), Some(good.clone()), 401, "invalid_api_key"),
        ("no key on metrics", ureq::get(&url("/metrics")), None, 401, "invalid_api_key"),
        ("malformed JSON", with_key(ureq::post(&url("/v1/chat/completions"))), Some("{\"model\": ".into()), 400, "invalid_json"),
        (
            "wrong type",
            with_key(ureq::post(&url("/v1/chat/completions"))),
            Some(json!({"model": "smollm2", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": "ten"}).to_string()),
            400,
            "invalid_type",
        ),
        ("missing field", with_key(ureq::post(&url("/v1/completions"))), Some(json!({"model": "smollm2"}).to_string()), 400, "invalid_type"),
        ("unknown model", with_key(ureq::post(&url("/v1/chat/completions"))), Some(json!({"model": "gpt-9", "messages": [{"role": "user", "content": "Hi"}]}).to_string()), 404, "model_not_found"),
        ("over-long prompt", with_key(ureq::post(&url("/v1/chat/completions"))), Some(long_prompt), 400, "context_length_exceeded"),
        ("bad n", with_key(ureq::post(&url("/v1/chat/completions"))), Some(json!({"model": "smollm2", "messages": [{"role": "user", "content": "Hi"}], "n": 0}).to_string()), 400, "invalid_value"),
        (
            "bad temperature",
            with_key(ureq::post(&url("/v1/chat/completions"))),
            Some(json!({"model": "smollm2", "messages": [{"role": "user", "content": "Hi"}], "temperature": -1}).to_string()),
            400,
            "invalid_value",
        ),
        ("bad checks", with_key(ureq::post(&url("/v1/judge"))), Some(json!({"checks": [], "items": [{"id": "1", "input": "q", "output": "a"}]}).to_string()), 400, "invalid_value"),
        ("unknown route", with_key(ureq::get(&url("/v2/nothing"))), None, 404, "unknown_url"),
    ];
    for (what, req, body, status, code) in cases {
        let (got, text, _) = server.call(req, body.as_deref());
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{what}: not JSON: {text}"));
        assert_eq!(got, status, "{what}: {text}");
        assert_eq!(v["error"]["code"], code, "{what}: {text}");
        assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()) && v["error"]["type"].is_string(), "{what}: {text}");
        if what == "over-long prompt" {
            assert!(v["error"]["message"].as_str().unwrap().contains("8192"), "names the limit: {text}");
        }
    }
    // Over the body limit. The server answers before reading the body and closes the
    // connection, which HTTP clients that are still writing report as a broken pipe: write
    // the request whole on a plain socket, then read the answer.
    let body = json!({"model": "smollm2", "prompt": "x".repeat(100_100)}).to_string();
    let mut socket = std::net::TcpStream::connect(server.base.trim_start_matches("http://")).unwrap();
    let request =
        format!("POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sekret\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    let _ = std::io::Write::write_all(&mut socket, request.as_bytes());
    let mut answer = String::new();
    let _ = std::io::Read::read_to_string(&mut socket, &mut answer);
    assert!(answer.starts_with("HTTP/1.1 413") && answer.contains("\"payload_too_large\""), "{answer}");

    // Unknown fields are ignored; the key opens every route; /health needs none.
    let (status, text, _) = server.call(
        with_key(ureq::post(&url("/v1/chat/completions"))),
        Some(&json!({"model": "smollm2", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, "frequency_penalty": 0.5, "user": "x"}).to_string()),
    );
    assert_eq!(status, 200, "{text}");
    assert_eq!(server.call(ureq::get(&url("/health")), None).0, 200);
    let (status, text, _) = server.call(with_key(ureq::get(&url("/openapi.json"))), None);
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(status, 200);
    for route in ["/v1/chat/completions", "/v1/completions", "/v1/models", "/v1/embeddings", "/v1/judge", "/health", "/metrics", "/openapi.json"] {
        assert!(doc["paths"][route].is_object(), "openapi.json lacks {route}");
    }
}

/// `assay judge` on `items` with the test checks and `extra` flags: its JSONL judgments.
fn cli_judgments(items: &[Value], extra: &[&str]) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let checks_path = dir.path().join("checks.json");
    let items_path = dir.path().join("items.jsonl");
    let out = dir.path().join("judgments.jsonl");
    std::fs::write(&checks_path, IFEVAL_CHECKS).unwrap();
    std::fs::write(&items_path, items.iter().map(|i| i.to_string() + "\n").collect::<String>()).unwrap();
    let cli = Command::new(common::assay_bin())
        .args(["judge", "--model", "smollm2", "--checks", checks_path.to_str().unwrap(), "--items", items_path.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .args(extra)
        .current_dir(common::repo_root())
        .output()
        .unwrap();
    assert!(cli.status.success(), "{}", String::from_utf8_lossy(&cli.stderr));
    std::fs::read_to_string(&out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn sampled_rationales_over_http_equal_the_cli() {
    let items = ifeval_items(2);
    let want = cli_judgments(&items, &["--samples", "2", "--rationale-tokens", "6", "--seed", "3"]);
    let server = Server::start(&[]);
    let checks: Value = serde_json::from_str(IFEVAL_CHECKS).unwrap();
    let (status, body) = server.post("/v1/judge", &json!({"checks": checks, "items": items, "samples": 2, "rationale_tokens": 6, "seed": 3}));
    assert_eq!(status, 200, "{body}");
    let got: Vec<Value> = body["results"].as_array().unwrap().iter().flat_map(|r| r["judgments"].as_array().unwrap().clone()).collect();
    assert_eq!(got, want, "HTTP and CLI judgments differ");
    assert!(got.iter().all(|j| j["samples"].as_array().unwrap().len() == 2 && j["flip_rate"].is_number()));
    let (status, body) = server.post("/v1/judge", &json!({"checks": checks, "items": items, "samples": 2, "temperature": 0}));
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("temperature"), "{body}");
}

#[test]
fn judge_by_a_stored_evaluator_set_equals_inline_checks() {
    let dir = tempfile::tempdir().unwrap();
    let (db, prompt, checks_path) = (dir.path().join("assay.db"), dir.path().join("prompt.txt"), dir.path().join("checks.json"));
    std::fs::write(&prompt, "Follow the user's instructions exactly.").unwrap();
    std::fs::write(&checks_path, IFEVAL_CHECKS).unwrap();
    for args in [vec!["project", "create", "demo", "--prompt-file", prompt.to_str().unwrap()], vec!["set", "import", "--project", "demo", "--checks", checks_path.to_str().unwrap()]] {
        let out = Command::new(common::assay_bin()).arg("--db").arg(&db).args(&args).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let server = Server::start(&["--db", db.to_str().unwrap()]);
    let items = ifeval_items(2);
    let checks: Value = serde_json::from_str(IFEVAL_CHECKS).unwrap();
    let (status, inline) = server.post("/v1/judge", &json!({"checks": checks, "items": items}));
    assert_eq!(status, 200, "{inline}");
    for request in [json!({"project": "demo", "set": 1, "items": items}), json!({"project": "demo", "items": items})] {
        let (status, stored) = server.post("/v1/judge", &request);
        assert_eq!(status, 200, "{stored}");
        assert_eq!(stored["results"], inline["results"]);
    }
    for (request, want) in [
        (json!({"project": "nope", "items": items}), 404),
        (json!({"project": "demo", "set": 9, "items": items}), 404),
        (json!({"items": items}), 400),
        (json!({"checks": checks, "project": "demo", "items": items}), 400),
    ] {
        let (status, body) = server.post("/v1/judge", &request);
        assert_eq!(status, want, "{request}: {body}");
        assert!(body["error"]["message"].is_string(), "{body}");
    }
}

#[test]
fn judge_over_http_equals_the_cli_and_metrics_count_it() {
    let items = ifeval_items(3);
    let want = cli_judgments(&items, &[]);

    let server = Server::start(&[]);
    let checks: Value = serde_json::from_str(IFEVAL_CHECKS).unwrap();
    let (status, body) = server.post("/v1/judge", &json!({"checks": checks, "items": items}));
    assert_eq!(status, 200, "{body}");
    let got: Vec<Value> = body["results"].as_array().unwrap().iter().flat_map(|r| r["judgments"].as_array().unwrap().clone()).collect();
    assert_eq!(got, want, "HTTP and CLI judgments differ");
    for r in body["results"].as_array().unwrap() {
        let passed = r["judgments"].as_array().unwrap().iter().filter(|j| j["verdict"] == "PASS").count();
        assert_eq!(r["score"]["passed"], passed);
        assert_eq!(r["score"]["total"], 2);
    }
    let reused_after_first = metric(&server, "assay_prompt_tokens_reused_total");
    // The same items again: every prompt but its last token comes from the prefix tree.
    assert_eq!(server.post("/v1/judge", &json!({"checks": checks, "items": items})).1["results"], body["results"]);
    let reused = metric(&server, "assay_prompt_tokens_reused_total") - reused_after_first;
    let prompts = assay_engine::judge::judge_prompts(common::smollm2_model(), &parse_items(&items), &parse_checks(IFEVAL_CHECKS), &assay_core::JudgeOptions::default()).unwrap();
    let full: f64 = (0..items.len()).flat_map(|i| (0..2).map(move |c| (i, c))).map(|(i, c)| (prompts.full(i, c).len() - 1) as f64).sum();
    assert!(reused >= full, "the second request reused {reused} tokens, its prompts hold {full}");
    assert_eq!(server.post("/v1/chat/completions", &chat("Hi", 3, 3)).0, 200);

    let (status, metrics) = server.get("/metrics");
    assert_eq!(status, 200);
    for series in [
        "assay_requests_total{route=\"/v1/judge\",status=\"200\"} 2",
        "assay_judge_checks_total{model=\"smollm2\"} 12",
        "assay_request_duration_seconds_bucket{route=\"/v1/judge\",le=\"+Inf\"} 2",
        "assay_queue_depth{model=\"smollm2\"} 0",
        "assay_preemptions_total{model=\"smollm2\"} 0",
        "assay_sequences_waiting{model=\"smollm2\"} 0",
    ] {
        assert!(metrics.contains(series), "missing {series} in\n{metrics}");
    }
    for name in [
        "assay_prompt_tokens_total",
        "assay_generated_tokens_total",
        "assay_prefix_hit_rate",
        "assay_kv_blocks_used",
        "assay_kv_blocks_free",
        "assay_kv_blocks_cached",
        "assay_engine_steps_total",
        "assay_batch_rows",
    ] {
        assert!(metric(&server, name) > 0.0, "{name} in\n{metrics}");
    }
    assert!(metric(&server, "assay_prefix_hit_rate") < 1.0);

    // /v1/reward on the same (input, output) pairs: the reward vector is the CLI's P(PASS).
    let pairs: Vec<Value> = items.iter().map(|i| json!({"input": i["input"], "output": i["output"]})).collect();
    let (status, body) = server.post("/v1/reward", &json!({"checks": checks, "pairs": pairs}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["checks"], json!(["follows_format", "on_topic"]));
    for (n, r) in body["results"].as_array().unwrap().iter().enumerate() {
        assert_eq!(r["id"], n.to_string());
        let cli: Vec<&Value> = want[2 * n..2 * n + 2].iter().map(|j| &j["p_pass"]).collect();
        let rewards: Vec<&Value> = r["rewards"].as_array().unwrap().iter().collect();
        assert_eq!(rewards, cli, "pair {n}");
        let total: f64 = rewards.iter().map(|v| v.as_f64().unwrap()).sum();
        assert!((r["total"].as_f64().unwrap() - total).abs() < 1e-5 && (r["normalised"].as_f64().unwrap() - total / 2.0).abs() < 1e-5, "{r}");
        assert_eq!(r["passed"], want[2 * n..2 * n + 2].iter().filter(|j| j["verdict"] == "PASS").count());
    }
    assert_eq!(server.post("/v1/reward", &json!({"checks": checks})).0, 400, "pairs are required");
}

/// A per-model series of `/metrics`, for SmolLM2.
fn metric(server: &Server, name: &str) -> f64 {
    let (_, metrics) = server.get("/metrics");
    let prefix = format!("{name}{{model=\"smollm2\"}} ");
    let line = metrics.lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("no {prefix} in\n{metrics}"));
    line[prefix.len()..].parse().unwrap()
}

fn parse_items(items: &[Value]) -> Vec<assay_core::JudgeItem> {
    items.iter().map(|i| serde_json::from_value(i.clone()).unwrap()).collect()
}

fn parse_checks(json: &str) -> Vec<assay_core::Check> {
    assay_core::EvaluatorSet::from_json(json).unwrap().checks
}

#[test]
fn two_chats_with_one_system_prompt_share_its_blocks_and_metrics_say_so() {
    let server = Server::start(&[]);
    let system = "You are a careful clinical assistant. Answer concisely, cite guidelines when relevant, and say when a doctor should be seen. ".repeat(4);
    let ask = |user: &str| json!({"model": "smollm2", "max_tokens": 2, "temperature": 0, "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}]});
    assert_eq!(server.post("/v1/chat/completions", &ask("What helps a cold?")).0, 200);
    let (before, blocks_before) = (metric(&server, "assay_prompt_tokens_reused_total"), metric(&server, "assay_kv_blocks_cached"));
    assert_eq!(server.post("/v1/chat/completions", &ask("Is ibuprofen safe with asthma?")).0, 200);
    let reused = metric(&server, "assay_prompt_tokens_reused_total") - before;
    let lm = common::smollm2_model();
    let messages = |user: &str| [assay_engine::ChatMessage::new("system", &system), assay_engine::ChatMessage::new("user", user)];
    let (a, b) = (lm.chat_prompt(&messages("What helps a cold?")).unwrap(), lm.chat_prompt(&messages("Is ibuprofen safe with asthma?")).unwrap());
    let shared = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    assert!(shared > 64, "{shared} tokens in common");
    assert_eq!(reused as usize, shared, "the second chat reused exactly the system prompt's tokens");
    // Its own blocks joined the tree; the shared ones were not copied.
    let grown = metric(&server, "assay_kv_blocks_cached") - blocks_before;
    assert!(grown as usize <= b.len().div_ceil(32) - shared / 32, "{grown} new cached blocks");
    assert!(metric(&server, "assay_prefix_hit_rate") > 0.0);
}

/// The official `openai` Python package against the server, from a virtual environment the
/// test makes on first use (`.venv-openai`).
#[test]
fn the_openai_python_client_works_against_the_server() {
    let python = common::python_venv("openai", &["openai"]);
    let server = Server::start(&["--embed-model", "minilm", "--api-key", "py-key"]);
    let out = Command::new(python)
        .args(["-m", "unittest", "-v", "tests/python/test_openai_client.py"])
        .env("ASSAY_BASE_URL", format!("{}/v1", server.base))
        .env("ASSAY_API_KEY", "py-key")
        .current_dir(common::repo_root())
        .output()
        .unwrap();
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{log}");
    assert!(log.contains("OK"), "{log}");
}

#[test]
fn sigterm_lets_in_flight_requests_finish_then_exits() {
    let mut server = Server::start(&[]);
    let body = chat("Tell me a story about a lighthouse keeper.", 11, 24);
    std::thread::scope(|s| {
        let in_flight = s.spawn(|| server.post("/v1/chat/completions", &body));
        // Wait until the request is queued or running.
        let started = Instant::now();
        while !server.get("/metrics").1.contains("assay_queue_depth{model=\"smollm2\"} 1") {
            assert!(started.elapsed() < Duration::from_secs(30), "the request never arrived");
            std::thread::sleep(Duration::from_millis(20));
        }
        server.sigterm();
        let (status, response) = in_flight.join().unwrap();
        assert_eq!(status, 200, "the in-flight request finishes: {response}");
    });
    let exit = server.exit_status(Duration::from_secs(30));
    assert!(exit.success(), "{exit:?}");
}

#[test]
fn a_model_that_cannot_be_loaded_ends_the_server_with_an_error() {
    let out = Command::new(common::assay_bin()).args(["serve", "--model", "no-such-model", "--port", "0"]).current_dir(common::repo_root()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("loading models failed") && stderr.contains("no-such-model"), "{stderr}");
}
