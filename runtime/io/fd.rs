//! [`Fd`]: any descriptor (a pipe, a terminal, an eventfd, an inotify
//! instance, a child's stdout) made fiber-aware.
//!
//! `Fd::new(inner)` puts the descriptor in non-blocking mode; reads and
//! writes through the wrapper then go through the same try / wait / retry
//! loop as every `spindle::net` socket (`io/socket.rs`): tried at once,
//! and when the kernel says `WouldBlock`, the calling fiber parks in the
//! reactor (registered at its first wait) or the plain thread blocks in
//! `poll(2)`, then the operation is tried again. So `Read`, `Write`,
//! `BufReader` and `io::copy` work on any descriptor as on a socket.
//!
//! # The wait underneath: `Socket<RawDescriptor>`
//! `Socket<S>` needs nothing of `S` but a descriptor number. This file gives
//! it one that owns nothing, [`RawDescriptor`], and keeps the owning `T`
//! beside it, so an operation may take `&mut T` (std's `Read` for `File`,
//! `ChildStdout`) while the loop holds the `Socket` by shared reference. The
//! same pair is all that other descriptor-level code needs to park a fiber
//! on a descriptor that would block: `process/` waits for a child's pidfd
//! this way, and a hook at the level of the C library's `read` can build a
//! `Socket<RawDescriptor>` for the descriptor it was handed and run the
//! call in its loop.
//!
//! # Readiness is cleared only by `WouldBlock`
//! Sockets also clear readiness after a short stream transfer
//! (`Socket::io_stream`). `Fd` does not: on a terminal in canonical mode a
//! read returns one line however much more is buffered, and an inotify or
//! eventfd read returns whole records, so a short read proves nothing, and
//! with edge-triggered epoll a wrongly cleared readiness would park the
//! reader until the next edge, which may never come.
//!
//! # `O_NONBLOCK` is shared
//! The flag lives on the open file description, which every duplicate of
//! the descriptor shares: a `dup`, the same descriptor in a child process,
//! the terminal a shell and its jobs read. While an `Fd` holds it, other
//! code reading a duplicate gets `WouldBlock` instead of blocking. `Fd`
//! remembers whether the flag was off and turns it off again when it is
//! dropped or [`into_inner`](Fd::into_inner) is called. Two `Fd`s over
//! duplicates of one description therefore interfere: the first to go turns
//! blocking mode back on under the other, whose reads then block their
//! worker (the hand-off monitor keeps the other fibers running, at a
//! spare thread's cost). Wrap one of them only.
//!
//! # Rejected
//! Per-call non-blocking flags instead of `O_NONBLOCK` (`MSG_DONTWAIT`,
//! `RWF_NOWAIT`): sockets alone honour the first, and pipes and terminals
//! not reliably the second. Regular files and directories cannot be
//! registered with epoll at all (`EPERM`); they never return `WouldBlock`
//! either, so reads and writes on them work (and block the worker as a
//! disk read does: use `spindle::fs`), while `readable` and `writable`
//! report the `EPERM`.

use std::fmt;
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

use super::readiness::Direction;
use super::socket::Socket;

/// A descriptor number for `Socket`, owning nothing: whoever made it keeps
/// the descriptor open for as long as the `Socket` lives, and drops the
/// `Socket` (which deregisters it) before closing it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RawDescriptor(pub(crate) RawFd);

