//! Structured concurrency: `spindle::scope` and `scope::Builder`. Scoped
//! fibers borrow from the caller; the first panic cancels the siblings and
//! is re-raised; `collect_all` keeps every result; a deadline cancels a
//! whole scope; cancelling a fiber that owns a scope cancels that scope's
//! fibers first (nesting); scopes work from fibers and plain threads.
//! (That a plain spawn cannot borrow is the `compile_fail` example on
//! `spindle::scope`.)

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::within;
use spindle::sync::Latch;

const LIMIT: Duration = Duration::from_secs(120);

/// Long enough that only a cancellation ends it within the test.
const FOREVER: Duration = Duration::from_secs(3600);

/// Counts, as it is dropped, in `dropped`: proof that an unwind ran a
/// fiber's destructors.
struct Witness(Arc<AtomicUsize>);

impl Drop for Witness {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Records, as it is dropped, the count in its first counter into its
/// second: how many fibers had unwound when the scope let its owner's
/// unwind go on.
struct After(Arc<AtomicUsize>, Arc<AtomicUsize>);

impl Drop for After {
    fn drop(&mut self) {
        self.1
            .store(self.0.load(Ordering::SeqCst), Ordering::SeqCst);
    }
}

#[test]
fn fibers_borrow_a_local_vec_mutably_and_the_callers_data() {
    within(LIMIT, || {
        spindle::test::run(|| {
            let mut numbers: Vec<u64> = (0..1000).collect();
            let offset = 7u64; // borrowed by every fiber
            spindle::scope(|s| {
                for chunk in numbers.chunks_mut(100) {
                    s.spawn(|| {
                        for n in chunk.iter_mut() {
                            *n += offset;
                            spindle::yield_now(); // may resume elsewhere
                        }
                    });
                }
            });
            assert_eq!(
                numbers.iter().sum::<u64>(),
                (0..1000).sum::<u64>() + 7 * 1000
            );
        });
    });
}

#[test]
fn results_may_borrow_and_the_closure_value_is_returned() {
    within(LIMIT, || {
        let words = [String::from("alpha"), String::from("beta")];
        let longest = spindle::scope(|s| {
            let handles: Vec<_> = words.iter().map(|w| s.spawn(move || w.as_str())).collect();
            let mut found: Vec<&str> = handles.into_iter().map(|h| h.join().unwrap()).collect();
            found.sort_by_key(|w| std::cmp::Reverse(w.len()));
            found[0]
        });
        assert_eq!(longest, "alpha");
    });
}

#[test]
fn a_scope_on_a_plain_thread_and_on_a_fiber_uses_that_fibers_runtime() {
    within(LIMIT, || {
        // Plain thread: the default runtime.
        let on_fiber = spindle::scope(|s| s.spawn(|| spindle::try_current().is_some()).join());
        assert!(on_fiber.unwrap());
        // A fiber of an explicit runtime: its fibers go there.
        let rt = spindle::Builder::new().workers(2).build().unwrap();
        let before = rt.metrics().spawned_total;
        let sum = rt.block_on(|| {
            let mut parts = [0u32; 5];
            spindle::scope(|s| {
                for (i, part) in parts.iter_mut().enumerate() {
                    s.spawn(move || *part = i as u32);
                }
            });
            parts.iter().sum::<u32>()
        });
        assert_eq!(sum, 10);
        assert_eq!(
            rt.metrics().spawned_total - before,
            6,
            "block_on's and five"
        );
    });
}

#[test]
fn the_first_panic_cancels_the_siblings_and_is_re_raised() {
    within(LIMIT, || {
        let dropped = Arc::new(AtomicUsize::new(0));
        let started = Latch::new(3);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            spindle::scope(|s| {
                let waiting: Vec<_> = (0..3)
                    .map(|_| {
                        let witness = Witness(dropped.clone());
                        let started = &started;
                        s.spawn(move || {
                            let _witness = witness;
                            started.count_down();
                            spindle::time::sleep(FOREVER); // unwinds from here
                        })
                    })
                    .collect();
                started.wait();
                s.spawn(|| std::panic::panic_any(17u32));
                for handle in waiting {
                    assert!(handle.join().unwrap_err().is_cancelled());
                }
                "not reached: the scope re-raises"
            })
        }));
        let payload = outcome.unwrap_err();
        assert_eq!(
            payload.downcast_ref::<u32>(),
            Some(&17),
            "the original payload"
        );
        assert_eq!(dropped.load(Ordering::SeqCst), 3, "the siblings unwound");
    });
}

