//! Cancelling fibers blocked in channel and select waits loses nothing for
//! the other parties: a message handed to a receiver (or a select's
//! receive arm) that is cancelled before it runs goes on to another
//! waiting receiver, or back to the head of the buffer; a cancelled sender
//! either sent its value (a receiver has it) or did not (nobody has it);
//! a cancelled select's other arms are withdrawn; and under racing cancels
//! on two workers every message is received exactly once.
//!
//! The ordered tests run on one worker, where a fiber that sends and then
//! cancels, without waiting in between, does both before the receiver it
//! woke runs: the receiver is cancelled holding the message.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{wait_parked, within, Witness};
use spindle::sync::{mpsc, Select};
use spindle::JoinHandle;

const LIMIT: Duration = Duration::from_secs(120);

/// Spawns `wait` and returns once its fiber is parked.
fn spawn_parked<T: Send + 'static>(wait: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
    let fiber = spindle::spawn(wait);
    wait_parked(&fiber);
    fiber
}

fn assert_cancelled<T: std::fmt::Debug + 'static>(fiber: JoinHandle<T>) {
    assert!(fiber.join().expect_err("cancelled").is_cancelled());
}

/// Runs `body` in a fiber of a one-worker runtime, and checks that no
/// fiber is left afterwards.
fn on_one_worker(body: impl FnOnce() + Send + 'static) {
    within(LIMIT, || {
        let rt = spindle::Builder::new()
            .workers(1)
            .max_spare_workers(0)
            .build()
            .unwrap();
        rt.block_on(body);
        while rt.live_fibers() > 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(rt.stack_stats().in_use, 0);
    });
}

#[test]
fn a_message_handed_to_a_cancelled_receiver_goes_to_the_next_receiver() {
    for capacity in [None, Some(0), Some(1)] {
        on_one_worker(move || {
            let (tx, rx) = match capacity {
                None => {
                    let (tx, rx) = mpsc::channel::<u32>();
                    (Ok(tx), rx)
                }
                Some(capacity) => {
                    let (tx, rx) = mpsc::sync_channel::<u32>(capacity);
                    (Err(tx), rx)
                }
            };
            let r = rx.clone();
            let first = spawn_parked(move || r.recv());
            let r = rx.clone();
            let second = spawn_parked(move || r.recv());
            // To the first receiver's node; it is cancelled before it runs.
            match &tx {
                Ok(tx) => tx.send(7).unwrap(),
                Err(tx) => tx.send(7).unwrap(),
            }
            first.cancel();
            assert_cancelled(first);
            assert_eq!(second.join().unwrap(), Ok(7), "capacity {capacity:?}");
            assert!(rx.try_recv().is_err(), "delivered twice");
        });
    }
}

#[test]
fn a_message_handed_to_a_cancelled_receiver_goes_back_to_the_buffer_head() {
    on_one_worker(|| {
        let (tx, rx) = mpsc::sync_channel::<u32>(4);
        let r = rx.clone();
        let receiver = spawn_parked(move || r.recv());
        tx.send(1).unwrap(); // handed to the receiver
        receiver.cancel();
        tx.send(2).unwrap(); // buffered, behind it
        assert_cancelled(receiver);
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), [1, 2], "order kept");
    });
}

#[test]
fn with_no_receiver_waiting_and_no_room_the_message_is_dropped_once() {
    on_one_worker(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::sync_channel::<Witness>(0);
        let keep = rx.clone();
        let receiver = spawn_parked(move || rx.recv().map(drop).is_ok());
        let sent = tx.send(Witness(drops.clone())); // taken by the receiver
        assert!(sent.is_ok());
        receiver.cancel();
        assert_cancelled(receiver);
        assert_eq!(
            drops.load(SeqCst),
            1,
            "dropped once, not lost silently in the buffer"
        );
        assert!(keep.try_recv().is_err());
    });
}

#[test]
fn a_cancelled_rendezvous_sender_sent_its_value_or_did_not() {
    on_one_worker(|| {
        let (tx, rx) = mpsc::sync_channel::<u32>(0);
        // Not taken: the send never happened.
        let t = tx.clone();
        let unsent = spawn_parked(move || t.send(1));
        unsent.cancel();
        assert_cancelled(unsent);
        // Taken (the receiver takes it straight from the sender's node),
        // then cancelled before it runs: the receiver has it, once.
        let t = tx.clone();
        let taken = spawn_parked(move || t.send(2));
        assert_eq!(rx.recv(), Ok(2));
        taken.cancel();
        assert_cancelled(taken);
        // A third sender is unaffected by the two.
        let t = tx.clone();
        let third = spindle::spawn(move || t.send(3));
        assert_eq!(rx.recv(), Ok(3));
        third.join().unwrap().unwrap();
        assert!(rx.try_recv().is_err(), "the cancelled send appeared");
    });
}

#[test]
fn a_cancelled_bounded_sender_leaves_the_room_to_the_next() {
    on_one_worker(|| {
        let (tx, rx) = mpsc::sync_channel::<u32>(1);
        tx.send(1).unwrap(); // full
        let t = tx.clone();
        let cancelled = spawn_parked(move || t.send(2));
        let t = tx.clone();
        let next = spawn_parked(move || t.send(3));
        cancelled.cancel();
        assert_cancelled(cancelled);
        assert_eq!(rx.recv(), Ok(1)); // room: the next sender's message moves in
        next.join().unwrap().unwrap();
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), [3]);
    });
}

