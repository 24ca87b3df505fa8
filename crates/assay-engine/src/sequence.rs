//! One sequence the scheduler runs: its tokens, how many of them have keys and values in its
//! block table, and what it is for: generating text (sampler, stop rules, streamed pieces,
//! log-probabilities) or scoring given tokens (a judge's labels).
//!
//! Text is streamed as soon as it is certain not to be part of a stop string; each token's
//! log-probability is reported exactly once, possibly one piece before its text.

use crate::kv_pool::BlockId;
use crate::sampling::{RowWant, Sampler};
use crate::tokenizer::{IncrementalDecoder, TextTokenizer};
use assay_core::{FinishReason, Generation, SamplingParams, TokenLogprob};

/// Identifies a sequence within one scheduler.
pub type SeqId = u64;

/// Where a sequence's results go: a request of the engine and an index within it (a choice,
/// or a judge job's sequence).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Owner {
    pub request: u64,
    pub index: usize,
}

/// What a sequence produced in a step.
#[derive(Debug, Clone, PartialEq)]
pub enum SeqOutput {
    /// New text of a generating sequence, and the log-probabilities of the tokens sampled
    /// since its previous event (empty unless asked for).
    Text { owner: Owner, text: String, logprobs: Vec<TokenLogprob> },
    /// A generating sequence ended; nothing follows for it.
    Finished { owner: Owner, generation: Generation },
    /// A scoring sequence's log-probabilities, per scored row in order.
    Scored { owner: Owner, scores: Vec<Vec<f32>> },
}

/// Generation state.
pub struct Generating {
    params: SamplingParams,
    pub(crate) sampler: Sampler,
    decoder: IncrementalDecoder,
    max_new: usize,
    /// Also end (finish reason `Stop`) at a token whose text holds a line break: a judge's
    /// rationale is one line.
    stop_at_line_break: bool,
    /// Bytes of text held back because they could start a stop string.
    hold_back: usize,
    /// Bytes of text already reported.
    sent: usize,
    logprobs: Option<Vec<TokenLogprob>>,
    logprobs_sent: usize,
}

/// Scoring state: the token ids to score at each row from `first_row` (a position).
pub struct Scoring {
    first_row: usize,
    rows: Vec<Vec<u32>>,
    results: Vec<Option<Vec<f32>>>,
}

pub enum SeqKind {
    Generate(Box<Generating>),
    Score(Scoring),
}

/// See the module notes.
pub struct Sequence {
    pub id: SeqId,
    pub owner: Owner,
    /// Prompt, then generated ids; the last is the next decode step's input.
    pub tokens: Vec<u32>,
    pub prompt_len: usize,
    /// Tokens whose keys and values are in `table`.
    pub computed: usize,
    pub table: Vec<BlockId>,
    pub kind: SeqKind,
    /// Whether it has been admitted before (a preempted sequence is counted once).
    pub admitted_before: bool,
    /// Whether a client waits on it: the scheduler starts these before background work.
    pub interactive: bool,
}

impl Sequence {
    /// A sequence that generates after `prompt`; `max_new` is already capped by the context.
    pub fn generate(owner: Owner, prompt: Vec<u32>, params: SamplingParams, max_new: usize, stop_at_line_break: bool) -> Self {
        let generating = Generating {
            sampler: Sampler::new(&params),
            decoder: IncrementalDecoder::new(),
            max_new,
            stop_at_line_break,
            hold_back: params.stop.iter().map(String::len).max().unwrap_or(0).saturating_sub(1),
            sent: 0,
            logprobs: params.logprobs.then(Vec::new),
            logprobs_sent: 0,
            params,
        };
        Self::new(owner, prompt, SeqKind::Generate(Box::new(generating)))
    }

    /// A sequence that scores `rows[k]` (token ids) at position `first_row + k` of `tokens`.
    pub fn score(owner: Owner, tokens: Vec<u32>, first_row: usize, rows: Vec<Vec<u32>>) -> Self {
        debug_assert!(first_row + rows.len() <= tokens.len(), "scored rows within the tokens");
        let results = vec![None; rows.len()];
        Self::new(owner, tokens, SeqKind::Score(Scoring { first_row, rows, results }))
    }

    fn new(owner: Owner, tokens: Vec<u32>, kind: SeqKind) -> Self {
        Self { id: 0, owner, prompt_len: tokens.len(), tokens, computed: 0, table: Vec::new(), kind, admitted_before: false, interactive: false }
    }

    /// Tokens of the start that another sequence's keys may stand in for: all but the first
    /// position whose logits are needed (it must be computed here).
    pub fn reuse_limit(&self) -> usize {
        match &self.kind {
            SeqKind::Generate(_) => self.tokens.len() - 1,
            SeqKind::Score(s) => s.first_row,
        }
    }

    /// Generation with nothing to generate: done before any pass.
    pub fn wants_nothing(&self) -> bool {
        matches!(&self.kind, SeqKind::Generate(g) if g.max_new == 0)
    }

