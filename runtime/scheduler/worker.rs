//! The worker loop: find a fiber, run a slice of it, repeat; sleep when
//! there is nothing to find.
//!
//! A [`Worker`] lives on its OS thread's stack for the thread's lifetime and
//! is reachable from fiber code on that thread through a thread-local
//! pointer ([`with_current`]), so that `spawn` and `unpark` inside a fiber can
//! push to this worker's queue without any lock. Everything in it is owned by
//! the worker thread; what other threads may touch lives in its [`Remote`]
//! (`scheduler/mod.rs`).
//!
//! A scheduling decision goes through named phases, as in tokio's
//! `Context::run` (`run_configured`, `run_spare`):
//! 1. **maintenance** (`maintenance`): count the tick, fire this worker's
//!    due timers, every `io::POLL_INTERVAL`th tick poll for I/O readiness
//!    without blocking (so sockets are served while every worker is busy),
//!    and every [`INJECTOR_INTERVAL`]th tick take from the global injector
//!    and spawn backlog first, so that fibers spawned from outside the runtime, or spawned
//!    past a worker's [`SPAWN_BACKLOG`], cannot starve;
//! 2. **next fiber** (`next_fiber`): its next slot (at most
//!    `MAX_NEXT_STREAK` times in a row), its own deque, the injector, the
//!    spawn backlog;
//! 3. **search** (`search`), as a *searcher*: batches stolen from other
//!    workers' deques in random order and from the global queues, over
//!    [`STEAL_ROUNDS`] rounds, the last of which also takes other workers'
//!    next slots;
//! 4. **park** (`park_worker`), when nothing was found, following the
//!    protocol in `scheduler/mod.rs`: in the I/O poller (`epoll_wait`) if
//!    no other worker is in it, else on its parker (`io/reactor.rs`).
//!
//! A fiber found runs slices (`run_fiber`) until it yields to others,
//! parks or finishes; after every slice one hook (`after_slice`) records
//! the slice in the trace and ends a hand-off episode if the monitor
//! marked this worker stuck meanwhile.
//!
//! A worker's [`Role`] says which loop it runs: a configured worker parks
//! when it finds nothing; a spare (`handoff.rs`) retires instead, and as
//! soon as it is surplus.

use std::cell::{Cell, RefCell};
use std::ptr::NonNull;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::park::Parker;
use super::queue::{steal_settled, MAX_NEXT_STREAK};
use super::{OwnerSide, Remote, Shared};
use crate::fiber::context::Resume;
use crate::fiber::record::RecordCache;
use crate::fiber::stack::StackCache;
use crate::fiber::{recycle, run_slice, FiberInner, Outcome};
use crate::lock::MutexExt;
use crate::metrics::bump;
use crate::trace::{Buffer, Event};

/// Every this many ticks a worker takes from the global injector before its
/// own queue. Go's value: a prime, so it does not fall into step with
/// periodic workloads.
const INJECTOR_INTERVAL: u64 = 61;

/// Fibers a worker's deque may hold before its fibers' spawns overflow to
/// the runtime's global spawn backlog (`Shared::backlog`), as Go's local
/// run queue overflows to its global one. The newest spawn still goes to
/// the next slot; what overflows is the fiber it displaces. Workers take
/// from the backlog after the injector.
///
/// Measured: it keeps a million sleepers from all taking stacks before any
/// finishes, at a small price on a burst of spawns (`docs/decisions.md`).
/// A worker finishes the woken fibers in its deque (which hold stacks)
/// before it takes more unstarted ones (which take stacks), every
/// [`INJECTOR_INTERVAL`]th tick excepted.
///
/// The overflow moves the older half of the deque with the displaced
/// fiber, in one batch (`Worker::overflow`), as Go's `runqputslow` does:
/// one lock of the backlog per half a deque of spawns.
///
/// Rejected:
/// - Sending the new fiber itself to the global queue once the deque is
///   full: a fiber that spawns a child and waits for it then waits behind
///   the whole backlog.
/// - The overflow in the injector itself: the monitor puts the fibers
///   whose timers it fires for held workers there, and they would queue
///   behind the backlog.
pub(super) const SPAWN_BACKLOG: usize = 256;

