//! Switch cost: `yield_now` (fiber vs `std::thread::yield_now`), and a
//! park/unpark ping-pong round trip between two fibers, two threads
//! (`Mutex` + `Condvar`) and two processes (a byte over a pair of pipes), in
//! one criterion run.
//!
//! `cargo bench --bench switch`

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};

mod common;

fn yield_now(c: &mut Criterion) {
    let mut group = c.benchmark_group("yield");
    group.measurement_time(Duration::from_secs(3));
    let rt = spindle::Builder::new().workers(2).build().unwrap();
    group.bench_function("fiber_alone", |b| {
        // One fiber yielding with nothing else runnable on its worker: a
        // switch to the worker, which finds nothing else to run, and back.
        b.iter_custom(|iters| {
            rt.block_on(|| {
                let start = Instant::now();
                for _ in 0..iters {
                    spindle::yield_now();
                }
                start.elapsed()
            })
        })
    });
    drop(rt);
    let rt = spindle::Builder::new().workers(1).build().unwrap();
    group.bench_function("fiber_to_fiber", |b| {
        // Two fibers on one worker yielding in turn: every yield goes
        // through the run queue to the other fiber. Time per yield.
        b.iter_custom(|iters| {
            rt.block_on(|| {
                let other = spindle::spawn(move || {
                    for _ in 0..iters / 2 {
                        spindle::yield_now();
                    }
                });
                let start = Instant::now();
                for _ in 0..iters / 2 {
                    spindle::yield_now();
                }
                let elapsed = start.elapsed();
                other.join().unwrap();
                elapsed
            })
        })
    });
    drop(rt);
    group.bench_function("std_thread", |b| b.iter(std::thread::yield_now));
    group.finish();
}

fn ping_pong(c: &mut Criterion) {
    let mut group = c.benchmark_group("ping_pong_round_trip");
    group.measurement_time(Duration::from_secs(3));

    let rt = spindle::Builder::new().workers(2).build().unwrap();
    group.bench_function("fiber_park_unpark", |b| {
        b.iter_custom(|iters| common::fiber_park_unpark_round_trips(&rt, iters))
    });
    drop(rt);

    group.bench_function("thread_mutex_condvar", |b| {
        b.iter_custom(common::thread_condvar_round_trips)
    });

    group.bench_function("process_pipe", |b| b.iter_custom(common::pipe_round_trips));
    group.finish();
}

criterion_group!(benches, yield_now, ping_pong);
criterion_main!(benches);
