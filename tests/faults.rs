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
    // Holds the only worker (the sleep system call itself, which parks
    // nothing even with the interpose feature) until shutdown has begun,
    // so the fiber spawned next is still queued when the worker exits.
    let _holder = rt.spawn(move || {
        holding2.count_down();
        common::raw_sleep(Duration::from_millis(200));
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

// --- Shutdown never aborts, and never spins.

/// CPU time the whole process has used so far.
fn process_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the struct it is given.
    assert_eq!(
        unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut now) },
        0
    );
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// Shuts `rt` down, checking that the process used less CPU than half
/// the wall time it took (a pass that spun would use all of it).
fn shutdown_without_spinning(rt: spindle::Runtime) -> (spindle::ShutdownReport, Duration) {
    let (wall, cpu) = (Instant::now(), process_cpu_time());
    let report = rt.shutdown();
    let (wall, cpu) = (wall.elapsed(), process_cpu_time() - cpu);
    // A shutdown too short to spin for long is not judged: the workers'
    // own exits take what CPU they take.
    assert!(
        wall < Duration::from_millis(50) || cpu < wall / 2,
        "shutdown used {cpu:?} of CPU in {wall:?}: it spun; {report:?}"
    );
    (report, wall)
}

/// Receives in its destructor, with no timeout.
struct ReceiveOnDrop {
    rx: spindle::sync::mpsc::Receiver<u32>,
    got: Arc<std::sync::Mutex<Option<Result<u32, spindle::sync::mpsc::RecvError>>>>,
}

impl Drop for ReceiveOnDrop {
    fn drop(&mut self) {
        let got = self.rx.recv();
        *self.got.lock().unwrap() = Some(got);
    }
}

/// A parked fiber whose destructor waits for a message, with no timeout,
/// while shutdown unwinds it: the wait really parks, and the fiber carries
/// on when the message comes, from a plain thread or from another fiber
/// being unwound.
#[test]
fn untimed_waits_in_destructors_park_until_woken() {
    if !in_child() {
        child_passes("untimed_waits_in_destructors_park_until_woken");
        return;
    }
    let rt = Builder::new().workers(2).build().unwrap();
    let parked = Arc::new(Latch::new(3));
    let never = Arc::new(Latch::new(1));
    // Woken by a plain thread, 100 ms into the shutdown.
    let (from_thread_tx, from_thread_rx) = spindle::sync::mpsc::channel();
    let from_thread = Arc::new(std::sync::Mutex::new(None));
    // Woken by another fiber's unwind, which drops the sender.
    let (from_fiber_tx, from_fiber_rx) = spindle::sync::mpsc::channel::<u32>();
    let from_fiber = Arc::new(std::sync::Mutex::new(None));
    for (rx, got) in [
        (from_thread_rx, from_thread.clone()),
        (from_fiber_rx, from_fiber.clone()),
    ] {
        let (parked, never) = (parked.clone(), never.clone());
        rt.spawn(move || {
            let _waits = ReceiveOnDrop { rx, got };
            parked.count_down();
            never.wait();
        });
    }
    {
        let (parked, never) = (parked.clone(), never.clone());
        rt.spawn(move || {
            let _sender = from_fiber_tx;
            parked.count_down();
            never.wait();
        });
    }
    parked.wait();
    let sender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        from_thread_tx.send(7).unwrap();
    });
    let (report, _) = shutdown_without_spinning(rt);
    sender.join().unwrap();
    assert_eq!(report.unwound, 3, "{report:?}");
    assert!(report.frozen.is_empty(), "{report:?}");
    assert_eq!(*from_thread.lock().unwrap(), Some(Ok(7)));
    assert_eq!(
        *from_fiber.lock().unwrap(),
        Some(Err(spindle::sync::mpsc::RecvError))
    );
}

