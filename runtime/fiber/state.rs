//! The fiber state machine: one atomic word that decides who may touch a
//! fiber's stack and whether a wake-up is pending.
//!
//! ```text
//!             spawn                      worker pops it
//!   ───────────────────▶ SCHEDULED ─────────────────────▶ RUNNING ──▶ DONE
//!                            ▲   ▲       yield_now            │
//!                            │   └────────────────────────────┤
//!                 unpark     │                                │ park, no token
//!                            └────────── PARKED ◀─────────────┘
//!                                          │  ▲
//!                        a dump wins it    ▼  │ dump done, no unpark
//!                                        DUMPING
//! ```
//!
//! The states, and who owns the fiber's stack in each:
//!
//! - **SCHEDULED**: in exactly one run queue (or about to be pushed by the
//!   thread that made it so). Nobody runs it; whoever pops it may run it.
//! - **RUNNING**: one worker is executing it, or has just switched off its
//!   stack and is deciding what to do next. That worker alone owns it.
//! - **PARKED**: suspended inside `park`, in no queue. The unparker that moves
//!   it to SCHEDULED takes the duty of queueing it.
//! - **DONE**: its function returned or unwound; its stack is gone.
//! - **DUMPING**: was PARKED; a fiber dump (`dump.rs`) won it and is
//!   resuming it on the dumper's thread, only to take a backtrace on its
//!   stack; it suspends again without returning from `park`. The dumper
//!   owns it, like a worker owns a RUNNING fiber. To an unparker it looks
//!   like RUNNING: the unpark leaves the token, and the dumper, ending the
//!   dump, finds it and schedules the fiber instead of parking it again
//!   (the same hand-over as an unpark during the switch, below).
//!
//! Orthogonal to the state is **NOTIFIED**, std's *unpark token*: an unpark
//! that found the fiber RUNNING or SCHEDULED leaves the token, and the next
//! `park` consumes it and returns at once. An unpark never sets the token on
//! a PARKED fiber (it schedules it instead), so no wake-up is lost and none
//! is doubled.
//!
//! # The race this guards against
//! A fiber calls `park`: it switches back to its worker, and only *then* may
//! it be scheduled elsewhere (two workers on one stack would be fatal). So
//! the fiber does not mark itself PARKED; its worker does, after the switch,
//! with a compare-and-swap from exactly RUNNING. An unpark that lands between
//! the fiber's decision to park and that CAS sets NOTIFIED with a CAS of its
//! own; the worker's CAS then fails, it sees the token, consumes it and runs
//! the fiber again. Both sides use compare-and-swap, never blind `fetch_or`,
//! so a token can never be set on a fiber that just became PARKED.

use crate::loom::sync::atomic::{AtomicU8, Ordering};

const SCHEDULED: u8 = 0;
const RUNNING: u8 = 1;
const PARKED: u8 = 2;
const DONE: u8 = 3;
const DUMPING: u8 = 4;
const STATE_MASK: u8 = 0b0111;
/// The unpark token.
const NOTIFIED: u8 = 0b1000;

/// What an unpark did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Unparked {
    /// The fiber was PARKED and is now SCHEDULED: the caller must queue it.
    MustSchedule,
    /// A token was left (or was already there), or the fiber is done.
    Nothing,
}

/// A fiber's state word. See the module docs for the transitions.
pub(crate) struct State(AtomicU8);

impl State {
    /// A freshly spawned fiber is SCHEDULED: the spawner queues it.
    pub(crate) fn new_scheduled() -> State {
        State(AtomicU8::new(SCHEDULED))
    }

