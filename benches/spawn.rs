//! Creation cost: spawn + run + join of a unit that does nothing, as a
//! fiber, as a `std::thread`, and as a process (`fork` + `_exit` +
//! `waitpid`), in one criterion run so the ratios come from one machine at
//! one moment.
//!
//! `cargo bench --bench spawn`

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};

fn spawn_join(c: &mut Criterion) {
    let mut group = c.benchmark_group("spawn_join");
    group.measurement_time(Duration::from_secs(3));

    let rt = spindle::Builder::new().workers(2).build().unwrap();
    group.bench_function("fiber", |b| {
        // Timed inside a fiber: spawn from a fiber, join from a fiber, as a
        // fiber program does. The first spawn carves a stack; the rest
        // reuse it (see runtime/fiber/stack/).
        b.iter_custom(|iters| {
            rt.block_on(|| {
                let start = Instant::now();
                for i in 0..iters {
                    let handle = spindle::spawn(move || black_box(i));
                    black_box(handle.join().unwrap());
                }
                start.elapsed()
            })
        })
    });
    group.bench_function("fiber_batch_of_1000", |b| {
        // Throughput rather than latency: spawn 1,000, then join them all.
        // Reported per batch; divide by 1,000 for the cost per fiber.
        b.iter_custom(|iters| {
            rt.block_on(|| {
                let start = Instant::now();
                for _ in 0..iters {
                    let handles: Vec<_> = (0..1000u64)
                        .map(|i| spindle::spawn(move || black_box(i)))
                        .collect();
                    black_box(handles.into_iter().map(|h| h.join().unwrap()).sum::<u64>());
                }
                start.elapsed()
            })
        })
    });
    drop(rt);

    // The same with the timeline trace recording, to show what observation
    // costs: every spawn and run slice becomes an event.
    let trace_path =
        std::env::temp_dir().join(format!("spindle-bench-{}.json", std::process::id()));
    let traced = spindle::Builder::new()
        .workers(2)
        .trace(&trace_path)
        .build()
        .unwrap();
    group.bench_function("fiber_tracing_on", |b| {
        b.iter_custom(|iters| {
            traced.block_on(|| {
                let start = Instant::now();
                for i in 0..iters {
                    let handle = spindle::spawn(move || black_box(i));
                    black_box(handle.join().unwrap());
                }
                start.elapsed()
            })
        })
    });
    drop(traced);
    let _ = std::fs::remove_file(&trace_path);

    group.bench_function("std_thread", |b| {
        b.iter(|| {
            let handle = std::thread::spawn(|| black_box(1u64));
            black_box(handle.join().unwrap())
        })
    });

    group.sample_size(30);
    group.bench_function("process_fork", |b| {
        b.iter(|| {
            // SAFETY: the child calls only _exit, which is async-signal-safe,
            // so forking this multi-threaded process is sound.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0, "fork failed");
            if pid == 0 {
                // SAFETY: ends the child at once, running no Rust code.
                unsafe { libc::_exit(0) };
            }
            let mut status = 0;
            // SAFETY: waits for the child we just forked.
            let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
            assert_eq!(waited, pid);
            black_box(status)
        })
    });
    group.finish();
}

criterion_group!(benches, spawn_join);
criterion_main!(benches);