/// A destructor that waits for a message that never comes: after the
/// grace period the fiber is frozen and reported; shutdown neither spins
/// nor waits forever.
#[test]
fn a_wait_nobody_answers_is_frozen_after_the_grace_period() {
    if !in_child() {
        let stderr = child_passes("a_wait_nobody_answers_is_frozen_after_the_grace_period");
        assert!(stderr.contains("was frozen, not unwound"), "{stderr}");
        return;
    }
    let grace = Duration::from_millis(200);
    let rt = Builder::new()
        .workers(1)
        .shutdown_grace(grace)
        .build()
        .unwrap();
    let parked = Arc::new(Latch::new(2));
    let never = Arc::new(Latch::new(1));
    let (tx, rx) = spindle::sync::mpsc::channel::<u32>();
    let got = Arc::new(std::sync::Mutex::new(None));
    let dropped = Arc::new(AtomicUsize::new(0));
    let waiting = {
        let (parked, never, got, dropped) =
            (parked.clone(), never.clone(), got.clone(), dropped.clone());
        spindle::fiber::Builder::new()
            .name("waits-forever")
            .spawn_on(&rt, move || {
                let _unwound_first = DropCounter(dropped);
                let _waits = ReceiveOnDrop { rx, got };
                parked.count_down();
                never.wait();
            })
            .unwrap()
    };
    let ordinary = {
        let (parked, never) = (parked.clone(), never.clone());
        rt.spawn(move || {
            parked.count_down();
            never.wait();
        })
    };
    parked.wait();
    let (report, took) = shutdown_without_spinning(rt);
    assert!(took >= grace, "{took:?}");
    assert!(took < grace + Duration::from_secs(20), "{took:?}");
    assert_eq!(report.fibers_cancelled, 2, "{report:?}");
    assert_eq!(report.unwound, 1, "{report:?}");
    assert_eq!(report.frozen.len(), 1, "{report:?}");
    let frozen = &report.frozen[0];
    assert_eq!(frozen.name.as_deref(), Some("waits-forever"));
    assert_eq!(frozen.reason, spindle::fiber::FreezeReason::StillWaiting);
    assert_eq!(frozen.id, waiting.fiber().id());
    assert!(got.lock().unwrap().is_none(), "the wait never ended");
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        0,
        "values below the wait were not dropped"
    );
    assert!(waiting.join().unwrap_err().is_cancelled());
    assert!(ordinary.join().unwrap_err().is_cancelled());
    drop(tx);
}

