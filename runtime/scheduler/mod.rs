//! The M:N scheduler: how fibers are spread over worker threads.
//!
//! # The pieces
//! - A **worker** (`worker.rs`) is an OS thread running the scheduler loop.
//!   There are N of them (default: the machine's available parallelism).
//!   Go calls this an M bound to a P; tokio calls it a worker.
//! - Each worker has a **local run queue** (`queue.rs`): a crossbeam-deque
//!   FIFO that other workers can steal batches from, and a one-fiber **next
//!   slot** for the fiber it just woke or spawned.
//! - The **injector** is a global FIFO for fibers made runnable from outside
//!   the runtime (plain threads calling `Runtime::spawn` or `unpark`, and
//!   the monitor firing the timers of held workers).
//! - The **spawn backlog** is a second global FIFO (`queue.rs`), looked at
//!   after the injector: where a worker's spawns overflow, half its deque
//!   at a time, once its deque holds `SPAWN_BACKLOG` fibers (`worker.rs`).
//!   Unstarted fibers wait there, holding no stack, behind every fiber
//!   that is already started.
//! - **Idle** (`idle.rs`) counts searching and sleeping workers; **park**
//!   (`park.rs`) is how a worker sleeps.
//! - Each worker has a **timer queue** (`timers.rs`, a timing wheel from
//!   `wheel.rs`) of fibers parked with a deadline, which it fires at its
//!   scheduling decisions and sleeps until; `time/` registers timers in it
//!   through `Shared::insert_timer`.
//! - `start.rs` builds a runtime in named steps; `shutdown.rs` takes it
//!   down (the steps at the end of this comment).
//! - The **monitor** (`monitor.rs`) is one more thread: it wakes a sleeping
//!   worker when a busy one has fibers waiting behind a fiber that does not
//!   yield, and when none sleeps it hands the held worker's queue to a
//!   **spare worker** (`handoff.rs`): a thread running the same loop on a
//!   spare slot, which retires when the held fiber gives its worker back.
//! - Idle workers sleep in the I/O poller (`io/reactor.rs`) when one is
//!   free, so socket readiness wakes them as a producer's unpark does.
//!
//! # The life of a fiber
//! 1. `spawn` checks the runtime's live-fiber limit, allocates the fiber
//!    (no stack yet) in state SCHEDULED and puts it in the spawning worker's
//!    next slot (from a plain thread: the injector, then wakes a worker).
//! 2. A worker pops it (`find_fiber`: `maintenance`, `next_fiber` or
//!    `search`), marks it RUNNING and calls `fiber::run_slice`, which at
//!    the first run takes a stack (a default-size one from the worker's
//!    cache) and creates the coroutine, then switches to it.
//! 3. The fiber runs until it calls `yield_now` (back of the local queue),
//!    `park` (the worker marks it PARKED unless an unpark raced in; someone
//!    holding its `Fiber` handle will `unpark` it into a run queue), or
//!    returns (its result goes to the `JoinHandle`, its stack to the cache).
//!
//! # How workers find work, spin and park
//! A worker looks at its next slot, its deque, the injector and the spawn
//! backlog; then it becomes a **searcher** and steals from the others; then
//! it **parks**. A worker starts searching only while fewer than half of
//! the workers do. A fiber made runnable wakes a sleeping worker only when
//! no worker is searching (a searcher will find it): a burst of spawns
//! wakes one worker, which, when it finds work and stops searching, wakes
//! the next if it was the last searcher. This is Go's "spinning M" scheme
//! and tokio's `Idle`.
//!
//! # Parking without lost wake-ups
//! The race: a producer pushes a fiber and sees a searcher, so wakes nobody;
//! meanwhile that searcher has already looked at the producer's queue, found
//! it empty, and goes to sleep. The fiber would sit in a queue with every
//! worker asleep. Both sides therefore do a store then a load, each ordered
//! by a SeqCst operation (a store-load pair, which acquire/release does not
//! order):
//!
//! ```text
//!   producer                          last searcher going to sleep
//!   push fiber to a queue             searching -= 1 (SeqCst RMW)
//!   fence(SeqCst)                     re-check every queue
//!   load searching / sleepers         if work: wake a worker
//!   if none searching: wake one
//! ```
//!
//! In any interleaving, either the producer sees no searcher (and wakes a
//! sleeper), or the searcher's re-check sees the fiber. The worker's own
//! sleep uses a parker with an unpark token, so a wake-up that arrives
//! between "decided to sleep" and "asleep" is not lost either. `idle.rs`
//! model-checks this race with loom (`crate::loom`), `park.rs` the token.
//!
//! # Shutdown, in order
//! 1. `Runtime` drop (or `shutdown`) sets the shutdown flag
//!    (`Shared::begin_shutdown`); spawns fail from then on.
//! 2. Every worker and the monitor are unparked, and the blocking and spare
//!    pools told to stop; each worker finishes the slice it is running (a
//!    fiber is never preempted), hands its queued fibers to the injector and
//!    its cached stacks to the pool, and exits. The workers and the monitor
//!    are joined. Spare workers run on pool threads, which are not joined:
//!    shutdown waits until each has retired (`Shared::spares_running`).
//! 3. `Shared::cancel_remaining` cancels every fiber that is left, on a
//!    thread of its own (`shutdown.rs`): queued ones from the injector, the spawn
//!    backlog and the slots' queues (after every timer queue is cleared), and parked ones from the stack pool's slot registry. A
//!    started fiber is resumed with `Resume::Cancel` and unwinds (destructors
//!    run) back to its root, where its joiner gets `JoinError::is_cancelled`;
//!    an unstarted one starts only to drop its closure. Their stacks return
//!    to the pool. A destructor that waits really parks, and the pass, a small
//!    scheduler whose run queue is the injector, runs it again when something
//!    unparks it; a timed wait times out at once (no timer runs). A fiber that
//!    cannot be unwound safely (too little stack left for the unwinder, a
//!    destructor that panics during the unwind, a wait still unanswered when
//!    `Builder::shutdown_grace` runs out) is frozen instead: never resumed,
//!    its stack leaked, reported in `ShutdownReport::frozen`
//!    (`fiber/cancel.rs`). The pass ends only when no fiber is live: a fiber
//!    that a plain thread has just unparked is SCHEDULED but not yet in the
//!    injector, and the pass waits for it to arrive rather than miss it
//!    (the shutdown-under-traffic stress test in `tests/scheduler.rs`
//!    exercises this).
//! 4. The timeline trace, if on, is written (`Shared::write_trace`).
//! 5. When the last handle to the runtime's shared state goes, the pool
//!    unmaps its reservations (never, after a freeze: the frozen fiber keeps
//!    it).

