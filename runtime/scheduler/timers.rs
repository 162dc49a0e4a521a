//! A worker's timer queue: deadlines of fibers parked with a timeout.
//!
//! # Design
//! Each worker has one [`TimerQueue`]: a `BTreeMap` keyed by
//! `(deadline, sequence number)` under a mutex, plus the earliest deadline
//! in an atomic so that the worker loop can ask "is anything due?" without
//! the lock and without reading the clock when nothing is pending.
//!
//! - A fiber registers its timer in the queue of the worker it runs on
//!   (uncontended lock), through [`Shared::insert_timer`] (`time/timer.rs`
//!   is the caller); it remembers the key, and when it wakes early it
//!   removes the entry ([`Shared::remove_timer`]: the lock of that
//!   worker's queue, wherever the fiber runs by then). So a timer never
//!   outlives the wait it belongs to: nothing leaks when fibers are woken
//!   early, however long their timeouts. A fiber woken by its timer skips
//!   that lock: the queue's earliest deadline, read without it, shows the
//!   timer gone ([`TimerQueue::remove`]).
//! - The owning worker fires due timers at its scheduling decisions (each
//!   fiber switch) and parks, when idle, until its earliest deadline; the
//!   monitor fires those of workers that cannot (`monitor.rs`).
//!
//! The queue is the scheduler's, not `time/`'s: firing and sleeping until
//! the earliest deadline are part of the worker loop, so the queue sits in
//! the worker's `Remote`, and `time/` registers through the two methods.
//!
//! Rejected, for now: a hierarchical timing wheel (tokio's), O(1) insert
//! and cancel, but a few hundred lines more; Go's per-P 4-ary heap, which
//! needs index tracking for O(log n) cancellation. The map does both in
//! O(log n) with std's code. Profiled where timers are busiest (a million
//! sleepers), the map's share bounds what a wheel could win there, and it
//! is smaller than the cost of switching back onto stacks left cold by the
//! sleep (`docs/decisions.md`, "TimerQueue").

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
    /// The deadline, as nanoseconds since the runtime's epoch.
    deadline: u64,
    sequence: u64,
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
    /// Pending timers and the next sequence number, under one lock.
    entries: Mutex<Entries>,
    /// The earliest deadline, as nanoseconds since the runtime's epoch, or
    /// `NONE`. Written under the lock; read without it (Relaxed): as a hint
    /// that is re-checked under the lock before anything fires, and by
    /// `remove` as proof that a timer before it has fired.
    earliest: AtomicU64,
}

struct Entries {
    /// Keyed by deadline (nanoseconds since the runtime's epoch: integer
    /// compares, and `earliest` is a key) and sequence number.
    map: BTreeMap<(u64, u64), Fiber>,
    next_sequence: u64,
}

impl TimerQueue {
    pub(super) fn new() -> TimerQueue {
        TimerQueue {
            entries: Mutex::new(Entries {
                map: BTreeMap::new(),
                next_sequence: 0,
            }),
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
        let deadline = nanos_since(epoch, deadline);
        let mut entries = self.entries.lock_unpoisoned();
        let sequence = entries.next_sequence;
        entries.next_sequence += 1;
        entries.map.insert((deadline, sequence), fiber);
        // The earliest deadline changes only if this one is earlier
        // (Relaxed: every store is made under the lock we hold).
        if deadline < self.earliest.load(Ordering::Relaxed) {
            self.earliest.store(deadline, Ordering::Relaxed);
        }
        TimerKey {
            worker,
            deadline,
            sequence,
        }
    }

    /// Removes a timer if it has not fired. Returns whether it was there.
    ///
    /// Without the lock when `earliest` proves the timer gone: every
    /// pending key is at or after it, so a key before it has fired. That is
    /// the common case (a sleep that ran its course), and the cancel then
    /// never waits behind a worker or the monitor that holds the lock to
    /// insert or fire; a fiber waiting here looked to the monitor like one
    /// blocked in a system call (`docs/decisions.md`, "TimerQueue::remove").
    /// Relaxed suffices: the fiber that cancels inserted the key itself,
    /// and the unpark that woke it orders that insert before this read, so
    /// the read sees the insert's store of `earliest` or a later one, and
    /// every store made while the key is pending is at or before the key.
    pub(super) fn remove(&self, key: TimerKey) -> bool {
        if key.deadline < self.earliest.load(Ordering::Relaxed) {
            return false;
        }
        let mut entries = self.entries.lock_unpoisoned();
        let removed = entries.map.remove(&(key.deadline, key.sequence)).is_some();
        // The earliest deadline changes only if this was (one of) the
        // earliest.
        if removed && key.deadline == self.earliest.load(Ordering::Relaxed) {
            self.publish_earliest(&entries);
        }
        removed
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

    /// How long until the earliest deadline (zero if due), or `None`.
    pub(super) fn time_to_earliest(&self, epoch: Instant, now: Instant) -> Option<Duration> {
        let earliest = self.earliest.load(Ordering::Relaxed);
        (earliest != NONE)
            .then(|| Duration::from_nanos(earliest.saturating_sub(nanos_since(epoch, now))))
    }

    /// Takes out every timer due at `now` and unparks its fiber (after
    /// releasing the lock). Returns how many fired.
    pub(super) fn fire_due(&self, epoch: Instant, now: Instant) -> usize {
        let due: BTreeMap<(u64, u64), Fiber> = {
            let mut entries = self.entries.lock_unpoisoned();
            let later = entries.map.split_off(&(nanos_since(epoch, now), u64::MAX));
            let due = std::mem::replace(&mut entries.map, later);
            self.publish_earliest(&entries);
            due
        };
        let fired = due.len();
        for fiber in due.into_values() {
            fiber.unpark();
        }
        fired
    }

    /// Pending timers.
    pub(super) fn len(&self) -> usize {
        self.entries.lock_unpoisoned().map.len()
    }

    /// Drops every pending timer (at shutdown: their fibers are being
    /// unwound, and the handles would otherwise keep the runtime alive).
    pub(super) fn clear(&self) {
        let map = std::mem::take(&mut self.entries.lock_unpoisoned().map);
        self.earliest.store(NONE, Ordering::Relaxed);
        drop(map);
    }

    /// Stores the map's earliest deadline in `earliest` (under the lock).
    fn publish_earliest(&self, entries: &Entries) {
        let earliest = entries
            .map
            .keys()
            .next()
            .map_or(NONE, |&(deadline, _)| deadline);
        self.earliest.store(earliest, Ordering::Relaxed);
    }
}

/// Nanoseconds from `epoch` to `t` (0 if `t` is earlier).
fn nanos_since(epoch: Instant, t: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(epoch).as_nanos()).unwrap_or(NONE - 1)
}
