//! Judging: binary checks scored from label log-likelihoods, with every shared part of the
//! prompts computed once.
//!
//! The judge prompt (rendered with the judge model's chat template) is a four-level tree:
//!
//! ```text
//! system: You are a strict evaluator. ...             } instructions: shared by every item
//! user:   ## Task input / ## Context                   } input: shared by items with the same input
//!         ## Output to evaluate / ## Criterion         } output: shared by the item's checks
//!         <question> / PASS means / Examples of FAIL   \  suffix: one per check
//! assistant: Verdict:                                  /
//! ```
//!
//! followed by a label (" PASS" or " FAIL", configurable). Each level is tokenized on its own
//! and the ids are joined, so no token straddles a boundary. The instructions' keys and values
//! are computed once, each distinct input once as a branch of them (a population of candidate
//! outputs for one input, as optimisation judges, shares it), each item's output once as a
//! branch of its input, and every check branches from its item: the checks of many items run
//! in one forward pass whose attention reads each shared level once per tile of queries
//! (`cpu_attention`, or `attention` with candle ops).
//! The LM head runs only on the rows that predict label tokens.
//!
//! In rationale mode the assistant turn opens with "Reasoning:"; every check's branch
//! generates a short rationale (all branches decode together, one token each per pass), then
//! "\nVerdict:" and the labels are scored after it. Every judge pass runs on the dense f32
//! path, so a verdict does not depend on how many checks or items were batched with it.

use crate::chat::ChatMessage;
use crate::error::{EngineError, Result};
use crate::kv_cache::KvCache;
use crate::language_model::LanguageModel;
use crate::llama::{LogitsAt, SequenceChunk};
use crate::prefix_cache::PrefixCache;
use crate::projection::MatmulPath;
use crate::sampling::{log_sum_exp, Sampler};
use assay_core::{Check, JudgeItem, JudgeOptions, JudgeSample, Judgment, SamplingParams, Verdict};
use candle_core::Tensor;
use std::collections::HashMap;
use std::sync::Arc;

const SYSTEM: &str = "You are a strict evaluator. You judge one criterion at a time. Answer PASS if the output meets the criterion and FAIL if it does not.";
/// Mark where the item and the check-specific text go; never in a template's own text.
const ITEM_MARK: &str = "\u{1}ASSAY-ITEM\u{1}";
const OUTPUT_MARK: &str = "\u{1}ASSAY-OUTPUT\u{1}";
const CHECK_MARK: &str = "\u{1}ASSAY-CHECK\u{1}";
/// How the assistant turn opens: straight to the verdict, or with reasoning first.
const VERDICT_LEAD: &str = "Verdict:";
const REASONING_LEAD: &str = "Reasoning:";
const VERDICT_AFTER_REASONING: &str = "\nVerdict:";
/// Tokens (prompt suffixes, rationales, labels) per judge forward pass: keeps activations
/// and branch caches of a pass to a few hundred MB whatever the number of items.
const TOKENS_PER_PASS: usize = 8192;

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

/// The token ids of the judge prompts of some items and checks, as the four-level tree.
#[derive(Debug, Clone)]
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

    /// The instructions and the input, the key of the input's computed prefix.
    fn input_key(&self, input: usize) -> Vec<u32> {
        self.instructions.iter().chain(&self.inputs[input]).copied().collect()
    }

    /// Everything before the checks, the key of the item's computed prefix.
    fn item_key(&self, item: usize) -> Vec<u32> {
        self.instructions.iter().chain(&self.item(item)).copied().collect()
    }
}

