//! Fiber-local storage: [`fiber_local!`](crate::fiber_local) and
//! [`FiberLocalKey`], the fiber's counterpart of `thread_local!`.
//!
//! # Why
//! A fiber that parks or yields may resume on another worker thread (crate
//! docs, "Fibers move between threads"), so a reference from a
//! `thread_local!` held across a park points, afterwards, at another
//! thread's value, which that thread may be using. Fiber-local values
//! belong to the fiber instead: `KEY.with(|v| ...)` may park and yield
//! inside the closure, and `v` is still this fiber's value wherever it
//! resumes. This is the replacement for thread-local references held
//! across a yield.
//!
//! # Design
//! Each key gets a small dense index on first use (a global counter, in
//! [`FiberLocalKey`]); the values themselves live with their fiber, in a
//! table indexed by key (`fiber/locals.rs`), or, on a plain thread, in a
//! thread-local table of the same kind. A value is created by the key's
//! initializer on the fiber's first access and dropped by the fiber itself
//! when its function returns, panics, or is unwound at shutdown, on the
//! fiber's stack, so a destructor may still park. While the values are
//! dropped, and after, `with` panics and `try_with` fails, as std's
//! thread-locals do after destruction.
//!
//! **Bound: `T: Send + 'static`.** A fiber's values travel with it from
//! worker to worker, and could be dropped on another thread than the one
//! that made them, so they must be `Send`, as everything a fiber captures
//! is. They need not be `Sync`: only their fiber ever sees them, so
//! `Cell` and `RefCell` are the usual contents.
//!
//! **Outside fibers**, on a plain thread, a key falls back to a value per
//! thread (dropped at thread exit), so code that runs on both sees one
//! value per party either way.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::fiber::locals::Locals;

/// Declares fiber-local statics, like `std::thread_local!`: each fiber
/// that touches one gets its own value, created lazily by the initializer
/// and dropped when the fiber finishes. On a plain thread, each thread gets
/// one. See [`FiberLocalKey`].
///
/// ```
/// use std::cell::Cell;
///
/// spindle::fiber_local! {
///     /// Requests this fiber has served.
///     static SERVED: Cell<u32> = Cell::new(0);
/// }
///
/// let rt = spindle::Runtime::new().unwrap();
/// let counts = rt.block_on(|| {
///     let fibers: Vec<_> = (1..=3)
///         .map(|n| {
///             spindle::spawn(move || {
///                 for _ in 0..n {
///                     SERVED.with(|served| served.set(served.get() + 1));
///                     spindle::yield_now(); // may resume on another worker
///                 }
///                 SERVED.with(Cell::get)
///             })
///         })
///         .collect();
///     fibers.into_iter().map(|f| f.join().unwrap()).collect::<Vec<_>>()
/// });
/// assert_eq!(counts, [1, 2, 3]);
/// ```
#[macro_export]
macro_rules! fiber_local {
    () => {};
    ($(#[$attr:meta])* $vis:vis static $name:ident: $t:ty = $init:expr; $($rest:tt)*) => {
        $crate::fiber_local!($(#[$attr])* $vis static $name: $t = $init);
        $crate::fiber_local!($($rest)*);
    };
    ($(#[$attr:meta])* $vis:vis static $name:ident: $t:ty = $init:expr) => {
        $(#[$attr])*
        $vis static $name: $crate::sync::FiberLocalKey<$t> = {
            fn init() -> $t {
                $init
            }
            $crate::sync::FiberLocalKey::new(init)
        };
    };
}

/// A fiber-local value's key, declared with
/// [`fiber_local!`](crate::fiber_local): each fiber (or plain thread) that
/// accesses it gets its own `T`.
///
/// Unlike a `thread_local!` reference, the `&T` given to [`with`]'s closure
/// stays this fiber's value if the closure parks or yields and the fiber
/// resumes on another worker. See the module docs for when values are
/// created and dropped, and why `T: Send`.
///
/// [`with`]: FiberLocalKey::with
pub struct FiberLocalKey<T: Send + 'static> {
    init: fn() -> T,
    /// The key's index in every table, plus one; 0 until first use.
    id: AtomicUsize,
}

/// The error of [`FiberLocalKey::try_with`]: the value is being dropped or
/// was dropped (the fiber or thread is finishing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccessError(());

impl fmt::Display for AccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("fiber-local value accessed during or after its destruction")
    }
}

impl std::error::Error for AccessError {}

impl<T: Send + 'static> FiberLocalKey<T> {
    /// A key whose values start as `init()`. Declare keys with
    /// [`fiber_local!`](crate::fiber_local) rather than calling this.
    #[doc(hidden)]
    pub const fn new(init: fn() -> T) -> FiberLocalKey<T> {
        FiberLocalKey {
            init,
            id: AtomicUsize::new(0),
        }
    }

    /// Runs `f` with the calling fiber's value (the calling thread's on a
    /// plain thread), creating it first if this is the first access. `f`
    /// may park or yield.
    ///
    /// # Panics
    /// If the value is being dropped or was dropped (see
    /// [`FiberLocalKey::try_with`]), or if the initializer panics.
    pub fn with<R>(&'static self, f: impl FnOnce(&T) -> R) -> R {
        self.try_with(f)
            .expect("cannot access a fiber-local value during or after its destruction")
    }

    /// Like [`FiberLocalKey::with`], but fails instead of panicking when
    /// the fiber's (or thread's) values are being dropped or are gone.
    pub fn try_with<R>(&'static self, f: impl FnOnce(&T) -> R) -> Result<R, AccessError> {
        Locals::with_current(self.index(), self.init, f).ok_or(AccessError(()))
    }

    /// This key's index in the tables.
    fn index(&self) -> usize {
        static NEXT: AtomicUsize = AtomicUsize::new(1);
        // Relaxed: the id is a number, it publishes nothing.
        let id = self.id.load(Ordering::Relaxed);
        if id != 0 {
            return id - 1;
        }
        let fresh = NEXT.fetch_add(1, Ordering::Relaxed);
        match self
            .id
            .compare_exchange(0, fresh, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => fresh - 1,
            Err(theirs) => theirs - 1, // another fiber named it first
        }
    }
}

impl<T: Send + 'static> fmt::Debug for FiberLocalKey<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FiberLocalKey").finish_non_exhaustive()
    }
}
