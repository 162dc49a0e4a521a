//! [`Condvar`]: wait for a condition under a spindle [`Mutex`], from
//! fibers and threads alike, with std's API.
//!
//! # Design
//! Waiters queue on a [`WaitList`]: a waiter pushes its node *before*
//! unlocking the mutex, so a notify issued by whoever takes the mutex next
//! cannot be missed. A waiter that times out (or is unwound) leaves the
//! list, passing on a notification it received meanwhile.
//!
//! A condvar serves one mutex at a time: a wait with a second, different
//! mutex while waiters of the first are queued panics (as `may` does, and
//! as std's pthread-based condvar did). std allows it, but a notify then
//! wakes waiters of either lock, which is never what the caller meant; the
//! panic names the bug instead of a wait that never ends. The mutex is
//! recorded by address under the wait list's lock whenever a waiter
//! queues on an empty list, so once every waiter has gone, another mutex
//! may be used.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LockResult, PoisonError};
use std::time::{Duration, Instant};

use super::mutex::{Mutex, MutexGuard};
use super::waitlist::{Node, WaitList};

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
    /// The address of the mutex the queued waiters wait with. Written and
    /// read under `waiters`' lock only (so Relaxed); stale while the list
    /// is empty.
    mutex: AtomicUsize,
}

impl Condvar {
    /// A condition variable with no waiters.
    pub fn new() -> Condvar {
        Condvar::default()
    }

    /// Unlocks the guard's mutex, waits for a notification (or a spurious
    /// wake-up), and locks it again.
    ///
    /// # Panics
    /// If other waiters are waiting on this condvar with a different mutex.
    pub fn wait<'a, T: ?Sized>(&self, guard: MutexGuard<'a, T>) -> LockResult<MutexGuard<'a, T>> {
        let mutex = guard.mutex();
        let Some(node) = self.queue(mutex) else {
            drop(guard);
            a_second_mutex();
        };
        drop(guard);
        self.waiters.wait(&node, None);
        WaitList::recycle(node);
        mutex.lock()
    }

    /// Like [`Condvar::wait`], giving up after `timeout`.
    ///
    /// # Panics
    /// As [`Condvar::wait`].
    pub fn wait_timeout<'a, T: ?Sized>(
        &self,
        guard: MutexGuard<'a, T>,
        timeout: Duration,
    ) -> LockResult<(MutexGuard<'a, T>, WaitTimeoutResult)> {
        let mutex = guard.mutex();
        let Some(node) = self.queue(mutex) else {
            drop(guard);
            a_second_mutex();
        };
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
    ///
    /// # Panics
    /// As [`Condvar::wait`].
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

    /// Queues the caller's node, waiting with `mutex` (whose guard it still
    /// holds, so a notify after its unlock cannot be missed). `None` if
    /// other waiters wait with a different mutex: the caller unlocks and
    /// panics (`a_second_mutex`), so the panic does not poison its lock.
    fn queue<T: ?Sized>(&self, mutex: &Mutex<T>) -> Option<Arc<Node>> {
        let address = std::ptr::from_ref(mutex).cast::<()>() as usize;
        let mut queue = self.waiters.lock();
        if queue.is_empty() {
            self.mutex.store(address, Ordering::Relaxed);
        } else if self.mutex.load(Ordering::Relaxed) != address {
            return None;
        }
        Some(WaitList::push(&mut queue))
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

#[cold]
fn a_second_mutex() -> ! {
    panic!(
        "Condvar::wait with a different Mutex than the one its other waiters wait with: \
         a Condvar serves one Mutex at a time"
    )
}

impl std::fmt::Debug for Condvar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Condvar").finish_non_exhaustive()
    }
}
