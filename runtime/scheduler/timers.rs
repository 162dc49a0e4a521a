//! A worker's timer queue: deadlines of fibers parked with a timeout.
//!
//! # Design
//! Each worker has one [`TimerQueue`]: a timing wheel (`wheel.rs`: insert
//! and cancel in constant time, deadlines rounded up to its tick) under a
//! mutex, plus the wheel's next expiry in an atomic, so that the worker
//! loop can ask "is anything due?" without the lock and without reading
//! the clock when nothing is pending.
//!
//! - A fiber registers its timer in the queue of the worker it runs on
//!   (uncontended lock), through [`Shared::insert_timer`] (`time/timer.rs`
//!   is the caller); it remembers the key, and when it wakes early it
//!   removes the entry ([`Shared::remove_timer`]: the lock of that
//!   worker's queue, wherever the fiber runs by then). So a timer never
//!   outlives the wait it belongs to: nothing leaks when fibers are woken
//!   early, however long their timeouts. A fiber woken by its timer skips
//!   that lock: the queue's next expiry, read without it, shows the timer
//!   gone ([`TimerQueue::remove`]).
//! - The owning worker fires due timers at its scheduling decisions (each
//!   fiber switch) and parks, when idle, until the next expiry; the
//!   monitor fires those of workers that cannot (`monitor.rs`).
//!
//! A timer fires within one tick of the wheel after its deadline, never
//! before it. The next expiry can be a cascade of the wheel rather than a
//! timer: a worker parked until it wakes, finds nothing due, and parks
//! again until the next one (at most once per level per timer).
//!
//! The queue is the scheduler's, not `time/`'s: firing and sleeping until
//! the earliest deadline are part of the worker loop, so the queue sits in
//! the worker's `Remote`, and `time/` registers through the two methods.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::wheel::{Wheel, WheelKey, TICK_SHIFT};
use super::worker::{self, Worker};
use super::Shared;
use crate::fiber::Fiber;
use crate::lock::MutexExt;

/// "No timer pending" in `earliest`.
const NONE: u64 = u64::MAX;

/// Where a registered timer sits, to cancel it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TimerKey {
    /// The worker whose queue holds it.
    worker: usize,
    /// Its entry in that queue's wheel.
    key: WheelKey,
}

impl Shared {
    /// Registers a timer that unparks a fiber at `deadline`, in the queue
    /// of the calling worker, which fires it; the fiber's handle comes from
    /// `fiber`, called only then. `None` (nothing registered) when the
    /// caller is not one of this runtime's workers (the thread that unwinds
    /// fibers at shutdown).
    #[inline]
    pub(crate) fn insert_timer(
        &self,
        deadline: Instant,
        fiber: impl FnOnce() -> Fiber,
    ) -> Option<TimerKey> {
        let worker = worker::with_current(self, |w| w.map(Worker::index))?;
        let fiber = fiber();
        let remote = &self.remotes[worker];
        let key = remote
            .handoff
            .outside_fiber(|| remote.timers.insert(worker, self.epoch, deadline, fiber));
        Some(key)
    }

    /// Cancels a timer if it has not fired, from whichever thread its fiber
    /// wakes on.
    ///
    /// On a worker, the queue's lock is taken with the monitor told that no
    /// fiber code runs (`HandoffState::outside_fiber`): the lock is the
    /// runtime's own, held for a few map operations, and a cancel that waits
    /// for it (its holder preempted by a loaded machine, say) is the
    /// scheduler's wait, not a blocking call to hand off (`docs/decisions.md`,
    /// "HandoffState::outside_fiber"). The same holds for `insert_timer`.
    #[inline]
    pub(crate) fn remove_timer(&self, key: TimerKey) {
        let timers = &self.remotes[key.worker].timers;
        match worker::with_current(self, |w| w.map(Worker::index)) {
            Some(worker) => self.remotes[worker]
                .handoff
                .outside_fiber(|| timers.remove(key)),
            None => timers.remove(key),
        };
    }
}

/// One worker's pending timers.
pub(super) struct TimerQueue {
    /// Pending timers.
    wheel: Mutex<Wheel<Fiber>>,
    /// The wheel's next expiry ([`Wheel::next_expiry`]), as nanoseconds
    /// since the runtime's epoch, or `NONE`: at or before every pending
    /// timer's tick. Written under the lock, after each change of the
    /// wheel; read without it (Relaxed): as a hint that is re-checked
    /// under the lock before anything fires, and by `remove` as proof that
    /// a timer before it has fired.
    earliest: AtomicU64,
}

impl TimerQueue {
    pub(super) fn new() -> TimerQueue {
        TimerQueue {
            wheel: Mutex::new(Wheel::new()),
            earliest: AtomicU64::new(NONE),
        }
    }

    /// Registers `fiber` to be unparked at `deadline`.
    pub(super) fn insert(
        &self,
        worker: usize,
        epoch: Instant,
        deadline: Instant,
        fiber: Fiber,
    ) -> TimerKey {
        // Rounded up: a timer fires at or after its deadline.
        let tick = nanos_since(epoch, deadline).div_ceil(1 << TICK_SHIFT);
        let mut wheel = self.wheel.lock_unpoisoned();
        let key = wheel.insert(tick, fiber);
        self.publish_earliest(&wheel);
        TimerKey { worker, key }
    }