/// Destructors that wait with timeouts while shutdown unwinds them: each
/// wait times out at once (no timer runs at shutdown), however long its
/// timeout. The grace period is an hour: a wait that parked instead would
/// hold shutdown up until the child is killed as hung.
#[test]
fn timed_waits_in_destructors_time_out_at_once() {
    if !in_child() {
        child_passes("timed_waits_in_destructors_time_out_at_once");
        return;
    }
    const HOUR: Duration = Duration::from_secs(3600);
    type Outcomes = Arc<std::sync::Mutex<Vec<&'static str>>>;
    struct TimedWaits {
        rx: spindle::sync::mpsc::Receiver<u32>,
        rendezvous: spindle::sync::mpsc::SyncSender<u32>,
        oneshot: spindle::sync::oneshot::Receiver<u32>,
        slow: Option<spindle::JoinHandle<()>>,
        outcomes: Outcomes,
    }
    impl Drop for TimedWaits {
        fn drop(&mut self) {
            let mut outcomes = Vec::new();
            spindle::time::sleep(HOUR);
            outcomes.push("slept");
            spindle::time::park_timeout(HOUR);
            outcomes.push("parked");
            if self.rx.recv_timeout(HOUR) == Err(spindle::sync::mpsc::RecvTimeoutError::Timeout) {
                outcomes.push("recv timed out");
            }
            if let Err(spindle::sync::mpsc::SendTimeoutError::Timeout(_)) =
                self.rendezvous.send_timeout(1, HOUR)
            {
                outcomes.push("send timed out");
            }
            if self.oneshot.recv_timeout(HOUR)
                == Err(spindle::sync::mpsc::RecvTimeoutError::Timeout)
            {
                outcomes.push("oneshot timed out");
            }
            // Timed out, or the other fiber was unwound first.
            let slow = self.slow.take().unwrap();
            match slow.join_timeout(HOUR) {
                Err(_) => outcomes.push("join returned"),
                Ok(Err(error)) if error.is_cancelled() => outcomes.push("join returned"),
                Ok(_) => {}
            }
            *self.outcomes.lock().unwrap() = outcomes;
        }
    }
    let rt = Builder::new()
        .workers(2)
        .shutdown_grace(HOUR)
        .build()
        .unwrap();
    let parked = Arc::new(Latch::new(2));
    let never = Arc::new(Latch::new(1));
    let (_tx, rx) = spindle::sync::mpsc::channel::<u32>();
    let (rendezvous, _receiver) = spindle::sync::mpsc::sync_channel::<u32>(0);
    let (_sender, oneshot) = spindle::sync::oneshot::oneshot::<u32>();
    let outcomes: Outcomes = Arc::default();
    let slow = {
        let (parked, never) = (parked.clone(), never.clone());
        rt.spawn(move || {
            parked.count_down();
            never.wait();
        })
    };
    {
        let (parked, never, outcomes) = (parked.clone(), never.clone(), outcomes.clone());
        rt.spawn(move || {
            let _waits = TimedWaits {
                rx,
                rendezvous,
                oneshot,
                slow: Some(slow),
                outcomes,
            };
            parked.count_down();
            never.wait();
        });
    }
    parked.wait();
    let (report, took) = shutdown_without_spinning(rt);
    assert!(took < Duration::from_secs(20), "{took:?}");
    assert_eq!(report.unwound, 2, "{report:?}");
    assert!(report.frozen.is_empty(), "{report:?}");
    assert_eq!(
        *outcomes.lock().unwrap(),
        [
            "slept",
            "parked",
            "recv timed out",
            "send timed out",
            "oneshot timed out",
            "join returned"
        ]
    );
}

/// Descends in frames of a known size until `depth` bytes below `top`,
/// then parks until `release` opens; records the depth it parked at.
#[inline(never)]
fn descend(top: usize, depth: usize, parked: &Latch, release: &Latch, at: &AtomicUsize) {
    let pad = std::hint::black_box([0u8; 256]);
    let here = std::ptr::addr_of!(pad) as usize;
    if top - here >= depth {
        at.store(top - here, Ordering::SeqCst);
        parked.count_down();
        release.wait();
    } else {
        descend(top, depth, parked, release, at);
    }
    std::hint::black_box(&pad);
}

/// Spawns a fiber named `name` with a 64 KiB stack that descends `depth`
/// bytes and parks there; returns its handle and the depth it parked at.
fn park_deep(
    rt: &spindle::Runtime,
    name: &str,
    depth: usize,
    release: &Arc<Latch>,
) -> (spindle::JoinHandle<()>, usize) {
    let parked = Arc::new(Latch::new(1));
    let at = Arc::new(AtomicUsize::new(0));
    let (parked2, release, at2) = (parked.clone(), release.clone(), at.clone());
    let handle = spindle::fiber::Builder::new()
        .name(name)
        .stack_size(64 * 1024)
        .spawn_on(rt, move || {
            let top = 0u8;
            let top = std::ptr::addr_of!(top) as usize;
            descend(top, depth, &parked2, &release, &at2);
        })
        .unwrap();
    parked.wait();
    (handle, at.load(Ordering::SeqCst))
}

