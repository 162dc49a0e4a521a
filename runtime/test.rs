//! Running a test's fibers so that their panics are reported to the test:
//! [`run`].
//!
//! # Why a test needs it
//! A panic is printed by the panic hook on the thread that panics, and a
//! fiber's thread is a worker. The test harness captures output per test
//! by the thread that writes it (each test's thread, and the threads it
//! spawns, write to that test's buffer), and a worker belongs to whichever
//! test first started its runtime: a fiber's panic message lands in that
//! test's output, or, once that test is over, nowhere. With the default
//! runtime shared by all the tests of a binary, that is every test but
//! the first.
//!
//! # Design
//! [`run`] runs the test's closure as a fiber on the default runtime, as
//! [`crate::run`] does, and gives it a *mailbox*: a fiber-local value,
//! inherited by every fiber spawned (on the default runtime) by a fiber
//! that has one. The runtime's panic hook, for a fiber with a live
//! mailbox, formats the report the default hook would print (where, what,
//! and a backtrace when `RUST_BACKTRACE` asks for one) and posts it there
//! instead of printing it. A thread that `run` spawns from the test's
//! thread, and which therefore writes to the test's own output, prints
//! each report as it arrives, so a test that hangs after a panic still
//! shows it. A panic of the test's fiber is re-raised on the test's thread
//! with its original payload, so the harness attributes it to the test and
//! `#[should_panic(expected = ..)]` sees its message.
//!
//! The mailbox is held weakly by the fibers: a fiber that outlives its
//! test reports as any fiber does. Both ends are hooks of the fiber
//! layer, set at the first `run` (`fiber::spawn::set_inheritance`, what a
//! spawned fiber inherits; `fiber::cancel::set_panic_reporter`, where a
//! fiber's panic is reported), so `fiber/` knows nothing of tests. Before
//! the first `run` a spawn and the hook each load an unset hook; after
//! it, while no `run` is active, they check one atomic counter and do
//! nothing else. The panic that
//! aborts the process (a destructor panicking during an unwind) is always
//! printed at once: nobody would be left to print it later.
//!
//! Rejected: `std::io::set_output_capture`, which would point a worker's
//! output at the test (unstable, and a worker runs many tests' fibers);
//! an attribute macro (`#[spindle::test]`), which needs a proc-macro crate
//! for what one function call does.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe, PanicHookInfo};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};

use crate::scheduler::Shared;

crate::fiber_local! {
    /// The mailbox of the test this fiber belongs to, if any.
    static MAILBOX: OnceLock<Weak<Mailbox>> = OnceLock::new();
}

/// How many [`run`]s are active: while none is, nothing here costs more
/// than loading it. Relaxed: a fiber of a run is spawned after the run
/// counted itself, on the same thread or through the spawn's own hand-over.
static ACTIVE_RUNS: AtomicUsize = AtomicUsize::new(0);

/// The panic message Rust gives a panic in a destructor during an unwind,
/// which aborts the process once the hook returns.
const PANIC_IN_CLEANUP: &str = "panic in a destructor during cleanup";

/// Where one test's fibers post their panic reports.
pub(crate) struct Mailbox {
    /// The test's thread's name, for the reports.
    test: String,
    /// Reports not yet printed, and whether the run is over. Any thread,
    /// under the lock (held only to push or take).
    state: Mutex<Posted>,
    /// Signalled at each post and at the close.
    posted: Condvar,
}

struct Posted {
    reports: Vec<String>,
    closed: bool,
}

