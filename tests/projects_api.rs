//! The evaluation loop over HTTP (`/v1/projects/...` of `assay serve`) end to end with the real
//! SmolLM2 and MiniLM: a project, a dataset of IFEval items with GPT-4's responses, an
//! evaluator set, a judge run polled to the end, its judgments, the report, a question answered
//! with a label, labels, refinement, discovery in the background; bad requests get 400, 404 or
//! 409; SIGTERM stops a background judge run as failed and a restarted server resumes it.

mod common;

use common::server::Server;
use common::{ifeval_items, IFEVAL_CHECKS};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

/// A short discovery: one generator of 16 tokens, annotations and checks of 32.
fn small_config() -> Value {
    json!({"generators": [{"name": "careful", "temperature": 0.2, "variant": "as_written", "max_tokens": 16}], "answer_tokens": 32})
}

fn serve(db: &Path) -> Server {
    Server::start(&["--embed-model", "minilm", "--db", db.to_str().unwrap()])
}

/// Polls the run until it is done or failed; returns it.
fn finished_run(server: &Server, id: &Value, within: Duration) -> Value {
    let started = Instant::now();
    loop {
        let (status, body) = server.get_json(&format!("/v1/projects/ifeval/runs/{id}"));
        assert_eq!(status, 200, "{body}");
        if body["run"]["status"] == "done" || body["run"]["status"] == "failed" {
            return body["run"].clone();
        }
        assert!(started.elapsed() < within, "run {id} did not finish within {within:?}: {body}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn assert_error(response: (u16, Value), status: u16, what: &str) {
    assert_eq!(response.0, status, "{what}: {}", response.1);
    assert!(response.1["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {}", response.1);
}

#[test]
fn the_evaluation_loop_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("assay.db");
    let server = serve(&db);
    let checks: Value = serde_json::from_str(IFEVAL_CHECKS).unwrap();

    let project = json!({"name": "ifeval", "generation_prompt": "Follow every instruction in the user's request exactly.", "task": "instruction following", "config": small_config()});
    let (status, created) = server.post("/v1/projects", &project);
    assert_eq!(status, 201, "{created}");
    assert_error(server.post("/v1/projects", &project), 409, "the same name again");
    let (status, dataset) = server.post("/v1/projects/ifeval/datasets", &json!({"name": "gpt4", "items": ifeval_items(3)}));
    assert_eq!((status, &dataset["item_count"]), (201, &json!(3)), "{dataset}");
    let (status, v1) = server.post("/v1/projects/ifeval/sets", &json!({"checks": checks, "reason": "two generic checks"}));
    assert_eq!((status, &v1["number"]), (201, &json!(1)), "{v1}");
    assert_error(server.post("/v1/projects/ifeval/sets", &json!({"checks": checks})), 409, "identical checks");
    let (status, shown) = server.get_json("/v1/projects/ifeval");
    assert_eq!(status, 200, "{shown}");
    assert_eq!((&shown["config"]["generators"][0]["max_tokens"], &shown["config"]["roles"]["judge"]["model"]), (&json!(16), &json!("smollm2")), "defaults filled in: {shown}");
    assert_eq!((&shown["sets"][0]["checks"], &shown["datasets"][0]["name"]), (&json!(2), &json!("gpt4")), "{shown}");

    // A judge run on the latest set and dataset, in the background.
    let (status, started) = server.post("/v1/projects/ifeval/runs", &json!({}));
    assert_eq!((status, &started["resumed"]), (202, &json!(false)), "{started}");
    let run_id = started["run"]["id"].clone();
    let run = finished_run(&server, &run_id, Duration::from_secs(300));
    assert_eq!((&run["status"], &run["progress_done"], &run["progress_total"]), (&json!("done"), &json!(6), &json!(6)), "{run}");
    let (status, judgments) = server.get_json(&format!("/v1/projects/ifeval/runs/{run_id}/judgments"));
    assert_eq!(status, 200);
    assert_eq!(judgments["judgments"].as_array().unwrap().len(), 6, "{judgments}");
    let (status, report) = server.get_json("/v1/projects/ifeval/report?set=1");
    assert_eq!((status, &report["run"], &report["items"]), (200, &run_id, &json!(3)), "{report}");
    assert_eq!(report["checks"].as_array().unwrap().len(), 2, "{report}");

    // The expert: a question answered with a label, then labels, then refinement.
    let (status, questions) = server.get_json("/v1/projects/ifeval/questions");
    assert_eq!(status, 200, "{questions}");
    let question =
        questions["questions"].as_array().unwrap().iter().find(|q| q["item_key"].is_string() && q["check"].is_string()).unwrap_or_else(|| panic!("a question about an item: {questions}")).clone();
    let answer_path = format!("/v1/projects/ifeval/questions/{}/answer", question["id"]);
    let ruling = json!({"ruling": "A response that answers the request counts, whatever its length.", "label": "PASS"});
    let (status, answered) = server.post(&answer_path, &ruling);
    assert_eq!((status, &answered["status"]), (200, &json!("answered")), "{answered}");
    assert_error(server.post(&answer_path, &ruling), 409, "a second ruling");
    let (_, all) = server.get_json("/v1/projects/ifeval/questions?all=true");
    assert!(all["questions"].as_array().unwrap().iter().any(|q| q["id"] == question["id"] && q["ruling"]["text"] == ruling["ruling"]), "{all}");
    let labels = json!({"labels": [{"item": "ifeval-0", "check": "on_topic", "verdict": "PASS"}, {"item": "ifeval-1", "score": 2}]});
    let (status, added) = server.post("/v1/projects/ifeval/labels", &labels);
    assert_eq!((status, &added["check_labels"], &added["score_labels"]), (200, &json!(1), &json!(1)), "{added}");
    assert_error(server.post("/v1/projects/ifeval/refine", &json!({"run": 999_999})), 404, "a run that is not the set's");
    let (status, refined) = server.post("/v1/projects/ifeval/refine", &json!({}));
    assert_eq!((status, &refined["from"]), (200, &json!(1)), "{refined}");
    let (status, stored) = server.get_json("/v1/projects/ifeval/sets/1");
    let ids: Vec<&Value> = stored["set"]["checks"].as_array().unwrap().iter().map(|c| &c["id"]).collect();
    assert_eq!((status, ids), (200, vec![&json!("follows_format"), &json!("on_topic")]), "{stored}");
    let (status, diff) = server.get_json("/v1/projects/ifeval/sets/1/diff/1");
    assert_eq!((status, &diff["added"]), (200, &json!([])), "{diff}");

    // Bad requests.
    assert_error(server.get_json("/v1/projects/nope"), 404, "unknown project");
    assert_error(server.post("/v1/projects/nope/runs", &json!({})), 404, "a run of an unknown project");
    assert_error(server.get_json("/v1/projects/ifeval/sets/9"), 404, "unknown set version");
    assert_error(server.get_json("/v1/projects/ifeval/sets/9/diff/1"), 404, "diff with an unknown version");
    assert_error(server.get_json("/v1/projects/ifeval/runs/999"), 404, "unknown run");
    assert_error(server.get_json("/v1/projects/ifeval/sets/latest"), 400, "a version that is not a number");
    assert_error(server.post("/v1/projects/ifeval/runs", &json!({"set": 9})), 404, "a run of an unknown version");
    assert_error(server.post("/v1/projects/ifeval/runs", &json!({"samples": 0})), 400, "invalid judge options");
    let (status, text, _) = server.call(ureq::post(&format!("{}/v1/projects", server.base)), Some("{\"name\": "));
    assert_eq!(status, 400, "malformed JSON: {text}");
    assert!(text.contains("invalid_json"), "{text}");
    let (status, bad_items) = server.post("/v1/projects/ifeval/datasets", &json!({"name": "bad", "items": [{"id": "a", "input": "q"}, {"id": "b"}]}));
    assert_eq!(status, 400, "{bad_items}");
    assert!(bad_items["error"]["message"].as_str().unwrap().contains("items[1]"), "names the item: {bad_items}");
    assert_error(server.put("/v1/projects/ifeval/config", &json!({"rolez": {}})), 400, "an unknown config field");
    assert_error(server.post("/v1/projects/ifeval/labels", &json!({"labels": [{"item": "nope", "score": 1}]})), 404, "a label of an unknown item");

    // Discovery answers at once and ends on its own.
    let (status, discovery) = server.post("/v1/projects/ifeval/discover", &json!({"checks": 2}));
    assert_eq!((status, &discovery["run"]["kind"]), (202, &json!("discovery")), "{discovery}");
    let run = finished_run(&server, &discovery["run"]["id"], Duration::from_secs(600));
    assert!(run["status"] == "done" || run["error"].is_string(), "{run}");

    // A role naming a model the server has not loaded: the run fails and says which are.
    let roles = json!({"generator": {"model": "smollm2"}, "annotator": {"model": "smollm2"}, "judge": {"model": "big-judge"}, "embedder": {"model": "minilm"}, "check_writer": {"model": "smollm2"}});
    let (status, config) = server.put("/v1/projects/ifeval/config", &json!({"roles": roles}));
    assert_eq!((status, &config["roles"]["judge"]["model"], &config["answer_tokens"]), (200, &json!("big-judge"), &json!(160)), "{config}");
    let (status, started) = server.post("/v1/projects/ifeval/runs", &json!({"set": 1}));
    assert_eq!(status, 202, "{started}");
    let run = finished_run(&server, &started["run"]["id"], Duration::from_secs(60));
    let error = run["error"].as_str().unwrap_or_default();
    assert!(run["status"] == "failed" && error.contains("big-judge") && error.contains("smollm2"), "{run}");

    let (_, metrics) = server.get("/metrics");
    for series in ["assay_requests_total{route=\"/v1/projects/{project}/runs/{run}\",status=\"200\"}", "assay_requests_total{route=\"/v1/projects\",status=\"201\"} 1"] {
        assert!(metrics.contains(series), "missing {series} in\n{metrics}");
    }
    let (_, doc) = server.get_json("/openapi.json");
    for route in ["/v1/projects", "/v1/projects/{project}/runs", "/v1/projects/{project}/runs/{run}", "/v1/projects/{project}/sets/{from}/diff/{to}", "/v1/projects/{project}/refine"] {
        assert!(doc["paths"][route].is_object(), "openapi.json lacks {route}");
    }
}

#[test]
fn sigterm_stops_a_background_run_and_a_restarted_server_resumes_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("assay.db");
    let mut server = serve(&db);
    let checks: Value = serde_json::from_str(IFEVAL_CHECKS).unwrap();
    assert_eq!(server.post("/v1/projects", &json!({"name": "ifeval", "generation_prompt": "Follow the instructions."})).0, 201);
    assert_eq!(server.post("/v1/projects/ifeval/datasets", &json!({"name": "gpt4", "items": ifeval_items(3)})).0, 201);
    assert_eq!(server.post("/v1/projects/ifeval/sets", &json!({"checks": checks})).0, 201);
    // Rationales make the run long enough to be interrupted.
    let run = json!({"mode": "rationale", "rationale_tokens": 8, "chunk_items": 1});
    let (status, started) = server.post("/v1/projects/ifeval/runs", &run);
    assert_eq!(status, 202, "{started}");
    server.sigterm();
    assert!(server.exit_status(Duration::from_secs(60)).success());
    let stopped = assay_store::Store::open(&db).unwrap().run(assay_store::RunId(started["run"]["id"].as_i64().unwrap())).unwrap();
    assert_eq!(stopped.status, assay_store::RunStatus::Failed, "{stopped:?}");
    assert!(stopped.error.as_deref().unwrap_or_default().contains("shut down"), "{stopped:?}");

    let server = serve(&db);
    let (status, resumed) = server.post("/v1/projects/ifeval/runs", &run);
    assert_eq!((status, &resumed["resumed"], &resumed["run"]["id"]), (202, &json!(true), &started["run"]["id"]), "{resumed}");
    assert_eq!(resumed["run"]["status"], "running", "a resumed run no longer reads as failed: {resumed}");
    let done = finished_run(&server, &started["run"]["id"], Duration::from_secs(300));
    assert_eq!((&done["status"], &done["progress_done"]), (&json!("done"), &json!(6)), "{done}");
    let (_, judgments) = server.get_json(&format!("/v1/projects/ifeval/runs/{}/judgments", started["run"]["id"]));
    assert!(judgments["judgments"].as_array().unwrap().iter().all(|j| j["rationale"].is_string()), "{judgments}");
}

/// Server-sent events as (event, data) pairs.
fn sse_events(text: &str) -> Vec<(String, Value)> {
    let mut events = Vec::new();
    let mut kind = String::new();
    for line in text.lines() {
        if let Some(k) = line.strip_prefix("event: ") {
            kind = k.to_string();
        } else if let Some(data) = line.strip_prefix("data: ") {
            events.push((std::mem::take(&mut kind), serde_json::from_str(data).unwrap()));
        }
    }
    events
}

#[test]
fn optimisation_over_http_streams_progress_and_stores_gold_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("assay.db");
    let server = serve(&db);
    let project = json!({"name": "opt", "generation_prompt": "Follow every instruction in the user's request exactly.", "config": small_config()});
    assert_eq!(server.post("/v1/projects", &project).0, 201);
    assert_eq!(server.post("/v1/projects/opt/datasets", &json!({"name": "gpt4", "items": ifeval_items(2)})).0, 201);
    // Threshold 1: nothing passes, so every search spends its budget.
    let strict =
        json!([{"id": "complete", "question": "Does the response carry out every instruction?", "threshold": 1.0}, {"id": "concise", "question": "Is the response concise?", "threshold": 1.0}]);
    assert_eq!(server.post("/v1/projects/opt/sets", &json!({"checks": strict})).0, 201);

    assert_error(server.post("/v1/optimise", &json!({"project": "opt", "population": 1})), 400, "a population of one");
    assert_error(server.post("/v1/optimise", &json!({"project": "nope"})), 404, "unknown project");
    assert_error(server.post("/v1/optimise", &json!({"project": "opt", "population": 65})), 400, "a population over the limit");
    assert_error(server.get_json("/v1/optimise/999"), 404, "unknown run");

    let request = json!({"project": "opt", "items": 2, "population": 2, "generations": 1, "budget": 4, "max_tokens": 16, "seed": 3, "compare": true});
    let (status, started) = server.post("/v1/optimise", &request);
    assert_eq!((status, &started["resumed"]), (202, &json!(false)), "{started}");
    let id = started["run"]["id"].as_i64().unwrap();

    // The stream follows the run to its end, then closes; read again, it replays the same.
    let (status, text) = server.get(&format!("/v1/optimise/{id}/events"));
    assert_eq!(status, 200, "{text}");
    let events = sse_events(&text);
    let (last_kind, last) = events.last().unwrap();
    assert_eq!((last_kind.as_str(), &last["run"]["status"]), ("end", &json!("done")), "{text}");
    let gold_events: Vec<&Value> = events.iter().filter(|(k, _)| k == "gold").map(|(_, e)| e).collect();
    assert_eq!(gold_events.len(), 2, "{text}");
    // Every run's log also carries `progress` (items with a gold output, of all), as discovery
    // and judge runs do.
    assert!(events.iter().any(|(k, e)| k == "progress" && e["stage"] == "optimising" && e["total"] == 2), "{text}");
    for (k, e) in &events {
        assert!(["progress", "generation", "gold", "end"].contains(&k.as_str()), "{k}");
        if k == "generation" {
            assert!(e["evaluations"].as_u64().unwrap() <= 4 && e["best_passes"].as_u64().unwrap() <= 2, "{e}");
        }
    }
    assert!(events.iter().position(|(k, e)| k == "generation" && e["position"] == 2).unwrap() > events.iter().position(|(k, _)| k == "gold").unwrap(), "items in order");
    assert_eq!(sse_events(&server.get(&format!("/v1/optimise/{id}/events")).1).len(), events.len());

    // The run, its gold outputs and their lineage.
    let (status, shown) = server.get_json(&format!("/v1/optimise/{id}"));
    assert_eq!((status, &shown["run"]["status"], &shown["run"]["progress_done"]), (200, &json!("done"), &json!(2)), "{shown}");
    let gold = shown["gold"].as_array().unwrap();
    assert_eq!(gold.len(), 2);
    for (g, e) in gold.iter().zip(&gold_events) {
        let candidates = g["lineage"]["candidates"].as_array().unwrap();
        assert_eq!((candidates.len() as u64, &g["passes"]), (g["evaluations"].as_u64().unwrap(), &e["passes"]), "{g}");
        assert!(g["best_of_n"]["text"].is_string(), "compared with best-of-N: {g}");
        for c in candidates {
            let parents: Vec<u64> = match c["origin"]["kind"].as_str().unwrap() {
                "seed" => vec![],
                "mutation" => vec![c["origin"]["parent"].as_u64().unwrap()],
                _ => c["origin"]["parents"].as_array().unwrap().iter().map(|p| p.as_u64().unwrap()).collect(),
            };
            assert!(parents.iter().all(|&p| candidates[p as usize]["generation"].as_u64() < c["generation"].as_u64()), "{c}");
        }
    }
    let (status, listed) = server.get_json("/v1/projects/opt/gold");
    assert_eq!((status, listed["gold"].as_array().unwrap().len()), (200, 2), "{listed}");

    // The expert's critique: a gold output that fails checks proposes nothing new.
    let first = gold[0]["id"].as_i64().unwrap();
    assert_error(server.post(&format!("/v1/projects/opt/gold/{first}/critique"), &json!({"note": " "})), 400, "a blank note");
    let (status, critique) = server.post(&format!("/v1/projects/opt/gold/{first}/critique"), &json!({"note": "Too long."}));
    assert_eq!((status, &critique["gold"]["status"]), (200, &json!("rejected")), "{critique}");
    assert_eq!(critique["candidate_check"].is_null(), gold[0]["passes"] != json!(2), "{critique}");
    assert_error(server.post(&format!("/v1/projects/opt/gold/{first}/critique"), &json!({"note": "again"})), 409, "rejected twice");
    assert_eq!(server.post("/v1/projects", &json!({"name": "other", "generation_prompt": "p"})).0, 201);
    let second = gold[1]["id"].as_i64().unwrap();
    assert_error(server.post(&format!("/v1/projects/other/gold/{second}/critique"), &json!({"note": "x"})), 404, "a gold output of another project");
}

