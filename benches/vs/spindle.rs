//! The spindle side of the side-by-side harness (`benches/vs/run`): each
//! shape written the way its Go twin in `benches/vs/go/shapes.go` is, on a
//! runtime with `--workers` workers (the harness sets Go's `GOMAXPROCS` to
//! the same number). Prints one line per figure,
//!
//! ```text
//! RESULT <shape> <metric> <value> <unit>
//! ```
//!
//! `cargo bench --bench vs -- <shape> [count] [--workers N]`; the shapes:
//! `spawn_batch`, `spawn_join`, `rendezvous`, `buffered`, `yield`,
//! `sleepers`, `mutex`, `std_mutex` (2 std threads on a std `Mutex`, the
//! peer of `mutex`), `usleep` (raw `usleep` calls) and `usleep_blocking`
//! (the same through `spindle::blocking`). The million and the HTTP shapes
//! use `examples/million` and `examples/http_hello`.
//!
//! A plain program rather than a criterion bench: each run is one
//! measurement of a whole shape, and the harness alternates whole
//! processes (spindle, Go, spindle, ...) and takes medians.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use spindle::sync::{mpsc, Latch, Mutex};

fn result(shape: &str, metric: &str, value: f64, unit: &str) {
    println!("RESULT {shape} {metric} {value:.6} {unit}");
}

fn per_each(elapsed: Duration, n: usize) -> f64 {
    elapsed.as_nanos() as f64 / n as f64
}

/// Spawn and finish `n` fibers doing an atomic add, waited for on one latch
/// (Go: a `WaitGroup`); the handles are dropped, as Go has none.
fn spawn_batch(n: usize) -> f64 {
    let sum = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(Latch::new(n));
    let start = Instant::now();
    for _ in 0..n {
        let (sum, done) = (sum.clone(), done.clone());
        drop(spindle::spawn(move || {
            sum.fetch_add(1, Ordering::Relaxed);
            done.count_down();
        }));
    }
    done.wait();
    let elapsed = start.elapsed();
    assert_eq!(sum.load(Ordering::Relaxed), n, "lost an add");
    per_each(elapsed, n)
}

/// Spawn one fiber and join it, `n` times.
fn spawn_join(n: usize) -> f64 {
    let start = Instant::now();
    for i in 0..n {
        std::hint::black_box(spindle::spawn(move || i).join().unwrap());
    }
    per_each(start.elapsed(), n)
}

/// `n` round trips between two fibers over two channels made by `make`.
fn ping_pong<S, R>(n: usize, make: impl Fn() -> (S, R)) -> f64
where
    S: Fn(usize) + Send + 'static,
    R: Fn() -> Option<usize> + Send + 'static,
{
    let (ping_tx, ping_rx) = make();
    let (pong_tx, pong_rx) = make();
    let echo = spindle::spawn(move || {
        while let Some(v) = ping_rx() {
            pong_tx(v);
        }
    });
    let start = Instant::now();
    for i in 0..n {
        ping_tx(i);
        assert_eq!(pong_rx(), Some(i));
    }
    let elapsed = start.elapsed();
    drop(ping_tx);
    echo.join().unwrap();
    per_each(elapsed, n)
}

fn rendezvous() -> (impl Fn(usize) + Send, impl Fn() -> Option<usize> + Send) {
    let (tx, rx) = mpsc::sync_channel(0);
    (move |v| tx.send(v).unwrap(), move || rx.recv().ok())
}

fn unbounded() -> (impl Fn(usize) + Send, impl Fn() -> Option<usize> + Send) {
    let (tx, rx) = mpsc::channel();
    (move |v| tx.send(v).unwrap(), move || rx.recv().ok())
}

/// One fiber yielding `n` times with nothing else to run.
fn yield_loop(n: usize) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        spindle::yield_now();
    }
    per_each(start.elapsed(), n)
}

/// `n` fibers each sleeping 10 ms: seconds from the first spawn to the
/// last finish.
fn sleepers(n: usize) -> f64 {
    let done = Arc::new(Latch::new(n));
    let start = Instant::now();
    for _ in 0..n {
        let done = done.clone();
        drop(spindle::spawn(move || {
            spindle::time::sleep(Duration::from_millis(10));
            done.count_down();
        }));
    }
    done.wait();
    start.elapsed().as_secs_f64()
}

