//! Networking for fibers: TCP, UDP and Unix-domain sockets with std's API.
//!
//! Each type mirrors its `std::net` / `std::os::unix::net` namesake:
//! same method names, same error kinds, `std::io::Read` and `Write` (also
//! on `&TcpStream` and `&UnixStream`, so one handle can be read and written
//! at once), so `BufReader`, `BufWriter` and `io::copy` work unchanged. The
//! difference is underneath: a call that would block **parks the calling
//! fiber** and its worker thread runs other fibers until the socket is
//! ready. Called from a plain thread (outside any fiber) the same call
//! blocks the thread, as std does.
//!
//! ```
//! use std::io::{Read, Write};
//! use spindle::net::{TcpListener, TcpStream};
//!
//! let rt = spindle::Runtime::new().unwrap();
//! rt.block_on(|| {
//!     let listener = TcpListener::bind("127.0.0.1:0").unwrap();
//!     let address = listener.local_addr().unwrap();
//!     let server = spindle::spawn(move || {
//!         let (mut stream, _) = listener.accept().unwrap();
//!         let mut buf = [0; 5];
//!         stream.read_exact(&mut buf).unwrap();
//!         stream.write_all(&buf).unwrap(); // echo
//!     });
//!     let mut client = TcpStream::connect(address).unwrap();
//!     client.write_all(b"hello").unwrap();
//!     let mut reply = [0; 5];
//!     client.read_exact(&mut reply).unwrap();
//!     assert_eq!(&reply, b"hello");
//!     server.join().unwrap();
//! });
//! ```
//!
//! # Where spindle differs from std
//! - **Timeouts** (`set_read_timeout`, `set_write_timeout`,
//!   `TcpStream::connect_timeout`) give `ErrorKind::TimedOut` when they run
//!   out (std gives `WouldBlock` on Unix and `TimedOut` on Windows).
//! - **`try_clone`** returns another handle to the *same* descriptor (std
//!   duplicates it). The socket closes when the last handle is dropped;
//!   `shutdown` affects all handles, as with std.
//! - **Host names** given to `TcpStream::connect`, `TcpListener::bind`,
//!   `UdpSocket::bind` and `UdpSocket::connect` are resolved on the blocking
//!   pool ([`crate::blocking`]), so a slow DNS server parks the fiber, not
//!   the worker. That is why those take `A: ToSocketAddrs + Send`.
//!   `UdpSocket::send_to`, called per datagram, resolves on the calling
//!   thread as std does: give it a `SocketAddr`, or resolve once with
//!   [`lookup_host`].
//! - **`accept` when out of descriptors** (`EMFILE`, `ENFILE`) sleeps a
//!   little before returning the error, twice as long each time in a row
//!   up to a cap (`ACCEPT_BACKOFF_MIN` and `ACCEPT_BACKOFF_MAX` in
//!   `io/net/mod.rs`), so a server loop that logs the error and calls
//!   `accept` again does not spin a core while connections wait in the
//!   kernel's backlog. **A server loop should log such errors and
//!   continue**, not exit: the condition passes when connections close.
//! - **`into_std`** fails with `ErrorKind::Other` while other handles
//!   (from `try_clone`) are alive: the std socket must be put back in
//!   blocking mode, which would block them.

mod tcp;
mod udp;
mod unix;

pub use tcp::{Incoming, TcpListener, TcpStream};
pub use udp::UdpSocket;
pub use unix::{UnixDatagram, UnixIncoming, UnixListener, UnixStream};

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Resolves `host` to socket addresses, like `ToSocketAddrs`, but in a
/// fiber the lookup (`getaddrinfo`, which may wait on a DNS server) runs on
/// the blocking pool and only the fiber waits.
///
/// ```
/// let rt = spindle::Runtime::new().unwrap();
/// let found = rt.block_on(|| spindle::net::lookup_host("localhost:80").unwrap());
/// assert!(found.iter().all(|a| a.port() == 80 && a.ip().is_loopback()));
/// ```
pub fn lookup_host<A: ToSocketAddrs + Send>(host: A) -> io::Result<Vec<SocketAddr>> {
    crate::blocking(move || host.to_socket_addrs().map(Iterator::collect))
}

/// Tries `f` on each address in turn; the last error if none works (std's
/// `each_addr`).
fn each_addr<T>(
    addresses: &[SocketAddr],
    mut f: impl FnMut(SocketAddr) -> io::Result<T>,
) -> io::Result<T> {
    let mut last = None;
    for &address in addresses {
        match f(address) {
            Ok(value) => return Ok(value),
            Err(error) => last = Some(error),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "could not resolve to any addresses",
        )
    }))
}

