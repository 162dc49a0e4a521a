//! A worker's run queue: a crossbeam-deque FIFO plus a one-fiber "next"
//! slot; and the runtime's spawn [`Backlog`], where a worker's spawns
//! overflow.
//!
//! The deque holds runnable fibers in order; its owner pushes and pops at
//! one end while thieves take batches from the other (crossbeam's
//! Chase-Lev deque in FIFO mode: owner and thieves both take the oldest).
//!
//! The [`NextSlot`] holds the fiber this worker most recently woke or
//! spawned, which runs before the deque (Go's `runnext`, tokio's LIFO slot):
//! when fiber A unparks B and then parks, B runs right away on the same
//! worker with A's data still in cache, which is what makes a channel
//! ping-pong cost two stack switches instead of a trip through the queue.
//!
//! Two rules keep the slot from trapping or starving anybody:
//! - it is **stealable**: an atomic pointer that searching workers take in
//!   their last round of stealing. Filling an empty slot wakes nobody (as in
//!   tokio: waking the other worker on every ping-pong message would cost a
//!   futex wake per message). If the worker then stays in one fiber (which
//!   computes or spins without yielding), the monitor (`monitor.rs`) sees
//!   its tick counter stand still with a fiber waiting and wakes a sleeping
//!   worker, which steals it within about two of the monitor's
//!   `BUSY_INTERVAL` periods.
//! - it is **bounded**: a worker runs at most [`MAX_NEXT_STREAK`] fibers in a
//!   row from the slot before going back to its deque, so a ping-pong pair
//!   cannot starve the queue.

use std::collections::VecDeque;
use std::ptr;
use std::sync::Arc;

use crossbeam_deque::Steal;

use crate::fiber::FiberInner;
use crate::loom::sync::atomic::{fence, AtomicPtr, AtomicUsize, Ordering};
use crate::loom::sync::{Mutex, MutexExt};

/// Fibers a worker runs in a row from its next slot before it looks at its
/// deque. tokio's value; Go lets `runnext` inherit the time slice. A guess
/// pending measurement: long enough for a ping-pong pair to stay hot, short
/// enough that the queue moves every few switches.
pub(super) const MAX_NEXT_STREAK: u32 = 3;

/// A one-fiber slot that the owner and thieves take with an atomic swap.
/// Generic only so that its model (below) can fill it without a runtime;
/// the scheduler's slots hold fibers.
///
/// # Invariants
/// - The pointer is null or came from `Arc::into_raw` and owns one
///   reference.
/// - Only the owning worker thread puts (`Worker::schedule_local`,
///   `Worker::schedule_spawned`); anyone takes. So null → non-null is the owner's move alone.
pub(super) struct NextSlot<T = FiberInner>(AtomicPtr<T>);

impl<T> NextSlot<T> {
    pub(super) fn new() -> NextSlot<T> {
        NextSlot(AtomicPtr::new(ptr::null_mut()))
    }

    /// Puts a fiber in the slot; returns the one it displaced. Only the
    /// slot's owner (the worker whose slot it is) puts.
    pub(super) fn put(&self, fiber: Arc<T>) -> Option<Arc<T>> {
        let fiber = Arc::into_raw(fiber).cast_mut();
        // An empty slot stays empty until we fill it: thieves only take.
        // So a plain store does, saving a read-modify-write on every
        // wake-up into an empty slot (`docs/decisions.md`,
        // "NextSlot::put"). Release publishes the fiber to a thief's or
        // the owner's Acquire swap in `take`.
        if self.0.load(Ordering::Relaxed).is_null() {
            self.0.store(fiber, Ordering::Release);
            return None;
        }
        // AcqRel: Release publishes the fiber to a thief's swap; Acquire
        // takes ownership of the displaced one (or of nothing, if a thief
        // emptied the slot since our load).
        let previous = self.0.swap(fiber, Ordering::AcqRel);
        // SAFETY: non-null pointers in the slot own a reference (invariant),
        // which the swap transferred to us.
        (!previous.is_null()).then(|| unsafe { Arc::from_raw(previous) })
    }

    /// Whether the slot is empty (a hint: it may change at once).
    pub(super) fn is_empty(&self) -> bool {
        self.0.load(Ordering::Relaxed).is_null()
    }

    /// Takes the fiber out of the slot (owner or thief).
    pub(super) fn take(&self) -> Option<Arc<T>> {
        if self.0.load(Ordering::Relaxed).is_null() {
            return None;
        }
        // Acquire: pairs with `put`'s Release.
        let fiber = self.0.swap(ptr::null_mut(), Ordering::Acquire);
        // SAFETY: as in `put`, the swap transferred the reference to us.
        (!fiber.is_null()).then(|| unsafe { Arc::from_raw(fiber) })
    }
}

