//! The other fiber-aware primitives with real fibers and threads: RwLock
//! (stress with an invariant, writers not starved, poisoning), Semaphore
//! (bounded holders, FIFO grants, timeouts), Barrier (generations, one
//! leader each), OnceCell (one initializer, retry after a panic),
//! fiber_local! (per fiber, across migrations, dropped at the end), and
//! fibers unwound at shutdown while blocked in each of them.

mod common;

use std::cell::Cell;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, TryLockError};
use std::time::{Duration, Instant};

use common::within;
use spindle::sync::{Barrier, Latch, OnceCell, RwLock, Semaphore};
use spindle::Builder;

const HANG: Duration = Duration::from_secs(300);

/// Quiet panics the test provokes on purpose. Serialized: tests run in
/// parallel, and interleaved take/set would leave the quiet hook installed.
fn quietly<T>(f: impl FnOnce() -> T) -> T {
    static HOOK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _serial = HOOK.lock().unwrap_or_else(|e| e.into_inner());
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let value = f();
    std::panic::set_hook(hook);
    value
}

// ---------------------------------------------------------------- RwLock

#[test]
fn rwlock_readers_and_writers_keep_the_invariant_and_writers_get_in() {
    // 200 reader fibers and 20 writer fibers on 2 workers, plus 2 reader
    // threads and 1 writer thread. Writers keep `a == b` but break it for a
    // moment, across a yield; readers check it, sometimes across a yield.
    // The longest wait of any writer is bounded generously (a noisy machine;
    // the point is that a stream of readers cannot shut writers out).
    let rt = Arc::new(Builder::new().workers(2).build().unwrap());
    let lock = Arc::new(RwLock::new((0u64, 0u64)));
    let longest_write_wait = Arc::new(std::sync::Mutex::new(Duration::ZERO));
    const READS: usize = 500;
    const WRITES: usize = 200;
    let write = {
        let (lock, longest) = (lock.clone(), longest_write_wait.clone());
        move |yields: bool| {
            let mut worst = Duration::ZERO;
            for i in 0..WRITES {
                let asked = Instant::now();
                let mut guard = lock.write().unwrap();
                worst = worst.max(asked.elapsed());
                guard.0 += 1;
                if yields && i % 7 == 0 {
                    spindle::yield_now(); // the invariant is broken here
                }
                guard.1 += 1;
            }
            let mut longest = longest.lock().unwrap();
            *longest = longest.max(worst);
        }
    };
    let read = {
        let lock = lock.clone();
        move |yields: bool| {
            for i in 0..READS {
                let guard = lock.read().unwrap();
                assert_eq!(guard.0, guard.1, "a reader saw a write in progress");
                if yields && i % 5 == 0 {
                    spindle::yield_now();
                    assert_eq!(guard.0, guard.1);
                }
            }
        }
    };
    let mut fibers = Vec::new();
    for i in 0..220 {
        if i % 11 == 0 {
            let write = write.clone();
            fibers.push(rt.spawn(move || write(true)));
        } else {
            let read = read.clone();
            fibers.push(rt.spawn(move || read(true)));
        }
    }
    let mut threads = Vec::new();
    for _ in 0..2 {
        let read = read.clone();
        threads.push(std::thread::spawn(move || read(false)));
    }
    threads.push(std::thread::spawn(move || write(false)));
    within(HANG, move || {
        fibers.into_iter().for_each(|f| f.join().unwrap());
        threads.into_iter().for_each(|t| t.join().unwrap());
    });
    let total = (20 * WRITES + WRITES) as u64;
    assert_eq!(*lock.read().unwrap(), (total, total));
    let longest = *longest_write_wait.lock().unwrap();
    assert!(
        longest < Duration::from_secs(30),
        "a writer waited {longest:?}"
    );
}

