//! Judging: binary checks scored from label log-likelihoods.
//!
//! The judge prompt (rendered with the judge model's chat template) is built in four parts:
//!
//! ```text
//! system: You are a strict evaluator. ...             } instructions: shared by every item
//! user:   ## Task input / ## Context                   } input: shared by items with the same input
//!         ## Output to evaluate / ## Criterion         } output: shared by the item's checks
//!         <question> / PASS means / Examples of FAIL   \  suffix: one per check
//! assistant: Verdict:                                  /
//! ```
//!
//! The system message ends with the expert's judged examples when the options carry some
//! (few-shot): in the shared instructions, computed once for every item and check.
//!
//! The prompt is followed by a label (" PASS" or " FAIL", configurable). Each part is tokenized
//! on its own and the ids are joined, so no token straddles a boundary and equal parts are equal
//! ids.
//! That is all the sharing needs: every (item, check) is a sequence of the scheduler, and the
//! radix tree finds from the token ids alone that the instructions, each input and each item
//! were computed before; the checks of an item run as branches of its blocks, many items'
//! checks in one step (`scheduler.rs`). The LM head runs only on the rows that predict label
//! tokens.
//!
//! In rationale mode the assistant turn opens with "Reasoning:"; every check's sequence first
//! generates a short rationale (to a line break, an end token or the token budget), then
//! "\nVerdict:" and the labels are scored after it (a new sequence, which finds the rationale's
//! keys in the tree). Judge sequences run on the dense path of a serving engine, so a verdict
//! does not depend on what was judged with it.

use crate::chat::ChatMessage;
use crate::error::{EngineError, Result};
use crate::language_model::LanguageModel;
use crate::sequence::{Owner, SeqOutput, Sequence};
use assay_core::InputError;
use assay_core::{Check, JudgeItem, JudgeOptions, JudgeSample, JudgedExample, Judgment, SamplingParams, Verdict};
use std::collections::HashMap;

const SYSTEM: &str = "You are a strict evaluator. You judge one criterion at a time. Answer PASS if the output meets the criterion and FAIL if it does not.";
/// Mark where the item and the check-specific text go; never in a template's own text.
const ITEM_MARK: &str = "\u{1}ASSAY-ITEM\u{1}";
const OUTPUT_MARK: &str = "\u{1}ASSAY-OUTPUT\u{1}";
const CHECK_MARK: &str = "\u{1}ASSAY-CHECK\u{1}";
/// How the assistant turn opens: straight to the verdict, or with reasoning first.
const VERDICT_LEAD: &str = "Verdict:";
const REASONING_LEAD: &str = "Reasoning:";
const VERDICT_AFTER_REASONING: &str = "\nVerdict:";

/// The two answers a judge can give, as text appended after "Verdict:".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labels {
    pub pass: String,
    pub fail: String,
}

impl Default for Labels {
    fn default() -> Self {
        Self { pass: " PASS".into(), fail: " FAIL".into() }
    }
}

/// The token ids of the judge prompts of some items and checks, in their four parts.
#[derive(Debug, Clone, Default)]
pub struct JudgePrompts {
    /// Shared by every item.
    pub instructions: Vec<u32>,
    /// Each distinct input (task input and context), continuing the instructions.
    pub inputs: Vec<Vec<u32>>,
    /// Per item, the index of its input in `inputs`.
    pub item_inputs: Vec<usize>,
    /// Per item, its output, continuing its input.
    pub outputs: Vec<Vec<u32>>,
    /// Per check, continuing any item.
    pub suffixes: Vec<Vec<u32>>,
}

impl JudgePrompts {
    /// The ids of an item's part of the prompt: its input, then its output.
    pub fn item(&self, item: usize) -> Vec<u32> {
        [&self.inputs[self.item_inputs[item]], &self.outputs[item]].into_iter().flatten().copied().collect()
    }

    /// The ids of the whole prompt of one item and one check.
    pub fn full(&self, item: usize, check: usize) -> Vec<u32> {
        [&self.instructions, &self.item(item), &self.suffixes[check]].into_iter().flatten().copied().collect()
    }
}