    /// SCHEDULED → RUNNING, by the worker that popped the fiber.
    ///
    /// # Panics
    /// If the fiber was not SCHEDULED: two workers would run one stack. This
    /// check is always on: it costs nothing beyond the CAS we need anyway,
    /// and the alternative is memory corruption.
    pub(crate) fn begin_run(&self) {
        // Acquire: pairs with the Release that made the fiber SCHEDULED
        // (spawn, unpark or yield), so we see the stack as it was left.
        let result = self
            .0
            .fetch_update(Ordering::Acquire, Ordering::Relaxed, |s| {
                (s & STATE_MASK == SCHEDULED).then_some((s & NOTIFIED) | RUNNING)
            });
        if let Err(found) = result {
            panic!(
                "spindle: fiber resumed twice at once (state {})",
                Phase::of(found).name()
            );
        }
    }

    /// The fiber, running, wants to park: consumes a pending token. Returns
    /// true if there was one (then `park` returns at once).
    pub(crate) fn take_token(&self) -> bool {
        debug_assert_eq!(self.0.load(Ordering::Relaxed) & STATE_MASK, RUNNING);
        if self.0.load(Ordering::Relaxed) & NOTIFIED == 0 {
            return false;
        }
        // Acquire: pairs with the unparker's Release, so what it wrote
        // before unparking is visible after park returns.
        self.0.fetch_and(!NOTIFIED, Ordering::Acquire) & NOTIFIED != 0
    }

    /// RUNNING → PARKED, by the worker after the fiber switched away to park.
    /// Returns false if a token arrived meanwhile: the token is consumed and
    /// the fiber stays RUNNING (its park returns, a spurious-looking wake).
    pub(crate) fn finish_park(&self) -> bool {
        // Release: publishes the suspended stack to the unparker, whose
        // Acquire CAS out of PARKED pairs with it. Acquire on failure: the
        // token's writer released what the fiber must see.
        match self
            .0
            .compare_exchange(RUNNING, PARKED, Ordering::Release, Ordering::Acquire)
        {
            Ok(_) => true,
            Err(found) => {
                debug_assert_eq!(found, RUNNING | NOTIFIED, "park from a non-running fiber");
                self.0.fetch_and(!NOTIFIED, Ordering::Acquire);
                false
            }
        }
    }

    /// RUNNING → SCHEDULED, by the worker after the fiber yielded; the worker
    /// then queues it. A pending token stays.
    pub(crate) fn yielded(&self) {
        // Release: publishes the suspended stack to the next runner.
        let previous = self.0.fetch_and(!STATE_MASK, Ordering::Release);
        debug_assert_eq!(
            previous & STATE_MASK,
            RUNNING,
            "yield from a non-running fiber"
        );
    }

    /// RUNNING → DONE, by the worker after the fiber's function returned.
    pub(crate) fn finish(&self) {
        let previous = self.0.swap(DONE, Ordering::Release);
        debug_assert_eq!(
            previous & STATE_MASK,
            RUNNING,
            "finish of a non-running fiber"
        );
    }

