//! The hooked calls on a fiber: reads and writes, `accept`, `connect` and
//! `poll`, each tried without blocking and retried after a park.
//!
//! Two ways to try a call without blocking:
//! - **Sockets**: the call itself with `MSG_DONTWAIT` (`Call::attempt`),
//!   one system call when it can proceed.
//! - **Everything else** (pipes, terminals, eventfd, and `accept`, which
//!   has no such flag): a zero-timeout `poll`, then the call as made once
//!   the descriptor is ready. Two system calls; and if another party takes
//!   the data between the two, the call blocks its worker as it would
//!   without the hook (the hand-off monitor's case).
//!
//! Only when a call would block does it look at the descriptor's
//! `O_NONBLOCK` flag: set (by the program or a library), the call returns
//! `EAGAIN` as the kernel's would, and the descriptor's waits are dropped
//! (so that a `spindle` type wrapping it next registers it afresh). Off,
//! the fiber waits in the descriptor's `Socket` loop (`waits.rs`) for
//! readiness, with the socket's `SO_RCVTIMEO` / `SO_SNDTIMEO` as the
//! deadline; running out gives `EAGAIN` (`EINPROGRESS` for `connect`),
//! the kernel's errors for those timeouts.
//!
//! The kernel's blocking send on a stream socket returns only when every
//! byte is queued (or on an error or timeout, with the count so far), and
//! `recv` with `MSG_WAITALL` only when the buffer is full: the loops here
//! do the same, so code written for blocking sockets sees no short
//! transfers it would not have seen.

use std::io;
use std::time::{Duration, Instant};

use super::super::readiness::Direction;
use super::waits::{self, Waits};
use super::{guarded, Errno};
use crate::fiber::CurrentFiber;
use crate::sys::interpose::{self as sys, Accept, Call, Connect, Kind, Poll};

/// Where the fiber side gives up waiting: the runtime is shutting down
/// (or this fiber's cancellation was caught), so a park would return at
/// once and the wait would spin.
fn shutting_down(fiber: CurrentFiber) -> bool {
    fiber.shared().is_shutdown()
}

fn direction(write: bool) -> Direction {
    if write {
        Direction::Write
    } else {
        Direction::Read
    }
}

/// A count of bytes moved before an error: the count if any, else the
/// error (as the kernel reports a transfer cut short).
fn partial(done: usize, error: Errno) -> Result<usize, Errno> {
    if done > 0 {
        Ok(done)
    } else {
        Err(error)
    }
}

/// A read or write family call on a socket or pollable descriptor.
pub(super) fn transfer(call: &Call) -> Result<usize, Errno> {
    guarded(|fiber| {
        if call.kind().is_socket() {
            socket_transfer(call, fiber)
        } else {
            pollable_transfer(call, fiber)
        }
    })
}

fn socket_transfer(call: &Call, fiber: CurrentFiber) -> Result<usize, Errno> {
    let len = call.len();
    if len == 0 || call.caller_nonblocking() {
        return call.kernel();
    }
    let fd = call.fd();
    let direction = direction(call.is_write());
    // A stream transfer that came up short last time shows the kernel's
    // buffer was drained (or full) then: skip the attempt that would fail
    // and go to the wait, whose loop tries again if an edge came since
    // (the rule `Socket::io_stream` follows for `spindle::net`).
    let known = (call.kind() == Kind::Stream)
        .then(|| waits::existing(fd, fiber))
        .flatten();
    let mut done = 0;
    if !known.as_ref().is_some_and(|w| w.came_up_short(direction)) {
        done = match call.attempt(0) {
            Ok(n) if !call.moves_all() || n == len || n == 0 => {
                if let Some(waits) = &known {
                    waits.record(direction, n > 0 && n < len);
                }
                return Ok(n);
            }
            Ok(n) => n,
            Err(Errno::EAGAIN) => 0,
            Err(Errno::ENOTSOCK) => {
                // A stale kind: the number names another file now.
                sys::forget_kind(fd);
                return call.kernel();
            }
            Err(error) => return Err(error),
        };
    }
    if sys::is_nonblocking(fd)? {
        waits::forget(fd);
        return partial(done, Errno::EAGAIN);
    }
    let Some(waits) = known.or_else(|| waits::get(fd, fiber, true)) else {
        return if done == 0 { call.kernel() } else { Ok(done) };
    };
    let deadline = waits.deadline(direction);
    loop {
        if shutting_down(fiber) {
            return partial(done, Errno::ECANCELED);
        }
        let asked = len - done;
        let result = waits.socket.io_until(
            direction,
            move || deadline,
            |_| would_block(call.attempt(done)),
            // A short stream transfer shows the buffer drained (or full).
            |result| call.kind() == Kind::Stream && matches!(result, Ok(n) if *n > 0 && *n < asked),
        );
        match result {
            Ok(Ok(n)) => {
                if call.kind() == Kind::Stream {
                    waits.record(direction, n > 0 && n < asked);
                }
                done += n;
                if !call.moves_all() || done == len || n == 0 {
                    return Ok(done);
                }
            }
            Ok(Err(error)) => return partial(done, error),
            Err(error) if error.kind() == io::ErrorKind::TimedOut => {
                return partial(done, Errno::EAGAIN)
            }
            // The registration failed: the rest goes to the kernel.
            Err(_) => return if done == 0 { call.kernel() } else { Ok(done) },
        }
    }
}

