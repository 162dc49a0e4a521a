//! A scope's shared state: the count of its unfinished fibers and their
//! handles (for cancelling them), its first panic, and the owner's wait
//! (`mod.rs` has the design).
//!
//! One `std::sync::Mutex` guards it all. It is held only to read or change
//! these fields, never across a park or user code, so a fiber holding it
//! never moves to another worker; cancellation requests and the owner's
//! wake-up are made after it is released.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::fiber::join::{Cancelled, JoinError};
use crate::fiber::waiter::Waiter;
use crate::fiber::{CurrentFiber, Fiber};

/// How often the owner of a cancelled scope looks for fibers frozen during
/// their cancellation, which no wake-up announces: a guess, rare enough to
/// cost nothing, soon enough that a scope does not seem hung.
const FROZEN_POLL: Duration = Duration::from_millis(100);

/// What a scope does with a fiber's panic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Policy {
    /// The first panic cancels the rest and is re-raised.
    ShutdownOnFailure,
    /// Panics stay with their handles (std's scoped threads).
    CollectAll,
}

/// Shared by a scope and its fibers, in an `Arc`.
pub(super) struct State {
    policy: Policy,
    /// Any thread, under the lock (module docs).
    inner: Mutex<Inner>,
}

/// # Invariants
/// `running` is the number of slots that are not free: each fiber that has
/// not stopped counting holds one.
struct Inner {
    /// Fibers spawned in the scope that have not stopped counting.
    running: usize,
    /// One per counted fiber (and free ones, listed in `free`), so that
    /// memory stays bounded by the fibers alive at once.
    slots: Vec<Slot>,
    free: Vec<usize>,
    /// The owner, while it waits for `running` to reach zero.
    owner: Option<Waiter>,
    /// Cancel every fiber, present and future.
    cancelled: bool,
    /// The panic to re-raise (`ShutdownOnFailure`).
    first_panic: Option<Box<dyn Any + Send>>,
    /// Whether a panic has cancelled the scope (its payload may have been
    /// taken already).
    failed: bool,
    /// Fibers that panicked, and panics their handles returned
    /// (`CollectAll`).
    panicked: usize,
    panics_joined: usize,
}

enum Slot {
    Free,
    /// Counted; the spawn has not registered the fiber yet.
    Reserved,
    Live(Fiber),
    /// The fiber stopped counting before its spawn registered it.
    Finished,
}

/// How the owner's wait ended.
#[derive(Clone, Copy, Debug)]
pub(super) struct Waited {
    /// The deadline passed first (everything was cancelled).
    pub(super) elapsed: bool,
    /// The owner's fiber was cancelled while it waited.
    pub(super) owner_cancelled: bool,
}

impl State {
    pub(super) fn new(policy: Policy) -> State {
        State {
            policy,
            inner: Mutex::new(Inner {
                running: 0,
                slots: Vec::new(),
                free: Vec::new(),
                owner: None,
                cancelled: false,
                first_panic: None,
                failed: false,
                panicked: 0,
                panics_joined: 0,
            }),
        }
    }

    /// The lock; a poisoned one is taken as it is (nothing here panics
    /// while holding it, so poison would come from a bug elsewhere).
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn running(&self) -> usize {
        self.lock().running
    }

    pub(super) fn is_cancelled(&self) -> bool {
        self.lock().cancelled
    }

    /// Counts a fiber about to be spawned; returns its slot.
    pub(super) fn reserve(&self) -> usize {
        let mut inner = self.lock();
        inner.running += 1;
        match inner.free.pop() {
            Some(slot) => {
                debug_assert!(matches!(inner.slots[slot], Slot::Free));
                inner.slots[slot] = Slot::Reserved;
                slot
            }
            None => {
                inner.slots.push(Slot::Reserved);
                inner.slots.len() - 1
            }
        }
    }

    /// The spawn of `slot`'s fiber succeeded: keep it for cancelling, or
    /// cancel it now if the scope is being cancelled.
    pub(super) fn register(&self, slot: usize, fiber: &Fiber) {
        let cancel = {
            let mut inner = self.lock();
            match inner.slots[slot] {
                Slot::Reserved => inner.slots[slot] = Slot::Live(fiber.clone()),
                Slot::Finished => {
                    inner.slots[slot] = Slot::Free;
                    inner.free.push(slot);
                    return;
                }
                Slot::Free | Slot::Live(_) => unreachable!("a scope slot registered twice"),
            }
            inner.cancelled
        };
        if cancel {
            crate::fiber::cancel::request_cancel(&fiber.inner);
        }
    }

    /// The spawn of `slot`'s fiber failed (its root closure was dropped,
    /// which stopped it counting): the slot is free again.
    pub(super) fn spawn_failed(&self, slot: usize) {
        let mut inner = self.lock();
        debug_assert!(matches!(inner.slots[slot], Slot::Finished));
        inner.slots[slot] = Slot::Free;
        inner.free.push(slot);
    }

    /// `slot`'s fiber stops counting (its `Done` guard); wakes the owner
    /// if it was the last.
    pub(super) fn finished(&self, slot: usize) {
        let owner = {
            let mut inner = self.lock();
            match inner.slots[slot] {
                Slot::Reserved => inner.slots[slot] = Slot::Finished,
                Slot::Live(_) => {
                    inner.slots[slot] = Slot::Free;
                    inner.free.push(slot);
                }
                Slot::Free | Slot::Finished => unreachable!("a scoped fiber finished twice"),
            }
            debug_assert!(inner.running > 0, "a scope's count went below zero");
            inner.running -= 1;
            if inner.running == 0 {
                inner.owner.take()
            } else {
                None
            }
        };
        if let Some(owner) = owner {
            owner.wake();
        }
    }

