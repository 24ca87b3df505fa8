//! Judging through the engine with the real SmolLM2: the checks of an item run as branches of
//! its blocks, found from token ids alone, and give the same label log-likelihoods as each
//! check's full prompt run alone, whatever was judged with them or before them; rationale and
//! sampled modes are reproducible.

mod common;

use assay_core::{Check, JudgeItem, JudgeMode, JudgeOptions, JudgedExample, Judgment, Verdict};
use assay_engine::judge::{judge_prompts, score_alone, Labels};
use assay_engine::{Engine, EngineError};

/// Largest |difference| allowed between judged and alone label log-likelihoods. On the CPU
/// both compute every row with the same arithmetic (equal bit for bit); the candle-ops path
/// (GPUs) merges shared segments by log-sum-exp, which rounds differently (~1e-5).
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

fn judge(engine: &Engine, items: &[JudgeItem], checks: &[Check], labels: &Labels, options: &JudgeOptions) -> Vec<Vec<Judgment>> {
    engine.judge_blocking(items, checks.to_vec(), labels, options.clone(), &mut |_| {}).unwrap()
}

/// Checks every judgment against its full prompt computed alone.
fn assert_equal_alone(items: &[JudgeItem], checks: &[Check], judged: &[Vec<Judgment>], labels: &Labels, options: &JudgeOptions) -> f32 {
    let lm = common::smollm2();
    let prompts = judge_prompts(lm, items, checks, options).unwrap();
    let mut worst = 0f32;
    for (i, (item, judgments)) in items.iter().zip(judged).enumerate() {
        assert_eq!(judgments.len(), checks.len());
        for (c, (j, check)) in judgments.iter().zip(checks).enumerate() {
            assert_eq!((j.item_id.as_str(), j.check_id.as_str()), (item.id.as_str(), check.id.as_str()));
            let alone = score_alone(lm, &prompts.full(i, c), labels).unwrap();
            let diff = (alone.logprob_pass - j.logprob_pass).abs().max((alone.logprob_fail - j.logprob_fail).abs());
            worst = worst.max(diff);
            assert!(diff <= LOGPROB_TOLERANCE, "{} / {}: judged ({}, {}) vs alone ({}, {})", item.id, check.id, j.logprob_pass, j.logprob_fail, alone.logprob_pass, alone.logprob_fail);
            assert!((alone.p_pass() - j.p_pass).abs() < 1e-3);
            assert!((0.0..=1.0).contains(&j.p_pass) && (0.0..=1.0).contains(&j.off_format_mass));
            assert_eq!(j.verdict, Verdict::at(j.p_pass, check.threshold()));
        }
    }
    worst
}

#[test]
fn judging_through_the_pool_equals_each_full_prompt_alone() {
    let engine = common::smollm2_engine(512);
    let (items, checks, labels) = (items(), checks(), Labels::default());
    let judged = judge(&engine, &items, &checks, &labels, &JudgeOptions::default());
    let prompts = judge_prompts(common::smollm2(), &items, &checks, &JudgeOptions::default()).unwrap();
    let lm = common::smollm2();
    let instructions = lm.tokenizer.decode(&prompts.instructions).unwrap();
    assert!(instructions.contains("strict evaluator") && !instructions.contains("## Task input"), "{instructions:?}");
    for (i, item) in items.iter().enumerate() {
        let item_text = lm.tokenizer.decode(&prompts.item(i)).unwrap();
        assert!(item_text.starts_with("## Task input") && item_text.contains(&item.input) && item_text.contains(&item.output) && item_text.ends_with("## Criterion\n"));
    }
    for (c, check) in checks.iter().enumerate() {
        let suffix_text = lm.tokenizer.decode(&prompts.suffixes[c]).unwrap();
        assert!(suffix_text.starts_with(&check.question) && suffix_text.ends_with("assistant\nVerdict:"), "{suffix_text:?}");
    }
    for j in judged.iter().flatten() {
        assert!(j.rationale.is_none() && j.samples.is_empty() && j.flip_rate.is_none());
    }
    let worst = assert_equal_alone(&items, &checks, &judged, &labels, &JudgeOptions::default());
    // Every unit but the first found the instructions, and each item's checks its item.
    let s = engine.stats().scheduler;
    let item_tokens: u64 = (0..items.len()).map(|i| (prompts.instructions.len() + prompts.item(i).len()) as u64).sum();
    assert!(s.reused_tokens >= item_tokens * (checks.len() as u64 - 1), "reused {} tokens: {s:?}", s.reused_tokens);
    println!("max |judged - alone| label log-likelihood: {worst:.2e}; {} of {} prompt tokens reused", s.reused_tokens, s.prompt_tokens);
}

