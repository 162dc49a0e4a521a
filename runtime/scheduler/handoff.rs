//! Spare workers: how a stuck worker's queue is handed to another thread.
//!
//! # The problem
//! A fiber that makes a raw blocking system call (`usleep`, a `read` on a
//! pipe, `getaddrinfo`) or computes for a long time without yielding holds
//! its worker thread. Fibers queued behind it on that worker wait, and if
//! every worker is held so, the whole runtime stops (as it does in tokio
//! and `may`; `docs/decisions.md`, "DEFAULT_HANDOFF_BLOCKED", has the
//! figures).
//!
//! # What we do (Go's `handoffp`, adapted)
//! The monitor (`monitor.rs`) declares a worker **stuck** when its tick
//! counter has not moved for the hand-off threshold while fibers wait that
//! no awake worker will take. It then starts a **spare worker**: a thread
//! from a pool of spare threads that takes one of the spare *slots* (a
//! `Remote` with its own deque, next slot and timer queue, beyond the N
//! configured ones) and runs the ordinary worker loop on it. The spare
//! steals the stuck worker's queued fibers (deques and next slots are
//! stealable by design) and runs them. Each slot's bookkeeping for this is
//! a [`HandoffState`] in its `Remote`, which the monitor and the slot's
//! thread write only through its methods; [`hand_off`] is the monitor's
//! move.
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
//! no more spares than stuck workers** (`Spares::claim_retirement`). When a
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
//! fiber that held the worker, for how long, and what its thread was doing
//! when the monitor handed it off ([`HeldState`]: blocked in a system
//! call, computing, waiting uninterruptibly in the kernel, or preempted),
//! so that only a blocked call is told to use `spindle::blocking`. The
//! default sink prints it on stderr; `Builder::on_handoff` replaces it.
//!
//! # Costs
//! Nothing on the hot path but one relaxed load of the stuck mark after
//! each slice, on the worker's own cache line. Each spare slot costs a
//! `Remote` and a deque buffer, made at start for every slot up to
//! `Builder::max_spare_workers` (default [`DEFAULT_MAX_SPARE_WORKERS`]).

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::worker::Worker;
use super::{OwnerSide, Shared};
use crate::lock::MutexExt;
use crate::thread_pool::Pool;

/// `HandoffState::cpu_clock` before a thread has set it.
const NO_CLOCK: i32 = i32::MIN;

/// `HandoffState::stuck_cpu` when the thread's CPU time is unknown.
const NO_CPU_TIME: u64 = u64::MAX;

/// Default hand-off threshold for a worker blocked in the kernel.
///
/// Go's sysmon takes a P from a thread in a system call on its first check.
/// We tell a blocked worker from a computing one by its thread's CPU clock
/// (`monitor.rs`), so a short threshold cannot take a worker from a fiber
/// that is merely busy. Measured: each link of a chain of blocking calls
/// costs about one threshold, so a short one keeps `examples/blocking` near
/// Go's time (`docs/decisions.md`).
pub const DEFAULT_HANDOFF_BLOCKED: Duration = Duration::from_micros(20);

/// Default hand-off threshold for a worker whose fiber is computing.
///
/// Go's preemption slice: Go preempts a goroutine that has run this long;
/// we cannot preempt, so after this much CPU in one fiber with others
/// waiting we hand the others to a spare instead. Longer than any
/// reasonable slice, so a runtime doing ordinary work never hands off;
/// short enough that fibers behind a CPU loop see a hiccup, not a stall.
pub const DEFAULT_HANDOFF_RUNNING: Duration = Duration::from_millis(10);

/// Default cap on spare worker threads. Above the threads Go starts for
/// `examples/blocking`'s workload, so the cap does not bind there
/// (`docs/decisions.md`); otherwise a guess.
pub const DEFAULT_MAX_SPARE_WORKERS: usize = 512;