impl AsRawFd for RawDescriptor {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// Puts `O_NONBLOCK` back off when dropped, if it was off when the `Fd`
/// was made. The descriptor is open meanwhile (the `Fd` owns it, in
/// `inner`, which is dropped after this).
struct BlockingMode {
    fd: RawFd,
    restore: bool,
}

impl Drop for BlockingMode {
    fn drop(&mut self) {
        if self.restore {
            // Nothing to do about a failure here (the descriptor is being
            // closed or handed back), and fcntl on an open descriptor
            // does not fail.
            let _ = crate::sys::fd::set_nonblocking(self.fd, false);
        }
    }
}

/// Any descriptor `T`, with operations that park the calling fiber (or
/// block the calling thread) instead of blocking its worker.
///
/// std calls these file descriptors (`AsRawFd`, `OwnedFd`), hence the
/// name; nothing about it is `async`: its methods block their caller as
/// std's do. (`async-io` and `tokio` call the future-returning equivalent
/// `Async<T>` and `AsyncFd<T>`.)
///
/// `Read` and `Write` are implemented when `T` has them, and on `&Fd<T>`
/// when `&T` has them (`File`, `UnixStream`), so one `Fd` can be read and
/// written from two fibers at once. [`readable`](Fd::readable) and
/// [`writable`](Fd::writable) wait without transferring anything, and
/// [`read_with`](Fd::read_with) / [`write_with`](Fd::write_with) run any
/// call on `&T` in the same loop (an `ioctl`, a `recvmsg`). Timeouts work
/// as on the `spindle::net` sockets: a wait that runs out gives
/// `ErrorKind::TimedOut`.
///
/// `Fd::new` sets `O_NONBLOCK` on the descriptor, which duplicates of it
/// share; it is turned off again when the `Fd` goes (the module docs in
/// `io/fd.rs` say what that means for code sharing the descriptor). The
/// descriptor is registered with the reactor of the first fiber that waits
/// on it, and stays with that runtime; a fiber of another runtime waiting
/// on it blocks its worker in `poll(2)`.
///
/// ```
/// use std::io::{Read, Write};
/// use std::process::{Command, Stdio};
/// use spindle::io::Fd;
///
/// let rt = spindle::Runtime::new().unwrap();
/// let text = rt.block_on(|| {
///     // A std child's stdout, read without holding the worker.
///     let mut child = Command::new("echo").arg("hello").stdout(Stdio::piped()).spawn().unwrap();
///     let mut stdout = Fd::new(child.stdout.take().unwrap()).unwrap();
///     let mut text = String::new();
///     stdout.read_to_string(&mut text).unwrap();
///     child.wait().unwrap();
///     text
/// });
/// assert_eq!(text, "hello\n");
/// ```
pub struct Fd<T: AsRawFd> {
    /// The wait loop and the reactor registration. Declared first, so it
    /// is dropped (deregistered) while the descriptor is still open.
    socket: Socket<RawDescriptor>,
    /// Declared before `inner`: blocking mode goes back on before the
    /// descriptor closes.
    mode: BlockingMode,
    /// The descriptor's owner. Any thread, by shared reference; by `&mut`
    /// only through `&mut Fd`.
    inner: T,
}

impl<T: AsRawFd> Fd<T> {
    /// Wraps `inner`, switching its descriptor to non-blocking mode.
    ///
    /// # Errors
    /// If the descriptor's flags cannot be read or set (`fcntl`), for
    /// example because it is not open.
    pub fn new(inner: T) -> io::Result<Fd<T>> {
        let fd = inner.as_raw_fd();
        let was_nonblocking = crate::sys::fd::set_nonblocking(fd, true)?;
        Ok(Fd {
            socket: Socket::new(RawDescriptor(fd)),
            mode: BlockingMode {
                fd,
                restore: !was_nonblocking,
            },
            inner,
        })
    }

    /// The wrapped value. Calls on it do not wait for readiness: with the
    /// descriptor non-blocking, they may return `WouldBlock`.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// Unwraps the value, deregistered, with its blocking mode as it was
    /// when the `Fd` was made.
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// use std::os::unix::net::UnixStream;
    /// let (left, mut right) = UnixStream::pair().unwrap();
    /// let mut left = spindle::io::Fd::new(left).unwrap().into_inner();
    /// let writer = std::thread::spawn(move || right.write_all(b"x").unwrap());
    /// // Blocking again: this read waits for the writer instead of failing
    /// // with `WouldBlock`.
    /// left.read_exact(&mut [0; 1]).unwrap();
    /// writer.join().unwrap();
    /// ```
    pub fn into_inner(self) -> T {
        let Fd {
            socket,
            mode,
            inner,
        } = self;
        drop(socket);
        drop(mode);
        inner
    }

