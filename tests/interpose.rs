//! Transparent blocking calls (the `interpose` feature) on real sockets,
//! pipes and timers: std::net, std::thread::sleep, a std child's pipe and
//! an HTTP client crate park the fiber (a heartbeat keeps ticking on one
//! worker with no spare threads), while the same calls on plain threads,
//! and errno, error kinds, O_NONBLOCK, socket timeouts and fork, behave
//! as without the feature.
//!
//! The file builds and runs with the feature off too: then the parking
//! tests assert the opposite (not one beat while the call holds the only
//! worker), which shows that the hooks, and nothing else, make the
//! difference.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use common::{one_worker_no_spares, within, Heartbeat};

const LIMIT: Duration = Duration::from_secs(120);

/// Whether the hooks are compiled in.
const HOOKED: bool = cfg!(feature = "interpose");

/// Runs `call` in a fiber on a one-worker runtime beside a heartbeat and
/// returns its result and the beats counted while it ran. With the hooks
/// the call parks and the beats go on; without them it holds the only
/// worker and none can happen.
fn beats_during<T: Send + 'static>(call: impl FnOnce() -> T + Send + 'static) -> (T, u64) {
    within(LIMIT, move || {
        let rt = one_worker_no_spares();
        rt.block_on(move || {
            let heartbeat = Heartbeat::start();
            // Let the heartbeat fiber start beating.
            spindle::time::sleep(Duration::from_millis(10));
            let before = heartbeat.beats();
            let value = call();
            let beats = heartbeat.beats() - before;
            heartbeat.stop();
            (value, beats)
        })
    })
}

/// The beats a parked call of about `expected` must let through: a
/// fraction of its length in 2 ms beats, slack for a loaded machine.
fn assert_parked(beats: u64, expected: Duration) {
    if HOOKED {
        let floor = (expected.as_millis() as u64 / 2) / 4;
        assert!(
            beats >= floor.max(1),
            "{beats} beats in {expected:?}: the call held the worker"
        );
    } else {
        assert_eq!(beats, 0, "without the hooks the call holds the only worker");
    }
}

#[test]
fn std_thread_sleep_parks_the_fiber() {
    let (slept, beats) = beats_during(|| {
        let start = Instant::now();
        std::thread::sleep(Duration::from_millis(60));
        start.elapsed()
    });
    assert!(slept >= Duration::from_millis(60));
    assert_parked(beats, Duration::from_millis(60));
}

#[test]
fn raw_usleep_nanosleep_and_sleep_park_the_fiber() {
    let (_, beats) = beats_during(|| {
        // SAFETY: usleep, nanosleep and sleep have no memory preconditions
        // beyond a valid timespec.
        unsafe {
            assert_eq!(libc::usleep(20_000), 0);
            let request = libc::timespec {
                tv_sec: 0,
                tv_nsec: 20_000_000,
            };
            assert_eq!(libc::nanosleep(&request, std::ptr::null_mut()), 0);
            assert_eq!(libc::sleep(0), 0);
        }
    });
    assert_parked(beats, Duration::from_millis(40));
}

#[test]
fn std_net_accept_connect_read_and_write_park_the_fiber() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    // A plain-thread peer that takes its time at each step.
    let peer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(40));
        let mut stream = TcpStream::connect(address).unwrap();
        std::thread::sleep(Duration::from_millis(40));
        stream.write_all(b"ping").unwrap();
        let mut reply = [0; 4];
        stream.read_exact(&mut reply).unwrap();
        assert_eq!(&reply, b"pong");
    });
    let (accepted, accept_beats) = beats_during(move || listener.accept().unwrap().0);
    assert_parked(accept_beats, Duration::from_millis(40));
    let (_, read_beats) = beats_during(move || {
        let mut stream = accepted;
        let mut request = [0; 4];
        stream.read_exact(&mut request).unwrap();
        assert_eq!(&request, b"ping");
        stream.write_all(b"pong").unwrap();
    });
    assert_parked(read_beats, Duration::from_millis(30));
    peer.join().unwrap();
}

