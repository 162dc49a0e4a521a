//! Readiness arms: a [`Select`] arm that is ready when a socket of
//! [`spindle::net`](crate::net) is readable (a listener: a connection is
//! waiting to be accepted) or writable.
//!
//! # Design
//! A signal arm (`arms.rs`): it queues a node of the select's waiter on the
//! socket's wait list for its direction (`io/readiness.rs`), as a fiber
//! blocked in `read` or `accept` does, and the reactor's next event for
//! that direction wakes the select, which sees the readiness bit set and
//! takes the arm. The reactor wakes every waiter of a direction on each
//! event, so a select that chose another arm owes the event to nobody: it
//! takes its node out and the readiness stays remembered for the next
//! party.
//!
//! Readiness is remembered until an operation proves it stale, so a
//! remembered bit may be old (data read since, a connection accepted).
//! Before the poll (step 2), a readiness arm whose bit is set asks the
//! kernel whether it is still true, with a `poll(2)` that does not wait,
//! outside the channels' locks; if not, it clears the bit (with the tick
//! check every clear makes, so an event in between survives) and waits for
//! the next edge. A win is still a hint, as any readiness is: another
//! party may take the data or the connection first, and the operation
//! that follows then waits.
//!
//! A socket is registered with the reactor of the first fiber that waits
//! on it; a readiness arm waits only through that reactor. From a plain
//! thread, or a fiber of another runtime, the arm is ready at once with an
//! `ErrorKind::Unsupported` error that says so.
//!
//! Each wait queues a fresh node on the socket's list (the select's own
//! node is its waiter's one kept node), so a readiness arm allocates once
//! per wait; a channel, join or timer arm does not.

use std::cell::Cell;
use std::io;
use std::sync::Arc;

use super::arms::{Arm, Start};
use super::Select;
use crate::io::readiness::Direction;
use crate::io::socket::{Watch, Watched};
use crate::net::Selectable;
use crate::sync::mpsc::Resolution;
use crate::sync::spin_lock::RawSpinLock;
use crate::sync::waitlist::{Node, WaitList};

impl<'a, R> Select<'a, R> {
    /// Adds an arm that is ready when `socket` is readable: data (or a
    /// datagram) is there to read, the peer has closed its side, or an
    /// error is pending; on a listener, a connection is waiting to be
    /// accepted. If chosen, `handler` gets `Ok(())`, and the read or
    /// `accept` that follows probably does not wait (another party may
    /// take the data first: readiness is a hint). In a fiber of a runtime
    /// other than the one the socket waits through, or on a plain thread,
    /// the arm is ready at once with an `ErrorKind::Unsupported` error.
    ///
    /// ```
    /// use std::time::Duration;
    /// use spindle::net::{TcpListener, TcpStream};
    /// use spindle::sync::Select;
    ///
    /// let rt = spindle::Runtime::new().unwrap();
    /// rt.block_on(|| {
    ///     let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    ///     let address = listener.local_addr().unwrap();
    ///     let mut select = Select::new()
    ///         .readable(&listener, |ready| ready.map(|()| "connection"))
    ///         .timeout(Duration::from_millis(5), || Ok("nothing yet"));
    ///     assert_eq!(select.wait().unwrap(), "nothing yet");
    ///     let _client = TcpStream::connect(address).unwrap();
    ///     assert_eq!(select.wait().unwrap(), "connection");
    ///     drop(select);
    ///     listener.accept().unwrap(); // waiting: returns at once
    /// });
    /// ```
    pub fn readable(
        self,
        socket: &'a impl Selectable,
        handler: impl FnMut(io::Result<()>) -> R + 'a,
    ) -> Select<'a, R> {
        self.with(ReadinessArm::new(
            socket.watched(),
            Direction::Read,
            handler,
        ))
    }

    /// Adds an arm that is ready when `socket` is writable: there is room
    /// in its send buffer (a connecting stream: the connection is made or
    /// has failed), or an error is pending. Otherwise as
    /// [`Select::readable`].
    ///
    /// ```
    /// use spindle::net::UdpSocket;
    /// use spindle::sync::Select;
    ///
    /// let rt = spindle::Runtime::new().unwrap();
    /// rt.block_on(|| {
    ///     let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    ///     let ready = Select::new().writable(&socket, |ready| ready.is_ok()).wait();
    ///     assert!(ready); // an idle socket has room
    /// });
    /// ```
    pub fn writable(
        self,
        socket: &'a impl Selectable,
        handler: impl FnMut(io::Result<()>) -> R + 'a,
    ) -> Select<'a, R> {
        self.with(ReadinessArm::new(
            socket.watched(),
            Direction::Write,
            handler,
        ))
    }
}

