//! Judging: binary checks scored from label log-likelihoods, with the shared part of every
//! prompt computed once.
//!
//! The judge prompt (rendered with the judge model's chat template) is
//!
//! ```text
//! system: You are a strict evaluator. ...            \
//! user:   ## Task input / ## Context / ## Output      } prefix: shared by every check of an item
//!         ## Criterion                                /
//!         <question> / PASS means / Examples of FAIL  \  suffix: one per check
//! assistant: Verdict:                                 /
//! ```
//!
//! followed by a label (" PASS" or " FAIL", configurable). The prefix and each suffix are
//! tokenized separately and joined, so no token straddles the boundary. The prefix's keys and
//! values are computed once and every check branches from them; all checks of an item run in
//! one forward pass whose attention over the prefix is one matrix product for all their
//! queries (see `attention`). The LM head runs only on the rows that predict label tokens.
//! Every judge pass runs on the dense f32 path, so a verdict does not depend on how many
//! checks or items were batched with it.

use crate::chat::ChatMessage;
use crate::error::{EngineError, Result};
use crate::kv_cache::KvCache;
use crate::language_model::LanguageModel;
use crate::llama::{LogitsAt, SequenceChunk};
use crate::prefix_cache::PrefixCache;
use crate::projection::MatmulPath;
use crate::sampling::log_sum_exp;
use assay_core::{Check, JudgeItem, Judgment, Verdict};
use candle_core::Tensor;
use std::sync::Arc;

const SYSTEM: &str = "You are a strict evaluator. You judge one criterion at a time. Answer PASS if the output meets the criterion and FAIL if it does not.";
/// Marks where the check-specific text goes; never appears in a template's own text.
const SENTINEL: &str = "\u{1}ASSAY-CHECK\u{1}";

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

/// The token ids of one item's judge prompts: a shared prefix and one suffix per check.
#[derive(Debug, Clone)]
pub struct JudgePrompts {
    pub prefix: Vec<u32>,
    pub suffixes: Vec<Vec<u32>>,
}

