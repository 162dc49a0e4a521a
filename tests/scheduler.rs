//! The scheduler with real worker threads: spawn/join, nesting, joins across
//! the fiber/thread boundary, panics, work stealing, park/unpark stress and
//! shutdown.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::within;
use spindle::sync::Latch;
use spindle::{Builder, Runtime};

const HANG: Duration = Duration::from_secs(300);

fn runtime(workers: usize) -> Runtime {
    Builder::new().workers(workers).build().unwrap()
}

#[test]
fn spawn_join_returns_values() {
    let rt = runtime(2);
    let results = rt.block_on(|| {
        let handles: Vec<_> = (0..1000u64)
            .map(|i| spindle::spawn(move || i * 3))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    });
    assert_eq!(results, (0..1000u64).map(|i| i * 3).collect::<Vec<_>>());
}

#[test]
fn nested_spawns_form_a_tree() {
    fn tree(depth: u32) -> u64 {
        if depth == 0 {
            return 1;
        }
        let left = spindle::spawn(move || tree(depth - 1));
        let right = spindle::spawn(move || tree(depth - 1));
        left.join().unwrap() + right.join().unwrap()
    }
    let rt = runtime(2);
    assert_eq!(within(HANG, move || rt.block_on(|| tree(12))), 4096);
}

#[test]
fn join_from_threads_and_fibers() {
    let rt = Arc::new(runtime(2));
    // A thread joins a fiber it spawned.
    assert_eq!(
        rt.spawn(|| "from a thread").join().unwrap(),
        "from a thread"
    );
    // A fiber joins a fiber a thread spawned.
    let handle = rt.spawn(|| {
        std::thread::sleep(Duration::from_millis(5));
        7
    });
    assert_eq!(rt.block_on(move || handle.join().unwrap()), 7);
    // Many threads join fibers at once.
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let rt = rt.clone();
            std::thread::spawn(move || {
                (0..200)
                    .map(|i| rt.spawn(move || t * 1000 + i).join().unwrap())
                    .sum::<i32>()
            })
        })
        .collect();
    let sum: i32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(
        sum,
        (0..8)
            .map(|t| (0..200).map(|i| t * 1000 + i).sum::<i32>())
            .sum()
    );
}

#[test]
fn block_on_borrows_from_the_caller() {
    let rt = runtime(2);
    let mut words = vec![String::from("a"), String::from("bc")];
    let total = rt.block_on(|| {
        words.push(String::from("def"));
        words.iter().map(String::len).sum::<usize>()
    });
    assert_eq!(total, 6);
    assert_eq!(words.len(), 3);
}

#[test]
fn panics_reach_the_joiner_and_workers_survive() {
    let rt = runtime(2);
    let previous_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {})); // keep the output readable
    let outcome = rt.block_on(|| {
        let handles: Vec<_> = (0..200)
            .map(|i| {
                spindle::spawn(move || {
                    if i % 2 == 0 {
                        panic!("fiber {i} fails");
                    }
                    i
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join()).collect::<Vec<_>>()
    });
    std::panic::set_hook(previous_hook);
    for (i, result) in outcome.into_iter().enumerate() {
        if i % 2 == 0 {
            let error = result.unwrap_err();
            assert!(error.is_panic());
            assert_eq!(
                error.to_string(),
                format!("fiber panicked: fiber {i} fails")
            );
            assert_eq!(
                *error.into_panic().downcast::<String>().unwrap(),
                format!("fiber {i} fails")
            );
        } else {
            assert_eq!(result.unwrap(), i);
        }
    }
    // Both workers still run fibers. (A spare worker may run some too:
    // see `fibers_spawned_on_one_worker_run_on_every_worker`.)
    let mut names = fibers_ran_on(&rt, 400);
    names.remove("spindle-worker-spare");
    assert_eq!(
        names,
        HashSet::from(["spindle-worker-0".to_owned(), "spindle-worker-1".to_owned()]),
        "both workers survived"
    );
    // block_on resumes a panic on the caller.
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(|| panic!("in block_on"))
    }));
    assert_eq!(
        *caught.unwrap_err().downcast::<&str>().unwrap(),
        "in block_on"
    );
}

