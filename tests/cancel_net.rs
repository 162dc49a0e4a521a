//! Cancelling a fiber parked in each `spindle::net` call (and in an
//! `io::Fd` wait): it unwinds, its socket is dropped and deregistered,
//! and another fiber waiting on the same socket still gets what arrives.
//! Real sockets on loopback and in a temporary directory.

mod common;

use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use common::{wait_parked, within, Witness};
use spindle::net::{TcpListener, TcpStream, UdpSocket, UnixDatagram, UnixListener, UnixStream};
use spindle::JoinHandle;

const LIMIT: Duration = Duration::from_secs(120);

/// Spawns `wait` in a fiber holding a witness of `drops`; returns once it
/// is parked.
fn spawn_parked<T: Send + 'static>(
    drops: &Arc<AtomicUsize>,
    wait: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    let witness = Witness(drops.clone());
    let fiber = spindle::spawn(move || {
        let _witness = witness;
        wait()
    });
    wait_parked(&fiber);
    fiber
}

fn cancel_and_join<T: std::fmt::Debug + 'static>(fiber: JoinHandle<T>) {
    fiber.cancel();
    assert!(fiber.join().expect_err("cancelled").is_cancelled());
}

/// Runs `body` in a fiber of a two-worker runtime, within the limit; then
/// checks that every socket deregistered and no fiber or stack is left.
fn on_runtime(body: impl FnOnce() + Send + 'static) {
    within(LIMIT, || {
        let rt = spindle::Builder::new().workers(2).build().unwrap();
        rt.block_on(body);
        while rt.live_fibers() > 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let metrics = rt.metrics();
        assert_eq!(metrics.io.registrations, 0, "every socket deregistered");
        assert_eq!(metrics.stacks.in_use, 0);
    });
}

#[test]
fn tcp_accept_and_the_other_acceptor_gets_the_connection() {
    on_runtime(|| {
        let listener = Arc::new(TcpListener::bind("127.0.0.1:0").unwrap());
        let address = listener.local_addr().unwrap();
        let drops = Arc::new(AtomicUsize::new(0));
        let l = listener.clone();
        let first = spawn_parked(&drops, move || l.accept().map(|_| ()));
        let l = listener.clone();
        let second = spawn_parked(&drops, move || l.accept().map(|(s, _)| s));
        cancel_and_join(first);
        let mut client = TcpStream::connect(address).unwrap();
        let mut accepted = second.join().unwrap().unwrap();
        client.write_all(b"hi").unwrap();
        let mut buf = [0u8; 2];
        accepted.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hi");
        assert_eq!(drops.load(SeqCst), 2);
    });
}

#[test]
fn tcp_read_and_the_other_reader_gets_the_data() {
    on_runtime(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let server = Arc::new(listener.accept().unwrap().0);
        let drops = Arc::new(AtomicUsize::new(0));
        let s = server.clone();
        let first = spawn_parked(&drops, move || (&*s).read(&mut [0u8; 16]));
        let s = server.clone();
        let second = spawn_parked(&drops, move || {
            let mut buf = [0u8; 16];
            let n = (&*s).read(&mut buf).unwrap();
            buf[..n].to_vec()
        });
        cancel_and_join(first);
        client.write_all(b"data").unwrap();
        assert_eq!(second.join().unwrap(), b"data");
        drop(server);
        // The server's end is gone with the fibers: the client sees EOF.
        assert_eq!(client.read(&mut [0u8; 4]).unwrap(), 0);
        assert_eq!(drops.load(SeqCst), 2);
    });
}

#[test]
fn tcp_write_blocked_on_a_full_buffer() {
    on_runtime(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let drops = Arc::new(AtomicUsize::new(0));
        let written = Arc::new(AtomicUsize::new(0));
        let w = written.clone();
        let writer = spawn_parked(&drops, move || {
            let mut client = client;
            let chunk = vec![7u8; 64 * 1024];
            loop {
                let n = client.write(&chunk)?;
                w.fetch_add(n, SeqCst);
            }
            #[allow(unreachable_code)]
            std::io::Result::Ok(())
        });
        cancel_and_join(writer);
        // The unwind dropped the client's end: everything it wrote, then EOF.
        let mut received = Vec::new();
        server.read_to_end(&mut received).unwrap();
        assert_eq!(received.len(), written.load(SeqCst));
        assert!(received.iter().all(|&b| b == 7));
        assert_eq!(drops.load(SeqCst), 1);
    });
}

