//! When code fails outside a fiber's function: user code that the runtime
//! runs there is caught and reported, and a failure of the runtime's own
//! code aborts the process with a message.
//!
//! # User code outside a fiber's function
//! A fiber's function runs inside the `catch_unwind` of its root closure
//! (`spawn.rs`), and its panic goes to its joiner. Some user code runs
//! outside that closure:
//! - the drop of a fiber's result when its `JoinHandle` is gone: the fiber
//!   drops it itself, on its own stack, after it completed (`fiber_main`;
//!   the `Completion` knows whether the handle is still there);
//! - the drop of the closure of a fiber that never runs (no stack could be
//!   had, or the runtime shut down first);
//! - the destructors of its fiber-local values (`locals.rs`), on its stack
//!   after its function ended;
//! - the hand-off sink (`Builder::on_handoff`), on its worker's stack.
//!
//! Each runs through [`catch`] (or [`run_caught`], which also reports):
//! a panic is caught, reported on stderr in one line naming the fiber and
//! what panicked (the panic hook has printed the panic itself), counted
//! in `Metrics::caught_panics`, and the thread carries on. Uncaught, such
//! a panic would end the worker thread, and everything queued on it would
//! wait forever. A shutdown unwind (the `Cancelled` payload) that ends such
//! code early is not a panic and is not reported.
//!
//! # A fiber that never runs
//! A fiber that finds no stack at its first run (the OS refused memory for
//! more) never runs. That is never silent: its joiner gets the error, it
//! is counted (`Metrics::fibers_without_stack`) and reported on stderr
//! ([`report_without_stack`], in few lines however many there are), and
//! from then on spawns are refused while no stack is free (the stack
//! pool's `cannot_grow`, checked in `Shared::admit_fiber`).
//!
//! # The runtime's own failures
//! A panic in the runtime's own code means one of its invariants is broken
//! (`State::begin_run` finding a fiber that is not SCHEDULED, say).
//! Unwinding would end one thread and leave the others waiting for it, so
//! every thread that runs the scheduler holds an [`AbortOnUnwind`]: after
//! the panic hook has printed the panic, it writes which thread failed and
//! aborts, as [`internal_error`] does for a failure found without a panic.
//!
//! # A stack overflow
//! A fiber that runs into its guard page raises `SIGSEGV`; the handler
//! (`sys/signal.rs`) asks [`classify_fault`] whether the address is in the
//! running fiber's guard page, and if so it names the fiber and its stack
//! size on stderr and aborts, as std does for a thread's overflow. It runs
//! in the signal handler, so it only reads plain data and formats into a
//! buffer on its own stack.

use std::any::Any;
use std::fmt;
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::join::Cancelled;
use super::FiberInner;

/// How a piece of user code run through [`catch`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Caught {
    /// It returned.
    Completed,
    /// It panicked; the panic was caught and its payload dropped.
    Panicked,
    /// The runtime's shutdown unwound it (the fiber was being cancelled).
    Cancelled,
}

/// What the runtime was dropping for a fiber, outside its function, when
/// user code panicked (for the report).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dropping {
    /// The drop of the fiber's result, its `JoinHandle` gone.
    Result,
    /// The drop of the closure of a fiber that never ran.
    Closure,
    /// The destructor of one of the fiber's fiber-local values.
    FiberLocal,
}

impl fmt::Display for Dropping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dropping::Result => "the drop of its result (its JoinHandle was dropped)",
            Dropping::Closure => "the drop of its closure (it never ran)",
            Dropping::FiberLocal => "the destructor of a fiber-local value",
        })
    }
}

/// Runs `f`, catching a panic. The payload is dropped here, and if its own
/// drop panics, that second payload is leaked rather than dropped (std's
/// runtime aborts there).
pub(crate) fn catch(f: impl FnOnce()) -> Caught {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(()) => Caught::Completed,
        Err(payload) => {
            let cancelled = payload.is::<Cancelled>();
            drop_payload(payload);
            if cancelled {
                Caught::Cancelled
            } else {
                Caught::Panicked
            }
        }
    }
}

/// Drops a panic payload, which is user data too.
fn drop_payload(payload: Box<dyn Any + Send>) {
    if let Err(second) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
        std::mem::forget(second);
    }
}

/// Runs `what`, user code of `fiber` outside its function, through
/// [`catch`]; a panic is reported ([`report`]).
pub(crate) fn run_caught(fiber: &FiberInner, what: Dropping, f: impl FnOnce()) -> Caught {
    let caught = catch(f);
    if caught == Caught::Panicked {
        report(fiber, what);
    }
    caught
}

/// Reports a caught panic of `what`, user code of `fiber`: one line on
/// stderr, and `Metrics::caught_panics`.
pub(crate) fn report(fiber: &FiberInner, what: Dropping) {
    fiber.shared.count_caught_panic();
    write_line(format_args!(
        "spindle: fiber {}{}: {what} panicked; the panic was caught and the runtime carries on",
        fiber.id,
        NameSuffix(fiber.name()),
    ));
}

