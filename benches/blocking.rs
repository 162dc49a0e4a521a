//! Blocking calls: 200 units each making a 2 ms blocking system call
//! (`usleep`), as fibers making the raw call (rescued by the monitor's
//! hand-off to spare workers), as fibers going through `spindle::blocking`,
//! and as one `std::thread` per call; in one criterion run, so the ratios
//! come from one machine at one moment. Without a hand-off, 2 workers would
//! take 200 ms (two calls at a time).
//!
//! `cargo bench --bench blocking`

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};

const CALLS: usize = 200;
const CALL: Duration = Duration::from_millis(2);

fn raw_call() {
    // SAFETY: usleep has no preconditions.
    unsafe { libc::usleep(CALL.as_micros() as libc::useconds_t) };
}

fn blocking_calls(c: &mut Criterion) {
    let mut group = c.benchmark_group("200_blocking_calls_of_2ms");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));

    let rt = spindle::Builder::new()
        .workers(2)
        .on_handoff(|_| {}) // counted in metrics, not printed
        .build()
        .unwrap();
    group.bench_function("fibers_raw_call_handed_off", |b| {
        b.iter(|| {
            rt.block_on(|| {
                let fibers: Vec<_> = (0..CALLS).map(|_| spindle::spawn(raw_call)).collect();
                fibers.into_iter().for_each(|f| f.join().unwrap());
            })
        })
    });
    group.bench_function("fibers_through_spindle_blocking", |b| {
        b.iter(|| {
            rt.block_on(|| {
                let fibers: Vec<_> = (0..CALLS)
                    .map(|_| spindle::spawn(|| spindle::blocking(raw_call)))
                    .collect();
                fibers.into_iter().for_each(|f| f.join().unwrap());
            })
        })
    });
    drop(rt);

    group.bench_function("std_thread_per_call", |b| {
        b.iter(|| {
            let threads: Vec<_> = (0..CALLS).map(|_| std::thread::spawn(raw_call)).collect();
            threads.into_iter().for_each(|t| t.join().unwrap());
        })
    });
    group.finish();
}

criterion_group!(benches, blocking_calls);
criterion_main!(benches);
