//! Channels with real fibers and threads: mpsc (unbounded, bounded,
//! rendezvous), oneshot and Select, across the fiber/thread boundary;
//! disconnection mid-wait, timeouts, select fairness, and a receiver
//! unwound at shutdown leaving the channel usable.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::within;
use spindle::sync::mpsc::{
    self, RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError,
};
use spindle::sync::{oneshot, Latch, Select, SelectTimeoutError, TrySelectError};
use spindle::{Builder, Runtime};

const HANG: Duration = Duration::from_secs(300);
/// Long enough that a party has almost certainly parked; correctness never
/// depends on it.
const SETTLE: Duration = Duration::from_millis(20);

/// Where a party of a test runs.
#[derive(Clone, Copy, Debug)]
enum Side {
    Fiber,
    Thread,
}

/// Runs `f` on `side`; the returned closure joins it.
fn run_on<T: Send + 'static>(
    rt: &Runtime,
    side: Side,
    f: impl FnOnce() -> T + Send + 'static,
) -> Box<dyn FnOnce() -> T + Send> {
    match side {
        Side::Fiber => {
            let handle = rt.spawn(f);
            Box::new(move || handle.join().unwrap())
        }
        Side::Thread => {
            let handle = std::thread::spawn(f);
            Box::new(move || handle.join().unwrap())
        }
    }
}

/// The (sender, receiver) pairings every primitive is tested with.
const PAIRINGS: [(Side, Side); 4] = [
    (Side::Fiber, Side::Fiber),
    (Side::Fiber, Side::Thread),
    (Side::Thread, Side::Fiber),
    (Side::Thread, Side::Thread),
];

#[test]
fn a_million_messages_from_100_senders_to_10_receivers() {
    // Every (sender, seq) arrives exactly once, and each receiver sees each
    // sender's messages in the order they were sent.
    const SENDERS: usize = 100;
    const PER_SENDER: u32 = 10_000;
    const RECEIVERS: usize = 10;
    let rt = Builder::new().workers(2).build().unwrap();
    let per_sender = within(HANG, move || {
        rt.block_on(|| {
            let (tx, rx) = mpsc::channel::<(usize, u32)>();
            let receivers: Vec<_> = (0..RECEIVERS)
                .map(|_| {
                    let rx = rx.clone();
                    spindle::spawn(move || {
                        let mut seen: Vec<Vec<u32>> = vec![Vec::new(); SENDERS];
                        for (sender, seq) in &rx {
                            let from_sender = &mut seen[sender];
                            assert!(
                                from_sender.last().is_none_or(|&last| last < seq),
                                "sender {sender}: {seq} after {:?}",
                                from_sender.last()
                            );
                            from_sender.push(seq);
                        }
                        seen
                    })
                })
                .collect();
            drop(rx);
            let senders: Vec<_> = (0..SENDERS)
                .map(|id| {
                    let tx = tx.clone();
                    spindle::spawn(move || {
                        for seq in 0..PER_SENDER {
                            tx.send((id, seq)).unwrap();
                            if seq % 64 == 0 {
                                spindle::yield_now(); // let the others interleave
                            }
                        }
                    })
                })
                .collect();
            drop(tx);
            senders.into_iter().for_each(|s| s.join().unwrap());
            let mut per_sender: Vec<Vec<u32>> = vec![Vec::new(); SENDERS];
            for receiver in receivers {
                for (sender, seqs) in receiver.join().unwrap().into_iter().enumerate() {
                    per_sender[sender].extend(seqs);
                }
            }
            per_sender
        })
    });
    for (sender, mut seqs) in per_sender.into_iter().enumerate() {
        seqs.sort_unstable();
        assert_eq!(
            seqs.len(),
            PER_SENDER as usize,
            "sender {sender}: lost or duplicated"
        );
        assert!(
            seqs.iter().copied().eq(0..PER_SENDER),
            "sender {sender}: wrong messages"
        );
    }
}

#[test]
fn a_small_bounded_channel_between_fibers_and_threads_loses_nothing() {
    // Senders wait for room all the time: 8 fiber and 2 thread senders, 3
    // fiber and 1 thread receivers, through a buffer of 4.
    const PER_SENDER: u64 = 5_000;
    let rt = Builder::new().workers(2).build().unwrap();
    let (tx, rx) = mpsc::sync_channel::<u64>(4);
    let mut joins = Vec::new();
    for id in 0..10u64 {
        let tx = tx.clone();
        let side = if id < 8 { Side::Fiber } else { Side::Thread };
        joins.push(run_on(&rt, side, move || {
            for seq in 0..PER_SENDER {
                tx.send(id * 1_000_000 + seq).unwrap();
            }
            (0, 0)
        }));
    }
    drop(tx);
    for id in 0..4 {
        let rx = rx.clone();
        let side = if id < 3 { Side::Fiber } else { Side::Thread };
        joins.push(run_on(&rt, side, move || {
            rx.iter().fold((0u64, 0u64), |(n, sum), v| (n + 1, sum + v))
        }));
    }
    drop(rx);
    let (count, sum) = within(HANG, move || {
        joins
            .into_iter()
            .map(|join| join())
            .fold((0, 0), |(n, s), (dn, ds)| (n + dn, s + ds))
    });
    let expected: u64 = (0..10u64)
        .map(|id| (0..PER_SENDER).map(|seq| id * 1_000_000 + seq).sum::<u64>())
        .sum();
    assert_eq!(count, 10 * PER_SENDER);
    assert_eq!(sum, expected);
}

