//! [`Condvar`]: wait for a condition under a spindle [`Mutex`], from
//! fibers and threads alike, with std's API.
//!
//! # Design
//! Waiters queue on a [`WaitList`]: a waiter pushes its node *before*
//! unlocking the mutex, so a notify issued by whoever takes the mutex next
//! cannot be missed. A waiter that times out (or is unwound) leaves the
//! list, passing on a notification it received meanwhile.

use std::sync::{LockResult, PoisonError};
use std::time::{Duration, Instant};

use super::mutex::MutexGuard;
use super::waitlist::WaitList;

/// Whether a timed wait ended by timing out (as `std::sync::WaitTimeoutResult`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitTimeoutResult(bool);

impl WaitTimeoutResult {
    /// True if the wait ended because the timeout passed.
    pub fn timed_out(&self) -> bool {
        self.0
    }
}

/// A condition variable for spindle's [`Mutex`](super::Mutex).
///
/// ```
/// use std::sync::Arc;
/// use spindle::sync::{Condvar, Mutex};
///
/// let rt = spindle::Runtime::new().unwrap();
/// let pair = Arc::new((Mutex::new(false), Condvar::new()));
/// let fiber_pair = pair.clone();
/// rt.spawn(move || {
///     let (ready, condvar) = &*fiber_pair;
///     *ready.lock().unwrap() = true;
///     condvar.notify_one();
/// });
/// // A plain thread waits for the fiber.
/// let (ready, condvar) = &*pair;
/// let mut guard = ready.lock().unwrap();
/// while !*guard {
///     guard = condvar.wait(guard).unwrap();
/// }
/// ```
#[derive(Default)]
pub struct Condvar {
    waiters: WaitList,
}

impl Condvar {
    /// A condition variable with no waiters.
    pub fn new() -> Condvar {
        Condvar::default()
    }

    /// Unlocks the guard's mutex, waits for a notification (or a spurious
    /// wake-up), and locks it again.
    pub fn wait<'a, T: ?Sized>(&self, guard: MutexGuard<'a, T>) -> LockResult<MutexGuard<'a, T>> {
        let mutex = guard.mutex();
        let node = WaitList::push(&mut self.waiters.lock());
        drop(guard);
        self.waiters.wait(&node, None);
        WaitList::recycle(node);
        mutex.lock()
    }

    /// Like [`Condvar::wait`], giving up after `timeout`.
    pub fn wait_timeout<'a, T: ?Sized>(
        &self,
        guard: MutexGuard<'a, T>,
        timeout: Duration,
    ) -> LockResult<(MutexGuard<'a, T>, WaitTimeoutResult)> {
        let mutex = guard.mutex();
        let node = WaitList::push(&mut self.waiters.lock());
        drop(guard);
        let notified = self
            .waiters
            .wait(&node, Instant::now().checked_add(timeout));
        WaitList::recycle(node);
        let result = WaitTimeoutResult(!notified);
        match mutex.lock() {
            Ok(guard) => Ok((guard, result)),
            Err(poisoned) => Err(PoisonError::new((poisoned.into_inner(), result))),
        }
    }

    /// Waits while `condition` holds, as `std::sync::Condvar::wait_while`.
    pub fn wait_while<'a, T: ?Sized, F: FnMut(&mut T) -> bool>(
        &self,
        mut guard: MutexGuard<'a, T>,
        mut condition: F,
    ) -> LockResult<MutexGuard<'a, T>> {
        while condition(&mut *guard) {
            guard = self.wait(guard)?;
        }
        Ok(guard)
    }

    /// Wakes one waiter, if any.
    pub fn notify_one(&self) {
        self.waiters.notify_one();
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) {
        self.waiters.notify_all();
    }
}

impl std::fmt::Debug for Condvar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Condvar").finish_non_exhaustive()
    }
}
