//! Lock costs: spindle's `Mutex` beside `std::sync::Mutex`, uncontended and
//! contended, in one criterion run.
//!
//! `cargo bench --bench sync`

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};

fn uncontended(c: &mut Criterion) {
    let mut group = c.benchmark_group("mutex_uncontended_lock_unlock");
    group.measurement_time(Duration::from_secs(3));
    let spindle_mutex = spindle::sync::Mutex::new(0u64);
    group.bench_function("spindle", |b| {
        b.iter(|| *black_box(&spindle_mutex).lock().unwrap() += 1)
    });
    let std_mutex = std::sync::Mutex::new(0u64);
    group.bench_function("std", |b| {
        b.iter(|| *black_box(&std_mutex).lock().unwrap() += 1)
    });
    group.finish();
}

/// 1,000,000 increments in total on one lock.
const INCREMENTS: u64 = 1_000_000;

fn contended(c: &mut Criterion) {
    let mut group = c.benchmark_group("mutex_1M_increments");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    let rt = spindle::Builder::new().workers(2).build().unwrap();
    group.bench_function("1000_fibers_spindle_mutex", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                total += rt.block_on(|| {
                    let counter = Arc::new(spindle::sync::Mutex::new(0u64));
                    let start = Instant::now();
                    let fibers: Vec<_> = (0..1000)
                        .map(|_| {
                            let counter = counter.clone();
                            spindle::spawn(move || {
                                for _ in 0..INCREMENTS / 1000 {
                                    *counter.lock().unwrap() += 1;
                                }
                            })
                        })
                        .collect();
                    fibers.into_iter().for_each(|f| f.join().unwrap());
                    assert_eq!(*counter.lock().unwrap(), INCREMENTS);
                    start.elapsed()
                });
            }
            total
        })
    });
    drop(rt);
    group.bench_function("2_threads_std_mutex", |b| {
        b.iter(|| {
            let counter = Arc::new(std::sync::Mutex::new(0u64));
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let counter = counter.clone();
                    std::thread::spawn(move || {
                        for _ in 0..INCREMENTS / 2 {
                            *counter.lock().unwrap() += 1;
                        }
                    })
                })
                .collect();
            threads.into_iter().for_each(|t| t.join().unwrap());
            assert_eq!(*counter.lock().unwrap(), INCREMENTS);
        })
    });
    group.finish();
}

criterion_group!(benches, uncontended, contended);
criterion_main!(benches);
