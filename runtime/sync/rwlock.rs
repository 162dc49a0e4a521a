//! [`RwLock`]: a reader-writer lock that parks fibers (and blocks threads).
//!
//! # Design
//! One atomic word holds WRITER (held for writing), QUEUED (the wait queue
//! is not empty) and the number of readers (the bits above). The
//! uncontended paths are one compare-and-swap: a reader adds one reader if
//! neither WRITER nor QUEUED is set, a writer goes from 0 to WRITER.
//!
//! Everything else goes through a [`GrantQueue`]: a waiter pushes a
//! request (read or write) and sets QUEUED under the queue's lock, then runs
//! the grant step itself (the lock may have been released in between), and
//! parks. The last reader out, or a writer unlocking with QUEUED set, runs
//! the grant step under the queue lock: a writer at the front gets the lock
//! once no reader holds it; readers at the front get it together (each
//! counted in before it is woken), up to the first queued writer. A woken
//! waiter owns the lock before it runs.
//!
//! # Fairness
//! **Once anybody is queued, newcomers queue behind them** (QUEUED turns the
//! fast paths off): a stream of readers cannot starve a queued writer, since
//! readers that come after it wait for it, and a writer cannot starve queued
//! readers either. The lock is FIFO while contended, phase by phase.
//!
//! Rejected: the Mutex's barging with a hand-off after [`HAND_OFF_AFTER`]
//! (`super::HAND_OFF_AFTER`). With overlapping readers the lock need never
//! be free, so a writer would wait for a quiet moment that a busy read path
//! never has; the queue has to stop new readers, and once it does, direct
//! hand-off is the simple way to keep the order it promises. The price is
//! throughput under write contention: the lock stays held while the woken
//! waiter is switched in.
//!
//! # Poisoning
//! As std: a writer that panics while holding the lock poisons it; a reader
//! that panics does not. Once poisoned, `read`, `write`, `try_read` and
//! `try_write` return `Err(PoisonError)` carrying the guard, so the caller
//! decides whether the data is still usable.
//!
//! Unlike std's guards, spindle's may be held across a park or yield: the
//! lock does not belong to an OS thread.
//!
//! [`HAND_OFF_AFTER`]: super::HAND_OFF_AFTER

use std::cell::UnsafeCell;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{LockResult, TryLockError, TryLockResult};

use super::grant::{GrantQueue, Granted, Requests, Withdraw};
use super::poison::{fmt_lock, poison_checked, Poison};

const WRITER: usize = 0b01;
const QUEUED: usize = 0b10;
/// One reader, in the count above the two flag bits.
const READER: usize = 0b100;

/// What a queued request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    Read,
    Write,
}

/// A reader-writer lock for fibers and threads alike, with std's API.
///
/// Any number of readers, or one writer, at a time; see the module docs
/// for the fairness rule (a queued writer stops new readers) and
/// poisoning.
///
/// ```
/// use std::sync::Arc;
/// use spindle::sync::RwLock;
///
/// let rt = spindle::Runtime::new().unwrap();
/// let config = Arc::new(RwLock::new(vec![1, 2, 3]));
/// let sums = rt.block_on(|| {
///     let writer = {
///         let config = config.clone();
///         spindle::spawn(move || config.write().unwrap().push(4))
///     };
///     let readers: Vec<_> = (0..10)
///         .map(|_| {
///             let config = config.clone();
///             spindle::spawn(move || {
///                 let guard = config.read().unwrap();
///                 spindle::yield_now(); // a guard may be held across a yield
///                 guard.iter().sum::<i32>()
///             })
///         })
///         .collect();
///     writer.join().unwrap();
///     readers.into_iter().map(|r| r.join().unwrap()).collect::<Vec<_>>()
/// });
/// assert!(sums.iter().all(|&sum| sum == 6 || sum == 10));
/// assert_eq!(*config.read().unwrap(), [1, 2, 3, 4]);
/// ```
///
/// # Invariants
/// WRITER set implies a reader count of 0. QUEUED is set whenever the queue
/// is not empty (it is set and cleared under the queue lock; it may stay set
/// briefly after the queue empties, which only sends newcomers to the slow
/// path). While the queue is not empty, the word changes outside the queue
/// lock only by releases.
pub struct RwLock<T: ?Sized> {
    state: AtomicUsize,
    poison: Poison,
    waiters: GrantQueue<Access>,
    data: UnsafeCell<T>,
}

