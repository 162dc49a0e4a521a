//! Cancelling a fiber parked in each wait of `sync` and `time`: it unwinds
//! (each destructor once), and what it had been handed, or would have
//! been, goes on to the other parties (a lock, a notification, permits,
//! a barrier's arrival, a channel's slot), so none of them is left
//! waiting.
//!
//! Most tests run on one worker, where the order is fixed: a fiber that
//! unparks another and then cancels it, without waiting in between, does
//! both before the other runs, so the cancelled fiber is the one that was
//! handed the lock (or the notification, the permits) when it unwinds.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use common::{counter, wait_parked, within, Witness};
use spindle::sync::{mpsc, oneshot, Barrier, Condvar, Latch, Mutex, OnceCell, RwLock};
use spindle::sync::{Select, Semaphore};
use spindle::JoinHandle;

const LIMIT: Duration = Duration::from_secs(120);

/// Spawns `wait` in a fiber that holds a witness of `drops`, and returns
/// once it is parked.
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

/// Runs `body` in a fiber of a one-worker runtime, within the limit, and
/// checks that no fiber, stack or timer is left afterwards.
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
        assert_eq!(rt.pending_timers(), 0);
    });
}

fn assert_cancelled<T: std::fmt::Debug + 'static>(fiber: JoinHandle<T>) {
    assert!(fiber.join().expect_err("cancelled").is_cancelled());
}

#[test]
fn sleep_and_park_timeout() {
    on_one_worker(|| {
        let drops = counter();
        let sleeper = spawn_parked(&drops, || spindle::time::sleep(Duration::from_secs(600)));
        let parker = spawn_parked(&drops, || loop {
            spindle::time::park_timeout(Duration::from_secs(600));
        });
        sleeper.cancel();
        parker.cancel();
        assert_cancelled(sleeper);
        assert_cancelled(parker);
        assert_eq!(drops.load(SeqCst), 2);
    });
}

#[test]
fn a_mutex_waiter_handed_the_lock_passes_it_on() {
    on_one_worker(|| {
        let mutex = Arc::new(Mutex::new(0u32));
        let drops = counter();
        let guard = mutex.lock().unwrap();
        let m = mutex.clone();
        let first = spawn_parked(&drops, move || *m.lock().unwrap() += 1);
        let m = mutex.clone();
        let second = spawn_parked(&drops, move || *m.lock().unwrap() += 10);
        // The front waiter has waited long enough to be handed the lock.
        spindle::time::sleep(spindle::sync::HAND_OFF_AFTER * 4);
        drop(guard);
        first.cancel();
        assert_cancelled(first);
        second.join().unwrap();
        assert_eq!(*mutex.lock().unwrap(), 10);
        assert!(!mutex.is_poisoned(), "it held no guard");
        assert_eq!(drops.load(SeqCst), 2);
    });
}

#[test]
fn a_mutex_waiter_woken_to_compete_passes_the_wake_on() {
    on_one_worker(|| {
        let mutex = Arc::new(Mutex::new(0u32));
        let drops = counter();
        let guard = mutex.lock().unwrap();
        let m = mutex.clone();
        let first = spawn_parked(&drops, move || *m.lock().unwrap() += 1);
        let m = mutex.clone();
        let second = spawn_parked(&drops, move || *m.lock().unwrap() += 10);
        drop(guard); // wakes the first (no hand-off: it has not waited long)
        first.cancel();
        assert_cancelled(first);
        second.join().unwrap();
        assert_eq!(*mutex.lock().unwrap(), 10);
        assert_eq!(drops.load(SeqCst), 2);
    });
}

#[test]
fn a_guard_held_across_the_cancelled_wait_poisons_its_mutex() {
    on_one_worker(|| {
        let mutex = Arc::new(Mutex::new(0u32));
        let m = mutex.clone();
        let fiber = spawn_parked(&counter(), move || {
            let _guard = m.lock().unwrap();
            spindle::time::sleep(Duration::from_secs(600));
        });
        fiber.cancel();
        assert_cancelled(fiber);
        assert!(mutex.is_poisoned(), "as a panic there would");
    });
}

