//! [`Mutex`]: mutual exclusion that parks fibers (and blocks threads).
//!
//! # Design
//! One atomic byte holds LOCKED, QUEUED (someone may be waiting) and WOKEN
//! (a waiter has been woken and not yet competed). `lock` takes a free
//! lock with one compare-and-swap, whatever the other bits say; `unlock`
//! releases it with one, unless waiters are queued and none is WOKEN.
//! A contended `lock` first spins, trying again with exponential backoff
//! (`spin.rs`, which says why the backoff matters), unless waiters are
//! queued already. Then, under the [`WaitList`]'s lock, it either takes the
//! lock (if it came free) or sets QUEUED and queues, in one step, and
//! parks.
//!
//! An `unlock` that finds waiters queued and none WOKEN wakes the first one
//! and sets WOKEN; while WOKEN is set, unlocks wake nobody (Go's
//! `mutexWoken`). Normally the lock is released and the woken waiter
//! competes for it with newcomers ("barging", which keeps throughput up:
//! the lock does not sit idle while a waiter is switched in); having
//! competed, won or lost, it clears WOKEN, and a loser queues again at the
//! front. To bound starvation, the front waiter is instead **handed the
//! lock directly** (the unlocker never releases it, so no newcomer can take
//! it first) when it has waited [`HAND_OFF_AFTER`] (Go's starvation
//! threshold), **at most once per `HAND_OFF_AFTER`**.
//!
//! Why one woken waiter and no spin behind a queue: under heavy contention
//! the lock's cache line is the cost. A woken waiter runs on the
//! unlocker's worker (the wake puts it in that worker's next slot), so with
//! one woken at a time the contenders gather on one worker, which runs
//! them one after another with the line in its cache, while a newcomer on
//! another worker that finds a queue parks at once instead of pulling the
//! line away for microseconds. The contended bench (`benches/vs`'s
//! `mutex`, 1,000 fibers on 2 workers) ran in about 60% of the time it
//! took when every unlock with waiters queued woke one and every
//! contender spun (figures in `docs/decisions.md`, `WOKEN`).
//!
//! The hand-off throttle is measured too. Handing off at every unlock once
//! the front waiter is old (Go's starvation mode) turns a long queue of old
//! waiters into a convoy: every increment then costs a park and an unpark,
//! and the contended bench (`benches/sync.rs`) ran several times slower
//! than with the throttle (figures in `docs/decisions.md`,
//! `HAND_OFF_AFTER`). The bound it keeps: every `HAND_OFF_AFTER` the front
//! waiter is served, so a waiter waits at most (waiters ahead of it) x
//! `HAND_OFF_AFTER` plus the critical sections in between (`tests/sync.rs`
//! records the longest wait among many contending fibers).
//!
//! Rejected, each measured slower on the contended bench (figures in
//! `docs/decisions.md`, "Mutex rejected designs" and `WOKEN`):
//! - waking a waiter at every unlock while any are queued: every increment
//!   of a contended lock then pays the wait list's lock, a clock read and a
//!   wake, and the woken waiters spread over both workers and contend;
//! - WOKEN with every contender spinning, queue or not;
//! - Go's "do not spin while the local run queue has work" rule (with
//!   wakes at every unlock): the parks become a convoy again;
//! - more tries without backoff: every try still pulls the lock's cache
//!   line away from the holder.
//!
//! # Poisoning
//! As std: if a fiber or thread panics while holding the lock, the mutex is
//! poisoned and later `lock` calls return `Err(PoisonError)` carrying the
//! guard, so the caller decides whether the data is still usable.
//!
//! Unlike `std::sync::MutexGuard`, a spindle guard may be held across a
//! park or yield: the lock does not belong to an OS thread.

use std::cell::UnsafeCell;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, LockResult, OnceLock, TryLockError, TryLockResult};
use std::time::{Duration, Instant};

use super::poison::{fmt_lock, poison_checked, Poison};
use super::waitlist::{Node, WaitList};

