//! Switch cost: `yield_now` (fiber vs `std::thread::yield_now`), and a
//! park/unpark ping-pong round trip between two fibers, two threads
//! (`Mutex` + `Condvar`) and two processes (a byte over a pair of pipes), in
//! one criterion run.
//!
//! `cargo bench --bench switch`

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};

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

    group.bench_function("process_pipe", |b| {
        b.iter_custom(|iters| {
            let (to_child, from_parent) = pipe();
            let (to_parent, from_child) = pipe();
            // SAFETY: the child runs only read/write/_exit (async-signal-safe)
            // on descriptors it owns, so forking a threaded process is sound.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0, "fork failed");
            if pid == 0 {
                let mut byte = 0u8;
                for _ in 0..iters {
                    // SAFETY: one-byte reads and writes on our own pipes.
                    unsafe {
                        if libc::read(from_parent, (&mut byte as *mut u8).cast(), 1) != 1 {
                            libc::_exit(1);
                        }
                        libc::write(to_parent, (&byte as *const u8).cast(), 1);
                    }
                }
                // SAFETY: ends the child without running Rust code.
                unsafe { libc::_exit(0) };
            }
            let mut byte = 7u8;
            let start = Instant::now();
            for _ in 0..iters {
                // SAFETY: as in the child.
                unsafe {
                    libc::write(to_child, (&byte as *const u8).cast(), 1);
                    assert_eq!(libc::read(from_child, (&mut byte as *mut u8).cast(), 1), 1);
                }
            }
            let elapsed = start.elapsed();
            let mut status = 0;
            // SAFETY: reaping our own child, then closing our descriptors.
            unsafe {
                libc::waitpid(pid, &mut status, 0);
                for fd in [to_child, from_parent, to_parent, from_child] {
                    libc::close(fd);
                }
            }
            black_box(status);
            elapsed
        })
    });
    group.finish();
}

/// A pipe: (write end, read end).
fn pipe() -> (libc::c_int, libc::c_int) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe writes.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe failed");
    (fds[1], fds[0])
}

criterion_group!(benches, yield_now, ping_pong);
criterion_main!(benches);