/// What a held worker's thread was doing while it held the worker, as the
/// kernel tells it: its `/proc` state letter (`S`, `D`, `R`) when the
/// monitor handed its queue to a spare, and its CPU time over the episode.
/// See [`HandoffReport::state`].
///
/// # Examples
///
/// ```
/// use std::sync::{Arc, Mutex};
///
/// use spindle::HeldState;
///
/// let states = Arc::new(Mutex::new(Vec::new()));
/// let sink = states.clone();
/// let rt = spindle::Builder::new()
///     .workers(1)
///     .on_handoff(move |report| sink.lock().unwrap().push(report.state))
///     .build()
///     .unwrap();
/// rt.block_on(|| {
///     let (ran, has_run) = std::sync::mpsc::channel();
///     // Queued behind the blocked fiber: only a hand-off to a spare
///     // worker can run it.
///     let behind = spindle::spawn(move || ran.send(()).unwrap());
///     has_run.recv().unwrap(); // a raw blocking call (a std channel)
///     behind.join().unwrap();
/// });
/// rt.shutdown(); // joins the worker, which reports the episode
/// assert!(states.lock().unwrap().contains(&HeldState::Blocked));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HeldState {
    /// Blocked in a system call (state `S`, its CPU clock standing still):
    /// a sleep, a read from a pipe or a blocking socket, a wait on a std
    /// lock or channel. The case `spindle::blocking` is for.
    Blocked,
    /// Computing without yielding: on a core for at least half the time it
    /// held the worker (whatever the monitor found when it handed it off).
    Computing,
    /// Waiting in the kernel uninterruptibly (state `D`): disk I/O, or page
    /// faults and memory-map calls queued on the process's address-space
    /// lock.
    Uninterruptible,
    /// Runnable without a core: it ran without yielding, but the OS kept
    /// it waiting for a core more than half the time it held the worker
    /// (the machine has more runnable threads than cores).
    Preempted,
}

impl HeldState {
    /// The code a state is stored as in `HandoffState` (never 0: none).
    fn code(self) -> u8 {
        match self {
            HeldState::Blocked => 1,
            HeldState::Computing => 2,
            HeldState::Uninterruptible => 3,
            HeldState::Preempted => 4,
        }
    }

    /// The state stored as `code`, if any.
    fn from_code(code: u8) -> Option<HeldState> {
        [
            HeldState::Blocked,
            HeldState::Computing,
            HeldState::Uninterruptible,
            HeldState::Preempted,
        ]
        .into_iter()
        .find(|state| state.code() == code)
    }

    /// Whether the thread was on a core or waiting for one (not in the
    /// kernel on its own behalf).
    pub(super) fn is_running(self) -> bool {
        matches!(self, HeldState::Computing | HeldState::Preempted)
    }

    /// The state to report for an episode that the monitor began with this
    /// finding, in which the thread ran `ran` of `held_for` (`None`: no
    /// CPU clock): on a core at least half the time is computing; a running
    /// thread that was on a core less than that was mostly preempted. A
    /// finding made at one moment of a long episode (a fiber that computed
    /// long enough to be handed off, then waited for a core) is so judged
    /// by the whole of it.
    fn over_episode(self, ran: Option<Duration>, held_for: Duration) -> HeldState {
        match ran {
            Some(ran) if ran * 2 >= held_for => HeldState::Computing,
            Some(_) if self.is_running() => HeldState::Preempted,
            _ => self,
        }
    }
}

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
    /// What the worker's thread was doing: what the monitor found when it
    /// handed the worker off (blocked in a system call, waiting
    /// uninterruptibly, or running), judged again at the episode's end by
    /// the thread's CPU time over the whole episode: on a core at least
    /// half of it is [`HeldState::Computing`]; running, but on a core less
    /// than that, is [`HeldState::Preempted`].
    pub state: HeldState,
}

