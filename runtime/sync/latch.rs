//! [`Latch`]: a single-use count-down latch (Java's `CountDownLatch`, C++'s
//! `std::latch`), usable from fibers and threads alike.
//!
//! # Design
//! The waiters are a `Vec` of [`Waiter`] handles under a mutex that is held
//! only to push one handle or to take the whole list, never across a park.
//! A waiter does not rely on being woken exactly once: after any wake-up it
//! re-checks the count, so spurious wake-ups are harmless.
//!
//! Rejected: an intrusive lock-free stack whose nodes live on the waiters'
//! own stacks (no allocation, no lock). It is unsound here: at shutdown a
//! parked fiber is unwound out of `wait`, its node dies with its stack
//! frame while still linked, and a later `count_down` would follow a
//! dangling pointer. A handle in a `Vec` outlives the waiter harmlessly
//! (unparking a finished fiber does nothing). The cost is 16 bytes per
//! waiter and one uncontended lock, which `examples/million.rs` measures.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::waiter::Waiter;

/// A latch that opens when counted down to zero.
///
/// ```
/// use std::sync::Arc;
/// use spindle::sync::Latch;
///
/// let rt = spindle::Runtime::new().unwrap();
/// let ready = Arc::new(Latch::new(3));
/// for _ in 0..3 {
///     let ready = ready.clone();
///     rt.spawn(move || ready.count_down());
/// }
/// ready.wait(); // a plain thread waits too
/// assert_eq!(ready.count(), 0);
/// ```
pub struct Latch {
    /// Remaining count. Decremented without the lock; read under it by
    /// waiters deciding to wait, which is what orders the two (see `wait`).
    count: AtomicUsize,
    /// Parties waiting for zero; taken whole by the last `count_down`.
    waiters: Mutex<Vec<Waiter>>,
}

impl Latch {
    /// A latch that opens after `count` calls to [`Latch::count_down`]
    /// (at once if `count` is 0).
    pub fn new(count: usize) -> Latch {
        Latch {
            count: AtomicUsize::new(count),
            waiters: Mutex::new(Vec::new()),
        }
    }

    /// The remaining count.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Decrements the count; the call that brings it to zero wakes every
    /// waiter. Further calls do nothing.
    pub fn count_down(&self) {
        // AcqRel: Release publishes this party's work to the waiters; the
        // last one's Acquire sees every other party's.
        let previous = self
            .count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| c.checked_sub(1));
        if previous == Ok(1) {
            // Taking the list under the lock orders this after every waiter
            // that saw a non-zero count under the same lock.
            let waiters =
                std::mem::take(&mut *self.waiters.lock().unwrap_or_else(|e| e.into_inner()));
            for waiter in waiters {
                waiter.unpark();
            }
        }
    }

    /// Blocks (a thread) or parks (a fiber) until the count is zero.
    pub fn wait(&self) {
        if self.count() == 0 {
            return;
        }
        {
            let mut waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
            // Checked under the lock: either the last count_down has not
            // taken the list yet (we are on it and will be woken), or it
            // has, and its decrement is visible here.
            if self.count() == 0 {
                return;
            }
            waiters.push(Waiter::current());
        }
        while self.count() != 0 {
            crate::park();
        }
    }
}

impl std::fmt::Debug for Latch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Latch")
            .field("count", &self.count())
            .finish()
    }
}
