//! How a worker thread sleeps: a [`Parker`] / [`Unparker`] pair.
//!
//! This is the only place a worker blocks in the kernel. The protocol is
//! std's thread-parker: a token that an `unpark` leaves and a `park`
//! consumes, so an unpark that arrives before the park is not lost. Built on
//! `std::sync::{Mutex, Condvar}` (futexes on Linux); the timeout is the
//! worker's earliest timer deadline (`Worker::park_worker`), and the
//! monitor's period.
//!
//! A worker may instead sleep in the I/O poller ([`Parker::park_in`], used
//! by `io/reactor.rs`): the state is then POLLING, and `unpark` wakes it with
//! the interrupt the reactor installed ([`Unparker::set_interrupt`], a
//! `mio::Waker`) instead of the condvar. The token protocol is the same.

use crate::loom::sync::atomic::{AtomicU8, Ordering};
use crate::loom::sync::{Condvar, CondvarExt, Mutex, MutexExt};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

const EMPTY: u8 = 0;
const PARKED: u8 = 1;
const NOTIFIED: u8 = 2;
/// The owner sleeps (or is about to) in the I/O poller; `unpark` calls the
/// interrupt.
const POLLING: u8 = 3;

/// How to wake an owner that sleeps in the I/O poller.
pub(crate) type Interrupt = Box<dyn Fn() + Send + Sync>;

struct Inner {
    /// EMPTY, PARKED (the owner sleeps or is about to), POLLING (the same,
    /// in the I/O poller) or NOTIFIED (a token).
    state: AtomicU8,
    /// Wakes the owner out of the I/O poller. Set once, when the runtime
    /// starts, before any worker runs.
    interrupt: OnceLock<Interrupt>,
    /// Held while changing PARKED ↔ NOTIFIED around the condvar, so a notify
    /// cannot slip between the owner's check and its wait.
    lock: Mutex<()>,
    condvar: Condvar,
}

impl Inner {
    /// The owner is about to sleep: EMPTY → `asleep` (PARKED or POLLING).
    /// Returns false instead if a token was there, consuming it.
    #[inline]
    fn announce_sleep(&self, asleep: u8) -> bool {
        // SeqCst, as in `Parker::park`.
        match self
            .state
            .compare_exchange(EMPTY, asleep, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => true,
            Err(NOTIFIED) => {
                // A swap, not a store: it reads the latest unpark's write,
                // so that unparker's writes are ordered before we return.
                self.state.swap(EMPTY, Ordering::SeqCst);
                false
            }
            Err(other) => unreachable!("parker in state {other} while its owner goes to sleep"),
        }
    }
}

/// The sleeping half, owned by one worker thread.
pub(crate) struct Parker {
    inner: Arc<Inner>,
}

/// The waking half, shared with every thread that may wake the worker.
#[derive(Clone)]
pub(crate) struct Unparker {
    inner: Arc<Inner>,
}

impl Parker {
    pub(crate) fn new() -> (Parker, Unparker) {
        let inner = Arc::new(Inner {
            state: AtomicU8::new(EMPTY),
            interrupt: OnceLock::new(),
            lock: Mutex::new(()),
            condvar: Condvar::new(),
        });
        (
            Parker {
                inner: inner.clone(),
            },
            Unparker { inner },
        )
    }

    /// Sleeps until unparked (returns at once if a token is there) or until
    /// `timeout` passes. May return spuriously; callers re-check.
    pub(crate) fn park(&self, timeout: Option<Duration>) {
        let inner = &*self.inner;
        // SeqCst (here and below): the token hand-off must be ordered with
        // the idle-worker counters the caller read (see idle.rs).
        if inner
            .state
            .compare_exchange(NOTIFIED, EMPTY, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            return;
        }
        let mut guard = inner.lock.lock_unpoisoned();
        if !inner.announce_sleep(PARKED) {
            return;
        }
        match timeout {
            None => loop {
                guard = inner.condvar.wait_unpoisoned(guard);
                if inner
                    .state
                    .compare_exchange(NOTIFIED, EMPTY, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
                {
                    return;
                }
            },
            Some(timeout) => {
                let (_guard, _) = inner.condvar.wait_timeout_unpoisoned(guard, timeout);
                // Timed out or woken: either way consume a token if any.
                inner.state.swap(EMPTY, Ordering::SeqCst);
            }
        }
    }

    /// Sleeps in `sleep` (the reactor's poll, given the timeout) instead of
    /// on the condvar; an `unpark` meanwhile calls the interrupt set with
    /// [`Unparker::set_interrupt`], which makes `sleep` return. Returns
    /// `None` without calling `sleep` if a token was there (consuming it).
    /// The token left by an unpark during the sleep is consumed on return.
    pub(crate) fn park_in<R>(
        &self,
        timeout: Option<Duration>,
        sleep: impl FnOnce(Option<Duration>) -> R,
    ) -> Option<R> {
        let inner = &*self.inner;
        debug_assert!(
            inner.interrupt.get().is_some(),
            "park_in without an interrupt"
        );
        if !inner.announce_sleep(POLLING) {
            return None;
        }
        // An unpark from here on sees POLLING and interrupts: the poller's
        // wake-up event stays pending until `sleep` collects it, so one that
        // arrives before the sleep begins ends the sleep at once.
        let result = sleep(timeout);
        inner.state.swap(EMPTY, Ordering::SeqCst);
        Some(result)
    }
}

impl Unparker {
    /// Installs how to wake the owner out of the I/O poller (`park_in`).
    pub(crate) fn set_interrupt(&self, interrupt: Interrupt) {
        let _ = self.inner.interrupt.set(interrupt);
    }