/// Builds the token ids of the judge prompts of `items` for `checks`; `rationale` opens the
/// assistant turn with "Reasoning:" instead of "Verdict:".
pub fn judge_prompts(lm: &LanguageModel, items: &[JudgeItem], checks: &[Check], rationale: bool) -> Result<JudgePrompts> {
    let broken = |reason: &str| EngineError::ChatTemplate { model: lm.name.clone(), reason: reason.into() };
    let mut instructions: Option<String> = None;
    let mut tail: Option<String> = None;
    let mut inputs: Vec<Vec<u32>> = Vec::new();
    let mut input_index: HashMap<String, usize> = HashMap::new();
    let mut item_inputs = Vec::with_capacity(items.len());
    let mut outputs = Vec::with_capacity(items.len());
    for item in items {
        let mut user = format!("{ITEM_MARK}## Task input\n{}\n\n", item.input);
        if let Some(ctx) = item.context.as_deref().filter(|c| !c.trim().is_empty()) {
            user.push_str(&format!("## Context\n{ctx}\n\n"));
        }
        user.push_str(&format!("{OUTPUT_MARK}## Output to evaluate\n{}\n\n## Criterion\n{CHECK_MARK}", item.output));
        let rendered = lm.template.render(&[ChatMessage::new("system", SYSTEM), ChatMessage::new("user", &user)], true)?;
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
    let lead = if rationale { REASONING_LEAD } else { VERDICT_LEAD };
    let suffixes = checks.iter().map(|c| lm.tokenizer.encode(&format!("{}{tail}{lead}", check_text(c)))).collect::<Result<Vec<_>>>()?;
    Ok(JudgePrompts { instructions: lm.tokenizer.encode(&instructions)?, inputs, item_inputs, outputs, suffixes })
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
            return Err(EngineError::Tokenizer { model: lm.name.clone(), reason: format!("labels {:?} and {:?} must be distinct and non-empty", labels.pass, labels.fail) });
        }
        Ok(Self { pass, fail })
    }

    fn longest(&self) -> usize {
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
        JudgeSample {
            rationale,
            verdict: Verdict::at(p, threshold),
            p_pass: p,
            logprob_pass: self.logprob_pass,
            logprob_fail: self.logprob_fail,
            off_format_mass: self.off_format_mass,
        }
    }
}

/// Log-softmax of one logits row, read at `id`.
fn logprob(row: &[f32], id: u32) -> f32 {
    row[id as usize] - log_sum_exp(row)
}

fn rows(t: &Tensor) -> Result<Vec<Vec<f32>>> {
    Ok(t.to_vec2()?)
}

/// Runs `tokens` as branches of the given parents (or fresh sequences) in one dense forward,
/// returning the branches and the logits of the rows asked for.
fn run_branches(lm: &LanguageModel, parents: &[Option<&Arc<KvCache>>], tokens: &[&[u32]], logits: &[LogitsAt], room: usize) -> Result<(Vec<KvCache>, Vec<Option<Tensor>>)> {
    let mut caches = parents
        .iter()
        .zip(tokens)
        .map(|(p, t)| match p {
            Some(p) => Ok(KvCache::branch(p, t.len() + room)?),
            None => lm.model.new_cache(t.len() + room),
        })
        .collect::<Result<Vec<_>>>()?;
    let mut chunks: Vec<SequenceChunk> = caches.iter_mut().zip(tokens.iter().zip(logits)).map(|(cache, (t, l))| SequenceChunk { cache, tokens: t, logits: l.clone() }).collect();
    let out = lm.model.forward_on(&mut chunks, MatmulPath::Dense)?;
    Ok((caches, out))
}

/// Computes the keys and values of a prompt prefix (the instructions, or one item under
/// them) for later branches to read.
pub fn prefill_prefix(lm: &LanguageModel, parent: Option<&Arc<KvCache>>, tokens: &[u32]) -> Result<Arc<KvCache>> {
    let (mut caches, _) = run_branches(lm, &[parent], &[tokens], &[LogitsAt::None], 0)?;
    Ok(Arc::new(caches.pop().expect("one branch")))
}

