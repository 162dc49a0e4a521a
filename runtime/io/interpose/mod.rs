//! Transparent blocking calls (the `interpose` Cargo feature): the fiber
//! side of the C library hooks in `sys/interpose/`.
//!
//! With the feature on, a fiber that calls `std::net::TcpStream::read`,
//! `std::thread::sleep`, or any code that ends in the C library's `recv`,
//! `accept`, `connect`, `poll`, `nanosleep`, ... parks instead of holding
//! its worker, as if it had used `spindle::net` or `spindle::time`. The
//! hooks (`sys/interpose/hooks.rs`) catch the call; when a fiber runs and
//! the descriptor is one that can block, they hand it here:
//!
//! - `transfer.rs` tries it without blocking and, if it would block on a
//!   descriptor the program left in blocking mode, parks the fiber in the
//!   descriptor's `Socket` loop (`io/socket.rs`, the loop every
//!   `spindle::net` operation runs) and tries again on readiness;
//! - `waits.rs` keeps each descriptor's registration from its first wait
//!   until it is closed;
//! - sleeps become `spindle::time::sleep` ([`sleep`]).
//!
//! Everywhere else (plain threads, the runtime's own threads, a forked
//! child, a descriptor with `O_NONBLOCK` set) the hooks make the system
//! call and nothing here runs. Call for call, the program sees what it
//! would see without the feature: the same results, `errno` values and
//! error kinds, its own `O_NONBLOCK` and socket timeouts honoured.
//!
//! # What differs
//! - A parked call is not interrupted by a signal (no `EINTR`): the signal
//!   is delivered to some other thread, as it may be to a process whose
//!   blocked thread does not take it.
//! - A fiber parked in a hooked call when the runtime shuts down cannot be
//!   unwound through the C function's frame (unwinding out of an
//!   `extern "C"` function aborts): [`guarded`] catches the cancellation
//!   and the call fails with `ECANCELED` instead, as do later calls of
//!   that fiber that would park. The fiber's code then runs on to its
//!   end, on the thread that shuts the runtime down.
//! - Every hooked call is a park point: the rule in the crate docs about
//!   holding thread-bound things (a `std::sync::MutexGuard`, a
//!   thread-local reference) across a park applies to them.
//!
//! # Rejected
//! Handing each blocking call to the blocking pool (what `poll` on several
//! descriptors does): a thread hand-off per call, where a registration
//! made once serves every later wait at the cost of a `recv` that fails.

mod transfer;
mod waits;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use crate::fiber::join::Cancelled;
use crate::fiber::CurrentFiber;
use crate::sys::interpose::{Errno, FiberSide};

/// The table the hooks call through.
static FIBER_SIDE: FiberSide = FiberSide {
    on_fiber: || CurrentFiber::get().is_some(),
    transfer: transfer::transfer,
    accept: transfer::accept,
    connect: transfer::connect,
    poll: transfer::poll,
    sleep,
    forget: waits::forget,
    timeout_set: waits::timeout_set,
};

/// Makes the hooks park fibers; `Shared::start` calls it at every
/// runtime's start (the first call installs).
pub(crate) fn install() {
    crate::sys::interpose::install(&FIBER_SIDE);
}

/// Runs the fiber side of a hooked call, for the fiber the hook found on
/// this thread. A cancellation raised by a park inside (the fiber was
/// cancelled, or the runtime is shutting down) is caught here, before it
/// reaches the hook's `extern "C"` frame, and becomes `ECANCELED`; the
/// unwind is raised again at the fiber's next cancellation point, in Rust
/// code (`fiber/cancel.rs`). Any other unwind is a bug in this module,
/// which aborts (as the frame itself would).
fn guarded<T>(body: impl FnOnce(CurrentFiber) -> Result<T, Errno>) -> Result<T, Errno> {
    let fiber = CurrentFiber::get().expect("a hooked call handed over off a fiber");
    match catch_unwind(AssertUnwindSafe(|| body(fiber))) {
        Ok(result) => result,
        Err(payload) if payload.is::<Cancelled>() => {
            crate::fiber::cancel::caught(fiber);
            Err(Errno::ECANCELED)
        }
        Err(_) => {
            crate::sys::signal::write_stderr(b"spindle: a panic inside a hooked C library call\n");
            std::process::abort()
        }
    }
}

/// `nanosleep`, `clock_nanosleep`, `usleep` and `sleep` on a fiber: a
/// timed park. A zero sleep yields (a kernel sleep of zero is a
/// scheduling point too). While the runtime shuts down, when a park
/// returns at once, the kernel sleeps instead, as without the hook.
fn sleep(duration: Duration) {
    let _ = guarded(|fiber| {
        if fiber.shared().is_shutdown() {
            crate::sys::interpose::sleep_blocking(duration);
        } else if duration.is_zero() {
            crate::yield_now();
        } else {
            crate::time::sleep(duration);
        }
        Ok(())
    });
}
