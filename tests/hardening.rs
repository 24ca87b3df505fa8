//! The hostile-client findings of issue 17 (`../shared/reviews/`), one test each, named after
//! the finding, against a real `assay serve` (and the CLI) with SmolLM2. Each reproduces the
//! attack and checks the answer: a clear 4xx naming the limit, memory that stays bounded, a
//! server that keeps answering, nothing sent where it must not go.

mod common;

use common::server::Server;
use common::{assay_on, ifeval_items, IFEVAL_CHECKS};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn chat(prompt: &str, max_tokens: usize) -> Value {
    json!({"model": "smollm2", "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens, "temperature": 0})
}

fn checks() -> Value {
    serde_json::from_str(IFEVAL_CHECKS).unwrap()
}

/// A 4xx whose message contains `names`.
fn assert_refused(response: (u16, Value), status: u16, names: &str) {
    let (got, body) = response;
    assert_eq!(got, status, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_else(|| panic!("no error message: {body}"));
    assert!(message.contains(names), "the message should name {names:?}: {message}");
}

/// The server still answers, and its engine still generates.
fn assert_alive(server: &Server) {
    assert_eq!(server.get("/health").0, 200);
    let (status, body) = server.post("/v1/chat/completions", &chat("Say hi.", 3));
    assert_eq!(status, 200, "{body}");
    let (status, ready) = server.get_json("/ready");
    assert_eq!(status, 200, "{ready}");
}

/// Kibibytes of `field` (VmRSS, VmHWM) of process `pid`.
fn memory_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix(field)?.trim().strip_suffix("kB")?.trim().parse().ok()).unwrap_or(0)
}

/// A project `p` with three IFEval items and the two generic checks, its configuration `config`.
fn project(server: &Server, config: Value) {
    let created = server.post("/v1/projects", &json!({"name": "p", "generation_prompt": "Follow the instructions.", "config": config}));
    assert_eq!(created.0, 201, "{}", created.1);
    assert_eq!(server.post("/v1/projects/p/datasets", &json!({"name": "d", "items": ifeval_items(3)})).0, 201);
    assert_eq!(server.post("/v1/projects/p/sets", &json!({"checks": checks()})).0, 201);
}

/// Polls a run of project `p` until it ends; returns it.
fn ended(server: &Server, path: &str, within: Duration) -> Value {
    let started = Instant::now();
    loop {
        let (status, body) = server.get_json(path);
        assert_eq!(status, 200, "{body}");
        if body["run"]["status"] == "done" || body["run"]["status"] == "failed" {
            return body["run"].clone();
        }
        assert!(started.elapsed() < within, "{path} did not end within {within:?}: {body}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// An HTTP server on a free port that records every request (head and body) and answers each
/// with the next of `answers` (the last one repeated): what a project's backend would reach.
struct Upstream {
    url: String,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Upstream {
    fn start(answers: Vec<String>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        std::thread::spawn(move || {
            for (n, stream) in listener.incoming().enumerate() {
                let Ok(mut stream) = stream else { continue };
                stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                seen.lock().unwrap().push(read_request(&mut stream));
                let _ = stream.write_all(answers[n.min(answers.len() - 1)].as_bytes());
            }
        });
        Self { url, requests }
    }

    fn received(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// A request's head and its body (by Content-Length).
fn read_request(stream: &mut TcpStream) -> String {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        data.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&data);
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end].lines().find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0))).unwrap_or(0);
            if data.len() >= end + 4 + length {
                break;
            }
        }
    }
    String::from_utf8_lossy(&data).into_owned()
}

