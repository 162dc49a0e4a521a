//! Communication cost: a message round trip over a channel between two
//! fibers (spindle `mpsc`), two threads (`std::sync::mpsc`) and two
//! processes (a byte over a pair of pipes), in one criterion run.
//!
//! `cargo bench --bench channel`

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};

mod common;

fn round_trip(c: &mut Criterion) {
    let mut group = c.benchmark_group("channel_round_trip");
    group.measurement_time(Duration::from_secs(3));

    let rt = spindle::Builder::new().workers(2).build().unwrap();
    group.bench_function("fibers_spindle_mpsc", |b| {
        b.iter_custom(|iters| {
            rt.block_on(|| {
                let (to_pong, pong_rx) = spindle::sync::mpsc::channel::<u64>();
                let (to_ping, ping_rx) = spindle::sync::mpsc::channel::<u64>();
                let pong = spindle::spawn(move || {
                    for message in pong_rx.iter() {
                        to_ping.send(message + 1).unwrap();
                    }
                });
                let start = Instant::now();
                for i in 0..iters {
                    to_pong.send(i).unwrap();
                    assert_eq!(ping_rx.recv().unwrap(), i + 1);
                }
                let elapsed = start.elapsed();
                drop(to_pong);
                pong.join().unwrap();
                elapsed
            })
        })
    });
    drop(rt);

    group.bench_function("threads_std_mpsc", |b| {
        b.iter_custom(|iters| {
            let (to_pong, pong_rx) = std::sync::mpsc::channel::<u64>();
            let (to_ping, ping_rx) = std::sync::mpsc::channel::<u64>();
            let pong = std::thread::spawn(move || {
                for message in pong_rx.iter() {
                    to_ping.send(message + 1).unwrap();
                }
            });
            let start = Instant::now();
            for i in 0..iters {
                to_pong.send(i).unwrap();
                assert_eq!(ping_rx.recv().unwrap(), i + 1);
            }
            let elapsed = start.elapsed();
            drop(to_pong);
            pong.join().unwrap();
            elapsed
        })
    });

    group.bench_function("processes_pipe", |b| {
        b.iter_custom(common::pipe_round_trips)
    });
    group.finish();
}

criterion_group!(benches, round_trip);
criterion_main!(benches);