/// Sends 0..1000 on a channel made by `make` from `sender_side` to
/// `receiver_side`, and checks they arrive in order.
fn stream_across<S: Send + 'static>(
    make: impl Fn() -> (S, mpsc::Receiver<u32>),
    send: fn(&S, u32),
) {
    let rt = Builder::new().workers(2).build().unwrap();
    for (sender_side, receiver_side) in PAIRINGS {
        let (tx, rx) = make();
        let receiver = run_on(&rt, receiver_side, move || rx.iter().collect::<Vec<u32>>());
        let sender = run_on(&rt, sender_side, move || {
            for i in 0..1000 {
                send(&tx, i);
            }
        });
        let got = within(HANG, move || {
            sender();
            receiver()
        });
        assert!(
            got.iter().copied().eq(0..1000),
            "{sender_side:?} -> {receiver_side:?}: {} messages, wrong order or content",
            got.len()
        );
    }
}

#[test]
fn unbounded_channel_between_fibers_and_threads() {
    stream_across(mpsc::channel, |tx, i| tx.send(i).unwrap());
}

#[test]
fn rendezvous_channel_between_fibers_and_threads() {
    stream_across(|| mpsc::sync_channel(0), |tx, i| tx.send(i).unwrap());
}

#[test]
fn bounded_channel_between_fibers_and_threads() {
    stream_across(|| mpsc::sync_channel(4), |tx, i| tx.send(i).unwrap());
}

#[test]
fn oneshot_between_fibers_and_threads() {
    let rt = Builder::new().workers(2).build().unwrap();
    for (sender_side, receiver_side) in PAIRINGS {
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..100).map(|_| oneshot::oneshot()).unzip();
        let receiver = run_on(&rt, receiver_side, move || {
            receivers
                .into_iter()
                .map(|rx| rx.recv().unwrap())
                .collect::<Vec<u32>>()
        });
        let sender = run_on(&rt, sender_side, move || {
            for (i, tx) in senders.into_iter().enumerate() {
                tx.send(i as u32).unwrap();
            }
        });
        let got = within(HANG, move || {
            sender();
            receiver()
        });
        assert!(
            got.iter().copied().eq(0..100),
            "{sender_side:?} -> {receiver_side:?}"
        );
    }
}

#[test]
fn a_rendezvous_send_returns_only_after_the_take() {
    let rt = Builder::new().workers(2).build().unwrap();
    let (tx, rx) = mpsc::sync_channel(0);
    let returned = Arc::new(AtomicBool::new(false));
    let sender = {
        let returned = returned.clone();
        rt.spawn(move || {
            tx.send(7).unwrap();
            returned.store(true, Ordering::SeqCst);
        })
    };
    std::thread::sleep(SETTLE * 2);
    assert!(
        !returned.load(Ordering::SeqCst),
        "the send returned with nobody receiving"
    );
    assert_eq!(rx.recv(), Ok(7));
    within(HANG, move || sender.join().unwrap());
    assert!(returned.load(Ordering::SeqCst));
    // No receiver waiting: try_send fails and the value comes back.
    let (tx, rx) = mpsc::sync_channel(0);
    assert_eq!(tx.try_send(1), Err(TrySendError::Full(1)));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
}

#[test]
fn receivers_blocked_when_the_last_sender_goes_get_an_error() {
    let rt = Builder::new().workers(2).build().unwrap();
    for side in [Side::Fiber, Side::Thread] {
        for capacity in [None, Some(0), Some(4)] {
            let (tx, rx) = match capacity {
                None => {
                    let (tx, rx) = mpsc::channel::<u32>();
                    (Box::new(tx) as Box<dyn Send>, rx)
                }
                Some(capacity) => {
                    let (tx, rx) = mpsc::sync_channel::<u32>(capacity);
                    (Box::new(tx) as Box<dyn Send>, rx)
                }
            };
            // Two receivers (clones) block; then the sender goes.
            let blocked: Vec<_> = (0..2)
                .map(|_| {
                    let rx = rx.clone();
                    run_on(&rt, side, move || rx.recv())
                })
                .collect();
            std::thread::sleep(SETTLE);
            drop(tx);
            let results = within(HANG, move || {
                blocked.into_iter().map(|j| j()).collect::<Vec<_>>()
            });
            assert_eq!(
                results,
                vec![Err(RecvError); 2],
                "{side:?}, capacity {capacity:?}"
            );
            assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
        }
    }
}

#[test]
fn buffered_messages_outlive_the_senders() {
    let (tx, rx) = mpsc::sync_channel(4);
    tx.send(1).unwrap();
    tx.send(2).unwrap();
    drop(tx);
    assert_eq!(rx.recv(), Ok(1));
    assert_eq!(rx.recv_timeout(Duration::from_secs(1)), Ok(2));
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(1)),
        Err(RecvTimeoutError::Disconnected)
    );
}

