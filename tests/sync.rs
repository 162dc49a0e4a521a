//! Fiber-aware locks with real threads: Mutex (counting, fairness,
//! try_lock, poisoning), Condvar (fiber↔thread, timeouts, notify_all), and
//! waiters unwound at shutdown not swallowing notifications.

mod common;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::within;
use spindle::sync::{Condvar, Latch, Mutex};
use spindle::Builder;

const HANG: Duration = Duration::from_secs(300);

#[test]
fn a_million_contended_increments_are_all_counted() {
    // 1,000 fibers x 1,000 increments on 2 workers, yielding inside the
    // critical section now and then so that waiters really park. The
    // longest wait for the lock is recorded: with the hand-off to a waiter
    // that has waited `HAND_OFF_AFTER`, no fiber should starve (the bound
    // is generous: a noisy shared machine).
    let rt = Builder::new().workers(2).build().unwrap();
    let (count, longest) = within(HANG, move || {
        rt.block_on(|| {
            let counter = Arc::new(Mutex::new(0u64));
            let longest = Arc::new(std::sync::Mutex::new(Duration::ZERO));
            let fibers: Vec<_> = (0..1000)
                .map(|f| {
                    let (counter, longest) = (counter.clone(), longest.clone());
                    spindle::spawn(move || {
                        let mut worst = Duration::ZERO;
                        for i in 0..1000 {
                            let asked = Instant::now();
                            let mut guard = counter.lock().unwrap();
                            worst = worst.max(asked.elapsed());
                            *guard += 1;
                            if (f + i) % 97 == 0 {
                                spindle::yield_now(); // hold the lock across a yield
                            }
                        }
                        let mut longest = longest.lock().unwrap();
                        *longest = longest.max(worst);
                    })
                })
                .collect();
            for fiber in fibers {
                fiber.join().unwrap();
            }
            let count = *counter.lock().unwrap();
            let longest = *longest.lock().unwrap();
            (count, longest)
        })
    });
    assert_eq!(count, 1_000_000);
    eprintln!("longest wait for the lock: {longest:?}");
    assert!(
        longest < Duration::from_secs(10),
        "a fiber waited {longest:?} for the lock"
    );
}

#[test]
fn fibers_and_threads_share_a_mutex() {
    let rt = Arc::new(Builder::new().workers(2).build().unwrap());
    let counter = Arc::new(Mutex::new(0u64));
    let fibers: Vec<_> = (0..50)
        .map(|_| {
            let counter = counter.clone();
            rt.spawn(move || {
                for _ in 0..2000 {
                    *counter.lock().unwrap() += 1;
                }
            })
        })
        .collect();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let counter = counter.clone();
            std::thread::spawn(move || {
                for _ in 0..25_000 {
                    *counter.lock().unwrap() += 1;
                }
            })
        })
        .collect();
    within(HANG, move || {
        fibers.into_iter().for_each(|f| f.join().unwrap());
        threads.into_iter().for_each(|t| t.join().unwrap());
    });
    assert_eq!(*counter.lock().unwrap(), 50 * 2000 + 4 * 25_000);
}

#[test]
fn try_lock_does_not_wait() {
    let mutex = Mutex::new(1);
    let guard = mutex.lock().unwrap();
    assert!(matches!(
        mutex.try_lock(),
        Err(std::sync::TryLockError::WouldBlock)
    ));
    drop(guard);
    assert_eq!(*mutex.try_lock().unwrap(), 1);
}

#[test]
fn a_panic_while_locked_poisons_like_std() {
    let rt = Builder::new().workers(1).build().unwrap();
    let mutex = Arc::new(Mutex::new(vec![1, 2, 3]));
    let inside = mutex.clone();
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = rt.spawn(move || {
        let mut data = inside.lock().unwrap();
        data.push(4);
        panic!("while holding the lock");
    });
    assert!(result.join().unwrap_err().is_panic());
    std::panic::set_hook(hook);
    assert!(mutex.is_poisoned());
    let recovered = mutex.lock().unwrap_err().into_inner();
    assert_eq!(*recovered, vec![1, 2, 3, 4], "the data is still reachable");
}

/// A bounded queue on Mutex + Condvar, the textbook way.
struct Queue {
    items: Mutex<VecDeque<u64>>,
    not_empty: Condvar,
    not_full: Condvar,
}

