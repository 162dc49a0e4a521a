//! Fault paths: user code that panics where the runtime runs it outside a
//! fiber's function, shutdown with fibers that cannot be unwound normally,
//! waits inside destructors during shutdown, knobs out of range, and
//! running out of stack memory.
//!
//! Cases whose failure is an abort or a hang run in a child process (this
//! binary run again for one test, with an environment variable set), under
//! a time limit, so that a hang fails the test instead of stalling the run.

mod common;

use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use spindle::sync::Latch;
use spindle::Builder;

/// How long a child process may run before it counts as hung.
const CHILD_LIMIT: Duration = Duration::from_secs(60);

/// Set in the child process, which then runs the test's body.
const CHILD: &str = "SPINDLE_FAULTS_CHILD";

/// Runs the test `test_name` again in a child process with [`CHILD`] set,
/// killing it if it runs past [`CHILD_LIMIT`]. Returns its output.
fn run_child(test_name: &str) -> Output {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > CHILD_LIMIT {
            child.kill().unwrap();
            let output = child.wait_with_output().unwrap();
            panic!(
                "{test_name} hung (killed after {CHILD_LIMIT:?}); stderr:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

/// Whether this process is the child of [`run_child`].
fn in_child() -> bool {
    std::env::var_os(CHILD).is_some()
}

/// Runs `test_name` in a child and checks that it passed; returns its
/// stderr.
fn child_passes(test_name: &str) -> String {
    let output = run_child(test_name);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "{test_name} failed in its child process ({}); stderr:\n{stderr}",
        output.status
    );
    stderr
}

/// Panics when dropped.
struct Bomb;

impl Drop for Bomb {
    fn drop(&mut self) {
        panic!("a Bomb went off");
    }
}

// --- A worker never dies.

/// The result of a fiber whose handle is gone is dropped by the runtime;
/// its destructor panics. The one worker must survive it.
#[test]
fn a_panicking_result_drop_does_not_kill_the_worker() {
    if !in_child() {
        let stderr = child_passes("a_panicking_result_drop_does_not_kill_the_worker");
        assert!(stderr.contains("a Bomb went off"), "{stderr}");
        assert!(
            stderr.contains("the drop of its result (its JoinHandle was dropped) panicked"),
            "{stderr}"
        );
        return;
    }
    let rt = Builder::new().workers(1).build().unwrap();
    let gate = Arc::new(Latch::new(1));
    let gate2 = gate.clone();
    // The fiber finishes after its handle is gone, so the result is the
    // runtime's to drop.
    drop(rt.spawn(move || {
        gate2.wait();
        Bomb
    }));
    gate.count_down();
    assert_eq!(rt.block_on(|| 1), 1, "the worker still runs fibers");
    while rt.metrics().caught_panics == 0 {
        std::thread::yield_now();
    }
    assert_eq!(rt.metrics().caught_panics, 1);
}

/// A fiber-local value whose destructor panics: the fiber's result stands,
/// and the panic is reported and counted.
#[test]
fn a_panicking_fiber_local_destructor_is_reported() {
    if !in_child() {
        let stderr = child_passes("a_panicking_fiber_local_destructor_is_reported");
        assert!(
            stderr.contains("the destructor of a fiber-local value panicked"),
            "{stderr}"
        );
        assert!(stderr.contains("(\"with-a-bomb\")"), "{stderr}");
        return;
    }
    spindle::fiber_local! {
        static HELD: std::cell::RefCell<Option<Bomb>> = std::cell::RefCell::new(None);
    }
    let rt = Builder::new().workers(1).build().unwrap();
    let handle = spindle::fiber::Builder::new()
        .name("with-a-bomb")
        .spawn_on(&rt, || {
            HELD.with(|held| *held.borrow_mut() = Some(Bomb));
            7
        })
        .unwrap();
    assert_eq!(handle.join().unwrap(), 7);
    assert_eq!(rt.block_on(|| 1), 1);
    assert_eq!(rt.metrics().caught_panics, 1);
}

/// A fiber that never runs (the runtime shut down first) has its closure
/// dropped by the runtime; that drop panics.
#[test]
fn a_panicking_closure_drop_of_a_fiber_that_never_ran_is_caught() {
    if !in_child() {
        let stderr = child_passes("a_panicking_closure_drop_of_a_fiber_that_never_ran_is_caught");
        assert!(
            stderr.contains("the drop of its closure (it never ran) panicked"),
            "{stderr}"
        );
        return;
    }
    let rt = Builder::new()
        .workers(1)
        .max_spare_workers(0)
        .build()
        .unwrap();
    let holding = Arc::new(Latch::new(1));
    let holding2 = holding.clone();
    // Holds the only worker (a raw sleep) until shutdown has begun, so the
    // fiber spawned next is still queued when the worker exits.
    let _holder = rt.spawn(move || {
        holding2.count_down();
        std::thread::sleep(Duration::from_millis(200));
    });
    holding.wait();
    let bomb = Bomb;
    let never = rt.spawn(move || drop(bomb));
    let report = rt.shutdown();
    assert_eq!(report.fibers_cancelled, 1, "{report:?}");
    assert!(never.join().unwrap_err().is_cancelled());
}

/// Counts its drops.
struct DropCounter(Arc<AtomicUsize>);

impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn detached_results_are_dropped_once() {
    let rt = Builder::new().workers(2).build().unwrap();
    let dropped = Arc::new(AtomicUsize::new(0));
    for i in 0..1000 {
        let dropped = dropped.clone();
        let handle = rt.spawn(move || DropCounter(dropped));
        // Some handles go before the fiber completes, some after.
        if i % 2 == 0 {
            drop(handle);
        } else {
            drop(handle.join().unwrap());
        }
    }
    common::within(Duration::from_secs(60), move || {
        while dropped.load(Ordering::SeqCst) < 1000 {
            std::thread::yield_now();
        }
        assert_eq!(dropped.load(Ordering::SeqCst), 1000);
    });
}

// --- Knobs out of range.

/// Each out-of-range setting is an `InvalidInput` error from `build` that
/// names the knob, and a per-fiber stack too large is a `SpawnError`. In a
/// child process: several of these overflowed, divided by zero on a
/// worker or aborted on an allocation.
#[test]
fn knobs_out_of_range_are_errors_not_crashes() {
    if !in_child() {
        child_passes("knobs_out_of_range_are_errors_not_crashes");
        return;
    }
    let refused: Vec<(Builder, &str)> = vec![
        (Builder::new().stack_size(usize::MAX), "stack_size"),
        (Builder::new().stack_size(usize::MAX - 4095), "stack_size"),
        (Builder::new().stack_size(1 << 30), "stack_size"),
        (Builder::new().workers(0), "workers"),
        (Builder::new().workers(usize::MAX), "workers"),
        (
            Builder::new().max_spare_workers(usize::MAX),
            "max_spare_workers",
        ),
        (
            Builder::new().max_spare_workers(1 << 40),
            "max_spare_workers",
        ),
        (Builder::new().max_fibers(0), "max_fibers"),
        (
            Builder::new().max_blocking_threads(0),
            "max_blocking_threads",
        ),
        (
            Builder::new().handoff_running_after(Duration::MAX),
            "handoff_running_after",
        ),
        (Builder::new().thread_name("nul\0byte"), "thread_name"),
    ];
    for (builder, knob) in refused {
        let error = builder.build().expect_err(knob);
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput, "{error}");
        let message = error.to_string();
        assert!(message.contains(&format!("Builder::{knob}(")), "{message}");
    }
    // The largest stack is accepted and runs.
    let largest = (1 << 30) - 4096;
    let rt = Builder::new()
        .workers(1)
        .stack_size(largest)
        .build()
        .unwrap();
    assert_eq!(rt.block_on(|| 1), 1);
    // A fiber's own size is checked at spawn.
    for requested in [usize::MAX, usize::MAX - 4095, largest + 1] {
        let error = spindle::fiber::Builder::new()
            .stack_size(requested)
            .spawn_on(&rt, || ())
            .unwrap_err();
        match error {
            spindle::SpawnError::StackSize {
                requested: got,
                largest: most,
            } => assert_eq!((got, most), (requested, largest)),
            other => panic!("{other}"),
        }
    }
    // A refused spawn holds no place (else this waits until the child is
    // killed as hung).
    while rt.live_fibers() != 0 {
        std::thread::yield_now();
    }
    let ran = spindle::fiber::Builder::new()
        .stack_size(largest)
        .spawn_on(&rt, || 2)
        .unwrap();
    assert_eq!(ran.join().unwrap(), 2);
}
