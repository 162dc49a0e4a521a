//! [`Socket`]: a non-blocking descriptor that blocks its *caller*, the
//! piece every `net` type is built on.
//!
//! An operation (`read`, `accept`, `send_to`, ...) is tried at once on the
//! non-blocking socket. If it would block, the caller waits for readiness
//! and tries again:
//! - **in a fiber**, through the reactor of the fiber's runtime: the socket
//!   is registered there at its first wait (not at creation: a socket made
//!   on a plain thread, or one that never blocks, costs no registration),
//!   and the fiber parks until the reactor sees an edge;
//! - **on a plain thread**, with `poll(2)` on the descriptor
//!   (`sys/poll.rs`): the thread blocks, as with a std socket.
//!
//! Timeouts are deadlines on the wait, counted from when the operation
//! first has to wait (so one that does not wait reads no clock); running
//! out gives `ErrorKind::TimedOut` (std gives `WouldBlock` or `TimedOut`
//! depending on the platform; spindle always says `TimedOut`).
//!
//! A socket stays registered with the runtime of the first fiber that
//! waited on it. A fiber of *another* runtime that waits on it blocks its
//! worker in `poll(2)`, as a plain thread would: correct, but slow; use
//! each socket from one runtime.
//!
//! The registration is dropped (deregistered) before the descriptor is
//! closed: the fields below are declared in that order.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::reactor::Registration;
use super::readiness::{Direction, ScheduledIo};
use crate::lock::MutexExt;

/// "No timeout" in the timeout fields.
const NO_TIMEOUT: u64 = 0;

/// What a select's readiness arm (`sync/select/readiness.rs`) needs of a
/// socket, whatever its mio type. Public in name only (this module is the
/// crate's), so that the sealed `net::Selectable` can hand it out.
pub trait Watched {
    /// The socket's readiness as the calling fiber's reactor sees it,
    /// registering the socket there if this is its first wait; `None` on
    /// a plain thread or in a fiber of another runtime (see
    /// [`Socket::registration_here`]).
    fn watch(&self) -> io::Result<Option<Watch<'_>>>;
}

/// A registered socket's readiness and descriptor, from [`Watched`].
pub struct Watch<'a> {
    pub(crate) io: &'a ScheduledIo,
    pub(crate) fd: RawFd,
}

impl<S: AsRawFd> Watched for Socket<S> {
    fn watch(&self) -> io::Result<Option<Watch<'_>>> {
        let registration = self.registration_here()?;
        Ok(registration.map(|registration| Watch {
            io: &registration.io,
            fd: self.raw_fd(),
        }))
    }
}

/// A non-blocking socket `S` (a mio socket) and its reactor registration.
pub(crate) struct Socket<S: AsRawFd> {
    /// Set at the first wait in a fiber; never changed after. Declared
    /// before `source`, so dropped (deregistered) before it is closed.
    registration: OnceLock<Registration>,
    /// Serializes the first registration between clones that wait at the
    /// same moment (two registrations of one descriptor would fail).
    registering: Mutex<()>,
    /// The socket, in non-blocking mode. Any thread, by shared reference.
    pub(crate) source: S,
    /// Read and write timeouts in nanoseconds (`NO_TIMEOUT` for none).
    /// Shared by clones, like std's `SO_RCVTIMEO`; Relaxed: a setting.
    read_timeout: AtomicU64,
    write_timeout: AtomicU64,
}

impl<S: AsRawFd> Socket<S> {
    /// Wraps a socket that is already non-blocking.
    pub(crate) fn new(source: S) -> Socket<S> {
        Socket {
            registration: OnceLock::new(),
            registering: Mutex::new(()),
            source,
            read_timeout: AtomicU64::new(NO_TIMEOUT),
            write_timeout: AtomicU64::new(NO_TIMEOUT),
        }
    }

    /// Runs `operation` until it does not return `WouldBlock`, waiting for
    /// `direction`'s readiness in between, with that direction's timeout.
    pub(crate) fn io<R>(
        &self,
        direction: Direction,
        operation: impl FnMut(&S) -> io::Result<R>,
    ) -> io::Result<R> {
        self.io_until(direction, || self.deadline(direction), operation, |_| false)
    }

    /// `io` for a stream `read` or `write` of `len` bytes: a transfer of
    /// fewer bytes than asked (but some) shows the kernel's buffer was
    /// drained (read) or filled (write) at that moment, so readiness is
    /// cleared then, with the same tick check as after `WouldBlock`, and
    /// the next call waits for an edge without first making a system call
    /// that would fail. tokio's `poll_read` does the same with epoll.
    /// Measured on the echo example: it removes the failing reads, a small
    /// saving under many connections (most reads find the next message
    /// already there), larger when connections are fewer and faster
    /// (figures in `docs/decisions.md`, "Short-transfer readiness clear").
    pub(crate) fn io_stream(
        &self,
        direction: Direction,
        len: usize,
        operation: impl FnMut(&S) -> io::Result<usize>,
    ) -> io::Result<usize> {
        self.io_until(
            direction,
            || self.deadline(direction),
            operation,
            |&n| n > 0 && n < len,
        )
    }

