//! The store through the CLI, on real IFEval data: a project, datasets imported from the
//! IFEval files as they are (with a field map), evaluator-set versions with a diff, exports;
//! and bad input refused with a clear error that leaves the database as it was.

mod common;

use assay_core::{EvaluatorSet, Judgment, Verdict};
use assay_store::{NewRun, RunKind, Store};
use std::path::{Path, PathBuf};

use common::assay_on as assay;

fn ifeval(file: &str) -> PathBuf {
    common::repo_root().join("../shared/data/ifeval").join(file)
}

/// The first `n` lines of an IFEval file, unchanged, as a new file in `dir`.
fn first_lines(dir: &Path, file: &str, n: usize) -> PathBuf {
    let text: String = std::fs::read_to_string(ifeval(file)).unwrap().lines().take(n).map(|l| format!("{l}\n")).collect();
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap();
    path
}

/// IFEval's instruction ids in the first `n` prompts, each as one check (each id is a
/// ready binary check): `id` with the question `question_of(id)`.
fn ifeval_checks(n: usize, question_of: impl Fn(&str) -> String) -> Vec<serde_json::Value> {
    let mut ids: Vec<String> = std::fs::read_to_string(ifeval("input_data.jsonl"))
        .unwrap()
        .lines()
        .take(n)
        .flat_map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["instruction_id_list"].as_array().unwrap().clone())
        .map(|id| id.as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids.dedup();
    ids.iter().map(|id| serde_json::json!({"id": id, "question": question_of(id)})).collect()
}

fn write_json(dir: &Path, name: &str, value: &serde_json::Value) -> String {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_string_pretty(value).unwrap()).unwrap();
    path.to_str().unwrap().to_string()
}