#[test]
fn std_net_client_and_server_fibers_on_one_worker() {
    // Both ends in fibers of one worker: without the hooks the first
    // blocking read would hold the worker and the other end could never
    // run, so this is guarded to the hooked build.
    if !HOOKED {
        return;
    }
    let total = within(LIMIT, || {
        let rt = one_worker_no_spares();
        rt.block_on(|| {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let address = listener.local_addr().unwrap();
            let server = spindle::spawn(move || {
                let mut handlers = Vec::new();
                for _ in 0..20 {
                    let (mut stream, _) = listener.accept().unwrap();
                    handlers.push(spindle::spawn(move || {
                        let mut buf = [0; 64];
                        loop {
                            match stream.read(&mut buf).unwrap() {
                                0 => return,
                                n => stream.write_all(&buf[..n]).unwrap(),
                            }
                        }
                    }));
                }
                handlers.into_iter().for_each(|h| h.join().unwrap());
            });
            let clients: Vec<_> = (0..20u8)
                .map(|i| {
                    spindle::spawn(move || {
                        let mut stream = TcpStream::connect(address).unwrap();
                        let mut sum = 0u64;
                        for round in 0..50u8 {
                            let message = [i, round, 7];
                            stream.write_all(&message).unwrap();
                            let mut echo = [0; 3];
                            stream.read_exact(&mut echo).unwrap();
                            assert_eq!(echo, message);
                            sum += 1;
                        }
                        sum
                    })
                })
                .collect();
            let total: u64 = clients.into_iter().map(|c| c.join().unwrap()).sum();
            server.join().unwrap();
            total
        })
    });
    assert_eq!(total, 20 * 50);
}

#[test]
fn a_std_childs_pipe_and_a_udp_socket_park_the_fiber() {
    let (text, beats) = beats_during(|| {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 0.05; echo done"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut text = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        child.wait().unwrap();
        text
    });
    assert_eq!(text, "done\n");
    assert_parked(beats, Duration::from_millis(50));

    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let address = socket.local_addr().unwrap();
    let sender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(40));
        UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .send_to(b"datagram", address)
            .unwrap();
    });
    let (received, beats) = beats_during(move || {
        let mut buf = [0; 16];
        let (len, _) = socket.recv_from(&mut buf).unwrap();
        buf[..len].to_vec()
    });
    assert_eq!(received, b"datagram");
    assert_parked(beats, Duration::from_millis(40));
    sender.join().unwrap();
}

#[test]
fn socket_timeouts_give_the_kernels_error_and_park_meanwhile() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (_server, _) = listener.accept().unwrap();
    let check = |stream: &TcpStream| {
        let mut stream = stream;
        stream
            .set_read_timeout(Some(Duration::from_millis(40)))
            .unwrap();
        let start = Instant::now();
        let error = stream.read(&mut [0; 8]).unwrap_err();
        (error.kind(), error.raw_os_error(), start.elapsed())
    };
    // On a plain thread: the kernel's own timeout.
    let plain = check(&client);
    let client2 = client.try_clone().unwrap();
    let (fiber, beats) = beats_during(move || check(&client2));
    assert_eq!(plain.0, ErrorKind::WouldBlock);
    assert_eq!(fiber.0, plain.0, "the same error kind on a fiber");
    assert_eq!(fiber.1, plain.1, "the same errno on a fiber");
    assert!(fiber.2 >= Duration::from_millis(40), "{:?}", fiber.2);
    assert_parked(beats, Duration::from_millis(40));
}

