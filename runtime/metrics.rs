//! Counters that say what the scheduler did: [`Runtime::metrics`].
//!
//! Each worker's counters live in its `Remote` and are written only by that
//! worker, with a relaxed load and store (no atomic read-modify-write, so
//! no bus-locked instruction on the hot path), and read by anyone. A slot's
//! hand-off count is written the same way by the monitor alone
//! (`HandoffState`). Counters that any thread may bump (spawns from outside
//! the workers, the spare workers' counts in `Spares`) are ordinary
//! atomics; the I/O counts are the reactor's. A snapshot is not taken at one instant: each counter is exact,
//! but counters read a moment apart.
//!
//! [`Runtime::metrics`]: crate::Runtime::metrics

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::fiber::stack::StackStats;

/// One worker's counters. Written by its owner only.
#[derive(Default)]
pub(crate) struct WorkerCounters {
    pub(crate) fibers_run: AtomicU64,
    pub(crate) next_slot_hits: AtomicU64,
    pub(crate) injector_pops: AtomicU64,
    pub(crate) steal_attempts: AtomicU64,
    pub(crate) steals: AtomicU64,
    pub(crate) parks: AtomicU64,
    pub(crate) parked_nanos: AtomicU64,
    pub(crate) spawned: AtomicU64,
    pub(crate) spawns_to_backlog: AtomicU64,
}

/// Adds to a counter that only the calling thread writes: a relaxed load
/// and store, not a read-modify-write.
#[inline]
pub(crate) fn bump(counter: &AtomicU64, by: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(by),
        Ordering::Relaxed,
    );
}

impl WorkerCounters {
    pub(crate) fn snapshot(&self) -> WorkerMetrics {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        WorkerMetrics {
            fibers_run: get(&self.fibers_run),
            next_slot_hits: get(&self.next_slot_hits),
            injector_pops: get(&self.injector_pops),
            steal_attempts: get(&self.steal_attempts),
            steals: get(&self.steals),
            parks: get(&self.parks),
            time_parked: Duration::from_nanos(get(&self.parked_nanos)),
            spawned: get(&self.spawned),
            spawns_to_backlog: get(&self.spawns_to_backlog),
            handoffs: 0,
        }
    }
}

/// What one worker has done since the runtime started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerMetrics {
    /// Fiber slices run (a fiber that parks and is woken counts again).
    pub fibers_run: u64,
    /// Fibers taken from this worker's next slot.
    pub next_slot_hits: u64,
    /// Batches taken from the global injector.
    pub injector_pops: u64,
    /// Attempts to steal from another worker's deque.
    pub steal_attempts: u64,
    /// Fibers obtained by stealing (from a deque or a next slot).
    pub steals: u64,
    /// Times the worker went to sleep.
    pub parks: u64,
    /// Total time asleep.
    pub time_parked: Duration,
    /// Fibers spawned by fibers running on this worker.
    pub spawned: u64,
    /// Fibers this worker moved to the runtime's global spawn backlog,
    /// because a spawn found its deque holding `SPAWN_BACKLOG` fibers (the
    /// older half of the deque goes, with the fiber the spawn displaced
    /// from the next slot; `scheduler/worker.rs`).
    pub spawns_to_backlog: u64,
    /// Times this worker was declared stuck in one fiber and its queue
    /// handed to a spare worker (`scheduler/handoff.rs`).
    pub handoffs: u64,
}

/// A snapshot of a runtime's counters (see the module docs).
#[derive(Clone, Debug)]
pub struct Metrics {
    /// Per worker, by index (`spindle-worker-<index>`): the configured
    /// workers, then every spare-worker slot used so far (hand-offs).
    pub workers: Vec<WorkerMetrics>,
    /// Fibers spawned since the runtime started, from anywhere.
    pub spawned_total: u64,
    /// Fibers spawned and not yet finished.
    pub live_fibers: usize,
    /// Panics in user code that the runtime runs outside a fiber's
    /// function (the drop of a result whose `JoinHandle` is gone, of the
    /// closure of a fiber that never ran, of a fiber-local value), each
    /// caught and reported on stderr; the runtime carries on.
    pub caught_panics: u64,
    /// Fibers that never ran because no stack could be had at their first
    /// run (the OS refused memory for more stacks); each one's joiner gets
    /// the error, and they are reported on stderr. Spawns are refused
    /// instead (`SpawnError::OutOfStacks`) while no stack is free.
    pub fibers_without_stack: u64,
    /// Fibers whose cancellation (`JoinHandle::cancel`) found too little
    /// stack left to unwind at their park point, frozen instead: never
    /// resumed, their stacks (counted in `stacks.in_use`) and what is on
    /// them kept for good; each one's joiner sees it cancelled, and each
    /// is reported on stderr. Shutdown's frozen fibers are listed in
    /// `ShutdownReport::frozen` instead.
    pub frozen_fibers: u64,
    /// The stack pool.
    pub stacks: StackStats,
    /// Memory mappings the whole process holds now (`/proc/self/maps`).
    pub mappings: usize,
    /// Blocking-pool threads alive now.
    pub blocking_threads: usize,
    /// Timers pending on all workers.
    pub timers_pending: usize,
    /// Hand-off episodes so far: times a worker stuck in one fiber (a
    /// blocking call or a long computation) had its queue handed to a
    /// spare worker.
    pub handoffs: u64,
    /// Workers stuck in one fiber now.
    pub blocked_workers: usize,
    /// Spare workers running now.
    pub spare_workers: usize,
    /// The most spare workers running at once so far.
    pub peak_spare_workers: usize,
    /// The I/O reactor (`spindle::net` sockets).
    pub io: IoMetrics,
}

/// What the I/O reactor has done since the runtime started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoMetrics {
    /// Calls to `epoll_wait` (blocking ones by idle workers and
    /// non-blocking ones by busy workers and the monitor).
    pub polls: u64,
    /// Readiness events delivered to registered sockets.
    pub events: u64,
    /// Sockets registered now (a socket registers at its first wait in a
    /// fiber and deregisters when its last handle is dropped).
    pub registrations: usize,
}