/// 1,000 fibers sharing `total` increments of one `spindle::sync::Mutex`
/// counter: milliseconds.
fn mutex(total: usize) -> f64 {
    const FIBERS: usize = 1000;
    let counter = Arc::new(Mutex::new(0usize));
    let start = Instant::now();
    let handles: Vec<_> = (0..FIBERS)
        .map(|_| {
            let counter = counter.clone();
            spindle::spawn(move || {
                for _ in 0..total / FIBERS {
                    *counter.lock().unwrap() += 1;
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    let elapsed = start.elapsed();
    assert_eq!(*counter.lock().unwrap(), total / FIBERS * FIBERS);
    elapsed.as_secs_f64() * 1e3
}

/// The peer of `mutex`: 2 std threads sharing `total` increments of a std
/// `Mutex` counter: milliseconds.
fn std_mutex(total: usize) -> f64 {
    let counter = Arc::new(std::sync::Mutex::new(0usize));
    let start = Instant::now();
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let counter = counter.clone();
            std::thread::spawn(move || {
                for _ in 0..total / 2 {
                    *counter.lock().unwrap() += 1;
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    start.elapsed().as_secs_f64() * 1e3
}

/// `n` fibers each making a raw `usleep(10 ms)` (or, with `offload`, the
/// same call through `spindle::blocking`) beside a heartbeat fiber that
/// sleeps 1 ms at a time: the wall time and the heartbeat's largest gap, in
/// milliseconds.
fn usleep(n: usize, offload: bool) -> (f64, f64) {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let largest_gap = Arc::new(AtomicU64::new(0));
    let heartbeat = {
        let (stop, largest_gap) = (stop.clone(), largest_gap.clone());
        spindle::spawn(move || {
            let mut last = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                spindle::time::sleep(Duration::from_millis(1));
                let now = Instant::now();
                let gap = now.duration_since(last).as_nanos() as u64;
                largest_gap.fetch_max(gap, Ordering::Relaxed);
                last = now;
            }
        })
    };
    spindle::time::sleep(Duration::from_millis(20));
    largest_gap.store(0, Ordering::Relaxed);
    let done = Arc::new(Latch::new(n));
    let start = Instant::now();
    for _ in 0..n {
        let done = done.clone();
        drop(spindle::spawn(move || {
            if offload {
                spindle::blocking(|| raw_usleep(10_000));
            } else {
                raw_usleep(10_000);
            }
            done.count_down();
        }));
    }
    done.wait();
    let wall = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    heartbeat.join().unwrap();
    let gap = Duration::from_nanos(largest_gap.load(Ordering::Relaxed));
    (wall.as_secs_f64() * 1e3, gap.as_secs_f64() * 1e3)
}

fn raw_usleep(micros: u32) {
    // SAFETY: usleep has no memory-safety preconditions.
    unsafe { libc::usleep(micros) };
}

fn usage(problem: &str) -> ! {
    eprintln!("vs: {problem}");
    eprintln!(
        "usage: cargo bench --bench vs -- SHAPE [COUNT] [--workers N]\n\
         shapes: spawn_batch spawn_join rendezvous buffered yield sleepers mutex std_mutex usleep usleep_blocking"
    );
    std::process::exit(2)
}

fn main() {
    let mut shape = None;
    let mut count = None;
    let mut workers = 2;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            // `cargo bench` passes this to every bench binary.
            "--bench" => {}
            "--workers" => {
                let value = args
                    .next()
                    .unwrap_or_else(|| usage("--workers needs a value"));
                workers = value
                    .parse()
                    .unwrap_or_else(|_| usage(&format!("--workers: not a number: {value}")));
            }
            _ if shape.is_none() => shape = Some(arg),
            _ if count.is_none() => {
                let digits = arg.replace('_', "");
                count = Some(
                    digits
                        .parse::<usize>()
                        .unwrap_or_else(|_| usage(&format!("not a count: {arg}"))),
                );
            }
            _ => usage(&format!("unexpected argument: {arg}")),
        }
    }
    let Some(shape) = shape else {
        // `cargo bench` with no filter runs every bench: nothing to do here.
        return;
    };
    let rt = spindle::Builder::new()
        .workers(workers)
        .build()
        .expect("runtime");
    let n = |fallback: usize| count.unwrap_or(fallback);
    match shape.as_str() {
        "spawn_batch" => {
            let each = rt.block_on(|| spawn_batch(n(1_000_000)));
            result("spawn_batch", "each", each, "ns");
        }
        "spawn_join" => {
            let each = rt.block_on(|| spawn_join(n(1_000_000)));
            result("spawn_join", "each", each, "ns");
        }
        "rendezvous" => {
            let each = rt.block_on(|| ping_pong(n(1_000_000), rendezvous));
            result("rendezvous", "round_trip", each, "ns");
        }
        "buffered" => {
            let each = rt.block_on(|| ping_pong(n(1_000_000), unbounded));
            result("buffered", "round_trip", each, "ns");
        }
        "yield" => {
            let each = rt.block_on(|| yield_loop(n(10_000_000)));
            result("yield", "each", each, "ns");
        }
        "sleepers" => {
            let total = rt.block_on(|| sleepers(n(1_000_000)));
            result("sleepers", "total", total, "s");
        }
        "mutex" => {
            let ms = rt.block_on(|| mutex(n(1_000_000)));
            result("mutex", "total", ms, "ms");
        }
        "std_mutex" => result("std_mutex", "total", std_mutex(n(1_000_000)), "ms"),
        "usleep" | "usleep_blocking" => {
            let offload = shape == "usleep_blocking";
            let (wall, gap) = rt.block_on(|| usleep(n(1_000), offload));
            result(&shape, "wall", wall, "ms");
            result(&shape, "heartbeat_gap", gap, "ms");
        }
        other => usage(&format!("unknown shape: {other}")),
    }
}