#[test]
fn senders_blocked_when_the_last_receiver_goes_get_their_value_back() {
    let rt = Builder::new().workers(2).build().unwrap();
    for side in [Side::Fiber, Side::Thread] {
        for capacity in [0, 1] {
            let (tx, rx) = mpsc::sync_channel::<String>(capacity);
            if capacity == 1 {
                tx.send("filler".to_string()).unwrap();
            }
            let blocked: Vec<_> = (0..2)
                .map(|i| {
                    let tx = tx.clone();
                    run_on(&rt, side, move || tx.send(format!("value {i}")))
                })
                .collect();
            std::thread::sleep(SETTLE);
            let rx2 = rx.clone();
            drop(rx);
            drop(rx2);
            let mut results = within(HANG, move || {
                blocked.into_iter().map(|j| j()).collect::<Vec<_>>()
            });
            results.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
            let values: Vec<String> = results
                .into_iter()
                .map(|r| r.expect_err("a send succeeded with no receiver").0)
                .collect();
            assert_eq!(
                values,
                ["value 0", "value 1"],
                "{side:?}, capacity {capacity}"
            );
            assert_eq!(tx.send("late".into()), Err(SendError("late".to_string())));
            assert!(matches!(
                tx.try_send("x".into()),
                Err(TrySendError::Disconnected(_))
            ));
        }
    }
    let (tx, rx) = mpsc::channel();
    drop(rx);
    assert_eq!(tx.send(3), Err(SendError(3)));
}

#[test]
fn oneshot_disconnection_both_ways() {
    let rt = Builder::new().workers(2).build().unwrap();
    for side in [Side::Fiber, Side::Thread] {
        let (tx, rx) = oneshot::oneshot::<u32>();
        let waiting = run_on(&rt, side, move || rx.recv());
        std::thread::sleep(SETTLE);
        drop(tx);
        assert_eq!(within(HANG, waiting), Err(RecvError));
    }
    let (tx, rx) = oneshot::oneshot::<u32>();
    assert!(!tx.is_closed());
    drop(rx);
    assert!(tx.is_closed());
    assert_eq!(tx.send(5), Err(5));
    let (tx, mut rx) = oneshot::oneshot::<u32>();
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    tx.send(9).unwrap();
    assert_eq!(rx.try_recv(), Ok(9));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
}

#[test]
fn timeouts_fire() {
    let rt = Builder::new().workers(2).build().unwrap();
    const WAIT: Duration = Duration::from_millis(30);
    for side in [Side::Fiber, Side::Thread] {
        let checks = run_on(&rt, side, move || {
            let (tx, rx) = mpsc::channel::<u32>();
            let start = Instant::now();
            assert_eq!(rx.recv_timeout(WAIT), Err(RecvTimeoutError::Timeout));
            assert!(start.elapsed() >= WAIT);

            let (full, _keep) = mpsc::sync_channel::<u32>(1);
            full.send(1).unwrap();
            let start = Instant::now();
            assert_eq!(
                full.send_timeout(2, WAIT),
                Err(SendTimeoutError::Timeout(2))
            );
            assert!(start.elapsed() >= WAIT);

            // A rendezvous send nobody takes comes back, leaving the slot
            // empty.
            let (rendezvous, rendezvous_rx) = mpsc::sync_channel::<u32>(0);
            let start = Instant::now();
            assert_eq!(
                rendezvous.send_timeout(3, WAIT),
                Err(SendTimeoutError::Timeout(3))
            );
            assert!(start.elapsed() >= WAIT);
            assert_eq!(rendezvous_rx.try_recv(), Err(TryRecvError::Empty));

            let (once_tx, mut once_rx) = oneshot::oneshot::<u32>();
            let start = Instant::now();
            assert_eq!(once_rx.recv_timeout(WAIT), Err(RecvTimeoutError::Timeout));
            assert!(start.elapsed() >= WAIT);
            // Still usable after the timeout.
            once_tx.send(4).unwrap();
            assert_eq!(once_rx.recv_timeout(WAIT), Ok(4));

            // A timed wait that is satisfied in time returns the value.
            tx.send(5).unwrap();
            assert_eq!(rx.recv_timeout(Duration::from_secs(60)), Ok(5));
        });
        within(HANG, checks);
    }
}

#[test]
fn timed_waits_get_what_arrives_before_the_deadline() {
    let rt = Builder::new().workers(2).build().unwrap();
    let (tx, rx) = mpsc::sync_channel::<u32>(0);
    let (back_tx, back_rx) = mpsc::sync_channel::<u32>(1);
    back_tx.send(0).unwrap(); // full
    let fiber = rt.spawn(move || {
        spindle::time::sleep(SETTLE);
        tx.send_timeout(1, Duration::from_secs(60)).unwrap();
        assert_eq!(back_rx.recv(), Ok(0)); // makes room for the 2 below
        assert_eq!(back_rx.recv(), Ok(2));
    });
    within(HANG, move || {
        assert_eq!(rx.recv_timeout(Duration::from_secs(60)), Ok(1));
        back_tx.send_timeout(2, Duration::from_secs(60)).unwrap();
        fiber.join().unwrap();
    });
}