impl Mailbox {
    fn post(&self, report: String) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.reports.push(report);
        self.posted.notify_one();
    }

    fn close(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.closed = true;
        self.posted.notify_one();
    }

    /// Prints reports as they are posted, until the mailbox is closed and
    /// empty. Runs on a thread spawned from the test's thread, whose
    /// output is the test's.
    fn print_until_closed(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            for report in state.reports.drain(..) {
                eprint!("{report}");
            }
            if state.closed {
                return;
            }
            state = self.posted.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// Runs `f` as a fiber on the default runtime, like [`crate::run`], and
/// reports the panics of its fibers to the calling test (module docs):
/// every fiber that `f`'s fiber spawns, and that they spawn, has its
/// panic message printed in the test's own output, and a panic of `f`
/// fails the test with its original payload. Called on a fiber, it simply
/// calls `f`.
///
/// ```
/// // In a test: `#[test] fn fan_out() { ... }`.
/// let total = spindle::test::run(|| {
///     let fibers: Vec<_> = (1..=4u32).map(|i| spindle::spawn(move || i * 10)).collect();
///     fibers.into_iter().map(|f| f.join().unwrap()).sum::<u32>()
/// });
/// assert_eq!(total, 100);
///
/// // A panic comes back on the test's thread with its own payload.
/// let payload = std::panic::catch_unwind(|| spindle::test::run(|| panic!("boom"))).unwrap_err();
/// assert_eq!(payload.downcast_ref::<&str>(), Some(&"boom"));
/// ```
///
/// # Panics
/// When `f` panics, and when the default runtime cannot start (see
/// [`crate::default_runtime`]).
#[track_caller]
pub fn run<'a, F, T>(f: F) -> T
where
    F: FnOnce() -> T + Send + 'a,
    T: Send + 'a,
{
    if crate::fiber::CurrentFiber::get().is_some() {
        return f();
    }
    let runtime = crate::default_runtime();
    let mailbox = Arc::new(Mailbox {
        test: std::thread::current()
            .name()
            .unwrap_or("<unnamed>")
            .to_owned(),
        state: Mutex::new(Posted {
            reports: Vec::new(),
            closed: false,
        }),
        posted: Condvar::new(),
    });
    let printer = {
        let mailbox = mailbox.clone();
        std::thread::Builder::new()
            .name(format!("{}-panics", mailbox.test))
            .spawn(move || mailbox.print_until_closed())
            .unwrap_or_else(|error| panic!("spindle::test::run cannot start its thread: {error}"))
    };
    // Set once per process; both cost one load while no run is active.
    crate::fiber::spawn::set_inheritance(inherit);
    crate::fiber::cancel::set_panic_reporter(report);
    ACTIVE_RUNS.fetch_add(1, Ordering::Relaxed);
    let weak = Arc::downgrade(&mailbox);
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        runtime.block_on(move || {
            let _ = MAILBOX.try_with(|slot| slot.set(weak));
            f()
        })
    }));
    ACTIVE_RUNS.fetch_sub(1, Ordering::Relaxed);
    mailbox.close();
    // Its output first, then the test's verdict.
    let _ = printer.join();
    match outcome {
        Ok(value) => value,
        Err(payload) => resume_unwind(payload),
    }
}

/// What a fiber spawned now on `shared` inherits from its spawner
/// (`fiber::spawn::set_inheritance`): the spawner's mailbox, taken as the
/// new fiber's own before its closure runs, if the spawner has one and
/// spawns on the default runtime (module docs). Outside a run this is one
/// load.
fn inherit(shared: &Arc<Shared>) -> Option<Box<dyn FnOnce() + Send>> {
    if ACTIVE_RUNS.load(Ordering::Relaxed) == 0
        || crate::fiber::CurrentFiber::get().is_none()
        || !crate::default_runtime::is_default(shared)
    {
        return None;
    }
    let mailbox = MAILBOX
        .try_with(|slot| slot.get().cloned())
        .ok()
        .flatten()?;
    Some(Box::new(move || {
        let _ = MAILBOX.try_with(|slot| slot.set(mailbox));
    }))
}

/// The panic hook's reporter (`fiber::cancel::set_panic_reporter`): a
/// fiber's panic goes to its test's mailbox if it has a live one (true);
/// anything else is left to the hook (false).
fn report(info: &PanicHookInfo<'_>) -> bool {
    ACTIVE_RUNS.load(Ordering::Relaxed) != 0 && post(info)
}

/// Posts the running fiber's panic to its mailbox; false if it has none.
fn post(info: &PanicHookInfo<'_>) -> bool {
    let Some(fiber) = crate::try_current() else {
        return false;
    };
    let message = message(info);
    if message == Some(PANIC_IN_CLEANUP) {
        return false;
    }
    let Ok(Some(mailbox)) = MAILBOX.try_with(|slot| slot.get().and_then(Weak::upgrade)) else {
        return false;
    };
    let name = fiber
        .name()
        .map(|name| format!(" '{name}'"))
        .unwrap_or_default();
    let location = info
        .location()
        .map(|location| format!(" at {location}"))
        .unwrap_or_default();
    let mut report = format!(
        "fiber {}{name} of test '{}' panicked{location}:\n{}\n",
        fiber.id(),
        mailbox.test,
        message.unwrap_or("Box<dyn Any>")
    );
    let backtrace = std::backtrace::Backtrace::capture();
    if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
        report.push_str(&format!("stack backtrace:\n{backtrace}\n"));
    }
    mailbox.post(report);
    true
}

/// A panic's message, if it is a string.
fn message<'a>(info: &'a PanicHookInfo<'_>) -> Option<&'a str> {
    let payload = info.payload();
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
}