const LOCKED: u8 = 0b001;
/// Waiters may be queued (set under the wait list's lock).
const QUEUED: u8 = 0b010;
/// A waiter has been woken and has not competed for the lock yet: until it
/// has, unlocks wake nobody else.
const WOKEN: u8 = 0b100;

/// A waiter that has waited this long is handed the lock on the next
/// unlock instead of competing for it; Go's `starvationThresholdNs`, the
/// same bound.
pub const HAND_OFF_AFTER: Duration = Duration::from_millis(1);

/// Nanoseconds since a process-wide epoch (hand-off timestamps).
fn nanos_since_epoch(now: Instant) -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(now.saturating_duration_since(epoch).as_nanos()).unwrap_or(u64::MAX)
}

/// A mutual-exclusion lock for fibers and threads alike, with std's API.
///
/// ```
/// use std::sync::Arc;
/// use spindle::sync::Mutex;
///
/// let rt = spindle::Runtime::new().unwrap();
/// let counter = Arc::new(Mutex::new(0));
/// let total = rt.block_on(|| {
///     let fibers: Vec<_> = (0..100)
///         .map(|_| {
///             let counter = counter.clone();
///             spindle::spawn(move || {
///                 for _ in 0..100 {
///                     *counter.lock().unwrap() += 1;
///                     spindle::yield_now();
///                 }
///             })
///         })
///         .collect();
///     fibers.into_iter().for_each(|f| f.join().unwrap());
///     *counter.lock().unwrap()
/// });
/// assert_eq!(total, 10_000);
/// ```
pub struct Mutex<T: ?Sized> {
    state: AtomicU8,
    poison: Poison,
    /// When the lock was last handed off, in nanoseconds since `EPOCH`.
    /// Written by unlockers under the wait list's lock. Relaxed: only read
    /// there too.
    last_hand_off: AtomicU64,
    waiters: WaitList,
    data: UnsafeCell<T>,
}

// SAFETY: `data` is reached only through a `MutexGuard` (`Deref`,
// `DerefMut`, `into_inner` and `get_mut` take the mutex by value or `&mut`).
// A guard is made only after LOCKED was set by this party: by the Acquire
// CAS in `lock`/`try_acquire`, or by a hand-off, where `unlock` leaves
// LOCKED set for the woken waiter; and its drop is the only unlock. So one
// holder at a time, and Acquire/Release on `state` (or the hand-off's
// Release store of the node's state, Acquire-loaded by the waiter) orders
// each holder's accesses before the next's. Holders on different threads
// each get `&mut T`, which moves the T between threads: hence T: Send, as
// std's Mutex requires.
unsafe impl<T: ?Sized + Send> Sync for Mutex<T> {}
// SAFETY: a Mutex owns its T and holds nothing tied to a thread (its wait
// list holds handles to waiters, which are Send); sending it sends the T.
unsafe impl<T: ?Sized + Send> Send for Mutex<T> {}

/// Access to a [`Mutex`]'s data; unlocks when dropped.
pub struct MutexGuard<'a, T: ?Sized> {
    mutex: &'a Mutex<T>,
    /// Whether the holder was already panicking when it locked (then a
    /// panic in progress does not poison at unlock).
    panicking: bool,
}

// SAFETY: through `&MutexGuard` only `Deref` is reachable, which gives
// `&T`: sharing the guard shares `&T`, hence T: Sync.
unsafe impl<T: ?Sized + Sync> Sync for MutexGuard<'_, T> {}
// SAFETY: the lock is not tied to an OS thread: `unlock` touches only
// `state`, `last_hand_off` and the wait list, never the locking thread's
// identity, so the guard may move with its fiber to another worker and
// unlock there. It gives `&mut T` wherever it goes, hence T: Send.
unsafe impl<T: ?Sized + Send> Send for MutexGuard<'_, T> {}

impl<T> Mutex<T> {
    /// An unlocked mutex holding `value`.
    pub fn new(value: T) -> Mutex<T> {
        Mutex {
            state: AtomicU8::new(0),
            poison: Poison::new(),
            last_hand_off: AtomicU64::new(0),
            waiters: WaitList::new(),
            data: UnsafeCell::new(value),
        }
    }