#[test]
fn judged_examples_are_shared_instructions_and_score_as_alone() {
    let engine = common::smollm2_engine(512);
    let (items, checks, labels) = (items(), checks(), Labels::default());
    let example = |output: &str, accepted: bool, note: &str| JudgedExample { item: None, input: "Name a primary colour.".into(), output: output.into(), accepted, note: note.into() };
    let options = JudgeOptions { examples: vec![example("Red.", true, ""), example("Green.", false, "green is not a primary colour of paint")], ..JudgeOptions::default() };
    let judged = judge(&engine, &items, &checks, &labels, &options);
    let lm = common::smollm2();
    let prompts = judge_prompts(lm, &items, &checks, &options).unwrap();
    let plain = judge_prompts(lm, &items, &checks, &JudgeOptions::default()).unwrap();
    let instructions = lm.tokenizer.decode(&prompts.instructions).unwrap();
    assert!(instructions.contains("Output: Green.") && instructions.contains("REJECTED it. Their note: green is not") && !instructions.contains("## Task input"), "{instructions:?}");
    // Only the shared instructions change: items and checks are the same ids.
    assert!(prompts.instructions.len() > plain.instructions.len());
    assert_eq!((prompts.inputs.clone(), prompts.outputs.clone(), prompts.suffixes.clone()), (plain.inputs, plain.outputs, plain.suffixes));
    assert_equal_alone(&items, &checks, &judged, &labels, &options);
    // The examples are computed once: every other unit finds them in the tree.
    let units = (items.len() * checks.len()) as u64;
    let s = engine.stats().scheduler;
    assert!(s.reused_tokens >= prompts.instructions.len() as u64 * (units - 1), "reused {} tokens: {s:?}", s.reused_tokens);
    let too_many = JudgeOptions { examples: vec![example("Red.", true, ""); JudgeOptions::MAX_EXAMPLES + 1], ..JudgeOptions::default() };
    let err = engine.judge_blocking(&items, checks.clone(), &labels, too_many, &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("at most 8 judged examples"), "{err}");
}

#[test]
fn the_tree_of_an_item_is_found_from_token_ids_across_requests() {
    let engine = common::smollm2_engine(512);
    let lm = common::smollm2();
    let (items, checks, labels) = (items(), checks(), Labels::default());
    let prompts = judge_prompts(lm, &items[..1], &checks, &JudgeOptions::default()).unwrap();
    let item_prefix = prompts.instructions.len() + prompts.item(0).len();
    // Each check of one item in a request of its own.
    let mut separate = Vec::new();
    let mut reused = Vec::new();
    for c in 0..checks.len() {
        let before = engine.stats().scheduler.reused_tokens;
        separate.push(judge(&engine, &items[..1], &checks[c..c + 1], &labels, &JudgeOptions::default())[0][0].clone());
        reused.push(engine.stats().scheduler.reused_tokens - before);
    }
    // The first request computes the item; every later one finds at least the item's blocks
    // for each of its label sequences.
    let sequences_per_check = 1 + usize::from(lm.tokenizer.encode(&labels.fail).unwrap().len() > 1);
    for (c, &r) in reused.iter().enumerate().skip(1) {
        assert!(r as usize >= sequences_per_check * item_prefix, "check {c}: reused {r} tokens of a {item_prefix}-token item prefix");
    }
    let s = engine.stats().scheduler;
    println!("reused per request {reused:?}; item prefix {item_prefix} tokens; {} blocks cached", s.cached_blocks);
    // And the verdicts equal one request with all checks, on a cold engine.
    let together = judge(&common::smollm2_engine(512), &items[..1], &checks, &labels, &JudgeOptions::default());
    assert_eq!(separate, together[0]);
}

#[test]
fn outputs_for_one_input_share_its_prefix_and_score_as_alone() {
    let engine = common::smollm2_engine(512);
    let (checks, labels) = (checks(), Labels::default());
    // A population: one input, three outputs (the answers of three K-QA questions), and one
    // item with another input.
    let mut items: Vec<JudgeItem> = items().into_iter().map(|i| JudgeItem { input: items()[0].input.clone(), ..i }).collect();
    items.push(JudgeItem { id: "other".into(), ..self::items()[1].clone() });
    // A candidate repeated: it scores exactly as the first.
    items.push(JudgeItem { id: "repeat".into(), ..items[0].clone() });
    let prompts = judge_prompts(common::smollm2(), &items, &checks, &JudgeOptions::default()).unwrap();
    assert_eq!((prompts.inputs.len(), prompts.item_inputs.clone()), (2, vec![0, 0, 0, 1, 0]));
    let judged = judge(&engine, &items, &checks, &labels, &JudgeOptions::default());
    let p_pass = |i: usize| judged[i].iter().map(|j| j.p_pass).collect::<Vec<_>>();
    assert_eq!(p_pass(4), p_pass(0), "the repeated candidate scores as the first");
    assert_equal_alone(&items, &checks, &judged, &labels, &JudgeOptions::default());
}