#[test]
fn a_notified_condvar_waiter_passes_the_notification_on() {
    on_one_worker(|| {
        let pair = Arc::new((Mutex::new(false), Condvar::new()));
        let drops = counter();
        let waiter = |pair: Arc<(Mutex<bool>, Condvar)>| {
            move || {
                let (lock, condvar) = &*pair;
                let mut ready = lock.lock().unwrap();
                while !*ready {
                    ready = condvar.wait(ready).unwrap();
                }
            }
        };
        let first = spawn_parked(&drops, waiter(pair.clone()));
        let second = spawn_parked(&drops, waiter(pair.clone()));
        *pair.0.lock().unwrap() = true;
        pair.1.notify_one(); // to the first waiter
        first.cancel();
        assert_cancelled(first);
        second.join().unwrap(); // woken by the notification passed on
        assert_eq!(drops.load(SeqCst), 2);
    });
}

#[test]
fn granted_semaphore_permits_go_back() {
    on_one_worker(|| {
        let semaphore = Arc::new(Semaphore::new(0));
        let drops = counter();
        let s = semaphore.clone();
        let first = spawn_parked(&drops, move || s.acquire_many(2).forget());
        let s = semaphore.clone();
        let second = spawn_parked(&drops, move || s.acquire_many(2).forget());
        semaphore.release(2); // granted to the first
        first.cancel();
        assert_cancelled(first);
        second.join().unwrap();
        assert_eq!(semaphore.available_permits(), 0);
        assert_eq!(drops.load(SeqCst), 2);
    });
}

#[test]
fn a_granted_rwlock_write_goes_on_to_the_readers() {
    on_one_worker(|| {
        let lock = Arc::new(RwLock::new(0u32));
        let drops = counter();
        let read = lock.read().unwrap();
        let l = lock.clone();
        let writer = spawn_parked(&drops, move || *l.write().unwrap() += 1);
        let l = lock.clone();
        let reader = spawn_parked(&drops, move || *l.read().unwrap());
        drop(read); // grants the writer
        writer.cancel();
        assert_cancelled(writer);
        assert_eq!(
            reader.join().unwrap(),
            0,
            "the reader got it, the write never ran"
        );
        assert!(lock.try_write().is_ok(), "nothing is held");
        assert_eq!(drops.load(SeqCst), 2);
    });
}

#[test]
fn a_latch_waiter_unwinds_and_the_others_still_open() {
    on_one_worker(|| {
        let latch = Arc::new(Latch::new(1));
        let drops = counter();
        let l = latch.clone();
        let first = spawn_parked(&drops, move || l.wait());
        let l = latch.clone();
        let second = spawn_parked(&drops, move || l.wait());
        first.cancel();
        assert_cancelled(first);
        latch.count_down();
        second.join().unwrap();
        assert_eq!(drops.load(SeqCst), 2);
    });
}

#[test]
fn a_barrier_waiter_withdraws_its_arrival() {
    on_one_worker(|| {
        let barrier = Arc::new(Barrier::new(2));
        let drops = counter();
        let b = barrier.clone();
        let gone = spawn_parked(&drops, move || {
            b.wait();
        });
        gone.cancel();
        assert_cancelled(gone);
        // Two new parties make a generation; had the cancelled arrival
        // counted, the first would pass alone and the second wait forever.
        let b = barrier.clone();
        let other = spindle::spawn(move || b.wait().is_leader());
        let leader = barrier.wait().is_leader();
        assert!(leader ^ other.join().unwrap(), "one leader");
        assert_eq!(drops.load(SeqCst), 1);
    });
}

#[test]
fn a_cancelled_initializer_leaves_the_cell_to_the_next() {
    on_one_worker(|| {
        let cell = Arc::new(OnceCell::new());
        let drops = counter();
        let c = cell.clone();
        let initializer = spawn_parked(&drops, move || {
            *c.get_or_init(|| {
                spindle::time::sleep(Duration::from_secs(600));
                1u32
            })
        });
        let c = cell.clone();
        let waiter = spawn_parked(&drops, move || *c.get_or_init(|| 2u32));
        initializer.cancel();
        assert_cancelled(initializer);
        assert_eq!(waiter.join().unwrap(), 2, "the waiter initialized it");
        // And a waiter cancelled while another initializes leaves it be.
        let cell = Arc::new(OnceCell::new());
        let (go, c) = (Arc::new(Latch::new(1)), cell.clone());
        let g = go.clone();
        let initializer = spawn_parked(&drops, move || {
            *c.get_or_init(|| {
                g.wait();
                3u32
            })
        });
        let c = cell.clone();
        let waiter = spawn_parked(&drops, move || *c.get_or_init(|| 4u32));
        waiter.cancel();
        assert_cancelled(waiter);
        go.count_down();
        assert_eq!(initializer.join().unwrap(), 3);
        assert_eq!(drops.load(SeqCst), 4);
    });
}