    /// Waits until the descriptor is readable (or has an error or hang-up,
    /// which the next read reports), for at most the read timeout. Takes
    /// no data.
    ///
    /// # Errors
    /// `TimedOut` when the read timeout runs out; `EPERM` for a descriptor
    /// epoll cannot watch (a regular file).
    ///
    /// ```
    /// use std::io::Write;
    /// use std::os::unix::net::UnixStream;
    /// let rt = spindle::Runtime::new().unwrap();
    /// rt.block_on(|| {
    ///     let (left, right) = UnixStream::pair().unwrap();
    ///     let left = spindle::io::Fd::new(left).unwrap();
    ///     let writer = spindle::spawn(move || (&right).write_all(b"x").unwrap());
    ///     left.readable().unwrap(); // parks until the byte is there
    ///     writer.join().unwrap();
    /// });
    /// ```
    pub fn readable(&self) -> io::Result<()> {
        self.ready(Direction::Read)
    }

    /// Waits until the descriptor is writable (or has an error or hang-up),
    /// for at most the write timeout. Writes nothing.
    ///
    /// # Errors
    /// As [`Fd::readable`], with the write timeout.
    ///
    /// ```
    /// use std::os::unix::net::UnixStream;
    /// let (left, _right) = UnixStream::pair().unwrap();
    /// let left = spindle::io::Fd::new(left).unwrap();
    /// left.writable().unwrap(); // an empty socket buffer: at once
    /// ```
    pub fn writable(&self) -> io::Result<()> {
        self.ready(Direction::Write)
    }

    fn ready(&self, direction: Direction) -> io::Result<()> {
        let write = direction == Direction::Write;
        self.socket.io(direction, |descriptor| {
            if crate::sys::fd::is_ready(descriptor.0, write)? {
                Ok(())
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            }
        })
    }

    /// Runs `operation` on the wrapped value until it returns something
    /// other than `WouldBlock`, waiting for readability in between (for at
    /// most the read timeout). For calls `Read` does not cover.
    ///
    /// # Errors
    /// `operation`'s error, or `TimedOut`.
    ///
    /// ```
    /// use std::os::unix::net::UnixDatagram;
    /// let rt = spindle::Runtime::new().unwrap();
    /// rt.block_on(|| {
    ///     let (left, right) = UnixDatagram::pair().unwrap();
    ///     let left = spindle::io::Fd::new(left).unwrap();
    ///     let sender = spindle::spawn(move || right.send(b"datagram").unwrap());
    ///     let mut buf = [0; 16];
    ///     // Parks until a datagram is there, then takes it with its sender.
    ///     let (len, _from) = left.read_with(|socket| socket.recv_from(&mut buf)).unwrap();
    ///     assert_eq!(&buf[..len], b"datagram");
    ///     sender.join().unwrap();
    /// });
    /// ```
    pub fn read_with<R>(&self, mut operation: impl FnMut(&T) -> io::Result<R>) -> io::Result<R> {
        let inner = &self.inner;
        self.socket.io(Direction::Read, |_| operation(inner))
    }

    /// As [`Fd::read_with`], waiting for writability (and the write
    /// timeout).
    ///
    /// # Errors
    /// `operation`'s error, or `TimedOut`.
    ///
    /// ```
    /// use std::io::Write;
    /// use std::os::unix::net::UnixStream;
    /// let (left, _right) = UnixStream::pair().unwrap();
    /// let left = spindle::io::Fd::new(left).unwrap();
    /// let sent = left.write_with(|mut socket| socket.write(b"hi")).unwrap();
    /// assert_eq!(sent, 2);
    /// ```
    pub fn write_with<R>(&self, mut operation: impl FnMut(&T) -> io::Result<R>) -> io::Result<R> {
        let inner = &self.inner;
        self.socket.io(Direction::Write, |_| operation(inner))
    }

