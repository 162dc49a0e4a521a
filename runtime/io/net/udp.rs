//! [`UdpSocket`]: std's UDP socket for fibers.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use super::{common_socket_methods, each_addr, lookup_host, socket_timeouts};
use crate::io::readiness::Direction;
use crate::io::socket::Socket;

/// A UDP socket; `std::net::UdpSocket` for fibers. Receives park the
/// calling fiber until a datagram arrives.
///
/// ```
/// use spindle::net::UdpSocket;
///
/// let rt = spindle::Runtime::new().unwrap();
/// rt.block_on(|| {
///     let server = UdpSocket::bind("127.0.0.1:0").unwrap();
///     let address = server.local_addr().unwrap();
///     let echo = spindle::spawn(move || {
///         let mut buf = [0; 64];
///         let (len, from) = server.recv_from(&mut buf).unwrap();
///         server.send_to(&buf[..len], from).unwrap();
///     });
///     let client = UdpSocket::bind("127.0.0.1:0").unwrap();
///     client.connect(address).unwrap();
///     client.send(b"datagram").unwrap();
///     let mut buf = [0; 64];
///     let len = client.recv(&mut buf).unwrap();
///     assert_eq!(&buf[..len], b"datagram");
///     echo.join().unwrap();
/// });
/// ```
pub struct UdpSocket {
    socket: Arc<Socket<mio::net::UdpSocket>>,
}

impl UdpSocket {
    /// Binds to `address` (host names are resolved on the blocking pool).
    pub fn bind<A: ToSocketAddrs + Send>(address: A) -> io::Result<UdpSocket> {
        let addresses = lookup_host(address)?;
        each_addr(&addresses, mio::net::UdpSocket::bind).map(UdpSocket::wrap)
    }

    /// Sends a datagram to `address`. A host name is resolved on the
    /// calling thread, as std does (see the module docs).
    pub fn send_to<A: ToSocketAddrs>(&self, buf: &[u8], address: A) -> io::Result<usize> {
        let address = address.to_socket_addrs()?.next().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "no addresses to send data to")
        })?;
        self.socket
            .io(Direction::Write, |source| source.send_to(buf, address))
    }

    /// Receives a datagram and its sender's address, parking until one
    /// arrives. A datagram longer than `buf` is cut to fit.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.socket
            .io(Direction::Read, |source| source.recv_from(buf))
    }

    /// `recv_from` without taking the datagram off the queue.
    pub fn peek_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.socket
            .io(Direction::Read, |source| source.peek_from(buf))
    }

    /// Sets the only address `send` sends to and `recv` receives from.
    /// A host name is resolved on the blocking pool.
    pub fn connect<A: ToSocketAddrs + Send>(&self, address: A) -> io::Result<()> {
        let addresses = lookup_host(address)?;
        each_addr(&addresses, |address| self.socket.source.connect(address))
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

    /// `recv` without taking the datagram off the queue.
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.socket.io(Direction::Read, |source| source.peek(buf))
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.source.local_addr()
    }

    /// The connected address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.socket.source.peer_addr()
    }

    /// Sets `SO_BROADCAST`.
    pub fn set_broadcast(&self, on: bool) -> io::Result<()> {
        self.socket.source.set_broadcast(on)
    }

    /// Whether `SO_BROADCAST` is set.
    pub fn broadcast(&self) -> io::Result<bool> {
        self.socket.source.broadcast()
    }

    /// Sets the IP time-to-live.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.socket.source.set_ttl(ttl)
    }

    /// The IP time-to-live.
    pub fn ttl(&self) -> io::Result<u32> {
        self.socket.source.ttl()
    }
}

common_socket_methods!(UdpSocket, std::net::UdpSocket, mio::net::UdpSocket);
socket_timeouts!(UdpSocket);
