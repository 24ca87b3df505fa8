//! The evaluation loop end to end through the CLI with the real small models (SmolLM2 as
//! generator, annotator, check writer and judge; MiniLM as embedder) on real IFEval data:
//! discover -> run -> report -> a question answered -> refine -> version 2 with a diff; a
//! judge run killed with SIGKILL and resumed; per-check agreement with the IFEval verifier.
//! Nothing here asserts that the tiny model judges well, only that the system does its job.

mod common;

use assay_store::{RunKind, RunStatus, Store};
use common::assay_on as assay;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// IFEval prepared by `examples/ifeval/prepare.py` in `dir`: items, checks, labels.
fn prepare_ifeval(dir: &Path, checks: usize, items: usize) {
    let out = std::process::Command::new("python3")
        .args(["examples/ifeval/prepare.py", "--out", dir.to_str().unwrap(), "--checks", &checks.to_string(), "--items", &items.to_string()])
        .current_dir(common::repo_root())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn ok(db: &Path, args: &[&str]) -> String {
    let (success, stdout, stderr) = assay(db, args);
    assert!(success, "assay {args:?} failed:\n{stderr}");
    stdout
}

/// A project on `dir`'s IFEval items; small generation budgets keep CI short.
fn project(dir: &Path, db: &Path, name: &str) {
    std::fs::write(dir.join("prompt.txt"), "Follow every instruction in the user's request exactly. Do not add anything the request does not ask for.\n").unwrap();
    ok(db, &["project", "create", name, "--prompt-file", dir.join("prompt.txt").to_str().unwrap()]);
    let config = serde_json::json!({
        "generators": [
            {"name": "careful", "temperature": 0.2, "variant": "as_written", "max_tokens": 48},
            {"name": "input-only", "temperature": 1.1, "variant": "input_only", "max_tokens": 48}
        ],
        "answer_tokens": 96
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    ok(db, &["project", "config", name, "--file", dir.join("config.json").to_str().unwrap()]);
    ok(db, &["data", "import", "--project", name, "--file", dir.join("items.jsonl").to_str().unwrap(), "--name", "ifeval"]);
}

fn temp() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("assay.db");
    (dir, db)
}

#[test]
fn discover_run_report_answer_refine_on_ten_ifeval_items() {
    let (dir, db) = temp();
    prepare_ifeval(dir.path(), 6, 10);
    project(dir.path(), &db, "ife");

    let out = ok(&db, &["discover", "--project", "ife", "--checks", "5", "--seed", "7"]);
    assert!(out.contains("evaluator-set version v1"), "{out}");
    let store = Store::open(&db).unwrap();
    let p = store.project_by_name("ife").unwrap();
    let v1 = store.latest_set_version(p.id).unwrap().expect("discovery made version 1");
    assert_eq!(v1.number, 1);
    assert!((1..=5).contains(&v1.set.checks.len()), "{} checks", v1.set.checks.len());
    // Every output was stored and annotated (parsed or flagged), none dropped: 10 dataset
    // outputs + 2 generators x 10 items.
    let run = store.runs(p.id).unwrap().into_iter().find(|r| r.kind == RunKind::Discovery).unwrap();
    assert_eq!(run.status, RunStatus::Done);
    let outputs = store.dataset_by_name(p.id, &format!("discovery-{}", run.id)).unwrap();
    let dataset = store.dataset_by_name(p.id, "ifeval").unwrap();
    let all_generations = store.generations(dataset.id).unwrap();
    assert_eq!(all_generations.len(), 30, "10 dataset outputs + 2 generators x 10 items");
    let failed = all_generations.iter().filter(|g| g.text.is_empty()).count();
    assert_eq!(outputs.item_count + failed, 30);
    let unparseable = store.unparseable_annotations(p.id).unwrap().len();
    let errors = store.annotated_errors(p.id).unwrap();
    assert!(out.contains(&format!("({unparseable} unreadable), {} errors", errors.len())), "{out}");
    let tree = store.cluster_tree(run.id).unwrap();
    let clustered: usize = tree.iter().map(|c| c.members.len()).sum();
    assert_eq!(clustered, errors.len(), "every error is in exactly one cluster of the tree");
    drop(store);

    let out = ok(&db, &["run", "--project", "ife", "--set", "1", "--data", "ifeval"]);
    let n = 10 * v1.set.checks.len();
    assert!(out.contains(&format!("{n}/{n} stored")), "{out}");

    let plots = dir.path().join("plots");
    let out = ok(&db, &["report", "--project", "ife", "--set", "1", "--plots", plots.to_str().unwrap()]);
    for c in &v1.set.checks {
        assert!(out.contains(&c.id.chars().take(32).collect::<String>()), "no row for {} in\n{out}", c.id);
    }
    assert!(plots.join("pass-rates.svg").exists());

    // A run always leaves the expert something to decide; answer the first open question.
    let questions = ok(&db, &["questions", "--project", "ife", "--json"]);
    let first: serde_json::Value = serde_json::from_str(questions.lines().next().expect("an open question")).unwrap();
    // About a check or a judgment: a ruling in the expert's words. About a prompt constraint no
    // check covers: the offered "add a check for it".
    let ruling = if first["check"].is_string() { "Only count what the user explicitly asked for; extra politeness is not an error." } else { "add a check for it" };
    let mut args = vec!["answer".to_string(), first["id"].to_string(), "--ruling".into(), ruling.into()];
    if first["item"].is_number() && first["check"].is_string() {
        args.extend(["--label".into(), "fail".into()]);
    }
    ok(&db, &args.iter().map(String::as_str).collect::<Vec<_>>());
    let answered = ok(&db, &["questions", "--project", "ife", "--all"]);
    assert!(answered.contains(&format!("ruling: {ruling}")), "{answered}");

    let out = ok(&db, &["refine", "--project", "ife", "--seed", "3"]);
    assert!(out.contains("created v2 from v1"), "{out}");
    let diff = ok(&db, &["set", "diff", "--project", "ife", "1", "2", "--json"]);
    let diff: serde_json::Value = serde_json::from_str(&diff).unwrap();
    let changed = diff["changed"].as_array().unwrap().len() + diff["added"].as_array().unwrap().len() + diff["removed"].as_array().unwrap().len();
    assert!(changed >= 1, "{diff}");
    if let Some(check) = first["check"].as_str() {
        let v2 = ok(&db, &["export", "set", "--project", "ife", "--set", "2"]);
        let v2: serde_json::Value = serde_json::from_str(&v2).unwrap();
        let kept = v2["checks"].as_array().unwrap().iter().find(|c| c["id"] == check);
        if let Some(kept) = kept {
            assert!(kept["pass_criteria"].as_str().unwrap().contains(ruling), "the ruling is kept verbatim: {kept}");
        }
    }
    // The old data re-scored with the new version: checks unchanged since v1 keep their
    // judgments, the rest are judged.
    let v2: serde_json::Value = serde_json::from_str(&ok(&db, &["export", "set", "--project", "ife", "--set", "2"])).unwrap();
    let v2_checks = v2["checks"].as_array().unwrap().len();
    let unchanged = v2_checks - diff["changed"].as_array().unwrap().len() - diff["added"].as_array().unwrap().len();
    let out = ok(&db, &["run", "--project", "ife", "--set", "2", "--data", "ifeval"]);
    let n2 = 10 * v2_checks;
    assert!(out.contains(&format!("{} judgments made now, {} reused from runs of identical checks, {n2}/{n2} stored", n2 - 10 * unchanged, 10 * unchanged)), "{out}");
}

#[test]
fn report_gives_per_check_kappa_against_the_ifeval_verifier() {
    let (dir, db) = temp();
    prepare_ifeval(dir.path(), 3, 12);
    project(dir.path(), &db, "ifeval");
    ok(&db, &["set", "import", "--project", "ifeval", "--checks", dir.path().join("checks.json").to_str().unwrap()]);
    ok(&db, &["label", "--project", "ifeval", "--file", dir.path().join("labels.jsonl").to_str().unwrap()]);
    ok(&db, &["run", "--project", "ifeval"]);
    let plots = dir.path().join("plots");
    let table = ok(&db, &["report", "--project", "ifeval", "--plots", plots.to_str().unwrap()]);
    assert!(table.contains("kappa") && table.contains("overall agreement with expert labels"), "{table}");
    let report: serde_json::Value = serde_json::from_str(&ok(&db, &["report", "--project", "ifeval", "--json", "--plots", plots.to_str().unwrap()])).unwrap();
    // Each check's agreement covers exactly the verifier's labels of that check.
    let labels = std::fs::read_to_string(dir.path().join("labels.jsonl")).unwrap();
    for c in report["checks"].as_array().unwrap() {
        let expected = labels.lines().filter(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["check"] == c["id"]).count();
        assert_eq!(c["agreement"]["n"].as_u64().unwrap() as usize, expected, "{c}");
        assert!(c["agreement"].get("kappa").is_some() && c["agreement"]["accuracy"].is_number(), "{c}");
        // The reliability diagram covers the same pairs, its bins add up, and ECE is a weighted gap.
        let r = &c["reliability"];
        assert_eq!(r["n"].as_u64().unwrap() as usize, expected, "{c}");
        assert_eq!(r["bins"].as_array().unwrap().iter().map(|b| b["n"].as_u64().unwrap() as usize).sum::<usize>(), expected, "{c}");
        assert!((0.0..=1.0).contains(&r["ece"].as_f64().unwrap()), "{c}");
    }
    assert_eq!(report["agreement"]["n"].as_u64().unwrap() as usize, labels.lines().count());
    assert_eq!(report["reliability"]["n"].as_u64().unwrap() as usize, labels.lines().count());
    assert!(table.contains("ECE") && table.contains("calibration of P(PASS) on labelled pairs: ECE"), "{table}");
    for plot in ["agreement-kappa.svg", "pass-rates.svg", "calibration-ece.svg", "reliability-all.svg"] {
        let svg = std::fs::read_to_string(plots.join(plot)).unwrap();
        assert!(svg.contains("<svg"), "{plot}");
    }
}

/// The unattended loop of `assay bench quality`'s (d): labels split into train and test, an
/// expert simulated from the train labels answers the run's questions, refine makes a new
/// version, and the test labels reach the store only for the final scoring.
#[test]
fn the_simulated_expert_answers_from_train_labels_only() {
    let (dir, db) = temp();
    // One check, so that every item has exactly one labelled pair: with 2 test items and at
    // least 3 questions per run, some question is about a train item whatever the judge says.
    prepare_ifeval(dir.path(), 1, 8);
    project(dir.path(), &db, "loop");
    let labels: Vec<String> = std::fs::read_to_string(dir.path().join("labels.jsonl")).unwrap().lines().map(str::to_string).collect();
    assert_eq!(labels.len(), 8);
    let key = |line: &String| serde_json::from_str::<serde_json::Value>(line).unwrap()["item"].as_str().unwrap().to_string();
    let test_keys: HashSet<String> = labels[6..].iter().map(key).collect();
    let (train, test) = (dir.path().join("train.jsonl"), dir.path().join("test.jsonl"));
    std::fs::write(&train, labels[..6].join("\n")).unwrap();
    std::fs::write(&test, labels[6..].join("\n")).unwrap();
    let arg = |p: &Path| p.to_str().unwrap().to_string();

    ok(&db, &["set", "import", "--project", "loop", "--checks", &arg(&dir.path().join("checks.json"))]);
    ok(&db, &["label", "--project", "loop", "--file", &arg(&train)]);
    ok(&db, &["run", "--project", "loop"]);
    let store = Store::open(&db).unwrap();
    let p = store.project_by_name("loop").unwrap();
    let dataset = store.dataset_by_name(p.id, "ifeval").unwrap();
    let key_of = |store: &Store, item| store.item(item).unwrap().fields.key;
    let raised = store.questions(p.id, None).unwrap();
    assert!(raised.len() >= 3, "{raised:?}");
    let on_train = raised.iter().filter(|q| !test_keys.contains(&key_of(&store, q.asked.item.unwrap()))).count();
    assert!(on_train > 0, "with 2 test items and at least 3 questions, one is on a train item");
    drop(store);

    let out = ok(&db, &["answer", "--project", "loop", "--from-labels", &arg(&train)]);
    assert!(out.contains(&format!("answered {on_train} question(s)")), "{out}");
    let store = Store::open(&db).unwrap();
    for q in store.questions(p.id, None).unwrap() {
        let key = key_of(&store, q.asked.item.unwrap());
        match &q.ruling {
            Some(r) => {
                assert!(!test_keys.contains(&key), "question {} on test item {key} was answered", q.id);
                let label = labels[..6].iter().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).find(|l| l["item"] == key.as_str()).unwrap();
                assert!(r.text.starts_with(label["verdict"].as_str().unwrap()) && r.text.contains(label["note"].as_str().unwrap()) && r.rater == "simulated-expert", "{r:?}");
            }
            None => assert!(test_keys.contains(&key), "question {} on train item {key} left open", q.id),
        }
    }
    drop(store);

    let refined = ok(&db, &["refine", "--project", "loop"]);
    assert!(refined.contains("v2"), "{refined}");
    ok(&db, &["run", "--project", "loop", "--set", "2"]);
    // Up to the final scoring, the store holds no label of a test item.
    let store = Store::open(&db).unwrap();
    let stored: Vec<String> = store.check_labels(dataset.id).unwrap().iter().map(|l| key_of(&store, l.item)).collect();
    assert_eq!(stored.len(), 6);
    assert!(stored.iter().all(|k| !test_keys.contains(k)), "{stored:?}");
    drop(store);
    ok(&db, &["label", "--project", "loop", "--file", &arg(&test)]);
    let report: serde_json::Value = serde_json::from_str(&ok(&db, &["report", "--project", "loop", "--set", "2", "--json"])).unwrap();
    assert_eq!(report["set"], 2);
    assert_eq!(report["agreement"]["n"], 8);
}

#[test]
fn a_killed_run_resumes_with_nothing_lost_or_judged_twice() {
    let (dir, db) = temp();
    prepare_ifeval(dir.path(), 3, 12);
    project(dir.path(), &db, "kill");
    ok(&db, &["set", "import", "--project", "kill", "--checks", dir.path().join("checks.json").to_str().unwrap()]);
    // Killed and reaped when dropped, however the test ends.
    struct Reaped(std::process::Child);
    impl Drop for Reaped {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Reaped(
        std::process::Command::new(common::assay_bin())
            .args(["run", "--project", "kill", "--chunk-items", "1"])
            .env("ASSAY_DB", &db)
            .current_dir(common::repo_root())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Kill it (SIGKILL) once some, but not all, judgments are stored.
    let store = Store::open(&db).unwrap();
    let started = std::time::Instant::now();
    let before = loop {
        assert!(started.elapsed().as_secs() < 300, "the run stored nothing within 5 minutes");
        let run = store.runs(store.project_by_name("kill").unwrap().id).unwrap().into_iter().find(|r| r.kind == RunKind::Judge);
        if let Some(run) = run.filter(|r| r.progress_done > 0) {
            child.0.kill().unwrap();
            child.0.wait().unwrap();
            break store.run(run.id).unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(before.progress_done < before.progress_total, "killed after it finished; the test needs a slower run");
    assert_eq!(before.status, RunStatus::Running, "a killed run is left as it was");
    let stored_before = store.judgments(before.id).unwrap();

    let out = ok(&db, &["run", "--project", "kill"]);
    assert!(out.contains(&format!("run {} resumed and finished", before.id)), "{out}");
    let after = store.judgments(before.id).unwrap();
    assert_eq!(after.len() as u64, before.progress_total);
    let unique: HashSet<(String, String)> = after.iter().map(|j| (j.item_id.clone(), j.check_id.clone())).collect();
    assert_eq!(unique.len(), after.len(), "no (item, check) judged twice");
    for j in &stored_before {
        assert!(after.contains(j), "judgment {}/{} changed or vanished on resume", j.item_id, j.check_id);
    }
    assert_eq!(store.run(before.id).unwrap().status, RunStatus::Done);
    assert_eq!(store.runs(store.project_by_name("kill").unwrap().id).unwrap().iter().filter(|r| r.kind == RunKind::Judge).count(), 1, "resumed, not restarted");
}

#[test]
fn bad_input_is_refused_with_a_clear_error() {
    let (dir, db) = temp();
    prepare_ifeval(dir.path(), 2, 3);
    project(dir.path(), &db, "bad");
    // No evaluator set yet.
    let (success, _, err) = assay(&db, &["run", "--project", "bad"]);
    assert!(!success && err.contains("no evaluator set yet"), "{err}");
    // A corrupt label line names its line and stores nothing.
    let key =
        std::fs::read_to_string(dir.path().join("labels.jsonl")).unwrap().lines().next().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["item"].as_str().unwrap().to_string()).unwrap();
    std::fs::write(dir.path().join("bad.jsonl"), format!("{{\"item\": \"{key}\", \"check\": \"c\", \"verdict\": \"PASS\"}}\n{{\"item\": \"{key}\", \"verdict\": \n")).unwrap();
    let (success, _, err) = assay(&db, &["label", "--project", "bad", "--file", dir.path().join("bad.jsonl").to_str().unwrap()]);
    assert!(!success && err.contains("line 2"), "{err}");
    let store = Store::open(&db).unwrap();
    let dataset = store.dataset_by_name(store.project_by_name("bad").unwrap().id, "ifeval").unwrap();
    assert!(store.check_labels(dataset.id).unwrap().is_empty(), "all or nothing");
    // An unknown configuration field is named.
    std::fs::write(dir.path().join("bad-config.json"), r#"{"rolez": {}}"#).unwrap();
    let (success, _, err) = assay(&db, &["project", "config", "bad", "--file", dir.path().join("bad-config.json").to_str().unwrap()]);
    assert!(!success && err.contains("rolez"), "{err}");
    // Discovery asked for zero checks, and an unknown dataset.
    let (success, _, err) = assay(&db, &["discover", "--project", "bad", "--checks", "0"]);
    assert!(!success && err.contains("at least 1"), "{err}");
    let (success, _, err) = assay(&db, &["discover", "--project", "bad", "--data", "nope"]);
    assert!(!success && err.contains("nope"), "{err}");
    // An unknown question.
    let (success, _, err) = assay(&db, &["answer", "999", "--ruling", "x"]);
    assert!(!success && err.contains("999"), "{err}");
}

#[test]
fn roles_through_an_openai_compatible_url_match_the_local_engine() {
    let (dir, db) = temp();
    prepare_ifeval(dir.path(), 2, 4);
    project(dir.path(), &db, "remote");
    ok(&db, &["set", "import", "--project", "remote", "--checks", dir.path().join("checks.json").to_str().unwrap()]);
    ok(&db, &["run", "--project", "remote"]);

    // The same judge, generator and embedder behind another assay server, with a key.
    let key = "pipeline-test-key";
    let server = common::server::Server::start(&["--embed-model", "minilm", "--api-key", key, "--db", dir.path().join("server.db").to_str().unwrap()]);
    std::env::set_var("ASSAY_PIPELINE_TEST_KEY", key);
    let remote = serde_json::json!({"model": "smollm2", "base_url": format!("{}/v1", server.base), "api_key_env": "ASSAY_PIPELINE_TEST_KEY"});
    let config = serde_json::json!({"roles": {"generator": remote, "annotator": remote, "judge": remote, "check_writer": remote,
        "embedder": {"model": "minilm", "base_url": format!("{}/v1", server.base), "api_key_env": "ASSAY_PIPELINE_TEST_KEY"}}});
    std::fs::write(dir.path().join("remote.json"), config.to_string()).unwrap();
    ok(&db, &["project", "config", "remote", "--file", dir.path().join("remote.json").to_str().unwrap()]);
    let out = ok(&db, &["run", "--project", "remote"]);
    assert!(out.contains("run 2 finished"), "a different judge is a different run: {out}");

    let store = Store::open(&db).unwrap();
    let (local, remote) = (store.judgments(assay_store::RunId(1)).unwrap(), store.judgments(assay_store::RunId(2)).unwrap());
    assert_eq!(local.len(), remote.len());
    for (l, r) in local.iter().zip(&remote) {
        assert_eq!((&l.item_id, &l.check_id), (&r.item_id, &r.check_id));
        assert!((l.p_pass - r.p_pass).abs() < 1e-4, "{}/{}: local {} vs remote {}", l.item_id, l.check_id, l.p_pass, r.p_pass);
    }
    // Two judges on the same set and dataset: the report compares them.
    let report: serde_json::Value = serde_json::from_str(&ok(&db, &["report", "--project", "remote", "--json", "--plots", dir.path().join("plots").to_str().unwrap()])).unwrap();
    for c in report["checks"].as_array().unwrap() {
        assert_eq!(c["judge_disagreement"], serde_json::json!(0.0), "{c}");
    }
    // Generation through the URL too: a tiny optimisation (seeds only).
    let out = ok(&db, &["optimise", "--project", "remote", "--items", "1", "--population", "2", "--budget", "2", "--generations", "0", "--max-tokens", "8"]);
    assert!(out.contains("in 2 evaluations"), "{out}");
}

#[test]
fn sft_and_dpo_exports_follow_the_judgments() {
    let (dir, db) = temp();
    prepare_ifeval(dir.path(), 2, 3);
    // Two outputs per input: GPT-4's response and its first 60 characters.
    let mut lines = String::new();
    for line in std::fs::read_to_string(dir.path().join("items.jsonl")).unwrap().lines() {
        let item: serde_json::Value = serde_json::from_str(line).unwrap();
        let mut short = item.clone();
        short["id"] = serde_json::json!(format!("{}-short", item["id"].as_str().unwrap()));
        short["output"] = serde_json::json!(item["output"].as_str().unwrap().chars().take(60).collect::<String>());
        lines += &format!("{item}\n{short}\n");
    }
    std::fs::write(dir.path().join("items.jsonl"), lines).unwrap();
    project(dir.path(), &db, "train");
    ok(&db, &["set", "import", "--project", "train", "--checks", dir.path().join("checks.json").to_str().unwrap()]);
    ok(&db, &["run", "--project", "train"]);
    let judgments: Vec<serde_json::Value> = ok(&db, &["export", "judgments", "--project", "train", "--run", "1"]).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let passes = |item: &str| judgments.iter().filter(|j| j["item_id"] == item && j["verdict"] == "PASS").count();
    let items: Vec<String> = judgments.iter().map(|j| j["item_id"].as_str().unwrap().to_string()).collect::<std::collections::BTreeSet<_>>().into_iter().collect();

    let every: Vec<serde_json::Value> = ok(&db, &["export", "sft", "--project", "train", "--min-score", "0"]).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(every.len(), 6);
    for r in &every {
        let roles: Vec<&str> = r["messages"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect();
        assert_eq!(roles, ["system", "user", "assistant"], "{r}");
        assert!(r["messages"].as_array().unwrap().iter().all(|m| m["content"].is_string()));
    }
    let passing = ok(&db, &["export", "sft", "--project", "train"]).lines().count();
    assert_eq!(passing, items.iter().filter(|i| passes(i) == 2).count(), "only outputs passing every check");

    let pairs: Vec<serde_json::Value> = ok(&db, &["export", "dpo", "--project", "train", "--min-margin", "0.5"]).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let differing = items.iter().filter(|i| !i.ends_with("-short")).filter(|i| passes(i).abs_diff(passes(&format!("{i}-short"))) >= 1).count();
    assert_eq!(pairs.len(), differing);
    for p in &pairs {
        assert!(p["prompt"].is_string() && p["chosen"].is_string() && p["rejected"].is_string(), "{p}");
        assert!(passes(p["chosen_item"].as_str().unwrap()) > passes(p["rejected_item"].as_str().unwrap()), "{p}");
    }
}

/// Checks every output passes (threshold 0): the case a critique is for, whatever the model says.
const LENIENT_CHECKS: &str = r#"{"checks": [
  {"id": "answers", "question": "Does the response answer the request?", "threshold": 0.0},
  {"id": "plain", "question": "Is the response written in plain language?", "threshold": 0.0}
]}"#;

#[test]
fn optimise_critique_refine_and_export_gold_outputs() {
    let (dir, db) = temp();
    prepare_ifeval(dir.path(), 2, 3);
    project(dir.path(), &db, "gold");
    std::fs::write(dir.path().join("lenient.json"), LENIENT_CHECKS).unwrap();
    ok(&db, &["set", "import", "--project", "gold", "--checks", dir.path().join("lenient.json").to_str().unwrap()]);
    let optimise = ["optimise", "--project", "gold", "--items", "3", "--population", "2", "--generations", "1", "--budget", "4", "--max-tokens", "24", "--seed", "1"];
    let printed = ok(&db, &optimise);
    assert_eq!(printed.lines().filter(|l| l.contains(": gold 2/2")).count(), 3, "every output passes lenient checks, so every search stops at its seeds:\n{printed}");

    // Three gold outputs under v1, each with the lineage of its two seeds.
    let gold: Vec<serde_json::Value> = serde_json::from_str(&ok(&db, &["gold", "--project", "gold", "--json"])).unwrap();
    assert_eq!(gold.len(), 3);
    for g in &gold {
        let candidates = g["lineage"]["candidates"].as_array().unwrap();
        assert_eq!((candidates.len(), &g["evaluations"], &g["status"]), (2, &serde_json::json!(2), &serde_json::json!("gold")), "{g}");
        assert_eq!(g["output"], candidates[g["lineage"]["best"].as_u64().unwrap() as usize]["text"], "the gold output is the lineage's best");
    }

    // The expert rejects one: it passes every check, so it proposes a check, asked as a question.
    let store = Store::open(&db).unwrap();
    let rejected_item = store.item(assay_store::ItemId(gold[1]["item"].as_i64().unwrap())).unwrap().fields.key;
    drop(store);
    let note = "It restates the request instead of carrying it out.";
    let said = ok(&db, &["critique", "--project", "gold", "--item", &rejected_item, "--note", note]);
    assert!(said.contains("proposes check"), "{said}");
    let (success, _, stderr) = assay(&db, &["critique", "--project", "gold", "--item", &rejected_item, "--note", "again"]);
    assert!(!success && stderr.contains("already rejected"), "{stderr}");
    let store = Store::open(&db).unwrap();
    let project = store.project_by_name("gold").unwrap();
    let questions = store.questions(project.id, Some(assay_store::QuestionStatus::Open)).unwrap();
    let asked = questions.iter().find(|q| q.asked.proposed_check.is_some()).expect("a question proposing the check");
    assert!(asked.asked.why.contains(note) && asked.asked.why.contains(&rejected_item), "{}", asked.asked.why);
    let proposed = asked.asked.proposed_check.clone().unwrap();
    let rejected = store.gold_outputs(store.set_version(project.id, 1).unwrap().id).unwrap().into_iter().find(|g| g.status == assay_store::GoldStatus::Rejected).unwrap();
    assert_eq!(rejected.critique.as_deref(), Some(note));
    drop(store);

    // Adopted, the candidate check is in the next version.
    ok(&db, &["answer", &asked.id.to_string(), "--ruling", "add the check"]);
    ok(&db, &["refine", "--project", "gold"]);
    let v2: serde_json::Value = serde_json::from_str(&ok(&db, &["export", "set", "--project", "gold", "--set", "2"])).unwrap();
    let v2_checks = v2["checks"].as_array().unwrap();
    assert!(v2_checks.iter().any(|c| c["id"] == proposed.id.as_str() && c["question"] == proposed.question.as_str()), "{v2}");

    // Training data from the optimise run: every distinct candidate, the rejected one scoring 0.
    let sft: Vec<serde_json::Value> = ok(&db, &["export", "sft", "--project", "gold", "--run", "1"]).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let distinct: usize = gold.iter().map(|g| g["lineage"]["candidates"].as_array().unwrap().iter().map(|c| c["text"].as_str().unwrap()).collect::<HashSet<_>>().len()).sum();
    assert_eq!(sft.len(), distinct - 1, "every distinct candidate but the rejected gold output");
    for r in &sft {
        let messages = r["messages"].as_array().unwrap();
        assert_eq!(messages.iter().map(|m| m["role"].as_str().unwrap()).collect::<Vec<_>>(), ["system", "user", "assistant"], "{r}");
        assert!(messages.iter().all(|m| m["content"].is_string()) && messages[2]["content"] != rejected.found.output.as_str(), "{r}");
    }
    let pairs: Vec<serde_json::Value> = ok(&db, &["export", "dpo", "--project", "gold", "--run", "1", "--min-margin", "0.5"]).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let rejected_has_rival = gold[1]["lineage"]["candidates"].as_array().unwrap().iter().any(|c| c["text"] != rejected.found.output.as_str());
    assert_eq!(pairs.len(), usize::from(rejected_has_rival), "only the rejected input has outputs that differ in score: {pairs:?}");
    for p in &pairs {
        assert!(p["prompt"].is_string() && p["chosen"].is_string(), "{p}");
        assert_eq!(p["rejected"], rejected.found.output.as_str(), "the expert's rejection makes it the rejected side");
    }
}
