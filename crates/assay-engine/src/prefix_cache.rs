//! Computed prefixes kept for reuse: the KV cache of a token sequence (a judge prompt's shared
//! part), found again by its token ids. A byte budget bounds what is kept; the least recently
//! used prefixes that no one is using go first. A prefix in use (its `Arc` held by a caller)
//! is never dropped, so the cache can exceed its budget while many are in use.

use crate::error::Result;
use crate::kv_cache::KvCache;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// Hit and miss counts and current size, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PrefixCacheStats {
    pub hits: u64,
    pub misses: u64,
    pub entries: usize,
    pub bytes: usize,
}

struct Entry {
    tokens: Vec<u32>,
    cache: Arc<KvCache>,
    bytes: usize,
    last_used: u64,
}

pub struct PrefixCache {
    budget_bytes: usize,
    /// Keyed by a hash of the token ids; a bucket holds the (rare) colliding sequences.
    entries: HashMap<u64, Vec<Entry>>,
    clock: u64,
    stats: PrefixCacheStats,
}

impl PrefixCache {
    pub fn new(budget_bytes: usize) -> Self {
        Self { budget_bytes, entries: HashMap::new(), clock: 0, stats: PrefixCacheStats::default() }
    }

    pub fn stats(&self) -> PrefixCacheStats {
        self.stats
    }

    /// The computed prefix for `tokens`, from the cache or from `compute`.
    pub fn get_or_compute(&mut self, tokens: &[u32], compute: impl FnOnce() -> Result<Arc<KvCache>>) -> Result<Arc<KvCache>> {
        if let Some(hit) = self.get(tokens) {
            return Ok(hit);
        }
        let cache = compute()?;
        self.insert(tokens, cache.clone());
        Ok(cache)
    }

    /// The cached prefix for `tokens`, counted as a hit or a miss.
    pub fn get(&mut self, tokens: &[u32]) -> Option<Arc<KvCache>> {
        self.evict_to(self.budget_bytes);
        self.clock += 1;
        let clock = self.clock;
        let found = self.entries.get_mut(&hash(tokens)).and_then(|b| b.iter_mut().find(|e| e.tokens == tokens)).map(|e| {
            e.last_used = clock;
            e.cache.clone()
        });
        match found {
            Some(_) => self.stats.hits += 1,
            None => self.stats.misses += 1,
        }
        found
    }

    /// Keeps `cache` as the computed prefix for `tokens` (a miss the caller computed).
    pub fn insert(&mut self, tokens: &[u32], cache: Arc<KvCache>) {
        self.clock += 1;
        let bytes = cache.bytes();
        self.entries.entry(hash(tokens)).or_default().push(Entry { tokens: tokens.to_vec(), cache, bytes, last_used: self.clock });
        self.stats.entries += 1;
        self.stats.bytes += bytes;
        self.evict_to(self.budget_bytes);
    }

    /// Drops least recently used entries that no caller holds until at most `budget` bytes remain.
    fn evict_to(&mut self, budget: usize) {
        while self.stats.bytes > budget {
            let victim = self
                .entries
                .iter()
                .flat_map(|(k, b)| b.iter().enumerate().map(move |(i, e)| (*k, i, e)))
                .filter(|(_, _, e)| Arc::strong_count(&e.cache) == 1)
                .min_by_key(|(_, _, e)| e.last_used)
                .map(|(k, i, _)| (k, i));
            let Some((k, i)) = victim else { return };
            let bucket = self.entries.get_mut(&k).expect("victim's bucket exists");
            let e = bucket.swap_remove(i);
            if bucket.is_empty() {
                self.entries.remove(&k);
            }
            self.stats.entries -= 1;
            self.stats.bytes -= e.bytes;
        }
    }
}

fn hash(tokens: &[u32]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    tokens.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv_cache::KvLayout;
    use candle_core::{DType, Device};

    fn computed(len: usize) -> Result<Arc<KvCache>> {
        let layout = KvLayout { n_layers: 1, n_kv_heads: 1, head_dim: 4, dtype: DType::F32 };
        Ok(Arc::new(KvCache::new(layout, &Device::Cpu, len)?))
    }

    #[test]
    fn hits_misses_and_lru_eviction_within_the_budget() {
        let one = computed(64).unwrap().bytes();
        let mut cache = PrefixCache::new(2 * one);
        let a = cache.get_or_compute(&[1, 2], || computed(64)).unwrap();
        let again = cache.get_or_compute(&[1, 2], || panic!("must be a hit")).unwrap();
        assert!(Arc::ptr_eq(&a, &again));
        drop((a, again));
        cache.get_or_compute(&[3], || computed(64)).unwrap();
        cache.get_or_compute(&[1, 2], || panic!("must be a hit")).unwrap();
        // A third prefix evicts the least recently used one ([3]), not [1, 2].
        cache.get_or_compute(&[4], || computed(64)).unwrap();
        let s = cache.stats();
        assert_eq!((s.hits, s.misses, s.entries, s.bytes), (2, 3, 2, 2 * one));
        let mut recomputed = false;
        cache.get_or_compute(&[3], || {
            recomputed = true;
            computed(64)
        })
        .unwrap();
        assert!(recomputed);
    }

    #[test]
    fn prefixes_in_use_are_kept_and_a_zero_budget_keeps_nothing_else() {
        let mut cache = PrefixCache::new(0);
        let held = cache.get_or_compute(&[7], || computed(64)).unwrap();
        assert_eq!(cache.stats().entries, 1, "in use, so kept despite the budget");
        drop(held);
        let mut recomputed = false;
        cache.get_or_compute(&[7], || {
            recomputed = true;
            computed(64)
        })
        .unwrap();
        assert!(recomputed, "released prefixes are evicted before lookup under a zero budget");
    }
}
