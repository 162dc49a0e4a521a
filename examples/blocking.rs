//! A blocking system call inside a fiber, with and without `spindle::blocking`.
//!
//! `--fibers` fibers (default 1,000) on 2 workers each call a raw
//! `libc::usleep(10_000)` (10 ms) while a heartbeat fiber tries to tick every
//! 1 ms; then the same calls go through `spindle::blocking`. For each run it
//! prints the wall time, the largest gap between heartbeats, the most
//! threads the process had and the hand-offs made. Last, it measures the CPU
//! an idle 2-worker runtime burns over 2 s.
//!
//! The raw calls hold their worker threads. A runtime without a hand-off
//! (tokio and `may` have none) stops there: 1,000 calls of 10 ms on 2
//! workers take 5 s, two at a time. spindle's monitor sees a worker held in a
//! system call with fibers waiting and hands them to a spare worker thread
//! (`scheduler/handoff.rs`), as Go's sysmon does; each episode is reported
//! (here counted instead of printed, with `Builder::on_handoff`). Through
//! `spindle::blocking` the calls run on the blocking pool and the worker
//! never blocks.

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
    let episodes = Arc::new(AtomicUsize::new(0));
    let counter = episodes.clone();
    let rt = spindle::Builder::new()
        .workers(2)
        .on_handoff(move |_| {
            counter.fetch_add(1, Ordering::Relaxed);
        })
        .build()
        .expect("start runtime");

    let raw = run(&rt, fibers, || {
        // SAFETY: usleep has no preconditions.
        unsafe { libc::usleep(10_000) };
    });
    let raw_handoffs = episodes.swap(0, Ordering::Relaxed);
    let offloaded = run(&rt, fibers, || {
        // SAFETY: as above.
        spindle::blocking(|| unsafe { libc::usleep(10_000) });
    });
    let offloaded_handoffs = episodes.swap(0, Ordering::Relaxed);
    // The idle measurement gets a process with its own runtime only: wait
    // for the pool threads of the first one to exit.
    drop(rt);
    let deadline = Instant::now() + Duration::from_secs(5);
    while threads_now() > 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let idle_percent = idle_cpu_percent();

    println!("{fibers} fibers each sleeping 10 ms in usleep, 2 workers, heartbeat every 1 ms:");
    println!(
        "{:<32}{:>10}{:>24}{:>15}{:>11}",
        "", "wall", "largest heartbeat gap", "peak threads", "hand-offs"
    );
    for (name, (wall, gap, threads), handoffs) in [
        ("raw usleep (no help)", raw, raw_handoffs),
        ("through spindle::blocking", offloaded, offloaded_handoffs),
    ] {
        println!(
            "{name:<32}{:>7.0} ms{:>21.1} ms{threads:>15}{handoffs:>11}",
            wall.as_secs_f64() * 1e3,
            gap.as_secs_f64() * 1e3
        );
    }
    println!("idle runtime, 2 workers, 2 s: {idle_percent:.2}% of one core (process CPU time)");
}

/// CPU time the whole process uses over 2 s while a fresh 2-worker
/// runtime sits idle, as a percentage of one core.
fn idle_cpu_percent() -> f64 {
    let rt = spindle::Builder::new()
        .workers(2)
        .build()
        .expect("start runtime");
    rt.block_on(|| ()); // workers have started and gone to sleep
    let before = process_cpu();
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let used = process_cpu() - before;
    let percent = used.as_secs_f64() / start.elapsed().as_secs_f64() * 100.0;
    drop(rt);
    percent
}

/// User + system CPU time of this process so far.
fn process_cpu() -> Duration {
    // SAFETY: an all-zero rusage is a valid value to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid place for the result.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let to_duration = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    to_duration(usage.ru_utime) + to_duration(usage.ru_stime)
}