// SAFETY: `data` is reached only through the guards (`into_inner` and
// `get_mut` take the lock by value or `&mut`). A read guard is made only
// after its reader was counted in `state` (`try_read_fast`, or the grant
// step), a write guard only after WRITER was set with no reader counted
// (the CAS from 0, or the grant step), and each guard's drop takes its
// count or WRITER back out; the invariant on `RwLock` (WRITER implies no
// readers) is asserted in `grant`. So readers share `&T` across threads
// (T: Sync) and a writer alone gets `&mut T` (T: Send), as with std's
// RwLock. Acquire/Release on `state`, or on a request's `granted` flag for
// a waiter the grant step let in, orders one holder's accesses before the
// next's.
unsafe impl<T: ?Sized + Send + Sync> Sync for RwLock<T> {}
// SAFETY: an RwLock owns its T and holds nothing tied to a thread (its
// queue holds handles to waiters, which are Send); sending it sends the T.
unsafe impl<T: ?Sized + Send> Send for RwLock<T> {}

/// Shared access to an [`RwLock`]'s data; releases it when dropped.
pub struct RwLockReadGuard<'a, T: ?Sized> {
    lock: &'a RwLock<T>,
}

/// Exclusive access to an [`RwLock`]'s data; releases it when dropped.
pub struct RwLockWriteGuard<'a, T: ?Sized> {
    lock: &'a RwLock<T>,
    /// Whether the holder was already panicking when it locked (then a
    /// panic in progress does not poison at unlock).
    panicking: bool,
}

// SAFETY: a read guard gives only `&T`, wherever it goes (T: Sync). The
// lock is not tied to an OS thread: `read_unlock` and `write_unlock` touch
// only `state` and the queue, never the locking thread's identity, so a
// guard may move with its fiber to another worker and unlock there.
unsafe impl<T: ?Sized + Sync> Send for RwLockReadGuard<'_, T> {}
// SAFETY: through `&RwLockReadGuard` only `Deref` is reachable: sharing
// the guard shares `&T`.
unsafe impl<T: ?Sized + Sync> Sync for RwLockReadGuard<'_, T> {}
// SAFETY: the write guard gives `&mut T` to its one holder wherever it
// goes, as sending the T would (T: Send); it unlocks from any thread, as
// the read guard does.
unsafe impl<T: ?Sized + Send> Send for RwLockWriteGuard<'_, T> {}
// SAFETY: through `&RwLockWriteGuard` only `Deref` is reachable: sharing
// the guard shares `&T`.
unsafe impl<T: ?Sized + Sync> Sync for RwLockWriteGuard<'_, T> {}

impl<T> RwLock<T> {
    /// An unlocked lock holding `value`.
    pub fn new(value: T) -> RwLock<T> {
        RwLock {
            state: AtomicUsize::new(0),
            poison: Poison::new(),
            waiters: GrantQueue::new(),
            data: UnsafeCell::new(value),
        }
    }

    /// The data, consuming the lock.
    pub fn into_inner(self) -> LockResult<T> {
        let poisoned = self.is_poisoned();
        let value = self.data.into_inner();
        poison_checked(poisoned, value)
    }
}