/// Builds the token ids of the judge prompts of `items` for `checks` under `options`: its judged
/// examples go into the shared instructions, and rationale mode opens the assistant turn with
/// "Reasoning:" instead of "Verdict:".
pub fn judge_prompts(lm: &LanguageModel, items: &[JudgeItem], checks: &[Check], options: &JudgeOptions) -> Result<JudgePrompts> {
    let broken = |reason: &str| EngineError::ChatTemplate { model: lm.name.clone(), reason: reason.into() };
    let mut instructions: Option<String> = None;
    let mut tail: Option<String> = None;
    let mut inputs: Vec<Vec<u32>> = Vec::new();
    let mut input_index: HashMap<String, usize> = HashMap::new();
    let mut item_inputs = Vec::with_capacity(items.len());
    let mut outputs = Vec::with_capacity(items.len());
    let system = system_text(&options.examples);
    for item in items {
        let mut user = format!("{ITEM_MARK}## Task input\n{}\n\n", item.input);
        if let Some(ctx) = item.context.as_deref().filter(|c| !c.trim().is_empty()) {
            user.push_str(&format!("## Context\n{ctx}\n\n"));
        }
        user.push_str(&format!("{OUTPUT_MARK}## Output to evaluate\n{}\n\n## Criterion\n{CHECK_MARK}", item.output));
        let rendered = lm.template.render(&[ChatMessage::new("system", &system), ChatMessage::new("user", &user)], true)?;
        let (shared, rest) = rendered.split_once(ITEM_MARK).ok_or_else(|| broken("the chat template dropped the user message"))?;
        let (input_text, rest) = rest.split_once(OUTPUT_MARK).ok_or_else(|| broken("the chat template dropped part of the user message"))?;
        let (output_text, suffix_template) = rest.split_once(CHECK_MARK).ok_or_else(|| broken("the chat template dropped the end of the user message"))?;
        if instructions.get_or_insert_with(|| shared.to_string()) != shared || tail.get_or_insert_with(|| suffix_template.to_string()) != suffix_template {
            return Err(broken("the chat template renders the shared instructions differently per item"));
        }
        let input = match input_index.get(input_text) {
            Some(&i) => i,
            None => {
                inputs.push(lm.tokenizer.encode(input_text)?);
                input_index.insert(input_text.to_string(), inputs.len() - 1);
                inputs.len() - 1
            }
        };
        item_inputs.push(input);
        outputs.push(lm.tokenizer.encode(output_text)?);
    }
    let (Some(instructions), Some(tail)) = (instructions, tail) else {
        return Err(EngineError::EmptyPrompt);
    };
    let lead = if options.generates_rationales() { REASONING_LEAD } else { VERDICT_LEAD };
    let suffixes = checks.iter().map(|c| lm.tokenizer.encode(&format!("{}{tail}{lead}", check_text(c)))).collect::<Result<Vec<_>>>()?;
    Ok(JudgePrompts { instructions: lm.tokenizer.encode(&instructions)?, inputs, item_inputs, outputs, suffixes })
}

/// The system message: the evaluator's instructions, then the expert's judged examples (each
/// text cut to `EXAMPLE_CHARS`, so a few long outputs cannot crowd out the item judged).
fn system_text(examples: &[JudgedExample]) -> String {
    let mut s = SYSTEM.to_string();
    if examples.is_empty() {
        return s;
    }
    s.push_str("\n\nOutputs the expert has already judged on this task, to show where they draw the line:");
    for (n, e) in examples.iter().enumerate() {
        let verdict = if e.accepted { "ACCEPTED" } else { "REJECTED" };
        s.push_str(&format!("\n\n### Example {}\nTask input: {}\nOutput: {}\nThe expert {verdict} it.", n + 1, cut(&e.input), cut(&e.output)));
        if !e.note.trim().is_empty() {
            s.push_str(&format!(" Their note: {}", cut(&e.note)));
        }
    }
    s
}

/// Most characters of one text of a judged example.
const EXAMPLE_CHARS: usize = 1200;

fn cut(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(EXAMPLE_CHARS) {
        Some((at, _)) => format!("{} [...]", &text[..at]),
        None => text.to_string(),
    }
}

fn check_text(c: &Check) -> String {
    let mut s = c.question.trim().to_string();
    if !c.pass_criteria.trim().is_empty() {
        s.push_str(&format!("\nPASS means: {}", c.pass_criteria.trim()));
    }
    if !c.fail_examples.is_empty() {
        s.push_str("\nExamples of FAIL:");
        for e in &c.fail_examples {
            s.push_str(&format!("\n- {}", e.trim()));
        }
    }
    s.push_str("\nAnswer with PASS or FAIL.");
    s
}