#[test]
fn rwlock_a_queued_writer_stops_new_readers() {
    // A thread holds a read lock; a fiber queues for writing. From then on
    // a new reader (fiber or thread) must wait behind the writer, and gets
    // in after it.
    let rt = Builder::new().workers(2).build().unwrap();
    let lock = Arc::new(RwLock::new(0u32));
    let held = lock.read().unwrap();
    let writer = {
        let lock = lock.clone();
        rt.spawn(move || *lock.write().unwrap() += 1)
    };
    // try_read fails only once someone is queued (no writer holds it).
    within(HANG, {
        let lock = lock.clone();
        move || {
            while lock.try_read().is_ok() {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    });
    let late_reader = {
        let lock = lock.clone();
        rt.spawn(move || *lock.read().unwrap())
    };
    let late_thread = {
        let lock = lock.clone();
        std::thread::spawn(move || *lock.read().unwrap())
    };
    assert!(matches!(lock.try_read(), Err(TryLockError::WouldBlock)));
    drop(held);
    let (seen_by_fiber, seen_by_thread) = within(HANG, move || {
        writer.join().unwrap();
        (late_reader.join().unwrap(), late_thread.join().unwrap())
    });
    assert_eq!(seen_by_fiber, 1, "the late reader got in before the writer");
    assert_eq!(
        seen_by_thread, 1,
        "the late reader got in before the writer"
    );
}

#[test]
fn rwlock_fiber_and_thread_hand_the_write_lock_back_and_forth() {
    let rt = Builder::new().workers(2).build().unwrap();
    let lock = Arc::new(RwLock::new(Vec::new()));
    let rounds = 200;
    let fiber = {
        let lock = lock.clone();
        rt.spawn(move || {
            for i in 0..rounds {
                let mut guard = lock.write().unwrap();
                guard.push(i * 2);
                spindle::yield_now(); // holding it across a yield
            }
        })
    };
    let thread = {
        let lock = lock.clone();
        std::thread::spawn(move || {
            for i in 0..rounds {
                lock.write().unwrap().push(i * 2 + 1);
                let _ = lock.read().unwrap().len();
            }
        })
    };
    within(HANG, move || {
        fiber.join().unwrap();
        thread.join().unwrap();
    });
    let mut all = lock.read().unwrap().clone();
    all.sort_unstable();
    assert_eq!(all, (0..2 * rounds).collect::<Vec<_>>());
}

#[test]
fn rwlock_try_and_poisoning_follow_std() {
    let rt = Builder::new().workers(1).build().unwrap();
    let lock = Arc::new(RwLock::new(1));
    {
        let read = lock.read().unwrap();
        assert_eq!(*lock.try_read().unwrap(), 1, "readers share");
        assert!(matches!(lock.try_write(), Err(TryLockError::WouldBlock)));
        drop(read);
        let write = lock.try_write().unwrap();
        assert!(matches!(lock.try_read(), Err(TryLockError::WouldBlock)));
        drop(write);
    }
    // A reader that panics does not poison.
    let reader = lock.clone();
    let result = quietly(|| {
        rt.spawn(move || {
            let _guard = reader.read().unwrap();
            panic!("while reading");
        })
        .join()
    });
    assert!(result.unwrap_err().is_panic());
    assert!(!lock.is_poisoned());
    // A writer that panics does.
    let writer = lock.clone();
    let result = quietly(|| {
        rt.spawn(move || {
            let mut guard = writer.write().unwrap();
            *guard = 2;
            panic!("while writing");
        })
        .join()
    });
    assert!(result.unwrap_err().is_panic());
    assert!(lock.is_poisoned());
    assert_eq!(*lock.read().unwrap_err().into_inner(), 2);
    assert_eq!(*lock.write().unwrap_err().into_inner(), 2);
    assert!(matches!(lock.try_read(), Err(TryLockError::Poisoned(_))));
}

// ------------------------------------------------------------- Semaphore

#[test]
fn semaphore_never_has_more_holders_than_permits() {
    // 100 fibers and 4 threads share 3 permits, holding them across yields.
    let rt = Arc::new(Builder::new().workers(2).build().unwrap());
    let semaphore = Arc::new(Semaphore::new(3));
    let holders = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let work = {
        let (semaphore, holders, most) = (semaphore.clone(), holders.clone(), most.clone());
        move |rounds: usize| {
            for _ in 0..rounds {
                let _permit = semaphore.acquire();
                let now = holders.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                spindle::yield_now();
                holders.fetch_sub(1, Ordering::SeqCst);
            }
        }
    };
    let fibers: Vec<_> = (0..100)
        .map(|_| {
            let work = work.clone();
            rt.spawn(move || work(100))
        })
        .collect();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let work = work.clone();
            std::thread::spawn(move || work(500))
        })
        .collect();
    within(HANG, move || {
        fibers.into_iter().for_each(|f| f.join().unwrap());
        threads.into_iter().for_each(|t| t.join().unwrap());
    });
    assert!(
        most.load(Ordering::SeqCst) <= 3,
        "more holders than permits"
    );
    assert_eq!(most.load(Ordering::SeqCst), 3, "the permits were used");
    assert_eq!(semaphore.available_permits(), 3, "every permit came back");
}