    fn deadline(&self, direction: Direction) -> Option<Instant> {
        self.timeout(direction)
            .and_then(|timeout| Instant::now().checked_add(timeout))
    }

    /// The loop under `io` and `io_stream`, with an explicit deadline
    /// (`connect_timeout` calls it directly), asked for only when the
    /// operation first has to wait: an operation that does not wait reads
    /// no clock. `drained` says whether a result proves the direction not
    /// ready any more.
    pub(crate) fn io_until<R>(
        &self,
        direction: Direction,
        deadline: impl FnOnce() -> Option<Instant>,
        mut operation: impl FnMut(&S) -> io::Result<R>,
        drained: impl Fn(&R) -> bool,
    ) -> io::Result<R> {
        let mut deadline = Some(deadline);
        let mut wait_until = None;
        loop {
            let observed = self.registration.get().map(|r| r.io.observe());
            // Known not ready (an operation proved it, and no edge came
            // since): wait, without the system call that would fail. Only
            // when the wait goes through the reactor: a plain thread waits
            // in poll(2), which would return at once on an edge the reactor
            // has not dispatched yet, and the thread would spin.
            let known_not_ready = match observed {
                Some(observed) if !observed.is_ready(direction) => {
                    self.registration_here()?.is_some()
                }
                _ => false,
            };
            if !known_not_ready {
                match operation(&self.source) {
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                    Ok(value) => {
                        if let (Some(observed), Some(registration)) =
                            (observed, self.registration.get())
                        {
                            if drained(&value) {
                                registration.io.clear(observed, direction);
                            }
                        }
                        return Ok(value);
                    }
                    Err(error) => return Err(error),
                }
            }
            if let Some(deadline) = deadline.take() {
                wait_until = deadline();
            }
            let ready = match self.registration_here()? {
                Some(registration) => {
                    // Only now is the readiness we saw proven stale.
                    if let Some(observed) = observed.filter(|_| !known_not_ready) {
                        registration.io.clear(observed, direction);
                    }
                    registration.io.wait(direction, wait_until)
                }
                None => crate::sys::poll::wait_fd(
                    self.source.as_raw_fd(),
                    direction == Direction::Write,
                    wait_until,
                )?,
            };
            if !ready {
                return Err(timed_out());
            }
        }
    }

    /// The registration to wait through: the calling fiber's runtime's
    /// (registering now if this is the first wait), or `None` on a plain
    /// thread or in a fiber of another runtime (wait with `poll(2)`).
    fn registration_here(&self) -> io::Result<Option<&Registration>> {
        let Some(fiber) = crate::fiber::try_current() else {
            return Ok(None);
        };
        let reactor = &fiber.inner.shared.reactor;
        let registration = match self.registration.get() {
            Some(registration) => registration,
            None => {
                let _guard = self.registering.lock_unpoisoned();
                match self.registration.get() {
                    Some(registration) => registration,
                    None => {
                        let registration = reactor.register(self.source.as_raw_fd())?;
                        self.registration.get_or_init(|| registration)
                    }
                }
            }
        };
        Ok(registration.is_in(reactor).then_some(registration))
    }

    /// Drops the registration (before `into_std`); the descriptor stays.
    pub(crate) fn deregister(&mut self) {
        self.registration.take();
    }

    fn timeout(&self, direction: Direction) -> Option<Duration> {
        let field = match direction {
            Direction::Read => &self.read_timeout,
            Direction::Write => &self.write_timeout,
        };
        match field.load(Ordering::Relaxed) {
            NO_TIMEOUT => None,
            nanos => Some(Duration::from_nanos(nanos)),
        }
    }

    /// std's `set_read_timeout` / `set_write_timeout`: `Some(ZERO)` is
    /// refused with `InvalidInput`, as std does.
    pub(crate) fn set_timeout(
        &self,
        direction: Direction,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        let nanos = match timeout {
            None => NO_TIMEOUT,
            Some(timeout) if timeout.is_zero() => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "cannot set a 0 duration timeout",
                ))
            }
            // At least 1 ns (0 means none); ~584 years at most.
            Some(timeout) => u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX).max(1),
        };
        let field = match direction {
            Direction::Read => &self.read_timeout,
            Direction::Write => &self.write_timeout,
        };
        field.store(nanos, Ordering::Relaxed);
        Ok(())
    }

    pub(crate) fn read_timeout(&self) -> Option<Duration> {
        self.timeout(Direction::Read)
    }

    pub(crate) fn write_timeout(&self) -> Option<Duration> {
        self.timeout(Direction::Write)
    }

    pub(crate) fn raw_fd(&self) -> RawFd {
        self.source.as_raw_fd()
    }
}

/// The error a wait that ran out of time gives.
pub(crate) fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "operation timed out")
}
