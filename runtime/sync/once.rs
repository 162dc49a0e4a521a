//! [`OnceCell`]: a value initialized once, where concurrent initializers
//! park (fibers) or block (threads) while one of them runs.
//!
//! # Design
//! One atomic byte: EMPTY, RUNNING (an initializer holds the right to
//! write) or COMPLETE (the value is there, never to change while shared).
//! `get` is one Acquire load. `get_or_init` and `set` race to move EMPTY →
//! RUNNING; the winner writes the value, stores COMPLETE (Release) and
//! releases every waiter queued on a [`GrantQueue`]. A loser looks at the
//! state again under the queue's lock and, if it is still RUNNING, queues
//! and parks until released (the winner takes that lock after its store,
//! so it cannot miss the loser), then looks again.
//!
//! If the initializer panics (or its fiber is unwound at shutdown), a drop
//! guard puts the state back to EMPTY and wakes the waiters: the cell stays
//! empty and the first waiter to win the race again runs its own
//! initializer, as std's `OnceLock` does. The cell is not poisoned.
//!
//! Rejected: `std::sync::OnceLock`, which blocks the worker thread (and
//! every fiber queued on it) while another fiber's initializer parks.

use std::cell::UnsafeCell;
use std::fmt;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU8, Ordering};

use super::grant::{GrantQueue, Granted, Requests, Withdraw};

const EMPTY: u8 = 0;
const RUNNING: u8 = 1;
const COMPLETE: u8 = 2;

/// A cell written once, for fibers and threads alike; like
/// `std::sync::OnceLock`, but a fiber that waits for another's initializer
/// parks instead of blocking its worker.
///
/// ```
/// use std::sync::Arc;
/// use spindle::sync::OnceCell;
///
/// let rt = spindle::Runtime::new().unwrap();
/// let config = Arc::new(OnceCell::new());
/// let lengths = rt.block_on(|| {
///     let fibers: Vec<_> = (0..10)
///         .map(|_| {
///             let config = config.clone();
///             spindle::spawn(move || {
///                 // One fiber runs the initializer; the others park until
///                 // it is done, even though it parks itself.
///                 config
///                     .get_or_init(|| {
///                         spindle::time::sleep(std::time::Duration::from_millis(1));
///                         String::from("loaded once")
///                     })
///                     .len()
///             })
///         })
///         .collect();
///     fibers.into_iter().map(|f| f.join().unwrap()).collect::<Vec<_>>()
/// });
/// assert!(lengths.iter().all(|&len| len == 11));
/// assert_eq!(config.get().map(String::as_str), Some("loaded once"));
/// ```
///
/// # Invariants
/// `value` is initialized exactly when the state is COMPLETE; only the
/// party that moved EMPTY → RUNNING writes it, before COMPLETE.
pub struct OnceCell<T> {
    state: AtomicU8,
    /// Parties waiting for a RUNNING initializer to finish.
    waiters: GrantQueue<()>,
    value: UnsafeCell<MaybeUninit<T>>,
}

// SAFETY: through `&OnceCell` the value is written once, in `run`, by the
// party that moved the state EMPTY → RUNNING (one CAS, so one party), and
// read only in `get`, after an Acquire load of COMPLETE, which `run`
// stores with Release after the write. The state leaves COMPLETE only
// through `&mut self` (`take`). So readers on every thread share `&T`
// (T: Sync), and the value may be written by one thread and dropped or
// taken by another (T: Send).
unsafe impl<T: Send + Sync> Sync for OnceCell<T> {}
// SAFETY: a OnceCell owns its T and holds nothing tied to a thread (its
// queue holds handles to waiters, which are Send); sending it sends the T.
unsafe impl<T: Send> Send for OnceCell<T> {}