impl fmt::Display for HandoffReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "spindle: fiber {}", self.fiber)?;
        if let Some(name) = &self.fiber_name {
            write!(f, " ('{name}')")?;
        }
        let (doing, advice) = match self.state {
            HeldState::Blocked => (
                "blocked in a system call",
                " Use spindle::blocking for blocking calls.",
            ),
            HeldState::Computing => (
                "computing without yielding",
                " Call spindle::yield_now now and then in long computations.",
            ),
            HeldState::Uninterruptible => (
                "waiting uninterruptibly in the kernel (disk I/O, or page faults and \
                 memory-map calls waiting for the address-space lock)",
                "",
            ),
            HeldState::Preempted => (
                "without yielding, but mostly waiting for a core (the machine has more \
                 runnable threads than cores)",
                "",
            ),
        };
        write!(
            f,
            " held worker {} for {:.1} ms, {doing}; its queued fibers were handed to a spare \
             worker.{advice}",
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

/// One worker slot's hand-off bookkeeping, in its `Remote`: what the
/// monitor reads to judge whether the slot's thread is held in one fiber,
/// and the mark it sets when it hands the slot's queue to a spare.
///
/// Written only through these methods: by the monitor (`activate`,
/// `mark_stuck`, and `deactivate` for a spare that could not start) and by
/// the slot's own thread (`take_thread`, the `in_fiber` flag around each
/// slice, `end_stuck`, `retire`). Everyone else only reads.
pub(super) struct HandoffState {
    /// Whether a thread runs this slot's loop now. Always true for the
    /// configured workers; for spare slots, set by the monitor when it
    /// starts a spare and cleared by the spare when it retires.
    active: AtomicBool,
    /// 0, or (when the monitor has declared this worker stuck) 1 + the
    /// nanoseconds since the runtime's epoch at which its progress stopped.
    /// Set by the monitor (0 → t), cleared by the owner when its fiber
    /// returns (t → 0).
    stuck_since: AtomicU64,
    /// What the thread was doing when the monitor marked it stuck
    /// (`HeldState::code`), and its CPU time (nanoseconds) when its
    /// progress stopped (`NO_CPU_TIME` if unknown). Written by the monitor
    /// before it sets `stuck_since`, read by the owner after it clears it.
    stuck_state: AtomicU8,
    stuck_cpu: AtomicU64,
    /// The CPU-time clock of the thread that owns the slot (see
    /// `sys::thread`), so the monitor can tell a blocked worker from a
    /// computing one. Set by that thread when it takes the slot.
    cpu_clock: AtomicI32,
    /// Whether the slot's thread is running fiber code now (not the
    /// scheduler's own). Written by the owner around each slice (Relaxed,
    /// in `fiber::run_slice`), and cleared around the runtime's own short
    /// locks that fiber code takes (`outside_fiber`).
    in_fiber: AtomicBool,
    /// The kernel thread id of that thread (for its `/proc` state). Set
    /// with `cpu_clock`.
    tid: AtomicI32,
    /// Times this worker was declared stuck. Written by the monitor only.
    handoffs: AtomicU64,
}

impl HandoffState {
    /// A slot's state at start: `active` for the configured workers.
    pub(super) fn new(active: bool) -> HandoffState {
        HandoffState {
            active: AtomicBool::new(active),
            stuck_since: AtomicU64::new(0),
            stuck_state: AtomicU8::new(0),
            stuck_cpu: AtomicU64::new(NO_CPU_TIME),
            cpu_clock: AtomicI32::new(NO_CLOCK),
            in_fiber: AtomicBool::new(false),
            tid: AtomicI32::new(0),
            handoffs: AtomicU64::new(0),
        }
    }

    /// The calling thread takes the slot: records its CPU clock and kernel
    /// thread id for the monitor.
    pub(super) fn take_thread(&self) {
        let clock = crate::sys::thread::current_cpu_clock().unwrap_or(NO_CLOCK);
        // Relaxed (both): hints for the monitor, which re-reads them at
        // every pass.
        self.cpu_clock.store(clock, Ordering::Relaxed);
        self.tid
            .store(crate::sys::thread::current_tid(), Ordering::Relaxed);
    }

    /// The flag `fiber::run_slice` sets while fiber code runs.
    #[inline]
    pub(super) fn in_fiber_flag(&self) -> &AtomicBool {
        &self.in_fiber
    }

    /// Runs `f`, runtime code that a fiber on this slot's thread calls and
    /// that may wait briefly for one of the runtime's own locks, with the
    /// in-fiber flag cleared meanwhile: the monitor treats such a wait as
    /// it treats the scheduler's own code, and does not hand the worker
    /// off for it. Called on the slot's own thread only.
    #[inline]
    pub(super) fn outside_fiber<R>(&self, f: impl FnOnce() -> R) -> R {
        // Relaxed (all three): a hint for the monitor, as in `run_slice`.
        let was = self.in_fiber.load(Ordering::Relaxed);
        self.in_fiber.store(false, Ordering::Relaxed);
        let result = f();
        self.in_fiber.store(was, Ordering::Relaxed);
        result
    }

    /// Whether the slot's thread runs fiber code now (a hint).
    pub(super) fn is_in_fiber(&self) -> bool {
        // Relaxed: a hint for the monitor, which re-checks what it sees.
        self.in_fiber.load(Ordering::Relaxed)
    }

    /// The CPU time the slot's thread has used, if its clock is known.
    pub(super) fn thread_cpu_time(&self) -> Option<Duration> {
        let clock = self.cpu_clock.load(Ordering::Relaxed);
        (clock != NO_CLOCK)
            .then(|| crate::sys::thread::cpu_time(clock))
            .flatten()
    }

    /// The slot's thread's kernel id (0 before any thread took the slot).
    pub(super) fn tid(&self) -> i32 {
        self.tid.load(Ordering::Relaxed)
    }

    /// Whether a thread runs the slot's loop now (a hint for the monitor's
    /// pass: Relaxed).
    pub(super) fn is_active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    /// Whether a thread still holds the slot, seen after everything a
    /// retiring spare did before giving it back (shutdown's wait).
    pub(super) fn has_thread(&self) -> bool {
        // Acquire: pairs with the Release store in `retire`, made after
        // the spare has handed its queue and stacks back.
        self.active.load(Ordering::Acquire)
    }

    /// The monitor gives the (spare) slot to a thread about to start.
    fn activate(&self) {
        // Relaxed: read by the monitor itself, and at shutdown only after
        // the monitor thread has been joined, which orders it.
        self.active.store(true, Ordering::Relaxed);
    }

    /// The monitor takes the slot back: no thread could be started for it.
    fn deactivate(&self) {
        self.active.store(false, Ordering::Relaxed);
    }

    /// A retiring spare gives the slot back, after it has handed on its
    /// queue and stacks.
    pub(super) fn retire(&self) {
        // Release: shutdown waits for this (Acquire, `has_thread`) before
        // it unwinds the fibers this spare left.
        self.active.store(false, Ordering::Release);
    }

    /// Whether the monitor has declared the slot stuck. One relaxed load
    /// on the owner's own cache line, after every slice.
    #[inline]
    pub(super) fn is_stuck(&self) -> bool {
        // Relaxed: the owner re-reads the mark with Acquire in `end_stuck`.
        self.stuck_since.load(Ordering::Relaxed) != 0
    }

    /// The monitor declares the slot stuck since `since` (its thread's CPU
    /// time then: `cpu_since`), its thread found `state`; the caller has
    /// counted the episode in `Spares` first.
    fn mark_stuck(
        &self,
        since: Instant,
        cpu_since: Option<Duration>,
        epoch: Instant,
        state: HeldState,
    ) {
        // Relaxed: written by the monitor only, read by metrics.
        self.handoffs
            .store(self.handoffs.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        // Relaxed (both): published by the Release store below.
        self.stuck_state.store(state.code(), Ordering::Relaxed);
        let cpu_since = cpu_since.map_or(NO_CPU_TIME, |cpu| cpu.as_nanos() as u64);
        self.stuck_cpu.store(cpu_since, Ordering::Relaxed);
        let stuck_at = since.saturating_duration_since(epoch).as_nanos() as u64;
        // Release: publishes the caller's increment of `Spares::stuck`
        // before the owner can see its mark and decrement it, and the state.
        self.stuck_since.store(1 + stuck_at, Ordering::Release);
    }

    /// The owner clears the stuck mark, its fiber having returned; returns
    /// the episode that ends, or `None` if the slot was not marked.
    pub(super) fn end_stuck(&self, epoch: Instant) -> Option<Episode> {
        // Acquire: pairs with the monitor's Release store, so its increment
        // of the stuck count comes before our decrement, and its stores of
        // the state and CPU time before our loads.
        let since = self.stuck_since.swap(0, Ordering::Acquire);
        if since == 0 {
            return None;
        }
        let stuck_at = Duration::from_nanos(since - 1);
        let state = HeldState::from_code(self.stuck_state.load(Ordering::Relaxed))
            .expect("a stuck mark is set with its state");
        let ran = match self.stuck_cpu.load(Ordering::Relaxed) {
            NO_CPU_TIME => None,
            cpu_since => self
                .thread_cpu_time()
                .map(|cpu| cpu.saturating_sub(Duration::from_nanos(cpu_since))),
        };
        let held_for = epoch.elapsed().saturating_sub(stuck_at);
        Some(Episode {
            stuck_at,
            held_for,
            state: state.over_episode(ran, held_for),
        })
    }

    /// Times the slot was declared stuck.
    pub(super) fn handoffs(&self) -> u64 {
        self.handoffs.load(Ordering::Relaxed)
    }
}

/// A hand-off episode as its worker ends it (`HandoffState::end_stuck`).
pub(super) struct Episode {
    /// When (since the runtime's epoch) the worker stopped making progress.
    pub(super) stuck_at: Duration,
    /// From then until now.
    pub(super) held_for: Duration,
    /// What its thread did meanwhile ([`HeldState::over_episode`]).
    pub(super) state: HeldState,
}

/// The hand-off settings (from the Builder).
#[derive(Clone)]
pub(crate) struct HandoffConfig {
    pub(crate) blocked_after: Duration,
    pub(crate) running_after: Duration,
    pub(crate) max_spares: usize,
    pub(crate) sink: HandoffSink,
}

/// The runtime's spare workers.
pub(super) struct Spares {
    /// Free spare slot indices, with each slot's owner-side state. Taken by
    /// the monitor when it starts a spare, given back by a retiring spare.
    free: Mutex<Vec<(usize, OwnerSide)>>,
    /// Spares running now (holding a slot). Changed by the monitor (+1) and
    /// by retiring spares (-1, by compare-and-swap against `stuck`).
    active: AtomicUsize,
    /// Workers (configured or spare) marked stuck now. +1 by the monitor,
    /// -1 by the worker when its fiber returns.
    stuck: AtomicUsize,
    /// Hand-off episodes so far.
    episodes: AtomicU64,
    /// The most spares active at once.
    peak: AtomicUsize,
    /// Threads for spare workers: reused across episodes, exiting after a
    /// keep-alive (a `thread_pool::Pool` of its own, made `with_prestart`,
    /// capped at `max_spares`).
    pool: Arc<Pool>,
    config: HandoffConfig,
}

/// The spare workers' counts at one moment, for `Metrics`.
pub(super) struct SpareCounts {
    /// Hand-off episodes so far.
    pub(super) episodes: u64,
    /// Workers stuck now.
    pub(super) stuck: usize,
    /// Spares running now.
    pub(super) active: usize,
    /// The most spares running at once so far.
    pub(super) peak: usize,
}

impl Spares {
    pub(super) fn new(
        slots: Vec<(usize, OwnerSide)>,
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

    /// The hand-off settings.
    pub(super) fn config(&self) -> &HandoffConfig {
        &self.config
    }

    /// Takes a free spare slot, if any is left under the cap.
    fn take_slot(&self) -> Option<(usize, OwnerSide)> {
        self.free.lock_unpoisoned().pop()
    }

    /// Gives a slot back (a retiring spare, or a spare that failed to
    /// start).
    pub(super) fn return_slot(&self, index: usize, slot: OwnerSide) {
        self.free.lock_unpoisoned().push((index, slot));
    }

    /// Whether a spare should retire now: more spares run than workers are
    /// stuck. If so, claims the retirement (decrements `active`) so that
    /// only one spare retires per surplus.
    pub(super) fn claim_retirement(&self) -> bool {
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

    /// A spare stops without a claimed retirement (shutdown, or it found
    /// nothing to do).
    pub(super) fn spare_stopped(&self) {
        // Relaxed: a count; see `claim_retirement`.
        self.active.fetch_sub(1, Ordering::Relaxed);
    }

    /// An episode ended: hands its report to the sink (a panic in it is
    /// caught and printed), then drops the stuck count. Called by the
    /// worker that was stuck, once it has cleared its mark.
    pub(super) fn episode_ended(&self, report: &HandoffReport) {
        let sink = &self.config.sink;
        if crate::fiber::fault::catch(|| sink(report)) == crate::fiber::fault::Caught::Panicked {
            crate::fiber::fault::write_line(format_args!(
                "spindle: the hand-off sink panicked on: {report}"
            ));
        }
        // Last: once the count drops, `Metrics::blocked_workers` says the
        // episode is over, and its report has been made.
        // Relaxed: a count; see `claim_retirement`.
        let previous = self.stuck.fetch_sub(1, Ordering::Relaxed);
        debug_assert!(previous > 0, "stuck worker count underflow");
    }

    /// Stops the spare threads' pool (shutdown).
    pub(super) fn shutdown(&self) {
        self.pool.shutdown();
    }

    /// The counts now (each exact, read a moment apart).
    pub(super) fn counts(&self) -> SpareCounts {
        SpareCounts {
            episodes: self.episodes.load(Ordering::Relaxed),
            stuck: self.stuck.load(Ordering::Relaxed),
            active: self.active.load(Ordering::Relaxed),
            peak: self.peak.load(Ordering::Relaxed),
        }
    }
}

/// Declares worker `index` stuck (held since `since`, when its thread had
/// run `cpu_since`; found `state`) and starts a spare worker to take its
/// queue. Does nothing if
/// every spare slot is in use. Called by the monitor.
pub(super) fn hand_off(
    shared: &Arc<Shared>,
    index: usize,
    since: Instant,
    cpu_since: Option<Duration>,
    state: HeldState,
) {
    let spares = &shared.spares;
    let Some((slot, spare)) = spares.take_slot() else {
        return; // at the cap: the stuck workers' fibers wait
    };
    // Relaxed counts; `mark_stuck`'s Release store publishes the increment
    // of `stuck` before the worker can see its mark and decrement it.
    spares.stuck.fetch_add(1, Ordering::Relaxed);
    spares.episodes.fetch_add(1, Ordering::Relaxed);
    shared.remotes[index]
        .handoff
        .mark_stuck(since, cpu_since, shared.epoch, state);

    let active = spares.active.fetch_add(1, Ordering::Relaxed) + 1;
    spares.peak.fetch_max(active, Ordering::Relaxed);
    shared.remotes[slot].handoff.activate();
    shared.use_slot(slot);

    // The slot travels to the pool thread through a shared cell, so that if
    // no thread can be started we can take it back.
    let handover = Arc::new(Mutex::new(Some((slot, spare))));
    let job_handover = handover.clone();
    let job_shared = shared.clone();
    let job = Box::new(move || {
        let taken = job_handover.lock_unpoisoned().take();
        if let Some((slot, spare)) = taken {
            Worker::new(slot, job_shared, spare).run();
        }
    });
    if spares.pool.submit(job).is_some() {
        // The OS refused a thread and none exists to take the job.
        let taken = handover.lock_unpoisoned().take();
        if let Some((slot, spare)) = taken {
            spares.active.fetch_sub(1, Ordering::Relaxed);
            shared.remotes[slot].handoff.deactivate();
            spares.return_slot(slot, spare);
        }
    }
}