impl<T> Drop for NextSlot<T> {
    fn drop(&mut self) {
        debug_assert!(self.is_empty(), "a fiber was left in a next slot");
        drop(self.take());
    }
}

/// The runtime's spawn backlog: a FIFO of unstarted fibers that overflowed
/// a worker's deque (see `worker.rs`, `SPAWN_BACKLOG`), under a lock. A
/// worker fills it a batch at a time, half its deque and the fiber that
/// overflowed (Go's `runqputslow`), and workers take it a batch at a time
/// ([`BACKLOG_BATCH`]), so the lock is taken once per batch. Generic only
/// so that its model (below) can fill it without a runtime.
///
/// Rejected: a crossbeam `Injector`, as the other global queue is. It
/// allocates a block per few dozen fibers on the spawning worker and frees
/// it on the taking one: a burst of spawns made the two contend for the
/// spawner's malloc arena lock while the spawner also allocated its
/// fibers' records there (measured in docs/benchmarks.md). The queue here
/// keeps its buffer.
pub(super) struct Backlog<T = FiberInner> {
    /// The fibers, oldest at the front; any thread, under the lock.
    queue: Mutex<VecDeque<Arc<T>>>,
    /// `queue`'s length, for a look without the lock (a worker whose
    /// deque is empty looks at every scheduling decision). Written under
    /// the lock; read by anyone.
    len: AtomicUsize,
}

/// Fibers a worker takes from the spawn backlog at a time: the batch that
/// crossbeam's injector hands out, which the other global queue uses.
pub(super) const BACKLOG_BATCH: usize = 32;

impl<T> Backlog<T> {
    pub(super) fn new() -> Backlog<T> {
        Backlog {
            queue: Mutex::new(VecDeque::new()),
            len: AtomicUsize::new(0),
        }
    }

    /// Appends `fibers`, oldest first.
    pub(super) fn push_batch(&self, fibers: impl IntoIterator<Item = Arc<T>>) {
        let mut queue = self.queue.lock_unpoisoned();
        queue.extend(fibers);
        // Relaxed: the lock orders it for takers; for the park protocol
        // (`mod.rs`) the pusher's `notify_one` fence follows it.
        self.len.store(queue.len(), Ordering::Relaxed);
    }

    /// Takes the oldest fiber.
    pub(super) fn pop(&self) -> Option<Arc<T>> {
        self.take(1, |_| unreachable!("a batch of one"))
    }

    /// Takes the oldest fiber, and gives up to [`BACKLOG_BATCH`] - 1 more
    /// to `more`, oldest first (a worker's deque).
    pub(super) fn pop_batch(&self, more: impl FnMut(Arc<T>)) -> Option<Arc<T>> {
        self.take(BACKLOG_BATCH, more)
    }

    /// Takes every fiber, oldest first (shutdown).
    pub(super) fn take_all(&self, into: &mut VecDeque<Arc<T>>) {
        let mut queue = self.queue.lock_unpoisoned();
        into.append(&mut queue);
        self.len.store(0, Ordering::Relaxed);
    }

    /// Takes the oldest fiber and gives up to `n - 1` more to `more`.
    fn take(&self, n: usize, more: impl FnMut(Arc<T>)) -> Option<Arc<T>> {
        // Relaxed: a hint that saves the lock when the backlog is empty. A
        // stale zero sends the worker on to search, and before it sleeps
        // the park protocol's look (`is_empty_to_a_sleeper`) sees the
        // fiber.
        if self.is_empty() {
            return None;
        }
        let mut queue = self.queue.lock_unpoisoned();
        let first = queue.pop_front()?;
        let rest = queue.len().min(n - 1);
        queue.drain(..rest).for_each(more);
        self.len.store(queue.len(), Ordering::Relaxed);
        Some(first)
    }

    /// Whether the backlog is empty (a hint: it may change at once).
    pub(super) fn is_empty(&self) -> bool {
        // Relaxed: see `take`.
        self.len.load(Ordering::Relaxed) == 0
    }

    /// Whether the backlog is empty, as the last searcher's re-check needs
    /// it (`mod.rs`, "Parking without lost wake-ups"): the fence orders
    /// the load after the searcher's SeqCst decrement, as crossbeam's
    /// deque orders a thief's look, so it sees a push made before the
    /// pusher's SeqCst fence. The other looks are hints and go without
    /// the fence, which costs a worker that yields with nothing else to
    /// run (measured in docs/decisions.md).
    pub(super) fn is_empty_to_a_sleeper(&self) -> bool {
        fence(Ordering::SeqCst);
        self.len.load(Ordering::Relaxed) == 0
    }
}

