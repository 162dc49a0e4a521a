//! Select's arms beyond channel receives, with real fibers, threads and
//! sockets: every arm kind wins when it is ready (receive, send on a
//! bounded and an unbounded channel, join, timeout, deadline, readable,
//! writable), a join arm on a panicking fiber, readiness on real TCP
//! sockets, and one select reused over many waits.

mod common;

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::within;
use spindle::net::{TcpListener, TcpStream, UdpSocket};
use spindle::sync::{mpsc, Latch, Select};
use spindle::{Builder, Runtime};

const HANG: Duration = Duration::from_secs(300);
/// A timeout that never fires in these tests: an arm that must lose to a
/// ready one.
const NEVER: Duration = Duration::from_secs(3600);

/// Which arm a select chose.
#[derive(Debug, PartialEq, Eq)]
enum Won {
    Recv(u32),
    Sent,
    Joined,
    Timeout,
    Deadline,
    Readable,
    Writable,
}

fn runtime() -> Runtime {
    Builder::new().workers(2).build().unwrap()
}

/// Adds arms that are never ready: a receive on a channel nobody sends on
/// and a timeout that never fires.
fn with_idle_arms<'a>(idle: &'a mpsc::Receiver<u32>, select: Select<'a, Won>) -> Select<'a, Won> {
    select
        .recv(idle, |m| Won::Recv(m.unwrap()))
        .timeout(NEVER, || Won::Timeout)
}

/// A select where only the arm under test can be ready: the other arms
/// wait on a channel nobody sends on and a timeout that never fires.
#[test]
fn each_arm_kind_wins_when_it_is_ready() {
    let rt = runtime();
    within(HANG, move || {
        rt.block_on(|| {
            let (_idle_tx, idle) = mpsc::channel::<u32>();

            // Receive: a message sent later by another fiber.
            let (tx, rx) = mpsc::sync_channel(0);
            spindle::spawn(move || tx.send(5).unwrap());
            let got = with_idle_arms(
                &idle,
                Select::new().recv(&rx, |m| Won::Recv(m.unwrap() * 10)),
            )
            .wait();
            assert_eq!(got, Won::Recv(50));

            // Send on a rendezvous channel: a receiver comes later.
            let (tx, rx) = mpsc::sync_channel(0);
            let receiver = spindle::spawn(move || rx.recv().unwrap());
            let got = with_idle_arms(
                &idle,
                Select::new().send(&tx, 8, |r| {
                    r.unwrap();
                    Won::Sent
                }),
            )
            .wait();
            assert_eq!(got, Won::Sent);
            assert_eq!(receiver.join().unwrap(), 8);

            // Send on an unbounded channel: always ready.
            let (tx, rx) = mpsc::channel();
            let got = with_idle_arms(
                &idle,
                Select::new().send(&tx, 9, |r| {
                    r.unwrap();
                    Won::Sent
                }),
            )
            .wait();
            assert_eq!(got, Won::Sent);
            assert_eq!(rx.try_recv(), Ok(9));

            // Join: the fiber finishes once released.
            let release = Arc::new(Latch::new(1));
            let mut fiber = {
                let release = release.clone();
                spindle::spawn(move || {
                    release.wait();
                    "done"
                })
            };
            {
                let release = release.clone();
                spindle::spawn(move || release.count_down());
            }
            let got = with_idle_arms(&idle, Select::new().join(&mut fiber, || Won::Joined)).wait();
            assert_eq!(got, Won::Joined);
            assert_eq!(fiber.join().unwrap(), "done");

            // Timeout and deadline, with nothing else ready.
            let start = Instant::now();
            let got = Select::new()
                .recv(&idle, |m| Won::Recv(m.unwrap()))
                .timeout(Duration::from_millis(20), || Won::Timeout)
                .wait();
            assert_eq!(got, Won::Timeout);
            assert!(start.elapsed() >= Duration::from_millis(20));
            let deadline = Instant::now() + Duration::from_millis(20);
            let got =
                with_idle_arms(&idle, Select::new().deadline(deadline, || Won::Deadline)).wait();
            assert_eq!(got, Won::Deadline);
            assert!(Instant::now() >= deadline);
        })
    });
}