#[test]
fn a_panic_of_the_closure_cancels_the_fibers_and_is_re_raised() {
    within(LIMIT, || {
        let dropped = Arc::new(AtomicUsize::new(0));
        let started = Latch::new(1);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            spindle::scope(|s| {
                let witness = Witness(dropped.clone());
                let started = &started;
                s.spawn(move || {
                    let _witness = witness;
                    started.count_down();
                    spindle::time::sleep(FOREVER);
                });
                started.wait();
                panic!("the closure gives up");
            })
        }));
        let payload = outcome.unwrap_err();
        assert_eq!(
            payload.downcast_ref::<&str>(),
            Some(&"the closure gives up")
        );
        assert_eq!(dropped.load(Ordering::SeqCst), 1, "waited for, unwound");
    });
}

#[test]
fn collect_all_keeps_every_result_and_cancels_nobody() {
    within(LIMIT, || {
        let gate = Latch::new(1);
        let gate = &gate;
        let results = spindle::scope::Builder::new().collect_all().scope(|s| {
            let failing = s.spawn(|| -> u32 { panic!("one of four") });
            let others: Vec<_> = (0..3)
                .map(|i| {
                    s.spawn(move || {
                        gate.wait(); // still running when the panic happens
                        assert!(!spindle::is_cancelled());
                        i
                    })
                })
                .collect();
            let failed = failing.join().unwrap_err();
            gate.count_down();
            let values: Vec<u32> = others.into_iter().map(|h| h.join().unwrap()).collect();
            (failed.is_panic(), failed.to_string(), values)
        });
        let (is_panic, message, values) = results.unwrap();
        assert!(is_panic && message.contains("one of four"), "{message}");
        assert_eq!(values, [0, 1, 2]);

        // A panic nobody joined fails the scope at its end, as std's does.
        let outcome = catch_unwind(|| {
            spindle::scope::Builder::new().collect_all().scope(|s| {
                s.spawn(|| panic!("unjoined"));
            })
        });
        let payload = outcome.unwrap_err();
        let message = payload.downcast_ref::<String>().unwrap();
        assert!(message.contains("1 scoped fiber(s) panicked"), "{message}");
    });
}

#[test]
fn a_deadline_cancels_the_whole_scope() {
    within(LIMIT, || {
        let dropped = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        let outcome = spindle::scope::Builder::new()
            .timeout(Duration::from_millis(50))
            .scope(|s| {
                for _ in 0..4 {
                    let witness = Witness(dropped.clone());
                    s.spawn(move || {
                        let _witness = witness;
                        spindle::time::sleep(FOREVER);
                    });
                }
                let _witness = Witness(dropped.clone());
                spindle::time::sleep(FOREVER); // the closure is cancelled too
            });
        let elapsed = outcome.unwrap_err();
        assert!(elapsed.deadline() <= Instant::now());
        assert!(elapsed.to_string().contains("deadline"), "{elapsed}");
        assert_eq!(dropped.load(Ordering::SeqCst), 5);
        assert!(start.elapsed() < LIMIT / 2, "ended by the deadline");

        // The closure's panic cancels the rest, deadline or not, and
        // whatever the policy.
        let started = Latch::new(1);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            spindle::scope::Builder::new()
                .collect_all()
                .timeout(FOREVER)
                .scope(|s| {
                    let (witness, started) = (Witness(dropped.clone()), &started);
                    s.spawn(move || {
                        let _witness = witness;
                        started.count_down();
                        spindle::time::sleep(FOREVER);
                    });
                    started.wait();
                    panic!("the timed closure gives up");
                })
        }));
        let payload = outcome.unwrap_err();
        assert_eq!(
            payload.downcast_ref::<&str>(),
            Some(&"the timed closure gives up")
        );
        assert_eq!(dropped.load(Ordering::SeqCst), 6);

        // A scope that finishes in time returns its value.
        let fast = spindle::scope::Builder::new()
            .deadline(Instant::now() + Duration::from_secs(60))
            .scope(|s| s.spawn(|| 3).join().unwrap() * 2);
        assert_eq!(fast, Ok(6));
    });
}

