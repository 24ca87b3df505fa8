//! `assay judge` end to end on real IFEval items, and its refusals of bad input.

mod common;

use std::path::Path;
use std::process::Command;

fn assay(args: &[&str]) -> (bool, String) {
    let out = Command::new(common::assay_bin()).args(args).current_dir(common::repo_root()).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into())
}

const CHECKS: &str = r#"{"version": "v1", "checks": [
  {"id": "follows_format", "question": "Does the response follow every formatting instruction of the prompt (sections, bullet points, capital letters, punctuation)?"},
  {"id": "length", "question": "Does the response respect the length the prompt asks for (words, sentences or paragraphs)?"},
  {"id": "on_topic", "question": "Does the response address the task in the prompt?"},
  {"id": "no_forbidden", "question": "Does the response avoid everything the prompt forbids (for example commas or certain words)?"},
  {"id": "language", "question": "Is the response written in the language the prompt asks for?"}
]}"#;

/// The first `n` IFEval prompts with GPT-4's responses as JSONL items.
fn ifeval_items(n: usize) -> String {
    let data = common::repo_root().join("../shared/data/ifeval");
    let keys: Vec<serde_json::Value> = std::fs::read_to_string(data.join("input_data.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let responses: Vec<serde_json::Value> = std::fs::read_to_string(data.join("input_response_data_gpt4_20231107_145030.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    responses
        .iter()
        .take(n)
        .map(|r| {
            let key = keys.iter().find(|k| k["prompt"] == r["prompt"]).map(|k| k["key"].to_string()).unwrap();
            serde_json::json!({"id": key, "input": r["prompt"], "output": r["response"]}).to_string() + "\n"
        })
        .collect()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn judges_twenty_ifeval_items_with_five_checks() {
    let dir = tempfile::tempdir().unwrap();
    let checks = write(dir.path(), "checks.json", CHECKS);
    let items = write(dir.path(), "items.jsonl", &ifeval_items(20));
    let out = dir.path().join("judgments.jsonl");
    let (ok, stderr) = assay(&["judge", "--checks", &checks, "--items", &items, "--out", out.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 100);
    for j in &lines {
        let p = j["p_pass"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&p));
        assert_eq!(j["verdict"] == "PASS", p >= 0.5, "{j}");
    }
    assert!(stderr.contains("score distribution") && stderr.contains("per-check pass rate"), "{stderr}");
}

#[test]
fn bad_checks_and_items_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let good_checks = write(dir.path(), "checks.json", CHECKS);
    let good_items = write(dir.path(), "items.jsonl", &ifeval_items(2));
    let out = dir.path().join("out.jsonl");
    let cases = [
        (write(dir.path(), "empty.json", "[]"), good_items.clone(), "no checks"),
        (write(dir.path(), "dup.json", r#"[{"id": "a", "question": "q?"}, {"id": "a", "question": "r?"}]"#), good_items.clone(), "duplicate check id 'a'"),
        (good_checks.clone(), write(dir.path(), "bad.jsonl", "{\"id\": \"1\", \"input\": \"q\", \"output\": \"a\"}\nnot json\n"), "line 2"),
        (good_checks.clone(), write(dir.path(), "blank.jsonl", "{\"id\": \"1\", \"input\": \"q\", \"output\": \"\"}\n"), "empty output"),
        (good_checks.clone(), write(dir.path(), "long.jsonl", &format!("{{\"id\": \"long-one\", \"input\": \"q\", \"output\": \"{}\"}}\n", "word ".repeat(9000))), "'long-one'"),
    ];
    for (checks, items, expected) in cases {
        let (ok, stderr) = assay(&["judge", "--checks", &checks, "--items", &items, "--out", out.to_str().unwrap()]);
        assert!(!ok && stderr.contains(expected) && !stderr.contains("panicked"), "expected {expected:?} in {stderr}");
        assert!(!out.exists(), "nothing may be written on error");
    }
}
