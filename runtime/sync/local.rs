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
//! Each key gets a small dense id on first use (a global counter). Each
//! fiber carries a [`Locals`] table in its `FiberInner` (one pointer, null
//! until the fiber first touches a key): a vector, indexed by key id, of
//! values each boxed on its own, so a reference to one stays put while the
//! table grows. A value is created by the key's initializer on the fiber's
//! first access. Only the fiber's own code touches its table, so no lock
//! is needed; the table is never borrowed across user code (initializers,
//! closures, destructors), which may touch other keys.
//!
//! **Dropping.** The values are dropped by the fiber itself when its
//! function returns, panics, or is unwound at shutdown (`fiber_main`, just
//! before its joiner can see the result), on the fiber's stack, so a
//! destructor may still park. A destructor that panics is caught there (the
//! panic hook has printed it); the fiber's result stands. While the values
//! are dropped, and after, `with` panics and `try_with` fails, as std's
//! thread-locals do after destruction. The table also drops what it holds
//! when the `FiberInner` goes, on whatever thread that is, which is one
//! reason for the bound below.
//!
//! **Bound: `T: Send + 'static`.** A fiber's values travel with it from
//! worker to worker, and could be dropped on another thread than the one
//! that made them, so they must be `Send`, as everything a fiber captures
//! is. They need not be `Sync`: only their fiber ever sees them, so
//! `Cell` and `RefCell` are the usual contents.
//!
//! **Outside fibers**, on a plain thread, a key falls back to a value per
//! thread (a `thread_local!` table, dropped at thread exit), so code that
//! runs on both sees one value per party either way.
//!
//! Rejected: a `HashMap` from key address to value (a hash per access where
//! an index does), and storing values inline in the table (a growing
//! vector would move them under outstanding references).

use std::any::Any;
use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};

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
        crate::fiber::with_current_locals(|locals| match locals {
            Some(locals) => locals.with(self, f),
            None => THREAD_LOCALS
                .try_with(|locals| locals.with(self, f))
                .unwrap_or(Err(AccessError(()))),
        })
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

thread_local! {
    /// The values of plain threads (module docs, "Outside fibers").
    static THREAD_LOCALS: Locals = const { Locals::new() };
}

/// One fiber's (or plain thread's) fiber-local values.
///
/// # Ownership
/// Touched only by the code of the fiber (or thread) it belongs to, one
/// access at a time (`with` does not hold a borrow of the table while user
/// code runs), and by `Drop` when its owner is gone.
pub(crate) struct Locals {
    table: UnsafeCell<Option<Box<Table>>>,
    /// Not Sync: only the owner's code touches it.
    _owner: PhantomData<*const ()>,
}

struct Table {
    /// By key index; each value boxed on its own (module docs).
    values: Vec<Option<NonNull<dyn Any + Send>>>,
    /// Set while the values are being dropped: accesses fail.
    dropping: bool,
}

// Every value in a table is a `T: Send` (the bound on `FiberLocalKey`, the
// only way in).
// SAFETY: so moving the table to another thread moves only Send values.
unsafe impl Send for Locals {}

impl Locals {
    pub(crate) const fn new() -> Locals {
        Locals {
            table: UnsafeCell::new(None),
            _owner: PhantomData,
        }
    }

    /// Runs `f` with this owner's value for `key`, creating it first.
    fn with<T: Send + 'static, R>(
        &self,
        key: &FiberLocalKey<T>,
        f: impl FnOnce(&T) -> R,
    ) -> Result<R, AccessError> {
        let value = self.get_or_init(key)?;
        // The value is boxed on its own, freed only by `drop_all` (run by
        // its owner after its own code is done) or by `Drop`.
        // SAFETY: so it is alive here, and shared only as `&T`.
        Ok(f(unsafe { value.as_ref() }))
    }

    fn get_or_init<T: Send + 'static>(
        &self,
        key: &FiberLocalKey<T>,
    ) -> Result<NonNull<T>, AccessError> {
        let index = key.index();
        {
            // SAFETY: only the owner's code touches the table, and this
            // borrow ends before any user code runs.
            let table = unsafe { &*self.table.get() };
            if let Some(table) = table {
                if table.dropping {
                    return Err(AccessError(()));
                }
                if let Some(Some(value)) = table.values.get(index) {
                    return Ok(downcast(*value));
                }
            }
        }
        // Not borrowing the table: the initializer may use other keys (or
        // this one, creating the value first).
        let value: NonNull<dyn Any + Send> = NonNull::from(Box::leak(Box::new((key.init)())));
        let outcome = {
            // SAFETY: as above; no user code runs under this borrow.
            let table = unsafe { &mut *self.table.get() };
            let table = table.get_or_insert_with(|| {
                Box::new(Table {
                    values: Vec::new(),
                    dropping: false,
                })
            });
            if table.dropping {
                Err(AccessError(()))
            } else {
                if table.values.len() <= index {
                    table.values.resize(index + 1, None);
                }
                match table.values[index] {
                    Some(first) => Ok(Err(first)), // a nested access created it
                    None => {
                        table.values[index] = Some(value);
                        Ok(Ok(value))
                    }
                }
            }
        };
        match outcome {
            Ok(Ok(value)) => Ok(downcast(value)),
            Ok(Err(first)) => {
                free(value);
                Ok(downcast(first))
            }
            Err(error) => {
                free(value);
                Err(error)
            }
        }
    }

    /// Drops every value, on the owner's own stack (`fiber_main`) or at
    /// thread exit. Accesses fail from here on.
    pub(crate) fn drop_all(&self) {
        {
            // SAFETY: only the owner's code touches the table, and no user
            // code runs under this borrow.
            let table = unsafe { &mut *self.table.get() };
            match table {
                None => return, // never used
                Some(table) => table.dropping = true,
            }
        }
        let mut index = 0;
        loop {
            let value = {
                // SAFETY: as above; the borrow ends before the drop below.
                let table = unsafe { &mut *self.table.get() };
                let table = table.as_mut().expect("the table stays while dropping");
                match table.values.get_mut(index) {
                    None => break,
                    Some(value) => value.take(),
                }
            };
            if let Some(value) = value {
                // A destructor's panic has been reported by the panic hook;
                // the owner's outcome stands (module docs).
                let _ = std::panic::catch_unwind(AssertUnwindSafe(|| free(value)));
            }
            index += 1;
        }
        // SAFETY: as above; the values are all gone.
        let table = unsafe { &mut *self.table.get() };
        debug_assert!(table
            .as_ref()
            .is_some_and(|table| table.values.iter().all(Option::is_none)));
        // The table stays, empty and `dropping`, so late accesses still fail.
        if let Some(table) = table {
            table.values = Vec::new();
        }
    }
}

impl Drop for Locals {
    fn drop(&mut self) {
        self.drop_all();
    }
}

/// A value's typed pointer.
fn downcast<T: 'static>(value: NonNull<dyn Any + Send>) -> NonNull<T> {
    if cfg!(debug_assertions) {
        // SAFETY: the value is live (values are freed only by `free`, when
        // no access is running), and `is` only reads its type id.
        let value = unsafe { value.as_ref() };
        assert!(value.is::<T>(), "a key's value has its key's type");
    }
    value.cast()
}

/// Drops a value made by `get_or_init`.
fn free(value: NonNull<dyn Any + Send>) {
    // SAFETY: the pointer came from `Box::leak` and was taken out of its
    // table (or never put in), so this is its only owner.
    drop(unsafe { Box::from_raw(value.as_ptr()) });
}