#[test]
fn a_message_handed_to_a_cancelled_select_goes_to_the_waiting_receiver() {
    on_one_worker(|| {
        let (tx_a, rx_a) = mpsc::sync_channel::<u32>(0);
        let (tx_b, rx_b) = mpsc::sync_channel::<u32>(0);
        let (select_a, select_b) = (rx_a.clone(), rx_b.clone());
        let selecting = spawn_parked(move || {
            Select::new()
                .recv(&select_a, |m| m.unwrap())
                .recv(&select_b, |m| m.unwrap())
                .timeout(Duration::from_secs(3600), || 0)
                .wait()
        });
        let plain = spawn_parked(move || rx_a.recv());
        tx_a.send(5).unwrap(); // to the select, which queued first
        selecting.cancel();
        assert_cancelled(selecting);
        assert_eq!(plain.join().unwrap(), Ok(5));
        // The select's arm on the other channel is withdrawn: a rendezvous
        // try_send finds no receiver there.
        assert!(
            tx_b.try_send(6).is_err(),
            "a cancelled select's arm took a value"
        );
        drop(rx_b);
    });
}

#[test]
fn a_cancelled_send_select_sent_its_value_or_did_not() {
    on_one_worker(|| {
        let (tx, rx) = mpsc::sync_channel::<u32>(0);
        let (_other_tx, other) = mpsc::channel::<u32>();
        // Taken, then cancelled before it runs: the receiver has it.
        let (t, o) = (tx.clone(), other.clone());
        let taken = spawn_parked(move || {
            Select::new()
                .send(&t, 1, |r| r.is_ok())
                .recv(&o, |_| false)
                .wait()
        });
        assert_eq!(rx.recv(), Ok(1));
        taken.cancel();
        assert_cancelled(taken);
        // Not taken: withdrawn with its value.
        let (t, o) = (tx.clone(), other.clone());
        let unsent = spawn_parked(move || {
            Select::new()
                .send(&t, 2, |r| r.is_ok())
                .recv(&o, |_| false)
                .wait()
        });
        unsent.cancel();
        assert_cancelled(unsent);
        assert!(
            rx.try_recv().is_err(),
            "the withdrawn send arm's value appeared"
        );
        let sender = spindle::spawn(move || tx.send(3));
        assert_eq!(rx.recv(), Ok(3));
        sender.join().unwrap().unwrap();
    });
}

/// On two workers, receivers (plain and select) are cancelled at random
/// moments while a sender streams distinct messages through an unbounded
/// channel, and new receivers replace them. Every message is received
/// exactly once: a cancelled receiver's message always has somewhere to
/// go (another receiver, or the buffer, which is unbounded). The last
/// messages are sent only once the cancelling is over: a receiver
/// cancelled holding a message after the last sender went, when the others
/// have been told the channel is disconnected, puts it back where only a
/// later receive finds it (`sync/mpsc/channel.rs`, `put_back`).
#[test]
fn racing_cancels_lose_and_duplicate_no_message() {
    const MESSAGES: u64 = 20_000;
    const CANCELLING: u64 = MESSAGES - 1_000;
    const RECEIVERS: usize = 6;
    within(LIMIT, || {
        let rt = spindle::Builder::new().workers(2).build().unwrap();
        rt.block_on(|| {
            let (tx, rx) = mpsc::channel::<u64>();
            let got = Arc::new(Mutex::new(Vec::new()));
            let spawn_receiver = |index: usize| {
                let (rx, got) = (rx.clone(), got.clone());
                spindle::spawn(move || loop {
                    let message = if index % 2 == 0 {
                        rx.recv().ok()
                    } else {
                        Select::new()
                            .recv(&rx, |m| m.ok())
                            .timeout(Duration::from_secs(3600), || None)
                            .wait()
                    };
                    match message {
                        Some(message) => got.lock().unwrap().push(message),
                        None => return,
                    }
                })
            };
            let mut receivers: Vec<_> = (0..RECEIVERS).map(spawn_receiver).collect();
            let cancelling_over = Arc::new(spindle::sync::Latch::new(1));
            let holding = Arc::new(AtomicUsize::new(0));
            let sender = {
                let (cancelling_over, holding) = (cancelling_over.clone(), holding.clone());
                spindle::spawn(move || {
                    for message in 0..MESSAGES {
                        if message == CANCELLING {
                            holding.store(1, SeqCst);
                            cancelling_over.wait();
                        }
                        tx.send(message).unwrap();
                        if message % 4 == 0 {
                            spindle::yield_now();
                        }
                    }
                })
            };
            let mut cancelled = 0;
            let mut round = 0;
            while holding.load(SeqCst) == 0 {
                round += 1;
                let victim = round % RECEIVERS;
                receivers[victim].cancel();
                let old = std::mem::replace(&mut receivers[victim], spawn_receiver(victim));
                if old.join().is_err() {
                    cancelled += 1;
                }
                spindle::yield_now();
            }
            cancelling_over.count_down();
            sender.join().unwrap();
            drop(rx); // the receivers end once every sender is gone and the buffer is empty
            receivers.into_iter().for_each(|r| r.join().unwrap());
            let got = got.lock().unwrap();
            let distinct: HashSet<u64> = got.iter().copied().collect();
            assert_eq!(distinct.len(), got.len(), "a message received twice");
            assert_eq!(
                got.len() as u64,
                MESSAGES,
                "messages lost ({cancelled} receivers cancelled)"
            );
            assert!(cancelled > 0, "no receiver was cancelled mid-stream");
        });
    });
}