/// Counts a fiber that will never run for want of a stack
/// (`Metrics::fibers_without_stack`) and reports it on stderr: the first
/// such fiber of the runtime, then each time the count reaches a power of
/// two, so a flood of them costs a few lines.
#[cold]
pub(crate) fn report_without_stack(fiber: &FiberInner, error: &std::io::Error) {
    let count = fiber.shared.count_fiber_without_stack();
    if count.is_power_of_two() {
        write_line(format_args!(
            "spindle: fiber {}{} never ran: no stack could be had ({error}); its joiner gets \
             the error ({count} such fibers so far, Metrics::fibers_without_stack)",
            fiber.id,
            NameSuffix(fiber.name()),
        ));
    }
}

/// ` ("name")` for a named fiber, nothing otherwise.
pub(crate) struct NameSuffix<'a>(pub(crate) Option<&'a str>);

impl fmt::Display for NameSuffix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(name) => write!(f, " ({name:?})"),
            None => Ok(()),
        }
    }
}

/// Writes one line to stderr, ignoring a failure (`eprintln!` would panic
/// on one, on a thread that must not).
pub(crate) fn write_line(line: fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Aborts the process after a failure of the runtime's own code, with a
/// message: the runtime cannot go on, and unwinding would leave other
/// threads waiting for this one.
#[cold]
pub(crate) fn internal_error(what: fmt::Arguments<'_>) -> ! {
    write_line(format_args!(
        "spindle: internal error: {what}; aborting the process"
    ));
    crate::sys::signal::abort()
}

/// Held by each thread that runs the scheduler loop (workers, spare
/// workers, the monitor): if a panic unwinds through it, the runtime's
/// own code failed (user code is caught before it gets there), and the
/// process aborts with a message ([`internal_error`]) instead of losing
/// the thread.
pub(crate) struct AbortOnUnwind {
    thread: &'static str,
}

impl AbortOnUnwind {
    /// A guard for the calling thread, which runs the runtime's `thread`.
    pub(crate) fn new(thread: &'static str) -> AbortOnUnwind {
        AbortOnUnwind { thread }
    }
}

impl Drop for AbortOnUnwind {
    fn drop(&mut self) {
        if std::thread::panicking() {
            internal_error(format_args!(
                "a panic escaped the runtime's {} thread",
                self.thread
            ));
        }
    }
}

/// Called from the `SIGSEGV` handler: reports and aborts if `address` is in
/// the running fiber's guard page. Async-signal-safe: reads plain data,
/// formats into a stack buffer, writes with `write(2)`.
pub(crate) fn classify_fault(address: usize) {
    let running = super::CURRENT.with(|c| c.get());
    let page = crate::sys::memory::page_size();
    if running.fiber.is_null() || address < running.guard || address >= running.guard + page {
        return;
    }
    // SAFETY: the fiber is running on this thread, so it is alive.
    let fiber = unsafe { &*running.fiber };
    let mut line = StackLine {
        buf: [0; 512],
        len: 0,
    };
    let size_kib = fiber.stack_bytes() / 1024;
    let _ = fmt::Write::write_fmt(
        &mut line,
        format_args!(
            "\nfiber '{}' (id {}) has overflowed its stack of {} KiB\nfatal runtime error: stack overflow, aborting\n",
            fiber.name.as_deref().unwrap_or("<unnamed>"),
            fiber.id.0,
            size_kib
        ),
    );
    crate::sys::signal::write_stderr(&line.buf[..line.len]);
    crate::sys::signal::abort();
}

/// A fixed buffer to format into without allocating (signal context).
struct StackLine {
    buf: [u8; 512],
    len: usize,
}

impl fmt::Write for StackLine {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A payload whose drop panics: the second payload is leaked.
    #[test]
    fn a_payload_that_panics_when_dropped_is_contained() {
        struct Nasty;
        impl Drop for Nasty {
            fn drop(&mut self) {
                panic!("the payload's drop panics too");
            }
        }
        let caught = catch(|| std::panic::panic_any(Nasty));
        assert_eq!(caught, Caught::Panicked);
        assert_eq!(catch(|| ()), Caught::Completed);
        assert_eq!(
            catch(|| std::panic::resume_unwind(Box::new(Cancelled))),
            Caught::Cancelled
        );
    }

    /// In a child process (the test binary run again): a panic through the
    /// guard aborts with the message.
    #[test]
    fn a_panic_through_the_guard_aborts_with_a_message() {
        if std::env::var_os("SPINDLE_TEST_ABORT_GUARD").is_some() {
            let _guard = AbortOnUnwind::new("test");
            panic!("an invariant broke");
        }
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "fiber::fault::tests::a_panic_through_the_guard_aborts_with_a_message",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("SPINDLE_TEST_ABORT_GUARD", "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        // Killed by a signal (the abort), not exited with a test failure.
        assert_eq!(output.status.code(), None, "{stderr}");
        assert!(stderr.contains("an invariant broke"), "{stderr}");
        assert!(
            stderr.contains("internal error: a panic escaped the runtime's test thread"),
            "{stderr}"
        );
    }
}