/// Token ids of both labels, checked to be usable.
#[derive(Debug, Clone)]
pub struct LabelIds {
    pass: Vec<u32>,
    fail: Vec<u32>,
}

impl LabelIds {
    pub fn new(lm: &LanguageModel, labels: &Labels) -> Result<Self> {
        let pass = lm.tokenizer.encode(&labels.pass)?;
        let fail = lm.tokenizer.encode(&labels.fail)?;
        if pass.is_empty() || fail.is_empty() || pass == fail {
            return Err(InputError::Labels { pass: labels.pass.clone(), fail: labels.fail.clone() }.into());
        }
        Ok(Self { pass, fail })
    }

    pub fn longest(&self) -> usize {
        self.pass.len().max(self.fail.len())
    }
}

/// What the label log-likelihoods say after one prompt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LabelScores {
    /// Log-likelihood of the whole pass label's token sequence.
    pub logprob_pass: f32,
    pub logprob_fail: f32,
    /// Probability of a first label token that starts neither label.
    pub off_format_mass: f32,
}

impl LabelScores {
    /// P(pass) from the two label log-likelihoods.
    pub fn p_pass(&self) -> f32 {
        1.0 / (1.0 + (self.logprob_fail - self.logprob_pass).exp())
    }

    fn sample(&self, rationale: String, threshold: f32) -> JudgeSample {
        let p = self.p_pass();
        JudgeSample { rationale, verdict: Verdict::at(p, threshold), p_pass: p, logprob_pass: self.logprob_pass, logprob_fail: self.logprob_fail, off_format_mass: self.off_format_mass }
    }
}

/// One check asked of one item (one sample of it). Units are numbered item-major, so the
/// checks of an item are started together and share its blocks.
#[derive(Debug, Clone, Copy)]
struct Unit {
    item: usize,
    check: usize,
    sample: usize,
}

/// The sequences of a unit, by stage; an owner index is `unit * STAGES + stage`.
const STAGES: usize = 3;
const RATIONALE: usize = 0;
const PASS: usize = 1;
const FAIL: usize = 2;

/// A unit between its stages: its rationale's text and the label rows scored so far.
#[derive(Default)]
struct Pending {
    rationale: String,
    pass_rows: Option<Vec<Vec<f32>>>,
    fail_rows: Option<Vec<Vec<f32>>>,
}

/// A judge request inside the engine: its units, started a window at a time, and their
/// results. The engine thread feeds it sequence outputs; it answers with the next sequences.
pub struct JudgeJob {
    prompts: JudgePrompts,
    item_ids: Vec<String>,
    checks: Vec<Check>,
    labels: LabelIds,
    options: JudgeOptions,
    /// "\nVerdict:" after a rationale.
    lead: Vec<u32>,
    units: usize,
    next_unit: usize,
    in_flight: usize,
    pending: HashMap<usize, Pending>,
    /// Per (item, check): each sample's result.
    samples: Vec<Vec<Option<JudgeSample>>>,
    pairs_done: usize,
}

impl JudgeJob {
    /// Builds the prompts (on the caller's thread: tokenizing many items takes time) and checks
    /// that every unit fits `limit` tokens (the context, or the KV pool if smaller).
    pub fn new(lm: &LanguageModel, items: &[JudgeItem], checks: Vec<Check>, labels: &Labels, options: JudgeOptions, limit: usize) -> Result<Self> {
        options.validate()?;
        if checks.is_empty() {
            return Err(assay_core::InputError::NoChecks.into());
        }
        let labels = LabelIds::new(lm, labels)?;
        let rationale = options.generates_rationales();
        let lead = lm.tokenizer.encode(VERDICT_AFTER_REASONING)?;
        let prompts = if items.is_empty() { JudgePrompts::default() } else { judge_prompts(lm, items, &checks, &options)? };
        let after_suffix = labels.longest() + if rationale { options.rationale_tokens + lead.len() } else { 0 };
        let longest_suffix = prompts.suffixes.iter().map(Vec::len).max().unwrap_or(0);
        for (i, item) in items.iter().enumerate() {
            let tokens = prompts.instructions.len() + prompts.item(i).len() + longest_suffix + after_suffix;
            if tokens > limit {
                return Err(EngineError::ItemTooLong { item: item.id.clone(), tokens, limit });
            }
        }
        let units = items.len() * checks.len() * options.samples;
        Ok(Self {
            samples: vec![vec![None; options.samples]; items.len() * checks.len()],
            item_ids: items.iter().map(|i| i.id.clone()).collect(),
            prompts,
            checks,
            labels,
            options,
            lead,
            units,
            next_unit: 0,
            in_flight: 0,
            pending: HashMap::new(),
            pairs_done: 0,
        })
    }

