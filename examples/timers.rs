//! Timers, measured: how precisely `sleep` wakes, and a million sleepers.
//!
//! 1. On an idle runtime, one fiber calls `sleep(1 ms)` `--samples` times
//!    (default 1,000); prints the distribution of the actual sleep times.
//!    The idle worker parks until its timer's deadline, so this measures the
//!    worker's timed park (in `epoll_wait` or on a futex) and the wake-up
//!    path.
//! 2. `--sleepers` fibers (default 1,000,000), all spawned at once, each
//!    sleeping 10 ms and finishing; prints the time from the first spawn
//!    until all are joined. A million sleeping fibers are a million live
//!    fibers, so the same page-fault floor as `examples/million.rs` applies.
//!
//! Flags: `--samples N`, `--sleepers N`, `--workers N`.

use std::time::{Duration, Instant};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.replace('_', "")
                .parse()
                .unwrap_or_else(|_| panic!("{name}: not a number: {v}"))
        })
        .unwrap_or(default)
}

fn main() {
    let samples = arg("--samples", 1000);
    let sleepers = arg("--sleepers", 1_000_000);
    let workers = arg(
        "--workers",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );
    let rt = spindle::Builder::new()
        .workers(workers)
        .build()
        .expect("start runtime");

    let mut slept = rt.block_on(|| {
        (0..samples)
            .map(|_| {
                let start = Instant::now();
                spindle::time::sleep(Duration::from_millis(1));
                start.elapsed()
            })
            .collect::<Vec<_>>()
    });
    slept.sort();
    let at = |q: f64| slept[((slept.len() - 1) as f64 * q).round() as usize];
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("sleep(1 ms) on an idle runtime, {samples} samples, {workers} workers:");
    println!(
        "  min {:.3} ms   p50 {:.3} ms   p90 {:.3} ms   p99 {:.3} ms   max {:.3} ms",
        ms(slept[0]),
        ms(at(0.5)),
        ms(at(0.9)),
        ms(at(0.99)),
        ms(slept[slept.len() - 1])
    );

    let start = Instant::now();
    let spawned = rt.block_on(|| {
        let handles: Vec<_> = (0..sleepers)
            .map(|_| spindle::spawn(|| spindle::time::sleep(Duration::from_millis(10))))
            .collect();
        let spawned = start.elapsed();
        for handle in handles {
            handle.join().expect("sleeper finished");
        }
        spawned
    });
    let all_done = start.elapsed();
    println!("{sleepers} fibers each sleeping 10 ms:");
    println!(
        "  spawned in {:.3} s; all done {:.3} s after the first spawn; timers left pending: {}",
        spawned.as_secs_f64(),
        all_done.as_secs_f64(),
        rt.pending_timers()
    );
}
