//! Pieces shared by the benches: the ping-pongs over a fiber channel, a
//! std channel between threads, and pipes between processes.

#![allow(dead_code)] // each bench uses some of these

use std::hint::black_box;
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
