//! Which workers are searching for work and which are asleep.
//!
//! Two counters packed in one atomic word, and the list of sleepers:
//!
//! - **searching**: workers that ran out of local work and are trying to
//!   steal. A worker starts searching only while fewer than half the
//!   workers do (more would only contend on the same victims); a worker
//!   woken by a producer counts as searching whatever the count.
//! - **unparked**: workers not asleep (running fibers or searching).
//!
//! A producer that makes a fiber runnable wakes a sleeper **only if nobody
//! is searching** (a searcher will find the fiber) and somebody sleeps: one
//! wake-up per burst of spawns, not one per spawn (no thundering herd). The
//! woken worker counts as searching from the moment it is chosen, so the
//! next spawn does not wake another one.
//!
//! The race this must survive is described in `scheduler/mod.rs` ("Parking
//! without lost wake-ups"); its two halves are [`Idle::worker_to_notify`]
//! and [`Idle::transition_worker_to_parked`].

use crate::lock::MutexExt;
use std::sync::atomic::{fence, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Bits of the state word holding the number of searching workers.
const SEARCH_BITS: usize = 16;
const SEARCH_MASK: usize = (1 << SEARCH_BITS) - 1;
/// One unparked worker, in the state word.
const ONE_UNPARKED: usize = 1 << SEARCH_BITS;

pub(super) struct Idle {
    /// `unparked << SEARCH_BITS | searching`. SeqCst throughout: see the
    /// race in scheduler/mod.rs.
    state: AtomicUsize,
    /// Indices of sleeping workers. The lock orders sleepers with wakers.
    sleepers: Mutex<Vec<usize>>,
    num_workers: usize,
}

impl Idle {
    /// All workers start unparked and not searching.
    pub(super) fn new(num_workers: usize) -> Idle {
        assert!(num_workers < SEARCH_MASK, "too many workers");
        Idle {
            state: AtomicUsize::new(num_workers * ONE_UNPARKED),
            sleepers: Mutex::new(Vec::with_capacity(num_workers)),
            num_workers,
        }
    }

    /// Called after making a fiber runnable: picks a sleeping worker to wake
    /// (counting it as searching and unparked), or `None` if a searcher
    /// exists or nobody sleeps.
    pub(super) fn worker_to_notify(&self) -> Option<usize> {
        // SeqCst fence: orders the caller's queue push before this load (a
        // store-load pair, which acquire/release cannot order). Pairs with
        // the SeqCst decrement in `transition_worker_to_parked`.
        fence(Ordering::SeqCst);
        if !self.should_notify() {
            return None;
        }
        let mut sleepers = self.sleepers.lock_unpoisoned();
        if !self.should_notify() {
            return None;
        }
        let worker = sleepers.pop()?;
        self.state.fetch_add(ONE_UNPARKED | 1, Ordering::SeqCst);
        Some(worker)
    }

    fn should_notify(&self) -> bool {
        let state = self.state.load(Ordering::SeqCst);
        state & SEARCH_MASK == 0 && state >> SEARCH_BITS < self.num_workers
    }

    /// A worker wants to start searching. Refused when half the workers
    /// already search.
    pub(super) fn transition_worker_to_searching(&self) -> bool {
        let state = self.state.load(Ordering::SeqCst);
        if 2 * (state & SEARCH_MASK) >= self.num_workers {
            return false;
        }
        self.state.fetch_add(1, Ordering::SeqCst);
        true
    }

    /// A searching worker found work. Returns true if it was the last
    /// searcher: it must then wake another worker, since producers skipped
    /// notifying while it searched.
    pub(super) fn transition_worker_from_searching(&self) -> bool {
        let previous = self.state.fetch_sub(1, Ordering::SeqCst);
        debug_assert!(previous & SEARCH_MASK > 0, "searcher count underflow");
        previous & SEARCH_MASK == 1
    }

    /// A worker with no work goes to sleep. Returns true if it was the last
    /// searcher: it must then re-check every queue before sleeping.
    pub(super) fn transition_worker_to_parked(&self, worker: usize, searching: bool) -> bool {
        let mut sleepers = self.sleepers.lock_unpoisoned();
        let decrement = ONE_UNPARKED + usize::from(searching);
        let previous = self.state.fetch_sub(decrement, Ordering::SeqCst);
        debug_assert!(previous >> SEARCH_BITS > 0, "unparked count underflow");
        debug_assert!(!sleepers.contains(&worker), "worker {worker} parked twice");
        sleepers.push(worker);
        searching && previous & SEARCH_MASK == 1
    }

    /// Whether `worker` is still on the sleepers list (so a wake-up it saw
    /// was spurious, or came from shutdown or a timeout).
    pub(super) fn is_parked(&self, worker: usize) -> bool {
        self.sleepers.lock_unpoisoned().contains(&worker)
    }

    /// A worker leaves the sleepers list on its own (its timer is due),
    /// unparked but not searching. Returns false if a waker had already
    /// taken it off (then it counts as searching).
    pub(super) fn unpark_self(&self, worker: usize) -> bool {
        let mut sleepers = self.sleepers.lock_unpoisoned();
        let Some(position) = sleepers.iter().position(|&w| w == worker) else {
            return false;
        };
        sleepers.swap_remove(position);
        self.state.fetch_add(ONE_UNPARKED, Ordering::SeqCst);
        true
    }

    /// `(searching, unparked)`, for tests.
    #[cfg(test)]
    fn counts(&self) -> (usize, usize) {
        let state = self.state.load(Ordering::SeqCst);
        (state & SEARCH_MASK, state >> SEARCH_BITS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_wake_per_burst() {
        let idle = Idle::new(4);
        for w in 0..4 {
            assert!(!idle.transition_worker_to_parked(w, false));
        }
        assert_eq!(idle.counts(), (0, 0));
        let woken = idle.worker_to_notify().expect("someone sleeps");
        assert_eq!(idle.counts(), (1, 1));
        assert_eq!(
            idle.worker_to_notify(),
            None,
            "a searcher exists: no second wake"
        );
        assert!(
            idle.transition_worker_from_searching(),
            "the only searcher is the last"
        );
        assert!(!idle.is_parked(woken));
    }

    #[test]
    fn last_searcher_is_told() {
        let idle = Idle::new(2);
        assert!(idle.transition_worker_to_searching());
        assert!(
            !idle.transition_worker_to_searching(),
            "at most half search"
        );
        assert!(
            idle.transition_worker_to_parked(0, true),
            "the only searcher is the last"
        );
        assert_eq!(idle.counts(), (0, 1));
        assert!(idle.is_parked(0));
        assert!(
            idle.unpark_self(0),
            "a worker whose timer is due leaves the list"
        );
        assert!(!idle.unpark_self(0));
        assert_eq!(idle.counts(), (0, 2));
    }
}
