//! spindle::signal with real signals sent to this process with `kill`: one
//! delivery reaching many waiting fibers and threads, round after round;
//! one delivery to one of two waiters sharing a `Signals`; timeouts;
//! `SIGCHLD` from a real child; a handler installed before ours still
//! running; refused signals; and, each in a process of its own, `ctrl_c`
//! and the shard supervisor's termination watch seeing `SIGTERM` beside the
//! program's own `Signals`.
//!
//! Tests here run in parallel in one process, so each uses signals of its
//! own.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{run_child, within};
use spindle::shard::{self, Config, Event, Shard, StopReason};
use spindle::signal::{self, Signal, Signals, SIGCHLD, SIGHUP, SIGTERM, SIGUSR1, SIGUSR2};
use spindle::Builder;

const LIMIT: Duration = Duration::from_secs(120);
/// How long a test waits for a signal it sent; not a speed check.
const ARRIVAL: Duration = Duration::from_secs(30);

/// Sends `signal` to this process (any of its threads may take it).
fn send(signal: Signal) {
    // SAFETY: kill with integer arguments only.
    assert_eq!(unsafe { libc::kill(libc::getpid(), signal.as_raw()) }, 0);
}

#[test]
fn one_signal_reaches_every_waiting_fiber_and_thread_round_after_round() {
    within(LIMIT, || {
        const FIBERS: usize = 200;
        const THREADS: usize = 4;
        const ROUNDS: usize = 3;
        let rt = Builder::new().workers(2).build().unwrap();
        for _ in 0..ROUNDS {
            // Subscribed before the signal is sent, so each must get it,
            // parked in `recv` or not yet there.
            let subscriptions: Vec<Signals> = (0..FIBERS + THREADS)
                .map(|_| Signals::new(&[SIGUSR1]).unwrap())
                .collect();
            let received = Arc::new(AtomicUsize::new(0));
            let mut subscriptions = subscriptions.into_iter();
            let threads: Vec<_> = subscriptions
                .by_ref()
                .take(THREADS)
                .map(|signals| {
                    let received = received.clone();
                    std::thread::spawn(move || {
                        assert_eq!(signals.recv(), SIGUSR1);
                        received.fetch_add(1, Ordering::Relaxed);
                    })
                })
                .collect();
            let fibers: Vec<_> = subscriptions
                .map(|signals| {
                    let received = received.clone();
                    rt.spawn(move || {
                        assert_eq!(signals.recv(), SIGUSR1);
                        received.fetch_add(1, Ordering::Relaxed);
                    })
                })
                .collect();
            send(SIGUSR1);
            for fiber in fibers {
                fiber.join().unwrap();
            }
            for thread in threads {
                thread.join().unwrap();
            }
            assert_eq!(received.load(Ordering::Relaxed), FIBERS + THREADS);
        }
    });
}

#[test]
fn waiters_sharing_one_signals_get_one_delivery_between_them() {
    within(LIMIT, || {
        let rt = Builder::new().workers(2).build().unwrap();
        let got = rt.block_on(|| {
            let signals = Arc::new(Signals::new(&[SIGUSR2]).unwrap());
            let waiters: Vec<_> = (0..2)
                .map(|_| {
                    let signals = signals.clone();
                    // Long enough for the delivery under any load; the
                    // waiter that does not get it waits this long.
                    spindle::spawn(move || signals.recv_timeout(Duration::from_secs(2)))
                })
                .collect();
            send(SIGUSR2);
            waiters
                .into_iter()
                .map(|w| w.join().unwrap())
                .collect::<Vec<_>>()
        });
        assert_eq!(
            got.iter().filter(|s| **s == Some(SIGUSR2)).count(),
            1,
            "{got:?}"
        );
    });
}

#[test]
fn try_recv_and_recv_timeout_do_not_wait_past_their_time() {
    within(LIMIT, || {
        let signals = Signals::new(&[SIGHUP]).unwrap();
        assert_eq!(signals.try_recv(), None);
        assert_eq!(signals.recv_timeout(Duration::from_millis(10)), None);
        send(SIGHUP);
        assert_eq!(signals.recv_timeout(ARRIVAL), Some(SIGHUP));
        assert_eq!(signals.try_recv(), None, "taken once");
    });
}

#[test]
fn sigchld_arrives_when_a_child_exits() {
    within(LIMIT, || {
        let rt = Builder::new().workers(1).build().unwrap();
        let got = rt.block_on(|| {
            let signals = Signals::new(&[SIGCHLD]).unwrap();
            let status = spindle::process::Command::new("true").status().unwrap();
            assert!(status.success(), "the child is still reaped by its Child");
            signals.recv_timeout(ARRIVAL)
        });
        assert_eq!(got, Some(SIGCHLD));
    });
}