#[test]
fn errno_and_error_kinds_are_the_kernels_on_a_fiber_as_on_a_thread() {
    fn observe() -> Vec<(Option<i32>, ErrorKind)> {
        let mut seen = Vec::new();
        // A refused connect: nothing listens on a port just freed.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let error = TcpStream::connect(port).unwrap_err();
        seen.push((error.raw_os_error(), error.kind()));
        // EAGAIN on a socket the program made non-blocking: at once.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        stream.set_nonblocking(true).unwrap();
        let start = Instant::now();
        let error = (&stream).read(&mut [0; 4]).unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(1));
        seen.push((error.raw_os_error(), error.kind()));
        listener.set_nonblocking(true).unwrap();
        let _pending = listener.accept().unwrap(); // `stream`'s connection
        let error = listener.accept().unwrap_err();
        seen.push((error.raw_os_error(), error.kind()));
        // EBADF from a descriptor that is not open.
        // SAFETY: reading into a live buffer; the descriptor is invalid.
        let result = unsafe { libc::read(987_654, [0u8; 4].as_mut_ptr().cast(), 4) };
        let error = std::io::Error::last_os_error();
        assert_eq!(result, -1);
        seen.push((error.raw_os_error(), error.kind()));
        // errno is left alone by a call that succeeds after parking.
        let (mut left, mut right) = std::os::unix::net::UnixStream::pair().unwrap();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(10));
            right.write_all(b"x").unwrap();
        });
        // SAFETY: setting this thread's errno.
        unsafe { *libc::__errno_location() = libc::EDOM };
        // SAFETY: reading one byte into a live buffer.
        let result = unsafe { libc::read(left.as_raw_fd(), [0u8; 1].as_mut_ptr().cast(), 1) };
        assert_eq!(result, 1);
        // SAFETY: reading this thread's errno (perhaps another thread's
        // than the one the read started on: errno follows the fiber).
        seen.push((Some(unsafe { *libc::__errno_location() }), ErrorKind::Other));
        writer.join().unwrap();
        let _ = left.flush();
        seen
    }
    let on_thread = within(LIMIT, observe);
    let on_fiber = within(LIMIT, || one_worker_no_spares().block_on(observe));
    assert_eq!(on_thread[0].0, Some(libc::ECONNREFUSED));
    assert_eq!(on_thread[0].1, ErrorKind::ConnectionRefused);
    assert_eq!(on_thread[1], (Some(libc::EAGAIN), ErrorKind::WouldBlock));
    assert_eq!(on_thread[2], (Some(libc::EAGAIN), ErrorKind::WouldBlock));
    assert_eq!(on_thread[3].0, Some(libc::EBADF));
    assert_eq!(on_thread[4].0, Some(libc::EDOM));
    assert_eq!(on_fiber, on_thread);
}

#[test]
fn a_blocking_stream_send_moves_every_byte_in_one_call() {
    let (mut left, mut right) = std::os::unix::net::UnixStream::pair().unwrap();
    const LEN: usize = 4 << 20;
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = vec![0; 64 * 1024];
        while got.len() < LEN {
            std::thread::sleep(Duration::from_millis(1));
            let n = right.read(&mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        got
    });
    let (sent, beats) = beats_during(move || {
        let data: Vec<u8> = (0..LEN).map(|i| i as u8).collect();
        // One call: the kernel's blocking send returns only when all of it
        // is queued, and so must the hook.
        // SAFETY: sending from a live buffer.
        let sent = unsafe { libc::send(left.as_raw_fd(), data.as_ptr().cast(), LEN, 0) };
        left.flush().unwrap();
        sent
    });
    assert_eq!(sent, LEN as isize);
    let got = reader.join().unwrap();
    assert!(got.iter().enumerate().all(|(i, &b)| b == i as u8));
    if HOOKED {
        assert!(beats > 0, "the send held the worker");
    }
}