#[test]
fn semaphore_grants_in_arrival_order() {
    // One worker, so each spawned fiber has run and queued before the next
    // is spawned (the spawner yields to it). Permits then come one at a
    // time; each holder records itself and keeps its permit.
    let rt = Builder::new().workers(1).build().unwrap();
    let order = rt.block_on(|| {
        let semaphore = Arc::new(Semaphore::new(0));
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let fibers: Vec<_> = (0..20)
            .map(|i| {
                let (semaphore, order) = (semaphore.clone(), order.clone());
                let fiber = spindle::spawn(move || {
                    semaphore.acquire().forget();
                    order.lock().unwrap().push(i);
                });
                for _ in 0..3 {
                    spindle::yield_now();
                }
                fiber
            })
            .collect();
        for served in 1..=20 {
            semaphore.release(1);
            while order.lock().unwrap().len() < served {
                spindle::yield_now();
            }
        }
        fibers.into_iter().for_each(|f| f.join().unwrap());
        let order = order.lock().unwrap().clone();
        order
    });
    assert_eq!(order, (0..20).collect::<Vec<_>>());
}

#[test]
fn semaphore_a_large_request_is_not_overtaken() {
    // 1 permit free; a fiber asks for 2 and queues. A newcomer's try_acquire
    // must fail although 1 permit is free, and a thread asking for 1 waits
    // behind the fiber.
    let rt = Builder::new().workers(2).build().unwrap();
    let semaphore = Arc::new(Semaphore::new(1));
    let big = {
        let semaphore = semaphore.clone();
        rt.spawn(move || semaphore.acquire_many(2).permits())
    };
    within(HANG, {
        let semaphore = semaphore.clone();
        move || {
            while let Some(permit) = semaphore.try_acquire() {
                drop(permit); // not queued yet
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    });
    assert_eq!(semaphore.available_permits(), 1);
    let small_done = Arc::new(AtomicBool::new(false));
    let small = {
        let (semaphore, done) = (semaphore.clone(), small_done.clone());
        std::thread::spawn(move || {
            let permit = semaphore.acquire();
            done.store(true, Ordering::SeqCst);
            permit.permits()
        })
    };
    std::thread::sleep(Duration::from_millis(20));
    assert!(
        !small_done.load(Ordering::SeqCst),
        "the small request overtook"
    );
    semaphore.release(1);
    within(HANG, move || {
        assert_eq!(big.join().unwrap(), 2);
        assert_eq!(small.join().unwrap(), 1);
    });
    assert_eq!(semaphore.available_permits(), 2);
}

#[test]
fn semaphore_acquire_timeout_times_out_and_succeeds() {
    let rt = Builder::new().workers(2).build().unwrap();
    let semaphore = Arc::new(Semaphore::new(0));
    // A fiber and a thread time out; neither takes a permit.
    let fiber = {
        let semaphore = semaphore.clone();
        rt.spawn(move || {
            let start = Instant::now();
            let permit = semaphore.acquire_timeout(Duration::from_millis(20));
            (permit.is_none(), start.elapsed())
        })
    };
    let start = Instant::now();
    assert!(semaphore
        .acquire_timeout(Duration::from_millis(20))
        .is_none());
    assert!(start.elapsed() >= Duration::from_millis(20));
    let (timed_out, waited) = within(HANG, move || fiber.join().unwrap());
    assert!(timed_out);
    assert!(waited >= Duration::from_millis(20));
    assert_eq!(semaphore.available_permits(), 0);
    // A timed wait that a release from a thread satisfies.
    let fiber = {
        let semaphore = semaphore.clone();
        rt.spawn(move || {
            semaphore
                .acquire_timeout(Duration::from_secs(120))
                .map(|p| p.permits())
        })
    };
    std::thread::sleep(Duration::from_millis(5));
    semaphore.release(1);
    assert_eq!(within(HANG, move || fiber.join().unwrap()), Some(1));
    assert_eq!(semaphore.available_permits(), 1);
    // After timeouts, the semaphore still serves in order.
    let permit = semaphore.try_acquire().unwrap();
    assert!(semaphore.try_acquire().is_none());
    drop(permit);
    assert_eq!(semaphore.available_permits(), 1);
}

#[test]
fn semaphore_timeouts_racing_releases_lose_no_permit() {
    // Short timed waits that often expire just as a permit is granted to
    // them (the grant is then kept, or the request withdrawn and the
    // permit passed on): at the end every permit is back, and no more
    // than 2 were ever held at once.
    let rt = Arc::new(Builder::new().workers(2).build().unwrap());
    let semaphore = Arc::new(Semaphore::new(2));
    let holders = Arc::new(AtomicUsize::new(0));
    let got = Arc::new(AtomicUsize::new(0));
    let work = {
        let (semaphore, holders, got) = (semaphore.clone(), holders.clone(), got.clone());
        move |seed: u64| {
            for i in 0..300u64 {
                let wait = Duration::from_micros((seed * 31 + i * 17) % 200);
                if let Some(permit) = semaphore.acquire_timeout(wait) {
                    assert!(holders.fetch_add(1, Ordering::SeqCst) < 2);
                    got.fetch_add(1, Ordering::SeqCst);
                    spindle::yield_now();
                    holders.fetch_sub(1, Ordering::SeqCst);
                    drop(permit);
                }
            }
        }
    };
    let fibers: Vec<_> = (0..50)
        .map(|seed| {
            let work = work.clone();
            rt.spawn(move || work(seed))
        })
        .collect();
    let threads: Vec<_> = (50..52)
        .map(|seed| {
            let work = work.clone();
            std::thread::spawn(move || work(seed))
        })
        .collect();
    within(HANG, move || {
        fibers.into_iter().for_each(|f| f.join().unwrap());
        threads.into_iter().for_each(|t| t.join().unwrap());
    });
    assert!(got.load(Ordering::SeqCst) > 0);
    assert_eq!(semaphore.available_permits(), 2, "a permit was lost");
    let both = semaphore.try_acquire_many(2).expect("nobody is queued");
    assert_eq!(both.permits(), 2);
}

// --------------------------------------------------------------- Barrier

#[test]
fn barrier_generations_have_one_leader_each() {
    // 6 fibers and 2 threads pass a barrier of 8, 100 times. Every party of
    // a generation arrives before any leaves it, and each has one leader.
    const PARTIES: usize = 8;
    const GENERATIONS: usize = 100;
    let rt = Arc::new(Builder::new().workers(2).build().unwrap());
    let barrier = Arc::new(Barrier::new(PARTIES));
    let arrived: Arc<Vec<AtomicUsize>> =
        Arc::new((0..GENERATIONS).map(|_| AtomicUsize::new(0)).collect());
    let leaders: Arc<Vec<AtomicUsize>> =
        Arc::new((0..GENERATIONS).map(|_| AtomicUsize::new(0)).collect());
    let party = {
        let (barrier, arrived, leaders) = (barrier.clone(), arrived.clone(), leaders.clone());
        move || {
            for generation in 0..GENERATIONS {
                arrived[generation].fetch_add(1, Ordering::SeqCst);
                let result = barrier.wait();
                assert_eq!(
                    arrived[generation].load(Ordering::SeqCst),
                    PARTIES,
                    "left generation {generation} before all arrived"
                );
                if result.is_leader() {
                    leaders[generation].fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    };
    let fibers: Vec<_> = (0..6).map(|_| rt.spawn(party.clone())).collect();
    let threads: Vec<_> = (0..2).map(|_| std::thread::spawn(party.clone())).collect();
    within(HANG, move || {
        fibers.into_iter().for_each(|f| f.join().unwrap());
        threads.into_iter().for_each(|t| t.join().unwrap());
    });
    for (generation, leaders) in leaders.iter().enumerate() {
        assert_eq!(leaders.load(Ordering::SeqCst), 1, "generation {generation}");
    }
    // A barrier of 0 or 1 never waits.
    assert!(Barrier::new(0).wait().is_leader());
    assert!(Barrier::new(1).wait().is_leader());
}

// -------------------------------------------------------------- OnceCell

#[test]
fn oncecell_runs_one_initializer_for_a_hundred_racing_fibers() {
    let rt = Builder::new().workers(2).build().unwrap();
    let cell = Arc::new(OnceCell::new());
    let runs = Arc::new(AtomicUsize::new(0));
    let values = {
        let (cell, runs) = (cell.clone(), runs.clone());
        within(HANG, move || {
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    let (cell, runs) = (cell.clone(), runs.clone());
                    std::thread::spawn(move || {
                        *cell.get_or_init(|| {
                            runs.fetch_add(1, Ordering::SeqCst);
                            7u64
                        })
                    })
                })
                .collect();
            let mut values = rt.block_on(|| {
                let fibers: Vec<_> = (0..100)
                    .map(|_| {
                        let (cell, runs) = (cell.clone(), runs.clone());
                        spindle::spawn(move || {
                            *cell.get_or_init(|| {
                                runs.fetch_add(1, Ordering::SeqCst);
                                spindle::time::sleep(Duration::from_millis(10)); // others park
                                7u64
                            })
                        })
                    })
                    .collect();
                fibers
                    .into_iter()
                    .map(|f| f.join().unwrap())
                    .collect::<Vec<_>>()
            });
            values.extend(threads.into_iter().map(|t| t.join().unwrap()));
            values
        })
    };
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "the initializer ran more than once"
    );
    assert!(values.iter().all(|&v| v == 7));
    assert_eq!(values.len(), 104);
    assert_eq!(cell.get(), Some(&7));
    assert_eq!(cell.set(8), Err(8));
}

#[test]
fn oncecell_a_panicking_initializer_leaves_it_empty_for_a_waiter() {
    let rt = Builder::new().workers(2).build().unwrap();
    let cell = Arc::new(OnceCell::new());
    let inside = Arc::new(Latch::new(1));
    let successes = Arc::new(AtomicUsize::new(0));
    let failing = {
        let (cell, inside) = (cell.clone(), inside.clone());
        rt.spawn(move || {
            cell.get_or_init(|| {
                inside.count_down();
                spindle::time::sleep(Duration::from_millis(20)); // let the others queue
                panic!("initializer fails");
            });
        })
    };
    inside.wait();
    let waiters: Vec<_> = (0..10)
        .map(|i| {
            let (cell, successes) = (cell.clone(), successes.clone());
            rt.spawn(move || {
                *cell.get_or_init(|| {
                    successes.fetch_add(1, Ordering::SeqCst);
                    i
                })
            })
        })
        .collect();
    let thread = {
        let (cell, successes) = (cell.clone(), successes.clone());
        std::thread::spawn(move || {
            *cell.get_or_init(|| {
                successes.fetch_add(1, Ordering::SeqCst);
                100
            })
        })
    };
    let (failed, values) = quietly(|| {
        within(HANG, move || {
            let failed = failing.join().unwrap_err().is_panic();
            let mut values: Vec<_> = waiters.into_iter().map(|f| f.join().unwrap()).collect();
            values.push(thread.join().unwrap());
            (failed, values)
        })
    });
    assert!(failed);
    assert_eq!(
        successes.load(Ordering::SeqCst),
        1,
        "exactly one retry succeeded"
    );
    let value = *cell.get().unwrap();
    assert!(values.iter().all(|&v| v == value));
    let mut cell = Arc::into_inner(cell).unwrap();
    assert_eq!(cell.take(), Some(value));
    assert_eq!(cell.get(), None);
    assert_eq!(cell.set(5), Ok(()));
    assert_eq!(cell.into_inner(), Some(5));
}

// ----------------------------------------------------------- fiber_local!

/// Counts drops of fiber-local values.
struct Tracked {
    owner: usize,
    drops: &'static AtomicUsize,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}

static DISTINCT_DROPS: AtomicUsize = AtomicUsize::new(0);

spindle::fiber_local! {
    static OWNER: Cell<usize> = Cell::new(usize::MAX);
    static TRACKED: std::cell::RefCell<Option<Tracked>> = std::cell::RefCell::new(None);
}

#[test]
fn fiber_locals_are_per_fiber_across_migrations_and_dropped_at_the_end() {
    // 100 fibers on 2 workers each store their number, then hold the
    // reference across 200 yields, checking it each time and noting the
    // worker threads they ran on. Every 10th step a fiber also parks until
    // a plain thread hands it a permit: a wake-up from outside goes to the
    // runtime's global queue, from which either worker may take it, so
    // fibers move between workers (yields alone need not move them).
    let rt = Builder::new().workers(2).build().unwrap();
    let threads_seen = Arc::new(std::sync::Mutex::new(HashSet::new()));
    let migrations = Arc::new(AtomicUsize::new(0));
    let ticks = Arc::new(Semaphore::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let pacer = {
        let (ticks, done) = (ticks.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                ticks.release(10);
                std::thread::sleep(Duration::from_micros(200));
            }
        })
    };
    within(HANG, {
        let (threads_seen, migrations) = (threads_seen.clone(), migrations.clone());
        move || {
            rt.block_on(|| {
                let fibers: Vec<_> = (0..100)
                    .map(|i| {
                        let (threads_seen, migrations, ticks) =
                            (threads_seen.clone(), migrations.clone(), ticks.clone());
                        spindle::spawn(move || {
                            assert_eq!(OWNER.with(Cell::get), usize::MAX, "a fresh value");
                            OWNER.with(|owner| owner.set(i));
                            TRACKED.with(|t| {
                                *t.borrow_mut() = Some(Tracked {
                                    owner: i,
                                    drops: &DISTINCT_DROPS,
                                })
                            });
                            let mut last = std::thread::current().id();
                            OWNER.with(|owner| {
                                for step in 0..200 {
                                    if step % 10 == 0 {
                                        ticks.acquire().forget();
                                    } else {
                                        spindle::yield_now();
                                    }
                                    assert_eq!(owner.get(), i, "another fiber's value");
                                    let now = std::thread::current().id();
                                    if now != last {
                                        migrations.fetch_add(1, Ordering::SeqCst);
                                    }
                                    last = now;
                                    threads_seen.lock().unwrap().insert(now);
                                }
                            });
                            TRACKED.with(|t| t.borrow().as_ref().unwrap().owner)
                        })
                    })
                    .collect();
                for (i, fiber) in fibers.into_iter().enumerate() {
                    assert_eq!(fiber.join().unwrap(), i);
                }
            });
        }
    });
    done.store(true, Ordering::SeqCst);
    pacer.join().unwrap();
    // Dropped by each fiber before its joiner saw its result.
    assert_eq!(DISTINCT_DROPS.load(Ordering::SeqCst), 100);
    assert!(
        migrations.load(Ordering::SeqCst) > 0,
        "no fiber moved between workers: the test proved nothing"
    );
    assert_eq!(threads_seen.lock().unwrap().len(), 2);
}

static PANIC_DROPS: AtomicUsize = AtomicUsize::new(0);
static THREAD_DROPS: AtomicUsize = AtomicUsize::new(0);

spindle::fiber_local! {
    static ON_PANIC: std::cell::RefCell<Option<Tracked>> = std::cell::RefCell::new(None);
    static ON_THREAD: std::cell::RefCell<Option<Tracked>> = std::cell::RefCell::new(None);
}

#[test]
fn fiber_locals_of_a_panicking_fiber_and_of_plain_threads_are_dropped() {
    let rt = Builder::new().workers(2).build().unwrap();
    let result = quietly(|| {
        rt.spawn(|| {
            ON_PANIC.with(|t| {
                *t.borrow_mut() = Some(Tracked {
                    owner: 1,
                    drops: &PANIC_DROPS,
                })
            });
            panic!("the fiber fails");
        })
        .join()
    });
    assert!(result.unwrap_err().is_panic());
    assert_eq!(PANIC_DROPS.load(Ordering::SeqCst), 1);
    // Plain threads get a value each, dropped at thread exit.
    let threads: Vec<_> = (0..3)
        .map(|i| {
            std::thread::spawn(move || {
                ON_THREAD.with(|t| {
                    assert!(t.borrow().is_none(), "a fresh value per thread");
                    *t.borrow_mut() = Some(Tracked {
                        owner: i,
                        drops: &THREAD_DROPS,
                    });
                });
                ON_THREAD.with(|t| t.borrow().as_ref().unwrap().owner)
            })
        })
        .collect();
    for (i, thread) in threads.into_iter().enumerate() {
        assert_eq!(thread.join().unwrap(), i);
    }
    assert_eq!(THREAD_DROPS.load(Ordering::SeqCst), 3);
}

// --------------------------------------------------------------- shutdown

static UNWOUND_DROPS: AtomicUsize = AtomicUsize::new(0);

spindle::fiber_local! {
    static UNWOUND: std::cell::RefCell<Option<Tracked>> = std::cell::RefCell::new(None);
}

#[test]
fn fibers_blocked_in_each_primitive_are_unwound_and_threads_carry_on() {
    let rt = Builder::new().workers(2).build().unwrap();
    let rwlock = Arc::new(RwLock::new(0u32));
    let semaphore = Arc::new(Semaphore::new(1));
    let barrier = Arc::new(Barrier::new(3));
    let cell: Arc<OnceCell<u32>> = Arc::new(OnceCell::new());
    let blocked = Arc::new(Latch::new(12));
    let mark = |blocked: &Latch, owner: usize| {
        UNWOUND.with(|t| {
            *t.borrow_mut() = Some(Tracked {
                owner,
                drops: &UNWOUND_DROPS,
            })
        });
        blocked.count_down();
    };

    // RwLock: a thread holds a read lock; a fiber queues to write, and
    // behind it a thread queues to read (it must get in once the writer is
    // unwound) and 2 fibers (one reader, one writer).
    let (release_read, released) = std::sync::mpsc::channel::<()>();
    let read_holder = {
        let lock = rwlock.clone();
        let held = Arc::new(Latch::new(1));
        let held2 = held.clone();
        let thread = std::thread::spawn(move || {
            let _guard = lock.read().unwrap();
            held2.count_down();
            released.recv().unwrap();
        });
        held.wait();
        thread
    };
    {
        let (lock, blocked) = (rwlock.clone(), blocked.clone());
        rt.spawn(move || {
            mark(&blocked, 0);
            *lock.write().unwrap() += 1;
        });
    }
    within(HANG, {
        let lock = rwlock.clone();
        move || {
            while lock.try_read().is_ok() {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    });
    let late_reader = {
        let lock = rwlock.clone();
        std::thread::spawn(move || *lock.read().unwrap())
    };
    for i in 1..3 {
        let (lock, blocked) = (rwlock.clone(), blocked.clone());
        rt.spawn(move || {
            mark(&blocked, i);
            if i == 1 {
                drop(lock.read().unwrap());
            } else {
                *lock.write().unwrap() += 1;
            }
        });
    }

    // Semaphore: 1 permit free, a fiber asks for 2 (queued); a thread asking
    // for 1 queues behind it and must get the permit once the fiber goes.
    {
        let (semaphore, blocked) = (semaphore.clone(), blocked.clone());
        rt.spawn(move || {
            mark(&blocked, 3);
            semaphore.acquire_many(2).forget();
        });
    }
    within(HANG, {
        let semaphore = semaphore.clone();
        move || {
            while let Some(permit) = semaphore.try_acquire() {
                drop(permit);
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    });
    let small = {
        let semaphore = semaphore.clone();
        std::thread::spawn(move || semaphore.acquire().permits())
    };
    for i in 4..6 {
        let (semaphore, blocked) = (semaphore.clone(), blocked.clone());
        rt.spawn(move || {
            mark(&blocked, i);
            let _ = semaphore.acquire_timeout(Duration::from_secs(3600));
        });
    }

    // Barrier of 3: 2 fibers wait (their arrivals are withdrawn when they are
    // unwound).
    for i in 6..8 {
        let (barrier, blocked) = (barrier.clone(), blocked.clone());
        rt.spawn(move || {
            mark(&blocked, i);
            barrier.wait();
        });
    }

    // OnceCell: a fiber initializes and parks forever; 3 fibers wait.
    for i in 8..12 {
        let (cell, blocked) = (cell.clone(), blocked.clone());
        rt.spawn(move || {
            mark(&blocked, i);
            cell.get_or_init(|| loop {
                spindle::park();
            });
        });
    }

    blocked.wait();
    // Give the last fibers time to reach their waits (shutdown unwinds them
    // either way; this only makes the waits the usual place they are in).
    std::thread::sleep(Duration::from_millis(50));
    let report = rt.shutdown();
    assert_eq!(report.fibers_cancelled, 12);
    assert_eq!(
        UNWOUND_DROPS.load(Ordering::SeqCst),
        12,
        "fiber locals dropped"
    );

    within(HANG, move || {
        // The reader queued behind the unwound writer got in.
        assert_eq!(late_reader.join().unwrap(), 0);
        release_read.send(()).unwrap();
        read_holder.join().unwrap();
        *rwlock.write().unwrap() += 1;
        assert_eq!(*rwlock.read().unwrap(), 1);
        assert!(!rwlock.is_poisoned());

        // The thread behind the unwound large request got the free permit.
        assert_eq!(small.join().unwrap(), 1);
        assert_eq!(semaphore.available_permits(), 1);

        // Three threads pass the barrier together, one leading.
        let parties: Vec<_> = (0..3)
            .map(|_| {
                let barrier = barrier.clone();
                std::thread::spawn(move || barrier.wait().is_leader())
            })
            .collect();
        let leaders = parties
            .into_iter()
            .map(|t| t.join().unwrap())
            .filter(|&leader| leader)
            .count();
        assert_eq!(leaders, 1);

        // The cell is empty, and a thread initializes it.
        assert_eq!(cell.get(), None);
        assert_eq!(*cell.get_or_init(|| 9), 9);
    });
}