#[test]
fn a_oneshot_receiver_unwinds_and_its_sender_sees_it_gone() {
    on_one_worker(|| {
        let (tx, rx) = oneshot::oneshot::<Witness>();
        let drops = counter();
        let receiver = spawn_parked(&drops, move || rx.recv().is_ok());
        receiver.cancel();
        assert_cancelled(receiver);
        let value = Witness(drops.clone());
        let back = tx.send(value).expect_err("the receiver is gone");
        drop(back);
        assert_eq!(drops.load(SeqCst), 2);
    });
}

#[test]
fn a_channel_receiver_unwinds() {
    on_one_worker(|| {
        let (tx, rx) = mpsc::channel::<Witness>();
        let drops = counter();
        let receiver = spawn_parked(&drops, move || rx.recv().is_ok());
        receiver.cancel();
        assert_cancelled(receiver);
        assert!(tx.send(Witness(drops.clone())).is_err());
        assert_eq!(drops.load(SeqCst), 2, "the fiber's witness and the value");
    });
}

#[test]
fn a_value_handed_to_a_receiver_that_is_cancelled_is_dropped_once() {
    on_one_worker(|| {
        let (tx, rx) = mpsc::sync_channel::<Witness>(0);
        let drops = counter();
        let receiver = spawn_parked(&drops, move || rx.recv().map(drop).is_ok());
        // The rendezvous hands the value to the parked receiver, which is
        // cancelled before it runs.
        let sent = tx.send(Witness(drops.clone()));
        receiver.cancel();
        assert_cancelled(receiver);
        drop(sent);
        assert_eq!(drops.load(SeqCst), 2, "the fiber's witness and the value");
    });
}

#[test]
fn a_blocked_sender_unwinds_and_the_next_sender_gets_the_room() {
    on_one_worker(|| {
        let (tx, rx) = mpsc::sync_channel::<u32>(1);
        let drops = counter();
        tx.send(1).unwrap(); // full
        let t = tx.clone();
        let first = spawn_parked(&drops, move || t.send(2).is_ok());
        let t = tx.clone();
        let second = spawn_parked(&drops, move || t.send(3).is_ok());
        first.cancel();
        assert_cancelled(first);
        assert_eq!(rx.recv(), Ok(1));
        assert!(second.join().unwrap());
        assert_eq!(rx.recv(), Ok(3));
        assert!(rx.try_recv().is_err(), "the cancelled send never happened");
        assert_eq!(drops.load(SeqCst), 2);
    });
}

#[test]
fn a_fiber_in_select_unwinds_and_a_value_sent_to_it_is_dropped_once() {
    on_one_worker(|| {
        let (tx1, rx1) = mpsc::channel::<Witness>();
        let (tx2, rx2) = mpsc::channel::<Witness>();
        let drops = counter();
        let selecting = spawn_parked(&drops, move || {
            Select::new()
                .recv(&rx1, |m| m.map(drop).is_ok())
                .recv(&rx2, |m| m.map(drop).is_ok())
                .wait()
        });
        // The value goes into the select's slot; the select is cancelled
        // before it takes it.
        let sent = tx1.send(Witness(drops.clone()));
        selecting.cancel();
        assert_cancelled(selecting);
        drop(sent);
        assert!(
            tx2.send(Witness(drops.clone())).is_err(),
            "its receivers went"
        );
        assert_eq!(drops.load(SeqCst), 3, "the witness and both values");
    });
}

#[test]
fn a_fiber_in_a_send_select_unwinds_and_the_other_sender_gets_the_room() {
    on_one_worker(|| {
        let (tx, rx) = mpsc::sync_channel::<u32>(1);
        let drops = counter();
        tx.send(1).unwrap(); // full
        let t = tx.clone();
        let selecting = spawn_parked(&drops, move || {
            Select::new().send(&t, 2, |r| r.is_ok()).wait()
        });
        let t = tx.clone();
        let sender = spawn_parked(&drops, move || t.send(3).is_ok());
        selecting.cancel();
        assert_cancelled(selecting);
        assert_eq!(rx.recv(), Ok(1));
        assert!(sender.join().unwrap());
        assert_eq!(rx.recv(), Ok(3));
        assert_eq!(drops.load(SeqCst), 2);
    });
}