/// Builds the token ids of the judge prompts of `item` for `checks`.
pub fn judge_prompts(lm: &LanguageModel, item: &JudgeItem, checks: &[Check]) -> Result<JudgePrompts> {
    let mut user = format!("## Task input\n{}\n\n", item.input);
    if let Some(ctx) = item.context.as_deref().filter(|c| !c.trim().is_empty()) {
        user.push_str(&format!("## Context\n{ctx}\n\n"));
    }
    user.push_str(&format!("## Output to evaluate\n{}\n\n## Criterion\n{SENTINEL}", item.output));
    let rendered = lm.template.render(&[ChatMessage::new("system", SYSTEM), ChatMessage::new("user", &user)], true)?;
    let (prefix_text, suffix_template) = rendered.split_once(SENTINEL).ok_or_else(|| EngineError::ChatTemplate {
        model: lm.name.clone(),
        reason: "the chat template dropped the user message".into(),
    })?;
    let prefix = lm.tokenizer.encode(prefix_text)?;
    let suffixes = checks
        .iter()
        .map(|c| lm.tokenizer.encode(&format!("{}{suffix_template}Verdict:", check_text(c))))
        .collect::<Result<Vec<_>>>()?;
    Ok(JudgePrompts { prefix, suffixes })
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
struct LabelIds {
    pass: Vec<u32>,
    fail: Vec<u32>,
}

impl LabelIds {
    fn new(lm: &LanguageModel, labels: &Labels) -> Result<Self> {
        let pass = lm.tokenizer.encode(&labels.pass)?;
        let fail = lm.tokenizer.encode(&labels.fail)?;
        if pass.is_empty() || fail.is_empty() || pass == fail {
            return Err(EngineError::Tokenizer { model: lm.name.clone(), reason: format!("labels {:?} and {:?} must be distinct and non-empty", labels.pass, labels.fail) });
        }
        Ok(Self { pass, fail })
    }
}

/// Log-softmax of one logits row, read at `id`.
fn logprob(row: &[f32], id: u32) -> f32 {
    row[id as usize] - log_sum_exp(row)
}

fn rows(t: &Tensor) -> Result<Vec<Vec<f32>>> {
    Ok(t.to_vec2()?)
}

/// Computes the keys and values of a judge prefix once, for every check to branch from.
pub fn prefill_prefix(lm: &LanguageModel, prefix: &[u32]) -> Result<Arc<KvCache>> {
    let mut cache = lm.model.new_cache(prefix.len())?;
    lm.model.forward_on(&mut [SequenceChunk { cache: &mut cache, tokens: prefix, logits: LogitsAt::None }], MatmulPath::Dense)?;
    Ok(Arc::new(cache))
}

/// Scores `suffixes` as branches of the computed `prefix`, all in one packed pass, and returns
/// per suffix (log P(pass label), log P(fail label), off-format mass).
pub fn score_checks(lm: &LanguageModel, prefix: &Arc<KvCache>, suffixes: &[Vec<u32>], labels: &Labels) -> Result<Vec<(f32, f32, f32)>> {
    let labels = LabelIds::new(lm, labels)?;
    let (a, b) = (&labels.pass, &labels.fail);
    if suffixes.iter().any(Vec::is_empty) {
        return Err(EngineError::EmptyPrompt);
    }
    // Pass 1: each suffix followed by the pass label but its last token; rows from the suffix's
    // last token on predict every pass-label token (and the fail label's first).
    let inputs: Vec<Vec<u32>> = suffixes.iter().map(|s| s.iter().chain(&a[..a.len() - 1]).copied().collect()).collect();
    let mut caches = inputs.iter().map(|t| KvCache::branch(prefix, t.len() + b.len())).collect::<candle_core::Result<Vec<_>>>()?;
    let mut chunks: Vec<SequenceChunk> = caches
        .iter_mut()
        .zip(inputs.iter().zip(suffixes))
        .map(|(cache, (tokens, s))| SequenceChunk { cache, tokens, logits: LogitsAt::Rows((s.len() - 1..s.len() - 1 + a.len()).collect()) })
        .collect();
    let first = lm.model.forward_on(&mut chunks, MatmulPath::Dense)?;
    let mut out = Vec::with_capacity(suffixes.len());
    for logits in &first {
        let r = rows(logits.as_ref().expect("rows were requested"))?;
        // The first row predicts both labels' first tokens: normalise it once.
        let lse = log_sum_exp(&r[0]);
        let (lp_first_a, lp_first_b) = (r[0][a[0] as usize] - lse, r[0][b[0] as usize] - lse);
        let lp_a = lp_first_a + a[1..].iter().zip(&r[1..]).map(|(&id, row)| logprob(row, id)).sum::<f32>();
        let off = if a[0] == b[0] { 1.0 - lp_first_a.exp() } else { 1.0 - lp_first_a.exp() - lp_first_b.exp() };
        out.push((lp_a, lp_first_b, off.max(0.0)));
    }
    // Pass 2, only for a multi-token fail label: drop the pass label from each branch and
    // score the rest of the fail label.
    if b.len() > 1 {
        for (cache, s) in caches.iter_mut().zip(suffixes) {
            cache.truncate(s.len());
        }
        let rest = &b[..b.len() - 1][..];
        let mut chunks: Vec<SequenceChunk> = caches
            .iter_mut()
            .map(|cache| SequenceChunk { cache, tokens: rest, logits: LogitsAt::Rows((0..rest.len()).collect()) })
            .collect();
        for (o, logits) in out.iter_mut().zip(lm.model.forward_on(&mut chunks, MatmulPath::Dense)?) {
            let r = rows(logits.as_ref().expect("rows were requested"))?;
            o.1 += b[1..].iter().zip(&r).map(|(&id, row)| logprob(row, id)).sum::<f32>();
        }
    }
    Ok(out)
}

/// P(pass) from the two label log-likelihoods.
pub fn p_pass(lp_pass: f32, lp_fail: f32) -> f32 {
    1.0 / (1.0 + (lp_fail - lp_pass).exp())
}

/// Judges one item on every check: the prefix from `prefixes` (computed on a miss), then one
/// packed pass for all checks.
pub fn judge_item(lm: &LanguageModel, prefixes: &mut PrefixCache, item: &JudgeItem, checks: &[Check], labels: &Labels) -> Result<Vec<Judgment>> {
    let prompts = judge_prompts(lm, item, checks)?;
    let label_ids = LabelIds::new(lm, labels)?;
    let limit = lm.context_length();
    let longest = prompts.prefix.len() + prompts.suffixes.iter().map(Vec::len).max().unwrap_or(0) + label_ids.pass.len().max(label_ids.fail.len());
    if longest > limit {
        return Err(EngineError::ItemTooLong { item: item.id.clone(), tokens: longest, limit });
    }
    let prefix = prefixes.get_or_compute(&prompts.prefix, || prefill_prefix(lm, &prompts.prefix))?;
    let scores = score_checks(lm, &prefix, &prompts.suffixes, labels)?;
    Ok(checks
        .iter()
        .zip(scores)
        .map(|(c, (lp_pass, lp_fail, off))| {
            let p = p_pass(lp_pass, lp_fail);
            Judgment {
                item_id: item.id.clone(),
                check_id: c.id.clone(),
                verdict: if p >= c.threshold() { Verdict::Pass } else { Verdict::Fail },
                p_pass: p,
                logprob_pass: lp_pass,
                logprob_fail: lp_fail,
                off_format_mass: off,
                rationale: None,
            }
        })
        .collect())
}

/// log P(label | prompt) for one full prompt, run alone with a fresh cache: the unpacked
/// reference that the packed pass must equal.
pub fn label_logprob_unpacked(lm: &LanguageModel, prompt: &[u32], label: &[u32]) -> Result<f32> {
    let tokens: Vec<u32> = prompt.iter().chain(&label[..label.len() - 1]).copied().collect();
    let mut cache = lm.model.new_cache(tokens.len())?;
    let rows_wanted = (prompt.len() - 1..tokens.len()).collect();
    let logits = lm.model.forward_on(&mut [SequenceChunk { cache: &mut cache, tokens: &tokens, logits: LogitsAt::Rows(rows_wanted) }], MatmulPath::Dense)?;
    let r = rows(logits[0].as_ref().expect("rows were requested"))?;
    Ok(label.iter().zip(&r).map(|(&id, row)| logprob(row, id)).sum())
}