/// Rounds over all victims a searcher makes before it parks. Go makes 4;
/// ours are cheaper to give up because a spawn that arrives later wakes a
/// sleeper anyway. A guess pending measurement.
const STEAL_ROUNDS: usize = 3;

/// What a worker thread is to the runtime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// One of the N configured workers: it searches and sleeps by the
    /// protocol of `idle.rs`, and lives as long as the runtime.
    Configured,
    /// A spare worker on a spare slot (`handoff.rs`): it retires instead of
    /// sleeping, and as soon as it is surplus; it does not take part in the
    /// searching/sleeping protocol.
    Spare,
}

/// One worker thread's scheduler state.
pub(super) struct Worker {
    index: usize,
    role: Role,
    shared: Arc<Shared>,
    /// This worker's `Remote`, `shared.remotes[index]`, found once: the
    /// loop reaches it a dozen times per scheduling decision, and the
    /// index into the boxed slice cost more than the uses. Valid while
    /// `shared` is (the slice is never moved or resized).
    remote: NonNull<Remote>,
    /// The owner's end of this worker's deque (thieves hold the stealer).
    local: crossbeam_deque::Worker<Arc<FiberInner>>,
    parker: Parker,

    // --- Owner thread only (in Cells: fiber code on this thread reaches the
    // worker through a shared reference).
    /// Scheduling decisions made; drives the injector check.
    tick: Cell<u64>,
    /// Fibers run in a row from the next slot.
    next_streak: Cell<u32>,
    /// Whether this worker counts as searching in `Idle`.
    searching: Cell<bool>,
    /// xorshift state for picking steal victims.
    rng: Cell<u64>,
    /// Free stacks; borrowed by the loop while a fiber runs, never by fiber
    /// code.
    stacks: RefCell<StackCache>,
    /// The fibers on their way from the deque to the spawn backlog
    /// (`overflow`), kept for its buffer; empty between calls.
    overflow: RefCell<Vec<Arc<FiberInner>>>,
    /// Finished fiber records for this worker's spawns; borrowed briefly,
    /// by spawns in fiber code and by last drops, never while user code
    /// runs (`fiber/record.rs`).
    records: RefCell<RecordCache>,
    /// The timeline trace buffer (`trace.rs`); `enabled` is the one branch
    /// a recording site costs when tracing is off.
    trace: RefCell<Buffer>,
}

thread_local! {
    /// The worker running on this thread, while its loop runs.
    static WORKER: Cell<*const Worker> = const { Cell::new(std::ptr::null()) };
}

/// Calls `f` with this thread's worker if it belongs to `shared`'s runtime.
///
/// Never inlined: fiber code calls it, and fibers migrate between threads
/// at suspensions (see `fiber/context.rs`).
#[inline(never)]
pub(super) fn with_current<R>(shared: *const Shared, f: impl FnOnce(Option<&Worker>) -> R) -> R {
    let worker = WORKER.with(Cell::get);
    // SAFETY: the pointer is set by `run` to a Worker that lives on this
    // thread's stack until `run` clears it again.
    let worker = unsafe { worker.as_ref() };
    f(worker.filter(|w| std::ptr::eq(Arc::as_ptr(&w.shared), shared)))
}

/// Whether the running fiber of `shared`'s runtime, calling `yield_now`
/// on this thread, may carry on at once instead of switching to its
/// worker: nothing else is runnable here, the tick is counted and I/O
/// polled as the worker's loop does for a yield (`carry_on_after_yield`),
/// the monitor has not marked the worker stuck, and the trace (which
/// records every slice) is off. Never inlined: fiber code calls it (see
/// `with_current`).
#[inline(never)]
pub(crate) fn yield_in_place(shared: *const Shared) -> bool {
    with_current(shared, |worker| {
        worker.is_some_and(|worker| {
            worker.trace_start().is_none()
                && !worker.remote().handoff.is_stuck()
                && worker.carry_on_after_yield()
        })
    })
}

// `remote`, a pointer, is the one field that is not `Send` by itself. It
// points at a `Remote`, which is `Sync` (other threads touch it by design),
// inside the `Shared` that `shared` keeps alive and that moves with the
// worker.
// SAFETY: using `remote` on another thread is as sound as using `shared`.
unsafe impl Send for Worker {}

/// Whether the calling thread is a worker of any spindle runtime.
#[inline(never)]
pub(crate) fn on_worker_thread() -> bool {
    !WORKER.with(Cell::get).is_null()
}