    /// Wakes the fiber (any thread): PARKED → SCHEDULED, or leaves a token.
    pub(crate) fn unpark(&self) -> Unparked {
        let mut current = self.0.load(Ordering::Relaxed);
        loop {
            let (next, outcome) = match current & STATE_MASK {
                PARKED => (SCHEDULED, Unparked::MustSchedule),
                DONE => return Unparked::Nothing,
                _ => (current | NOTIFIED, Unparked::Nothing),
            };
            // AcqRel: Acquire pairs with finish_park's Release (we may now
            // queue the suspended stack); Release publishes our writes to
            // the fiber that consumes the wake-up. A token already set is
            // written again (the same value), not skipped: std's `unpark`
            // publishes the caller's writes even then, and a plain load
            // would not.
            match self
                .0
                .compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return outcome,
                Err(found) => current = found,
            }
        }
    }

    /// PARKED → DUMPING, by a fiber dump. Returns false if the fiber was
    /// not PARKED (then the dump leaves it alone). On success the caller
    /// holds the fiber as a worker holds a RUNNING one, and must call
    /// [`State::end_dump`].
    pub(crate) fn begin_dump(&self) -> bool {
        // Acquire: pairs with finish_park's Release, so the dumper sees the
        // suspended stack as the worker left it (as an unparker would).
        self.0
            .compare_exchange(PARKED, DUMPING, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// DUMPING → PARKED, by the dumper once the fiber has suspended again.
    /// If an unpark arrived meanwhile (it left the token), the token is
    /// consumed and the fiber becomes SCHEDULED instead: the caller must
    /// queue it ([`Unparked::MustSchedule`]), as the unpark would have.
    pub(crate) fn end_dump(&self) -> Unparked {
        // Release: publishes the stack, as finish_park does, to the next
        // unparker (whose Acquire pairs with it). Acquire on failure: the
        // unparker released what the fiber must see when it runs.
        match self
            .0
            .compare_exchange(DUMPING, PARKED, Ordering::Release, Ordering::Acquire)
        {
            Ok(_) => Unparked::Nothing,
            Err(found) => {
                debug_assert_eq!(found, DUMPING | NOTIFIED, "dump of a fiber not held");
                // Nobody else changes a DUMPING fiber's word once the token
                // is set. Release: publishes the stack to the worker that
                // pops the fiber (begin_run's Acquire).
                self.0.store(SCHEDULED, Ordering::Release);
                Unparked::MustSchedule
            }
        }
    }

    /// The state now, for fiber dumps and `Debug` (a snapshot: it may
    /// change at once).
    pub(crate) fn phase(&self) -> Phase {
        // Acquire: a dump that sees PARKED reads the fiber as its parker
        // left it.
        Phase::of(self.0.load(Ordering::Acquire))
    }
}

/// One of the machine's states, without the token: what [`State::phase`]
/// reads. The module docs say what each means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    Scheduled,
    Running,
    Parked,
    Dumping,
    Done,
}

impl Phase {
    /// The state a state word holds.
    fn of(word: u8) -> Phase {
        match word & STATE_MASK {
            SCHEDULED => Phase::Scheduled,
            RUNNING => Phase::Running,
            PARKED => Phase::Parked,
            DUMPING => Phase::Dumping,
            _ => Phase::Done,
        }
    }

    /// Its name, for `Debug` and assertion messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Phase::Scheduled => "scheduled",
            Phase::Running => "running",
            Phase::Parked => "parked",
            Phase::Dumping => "dumping",
            Phase::Done => "done",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn park_then_unpark_schedules_once() {
        let state = State::new_scheduled();
        state.begin_run();
        assert!(!state.take_token());
        assert!(state.finish_park());
        assert_eq!(state.unpark(), Unparked::MustSchedule);
        // A second unpark of the now-scheduled fiber only leaves a token.
        assert_eq!(state.unpark(), Unparked::Nothing);
        state.begin_run();
        assert!(state.take_token(), "the second unpark's token is kept");
        assert!(!state.take_token());
    }

    #[test]
    fn unpark_before_park_is_not_lost() {
        let state = State::new_scheduled();
        state.begin_run();
        assert_eq!(state.unpark(), Unparked::Nothing);
        assert!(state.take_token(), "park returns at once");
    }

    #[test]
    fn unpark_during_the_switch_keeps_the_fiber_running() {
        let state = State::new_scheduled();
        state.begin_run();
        assert!(!state.take_token()); // the fiber decides to park...
        assert_eq!(state.unpark(), Unparked::Nothing); // ...an unpark lands...
        assert!(!state.finish_park(), "...so the worker must not park it");
        assert_eq!(state.phase().name(), "running");
        assert!(!state.take_token(), "the token was consumed by that wake");
    }

    #[test]
    fn yield_keeps_a_token() {
        let state = State::new_scheduled();
        state.begin_run();
        assert_eq!(state.unpark(), Unparked::Nothing);
        state.yielded();
        state.begin_run();
        assert!(state.take_token());
    }

    #[test]
    fn done_fibers_ignore_unpark() {
        let state = State::new_scheduled();
        state.begin_run();
        state.finish();
        assert_eq!(state.phase().name(), "done");
        assert_eq!(state.unpark(), Unparked::Nothing);
    }

