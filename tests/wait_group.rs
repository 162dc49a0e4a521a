//! WaitGroup and Latch::wait_timeout with real fibers and threads: Add,
//! Done and Wait from both, a negative counter refused with a clear
//! message, Wait at zero, reuse after Wait; a timed latch wait that opens
//! and one that times out.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::within;
use spindle::sync::{Latch, WaitGroup};
use spindle::Builder;

const HANG: Duration = Duration::from_secs(300);

/// Tasks on fibers and on threads each `done` once; waiters on fibers and
/// threads all return, after every task's work.
#[test]
fn wait_group_counts_tasks_on_fibers_and_threads() {
    const TASKS: usize = 200;
    let rt = Builder::new().workers(2).build().unwrap();
    within(HANG, move || {
        let group = Arc::new(WaitGroup::new());
        let finished = Arc::new(AtomicUsize::new(0));
        group.add(TASKS as isize);
        let waiters: Vec<_> = (0..4)
            .map(|i| {
                let (group, finished) = (group.clone(), finished.clone());
                let wait = move || {
                    group.wait();
                    finished.load(Ordering::SeqCst)
                };
                if i % 2 == 0 {
                    let fiber = rt.spawn(wait);
                    Box::new(move || fiber.join().unwrap()) as Box<dyn FnOnce() -> usize>
                } else {
                    let thread = std::thread::spawn(wait);
                    Box::new(move || thread.join().unwrap())
                }
            })
            .collect();
        let mut threads = Vec::new();
        for task in 0..TASKS {
            let (group, finished) = (group.clone(), finished.clone());
            let work = move || {
                finished.fetch_add(1, Ordering::SeqCst);
                group.done();
            };
            if task % 4 == 0 {
                threads.push(std::thread::spawn(work));
            } else {
                rt.spawn(work);
            }
        }
        for waiter in waiters {
            assert_eq!(waiter(), TASKS, "a waiter returned before every task");
        }
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(group.count(), 0);
    });
}

#[test]
fn wait_at_zero_returns_at_once_and_the_group_is_reusable() {
    let rt = Builder::new().workers(2).build().unwrap();
    within(HANG, move || {
        let group = Arc::new(WaitGroup::new());
        group.wait(); // never added to
        rt.block_on(|| group.wait());
        for round in 0..50 {
            group.add(3);
            for _ in 0..3 {
                let group = group.clone();
                rt.spawn(move || {
                    spindle::yield_now();
                    group.done();
                });
            }
            let waiter = {
                let group = group.clone();
                rt.spawn(move || group.wait())
            };
            group.wait();
            waiter.join().unwrap();
            assert_eq!(group.count(), 0, "round {round}");
        }
    });
}

#[test]
fn a_negative_counter_panics_with_a_clear_message_and_leaves_the_count() {
    let group = WaitGroup::new();
    group.add(1);
    let panic = std::panic::catch_unwind(|| group.add(-2)).unwrap_err();
    let message = panic.downcast_ref::<String>().unwrap();
    assert!(
        message.contains("add(-2)") && message.contains("negative"),
        "unclear message: {message}"
    );
    assert_eq!(group.count(), 1, "a refused add changed the counter");
    group.done();
    let panic = std::panic::catch_unwind(|| group.done()).unwrap_err();
    assert!(panic.downcast_ref::<String>().unwrap().contains("negative"));
    group.wait();
}

#[test]
fn latch_wait_timeout_times_out_and_opens() {
    let rt = Builder::new().workers(2).build().unwrap();
    within(HANG, move || {
        let latch = Arc::new(Latch::new(1));
        // Times out: from a thread and from a fiber.
        let start = Instant::now();
        assert!(!latch.wait_timeout(Duration::from_millis(10)));
        assert!(start.elapsed() >= Duration::from_millis(10));
        {
            let latch = latch.clone();
            assert!(!rt
                .spawn(move || latch.wait_timeout(Duration::from_millis(10)))
                .join()
                .unwrap());
        }
        // Many timed-out waits leave the latch working.
        for _ in 0..100 {
            assert!(!latch.wait_timeout(Duration::ZERO));
        }
        // Opens while waiters wait, with long timeouts.
        let waiters: Vec<_> = (0..4)
            .map(|i| {
                let latch = latch.clone();
                let wait = move || latch.wait_timeout(Duration::from_secs(3600));
                if i % 2 == 0 {
                    let fiber = rt.spawn(wait);
                    Box::new(move || fiber.join().unwrap()) as Box<dyn FnOnce() -> bool>
                } else {
                    let thread = std::thread::spawn(wait);
                    Box::new(move || thread.join().unwrap())
                }
            })
            .collect();
        std::thread::sleep(Duration::from_millis(20));
        latch.count_down();
        for waiter in waiters {
            assert!(waiter(), "a timed waiter missed the latch opening");
        }
        assert!(latch.wait_timeout(Duration::ZERO), "open: at once");
    });
}
