//! Where the model-checked code gets its atomics, locks, cells and thread
//! handles: from std in every normal build, from the `loom` crate in
//! the model-checking build.
//!
//! loom runs a test closure many times, once per interleaving of its
//! threads (up to a bound), and explores for each atomic load every value
//! the memory model allows it to read; it reports a lost wake-up as a
//! deadlock and an unsynchronised access to an [`cell::UnsafeCell`] as a
//! causality violation. It can do so only for the operations it sees,
//! which is why the modelled files import their primitives from here:
//!
//! - `fiber/state.rs` (the fiber state machine), `fiber/join.rs`
//!   (`Completion`), `fiber/waiter.rs` and `fiber/wait_node.rs` (the
//!   thread a waiter wakes, a wait list's node and its cache),
//! - `scheduler/queue.rs` (`NextSlot`, `Backlog`), `scheduler/idle.rs` and
//!   `scheduler/park.rs` (searching and sleeping workers),
//! - `sync/waitlist.rs` (`WaitList`).
//!
//! Each of these files ends with a `loom_models` test module, compiled only
//! under `cfg(all(test, spindle_loom))`. Run them with
//!
//! ```text
//! RUSTFLAGS="--cfg spindle_loom" cargo test --release --lib --target-dir target/loom loom_models
//! ```
//!
//! (`.ci/run` does; the separate target directory keeps the normal build's
//! artefacts). loom is a dev-dependency, so only the crate's own unit-test
//! build (`cfg(all(test, spindle_loom))`) takes loom's types; there they panic
//! outside a model, so that build runs the models only. Every other build,
//! with or without `--cfg spindle_loom`, takes std's.
//!
//! In a normal build everything here is a re-export of std, except
//! [`cell::UnsafeCell`], a `#[repr(transparent)]` wrapper whose closure
//! accessors (loom's API, which records each access) inline to std's
//! `get`: the shim costs nothing at run time.
//!
//! Rejected: wrapping every atomic in a newtype as tokio's shim does. The
//! modelled code uses only what std's and loom's atomics share (`new`,
//! loads, stores, read-modify-writes), so plain re-exports suffice;
//! exclusive access through `&mut` is written as a store of a new atomic,
//! which both provide.
//!
//! Not modelled: crossbeam's deque and injector (their own orderings are
//! mirrored by a stand-in in `idle.rs`'s models), corosensei's switches
//! (a model runs a fiber's steps on a loom thread), and `Arc` (its counts
//! are std's; the models check who takes a reference, not the counting).

/// `std::sync` (or loom's): locks and atomics.
pub(crate) mod sync {
    #[cfg(not(all(test, spindle_loom)))]
    pub(crate) use crate::lock::{CondvarExt, MutexExt};
    #[cfg(all(test, spindle_loom))]
    pub(crate) use ::loom::sync::{Condvar, Mutex, MutexGuard};
    #[cfg(all(test, spindle_loom))]
    pub(crate) use loom_lock::{CondvarExt, MutexExt};
    #[cfg(not(all(test, spindle_loom)))]
    pub(crate) use std::sync::{Condvar, Mutex, MutexGuard};

    /// `std::sync::atomic` (or loom's).
    pub(crate) mod atomic {
        #[cfg(all(test, spindle_loom))]
        pub(crate) use ::loom::sync::atomic::{
            fence, AtomicPtr, AtomicU32, AtomicU8, AtomicUsize, Ordering,
        };
        #[cfg(not(all(test, spindle_loom)))]
        pub(crate) use std::sync::atomic::{
            fence, AtomicPtr, AtomicU32, AtomicU8, AtomicUsize, Ordering,
        };
    }

    /// `crate::lock`'s poison-ignoring methods for loom's `Mutex` and
    /// `Condvar` (loom never poisons, but its `lock` returns a `Result`
    /// as std's does).
    #[cfg(all(test, spindle_loom))]
    mod loom_lock {
        use ::loom::sync::{Condvar, Mutex, MutexGuard};
        use std::time::Duration;

        /// `crate::lock::MutexExt`, for loom's `Mutex`.
        pub(crate) trait MutexExt<T: ?Sized> {
            fn lock_unpoisoned(&self) -> MutexGuard<'_, T>;
        }

        impl<T: ?Sized> MutexExt<T> for Mutex<T> {
            fn lock_unpoisoned(&self) -> MutexGuard<'_, T> {
                self.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
            }
        }

        /// `crate::lock::CondvarExt`, for loom's `Condvar`. loom's timed
        /// wait never times out: a model that relies on a timeout
        /// deadlocks, so models park without one.
        pub(crate) trait CondvarExt {
            fn wait_unpoisoned<'a, T>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T>;
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
    }
}

/// `std::cell::UnsafeCell` with loom's closure accessors.
pub(crate) mod cell {
    #[cfg(all(test, spindle_loom))]
    pub(crate) use ::loom::cell::UnsafeCell;

    /// `std::cell::UnsafeCell` behind loom's API: each access is a closure
    /// given the raw pointer, so that under loom the access is recorded
    /// (and checked against the accesses of other threads). Only the
    /// accessor the modelled code uses is here (loom's also has `with`,
    /// for reads).
    #[cfg(not(all(test, spindle_loom)))]
    #[repr(transparent)]
    pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

    #[cfg(not(all(test, spindle_loom)))]
    impl<T> UnsafeCell<T> {
        pub(crate) const fn new(value: T) -> UnsafeCell<T> {
            UnsafeCell(std::cell::UnsafeCell::new(value))
        }

        /// Runs `f` with a pointer for writing the value.
        #[inline(always)]
        pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
            f(self.0.get())
        }
    }
}

/// `std::thread`'s handles (or loom's): the thread a waiter wakes.
pub(crate) mod thread {
    #[cfg(all(test, spindle_loom))]
    pub(crate) use ::loom::thread::{current, Thread};
    #[cfg(not(all(test, spindle_loom)))]
    pub(crate) use std::thread::{current, Thread};
}

/// `std::thread_local!` (or loom's, which gives each model thread its own
/// value and drops it when that thread ends). loom's macro takes no
/// `const { .. }` initialiser, so this one unwraps it.
#[cfg(all(test, spindle_loom))]
macro_rules! loom_thread_local {
    ($(#[$attr:meta])* $vis:vis static $name:ident: $t:ty = const { $init:expr };) => {
        ::loom::thread_local!($(#[$attr])* $vis static $name: $t = $init;);
    };
}
#[cfg(all(test, spindle_loom))]
pub(crate) use loom_thread_local as thread_local;
#[cfg(not(all(test, spindle_loom)))]
pub(crate) use std::thread_local;

/// How many times a model may preempt a thread that could have run on;
/// every interleaving within the bound is run (`LOOM_MAX_PREEMPTIONS`
/// overrides it). Measured: the small models are explored in full within
/// it, the largest (`idle.rs`) in about a second (`docs/decisions.md`).
#[cfg(all(test, spindle_loom))]
pub(crate) const PREEMPTION_BOUND: usize = 5;

/// Runs `model` under loom, in every interleaving within
/// [`PREEMPTION_BOUND`] (or `LOOM_MAX_PREEMPTIONS`).
#[cfg(all(test, spindle_loom))]
pub(crate) fn model(model: impl Fn() + Sync + Send + 'static) {
    let mut builder = ::loom::model::Builder::new();
    builder.preemption_bound = builder.preemption_bound.or(Some(PREEMPTION_BOUND));
    builder.check(model);
}