fn http_answer(status: &str, headers: &str, body: &str) -> String {
    format!("HTTP/1.1 {status}\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
}

#[test]
fn finding_1_unbounded_samples_are_refused_before_anything_is_allocated() {
    let server = Server::start(&[]);
    let huge = 1_000_000_000_000u64;
    let items = json!([{"id": "1", "input": "Say hi.", "output": "Hi."}]);
    let judge = json!({"checks": checks(), "items": items, "samples": huge, "temperature": 0.7, "mode": "rationale"});
    assert_refused(server.post("/v1/judge", &judge), 400, "--limit-samples");
    let reward = json!({"checks": checks(), "pairs": [{"input": "Say hi.", "output": "Hi."}], "samples": huge, "temperature": 0.7, "mode": "rationale"});
    assert_refused(server.post("/v1/reward", &reward), 400, "--limit-samples");
    project(&server, json!({}));
    assert_refused(server.post("/v1/projects/p/runs", &json!({"samples": huge, "temperature": 0.7, "mode": "rationale"})), 400, "--limit-samples");
    let (_, shown) = server.get_json("/v1/projects/p");
    assert_eq!(shown["runs"], json!([]), "a refused run is not stored, so it cannot be resumed: {shown}");
    assert_alive(&server);
}

#[test]
fn finding_2_samples_of_2_pow_62_cannot_stop_the_engine() {
    let server = Server::start(&[]);
    let items = json!([{"id": "1", "input": "Say hi.", "output": "Hi."}]);
    let judge = json!({"checks": checks(), "items": items, "samples": 1u64 << 62, "temperature": 0.7, "mode": "rationale"});
    assert_refused(server.post("/v1/judge", &judge), 400, "--limit-samples");
    assert_alive(&server);
    // The engine checks by itself too: a caller without the server's limits cannot crash it.
    let engine = common::smollm2_engine(16);
    let options = assay_core::JudgeOptions { samples: 1 << 62, temperature: 0.7, mode: assay_core::JudgeMode::Rationale, ..Default::default() };
    let item = assay_core::JudgeItem { id: "1".into(), input: "Say hi.".into(), output: "Hi.".into(), context: None };
    let set = assay_core::EvaluatorSet::from_json(IFEVAL_CHECKS).unwrap();
    let err = engine.judge_blocking(&[item], set.checks, &Default::default(), options, &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("samples"), "{err}");
    let lm = common::smollm2_model();
    let again = engine.generate_blocking(lm.tokenizer.encode_prompt("Hello").unwrap(), assay_core::SamplingParams::greedy(2), &mut |_| true).unwrap();
    assert!(again.is_some(), "the engine goes on");
}

#[test]
fn finding_3_memory_per_request_is_bounded_by_limits_and_the_kv_pool() {
    let server = Server::start(&["--kv-cache-mb", "256", "--request-timeout-s", "15", "--limit-streams", "2"]);
    let pid = server.child.id();
    let mut huge = chat("Tell me a story.", 0);
    huge["max_tokens"] = json!(1_000_000_000u64);
    huge["n"] = json!(16);
    assert_refused(server.post("/v1/chat/completions", &huge), 400, "--limit-max-tokens");
    assert_refused(server.post("/v1/optimise", &json!({"project": "p", "population": 64, "max_tokens": 1_000_000_000u64})), 400, "--limit-max-tokens");
    // Within the limits, 32 sequences of up to 4096 tokens share a 256 MiB pool (about 5,600
    // tokens): they wait for blocks (or time out), and the process stays small.
    let mut long = chat("Count from 1 to 5000, separated by commas.", 4096);
    long["n"] = json!(16);
    long["temperature"] = json!(1.0);
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2).map(|_| s.spawn(|| server.post("/v1/chat/completions", &long).0)).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(statuses.iter().all(|s| [200, 504].contains(s)), "{statuses:?}");
    let peak = memory_kib(pid, "VmHWM:");
    assert!(peak < 1536 * 1024, "peak resident memory {} MiB", peak / 1024);
    // Open streams are bounded: the third of --limit-streams 2 is refused while two run.
    let mut stream = chat("Count from 1 to 5000, separated by commas.", 2000);
    stream["stream"] = json!(true);
    let open: Vec<ureq::Response> = (0..2).map(|_| ureq::post(&format!("{}/v1/chat/completions", server.base)).send_json(&stream).unwrap()).collect();
    let (status, body, retry) = server.call(ureq::post(&format!("{}/v1/chat/completions", server.base)), Some(&stream.to_string()));
    assert_eq!((status, retry.as_deref()), (429, Some("1")), "{body}");
    assert!(body.contains("--limit-streams"), "{body}");
    drop(open);
    assert_alive(&server);
}

