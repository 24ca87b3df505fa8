//! One step's forward batch: the new tokens of every scheduled sequence side by side, with
//! their positions and pool slots, each sequence's block table, the prefix blocks several
//! sequences share (for the cascade split), and the rows whose logits are wanted. The
//! scheduler builds it; the model runs it.

use crate::attention::{shared_segments, QuerySpan, SharedSegment};
use crate::kv_pool::{slot_of, BlockId, Slot, BLOCK_SIZE};

/// The rows of one sequence in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub offset: usize,
    pub rows: usize,
    /// Position of the first row (the sequence's keys before it are in the pool).
    pub start: usize,
    pub table: Vec<BlockId>,
}

/// See the module notes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepBatch {
    pub tokens: Vec<u32>,
    pub positions: Vec<u32>,
    pub slots: Vec<Slot>,
    pub spans: Vec<Span>,
    pub segments: Vec<SharedSegment>,
    /// Rows of the flat batch whose logits the forward pass returns, in this order.
    pub logit_rows: Vec<u32>,
}

impl StepBatch {
    /// Adds `tokens` of a sequence at positions `start..`, whose table covers them; `logits`
    /// are offsets within `tokens`. Returns the span's index.
    pub fn push(&mut self, tokens: &[u32], start: usize, table: &[BlockId], logits: impl IntoIterator<Item = usize>) -> usize {
        let offset = self.tokens.len();
        self.tokens.extend_from_slice(tokens);
        self.positions.extend((start..start + tokens.len()).map(|p| p as u32));
        self.slots.extend((start..start + tokens.len()).map(|p| slot_of(table, p)));
        self.logit_rows.extend(logits.into_iter().map(|r| (offset + r) as u32));
        self.spans.push(Span { offset, rows: tokens.len(), start, table: table.to_vec() });
        self.spans.len() - 1
    }

    /// Finds which spans share which leading blocks (blocks complete before the step).
    pub fn find_shared_segments(&mut self) {
        let tables: Vec<&[BlockId]> = self.spans.iter().map(|s| s.table.as_slice()).collect();
        let shareable: Vec<usize> = self.spans.iter().map(|s| s.start / BLOCK_SIZE).collect();
        self.segments = shared_segments(&tables, &shareable);
    }

    pub fn query_spans(&self) -> Vec<QuerySpan<'_>> {
        self.spans.iter().map(|s| QuerySpan { offset: s.offset, rows: s.rows, start: s.start, table: &s.table }).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}
