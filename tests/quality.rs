//! `assay bench quality` end to end with SmolLM2 on a few items of each dataset: every set it
//! promises is made and scored on the test split, with figures in their ranges. Nothing here
//! asserts that the tiny model judges well.

mod common;

use serde_json::Value;

#[test]
fn bench_quality_scores_every_set_on_the_test_split() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(common::assay_bin())
        .args(["bench", "quality", "--items", "4", "--rounds", "1", "--checks", "2", "--generator-tokens", "16", "--work-dir"])
        .arg(dir.path())
        .current_dir(common::repo_root())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    let datasets = result["datasets"].as_array().unwrap();
    assert_eq!(datasets.iter().map(|d| d["dataset"].as_str().unwrap()).collect::<Vec<_>>(), ["llmbar", "ifeval", "medec", "kqa"]);
    for d in datasets {
        let name = d["dataset"].as_str().unwrap();
        let conditions: Vec<&str> = d["conditions"].as_array().unwrap().iter().map(|c| c["condition"].as_str().unwrap()).collect();
        assert_eq!(&conditions[..4], ["a holistic", "b generic", "c discovered", "c weighted"], "{name}");
        // A round of the loop adds a set when refine makes one that ranks the train outputs
        // better; it says why when not.
        assert!(conditions.len() == 5 || stderr.contains("the loop stops"), "{name}: {conditions:?}\n{stderr}");
        // Every figure has its resampled interval; a kept (d) is compared with the rest.
        for c in d["conditions"].as_array().unwrap() {
            let figure = if name == "llmbar" { &c["pairwise_accuracy"] } else { &c["auroc"] };
            if let Some(f) = figure.as_f64() {
                let [low, high] = [c["interval"][0].as_f64().unwrap(), c["interval"][1].as_f64().unwrap()];
                assert!((0.0..=1.0).contains(&f) && 0.0 <= low && low <= high && high <= 1.0, "{c}");
            } else {
                assert!(c["interval"].is_null(), "{c}");
            }
        }
        assert_eq!(d["loop_beats"].as_array().unwrap().len(), if conditions.len() == 5 { 4 } else { 0 }, "{d}");
        // The weighted row re-scores (c)'s judgments: the same set, no more checks than it has.
        let (c, weighted) = (&d["conditions"][2], &d["conditions"][3]);
        assert!(weighted["version"] == c["version"] && weighted["checks"].as_u64() <= c["checks"].as_u64(), "{weighted}");
        let split = (d["train_items"].as_u64().unwrap(), d["test_items"].as_u64().unwrap());
        assert_eq!(split.0 + split.1, if name == "llmbar" { 8 } else { 4 }, "{name}");
        for c in d["conditions"].as_array().unwrap() {
            assert!(c["checks"].as_u64().unwrap() >= 1, "{c}");
            let unit = |k: &str| c[k].is_null() || (0.0..=1.0).contains(&c[k].as_f64().unwrap());
            assert!(unit("auroc") && unit("accuracy") && unit("pass_rate") && unit("pairwise_accuracy"), "{c}");
            assert_eq!(c["pairwise_accuracy"].is_null(), name != "llmbar", "{c}");
            assert!(name == "kqa" || c["recall_spearman"].is_null(), "{c}");
        }
        let (a, b) = (&d["conditions"][0], &d["conditions"][1]);
        assert_eq!((a["checks"].as_u64(), b["checks"].as_u64()), (Some(1), Some(5)));
    }
    // The scratch store holds labels of train items only: the test split's never reach it.
    let db = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).find(|p| p.extension().is_some_and(|e| e == "db")).unwrap();
    let store = assay_store::Store::open(&db).unwrap();
    for project in store.projects().unwrap() {
        let test = store.dataset_by_name(project.id, "test").unwrap();
        assert!(store.check_labels(test.id).unwrap().is_empty(), "{}", project.name);
        // Judge runs raise questions on test items too; nobody answers them.
        let on_test = |q: &assay_store::Question| q.asked.item.is_some_and(|i| store.item(i).unwrap().dataset == test.id);
        assert!(store.questions(project.id, None).unwrap().iter().filter(|q| on_test(q)).all(|q| q.ruling.is_none()), "{}", project.name);
        assert!(store.score_labels(test.id).unwrap().is_empty(), "{}", project.name);
        // On train: a score of every output, and PASS labels only (those of the good outputs).
        let train = store.dataset_by_name(project.id, "train").unwrap();
        assert_eq!(store.score_labels(train.id).unwrap().len(), store.items(train.id).unwrap().len(), "{}", project.name);
        assert!(store.check_labels(train.id).unwrap().iter().all(|l| l.verdict == assay_core::Verdict::Pass), "{}", project.name);
    }
}