#[test]
fn finding_4_configurations_set_over_http_call_out_only_where_allowed_and_leak_nothing() {
    // Without --allow-backend no server may be named, whatever the key variable.
    let upstream = Upstream::start(vec![http_answer("200 OK", "", "{}")]);
    let server = Server::start(&[]);
    let config = |upstream: &Upstream, key: &str| json!({"roles": {"judge": {"model": "m", "base_url": format!("{}/v1", upstream.url), "api_key_env": key}}});
    let (status, body) = server.post("/v1/projects", &json!({"name": "p", "generation_prompt": "x", "config": config(&upstream, "HOME")}));
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("--allow-backend"), "{body}");
    assert!(upstream.received().is_empty());
    drop(server);

    // Allowed: the named variable only, no redirect followed, no upstream body stored.
    let elsewhere = Upstream::start(vec![http_answer("200 OK", "", "{}")]);
    let redirect = http_answer("302 Found", &format!("Location: {}/steal\r\n", elsewhere.url), "");
    let upstream = Upstream::start(vec![redirect, http_answer("500 Internal Server Error", "", r#"{"error": {"message": "UPSTREAM-SECRET-BODY"}}"#)]);
    let allow = format!("{}/v1=UPSTREAM_KEY", upstream.url);
    let server = Server::start_with(&["--allow-backend", &allow], &[("UPSTREAM_KEY", "s3cret")]);
    let (status, body) = server.post("/v1/projects", &json!({"name": "q", "generation_prompt": "x", "config": config(&upstream, "HOME")}));
    assert_eq!(status, 400, "only UPSTREAM_KEY may be sent there: {body}");
    project(&server, config(&upstream, "UPSTREAM_KEY"));
    let (status, started) = server.post("/v1/projects/p/runs", &json!({}));
    assert_eq!(status, 202, "{started}");
    let run = ended(&server, &format!("/v1/projects/p/runs/{}", started["run"]["id"]), Duration::from_secs(60));
    assert_eq!(run["status"], "failed", "{run}");
    assert!(run["error"].as_str().unwrap().contains("HTTP 302"), "{run}");
    let sent = upstream.received();
    assert!(sent[0].contains("Bearer s3cret"), "{}", sent[0]);
    assert!(elsewhere.received().is_empty(), "a redirect was followed");
    let (_, again) = server.post("/v1/projects/p/runs", &json!({}));
    let run = ended(&server, &format!("/v1/projects/p/runs/{}", again["run"]["id"]), Duration::from_secs(60));
    let error = run["error"].as_str().unwrap();
    assert!(error.contains("HTTP 500") && !error.contains("UPSTREAM-SECRET-BODY"), "{run}");
}

#[test]
fn finding_5_judge_requests_stop_at_the_deadline_and_when_the_client_leaves() {
    let long_judge = json!({"checks": checks(), "items": ifeval_items(8), "mode": "rationale", "samples": 16, "temperature": 0.7, "rationale_tokens": 256});
    let server = Server::start(&["--request-timeout-s", "3"]);
    let started = Instant::now();
    let (status, body) = server.post("/v1/judge", &long_judge);
    assert_eq!(status, 504, "{body}");
    assert!(started.elapsed() < Duration::from_secs(12), "the deadline was checked late: {:?}", started.elapsed());
    drop(server);

    let server = Server::start(&[]);
    let impatient = ureq::AgentBuilder::new().timeout_read(Duration::from_millis(500)).build();
    assert!(impatient.post(&format!("{}/v1/judge", server.base)).send_json(&long_judge).is_err(), "the client gives up");
    // The engine drops the abandoned request within a step or two; a short chat then runs.
    let started = Instant::now();
    let (status, body) = server.post("/v1/chat/completions", &chat("Say hi.", 5));
    assert_eq!(status, 200, "{body}");
    assert!(started.elapsed() < Duration::from_secs(10), "the abandoned judge kept the model busy for {:?}", started.elapsed());
    let (_, metrics) = server.get("/metrics");
    let judged: f64 = metrics.lines().find(|l| l.starts_with("assay_engine_judge_checks_total")).and_then(|l| l.rsplit(' ').next()?.parse().ok()).unwrap_or(0.0);
    assert!(judged < 8.0 * 2.0 * 16.0, "the abandoned judge ran to the end: {judged} checks");
}

#[test]
fn finding_6_slow_or_idle_clients_cannot_hold_the_server() {
    let server = Server::start(&["--header-timeout-s", "2", "--body-timeout-s", "2", "--max-connections", "16"]);
    let addr = server.base.trim_start_matches("http://").to_string();
    let idle: Vec<TcpStream> = (0..40).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    let mut partial = TcpStream::connect(&addr).unwrap();
    partial.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").unwrap();
    // Idle and half-sent connections are closed after the header timeout; /health answers.
    let started = Instant::now();
    while server.get("/health").0 != 200 {
        assert!(started.elapsed() < Duration::from_secs(8), "/health unreachable behind idle connections");
        std::thread::sleep(Duration::from_millis(200));
    }
    partial.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
    let mut buf = [0u8; 64];
    assert!(matches!(partial.read(&mut buf), Ok(0) | Err(_)), "a half-sent request is closed");
    drop(idle);
    // A body that never arrives is answered 408 after the body timeout.
    let mut slow = TcpStream::connect(&addr).unwrap();
    slow.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"model\":").unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
    let mut answer = String::new();
    let _ = slow.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let (_, metrics) = server.get("/metrics");
    assert!(metrics.lines().any(|l| l.starts_with("assay_refused_connections_total ") && !l.ends_with(" 0")), "connections past the cap are counted");
}

#[test]
fn finding_7_long_prompts_are_refused_before_tokenizing_and_tokenized_off_the_request_threads() {
    let server = Server::start(&["--max-body-bytes", "16777216"]);
    let started = Instant::now();
    let (status, body) = server.post("/v1/chat/completions", &chat(&"word ".repeat(8 << 20 >> 3), 4));
    assert_eq!(status, 413, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("--limit-prompt-bytes"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(5), "refused only after {:?}", started.elapsed());
    // Under the limit, but more bytes than the context can hold whatever they say: refused
    // before tokenizing.
    let started = Instant::now();
    assert_refused(server.post("/v1/chat/completions", &chat(&"word ".repeat(600_000), 4)), 400, "can fit this model's context");
    assert!(started.elapsed() < Duration::from_secs(2), "refused only after {:?}", started.elapsed());
    // Prompts that could fit by their bytes are tokenized on blocking threads, then refused
    // over the context: /health answers throughout.
    let big = chat(&"word ".repeat(240_000), 4);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..6).map(|_| s.spawn(|| server.post("/v1/chat/completions", &big).0)).collect();
        let quick = ureq::AgentBuilder::new().timeout(Duration::from_secs(2)).build();
        for _ in 0..10 {
            assert!(quick.get(&format!("{}/health", server.base)).call().is_ok(), "/health stalled behind tokenizing");
            std::thread::sleep(Duration::from_millis(100));
        }
        for h in handles {
            assert_eq!(h.join().unwrap(), 400, "over the context");
        }
    });
}