/// Runs a steal from a deque or an injector until it settles: the fiber,
/// or `None` once the queue was found empty. crossbeam answers
/// `Steal::Retry` when the steal lost a race with another thief (or the
/// owner); trying again at once is what every caller wants.
#[inline]
pub(super) fn steal_settled<T>(mut steal: impl FnMut() -> Steal<T>) -> Option<T> {
    loop {
        match steal() {
            Steal::Success(stolen) => return Some(stolen),
            Steal::Empty => return None,
            Steal::Retry => continue,
        }
    }
}

/// The next slot, model-checked (`crate::loom` says how to run them): its
/// owner puts while a thief takes. A slot item stands for a fiber, with a
/// cell for what its waker wrote before putting it; loom reports a read of
/// it that the slot's orderings leave unordered as a causality violation.
#[cfg(all(test, spindle_loom))]
mod loom_models {
    use super::{Backlog, NextSlot};
    use crate::loom::cell::UnsafeCell;
    use crate::loom::sync::atomic::{fence, AtomicUsize, Ordering};
    use loom::thread;
    use std::collections::VecDeque;
    use std::sync::Arc;

    /// A fiber in the model: its number, and what its waker wrote.
    struct Item {
        id: u32,
        written: UnsafeCell<u32>,
    }

    // SAFETY: `written` is written before the item is put and read only
    // by whoever takes it out (which is what the model checks).
    unsafe impl Sync for Item {}

    fn item(id: u32) -> Arc<Item> {
        let item = Item {
            id,
            written: UnsafeCell::new(0),
        };
        // SAFETY: nobody else has the item yet.
        item.written.with_mut(|written| unsafe { *written = id });
        Arc::new(item)
    }

    /// Whoever got an item out of the slot reads it, and says which.
    fn taken(item: Arc<Item>) -> u32 {
        // SAFETY: taking the item out of the slot made it ours.
        let written = item.written.with(|written| unsafe { *written });
        assert_eq!(written, item.id, "the putter's write is visible");
        item.id
    }

    /// The owner puts two fibers (the first into an empty slot, the plain
    /// store; the second displacing it unless a thief took it) and takes
    /// one, while a thief takes one: every fiber comes out exactly once,
    /// with what was written before it went in.
    #[test]
    fn loom_next_slot_put_races_steal() {
        crate::loom::model(|| {
            let slot = Arc::new(NextSlot::<Item>::new());
            let thief = {
                let slot = slot.clone();
                thread::spawn(move || slot.take().map(taken))
            };
            let mut out = Vec::new();
            assert!(slot.put(item(1)).is_none(), "the slot starts empty");
            out.extend(slot.put(item(2)).map(taken));
            out.extend(slot.take().map(taken));
            out.extend(thief.join().unwrap());
            out.extend(slot.take().map(taken));
            out.sort_unstable();
            assert_eq!(out, [1, 2], "each fiber comes out once");
        });
    }

    /// A worker overflows two fibers into the backlog and then looks for a
    /// searcher (the producer's side of the park protocol, `mod.rs`),
    /// while the last searcher takes a batch, stops searching and looks
    /// again: every fiber comes out once, with what was written before it
    /// went in, and if the producer saw the searcher (so would wake
    /// nobody), the searcher found the fibers.
    #[test]
    fn loom_backlog_push_races_take() {
        crate::loom::model(|| {
            let backlog = Arc::new(Backlog::<Item>::new());
            let searching = Arc::new(AtomicUsize::new(1));
            let searcher = {
                let (backlog, searching) = (backlog.clone(), searching.clone());
                thread::spawn(move || {
                    let mut out = Vec::new();
                    if let Some(first) = backlog.pop_batch(|more| out.push(taken(more))) {
                        out.push(taken(first));
                    }
                    searching.fetch_sub(1, Ordering::SeqCst);
                    let sees_work = !backlog.is_empty_to_a_sleeper();
                    (out, sees_work)
                })
            };
            backlog.push_batch([item(1), item(2)]);
            fence(Ordering::SeqCst);
            let sees_searcher = searching.load(Ordering::SeqCst) > 0;
            let (mut out, sees_work) = searcher.join().unwrap();
            if sees_searcher {
                assert!(!out.is_empty() || sees_work, "a wake-up was lost");
            }
            let mut rest = VecDeque::new();
            backlog.take_all(&mut rest);
            out.extend(rest.into_iter().map(taken));
            out.sort_unstable();
            assert_eq!(out, [1, 2], "each fiber comes out once");
        });
    }
}
