//! spindle::future with crates that need no reactor of their own: a
//! `futures` channel between a fiber and a plain thread, a thousand fibers
//! on an `async-channel`, an `async-lock` mutex shared by fibers and
//! threads, `JoinHandle`s awaited by `futures`' executor and combinators
//! (with the waker replaced between polls), a future that wakes itself
//! inside `poll`, and a fiber unwound at shutdown while it awaits.

mod common;

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use common::within;
use futures::{SinkExt, StreamExt};
use spindle::future::block_on;
use spindle::Builder;

const LIMIT: Duration = Duration::from_secs(120);

fn runtime(workers: usize) -> spindle::Runtime {
    Builder::new().workers(workers).build().unwrap()
}

#[test]
fn a_futures_channel_ping_pongs_between_a_fiber_and_a_plain_thread() {
    within(LIMIT, || {
        const ROUNDS: u64 = 1000;
        let rt = runtime(2);
        let (mut to_fiber, mut from_thread) = futures::channel::mpsc::channel::<u64>(1);
        let (mut to_thread, mut from_fiber) = futures::channel::mpsc::channel::<u64>(1);
        let fiber = rt.spawn(move || {
            for _ in 0..ROUNDS {
                let value = block_on(from_thread.next()).unwrap();
                block_on(to_thread.send(value + 1)).unwrap();
            }
        });
        // The thread side runs `futures`' own executor.
        for round in 0..ROUNDS {
            futures::executor::block_on(to_fiber.send(round * 2)).unwrap();
            let reply = futures::executor::block_on(from_fiber.next()).unwrap();
            assert_eq!(reply, round * 2 + 1);
        }
        fiber.join().unwrap();
    });
}

#[test]
fn a_thousand_fibers_receive_from_an_async_channel() {
    within(LIMIT, || {
        const RECEIVERS: u64 = 1000;
        const SENDERS: u64 = 10;
        let rt = runtime(2);
        let total = rt.block_on(|| {
            let (sender, receiver) = async_channel::bounded::<u64>(16);
            let receivers: Vec<_> = (0..RECEIVERS)
                .map(|_| {
                    let receiver = receiver.clone();
                    spindle::spawn(move || block_on(receiver.recv()).unwrap())
                })
                .collect();
            let senders: Vec<_> = (0..SENDERS)
                .map(|s| {
                    let sender = sender.clone();
                    spindle::spawn(move || {
                        for i in 0..RECEIVERS / SENDERS {
                            block_on(sender.send(s * (RECEIVERS / SENDERS) + i + 1)).unwrap();
                        }
                    })
                })
                .collect();
            for s in senders {
                s.join().unwrap();
            }
            receivers
                .into_iter()
                .map(|r| r.join().unwrap())
                .sum::<u64>()
        });
        assert_eq!(total, RECEIVERS * (RECEIVERS + 1) / 2);
    });
}

#[test]
fn an_async_lock_mutex_is_shared_by_fibers_and_threads() {
    within(LIMIT, || {
        const FIBERS: usize = 100;
        const THREADS: usize = 2;
        const ROUNDS: usize = 50;
        let rt = runtime(2);
        let counter = Arc::new(async_lock::Mutex::new(0usize));
        let threads: Vec<_> = (0..THREADS)
            .map(|_| {
                let counter = counter.clone();
                // spindle's block_on on a plain thread parks the thread.
                std::thread::spawn(move || {
                    for _ in 0..ROUNDS {
                        *block_on(counter.lock()) += 1;
                    }
                })
            })
            .collect();
        let fibers: Vec<_> = (0..FIBERS)
            .map(|_| {
                let counter = counter.clone();
                rt.spawn(move || {
                    for _ in 0..ROUNDS {
                        let mut guard = block_on(counter.lock());
                        // Hold it across a yield, so that others queue.
                        spindle::yield_now();
                        *guard += 1;
                    }
                })
            })
            .collect();
        for fiber in fibers {
            fiber.join().unwrap();
        }
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(
            *futures::executor::block_on(counter.lock()),
            (FIBERS + THREADS) * ROUNDS
        );
    });
}