impl Worker {
    /// The worker for slot `index`, from the slot's owner side.
    pub(super) fn new(index: usize, shared: Arc<Shared>, owner: OwnerSide) -> Worker {
        let trace = Buffer::new(shared.tracing.path.is_some(), shared.epoch);
        let slot: &Remote = &shared.remotes[index];
        let ticks = slot.ticks.load(Ordering::Relaxed);
        let remote = NonNull::from(slot);
        Worker {
            index,
            remote,
            role: if index < shared.num_workers {
                Role::Configured
            } else {
                Role::Spare
            },
            shared,
            local: owner.local,
            parker: owner.parker,
            // A spare slot's counter carries on from its previous thread's,
            // so the monitor never sees it jump back to an old value.
            tick: Cell::new(ticks),
            next_streak: Cell::new(0),
            searching: Cell::new(false),
            // Any odd seed works for xorshift; vary it per worker.
            rng: Cell::new(
                0x9E37_79B9_7F4A_7C15 ^ (index as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9) | 1,
            ),
            trace: RefCell::new(trace),
            stacks: RefCell::new(owner.stacks),
            records: RefCell::new(RecordCache::new()),
            overflow: RefCell::new(Vec::new()),
        }
    }

    #[inline]
    fn remote(&self) -> &Remote {
        // `Remote` is shared by design (other threads touch it through
        // atomics and locks), so a shared reference is all we hand out.
        // SAFETY: `remote` points into `self.shared.remotes`, which lives as
        // long as `self.shared` and is never moved or resized.
        unsafe { self.remote.as_ref() }
    }

    /// This worker's index in the runtime.
    pub(super) fn index(&self) -> usize {
        self.index
    }

    /// The worker thread's body.
    pub(super) fn run(self) {
        // A panic that gets here is the runtime's own (`fiber/fault.rs`).
        let _abort = crate::fiber::fault::AbortOnUnwind::new("worker");
        // A fiber overflowing its stack needs somewhere to run the handler.
        let _alt_stack = crate::sys::signal::AltStack::ensure().unwrap_or_else(|error| {
            panic!("spindle: cannot set up the alternate signal stack: {error}")
        });
        self.remote().handoff.take_thread();
        WORKER.with(|w| w.set(&self));
        match self.role {
            Role::Configured => self.run_configured(),
            Role::Spare => self.run_spare(),
        }
        WORKER.with(|w| w.set(std::ptr::null()));
        match self.role {
            Role::Configured => self.exit(),
            Role::Spare => {
                if self.shared.is_shutdown() {
                    self.exit();
                }
                self.retire();
            }
        }
    }

    /// A configured worker's loop: the phases of the module docs, until
    /// shutdown.
    fn run_configured(&self) {
        while !self.shared.is_shutdown() {
            match self.find_fiber() {
                Some(fiber) => self.run_fiber(fiber),
                None => self.park_worker(),
            }
        }
    }

    /// A spare worker's loop: the same phases, except that it retires as
    /// soon as it is surplus (more spares than stuck workers) or finds
    /// nothing to do.
    fn run_spare(&self) {
        let spares = &self.shared.spares;
        while !self.shared.is_shutdown() {
            if spares.claim_retirement() {
                return;
            }
            match self.find_fiber() {
                Some(fiber) => self.run_fiber(fiber),
                None => break,
            }
        }
        spares.spare_stopped();
    }

    /// Phases 1–3 of a scheduling decision (module docs).
    #[inline]
    fn find_fiber(&self) -> Option<Arc<FiberInner>> {
        self.maintenance()
            .or_else(|| self.next_fiber())
            .or_else(|| self.search())
    }

    // --- Phase 1: maintenance.