#[test]
fn calls_from_plain_threads_and_the_runtimes_own_threads_go_to_the_kernel() {
    // A runtime exists (hooks installed), but these calls run on plain
    // threads: they block their thread as std's always do.
    let rt = one_worker_no_spares();
    let start = Instant::now();
    std::thread::sleep(Duration::from_millis(20));
    assert!(start.elapsed() >= Duration::from_millis(20));
    let (mut left, mut right) = std::os::unix::net::UnixStream::pair().unwrap();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        right.write_all(b"x").unwrap();
    });
    let mut byte = [0; 1];
    left.read_exact(&mut byte).unwrap();
    writer.join().unwrap();
    // spindle::blocking runs its closure on a pool thread: a kernel call.
    let pooled = rt.block_on(|| {
        spindle::blocking(|| {
            let start = Instant::now();
            std::thread::sleep(Duration::from_millis(10));
            start.elapsed()
        })
    });
    assert!(pooled >= Duration::from_millis(10));
}

#[test]
fn a_forked_child_of_a_fiber_calls_the_kernel() {
    let status = within(LIMIT, || {
        one_worker_no_spares().block_on(|| {
            // SAFETY: the child makes only async-signal-safe calls (the
            // hooked usleep and write, which go to the kernel in a forked
            // child) and leaves with _exit.
            unsafe {
                let pid = libc::fork();
                assert!(pid >= 0);
                if pid == 0 {
                    // Its runtime's threads did not come along: a park
                    // here would never end.
                    libc::usleep(1000);
                    let mut fds = [0; 2];
                    libc::pipe(fds.as_mut_ptr());
                    libc::write(fds[1], b"x".as_ptr().cast(), 1);
                    let mut byte = 0u8;
                    let n = libc::read(fds[0], (&mut byte as *mut u8).cast(), 1);
                    libc::_exit(if n == 1 { 0 } else { 1 });
                }
                let mut status = 0;
                // Through spindle::blocking: waitpid is not hooked.
                spindle::blocking(|| libc::waitpid(pid, &mut status, 0));
                status
            }
        })
    });
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{status}"
    );
}

#[test]
fn shutdown_ends_a_fiber_parked_in_a_hooked_call() {
    if !HOOKED {
        return; // without the hooks the read holds the worker for good
    }
    within(LIMIT, || {
        let rt = one_worker_no_spares();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let reader = rt.spawn(move || {
            let mut stream = TcpStream::connect(address).unwrap();
            stream.read(&mut [0; 16]).map_err(|e| e.raw_os_error())
        });
        let (_peer, _) = listener.accept().unwrap();
        while rt.metrics().io.registrations == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        rt.shutdown();
        // The parked read cannot unwind through the C function's frame:
        // it fails with ECANCELED and the fiber finishes.
        assert_eq!(reader.join().unwrap(), Err(Some(libc::ECANCELED)));
    });
}

#[test]
fn an_http_client_crate_runs_unmodified_on_fibers() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    // A tiny HTTP server on a plain thread, answering after a pause.
    let server = std::thread::spawn(move || {
        for _ in 0..4 {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buf = [0; 1024];
            while !request.ends_with(b"\r\n\r\n") {
                let n = stream.read(&mut buf).unwrap();
                request.extend_from_slice(&buf[..n]);
            }
            std::thread::sleep(Duration::from_millis(20));
            let body = b"hello from a plain thread";
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .unwrap();
            stream.write_all(body).unwrap();
        }
    });
    let (bodies, beats) = beats_during(move || {
        let url = format!("http://{address}/");
        let fibers: Vec<_> = (0..4)
            .map(|_| {
                let url = url.clone();
                spindle::spawn(move || {
                    let agent: ureq::Agent = ureq::Agent::config_builder()
                        .timeout_global(Some(Duration::from_secs(30)))
                        .build()
                        .into();
                    agent
                        .get(&url)
                        .call()
                        .unwrap()
                        .body_mut()
                        .read_to_string()
                        .unwrap()
                })
            })
            .collect();
        fibers
            .into_iter()
            .map(|f| f.join().unwrap())
            .collect::<Vec<_>>()
    });
    assert!(
        bodies.iter().all(|b| b == "hello from a plain thread"),
        "{bodies:?}"
    );
    if HOOKED {
        assert!(beats >= 2, "{beats} beats: the client held the worker");
    }
    server.join().unwrap();
}