/// Counts the runs of the handler installed before spindle's.
static EARLIER_HANDLER_RUNS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn earlier_handler(_: libc::c_int) {
    EARLIER_HANDLER_RUNS.fetch_add(1, Ordering::Relaxed);
}

#[test]
fn a_handler_installed_before_ours_still_runs() {
    within(LIMIT, || {
        let alarm = signal::SIGALRM;
        // SAFETY: installs a handler that only bumps an atomic.
        let previous = unsafe {
            libc::signal(
                alarm.as_raw(),
                earlier_handler as *const () as libc::sighandler_t,
            )
        };
        assert_ne!(previous, libc::SIG_ERR);
        let signals = Signals::new(&[alarm]).unwrap();
        send(alarm);
        assert_eq!(signals.recv_timeout(ARRIVAL), Some(alarm));
        // Ours runs the earlier one after waking the dispatcher, so the
        // count may trail the delivery by a moment.
        while EARLIER_HANDLER_RUNS.load(Ordering::Relaxed) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(EARLIER_HANDLER_RUNS.load(Ordering::Relaxed), 1);
    });
}

#[test]
fn faults_uncatchable_and_unknown_signals_are_refused() {
    for number in [
        0,
        -1,
        65,
        libc::SIGKILL,
        libc::SIGSTOP,
        libc::SIGSEGV,
        libc::SIGBUS,
    ] {
        let error = Signals::new(&[SIGTERM, Signal::from_raw(number)]).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput, "{number}");
    }
}

#[test]
fn ctrl_c_returns_on_sigint() {
    const TEST: &str = "ctrl_c_returns_on_sigint";
    if std::env::var_os("SIGNAL_TEST_CTRL_C").is_some() {
        // In a process of its own: SIGINT would end the test harness.
        let _installed = Signals::new(&[signal::SIGINT]).unwrap();
        let presser = std::thread::spawn(|| {
            for _ in 0..1000 {
                send(signal::SIGINT);
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        let rt = Builder::new().workers(1).build().unwrap();
        rt.block_on(|| signal::ctrl_c().unwrap());
        println!("ctrl_c returned");
        drop(presser); // the process exits under it
        return;
    }
    let output = within(LIMIT, || run_child(TEST, &[("SIGNAL_TEST_CTRL_C", "1")]));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{:?}\n{stdout}", output.status);
    assert!(stdout.contains("ctrl_c returned"), "{stdout}");
}

#[test]
fn the_shard_supervisor_and_the_programs_own_signals_both_see_sigterm() {
    const TEST: &str = "the_shard_supervisor_and_the_programs_own_signals_both_see_sigterm";
    if std::env::var_os("SIGNAL_TEST_SUPERVISOR").is_some() {
        // The supervisor process (or, inside `start`, its shard).
        let config = Config::new(1)
            .args([TEST, "--exact", "--test-threads=1", "--quiet"])
            .quiet(true)
            .workers(1);
        let supervisor = shard::start(config, |me: Shard| while me.recv().is_ok() {}).unwrap();
        // One subscription before the supervisor's, one after.
        let before = Signals::new(&[SIGTERM]).unwrap();
        supervisor.watch_termination_signals().unwrap();
        let after = Signals::new(&[SIGTERM]).unwrap();
        loop {
            match supervisor.recv_timeout(ARRIVAL) {
                Some(Event::Started { .. }) => break,
                Some(_) => {}
                None => panic!("the shard did not start"),
            }
        }
        send(SIGTERM);
        assert_eq!(before.recv_timeout(ARRIVAL), Some(SIGTERM));
        assert_eq!(after.recv_timeout(ARRIVAL), Some(SIGTERM));
        loop {
            match supervisor.recv_timeout(ARRIVAL) {
                Some(Event::Stopping {
                    reason: StopReason::Signal(number),
                }) => {
                    assert_eq!(number, SIGTERM.as_raw());
                    break;
                }
                Some(_) => {}
                None => panic!("the supervisor did not see SIGTERM"),
            }
        }
        supervisor.wait().unwrap();
        println!("both saw SIGTERM");
        return;
    }
    let output = within(LIMIT, || {
        run_child(TEST, &[("SIGNAL_TEST_SUPERVISOR", "1")])
    });
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{:?}\n{stdout}\n{stderr}",
        output.status
    );
    assert!(stdout.contains("both saw SIGTERM"), "{stdout}");
}