#[test]
fn a_ready_channel_beats_a_timeout_and_a_passed_deadline_is_ready_at_once() {
    let rt = runtime();
    within(HANG, move || {
        rt.block_on(|| {
            let (tx, rx) = mpsc::channel();
            tx.send(1).unwrap();
            let got = Select::new()
                .recv(&rx, |m| Won::Recv(m.unwrap()))
                .timeout(Duration::from_millis(50), || Won::Timeout)
                .wait();
            assert_eq!(got, Won::Recv(1));
            // A deadline in the past: ready in the poll, without waiting;
            // also for try_select.
            let past = Instant::now();
            let got = Select::new()
                .recv(&rx, |m| Won::Recv(m.unwrap()))
                .deadline(past, || Won::Deadline)
                .try_select();
            assert_eq!(got, Ok(Won::Deadline));
            // The select's own timeout and a timer arm: the earlier wins.
            let got = Select::new()
                .recv(&rx, |m| Won::Recv(m.unwrap()))
                .timeout(Duration::from_millis(5), || Won::Timeout)
                .wait_timeout(NEVER);
            assert_eq!(got, Ok(Won::Timeout));
            let got = Select::new()
                .recv(&rx, |m| Won::Recv(m.unwrap()))
                .timeout(NEVER, || Won::Timeout)
                .wait_timeout(Duration::from_millis(5));
            assert!(got.is_err(), "the select's own timeout came first");
        })
    });
}

#[test]
fn timer_arms_wait_on_plain_threads_too() {
    within(HANG, || {
        let (_tx, rx) = mpsc::channel::<u32>();
        let start = Instant::now();
        let mut select = Select::new()
            .recv(&rx, |m| Won::Recv(m.unwrap()))
            .timeout(Duration::from_millis(10), || Won::Timeout);
        for _ in 0..3 {
            assert_eq!(select.wait(), Won::Timeout);
        }
        // Counted afresh in each wait.
        assert!(start.elapsed() >= Duration::from_millis(30));
    });
}

#[test]
fn a_join_arm_sees_a_panicking_fiber_finish_and_join_gives_the_payload() {
    let rt = runtime();
    within(HANG, move || {
        rt.block_on(|| {
            let mut fiber = spindle::spawn(|| -> u32 {
                spindle::time::sleep(Duration::from_millis(5));
                std::panic::panic_any(17_u8)
            });
            let (_tx, rx) = mpsc::channel::<u32>();
            let got = Select::new()
                .recv(&rx, |m| Won::Recv(m.unwrap()))
                .join(&mut fiber, || Won::Joined)
                .timeout(NEVER, || Won::Timeout)
                .wait();
            assert_eq!(got, Won::Joined);
            assert!(fiber.is_finished());
            let error = fiber.join().unwrap_err();
            assert!(error.is_panic());
            assert_eq!(
                error.panic_payload().and_then(|p| p.downcast_ref::<u8>()),
                Some(&17)
            );
        })
    });
}

/// A join arm that loses (a timeout first) leaves the handle joinable: the
/// select took its waiter back.
#[test]
fn a_join_arm_that_loses_leaves_the_handle_joinable() {
    let rt = runtime();
    within(HANG, move || {
        let release = Arc::new(Latch::new(1));
        let mut fiber = {
            let release = release.clone();
            rt.spawn(move || {
                release.wait();
                7
            })
        };
        // From a plain thread, several times over.
        let mut select = Select::new()
            .join(&mut fiber, || Won::Joined)
            .timeout(Duration::from_millis(2), || Won::Timeout);
        for _ in 0..5 {
            assert_eq!(select.wait(), Won::Timeout);
        }
        release.count_down();
        // The fiber finishes soon; timeouts may come first meanwhile.
        while select.wait() == Won::Timeout {}
        drop(select);
        assert_eq!(fiber.join().unwrap(), 7);
    });
}