    /// Leaves the token and wakes the owner if it sleeps.
    pub(crate) fn unpark(&self) {
        let inner = &*self.inner;
        match inner.state.swap(NOTIFIED, Ordering::SeqCst) {
            EMPTY | NOTIFIED => {}
            POLLING => {
                if let Some(interrupt) = inner.interrupt.get() {
                    interrupt();
                }
            }
            PARKED => {
                // Taking the lock orders this notify after the owner's wait
                // began (it holds the lock from its PARKED store until the
                // condvar releases it).
                drop(inner.lock.lock_unpoisoned());
                inner.condvar.notify_one();
            }
            other => unreachable!("parker in state {other}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn unpark_before_park_is_kept() {
        let (parker, unparker) = Parker::new();
        unparker.unpark();
        parker.park(None); // returns at once
    }

    #[test]
    fn unpark_from_another_thread_wakes() {
        for _ in 0..1000 {
            let (parker, unparker) = Parker::new();
            let t = std::thread::spawn(move || unparker.unpark());
            parker.park(None);
            t.join().unwrap();
        }
    }

    #[test]
    fn timeout_returns() {
        let (parker, _unparker) = Parker::new();
        let start = Instant::now();
        parker.park(Some(Duration::from_millis(5)));
        assert!(start.elapsed() >= Duration::from_millis(5));
    }
}

/// The parker's token, model-checked (`crate::loom` says how to run
/// them): an unpark is never lost, whether it comes before the park,
/// while the owner is going to sleep or once it sleeps, on the condvar or
/// in the poller. loom reports an owner left asleep as a deadlock.
#[cfg(all(test, spindle_loom))]
mod loom_models {
    use super::Parker;
    use loom::sync::atomic::{AtomicBool, Ordering};
    use loom::thread;
    use std::sync::Arc;

    /// An unpark from another thread ends a park on the condvar.
    #[test]
    fn loom_unpark_races_park() {
        crate::loom::model(|| {
            let (parker, unparker) = Parker::new();
            let waker = thread::spawn(move || unparker.unpark());
            parker.park(None);
            waker.join().unwrap();
        });
    }

    /// Two wakers: one unparks, the other sets a flag and unparks; the
    /// owner parks until it sees the flag. The park that takes the token
    /// must see the writes of every unpark before it (std's rule), also
    /// when the two unparks coalesce into one token while the owner is
    /// going to sleep.
    #[test]
    fn loom_every_unpark_publishes_its_writes() {
        crate::loom::model(|| {
            let (parker, unparker) = Parker::new();
            let flag = Arc::new(AtomicBool::new(false));
            let first = {
                let unparker = unparker.clone();
                thread::spawn(move || unparker.unpark())
            };
            let second = {
                let flag = flag.clone();
                thread::spawn(move || {
                    flag.store(true, Ordering::Release);
                    unparker.unpark();
                })
            };
            while !flag.load(Ordering::Acquire) {
                parker.park(None);
            }
            first.join().unwrap();
            second.join().unwrap();
        });
    }

    /// An unpark ends a sleep in the I/O poller: the interrupt stands for
    /// the reactor's waker, an event that stays pending until the poll
    /// collects it.
    #[test]
    fn loom_unpark_races_poll() {
        crate::loom::model(|| {
            let (parker, unparker) = Parker::new();
            let event = Arc::new(AtomicBool::new(false));
            let poller = thread::current();
            unparker.set_interrupt({
                let event = event.clone();
                // A swap, not a store: loom orders a store against the
                // poll's swap only partly, and reports a missed event where
                // the memory model allows none.
                Box::new(move || {
                    event.swap(true, Ordering::Release);
                    poller.unpark();
                })
            });
            let waker = thread::spawn(move || unparker.unpark());
            parker.park_in(None, |_| {
                while !event.swap(false, Ordering::Acquire) {
                    thread::park();
                }
            });
            waker.join().unwrap();
        });
    }
}