    /// Judgments asked for (items x checks).
    pub fn total(&self) -> usize {
        self.samples.len()
    }

    /// Judgments complete.
    pub fn done(&self) -> usize {
        self.pairs_done
    }

    pub fn is_complete(&self) -> bool {
        self.pairs_done == self.samples.len()
    }

    fn unit(&self, u: usize) -> Unit {
        let per_item = self.checks.len() * self.options.samples;
        Unit { item: u / per_item, check: (u % per_item) / self.options.samples, sample: u % self.options.samples }
    }

    /// Sequences of the units to start now, keeping at most `window` units in flight.
    pub fn start_units(&mut self, request: u64, window: usize) -> Vec<Sequence> {
        let mut out = Vec::new();
        while self.in_flight < window && self.next_unit < self.units {
            let u = self.next_unit;
            self.next_unit += 1;
            self.in_flight += 1;
            let unit = self.unit(u);
            let prompt = self.prompts.full(unit.item, unit.check);
            if self.options.generates_rationales() {
                let temperature = if self.options.samples > 1 { self.options.temperature } else { 0.0 };
                let seed = unit_seed(self.options.seed, &self.item_ids[unit.item], &self.checks[unit.check].id, unit.sample);
                let params = SamplingParams { temperature, seed: Some(seed), max_tokens: self.options.rationale_tokens, ..SamplingParams::default() };
                out.push(Sequence::generate(Owner { request, index: u * STAGES + RATIONALE }, prompt, params, self.options.rationale_tokens, true));
                self.pending.insert(u, Pending::default());
            } else {
                out.extend(self.label_sequences(request, u, prompt));
            }
        }
        out
    }

    /// The sequences scoring both labels after `prompt`: the pass label's rows (its first row
    /// also scores the fail label's first token), and the rest of a longer fail label.
    fn label_sequences(&mut self, request: u64, u: usize, prompt: Vec<u32>) -> Vec<Sequence> {
        let (a, b) = (&self.labels.pass, &self.labels.fail);
        let n = prompt.len();
        let mut out = Vec::with_capacity(2);
        let mut rows = vec![vec![a[0], b[0]]];
        rows.extend(a[1..].iter().map(|&t| vec![t]));
        let tokens: Vec<u32> = prompt.iter().chain(&a[..a.len() - 1]).copied().collect();
        out.push(Sequence::score(Owner { request, index: u * STAGES + PASS }, tokens, n - 1, rows));
        let pending = self.pending.entry(u).or_default();
        if b.len() > 1 {
            let tokens: Vec<u32> = prompt.iter().chain(&b[..b.len() - 1]).copied().collect();
            out.push(Sequence::score(Owner { request, index: u * STAGES + FAIL }, tokens, n, b[1..].iter().map(|&t| vec![t]).collect()));
        } else {
            pending.fail_rows = Some(Vec::new());
        }
        out
    }

    /// Takes one of this job's sequence outputs; returns the sequences it starts.
    pub fn on_output(&mut self, lm: &LanguageModel, output: SeqOutput) -> Result<Vec<Sequence>> {
        let (owner, stage) = match &output {
            SeqOutput::Text { .. } => return Ok(Vec::new()),
            SeqOutput::Finished { owner, .. } | SeqOutput::Scored { owner, .. } => (*owner, owner.index % STAGES),
        };
        let u = owner.index / STAGES;
        match (stage, output) {
            (RATIONALE, SeqOutput::Finished { generation, .. }) => {
                let mut ids = generation.token_ids;
                if ids.last().is_some_and(|&t| lm.tokenizer.is_stop(t) || lm.tokenizer.token_text(t).contains('\n')) {
                    ids.pop();
                }
                let unit = self.unit(u);
                let prompt: Vec<u32> = self.prompts.full(unit.item, unit.check).into_iter().chain(ids.iter().copied()).chain(self.lead.iter().copied()).collect();
                self.pending.entry(u).or_default().rationale = lm.tokenizer.decode(&ids)?.trim().to_string();
                Ok(self.label_sequences(owner.request, u, prompt))
            }
            (PASS, SeqOutput::Scored { scores, .. }) => {
                self.pending.entry(u).or_default().pass_rows = Some(scores);
                self.finish_unit(u);
                Ok(Vec::new())
            }
            (FAIL, SeqOutput::Scored { scores, .. }) => {
                self.pending.entry(u).or_default().fail_rows = Some(scores);
                self.finish_unit(u);
                Ok(Vec::new())
            }
            _ => Err(EngineError::Internal(format!("judge job: unexpected output for stage {stage}"))),
        }
    }

