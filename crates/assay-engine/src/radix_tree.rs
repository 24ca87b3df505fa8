//! The radix tree of computed prefixes (SGLang's RadixAttention, at block granularity): token
//! ids -> the pool blocks that hold their keys and values. Whoever sends a prompt whose start
//! was computed before (judge instructions, an item's input and output, a chat's system
//! prompt, a repeated request, a rationale before its verdict) finds those blocks here and
//! computes only the rest.
//!
//! Each node is one block: a full block (`BLOCK_SIZE` tokens) may have children, the blocks
//! that follow it; a partly filled block (the tail of a prompt) is a leaf. A lookup walks full
//! blocks that match exactly and shares them; where the next block matches only in its first
//! `n` tokens (a prompt that parts from a cached one mid-block), the caller copies those `n`
//! slots into a block of its own (copy-on-write) and shares nothing it would write to.
//!
//! The tree holds one reference on each block it names. A node is kept while any sequence
//! also holds its block; when the pool runs short, leaves that only the tree holds are
//! evicted, least recently used first.

use crate::kv_pool::{BlockId, KvPool, BLOCK_SIZE};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

type NodeId = usize;
const ROOT: NodeId = 0;

struct Node {
    /// The tokens of this node's block (all `BLOCK_SIZE` unless a leaf); empty for the root.
    tokens: Vec<u32>,
    block: BlockId,
    parent: NodeId,
    children: Vec<NodeId>,
    last_used: u64,
}

/// What a lookup found for a token sequence.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrefixMatch {
    /// Full blocks that hold the first `blocks.len() * BLOCK_SIZE` tokens, root first.
    pub blocks: Vec<BlockId>,
    /// A block whose first `n` slots hold the next `n` tokens: to be copied, not shared.
    pub partial: Option<(BlockId, usize)>,
}

impl PrefixMatch {
    /// Tokens whose keys and values the match provides.
    pub fn tokens(&self) -> usize {
        self.blocks.len() * BLOCK_SIZE + self.partial.map_or(0, |p| p.1)
    }
}

/// See the module notes.
pub struct RadixTree {
    nodes: Vec<Option<Node>>,
    vacant: Vec<NodeId>,
    clock: u64,
    /// Blocks the tree names.
    blocks: usize,
}

impl Default for RadixTree {
    fn default() -> Self {
        Self::new()
    }
}

impl RadixTree {
    pub fn new() -> Self {
        let root = Node { tokens: Vec::new(), block: 0, parent: ROOT, children: Vec::new(), last_used: 0 };
        Self { nodes: vec![Some(root)], vacant: Vec::new(), clock: 0, blocks: 0 }
    }

    fn node(&self, id: NodeId) -> &Node {
        self.nodes[id].as_ref().expect("live node")
    }

    fn node_mut(&mut self, id: NodeId) -> &mut Node {
        self.nodes[id].as_mut().expect("live node")
    }

    /// Blocks the tree holds a reference on.
    pub fn cached_blocks(&self) -> usize {
        self.blocks
    }

    /// Blocks eviction could free: nodes that only the tree holds, with no node below them
    /// that a sequence holds.
    pub fn evictable_blocks(&self, pool: &KvPool) -> usize {
        // Children come after their parents in no guaranteed order: count bottom-up.
        fn free_below(tree: &RadixTree, id: NodeId, pool: &KvPool, count: &mut usize) -> bool {
            let node = tree.node(id);
            let mut all = true;
            for &c in &node.children {
                all &= free_below(tree, c, pool, count);
            }
            let free = all && (id == ROOT || pool.refcount(node.block) == 1);
            if free && id != ROOT {
                *count += 1;
            }
            free
        }
        let mut count = 0;
        free_below(self, ROOT, pool, &mut count);
        count
    }

    /// The longest computed prefix of `tokens` (pass at most the tokens that may be reused;
    /// a prompt's last token must be computed again for its logits).
    pub fn lookup(&mut self, tokens: &[u32]) -> PrefixMatch {
        self.clock += 1;
        let clock = self.clock;
        let mut found = PrefixMatch::default();
        let (mut at, mut pos) = (ROOT, 0);
        loop {
            let rest = &tokens[pos..];
            if rest.is_empty() {
                break;
            }
            let children = &self.node(at).children;
            let exact = (rest.len() >= BLOCK_SIZE).then(|| children.iter().copied().find(|&c| self.node(c).tokens.as_slice() == &rest[..BLOCK_SIZE])).flatten();
            if let Some(c) = exact {
                self.node_mut(c).last_used = clock;
                found.blocks.push(self.node(c).block);
                at = c;
                pos += BLOCK_SIZE;
                continue;
            }
            let best = children.iter().map(|&c| (common_prefix(&self.node(c).tokens, rest), c)).max_by_key(|&(n, _)| n);
            if let Some((n, c)) = best.filter(|&(n, _)| n > 0) {
                self.node_mut(c).last_used = clock;
                found.partial = Some((self.node(c).block, n));
            }
            break;
        }
        found
    }

