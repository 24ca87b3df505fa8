//! The packed judge pass (the checks of several items branching from the cached prefix tree,
//! in one forward) gives the same label log-likelihoods as each check's full prompt run alone,
//! whatever was batched with it; rationale and sampled modes are reproducible.

mod common;

use assay_core::{Check, JudgeItem, JudgeMode, JudgeOptions, Judgment, Verdict};
use assay_engine::judge::{judge_items, judge_prompts, score_unpacked, LabelIds, Labels};
use assay_engine::{EngineError, PrefixCache};

/// Largest |difference| allowed between packed and unpacked label log-likelihoods (measured:
/// 2.6e-5, four times less). Both run every matmul on the dense f32 path; only the summation
/// order of attention differs (key blocks of each prefix level, then the own keys, against
/// blocks of the one full prompt).
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

fn judge(lm: &assay_engine::LanguageModel, prefixes: &mut PrefixCache, items: &[JudgeItem], checks: &[Check], labels: &Labels, options: &JudgeOptions) -> Vec<Vec<Judgment>> {
    judge_items(lm, prefixes, items, checks, labels, options, &mut |_| {}).unwrap()
}

#[test]
fn packed_label_likelihoods_equal_independent_full_prompts() {
    let lm = common::smollm2();
    let (items, checks, labels) = (items(), checks(), Labels::default());
    let label_ids = LabelIds::new(lm, &labels).unwrap();
    // All items' checks in one packed pass over the prefix tree.
    let judged = judge(lm, &mut PrefixCache::new(0), &items, &checks, &labels, &JudgeOptions::default());
    let prompts = judge_prompts(lm, &items, &checks, false).unwrap();
    let instructions = lm.tokenizer.decode(&prompts.instructions).unwrap();
    assert!(instructions.contains("strict evaluator") && !instructions.contains("## Task input"), "{instructions:?}");
    let mut worst = 0f32;
    for (i, (item, judgments)) in items.iter().zip(&judged).enumerate() {
        assert_eq!(judgments.len(), checks.len());
        let item_text = lm.tokenizer.decode(&prompts.item(i)).unwrap();
        assert!(item_text.starts_with("## Task input") && item_text.contains(&item.input) && item_text.contains(&item.output) && item_text.ends_with("## Criterion\n"));
        for (c, (j, check)) in judgments.iter().zip(&checks).enumerate() {
            assert_eq!((j.item_id.as_str(), j.check_id.as_str()), (item.id.as_str(), check.id.as_str()));
            let suffix_text = lm.tokenizer.decode(&prompts.suffixes[c]).unwrap();
            assert!(suffix_text.starts_with(&check.question) && suffix_text.ends_with("assistant\nVerdict:"), "{suffix_text:?}");
            let alone = score_unpacked(lm, &prompts.full(i, c), &label_ids).unwrap();
            let diff = (alone.logprob_pass - j.logprob_pass).abs().max((alone.logprob_fail - j.logprob_fail).abs());
            worst = worst.max(diff);
            assert!(diff <= LOGPROB_TOLERANCE, "{} / {}: packed ({}, {}) vs alone ({}, {})", item.id, check.id, j.logprob_pass, j.logprob_fail, alone.logprob_pass, alone.logprob_fail);
            assert!((alone.p_pass() - j.p_pass).abs() < 1e-3);
            assert!((0.0..=1.0).contains(&j.p_pass) && (0.0..=1.0).contains(&j.off_format_mass));
            assert_eq!(j.verdict == Verdict::Pass, j.p_pass >= 0.5);
            assert!(j.rationale.is_none() && j.samples.is_empty() && j.flip_rate.is_none());
        }
    }
    println!("max |packed - alone| label log-likelihood: {worst:.2e}");
}

#[test]
fn outputs_for_one_input_share_its_prefix_and_score_as_alone() {
    let lm = common::smollm2();
    let (checks, labels) = (checks(), Labels::default());
    let label_ids = LabelIds::new(lm, &labels).unwrap();
    // A population: one input, three outputs (the answers of three K-QA questions), and one
    // item with another input.
    let mut items: Vec<JudgeItem> = items().into_iter().map(|i| JudgeItem { input: items()[0].input.clone(), ..i }).collect();
    items.push(JudgeItem { id: "other".into(), ..self::items()[1].clone() });
    // A candidate repeated: it scores exactly as the first.
    items.push(JudgeItem { id: "repeat".into(), ..items[0].clone() });
    let prompts = judge_prompts(lm, &items, &checks, false).unwrap();
    assert_eq!((prompts.inputs.len(), prompts.item_inputs.clone()), (2, vec![0, 0, 0, 1, 0]));
    let input_text = lm.tokenizer.decode(&prompts.inputs[0]).unwrap();
    assert!(input_text.starts_with("## Task input") && !input_text.contains("## Output"), "{input_text:?}");
    let judged = judge(lm, &mut PrefixCache::new(0), &items, &checks, &labels, &JudgeOptions::default());
    let p_pass = |i: usize| judged[i].iter().map(|j| j.p_pass).collect::<Vec<_>>();
    assert_eq!(p_pass(4), p_pass(0), "the repeated candidate scores as the first");
    for (i, judgments) in judged.iter().enumerate() {
        for (c, j) in judgments.iter().enumerate() {
            let alone = score_unpacked(lm, &prompts.full(i, c), &label_ids).unwrap();
            assert!((alone.logprob_pass - j.logprob_pass).abs().max((alone.logprob_fail - j.logprob_fail).abs()) <= LOGPROB_TOLERANCE, "{} / {}", items[i].id, checks[c].id);
        }
    }
}

