//! A blocking system call inside a fiber, with and without `spindle::blocking`.
//!
//! `--fibers` fibers (default 1,000) on 2 workers each call a raw
//! `libc::usleep(10_000)` (10 ms) while a heartbeat fiber tries to tick every
//! 1 ms; then the same calls go through `spindle::blocking`. For each run it
//! prints the wall time, the largest gap between heartbeats and the most
//! threads the process had.
//!
//! What to expect today: the raw calls hold their worker threads, so with 2
//! workers they run two at a time (~5 s for 1,000) and the heartbeat stops,
//! as on tokio and `may`. The automatic hand-off that would rescue them
//! (Go's sysmon giving a blocked worker's queue to a spare thread) is not
//! built yet: this example is its yardstick. Through `spindle::blocking`
//! the calls run on the blocking pool and the heartbeat keeps ticking.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn threads_now() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Threads:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Runs `fibers` fibers calling `call` while a heartbeat ticks; returns
/// (wall time, largest heartbeat gap, peak thread count).
fn run(rt: &spindle::Runtime, fibers: usize, call: fn()) -> (Duration, Duration, usize) {
    rt.block_on(|| {
        let stop = Arc::new(AtomicBool::new(false));
        let largest_gap_us = Arc::new(AtomicU64::new(0));
        let peak_threads = Arc::new(AtomicUsize::new(threads_now()));
        let (stop2, gap2, peak2) = (stop.clone(), largest_gap_us.clone(), peak_threads.clone());
        let heartbeat = spindle::spawn(move || {
            let mut last = Instant::now();
            while !stop2.load(Ordering::Relaxed) {
                spindle::time::sleep(Duration::from_millis(1));
                let now = Instant::now();
                gap2.fetch_max((now - last).as_micros() as u64, Ordering::Relaxed);
                peak2.fetch_max(threads_now(), Ordering::Relaxed);
                last = now;
            }
        });
        let start = Instant::now();
        let handles: Vec<_> = (0..fibers).map(|_| spindle::spawn(call)).collect();
        handles.into_iter().for_each(|h| h.join().unwrap());
        let wall = start.elapsed();
        stop.store(true, Ordering::Relaxed);
        heartbeat.join().unwrap();
        (
            wall,
            Duration::from_micros(largest_gap_us.load(Ordering::Relaxed)),
            peak_threads.load(Ordering::Relaxed),
        )
    })
}

fn main() {
    let fibers: usize = std::env::args()
        .skip_while(|a| a != "--fibers")
        .nth(1)
        .map_or(1000, |v| {
            v.replace('_', "").parse().expect("--fibers: a number")
        });
    let rt = spindle::Builder::new()
        .workers(2)
        .build()
        .expect("start runtime");

    let raw = run(&rt, fibers, || {
        // SAFETY: usleep has no preconditions.
        unsafe { libc::usleep(10_000) };
    });
    let offloaded = run(&rt, fibers, || {
        // SAFETY: as above.
        spindle::blocking(|| unsafe { libc::usleep(10_000) });
    });

    println!("{fibers} fibers each sleeping 10 ms in usleep, 2 workers, heartbeat every 1 ms:");
    println!(
        "{:<32}{:>12}{:>22}{:>16}",
        "", "wall", "largest heartbeat gap", "peak threads"
    );
    for (name, (wall, gap, threads)) in [
        ("raw usleep (no help)", raw),
        ("through spindle::blocking", offloaded),
    ] {
        println!(
            "{name:<32}{:>10.0} ms{:>20.1} ms{threads:>16}",
            wall.as_secs_f64() * 1e3,
            gap.as_secs_f64() * 1e3
        );
    }
}