    /// The data, consuming the mutex.
    pub fn into_inner(self) -> LockResult<T> {
        let poisoned = self.poison.is_set();
        let value = self.data.into_inner();
        poison_checked(poisoned, value)
    }
}

impl<T: ?Sized> Mutex<T> {
    /// Locks, parking the calling fiber (or blocking the calling thread)
    /// until the lock is free.
    pub fn lock(&self) -> LockResult<MutexGuard<'_, T>> {
        if !self.try_acquire(false) {
            self.lock_contended();
        }
        self.guard()
    }

    /// Locks if the lock is free now; never waits.
    pub fn try_lock(&self) -> TryLockResult<MutexGuard<'_, T>> {
        if self.try_acquire(false) {
            self.guard().map_err(TryLockError::Poisoned)
        } else {
            Err(TryLockError::WouldBlock)
        }
    }

    /// Whether a holder panicked.
    pub fn is_poisoned(&self) -> bool {
        self.poison.is_set()
    }

    /// The data, through `&mut self` (no locking needed).
    pub fn get_mut(&mut self) -> LockResult<&mut T> {
        let data = self.data.get_mut();
        self.poison.result(data)
    }

    fn guard(&self) -> LockResult<MutexGuard<'_, T>> {
        let guard = MutexGuard {
            mutex: self,
            panicking: std::thread::panicking(),
        };
        self.poison.result(guard)
    }

    /// Sets LOCKED if it is clear, keeping QUEUED; a woken waiter
    /// (`woken`) also clears WOKEN, having now competed.
    #[inline]
    fn try_acquire(&self, woken: bool) -> bool {
        let clear = if woken { WOKEN } else { 0 };
        let mut state = self.state.load(Ordering::Relaxed);
        while state & LOCKED == 0 {
            // Acquire: pairs with the unlocker's Release.
            match self.state.compare_exchange_weak(
                state,
                (state | LOCKED) & !clear,
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
    fn lock_contended(&self) {
        // A short spin first (`spin.rs`): the holder is usually a fiber
        // running on another worker, done sooner than a park.
        if self.state.load(Ordering::Relaxed) & QUEUED == 0
            && super::spin::spin_to_acquire(|| self.try_acquire(false))
        {
            return;
        }
        let since = Instant::now();
        // Whether we are the woken waiter (WOKEN is ours to clear).
        let mut woken = false;
        loop {
            let node = {
                let mut queue = self.waiters.lock();
                // Under the list's lock, in one step: take the lock if it
                // is free, else set QUEUED, so that the holder's unlock
                // takes the list's lock to pop and cannot miss us. A woken
                // waiter has now competed: it clears WOKEN either way, so
                // that the next unlock wakes a waiter again.
                let clear = if woken { WOKEN } else { 0 };
                // Acquire: pairs with the unlocker's Release, if we take it.
                let previous = self
                    .state
                    .fetch_update(Ordering::Acquire, Ordering::Relaxed, |state| {
                        let add = if state & LOCKED == 0 { LOCKED } else { QUEUED };
                        Some((state | add) & !clear)
                    })
                    .expect("the update always applies");
                if previous & LOCKED == 0 {
                    return;
                }
                // A waiter that was woken and lost the race to a newcomer
                // goes back to the front with its original start time, so
                // its wait counts towards a hand-off.
                WaitList::push_waiting_since(&mut queue, since, woken)
            };
            let handed_off = self.wait_for_turn(&node);
            WaitList::recycle(node);
            if handed_off {
                return; // the lock is ours
            }
            if self.try_acquire(true) {
                return;
            }
            woken = true;
        }
    }

    /// Parks until our node is notified. Returns true if the lock was
    /// handed to us. If we are unwound after a hand-off, unlocks; after a
    /// plain wake, clears WOKEN (the wait list has passed the wake on to
    /// the next waiter, if any, which competes in our place).
    fn wait_for_turn(&self, node: &Arc<Node>) -> bool {
        struct Unwound<'a, T: ?Sized>(&'a Mutex<T>, &'a Arc<Node>);
        impl<T: ?Sized> Drop for Unwound<'_, T> {
            fn drop(&mut self) {
                if self.1.is_handed_off() {
                    self.0.unlock();
                } else if self.1.is_notified() {
                    self.0.state.fetch_and(!WOKEN, Ordering::Relaxed);
                }
            }
        }
        let release = Unwound(self, node);
        self.waiters.wait(node, None);
        std::mem::forget(release);
        node.is_handed_off()
    }

    /// Releases the lock; wakes a waiter only if some are queued and none
    /// woken earlier is still to compete (WOKEN).
    #[inline]
    fn unlock(&self) {
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            debug_assert!(state & LOCKED != 0, "unlock of a free Mutex");
            if state & (QUEUED | WOKEN) == QUEUED {
                return self.unlock_slow();
            }
            // Release: publishes the critical section to the next holder.
            match self.state.compare_exchange_weak(
                state,
                state & !LOCKED,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(found) => state = found,
            }
        }
    }

    /// An unlock with waiters queued and none woken: wakes the front one
    /// (WOKEN), or hands it the lock if it has waited too long.
    #[cold]
    fn unlock_slow(&self) {
        let wake = {
            let mut queue = self.waiters.lock();
            // At most one hand-off per HAND_OFF_AFTER: enough to bound how
            // long the front waiter starves, and between hand-offs waiters
            // compete, so a long queue of old waiters does not turn every
            // unlock into a park + unpark convoy.
            let now = Instant::now();
            let now_nanos = nanos_since_epoch(now);
            let since_last = now_nanos.saturating_sub(self.last_hand_off.load(Ordering::Relaxed));
            let hand_off = since_last >= HAND_OFF_AFTER.as_nanos() as u64
                && queue
                    .front()
                    .and_then(|node| node.since())
                    .is_some_and(|since| now.duration_since(since) >= HAND_OFF_AFTER);
            if hand_off {
                self.last_hand_off.store(now_nanos, Ordering::Relaxed);
            }
            let wake = WaitList::pop(&mut queue, hand_off);
            let queued = if queue.is_empty() { 0 } else { QUEUED };
            // A plain wake makes its waiter the woken one; a hand-off does
            // not (the waiter does not compete: the lock is its).
            let woken = if wake.is_some() && !hand_off {
                WOKEN
            } else {
                0
            };
            // Release, as above. On a hand-off LOCKED stays set: the lock
            // passes to the woken waiter without ever being free. A store
            // is enough: we hold LOCKED and the list's lock, so nobody
            // else changes the word meanwhile (acquirers need LOCKED
            // clear; queueing waiters need the list's lock).
            let locked = if hand_off { LOCKED } else { 0 };
            self.state.store(locked | queued | woken, Ordering::Release);
            wake
        };
        if let Some(wake) = wake {
            wake.wake();
        }
    }
}

impl<T: ?Sized> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: a guard exists only while its party holds the lock (see
        // `unsafe impl Sync for Mutex`), so no other guard, and no `&mut T`,
        // exists while this `&T` lives.
        unsafe { &*self.mutex.data.get() }
    }
}

impl<T: ?Sized> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, this is the only guard; `&mut self` on it
        // rules out any other reference through it while this one lives.
        unsafe { &mut *self.mutex.data.get() }
    }
}

impl<T: ?Sized> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        self.mutex.poison.record_panic(self.panicking);
        self.mutex.unlock();
    }
}

impl<'a, T: ?Sized> MutexGuard<'a, T> {
    /// The mutex this guard locks (for `Condvar`).
    pub(crate) fn mutex(&self) -> &'a Mutex<T> {
        self.mutex
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_lock(f, "Mutex", self.try_lock(), self.is_poisoned())
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: Default> Default for Mutex<T> {
    fn default() -> Mutex<T> {
        Mutex::new(T::default())
    }
}