/// Scores both labels after `leads`, each continuing its cache, in one packed pass (two when
/// the fail label has several tokens).
pub fn score_labels(lm: &LanguageModel, caches: &mut [KvCache], leads: &[&[u32]], labels: &LabelIds) -> Result<Vec<LabelScores>> {
    let (a, b) = (&labels.pass, &labels.fail);
    if leads.iter().any(|l| l.is_empty()) {
        return Err(EngineError::EmptyPrompt);
    }
    let before: Vec<usize> = caches.iter().map(KvCache::len).collect();
    // Pass 1: each lead followed by the pass label but its last token; rows from the lead's
    // last token on predict every pass-label token (and the fail label's first).
    let inputs: Vec<Vec<u32>> = leads.iter().map(|l| l.iter().chain(&a[..a.len() - 1]).copied().collect()).collect();
    let mut chunks: Vec<SequenceChunk> = caches
        .iter_mut()
        .zip(inputs.iter().zip(leads))
        .map(|(cache, (tokens, l))| SequenceChunk { cache, tokens, logits: LogitsAt::Rows((l.len() - 1..l.len() - 1 + a.len()).collect()) })
        .collect();
    let first = lm.model.forward_on(&mut chunks, MatmulPath::Dense)?;
    let mut out = Vec::with_capacity(leads.len());
    for logits in &first {
        let r = rows(logits.as_ref().expect("rows were requested"))?;
        // The first row predicts both labels' first tokens: normalise it once.
        let lse = log_sum_exp(&r[0]);
        let (lp_first_a, lp_first_b) = (r[0][a[0] as usize] - lse, r[0][b[0] as usize] - lse);
        let lp_a = lp_first_a + a[1..].iter().zip(&r[1..]).map(|(&id, row)| logprob(row, id)).sum::<f32>();
        let off = if a[0] == b[0] { 1.0 - lp_first_a.exp() } else { 1.0 - lp_first_a.exp() - lp_first_b.exp() };
        out.push(LabelScores { logprob_pass: lp_a, logprob_fail: lp_first_b, off_format_mass: off.max(0.0) });
    }
    // Pass 2, only for a multi-token fail label: drop the pass label from each branch and
    // score the rest of the fail label.
    if b.len() > 1 {
        for ((cache, l), start) in caches.iter_mut().zip(leads).zip(before) {
            cache.truncate(start + l.len());
        }
        let rest = &b[..b.len() - 1][..];
        let mut chunks: Vec<SequenceChunk> = caches.iter_mut().map(|cache| SequenceChunk { cache, tokens: rest, logits: LogitsAt::Rows((0..rest.len()).collect()) }).collect();
        for (o, logits) in out.iter_mut().zip(lm.model.forward_on(&mut chunks, MatmulPath::Dense)?) {
            let r = rows(logits.as_ref().expect("rows were requested"))?;
            o.logprob_fail += b[1..].iter().zip(&r).map(|(&id, row)| logprob(row, id)).sum::<f32>();
        }
    }
    Ok(out)
}

/// One check asked of one item (one sample of it).
#[derive(Debug, Clone, Copy)]
struct Unit {
    item: usize,
    check: usize,
    sample: usize,
}