    /// Counts the tick, fires due timers, polls for I/O every
    /// `POLL_INTERVAL` ticks, and every [`INJECTOR_INTERVAL`] ticks takes a
    /// fiber from the global queues first, for fairness (then returns it).
    #[inline]
    fn maintenance(&self) -> Option<Arc<FiberInner>> {
        let tick = self.bump_tick();
        self.fire_timers();
        if tick % crate::io::POLL_INTERVAL == 0 {
            // A busy worker still sees readiness (`io/reactor.rs`).
            self.shared.reactor.poll_now();
        }
        if tick % INJECTOR_INTERVAL == 0 {
            // For fairness. A batch while this deque has room under
            // `SPAWN_BACKLOG`, else one fiber (as Go's `globrunqget(pp, 1)`
            // here): a batch at every such tick would feed a spawn backlog
            // in faster than fibers that start, yield and resume get
            // through a long deque, and the started set would grow without
            // bound (measured in `docs/decisions.md`, "INJECTOR_INTERVAL").
            return self.steal_injector(self.local.len() < SPAWN_BACKLOG);
        }
        None
    }

    /// Counts a scheduling decision.
    fn bump_tick(&self) -> u64 {
        let tick = self.tick.get().wrapping_add(1);
        self.tick.set(tick);
        // Relaxed: a progress signal for observers, ordered with nothing.
        self.remote().ticks.store(tick, Ordering::Relaxed);
        tick
    }

    /// Unparks the fibers whose timers are due.
    fn fire_timers(&self) {
        let timers = &self.remote().timers;
        if timers.has_pending() {
            let now = Instant::now();
            if timers.is_due(self.shared.epoch, now) {
                timers.fire_due(self.shared.epoch, now);
            }
        }
    }

    /// Whether one of this worker's timers is due. Reads the clock only
    /// when a timer is pending.
    fn timer_due(&self) -> bool {
        let timers = &self.remote().timers;
        timers.has_pending() && timers.is_due(self.shared.epoch, Instant::now())
    }

    // --- Phase 2: next fiber.

    /// The next slot (within its streak), the deque, the global queues.
    #[inline]
    fn next_fiber(&self) -> Option<Arc<FiberInner>> {
        if let Some(fiber) = self.remote().next.take() {
            if self.next_streak.get() < MAX_NEXT_STREAK {
                self.next_streak.set(self.next_streak.get() + 1);
                bump(&self.remote().counters.next_slot_hits, 1);
                return Some(fiber);
            }
            self.local.push(fiber);
        }
        self.next_streak.set(0);
        self.local.pop().or_else(|| self.steal_injector(true))
    }

    /// A fiber from the global injector, else from the spawn backlog, with
    /// a batch more into this worker's deque if `batch`.
    fn steal_injector(&self, batch: bool) -> Option<Arc<FiberInner>> {
        let injector = &self.shared.injector;
        let backlog = &self.shared.backlog;
        let stolen = if batch {
            steal_settled(|| injector.steal_batch_and_pop(&self.local))
                .or_else(|| backlog.pop_batch(|fiber| self.local.push(fiber)))
        } else {
            steal_settled(|| injector.steal()).or_else(|| backlog.pop())
        };
        if stolen.is_some() {
            bump(&self.remote().counters.injector_pops, 1);
        }
        stolen
    }

    // --- Phase 3: search.

    /// Steals as a searcher. Returns `None` (still searching) if nothing
    /// was found, or if too many workers search already.
    fn search(&self) -> Option<Arc<FiberInner>> {
        if !self.searching.get() && self.role == Role::Configured {
            if !self.shared.idle.transition_worker_to_searching() {
                return None;
            }
            self.searching.set(true);
        }
        let remotes = self.shared.used_remotes();
        for round in 0..STEAL_ROUNDS {
            let start = self.random(remotes.len());
            for offset in 0..remotes.len() {
                let victim = (start + offset) % remotes.len();
                if victim == self.index {
                    continue;
                }
                let counters = &self.remote().counters;
                bump(&counters.steal_attempts, 1);
                let stolen =
                    steal_settled(|| remotes[victim].stealer.steal_batch_and_pop(&self.local));
                if let Some(fiber) = stolen {
                    // The fiber returned, and the rest of the batch now in
                    // our deque.
                    let count = 1 + self.local.len() as u64;
                    bump(&counters.steals, count);
                    self.record_trace(|trace| Event::Steal {
                        at: trace.now(),
                        victim,
                        count,
                    });
                    return Some(fiber);
                }
                if round == STEAL_ROUNDS - 1 {
                    if let Some(fiber) = remotes[victim].next.take() {
                        bump(&counters.steals, 1);
                        return Some(fiber);
                    }
                }
            }
            if let Some(fiber) = self.steal_injector(true) {
                return Some(fiber);
            }
        }
        None
    }

