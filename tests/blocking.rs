//! The blocking pool with real threads: other fibers keep running while
//! fibers block, panics come back, the cap holds, idle threads exit, and
//! nesting and plain threads run inline. Generous bounds: correctness.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::within;
use spindle::Builder;

const HANG: Duration = Duration::from_secs(120);

#[test]
fn other_fibers_run_while_fibers_block() {
    // One worker: 8 fibers block 100 ms each in `blocking`; a heartbeat
    // fiber on the same worker must keep ticking meanwhile.
    let rt = Builder::new().workers(1).build().unwrap();
    let (ticks, elapsed) = within(HANG, move || {
        rt.block_on(|| {
            let stop = Arc::new(AtomicBool::new(false));
            let ticks = Arc::new(AtomicUsize::new(0));
            let (stop2, ticks2) = (stop.clone(), ticks.clone());
            let heartbeat = spindle::spawn(move || {
                while !stop2.load(Ordering::Relaxed) {
                    ticks2.fetch_add(1, Ordering::Relaxed);
                    spindle::time::sleep(Duration::from_millis(1));
                }
            });
            let start = Instant::now();
            let blockers: Vec<_> = (0..8)
                .map(|_| {
                    spindle::spawn(|| {
                        spindle::blocking(|| std::thread::sleep(Duration::from_millis(100)))
                    })
                })
                .collect();
            blockers.into_iter().for_each(|b| b.join().unwrap());
            let elapsed = start.elapsed();
            stop.store(true, Ordering::Relaxed);
            heartbeat.join().unwrap();
            (ticks.load(Ordering::Relaxed), elapsed)
        })
    });
    assert!(
        elapsed < Duration::from_millis(700),
        "8 x 100 ms ran in parallel, not in series: {elapsed:?}"
    );
    assert!(
        ticks >= 20,
        "the heartbeat kept ticking while fibers blocked: {ticks} ticks"
    );
}

#[test]
fn two_hundred_raw_sleeps_through_blocking_beat_the_serial_time() {
    let rt = Builder::new().workers(2).build().unwrap();
    let elapsed = within(HANG, move || {
        rt.block_on(|| {
            let start = Instant::now();
            let fibers: Vec<_> = (0..200)
                .map(|_| {
                    spindle::spawn(|| {
                        // SAFETY: usleep has no preconditions.
                        spindle::blocking(|| unsafe { libc::usleep(10_000) });
                    })
                })
                .collect();
            fibers.into_iter().for_each(|f| f.join().unwrap());
            start.elapsed()
        })
    });
    assert!(
        elapsed < Duration::from_millis(1000),
        "serial would take 2 s: {elapsed:?}"
    );
}

#[test]
fn a_panic_in_the_closure_resumes_in_the_caller() {
    let rt = Builder::new().workers(1).build().unwrap();
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let error = rt
        .spawn(|| spindle::blocking(|| -> u32 { panic!("in the pool") }))
        .join()
        .unwrap_err();
    std::panic::set_hook(hook);
    assert!(error.is_panic());
    assert_eq!(error.to_string(), "fiber panicked: in the pool");
    // The pool thread survived and serves the next call.
    assert_eq!(rt.spawn(|| spindle::blocking(|| 5)).join().unwrap(), 5);
}

#[test]
fn the_cap_holds_and_idle_threads_exit() {
    let rt = Builder::new()
        .workers(2)
        .max_blocking_threads(4)
        .blocking_keep_alive(Duration::from_millis(50))
        .build()
        .unwrap();
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (running2, most2) = (running.clone(), most.clone());
    let rt = Arc::new(rt);
    let rt2 = rt.clone();
    within(HANG, move || {
        rt2.block_on(|| {
            let fibers: Vec<_> = (0..20)
                .map(|_| {
                    let (running, most) = (running2.clone(), most2.clone());
                    spindle::spawn(move || {
                        spindle::blocking(|| {
                            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(now, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(20));
                            running.fetch_sub(1, Ordering::SeqCst);
                        })
                    })
                })
                .collect();
            fibers.into_iter().for_each(|f| f.join().unwrap());
        });
        let stats = rt2.blocking_pool_stats();
        assert!(stats.peak_threads <= 4, "{stats:?}");
        // After the keep-alive the idle threads exit.
        let deadline = Instant::now() + Duration::from_secs(30);
        while rt2.blocking_pool_stats().threads > 0 {
            assert!(
                Instant::now() < deadline,
                "idle pool threads did not exit: {:?}",
                rt2.blocking_pool_stats()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    assert!(
        most.load(Ordering::SeqCst) <= 4,
        "at most 4 closures ran at once"
    );
    assert!(
        most.load(Ordering::SeqCst) >= 2,
        "the pool did run closures in parallel"
    );
    drop(rt);
}

#[test]
fn nesting_and_plain_threads_run_inline_and_borrowing_works() {
    // On a plain thread, `blocking` runs the closure right there.
    let here = std::thread::current().id();
    assert_eq!(spindle::blocking(|| std::thread::current().id()), here);
    let rt = Builder::new().workers(1).build().unwrap();
    let words = ["a".to_string(), "bc".to_string()];
    let (outer_thread, inner_same, total) = rt.block_on(|| {
        spindle::blocking(|| {
            let outer = std::thread::current().id();
            // Inside `blocking` we are on a pool thread: nested runs inline.
            let inner = spindle::blocking(|| std::thread::current().id());
            // The closure borrows `words` from the caller's stack.
            (
                outer,
                inner == outer,
                words.iter().map(String::len).sum::<usize>(),
            )
        })
    });
    assert_ne!(outer_thread, here);
    assert!(inner_same);
    assert_eq!(total, 3);
}

#[test]
fn a_fiber_waiting_on_blocking_is_unwound_at_shutdown_after_its_closure_ends() {
    let rt = Builder::new().workers(1).build().unwrap();
    let closure_done = Arc::new(AtomicBool::new(false));
    let started = Arc::new(spindle::sync::Latch::new(1));
    let (done2, started2) = (closure_done.clone(), started.clone());
    rt.spawn(move || {
        let local = [1u8; 16];
        spindle::blocking(|| {
            started2.count_down();
            std::thread::sleep(Duration::from_millis(100));
            // Borrowed from the fiber's stack: still alive, because the
            // fiber cannot leave `blocking` before this returns.
            assert_eq!(local.len(), 16);
            done2.store(true, Ordering::SeqCst);
        });
    });
    started.wait();
    let report = within(HANG, move || rt.shutdown());
    assert_eq!(report.fibers_cancelled, 1);
    assert!(
        closure_done.load(Ordering::SeqCst),
        "the fiber waited for its closure before unwinding"
    );
}

#[test]
fn fs_helpers_go_through_the_pool() {
    let rt = Builder::new().workers(1).build().unwrap();
    let path = std::env::temp_dir().join(format!("spindle-fs-test-{}", std::process::id()));
    let path2 = path.clone();
    let read = rt.block_on(move || {
        spindle::fs::write(&path2, b"fiber-side io").unwrap();
        let text = spindle::fs::read_to_string(&path2).unwrap();
        let len = spindle::fs::metadata(&path2).unwrap().len();
        let missing = spindle::fs::read(path2.with_extension("missing")).unwrap_err();
        (text, len, missing.kind())
    });
    std::fs::remove_file(&path).unwrap();
    assert_eq!(
        read,
        (
            "fiber-side io".to_string(),
            13,
            std::io::ErrorKind::NotFound
        )
    );
    assert!(rt.blocking_pool_stats().peak_threads >= 1);
}
