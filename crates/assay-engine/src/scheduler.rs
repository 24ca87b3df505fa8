//! The scheduler: one loop for every kind of work a model does. Each `step` runs one forward
//! pass over a mix of decode rows (one per generating sequence), prefill chunks and judge
//! branches under a token budget, then samples and scores all rows of the step in one call.
//!
//! - **Admission by free blocks.** A waiting sequence starts when the step has budget left and
//!   the pool has blocks for its tokens (free, or held only by the radix tree and evictable).
//!   It first looks its tokens up in the tree and computes only what is not there.
//! - **Prefixes in flight.** A waiting sequence whose next block another running sequence is
//!   computing right now waits a step for it instead of computing it twice: checks of one item
//!   sent together compute the item once, then run as branches of it (SGLang's in-batch
//!   prefix caching). Completed blocks enter the tree after every step.
//! - **Interactive first.** The waiting queue holds the sequences a client waits on
//!   (`Priority::Interactive`: HTTP requests) ahead of the server's own background work, each
//!   part in arrival order: a request sent while a background run has hundreds of judge units
//!   waiting starts in the next step instead of behind them. Outputs do not depend on order
//!   (below), only latency does.
//! - **Preemption.** When a running sequence needs a block and none can be freed, the most
//!   recently admitted one is preempted: its computed blocks go to the tree, its references
//!   are released, and it waits at the front of its part of the queue to be recomputed (often
//!   from the tree). A sequence that fits the pool alone therefore always finishes; one that
//!   cannot is refused when it is submitted.
//! - **Invariance.** A row's arithmetic does not depend on what else is in the step (dense
//!   matmuls, the fused attention kernel), so a sequence's output equals its output alone,
//!   preempted or not.

use crate::batch::StepBatch;
use crate::error::Result;
use crate::kv_pool::{KvPool, PoolStats, BLOCK_SIZE};
use crate::language_model::LanguageModel;
use crate::radix_tree::{block_hashes, PrefixMatch, RadixTree};
use crate::sampling::{process_rows, RowResult};
use crate::sequence::{Owner, SeqId, SeqOutput, Sequence};
use std::collections::{HashMap, VecDeque};

/// How a scheduler runs its steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// Most tokens (rows) per step; decode rows always run.
    pub step_tokens: usize,
    /// Reuse computed prefixes through the radix tree (off: every sequence computes its
    /// whole prompt, as a naive engine would).
    pub prefix_sharing: bool,
}

/// Which waiting sequences start first: see the module notes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// A client waits on it.
    Interactive,
    /// The server's own work: starts when no interactive sequence waits.
    Background,
}

/// Counters for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SchedulerStats {
    pub pool: PoolStats,
    /// Blocks the radix tree names.
    pub cached_blocks: usize,
    /// Prompt tokens of admitted sequences, and how many of them came from the tree.
    pub prompt_tokens: u64,
    pub reused_tokens: u64,
    pub preemptions: u64,
    pub steps: u64,
    /// Rows of the last step.
    pub last_step_rows: usize,
    pub waiting: usize,
    pub running: usize,
}

/// A running sequence and the hashes of the prompt blocks it is computing (`inflight`).
struct Running {
    seq: Sequence,
    /// Block indices of the prompt whose hashes are registered in flight.
    registered: std::ops::Range<usize>,
    hashes: Vec<u64>,
}

/// See the module notes.
pub struct Scheduler {
    config: SchedulerConfig,
    pool: KvPool,
    tree: RadixTree,
    waiting: VecDeque<Sequence>,
    running: Vec<Running>,
    /// Prompt blocks (by chained hash) that running sequences are computing.
    inflight: HashMap<u64, usize>,
    next_id: SeqId,
    stats: SchedulerStats,
}

/// One sequence's part of a step: `rows` tokens from its `computed`, and which of them need
/// logits.
struct Planned {
    index: usize,
    rows: usize,
    logits: Vec<usize>,
}

impl Scheduler {
    pub fn new(pool: KvPool, config: SchedulerConfig) -> Self {
        Self { config, pool, tree: RadixTree::new(), waiting: VecDeque::new(), running: Vec::new(), inflight: HashMap::new(), next_id: 0, stats: SchedulerStats::default() }
    }

    pub fn pool(&self) -> &KvPool {
        &self.pool
    }

    /// Queues a sequence at the back of its priority's part of the queue; a generation that
    /// wants no tokens finishes at once (returned).
    pub fn add(&mut self, mut seq: Sequence, priority: Priority) -> Vec<SeqOutput> {
        if seq.wants_nothing() {
            return seq.finish(assay_core::FinishReason::Length);
        }
        seq.id = self.next_id;
        self.next_id += 1;
        seq.interactive = priority == Priority::Interactive;
        if seq.interactive {
            self.waiting.insert(self.background_start(), seq);
        } else {
            self.waiting.push_back(seq);
        }
        Vec::new()
    }