#[test]
fn a_verdict_does_not_depend_on_what_was_judged_with_it() {
    let (items, checks, labels) = (items(), checks(), Labels::default());
    let together = judge(&common::smollm2_engine(512), &items, &checks, &labels, &JudgeOptions::default());
    for (item, want) in items.iter().zip(&together) {
        let alone = judge(&common::smollm2_engine(64), std::slice::from_ref(item), &checks[1..2], &labels, &JudgeOptions::default());
        assert_eq!(alone[0][0], want[1]);
    }
}

#[test]
fn single_token_labels_and_thresholds_work() {
    let engine = common::smollm2_engine(256);
    let mut checks = checks();
    checks[0].threshold = Some(0.0);
    checks[1].threshold = Some(1.0);
    let labels = Labels { pass: " Yes".into(), fail: " No".into() };
    let j = judge(&engine, &items()[..1], &checks, &labels, &JudgeOptions::default());
    assert_eq!(j[0][0].verdict, Verdict::Pass);
    assert_eq!(j[0][1].verdict, Verdict::Fail);
    assert_equal_alone(&items()[..1], &checks, &j, &labels, &JudgeOptions::default());
}

#[test]
fn an_item_longer_than_the_context_names_the_item_and_the_limit() {
    let engine = common::smollm2_engine(512);
    let item = JudgeItem { id: "huge".into(), input: "q".into(), output: "word ".repeat(9000), context: None };
    match engine.judge_blocking(&[items()[0].clone(), item], checks(), &Labels::default(), JudgeOptions::default(), &mut |_| {}) {
        Err(e @ EngineError::ItemTooLong { .. }) => assert!(e.to_string().contains("'huge'") && e.to_string().contains("8192"), "{e}"),
        other => panic!("expected ItemTooLong, got {:?}", other.map(|j| j.len())),
    }
    assert_eq!(engine.stats().scheduler.steps, 0, "nothing ran");
}

#[test]
fn rationale_mode_generates_then_scores_and_is_reproducible() {
    let lm = common::smollm2();
    let engine = common::smollm2_engine(512);
    let (items, checks, labels) = (&items()[..2], &checks()[..3], Labels::default());
    let options = JudgeOptions { mode: JudgeMode::Rationale, rationale_tokens: 12, ..JudgeOptions::default() };
    let mut done = Vec::new();
    let judged = engine.judge_blocking(items, checks.to_vec(), &labels, options.clone(), &mut |n| done.push(n)).unwrap();
    assert_eq!(done.last(), Some(&6));
    assert!(done.windows(2).all(|w| w[0] <= w[1]), "progress only grows: {done:?}");
    for j in judged.iter().flatten() {
        let r = j.rationale.as_deref().expect("rationale mode reports the rationale");
        assert!(!r.contains('\n') && lm.tokenizer.encode(r).unwrap().len() <= 12 + 1, "{r:?}");
        assert_eq!(j.verdict == Verdict::Pass, j.p_pass >= 0.5);
        assert!(j.samples.is_empty());
    }
    // Greedy rationales: the same again (now from cached prefixes), and for an item alone.
    assert_eq!(judge(&engine, items, checks, &labels, &options), judged);
    assert_eq!(judge(&common::smollm2_engine(256), &items[1..], checks, &labels, &options)[0], judged[1]);
}

#[test]
fn sampled_rationales_report_each_verdict_and_the_flip_rate() {
    let engine = common::smollm2_engine(512);
    let (items, checks, labels) = (&items()[..1], &checks()[..2], Labels::default());
    let options = JudgeOptions { samples: 4, temperature: 1.0, rationale_tokens: 8, seed: 7, ..JudgeOptions::default() };
    let judged = judge(&engine, items, checks, &labels, &options);
    for j in &judged[0] {
        assert_eq!(j.samples.len(), 4);
        let mean = j.samples.iter().map(|s| s.p_pass).sum::<f32>() / 4.0;
        assert!((mean - j.p_pass).abs() < 1e-6);
        let flips = j.samples.iter().filter(|s| s.verdict != j.verdict).count() as f32 / 4.0;
        assert_eq!(j.flip_rate, Some(flips));
        assert!(j.samples.iter().all(|s| s.verdict == Verdict::at(s.p_pass, 0.5)));
    }
    // Seeded: the same samples again; another seed draws other rationales.
    assert_eq!(judge(&engine, items, checks, &labels, &options), judged);
    let other = judge(&engine, items, checks, &labels, &JudgeOptions { seed: 8, ..options.clone() });
    let texts = |js: &[Judgment]| js.iter().flat_map(|j| j.samples.iter().map(|s| s.rationale.clone())).collect::<Vec<_>>();
    assert_ne!(texts(&other[0]), texts(&judged[0]));
    // Bad options are refused before any work.
    let bad = JudgeOptions { samples: 3, temperature: 0.0, ..JudgeOptions::default() };
    assert!(matches!(engine.judge_blocking(items, checks.to_vec(), &labels, bad, &mut |_| {}), Err(EngineError::InvalidInput(_))));
}