    #[test]
    fn a_dump_of_a_parked_fiber_parks_it_again() {
        let state = State::new_scheduled();
        state.begin_run();
        assert!(state.finish_park());
        assert!(state.begin_dump());
        assert!(!state.begin_dump(), "one dumper at a time");
        assert_eq!(state.end_dump(), Unparked::Nothing);
        assert_eq!(state.phase(), Phase::Parked);
        assert_eq!(state.unpark(), Unparked::MustSchedule);
    }

    #[test]
    fn an_unpark_during_a_dump_is_not_lost() {
        let state = State::new_scheduled();
        state.begin_run();
        assert!(state.finish_park());
        assert!(state.begin_dump());
        // The unparker finds it held: it leaves the token, schedules nothing.
        assert_eq!(state.unpark(), Unparked::Nothing);
        assert_eq!(state.unpark(), Unparked::Nothing);
        // The dumper schedules it instead, with the token consumed.
        assert_eq!(state.end_dump(), Unparked::MustSchedule);
        assert_eq!(state.phase(), Phase::Scheduled);
        state.begin_run();
        assert!(!state.take_token(), "the wake-up was delivered once");
    }

    #[test]
    fn only_parked_fibers_can_be_dumped() {
        let state = State::new_scheduled();
        assert!(!state.begin_dump());
        state.begin_run();
        assert!(!state.begin_dump());
        state.finish();
        assert!(!state.begin_dump());
        assert_eq!(state.phase(), Phase::Done);
    }

    #[test]
    #[should_panic(expected = "fiber resumed twice at once")]
    fn running_a_running_fiber_trips_the_assertion() {
        let state = State::new_scheduled();
        state.begin_run();
        state.begin_run();
    }

    #[test]
    #[should_panic(expected = "fiber resumed twice at once")]
    fn running_a_parked_fiber_trips_the_assertion() {
        let state = State::new_scheduled();
        state.begin_run();
        assert!(state.finish_park());
        state.begin_run();
    }
}

/// The state machine's races, model-checked (`crate::loom` says how to
/// run them).
///
/// A model fiber is its state word plus two cells standing for what the
/// word hands over: its stack (written by whoever runs or dumps it, read
/// by whoever runs it next) and a waker's message (written before the
/// unpark, read when `park` returns). loom reports an access to either
/// cell that the word's orderings leave unordered as a causality
/// violation, two threads running the fiber as `begin_run`'s panic, and a
/// lost wake-up as a fiber that never finishes.
///
/// A model for another transition adds a step to `Model` and races it
/// against `Model::wake` (and, where it can, `Model::dump`), as the
/// cancellation request's model does.
#[cfg(all(test, spindle_loom))]
mod loom_models {
    use super::{Phase, State, Unparked};
    use crate::loom::cell::UnsafeCell;
    use loom::sync::atomic::{AtomicBool, Ordering::Relaxed};
    use loom::thread;
    // Bookkeeping outside the model: std's atomics, which loom ignores.
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::sync::Arc;

    /// A fiber as the models see it.
    struct Model {
        state: State,
        /// Its stack: what its code last wrote there.
        stack: UnsafeCell<u32>,
        /// What its waker wrote before unparking it.
        message: UnsafeCell<u32>,
        /// How many times its `park` returned.
        resumed: AtomicUsize,
    }

    // SAFETY: the cells are touched only by the thread that holds the
    // fiber as `State` hands it over (which is what the models check).
    unsafe impl Sync for Model {}

    impl Model {
        /// A fiber that the calling thread (its worker) has begun to run.
        fn running() -> Arc<Model> {
            let model = Model {
                state: State::new_scheduled(),
                stack: UnsafeCell::new(0),
                message: UnsafeCell::new(0),
                resumed: AtomicUsize::new(0),
            };
            model.state.begin_run();
            Arc::new(model)
        }