    /// Removes a timer if it has not fired. Returns whether it was there.
    ///
    /// Without the lock when `earliest` proves the timer gone: every
    /// pending timer's tick is at or after it, so a timer before it has
    /// fired. That is the common case (a sleep that ran its course), and
    /// the cancel then never waits behind a worker or the monitor that
    /// holds the lock to insert or fire; a fiber waiting here looked to the
    /// monitor like one blocked in a system call (`docs/decisions.md`,
    /// "TimerQueue::remove"). Relaxed suffices: the fiber that cancels
    /// inserted the timer itself, and the unpark that woke it orders that
    /// insert before this read, so the read sees the value the insert left
    /// in `earliest` (stored, or found already right) or a later one, and
    /// every value stored while the timer is pending is at or before its
    /// tick's start.
    pub(super) fn remove(&self, key: TimerKey) -> bool {
        if start_of(key.key.tick()) < self.earliest.load(Ordering::Relaxed) {
            return false;
        }
        let mut wheel = self.wheel.lock_unpoisoned();
        let removed = wheel.remove(key.key);
        if removed.is_some() {
            self.publish_earliest(&wheel);
        }
        drop(wheel);
        // The fiber handle is dropped outside the lock.
        removed.is_some()
    }

    /// Whether a timer is due at `now`, without the lock (a hint).
    pub(super) fn is_due(&self, epoch: Instant, now: Instant) -> bool {
        let earliest = self.earliest.load(Ordering::Relaxed);
        earliest != NONE && nanos_since(epoch, now) >= earliest
    }

    /// Whether any timer is pending (a hint, without the lock).
    pub(super) fn has_pending(&self) -> bool {
        self.earliest.load(Ordering::Relaxed) != NONE
    }

    /// How long until the next expiry (zero if due), or `None`.
    pub(super) fn time_to_earliest(&self, epoch: Instant, now: Instant) -> Option<Duration> {
        let earliest = self.earliest.load(Ordering::Relaxed);
        (earliest != NONE)
            .then(|| Duration::from_nanos(earliest.saturating_sub(nanos_since(epoch, now))))
    }

    /// Takes out every timer due at `now` and unparks its fiber (after
    /// releasing the lock). Returns how many fired.
    pub(super) fn fire_due(&self, epoch: Instant, now: Instant) -> usize {
        let mut due = Vec::new();
        {
            let mut wheel = self.wheel.lock_unpoisoned();
            wheel.advance(nanos_since(epoch, now) >> TICK_SHIFT, &mut due);
            self.publish_earliest(&wheel);
        }
        let fired = due.len();
        for fiber in due {
            fiber.unpark();
        }
        fired
    }

    /// Pending timers.
    pub(super) fn len(&self) -> usize {
        self.wheel.lock_unpoisoned().len()
    }

    /// Drops every pending timer (at shutdown: their fibers are being
    /// unwound, and the handles would otherwise keep the runtime alive).
    pub(super) fn clear(&self) {
        let fibers = {
            let mut wheel = self.wheel.lock_unpoisoned();
            self.earliest.store(NONE, Ordering::Relaxed);
            wheel.drain()
        };
        drop(fibers);
    }

    /// Stores the wheel's next expiry in `earliest` (under the lock, after
    /// every change of the wheel; a few words read, so exact rather than
    /// a bound that would wake the worker early). Only a change is
    /// stored: the monitor reads `earliest` at each pass, and a store
    /// would take its cache line back from the monitor's core.
    fn publish_earliest(&self, wheel: &Wheel<Fiber>) {
        let earliest = wheel.next_expiry().map_or(NONE, start_of);
        if self.earliest.load(Ordering::Relaxed) != earliest {
            self.earliest.store(earliest, Ordering::Relaxed);
        }
    }
}

/// Nanoseconds from the epoch to the start of `tick`.
fn start_of(tick: u64) -> u64 {
    tick.checked_shl(TICK_SHIFT)
        .filter(|&nanos| nanos >> TICK_SHIFT == tick)
        .unwrap_or(NONE - 1)
}

/// Nanoseconds from `epoch` to `t` (0 if `t` is earlier), short of
/// `NONE`. In 64-bit arithmetic: `Duration::as_nanos` multiplies in 128
/// bits, and the worker loop asks this at every scheduling decision while a
/// timer is pending.
fn nanos_since(epoch: Instant, t: Instant) -> u64 {
    let since = t.saturating_duration_since(epoch);
    since
        .as_secs()
        .checked_mul(1_000_000_000)
        .and_then(|nanos| nanos.checked_add(u64::from(since.subsec_nanos())))
        .map_or(NONE - 1, |nanos| nanos.min(NONE - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nanos_since_counts_exactly_and_saturates_short_of_none() {
        let epoch = Instant::now();
        let later = epoch + Duration::new(3, 141_592_653);
        assert_eq!(nanos_since(epoch, later), 3_141_592_653);
        assert_eq!(nanos_since(later, epoch), 0, "an earlier instant is 0");
        assert_eq!(nanos_since(epoch, epoch), 0);
        // Past u64 nanoseconds (585 years), where the platform allows it.
        if let Some(far) = epoch.checked_add(Duration::from_secs(600 * 365 * 86_400)) {
            assert_eq!(nanos_since(epoch, far), NONE - 1);
        }
        assert_eq!(start_of(3), 3 << TICK_SHIFT);
        assert_eq!(start_of(u64::MAX >> 1), NONE - 1, "a far tick saturates");
    }
}
