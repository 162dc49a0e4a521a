//! Shutting a runtime down: the steps of "Shutdown, in order" in
//! `scheduler/mod.rs`, as `Shared` methods that `Runtime::shutdown` calls
//! in turn: `begin_shutdown` (steps 1–2; the workers then exit and are
//! joined), `spares_running` (waited out), `cancel_remaining` (step 3),
//! `write_trace` (step 4).
//!
//! # The cancellation pass (step 3)
//! Once the workers are gone, every fiber left is cancelled
//! (`fiber/cancel.rs`: unwound, or frozen where that cannot be done
//! safely) by a small scheduler of its own, the [`Pass`]:
//!
//! - Its run queue is the injector (and, once, everything left in the
//!   slots' queues and every fiber parked in the slot registry). Fibers
//!   that destructors unpark during the pass, from the pass itself or from
//!   plain threads, land there: the pass's thread is no worker.
//! - A destructor that parks really parks (the fiber is left PARKED, as a
//!   worker would leave it) and is resumed when unparked; timed waits time
//!   out at once (no timer runs). When nothing is runnable, the pass
//!   sleeps until something lands in the injector ([`Shared::wake_cancel_pass`]).
//! - The grace period (`Builder::shutdown_grace`) starts at the pass's
//!   first wait or yield. Once it is over, a fiber that waits or yields
//!   again is frozen at once, and when nothing is runnable every fiber
//!   still parked is frozen: the pass ends within the grace period of its
//!   first wait, plus the time to run what was runnable. It never spins.
//! - The pass ends when no fiber is live: every one finished or frozen.
//!   (A fiber a plain thread has just unparked is SCHEDULED yet not in the
//!   injector; the live count keeps the pass waiting for it, where a look
//!   at the queues would miss it.)
//!
//! The pass runs on a thread of its own, never on the thread that drops
//! the runtime: a fiber frozen inside the panic hook leaves its thread
//! unable to panic again (`fiber/cancel.rs`). After such a freeze that
//! thread hands the pass back and exits, and the pass goes on on a fresh
//! one. Only if the OS refuses a thread does the pass run on the caller's.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::queue::steal_settled;
use super::Shared;
use crate::fiber::cancel::{self, FreezeHere, FreezeReason, FrozenFiber, Step};
use crate::fiber::stack::StackCache;
use crate::fiber::state::Unparked;
use crate::fiber::{has_started, FiberInner};
use crate::lock::MutexExt;

/// Stack of a thread that runs the cancellation pass: as a worker's
/// (fibers run on their own stacks; this is for the runtime's frames and
/// the drops of closures of fibers that never got a stack).
const PASS_THREAD_STACK: usize = 256 * 1024;

/// How long the pass sleeps, at most, while the only live fibers are on
/// their way into the injector (their push wakes it sooner). A guess: a
/// push takes microseconds.
const IN_FLIGHT_RECHECK: Duration = Duration::from_millis(1);

/// Frozen fibers reported one line each on stderr; the rest are only
/// listed in `ShutdownReport::frozen`. A guess: enough to see what froze,
/// few enough not to bury the program's own output.
const FROZEN_REPORTED: usize = 16;

/// What the cancellation pass did (`ShutdownReport` shows it).
#[derive(Debug, Default)]
pub(crate) struct Cancellation {
    /// Started fibers unwound to their roots.
    pub(crate) unwound: usize,
    /// Fibers that never started, their closures dropped.
    pub(crate) never_started: usize,
    /// Fibers frozen instead of unwound.
    pub(crate) frozen: Vec<FrozenFiber>,
}

impl Shared {
    /// Step 1–2 of shutdown: set the flag, wake every worker.
    pub(crate) fn begin_shutdown(&self) {
        // Release: pairs with the workers' Acquire load after they wake.
        self.shutdown.store(true, Ordering::Release);
        for remote in self.remotes.iter() {
            remote.unparker.unpark();
        }
        self.monitor.unpark();
        if let Some(pool) = self.blocking.get() {
            pool.shutdown();
        }
        self.spares.shutdown();
    }