        /// A fiber that the calling thread ran until it parked.
        fn parked() -> Arc<Model> {
            let model = Model::running();
            assert!(!model.park(), "nobody woke it");
            model
        }

        /// The running fiber calls `park`, and its worker finishes the
        /// park after the switch. Returns true if the fiber runs on (its
        /// `park` returned on this thread: a token was there or raced in),
        /// false if it is parked.
        fn park(&self) -> bool {
            // SAFETY: the caller runs the fiber.
            self.stack.with_mut(|stack| unsafe { *stack += 1 });
            if self.state.take_token() {
                return true;
            }
            // The fiber switches back to its worker, which marks it.
            !self.state.finish_park()
        }

        /// `park` has returned: the fiber reads its stack and the message
        /// and returns; its worker marks it DONE.
        fn resume_and_finish(&self) {
            // SAFETY: the caller runs the fiber.
            let stack = self.stack.with_mut(|stack| unsafe { *stack });
            assert!(stack >= 1, "the stack as the fiber left it");
            // SAFETY: as above; the waker wrote it before its unpark.
            let message = self.message.with_mut(|message| unsafe { *message });
            assert_eq!(message, 1, "the waker's write is visible");
            self.resumed.fetch_add(1, SeqCst);
            self.state.finish();
        }

        /// The fiber was made SCHEDULED: a worker (the calling thread)
        /// pops it and runs it to the end.
        fn run_scheduled(&self) {
            self.state.begin_run();
            self.resume_and_finish();
        }

        /// A waker writes the message and unparks the fiber; if it must
        /// schedule it, it runs it too (as a worker that pops it would).
        fn wake(&self) {
            // SAFETY: only one waker per model writes it, before it
            // unparks; the fiber reads it after.
            self.message.with_mut(|message| unsafe { *message = 1 });
            if self.state.unpark() == Unparked::MustSchedule {
                self.run_scheduled();
            }
        }

        /// A fiber dump: if it wins the parked fiber, it resumes it on the
        /// calling thread to take a backtrace (which writes to the stack),
        /// then parks it again, or schedules it (and runs it) if an unpark
        /// came meanwhile.
        fn dump(&self) {
            if !self.state.begin_dump() {
                return;
            }
            // SAFETY: the dumper holds the fiber.
            self.stack.with_mut(|stack| unsafe { *stack += 1 });
            if self.state.end_dump() == Unparked::MustSchedule {
                self.run_scheduled();
            }
        }

        /// The end of every model: one wake-up, so `park` returned once
        /// and the fiber finished.
        fn assert_finished_once(&self) {
            assert_eq!(self.state.phase(), Phase::Done, "a wake-up was lost");
            assert_eq!(self.resumed.load(SeqCst), 1, "park returned once");
        }
    }

    /// A fiber parks on its worker while a waker unparks it: whether the
    /// unpark comes before the park, during the switch or after the
    /// worker marked it PARKED, `park` returns exactly once, on one
    /// thread, and sees both its stack and the waker's write.
    #[test]
    fn loom_park_races_unpark() {
        crate::loom::model(|| {
            let fiber = Model::running();
            let waker = {
                let fiber = fiber.clone();
                thread::spawn(move || fiber.wake())
            };
            if fiber.park() {
                fiber.resume_and_finish();
            }
            waker.join().unwrap();
            fiber.assert_finished_once();
        });
    }

    /// Two wakers unpark one parked fiber: exactly one of them schedules
    /// it (two would run one stack twice: `begin_run` panics).
    #[test]
    fn loom_two_unparks_schedule_once() {
        crate::loom::model(|| {
            let fiber = Model::parked();
            // SAFETY: written before any other thread exists.
            fiber.message.with_mut(|message| unsafe { *message = 1 });
            let wakers: Vec<_> = (0..2)
                .map(|_| {
                    let fiber = fiber.clone();
                    thread::spawn(move || {
                        if fiber.state.unpark() == Unparked::MustSchedule {
                            fiber.run_scheduled();
                        }
                    })
                })
                .collect();
            for waker in wakers {
                waker.join().unwrap();
            }
            fiber.assert_finished_once();
        });
    }