pub(crate) mod handoff;
mod idle;
mod monitor;
pub(crate) mod park;
mod queue;
mod shutdown;
mod start;
pub(crate) mod timers;
mod wheel;
mod worker;

pub(crate) use self::worker::{on_worker_thread, yield_in_place};

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_deque::{Injector, Stealer};

use self::idle::Idle;
use self::park::{Parker, Unparker};
use self::queue::{Backlog, NextSlot};
use self::timers::TimerQueue;
use crate::fiber::record::RecordPool;
use crate::fiber::spawn::{LimitKind, SpawnError};
use crate::fiber::stack::{StackCache, StackPool, StackStats};
use crate::fiber::FiberInner;
use crate::padded::CachePadded;

/// What `Builder::build` hands the scheduler.
pub(crate) struct Config {
    pub(crate) workers: usize,
    pub(crate) stack_size: usize,
    pub(crate) max_fibers: usize,
    pub(crate) thread_name: String,
    /// Tests force the pre-6.13 guard path.
    pub(crate) force_mprotect: bool,
    pub(crate) max_blocking_threads: usize,
    pub(crate) blocking_keep_alive: std::time::Duration,
    pub(crate) trace: Option<std::path::PathBuf>,
    pub(crate) handoff: handoff::HandoffConfig,
    pub(crate) shutdown_grace: std::time::Duration,
}

/// The part of a worker other threads may touch. Private to `scheduler/`:
/// the rest of the crate goes through `Shared`'s methods.
///
/// There is one per configured worker and one per spare slot
/// (`handoff.rs`); a spare slot's `Remote` outlives the threads that use
/// it in turn.
struct Remote {
    // --- The run queue: the owner puts, anyone takes.
    /// Thieves' end of the worker's deque.
    stealer: Stealer<Arc<FiberInner>>,
    /// The worker's next slot (owner and thieves swap it atomically).
    next: NextSlot,
    /// Wakes the worker.
    unparker: Unparker,
    /// Timers of fibers that parked with a deadline on this worker; fired
    /// by the owner (or, while it cannot, the monitor), cancelled by
    /// whichever thread the fiber wakes on.
    timers: TimerQueue,