/// Spawns `count` fibers from inside one fiber (so onto one worker), each
/// busy for a while, and returns the names of the threads that ran them.
fn fibers_ran_on(rt: &Runtime, count: usize) -> HashSet<String> {
    let names = Arc::new(Mutex::new(HashSet::new()));
    let seen = names.clone();
    rt.block_on(move || {
        let handles: Vec<_> = (0..count)
            .map(|_| {
                let seen = seen.clone();
                spindle::spawn(move || {
                    // Busy for ~100 µs so the spawning worker cannot run
                    // them all before the other one steals some.
                    let start = std::time::Instant::now();
                    while start.elapsed() < Duration::from_micros(100) {
                        std::hint::spin_loop();
                    }
                    let name = std::thread::current().name().unwrap().to_owned();
                    seen.lock().unwrap().insert(name);
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
    });
    let names = names.lock().unwrap().clone();
    names
}

#[test]
fn fibers_spawned_on_one_worker_run_on_every_worker() {
    let rt = runtime(2);
    let mut names = fibers_ran_on(&rt, 2000);
    // The fibers take a std Mutex: on a loaded machine one may block in it
    // long enough for its worker to be handed off (scheduler/handoff.rs),
    // and a spare worker runs some fibers too.
    names.remove("spindle-worker-spare");
    assert_eq!(
        names,
        HashSet::from(["spindle-worker-0".to_owned(), "spindle-worker-1".to_owned()])
    );
}

#[test]
fn unpark_before_park_is_not_lost() {
    let rt = runtime(2);
    rt.block_on(|| {
        spindle::current().unpark();
        spindle::park(); // returns at once: the token was there
        let me = spindle::current();
        let other = spindle::spawn(move || me.unpark());
        other.join().unwrap(); // the unpark happened before we park...
        spindle::park(); // ...and is kept
    });
}

/// Ping-pong between pairs: each side waits for its turn with park, then
/// passes the turn and unparks the other. A lost wake-up hangs a pair; a
/// double run breaks the turn order (the assertion below) or trips the
/// state machine's always-on check.
fn ping_pong_pairs(rt: &Runtime, pairs: usize, rounds: usize) {
    rt.block_on(|| {
        let mut handles = Vec::new();
        for _ in 0..pairs {
            let turn = Arc::new(AtomicUsize::new(0));
            let peers: Arc<Mutex<Option<(spindle::Fiber, spindle::Fiber)>>> = Arc::default();
            let ready = Arc::new(Latch::new(1));
            let side = |parity: usize| {
                let (turn, peers, ready) = (turn.clone(), peers.clone(), ready.clone());
                spindle::spawn(move || {
                    ready.wait(); // fiber-aware: the peers are known after this
                    let other = {
                        let peers = peers.lock().unwrap();
                        let (a, b) = peers.as_ref().unwrap();
                        if parity == 0 {
                            b.clone()
                        } else {
                            a.clone()
                        }
                    };
                    for round in 0..rounds {
                        while turn.load(Ordering::Acquire) != 2 * round + parity {
                            spindle::park();
                        }
                        let seen = turn.swap(2 * round + parity + 1, Ordering::AcqRel);
                        assert_eq!(
                            seen,
                            2 * round + parity,
                            "the turn order broke: a double run"
                        );
                        other.unpark();
                    }
                })
            };
            let (a, b) = (side(0), side(1));
            *peers.lock().unwrap() = Some((a.fiber().clone(), b.fiber().clone()));
            ready.count_down();
            handles.push(a);
            handles.push(b);
        }
        for handle in handles {
            handle.join().unwrap();
        }
    });
}

#[test]
fn park_unpark_stress_a_million_pairs() {
    // 100 pairs x 5,000 rounds x 2 directions = 1,000,000 park/unpark pairs
    // across both workers (the pairs are stolen apart and back).
    let rt = runtime(2);
    within(HANG, move || ping_pong_pairs(&rt, 100, 5_000));
}

#[test]
fn park_unpark_between_fibers_and_threads() {
    // A plain thread and a fiber pass a turn back and forth 20,000 times:
    // the thread parks with std::thread::park (through spindle::park), the
    // fiber with a fiber park.
    let rt = Arc::new(runtime(2));
    within(HANG, move || {
        let this_thread = std::thread::current();
        let turn = Arc::new(AtomicUsize::new(0));
        let fiber_turn = turn.clone();
        let fiber = rt.spawn(move || {
            for round in 0..20_000 {
                while fiber_turn.load(Ordering::Acquire) != 2 * round + 1 {
                    spindle::park();
                }
                fiber_turn.store(2 * round + 2, Ordering::Release);
                this_thread.unpark();
            }
        });
        let fiber_handle = fiber.fiber().clone();
        for round in 0..20_000 {
            while turn.load(Ordering::Acquire) != 2 * round {
                spindle::park(); // a plain thread: std::thread::park
            }
            turn.store(2 * round + 1, Ordering::Release);
            fiber_handle.unpark();
        }
        fiber.join().unwrap();
    });
}

#[test]
fn yield_now_interleaves_fibers_on_one_worker() {
    let rt = runtime(1);
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = log.clone();
    rt.block_on(move || {
        let handles: Vec<_> = (0..3)
            .map(|id| {
                let log = log2.clone();
                spindle::spawn(move || {
                    for step in 0..3 {
                        log.lock().unwrap().push((id, step));
                        spindle::yield_now();
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
    });
    let log = log.lock().unwrap();
    // Every fiber's first step comes before any fiber's last step.
    let first_steps = log.iter().position(|&(_, step)| step == 2).unwrap();
    assert!(first_steps >= 3, "fibers did not interleave: {log:?}");
    assert_eq!(log.len(), 9);
}

/// Spawns past a worker's `SPAWN_BACKLOG` wait in the runtime's global
/// spawn backlog, taken after the injector, so fibers already started
/// (holding a stack) run before more unstarted ones start: a fiber that
/// spawns 20,000 fibers, each of which yields once (`wait_for_child`
/// false) or spawns a child and waits for its message (true), never has
/// more than a few hundred of them started and unfinished at once (the
/// assertion allows fewer than 2,000). With every spawn on the spawner's
/// deque, all 20,000 would start before the first one resumed from its
/// yield; with the new fiber itself sent to the global queue past the
/// backlog (rather than the fiber it displaces from the next slot), every
/// parent would start before its child ran.
fn spawn_backlog_peak(wait_for_child: bool) {
    const FIBERS: usize = 20_000;
    let rt = runtime(1);
    let started = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (started2, peak2) = (started.clone(), peak.clone());
    within(HANG, move || {
        rt.block_on(move || {
            let handles: Vec<_> = (0..FIBERS)
                .map(|_| {
                    let (started, peak) = (started2.clone(), peak2.clone());
                    spindle::spawn(move || {
                        let now = started.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        if wait_for_child {
                            let (tx, rx) = spindle::sync::mpsc::channel();
                            let child = spindle::spawn(move || tx.send(1).unwrap());
                            assert_eq!(rx.recv(), Ok(1));
                            child.join().unwrap();
                        } else {
                            spindle::yield_now();
                        }
                        started.fetch_sub(1, Ordering::SeqCst);
                    })
                })
                .collect();
            for handle in handles {
                handle.join().unwrap();
            }
        });
        let metrics = rt.metrics();
        let to_backlog: u64 = metrics.workers.iter().map(|w| w.spawns_to_backlog).sum();
        assert!(
            to_backlog >= (FIBERS - 1_000) as u64,
            "only {to_backlog} of {FIBERS} spawns went to the backlog"
        );
    });
    assert_eq!(started.load(Ordering::SeqCst), 0);
    let peak = peak.load(Ordering::SeqCst);
    eprintln!("peak started and unfinished: {peak} of {FIBERS}");
    assert!(
        peak < 2_000,
        "{peak} fibers were started and unfinished at once"
    );
}

#[test]
fn a_spawn_backlog_does_not_start_everything_at_once() {
    spawn_backlog_peak(false);
}

#[test]
fn a_spawn_backlog_does_not_hold_up_a_child_its_parent_waits_for() {
    spawn_backlog_peak(true);
}

/// Bursts of spawns from several fibers at once, past every worker's
/// `SPAWN_BACKLOG`, three rounds on one runtime: every fiber runs exactly
/// once and its `JoinHandle` gives back its own result, though its fibers
/// go through the spawn backlog in batches and later rounds run on the
/// records that earlier rounds finished (the record pool keeps a whole
/// burst). Half the fibers park once on a channel on the way, so
/// wake-ups cross workers while the backlog fills; a lost one hangs the
/// test, a double run fails its count.
#[test]
fn bursts_through_the_backlog_run_every_fiber_once_with_its_own_result() {
    const SPAWNERS: usize = 4;
    const EACH: usize = 5_000;
    let rt = runtime(2);
    let runs: Arc<Vec<AtomicUsize>> =
        Arc::new((0..SPAWNERS * EACH).map(|_| AtomicUsize::new(0)).collect());
    let runs2 = runs.clone();
    within(HANG, move || {
        for round in 0..3 {
            let runs = runs2.clone();
            rt.block_on(move || {
                let spawners: Vec<_> = (0..SPAWNERS)
                    .map(|spawner| {
                        let runs = runs.clone();
                        spindle::spawn(move || {
                            let (tx, rx) = spindle::sync::mpsc::channel::<usize>();
                            let handles: Vec<_> = (0..EACH)
                                .map(|i| {
                                    let id = spawner * EACH + i;
                                    let (runs, tx) = (runs.clone(), tx.clone());
                                    spindle::spawn(move || {
                                        runs[id].fetch_add(1, Ordering::SeqCst);
                                        if id % 2 == 0 {
                                            let (reply, wait) =
                                                spindle::sync::mpsc::sync_channel(0);
                                            spindle::spawn(move || reply.send(id).unwrap());
                                            assert_eq!(wait.recv(), Ok(id));
                                        }
                                        tx.send(id).unwrap();
                                        (round, id)
                                    })
                                })
                                .collect();
                            drop(tx);
                            for (i, handle) in handles.into_iter().enumerate() {
                                assert_eq!(handle.join().unwrap(), (round, spawner * EACH + i));
                            }
                            assert_eq!(rx.iter().count(), EACH, "every fiber sent once");
                        })
                    })
                    .collect();
                for spawner in spawners {
                    spawner.join().unwrap();
                }
            });
            for (id, count) in runs2.iter().enumerate() {
                assert_eq!(
                    count.load(Ordering::SeqCst),
                    round + 1,
                    "fiber {id}, round {round}"
                );
            }
        }
        let metrics = rt.metrics();
        let to_backlog: u64 = metrics.workers.iter().map(|w| w.spawns_to_backlog).sum();
        assert!(to_backlog > 0, "no spawn went through the backlog");
    });
    drop(runs);
}

/// Counts its drops.
struct DropCounter(Arc<AtomicUsize>);
impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn shutdown_unwinds_parked_fibers_and_returns_every_stack() {
    let rt = runtime(2);
    let dropped = Arc::new(AtomicUsize::new(0));
    let parked = Arc::new(Latch::new(100));
    let never = Arc::new(Latch::new(1));
    let finished = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for _ in 0..100 {
        let (dropped, parked, never, finished) = (
            dropped.clone(),
            parked.clone(),
            never.clone(),
            finished.clone(),
        );
        handles.push(rt.spawn(move || {
            let _guard = DropCounter(dropped);
            // Park deep in the stack, as real code would.
            fn deep(n: u32, parked: &Latch, never: &Latch) {
                if n == 0 {
                    parked.count_down();
                    never.wait();
                } else {
                    deep(n - 1, parked, never);
                }
            }
            deep(20, &parked, &never);
            finished.store(true, Ordering::SeqCst);
        }));
    }
    parked.wait();
    assert_eq!(rt.stack_stats().in_use, 100);
    let report = rt.shutdown();
    assert_eq!(report.fibers_cancelled, 100);
    assert_eq!(report.workers_joined, 2);
    assert_eq!(report.stacks.in_use, 0, "{:?}", report.stacks);
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        100,
        "every parked fiber's destructors ran"
    );
    assert!(
        !finished.load(Ordering::SeqCst),
        "no fiber ran past its park"
    );
    for handle in handles {
        assert!(handle.join().unwrap_err().is_cancelled());
    }
    // The cancelled fibers were unwound out of `never.wait()`; opening the
    // latch now must not touch anything they left behind.
    never.count_down();
    assert_eq!(never.count(), 0);
}

#[test]
fn spawn_after_shutdown_started_fails_cleanly() {
    let rt = runtime(1);
    let gate = Arc::new(Latch::new(1));
    let gate2 = gate.clone();
    // A fiber that tries to spawn while it is being unwound at shutdown.
    let outcome = Arc::new(Mutex::new(None));
    let outcome2 = outcome.clone();
    rt.spawn(move || {
        struct SpawnOnDrop(Arc<Mutex<Option<bool>>>);
        impl Drop for SpawnOnDrop {
            fn drop(&mut self) {
                *self.0.lock().unwrap() = Some(spindle::try_spawn(|| ()).is_err());
            }
        }
        let _spawner = SpawnOnDrop(outcome2);
        gate2.wait();
    });
    while rt.stack_stats().in_use == 0 {
        std::thread::yield_now();
    }
    let report = rt.shutdown();
    assert_eq!(report.fibers_cancelled, 1);
    assert_eq!(
        *outcome.lock().unwrap(),
        Some(true),
        "try_spawn during shutdown returns an error"
    );
    drop(gate);
}

#[test]
fn max_fibers_limit_is_an_error_not_an_abort() {
    let rt = Builder::new().workers(2).max_fibers(10).build().unwrap();
    let release = Arc::new(Latch::new(1));
    let release2 = release.clone();
    let (spawned, error) = rt.block_on(move || {
        // block_on's own fiber is one of the ten.
        let mut held = Vec::new();
        let error = loop {
            let release = release2.clone();
            match spindle::try_spawn(move || release.wait()) {
                Ok(handle) => held.push(handle),
                Err(error) => break error,
            }
        };
        // Still at the limit: a second try fails the same way.
        assert!(spindle::try_spawn(|| ()).is_err());
        (held, error)
    });
    assert_eq!(spawned.len(), 9);
    let message = error.to_string();
    assert!(
        message.contains("limit of 10 live fibers") && message.contains("max_fibers"),
        "{message}"
    );
    release.count_down();
    for handle in spawned {
        handle.join().unwrap();
    }
    // Capacity is back once fibers finish.
    assert_eq!(rt.spawn(|| 5).join().unwrap(), 5);
}

#[test]
fn block_on_inside_a_fiber_is_refused() {
    let rt = Arc::new(runtime(1));
    let inner = rt.clone();
    let result = rt.spawn(move || inner.block_on(|| 1)).join();
    let message = result.unwrap_err().to_string();
    assert!(
        message.contains("block_on called from inside a fiber"),
        "{message}"
    );
}

#[test]
fn shutdown_in_the_middle_of_traffic_unwinds_everything() {
    // 50 pairs ping-pong without end while 2 threads keep unparking random
    // fibers, then the runtime shuts down: fibers are caught in every state
    // (queued, in next slots, parked with their scheduling reference left
    // inside, running). Every one must be unwound exactly once (destructors
    // counted) and every stack returned.
    for _ in 0..5 {
        let rt = runtime(2);
        let dropped = Arc::new(AtomicUsize::new(0));
        let handles: Arc<Mutex<Vec<spindle::Fiber>>> = Arc::default();
        let mut joins = Vec::new();
        for _ in 0..50 {
            let turn = Arc::new(AtomicUsize::new(0));
            let peers: Arc<Mutex<Option<(spindle::Fiber, spindle::Fiber)>>> = Arc::default();
            let ready = Arc::new(Latch::new(1));
            let side = |parity: usize| {
                let (turn, peers, ready, dropped) =
                    (turn.clone(), peers.clone(), ready.clone(), dropped.clone());
                rt.spawn(move || {
                    let _guard = DropCounter(dropped);
                    ready.wait();
                    let other = {
                        let peers = peers.lock().unwrap();
                        let (a, b) = peers.as_ref().unwrap();
                        if parity == 0 {
                            b.clone()
                        } else {
                            a.clone()
                        }
                    };
                    let mut round = 0;
                    loop {
                        while turn.load(Ordering::Acquire) != 2 * round + parity {
                            spindle::park();
                        }
                        turn.store(2 * round + parity + 1, Ordering::Release);
                        other.unpark();
                        round += 1;
                    }
                })
            };
            let (a, b) = (side(0), side(1));
            *peers.lock().unwrap() = Some((a.fiber().clone(), b.fiber().clone()));
            handles
                .lock()
                .unwrap()
                .extend([a.fiber().clone(), b.fiber().clone()]);
            ready.count_down();
            joins.push(a);
            joins.push(b);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let noise: Vec<_> = (0..2)
            .map(|seed| {
                let (handles, stop) = (handles.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut x = 0x9E37_79B9u64 + seed;
                    while !stop.load(Ordering::Relaxed) {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let fibers = handles.lock().unwrap();
                        fibers[(x % fibers.len() as u64) as usize].unpark();
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(30));
        let report = within(HANG, move || rt.shutdown());
        stop.store(true, Ordering::Relaxed);
        for thread in noise {
            thread.join().unwrap();
        }
        assert_eq!(report.fibers_cancelled, 100);
        assert_eq!(report.stacks.in_use, 0, "{:?}", report.stacks);
        assert_eq!(
            dropped.load(Ordering::SeqCst),
            100,
            "each fiber unwound exactly once"
        );
        for join in joins {
            assert!(join.join().unwrap_err().is_cancelled());
        }
    }
}

#[test]
fn a_fiber_that_never_yields_does_not_trap_the_one_in_its_next_slot() {
    // The spawner puts its child in its worker's next slot, then spins
    // without yielding until the child has run. Only another worker can run
    // the child, and it is asleep; the monitor must notice the stuck worker
    // and wake it to steal the child.
    let rt = runtime(2);
    let ran_on = within(HANG, move || {
        rt.block_on(|| {
            let done = Arc::new(AtomicBool::new(false));
            let flag = done.clone();
            let child = spindle::spawn(move || {
                flag.store(true, Ordering::Release);
                std::thread::current().name().unwrap().to_owned()
            });
            while !done.load(Ordering::Acquire) {
                std::hint::spin_loop(); // never yields
            }
            child.join().unwrap()
        })
    });
    assert!(ran_on.starts_with("spindle-worker-"));
}