#[test]
fn finding_8_optimise_never_stores_failed_generations_as_gold() {
    let upstream = Upstream::start(vec![http_answer("500 Internal Server Error", "", "{}")]);
    let server = Server::start(&["--allow-backend", &format!("{}/v1", upstream.url)]);
    project(&server, json!({"roles": {"generator": {"model": "m", "base_url": format!("{}/v1", upstream.url)}}}));
    let (status, started) = server.post("/v1/optimise", &json!({"project": "p", "items": 1, "population": 2, "budget": 4, "generations": 1, "max_tokens": 8}));
    assert_eq!(status, 202, "{started}");
    let run = ended(&server, &format!("/v1/optimise/{}", started["run"]["id"]), Duration::from_secs(60));
    assert_eq!(run["status"], "failed", "{run}");
    assert!(run["error"].as_str().unwrap().contains("every generation failed"), "{run}");
    let (_, gold) = server.get_json("/v1/projects/p/gold");
    assert_eq!(gold["gold"], json!([]), "{gold}");
    assert!(!upstream.received().is_empty(), "the generator was asked");
}

#[test]
fn finding_9_names_are_checked_and_configurations_set_over_http_open_no_files() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("assay.db");
    let server = Server::start(&["--db", db.to_str().unwrap()]);
    for name in ["../../..", "a\u{0}b", &"x".repeat(1 << 20), "", "-leading-dash", "space name"] {
        let (status, body) = server.post("/v1/projects", &json!({"name": name, "generation_prompt": "x"}));
        assert_eq!(status, 400, "{:.80}: {body}", name);
    }
    assert_eq!(server.post("/v1/projects", &json!({"name": "p", "generation_prompt": "x"})).0, 201);
    for model in ["/etc/passwd", "../models/local/x.gguf", "smollm2.gguf"] {
        let (status, body) = server.put("/v1/projects/p/config", &json!({"roles": {"judge": {"model": model}}}));
        assert_eq!(status, 400, "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("is a path") && !message.contains("magic"), "{message}");
    }
    let prompt = dir.path().join("prompt.txt");
    std::fs::write(&prompt, "Answer.").unwrap();
    let (ok, _, stderr) = assay_on(&db, &["project", "create", "../x", "--prompt-file", prompt.to_str().unwrap()]);
    assert!(!ok && stderr.contains("is not allowed"), "{stderr}");
}