/// Everything the commands here can write, to compare before and after a refused command.
fn snapshot(db: &Path) -> String {
    let store = Store::open(db).unwrap();
    let mut out = String::new();
    for p in store.projects().unwrap() {
        out += &format!("{p:?}\n");
        for d in store.datasets(p.id).unwrap() {
            out += &format!("{d:?} {:?}\n", store.items(d.id).unwrap());
        }
        out += &format!("{:?}\n{:?}\n", store.set_versions(p.id).unwrap(), store.runs(p.id).unwrap());
    }
    out
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn project_data_set_versions_diff_and_exports_on_ifeval() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("assay.db");
    let prompt = dir.path().join("prompt.txt");
    std::fs::write(&prompt, "Follow every instruction in the user's request exactly.").unwrap();

    let (ok, stdout, stderr) = assay(&db, &["project", "create", "ifeval", "--prompt-file", path_str(&prompt), "--task", "instruction following"]);
    assert!(ok && stdout.contains("created project 'ifeval'"), "{stdout}{stderr}");

    // The IFEval prompts as they are: `key` is the id, `prompt` the input; the instruction
    // lists stay with each item as metadata.
    let prompts = first_lines(dir.path(), "input_data.jsonl", 20);
    let (ok, stdout, stderr) = assay(&db, &["data", "import", "--project", "ifeval", "--file", path_str(&prompts), "--map", "id=key,input=prompt", "--name", "prompts"]);
    assert!(ok && stdout.contains("imported 20 items (0 with outputs) as dataset 'prompts'"), "{stdout}{stderr}");
    // GPT-4's responses to the same prompts, as items with outputs (ids are their positions).
    let responses = first_lines(dir.path(), "input_response_data_gpt4_20231107_145030.jsonl", 20);
    let (ok, stdout, stderr) = assay(&db, &["data", "import", "--project", "ifeval", "--file", path_str(&responses), "--map", "input=prompt,output=response"]);
    assert!(ok && stdout.contains("imported 20 items (20 with outputs)"), "{stdout}{stderr}");

    // A CSV with quoted newlines (MEDEC's notes), its other columns kept as metadata.
    let medec = common::repo_root().join("../shared/data/medec/MEDEC-MS-ValidationSet-with-GroundTruth-and-ErrorType.csv");
    let (ok, stdout, stderr) = assay(&db, &["data", "import", "--project", "ifeval", "--file", path_str(&medec), "--map", "id=Text ID,input=Text", "--name", "medec"]);
    assert!(ok && stdout.contains("imported 574 items (0 with outputs) as dataset 'medec'"), "{stdout}{stderr}");

    let store = Store::open(&db).unwrap();
    let project = store.project_by_name("ifeval").unwrap();
    let medec = store.dataset_by_name(project.id, "medec").unwrap();
    let note = &store.items(medec.id).unwrap()[0].fields;
    let sentences = note.metadata.as_ref().unwrap()["Sentences"].as_str().unwrap();
    assert!(note.key == "ms-val-0" && note.input.starts_with("A 24-year-old") && sentences.lines().count() > 5, "{note:?}");
    let datasets = store.datasets(project.id).unwrap();
    assert_eq!(datasets.iter().map(|d| (d.name.as_str(), d.item_count)).collect::<Vec<_>>(), vec![("prompts", 20), ("input_response_data_gpt4_20231107_145030", 20), ("medec", 574)]);
    let first = &store.items(datasets[0].id).unwrap()[0].fields;
    assert_eq!(first.key, "1000");
    assert!(first.input.starts_with("Write a 300+ word summary"));
    assert_eq!(first.metadata.as_ref().unwrap()["instruction_id_list"][0], "punctuation:no_comma");
    drop(store);

    let v1_checks = ifeval_checks(20, |id| format!("Does the response follow the instruction '{id}'?"));
    assert!(v1_checks.len() >= 10);
    let checks = write_json(dir.path(), "checks.json", &serde_json::json!(v1_checks));
    let (ok, stdout, stderr) = assay(&db, &["set", "import", "--project", "ifeval", "--checks", &checks]);
    assert!(ok && stdout.contains("created evaluator-set version v1") && stdout.contains("parent none"), "{stdout}{stderr}");

    // Version 2: one question reworded (a ruling folded in), one check dropped, one added.
    let mut v2_checks = v1_checks.clone();
    v2_checks[0]["question"] = "Is every comma absent from the response, including inside quotations?".into();
    let removed = v2_checks.remove(1)["id"].as_str().unwrap().to_string();
    v2_checks.push(serde_json::json!({"id": "no_apology", "question": "Does the response avoid apologising?", "threshold": 0.6}));
    let checks_v2 = write_json(dir.path(), "checks_v2.json", &serde_json::json!({"checks": v2_checks}));
    let (ok, stdout, stderr) = assay(&db, &["set", "import", "--project", "ifeval", "--checks", &checks_v2, "--reason", "ruling on quotations"]);
    assert!(ok && stdout.contains("created evaluator-set version v2") && stdout.contains("parent v1"), "{stdout}{stderr}");

    let (ok, diff, stderr) = assay(&db, &["set", "diff", "--project", "ifeval", "v1", "2"]);
    assert!(ok, "{stderr}");
    let changed_id = v1_checks[0]["id"].as_str().unwrap();
    assert!(diff.starts_with("v1 -> v2: 1 added, 1 removed, 1 changed\n"), "{diff}");
    assert!(diff.contains("+ no_apology: Does the response avoid apologising?"), "{diff}");
    assert!(diff.contains(&format!("- {removed}: ")), "{diff}");
    assert!(diff.contains(&format!("~ {changed_id}: question\n")) && diff.contains("including inside quotations?\""), "{diff}");
    let (ok, json, _) = assay(&db, &["set", "diff", "--project", "ifeval", "1", "2", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(ok && json["added"][0]["id"] == "no_apology" && json["changed"][0]["fields"] == serde_json::json!(["question"]), "{json}");

    let exported = dir.path().join("v2.json");
    let (ok, _, stderr) = assay(&db, &["export", "set", "--project", "ifeval", "--set", "2", "--out", path_str(&exported)]);
    assert!(ok, "{stderr}");
    let text = std::fs::read_to_string(&exported).unwrap();
    let set: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!((set["version"].as_str(), set["parent"].as_str(), set["reason"].as_str()), (Some("v2"), Some("v1"), Some("ruling on quotations")));
    assert!(text.contains("\"threshold\": 0.6\n"), "thresholds are written as given: {text}");
    let imported = EvaluatorSet::from_json(&std::fs::read_to_string(&checks_v2).unwrap()).unwrap();
    assert_eq!(EvaluatorSet::from_json(&text).unwrap().checks, imported.checks);
    assert_eq!(set["content_hash"].as_str(), Some(imported.content_hash().as_str()));
    // The export reads back as checks, identical to version 2, so no version 3 is made.
    let (ok, _, stderr) = assay(&db, &["set", "import", "--project", "ifeval", "--checks", path_str(&exported)]);
    assert!(!ok && stderr.contains("identical to version 2"), "{stderr}");

    // Judgments of a judge run (written here through the library, as `assay run` will) export
    // as the JSONL `assay judge` writes.
    let mut store = Store::open(&db).unwrap();
    let v2 = store.set_version(project.id, 2).unwrap();
    let run = store.create_run(project.id, &NewRun { kind: RunKind::Judge, set_version: Some(v2.id), dataset: Some(datasets[1].id), params: serde_json::json!({}) }).unwrap();
    let judgments: Vec<Judgment> = store.pending_pairs(run.id).unwrap()[..5]
        .iter()
        .map(|p| Judgment {
            item_id: p.item_key.clone(),
            check_id: p.check.clone(),
            verdict: Verdict::Fail,
            p_pass: 0.25,
            logprob_pass: -2.0,
            logprob_fail: -0.9,
            off_format_mass: 0.1,
            rationale: None,
            samples: vec![],
            flip_rate: None,
        })
        .collect();
    store.insert_judgments(run.id, &judgments).unwrap();
    drop(store);
    let (ok, stdout, stderr) = assay(&db, &["export", "judgments", "--project", "ifeval", "--run", &run.id.to_string()]);
    assert!(ok && stderr.contains(&format!("exported 5 judgments of judge run {} (queued, 5/{} done)", run.id, 20 * v2.set.checks.len())), "{stderr}");
    let lines: Vec<Judgment> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines, judgments);
}

#[test]
fn bad_input_is_refused_clearly_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("assay.db");
    let prompt = dir.path().join("prompt.txt");
    std::fs::write(&prompt, "Answer.").unwrap();
    assert!(assay(&db, &["project", "create", "p", "--prompt-file", path_str(&prompt)]).0);
    let good = first_lines(dir.path(), "input_data.jsonl", 3);
    assert!(assay(&db, &["data", "import", "--project", "p", "--file", path_str(&good), "--map", "id=key,input=prompt"]).0);
    let checks = write_json(dir.path(), "checks.json", &serde_json::json!(ifeval_checks(3, |id| format!("Is '{id}' followed?"))));
    assert!(assay(&db, &["set", "import", "--project", "p", "--checks", &checks]).0);
    let before = snapshot(&db);

    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let good_lines = std::fs::read_to_string(&good).unwrap();
    let malformed = write("malformed.jsonl", &format!("{good_lines}{{\"key\": 7, \"prompt\": \"cut off\n"));
    let empty = write("empty.jsonl", "");
    let ragged = write("ragged.csv", "input,output\nq,a\nonly one,a,b\n");
    let bad_checks = write("bad_checks.json", r#"[{"id": "a", "question": "A?"}, {"id": "a", "question": "B?"}]"#);
    let good_path = path_str(&good).to_string();
    // --db wins over ASSAY_DB (set by `assay`): this one names a fresh file without the project.
    let other_db = dir.path().join("other.db");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["data", "import", "--project", "p", "--file", &malformed, "--map", "id=key,input=prompt"], "line 4: invalid JSON"),
        (vec!["data", "import", "--project", "p", "--file", &empty], "the file has no items"),
        (vec!["data", "import", "--project", "p", "--file", &ragged], "line 3"),
        (vec!["data", "import", "--project", "nope", "--file", &good_path, "--map", "id=key,input=prompt"], "no project 'nope'"),
        (vec!["data", "import", "--project", "p", "--file", &good_path, "--map", "id=key,input=prompt"], "already has a dataset 'input_data'"),
        (vec!["data", "import", "--project", "p", "--file", &good_path, "--map", "question=prompt"], "unknown item field 'question'"),
        (vec!["set", "import", "--project", "p", "--checks", &bad_checks], "duplicate check id 'a'"),
        (vec!["set", "import", "--project", "p", "--checks", &checks], "identical to version 1"),
        (vec!["set", "import", "--project", "nope", "--checks", &checks], "no project 'nope'"),
        (vec!["set", "diff", "--project", "p", "1", "3"], "evaluator-set version 3 not found"),
        (vec!["project", "create", "p", "--prompt-file", path_str(&prompt)], "project 'p' already exists"),
        (vec!["export", "set", "--project", "p", "--set", "v9"], "evaluator-set version 9 not found"),
        (vec!["export", "judgments", "--project", "p", "--run", "42"], "run 42 not found"),
        (vec!["--db", path_str(&other_db), "set", "diff", "--project", "p", "1", "1"], "no project 'p' in"),
    ];
    for (args, expected) in cases {
        let (ok, _, stderr) = assay(&db, &args);
        assert!(!ok && stderr.contains(expected), "{args:?}: expected {expected:?} in {stderr}");
        assert_eq!(snapshot(&db), before, "{args:?} changed the database");
    }
}
