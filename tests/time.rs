//! Timers: sleep and park_timeout from fibers and threads, early wakes that
//! cancel their timers, a busy worker still firing timers, shutdown of
//! sleeping fibers. Bounds are generous: correctness, not speed.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::within;
use spindle::time::{park_timeout, sleep, sleep_until};
use spindle::Builder;

const HANG: Duration = Duration::from_secs(120);

#[test]
fn sleep_lasts_at_least_its_duration() {
    let rt = Builder::new().workers(2).build().unwrap();
    let slept = rt.block_on(|| {
        let start = Instant::now();
        sleep(Duration::from_millis(20));
        start.elapsed()
    });
    assert!(slept >= Duration::from_millis(20), "{slept:?}");
    assert!(slept < Duration::from_secs(5), "{slept:?}");
    assert_eq!(rt.pending_timers(), 0);
}

#[test]
fn ten_thousand_sleepers_all_wake_after_their_deadlines() {
    let rt = Builder::new().workers(2).build().unwrap();
    let late = within(HANG, move || {
        let results = rt.block_on(|| {
            let handles: Vec<_> = (0..10_000u64)
                .map(|i| {
                    spindle::spawn(move || {
                        let wanted = Duration::from_millis(1 + (i * 7919) % 50);
                        let deadline = Instant::now() + wanted;
                        sleep_until(deadline);
                        Instant::now() >= deadline
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .collect::<Vec<_>>()
        });
        assert_eq!(rt.pending_timers(), 0, "every timer fired and was removed");
        results.iter().filter(|&&on_time| !on_time).count()
    });
    assert_eq!(late, 0, "no sleeper woke before its deadline");
}

#[test]
fn an_early_unpark_cancels_the_timer() {
    let rt = Builder::new().workers(2).build().unwrap();
    let (waited, pending_while_parked, pending_after) = within(HANG, move || {
        let pending_while_parked = Arc::new(AtomicUsize::new(0));
        let seen = pending_while_parked.clone();
        let rt = Arc::new(rt);
        let rt2 = rt.clone();
        let waited = rt.block_on(move || {
            let me = spindle::current();
            let waker = spindle::spawn(move || {
                sleep(Duration::from_millis(5));
                // The hour-long timer is registered while its fiber parks.
                seen.store(rt2.pending_timers(), Ordering::SeqCst);
                me.unpark();
            });
            let start = Instant::now();
            park_timeout(Duration::from_secs(3600));
            let waited = start.elapsed();
            waker.join().unwrap();
            waited
        });
        (
            waited,
            pending_while_parked.load(Ordering::SeqCst),
            rt.pending_timers(),
        )
    });
    assert!(
        waited < Duration::from_secs(60),
        "woken by the unpark, not the hour: {waited:?}"
    );
    assert_eq!(pending_while_parked, 1, "the timer was registered");
    assert_eq!(
        pending_after, 0,
        "the hour-long timer was cancelled, not left to leak"
    );
}

#[test]
fn park_timeout_returns_when_nobody_unparks() {
    let rt = Builder::new().workers(1).build().unwrap();
    let waited = rt.block_on(|| {
        let start = Instant::now();
        park_timeout(Duration::from_millis(15));
        start.elapsed()
    });
    assert!(waited >= Duration::from_millis(15), "{waited:?}");
    assert_eq!(rt.pending_timers(), 0);
}

#[test]
fn a_busy_worker_still_fires_timers() {
    // One worker: a fiber that only yields keeps it busy for 300 ms, while
    // another sleeps 5 ms. The sleeper must wake long before the busy fiber
    // stops (both the yield fast path and the queue path check timers).
    let rt = Builder::new().workers(1).build().unwrap();
    let woke_after = within(HANG, move || {
        rt.block_on(|| {
            let busy = spindle::spawn(|| {
                let start = Instant::now();
                while start.elapsed() < Duration::from_millis(300) {
                    spindle::yield_now();
                }
            });
            let sleeper = spindle::spawn(|| {
                let start = Instant::now();
                sleep(Duration::from_millis(5));
                start.elapsed()
            });
            let woke_after = sleeper.join().unwrap();
            busy.join().unwrap();
            woke_after
        })
    });
    assert!(
        woke_after < Duration::from_millis(250),
        "the timer waited for the busy fiber: {woke_after:?}"
    );
}

#[test]
fn timers_work_from_plain_threads_too() {
    let start = Instant::now();
    sleep(Duration::from_millis(5));
    park_timeout(Duration::from_millis(5));
    assert!(start.elapsed() >= Duration::from_millis(5));
}

#[test]
fn a_thread_unparks_a_fiber_in_park_timeout() {
    let rt = Builder::new().workers(2).build().unwrap();
    let slot: Arc<Mutex<Option<spindle::Fiber>>> = Arc::default();
    let woken = Arc::new(AtomicBool::new(false));
    let (slot2, woken2) = (slot.clone(), woken.clone());
    let handle = rt.spawn(move || {
        *slot2.lock().unwrap() = Some(spindle::current());
        let start = Instant::now();
        while !woken2.load(Ordering::Acquire) {
            park_timeout(Duration::from_secs(3600));
        }
        start.elapsed()
    });
    within(HANG, move || {
        let fiber = loop {
            if let Some(fiber) = slot.lock().unwrap().clone() {
                break fiber;
            }
            std::thread::yield_now();
        };
        std::thread::sleep(Duration::from_millis(5));
        woken.store(true, Ordering::Release);
        fiber.unpark();
        assert!(handle.join().unwrap() < Duration::from_secs(60));
    });
}

#[test]
fn shutdown_unwinds_sleeping_fibers() {
    let rt = Builder::new().workers(2).build().unwrap();
    let dropped = Arc::new(AtomicUsize::new(0));
    let asleep = Arc::new(spindle::sync::Latch::new(100));
    for _ in 0..100 {
        let (dropped, asleep) = (dropped.clone(), asleep.clone());
        rt.spawn(move || {
            struct Count(Arc<AtomicUsize>);
            impl Drop for Count {
                fn drop(&mut self) {
                    self.0.fetch_add(1, Ordering::SeqCst);
                }
            }
            let _count = Count(dropped);
            asleep.count_down();
            sleep(Duration::from_secs(3600));
        });
    }
    asleep.wait();
    while rt.pending_timers() < 100 {
        std::thread::yield_now();
    }
    let report = within(HANG, move || rt.shutdown());
    assert_eq!(report.fibers_cancelled, 100);
    assert_eq!(report.stacks.in_use, 0);
    assert_eq!(dropped.load(Ordering::SeqCst), 100);
}

#[test]
fn join_timeout_gives_the_handle_back_and_never_loses_a_result() {
    let rt = Arc::new(Builder::new().workers(2).build().unwrap());
    // Times out, then joins.
    let slow = rt.spawn(|| {
        sleep(Duration::from_millis(30));
        7
    });
    let slow = slow.join_timeout(Duration::from_millis(1)).unwrap_err();
    assert_eq!(
        slow.join_timeout(Duration::from_secs(60)).unwrap().unwrap(),
        7
    );
    // Completions racing the deadline, from fibers and from a thread: every
    // result arrives exactly once, whichever side wins each race.
    let rt2 = rt.clone();
    let (from_fibers, from_thread) = within(HANG, move || {
        let from_fibers = rt2.block_on(|| {
            (0..2000u64)
                .map(|i| {
                    let mut handle = spindle::spawn(move || {
                        if i % 3 == 0 {
                            spindle::yield_now();
                        }
                        i
                    });
                    loop {
                        match handle.join_timeout(Duration::from_micros(i % 50)) {
                            Ok(result) => break result.unwrap(),
                            Err(again) => handle = again,
                        }
                    }
                })
                .sum::<u64>()
        });
        let from_thread = (0..500u64)
            .map(|i| {
                let mut handle = rt2.spawn(move || i);
                loop {
                    match handle.join_timeout(Duration::from_micros(i % 20)) {
                        Ok(result) => break result.unwrap(),
                        Err(again) => handle = again,
                    }
                }
            })
            .sum::<u64>();
        (from_fibers, from_thread)
    });
    assert_eq!(from_fibers, (0..2000).sum::<u64>());
    assert_eq!(from_thread, (0..500).sum::<u64>());
}

/// Fibers on four workers mixing short sleeps (each checked not to wake
/// early) with hour-long `park_timeout`s that other fibers cut short by
/// unparking them, so timers fire, cascade and are cancelled from workers
/// other than the one whose queue holds them, all at once. Every fiber
/// finishes (a timer lost or an unpark missed would hang it), no sleep
/// ends before its deadline, and no timer is left pending.
#[test]
fn sleeps_and_cancelled_timeouts_racing_on_four_workers_lose_nothing() {
    const FIBERS: usize = 400;
    const ROUNDS: usize = 30;
    let rt = Arc::new(Builder::new().workers(4).build().unwrap());
    let rt2 = rt.clone();
    let early = within(HANG, move || {
        rt2.block_on(|| {
            let done = Arc::new(AtomicUsize::new(0));
            let early = Arc::new(AtomicUsize::new(0));
            let registry: Arc<Mutex<Vec<spindle::Fiber>>> = Arc::default();
            let sleepers: Vec<_> = (0..FIBERS)
                .map(|i| {
                    let (done, early, registry) = (done.clone(), early.clone(), registry.clone());
                    spindle::spawn(move || {
                        registry.lock().unwrap().push(spindle::current());
                        let mut seed = i as u64 * 0x9E37_79B9 + 1;
                        for round in 0..ROUNDS {
                            seed ^= seed << 13;
                            seed ^= seed >> 7;
                            seed ^= seed << 17;
                            if round % 2 == 0 {
                                // A short sleep, from 0 to 3 ms.
                                let deadline = Instant::now() + Duration::from_micros(seed % 3000);
                                sleep_until(deadline);
                                if Instant::now() < deadline {
                                    early.fetch_add(1, Ordering::Relaxed);
                                }
                            } else {
                                // An hour-long timeout, ended by an unpark
                                // (or by a token left from an earlier one).
                                park_timeout(Duration::from_secs(3600));
                            }
                        }
                        done.fetch_add(1, Ordering::SeqCst);
                    })
                })
                .collect();
            // Unparkers: keep waking everyone until all have finished.
            let unparkers: Vec<_> = (0..2)
                .map(|k| {
                    let (done, registry) = (done.clone(), registry.clone());
                    spindle::spawn(move || {
                        while done.load(Ordering::SeqCst) < FIBERS {
                            let fibers = registry.lock().unwrap().clone();
                            for fiber in fibers.iter().skip(k).step_by(2) {
                                fiber.unpark();
                            }
                            sleep(Duration::from_micros(200));
                        }
                    })
                })
                .collect();
            for handle in sleepers.into_iter().chain(unparkers) {
                handle.join().unwrap();
            }
            early.load(Ordering::Relaxed)
        })
    });
    assert_eq!(early, 0, "no sleep ended before its deadline");
    assert_eq!(rt.pending_timers(), 0, "every timer fired or was cancelled");
}