#[test]
fn select_chooses_every_ready_arm() {
    // Two arms always ready: over 10,000 selects each must be chosen often
    // (a fixed order would starve the second).
    let rt = Builder::new().workers(2).build().unwrap();
    let (first, second) = within(HANG, move || {
        rt.block_on(|| {
            let (tx1, rx1) = mpsc::channel();
            let (tx2, rx2) = mpsc::channel();
            for i in 0..10_000 {
                tx1.send(i).unwrap();
                tx2.send(i).unwrap();
            }
            let mut counts = [0usize; 2];
            for _ in 0..10_000 {
                let arm = Select::new()
                    .recv(&rx1, |m| m.map(|_| 0))
                    .recv(&rx2, |m| m.map(|_| 1))
                    .wait()
                    .unwrap();
                counts[arm] += 1;
            }
            (counts[0], counts[1])
        })
    });
    assert_eq!(first + second, 10_000);
    assert!(
        first > 2_000 && second > 2_000,
        "unbalanced: {first} vs {second}"
    );
}

#[test]
fn select_times_out_and_try_select_does_not_wait() {
    let rt = Builder::new().workers(2).build().unwrap();
    rt.block_on(|| {
        let (tx1, rx1) = mpsc::channel::<u32>();
        let (_tx2, rx2) = mpsc::sync_channel::<u32>(0);
        let (full, _keep) = mpsc::sync_channel::<u32>(1);
        full.send(0).unwrap();
        let wait = Duration::from_millis(30);
        let start = Instant::now();
        let got = Select::new()
            .recv(&rx1, |_| "rx1")
            .recv(&rx2, |_| "rx2")
            .send(&full, 1, |_| "full")
            .wait_timeout(wait);
        assert_eq!(got, Err(SelectTimeoutError));
        assert!(start.elapsed() >= wait);
        // The timed-out select left no node behind: a later message goes
        // to a plain receive.
        tx1.send(1).unwrap();
        assert_eq!(rx1.recv_timeout(Duration::from_secs(60)), Ok(1));

        let got = Select::new()
            .recv(&rx1, |_| "rx1")
            .recv(&rx2, |_| "rx2")
            .try_select();
        assert_eq!(got, Err(TrySelectError));
        tx1.send(2).unwrap();
        let got = Select::new()
            .recv(&rx1, |m| m.unwrap())
            .recv(&rx2, |_| unreachable!("nothing was sent on rx2"))
            .try_select();
        assert_eq!(got, Ok(2));
        assert_eq!(
            Select::<()>::new().wait_timeout(Duration::from_millis(1)),
            Err(SelectTimeoutError)
        );
    });
}

#[test]
fn select_is_woken_by_a_later_message_on_any_channel() {
    let rt = Builder::new().workers(2).build().unwrap();
    for (side, late) in [(Side::Fiber, 3), (Side::Thread, 0), (Side::Fiber, 4)] {
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..5).map(|_| mpsc::channel::<u32>()).unzip();
        let selector = run_on(&rt, side, move || {
            let mut select = Select::new();
            for (index, rx) in receivers.iter().enumerate() {
                select = select.recv(rx, move |m| (index, m.unwrap()));
            }
            select.wait()
        });
        std::thread::sleep(SETTLE);
        senders[late].send(42).unwrap();
        assert_eq!(within(HANG, selector), (late, 42));
    }
}

#[test]
fn select_send_arms_wait_for_room_and_for_a_receiver() {
    let rt = Builder::new().workers(2).build().unwrap();
    // Bounded and full: the send arm completes once a receiver makes room.
    let (tx, rx) = mpsc::sync_channel::<u32>(1);
    tx.send(1).unwrap();
    let (_idle_tx, idle_rx) = mpsc::channel::<u32>();
    let selector = rt.spawn(move || {
        Select::new()
            .recv(&idle_rx, |_| "idle")
            .send(&tx, 2, |r| {
                r.unwrap();
                "sent"
            })
            .wait()
    });
    std::thread::sleep(SETTLE);
    assert_eq!(rx.recv(), Ok(1));
    assert_eq!(within(HANG, move || selector.join().unwrap()), "sent");
    assert_eq!(rx.recv(), Ok(2));

    // Rendezvous: the send arm waits for a receiver to arrive, from a
    // fiber and from a thread.
    for side in [Side::Fiber, Side::Thread] {
        let (tx, rx) = mpsc::sync_channel::<u32>(0);
        let selector = run_on(&rt, side, move || {
            Select::new()
                .send(&tx, 3, |r| r.is_ok())
                .wait_timeout(Duration::from_secs(120))
        });
        std::thread::sleep(SETTLE);
        assert_eq!(within(HANG, move || rx.recv()), Ok(3));
        assert_eq!(within(HANG, selector), Ok(true));
    }

    // And a receiver already waiting makes it ready at once.
    let (tx, rx) = mpsc::sync_channel::<u32>(0);
    let receiver = rt.spawn(move || rx.recv());
    std::thread::sleep(SETTLE);
    let sent = within(HANG, move || {
        let sent = Select::new().send(&tx, 4, |r| r.is_ok()).wait();
        (sent, receiver.join().unwrap())
    });
    assert_eq!(sent, (true, Ok(4)));
}

