//! Pieces shared by the benches (and `examples/compare.rs`, which includes
//! this file): the ping-pongs by park/unpark between fibers and by
//! `Mutex` + `Condvar` between threads, over a fiber channel and a std
//! channel, and over pipes between processes.

#![allow(dead_code)] // each bench uses some of these

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// `iters` round trips of one byte between this process and a forked child
/// over a pair of pipes; returns the time they took.
pub fn pipe_round_trips(iters: u64) -> Duration {
    let (to_child, from_parent) = pipe();
    let (to_parent, from_child) = pipe();
    // SAFETY: the child runs only read/write/_exit (async-signal-safe) on
    // descriptors it owns, so forking a threaded process is sound.
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
}

/// A pipe: (write end, read end).
fn pipe() -> (libc::c_int, libc::c_int) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe writes.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe failed");
    (fds[1], fds[0])
}

/// `iters` round trips of a message between two fibers over a pair of
/// spindle channels, timed inside the runtime; returns the time they took.
pub fn fiber_channel_round_trips(rt: &spindle::Runtime, iters: u64) -> Duration {
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
}

/// The same between two threads over a pair of `std::sync::mpsc` channels.
pub fn thread_channel_round_trips(iters: u64) -> Duration {
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
}

/// `iters` park/unpark round trips between two fibers, timed inside the
/// runtime: each side waits for its turn with `park` and passes it with
/// `unpark` (turn even: ping's, odd: pong's).
pub fn fiber_park_unpark_round_trips(rt: &spindle::Runtime, iters: u64) -> Duration {
    rt.block_on(|| {
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
}

/// The same between two threads, passing the turn under a `Mutex` with a
/// `Condvar`.
pub fn thread_condvar_round_trips(iters: u64) -> Duration {
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
}