/// A copy of SmolLM2's GGUF with `key` set to `value`.
fn smollm2_with(dir: &std::path::Path, key: &str, value: u32) -> std::path::PathBuf {
    use candle_core::quantized::gguf_file;
    let source = common::smollm2_path();
    let mut reader = std::fs::File::open(&source).unwrap();
    let content = gguf_file::Content::read(&mut reader).unwrap();
    let mut metadata = content.metadata.clone();
    metadata.insert(key.to_string(), gguf_file::Value::U32(value));
    let tensors: Vec<(String, candle_core::quantized::QTensor)> =
        content.tensor_infos.keys().map(|name| (name.clone(), content.tensor(&mut reader, name, &candle_core::Device::Cpu).unwrap())).collect();
    let path = dir.join(format!("{}.gguf", key.replace('.', "_")));
    let mut out = std::fs::File::create(&path).unwrap();
    let metadata: Vec<(&str, &gguf_file::Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensors: Vec<(&str, &candle_core::quantized::QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(&mut out, &metadata, &tensors).unwrap();
    path
}

#[test]
fn finding_10_malformed_model_headers_fail_the_load_and_the_server_exits() {
    let dir = tempfile::tempdir().unwrap();
    for (key, value, says) in [("llama.attention.head_count", 0, "heads"), ("llama.context_length", u32::MAX, "context length")] {
        let path = smollm2_with(dir.path(), key, value);
        let started = Instant::now();
        let err = assay_engine::LanguageModel::load("bad", &assay_engine::ModelFiles::Gguf(path.clone()), &candle_core::Device::Cpu).err().expect("must not load").to_string();
        assert!(err.contains(says) && err.contains(path.file_name().unwrap().to_str().unwrap()), "{err}");
        assert!(started.elapsed() < Duration::from_secs(30));
        let mut serve = Command::new(common::assay_bin()).args(["serve", "--port", "0", "--db"]).arg(dir.path().join("s.db")).arg("--model").arg(&path).stderr(Stdio::piped()).spawn().unwrap();
        let waited = Instant::now();
        let status = loop {
            if let Some(status) = serve.try_wait().unwrap() {
                break status;
            }
            assert!(waited.elapsed() < Duration::from_secs(60), "serve kept running with a model that cannot load");
            std::thread::sleep(Duration::from_millis(100));
        };
        let mut stderr = String::new();
        serve.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
        assert!(!status.success() && stderr.contains("loading models failed") && !stderr.contains("panicked"), "{stderr}");
    }
}

/// Peak resident memory of `assay judge` on `n` one-check items, in KiB.
fn judge_peak_kib(dir: &std::path::Path, n: usize) -> u64 {
    let items: String = (0..n).map(|i| format!("{}\n", json!({"id": i.to_string(), "input": format!("Name a colour, number {i}."), "output": format!("Colour {i} is blue.")}))).collect();
    let (items_path, checks_path) = (dir.join(format!("items{n}.jsonl")), dir.join("checks.json"));
    std::fs::write(&items_path, items).unwrap();
    std::fs::write(&checks_path, r#"{"checks": [{"id": "colour", "question": "Does the answer name a colour?"}]}"#).unwrap();
    let mut judge = Command::new(common::assay_bin())
        .args(["judge", "--kv-cache-mb", "64", "--checks"])
        .arg(&checks_path)
        .arg("--items")
        .arg(&items_path)
        .current_dir(common::repo_root())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut peak = 0;
    while judge.try_wait().unwrap().is_none() {
        peak = peak.max(memory_kib(judge.id(), "VmHWM:"));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(judge.wait().unwrap().success());
    peak
}

#[test]
fn finding_11_judge_memory_does_not_grow_with_the_items() {
    let dir = tempfile::tempdir().unwrap();
    let (few, many) = (judge_peak_kib(dir.path(), 50), judge_peak_kib(dir.path(), 400));
    // The KV pool (64 MiB) bounds what the items can hold; 8x the items adds little else.
    assert!(many < few + 160 * 1024, "peak {} MiB for 50 items, {} MiB for 400", few / 1024, many / 1024);
}

#[test]
fn finding_12_empty_api_keys_are_refused_and_key_files_work() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.db");
    let serve = |args: &[&str], env: &[(&str, &str)]| {
        let out = Command::new(common::assay_bin()).args(["serve", "--port", "0", "--db"]).arg(&db).args(args).envs(env.iter().copied()).output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    for (args, env) in [(&["--api-key", ""][..], &[][..]), (&[][..], &[("ASSAY_API_KEY", "")][..]), (&["--api-key", "  "][..], &[][..])] {
        let (ok, stderr) = serve(args, env);
        assert!(!ok && stderr.contains("the API key is empty"), "{args:?} {env:?}: {stderr}");
    }
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, "from-a-file\n").unwrap();
    let server = Server::start(&["--api-key-file", key_file.to_str().unwrap()]);
    let chat_url = format!("{}/v1/chat/completions", server.base);
    let body = chat("Hi", 2).to_string();
    assert_eq!(server.call(ureq::post(&chat_url), Some(&body)).0, 401);
    assert_eq!(server.call(ureq::post(&chat_url).set("Authorization", "Bearer from-a-file"), Some(&body)).0, 200);
    // A key on the command line works, with a warning that `ps` shows it.
    let mut visible = Command::new(common::assay_bin()).args(["serve", "--port", "0", "--db"]).arg(&db).args(["--api-key", "k"]).stderr(Stdio::piped()).spawn().unwrap();
    let mut first = [0u8; 512];
    let n = visible.stderr.as_mut().unwrap().read(&mut first).unwrap();
    let _ = visible.kill();
    let _ = visible.wait();
    assert!(String::from_utf8_lossy(&first[..n]).contains("process list"), "{}", String::from_utf8_lossy(&first[..n]));
}

#[test]
fn finding_13_the_bearer_scheme_is_case_insensitive() {
    let server = Server::start(&["--api-key", "sekret"]);
    let url = format!("{}/v1/models", server.base);
    for value in ["Bearer sekret", "bearer sekret", "BEARER sekret", "Bearer  sekret "] {
        assert_eq!(server.call(ureq::get(&url).set("Authorization", value), None).0, 200, "{value:?}");
    }
    for value in ["Basic sekret", "Bearer", "sekret", "Bearer sekre"] {
        assert_eq!(server.call(ureq::get(&url).set("Authorization", value), None).0, 401, "{value:?}");
    }
}

#[test]
fn finding_14_empty_or_equal_labels_are_bad_requests() {
    let server = Server::start(&[]);
    let items = json!([{"id": "1", "input": "Say hi.", "output": "Hi."}]);
    for (pass, fail) in [("", " FAIL"), (" PASS", ""), (" YES", " YES")] {
        let request = json!({"checks": checks(), "items": items, "pass_label": pass, "fail_label": fail});
        assert_refused(server.post("/v1/judge", &request), 400, "labels");
    }
}

#[test]
fn finding_15_ready_reports_models_and_store_while_health_reports_liveness() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("assay.db");
    let server = Server::start(&["--db", db.to_str().unwrap()]);
    assert_eq!(server.get_json("/ready").0, 200);
    let moved = dir.path().join("moved.db");
    std::fs::rename(&db, &moved).unwrap();
    let (status, ready) = server.get_json("/ready");
    assert_eq!(status, 503, "missing: {ready}");
    assert!(ready["problems"][0].as_str().unwrap().contains("does not exist"), "{ready}");
    assert_eq!(server.get("/health").0, 200, "liveness is not readiness");
    std::fs::write(&db, vec![0x5a; 8192]).unwrap();
    let (status, ready) = server.get_json("/ready");
    assert_eq!(status, 503, "corrupt: {ready}");
    std::fs::rename(&moved, &db).unwrap();
    assert_eq!(server.get_json("/ready").0, 200);
}

#[test]
fn finding_16_the_cli_and_the_server_never_judge_one_run_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("assay.db");
    let server = Server::start(&["--db", db.to_str().unwrap()]);
    assert_eq!(server.post("/v1/projects", &json!({"name": "p", "generation_prompt": "x"})).0, 201);
    // Enough items that the server is still judging when the CLI (a model load away) asks.
    let items = 32;
    assert_eq!(server.post("/v1/projects/p/datasets", &json!({"name": "d", "items": ifeval_items(items)})).0, 201);
    assert_eq!(server.post("/v1/projects/p/sets", &json!({"checks": checks()})).0, 201);
    let (status, started) = server.post("/v1/projects/p/runs", &json!({"mode": "rationale", "rationale_tokens": 24}));
    assert_eq!(status, 202, "{started}");
    // The server claims the run in the background after answering: wait until it runs.
    let path = format!("/v1/projects/p/runs/{}", started["run"]["id"]);
    let t0 = Instant::now();
    while server.get_json(&path).1["run"]["status"] != "running" {
        assert!(t0.elapsed() < Duration::from_secs(60), "the server never started the run");
        std::thread::sleep(Duration::from_millis(50));
    }
    // While the server judges it, the CLI's same run is busy, not judged twice.
    let (ok, _, stderr) = assay_on(&db, &["run", "--project", "p", "--mode", "rationale", "--rationale-tokens", "24"]);
    let run = ended(&server, &format!("/v1/projects/p/runs/{}", started["run"]["id"]), Duration::from_secs(300));
    assert_eq!(run["status"], "done", "{run}");
    assert!(!ok && stderr.contains("is being worked on by another process"), "{stderr}");
    // Once it is done, the CLI finds it done and succeeds.
    let (ok, _, stderr) = assay_on(&db, &["run", "--project", "p", "--mode", "rationale", "--rationale-tokens", "24"]);
    assert!(ok, "{stderr}");
    let (_, judgments) = server.get_json(&format!("/v1/projects/p/runs/{}/judgments", started["run"]["id"]));
    assert_eq!(judgments["judgments"].as_array().unwrap().len(), items * checks()["checks"].as_array().unwrap().len());
}

#[test]
fn finding_17_validation_gaps_are_closed() {
    let server = Server::start(&["--embed-model", "minilm"]);
    let items = json!([{"id": "1", "input": "Say hi.", "output": "Hi."}]);
    assert_refused(server.post("/v1/judge", &json!({"checks": [{"id": "", "question": "Is it kind?"}], "items": items})), 400, "empty id");
    assert_refused(server.post("/v1/judge", &json!({"checks": checks(), "items": items, "mode": "rationale", "rationale_tokens": u64::MAX})), 400, "rationale_tokens");
    assert_eq!(server.post("/v1/projects", &json!({"name": "p", "generation_prompt": "x"})).0, 201);
    assert_refused(server.put("/v1/projects/p/config", &json!([])), 400, "JSON object");
    let (status, body) = server.post("/v1/embeddings", &json!({"model": "minilm", "input": ["short", "word ".repeat(600)]}));
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("window of 256 tokens"), "{body}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bom.jsonl");
    std::fs::write(&file, "\u{feff}{\"id\": \"1\", \"input\": \"q\", \"output\": \"a\"}\n").unwrap();
    let db = dir.path().join("a.db");
    let prompt = dir.path().join("prompt.txt");
    std::fs::write(&prompt, "Answer.").unwrap();
    assert!(assay_on(&db, &["project", "create", "p", "--prompt-file", prompt.to_str().unwrap()]).0);
    let (ok, _, stderr) = assay_on(&db, &["data", "import", "--project", "p", "--file", file.to_str().unwrap()]);
    assert!(ok, "a byte-order mark is skipped: {stderr}");
}