#[test]
fn readiness_arms_on_real_tcp_sockets() {
    let rt = runtime();
    within(HANG, move || {
        rt.block_on(|| {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let address = listener.local_addr().unwrap();
            let (_tx, idle) = mpsc::channel::<u32>();

            // Accept: not ready until a client connects, from another fiber.
            let got = Select::new()
                .readable(&listener, |r| {
                    r.unwrap();
                    Won::Readable
                })
                .timeout(Duration::from_millis(10), || Won::Timeout)
                .wait();
            assert_eq!(got, Won::Timeout);
            let client = spindle::spawn(move || {
                let mut stream = TcpStream::connect(address).unwrap();
                stream.write_all(b"hello").unwrap();
                let mut reply = [0; 2];
                stream.read_exact(&mut reply).unwrap();
                reply
            });
            let got = Select::new()
                .recv(&idle, |m| Won::Recv(m.unwrap()))
                .readable(&listener, |r| {
                    r.unwrap();
                    Won::Readable
                })
                .timeout(NEVER, || Won::Timeout)
                .wait();
            assert_eq!(got, Won::Readable);
            let (mut stream, _) = listener.accept().unwrap();

            // The stream is readable once the client's bytes are there.
            let got = Select::new()
                .recv(&idle, |m| Won::Recv(m.unwrap()))
                .readable(&stream, |r| {
                    r.unwrap();
                    Won::Readable
                })
                .timeout(NEVER, || Won::Timeout)
                .wait();
            assert_eq!(got, Won::Readable);
            let mut buf = [0; 5];
            stream.read_exact(&mut buf).unwrap();
            assert_eq!(&buf, b"hello");

            // Read dry: remembered readiness is stale, and the arm waits.
            let got = Select::new()
                .readable(&stream, |r| {
                    r.unwrap();
                    Won::Readable
                })
                .timeout(Duration::from_millis(10), || Won::Timeout)
                .wait();
            assert_eq!(got, Won::Timeout, "no bytes left, yet readable");

            // Writable: an idle stream has room.
            let got = Select::new()
                .recv(&idle, |m| Won::Recv(m.unwrap()))
                .writable(&stream, |r| {
                    r.unwrap();
                    Won::Writable
                })
                .wait();
            assert_eq!(got, Won::Writable);
            stream.write_all(b"ok").unwrap();
            assert_eq!(&client.join().unwrap(), b"ok");

            // The listener is not readable again until another client.
            let got = Select::new()
                .readable(&listener, |_| Won::Readable)
                .timeout(Duration::from_millis(10), || Won::Timeout)
                .wait();
            assert_eq!(got, Won::Timeout);
        })
    });
}

/// A readiness arm waits through a fiber's reactor; on a plain thread it
/// says so, at once, instead of waiting forever.
#[test]
fn a_readiness_arm_on_a_plain_thread_reports_unsupported() {
    within(HANG, || {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let error = Select::new()
            .readable(&socket, |r| r.unwrap_err())
            .timeout(NEVER, || panic!("the arm should be ready at once"))
            .wait();
        assert_eq!(error.kind(), std::io::ErrorKind::Unsupported);
    });
}

/// A reused select serves many waits; each gets the next message, and a
/// `send_with` arm makes a new value each time its last one went.
#[test]
fn one_select_reused_in_a_loop_delivers_everything_once() {
    const MESSAGES: u64 = 10_000;
    enum Event {
        Got(u64),
        Sent,
    }
    let rt = runtime();
    within(HANG, move || {
        rt.block_on(|| {
            let (tx, rx) = mpsc::sync_channel(4);
            let (out_tx, out_rx) = mpsc::sync_channel(4);
            let producer = spindle::spawn(move || (0..MESSAGES).for_each(|i| tx.send(i).unwrap()));
            let consumer = spindle::spawn(move || out_rx.iter().collect::<Vec<u64>>());
            let mut next = 0u64;
            let (mut received, mut count, mut sent) = (0u64, 0u64, 0u64);
            {
                let mut select = Select::new()
                    .recv(&rx, |m| Event::Got(m.unwrap()))
                    .send_with(
                        &out_tx,
                        || {
                            next += 1;
                            next
                        },
                        |r| {
                            r.unwrap();
                            Event::Sent
                        },
                    )
                    .timeout(NEVER, || unreachable!("nothing times out"));
                while count < MESSAGES {
                    match select.wait() {
                        Event::Got(m) => {
                            received += m;
                            count += 1;
                        }
                        Event::Sent => sent += 1,
                    }
                }
            }
            producer.join().unwrap();
            drop(out_tx);
            // Every value made was sent once and in order, 1..=sent; the
            // last one made and not sent went with the select.
            let values = consumer.join().unwrap();
            assert_eq!(values, (1..=sent).collect::<Vec<_>>());
            assert_eq!(received, (0..MESSAGES).sum::<u64>(), "each message once");
        })
    });
}