#[test]
fn select_on_a_channel_whose_senders_go() {
    let rt = Builder::new().workers(2).build().unwrap();
    for side in [Side::Fiber, Side::Thread] {
        let (tx, rx) = mpsc::channel::<u32>();
        let (_other_tx, other_rx) = mpsc::sync_channel::<u32>(0);
        let selector = run_on(&rt, side, move || {
            Select::new()
                .recv(&other_rx, |_| "other")
                .recv(&rx, |m| match m {
                    Err(RecvError) => "disconnected",
                    Ok(_) => "message",
                })
                .wait()
        });
        std::thread::sleep(SETTLE);
        drop(tx);
        assert_eq!(within(HANG, selector), "disconnected");
    }
    // A send arm whose receivers go gets its value back.
    let (tx, rx) = mpsc::sync_channel::<String>(0);
    let selector = rt.spawn(move || {
        Select::new()
            .send(&tx, "kept".to_string(), |r| r.unwrap_err().0)
            .wait()
    });
    std::thread::sleep(SETTLE);
    drop(rx);
    assert_eq!(within(HANG, move || selector.join().unwrap()), "kept");
}

#[test]
fn selects_and_plain_receivers_share_channels_without_losing_messages() {
    // Fibers and a thread select over two channels while a fiber receives
    // plainly from the first: every message is received exactly once, so
    // no notification was swallowed by a select that chose another arm.
    const EACH: u64 = 20_000;
    let rt = Builder::new().workers(2).build().unwrap();
    let (tx_a, rx_a) = mpsc::sync_channel::<u64>(2);
    let (tx_b, rx_b) = mpsc::channel::<u64>();
    let mut joins = Vec::new();
    for i in 0..5 {
        let (rx_a, rx_b) = (rx_a.clone(), rx_b.clone());
        let side = if i == 0 { Side::Thread } else { Side::Fiber };
        joins.push(run_on(&rt, side, move || {
            let (mut a_open, mut b_open) = (true, true);
            let (mut count, mut sum) = (0u64, 0u64);
            while a_open || b_open {
                let mut select = Select::new();
                if a_open {
                    select = select.recv(&rx_a, |m| (0, m));
                }
                if b_open {
                    select = select.recv(&rx_b, |m| (1, m));
                }
                match select.wait() {
                    (_, Ok(value)) => {
                        count += 1;
                        sum += value;
                    }
                    (0, Err(RecvError)) => a_open = false,
                    (_, Err(RecvError)) => b_open = false,
                }
            }
            (count, sum)
        }));
    }
    {
        let rx_a = rx_a.clone();
        joins.push(run_on(&rt, Side::Fiber, move || {
            rx_a.iter().fold((0, 0), |(n, s), v| (n + 1, s + v))
        }));
    }
    drop((rx_a, rx_b));
    let producer_a = run_on(&rt, Side::Fiber, move || {
        for i in 0..EACH {
            tx_a.send(i).unwrap();
        }
    });
    let producer_b = run_on(&rt, Side::Thread, move || {
        for i in 0..EACH {
            tx_b.send(EACH + i).unwrap();
            if i % 128 == 0 {
                std::thread::yield_now();
            }
        }
    });
    let (count, sum) = within(HANG, move || {
        producer_a();
        producer_b();
        joins
            .into_iter()
            .map(|join| join())
            .fold((0, 0), |(n, s), (dn, ds)| (n + dn, s + ds))
    });
    assert_eq!(count, 2 * EACH);
    assert_eq!(sum, (0..2 * EACH).sum::<u64>());
}