    /// Records that `table` holds the keys and values of `tokens` (positions `0..len`, all
    /// computed). Blocks already named by an equal node are left to their holder; new ones
    /// get a reference from the tree. A partly filled last block becomes a leaf; inserting it
    /// again once it holds more tokens extends that leaf.
    pub fn insert(&mut self, tokens: &[u32], table: &[BlockId], pool: &mut KvPool) {
        self.clock += 1;
        let clock = self.clock;
        let mut at = ROOT;
        for (chunk, &block) in tokens.chunks(BLOCK_SIZE).zip(table) {
            let full = chunk.len() == BLOCK_SIZE;
            let children = self.node(at).children.clone();
            let same = children.iter().copied().find(|&c| {
                let n = self.node(c);
                if full {
                    n.tokens.as_slice() == chunk
                } else {
                    n.tokens.starts_with(chunk)
                }
            });
            let next = match same {
                Some(c) => c,
                None => match children.iter().copied().find(|&c| self.node(c).block == block) {
                    // Our own block, named earlier with fewer tokens: it holds more now.
                    Some(c) => {
                        self.node_mut(c).tokens = chunk.to_vec();
                        c
                    }
                    None => {
                        pool.retain(block);
                        self.blocks += 1;
                        self.add(Node { tokens: chunk.to_vec(), block, parent: at, children: Vec::new(), last_used: clock })
                    }
                },
            };
            self.node_mut(next).last_used = clock;
            if !full {
                break;
            }
            at = next;
        }
    }

    fn add(&mut self, node: Node) -> NodeId {
        let parent = node.parent;
        let id = match self.vacant.pop() {
            Some(id) => {
                self.nodes[id] = Some(node);
                id
            }
            None => {
                self.nodes.push(Some(node));
                self.nodes.len() - 1
            }
        };
        self.node_mut(parent).children.push(id);
        id
    }

    fn evictable(&self, id: NodeId, pool: &KvPool) -> bool {
        let n = self.node(id);
        id != ROOT && n.children.is_empty() && pool.refcount(n.block) == 1
    }

