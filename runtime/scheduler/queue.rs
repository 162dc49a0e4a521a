//! A worker's run queue: a crossbeam-deque FIFO plus a one-fiber "next" slot.
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

use std::ptr;
use std::sync::Arc;

use crossbeam_deque::Steal;

use crate::fiber::FiberInner;
use crate::loom::sync::atomic::{AtomicPtr, Ordering};

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
    use super::NextSlot;
    use crate::loom::cell::UnsafeCell;
    use loom::thread;
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
}