/// A receiver whose timeout fires just as a send wakes it must take the
/// message (or pass the wake-up on), never drop the wake-up. Each round, a
/// thread waits with `recv_timeout(20 µs)` and a second thread queues
/// behind it with a blocking `recv`; then, after a delay that varies from
/// round to round around the first one's deadline, one message is sent,
/// which wakes the first in line. If the timed receiver gave up after the
/// send had picked it, without the message, the blocking one would sleep
/// beside the buffered message for good and `within` would fail.
/// Otherwise exactly one of the two gets the message (the other is then
/// released by a second one). Plain threads, so that the timeout and the
/// send really race.
#[test]
fn a_receiver_timing_out_as_it_is_woken_loses_no_wake_up() {
    use std::sync::atomic::AtomicU64;
    const ROUNDS: u64 = 10_000;
    const RELEASE: u64 = u64::MAX;
    const NOTHING: u64 = u64::MAX - 1;
    /// A round number or result one thread posts and another spins on.
    struct Posts {
        go: AtomicU64,
        queued: AtomicU64,
        got: AtomicU64,
        done: AtomicU64,
    }
    fn posts() -> Arc<Posts> {
        let none = || AtomicU64::new(u64::MAX);
        Arc::new(Posts {
            go: none(),
            queued: none(),
            got: none(),
            done: none(),
        })
    }
    fn spin_until(condition: impl Fn() -> bool) {
        while !condition() {
            std::thread::yield_now();
        }
    }
    fn spin_for(micros: u64) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_micros(micros) {
            std::hint::spin_loop();
        }
    }
    let (tx, rx) = mpsc::channel::<u64>();
    let (timed, blocking) = (posts(), posts());
    let receiver = |posts: Arc<Posts>, rx: mpsc::Receiver<u64>, timeout: Option<Duration>| {
        std::thread::spawn(move || {
            for round in 0..ROUNDS {
                spin_until(|| posts.go.load(Ordering::SeqCst) == round);
                posts.queued.store(round, Ordering::SeqCst);
                let got = match timeout {
                    Some(timeout) => rx.recv_timeout(timeout).unwrap_or(NOTHING),
                    None => rx.recv().unwrap(),
                };
                posts.got.store(got, Ordering::SeqCst);
                posts.done.store(round, Ordering::SeqCst);
            }
        })
    };
    let timed_thread = receiver(timed.clone(), rx.clone(), Some(Duration::from_micros(20)));
    let blocking_thread = receiver(blocking.clone(), rx, None);
    let (timed_out, raced) = within(HANG, move || {
        let (mut timed_out, mut raced) = (0, 0);
        for round in 0..ROUNDS {
            timed.go.store(round, Ordering::SeqCst);
            spin_until(|| timed.queued.load(Ordering::SeqCst) == round);
            spin_for(3); // it queues first...
            blocking.go.store(round, Ordering::SeqCst);
            spin_until(|| blocking.queued.load(Ordering::SeqCst) == round);
            spin_for(3); // ...and the blocking one behind it
            spin_for(round * 13 % 160); // around the deadline and its slack
            tx.send(round).unwrap();
            spin_until(|| timed.done.load(Ordering::SeqCst) == round);
            if timed.got.load(Ordering::SeqCst) == round {
                raced += 1;
                tx.send(RELEASE).unwrap();
                spin_until(|| blocking.done.load(Ordering::SeqCst) == round);
                assert_eq!(blocking.got.load(Ordering::SeqCst), RELEASE);
            } else {
                timed_out += 1;
                spin_until(|| blocking.done.load(Ordering::SeqCst) == round);
                assert_eq!(blocking.got.load(Ordering::SeqCst), round);
            }
        }
        (timed_out, raced)
    });
    timed_thread.join().unwrap();
    blocking_thread.join().unwrap();
    assert_eq!(timed_out + raced, ROUNDS);
    eprintln!("{timed_out} rounds timed out, {raced} got the message");
}

#[test]
fn waiters_unwound_at_shutdown_leave_the_channels_usable() {
    // Three fibers park: in recv, in a select, and in a rendezvous send.
    // Shutdown unwinds them; then threads use the same channels.
    let rt = Builder::new().workers(2).build().unwrap();
    let (tx, rx) = mpsc::channel::<u32>();
    let (sel_tx, sel_rx) = mpsc::sync_channel::<u32>(1);
    let (rdv_tx, rdv_rx) = mpsc::sync_channel::<u32>(0);
    let parked = Arc::new(Latch::new(3));
    {
        let (rx, parked) = (rx.clone(), parked.clone());
        rt.spawn(move || {
            parked.count_down();
            let _never = rx.recv();
            unreachable!("nothing is sent before shutdown");
        });
    }
    {
        let (rx, sel_rx, parked) = (rx.clone(), sel_rx.clone(), parked.clone());
        rt.spawn(move || {
            parked.count_down();
            Select::new().recv(&rx, |_| ()).recv(&sel_rx, |_| ()).wait();
            unreachable!("nothing is sent before shutdown");
        });
    }
    {
        let (rdv_tx, parked) = (rdv_tx.clone(), parked.clone());
        rt.spawn(move || {
            parked.count_down();
            let _never = rdv_tx.send(99);
            unreachable!("nothing is received before shutdown");
        });
    }
    parked.wait();
    std::thread::sleep(SETTLE * 2); // let them park (a count of 3 holds either way)
    let report = rt.shutdown();
    assert_eq!(report.fibers_cancelled, 3);
    within(HANG, move || {
        // The unwound rendezvous sender took its value back.
        assert_eq!(rdv_rx.try_recv(), Err(TryRecvError::Empty));
        let receiver = std::thread::spawn(move || (rx.recv(), sel_rx.recv(), rdv_rx.recv()));
        tx.send(1).unwrap();
        sel_tx.send(2).unwrap();
        rdv_tx.send(3).unwrap();
        assert_eq!(receiver.join().unwrap(), (Ok(1), Ok(2), Ok(3)));
    });
}

#[test]
fn a_select_does_not_rendezvous_with_itself() {
    // One select both receives from and sends on the same rendezvous
    // channel: alone, it must time out (not pair with itself, not spin
    // forever); with a partner on either side, the matching arm completes.
    let rt = Builder::new().workers(2).build().unwrap();
    let (tx, rx) = mpsc::sync_channel::<u32>(0);
    let (tx, rx) = (Arc::new(tx), Arc::new(rx));
    let select = |tx: &mpsc::SyncSender<u32>, rx: &mpsc::Receiver<u32>, timeout| {
        Select::new()
            .recv(rx, |m| format!("received {}", m.unwrap()))
            .send(tx, 1, |r| {
                r.unwrap();
                "sent".to_string()
            })
            .wait_timeout(timeout)
    };
    let alone = {
        let (tx, rx) = (tx.clone(), rx.clone());
        rt.spawn(move || select(&tx, &rx, Duration::from_millis(30)))
    };
    assert_eq!(
        within(HANG, move || alone.join().unwrap()),
        Err(SelectTimeoutError)
    );
    for partner in ["sender", "receiver"] {
        let selector = {
            let (tx, rx) = (tx.clone(), rx.clone());
            rt.spawn(move || select(&tx, &rx, Duration::from_secs(120)))
        };
        std::thread::sleep(SETTLE);
        let (tx, rx) = (tx.clone(), rx.clone());
        let got = within(HANG, move || {
            if partner == "sender" {
                tx.send(2).unwrap();
            } else {
                assert_eq!(rx.recv(), Ok(1));
            }
            selector.join().unwrap()
        });
        let expected = if partner == "sender" {
            "received 2"
        } else {
            "sent"
        };
        assert_eq!(got.as_deref(), Ok(expected));
    }
}