    /// Sets how long a read (or `readable`, or `read_with`) may wait;
    /// `None` waits forever. A wait that runs out gives
    /// `ErrorKind::TimedOut`.
    ///
    /// # Errors
    /// `Some(Duration::ZERO)` is refused with `InvalidInput`, as std's
    /// sockets do.
    ///
    /// ```
    /// use std::io::{ErrorKind, Read};
    /// use std::time::Duration;
    /// let (left, _right) = std::os::unix::net::UnixStream::pair().unwrap();
    /// let mut left = spindle::io::Fd::new(left).unwrap();
    /// left.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
    /// let error = left.read(&mut [0; 1]).unwrap_err(); // nobody writes
    /// assert_eq!(error.kind(), ErrorKind::TimedOut);
    /// ```
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.socket.set_timeout(Direction::Read, timeout)
    }

    /// Sets how long a write (or `writable`, or `write_with`) may wait; as
    /// [`Fd::set_read_timeout`].
    ///
    /// # Errors
    /// As [`Fd::set_read_timeout`].
    ///
    /// ```
    /// use std::time::Duration;
    /// let (left, _right) = std::os::unix::net::UnixStream::pair().unwrap();
    /// let left = spindle::io::Fd::new(left).unwrap();
    /// left.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
    /// assert_eq!(left.write_timeout(), Some(Duration::from_secs(1)));
    /// ```
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.socket.set_timeout(Direction::Write, timeout)
    }

    /// The read timeout.
    ///
    /// ```
    /// let (left, _right) = std::os::unix::net::UnixStream::pair().unwrap();
    /// assert_eq!(spindle::io::Fd::new(left).unwrap().read_timeout(), None);
    /// ```
    pub fn read_timeout(&self) -> Option<Duration> {
        self.socket.read_timeout()
    }

    /// The write timeout.
    ///
    /// ```
    /// let (left, _right) = std::os::unix::net::UnixStream::pair().unwrap();
    /// assert_eq!(spindle::io::Fd::new(left).unwrap().write_timeout(), None);
    /// ```
    pub fn write_timeout(&self) -> Option<Duration> {
        self.socket.write_timeout()
    }
}

impl<T: AsRawFd + Read> Read for Fd<T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let inner = &mut self.inner;
        self.socket.io(Direction::Read, |_| inner.read(buf))
    }

    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        let inner = &mut self.inner;
        self.socket
            .io(Direction::Read, |_| inner.read_vectored(bufs))
    }
}

impl<T: AsRawFd + Write> Write for Fd<T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let inner = &mut self.inner;
        self.socket.io(Direction::Write, |_| inner.write(buf))
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let inner = &mut self.inner;
        self.socket
            .io(Direction::Write, |_| inner.write_vectored(bufs))
    }

    fn flush(&mut self) -> io::Result<()> {
        let inner = &mut self.inner;
        self.socket.io(Direction::Write, |_| inner.flush())
    }
}

impl<'a, T: AsRawFd> Read for &'a Fd<T>
where
    &'a T: Read,
{
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let fd: &'a Fd<T> = self;
        let mut inner = &fd.inner;
        fd.socket.io(Direction::Read, |_| inner.read(buf))
    }

    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        let fd: &'a Fd<T> = self;
        let mut inner = &fd.inner;
        fd.socket.io(Direction::Read, |_| inner.read_vectored(bufs))
    }
}

impl<'a, T: AsRawFd> Write for &'a Fd<T>
where
    &'a T: Write,
{
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let fd: &'a Fd<T> = self;
        let mut inner = &fd.inner;
        fd.socket.io(Direction::Write, |_| inner.write(buf))
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let fd: &'a Fd<T> = self;
        let mut inner = &fd.inner;
        fd.socket
            .io(Direction::Write, |_| inner.write_vectored(bufs))
    }

    fn flush(&mut self) -> io::Result<()> {
        let fd: &'a Fd<T> = self;
        let mut inner = &fd.inner;
        fd.socket.io(Direction::Write, |_| inner.flush())
    }
}

impl<T: AsRawFd> AsRawFd for Fd<T> {
    fn as_raw_fd(&self) -> RawFd {
        self.mode.fd
    }
}

impl<T: AsRawFd + AsFd> AsFd for Fd<T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

impl<T: AsRawFd + fmt::Debug> fmt::Debug for Fd<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fd")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}