    /// Records a unit once both labels are scored.
    fn finish_unit(&mut self, u: usize) {
        if !self.pending.get(&u).is_some_and(|p| p.pass_rows.is_some() && p.fail_rows.is_some()) {
            return;
        }
        let p = self.pending.remove(&u).expect("checked above");
        let (pass, fail) = (p.pass_rows.expect("checked"), p.fail_rows.expect("checked"));
        let (lp_first_a, lp_first_b) = (pass[0][0], pass[0][1]);
        let logprob_pass = lp_first_a + pass[1..].iter().map(|r| r[0]).sum::<f32>();
        let logprob_fail = lp_first_b + fail.iter().map(|r| r[0]).sum::<f32>();
        let off = if self.labels.pass[0] == self.labels.fail[0] { 1.0 - lp_first_a.exp() } else { 1.0 - lp_first_a.exp() - lp_first_b.exp() };
        let scores = LabelScores { logprob_pass, logprob_fail, off_format_mass: off.max(0.0) };
        let unit = self.unit(u);
        let pair = unit.item * self.checks.len() + unit.check;
        self.samples[pair][unit.sample] = Some(scores.sample(p.rationale, self.checks[unit.check].threshold()));
        self.in_flight -= 1;
        if self.samples[pair].iter().all(Option::is_some) {
            self.pairs_done += 1;
        }
    }

    /// Per item its judgments in check order (once complete).
    pub fn into_judgments(self) -> Vec<Vec<Judgment>> {
        let rationale = self.options.generates_rationales();
        let mut samples = self.samples.into_iter();
        self.item_ids
            .iter()
            .map(|item| {
                self.checks.iter().map(|c| Judgment::from_samples(item, c, samples.next().expect("one entry per pair").into_iter().map(|s| s.expect("complete")).collect(), rationale)).collect()
            })
            .collect()
    }
}

/// A sampler seed per (item, check, sample), independent of how units are batched (FNV-1a,
/// stable across platforms and releases).
fn unit_seed(seed: u64, item: &str, check: &str, sample: usize) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for b in item.bytes().chain([0]).chain(check.bytes()).chain([0]).chain((sample as u64).to_le_bytes()) {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Label scores after one full prompt computed alone (a pool of its own, nothing shared,
/// nothing batched): the unpacked reference that judging through the scheduler must equal.
pub fn score_alone(lm: &LanguageModel, prompt: &[u32], labels: &Labels) -> Result<LabelScores> {
    let ids = LabelIds::new(lm, labels)?;
    let (a, b) = (&ids.pass, &ids.fail);
    let along = |label: &[u32]| {
        let tokens: Vec<u32> = prompt.iter().chain(&label[..label.len() - 1]).copied().collect();
        lm.logits_along(&tokens, tokens.len()).map(|rows| rows[prompt.len() - 1..].to_vec())
    };
    let lp = |row: &[f32], id: u32| row[id as usize] - crate::sampling::log_sum_exp(row);
    let pass_rows = along(a)?;
    let fail_rows = along(b)?;
    let (first_a, first_b) = (lp(&pass_rows[0], a[0]), lp(&pass_rows[0], b[0]));
    let logprob_pass = first_a + a[1..].iter().zip(&pass_rows[1..]).map(|(&t, r)| lp(r, t)).sum::<f32>();
    let logprob_fail = first_b + b[1..].iter().zip(&fail_rows[1..]).map(|(&t, r)| lp(r, t)).sum::<f32>();
    let off = if a[0] == b[0] { 1.0 - first_a.exp() } else { 1.0 - first_a.exp() - first_b.exp() };
    Ok(LabelScores { logprob_pass, logprob_fail, off_format_mass: off.max(0.0) })
}