#[test]
fn cancelling_a_fiber_that_owns_a_scope_cancels_its_fibers_inward() {
    within(LIMIT, || {
        spindle::test::run(|| {
            let dropped = Arc::new(AtomicUsize::new(0));
            let seen_at_unwind = Arc::new(AtomicUsize::new(usize::MAX));
            let started = Arc::new(Latch::new(4));
            let owner = {
                let (dropped, seen, started) =
                    (dropped.clone(), seen_at_unwind.clone(), started.clone());
                spindle::spawn(move || {
                    let _after = After(dropped.clone(), seen);
                    // Outer scope: two fibers, each owning an inner scope.
                    spindle::scope(|outer| {
                        for _ in 0..2 {
                            let (dropped, started) = (&dropped, &started);
                            outer.spawn(move || {
                                spindle::scope(|inner| {
                                    for _ in 0..2 {
                                        let witness = Witness(dropped.clone());
                                        inner.spawn(move || {
                                            let _witness = witness;
                                            started.count_down();
                                            spindle::time::sleep(FOREVER);
                                        });
                                    }
                                });
                            });
                        }
                    });
                    unreachable!("the scope raises its owner's cancellation");
                })
            };
            started.wait();
            owner.cancel();
            assert!(owner.join().unwrap_err().is_cancelled());
            assert_eq!(
                seen_at_unwind.load(Ordering::SeqCst),
                4,
                "the owner unwound after all four"
            );
        });
    });
}

