//! Why threads need locks, measured: the lost update.
//!
//! Two OS threads each add 1 to a shared counter `--increments` times
//! (default 1,000,000) without a lock: each increment is a read, then a
//! write (done here with a separate atomic load and store, so the program
//! has no undefined behaviour, just the race). Updates are lost whenever
//! both threads read the same value. Then 1,000 fibers on 2 workers plus
//! the same 2 threads do the same increments through a
//! `spindle::sync::Mutex`: nothing is lost, and fibers and threads share
//! the one lock.
//!
//! Prints the expected and actual totals for each.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

fn main() {
    let increments: u64 = std::env::args()
        .skip_while(|a| a != "--increments")
        .nth(1)
        .map_or(1_000_000, |v| {
            v.replace('_', "").parse().expect("--increments: a number")
        });

    // Without a lock: read, then write.
    let counter = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let counter = counter.clone();
            std::thread::spawn(move || {
                for _ in 0..increments {
                    let seen = counter.load(Ordering::Relaxed);
                    counter.store(seen + 1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    let total = counter.load(Ordering::Relaxed);
    println!(
        "2 threads, no lock:          expected {:>9}, got {:>9}: {} updates lost ({:.1}%) in {:.0} ms",
        2 * increments,
        total,
        2 * increments - total,
        (2 * increments - total) as f64 * 100.0 / (2 * increments) as f64,
        start.elapsed().as_secs_f64() * 1e3
    );

    // With spindle's Mutex, from 1,000 fibers and 2 threads at once.
    let rt = spindle::Builder::new()
        .workers(2)
        .build()
        .expect("start runtime");
    let counter = Arc::new(spindle::sync::Mutex::new(0u64));
    let start = Instant::now();
    let fibers: Vec<_> = (0..1000)
        .map(|_| {
            let counter = counter.clone();
            rt.spawn(move || {
                for _ in 0..increments / 1000 {
                    *counter.lock().unwrap() += 1;
                }
            })
        })
        .collect();
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let counter = counter.clone();
            std::thread::spawn(move || {
                for _ in 0..increments / 2 {
                    *counter.lock().unwrap() += 1;
                }
            })
        })
        .collect();
    fibers.into_iter().for_each(|f| f.join().unwrap());
    threads.into_iter().for_each(|t| t.join().unwrap());
    let expected = 1000 * (increments / 1000) + 2 * (increments / 2);
    let total = *counter.lock().unwrap();
    println!(
        "1,000 fibers + 2 threads, spindle Mutex: expected {expected:>9}, got {total:>9}: {} lost in {:.0} ms",
        expected - total,
        start.elapsed().as_secs_f64() * 1e3
    );
    assert_eq!(total, expected, "a lock loses nothing");
}