    fn stop_searching(&self) {
        self.searching.set(false);
        if self.shared.idle.transition_worker_from_searching() {
            // The last searcher found work: producers skipped waking anyone
            // while it searched, so keep one searcher around (Go's
            // `resetspinning`).
            self.shared.notify_one();
        }
    }

    /// A victim index in `0..n`.
    fn random(&self, n: usize) -> usize {
        let mut x = self.rng.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.set(x);
        (x % n as u64) as usize
    }

    // --- Phase 4: park.

    /// Sleeps until woken by a producer, a due timer, I/O readiness or
    /// shutdown.
    fn park_worker(&self) {
        let searching = self.searching.replace(false);
        let is_last_searcher = self
            .shared
            .idle
            .transition_worker_to_parked(self.index, searching);
        if is_last_searcher && self.shared.has_pending_work() {
            // Work arrived after we stopped looking and its producer saw us
            // searching, so it woke nobody: wake someone (perhaps us).
            self.shared.notify_one();
        }
        loop {
            let io_woke = self.sleep_once();
            if self.shared.is_shutdown() {
                return;
            }
            if !self.shared.idle.is_parked(self.index) {
                // A producer took us off the sleepers list: we search.
                self.searching.set(true);
                return;
            }
            if io_woke > 0 || self.timer_due() {
                // Our own timer or poll woke us (the fibers it woke are in
                // our queues): leave the list and fire it (the
                // loop's next scheduling decision does). If a producer took
                // us off the list meanwhile, we count as searching.
                if !self.shared.idle.unpark_self(self.index) {
                    self.searching.set(true);
                }
                return;
            }
            // Spurious wake-up: still on the list, sleep again.
        }
    }

    /// Sleeps once, until woken or until this worker's earliest timer (not
    /// at all if it is due): in the I/O poller if no other worker is in it
    /// (`io/reactor.rs`), else on the parker. Returns how many fibers the
    /// poll woke.
    fn sleep_once(&self) -> usize {
        let timeout = self
            .remote()
            .timers
            .time_to_earliest(self.shared.epoch, Instant::now());
        if timeout.is_some_and(|timeout| timeout.is_zero()) {
            return 0;
        }
        let asleep = Instant::now();
        let traced_from = self.trace_start();
        let io_woke = self.shared.reactor.park(&self.parker, timeout);
        let counters = &self.remote().counters;
        bump(&counters.parks, 1);
        bump(&counters.parked_nanos, asleep.elapsed().as_nanos() as u64);
        if let Some(start) = traced_from {
            self.record_trace(|trace| Event::Parked {
                start,
                micros: trace.now() - start,
            });
        }
        io_woke
    }

    // --- Running a fiber.

    /// Runs one fiber until it yields, parks or finishes.
    fn run_fiber(&self, fiber: Arc<FiberInner>) {
        if self.searching.get() {
            self.stop_searching();
        }
        bump(&self.remote().counters.fibers_run, 1);
        fiber.state.begin_run();
        let mut stacks = self.stacks.borrow_mut();
        let traced_from = self.trace_start();
        loop {
            let outcome = run_slice(
                &fiber,
                Resume::Run,
                &mut stacks,
                self.remote().handoff.in_fiber_flag(),
            );
            self.after_slice(traced_from, &fiber, &outcome);
            match outcome {
                Outcome::Yielded => {
                    if self.carry_on_after_yield() {
                        continue;
                    }
                    fiber.state.yielded();
                    // Wake a sleeper only if there is surplus work: a lone
                    // fiber yielding in a loop has nothing to share.
                    let surplus = !self.local.is_empty();
                    self.local.push(fiber);
                    if surplus {
                        self.shared.notify_one();
                    }
                    return;
                }
                Outcome::Parked => {
                    if fiber.state.finish_park() {
                        // The scheduling reference stays with the parked
                        // fiber; its unparker takes it back.
                        std::mem::forget(fiber);
                        return;
                    }
                    // An unpark arrived while it was switching out: its
                    // token is consumed and it runs on.
                }
                Outcome::Frozen(reason) => {
                    drop(stacks);
                    crate::fiber::cancel::freeze_on_worker(fiber, reason);
                    self.shared.count_finished(self.index);
                    return;
                }
                Outcome::Finished => {
                    self.shared.count_finished(self.index);
                    drop(stacks);
                    // Relaxed: a hint; `recycle` checks uniqueness itself.
                    if Arc::strong_count(&fiber) == 1 {
                        recycle(fiber);
                    }
                    return;
                }
            }
        }
    }