#[test]
fn an_outer_deadline_reaches_nested_scopes() {
    within(LIMIT, || {
        let dropped = Arc::new(AtomicUsize::new(0));
        let outcome = spindle::scope::Builder::new()
            .timeout(Duration::from_millis(50))
            .scope(|outer| {
                let dropped = &dropped;
                outer.spawn(move || {
                    spindle::scope(|inner| {
                        let witness = Witness(dropped.clone());
                        inner.spawn(move || {
                            let _witness = witness;
                            spindle::time::sleep(FOREVER);
                        });
                    })
                });
            });
        assert!(outcome.is_err());
        assert_eq!(dropped.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn scope_cancel_and_spawns_into_a_cancelled_scope() {
    within(LIMIT, || {
        spindle::test::run(|| {
            let started = Latch::new(1);
            let started = &started;
            spindle::scope(|s| {
                let sleeper = s.spawn(move || {
                    started.count_down();
                    spindle::time::sleep(FOREVER);
                });
                started.wait();
                assert!(!s.is_cancelled());
                s.cancel();
                assert!(s.is_cancelled());
                assert!(sleeper.join().unwrap_err().is_cancelled());
                let late = s.spawn(|| spindle::time::sleep(FOREVER));
                assert!(late.join().unwrap_err().is_cancelled());
            });
            let result = spindle::scope(|s| {
                let one = s.spawn(|| spindle::time::sleep(FOREVER));
                let two = s.spawn(|| 2);
                one.cancel();
                (one.join().unwrap_err().is_cancelled(), two.join().unwrap())
            });
            assert_eq!(result, (true, 2));
        });
    });
}

#[allow(dead_code)] // its `main`: called by the test below
#[path = "../examples/scope.rs"]
mod scope_example;

#[allow(dead_code)]
#[path = "../examples/timeout.rs"]
mod timeout_example;

/// The examples assert what they print (the scope's re-raised panic, the
/// cancelled siblings, the timeout).
#[test]
fn the_scope_and_timeout_examples_run() {
    within(LIMIT, || {
        scope_example::main();
        timeout_example::main();
    });
}

#[test]
fn a_cancelled_closure_still_waits_for_every_fiber() {
    within(LIMIT, || {
        let rt = spindle::Builder::new().workers(2).build().unwrap();
        let dropped = Arc::new(AtomicUsize::new(0));
        let seen_at_unwind = Arc::new(AtomicUsize::new(usize::MAX));
        let started = Arc::new(Latch::new(3));
        let owner = {
            let (dropped, seen, started) =
                (dropped.clone(), seen_at_unwind.clone(), started.clone());
            rt.spawn(move || {
                let _after = After(dropped.clone(), seen);
                spindle::scope(|s| {
                    for _ in 0..2 {
                        let (witness, started) = (Witness(dropped.clone()), &started);
                        s.spawn(move || {
                            let _witness = witness;
                            started.count_down();
                            spindle::time::sleep(FOREVER);
                        });
                    }
                    started.count_down();
                    spindle::time::sleep(FOREVER); // the closure's own wait unwinds
                });
            })
        };
        started.wait();
        owner.cancel();
        assert!(owner.join().unwrap_err().is_cancelled());
        assert_eq!(
            seen_at_unwind.load(Ordering::SeqCst),
            2,
            "both unwound first"
        );
        let report = rt.shutdown();
        assert!(report.frozen.is_empty(), "{report:?}");
    });
}

#[test]
fn shutting_down_a_runtime_under_a_waiting_scope_unwinds_it_all() {
    within(LIMIT, || {
        let rt = spindle::Builder::new().workers(2).build().unwrap();
        let dropped = Arc::new(AtomicUsize::new(0));
        let started = Arc::new(Latch::new(3));
        let owner = {
            let (dropped, started) = (dropped.clone(), started.clone());
            rt.spawn(move || {
                let borrowed = vec![1u8; 64];
                spindle::scope(|s| {
                    for _ in 0..3 {
                        let (witness, started, borrowed) =
                            (Witness(dropped.clone()), &started, &borrowed);
                        s.spawn(move || {
                            let _witness = witness;
                            started.count_down();
                            spindle::time::sleep(FOREVER);
                            borrowed.len()
                        });
                    }
                });
            })
        };
        started.wait();
        let report = rt.shutdown();
        assert!(report.frozen.is_empty(), "{report:?}");
        assert_eq!(dropped.load(Ordering::SeqCst), 3);
        assert!(
            owner.join().unwrap_err().is_cancelled(),
            "raised after the wait"
        );
    });
}

#[test]
fn a_spawn_that_fails_leaves_the_scope_consistent() {
    within(LIMIT, || {
        let rt = spindle::Builder::new()
            .workers(1)
            .max_fibers(2)
            .build()
            .unwrap();
        let error = rt.block_on(|| {
            let gate = Latch::new(1);
            spindle::scope(|s| {
                let first = s.spawn(|| gate.wait());
                // block_on's fiber and `first` are the two allowed.
                let error = spindle::fiber::Builder::new()
                    .spawn_scoped(s, || 1)
                    .unwrap_err();
                gate.count_down();
                first.join().unwrap();
                error.to_string()
            })
        });
        assert!(error.contains("max_fibers"), "{error}");
    });
}

/// Many scopes, each with a fiber that panics at a different moment while
/// its siblings yield and sleep: every scope re-raises the panic and waits
/// for every sibling, whatever the interleaving.
#[test]
fn first_panics_race_with_running_siblings() {
    within(LIMIT, || {
        spindle::test::run(|| {
            for round in 0..200u32 {
                let dropped = Arc::new(AtomicUsize::new(0));
                let outcome = catch_unwind(AssertUnwindSafe(|| {
                    spindle::scope(|s| {
                        for i in 0..20u32 {
                            let witness = Witness(dropped.clone());
                            s.spawn(move || {
                                let _witness = witness;
                                if i == round % 20 {
                                    for _ in 0..round % 3 {
                                        spindle::yield_now();
                                    }
                                    std::panic::panic_any(round);
                                }
                                for step in 0..50u32 {
                                    if step % 7 == 0 {
                                        spindle::time::sleep(Duration::from_micros(50));
                                    } else {
                                        spindle::yield_now();
                                    }
                                }
                            });
                        }
                    })
                }));
                let payload = outcome.expect_err("the scope re-raises");
                assert_eq!(payload.downcast_ref::<u32>(), Some(&round));
                assert_eq!(dropped.load(Ordering::SeqCst), 20, "round {round}");
            }
        });
    });
}
