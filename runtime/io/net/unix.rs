//! [`UnixStream`], [`UnixListener`] and [`UnixDatagram`]: std's
//! Unix-domain sockets for fibers.

use std::io;
use std::net::Shutdown;
use std::os::unix::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use super::AcceptBackoff;
use super::{common_socket_methods, connect_finished, socket_timeouts, stream_read_write};
use crate::io::readiness::Direction;
use crate::io::socket::Socket;

/// A Unix-domain stream; `std::os::unix::net::UnixStream` for fibers.
///
/// ```
/// use std::io::{Read, Write};
/// use spindle::net::UnixStream;
///
/// let rt = spindle::Runtime::new().unwrap();
/// rt.block_on(|| {
///     let (mut left, mut right) = UnixStream::pair().unwrap();
///     let echo = spindle::spawn(move || {
///         let mut buf = [0; 4];
///         right.read_exact(&mut buf).unwrap();
///         right.write_all(&buf).unwrap();
///     });
///     left.write_all(b"unix").unwrap();
///     let mut buf = [0; 4];
///     left.read_exact(&mut buf).unwrap();
///     assert_eq!(&buf, b"unix");
///     echo.join().unwrap();
/// });
/// ```
pub struct UnixStream {
    socket: Arc<Socket<mio::net::UnixStream>>,
}

/// A Unix-domain listening socket; `std::os::unix::net::UnixListener` for
/// fibers. `accept` backs off when out of descriptors, as
/// [`TcpListener::accept`](super::TcpListener::accept) does.
///
/// ```
/// use std::io::{Read, Write};
/// use spindle::net::{UnixListener, UnixStream};
///
/// let path = std::env::temp_dir().join(format!("spindle-doc-{}.sock", std::process::id()));
/// let _ = std::fs::remove_file(&path);
/// let rt = spindle::Runtime::new().unwrap();
/// rt.block_on(|| {
///     let listener = UnixListener::bind(&path).unwrap();
///     let client_path = path.clone();
///     let client = spindle::spawn(move || UnixStream::connect(client_path).unwrap().write_all(b"hi").unwrap());
///     let (mut stream, _) = listener.accept().unwrap();
///     let mut text = String::new();
///     stream.read_to_string(&mut text).unwrap();
///     assert_eq!(text, "hi");
///     client.join().unwrap();
/// });
/// std::fs::remove_file(&path).unwrap();
/// ```
pub struct UnixListener {
    socket: Arc<Socket<mio::net::UnixListener>>,
    backoff: Arc<AcceptBackoff>,
}

/// A Unix-domain datagram socket; `std::os::unix::net::UnixDatagram` for
/// fibers.
///
/// ```
/// use spindle::net::UnixDatagram;
///
/// let rt = spindle::Runtime::new().unwrap();
/// rt.block_on(|| {
///     let (left, right) = UnixDatagram::pair().unwrap();
///     let reader = spindle::spawn(move || {
///         let mut buf = [0; 16];
///         let len = right.recv(&mut buf).unwrap();
///         buf[..len].to_vec()
///     });
///     left.send(b"one datagram").unwrap();
///     assert_eq!(reader.join().unwrap(), b"one datagram");
/// });
/// ```
pub struct UnixDatagram {
    socket: Arc<Socket<mio::net::UnixDatagram>>,
}

impl UnixStream {
    /// Connects to the socket at `path`, parking until the connection is
    /// made.
    pub fn connect<P: AsRef<Path>>(path: P) -> io::Result<UnixStream> {
        let stream = UnixStream::wrap(mio::net::UnixStream::connect(path)?);
        stream.socket.io(Direction::Write, |source| {
            connect_finished(|| source.take_error(), || source.peer_addr().map(drop))
        })?;
        Ok(stream)
    }

    /// A connected pair of streams.
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let (left, right) = mio::net::UnixStream::pair()?;
        Ok((UnixStream::wrap(left), UnixStream::wrap(right)))
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.source.local_addr()
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.socket.source.peer_addr()
    }

    /// Shuts down the read half, the write half (the peer reads end of
    /// file) or both, for every handle.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.socket.source.shutdown(how)
    }
}