    /// The one hook after every slice: records the slice in the trace (if
    /// tracing; it started at `traced_from`), and ends the hand-off episode
    /// if the monitor marked this worker stuck during it.
    #[inline]
    fn after_slice(&self, traced_from: Option<f64>, fiber: &FiberInner, outcome: &Outcome) {
        if let Some(start) = traced_from {
            let ended = match outcome {
                Outcome::Yielded => "yield",
                Outcome::Parked => "park",
                Outcome::Finished => "done",
                Outcome::Frozen(_) => "frozen",
            };
            self.record_trace(|trace| Event::Run {
                fiber: fiber.id.as_u64(),
                start,
                micros: trace.now() - start,
                ended,
            });
        }
        if self.remote().handoff.is_stuck() {
            self.end_episode(fiber);
        }
    }

    /// The fiber that held this worker has given it back: clears the
    /// monitor's stuck mark, so that a spare retires, and reports the
    /// episode.
    #[cold]
    fn end_episode(&self, fiber: &FiberInner) {
        let Some(episode) = self.remote().handoff.end_stuck(self.shared.epoch) else {
            return;
        };
        let super::handoff::Episode {
            stuck_at,
            held_for,
            state,
        } = episode;
        self.record_trace(|_| Event::Handoff {
            fiber: fiber.id.as_u64(),
            start: stuck_at.as_secs_f64() * 1e6,
            micros: held_for.as_secs_f64() * 1e6,
        });
        let report = super::handoff::HandoffReport {
            worker: self.index,
            fiber: fiber.id,
            fiber_name: fiber.name().map(str::to_owned),
            held_for,
            state,
        };
        self.shared.spares.episode_ended(&report);
    }

    /// After a yield: if nothing else is runnable here, carry on at once,
    /// without a trip through the queue (three atomic updates). Still a
    /// scheduling decision: counts the tick, and polls for I/O as
    /// `maintenance` does, so a fiber yielding in a loop does not hide
    /// readiness; false if the poll woke fibers (they run first).
    fn carry_on_after_yield(&self) -> bool {
        if !self.nothing_else_to_run() {
            return false;
        }
        let tick = self.bump_tick();
        !(tick % crate::io::POLL_INTERVAL == 0 && self.shared.reactor.poll_now() > 0)
    }

    /// Whether a yielding fiber may simply continue: nothing in this
    /// worker's next slot or deque, nothing in the injector, and no
    /// shutdown under way (a fiber yielding in a loop must not hold it up).
    fn nothing_else_to_run(&self) -> bool {
        self.local.is_empty()
            && self.remote().next.is_empty()
            && self.shared.globals_are_empty()
            && !self.shared.is_shutdown()
            && !self.timer_due()
    }

    // --- Fibers made runnable by fiber code on this worker.

    /// Puts a fiber that this worker woke in its next slot; a fiber
    /// displaced from the slot goes to the deque, and is surplus work
    /// another worker may take.
    pub(super) fn schedule_local(&self, fiber: Arc<FiberInner>) {
        if let Some(displaced) = self.remote().next.put(fiber) {
            self.local.push(displaced);
            self.shared.notify_one();
        }
    }

    /// Puts a fiber just spawned by a fiber on this worker in its next slot,
    /// as `schedule_local` does (so a child runs right after its parent
    /// parks, Go's `runqput(pp, newg, true)`); the fiber it displaces goes
    /// to the deque, or, once the deque holds [`SPAWN_BACKLOG`] fibers, to
    /// the global spawn backlog with the older half of the deque.
    pub(super) fn schedule_spawned(&self, fiber: Arc<FiberInner>) {
        if let Some(displaced) = self.remote().next.put(fiber) {
            if self.local.len() < SPAWN_BACKLOG {
                self.local.push(displaced);
            } else {
                self.overflow(displaced);
            }
            self.shared.notify_one();
        }
    }

