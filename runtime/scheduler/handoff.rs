//! Spare workers: how a stuck worker's queue is handed to another thread.
//!
//! # The problem
//! A fiber that makes a raw blocking system call (`usleep`, a `read` on a
//! pipe, `getaddrinfo`) or computes for a long time without yielding holds
//! its worker thread. Fibers queued behind it on that worker wait, and if
//! every worker is held so, the whole runtime stops (this is what tokio and
//! `may` do: 1,000 fibers each making a 10 ms call take 5 s on 2 workers).
//!
//! # What we do (Go's `handoffp`, adapted)
//! The monitor (`monitor.rs`) declares a worker **stuck** when its tick
//! counter has not moved for the hand-off threshold while fibers wait that
//! no awake worker will take. It then starts a **spare worker**: a thread
//! from a pool of spare threads that takes one of the spare *slots* (a
//! `Remote` with its own deque, next slot and timer queue, beyond the N
//! configured ones) and runs the ordinary worker loop on it. The spare
//! steals the stuck worker's queued fibers (deques and next slots are
//! stealable by design) and runs them.
//!
//! Go moves the stuck thread's P (its run queue) to another thread. We
//! cannot: a raw call gives us no hook at its start and end, so the stuck
//! fiber may return at any moment and push to its worker's deque, whose
//! owner end is single-threaded. Taking the deque away would need a lock
//! or a read-modify-write on every push. So the stuck worker keeps its slot,
//! and the spare gets a fresh one and steals from it. What the stuck
//! worker's slot holds that thieves cannot take is its timers: the monitor
//! fires those for it while it is stuck (`monitor.rs`).
//!
//! # Keeping the count of running workers at N
//! The rule, checked by every spare at each scheduling decision: **there are
//! no more spares than stuck workers** (`spares_active <= stuck`). When a
//! stuck fiber returns, its worker clears its stuck mark (`end_episode`),
//! the rule breaks, and the next spare to make a scheduling decision
//! retires: its cached stacks go to the pool, its thread back to the spare
//! pool, and its queued fibers stay in its slot's deque, where any worker
//! steals them (the next spare to take the slot owns them again). A spare that
//! finds no work retires too (spares never sleep as searchers). So after an
//! episode the active workers return to the configured count, and at any
//! time at most N workers are not stuck: blocked calls add threads, never
//! parallelism beyond N.
//!
//! A spare's slot may still hold timers when it retires (fibers that slept
//! while running on it). The monitor fires the timers of every slot without
//! an awake owner, so none is lost; a later spare that takes the slot fires
//! them itself.
//!
//! # Visibility
//! Every episode is counted (`Metrics::handoffs`, per worker and in
//! total; `Metrics::blocked_workers` now), traced, and reported once, when
//! it ends, to the runtime's hand-off sink: a [`HandoffReport`] naming the
//! fiber that held the worker and for how long. The default sink prints it
//! on stderr; `Builder::on_handoff` replaces it.
//!
//! # Costs
//! Nothing on the hot path but one relaxed load of the stuck mark after
//! each slice, on the worker's own cache line. Spare slots cost ~1 KiB each (a deque buffer),
//! allocated at start for `Builder::max_spare_workers` (default 256).

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::blocking::pool::Pool;
use crate::fiber::stack::StackCache;
use crate::fiber::FiberInner;
use crate::lock::MutexExt;

/// Default hand-off threshold for a worker blocked in the kernel.
///
/// Go's sysmon takes a P from a thread in a system call on its first check
/// (20 µs after the call began at best). We tell a blocked worker from a
/// computing one by its thread's CPU clock (`monitor.rs`), so a short
/// threshold cannot take a worker from a fiber that is merely busy. Measured
/// with `examples/blocking.rs` (1,000 fibers × `usleep(10 ms)`, 2 workers):
/// 50 µs gives the wall times in the README; each step of the chain of
/// hand-offs costs about one threshold.
pub const DEFAULT_HANDOFF_BLOCKED: Duration = Duration::from_micros(20);

/// Default hand-off threshold for a worker whose fiber is computing.
///
/// Go preempts a goroutine that has run for 10 ms; we cannot preempt, so
/// after 10 ms of CPU in one fiber with others waiting we hand the others
/// to a spare instead. Longer than any reasonable slice, so a runtime doing
/// ordinary work never hands off; short enough that fibers behind a CPU
/// loop see a hiccup, not a stall.
pub const DEFAULT_HANDOFF_RUNNING: Duration = Duration::from_millis(10);

/// Default cap on spare worker threads: 256, the number of threads Go
/// started for the same 1,000 × 10 ms workload here (see issue 5).
pub const DEFAULT_MAX_SPARE_WORKERS: usize = 512;