    // --- Written by the owner only (Relaxed), read by anyone.
    /// Scheduling decisions made so far (the worker's progress signal).
    ticks: AtomicU64,
    /// Fibers finished on this worker, counted only when the runtime has
    /// no live-fiber limit (see `Shared::live_fibers`). Release stores,
    /// read with Acquire.
    finished: AtomicU64,
    /// Stacks in the worker's cache.
    cached_stacks: Arc<AtomicUsize>,
    /// What the worker did (`metrics.rs`).
    counters: crate::metrics::WorkerCounters,

    // --- Between the owner and the monitor (`handoff.rs`).
    handoff: handoff::HandoffState,
}

/// The blocking pool's settings (from the Builder), kept until the pool is
/// made at the first `blocking` call.
struct BlockingConfig {
    /// The most threads it runs at once.
    max_threads: usize,
    /// How long an idle thread waits for work before it exits.
    keep_alive: std::time::Duration,
    /// Its threads' name.
    thread_name: String,
}

/// The owner's part of a worker slot, which only the thread running the
/// slot touches: the owner's end of the deque, the parker it sleeps on, its
/// stack cache. A configured worker's goes to its thread at start; a spare
/// slot's waits in `Spares` while no thread holds the slot.
struct OwnerSide {
    local: crossbeam_deque::Worker<Arc<FiberInner>>,
    /// Unused by spares (they retire instead of sleeping); the worker loop
    /// wants one.
    parker: Parker,
    stacks: StackCache,
}

/// State shared by the workers of one runtime and by every fiber of it.
///
/// Aligned to 128 bytes so that, inside its `Arc`, the reference count
/// (updated by every spawn) sits on other cache lines than the fields every
/// worker reads (see `padded.rs`).
///
/// Fields are private to `scheduler/` except the stack pool (which
/// `fiber::run_slice` takes stacks from) and the reactor (which `io/`
/// registers sockets with); the rest of the crate uses the methods.
#[repr(align(128))]
pub(crate) struct Shared {
    // --- Set at start, immutable after.
    /// One per worker slot, by index: the configured workers first, then
    /// the spare slots (`handoff.rs`); each on its own cache lines.
    remotes: Box<[CachePadded<Remote>]>,
    /// The configured worker count (N).
    num_workers: usize,
    /// Timer deadlines are kept as nanoseconds since this instant.
    epoch: std::time::Instant,
    /// The smaller of `max_fibers` and the guarded-stack budget.
    fiber_limit: usize,
    limit_kind: LimitKind,
    /// Wakes the monitor thread (at shutdown).
    monitor: Unparker,
    /// How long the shutdown pass waits for fibers parked in destructors
    /// (`shutdown.rs`).
    shutdown_grace: std::time::Duration,
    /// The blocking pool's settings, for its first use.
    blocking_config: BlockingConfig,