/// The shortest sleep after an `accept` that ran out of descriptors:
/// about the time a busy server takes to finish a request and close a
/// descriptor, so the first retry usually succeeds. A guess; Go's
/// `net/http` starts five times higher.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(1);

/// The longest: it bounds the extra latency of a connection that waits in
/// the backlog once descriptors are free. A guess, a tenth of Go's
/// `net/http` cap: a waiting fiber costs nothing, and one retry per
/// `ACCEPT_BACKOFF_MAX` is a handful of system calls a second.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_millis(100);

/// An accept's back-off state, shared by a listener's handles.
#[derive(Default)]
struct AcceptBackoff {
    /// The next sleep in nanoseconds; 0 after a success. Relaxed: clones
    /// that accept at once may share a step, which is harmless.
    next_nanos: AtomicU64,
}

impl AcceptBackoff {
    /// Runs after every accept: resets on success, sleeps (the fiber, or
    /// the thread) on running out of descriptors, and passes the result on.
    fn after<T>(&self, result: io::Result<T>) -> io::Result<T> {
        match &result {
            Ok(_) => {
                if self.next_nanos.load(Ordering::Relaxed) != 0 {
                    self.next_nanos.store(0, Ordering::Relaxed);
                }
            }
            Err(error) if crate::sys::poll::is_out_of_descriptors(error) => {
                let current = match self.next_nanos.load(Ordering::Relaxed) {
                    0 => ACCEPT_BACKOFF_MIN,
                    nanos => Duration::from_nanos(nanos),
                };
                let next = (current * 2).min(ACCEPT_BACKOFF_MAX);
                self.next_nanos
                    .store(next.as_nanos() as u64, Ordering::Relaxed);
                crate::time::sleep(current);
            }
            Err(_) => {}
        }
        result
    }
}

/// A socket whose readiness a [`Select`](crate::sync::Select) can wait
/// on, with [`Select::readable`](crate::sync::Select::readable) and
/// [`Select::writable`](crate::sync::Select::writable): every socket type
/// of this module, listeners included. Sealed: only they implement it.
///
/// ```
/// use spindle::net::{Selectable, TcpListener, UdpSocket};
///
/// fn watchable(_: &impl Selectable) {}
/// let rt = spindle::Runtime::new().unwrap();
/// rt.block_on(|| {
///     watchable(&TcpListener::bind("127.0.0.1:0").unwrap());
///     watchable(&UdpSocket::bind("127.0.0.1:0").unwrap());
/// });
/// ```
pub trait Selectable: sealed::Sealed {}

pub(crate) mod sealed {
    /// What [`Selectable`](super::Selectable) needs, out of users' reach.
    pub trait Sealed {
        /// The socket underneath, type-erased.
        fn watched(&self) -> &dyn crate::io::socket::Watched;
    }
}

/// The methods every socket type shares, listeners included, written
/// once: `take_error`, `try_clone`, conversion from and to std, and the
/// descriptor traits. `$type` is the spindle type, with a field `socket:
/// Arc<Socket<$mio>>` and any `$extra` fields (shared by clones, `Default`
/// at creation); `$std` is the std type, `$mio` the mio one.
macro_rules! common_socket_methods {
    ($type:ident, $std:ty, $mio:ty $(, $extra:ident)*) => {
        impl $type {
            fn wrap(source: $mio) -> $type {
                $type {
                    socket: std::sync::Arc::new(crate::io::socket::Socket::new(source)),
                    $($extra: Default::default(),)*
                }
            }

            /// Wraps a std socket, switching it to non-blocking mode
            /// underneath (calls on it still block the calling fiber or
            /// thread, as documented on the type).
            pub fn from_std(socket: $std) -> std::io::Result<$type> {
                socket.set_nonblocking(true)?;
                Ok($type::wrap(<$mio>::from_std(socket)))
            }

            /// The std socket, back in blocking mode. Fails with
            /// `ErrorKind::Other` while handles from `try_clone` are alive
            /// (switching the shared descriptor to blocking mode would
            /// block their fibers' workers).
            pub fn into_std(self) -> std::io::Result<$std> {
                let socket = std::sync::Arc::try_unwrap(self.socket).map_err(|_| {
                    std::io::Error::other("into_std: other handles to this socket are alive")
                })?;
                let mut socket = socket;
                socket.deregister();
                let std: $std = std::os::fd::OwnedFd::from(socket.source).into();
                std.set_nonblocking(false)?;
                Ok(std)
            }

            /// Another handle to the same socket (see the module docs:
            /// unlike std, not a duplicated descriptor). Never fails.
            pub fn try_clone(&self) -> std::io::Result<$type> {
                Ok($type {
                    socket: self.socket.clone(),
                    $($extra: self.$extra.clone(),)*
                })
            }

            /// Takes the socket's pending error (`SO_ERROR`), if any.
            pub fn take_error(&self) -> std::io::Result<Option<std::io::Error>> {
                self.socket.source.take_error()
            }
        }

        impl crate::io::net::Selectable for $type {}

        impl crate::io::net::sealed::Sealed for $type {
            fn watched(&self) -> &dyn crate::io::socket::Watched {
                &*self.socket
            }
        }

        impl std::os::fd::AsRawFd for $type {
            fn as_raw_fd(&self) -> std::os::fd::RawFd {
                self.socket.raw_fd()
            }
        }

        impl std::os::fd::AsFd for $type {
            fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
                self.socket.source.as_fd()
            }
        }

        impl std::fmt::Debug for $type {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($type))
                    .field("fd", &self.socket.raw_fd())
                    .finish_non_exhaustive()
            }
        }
    };
}

