//! [`TcpStream`] and [`TcpListener`]: std's TCP types for fibers.

use std::io;
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::AcceptBackoff;
use super::{
    common_socket_methods, connect_finished, each_addr, lookup_host, socket_timeouts,
    stream_read_write,
};
use crate::io::readiness::Direction;
use crate::io::socket::Socket;

/// A TCP connection; `std::net::TcpStream` for fibers.
///
/// Reads and writes park the calling fiber while the socket is not ready
/// (on a plain thread they block the thread). `&TcpStream` implements
/// `Read` and `Write` too, and [`try_clone`](TcpStream::try_clone) gives a
/// second handle, so one fiber can read while another writes.
///
/// ```
/// use std::io::{BufRead, BufReader, Write};
/// use spindle::net::{TcpListener, TcpStream};
///
/// let rt = spindle::Runtime::new().unwrap();
/// rt.block_on(|| {
///     let listener = TcpListener::bind("127.0.0.1:0").unwrap();
///     let address = listener.local_addr().unwrap();
///     spindle::spawn(move || {
///         let (stream, _) = listener.accept().unwrap();
///         let mut lines = BufReader::new(&stream);
///         let mut line = String::new();
///         lines.read_line(&mut line).unwrap();
///         (&stream).write_all(line.to_uppercase().as_bytes()).unwrap();
///     });
///     let stream = TcpStream::connect(address).unwrap();
///     let writer = stream.try_clone().unwrap();
///     let sender = spindle::spawn(move || (&writer).write_all(b"ping\n").unwrap());
///     let mut reply = String::new();
///     BufReader::new(&stream).read_line(&mut reply).unwrap();
///     assert_eq!(reply, "PING\n");
///     sender.join().unwrap();
/// });
/// ```
pub struct TcpStream {
    socket: Arc<Socket<mio::net::TcpStream>>,
}

/// A TCP listening socket; `std::net::TcpListener` for fibers.
///
/// [`accept`](TcpListener::accept) parks the calling fiber until a
/// connection arrives. Out of descriptors, it backs off before returning
/// the error (see the [module docs](crate::net)): log it and call `accept`
/// again.
///
/// ```
/// use std::io::{Read, Write};
/// use spindle::net::{TcpListener, TcpStream};
///
/// let rt = spindle::Runtime::new().unwrap();
/// let total = rt.block_on(|| {
///     let listener = TcpListener::bind("127.0.0.1:0").unwrap();
///     let address = listener.local_addr().unwrap();
///     let clients: Vec<_> = (0..10u8)
///         .map(|i| spindle::spawn(move || TcpStream::connect(address).unwrap().write_all(&[i]).unwrap()))
///         .collect();
///     let mut total = 0;
///     for stream in listener.incoming().take(10) {
///         let mut byte = [0];
///         stream.unwrap().read_exact(&mut byte).unwrap();
///         total += u32::from(byte[0]);
///     }
///     clients.into_iter().for_each(|c| c.join().unwrap());
///     total
/// });
/// assert_eq!(total, 45);
/// ```
pub struct TcpListener {
    socket: Arc<Socket<mio::net::TcpListener>>,
    backoff: Arc<AcceptBackoff>,
}

impl TcpStream {
    /// Connects to `address`, trying each resolved address in turn. A host
    /// name is resolved on the blocking pool ([`super::lookup_host`]); the
    /// connection itself parks the fiber until the handshake completes.
    /// A refused connection gives `ErrorKind::ConnectionRefused`.
    pub fn connect<A: ToSocketAddrs + Send>(address: A) -> io::Result<TcpStream> {
        let addresses = lookup_host(address)?;
        each_addr(&addresses, |address| {
            TcpStream::connect_until(address, None)
        })
    }

    /// Connects to one address, giving up with `ErrorKind::TimedOut` after
    /// `timeout` (std's `connect_timeout`; a zero timeout is refused with
    /// `InvalidInput`).
    pub fn connect_timeout(address: &SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        if timeout.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot set a 0 duration timeout",
            ));
        }
        TcpStream::connect_until(*address, Instant::now().checked_add(timeout))
    }

    fn connect_until(address: SocketAddr, deadline: Option<Instant>) -> io::Result<TcpStream> {
        let stream = TcpStream::wrap(mio::net::TcpStream::connect(address)?);
        stream.socket.io_until(
            Direction::Write,
            || deadline,
            |source| connect_finished(|| source.take_error(), || source.peer_addr().map(drop)),
            |_| false,
        )?;
        Ok(stream)
    }

    /// The remote address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.socket.source.peer_addr()
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.source.local_addr()
    }

    /// Shuts down the read half, the write half (the peer reads end of
    /// file) or both, for every handle.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.socket.source.shutdown(how)
    }

    /// Sets `TCP_NODELAY` (no Nagle delay for small writes).
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.socket.source.set_nodelay(nodelay)
    }

    /// Whether `TCP_NODELAY` is set.
    pub fn nodelay(&self) -> io::Result<bool> {
        self.socket.source.nodelay()
    }

    /// Sets the IP time-to-live.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.socket.source.set_ttl(ttl)
    }

    /// The IP time-to-live.
    pub fn ttl(&self) -> io::Result<u32> {
        self.socket.source.ttl()
    }

    /// Reads without consuming, parking until data (or end of file) is
    /// there.
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.socket.io(Direction::Read, |source| source.peek(buf))
    }
}

common_socket_methods!(TcpStream, std::net::TcpStream, mio::net::TcpStream);
socket_timeouts!(TcpStream);
stream_read_write!(TcpStream, mio::net::TcpStream);

impl TcpListener {
    /// Binds to `address` (host names are resolved on the blocking pool)
    /// and listens. Port 0 picks a free port; see [`Self::local_addr`].
    pub fn bind<A: ToSocketAddrs + Send>(address: A) -> io::Result<TcpListener> {
        let addresses = lookup_host(address)?;
        each_addr(&addresses, mio::net::TcpListener::bind).map(TcpListener::wrap)
    }

    /// Waits for a connection (parking the fiber) and returns it with the
    /// peer's address. Out of descriptors (`EMFILE`, `ENFILE`), sleeps a
    /// little before returning the error, longer each time in a row (see
    /// the [module docs](crate::net)); call it again.
    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let accepted = self.socket.io(Direction::Read, |source| source.accept());
        self.backoff
            .after(accepted)
            .map(|(stream, address)| (TcpStream::wrap(stream), address))
    }

    /// An endless iterator of [`accept`](Self::accept)s.
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming { listener: self }
    }

    /// The address listened on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.source.local_addr()
    }

    /// Sets the IP time-to-live of accepted sockets.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.socket.source.set_ttl(ttl)
    }

    /// The IP time-to-live.
    pub fn ttl(&self) -> io::Result<u32> {
        self.socket.source.ttl()
    }
}

common_socket_methods!(
    TcpListener,
    std::net::TcpListener,
    mio::net::TcpListener,
    backoff
);

/// The iterator of [`TcpListener::incoming`]: never ends.
#[derive(Debug)]
pub struct Incoming<'a> {
    listener: &'a TcpListener,
}

impl Iterator for Incoming<'_> {
    type Item = io::Result<TcpStream>;

    fn next(&mut self) -> Option<io::Result<TcpStream>> {
        Some(self.listener.accept().map(|(stream, _)| stream))
    }
}