    /// Moves the older half of this worker's full deque, then `displaced`,
    /// to the spawn backlog in one batch (Go's `runqputslow`): the backlog's
    /// lock is taken once per half a deque of spawns, and the fibers keep
    /// their order. The deque is popped before the lock is taken.
    fn overflow(&self, displaced: Arc<FiberInner>) {
        let mut batch = self.overflow.borrow_mut();
        debug_assert!(batch.is_empty());
        batch.extend(std::iter::from_fn(|| self.local.pop()).take(SPAWN_BACKLOG / 2));
        batch.push(displaced);
        bump(
            &self.remote().counters.spawns_to_backlog,
            batch.len() as u64,
        );
        self.shared.backlog.push_batch(batch.drain(..));
    }

    /// A finished fiber record for a spawn on this worker: from its cache,
    /// refilled from the runtime's pool when empty.
    pub(super) fn take_record(&self) -> Option<Arc<FiberInner>> {
        self.records.borrow_mut().take(&self.shared.records)
    }

    /// Whether a finished record would be kept, not freed.
    pub(super) fn has_record_room(&self) -> bool {
        self.records.borrow().has_room() || self.shared.records.has_room()
    }

    /// Keeps an emptied, unique fiber record of this runtime for reuse,
    /// passing a batch on to the runtime's pool when the cache is full.
    pub(super) fn keep_record(&self, record: Arc<FiberInner>) {
        let spill = self.records.borrow_mut().put(record);
        if let Some(batch) = spill {
            self.shared.records.give(batch);
        }
    }

    /// Counts (and traces) a fiber spawned by a fiber on this worker.
    pub(super) fn count_spawn(&self, fiber: u64) {
        bump(&self.remote().counters.spawned, 1);
        self.record_trace(|trace| Event::Spawn {
            at: trace.now(),
            fiber,
        });
    }

    // --- Tracing.

    /// When a traced span starts (`None` when tracing is off).
    #[inline]
    fn trace_start(&self) -> Option<f64> {
        self.trace.borrow().span_start()
    }

    /// Records the event `event` makes, if tracing (`trace.rs`).
    #[inline]
    fn record_trace(&self, event: impl FnOnce(&Buffer) -> Event) {
        self.trace.borrow_mut().record(event);
    }

    /// Hands this worker's trace events to the runtime's collection.
    fn flush_trace(&self) {
        let events = self.trace.borrow_mut().take_events();
        if !events.is_empty() {
            self.shared
                .tracing
                .collected
                .lock_unpoisoned()
                .push((self.index, events));
        }
    }

    // --- Leaving.

    /// Leaving at shutdown: queued fibers go to the injector, where the
    /// shutdown pass unwinds them; cached stacks go back to the pool.
    fn exit(&self) {
        if let Some(fiber) = self.remote().next.take() {
            self.shared.injector.push(fiber);
        }
        while let Some(fiber) = self.local.pop() {
            self.shared.injector.push(fiber);
        }
        self.stacks.borrow_mut().drain_into(&self.shared.stacks);
        // Kept records hold the runtime: free them, and the pool's.
        drop(self.records.borrow_mut().take_all());
        self.shared.records.close();
        self.flush_trace();
    }

    /// A spare gives its slot back. Fibers still queued on it stay in its
    /// deque, where any worker may steal them (the slot's deque outlives
    /// its threads; the next spare to take the slot owns them again).
    /// Rejected: moving them to the injector, which puts them in one FIFO
    /// ahead of fibers woken later (a heartbeat whose timer the monitor
    /// fires would wait behind all of them).
    fn retire(self) {
        // The next slot is not looked at by a last searcher's re-check
        // (`Shared::has_pending_work`): move its fiber to the deque.
        if let Some(fiber) = self.remote().next.take() {
            self.local.push(fiber);
        }
        self.stacks.borrow_mut().drain_into(&self.shared.stacks);
        self.shared
            .records
            .give(self.records.borrow_mut().take_all());
        self.flush_trace();
        let remote = &self.shared.remotes[self.index];
        let shared = self.shared.clone();
        let index = self.index;
        let slot = OwnerSide {
            local: self.local,
            parker: self.parker,
            stacks: self.stacks.into_inner(),
        };
        shared.spares.return_slot(index, slot);
        // Fibers left in the deque are surplus work: someone should steal.
        if !shared.remotes[index].stealer.is_empty() {
            shared.notify_one();
        }
        remote.handoff.retire();
    }
}