    /// std's `park` example, with two wakers: each sets a flag (Relaxed,
    /// as std's example does) and unparks; the fiber parks until it sees
    /// both. std's `unpark` is a Release write even when the token is set
    /// already, so the park that takes the token sees both flags.
    #[test]
    fn loom_every_unpark_publishes_its_writes() {
        /// The fiber, and the wakers' flags.
        struct Flags {
            fiber: Arc<Model>,
            flags: [AtomicBool; 2],
        }

        impl Flags {
            /// The fiber's code on the calling thread, until it finishes
            /// or parks.
            fn run(&self) {
                while !self.flags.iter().all(|flag| flag.load(Relaxed)) {
                    if !self.fiber.park() {
                        return;
                    }
                }
                self.fiber.resumed.fetch_add(1, SeqCst);
                self.fiber.state.finish();
            }
        }

        crate::loom::model(|| {
            let model = Arc::new(Flags {
                fiber: Model::running(),
                flags: [AtomicBool::new(false), AtomicBool::new(false)],
            });
            let wakers: Vec<_> = (0..2)
                .map(|waker| {
                    let model = model.clone();
                    thread::spawn(move || {
                        model.flags[waker].store(true, Relaxed);
                        if model.fiber.state.unpark() == Unparked::MustSchedule {
                            model.fiber.state.begin_run();
                            model.run();
                        }
                    })
                })
                .collect();
            model.run();
            for waker in wakers {
                waker.join().unwrap();
            }
            model.fiber.assert_finished_once();
        });
    }

    /// A cancellation request (`fiber/cancel.rs`) races the fiber's park:
    /// the request stores its flag, Relaxed, and unparks; the fiber looks
    /// at the flag, Relaxed, on its way into each park and each time a
    /// park returns, and parks until it sees it. Whether the request lands
    /// before the look, between the look and the switch, or after the
    /// worker marked the fiber PARKED, the fiber sees it and finishes,
    /// once: the unpark's ordering carries the flag.
    #[test]
    fn loom_cancel_request_races_park() {
        /// The fiber's code from a cancellation point on: finishes if the
        /// request is seen, else parks; returns once it is finished or
        /// left PARKED (whoever unparks it runs it again).
        fn run_until_cancelled(fiber: &Model, requested: &AtomicBool) {
            loop {
                if requested.load(Relaxed) {
                    fiber.resumed.fetch_add(1, SeqCst);
                    fiber.state.finish();
                    return;
                }
                if !fiber.park() {
                    return;
                }
            }
        }

        crate::loom::model(|| {
            let fiber = Model::running();
            let requested = Arc::new(AtomicBool::new(false));
            let canceller = {
                let (fiber, requested) = (fiber.clone(), requested.clone());
                thread::spawn(move || {
                    requested.store(true, Relaxed);
                    if fiber.state.unpark() == Unparked::MustSchedule {
                        fiber.state.begin_run();
                        run_until_cancelled(&fiber, &requested);
                    }
                })
            };
            run_until_cancelled(&fiber, &requested);
            canceller.join().unwrap();
            assert_eq!(fiber.state.phase(), Phase::Done, "a request was lost");
            assert_eq!(fiber.resumed.load(SeqCst), 1, "it finished once");
        });
    }

    /// A dump of a parked fiber races its unpark: the unpark is never
    /// lost (the dumper schedules the fiber if it held it), the dump never
    /// makes `park` return by itself, and whoever runs the fiber next sees
    /// what the dump wrote on its stack.
    #[test]
    fn loom_dump_races_unpark() {
        crate::loom::model(|| {
            let fiber = Model::parked();
            let dumper = {
                let fiber = fiber.clone();
                thread::spawn(move || fiber.dump())
            };
            fiber.wake();
            dumper.join().unwrap();
            fiber.assert_finished_once();
        });
    }
}