/// Server-sent events as (id, event, data) triples, one per blank-line-ended block.
fn sse_blocks(text: &str) -> Vec<(String, String, Value)> {
    text.split("\n\n")
        .filter_map(|block| {
            let field = |name: &str| block.lines().find_map(|l| l.strip_prefix(name)).map(str::to_string);
            Some((field("id: ").unwrap_or_default(), field("event: ").unwrap_or_default(), serde_json::from_str(&field("data: ")?).ok()?))
        })
        .collect()
}

/// What the workbench reads and undoes, through the JSON API any client gets: items paged and
/// searched, one item's verdicts, judgments filtered, a run's events resumed after
/// `Last-Event-ID`, labels with who gave them and their undo, the review queue and its filters,
/// one question, a ruling previewed, answered and taken back, a check's page and a ruling on it
/// that refinement reads, and the diff of the versions.
#[test]
fn the_workbench_api_reads_back_previews_and_undoes() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(&dir.path().join("assay.db"));
    let project = json!({"name": "ifeval", "generation_prompt": "Follow every instruction in the user's request exactly.", "config": small_config()});
    assert_eq!(server.post("/v1/projects", &project).0, 201);
    assert_eq!(server.post("/v1/projects/ifeval/datasets", &json!({"name": "gpt4", "items": ifeval_items(3)})).0, 201);
    assert_eq!(server.post("/v1/projects/ifeval/sets", &json!({"checks": serde_json::from_str::<Value>(IFEVAL_CHECKS).unwrap()})).0, 201);
    let (_, started) = server.post("/v1/projects/ifeval/runs", &json!({}));
    let run_id = started["run"]["id"].clone();
    assert_eq!(finished_run(&server, &run_id, Duration::from_secs(300))["status"], "done");

    // Items, paged and searched by the database; one item with its verdicts.
    let (status, page) = server.get_json("/v1/projects/ifeval/datasets/gpt4/items?per_page=2&page=2");
    assert_eq!((status, &page["total"], &page["pages"], page["items"].as_array().unwrap().len()), (200, &json!(3), &json!(2), 1), "{page}");
    let needle: String = ifeval_items(3)[1]["input"].as_str().unwrap().chars().take(30).collect();
    let (_, found) = server.get_json(&format!("/v1/projects/ifeval/datasets/gpt4/items?q={}", needle.replace(' ', "%20").replace('"', "%22")));
    assert_eq!((&found["total"], &found["items"][0]["key"]), (&json!(1), &json!("ifeval-1")), "{found}");
    assert_error(server.get_json("/v1/projects/ifeval/datasets/gpt4/items?per_page=0"), 400, "an empty page");
    let (status, item) = server.get_json("/v1/projects/ifeval/datasets/gpt4/items/ifeval-0");
    assert_eq!((status, item["judgments"].as_array().unwrap().len(), &item["run"]), (200, 2, &run_id), "{item}");
    assert_error(server.get_json("/v1/projects/ifeval/datasets/gpt4/items/nope"), 404, "an unknown item");
    let (_, of_item) = server.get_json(&format!("/v1/projects/ifeval/runs/{run_id}/judgments?item=ifeval-0&check=on_topic"));
    assert_eq!(of_item["judgments"].as_array().unwrap().len(), 1, "{of_item}");

    // The run's events: progress, then end; after Last-Event-ID only what follows it.
    let (status, text, _) = server.call(ureq::get(&format!("{}/v1/projects/ifeval/runs/{run_id}/events", server.base)), None);
    let events = sse_blocks(&text);
    assert_eq!(status, 200);
    assert!(events.len() >= 2 && events.iter().rev().skip(1).all(|(_, kind, _)| kind == "progress"), "{text}");
    let (last_id, kind, end) = events.last().unwrap();
    assert_eq!((kind.as_str(), &end["run"]["status"]), ("end", &json!("done")), "{text}");
    let before_last = (last_id.parse::<usize>().unwrap() - 1).to_string();
    let (_, resumed, _) = server.call(ureq::get(&format!("{}/v1/projects/ifeval/runs/{run_id}/events", server.base)).set("Last-Event-ID", &before_last), None);
    assert_eq!(sse_blocks(&resumed).iter().map(|(id, _, _)| id.clone()).collect::<Vec<_>>(), vec![last_id.clone()], "{resumed}");

    // Labels with their rater, read back and undone.
    let labels = json!({"labels": [{"item": "ifeval-0", "check": "on_topic", "verdict": "FAIL", "rater": "ana"}, {"item": "ifeval-1", "check": "on_topic", "verdict": "PASS", "rater": "ana"}]});
    assert_eq!(server.post("/v1/projects/ifeval/labels", &labels).0, 200);
    let (_, listed) = server.get_json("/v1/projects/ifeval/labels");
    assert_eq!(listed["labels"].as_array().unwrap().iter().map(|l| (l["item"].as_str().unwrap(), l["rater"].as_str().unwrap())).collect::<Vec<_>>(), vec![("ifeval-0", "ana"), ("ifeval-1", "ana")]);
    let remove = json!({"item": "ifeval-1", "check": "on_topic"});
    assert_eq!(server.post("/v1/projects/ifeval/labels/remove", &remove), (200, json!({"removed": true})));
    assert_error(server.post("/v1/projects/ifeval/labels/remove", &remove), 404, "a label already removed");

    // The review queue: 6 pairs, 1 labelled; filters by label, by check and by verdicts.
    let (_, all) = server.get_json("/v1/projects/ifeval/review?i=99");
    assert_eq!((&all["total"], &all["position"], &all["labelled"], &all["pairs"]), (&json!(6), &json!(6), &json!(1), &json!(6)), "clamped to the last: {all}");
    let (_, unlabelled) = server.get_json("/v1/projects/ifeval/review?filter=unlabelled");
    assert_eq!(unlabelled["total"], 5, "{unlabelled}");
    let (_, failed_by_expert) = server.get_json("/v1/projects/ifeval/review?check=on_topic&expert=FAIL");
    assert_eq!((&failed_by_expert["total"], &failed_by_expert["pair"]["item"]["key"]), (&json!(1), &json!("ifeval-0")), "{failed_by_expert}");
    let verdict = item["judgments"].as_array().unwrap().iter().find(|j| j["check_id"] == "on_topic").unwrap()["verdict"].clone();
    let disagree = server.get_json("/v1/projects/ifeval/review?filter=disagree").1["total"].clone();
    assert_eq!(disagree, json!(if verdict == "FAIL" { 0 } else { 1 }), "the one label disagrees iff the judge passed it");

    // One question; a ruling previewed (nothing stored), answered, and taken back.
    let (_, questions) = server.get_json("/v1/projects/ifeval/questions");
    let open = questions["questions"].as_array().unwrap().len();
    let pair_question = questions["questions"].as_array().unwrap().iter().find(|q| q["item_key"].is_string() && q["check"].is_string()).expect("a question about a pair").clone();
    let path = format!("/v1/projects/ifeval/questions/{}", pair_question["id"]);
    let (status, detail) = server.get_json(&path);
    assert_eq!((status, &detail["open"], detail["item"]["key"].as_str().is_some(), detail["judgment"]["check_id"] == pair_question["check"]), (200, &json!(open), true, true), "{detail}");
    let (status, preview) = server.post(&format!("{path}/preview"), &json!({"ruling": "Any answer on the subject counts.", "label": "PASS"}));
    assert_eq!((status, &preview["judged"], &preview["check"]), (200, &json!(3), &pair_question["check"]), "{preview}");
    assert!(preview["flips"].is_array() && preview.get("kappa_after").is_some(), "{preview}");
    assert_eq!(server.get_json(&path).1["status"], "open", "a preview stores nothing");
    assert_error(server.post(&format!("{path}/preview"), &json!({"ruling": " "})), 400, "a blank draft");
    let (_, answered) = server.post(&format!("{path}/answer"), &json!({"ruling": "Any answer on the subject counts.", "rater": "ana"}));
    assert_eq!((&answered["status"], &answered["ruling"]["rater"]), (&json!("answered"), &json!("ana")), "{answered}");
    let (status, reopened) = server.post(&format!("{path}/reopen"), &json!({}));
    assert_eq!((status, &reopened["status"], &reopened["ruling"]), (200, &json!("open"), &Value::Null), "{reopened}");
    assert_error(server.post(&format!("{path}/reopen"), &json!({})), 409, "reopening an open question");

    // A check's page; a ruling on the check that refinement reads; the diff of the versions.
    let (status, check) = server.get_json("/v1/projects/ifeval/sets/1/checks/on_topic");
    assert_eq!((status, &check["run"], &check["report"]["id"], &check["origin"]), (200, &run_id, &json!("on_topic"), &Value::Null), "an imported check has no cluster: {check}");
    assert_error(server.get_json("/v1/projects/ifeval/sets/1/checks/nope"), 404, "an unknown check");
    let (status, ruled) = server.post("/v1/projects/ifeval/checks/on_topic/ruling", &json!({"ruling": "drop this check: the prompt sets no topic", "rater": "ana"}));
    assert_eq!((status, &ruled["status"]), (201, &json!("answered")), "{ruled}");
    let (_, refined) = server.post("/v1/projects/ifeval/refine", &json!({}));
    assert_eq!(refined["to"], 2, "{refined}");
    let (status, diff) = server.get_json("/v1/projects/ifeval/sets/1/diff/2");
    assert_eq!((status, &diff["removed"][0]["id"]), (200, &json!("on_topic")), "{diff}");
    assert!(diff["words"].is_array() && diff["verdicts_changed"].is_array(), "{diff}");

    let (_, doc) = server.get_json("/openapi.json");
    for route in [
        "/v1/projects/{project}/datasets/{dataset}/items",
        "/v1/projects/{project}/datasets/{dataset}/items/{item}",
        "/v1/projects/{project}/runs/{run}/events",
        "/v1/projects/{project}/questions/{question}",
        "/v1/projects/{project}/questions/{question}/preview",
        "/v1/projects/{project}/questions/{question}/reopen",
        "/v1/projects/{project}/review",
        "/v1/projects/{project}/labels/remove",
        "/v1/projects/{project}/sets/{version}/checks/{check}",
        "/v1/projects/{project}/checks/{check}/ruling",
    ] {
        assert!(doc["paths"][route].is_object(), "openapi.json lacks {route}");
    }
    assert!(doc["paths"]["/v1/projects/{project}/labels"]["get"].is_object() && doc["paths"]["/v1/projects/{project}/labels"]["post"].is_object());
}
