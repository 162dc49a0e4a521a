//! The runtime's own `std::sync` locks, taken without poisoning.
//!
//! A std `Mutex` is *poisoned* when a thread panics while holding it, and
//! every later `lock` returns an error. The runtime's bookkeeping locks
//! (run-queue sleepers, timer maps, stack lists, wait queues) guard state
//! that is consistent at every point where user code could panic: no user
//! code runs under them. Poisoning would therefore only turn one fiber's
//! panic into a failure of every later caller, so these methods take the
//! guard whatever the poison flag says.
//!
//! User-facing locks (`sync::Mutex`, `sync::RwLock`) are not these: they
//! keep std's poisoning semantics, since user code runs under them.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// `Mutex::lock` that ignores poisoning.
pub(crate) trait MutexExt<T: ?Sized> {
    /// Locks the mutex, whether or not a panic poisoned it.
    fn lock_unpoisoned(&self) -> MutexGuard<'_, T>;
}

impl<T: ?Sized> MutexExt<T> for Mutex<T> {
    fn lock_unpoisoned(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// `Condvar` waits that ignore poisoning.
pub(crate) trait CondvarExt {
    /// `Condvar::wait`, ignoring poisoning.
    // Its one caller, `scheduler/park.rs`, takes loom's `Condvar` in the
    // model-checking build (`loom.rs`).
    #[cfg_attr(all(test, spindle_loom), allow(dead_code))]
    fn wait_unpoisoned<'a, T>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T>;

    /// `Condvar::wait_timeout`, ignoring poisoning; the flag says whether
    /// the wait timed out.
    fn wait_timeout_unpoisoned<'a, T>(
        &self,
        guard: MutexGuard<'a, T>,
        timeout: Duration,
    ) -> (MutexGuard<'a, T>, bool);
}

impl CondvarExt for Condvar {
    fn wait_unpoisoned<'a, T>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        self.wait(guard)
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn wait_timeout_unpoisoned<'a, T>(
        &self,
        guard: MutexGuard<'a, T>,
        timeout: Duration,
    ) -> (MutexGuard<'a, T>, bool) {
        let (guard, result) = self
            .wait_timeout(guard, timeout)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        (guard, result.timed_out())
    }
}