    /// Where the background part of the waiting queue starts (the queue is kept partitioned).
    fn background_start(&self) -> usize {
        self.waiting.partition_point(|s| s.interactive)
    }

    pub fn is_idle(&self) -> bool {
        self.waiting.is_empty() && self.running.is_empty()
    }

    pub fn stats(&self) -> SchedulerStats {
        SchedulerStats { pool: self.pool.stats(), cached_blocks: self.tree.cached_blocks(), waiting: self.waiting.len(), running: self.running.len(), ..self.stats }
    }

    /// Drops every sequence of `request` (waiting or running), keeping what they computed in
    /// the tree and releasing their blocks.
    pub fn cancel(&mut self, request: u64) {
        self.waiting.retain(|s| s.owner.request != request);
        let mut i = 0;
        while i < self.running.len() {
            if self.running[i].seq.owner.request == request {
                let r = self.running.remove(i);
                self.retire(r);
            } else {
                i += 1;
            }
        }
    }

    /// Drops every sequence (after a failed step) and returns their owners: their blocks are
    /// released, and nothing they computed is kept.
    pub fn clear(&mut self) -> Vec<Owner> {
        let mut owners: Vec<Owner> = self.waiting.drain(..).map(|s| s.owner).collect();
        for r in std::mem::take(&mut self.running) {
            owners.push(r.seq.owner);
            for &b in &r.seq.table {
                self.pool.release(b);
            }
        }
        self.inflight.clear();
        owners
    }

    /// Drops every prefix the tree holds that no sequence uses.
    pub fn clear_prefixes(&mut self) {
        self.tree.evict(&mut self.pool, usize::MAX);
    }

    /// Keeps a leaving sequence's computed tokens in the tree and releases its blocks.
    fn retire(&mut self, mut r: Running) -> Sequence {
        unregister(&mut self.inflight, &r.hashes, &mut r.registered, usize::MAX);
        if self.config.prefix_sharing && r.seq.computed > 0 {
            self.tree.insert(&r.seq.tokens[..r.seq.computed], &r.seq.table, &mut self.pool);
        }
        for b in r.seq.table.drain(..) {
            self.pool.release(b);
        }
        r.seq
    }

    /// Frees up to `blocks` blocks from the tree's unreferenced ones when the pool has fewer.
    fn make_room(&mut self, blocks: usize) {
        let free = self.pool.free_blocks();
        if free < blocks {
            self.tree.evict(&mut self.pool, blocks - free);
        }
    }

    /// Preempts the running sequence at `index`: see the module notes.
    fn preempt(&mut self, index: usize) {
        let r = self.running.remove(index);
        let mut seq = self.retire(r);
        seq.computed = 0;
        self.stats.preemptions += 1;
        let front = if seq.interactive { 0 } else { self.background_start() };
        self.waiting.insert(front, seq);
    }

    /// Makes the table of running sequence `index` cover `tokens` positions; preempts newer
    /// sequences for room. False when even that fails (then it is the newest and must wait).
    fn grow(&mut self, index: usize, tokens: usize) -> bool {
        let have = self.running[index].seq.table.len();
        self.make_room(tokens.div_ceil(BLOCK_SIZE).saturating_sub(have));
        while self.running[index].seq.table.len() * BLOCK_SIZE < tokens {
            match self.pool.allocate() {
                Some(b) => self.running[index].seq.table.push(b),
                None if self.tree.evict(&mut self.pool, 1) > 0 => {}
                None if self.running.len() > index + 1 => self.preempt(self.running.len() - 1),
                None => return false,
            }
        }
        true
    }

    /// Plans the running sequences' part of this step: every decode row, then prefill chunks
    /// in admission order within `budget`.
    fn plan_running(&mut self, budget: &mut usize) -> Vec<Planned> {
        let mut planned = Vec::new();
        let mut i = 0;
        while i < self.running.len() {
            let seq = &self.running[i].seq;
            let remaining = seq.tokens.len() - seq.computed;
            let decode = remaining == 1 && seq.computed >= seq.prompt_len;
            let rows = if decode { 1 } else { remaining.min(*budget) };
            if rows == 0 {
                i += 1;
                continue;
            }
            let end = seq.computed + rows;
            if !self.grow(i, end) {
                // The newest sequence cannot get a block: it waits to be recomputed.
                self.preempt(i);
                break;
            }
            let logits = self.running[i].seq.logit_rows(rows);
            *budget = budget.saturating_sub(rows);
            planned.push(Planned { index: i, rows, logits });
            i += 1;
        }
        planned
    }