/// The stack a dump says the fiber named `name` has left at its park.
fn stack_left_at_park(rt: &spindle::Runtime, name: &str) -> usize {
    let fiber = loop {
        let dump = rt.dump();
        let fiber = dump
            .fibers
            .into_iter()
            .find(|f| f.name.as_deref() == Some(name))
            .expect("the fiber is in the dump");
        if fiber.state == spindle::fiber::FiberState::Parked {
            break fiber;
        }
        std::thread::yield_now();
    };
    match fiber.backtrace {
        Some(spindle::fiber::StackTrace::NotCaptured(spindle::fiber::NotCaptured::StackLow {
            left,
            ..
        })) => left,
        ref other => panic!("{name} has more stack left than expected: {other:?}"),
    }
}

/// A fiber parked with little stack left would overflow its guard page
/// while the cancellation unwind runs (the unwinder itself needs a few
/// KiB); it is frozen and reported instead, and the process lives on.
#[test]
fn a_fiber_parked_with_too_little_stack_is_frozen_not_unwound() {
    if !in_child() {
        let stderr = child_passes("a_fiber_parked_with_too_little_stack_is_frozen_not_unwound");
        assert!(!stderr.contains("overflowed its stack"), "{stderr}");
        return;
    }
    let rt = Builder::new().workers(1).build().unwrap();
    // Calibrate: how much a fiber that parks this deep has left, as a dump
    // measures it (its figure is the one the cancellation uses).
    let release_probe = Arc::new(Latch::new(1));
    let (probe, probe_depth) = park_deep(&rt, "probe", 50 * 1024, &release_probe);
    let reach = stack_left_at_park(&rt, "probe") + probe_depth;
    release_probe.count_down();
    probe.join().unwrap();
    // Park one with about 2.5 KiB left.
    let release = Arc::new(Latch::new(1));
    let (deep, _) = park_deep(&rt, "deep", reach - 2560, &release);
    let left = stack_left_at_park(&rt, "deep");
    assert!((1024..4096).contains(&left), "{left} bytes left");
    // And one with plenty, unwound as usual.
    let dropped = Arc::new(AtomicUsize::new(0));
    let shallow = {
        let (dropped, release) = (dropped.clone(), release.clone());
        let parked = Arc::new(Latch::new(1));
        let parked2 = parked.clone();
        let handle = rt.spawn(move || {
            let _counted = DropCounter(dropped);
            parked2.count_down();
            release.wait();
        });
        parked.wait();
        handle
    };
    let report = rt.shutdown();
    assert_eq!(report.unwound, 1, "{report:?}");
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
    assert_eq!(report.frozen.len(), 1, "{report:?}");
    assert_eq!(report.frozen[0].name.as_deref(), Some("deep"));
    match report.frozen[0].reason {
        spindle::fiber::FreezeReason::StackLow { left, needed } => {
            assert!(left < needed, "{left} {needed}");
            assert_eq!(needed, spindle::fiber::UNWIND_STACK_NEEDED);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(report.stacks.in_use, 1, "the frozen fiber keeps its stack");
    assert!(deep.join().unwrap_err().is_cancelled());
    assert!(shallow.join().unwrap_err().is_cancelled());
    // The process carries on.
    let rt = Builder::new().workers(1).build().unwrap();
    assert_eq!(rt.block_on(|| 5), 5);
}

/// Destructors that panic while shutdown unwinds their fibers: Rust aborts
/// the process there ("panic in a destructor during cleanup"); the
/// runtime's panic hook freezes each such fiber instead, and the pass goes
/// on (on a fresh thread) with the rest.
#[test]
fn a_destructor_panicking_during_the_unwind_freezes_its_fiber() {
    if !in_child() {
        let stderr = child_passes("a_destructor_panicking_during_the_unwind_freezes_its_fiber");
        assert!(stderr.contains("a Bomb went off"), "{stderr}");
        assert!(
            stderr.contains("a destructor panicked while it was unwound"),
            "{stderr}"
        );
        assert!(!stderr.contains("aborting"), "{stderr}");
        return;
    }
    let rt = Builder::new().workers(2).build().unwrap();
    let parked = Arc::new(Latch::new(4));
    let never = Arc::new(Latch::new(1));
    let dropped = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for bomb in [true, false, true, false] {
        let (parked, never, dropped) = (parked.clone(), never.clone(), dropped.clone());
        handles.push(rt.spawn(move || {
            let _counted = DropCounter(dropped);
            let _bomb = bomb.then(|| Bomb);
            parked.count_down();
            never.wait();
        }));
    }
    parked.wait();
    let report = rt.shutdown();
    assert_eq!(report.fibers_cancelled, 4, "{report:?}");
    assert_eq!(report.unwound, 2, "{report:?}");
    assert_eq!(report.frozen.len(), 2, "{report:?}");
    for frozen in &report.frozen {
        assert_eq!(
            frozen.reason,
            spindle::fiber::FreezeReason::DestructorPanicked
        );
    }
    // The unwound fibers' counters; the frozen ones' never ran.
    assert_eq!(dropped.load(Ordering::SeqCst), 2);
    for handle in handles {
        assert!(handle.join().unwrap_err().is_cancelled());
    }
    // Another runtime works, panics in its fibers included.
    let rt = Builder::new().workers(1).build().unwrap();
    let panicked = rt.spawn(|| panic!("an ordinary panic")).join();
    assert!(panicked.unwrap_err().is_panic());
    drop(rt);
    // The frozen fibers hold std's panic-hook lock, which the test harness
    // takes as it ends (`ShutdownReport` documents it): leave first.
    std::process::exit(0);
}

// --- Out of stack memory.

/// Under an address-space limit that leaves room for no second stack
/// reservation: fibers that cannot get a stack never run, and each is
/// counted, reported and its joiner told; spawns are refused once no stack
/// is free, and admitted again once fibers finish.
#[test]
fn running_out_of_stack_memory_is_reported_at_spawn() {
    if !in_child() {
        let stderr = child_passes("running_out_of_stack_memory_is_reported_at_spawn");
        assert!(
            stderr.contains("never ran: no stack could be had"),
            "{stderr}"
        );
        return;
    }
    // 1 MiB stacks: about a thousand fill a reservation.
    let rt = Builder::new()
        .workers(2)
        .max_spare_workers(0)
        .stack_size(1 << 20)
        .build()
        .unwrap();
    // The first reservation is mapped now; allow a quarter GiB more, so no
    // second one fits.
    assert_eq!(rt.block_on(|| 1), 1);
    let limit = (common::status_field("VmSize:") + (256 << 20)) as libc::rlim_t;
    let lowered = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit,
    };
    // SAFETY: setrlimit reads a plain struct.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &lowered) }, 0);
    let release = Arc::new(Latch::new(1));
    let mut held = Vec::new();
    let refused = loop {
        let release = release.clone();
        match rt.try_spawn(move || release.wait()) {
            Ok(handle) => held.push(handle),
            Err(error) => break error,
        }
        assert!(held.len() < 100_000, "spawns were never refused");
    };
    match &refused {
        spindle::SpawnError::OutOfStacks { .. } => {}
        other => panic!("{other}"),
    }
    assert!(
        refused.to_string().contains("no stack can be had"),
        "{refused}"
    );
    // Refused while every stack is in use.
    assert!(rt.try_spawn(|| ()).is_err());
    release.count_down();
    let mut never_ran = 0;
    for handle in held {
        if let Err(error) = handle.join() {
            assert!(
                error
                    .to_string()
                    .contains("never ran: no stack could be had"),
                "{error}"
            );
            never_ran += 1;
        }
    }
    assert!(never_ran >= 1, "some fibers found no stack");
    assert_eq!(rt.metrics().fibers_without_stack, never_ran);
    // Stacks are free again: spawning works.
    assert_eq!(rt.spawn(|| 3).join().unwrap(), 3);
}