common_socket_methods!(
    UnixStream,
    std::os::unix::net::UnixStream,
    mio::net::UnixStream
);
socket_timeouts!(UnixStream);
stream_read_write!(UnixStream, mio::net::UnixStream);

impl UnixListener {
    /// Binds to `path` and listens.
    pub fn bind<P: AsRef<Path>>(path: P) -> io::Result<UnixListener> {
        mio::net::UnixListener::bind(path).map(UnixListener::wrap)
    }

    /// Waits for a connection (parking the fiber). Out of descriptors
    /// (`EMFILE`, `ENFILE`), sleeps a little before returning the error,
    /// longer each time in a row (see the [module docs](crate::net)); call
    /// it again.
    pub fn accept(&self) -> io::Result<(UnixStream, SocketAddr)> {
        let accepted = self.socket.io(Direction::Read, |source| source.accept());
        self.backoff
            .after(accepted)
            .map(|(stream, address)| (UnixStream::wrap(stream), address))
    }

    /// An endless iterator of [`accept`](Self::accept)s.
    pub fn incoming(&self) -> UnixIncoming<'_> {
        UnixIncoming { listener: self }
    }

    /// The address listened on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.source.local_addr()
    }
}

common_socket_methods!(
    UnixListener,
    std::os::unix::net::UnixListener,
    mio::net::UnixListener,
    backoff
);

/// The iterator of [`UnixListener::incoming`]: never ends.
#[derive(Debug)]
pub struct UnixIncoming<'a> {
    listener: &'a UnixListener,
}

impl Iterator for UnixIncoming<'_> {
    type Item = io::Result<UnixStream>;

    fn next(&mut self) -> Option<io::Result<UnixStream>> {
        Some(self.listener.accept().map(|(stream, _)| stream))
    }
}

impl UnixDatagram {
    /// A datagram socket bound to `path`.
    pub fn bind<P: AsRef<Path>>(path: P) -> io::Result<UnixDatagram> {
        mio::net::UnixDatagram::bind(path).map(UnixDatagram::wrap)
    }

    /// A datagram socket bound to no address.
    pub fn unbound() -> io::Result<UnixDatagram> {
        mio::net::UnixDatagram::unbound().map(UnixDatagram::wrap)
    }

    /// A connected pair of datagram sockets.
    pub fn pair() -> io::Result<(UnixDatagram, UnixDatagram)> {
        let (left, right) = mio::net::UnixDatagram::pair()?;
        Ok((UnixDatagram::wrap(left), UnixDatagram::wrap(right)))
    }

    /// Sets the only address `send` sends to and `recv` receives from.
    pub fn connect<P: AsRef<Path>>(&self, path: P) -> io::Result<()> {
        self.socket.source.connect(path)
    }

    /// Sends a datagram to the socket at `path`.
    pub fn send_to<P: AsRef<Path>>(&self, buf: &[u8], path: P) -> io::Result<usize> {
        let path = path.as_ref();
        self.socket
            .io(Direction::Write, |source| source.send_to(buf, path))
    }

    /// Receives a datagram and its sender's address, parking until one
    /// arrives.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.socket
            .io(Direction::Read, |source| source.recv_from(buf))
    }

    /// Sends to the connected address.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.socket.io(Direction::Write, |source| source.send(buf))
    }

    /// Receives from the connected address, parking until a datagram
    /// arrives.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.socket.io(Direction::Read, |source| source.recv(buf))
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.source.local_addr()
    }

    /// The connected address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.socket.source.peer_addr()
    }

    /// Shuts down reading, writing or both.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.socket.source.shutdown(how)
    }
}

common_socket_methods!(
    UnixDatagram,
    std::os::unix::net::UnixDatagram,
    mio::net::UnixDatagram
);
socket_timeouts!(UnixDatagram);
