//! Cancelling one fiber (`JoinHandle::cancel`): the fiber unwinds from the
//! wait it is parked in, or from its next one, running each destructor
//! once; its joiner sees `is_cancelled`; the other parties of the wait
//! lose nothing. Real threads, real runtimes; `within` turns a lost
//! wake-up into a failure. The waits of `sync` and `time` are in
//! `cancel_waits.rs`, the sockets' in `cancel_net.rs`.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use common::{counter, wait_parked, within, Witness};
use spindle::sync::Latch;
use spindle::{JoinError, JoinHandle};

const LIMIT: Duration = Duration::from_secs(120);

/// Waits until `rt` has no live fiber (`block_on`'s own fiber may still be
/// finishing as `block_on` returns).
fn wait_no_live_fibers(rt: &spindle::Runtime) {
    while rt.live_fibers() > 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn cancelled<T: std::fmt::Debug>(result: Result<T, JoinError>) -> bool {
    result.expect_err("the fiber was cancelled").is_cancelled()
}

#[test]
fn a_sleeping_fiber_unwinds_running_each_destructor_once() {
    within(LIMIT, || {
        let rt = spindle::Runtime::new().unwrap();
        let drops = counter();
        let after = Arc::new(AtomicBool::new(false));
        rt.block_on(|| {
            let (witness, after2) = (Witness(drops.clone()), after.clone());
            let fiber = spindle::spawn(move || {
                let _witness = witness;
                spindle::time::sleep(Duration::from_secs(600));
                after2.store(true, SeqCst);
            });
            wait_parked(&fiber);
            fiber.cancel();
            assert!(cancelled(fiber.join()));
        });
        assert_eq!(drops.load(SeqCst), 1);
        assert!(!after.load(SeqCst), "nothing after the wait ran");
        assert_eq!(rt.pending_timers(), 0, "the sleep's timer went with it");
    });
}

#[test]
fn a_fiber_parked_in_park_unwinds() {
    within(LIMIT, || {
        let rt = spindle::Runtime::new().unwrap();
        let drops = counter();
        rt.block_on(|| {
            let witness = Witness(drops.clone());
            let fiber = spindle::spawn(move || {
                let _witness = witness;
                loop {
                    spindle::park();
                }
            });
            wait_parked(&fiber);
            fiber.cancel();
            assert!(cancelled(fiber.join()));
        });
        assert_eq!(drops.load(SeqCst), 1);
    });
}

#[test]
fn a_fiber_cancelled_before_it_starts_never_runs_its_closure() {
    within(LIMIT, || {
        // One worker: the spawned fiber waits in its queue until this one
        // waits (in `join`).
        let rt = spindle::Builder::new().workers(1).build().unwrap();
        let (drops, ran) = (counter(), Arc::new(AtomicBool::new(false)));
        rt.block_on(|| {
            let (witness, ran2) = (Witness(drops.clone()), ran.clone());
            let fiber = spindle::spawn(move || {
                let _witness = witness;
                ran2.store(true, SeqCst);
            });
            fiber.cancel();
            assert!(cancelled(fiber.join()));
        });
        assert!(!ran.load(SeqCst), "its closure never ran");
        assert_eq!(drops.load(SeqCst), 1, "its closure was dropped once");
        wait_no_live_fibers(&rt);
        assert_eq!(rt.stack_stats().in_use, 0);
    });
}

#[test]
fn cancelling_a_finished_fiber_is_a_no_op() {
    within(LIMIT, || {
        let rt = spindle::Runtime::new().unwrap();
        rt.block_on(|| {
            let fiber = spindle::spawn(|| 7);
            while !fiber.is_finished() {
                spindle::yield_now();
            }
            fiber.cancel();
            fiber.cancel();
            assert_eq!(fiber.join().unwrap(), 7);
        });
    });
}

#[test]
fn cancelling_twice_unwinds_once() {
    within(LIMIT, || {
        let rt = spindle::Runtime::new().unwrap();
        let drops = counter();
        rt.block_on(|| {
            let witness = Witness(drops.clone());
            let fiber = spindle::spawn(move || {
                let _witness = witness;
                spindle::time::sleep(Duration::from_secs(600));
            });
            wait_parked(&fiber);
            fiber.cancel();
            fiber.cancel();
            assert!(cancelled(fiber.join()));
        });
        assert_eq!(drops.load(SeqCst), 1);
    });
}

#[test]
fn a_plain_thread_can_cancel_a_fiber() {
    within(LIMIT, || {
        let rt = spindle::Runtime::new().unwrap();
        let drops = counter();
        let witness = Witness(drops.clone());
        let fiber = rt.spawn(move || {
            let _witness = witness;
            spindle::time::sleep(Duration::from_secs(600));
        });
        while !format!("{:?}", fiber.fiber()).contains("\"parked\"") {
            std::thread::sleep(Duration::from_millis(1));
        }
        let canceller = std::thread::spawn(move || {
            fiber.cancel();
            fiber
        });
        let fiber = canceller.join().unwrap();
        assert!(cancelled(fiber.join()), "joined from a plain thread too");
        assert_eq!(drops.load(SeqCst), 1);
        assert!(!spindle::is_cancelled(), "false on a plain thread");
    });
}

#[test]
fn a_request_to_a_running_fiber_takes_effect_at_its_next_wait() {
    within(LIMIT, || {
        let rt = spindle::Runtime::new().unwrap();
        let (saw, after) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let started = Arc::new(Latch::new(1));
        rt.block_on(|| {
            let (saw2, after2, started2) = (saw.clone(), after.clone(), started.clone());
            let fiber = spindle::spawn(move || {
                started2.count_down();
                // Runs without waiting until it sees the request.
                while !spindle::is_cancelled() {
                    std::hint::spin_loop();
                }
                saw2.store(true, SeqCst);
                spindle::time::sleep(Duration::from_secs(600));
                after2.store(true, SeqCst);
            });
            started.wait();
            fiber.cancel();
            assert!(cancelled(fiber.join()));
        });
        assert!(saw.load(SeqCst), "it ran on after the request, to its wait");
        assert!(!after.load(SeqCst));
    });
}

#[test]
fn a_yield_is_a_cancellation_point() {
    within(LIMIT, || {
        let rt = spindle::Runtime::new().unwrap();
        let drops = counter();
        let started = Arc::new(Latch::new(1));
        rt.block_on(|| {
            let (witness, started2) = (Witness(drops.clone()), started.clone());
            let fiber = spindle::spawn(move || {
                let _witness = witness;
                started2.count_down();
                loop {
                    spindle::yield_now();
                }
            });
            started.wait();
            fiber.cancel();
            assert!(cancelled(fiber.join()));
        });
        assert_eq!(drops.load(SeqCst), 1);
    });
}

#[test]
fn a_shield_defers_the_request_to_the_first_wait_after_it() {
    within(LIMIT, || {
        let rt = spindle::Runtime::new().unwrap();
        let steps = Arc::new(std::sync::Mutex::new(Vec::new()));
        rt.block_on(|| {
            let (parked, go) = (Arc::new(Latch::new(1)), Arc::new(Latch::new(1)));
            let (parked2, go2, steps2) = (parked.clone(), go.clone(), steps.clone());
            let fiber = spindle::spawn(move || {
                let step = |s: &'static str| steps2.lock().unwrap().push(s);
                spindle::shield(|| {
                    spindle::shield(|| {
                        parked2.count_down();
                        go2.wait();
                        step("inner wait finished");
                    });
                    spindle::time::sleep(Duration::from_millis(1));
                    step("outer wait finished");
                    assert!(spindle::is_cancelled());
                });
                step("shield left");
                spindle::time::sleep(Duration::from_secs(600));
                step("slept");
            });
            parked.wait();
            fiber.cancel();
            go.count_down();
            assert!(cancelled(fiber.join()));
        });
        assert_eq!(
            *steps.lock().unwrap(),
            ["inner wait finished", "outer wait finished", "shield left"]
        );
    });
}

#[test]
fn a_panic_out_of_a_shield_lifts_it() {
    within(LIMIT, || {
        let rt = spindle::Runtime::new().unwrap();
        rt.block_on(|| {
            let started = Arc::new(Latch::new(1));
            let started2 = started.clone();
            let fiber = spindle::spawn(move || {
                let caught = std::panic::catch_unwind(|| {
                    spindle::shield(|| panic!("out of the shield"));
                });
                assert!(caught.is_err());
                started2.count_down();
                // Not shielded any more: this wait is a cancellation point.
                spindle::time::sleep(Duration::from_secs(600));
            });
            started.wait();
            fiber.cancel();
            assert!(cancelled(fiber.join()));
        });
    });
}

#[test]
fn a_cancelled_joiner_leaves_the_joined_fiber_running() {
    within(LIMIT, || {
        let rt = spindle::Runtime::new().unwrap();
        let finished = Arc::new(AtomicBool::new(false));
        rt.block_on(|| {
            let go = Arc::new(Latch::new(1));
            let (go2, finished2) = (go.clone(), finished.clone());
            let inner = spindle::spawn(move || {
                go2.wait();
                finished2.store(true, SeqCst);
            });
            let joiner = spindle::spawn(move || inner.join().unwrap());
            wait_parked(&joiner);
            joiner.cancel();
            assert!(cancelled(joiner.join()));
            // The inner fiber is detached now, and still runs.
            go.count_down();
        });
        wait_no_live_fibers(&rt);
        assert!(finished.load(SeqCst));
    });
}

#[test]
fn a_fiber_in_blocking_unwinds_after_its_closure_has_finished() {
    within(LIMIT, || {
        let rt = spindle::Runtime::new().unwrap();
        let closure_done = Arc::new(AtomicBool::new(false));
        let seen_at_drop = Arc::new(AtomicBool::new(false));
        rt.block_on(|| {
            struct CheckDone(Arc<AtomicBool>, Arc<AtomicBool>);
            impl Drop for CheckDone {
                fn drop(&mut self) {
                    self.1.store(self.0.load(SeqCst), SeqCst);
                }
            }
            let started = Arc::new(Latch::new(1));
            let (done, started2) = (closure_done.clone(), started.clone());
            let check = CheckDone(closure_done.clone(), seen_at_drop.clone());
            let fiber = spindle::spawn(move || {
                let _check = check;
                let borrowed = String::from("borrowed by the closure");
                spindle::blocking(|| {
                    started2.count_down();
                    common::raw_sleep(Duration::from_millis(100));
                    assert_eq!(borrowed.len(), 23, "its borrow is still alive");
                    done.store(true, SeqCst);
                });
                spindle::time::sleep(Duration::from_secs(600));
            });
            started.wait();
            fiber.cancel();
            assert!(cancelled(fiber.join()));
        });
        assert!(
            seen_at_drop.load(SeqCst),
            "the closure finished before the unwind"
        );
    });
}

/// Recurses, with a page-sized frame each time, until less than `left`
/// bytes of a `size`-byte stack whose top is at `top` remain; then runs
/// `at_bottom`.
#[inline(never)]
fn recurse_until(top: usize, size: usize, left: usize, at_bottom: &mut dyn FnMut()) {
    let frame = std::hint::black_box([0u8; 1024]);
    let here = std::ptr::addr_of!(frame) as usize;
    if size.saturating_sub(top - here) > left {
        recurse_until(top, size, left, at_bottom);
    } else {
        at_bottom();
    }
    std::hint::black_box(&frame);
}

#[test]
fn a_fiber_too_low_on_stack_to_unwind_is_frozen_and_reported() {
    within(LIMIT, || {
        let rt = spindle::Runtime::new().unwrap();
        const SIZE: usize = 128 * 1024;
        let drops = counter();
        rt.block_on(|| {
            let parked = Arc::new(Latch::new(1));
            let (parked2, witness) = (parked.clone(), Witness(drops.clone()));
            let fiber = spindle::fiber::Builder::new()
                .stack_size(SIZE)
                .spawn(move || {
                    let _witness = witness;
                    let marker = 0u8;
                    let top = std::ptr::addr_of!(marker) as usize;
                    // Well below what an unwind needs, well above what
                    // the park and the freeze take.
                    let left = spindle::fiber::UNWIND_STACK_NEEDED / 2;
                    recurse_until(top, SIZE, left, &mut || {
                        parked2.count_down();
                        spindle::time::sleep(Duration::from_secs(600));
                    });
                })
                .unwrap();
            parked.wait();
            wait_parked(&fiber);
            fiber.cancel();
            assert!(cancelled(fiber.join()), "its joiner sees it cancelled");
        });
        // (`block_on`'s own fiber may be finishing still.)
        wait_no_live_fibers(&rt);
        let metrics = rt.metrics();
        assert_eq!(metrics.frozen_fibers, 1);
        assert_eq!(metrics.stacks.in_use, 1, "its stack is kept for good");
        assert_eq!(drops.load(SeqCst), 0, "nothing on its stack was dropped");
        // The runtime carries on.
        assert_eq!(rt.block_on(|| spindle::spawn(|| 5).join().unwrap()), 5);
    });
}

/// Fibers that wake each other (unpark, a contended `Mutex`, yields)
/// while a plain thread and a fiber cancel them, 100,000 in all on two
/// workers: each fiber's closure starts at most once and each witness
/// drops once, every join returns cancelled, the mutex is left unlocked
/// and unpoisoned, and no stack stays in use.
#[test]
fn a_hundred_thousand_cancels_race_with_wake_ups() {
    const TOTAL: usize = 100_000;
    const BATCH: usize = 1_000;
    within(Duration::from_secs(600), || {
        let rt = spindle::Builder::new().workers(2).build().unwrap();
        let mutex = Arc::new(spindle::sync::Mutex::new(0u64));
        let drops = counter();
        let m = mutex.clone();
        let d = drops.clone();
        rt.block_on(move || {
            for batch in 0..TOTAL / BATCH {
                run_batch(batch, BATCH, &m, &d);
            }
        });
        wait_no_live_fibers(&rt);
        assert_eq!(drops.load(SeqCst), TOTAL, "each witness dropped once");
        assert!(!mutex.is_poisoned(), "no guard was held across a wait");
        assert!(mutex.try_lock().is_ok(), "no hand-off was lost");
        let stats = rt.stack_stats();
        assert_eq!(stats.in_use, 0, "{stats:?}");
        assert_eq!(rt.metrics().frozen_fibers, 0);
    });
}

/// One batch of the race: `count` fibers, cancelled half from a plain
/// thread, half from this fiber, while they run.
fn run_batch(
    batch: usize,
    count: usize,
    mutex: &Arc<spindle::sync::Mutex<u64>>,
    drops: &Arc<AtomicUsize>,
) {
    let starts: Arc<Vec<AtomicUsize>> = Arc::new((0..count).map(|_| AtomicUsize::new(0)).collect());
    let peers: Arc<std::sync::OnceLock<Vec<spindle::Fiber>>> = Arc::new(std::sync::OnceLock::new());
    let handles: Vec<JoinHandle<()>> = (0..count)
        .map(|i| {
            let (starts, peers, mutex) = (starts.clone(), peers.clone(), mutex.clone());
            let witness = Witness(drops.clone());
            spindle::spawn(move || {
                let _witness = witness;
                assert_eq!(starts[i].fetch_add(1, SeqCst), 0, "a closure ran twice");
                let mut seed = (batch * count + i) as u64 | 1;
                loop {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    if let Some(peers) = peers.get() {
                        peers[seed as usize % peers.len()].unpark();
                    }
                    match seed % 4 {
                        0 => spindle::yield_now(),
                        1 => *mutex.lock().unwrap() += 1,
                        _ => spindle::park(),
                    }
                }
            })
        })
        .collect();
    let _ = peers.set(handles.iter().map(|h| h.fiber().clone()).collect());
    // Most of them run and wake each other before the cancels start; the
    // rest are cancelled before they start, or as they do.
    let started = || starts.iter().filter(|s| s.load(SeqCst) > 0).count();
    while started() < count / 2 {
        spindle::yield_now();
    }
    let handles = Arc::new(handles);
    let from_thread = {
        let handles = handles.clone();
        std::thread::spawn(move || {
            for handle in handles.iter().skip(1).step_by(2) {
                handle.cancel();
            }
        })
    };
    for (n, handle) in handles.iter().step_by(2).enumerate() {
        handle.cancel();
        if n % 64 == 0 {
            spindle::yield_now(); // let the wake-ups run meanwhile
        }
    }
    from_thread.join().unwrap();
    let handles = Arc::try_unwrap(handles).expect("the thread let its handles go");
    for handle in handles {
        assert!(cancelled(handle.join()));
    }
    assert!(started() >= count / 2);
    // Also drops the peers' handles, which the fibers' records wait for.
    drop(peers);
}

/// With the `interpose` feature a fiber in a hooked C library call (here
/// std's `sleep`, which parks) is cancelled too: the call returns early
/// (a call with an error code reports `ECANCELED`), and the unwind comes
/// at the fiber's next wait in Rust code.
#[cfg(feature = "interpose")]
#[test]
fn a_hooked_c_call_returns_early_and_the_next_wait_unwinds() {
    within(LIMIT, || {
        let rt = spindle::Runtime::new().unwrap();
        let returned = Arc::new(AtomicBool::new(false));
        rt.block_on(|| {
            let r = returned.clone();
            let fiber = spindle::spawn(move || {
                std::thread::sleep(Duration::from_secs(600));
                r.store(true, SeqCst);
                assert!(spindle::is_cancelled());
                spindle::time::sleep(Duration::from_secs(600));
            });
            wait_parked(&fiber);
            fiber.cancel();
            assert!(cancelled(fiber.join()));
        });
        assert!(returned.load(SeqCst), "std's sleep returned early");
    });
}

/// Shutdown's cancellation honours a shield too: the shielded section
/// runs on (its timed wait times out at once in the shutdown pass), and
/// the fiber unwinds at its first wait after it.
#[test]
fn a_shield_defers_shutdowns_unwind_too() {
    within(LIMIT, || {
        let rt = spindle::Runtime::new().unwrap();
        let (finished_shield, after) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let started = Arc::new(Latch::new(1));
        let (f, a, s) = (finished_shield.clone(), after.clone(), started.clone());
        let fiber = rt.spawn(move || {
            spindle::shield(|| {
                s.count_down();
                spindle::time::sleep(Duration::from_secs(600));
                assert!(spindle::is_cancelled());
                f.store(true, SeqCst);
            });
            spindle::time::sleep(Duration::from_secs(600));
            a.store(true, SeqCst);
        });
        started.wait();
        while !format!("{:?}", fiber.fiber()).contains("\"parked\"") {
            std::thread::sleep(Duration::from_millis(1));
        }
        let report = rt.shutdown();
        assert!(report.frozen.is_empty(), "{report:?}");
        assert_eq!(report.unwound, 1);
        assert!(
            finished_shield.load(SeqCst),
            "the shielded section ran to its end"
        );
        assert!(!after.load(SeqCst), "it unwound at the wait after it");
        assert!(cancelled(fiber.join()));
    });
}