impl<T> OnceCell<T> {
    /// An empty cell.
    pub const fn new() -> OnceCell<T> {
        OnceCell {
            state: AtomicU8::new(EMPTY),
            waiters: GrantQueue::new(),
            value: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }

    /// The value, if it has been set. Never waits.
    pub fn get(&self) -> Option<&T> {
        // Acquire: pairs with the initializer's Release store of COMPLETE.
        if self.state.load(Ordering::Acquire) == COMPLETE {
            // SAFETY: COMPLETE, seen with Acquire, is stored by `run` only
            // after it wrote the value (Release); nothing writes the value
            // or leaves COMPLETE while `&self` is borrowed (only `take`
            // does, through `&mut self`).
            Some(unsafe { (*self.value.get()).assume_init_ref() })
        } else {
            None
        }
    }

    /// The value, through `&mut self` (no waiting needed).
    pub fn get_mut(&mut self) -> Option<&mut T> {
        if *self.state.get_mut() == COMPLETE {
            // SAFETY: COMPLETE means the value is written; `&mut self`
            // excludes every other access.
            Some(unsafe { self.value.get_mut().assume_init_mut() })
        } else {
            None
        }
    }

    /// Sets the value if the cell is empty; otherwise gives `value` back.
    /// If an initializer is running, waits for it to finish first (and
    /// sets the value if that initializer failed).
    pub fn set(&self, value: T) -> Result<(), T> {
        let mut value = Some(value);
        self.get_or_init(|| value.take().expect("the initializer runs once"));
        match value {
            None => Ok(()),
            Some(value) => Err(value),
        }
    }

    /// The value, initializing it with `init` if the cell is empty. If
    /// another fiber or thread is initializing it, parks (or blocks) until
    /// it is done and returns its value; if that initializer panics, one of
    /// the waiters runs its own.
    ///
    /// Calling `get_or_init` on the same cell from inside `init` deadlocks,
    /// as it may with std's `OnceLock`.
    ///
    /// # Panics
    /// If `init` panics, the panic goes on to the caller and the cell stays
    /// empty.
    pub fn get_or_init(&self, init: impl FnOnce() -> T) -> &T {
        if let Some(value) = self.get() {
            return value;
        }
        self.initialize(init)
    }

    #[cold]
    fn initialize(&self, init: impl FnOnce() -> T) -> &T {
        let mut init = Some(init);
        loop {
            // Acquire on failure: pairs with the Release store of COMPLETE.
            match self
                .state
                .compare_exchange(EMPTY, RUNNING, Ordering::Acquire, Ordering::Acquire)
            {
                Ok(_) => {
                    let init = init.take().expect("only the winner initializes, once");
                    return self.run(init);
                }
                Err(COMPLETE) => return self.get().expect("the state is COMPLETE"),
                Err(found) => {
                    debug_assert_eq!(found, RUNNING);
                    self.wait_while_running();
                }
            }
        }
    }

    /// Runs `init` as the RUNNING party and publishes its value.
    fn run(&self, init: impl FnOnce() -> T) -> &T {
        /// Puts the cell back to EMPTY if `init` unwinds.
        struct Reset<'a, T>(&'a OnceCell<T>);
        impl<T> Drop for Reset<'_, T> {
            fn drop(&mut self) {
                let previous = self.0.state.swap(EMPTY, Ordering::Relaxed);
                debug_assert_eq!(previous, RUNNING);
                self.0.release_waiters();
            }
        }
        let reset = Reset(self);
        let value = init();
        std::mem::forget(reset);
        // SAFETY: our caller moved the state EMPTY → RUNNING (the CAS in
        // `initialize`), so no other party writes `value`, and `get` reads it
        // only once it sees COMPLETE, stored below. EMPTY means the value
        // is not initialized (never written, taken by `take`, or the
        // initializer unwound before writing), so nothing is overwritten.
        unsafe { (*self.value.get()).write(value) };
        // Release: publishes the value to every Acquire load of COMPLETE.
        let previous = self.state.swap(COMPLETE, Ordering::Release);
        debug_assert_eq!(previous, RUNNING);
        self.release_waiters();
        self.get().expect("just completed")
    }

    /// Lets every queued waiter go (the state is no longer RUNNING).
    fn release_waiters(&self) {
        self.waiters.grant_with(GrantQueue::grant_all);
    }

    /// Parks until the RUNNING initializer has finished or failed.
    fn wait_while_running(&self) {
        let request = {
            let mut queue = self.waiters.lock();
            // Under the queue lock: an initializer that finishes after this
            // load takes the lock to release waiters, and finds our request.
            if self.state.load(Ordering::Acquire) != RUNNING {
                return;
            }
            GrantQueue::push(&mut queue, ())
        };
        let released = self.waiters.wait(&request, None, self);
        debug_assert!(released, "an untimed wait ends granted");
    }

    /// The value, consuming the cell.
    pub fn into_inner(mut self) -> Option<T> {
        self.take()
    }

    /// Takes the value out, leaving the cell empty.
    pub fn take(&mut self) -> Option<T> {
        if *self.state.get_mut() == COMPLETE {
            *self.state.get_mut() = EMPTY;
            // SAFETY: it was COMPLETE, so the value is written; the state
            // now says it is not, so it is read out only once.
            Some(unsafe { self.value.get_mut().assume_init_read() })
        } else {
            None
        }
    }
}

impl<T> Withdraw<()> for OnceCell<T> {
    fn regrant(&self, _queue: &mut Requests<()>, _granted: &mut Granted<()>) {
        // A waiter left; the initializer, when done, releases the rest.
    }

    fn give_back(&self, _want: &()) {
        // Released already: there is nothing to give back.
    }
}

impl<T> Drop for OnceCell<T> {
    fn drop(&mut self) {
        if *self.state.get_mut() == COMPLETE {
            // SAFETY: COMPLETE means the value is written; it is dropped once,
            // with the cell.
            unsafe { self.value.get_mut().assume_init_drop() };
        }
    }
}

impl<T> Default for OnceCell<T> {
    fn default() -> OnceCell<T> {
        OnceCell::new()
    }
}

impl<T> From<T> for OnceCell<T> {
    fn from(value: T) -> OnceCell<T> {
        let cell = OnceCell::new();
        let _ = cell.set(value);
        cell
    }
}

impl<T: Clone> Clone for OnceCell<T> {
    fn clone(&self) -> OnceCell<T> {
        match self.get() {
            Some(value) => OnceCell::from(value.clone()),
            None => OnceCell::new(),
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for OnceCell<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_tuple("OnceCell");
        match self.get() {
            Some(value) => d.field(value),
            None => d.field(&format_args!("<uninit>")),
        };
        d.finish()
    }
}