    /// Starts waiting sequences while the step has budget and the pool has room; skips those
    /// whose next prompt block is being computed by a running sequence.
    fn admit(&mut self, budget: &mut usize, planned: &mut Vec<Planned>) {
        let sharing = self.config.prefix_sharing;
        let mut w = 0;
        while w < self.waiting.len() && *budget > 0 {
            let seq = &self.waiting[w];
            let hashes = if sharing { block_hashes(&seq.tokens[..seq.prompt_len]) } else { Vec::new() };
            let found = if sharing { self.tree.lookup(&seq.tokens[..seq.reuse_limit()]) } else { PrefixMatch::default() };
            if hashes.get(found.blocks.len()).is_some_and(|h| self.inflight.contains_key(h)) {
                w += 1;
                continue;
            }
            // What the match names is held before counting what could be evicted for the rest.
            let held: Vec<_> = found.blocks.iter().copied().chain(found.partial.map(|p| p.0)).collect();
            for &b in &held {
                self.pool.retain(b);
            }
            let needed = (seq.tokens.len() + 1).div_ceil(BLOCK_SIZE) - found.blocks.len();
            let free = self.pool.free_blocks();
            let room = free >= needed || free + self.tree.evictable_blocks(&self.pool) >= needed;
            let own = match (room, found.partial) {
                (false, _) => None,
                (true, None) => Some(None),
                (true, Some(_)) => {
                    self.make_room(1);
                    self.pool.allocate().map(Some)
                }
            };
            let Some(own) = own else {
                for &b in &held {
                    self.pool.release(b);
                }
                break;
            };
            let mut seq = self.waiting.remove(w).expect("index in range");
            seq.table = found.blocks.clone();
            if let (Some(own), Some((source, n))) = (own, found.partial) {
                // Copy-on-write: the matched slots of a block someone else holds.
                let copied = self.pool.copy_slots(source, own, n);
                self.pool.release(source);
                seq.table.push(own);
                if copied.is_err() {
                    for b in seq.table.drain(..) {
                        self.pool.release(b);
                    }
                    self.waiting.insert(w, seq);
                    break;
                }
            }
            seq.computed = found.tokens();
            if !seq.admitted_before {
                self.stats.prompt_tokens += seq.prompt_len as u64;
                self.stats.reused_tokens += found.tokens() as u64;
                seq.admitted_before = true;
            }
            let registered = found.blocks.len().min(hashes.len())..hashes.len();
            for h in &hashes[registered.clone()] {
                *self.inflight.entry(*h).or_default() += 1;
            }
            self.running.push(Running { seq, registered, hashes });
            let index = self.running.len() - 1;
            let seq = &self.running[index].seq;
            let rows = (seq.tokens.len() - seq.computed).min(*budget);
            let end = seq.computed + rows;
            if !self.grow(index, end) {
                self.preempt(index);
                break;
            }
            let logits = self.running[index].seq.logit_rows(rows);
            *budget -= rows;
            planned.push(Planned { index, rows, logits });
        }
    }