struct ReadinessArm<'a, F> {
    socket: &'a dyn Watched,
    direction: Direction,
    /// This wait's view of the socket, from `prepare`.
    watch: Option<Watch<'a>>,
    /// Set by `prepare`: ready now (kernel-checked), or an error.
    outcome: Option<io::Result<()>>,
    /// The node queued on the socket's wait list, from `register` to
    /// `deregister`; only the select's own thread touches the cell.
    queued: Cell<Option<Arc<Node>>>,
    handler: F,
}

impl<'a, F> ReadinessArm<'a, F> {
    fn new(socket: &'a dyn Watched, direction: Direction, handler: F) -> ReadinessArm<'a, F> {
        ReadinessArm {
            socket,
            direction,
            watch: None,
            outcome: None,
            queued: Cell::new(None),
            handler,
        }
    }

    /// Whether the socket is ready now, its remembered readiness checked
    /// with the kernel (module docs); `None`: not ready.
    fn ready_now(&self, watch: &Watch<'_>) -> Option<io::Result<()>> {
        let observed = watch.io.observe();
        if !observed.is_ready(self.direction) {
            return None;
        }
        let write = self.direction == Direction::Write;
        match crate::sys::poll::is_ready_now(watch.fd, write) {
            Ok(true) => Some(Ok(())),
            Ok(false) => {
                watch.io.clear(observed, self.direction);
                None
            }
            Err(error) => Some(Err(error)),
        }
    }
}

impl<'a, R, F: FnMut(io::Result<()>) -> R> Arm<'a, R> for ReadinessArm<'a, F> {
    fn lock(&self) -> Option<&'a RawSpinLock> {
        None
    }

    fn prepare(&mut self, _: &mut Start) -> bool {
        let socket: &'a dyn Watched = self.socket;
        self.watch = None;
        self.outcome = match socket.watch() {
            Ok(Some(watch)) => {
                let ready = self.ready_now(&watch);
                self.watch = Some(watch);
                ready
            }
            Ok(None) => Some(Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a Select waits on a socket's readiness only in a fiber of the runtime \
                 the socket waits through (this is a plain thread, or another runtime)",
            ))),
            Err(error) => Some(Err(error)),
        };
        true
    }

    unsafe fn try_complete(&mut self, _: &mut Vec<Resolution>) -> bool {
        self.outcome.is_some()
    }

    unsafe fn register(&self, _: &Node, _: u32) {
        let watch = self
            .watch
            .as_ref()
            .expect("a readiness arm waits with a watch");
        // None: ready since `prepare`; `signalled` sees the bit.
        self.queued.set(watch.io.queue(self.direction));
    }

    fn signalled(&self) -> bool {
        self.watch
            .as_ref()
            .is_some_and(|watch| watch.io.is_ready(self.direction))
    }

    fn deregister(&self, _: &Node, _: u32) {
        if let (Some(node), Some(watch)) = (self.queued.take(), self.watch.as_ref()) {
            watch.io.unqueue(self.direction, &node);
            WaitList::recycle(node);
        }
    }

    unsafe fn settle(&mut self, _: bool) {
        unreachable!("a readiness arm is never resolved by another party");
    }

    fn finish(&mut self) -> R {
        let outcome = self.outcome.take().unwrap_or(Ok(()));
        (self.handler)(outcome)
    }
}
