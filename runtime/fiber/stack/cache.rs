//! [`StackCache`]: a worker's private stock of free default-size stacks.
//!
//! Every spawn that runs takes a stack and every finish gives one back, so
//! this is the hot path of the stack pool: a `Vec` push or pop with no lock
//! and no atomic read-modify-write. The cache trades with its size class's
//! global lists [`BATCH`] stacks at a time, so the class lock is taken at
//! most once per `BATCH` spawns or finishes, and holds at most
//! [`LOCAL_CACHE`] stacks. Stacks of other sizes, and every stack on the
//! budgeted `mprotect` path, bypass it (see `StackPool::is_budgeted`).
//!
//! Rejected: one global list without caches, as the only design. Every
//! spawn and finish would take the class lock, and workers on different
//! cores would contend for it on exactly the path a spawn storm stresses.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::{Stack, StackPool};

/// Stacks a worker keeps for itself. A guess awaiting measurement: enough
/// for a busy worker's spawn/finish churn without the global lists, while
/// bounding the warm memory one worker keeps (see docs/decisions.md).
pub(crate) const LOCAL_CACHE: usize = 64;

/// Stacks moved between a worker cache and the global lists at a time, so
/// the global lock is taken once per `BATCH` spawns at most. A guess: half
/// of [`LOCAL_CACHE`], so a cache that just spilled or refilled has room
/// both ways.
pub(crate) const BATCH: usize = 32;

/// A worker's private stock of free default-size stacks: no locking.
/// (Bypassed when the pool has a budget; see `StackPool::is_budgeted`.)
///
/// Owned by one worker thread; only `published` is read by others.
pub(crate) struct StackCache {
    stacks: Vec<Stack>,
    /// `stacks.len()`, for statistics. Written by the owner only; Relaxed.
    published: Arc<AtomicUsize>,
}

impl StackCache {
    pub(crate) fn new() -> StackCache {
        StackCache {
            stacks: Vec::with_capacity(LOCAL_CACHE),
            published: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The counter others read to know how many stacks this cache holds.
    pub(crate) fn published(&self) -> Arc<AtomicUsize> {
        self.published.clone()
    }

    /// A default-size stack, from the cache or a batch from the pool.
    pub(crate) fn acquire(&mut self, pool: &StackPool) -> io::Result<Stack> {
        if pool.is_budgeted() {
            return pool.acquire_from(&pool.default);
        }
        if self.stacks.is_empty() {
            let result = pool.refill(&pool.default, &mut self.stacks, BATCH);
            if self.stacks.is_empty() {
                result?;
            }
            // Hand out the lowest address first (the batch came highest
            // first off the lists' ends), which keeps live stacks dense.
            self.stacks
                .sort_unstable_by_key(|s| std::cmp::Reverse(s.address()));
        }
        let stack = self.stacks.pop().expect("cache refilled");
        self.published.store(self.stacks.len(), Ordering::Relaxed);
        Ok(stack)
    }

    /// Keeps a finished fiber's default-size stack, spilling a batch to the
    /// pool when the cache is full.
    pub(crate) fn release(&mut self, pool: &StackPool, stack: Stack) {
        if stack.size != pool.default.stack_size || pool.is_budgeted() {
            pool.release(stack);
            return;
        }
        if self.stacks.len() >= LOCAL_CACHE {
            let spill: Vec<Stack> = self.stacks.drain(..BATCH).collect();
            pool.give_back(&pool.default, spill);
        }
        self.stacks.push(stack);
        self.published.store(self.stacks.len(), Ordering::Relaxed);
    }

    /// Returns every cached stack to the pool (a worker does this on exit).
    pub(crate) fn drain_into(&mut self, pool: &StackPool) {
        if !self.stacks.is_empty() {
            pool.give_back(&pool.default, std::mem::take(&mut self.stacks));
        }
        self.published.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stacks_are_reused_and_accounted() {
        let pool = StackPool::new(16 * 1024, false);
        let mut cache = StackCache::new();
        let first = cache.acquire(&pool).unwrap();
        let first_addr = first.slot.as_ptr() as usize;
        assert_eq!(pool.stats(cache.stacks.len()).in_use, 1);
        cache.release(&pool, first);
        let again = cache.acquire(&pool).unwrap();
        assert_eq!(
            again.slot.as_ptr() as usize,
            first_addr,
            "a released stack is reused first"
        );
        cache.release(&pool, again);
        cache.drain_into(&pool);
        let stats = pool.stats(0);
        assert_eq!(stats.in_use, 0);
        assert_eq!(stats.cached, stats.carved);
    }
}