    /// Whether a spare worker still holds a slot (shutdown waits for none).
    pub(crate) fn spares_running(&self) -> bool {
        self.used_remotes()[self.num_workers..]
            .iter()
            .any(|r| r.handoff.has_thread())
    }

    /// Shutdown step 3: cancels every fiber left, after the workers have
    /// exited, on a thread of its own (module docs).
    pub(crate) fn cancel_remaining(&self) -> Cancellation {
        debug_assert!(self.is_shutdown());
        // Their fibers are unwound below; the handles would keep the
        // runtime alive (a fiber holds the runtime that holds its timer).
        for remote in self.remotes.iter() {
            remote.timers.clear();
        }
        let mut pass = Pass::new(self);
        if self.live_fibers() == 0 {
            return pass.cancellation;
        }
        while !pass.done {
            let mut waiting = Some(pass);
            let ran = std::thread::scope(|scope| {
                let thread = std::thread::Builder::new()
                    .name("spindle-shutdown".to_owned())
                    .stack_size(PASS_THREAD_STACK)
                    .spawn_scoped(scope, || {
                        waiting.take().expect("the pass waits for its thread").run()
                    });
                thread.ok().map(|thread| thread.join())
            });
            pass = match ran {
                Some(Ok(pass)) => pass,
                Some(Err(_)) => crate::fiber::fault::internal_error(format_args!(
                    "a panic escaped the shutdown pass"
                )),
                // The OS refused a thread: run the pass here.
                None => waiting.take().expect("no thread took the pass").run(),
            };
        }
        pass.cancellation
    }

    /// Wakes the thread of the shutdown pass, if one is waiting: a fiber
    /// has just been pushed into the injector.
    pub(crate) fn wake_cancel_pass(&self) {
        if let Some(thread) = self.cancel_waker.lock_unpoisoned().as_ref() {
            thread.unpark();
        }
    }

    /// Takes every queued fiber into `batch`: from the global queues, and
    /// from the slots' deques and next slots (a spare retires without
    /// emptying its deque; the others' are taken for safety).
    fn take_queued(&self, batch: &mut VecDeque<Arc<FiberInner>>) {
        self.take_global(batch);
        for remote in self.remotes.iter() {
            if let Some(fiber) = remote.next.take() {
                batch.push_back(fiber);
            }
            while let Some(fiber) = steal_settled(|| remote.stealer.steal()) {
                batch.push_back(fiber);
            }
        }
    }

    /// Takes every fiber in the injector and the spawn backlog into `batch`.
    fn take_global(&self, batch: &mut VecDeque<Arc<FiberInner>>) {
        while let Some(fiber) = steal_settled(|| self.injector.steal()) {
            batch.push_back(fiber);
        }
        self.backlog.take_all(batch);
    }

    /// Takes every parked fiber in the stack pool's slot registry (parked
    /// fibers are in no queue) into `batch`; `each` sees the others.
    fn take_parked(&self, mut each: impl FnMut(Arc<FiberInner>)) {
        for owner in self.stacks.owners() {
            let fiber = owner.as_ptr() as *const FiberInner;
            // Each is kept alive by its scheduling reference (in a queue,
            // or in the fiber itself while PARKED; no worker runs now), or
            // leaked (a frozen fiber, DONE).
            // SAFETY: so the registry's fibers live.
            let state = unsafe { &(*fiber).state };
            // Parked fibers are in no queue: take them. Scheduled ones are
            // queued, or on their way into the injector.
            if state.unpark() == Unparked::MustSchedule {
                // ("Ownership" on FiberInner.)
                // SAFETY: we won PARKED → SCHEDULED: the parked fiber's
                // scheduling reference is ours.
                each(unsafe { Arc::from_raw(fiber) });
            }
        }
    }