    /// Offsets within the next `n` tokens from `computed` whose logits the sequence needs.
    pub fn logit_rows(&self, n: usize) -> Vec<usize> {
        let end = self.computed + n;
        match &self.kind {
            SeqKind::Generate(_) => {
                if end == self.tokens.len() {
                    vec![n - 1]
                } else {
                    vec![]
                }
            }
            SeqKind::Score(s) => (self.computed.max(s.first_row)..end.min(s.first_row + s.rows.len())).map(|p| p - self.computed).collect(),
        }
    }

    /// What the sequence wants from its logits rows at these offsets (from `computed`): a
    /// sampled token (generation: its last row only) or label scores.
    pub fn wants(&mut self, offsets: &[usize]) -> Vec<RowWant<'_>> {
        let computed = self.computed;
        match &mut self.kind {
            SeqKind::Generate(g) => {
                let logprobs = g.wants_logprobs();
                offsets.first().map(|_| RowWant::Sample { sampler: &mut g.sampler, history: &self.tokens, logprobs }).into_iter().collect()
            }
            SeqKind::Score(s) => offsets.iter().map(|&o| RowWant::Score { ids: &s.rows[computed + o - s.first_row] }).collect(),
        }
    }

    /// Records the scores of position `pos`; returns the sequence's result once every row has
    /// one.
    pub fn scored(&mut self, pos: usize, scores: Vec<f32>) -> Option<SeqOutput> {
        let SeqKind::Score(s) = &mut self.kind else { return None };
        s.results[pos - s.first_row] = Some(scores);
        s.results.iter().all(Option::is_some).then(|| SeqOutput::Scored { owner: self.owner, scores: s.results.iter_mut().map(|r| r.take().expect("all scored")).collect() })
    }

    /// Takes a sampled token (and its log-probability when asked for); returns the events it
    /// causes and whether the sequence is done.
    pub fn accept(&mut self, tokenizer: &TextTokenizer, id: u32, logprob: Option<TokenLogprob>) -> crate::error::Result<(Vec<SeqOutput>, bool)> {
        let owner = self.owner;
        let generated_before = self.tokens.len() - self.prompt_len;
        let SeqKind::Generate(g) = &mut self.kind else { return Ok((Vec::new(), false)) };
        self.tokens.push(id);
        if let (Some(lps), Some(mut lp)) = (g.logprobs.as_mut(), logprob) {
            lp.token = tokenizer.token_text(lp.token_id);
            for t in &mut lp.top {
                t.token = tokenizer.token_text(t.token_id);
            }
            lps.push(lp);
        }
        let generated = generated_before + 1;
        if (tokenizer.is_stop(id) && !g.params.ignore_eos) || (g.stop_at_line_break && tokenizer.token_text(id).contains('\n')) {
            return Ok((self.finish(FinishReason::Stop).into_iter().collect(), true));
        }
        let text = g.decoder.push(tokenizer, id)?;
        // A stop string may straddle tokens: search the tail that could contain a new match.
        let from = floor_char_boundary(text, g.sent.saturating_sub(g.hold_back));
        if g.params.stop.iter().any(|s| text[from..].contains(s.as_str())) {
            return Ok((self.finish(FinishReason::Stop).into_iter().collect(), true));
        }
        let safe = floor_char_boundary(text, text.len().saturating_sub(g.hold_back));
        let piece = (safe > g.sent).then(|| text[g.sent..safe].to_string());
        g.sent = g.sent.max(safe);
        let mut out = Vec::new();
        if let Some(text) = piece {
            out.push(SeqOutput::Text { owner, text, logprobs: g.unsent_logprobs() });
        }
        if generated >= g.max_new {
            out.extend(self.finish(FinishReason::Length));
            return Ok((out, true));
        }
        Ok((out, false))
    }

    /// Ends a generating sequence: the last piece not yet reported (text or log-probabilities)
    /// and the `Finished` event.
    pub fn finish(&mut self, reason: FinishReason) -> Vec<SeqOutput> {
        let owner = self.owner;
        let token_ids = self.tokens[self.prompt_len..].to_vec();
        let SeqKind::Generate(g) = &mut self.kind else { return Vec::new() };
        let mut text = g.decoder.text().to_string();
        if let Some(pos) = g.params.stop.iter().filter_map(|s| text.find(s.as_str())).min() {
            text.truncate(pos);
        }
        let rest = text.get(g.sent..).unwrap_or_default().to_string();
        let logprobs = g.unsent_logprobs();
        let mut out = Vec::new();
        if !rest.is_empty() || !logprobs.is_empty() {
            out.push(SeqOutput::Text { owner, text: rest, logprobs });
        }
        let generation = Generation { text, token_ids, prompt_tokens: self.prompt_len, finish_reason: reason, logprobs: g.logprobs.take() };
        out.push(SeqOutput::Finished { owner, generation });
        out
    }
}

impl Generating {
    /// Log-probabilities not yet reported.
    fn unsent_logprobs(&mut self) -> Vec<TokenLogprob> {
        let Some(all) = &self.logprobs else { return Vec::new() };
        let new = all[self.logprobs_sent..].to_vec();
        self.logprobs_sent = all.len();
        new
    }

    /// Whether the row's log-probability is wanted, and with how many alternatives.
    pub fn wants_logprobs(&self) -> Option<usize> {
        self.params.logprobs.then_some(self.params.top_logprobs)
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}
