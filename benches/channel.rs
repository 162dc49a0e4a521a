//! Communication cost: a message round trip over a channel between two
//! fibers (spindle `mpsc`), two threads (`std::sync::mpsc`) and two
//! processes (a byte over a pair of pipes), in one criterion run.
//!
//! `cargo bench --bench channel`

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};

mod common;

fn round_trip(c: &mut Criterion) {
    let mut group = c.benchmark_group("channel_round_trip");
    group.measurement_time(Duration::from_secs(3));

    let rt = spindle::Builder::new().workers(2).build().unwrap();
    group.bench_function("fibers_spindle_mpsc", |b| {
        b.iter_custom(|iters| common::fiber_channel_round_trips(&rt, iters))
    });
    drop(rt);

    group.bench_function("threads_std_mpsc", |b| {
        b.iter_custom(common::thread_channel_round_trips)
    });

    group.bench_function("processes_pipe", |b| {
        b.iter_custom(common::pipe_round_trips)
    });
    group.finish();
}

criterion_group!(benches, round_trip);
criterion_main!(benches);