    /// Writes the timeline trace, if on (at shutdown, once every worker
    /// has handed its buffer in); a failure is reported on stderr.
    pub(crate) fn write_trace(&self) {
        if let Err(error) = self.tracing.write(self.num_workers) {
            let path = self
                .tracing
                .path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            eprintln!("spindle: cannot write the trace to {path}: {error}");
        }
    }
}

/// The cancellation pass: a scheduler for the fibers left at shutdown
/// (module docs). Moves from thread to thread.
struct Pass<'a> {
    shared: &'a Shared,
    /// Default-size stacks for fibers that start only to drop their
    /// closures.
    cache: StackCache,
    /// Fibers to run, taken from the queues.
    runnable: VecDeque<Arc<FiberInner>>,
    /// Whether the slots' queues and the registry's parked fibers have
    /// been taken (once, first).
    swept: bool,
    /// When the grace period ends; set at the pass's first wait or yield.
    deadline: Option<Instant>,
    /// Fibers that had not started when the pass first resumed them and
    /// have not finished since (their closures' drops wait): by address,
    /// so they count as never started when they do finish. Almost always
    /// empty.
    unstarted_waiting: Vec<usize>,
    /// A fiber that froze inside the panic hook on the thread the pass
    /// left; the next thread records it.
    frozen_in_hook: Option<Arc<FiberInner>>,
    /// Whether every fiber is finished or frozen.
    done: bool,
    cancellation: Cancellation,
}

impl<'a> Pass<'a> {
    fn new(shared: &'a Shared) -> Pass<'a> {
        Pass {
            shared,
            cache: StackCache::new(),
            runnable: VecDeque::new(),
            swept: false,
            deadline: None,
            unstarted_waiting: Vec::new(),
            frozen_in_hook: None,
            done: false,
            cancellation: Cancellation::default(),
        }
    }

    /// Runs the pass on the calling thread until every fiber is finished
    /// or frozen (`done`), or until a fiber froze inside the panic hook,
    /// after which this thread must be left.
    fn run(mut self) -> Pass<'a> {
        let _freeze_here = FreezeHere::enable();
        // A fiber overflowing its stack here needs somewhere to run the
        // handler, as on a worker.
        let _alt_stack = crate::sys::signal::AltStack::ensure().ok().flatten();
        *self.shared.cancel_waker.lock_unpoisoned() = Some(std::thread::current());
        if let Some(fiber) = self.frozen_in_hook.take() {
            self.freeze(fiber, FreezeReason::DestructorPanicked);
        }
        loop {
            if self.runnable.is_empty() {
                self.take_runnable();
            }
            if let Some(fiber) = self.runnable.pop_front() {
                if !self.step(fiber) {
                    break;
                }
                continue;
            }
            if self.shared.live_fibers() == 0 {
                self.done = true;
                break;
            }
            self.wait();
        }
        if self.done {
            // (Left alone on a thread being left after a freeze in the
            // panic hook: it does as little as it can, and the next thread
            // takes the waker over.)
            *self.shared.cancel_waker.lock_unpoisoned() = None;
            self.cache.drain_into(&self.shared.stacks);
        }
        self
    }

    /// Fills the run queue: the first time with everything left anywhere,
    /// then from the injector.
    fn take_runnable(&mut self) {
        if self.swept {
            self.shared.take_global(&mut self.runnable);
            return;
        }
        self.swept = true;
        self.shared.take_queued(&mut self.runnable);
        let runnable = &mut self.runnable;
        self.shared.take_parked(|fiber| runnable.push_back(fiber));
    }