/// One hand-off episode, reported when it ends.
#[derive(Clone, Debug)]
pub struct HandoffReport {
    /// Index of the worker that was stuck (`0..workers` for the configured
    /// workers, above that for spare workers).
    pub worker: usize,
    /// The fiber that held it.
    pub fiber: crate::FiberId,
    /// That fiber's name, if it has one.
    pub fiber_name: Option<String>,
    /// How long the worker was held, from when its progress stopped (as
    /// seen by the monitor, so to within one check period) to when the
    /// fiber gave it back.
    pub held_for: Duration,
}

impl fmt::Display for HandoffReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "spindle: fiber {}", self.fiber)?;
        if let Some(name) = &self.fiber_name {
            write!(f, " ('{name}')")?;
        }
        write!(
            f,
            " held worker {} for {:.1} ms without yielding (a blocking call or a long computation); \
             its queued fibers were handed to a spare worker. Use spindle::blocking for blocking calls.",
            self.worker,
            self.held_for.as_secs_f64() * 1e3
        )
    }
}

/// Where hand-off reports go.
pub(crate) type HandoffSink = Arc<dyn Fn(&HandoffReport) + Send + Sync>;

/// The default sink: one line on stderr.
pub(crate) fn stderr_sink() -> HandoffSink {
    Arc::new(|report: &HandoffReport| eprintln!("{report}"))
}

/// The hand-off settings (from the Builder).
#[derive(Clone)]
pub(crate) struct HandoffConfig {
    pub(crate) blocked_after: Duration,
    pub(crate) running_after: Duration,
    pub(crate) max_spares: usize,
    pub(crate) sink: HandoffSink,
}

/// A spare slot's owner-side state while no thread holds it.
pub(crate) struct SpareSlot {
    pub(crate) local: crossbeam_deque::Worker<Arc<FiberInner>>,
    /// Unused by spares (they retire instead of sleeping); the worker loop
    /// wants one.
    pub(crate) parker: super::park::Parker,
    pub(crate) stacks: StackCache,
}

/// The runtime's spare workers.
pub(crate) struct Spares {
    /// Free spare slot indices, with each slot's owner-side state. Taken by
    /// the monitor when it starts a spare, given back by a retiring spare.
    free: Mutex<Vec<(usize, SpareSlot)>>,
    /// Spares running now (holding a slot). Changed by the monitor (+1) and
    /// by retiring spares (-1, by compare-and-swap against `stuck`).
    pub(crate) active: AtomicUsize,
    /// Workers (configured or spare) marked stuck now. +1 by the monitor,
    /// -1 by the worker when its fiber returns.
    pub(crate) stuck: AtomicUsize,
    /// Hand-off episodes so far.
    pub(crate) episodes: AtomicU64,
    /// The most spares active at once.
    pub(crate) peak: AtomicUsize,
    /// Threads for spare workers: reused across episodes, exiting after a
    /// keep-alive (the blocking pool's machinery, a separate instance with
    /// its own cap).
    pub(crate) pool: Arc<Pool>,
    pub(crate) config: HandoffConfig,
}

impl Spares {
    pub(crate) fn new(
        slots: Vec<(usize, SpareSlot)>,
        config: HandoffConfig,
        keep_alive: Duration,
        thread_name: String,
    ) -> Spares {
        let mut free = slots;
        // Pop from the end takes the lowest index first: episodes reuse the
        // same few slots, which keeps the scanned range short.
        free.reverse();
        Spares {
            free: Mutex::new(free),
            active: AtomicUsize::new(0),
            stuck: AtomicUsize::new(0),
            episodes: AtomicU64::new(0),
            peak: AtomicUsize::new(0),
            pool: Arc::new(Pool::with_prestart(
                config.max_spares,
                keep_alive,
                thread_name,
                true,
            )),
            config,
        }
    }

    /// Takes a free spare slot, if any is left under the cap.
    pub(crate) fn take_slot(&self) -> Option<(usize, SpareSlot)> {
        self.free.lock_unpoisoned().pop()
    }

    /// Gives a slot back (a retiring spare, or a spare that failed to
    /// start).
    pub(crate) fn return_slot(&self, index: usize, slot: SpareSlot) {
        self.free.lock_unpoisoned().push((index, slot));
    }

    /// Whether a spare should retire now: more spares run than workers are
    /// stuck. If so, claims the retirement (decrements `active`) so that
    /// only one spare retires per surplus.
    pub(crate) fn claim_retirement(&self) -> bool {
        // Relaxed: counts re-checked by the compare-and-swap; a spare that
        // misses a change retires (or not) at its next decision.
        let mut active = self.active.load(Ordering::Relaxed);
        loop {
            if active <= self.stuck.load(Ordering::Relaxed) {
                return false;
            }
            match self.active.compare_exchange_weak(
                active,
                active - 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => active = now,
            }
        }
    }
}
