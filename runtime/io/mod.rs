//! I/O that parks the fiber, not the thread: sockets (`spindle::net`) and
//! any other descriptor ([`Fd`]).
//!
//! A fiber calls `stream.read(&mut buf)` as it would on a std socket; the
//! socket underneath is non-blocking, and when the kernel has nothing, the
//! fiber parks and its worker runs other fibers until the reactor sees the
//! socket become readable. This module is the only code that touches mio.
//!
//! # The pieces
//! - `reactor.rs`: one `mio::Poll` per runtime; the slab of registrations
//!   (tokens carry a generation, so a stale event never reaches a socket
//!   that reused a slot); the poll that turns events into unparked fibers;
//!   and **how a worker sleeps in epoll**: an idle worker holding the
//!   poller's lock waits in `epoll_wait` with its earliest timer as the
//!   timeout, and its `Unparker` interrupts it through a `mio::Waker`;
//!   busy workers and the monitor poll without blocking now and then.
//! - `readiness.rs`: one socket's readiness word (bits plus a tick, so an
//!   edge that arrives during an operation is not cleared by it) and its
//!   waiters, one `sync::WaitList` per direction (fibers and plain threads
//!   alike).
//! - `socket.rs`: the try / wait / retry loop every operation runs, with
//!   timeouts; registration at the first wait; `poll(2)` on plain threads.
//! - `net/`: the public types of `spindle::net` (TCP, UDP, Unix sockets).
//! - `fd.rs`: [`Fd`], any other descriptor (pipes, terminals, eventfd,
//!   inotify, a child's stdio) through the same loop, `spindle::io::Fd`.
//! - `interpose/` (the `interpose` Cargo feature): the fiber side of the
//!   C library hooks of `sys/interpose/`, which run std's own blocking
//!   socket and pipe calls through the same loop, on descriptors the
//!   program never wrapped.
//!
//! # No lost wake-up, no double wake-up
//! Readiness is cleared only by an operation that returned `WouldBlock`,
//! and only if no event came since it looked (the tick); a waiter checks
//! readiness under its wait list's lock, and the reactor sets readiness
//! before taking that lock. So an edge is either seen by the waiter's check
//! or wakes the waiter. Each waiter's node is popped by exactly one wake-up.
//!
//! # Drop
//! A socket deregisters (epoll `DEL`, slab slot freed, generation bumped)
//! when its last handle is dropped, before its descriptor is closed. A
//! fiber unwound while it waits (shutdown) removes its wait-list node on
//! the way out (`WaitList::wait`'s guard), and its socket, dropped by the
//! same unwind, deregisters: `ShutdownReport::io_registrations` counts what
//! is left (zero unless a socket outlives the runtime).

pub(crate) mod fd;
#[cfg(feature = "interpose")]
pub(crate) mod interpose;
// Public as `spindle::net` (lib.rs); hidden here so it is documented once.
#[doc(hidden)]
pub mod net;
pub(crate) mod reactor;
pub(crate) mod readiness;
pub(crate) mod socket;

pub use fd::Fd;
pub(crate) use reactor::{Reactor, POLL_INTERVAL};