/// A non-blocking attempt's result for `Socket::io_until`: `EAGAIN` is
/// its `WouldBlock`, every other outcome ends the loop.
fn would_block<T>(result: Result<T, Errno>) -> io::Result<Result<T, Errno>> {
    match result {
        Err(Errno::EAGAIN) => Err(io::ErrorKind::WouldBlock.into()),
        other => Ok(other),
    }
}

fn pollable_transfer(call: &Call, fiber: CurrentFiber) -> Result<usize, Errno> {
    let fd = call.fd();
    let write = call.is_write();
    if call.len() == 0 || sys::is_ready(fd, write) {
        return call.kernel();
    }
    if sys::is_nonblocking(fd)? {
        waits::forget(fd);
        return call.kernel();
    }
    let Some(waits) = waits::get(fd, fiber, false) else {
        return call.kernel();
    };
    ready_then(fd, &waits, write, None, fiber, || call.kernel())
}

/// Waits until `fd` is ready for `write` (or reading), then makes `call`;
/// `EAGAIN` if `deadline` passes first. If the descriptor cannot be
/// registered, blocks the worker in `poll(2)` instead.
fn ready_then<T>(
    fd: i32,
    waits: &Waits,
    write: bool,
    deadline: Option<Instant>,
    fiber: CurrentFiber,
    call: impl Fn() -> Result<T, Errno>,
) -> Result<T, Errno> {
    if shutting_down(fiber) {
        return Err(Errno::ECANCELED);
    }
    let result = waits.socket.io_until(
        direction(write),
        move || deadline,
        |_| {
            if sys::is_ready(fd, write) {
                Ok(call())
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            }
        },
        |_| false,
    );
    match result {
        Ok(result) => result,
        Err(error) if error.kind() == io::ErrorKind::TimedOut => Err(Errno::EAGAIN),
        Err(_) => {
            let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if sys::wait_blocking(fd, write, timeout) {
                call()
            } else {
                Err(Errno::EAGAIN)
            }
        }
    }
}

/// `accept` / `accept4` on a socket: waits for a connection to take.
pub(super) fn accept(call: &Accept) -> Result<usize, Errno> {
    guarded(|fiber| {
        let fd = call.fd();
        if sys::is_ready(fd, false) {
            return call.kernel();
        }
        if sys::is_nonblocking(fd)? {
            waits::forget(fd);
            return call.kernel();
        }
        let Some(waits) = waits::get(fd, fiber, true) else {
            return call.kernel();
        };
        let deadline = waits.deadline(Direction::Read);
        ready_then(fd, &waits, false, deadline, fiber, || call.kernel())
    })
}

/// `connect` on a blocking stream socket: starts the handshake without
/// blocking and waits for it to finish.
pub(super) fn connect(call: &Connect) -> Result<(), Errno> {
    guarded(|fiber| {
        let fd = call.fd();
        if sys::is_nonblocking(fd)? {
            return call.kernel();
        }
        match sys::connect_nonblocking(call) {
            Err(Errno::EINPROGRESS) => {}
            finished => return finished,
        }
        let Some(waits) = waits::get(fd, fiber, true) else {
            let _ = sys::wait_blocking(fd, true, None);
            return sys::pending_error(fd)?.map_or(Ok(()), Err);
        };
        let deadline = waits.deadline(Direction::Write);
        match ready_then(fd, &waits, true, deadline, fiber, || sys::pending_error(fd)) {
            Ok(None) => Ok(()),
            Ok(Some(error)) => Err(error),
            // The send timeout ran out: the kernel's report for a
            // blocking connect it cut short.
            Err(Errno::EAGAIN) => Err(Errno::EINPROGRESS),
            Err(error) => Err(error),
        }
    })
}

/// `poll` with a timeout: one descriptor waited for in one direction
/// parks the fiber on the reactor; anything else (several descriptors,
/// both directions, priority events) runs on the blocking pool while the
/// fiber parks.
pub(super) fn poll(call: &Poll) -> Result<usize, Errno> {
    guarded(|fiber| {
        let ready = call.probe()?;
        if ready > 0 {
            return Ok(ready);
        }
        let deadline = call.timeout().and_then(|t| Instant::now().checked_add(t));
        if let Some((fd, write)) = call.single() {
            let kind = sys::kind(fd);
            let waits = (kind != Kind::Plain)
                .then(|| waits::get(fd, fiber, kind.is_socket()))
                .flatten();
            if let Some(waits) = waits {
                if shutting_down(fiber) {
                    return Err(Errno::ECANCELED);
                }
                let result = waits.socket.io_until(
                    direction(write),
                    move || deadline,
                    |_| match call.probe() {
                        Ok(0) => Err(io::ErrorKind::WouldBlock.into()),
                        other => Ok(other),
                    },
                    |_| false,
                );
                match result {
                    Ok(result) => return result,
                    // The last probe left every `revents` zero.
                    Err(error) if error.kind() == io::ErrorKind::TimedOut => return Ok(0),
                    Err(_) => {}
                }
            }
        }
        if call.is_empty() {
            // No descriptors: a sleep.
            crate::time::sleep(call.timeout().unwrap_or(Duration::MAX));
            return Ok(0);
        }
        crate::blocking::blocking(|| call.kernel())
    })
}