/// Judges every item on every check, batching the checks of many items into each forward
/// pass (the prefix tree: instructions, inputs, outputs, from `prefixes` or computed once).
/// `progress` receives the number of judgments completed so far. Returns per item its
/// judgments in check order.
pub fn judge_items(
    lm: &LanguageModel,
    prefixes: &mut PrefixCache,
    items: &[JudgeItem],
    checks: &[Check],
    labels: &Labels,
    options: &JudgeOptions,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<Vec<Judgment>>> {
    options.validate()?;
    if checks.is_empty() {
        return Err(assay_core::InputError::NoChecks.into());
    }
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let label_ids = LabelIds::new(lm, labels)?;
    let rationale = options.generates_rationales();
    let prompts = judge_prompts(lm, items, checks, rationale)?;
    let after_suffix = label_ids.longest() + if rationale { options.rationale_tokens + lm.tokenizer.encode(VERDICT_AFTER_REASONING)?.len() } else { 0 };
    let longest_suffix = prompts.suffixes.iter().map(Vec::len).max().unwrap_or(0);
    for (i, item) in items.iter().enumerate() {
        let tokens = prompts.instructions.len() + prompts.item(i).len() + longest_suffix + after_suffix;
        if tokens > lm.context_length() {
            return Err(EngineError::ItemTooLong { item: item.id.clone(), tokens, limit: lm.context_length() });
        }
    }
    let root = prefixes.get_or_compute(&prompts.instructions, || prefill_prefix(lm, None, &prompts.instructions))?;
    let units: Vec<Unit> = (0..items.len())
        .flat_map(|item| (0..checks.len()).flat_map(move |check| (0..options.samples).map(move |sample| Unit { item, check, sample })))
        .collect();
    let mut samples: Vec<Vec<JudgeSample>> = vec![Vec::with_capacity(options.samples); items.len() * checks.len()];
    let mut done = 0;
    let mut start = 0;
    while start < units.len() {
        // Consecutive units up to the pass budget (at least one).
        let mut end = start;
        let mut tokens = 0;
        while end < units.len() && (end == start || tokens + prompts.suffixes[units[end].check].len() + after_suffix <= TOKENS_PER_PASS) {
            tokens += prompts.suffixes[units[end].check].len() + after_suffix;
            end += 1;
        }
        let group = &units[start..end];
        let item_caches = item_prefixes(lm, prefixes, &root, &prompts, group)?;
        let parents: Vec<Option<&Arc<KvCache>>> = group.iter().map(|u| item_caches[u.item].as_ref()).collect();
        let suffixes: Vec<&[u32]> = group.iter().map(|u| prompts.suffixes[u.check].as_slice()).collect();
        let scored: Vec<(String, LabelScores)> = if rationale {
            let seeds: Vec<u64> = group.iter().map(|u| unit_seed(options.seed, &items[u.item].id, &checks[u.check].id, u.sample)).collect();
            rationales_then_labels(lm, &parents, &suffixes, &seeds, options, &label_ids)?
        } else {
            let mut caches = parents.iter().zip(&suffixes).map(|(p, s)| Ok(KvCache::branch(p.expect("items have prefixes"), s.len() + label_ids.longest())?)).collect::<Result<Vec<_>>>()?;
            score_labels(lm, &mut caches, &suffixes, &label_ids)?.into_iter().map(|s| (String::new(), s)).collect()
        };
        for (u, (text, scores)) in group.iter().zip(scored) {
            samples[u.item * checks.len() + u.check].push(scores.sample(text, checks[u.check].threshold()));
            if u.sample + 1 == options.samples {
                done += 1;
            }
        }
        progress(done);
        start = end;
    }
    let mut samples = samples.into_iter();
    Ok(items
        .iter()
        .map(|item| checks.iter().map(|c| Judgment::from_samples(&item.id, c, samples.next().expect("one entry per pair"), rationale)).collect())
        .collect())
}

/// The computed prefix of every item `group` touches, indexed by item: cached ones from
/// `prefixes`; for the rest, their inputs (cached, or computed once each as branches of the
/// instructions), then their outputs as branches of their inputs.
fn item_prefixes(lm: &LanguageModel, prefixes: &mut PrefixCache, root: &Arc<KvCache>, prompts: &JudgePrompts, group: &[Unit]) -> Result<Vec<Option<Arc<KvCache>>>> {
    let mut items: Vec<Option<Arc<KvCache>>> = vec![None; prompts.outputs.len()];
    let missing = look_up(prefixes, group.iter().map(|u| u.item), &mut items, |i| prompts.item_key(i));
    let mut inputs: Vec<Option<Arc<KvCache>>> = vec![None; prompts.inputs.len()];
    let absent = look_up(prefixes, missing.iter().map(|&i| prompts.item_inputs[i]), &mut inputs, |k| prompts.input_key(k));
    let computed = compute_branches(lm, prefixes, absent.iter().map(|&k| (prompts.input_key(k), prompts.inputs[k].as_slice(), root)).collect())?;
    for (k, cache) in absent.into_iter().zip(computed) {
        inputs[k] = Some(cache);
    }
    let parent = |i: usize| inputs[prompts.item_inputs[i]].as_ref().expect("every missing item's input found or computed");
    let computed = compute_branches(lm, prefixes, missing.iter().map(|&i| (prompts.item_key(i), prompts.outputs[i].as_slice(), parent(i))).collect())?;
    for (i, cache) in missing.into_iter().zip(computed) {
        items[i] = Some(cache);
    }
    Ok(items)
}

/// Fills `found[i]` from `prefixes` (under `key(i)`) for each wanted index, once each; returns
/// the indices not cached, in order.
fn look_up(prefixes: &mut PrefixCache, wanted: impl Iterator<Item = usize>, found: &mut [Option<Arc<KvCache>>], key: impl Fn(usize) -> Vec<u32>) -> Vec<usize> {
    let mut missing = Vec::new();
    for i in wanted {
        if found[i].is_none() && !missing.contains(&i) {
            match prefixes.get(&key(i)) {
                Some(hit) => found[i] = Some(hit),
                None => missing.push(i),
            }
        }
    }
    missing
}

/// Computes each (key, tokens, parent) as a branch of its parent, all in one forward, and
/// keeps each in `prefixes` under its key.
fn compute_branches(lm: &LanguageModel, prefixes: &mut PrefixCache, wanted: Vec<(Vec<u32>, &[u32], &Arc<KvCache>)>) -> Result<Vec<Arc<KvCache>>> {
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let parents: Vec<Option<&Arc<KvCache>>> = wanted.iter().map(|w| Some(w.2)).collect();
    let tokens: Vec<&[u32]> = wanted.iter().map(|w| w.1).collect();
    let (caches, _) = run_branches(lm, &parents, &tokens, &vec![LogitsAt::None; wanted.len()], 0)?;
    Ok(wanted
        .iter()
        .zip(caches)
        .map(|((key, ..), cache)| {
            let cache = Arc::new(cache);
            prefixes.insert(key, cache.clone());
            cache
        })
        .collect())
}

/// Rationale mode for a group: every branch reads its suffix (ending in "Reasoning:"),
/// generates until a line break, an end token or the token budget, all branches decoding
/// together, then the labels are scored after "\nVerdict:".
fn rationales_then_labels(lm: &LanguageModel, parents: &[Option<&Arc<KvCache>>], suffixes: &[&[u32]], seeds: &[u64], options: &JudgeOptions, labels: &LabelIds) -> Result<Vec<(String, LabelScores)>> {
    let lead = lm.tokenizer.encode(VERDICT_AFTER_REASONING)?;
    let room = options.rationale_tokens + lead.len() + labels.longest();
    let (mut caches, first) = run_branches(lm, parents, suffixes, &vec![LogitsAt::Last; suffixes.len()], room)?;
    let temperature = if options.samples > 1 { options.temperature } else { 0.0 };
    let mut samplers: Vec<Sampler> = seeds.iter().map(|&s| Sampler::new(&SamplingParams { temperature, seed: Some(s), ..SamplingParams::default() })).collect();
    let mut logits: Vec<Option<Vec<f32>>> = first.iter().map(|l| Ok(Some(rows(l.as_ref().expect("asked for the last row"))?.remove(0)))).collect::<Result<_>>()?;
    let mut generated: Vec<Vec<u32>> = vec![Vec::new(); suffixes.len()];
    loop {
        let mut next: Vec<(usize, u32)> = Vec::new();
        for (i, row) in logits.iter_mut().enumerate() {
            let Some(row) = row.take() else { continue };
            let id = samplers[i].next(&row, &generated[i]);
            let ends = lm.tokenizer.is_stop(id) || lm.tokenizer.token_text(id).contains('\n');
            if !ends {
                generated[i].push(id);
                if generated[i].len() < options.rationale_tokens {
                    next.push((i, id));
                }
            }
        }
        if next.is_empty() {
            break;
        }
        let ids: Vec<[u32; 1]> = next.iter().map(|&(_, id)| [id]).collect();
        let mut chunks: Vec<SequenceChunk> = Vec::with_capacity(next.len());
        let mut wanted = next.iter().map(|&(i, _)| i).peekable();
        for (i, cache) in caches.iter_mut().enumerate() {
            if wanted.peek() == Some(&i) {
                wanted.next();
                let k = chunks.len();
                chunks.push(SequenceChunk { cache, tokens: &ids[k], logits: LogitsAt::Last });
            }
        }
        for (&(i, _), l) in next.iter().zip(lm.model.forward_on(&mut chunks, MatmulPath::Dense)?) {
            logits[i] = Some(rows(l.as_ref().expect("asked for the last row"))?.remove(0));
        }
    }
    let leads = vec![lead.as_slice(); suffixes.len()];
    let scores = score_labels(lm, &mut caches, &leads, labels)?;
    generated.iter().zip(scores).map(|(g, s)| Ok((lm.tokenizer.decode(g)?.trim().to_string(), s))).collect()
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

/// Label scores of one full prompt run alone with a fresh cache: the unpacked reference that
/// the packed pass must equal.
pub fn score_unpacked(lm: &LanguageModel, prompt: &[u32], labels: &LabelIds) -> Result<LabelScores> {
    let mut cache = lm.model.new_cache(prompt.len() + labels.longest())?;
    Ok(score_labels(lm, std::slice::from_mut(&mut cache), &[prompt], labels)?.remove(0))
}