/// Read and write timeouts, std's methods on every socket type but the
/// listeners.
macro_rules! socket_timeouts {
    ($type:ident) => {
        impl $type {
            /// Sets how long a read may wait; `None` waits forever. A wait
            /// that runs out gives `ErrorKind::TimedOut`. `Some(ZERO)` is
            /// refused with `InvalidInput`, as in std.
            pub fn set_read_timeout(
                &self,
                timeout: Option<std::time::Duration>,
            ) -> std::io::Result<()> {
                self.socket
                    .set_timeout(crate::io::readiness::Direction::Read, timeout)
            }

            /// Sets how long a write may wait; as [`Self::set_read_timeout`].
            pub fn set_write_timeout(
                &self,
                timeout: Option<std::time::Duration>,
            ) -> std::io::Result<()> {
                self.socket
                    .set_timeout(crate::io::readiness::Direction::Write, timeout)
            }

            /// The read timeout.
            pub fn read_timeout(&self) -> std::io::Result<Option<std::time::Duration>> {
                Ok(self.socket.read_timeout())
            }

            /// The write timeout.
            pub fn write_timeout(&self) -> std::io::Result<Option<std::time::Duration>> {
                Ok(self.socket.write_timeout())
            }
        }
    };
}

/// `Read` and `Write` for a stream type and for a shared reference to it.
macro_rules! stream_read_write {
    ($type:ident, $mio:ty) => {
        impl std::io::Read for &$type {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let len = buf.len();
                self.socket.io_stream(
                    crate::io::readiness::Direction::Read,
                    len,
                    |mut source: &$mio| std::io::Read::read(&mut source, buf),
                )
            }

            fn read_vectored(
                &mut self,
                bufs: &mut [std::io::IoSliceMut<'_>],
            ) -> std::io::Result<usize> {
                self.socket.io(
                    crate::io::readiness::Direction::Read,
                    |mut source: &$mio| std::io::Read::read_vectored(&mut source, bufs),
                )
            }
        }

        impl std::io::Write for &$type {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.socket.io_stream(
                    crate::io::readiness::Direction::Write,
                    buf.len(),
                    |mut source: &$mio| std::io::Write::write(&mut source, buf),
                )
            }

            fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
                self.socket.io(
                    crate::io::readiness::Direction::Write,
                    |mut source: &$mio| std::io::Write::write_vectored(&mut source, bufs),
                )
            }

            fn flush(&mut self) -> std::io::Result<()> {
                Ok(()) // nothing is buffered here
            }
        }

        impl std::io::Read for $type {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                (&*self).read(buf)
            }

            fn read_vectored(
                &mut self,
                bufs: &mut [std::io::IoSliceMut<'_>],
            ) -> std::io::Result<usize> {
                (&*self).read_vectored(bufs)
            }
        }

        impl std::io::Write for $type {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                (&*self).write(buf)
            }

            fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
                (&*self).write_vectored(bufs)
            }

            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
    };
}

pub(crate) use {common_socket_methods, socket_timeouts, stream_read_write};

/// Waits for a non-blocking `connect` to finish: the operation for
/// `Socket::io_until(Direction::Write, ..)`. `WouldBlock` until the socket
/// has a peer; the connect's own error (refused, unreachable) if it failed.
fn connect_finished(
    take_error: impl FnOnce() -> io::Result<Option<io::Error>>,
    has_peer: impl FnOnce() -> io::Result<()>,
) -> io::Result<()> {
    if let Some(error) = take_error()? {
        return Err(error);
    }
    match has_peer() {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::NotConnected => {
            Err(io::ErrorKind::WouldBlock.into())
        }
        Err(error) => Err(error),
    }
}