    // --- Any thread.
    /// Fibers made runnable from outside the runtime's workers.
    injector: Injector<Arc<FiberInner>>,
    /// Spawns past a worker's `SPAWN_BACKLOG`, taken after the injector
    /// (see the module docs).
    backlog: Backlog,
    idle: Idle,
    pub(crate) stacks: StackPool,
    /// Finished fiber records for reuse, between the workers' caches
    /// (`fiber/record.rs`).
    records: RecordPool,
    /// The I/O reactor (`io/reactor.rs`): any thread registers sockets;
    /// idle workers sleep in its poller.
    pub(crate) reactor: Arc<crate::io::Reactor>,
    /// Spare workers for hand-offs.
    spares: handoff::Spares,
    /// One past the highest slot ever activated: loops over workers scan
    /// `remotes[..slot_bound]`. Only grows (monitor, Relaxed store after
    /// the slot is set up; readers that miss a new slot see it next time).
    slot_bound: AtomicUsize,
    /// Set once, when shutdown begins. Relaxed is enough for the spawn check
    /// (a spawn that races it is cancelled in step 3); workers see it after
    /// the unpark that follows it.
    shutdown: AtomicBool,
    /// Fibers spawned from outside the workers (plain threads). Relaxed: a
    /// statistic.
    external_spawns: AtomicU64,
    /// Fibers spawned and not finished, kept only when `fiber_limit` is a
    /// limit (see `live_fibers`). Relaxed: a counter checked against
    /// `fiber_limit`, ordered with nothing else.
    live: AtomicUsize,
    /// Without a limit: fibers finished off the workers (cancelled by the
    /// shutdown pass). Release, read with Acquire (see `live_fibers`).
    finished_elsewhere: AtomicU64,
    /// Panics of user code caught outside fibers' functions
    /// (`fiber/fault.rs`). Relaxed: a statistic.
    caught_panics: AtomicU64,
    /// Fibers that never ran: no stack could be had at their first run.
    /// Relaxed: a statistic.
    fibers_without_stack: AtomicU64,
    /// Fibers frozen on a worker: a requested cancellation that found too
    /// little stack to unwind (`fiber/cancel.rs`). Relaxed: a statistic.
    frozen_fibers: AtomicU64,
    /// The blocking pool, made at the first `blocking` call.
    blocking: std::sync::OnceLock<Arc<crate::thread_pool::Pool>>,
    /// The timeline trace, if on (`trace.rs`): workers hand their buffers
    /// in as they exit.
    tracing: crate::trace::Tracing,
    /// The thread running the shutdown pass, which sleeps while the fibers
    /// left wait; set by that thread, under this lock, before it looks at
    /// the queues, and woken by every push into the injector once shutdown
    /// has begun (`shutdown.rs`).
    cancel_waker: std::sync::Mutex<Option<std::thread::Thread>>,
}

impl Shared {
    pub(crate) fn is_shutdown(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }

    /// Counts a new fiber against the limit, or refuses it: also while
    /// no stack can be had for it (the pool cannot grow, none is free).
    ///
    /// Without a limit (no `max_fibers` and guards that cost no mappings)
    /// nothing is counted here: every spawn is already counted where it is
    /// made (`WorkerCounters::spawned`, `external_spawns`) and every finish
    /// where it happens, and `live_fibers` takes the difference. One
    /// counter that every spawn and every finish updated would bounce
    /// between the spawning worker and the finishing one on every fiber.
    #[inline]
    pub(crate) fn admit_fiber(&self) -> Result<(), SpawnError> {
        if self.shutdown.load(Ordering::Relaxed) {
            return Err(SpawnError::Shutdown);
        }
        if let Some(error) = self.stacks.cannot_grow() {
            if self.stack_stats().cached == 0 {
                return Err(SpawnError::OutOfStacks { error });
            }
        }
        if !self.is_limited() {
            return Ok(());
        }
        let live = self.live.fetch_add(1, Ordering::Relaxed);
        if live >= self.fiber_limit {
            self.live.fetch_sub(1, Ordering::Relaxed);
            return Err(SpawnError::Limit {
                limit: self.fiber_limit,
                kind: self.limit_kind,
            });
        }
        Ok(())
    }

    /// Whether the live-fiber count is checked against a limit.
    #[inline]
    fn is_limited(&self) -> bool {
        self.fiber_limit != usize::MAX
    }

    /// Counts a finished fiber, off the workers (a worker counts its own
    /// with `count_finished`).
    pub(crate) fn fiber_finished(&self) {
        if self.is_limited() {
            let previous = self.live.fetch_sub(1, Ordering::Relaxed);
            debug_assert!(previous > 0, "live fiber count underflow");
        } else {
            // Release: see `live_fibers`.
            self.finished_elsewhere.fetch_add(1, Ordering::Release);
        }
    }

    /// Counts a fiber finished on the worker whose slot is `index` (called
    /// by that worker only).
    #[inline]
    fn count_finished(&self, index: usize) {
        if self.is_limited() {
            self.fiber_finished();
        } else {
            let finished = &self.remotes[index].finished;
            // Release: see `live_fibers`. The owner alone writes it.
            finished.store(finished.load(Ordering::Relaxed) + 1, Ordering::Release);
        }
    }