#[test]
fn join_handles_are_awaited_by_async_code_and_other_executors() {
    within(LIMIT, || {
        let rt = runtime(2);
        // From a fiber, all at once with a combinator.
        let sum = rt.block_on(|| {
            let fibers: Vec<_> = (1..=100u64)
                .map(|i| {
                    spindle::spawn(move || {
                        spindle::time::sleep(Duration::from_millis(i % 5));
                        i
                    })
                })
                .collect();
            let joins = fibers.into_iter().map(IntoFuture::into_future);
            block_on(futures::future::join_all(joins))
                .into_iter()
                .map(Result::unwrap)
                .sum::<u64>()
        });
        assert_eq!(sum, 5050);
        // From a plain thread, on `futures`' executor.
        let slow = rt.spawn(|| {
            spindle::time::sleep(Duration::from_millis(10));
            "done"
        });
        assert_eq!(
            futures::executor::block_on(slow.into_future()).unwrap(),
            "done"
        );
        // A panic comes back as the JoinError `join` would give.
        let panicked = rt.spawn(|| panic!("on purpose"));
        let error = futures::executor::block_on(panicked.into_future()).unwrap_err();
        assert!(error.is_panic());
    });
}

/// A waker that counts its wakes.
struct Counting(AtomicUsize);

impl Wake for Counting {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn a_join_polled_with_a_new_waker_wakes_the_newest() {
    within(LIMIT, || {
        let rt = runtime(1);
        let (release, released) = std::sync::mpsc::channel::<()>();
        let fiber = rt.spawn(move || {
            spindle::blocking(move || released.recv().unwrap());
            7
        });
        let mut join = fiber.into_future();
        let first = Arc::new(Counting(AtomicUsize::new(0)));
        let second = Arc::new(Counting(AtomicUsize::new(0)));
        let poll = |join: &mut spindle::future::Join<i32>, waker: &Arc<Counting>| {
            let waker = Waker::from(waker.clone());
            Pin::new(join).poll(&mut Context::from_waker(&waker))
        };
        assert!(poll(&mut join, &first).is_pending());
        assert!(poll(&mut join, &first).is_pending(), "the same waker again");
        assert!(poll(&mut join, &second).is_pending());
        release.send(()).unwrap();
        while second.0.load(Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(first.0.load(Ordering::SeqCst), 0, "the replaced waker");
        match poll(&mut join, &second) {
            Poll::Ready(Ok(7)) => {}
            other => panic!("{other:?}"),
        }
    });
}

/// Ready on its `polls`-th poll; wakes itself inside each earlier one.
struct WakesItself {
    polls: usize,
}

impl Future for WakesItself {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        self.polls -= 1;
        if self.polls == 0 {
            return Poll::Ready(());
        }
        context.waker().wake_by_ref(); // before the fiber parks
        Poll::Pending
    }
}

#[test]
fn a_future_that_wakes_itself_during_poll_is_polled_again() {
    within(LIMIT, || {
        let rt = runtime(1);
        rt.block_on(|| block_on(WakesItself { polls: 1000 }));
        block_on(WakesItself { polls: 1000 }); // a plain thread
    });
}

#[test]
fn a_fiber_awaiting_forever_is_unwound_at_shutdown() {
    within(LIMIT, || {
        let rt = runtime(2);
        let (sender, receiver) = futures::channel::oneshot::channel::<()>();
        let (started, has_started) = std::sync::mpsc::channel();
        let waiting = rt.spawn(move || {
            let _keep = sender; // dropped by the unwind
            block_on(async move {
                started.send(()).unwrap();
                futures::future::pending::<()>().await
            })
        });
        has_started.recv().unwrap();
        let report = rt.shutdown();
        assert_eq!(report.fibers_cancelled, 1);
        assert!(waiting.join().unwrap_err().is_cancelled());
        // The fiber's stack unwound: its sender was dropped.
        assert!(futures::executor::block_on(receiver).is_err());
    });
}
