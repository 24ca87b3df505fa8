//! The packed judge pass (all checks of an item branching from one cached prefix, in one
//! forward) gives the same label log-likelihoods as each check's full prompt run alone.

mod common;

use assay_core::{Check, JudgeItem, Verdict};
use assay_engine::judge::{judge_item, judge_prompts, label_logprob_unpacked, p_pass, Labels};
use assay_engine::{EngineError, PrefixCache};

/// Largest |difference| allowed between packed and unpacked label log-likelihoods (measured:
/// 1.1e-5 to 2.1e-5, five times less). Both run every matmul on the dense f32 path; only the summation
/// order of attention differs (prefix and own keys in two softmax parts merged by log-sum-exp).
const LOGPROB_TOLERANCE: f32 = 1e-4;

fn checks() -> Vec<Check> {
    let c = |id: &str, q: &str| Check { id: id.into(), name: id.into(), question: q.into(), pass_criteria: String::new(), fail_examples: vec![], threshold: None };
    let mut with_extras = c("no_jargon", "Does the answer avoid unexplained medical jargon?");
    with_extras.pass_criteria = "Every technical term is explained in plain words.".into();
    with_extras.fail_examples = vec!["Uses 'idiopathic' without saying what it means.".into()];
    vec![
        c("answers_question", "Does the output answer the question that was asked?"),
        c("no_dosage_errors", "Is every medication dose in the output plausible?"),
        with_extras,
        c("recommends_doctor", "Does the output recommend seeing a doctor when symptoms persist?"),
        c("concise", "Is the output shorter than 150 words?"),
    ]
}

fn items() -> Vec<JudgeItem> {
    let text = std::fs::read_to_string(common::repo_root().join("../shared/data/kqa/questions_w_answers.jsonl")).unwrap();
    text.lines()
        .take(3)
        .enumerate()
        .map(|(i, l)| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            JudgeItem { id: format!("kqa-{i}"), input: v["Question"].as_str().unwrap().into(), output: v["Free_form_answer"].as_str().unwrap().into(), context: None }
        })
        .collect()
}

#[test]
fn packed_label_likelihoods_equal_independent_full_prompts() {
    let lm = common::smollm2();
    let checks = checks();
    let labels = Labels::default();
    let (pass_ids, fail_ids) = (lm.tokenizer.encode(&labels.pass).unwrap(), lm.tokenizer.encode(&labels.fail).unwrap());
    let mut worst = 0f32;
    for item in items() {
        let judgments = judge_item(lm, &mut PrefixCache::new(0), &item, &checks, &labels).unwrap();
        assert_eq!(judgments.len(), checks.len());
        let prompts = judge_prompts(lm, &item, &checks).unwrap();
        let prefix_text = lm.tokenizer.decode(&prompts.prefix).unwrap();
        assert!(prefix_text.contains(&item.input) && prefix_text.contains(&item.output) && prefix_text.ends_with("## Criterion\n"));
        for ((j, check), suffix) in judgments.iter().zip(&checks).zip(&prompts.suffixes) {
            assert_eq!(j.check_id, check.id);
            let suffix_text = lm.tokenizer.decode(suffix).unwrap();
            assert!(suffix_text.starts_with(&check.question) && suffix_text.ends_with("assistant\nVerdict:"), "{suffix_text:?}");
            let full: Vec<u32> = prompts.prefix.iter().chain(suffix).copied().collect();
            let lp_pass = label_logprob_unpacked(lm, &full, &pass_ids).unwrap();
            let lp_fail = label_logprob_unpacked(lm, &full, &fail_ids).unwrap();
            let diff = (lp_pass - j.logprob_pass).abs().max((lp_fail - j.logprob_fail).abs());
            worst = worst.max(diff);
            assert!(diff <= LOGPROB_TOLERANCE, "{} / {}: packed ({}, {}) vs alone ({lp_pass}, {lp_fail})", item.id, check.id, j.logprob_pass, j.logprob_fail);
            assert!((p_pass(lp_pass, lp_fail) - j.p_pass).abs() < 1e-3);
            assert!((0.0..=1.0).contains(&j.p_pass) && (0.0..=1.0).contains(&j.off_format_mass));
            assert_eq!(j.verdict == Verdict::Pass, j.p_pass >= 0.5);
        }
    }
    println!("max |packed - alone| label log-likelihood: {worst:.2e}");
}

#[test]
fn single_token_labels_and_thresholds_work() {
    let lm = common::smollm2();
    let mut checks = checks();
    checks[0].threshold = Some(0.0);
    checks[1].threshold = Some(1.0);
    let labels = Labels { pass: " Yes".into(), fail: " No".into() };
    let j = judge_item(lm, &mut PrefixCache::new(0), &items()[0], &checks, &labels).unwrap();
    assert_eq!(j[0].verdict, Verdict::Pass);
    assert_eq!(j[1].verdict, Verdict::Fail);
}

#[test]
fn an_item_longer_than_the_context_names_the_item_and_the_limit() {
    let lm = common::smollm2();
    let item = JudgeItem { id: "huge".into(), input: "q".into(), output: "word ".repeat(9000), context: None };
    match judge_item(lm, &mut PrefixCache::new(0), &item, &checks(), &Labels::default()) {
        Err(e @ EngineError::ItemTooLong { .. }) => assert!(e.to_string().contains("'huge'") && e.to_string().contains("8192"), "{e}"),
        other => panic!("expected ItemTooLong, got {:?}", other.map(|j| j.len())),
    }
}

#[test]
fn a_cached_prefix_gives_the_same_judgments_and_is_counted() {
    let lm = common::smollm2();
    let mut prefixes = PrefixCache::new(64 << 20);
    let item = &items()[1];
    let first = judge_item(lm, &mut prefixes, item, &checks()[..2], &Labels::default()).unwrap();
    let second = judge_item(lm, &mut prefixes, item, &checks()[2..], &Labels::default()).unwrap();
    let again = judge_item(lm, &mut prefixes, item, &checks()[..2], &Labels::default()).unwrap();
    assert_eq!(first, again);
    assert_eq!(second.len(), 3);
    let s = prefixes.stats();
    assert_eq!((s.hits, s.misses, s.entries), (2, 1, 1));
}