    /// Cancels every fiber of the scope, and those spawned later.
    pub(super) fn cancel_all(&self) {
        let fibers: Vec<Fiber> = {
            let mut inner = self.lock();
            inner.cancelled = true;
            inner
                .slots
                .iter()
                .filter_map(|slot| match slot {
                    Slot::Live(fiber) => Some(fiber.clone()),
                    _ => None,
                })
                .collect()
        };
        for fiber in &fibers {
            crate::fiber::cancel::request_cancel(&fiber.inner);
        }
    }

    /// A fiber's closure panicked with `payload` (or was unwound by its
    /// cancellation): applies the policy and returns what its handle gets.
    pub(super) fn fiber_failed(&self, payload: Box<dyn Any + Send>) -> JoinError {
        if payload.is::<Cancelled>() {
            return JoinError::from_panic(payload);
        }
        match self.policy {
            Policy::CollectAll => {
                self.lock().panicked += 1;
                JoinError::from_panic(payload)
            }
            Policy::ShutdownOnFailure => {
                let first = {
                    let mut inner = self.lock();
                    !std::mem::replace(&mut inner.failed, true)
                };
                if !first {
                    return JoinError::from_panic(payload);
                }
                let message = super::panic_message(payload.as_ref());
                self.lock().first_panic = Some(payload);
                self.cancel_all();
                JoinError::from_panic(Box::new(format!(
                    "{message} (its scope cancelled the other fibers and re-raises this panic)"
                )))
            }
        }
    }

    /// The scope's closure itself panicked (or was unwound by the owner's
    /// cancellation): cancel the rest, and under `ShutdownOnFailure`, the
    /// panic is the scope's first unless a fiber's came before.
    pub(super) fn body_failed(&self, payload: &(dyn Any + Send)) {
        if !payload.is::<Cancelled>() {
            self.lock().failed = true;
        }
        self.cancel_all();
    }

    /// A handle's `join` returned its fiber's panic (`CollectAll`).
    pub(super) fn panic_joined(&self) {
        self.lock().panics_joined += 1;
    }

    /// The panic to re-raise, and how many panics no handle returned.
    pub(super) fn take_failures(&self) -> (Option<Box<dyn Any + Send>>, usize) {
        let mut inner = self.lock();
        let unjoined = inner.panicked.saturating_sub(inner.panics_joined);
        (inner.first_panic.take(), unjoined)
    }

    /// Waits until every fiber of the scope has stopped counting; with a
    /// `deadline`, cancels them all when it passes. Never unwinds: a
    /// cancellation of the owner is caught, passed on to the fibers, and
    /// the rest of the wait is shielded (`mod.rs`, "Why borrowing is
    /// sound").
    pub(super) fn wait(&self, deadline: Option<Instant>) -> Waited {
        let mut waited = Waited {
            elapsed: false,
            owner_cancelled: false,
        };
        // Set where a timed park returned before its time: no timer runs
        // (a fiber unwound at shutdown), so parks must be untimed.
        let mut no_timers = false;
        loop {
            let cancelled = {
                let mut inner = self.lock();
                if inner.running == 0 {
                    inner.owner = None;
                    return waited;
                }
                inner.owner = Some(Waiter::current());
                inner.cancelled
            };
            let pending_deadline = deadline.filter(|_| !waited.elapsed && !no_timers);
            let poll = (cancelled && !no_timers).then(|| Instant::now() + FROZEN_POLL);
            let wake_at = match (pending_deadline, poll) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let park = || crate::time::park_until(wake_at);
            let parked = if waited.owner_cancelled {
                Ok(crate::fiber::shield(park))
            } else {
                catch_unwind(AssertUnwindSafe(park))
            };
            match parked {
                Ok(true) => {}
                Ok(false) => {
                    if wake_at.is_some_and(|at| Instant::now() < at) {
                        no_timers = true;
                    }
                }
                // The owner's cancellation (a park raises nothing else):
                // it is taken up again after the scope.
                Err(_) => {
                    if let Some(fiber) = CurrentFiber::get() {
                        crate::fiber::cancel::caught(fiber);
                    }
                    waited.owner_cancelled = true;
                    self.cancel_all();
                }
            }
            if !waited.elapsed && deadline.is_some_and(|d| no_timers || Instant::now() >= d) {
                waited.elapsed = true;
                self.cancel_all();
            }
            if cancelled {
                self.reap_frozen();
            }
        }
    }

    /// Stops counting fibers that are done but never dropped their `Done`
    /// guard: frozen during their cancellation (`mod.rs`). A fiber's
    /// completion is published after its guard was dropped, so a done
    /// fiber still registered here is one whose guard never will be.
    fn reap_frozen(&self) {
        let owner = {
            let mut inner = self.lock();
            let inner = &mut *inner;
            for (index, slot) in inner.slots.iter_mut().enumerate() {
                if matches!(slot, Slot::Live(fiber) if fiber.inner.completion.is_done()) {
                    *slot = Slot::Free;
                    inner.free.push(index);
                    inner.running -= 1;
                }
            }
            if inner.running == 0 {
                inner.owner.take()
            } else {
                None
            }
        };
        drop(owner);
    }
}