    /// Frees up to `wanted` blocks by dropping leaves only the tree holds, least recently used
    /// first (a parent left childless becomes a candidate in turn). Returns the blocks freed.
    pub fn evict(&mut self, pool: &mut KvPool, wanted: usize) -> usize {
        let mut heap: BinaryHeap<Reverse<(u64, NodeId)>> =
            (1..self.nodes.len()).filter(|&id| self.nodes[id].is_some() && self.evictable(id, pool)).map(|id| Reverse((self.node(id).last_used, id))).collect();
        let mut freed = 0;
        while freed < wanted {
            let Some(Reverse((_, id))) = heap.pop() else { break };
            if self.nodes[id].is_none() || !self.evictable(id, pool) {
                continue;
            }
            let node = self.nodes[id].take().expect("checked live");
            self.vacant.push(id);
            self.node_mut(node.parent).children.retain(|&c| c != id);
            pool.release(node.block);
            self.blocks -= 1;
            freed += 1;
            if self.evictable(node.parent, pool) {
                heap.push(Reverse((self.node(node.parent).last_used, node.parent)));
            }
        }
        freed
    }
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Chained hashes of the full blocks of `tokens`: equal hashes at index `i` mean equal first
/// `(i + 1) * BLOCK_SIZE` tokens (up to collisions). The scheduler uses them to hold back a
/// prompt whose next blocks another running sequence is computing.
pub fn block_hashes(tokens: &[u32]) -> Vec<u64> {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    tokens
        .chunks_exact(BLOCK_SIZE)
        .map(|chunk| {
            for &t in chunk {
                for b in t.to_le_bytes() {
                    h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
                }
            }
            h
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv_pool::KvLayout;
    use candle_core::{DType, Device};

    fn pool(blocks: usize) -> KvPool {
        let layout = KvLayout { n_layers: 1, n_kv_heads: 1, head_dim: 4, dtype: DType::F32 };
        KvPool::new(layout, blocks * layout.bytes_per_block(), &Device::Cpu, true).unwrap()
    }

    /// Blocks for `tokens`, as a sequence that computed them would hold.
    fn computed(pool: &mut KvPool, tokens: usize) -> Vec<BlockId> {
        (0..tokens.div_ceil(BLOCK_SIZE)).map(|_| pool.allocate().unwrap()).collect()
    }

    fn seq(start: u32, len: usize) -> Vec<u32> {
        (start..start + len as u32).collect()
    }

    #[test]
    fn full_blocks_are_shared_and_a_mid_block_parting_is_copied() {
        let mut pool = pool(16);
        let mut tree = RadixTree::new();
        let a = seq(0, 80);
        let table = computed(&mut pool, 80);
        tree.insert(&a, &table, &mut pool);
        assert_eq!(tree.cached_blocks(), 3);
        // Same first 70 tokens, then different.
        let mut b = seq(0, 70);
        b.extend([999, 998]);
        let m = tree.lookup(&b);
        assert_eq!(m.blocks, table[..2].to_vec());
        assert_eq!(m.partial, Some((table[2], 6)));
        assert_eq!(m.tokens(), 70);
        // A lookup limited to 40 tokens stops inside the second block.
        let m = tree.lookup(&a[..40]);
        assert_eq!((m.blocks.clone(), m.partial), (table[..1].to_vec(), Some((table[1], 8))));
        assert_eq!(tree.lookup(&[5, 6]), PrefixMatch::default());
    }

    #[test]
    fn equal_content_keeps_one_node_and_a_growing_leaf_is_extended() {
        let mut pool = pool(16);
        let mut tree = RadixTree::new();
        let a = seq(0, 40);
        let t1 = computed(&mut pool, 40);
        tree.insert(&a, &t1, &mut pool);
        let t2 = computed(&mut pool, 40);
        tree.insert(&a, &t2, &mut pool);
        assert_eq!(tree.cached_blocks(), 2, "the second copy is not named");
        assert_eq!((pool.refcount(t2[0]), pool.refcount(t2[1])), (1, 1));
        // The owner of t1 decodes on: its last block now holds 20 tokens.
        let longer = seq(0, 52);
        tree.insert(&longer, &t1, &mut pool);
        assert_eq!(tree.cached_blocks(), 2);
        assert_eq!(tree.lookup(&seq(0, 52)).tokens(), 52);
        assert_eq!(pool.refcount(t1[1]), 2, "the leaf kept its one reference");
    }

    #[test]
    fn eviction_frees_only_blocks_no_sequence_holds_least_recent_first() {
        let mut pool = pool(8);
        let mut tree = RadixTree::new();
        let (a, b) = (seq(0, 64), seq(1000, 64));
        let (ta, tb) = (computed(&mut pool, 64), computed(&mut pool, 64));
        tree.insert(&a, &ta, &mut pool);
        tree.insert(&b, &tb, &mut pool);
        // Sequence a is done; b still runs (holds its blocks).
        for &blk in &ta {
            pool.release(blk);
        }
        assert_eq!(tree.evictable_blocks(&pool), 2);
        assert_eq!(pool.free_blocks(), 4);
        let freed = tree.evict(&mut pool, 10);
        assert_eq!(freed, 2, "a's two blocks, leaf first then its parent");
        assert_eq!(pool.free_blocks(), 6);
        assert_eq!(tree.lookup(&b).tokens(), 64, "b's blocks are kept");
        assert_eq!(tree.lookup(&a).tokens(), 0);
        // Least recently used first: insert c, touch b's after releasing it, evict one.
        for &blk in &tb {
            pool.release(blk);
        }
        let c = seq(5000, 32);
        let tc = computed(&mut pool, 32);
        tree.insert(&c, &tc, &mut pool);
        pool.release(tc[0]);
        tree.lookup(&b);
        assert_eq!(tree.evict(&mut pool, 1), 1);
        assert_eq!(tree.lookup(&c).tokens(), 0, "c was used least recently");
        assert_eq!(tree.lookup(&b).tokens(), 64);
    }

    #[test]
    fn block_hashes_chain_over_full_blocks() {
        let a = block_hashes(&seq(0, 100));
        let mut other = seq(0, 100);
        other[40] = 7;
        let b = block_hashes(&other);
        assert_eq!(a.len(), 3);
        assert_eq!(a[0], b[0]);
        assert_ne!(a[1], b[1]);
        assert_ne!(a[2], b[2], "a difference carries into later blocks");
    }
}