#[test]
fn condvar_producers_and_consumers_across_fibers_and_threads() {
    // 2 fiber producers + 2 thread producers, 2 fiber consumers + 1 thread
    // consumer, through a queue of 8: every item arrives exactly once.
    let rt = Arc::new(Builder::new().workers(2).build().unwrap());
    let queue = Arc::new(Queue {
        items: Mutex::new(VecDeque::new()),
        not_empty: Condvar::new(),
        not_full: Condvar::new(),
    });
    const PER_PRODUCER: u64 = 20_000;
    let produce = |queue: Arc<Queue>, base: u64| {
        move || {
            for i in 0..PER_PRODUCER {
                let mut items = queue
                    .not_full
                    .wait_while(queue.items.lock().unwrap(), |q| q.len() >= 8)
                    .unwrap();
                items.push_back(base + i);
                drop(items);
                queue.not_empty.notify_one();
            }
        }
    };
    let consumed = Arc::new(AtomicUsize::new(0));
    let sum = Arc::new(AtomicUsize::new(0));
    let consume = |queue: Arc<Queue>, consumed: Arc<AtomicUsize>, sum: Arc<AtomicUsize>| {
        move || loop {
            let mut items = queue.items.lock().unwrap();
            loop {
                if consumed.load(Ordering::SeqCst) == 4 * PER_PRODUCER as usize {
                    queue.not_empty.notify_all(); // let the other consumers see it
                    return;
                }
                if let Some(item) = items.pop_front() {
                    consumed.fetch_add(1, Ordering::SeqCst);
                    sum.fetch_add(item as usize, Ordering::SeqCst);
                    drop(items);
                    queue.not_full.notify_one();
                    break;
                }
                items = queue
                    .not_empty
                    .wait_timeout(items, Duration::from_millis(10))
                    .unwrap()
                    .0;
            }
        }
    };
    let mut fibers = Vec::new();
    let mut threads = Vec::new();
    fibers.push(rt.spawn(produce(queue.clone(), 0)));
    fibers.push(rt.spawn(produce(queue.clone(), 1_000_000)));
    threads.push(std::thread::spawn(produce(queue.clone(), 2_000_000)));
    threads.push(std::thread::spawn(produce(queue.clone(), 3_000_000)));
    fibers.push(rt.spawn(consume(queue.clone(), consumed.clone(), sum.clone())));
    fibers.push(rt.spawn(consume(queue.clone(), consumed.clone(), sum.clone())));
    threads.push(std::thread::spawn(consume(
        queue.clone(),
        consumed.clone(),
        sum.clone(),
    )));
    within(HANG, move || {
        fibers.into_iter().for_each(|f| f.join().unwrap());
        threads.into_iter().for_each(|t| t.join().unwrap());
    });
    let expected: u64 = (0..4)
        .map(|p| (0..PER_PRODUCER).map(|i| p * 1_000_000 + i).sum::<u64>())
        .sum();
    assert_eq!(consumed.load(Ordering::SeqCst), 4 * PER_PRODUCER as usize);
    assert_eq!(sum.load(Ordering::SeqCst) as u64, expected);
}

#[test]
fn condvar_wait_timeout_reports_timeouts_and_notifications() {
    let rt = Builder::new().workers(2).build().unwrap();
    rt.block_on(|| {
        let pair = Arc::new((Mutex::new(false), Condvar::new()));
        let (lock, condvar) = &*pair;
        let (guard, result) = condvar
            .wait_timeout(lock.lock().unwrap(), Duration::from_millis(10))
            .unwrap();
        assert!(result.timed_out());
        drop(guard);
        let other = pair.clone();
        let notifier = spindle::spawn(move || {
            spindle::time::sleep(Duration::from_millis(5));
            *other.0.lock().unwrap() = true;
            other.1.notify_all();
        });
        let mut guard = lock.lock().unwrap();
        while !*guard {
            let (next, result) = condvar
                .wait_timeout(guard, Duration::from_secs(60))
                .unwrap();
            guard = next;
            assert!(!result.timed_out() || *guard);
        }
        drop(guard);
        notifier.join().unwrap();
    });
}