    /// Counts a panic of user code caught outside a fiber's function.
    pub(crate) fn count_caught_panic(&self) {
        self.caught_panics.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a fiber that never ran for want of a stack; returns the count
    /// so far.
    pub(crate) fn count_fiber_without_stack(&self) -> u64 {
        self.fibers_without_stack.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Counts a fiber frozen on a worker; returns the count so far.
    pub(crate) fn count_frozen(&self) -> u64 {
        self.frozen_fibers.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Fibers spawned and not yet finished.
    ///
    /// Without a limit, the spawns counted less the finishes counted. The
    /// finishes are read first, with Acquire, pairing with the Release of
    /// each count: a finish read implies its fiber's spawn, which was
    /// counted before the fiber was queued, is read after it. So the
    /// figure never leaves out a fiber that was live all through the call
    /// (it may count one that finished meanwhile): a zero means every
    /// fiber spawned had finished. Every slot is read, used or not: a
    /// spare slot's first use is ordered with nothing this reads.
    pub(crate) fn live_fibers(&self) -> usize {
        if self.is_limited() {
            return self.live.load(Ordering::Relaxed);
        }
        let remotes = &self.remotes;
        let finished = self.finished_elsewhere.load(Ordering::Acquire)
            + remotes
                .iter()
                .map(|r| r.finished.load(Ordering::Acquire))
                .sum::<u64>();
        let spawned = self.external_spawns.load(Ordering::Relaxed)
            + remotes
                .iter()
                .map(|r| r.counters.spawned.load(Ordering::Relaxed))
                .sum::<u64>();
        spawned.saturating_sub(finished) as usize
    }

    /// Queues a fiber that just became SCHEDULED on its runtime: into the
    /// calling worker's next slot if the caller is a worker of that runtime,
    /// else into the injector (waking a worker).
    pub(crate) fn schedule(fiber: Arc<FiberInner>) {
        Shared::schedule_counted(fiber, false);
    }

    /// `schedule` for a fiber just spawned: also counts (and traces) the
    /// spawn, with the same one look-up of the calling worker.
    pub(crate) fn schedule_spawned(fiber: Arc<FiberInner>) {
        Shared::schedule_counted(fiber, true);
    }

    fn schedule_counted(fiber: Arc<FiberInner>, spawned: bool) {
        let runtime = Arc::as_ptr(&fiber.shared);
        let id = fiber.id.as_u64();
        // On a worker of this runtime, the worker's own `Arc<Shared>` keeps
        // the runtime alive: no reference count is touched.
        let fiber = worker::with_current(runtime, |worker| match worker {
            Some(worker) => {
                if spawned {
                    worker.count_spawn(id);
                    worker.schedule_spawned(fiber);
                } else {
                    worker.schedule_local(fiber);
                }
                None
            }
            None => Some(fiber),
        });
        if let Some(fiber) = fiber {
            Shared::schedule_foreign(fiber, spawned);
        }
    }

    /// `schedule_counted` from a thread that is not one of the runtime's
    /// workers: into the injector. Out of line, so that the workers' path
    /// above stays small.
    #[inline(never)]
    fn schedule_foreign(fiber: Arc<FiberInner>, spawned: bool) {
        if spawned {
            fiber.shared.external_spawns.fetch_add(1, Ordering::Relaxed);
        }
        // Hold the runtime while we push and notify (a runtime shutting
        // down could otherwise run the fiber to completion and go away
        // between the two).
        let shared = fiber.shared.clone();
        shared.injector.push(fiber);
        shared.notify_one();
        if shared.is_shutdown() {
            // No worker is left to notify: the shutdown pass runs it.
            shared.wake_cancel_pass();
        }
    }

    /// A finished fiber record to reuse for a spawn, if the calling thread
    /// is a worker of this runtime and it, or the runtime's pool, has one.
    pub(crate) fn take_record(&self) -> Option<Arc<FiberInner>> {
        worker::with_current(self, |worker| worker.and_then(|w| w.take_record()))
    }

    /// Whether the calling thread is a worker of this runtime with room to
    /// keep a finished record, in its cache or in the runtime's pool.
    pub(crate) fn has_record_room(&self) -> bool {
        worker::with_current(self, |worker| worker.is_some_and(|w| w.has_record_room()))
    }

    /// Keeps an emptied, unique fiber record for reuse, on the calling
    /// worker if it is one of the record's runtime; else frees it.
    pub(crate) fn keep_record(fiber: Arc<FiberInner>) {
        let runtime = Arc::as_ptr(&fiber.shared);
        let unkept = worker::with_current(runtime, |worker| match worker {
            Some(worker) => {
                worker.keep_record(fiber);
                None
            }
            None => Some(fiber),
        });
        drop(unkept);
    }

    /// Wakes a sleeping worker if no worker is searching (see `idle.rs`).
    pub(crate) fn notify_one(&self) {
        self.notify_one_reported();
    }

    /// `notify_one`, telling whether a sleeper was woken.
    pub(crate) fn notify_one_reported(&self) -> bool {
        match self.idle.worker_to_notify() {
            Some(index) => {
                self.remotes[index].unparker.unpark();
                true
            }
            None => false,
        }
    }

    /// Whether the calling thread is one of this runtime's workers.
    pub(crate) fn is_own_worker_thread(&self) -> bool {
        worker::with_current(self, |worker| worker.is_some())
    }

    /// The configured worker count (N).
    pub(crate) fn num_workers(&self) -> usize {
        self.num_workers
    }

    /// The slots that have ever had a thread: the configured workers, and
    /// the spare slots used so far.
    fn used_remotes(&self) -> &[CachePadded<Remote>] {
        // Relaxed: see `slot_bound`.
        &self.remotes[..self.slot_bound.load(Ordering::Relaxed)]
    }

    /// Counts spare slot `slot` among the used ones (the monitor, as it
    /// starts a spare there).
    fn use_slot(&self, slot: usize) {
        self.slot_bound.fetch_max(slot + 1, Ordering::Relaxed);
    }

    /// Whether any queue holds a fiber (the last searcher's re-check).
    /// Next slots are not looked at: only a worker fills its own, while it
    /// is awake, and it empties it before it sleeps.
    pub(crate) fn has_pending_work(&self) -> bool {
        !self.injector.is_empty()
            || !self.backlog.is_empty_to_a_sleeper()
            || self.used_remotes().iter().any(|r| !r.stealer.is_empty())
    }

    /// Whether the injector and the spawn backlog are both empty (a hint:
    /// either may change at once).
    pub(crate) fn globals_are_empty(&self) -> bool {
        self.injector.is_empty() && self.backlog.is_empty()
    }

    /// The blocking pool, started on first use.
    pub(crate) fn blocking_pool(&self) -> &Arc<crate::thread_pool::Pool> {
        self.blocking.get_or_init(|| {
            let config = &self.blocking_config;
            Arc::new(crate::thread_pool::Pool::new(
                config.max_threads,
                config.keep_alive,
                config.thread_name.clone(),
            ))
        })
    }

    /// `(alive, peak)` blocking-pool threads (zeros before first use).
    pub(crate) fn blocking_threads(&self) -> (usize, usize) {
        self.blocking.get().map_or((0, 0), |pool| pool.threads())
    }

    /// A snapshot of every counter (`metrics.rs`).
    pub(crate) fn metrics(&self) -> crate::metrics::Metrics {
        let workers: Vec<_> = self
            .used_remotes()
            .iter()
            .map(|r| {
                let mut snapshot = r.counters.snapshot();
                snapshot.handoffs = r.handoff.handoffs();
                snapshot
            })
            .collect();
        let spawned_total = workers.iter().map(|w| w.spawned).sum::<u64>()
            + self.external_spawns.load(Ordering::Relaxed);
        let spares = self.spares.counts();
        crate::metrics::Metrics {
            workers,
            spawned_total,
            live_fibers: self.live_fibers(),
            caught_panics: self.caught_panics.load(Ordering::Relaxed),
            fibers_without_stack: self.fibers_without_stack.load(Ordering::Relaxed),
            frozen_fibers: self.frozen_fibers.load(Ordering::Relaxed),
            stacks: self.stack_stats(),
            mappings: crate::sys::memory::map_count(),
            blocking_threads: self.blocking_threads().0,
            timers_pending: self.pending_timers(),
            handoffs: spares.episodes,
            blocked_workers: spares.stuck,
            spare_workers: spares.active,
            peak_spare_workers: spares.peak,
            io: self.reactor.metrics(),
        }
    }

    /// Timers pending on all workers.
    pub(crate) fn pending_timers(&self) -> usize {
        self.used_remotes().iter().map(|r| r.timers.len()).sum()
    }

    /// Stack pool counters, with the workers' caches.
    pub(crate) fn stack_stats(&self) -> StackStats {
        let cached = self
            .used_remotes()
            .iter()
            .map(|r| r.cached_stacks.load(Ordering::Relaxed))
            .sum();
        self.stacks.stats(cached)
    }
}