    /// Runs `fiber` (SCHEDULED, its scheduling reference ours) until it
    /// finishes, parks, yields or freezes. Returns false if it froze inside
    /// the panic hook: this thread must be left.
    fn step(&mut self, fiber: Arc<FiberInner>) -> bool {
        fiber.state.begin_run();
        // Only a fiber that never ran reaches the pass without a stack: it
        // starts only to drop its closure. One whose drop waits is
        // remembered, to be counted as never started when it finishes.
        let unstarted = !has_started(&fiber) || self.forget_unstarted(&fiber);
        loop {
            match cancel::cancel_slice(&fiber, &mut self.cache) {
                Step::Finished => {
                    if unstarted {
                        self.cancellation.never_started += 1;
                    } else {
                        self.cancellation.unwound += 1;
                    }
                    self.shared.fiber_finished();
                }
                Step::Yielded if !self.grace_is_over() => {
                    self.remember_unstarted(&fiber, unstarted);
                    fiber.state.yielded();
                    self.runnable.push_back(fiber);
                }
                Step::Parked if !self.grace_is_over() => {
                    if !fiber.state.finish_park() {
                        // An unpark came while it switched out: its token
                        // is consumed, it runs on.
                        continue;
                    }
                    self.remember_unstarted(&fiber, unstarted);
                    // The scheduling reference stays with the parked
                    // fiber; its unparker takes it back.
                    std::mem::forget(fiber);
                }
                Step::Yielded | Step::Parked => self.freeze(fiber, FreezeReason::StillWaiting),
                Step::Frozen(FreezeReason::DestructorPanicked) => {
                    self.frozen_in_hook = Some(fiber);
                    return false;
                }
                Step::Frozen(reason) => self.freeze(fiber, reason),
            }
            return true;
        }
    }

    /// Remembers a fiber that never ran whose closure's drop waits.
    fn remember_unstarted(&mut self, fiber: &Arc<FiberInner>, unstarted: bool) {
        if unstarted {
            self.unstarted_waiting.push(address(fiber));
        }
    }

    /// Whether the grace period is over; starts it at the first call.
    fn grace_is_over(&mut self) -> bool {
        let now = Instant::now();
        let deadline = *self
            .deadline
            .get_or_insert_with(|| now.checked_add(self.shared.shutdown_grace).unwrap_or(now));
        now >= deadline
    }

    /// Sleeps while nothing is runnable: until something lands in the
    /// injector or the grace period ends; after it, freezes every fiber
    /// still parked.
    fn wait(&mut self) {
        let timeout = match self.deadline {
            None => IN_FLIGHT_RECHECK,
            Some(deadline) => {
                let now = Instant::now();
                if now < deadline {
                    deadline - now
                } else {
                    let mut parked = Vec::new();
                    self.shared.take_parked(|fiber| parked.push(fiber));
                    if !parked.is_empty() {
                        for fiber in parked {
                            fiber.state.begin_run();
                            self.freeze(fiber, FreezeReason::StillWaiting);
                        }
                        return;
                    }
                    IN_FLIGHT_RECHECK
                }
            }
        };
        // The waker was registered before the queues were looked at, so a
        // push since then has left the unpark token: this returns at once.
        std::thread::park_timeout(timeout);
    }

    /// Freezes `fiber` (RUNNING, ours) and records it.
    fn freeze(&mut self, fiber: Arc<FiberInner>, reason: FreezeReason) {
        self.forget_unstarted(&fiber);
        let frozen = cancel::freeze(fiber, reason);
        let count = self.cancellation.frozen.len();
        if count < FROZEN_REPORTED {
            crate::fiber::fault::write_line(format_args!("spindle: shutdown: {frozen}"));
        } else if count == FROZEN_REPORTED {
            crate::fiber::fault::write_line(format_args!(
                "spindle: shutdown: more fibers were frozen; ShutdownReport::frozen lists them all"
            ));
        }
        self.cancellation.frozen.push(frozen);
        self.shared.fiber_finished();
    }

    /// Removes `fiber` from `unstarted_waiting`; whether it was there.
    fn forget_unstarted(&mut self, fiber: &Arc<FiberInner>) -> bool {
        let address = address(fiber);
        match self.unstarted_waiting.iter().position(|&a| a == address) {
            Some(index) => {
                self.unstarted_waiting.swap_remove(index);
                true
            }
            None => false,
        }
    }
}

/// A fiber's address, as `unstarted_waiting` keeps it.
fn address(fiber: &Arc<FiberInner>) -> usize {
    Arc::as_ptr(fiber) as usize
}