#[test]
fn notify_all_wakes_fibers_and_threads() {
    let rt = Arc::new(Builder::new().workers(2).build().unwrap());
    let state = Arc::new((Mutex::new(false), Condvar::new()));
    let waiting = Arc::new(Latch::new(20));
    let mut fibers = Vec::new();
    let mut threads = Vec::new();
    for i in 0..20 {
        let (state, waiting) = (state.clone(), waiting.clone());
        let wait = move || {
            let (lock, condvar) = &*state;
            let mut open = lock.lock().unwrap();
            waiting.count_down();
            while !*open {
                open = condvar.wait(open).unwrap();
            }
        };
        if i % 4 == 0 {
            threads.push(std::thread::spawn(wait));
        } else {
            fibers.push(rt.spawn(wait));
        }
    }
    within(HANG, move || {
        waiting.wait();
        *state.0.lock().unwrap() = true;
        state.1.notify_all();
        fibers.into_iter().for_each(|f| f.join().unwrap());
        threads.into_iter().for_each(|t| t.join().unwrap());
    });
}

#[test]
fn waiters_unwound_at_shutdown_do_not_swallow_a_notification() {
    // Fibers wait on a condvar, then the runtime shuts down and unwinds
    // them. A thread that queued behind them must still get the next
    // notify_one: the unwound fibers' nodes left the list.
    let rt = Builder::new().workers(2).build().unwrap();
    let state = Arc::new((Mutex::new(0u32), Condvar::new()));
    let queued = Arc::new(Latch::new(10));
    for _ in 0..10 {
        let (state, queued) = (state.clone(), queued.clone());
        rt.spawn(move || {
            let (lock, condvar) = &*state;
            let guard = lock.lock().unwrap();
            queued.count_down();
            let _never = condvar.wait(guard);
        });
    }
    queued.wait();
    // Let the fibers' waits begin (they queue before unlocking the mutex,
    // so holding the mutex here means they are all queued).
    drop(state.0.lock().unwrap());
    let woke = Arc::new(AtomicBool::new(false));
    let thread = {
        let (state, woke) = (state.clone(), woke.clone());
        let ready = Arc::new(Latch::new(1));
        let ready2 = ready.clone();
        let thread = std::thread::spawn(move || {
            let (lock, condvar) = &*state;
            let mut guard = lock.lock().unwrap();
            ready2.count_down();
            while *guard == 0 {
                guard = condvar.wait(guard).unwrap();
            }
            woke.store(true, Ordering::SeqCst);
        });
        ready.wait();
        thread
    };
    let report = rt.shutdown();
    assert_eq!(report.fibers_cancelled, 10);
    within(HANG, move || {
        *state.0.lock().unwrap() = 1;
        state.1.notify_one();
        thread.join().unwrap();
    });
    assert!(woke.load(Ordering::SeqCst));
}

/// A plain thread keeps its wait node in a thread-local between waits
/// (`sync/waitlist.rs`). A wait from another thread-local's destructor,
/// after that one is gone, must still work (with a fresh node), not panic
/// in the destructor (which would abort the process).
#[test]
fn a_wait_in_a_thread_local_destructor_after_the_node_cache_is_gone() {
    use std::cell::RefCell;
    use std::sync::mpsc as std_mpsc;

    struct WaitsOnDrop {
        rx: spindle::sync::mpsc::Receiver<u32>,
        report: std_mpsc::Sender<Result<u32, spindle::sync::mpsc::RecvTimeoutError>>,
    }
    impl Drop for WaitsOnDrop {
        fn drop(&mut self) {
            let got = self.rx.recv_timeout(Duration::from_millis(1));
            let _ = self.report.send(got);
        }
    }
    thread_local! {
        static WAITER: RefCell<Option<WaitsOnDrop>> = const { RefCell::new(None) };
    }

    let (report, reports) = std_mpsc::channel();
    let (_tx, rx) = spindle::sync::mpsc::channel::<u32>();
    std::thread::spawn(move || {
        // Registered first, so destroyed after the node cache, which the
        // wait below registers (thread-locals are destroyed in reverse).
        WAITER.with(|w| {
            *w.borrow_mut() = Some(WaitsOnDrop {
                rx: rx.clone(),
                report,
            })
        });
        assert!(rx.recv_timeout(Duration::from_millis(1)).is_err());
    })
    .join()
    .unwrap();
    assert_eq!(
        reports.recv_timeout(Duration::from_secs(60)).unwrap(),
        Err(spindle::sync::mpsc::RecvTimeoutError::Timeout)
    );
}