/// Go's `TestSelectFairness` shape: two arms that are never ready ahead of
/// two that always are. Each of the ready ones must win half the time,
/// within 10 standard deviations (a select that starts at a random arm and
/// then polls in order picks the first ready arm three times in four).
#[test]
fn select_chooses_uniformly_among_ready_arms() {
    const TRIALS: usize = 10_000;
    let rt = Builder::new().workers(2).build().unwrap();
    let first = within(HANG, move || {
        rt.block_on(|| {
            let (tx1, rx1) = mpsc::channel::<u8>();
            let (tx2, rx2) = mpsc::channel::<u8>();
            for _ in 0..TRIALS {
                tx1.send(1).unwrap();
                tx2.send(2).unwrap();
            }
            let (_tx3, rx3) = mpsc::sync_channel::<u8>(0);
            let (_tx4, rx4) = mpsc::sync_channel::<u8>(0);
            let mut first = 0;
            for _ in 0..TRIALS {
                let got = Select::new()
                    .recv(&rx3, |m| m.unwrap())
                    .recv(&rx4, |m| m.unwrap())
                    .recv(&rx1, |m| m.unwrap())
                    .recv(&rx2, |m| m.unwrap())
                    .wait();
                if got == 1 {
                    first += 1;
                }
            }
            first
        })
    });
    let n = TRIALS as f64;
    let sigma = (0.25 / n).sqrt();
    let share = first as f64 / n;
    assert!(
        (share - 0.5).abs() <= 10.0 * sigma,
        "unfair select: the first ready arm won {first} of {TRIALS}"
    );
}

/// Go's `TestSelfSelect`: two fibers each run 1,000 selects that both send
/// on and receive from one channel. On a rendezvous channel a value goes
/// to the other fiber, never back to its own sender; with a buffer, the
/// same loop must just finish.
#[test]
fn selects_that_send_and_receive_on_one_channel_never_receive_their_own() {
    let rt = Builder::new().workers(2).build().unwrap();
    for capacity in [0, 10] {
        let (tx, rx) = mpsc::sync_channel::<usize>(capacity);
        let fibers: Vec<_> = (0..2)
            .map(|me| {
                let (tx, rx) = (tx.clone(), rx.clone());
                rt.spawn(move || {
                    let mut own = 0;
                    for i in 0..1000 {
                        let received = |m: Result<usize, RecvError>| Some(m.unwrap());
                        let sent = |r: Result<(), SendError<usize>>| {
                            r.unwrap();
                            None
                        };
                        let got = if me == 0 || i % 2 == 0 {
                            Select::new().send(&tx, me, sent).recv(&rx, received).wait()
                        } else {
                            Select::new().recv(&rx, received).send(&tx, me, sent).wait()
                        };
                        if got == Some(me) {
                            own += 1;
                        }
                    }
                    own
                })
            })
            .collect();
        let own = within(HANG, move || {
            fibers
                .into_iter()
                .map(|fiber| fiber.join().unwrap())
                .collect::<Vec<_>>()
        });
        if capacity == 0 {
            assert_eq!(own, [0, 0], "values received by their own sender");
        }
    }
}

/// A `try_send` on a rendezvous channel succeeds only while a receiver
/// waits, and then that receiver has the value: nobody else can take it
/// (it is not left in a slot for any receiver), so capacity 0 never
/// behaves like capacity 1.
#[test]
fn a_rendezvous_try_send_hands_its_value_to_the_waiting_receiver() {
    let rt = Builder::new().workers(2).build().unwrap();
    for _ in 0..100 {
        let (tx, rx) = mpsc::sync_channel::<u32>(0);
        let receiver = {
            let rx = rx.clone();
            rt.spawn(move || rx.recv())
        };
        loop {
            match tx.try_send(1) {
                Ok(()) => break,
                Err(TrySendError::Full(_)) => std::thread::sleep(Duration::from_micros(50)),
                Err(TrySendError::Disconnected(_)) => unreachable!("the receivers live"),
            }
        }
        assert_eq!(
            rx.try_recv(),
            Err(TryRecvError::Empty),
            "the value was left in a slot"
        );
        assert_eq!(within(HANG, move || receiver.join().unwrap()), Ok(1));
    }
}

