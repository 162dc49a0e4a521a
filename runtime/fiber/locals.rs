//! A fiber's fiber-local values: the table behind `sync::FiberLocalKey`
//! (`sync/local.rs` has the key, the macro and the user's view).
//!
//! # Design
//! Each key has a small dense index (handed out by `sync/local.rs`). Each
//! fiber carries a [`Locals`] table in its `FiberInner` (one pointer, null
//! until the fiber first touches a key): a vector, indexed by key, of
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
//! panic hook has printed it) and reported (`fault.rs`); the fiber's result
//! stands. While the values
//! are dropped, and after, accesses fail, as std's thread-locals do after
//! destruction. The table also drops what it holds when the `FiberInner`
//! goes, on whatever thread that is, which is why values must be `Send`.
//!
//! **Outside fibers**, on a plain thread, the values live in a
//! `thread_local!` table of the same kind, dropped at thread exit.
//!
//! Rejected: a `HashMap` from key address to value (a hash per access where
//! an index does), and storing values inline in the table (a growing
//! vector would move them under outstanding references).

use std::any::Any;
use std::cell::UnsafeCell;
use std::marker::PhantomData;
use std::ptr::NonNull;

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

// Every value in a table is a `T: Send` (the bound on `with_current`, the
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

    /// Runs `f` with the caller's value for the key at `index` (its
    /// fiber's, or its thread's on a plain thread), creating it with `init`
    /// first. `None` if the caller's values are being dropped or are gone.
    pub(crate) fn with_current<T: Send + 'static, R>(
        index: usize,
        init: fn() -> T,
        f: impl FnOnce(&T) -> R,
    ) -> Option<R> {
        match super::CurrentFiber::get() {
            // The fiber is alive while it runs, which includes all of `f`
            // (a fiber that parks inside `f` keeps its FiberInner alive).
            Some(fiber) => fiber.inner().locals.with(index, init, f),
            None => THREAD_LOCALS
                .try_with(|locals| locals.with(index, init, f))
                .unwrap_or(None),
        }
    }

    /// Runs `f` with this owner's value for the key at `index`, creating
    /// it first.
    fn with<T: Send + 'static, R>(
        &self,
        index: usize,
        init: fn() -> T,
        f: impl FnOnce(&T) -> R,
    ) -> Option<R> {
        let value = self.get_or_init(index, init)?;
        // The value is boxed on its own, freed only by `drop_all` (run by
        // its owner after its own code is done) or by `Drop`.
        // SAFETY: so it is alive here, and shared only as `&T`.
        Some(f(unsafe { value.as_ref() }))
    }

    fn get_or_init<T: Send + 'static>(&self, index: usize, init: fn() -> T) -> Option<NonNull<T>> {
        {
            // SAFETY: only the owner's code touches the table, and this
            // borrow ends before any user code runs.
            let table = unsafe { &*self.table.get() };
            if let Some(table) = table {
                if table.dropping {
                    return None;
                }
                if let Some(Some(value)) = table.values.get(index) {
                    return Some(downcast(*value));
                }
            }
        }
        // Not borrowing the table: the initializer may use other keys (or
        // this one, creating the value first).
        let value: NonNull<dyn Any + Send> = NonNull::from(Box::leak(Box::new(init())));
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
                None
            } else {
                if table.values.len() <= index {
                    table.values.resize(index + 1, None);
                }
                match table.values[index] {
                    Some(first) => Some(Err(first)), // a nested access created it
                    None => {
                        table.values[index] = Some(value);
                        Some(Ok(value))
                    }
                }
            }
        };
        match outcome {
            Some(Ok(value)) => Some(downcast(value)),
            Some(Err(first)) => {
                free(value);
                Some(downcast(first))
            }
            None => {
                free(value);
                None
            }
        }
    }

    /// Drops every value, on the owner's own stack (`fiber_main`) or at
    /// thread exit. Accesses fail from here on. Returns how many
    /// destructors panicked (each caught, for the caller to report).
    pub(crate) fn drop_all(&self) -> usize {
        {
            // SAFETY: only the owner's code touches the table, and no user
            // code runs under this borrow.
            let table = unsafe { &mut *self.table.get() };
            match table {
                None => return 0, // never used
                Some(table) => table.dropping = true,
            }
        }
        let mut panicked = 0;
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
                // The panic hook has printed a destructor's panic; the
                // owner's outcome stands (module docs).
                if super::fault::catch(|| free(value)) == super::fault::Caught::Panicked {
                    panicked += 1;
                }
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
        panicked
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