#[test]
fn a_verdict_does_not_depend_on_what_was_batched_with_it() {
    let lm = common::smollm2();
    let (items, checks, labels) = (items(), checks(), Labels::default());
    let together = judge(lm, &mut PrefixCache::new(0), &items, &checks, &labels, &JudgeOptions::default());
    for (item, want) in items.iter().zip(&together) {
        let alone = judge(lm, &mut PrefixCache::new(0), std::slice::from_ref(item), &checks[1..2], &labels, &JudgeOptions::default());
        assert_eq!(alone[0][0], want[1]);
    }
}

#[test]
fn single_token_labels_and_thresholds_work() {
    let lm = common::smollm2();
    let mut checks = checks();
    checks[0].threshold = Some(0.0);
    checks[1].threshold = Some(1.0);
    let labels = Labels { pass: " Yes".into(), fail: " No".into() };
    let j = judge(lm, &mut PrefixCache::new(0), &items()[..1], &checks, &labels, &JudgeOptions::default());
    assert_eq!(j[0][0].verdict, Verdict::Pass);
    assert_eq!(j[0][1].verdict, Verdict::Fail);
}

#[test]
fn an_item_longer_than_the_context_names_the_item_and_the_limit() {
    let lm = common::smollm2();
    let item = JudgeItem { id: "huge".into(), input: "q".into(), output: "word ".repeat(9000), context: None };
    match judge_items(lm, &mut PrefixCache::new(0), &[items()[0].clone(), item], &checks(), &Labels::default(), &JudgeOptions::default(), &mut |_| panic!("nothing may run")) {
        Err(e @ EngineError::ItemTooLong { .. }) => assert!(e.to_string().contains("'huge'") && e.to_string().contains("8192"), "{e}"),
        other => panic!("expected ItemTooLong, got {:?}", other.map(|j| j.len())),
    }
}

#[test]
fn cached_prefixes_give_the_same_judgments_and_are_counted() {
    let lm = common::smollm2();
    let mut prefixes = PrefixCache::new(256 << 20);
    let (items, checks, labels) = (&items()[1..], checks(), Labels::default());
    let first = judge(lm, &mut prefixes, items, &checks[..2], &labels, &JudgeOptions::default());
    let s = prefixes.stats();
    // The instructions, each item's input and each item's output are computed once.
    assert_eq!((s.hits, s.misses, s.entries), (0, 5, 5));
    let second = judge(lm, &mut prefixes, items, &checks[2..], &labels, &JudgeOptions::default());
    let again = judge(lm, &mut prefixes, items, &checks[..2], &labels, &JudgeOptions::default());
    assert_eq!(first, again);
    assert_eq!(second[0].len(), 3);
    let s = prefixes.stats();
    assert_eq!((s.hits, s.misses, s.entries), (6, 5, 5));
}

#[test]
fn rationale_mode_generates_then_scores_and_is_reproducible() {
    let lm = common::smollm2();
    let (items, checks, labels) = (&items()[..2], &checks()[..3], Labels::default());
    let options = JudgeOptions { mode: JudgeMode::Rationale, rationale_tokens: 12, ..JudgeOptions::default() };
    let mut done = Vec::new();
    let judged = judge_items(lm, &mut PrefixCache::new(0), items, checks, &labels, &options, &mut |n| done.push(n)).unwrap();
    assert_eq!(done.last(), Some(&6));
    for j in judged.iter().flatten() {
        let r = j.rationale.as_deref().expect("rationale mode reports the rationale");
        assert!(!r.contains('\n') && lm.tokenizer.encode(r).unwrap().len() <= 12 + 1, "{r:?}");
        assert_eq!(j.verdict == Verdict::Pass, j.p_pass >= 0.5);
        assert!(j.samples.is_empty());
    }
    // Greedy rationales: the same again, and the same for an item judged alone.
    assert_eq!(judge(lm, &mut PrefixCache::new(0), items, checks, &labels, &options), judged);
    assert_eq!(judge(lm, &mut PrefixCache::new(0), &items[1..], checks, &labels, &options)[0], judged[1]);
}

#[test]
fn sampled_rationales_report_each_verdict_and_the_flip_rate() {
    let lm = common::smollm2();
    let (items, checks, labels) = (&items()[..1], &checks()[..2], Labels::default());
    let options = JudgeOptions { samples: 4, temperature: 1.0, rationale_tokens: 8, seed: 7, ..JudgeOptions::default() };
    let judged = judge(lm, &mut PrefixCache::new(0), items, checks, &labels, &options);
    for j in &judged[0] {
        assert_eq!(j.samples.len(), 4);
        let mean = j.samples.iter().map(|s| s.p_pass).sum::<f32>() / 4.0;
        assert!((mean - j.p_pass).abs() < 1e-6);
        let flips = j.samples.iter().filter(|s| s.verdict != j.verdict).count() as f32 / 4.0;
        assert_eq!(j.flip_rate, Some(flips));
        assert!(j.samples.iter().all(|s| s.verdict == Verdict::at(s.p_pass, 0.5)));
    }
    // Seeded: the same samples again; another seed draws other rationales.
    assert_eq!(judge(lm, &mut PrefixCache::new(0), items, checks, &labels, &options), judged);
    let other = judge(lm, &mut PrefixCache::new(0), items, checks, &labels, &JudgeOptions { seed: 8, ..options.clone() });
    let texts = |js: &[Judgment]| js.iter().flat_map(|j| j.samples.iter().map(|s| s.rationale.clone())).collect::<Vec<_>>();
    assert_ne!(texts(&other[0]), texts(&judged[0]));
    // Bad options are refused before any work.
    let bad = JudgeOptions { samples: 3, temperature: 0.0, ..JudgeOptions::default() };
    assert!(matches!(judge_items(lm, &mut PrefixCache::new(0), items, checks, &labels, &bad, &mut |_| {}), Err(EngineError::InvalidInput(_))));
}
