//! [`Latch`]: a single-use count-down latch (Java's `CountDownLatch`, C++'s
//! `std::latch`), usable from fibers and threads alike.
//!
//! # Design
//! Waiters push a [`Waiter`] handle onto a lock-free queue (crossbeam's
//! `Injector`, the same queue the scheduler uses for its global run queue)
//! and park until the count is zero; the last `count_down` drains the queue
//! and unparks each. A waiter re-checks the count after every wake-up, so
//! spurious wake-ups are harmless.
//!
//! The race to survive: a waiter pushes itself *after* the releaser drained
//! the queue. Both sides do a store then a load, ordered by SeqCst fences:
//!
//! ```text
//!   waiter                         last count_down
//!   push handle                    count = 0 (SeqCst RMW)
//!   fence(SeqCst)                  fence(SeqCst)
//!   load count: 0 → return         drain queue, unpark each
//! ```
//!
//! Either the waiter sees zero, or the releaser sees the handle.
//!
//! A timed wait ([`Latch::wait_timeout`]) queues on a second queue, a
//! [`WaitList`], because a waiter that gives up must take its entry out
//! (a handle left in the lock-free queue would stay there until the latch
//! opens, and a caller retrying timed waits on a latch that never opens
//! would grow it without bound). The timed waiter checks the count under
//! the list's lock before it queues, and the last `count_down` zeroes the
//! count before it locks the list to wake it: either the waiter sees zero
//! or the releaser sees its node.
//!
//! Rejected, by measurement and by review:
//! - a `Mutex<Vec<Waiter>>`: with a million waiters on two workers the lock
//!   is contended and a contended std mutex sleeps in the kernel, which
//!   made `examples/million.rs`'s "run and park" phase measurably slower
//!   (figures in `docs/decisions.md`, "Latch waiter queue");
//! - an intrusive stack of nodes on the waiters' own stacks (no allocation):
//!   unsound here, because at shutdown a parked fiber is unwound out of
//!   `wait` and its node would die while still linked. A handle in the
//!   queue outlives its waiter harmlessly (unparking a finished fiber does
//!   nothing).

use std::sync::atomic::{fence, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_deque::{Injector, Steal};

use super::waitlist::WaitList;
use crate::fiber::waiter::Waiter;

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
#[repr(align(128))] // the count off the cache lines of an enclosing Arc's counts
pub struct Latch {
    count: AtomicUsize,
    /// Parties waiting for zero; drained by the last `count_down`.
    waiters: Injector<Waiter>,
    /// Parties waiting for zero with a deadline; any thread, under the
    /// list's lock; drained by the last `count_down`.
    timed_waiters: WaitList,
}

impl Latch {
    /// A latch that opens after `count` calls to [`Latch::count_down`]
    /// (at once if `count` is 0).
    pub fn new(count: usize) -> Latch {
        Latch {
            count: AtomicUsize::new(count),
            waiters: Injector::new(),
            timed_waiters: WaitList::new(),
        }
    }

    /// The remaining count.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Decrements the count; the call that brings it to zero wakes every
    /// waiter. Further calls do nothing.
    pub fn count_down(&self) {
        // SeqCst: the releaser's half of the race in the module docs (and
        // Release/Acquire: each party's work is visible to the waiters).
        let previous = self
            .count
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| c.checked_sub(1));
        if previous == Ok(1) {
            fence(Ordering::SeqCst);
            loop {
                match self.waiters.steal() {
                    Steal::Success(waiter) => waiter.wake(),
                    Steal::Retry => continue,
                    Steal::Empty => break,
                }
            }
            // The count is zero before this lock: a timed waiter that
            // checks it under the lock after us sees zero.
            self.timed_waiters.notify_all();
        }
    }

    /// Blocks (a thread) or parks (a fiber) until the count is zero.
    pub fn wait(&self) {
        if self.count() == 0 {
            return;
        }
        self.waiters.push(Waiter::current());
        // SeqCst: the waiter's half of the race in the module docs.
        fence(Ordering::SeqCst);
        while self.count.load(Ordering::SeqCst) != 0 {
            crate::park();
        }
    }

    /// Like [`Latch::wait`], giving up after `timeout`: true if the latch
    /// opened (the count is zero), false if the timeout passed first.
    ///
    /// ```
    /// use std::time::Duration;
    /// use spindle::sync::Latch;
    ///
    /// let rt = spindle::Runtime::new().unwrap();
    /// let latch = Latch::new(1);
    /// rt.block_on(|| {
    ///     assert!(!latch.wait_timeout(Duration::from_millis(5))); // still closed
    ///     latch.count_down();
    ///     assert!(latch.wait_timeout(Duration::from_secs(60))); // open: at once
    /// });
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        if self.count() == 0 {
            return true;
        }
        let deadline = Instant::now().checked_add(timeout);
        let node = {
            let mut queue = self.timed_waiters.lock();
            // Under the lock: the module docs' second race.
            if self.count() == 0 {
                return true;
            }
            WaitList::push(&mut queue)
        };
        // Notified only by the last `count_down`, after the count is zero;
        // a timeout that the notification beat reads as opened.
        let opened = self.timed_waiters.wait(&node, deadline) || self.count() == 0;
        WaitList::recycle(node);
        opened
    }
}

impl std::fmt::Debug for Latch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Latch")
            .field("count", &self.count())
            .finish()
    }
}
