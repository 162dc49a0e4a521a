//! [`SpinLock`]: the short lock over a channel's state.
//!
//! # Design
//! A channel's critical sections are a handful of pushes and pops, never
//! a park, never user code (`sync/mpsc/channel.rs`). For sections that
//! short, a lock that only spins is the cheapest: `lock` is one
//! compare-and-swap and `unlock` a plain store, where a lock that can put
//! a waiter to sleep (std's) must swap at unlock to see whether it has to
//! wake one. On a channel ping-pong that is a read-modify-write fewer per
//! lock, several per round trip (`docs/decisions.md`, "Channel state
//! lock").
//!
//! The cost of spinning is a holder that the OS preempted mid-section: its
//! waiters would spin for the holder's whole time slice. So a waiter spins
//! with exponential backoff (reading, not writing, the lock word: its cache
//! line stays shared until the holder's store) and, past
//! [`SPINS_BEFORE_YIELD`] rounds, yields its thread to the OS each round,
//! which lets a preempted holder on the same core run. crossbeam-channel
//! guards its waker lists the same way.
//!
//! A select locks several channels at once, in address order, to see them
//! all at one instant ([`RawSpinLock`], the lock without its data).
//!
//! Rejected: std's `Mutex`, which can put a waiter to sleep, so its
//! unlock is a swap (figures in `docs/decisions.md`, "Channel state
//! lock"); and a lock that spins, then sleeps on a futex: its unlock must
//! be a read-modify-write again, which is the whole saving.

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};

/// Backoff rounds a waiter spins (1, 2, 4, ... pauses, up to
/// `1 << MAX_SPIN_SHIFT`) before it yields its thread each round. A guess:
/// a critical section is tens of nanoseconds, and these rounds wait a few
/// microseconds in all.
const SPINS_BEFORE_YIELD: u32 = 10;
/// The longest pause between two looks at the lock word, as a shift. A
/// guess, as `SPINS_BEFORE_YIELD`.
const MAX_SPIN_SHIFT: u32 = 6;

/// A lock word alone: what a select holds on several channels at once.
pub(crate) struct RawSpinLock {
    locked: AtomicBool,
}

impl RawSpinLock {
    const fn new() -> RawSpinLock {
        RawSpinLock {
            locked: AtomicBool::new(false),
        }
    }

    /// Takes the lock, spinning (then yielding the thread) while another
    /// party holds it.
    #[inline]
    pub(crate) fn lock(&self) {
        // Acquire: pairs with the Release of the previous holder's unlock.
        if self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_contended();
        }
    }

    #[cold]
    fn lock_contended(&self) {
        let mut round = 0u32;
        loop {
            // Wait for the word to read free before writing it again.
            while self.locked.load(Ordering::Relaxed) {
                if round < SPINS_BEFORE_YIELD {
                    for _ in 0..1u32 << round.min(MAX_SPIN_SHIFT) {
                        std::hint::spin_loop();
                    }
                    round += 1;
                } else {
                    std::thread::yield_now();
                }
            }
            // Acquire: as in `lock`.
            if self
                .locked
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
        }
    }

    /// Releases the lock.
    ///
    /// # Safety
    /// The caller holds the lock (took it with [`RawSpinLock::lock`] and
    /// has not released it since), and no reference into the data it
    /// guards outlives this call.
    #[inline]
    pub(crate) unsafe fn unlock(&self) {
        debug_assert!(self.locked.load(Ordering::Relaxed), "unlock of a free lock");
        // Release: publishes the critical section to the next holder.
        self.locked.store(false, Ordering::Release);
    }
}

/// A spin lock over a `T`; see the module docs.
pub(crate) struct SpinLock<T> {
    raw: RawSpinLock,
    data: UnsafeCell<T>,
}

// SAFETY: the data is reached only by the holder of `raw` (through a
// `SpinGuard`, or `data_locked` whose caller holds the raw lock), one
// party at a time, and the lock's Acquire/Release orders each holder's
// accesses after the previous one's. Holders on different threads each get
// `&mut T`, which moves the T between threads: hence T: Send, as std's
// Mutex requires.
unsafe impl<T: Send> Sync for SpinLock<T> {}
// SAFETY: a SpinLock owns its T and holds nothing tied to a thread.
unsafe impl<T: Send> Send for SpinLock<T> {}

/// Access to a [`SpinLock`]'s data; unlocks when dropped.
pub(crate) struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
}

impl<T> SpinLock<T> {
    pub(crate) const fn new(value: T) -> SpinLock<T> {
        SpinLock {
            raw: RawSpinLock::new(),
            data: UnsafeCell::new(value),
        }
    }

    #[inline]
    pub(crate) fn lock(&self) -> SpinGuard<'_, T> {
        self.raw.lock();
        SpinGuard { lock: self }
    }

    /// The lock word, for a caller that locks several at once.
    pub(crate) fn raw(&self) -> &RawSpinLock {
        &self.raw
    }

    /// The data, for a caller that took [`SpinLock::raw`]'s lock itself.
    ///
    /// # Safety
    /// The caller holds `self.raw()`'s lock for as long as the reference
    /// lives, and makes no other reference to the data meanwhile (no
    /// second `data_locked`, no guard).
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn data_locked(&self) -> &mut T {
        debug_assert!(
            self.raw.locked.load(Ordering::Relaxed),
            "data of a free lock"
        );
        // SAFETY: the caller holds the lock and makes no other reference,
        // so this one is unique until it ends (see `unsafe impl Sync`).
        unsafe { &mut *self.data.get() }
    }
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock, so no `&mut T` exists elsewhere
        // while this reference lives (it borrows the guard).
        unsafe { &*self.lock.data.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard holds the lock, and `&mut self` rules out any
        // other reference through it while this one lives.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: the guard took the lock in `SpinLock::lock` and holds it
        // until now; references into the data borrow the guard, so none
        // outlives it.
        unsafe { self.lock.raw.unlock() };
    }
}