impl<T: ?Sized> RwLock<T> {
    /// Locks for reading, parking the calling fiber (or blocking the
    /// calling thread) while a writer holds the lock or waits for it.
    ///
    /// Reading again while holding a read guard deadlocks if a writer
    /// queued in between (it waits for the first guard, the second read
    /// waits for it), as with std's `RwLock` on some platforms; so does
    /// any lock call while holding the write guard.
    ///
    /// # Panics
    /// If the number of readers would overflow a `usize`.
    pub fn read(&self) -> LockResult<RwLockReadGuard<'_, T>> {
        if !self.try_read_fast() {
            self.lock_contended(Access::Read);
        }
        self.read_guard()
    }

    /// Locks for writing, parking the calling fiber (or blocking the
    /// calling thread) until no reader or writer holds the lock and the
    /// writers and readers queued before it have had their turn.
    pub fn write(&self) -> LockResult<RwLockWriteGuard<'_, T>> {
        if self
            .state
            .compare_exchange(0, WRITER, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_contended(Access::Write);
        }
        self.write_guard()
    }

    /// Locks for reading if that is possible now; never waits. Fails
    /// (`WouldBlock`) while a writer holds the lock or anyone is queued.
    pub fn try_read(&self) -> TryLockResult<RwLockReadGuard<'_, T>> {
        if self.try_read_fast() {
            self.read_guard().map_err(TryLockError::Poisoned)
        } else {
            Err(TryLockError::WouldBlock)
        }
    }

    /// Locks for writing if the lock is free now; never waits.
    pub fn try_write(&self) -> TryLockResult<RwLockWriteGuard<'_, T>> {
        if self
            .state
            .compare_exchange(0, WRITER, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            self.write_guard().map_err(TryLockError::Poisoned)
        } else {
            Err(TryLockError::WouldBlock)
        }
    }

    /// Whether a writer panicked while holding the lock.
    pub fn is_poisoned(&self) -> bool {
        self.poison.is_set()
    }

    /// The data, through `&mut self` (no locking needed).
    pub fn get_mut(&mut self) -> LockResult<&mut T> {
        let data = self.data.get_mut();
        self.poison.result(data)
    }

    fn read_guard(&self) -> LockResult<RwLockReadGuard<'_, T>> {
        let guard = RwLockReadGuard { lock: self };
        self.poison.result(guard)
    }

    fn write_guard(&self) -> LockResult<RwLockWriteGuard<'_, T>> {
        let guard = RwLockWriteGuard {
            lock: self,
            panicking: std::thread::panicking(),
        };
        self.poison.result(guard)
    }

    /// Adds a reader if no writer holds the lock and nobody is queued.
    fn try_read_fast(&self) -> bool {
        let mut state = self.state.load(Ordering::Relaxed);
        while state & (WRITER | QUEUED) == 0 {
            let next = state
                .checked_add(READER)
                .expect("too many readers of a spindle RwLock");
            // Acquire: pairs with the last writer's Release.
            match self.state.compare_exchange_weak(
                state,
                next,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(found) => state = found,
            }
        }
        false
    }

    #[cold]
    fn lock_contended(&self, access: Access) {
        // A short spin first, as the Mutex does (`spin.rs`). The fast
        // paths respect QUEUED, so spinning never overtakes a queued waiter.
        let acquired = super::spin::spin_to_acquire(|| match access {
            Access::Read => self.try_read_fast(),
            Access::Write => self
                .state
                .compare_exchange(0, WRITER, Ordering::Acquire, Ordering::Relaxed)
                .is_ok(),
        });
        if acquired {
            return;
        }
        let request = self.waiters.enqueue(access, |queue, granted| {
            // Under the queue lock, so a releaser that sees no QUEUED bit
            // released before this point, and the grant step below sees it.
            self.state.fetch_or(QUEUED, Ordering::Relaxed);
            self.grant(queue, granted);
        });
        let acquired = self.waiters.wait(&request, None, self);
        debug_assert!(acquired, "an untimed wait ends granted");
        debug_assert!(match access {
            Access::Read => self.state.load(Ordering::Relaxed) & WRITER == 0,
            Access::Write => self.state.load(Ordering::Relaxed) & WRITER != 0,
        });
    }

    /// The grant step (module docs), under the queue lock: hands the lock
    /// to the front request(s) if they can have it now, and clears QUEUED
    /// if the queue empties.
    fn grant(&self, queue: &mut Requests<Access>, granted: &mut Granted<Access>) {
        while let Some(front) = queue.front() {
            match front.want {
                Access::Write => {
                    // While the queue is not empty only releases change the
                    // word outside this lock, so the readers can only go.
                    // Acquire: pairs with the last holder's Release; the
                    // grant passes it on to the woken writer.
                    let state = self.state.load(Ordering::Acquire);
                    if state & WRITER != 0 || state >= READER {
                        break;
                    }
                    let previous = self.state.fetch_or(WRITER, Ordering::Acquire);
                    debug_assert_eq!(previous & WRITER, 0);
                    debug_assert!(
                        previous < READER,
                        "a reader came in while a writer was queued"
                    );
                    GrantQueue::grant_front(queue, granted);
                    break; // a writer is alone
                }
                Access::Read => {
                    if self.state.load(Ordering::Acquire) & WRITER != 0 {
                        break;
                    }
                    // Acquire: pairs with the last writer's Release.
                    let previous = self.state.fetch_add(READER, Ordering::Acquire);
                    assert!(
                        previous.checked_add(READER).is_some(),
                        "too many readers of a spindle RwLock"
                    );
                    GrantQueue::grant_front(queue, granted);
                }
            }
        }
        if queue.is_empty() {
            self.state.fetch_and(!QUEUED, Ordering::Relaxed);
        }
    }

    /// Runs the grant step under the queue lock and wakes whom it granted.
    #[cold]
    fn grant_queued(&self) {
        self.waiters
            .grant_with(|queue, granted| self.grant(queue, granted));
    }

    fn read_unlock(&self) {
        // Release: publishes nothing the reader wrote (it had `&T`), but
        // orders its reads before the next writer's writes.
        let previous = self.state.fetch_sub(READER, Ordering::Release);
        debug_assert!(previous >= READER, "read_unlock without a reader");
        debug_assert_eq!(previous & WRITER, 0, "a reader while a writer held");
        if previous & QUEUED != 0 && previous < 2 * READER {
            // The last reader out, with waiters: whoever is at the front.
            self.grant_queued();
        }
    }

    fn write_unlock(&self) {
        // Release: publishes the critical section to the next holder.
        if self
            .state
            .compare_exchange(WRITER, 0, Ordering::Release, Ordering::Relaxed)
            .is_ok()
        {
            return;
        }
        self.waiters.grant_with(|queue, granted| {
            // Release, as above; nobody can take the lock meanwhile (QUEUED
            // is set, so the fast paths are off until the grant below).
            let previous = self.state.fetch_and(!WRITER, Ordering::Release);
            debug_assert!(previous & WRITER != 0, "write_unlock without the writer");
            self.grant(queue, granted);
        });
    }
}