/// `try_select` is a snapshot: with at least one of two channels holding a
/// message at every instant, it never reports that nothing was ready. A
/// thread moves a token between the two (it puts the new one in before it
/// takes the old one out) while another runs `try_select` over both (and
/// puts back what it took),
/// behind never-ready arms that widen the window a one-at-a-time check
/// would leave between them.
#[test]
fn try_select_sees_a_snapshot_of_its_channels() {
    const ROUNDS: usize = 200_000;
    let (tx_a, rx_a) = mpsc::channel::<()>();
    let (tx_b, rx_b) = mpsc::channel::<()>();
    tx_a.send(()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mover = {
        let (tx_a, tx_b, rx_a, rx_b) = (tx_a.clone(), tx_b.clone(), rx_a.clone(), rx_b.clone());
        let stop = stop.clone();
        std::thread::spawn(move || {
            // Spins rather than parks, so that it moves as fast as it can.
            let take = |rx: &mpsc::Receiver<()>| while rx.try_recv().is_err() {};
            while !stop.load(Ordering::Relaxed) {
                tx_b.send(()).unwrap();
                take(&rx_a);
                tx_a.send(()).unwrap();
                take(&rx_b);
            }
        })
    };
    let idle: Vec<_> = (0..16).map(|_| mpsc::channel::<()>()).collect();
    let missed = within(HANG, move || {
        let mut missed = 0;
        for _ in 0..ROUNDS {
            let mut select = Select::new().recv(&rx_a, |_| Some(true));
            for (_, rx) in &idle {
                select = select.recv(rx, |_| None);
            }
            match select.recv(&rx_b, |_| Some(false)).try_select() {
                Ok(Some(true)) => tx_a.send(()).unwrap(),
                Ok(Some(false)) => tx_b.send(()).unwrap(),
                Ok(None) => unreachable!("nothing is sent on the idle channels"),
                Err(TrySelectError) => missed += 1,
            }
        }
        stop.store(true, Ordering::Relaxed);
        mover.join().unwrap();
        missed
    });
    assert_eq!(missed, 0, "try_select missed a ready channel");
}

/// Selects that send and selects that receive, on rendezvous and bounded
/// channels, with short timeouts, from fibers and a thread: every message
/// is received exactly once (a claim never completes two arms, a withdrawn
/// select never loses the message it held, a timed-out one never keeps
/// one it was handed).
#[test]
fn racing_select_senders_and_receivers_deliver_every_message_once() {
    const EACH: u64 = 5_000;
    const PRODUCERS: u64 = 3;
    let rt = Builder::new().workers(2).build().unwrap();
    let (rdv_tx, rdv_rx) = mpsc::sync_channel::<u64>(0);
    let (small_tx, small_rx) = mpsc::sync_channel::<u64>(1);
    let mut producers = Vec::new();
    for p in 0..PRODUCERS {
        let (rdv_tx, small_tx) = (rdv_tx.clone(), small_tx.clone());
        let side = if p == 0 { Side::Thread } else { Side::Fiber };
        producers.push(run_on(&rt, side, move || {
            for i in 0..EACH {
                let mut value = p * EACH + i;
                loop {
                    let back = Select::new()
                        .send(&rdv_tx, value, |r| r.map_err(|e| e.0).err())
                        .send(&small_tx, value, |r| r.map_err(|e| e.0).err())
                        .wait_timeout(Duration::from_micros(50));
                    match back {
                        Ok(None) => break,
                        Ok(Some(_)) => unreachable!("the receivers live"),
                        Err(SelectTimeoutError) => value = p * EACH + i, // try again
                    }
                }
            }
        }));
    }
    drop((rdv_tx, small_tx));
    let mut consumers = Vec::new();
    for c in 0..3 {
        let (rdv_rx, small_rx) = (rdv_rx.clone(), small_rx.clone());
        let side = if c == 0 { Side::Thread } else { Side::Fiber };
        consumers.push(run_on(&rt, side, move || {
            let (mut count, mut sum) = (0u64, 0u64);
            let (mut rdv_open, mut small_open) = (true, true);
            while rdv_open || small_open {
                if c == 2 && rdv_open {
                    // A plain receiver with a timeout, beside the selects.
                    match rdv_rx.recv_timeout(Duration::from_micros(30)) {
                        Ok(v) => {
                            count += 1;
                            sum += v;
                        }
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => rdv_open = false,
                    }
                    continue;
                }
                let mut select = Select::new();
                if rdv_open {
                    select = select.recv(&rdv_rx, |m| (0, m));
                }
                if small_open {
                    select = select.recv(&small_rx, |m| (1, m));
                }
                match select.wait_timeout(Duration::from_micros(40)) {
                    Ok((_, Ok(v))) => {
                        count += 1;
                        sum += v;
                    }
                    Ok((0, Err(RecvError))) => rdv_open = false,
                    Ok((_, Err(RecvError))) => small_open = false,
                    Err(SelectTimeoutError) => {}
                }
            }
            (count, sum)
        }));
    }
    drop((rdv_rx, small_rx));
    let (count, sum) = within(HANG, move || {
        producers.into_iter().for_each(|join| join());
        consumers
            .into_iter()
            .map(|join| join())
            .fold((0, 0), |(n, s), (dn, ds)| (n + dn, s + ds))
    });
    let total = PRODUCERS * EACH;
    assert_eq!(count, total);
    assert_eq!(sum, (0..total).sum::<u64>());
}
