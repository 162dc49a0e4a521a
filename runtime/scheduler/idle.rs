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

use crate::loom::sync::atomic::{fence, AtomicUsize, Ordering};
use crate::loom::sync::{Mutex, MutexExt};

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

/// The parking protocol, model-checked (`crate::loom` says how to run
/// them): the race of `scheduler/mod.rs` ("Parking without lost
/// wake-ups"), with this file's `Idle`, `park.rs`'s `Parker` and the
/// worker's steps around them (`Worker::search`, `park_worker` and
/// `stop_searching`, transcribed below; a model cannot run the worker
/// loop itself, which needs a whole runtime).
///
/// Three workers: worker 2 runs a fiber that pushes another onto its
/// deque and runs on (it never looks at its queue again in the model),
/// worker 0 is the last searcher, about to give up, and worker 1 is
/// asleep. The pushed fiber must run: a run that ends with it queued and
/// workers 0 and 1 asleep is the lost wake-up, which loom reports as a
/// deadlock (the model's main thread waits for the workers).
#[cfg(all(test, spindle_loom))]
mod loom_models {
    use super::Idle;
    use crate::scheduler::park::{Parker, Unparker};
    use loom::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
    use loom::thread;
    use std::sync::Arc;

    /// A stand-in for worker 2's deque, holding at most one fiber, with
    /// crossbeam-deque's orderings for the calls the race involves: the
    /// owner's `push` (a Release fence, then a Relaxed store of `back`)
    /// and a thief's `is_empty` and `steal` (`front` Acquire, a SeqCst
    /// fence, `back` Acquire; a steal then claims the fiber by CAS).
    struct Deque {
        front: AtomicUsize,
        back: AtomicUsize,
    }

    impl Deque {
        fn push(&self) {
            fence(Ordering::Release);
            self.back.store(1, Ordering::Relaxed);
        }

        /// `(front, back)` as a thief reads them.
        fn ends(&self) -> (usize, usize) {
            let front = self.front.load(Ordering::Acquire);
            fence(Ordering::SeqCst);
            (front, self.back.load(Ordering::Acquire))
        }

        fn is_empty(&self) -> bool {
            let (front, back) = self.ends();
            back <= front
        }

        fn steal(&self) -> bool {
            let (front, back) = self.ends();
            back > front
                && self
                    .front
                    .compare_exchange(front, front + 1, Ordering::SeqCst, Ordering::Relaxed)
                    .is_ok()
        }
    }

    struct Model {
        idle: Idle,
        /// Worker 2's deque.
        deque: Deque,
        unparkers: Vec<Unparker>,
        /// Set by the worker that runs the pushed fiber, which then
        /// unparks every worker so the model can end (a shutdown). Read
        /// and written by read-modify-writes, which see the latest value
        /// whatever the parker's token orders: the model is about the
        /// push, not about shutdown.
        done: AtomicBool,
    }

    impl Model {
        /// `Shared::notify_one`.
        fn notify_one(&self) {
            if let Some(worker) = self.idle.worker_to_notify() {
                self.unparkers[worker].unpark();
            }
        }

        /// Worker `index`'s loop, from searching (`asleep` false) or
        /// from its sleep.
        fn worker(&self, index: usize, parker: Parker, mut searching: bool, mut asleep: bool) {
            loop {
                if !asleep {
                    // `Worker::search`, one victim.
                    if self.deque.steal() {
                        // `run_fiber` → `stop_searching`.
                        if searching && self.idle.transition_worker_from_searching() {
                            self.notify_one();
                        }
                        // The fiber runs; then shutdown wakes everyone.
                        self.done.swap(true, Ordering::SeqCst);
                        self.unparkers.iter().for_each(Unparker::unpark);
                        return;
                    }
                    // `park_worker`: the last searcher re-checks.
                    let is_last_searcher = self.idle.transition_worker_to_parked(index, searching);
                    if is_last_searcher && !self.deque.is_empty() {
                        self.notify_one();
                    }
                }
                asleep = false;
                loop {
                    parker.park(None);
                    if self.done.fetch_or(false, Ordering::SeqCst) {
                        return;
                    }
                    if !self.idle.is_parked(index) {
                        // Taken off the sleepers list: we search.
                        searching = true;
                        break;
                    }
                }
            }
        }
    }

    /// The pushed fiber always runs: the producer's notify and the last
    /// searcher's re-check cannot both miss it.
    #[test]
    fn loom_push_races_last_searcher_parking() {
        crate::loom::model(|| {
            let idle = Idle::new(3);
            assert!(!idle.transition_worker_to_parked(1, false));
            assert!(idle.transition_worker_to_searching());
            let (parkers, unparkers): (Vec<_>, Vec<_>) = (0..2).map(|_| Parker::new()).unzip();
            let model = Arc::new(Model {
                idle,
                deque: Deque {
                    front: AtomicUsize::new(0),
                    back: AtomicUsize::new(0),
                },
                unparkers,
                done: AtomicBool::new(false),
            });
            let workers: Vec<_> = parkers
                .into_iter()
                .enumerate()
                .map(|(index, parker)| {
                    let model = model.clone();
                    // Worker 0 searches, worker 1 sleeps.
                    thread::spawn(move || model.worker(index, parker, index == 0, index == 1))
                })
                .collect();
            // Worker 2, in its fiber: `Worker::schedule_spawned` pushes the
            // displaced fiber and notifies.
            model.deque.push();
            model.notify_one();
            for worker in workers {
                worker.join().unwrap();
            }
            assert!(model.done.load(Ordering::SeqCst), "the pushed fiber ran");
        });
    }
}