impl<T: ?Sized> Withdraw<Access> for RwLock<T> {
    fn regrant(&self, queue: &mut Requests<Access>, granted: &mut Granted<Access>) {
        self.grant(queue, granted);
    }

    fn give_back(&self, want: &Access) {
        match want {
            Access::Read => self.read_unlock(),
            Access::Write => self.write_unlock(),
        }
    }
}

impl<T: ?Sized> Deref for RwLockReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: this reader is counted in `state` until the guard drops,
        // and no write guard exists while any reader is counted (see
        // `unsafe impl Sync for RwLock`): no `&mut T` meanwhile.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for RwLockReadGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.read_unlock();
    }
}

impl<T: ?Sized> Deref for RwLockWriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: WRITER is set for this guard until it drops, and no other
        // guard exists meanwhile (see `unsafe impl Sync for RwLock`).
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> DerefMut for RwLockWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, this is the only guard; `&mut self` on it
        // rules out any other reference through it while this one lives.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for RwLockWriteGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.poison.record_panic(self.panicking);
        self.lock.write_unlock();
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_lock(f, "RwLock", self.try_read(), self.is_poisoned())
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLockReadGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLockWriteGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: Default> Default for RwLock<T> {
    fn default() -> RwLock<T> {
        RwLock::new(T::default())
    }
}
