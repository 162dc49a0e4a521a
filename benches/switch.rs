//! Switch cost: `yield_now` (fiber vs `std::thread::yield_now`), and a
//! park/unpark ping-pong round trip between two fibers, two threads
//! (`Mutex` + `Condvar`) and two processes (a byte over a pair of pipes), in
//! one criterion run.
//!
//! `cargo bench --bench switch`

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
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
        b.iter_custom(|iters| {
            rt.block_on(|| {
                // Turn: even = ping's turn, odd = pong's. Each side waits
                // for its turn with park and passes it with unpark.
                let turn = Arc::new(AtomicUsize::new(0));
                let ping = spindle::current();
                let pong_turn = turn.clone();
                let pong = spindle::spawn(move || {
                    for round in 0..iters as usize {
                        while pong_turn.load(Ordering::Acquire) != 2 * round + 1 {
                            spindle::park();
                        }
                        pong_turn.store(2 * round + 2, Ordering::Release);
                        ping.unpark();
                    }
                });
                let pong_fiber = pong.fiber().clone();
                let start = Instant::now();
                for round in 0..iters as usize {
                    turn.store(2 * round + 1, Ordering::Release);
                    pong_fiber.unpark();
                    while turn.load(Ordering::Acquire) != 2 * round + 2 {
                        spindle::park();
                    }
                }
                let elapsed = start.elapsed();
                pong.join().unwrap();
                elapsed
            })
        })
    });
    drop(rt);

    group.bench_function("thread_mutex_condvar", |b| {
        b.iter_custom(|iters| {
            let shared = Arc::new((Mutex::new(0usize), Condvar::new()));
            let other = shared.clone();
            let pong = std::thread::spawn(move || {
                let (lock, condvar) = &*other;
                let mut turn = lock.lock().unwrap();
                for round in 0..iters as usize {
                    while *turn != 2 * round + 1 {
                        turn = condvar.wait(turn).unwrap();
                    }
                    *turn = 2 * round + 2;
                    condvar.notify_one();
                }
            });
            let (lock, condvar) = &*shared;
            let start = Instant::now();
            let mut turn = lock.lock().unwrap();
            for round in 0..iters as usize {
                *turn = 2 * round + 1;
                condvar.notify_one();
                while *turn != 2 * round + 2 {
                    turn = condvar.wait(turn).unwrap();
                }
            }
            drop(turn);
            let elapsed = start.elapsed();
            pong.join().unwrap();
            elapsed
        })
    });

    group.bench_function("process_pipe", |b| b.iter_custom(common::pipe_round_trips));
    group.finish();
}

criterion_group!(benches, yield_now, ping_pong);
criterion_main!(benches);
