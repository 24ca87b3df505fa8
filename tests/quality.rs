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
        assert_eq!(&conditions[..3], ["a holistic", "b generic", "c discovered"], "{name}");
        // A round of the loop adds a set when refine changes something; it says so when not.
        assert!(conditions.len() == 4 || stderr.contains("refine made no new version"), "{name}: {conditions:?}\n{stderr}");
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
        let train = store.dataset_by_name(project.id, "train").unwrap();
        assert!(!store.check_labels(train.id).unwrap().is_empty(), "{}", project.name);
    }
}
