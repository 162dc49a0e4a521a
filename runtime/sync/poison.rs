//! std's poisoning convention, shared by [`Mutex`](super::Mutex) and
//! [`RwLock`](super::RwLock): a lock whose holder panicked is *poisoned*,
//! and every later lock call returns its guard inside `Err(PoisonError)`,
//! so the caller decides whether the data is still usable.
//!
//! As in std, a guard remembers whether its holder was already panicking
//! when it locked: a panic that was in progress then (a lock taken in a
//! destructor during an unwind) does not poison at unlock.

use std::fmt;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LockResult, PoisonError, TryLockError, TryLockResult};

/// A lock's poison flag. Set by a guard's drop, read by every lock call;
/// Relaxed: the lock's own acquire and release order the data, and the
/// flag only says how to hand it over.
pub(crate) struct Poison(AtomicBool);

impl Poison {
    pub(crate) const fn new() -> Poison {
        Poison(AtomicBool::new(false))
    }

    /// Whether a holder panicked.
    pub(crate) fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// `value` (a guard, or the data), as `Err` if the lock is poisoned.
    pub(crate) fn result<T>(&self, value: T) -> LockResult<T> {
        poison_checked(self.is_set(), value)
    }

    /// A guard's unlock: poisons the lock if its holder is panicking now
    /// and was not when it locked (`panicking_at_lock`).
    pub(crate) fn record_panic(&self, panicking_at_lock: bool) {
        if !panicking_at_lock && std::thread::panicking() {
            self.0.store(true, Ordering::Relaxed);
        }
    }
}

/// `value`, as `Err` if `poisoned`.
pub(crate) fn poison_checked<T>(poisoned: bool, value: T) -> LockResult<T> {
    if poisoned {
        Err(PoisonError::new(value))
    } else {
        Ok(value)
    }
}

/// The `Debug` form the locks share: the data if the lock can be taken now
/// (`attempt`, a `try_lock` or `try_read`), else `<locked>`, and whether it
/// is poisoned.
pub(crate) fn fmt_lock<T: ?Sized + fmt::Debug, G: Deref<Target = T>>(
    f: &mut fmt::Formatter<'_>,
    name: &str,
    attempt: TryLockResult<G>,
    poisoned: bool,
) -> fmt::Result {
    let mut d = f.debug_struct(name);
    match attempt {
        Ok(guard) => d.field("data", &&*guard),
        Err(TryLockError::Poisoned(guard)) => d.field("data", &&*guard.into_inner()),
        Err(TryLockError::WouldBlock) => d.field("data", &format_args!("<locked>")),
    };
    d.field("poisoned", &poisoned).finish_non_exhaustive()
}