#[test]
fn finding_18_openapi_publishes_the_limits_and_the_ready_route() {
    let server = Server::start(&["--limit-samples", "7", "--limit-n", "3", "--limit-max-tokens", "99"]);
    let (status, doc) = server.get_json("/openapi.json");
    assert_eq!(status, 200);
    let text = doc.to_string();
    assert!(doc["paths"]["/ready"].is_object(), "{text:.200}");
    let schemas = &doc["components"]["schemas"];
    let find = |schema: &str, field: &str| schemas[schema]["properties"][field]["maximum"].clone();
    assert_eq!(find("JudgeRequest", "samples"), json!(7), "{}", schemas["JudgeRequest"]);
    assert_eq!(find("ChatCompletionRequest", "n"), json!(3), "{}", schemas["ChatCompletionRequest"]);
    assert_eq!(find("ChatCompletionRequest", "max_tokens"), json!(99), "{}", schemas["ChatCompletionRequest"]);
}

#[test]
fn finding_19_memory_is_returned_to_the_system_after_a_burst() {
    // The KV pool is a fixed budget, reserved by the OS as blocks are first used and kept for
    // the next burst: memory beyond it (activations, request buffers) must go back.
    const KV_MIB: u64 = 256;
    let server = Server::start(&["--kv-cache-mb", &KV_MIB.to_string()]);
    let pid = server.child.id();
    assert_eq!(server.post("/v1/chat/completions", &chat("Warm up.", 4)).0, 200);
    let baseline = memory_kib(pid, "VmRSS:") / 1024;
    let judge = json!({"checks": checks(), "items": ifeval_items(8), "mode": "rationale", "rationale_tokens": 32});
    std::thread::scope(|s| {
        for i in 0..6 {
            let (server, judge) = (&server, &judge);
            s.spawn(move || {
                for round in 0..2 {
                    let (status, body) =
                        if (i + round) % 2 == 0 { server.post("/v1/judge", judge) } else { server.post("/v1/chat/completions", &chat(&format!("Write a long story number {i}."), 96)) };
                    assert_eq!(status, 200, "{body}");
                }
                // A 1.2 MB prompt could fit the context by its bytes, so it is tokenized (off the
                // request threads), then refused: 600,000 tokens. Its tokens are freed memory the
                // allocator would keep.
                let long = json!({"model": "smollm2", "prompt": format!("{i} ").repeat(600_000), "max_tokens": 1});
                assert_refused(server.post("/v1/completions", &long), 400, "context");
            });
        }
    });
    let peak = memory_kib(pid, "VmHWM:") / 1024;
    // The engine and the server hand freed memory back once idle (within a second).
    std::thread::sleep(Duration::from_secs(3));
    let after = memory_kib(pid, "VmRSS:") / 1024;
    eprintln!("resident memory: baseline {baseline} MiB, peak {peak} MiB, after {after} MiB (KV pool {KV_MIB} MiB)");
    assert!(peak > baseline + KV_MIB + 256, "the burst should take well over the KV pool: baseline {baseline} MiB, peak {peak} MiB");
    assert!(after <= baseline + KV_MIB + 128, "baseline {baseline} MiB, peak {peak} MiB, after {after} MiB: more than the KV pool stayed");
}