/// A Condvar waited on with two different mutexes at once is a bug in the
/// caller (std allows it, but a notify then serves waiters of either
/// lock): the second wait panics with a message that says so, and the
/// first waiter is unharmed.
#[test]
fn a_condvar_waited_on_with_a_second_mutex_panics() {
    let rt = Builder::new().workers(2).build().unwrap();
    let condvar = Arc::new(Condvar::new());
    let first = Arc::new(Mutex::new(false));
    let second = Arc::new(Mutex::new(()));
    let waiting = Arc::new(Latch::new(1));
    let waiter = {
        let (condvar, first, waiting) = (condvar.clone(), first.clone(), waiting.clone());
        rt.spawn(move || {
            let mut ready = first.lock().unwrap();
            waiting.count_down();
            while !*ready {
                ready = condvar.wait(ready).unwrap();
            }
        })
    };
    waiting.wait();
    // The first waiter queues before it unlocks: once this lock is ours,
    // it waits on the condvar.
    drop(first.lock().unwrap());
    let wrong = {
        let (condvar, second) = (condvar.clone(), second.clone());
        rt.spawn(move || {
            let guard = second.lock().unwrap();
            let _ = condvar.wait(guard);
        })
    };
    let error = within(HANG, move || wrong.join()).expect_err("the second mutex was accepted");
    let message = error
        .into_panic()
        .downcast::<String>()
        .map(|s| *s)
        .or_else(|p| p.downcast::<&str>().map(|s| s.to_string()))
        .unwrap();
    assert!(
        message.contains("different Mutex"),
        "unexpected panic message: {message}"
    );
    *first.lock().unwrap() = true;
    condvar.notify_all();
    within(HANG, move || waiter.join()).unwrap();
    // Once nobody waits, another mutex may be used.
    let guard = second.lock().unwrap();
    let (_guard, result) = condvar
        .wait_timeout(guard, Duration::from_millis(1))
        .unwrap();
    assert!(result.timed_out());
}

/// A fiber woken to compete for a Mutex, and unwound at shutdown before it
/// ran, must not leave the lock believing that a woken waiter is still
/// coming (then no unlock would wake anyone again): threads that use the
/// Mutex afterwards still wake each other.
#[test]
fn a_woken_mutex_waiter_unwound_at_shutdown_leaves_the_lock_usable() {
    let rt = Builder::new().workers(1).build().unwrap();
    let mutex = Arc::new(Mutex::new(0u32));
    let guard = mutex.lock().unwrap();
    let queued = Arc::new(Latch::new(3));
    for _ in 0..3 {
        let (mutex, queued) = (mutex.clone(), queued.clone());
        rt.spawn(move || {
            queued.count_down();
            *mutex.lock().unwrap() += 1;
            unreachable!("the lock is not free before shutdown");
        });
    }
    queued.wait();
    std::thread::sleep(Duration::from_millis(20)); // let them queue
                                                   // The only worker now runs a fiber that does not yield, so the waiter
                                                   // woken below waits in the queue until shutdown unwinds it.
    let release = Arc::new(AtomicBool::new(false));
    let running = Arc::new(Latch::new(1));
    {
        let (release, running) = (release.clone(), running.clone());
        rt.spawn(move || {
            running.count_down();
            while !release.load(Ordering::SeqCst) {
                std::hint::spin_loop();
            }
        });
    }
    running.wait();
    drop(guard); // wakes the front waiter, which cannot run yet
    let shutdown = std::thread::spawn(move || rt.shutdown());
    std::thread::sleep(Duration::from_millis(20));
    release.store(true, Ordering::SeqCst);
    let report = shutdown.join().unwrap();
    assert_eq!(report.fibers_cancelled, 3);
    within(HANG, move || {
        let held = mutex.lock().unwrap();
        let waiter = {
            let mutex = mutex.clone();
            std::thread::spawn(move || *mutex.lock().unwrap() += 1)
        };
        std::thread::sleep(Duration::from_millis(20)); // let it queue
        drop(held);
        waiter.join().unwrap();
        assert_eq!(*mutex.lock().unwrap(), 1);
    });
}
