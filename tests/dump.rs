//! Fiber dumps (`Runtime::dump`) on a real runtime: parked fibers are listed
//! with names, spawn locations and backtraces of their own stacks; an
//! unpark racing a dump is not lost; fibers finishing during a dump do not
//! upset it; a dump of 10,000 parked fibers completes.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use common::within;
use spindle::fiber::{Builder, FiberDump, FiberState, NotCaptured, StackTrace};

/// Dumps until `done` says the dump shows what the test waits for (the
/// fibers have parked); fails after a generous minute.
fn dump_until(rt: &spindle::Runtime, done: impl Fn(&FiberDump) -> bool) -> FiberDump {
    let start = Instant::now();
    loop {
        let dump = rt.dump();
        if done(&dump) {
            return dump;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the fibers never all parked:\n{dump}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn parked_named<'a>(dump: &'a FiberDump, name: &str) -> Option<&'a spindle::fiber::DumpedFiber> {
    dump.fibers
        .iter()
        .find(|f| f.name.as_deref() == Some(name) && f.state == FiberState::Parked)
}

/// Spawns a named fiber on `rt`; returns its handle and the caller's
/// location, which the fiber's recorded spawn location must equal.
#[track_caller]
fn spawn_named<T: Send + 'static>(
    rt: &spindle::Runtime,
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> (
    spindle::JoinHandle<T>,
    &'static std::panic::Location<'static>,
) {
    let handle = Builder::new().name(name).spawn_on(rt, f).unwrap();
    (handle, std::panic::Location::caller())
}

// Distinct names the backtraces must show; never inlined, so the frames
// are there even at the test profile's opt-level 2 (debug info is on).
// Each does something after its wait: at opt-level 2 a wait in tail
// position becomes a jump, and the frame is gone from the stack.
#[inline(never)]
fn dump_test_sleeps_here() -> u32 {
    spindle::time::sleep(Duration::from_secs(3600));
    std::hint::black_box(1)
}

#[inline(never)]
fn dump_test_receives_here(rx: spindle::sync::mpsc::Receiver<u32>) -> u32 {
    rx.recv().unwrap()
}

#[inline(never)]
fn dump_test_locks_here(mutex: &spindle::sync::Mutex<u32>) -> u32 {
    *mutex.lock().unwrap()
}

#[test]
fn parked_fibers_are_listed_with_names_locations_and_backtraces() {
    let rt = spindle::Builder::new().workers(2).build().unwrap();
    let mutex = Arc::new(spindle::sync::Mutex::new(7));
    let guard_holder = mutex.clone();
    let held = guard_holder.lock().unwrap(); // a plain thread holds it
    let (tx, rx) = spindle::sync::mpsc::channel();
    let for_locker = mutex.clone();

    // Each spawn's location must be the line of the `spawn_named` call
    // here: `#[track_caller]` carries it through `spawn_on` into the fiber.
    let (sleeper, sleeper_at) = spawn_named(&rt, "sleeper", dump_test_sleeps_here);
    let (receiver, receiver_at) = spawn_named(&rt, "receiver", move || dump_test_receives_here(rx));
    let (locker, locker_at) = spawn_named(&rt, "locker", move || dump_test_locks_here(&for_locker));

    let dump = dump_until(&rt, |dump| {
        ["sleeper", "receiver", "locker"]
            .iter()
            .all(|name| parked_named(dump, name).is_some())
    });
    let text = dump.to_string();
    println!("{text}");

    for (name, spawned_at, function) in [
        ("sleeper", sleeper_at, "dump_test_sleeps_here"),
        ("receiver", receiver_at, "dump_test_receives_here"),
        ("locker", locker_at, "dump_test_locks_here"),
    ] {
        let fiber = parked_named(&dump, name).unwrap();
        assert!(
            fiber.spawned_at.file().ends_with("tests/dump.rs"),
            "{name}: {}",
            fiber.spawned_at
        );
        assert_eq!(fiber.spawned_at.line(), spawned_at.line(), "{name}");
        assert_eq!(fiber.spawned_at.file(), spawned_at.file(), "{name}");
        let Some(StackTrace::Captured(backtrace)) = &fiber.backtrace else {
            panic!("{name}: no backtrace: {:?}", fiber.backtrace);
        };
        let full = backtrace.to_string();
        assert!(
            full.contains(function),
            "{name}'s backtrace lacks {function}:\n{full}"
        );
        // The listing keeps the user's frames and drops the dumper's own
        // stack (reached through corosensei's stack link).
        let shown = fiber.backtrace.as_ref().unwrap().to_string();
        assert!(
            shown.contains(function),
            "{name}'s listing lacks {function}:\n{shown}"
        );
        assert!(
            shown.contains("tests/dump.rs"),
            "{name}: no file:line:\n{shown}"
        );
        assert!(
            !shown.contains("spindle::fiber::dump::dump"),
            "{name}'s listing shows the dumper:\n{shown}"
        );
        assert!(
            text.contains(&format!(
                "\"{name}\" [parked], spawned at {}",
                fiber.spawned_at
            )),
            "{text}"
        );
    }

    // The dump did not wake anyone: the receiver and the locker still wait,
    // and each gets what it waits for once.
    assert!(!receiver.is_finished() && !locker.is_finished());
    tx.send(41).unwrap();
    assert_eq!(receiver.join().unwrap(), 41);
    drop(held);
    assert_eq!(locker.join().unwrap(), 7);
    // The sleeper is unwound by shutdown.
    let report = rt.shutdown();
    assert_eq!(report.fibers_cancelled, 1);
    assert!(sleeper.join().unwrap_err().is_cancelled());
}

#[test]
fn running_and_unstarted_fibers_are_listed_without_backtraces() {
    // No hand-offs: a spare worker would start the queued fiber if this
    // thread were descheduled for the hand-off threshold between the spawn
    // and the dump (scheduler/handoff.rs).
    let rt = spindle::Builder::new()
        .workers(1)
        .max_spare_workers(0)
        .build()
        .unwrap();
    let release = Arc::new(AtomicBool::new(false));
    let spinning = Arc::new(AtomicBool::new(false));
    let (flag, started) = (release.clone(), spinning.clone());
    // Holds the only worker, so the next spawn cannot start.
    let spinner = Builder::new()
        .name("spinner")
        .spawn_on(&rt, move || {
            started.store(true, Ordering::Release);
            while !flag.load(Ordering::Acquire) {
                std::hint::spin_loop();
            }
        })
        .unwrap();
    while !spinning.load(Ordering::Acquire) {
        std::thread::yield_now();
    }
    // Queued behind the spinner on the only worker: not started when we
    // dump a moment later.
    let queued = rt.spawn(|| ());
    let dump = rt.dump();
    println!("{dump}");
    let spinner_entry = dump
        .fibers
        .iter()
        .find(|f| f.name.as_deref() == Some("spinner"));
    let spinner_entry = spinner_entry.expect("the running fiber is listed");
    assert_eq!(spinner_entry.state, FiberState::Running);
    assert!(spinner_entry.backtrace.is_none());
    assert_eq!(dump.fibers.len(), 1, "the queued fiber has not started");
    assert_eq!(dump.unstarted, 1, "but it is counted");
    release.store(true, Ordering::Release);
    spinner.join().unwrap();
    queued.join().unwrap();
}

#[test]
fn a_fiber_without_stack_to_spare_is_reported_not_captured() {
    let rt = spindle::Builder::new().workers(2).build().unwrap();
    let (tx, rx) = spindle::sync::mpsc::channel::<()>();
    let small = Builder::new()
        .name("small")
        .stack_size(8 * 1024)
        .spawn_on(&rt, move || rx.recv().is_ok())
        .unwrap();
    let dump = dump_until(&rt, |dump| parked_named(dump, "small").is_some());
    let fiber = parked_named(&dump, "small").unwrap();
    match &fiber.backtrace {
        Some(StackTrace::NotCaptured(NotCaptured::StackLow { left, needed })) => {
            assert!(left < needed && *left < 8 * 1024, "{left} {needed}");
        }
        other => panic!("expected a low-stack report, got {other:?}"),
    }
    assert!(dump.to_string().contains("not captured"), "{dump}");
    tx.send(()).unwrap();
    assert!(small.join().unwrap());
}

/// Pairs of fibers hand a turn back and forth with bare `park`/`unpark`
/// (each unpark is the only one that wakes its partner, so a lost one hangs
/// the pair) while a thread dumps without pause. Both workers are busy.
#[test]
fn an_unpark_racing_a_dump_is_not_lost() {
    let pairs = 16;
    let rounds = 20_000;
    let (dumps, captured, woken) = within(Duration::from_secs(300), move || {
        let rt = Arc::new(spindle::Builder::new().workers(2).build().unwrap());
        let done = Arc::new(AtomicBool::new(false));
        let dumper = {
            let (rt, done) = (rt.clone(), done.clone());
            std::thread::spawn(move || {
                let (mut dumps, mut captured, mut woken) = (0usize, 0usize, 0usize);
                while !done.load(Ordering::Acquire) {
                    let dump = rt.dump();
                    dumps += 1;
                    woken += dump.woken_during_dump;
                    captured += dump
                        .fibers
                        .iter()
                        .filter(|f| matches!(f.backtrace, Some(StackTrace::Captured(_))))
                        .count();
                }
                (dumps, captured, woken)
            })
        };
        let mut handles = Vec::new();
        for _ in 0..pairs {
            // turn[i]: fiber i may go; fibers[i]: its handle, published by it.
            let turn: Arc<[AtomicBool; 2]> =
                Arc::new([AtomicBool::new(true), AtomicBool::new(false)]);
            let fibers: Arc<[OnceLock<spindle::Fiber>; 2]> =
                Arc::new([OnceLock::new(), OnceLock::new()]);
            for me in 0..2 {
                let (turn, fibers) = (turn.clone(), fibers.clone());
                handles.push(rt.spawn(move || {
                    fibers[me].set(spindle::current()).unwrap();
                    let partner = loop {
                        match fibers[1 - me].get() {
                            Some(partner) => break partner.clone(),
                            None => spindle::yield_now(),
                        }
                    };
                    for _ in 0..rounds {
                        while !turn[me].swap(false, Ordering::AcqRel) {
                            spindle::park();
                        }
                        turn[1 - me].store(true, Ordering::Release);
                        partner.unpark();
                    }
                }));
            }
        }
        for handle in handles {
            handle.join().unwrap();
        }
        done.store(true, Ordering::Release);
        dumper.join().unwrap()
    });
    println!("{dumps} dumps took {captured} backtraces; {woken} fibers were unparked while held");
    assert!(dumps > 0);
    // Not a timing assertion: with 32 fibers handing turns on 2 workers,
    // dumps meet parked fibers all the time. Were this 0, the race the test
    // is about would not have been exercised.
    assert!(captured > 0, "no dump ever caught a parked fiber");
}

/// Fibers start and finish all the time while a thread dumps: every dump
/// lists only fibers that were alive, and none crashes.
#[test]
fn fibers_finishing_during_a_dump_do_not_upset_it() {
    let (dumps, listed) = within(Duration::from_secs(300), || {
        let rt = Arc::new(spindle::Builder::new().workers(2).build().unwrap());
        let done = Arc::new(AtomicBool::new(false));
        let dumper = {
            let (rt, done) = (rt.clone(), done.clone());
            std::thread::spawn(move || {
                let (mut dumps, mut listed) = (0usize, 0usize);
                while !done.load(Ordering::Acquire) {
                    let dump = rt.dump();
                    for fiber in &dump.fibers {
                        assert!(fiber.spawned_at.file().ends_with("tests/dump.rs"));
                        if fiber.state != FiberState::Parked {
                            assert!(fiber.backtrace.is_none());
                        }
                    }
                    dumps += 1;
                    listed += dump.fibers.len();
                }
                (dumps, listed)
            })
        };
        let finished = Arc::new(AtomicUsize::new(0));
        let spawners: Vec<_> = (0..2)
            .map(|_| {
                let finished = finished.clone();
                rt.spawn(move || {
                    for round in 0..2_000u64 {
                        let batch: Vec<_> = (0..8u64)
                            .map(|i| {
                                spindle::spawn(move || {
                                    // Some park (a short sleep), some yield,
                                    // some return at once.
                                    match (round + i) % 3 {
                                        0 => spindle::time::sleep(Duration::from_micros(50)),
                                        1 => spindle::yield_now(),
                                        _ => {}
                                    }
                                    i
                                })
                            })
                            .collect();
                        for handle in batch {
                            handle.join().unwrap();
                            finished.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for spawner in spawners {
            spawner.join().unwrap();
        }
        done.store(true, Ordering::Release);
        let result = dumper.join().unwrap();
        assert_eq!(finished.load(Ordering::Relaxed), 2 * 2_000 * 8);
        result
    });
    println!("{dumps} dumps listed {listed} fibers in all");
    assert!(dumps > 0);
}

#[test]
fn a_dump_of_ten_thousand_parked_fibers_completes() {
    let count = 10_000;
    within(Duration::from_secs(300), move || {
        let rt = spindle::Builder::new().workers(2).build().unwrap();
        let release = Arc::new(spindle::sync::Latch::new(1));
        let parked = Arc::new(spindle::sync::Latch::new(count));
        let handles: Vec<_> = (0..count)
            .map(|i| {
                let (release, parked) = (release.clone(), parked.clone());
                rt.spawn(move || {
                    parked.count_down();
                    release.wait();
                    i
                })
            })
            .collect();
        parked.wait();
        let start = Instant::now();
        let dump = dump_until(&rt, |dump| {
            dump.fibers
                .iter()
                .filter(|f| f.state == FiberState::Parked)
                .count()
                >= count
        });
        // Printed, not asserted (the machine is shared).
        println!("dumping {count} parked fibers took {:?}", start.elapsed());
        let captured = dump
            .fibers
            .iter()
            .filter(|f| matches!(f.backtrace, Some(StackTrace::Captured(_))))
            .count();
        assert_eq!(captured, count, "every parked fiber's stack was taken");
        // Symbols for one (resolving all 10,000 would test the symboliser).
        println!("{}", dump.fibers[0]);
        release.count_down();
        let sum: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(sum, count * (count - 1) / 2);
    });
}

#[test]
fn a_dump_from_inside_a_fiber_lists_its_caller_as_running() {
    let rt = spindle::Builder::new().workers(2).build().unwrap();
    let (tx, rx) = spindle::sync::mpsc::channel::<()>();
    let waiter = Builder::new()
        .name("waiter")
        .spawn_on(&rt, move || dump_test_receives_here_unit(rx))
        .unwrap();
    let dump = rt.block_on(|| {
        let start = Instant::now();
        loop {
            let dump = rt.dump();
            if parked_named(&dump, "waiter").is_some() || start.elapsed() > Duration::from_secs(60)
            {
                break dump;
            }
            spindle::time::sleep(Duration::from_millis(1));
        }
    });
    let me = dump
        .fibers
        .iter()
        .find(|f| f.state == FiberState::Running)
        .expect("the dumping fiber");
    assert!(me.spawned_at.file().ends_with("tests/dump.rs"));
    let waiter_entry = parked_named(&dump, "waiter").expect("the waiter parked");
    let shown = waiter_entry.backtrace.as_ref().unwrap().to_string();
    assert!(shown.contains("dump_test_receives_here_unit"), "{shown}");
    tx.send(()).unwrap();
    waiter.join().unwrap();
}

#[inline(never)]
fn dump_test_receives_here_unit(rx: spindle::sync::mpsc::Receiver<()>) {
    rx.recv().unwrap()
}
