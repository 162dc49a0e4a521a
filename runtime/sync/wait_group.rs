//! [`WaitGroup`]: wait for a counted group of tasks to finish, Go's
//! `sync.WaitGroup` (`Add`, `Done`, `Wait`), for fibers and threads alike.
//!
//! # Design
//! A counter and a [`WaitList`] of the parties waiting for it to reach
//! zero. The counter changes only under the list's lock, so a waiter that
//! finds it non-zero under that lock and queues is found by the `add` that
//! brings it to zero, which pops every queued node under the same lock and
//! wakes them after unlocking. `wait` reads the counter without the lock
//! first: a group already at zero costs one load.
//!
//! A group is reusable: once the counter is back at zero, `add` starts a
//! new round. Each time the counter reaches zero a *generation* number is
//! bumped (under the lock), and a waiter returns when the generation it
//! queued in has ended, not when the counter reads zero: a waiter released
//! by the zero of its round is not caught by a new round that began before
//! it ran, and a wake-up that did not end its round (one a waiter unwound
//! from its wait passed on, as a [`WaitList`] does) sends it back to wait.
//!
//! Rejected: the latch's lock-free queue of waiter handles (`latch.rs`):
//! its handles stay queued until the count reaches zero, so a reused group
//! would need a queue per round; the wait list removes a leaving waiter.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::waitlist::WaitList;

/// A counter of outstanding tasks that parties can wait on reaching zero.
///
/// [`add`](WaitGroup::add) raises the counter before tasks start,
/// [`done`](WaitGroup::done) lowers it as each finishes, and
/// [`wait`](WaitGroup::wait) parks the calling fiber (or blocks the
/// thread) until it is zero. Share it through an `Arc`.
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::Arc;
/// use spindle::sync::WaitGroup;
///
/// let rt = spindle::Runtime::new().unwrap();
/// let group = Arc::new(WaitGroup::new());
/// let finished = Arc::new(AtomicUsize::new(0));
/// for _ in 0..10 {
///     group.add(1); // before the task starts, as in Go
///     let (group, finished) = (group.clone(), finished.clone());
///     rt.spawn(move || {
///         finished.fetch_add(1, Ordering::SeqCst);
///         group.done();
///     });
/// }
/// group.wait(); // a plain thread waits too
/// assert_eq!(finished.load(Ordering::SeqCst), 10);
/// assert_eq!(group.count(), 0);
/// ```
///
/// # Invariants
/// `count` and `generation` change only under `waiters`' lock; every node
/// queued in `waiters` was queued while `count` was non-zero, in the
/// current generation.
pub struct WaitGroup {
    /// Outstanding tasks. Written under `waiters`' lock; read by anyone
    /// (Acquire: pairs with the Release of the `done` that zeroed it, so a
    /// waiter sees the tasks' work).
    count: AtomicUsize,
    /// How many times the counter has reached zero (wrapping). Written
    /// under `waiters`' lock, read under it by waiters.
    generation: AtomicUsize,
    /// Parties waiting for the counter to reach zero.
    waiters: WaitList,
}

impl WaitGroup {
    /// A group with the counter at zero.
    pub fn new() -> WaitGroup {
        WaitGroup {
            count: AtomicUsize::new(0),
            generation: AtomicUsize::new(0),
            waiters: WaitList::new(),
        }
    }

    /// Adds `delta` (which may be negative) to the counter. Reaching zero
    /// wakes every waiter; the group can then be used again.
    ///
    /// # Panics
    /// If the counter would go below zero (more `done`s than `add`s) or
    /// above `usize::MAX`; the counter is left as it was.
    ///
    /// ```
    /// use spindle::sync::WaitGroup;
    ///
    /// let group = WaitGroup::new();
    /// group.add(3);
    /// group.add(-2);
    /// assert_eq!(group.count(), 1);
    /// ```
    pub fn add(&self, delta: isize) {
        let wakes = {
            let mut queue = self.waiters.lock();
            let count = self.count.load(Ordering::Relaxed);
            let Some(new) = count.checked_add_signed(delta) else {
                drop(queue);
                if delta < 0 {
                    panic!(
                        "WaitGroup::add({delta}) with the counter at {count}: the counter \
                         would go negative (more done() than add())"
                    );
                }
                panic!("WaitGroup::add({delta}) with the counter at {count}: it would overflow");
            };
            // Release: the work of a task that calls `done` is visible to
            // the waiter that sees zero (Acquire in `wait`).
            self.count.store(new, Ordering::Release);
            if new != 0 || count == 0 {
                return;
            }
            self.generation.fetch_add(1, Ordering::Relaxed);
            WaitList::pop_all(&mut queue)
        };
        wakes.into_iter().for_each(|wake| wake.wake());
    }

    /// Lowers the counter by one: a task of the group has finished.
    ///
    /// # Panics
    /// If the counter is zero (see [`WaitGroup::add`]).
    ///
    /// ```
    /// use spindle::sync::WaitGroup;
    ///
    /// let group = WaitGroup::new();
    /// group.add(1);
    /// group.done();
    /// group.wait(); // at zero: returns at once
    /// ```
    pub fn done(&self) {
        self.add(-1);
    }

    /// Parks the calling fiber (or blocks the thread) until the counter is
    /// zero; returns at once if it is zero now. A waiter released by the
    /// counter reaching zero returns even if a new round has raised it
    /// again since.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use spindle::sync::WaitGroup;
    ///
    /// let rt = spindle::Runtime::new().unwrap();
    /// let group = Arc::new(WaitGroup::new());
    /// for round in 0..3 {
    ///     group.add(2);
    ///     for _ in 0..2 {
    ///         let group = group.clone();
    ///         rt.spawn(move || group.done());
    ///     }
    ///     group.wait(); // the group is reused each round
    ///     assert_eq!(group.count(), 0, "round {round}");
    /// }
    /// ```
    pub fn wait(&self) {
        // Acquire: pairs with the Release of the `add` that zeroed it.
        if self.count.load(Ordering::Acquire) == 0 {
            return;
        }
        let (node, generation) = {
            let mut queue = self.waiters.lock();
            if self.count.load(Ordering::Acquire) == 0 {
                return;
            }
            let generation = self.generation.load(Ordering::Relaxed);
            (WaitList::push(&mut queue), generation)
        };
        let mut node = node;
        loop {
            self.waiters.wait(&node, None);
            WaitList::recycle(node);
            let mut queue = self.waiters.lock();
            // The lock orders the tasks' work before this: each `add` ran
            // under it.
            if self.generation.load(Ordering::Relaxed) != generation {
                return;
            }
            // Woken without our round ending (a notification passed on by
            // a waiter that left): wait again.
            node = WaitList::push(&mut queue);
        }
    }

    /// The counter now (a snapshot).
    ///
    /// ```
    /// let group = spindle::sync::WaitGroup::new();
    /// group.add(2);
    /// assert_eq!(group.count(), 2);
    /// ```
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }
}

impl Default for WaitGroup {
    fn default() -> WaitGroup {
        WaitGroup::new()
    }
}

impl fmt::Debug for WaitGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitGroup")
            .field("count", &self.count())
            .finish_non_exhaustive()
    }
}