#[test]
fn udp_recv_and_the_other_receiver_gets_the_datagram() {
    on_runtime(|| {
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").unwrap());
        let address = socket.local_addr().unwrap();
        let drops = Arc::new(AtomicUsize::new(0));
        let s = socket.clone();
        let first = spawn_parked(&drops, move || s.recv_from(&mut [0u8; 16]).map(|_| ()));
        let s = socket.clone();
        let second = spawn_parked(&drops, move || {
            let mut buf = [0u8; 16];
            let (n, _) = s.recv_from(&mut buf).unwrap();
            buf[..n].to_vec()
        });
        cancel_and_join(first);
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        sender.send_to(b"ping", address).unwrap();
        assert_eq!(second.join().unwrap(), b"ping");
        assert_eq!(drops.load(SeqCst), 2);
    });
}

#[test]
fn unix_accept_read_and_recv() {
    on_runtime(|| {
        let dir = std::env::temp_dir().join(format!("spindle-cancel-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("listener.sock");
        let _ = std::fs::remove_file(&path);
        let drops = Arc::new(AtomicUsize::new(0));

        let listener = Arc::new(UnixListener::bind(&path).unwrap());
        let l = listener.clone();
        let first = spawn_parked(&drops, move || l.accept().map(|_| ()));
        let l = listener.clone();
        let second = spawn_parked(&drops, move || l.accept().map(|(s, _)| s));
        cancel_and_join(first);
        let mut client = UnixStream::connect(&path).unwrap();
        let accepted = second.join().unwrap().unwrap();

        let reader = spawn_parked(&drops, move || {
            let mut accepted = accepted;
            accepted.read(&mut [0u8; 8])
        });
        cancel_and_join(reader);
        assert_eq!(
            client.read(&mut [0u8; 8]).unwrap(),
            0,
            "EOF: its end was dropped"
        );

        let (a, b) = UnixDatagram::pair().unwrap();
        let receiver = spawn_parked(&drops, move || a.recv(&mut [0u8; 8]));
        cancel_and_join(receiver);
        assert!(b.send(b"x").is_err(), "its end was dropped");

        drop(listener);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(drops.load(SeqCst), 4);
    });
}

#[test]
fn an_fd_wait_on_a_pipe() {
    on_runtime(|| {
        let (read_end, write_end) = std::io::pipe().unwrap();
        let drops = Arc::new(AtomicUsize::new(0));
        let fd = Arc::new(spindle::io::Fd::new(read_end).unwrap());
        let f = fd.clone();
        let first = spawn_parked(&drops, move || f.readable());
        let f = fd.clone();
        let second = spawn_parked(&drops, move || {
            let mut buf = [0u8; 8];
            let n = f.read_with(|mut pipe| pipe.read(&mut buf)).unwrap();
            buf[..n].to_vec()
        });
        cancel_and_join(first);
        (&write_end).write_all(b"fd").unwrap();
        assert_eq!(second.join().unwrap(), b"fd");
        drop(fd);
        assert_eq!(drops.load(SeqCst), 2);
    });
}

#[test]
fn tcp_connect_to_a_listener_whose_queue_is_full() {
    use std::os::fd::AsRawFd;
    on_runtime(|| {
        // A listener that accepts nothing and queues one connection at
        // most: later connects wait (the kernel drops their SYNs).
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        // SAFETY: listen on a socket this test owns; it only sets the
        // queue's length.
        assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
        let address = listener.local_addr().unwrap();
        let drops = Arc::new(AtomicUsize::new(0));
        let mut connected = Vec::new();
        let waiting = loop {
            assert!(connected.len() < 16, "no connect ever waited");
            let witness = Witness(drops.clone());
            let fiber = spindle::spawn(move || {
                let _witness = witness;
                TcpStream::connect(address)
            });
            let parked = loop {
                let state = format!("{:?}", fiber.fiber());
                if state.contains("\"done\"") {
                    break false;
                }
                if state.contains("\"parked\"") {
                    break true;
                }
                spindle::time::sleep(Duration::from_micros(200));
            };
            if parked {
                break fiber;
            }
            connected.push(fiber.join().unwrap().unwrap());
        };
        cancel_and_join(waiting);
        assert_eq!(drops.load(SeqCst), connected.len() + 1, "each witness once");
        drop(connected);
    });
}