    /// One step: see the module notes. Returns what the step's sequences produced.
    pub fn step(&mut self, lm: &LanguageModel) -> Result<Vec<SeqOutput>> {
        let mut budget = self.config.step_tokens.max(1);
        let mut planned = self.plan_running(&mut budget);
        self.admit(&mut budget, &mut planned);
        if planned.is_empty() {
            return Ok(Vec::new());
        }
        let mut batch = StepBatch::default();
        for p in &planned {
            let seq = &self.running[p.index].seq;
            batch.push(&seq.tokens[seq.computed..seq.computed + p.rows], seq.computed, &seq.table, p.logits.iter().copied());
        }
        if !lm.model.wants_cpu_blocks() {
            batch.find_shared_segments();
        }
        let logits = lm.model.forward(&batch, &mut self.pool)?;
        self.stats.steps += 1;
        self.stats.last_step_rows = batch.tokens.len();

        // Sample and score every logits row in one call. Planned indices increase, so each
        // sequence's rows are found in one pass over the running ones.
        let mut at: Vec<(usize, usize)> = Vec::new();
        let results = {
            let mut wants = Vec::with_capacity(batch.logit_rows.len());
            let mut next = planned.iter().filter(|p| !p.logits.is_empty()).peekable();
            for (i, r) in self.running.iter_mut().enumerate() {
                let Some(p) = next.next_if(|p| p.index == i) else { continue };
                at.extend(p.logits.iter().map(|&o| (i, r.seq.computed + o)));
                wants.extend(r.seq.wants(&p.logits));
            }
            process_rows(&logits, wants)?
        };
        let mut outputs = Vec::new();
        let mut done = vec![false; self.running.len()];
        for p in &planned {
            self.running[p.index].seq.computed += p.rows;
        }
        for ((i, pos), result) in at.into_iter().zip(results) {
            let seq = &mut self.running[i].seq;
            match result {
                RowResult::Sampled { token, logprob } => {
                    let (events, finished) = seq.accept(&lm.tokenizer, token, logprob)?;
                    outputs.extend(events);
                    done[i] |= finished;
                }
                RowResult::Scored(scores) => {
                    if let Some(out) = seq.scored(pos, scores) {
                        outputs.push(out);
                        done[i] = true;
                    }
                }
            }
        }
        // Completed prompt blocks become visible to later sequences; finished ones leave.
        for p in &planned {
            let r = &mut self.running[p.index];
            unregister(&mut self.inflight, &r.hashes, &mut r.registered, r.seq.computed / BLOCK_SIZE);
            let prefilled = r.seq.computed - p.rows < r.seq.prompt_len;
            if self.config.prefix_sharing && prefilled && !done[p.index] {
                self.tree.insert(&r.seq.tokens[..r.seq.computed], &r.seq.table, &mut self.pool);
            }
        }
        for i in (0..self.running.len()).rev() {
            if done[i] {
                let r = self.running.remove(i);
                self.retire(r);
            }
        }
        Ok(outputs)
    }
}

/// Removes the in-flight marks of a sequence's prompt blocks before index `upto`.
fn unregister(inflight: &mut HashMap<u64, usize>, hashes: &[u64], registered: &mut std::ops::Range<usize>, upto: usize) {
    let end = registered.end.min(upto).max(registered.start);
    for h in &hashes[registered.start..end] {
        if let Some(n) = inflight.get_mut(h) {
            *n -= 1;
            if *n == 0 {
                inflight.remove(h);
            }
        }
    }
    registered.start = end;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::ModelResolver;
    use crate::sequence::Owner;
    use assay_core::SamplingParams;
    use candle_core::Device;

    fn waiting(s: &Scheduler) -> Vec<u64> {
        s.waiting.iter().map(|q| q.owner.request).collect()
    }

    fn running(s: &Scheduler) -> Vec<u64> {
        s.running.iter().map(|r| r.seq.owner.request).collect()
    }

    #[test]
    fn interactive_sequences_start_before_waiting_background_ones() {
        let files = ModelResolver::default().resolve("random:tiny-llama:1").unwrap();
        let lm = LanguageModel::load("tiny-llama", &files, &Device::Cpu).unwrap();
        let layout = lm.model.kv_layout();
        let pool = KvPool::new(layout, 256 * layout.bytes_per_block(), lm.model.device(), lm.model.wants_cpu_blocks()).unwrap();
        let mut s = Scheduler::new(pool, SchedulerConfig { step_tokens: 48, prefix_sharing: true });
        // Distinct 40-token prompts: nothing is shared, each takes most of a step.
        let seq = |request: u64| Sequence::generate(Owner { request, index: 0 }, (0..40).map(|t| (request as u32 * 40 + t) % 1000 + 1).collect(), SamplingParams::greedy(4), 4, false);
        for r in 0..6 {
            s.add(seq(r), Priority::Background);
        }
        s.step(&lm).unwrap();
        assert_eq!(running(&s), vec![0, 1], "a whole prompt and the start of the next");
        s.add(seq(10), Priority::Interactive);
        s.add(seq(11), Priority::Interactive);
        s.add(seq(12), Priority::Background);
        assert_eq!(waiting(&s), vec![10, 11, 2, 3, 4, 5, 12], "interactive ones in arrival order, ahead of background ones");
        s.step(&lm).unwrap();
        assert_eq!(running(&s), vec![0, 1, 10], "the step's budget left goes to the interactive one");
        // A preempted sequence waits at the front of its own part of the queue.
        s.preempt(1);
        assert_eq!(waiting(&s), vec![11, 1, 2, 3, 4, 5, 12]);
        s.preempt(1);
        assert_eq!(waiting(&s), vec![10, 11, 1, 2, 3, 4, 5, 12]);
        while !s.is_idle() {
            s.step(&lm).unwrap();
        }
        let st = s.stats();
        assert_eq!((st.preemptions, st.pool.used), (2, st.cached_blocks), "everything finished and let go of its blocks");
    }
}
