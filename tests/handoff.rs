//! Automatic hand-off with real threads and real blocking calls:
//! fibers that call raw `usleep`, spin, or block in a std lock, with no
//! help from the API, do not stall the fibers queued behind them, and each
//! episode's report says what the held thread was doing (blocked,
//! computing, or preempted: spinning beside a busy thread on its core).
//! Bounds are generous (correctness, not speed: the machine is shared).

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{raw_sleep, within};
use spindle::{Builder, HandoffReport, Runtime};

const HANG: Duration = Duration::from_secs(120);

/// A runtime whose hand-off reports are collected instead of printed.
fn runtime_with_reports(workers: usize) -> (Runtime, Arc<Mutex<Vec<HandoffReport>>>) {
    let reports = Arc::new(Mutex::new(Vec::new()));
    let sink = reports.clone();
    let rt = Builder::new()
        .workers(workers)
        .on_handoff(move |report| sink.lock().unwrap().push(report.clone()))
        .build()
        .unwrap();
    (rt, reports)
}

/// Waits until the runtime has no spare workers and no stuck ones left.
fn wait_for_calm(rt: &Runtime) -> spindle::Metrics {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let metrics = rt.metrics();
        if metrics.spare_workers == 0 && metrics.blocked_workers == 0 {
            return metrics;
        }
        assert!(
            Instant::now() < deadline,
            "spares never retired: {metrics:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn raw_sleeps_beat_the_serial_time_and_the_heartbeat_keeps_ticking() {
    // 200 fibers x 10 ms of raw usleep on 2 workers: 1 s if the workers
    // just stopped (two at a time), ~tens of ms with hand-offs.
    let (rt, _reports) = runtime_with_reports(2);
    let rt = Arc::new(rt);
    let runtime = rt.clone();
    let (elapsed, ticks, largest_gap) = within(HANG, move || {
        runtime.block_on(|| {
            let stop = Arc::new(AtomicBool::new(false));
            let ticks = Arc::new(AtomicUsize::new(0));
            let largest_gap = Arc::new(AtomicU64::new(0));
            let (stop2, ticks2, gap2) = (stop.clone(), ticks.clone(), largest_gap.clone());
            let heartbeat = spindle::spawn(move || {
                let mut last = Instant::now();
                while !stop2.load(Ordering::Relaxed) {
                    spindle::time::sleep(Duration::from_millis(1));
                    ticks2.fetch_add(1, Ordering::Relaxed);
                    let now = Instant::now();
                    gap2.fetch_max((now - last).as_micros() as u64, Ordering::Relaxed);
                    last = now;
                }
            });
            let start = Instant::now();
            let sleepers: Vec<_> = (0..200)
                .map(|_| spindle::spawn(|| raw_sleep(Duration::from_millis(10))))
                .collect();
            sleepers.into_iter().for_each(|s| s.join().unwrap());
            let elapsed = start.elapsed();
            stop.store(true, Ordering::Relaxed);
            heartbeat.join().unwrap();
            (
                elapsed,
                ticks.load(Ordering::Relaxed),
                Duration::from_micros(largest_gap.load(Ordering::Relaxed)),
            )
        })
    });
    assert!(
        elapsed < Duration::from_millis(500),
        "200 x 10 ms raw sleeps on 2 workers took {elapsed:?} (two at a time: 1 s)"
    );
    assert!(ticks >= 5, "the heartbeat ticked only {ticks} times");
    assert!(
        largest_gap < Duration::from_millis(300),
        "the heartbeat stopped for {largest_gap:?}"
    );
    let metrics = wait_for_calm(&rt);
    assert!(metrics.handoffs >= 1, "{metrics:?}");
    assert!(metrics.peak_spare_workers >= 1, "{metrics:?}");
}

#[test]
fn a_fiber_spinning_without_yielding_does_not_starve_the_others() {
    // One worker. The first fiber spins until the second has run (or 20 s
    // pass); without a hand-off the second could only run after it.
    let (rt, reports) = runtime_with_reports(1);
    let rt = Arc::new(rt);
    let ran_meanwhile = within(HANG, move || {
        rt.block_on(|| {
            let other_ran = Arc::new(AtomicBool::new(false));
            let spinning = Arc::new(AtomicBool::new(false));
            let (flag, started) = (other_ran.clone(), spinning.clone());
            let spinner = spindle::spawn(move || {
                started.store(true, Ordering::Relaxed);
                let give_up = Instant::now() + Duration::from_secs(20);
                while !flag.load(Ordering::Relaxed) && Instant::now() < give_up {
                    std::hint::spin_loop();
                }
                flag.load(Ordering::Relaxed)
            });
            // Let the spinner take the worker; from then on this fiber
            // waits behind it, and runs again only through a hand-off.
            while !spinning.load(Ordering::Relaxed) {
                spindle::yield_now();
            }
            let flag = other_ran.clone();
            let other = spindle::spawn(move || flag.store(true, Ordering::Relaxed));
            other.join().unwrap();
            spinner.join().unwrap()
        })
    });
    assert!(ran_meanwhile, "the second fiber ran while the first spun");
    // The report comes when the spinner hands its worker back, a moment
    // after its joiner saw it finish.
    let deadline = Instant::now() + Duration::from_secs(60);
    while reports.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the episode was never reported");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn after_an_episode_the_active_workers_return_to_the_configured_count() {
    let (rt, reports) = runtime_with_reports(2);
    within(HANG, {
        let rt = Arc::new(rt);
        move || {
            for round in 0..3 {
                rt.block_on(|| {
                    let fibers: Vec<_> = (0..50)
                        .map(|_| spindle::spawn(|| raw_sleep(Duration::from_millis(5))))
                        .collect();
                    fibers.into_iter().for_each(|f| f.join().unwrap());
                });
                let metrics = wait_for_calm(&rt);
                assert!(metrics.handoffs >= 1, "round {round}: {metrics:?}");
                assert_eq!(metrics.blocked_workers, 0);
                assert_eq!(metrics.spare_workers, 0);
            }
        }
    });
    // Every episode ends with exactly one report.
    assert!(!reports.lock().unwrap().is_empty());
}

#[test]
fn the_report_names_the_fiber_and_how_long_it_held_its_worker() {
    let (rt, reports) = runtime_with_reports(1);
    within(HANG, move || {
        rt.block_on(|| {
            let sleeper = spindle::fiber::Builder::new()
                .name("slow-dns")
                .spawn(|| {
                    // Something waits behind it on its worker.
                    let behind = spindle::spawn(|| ());
                    raw_sleep(Duration::from_millis(100));
                    behind.join().unwrap();
                })
                .unwrap();
            sleeper.join().unwrap();
        });
        let metrics = wait_for_calm(&rt);
        assert_eq!(metrics.handoffs, reports.lock().unwrap().len() as u64);
        let reports = reports.lock().unwrap();
        let ours: Vec<_> = reports
            .iter()
            .filter(|r| r.fiber_name.as_deref() == Some("slow-dns"))
            .collect();
        assert_eq!(ours.len(), 1, "one report per episode: {reports:?}");
        let report = ours[0];
        assert!(
            report.held_for >= Duration::from_millis(50)
                && report.held_for <= Duration::from_secs(30),
            "{report:?}"
        );
        let text = report.to_string();
        assert!(
            text.contains("slow-dns") && text.contains("spindle::blocking"),
            "{text}"
        );
    });
}

#[test]
fn the_spare_worker_cap_holds_and_zero_turns_hand_offs_off() {
    for cap in [0, 3] {
        let rt = Arc::new(
            Builder::new()
                .workers(2)
                .max_spare_workers(cap)
                .on_handoff(|_| {})
                .build()
                .unwrap(),
        );
        let runtime = rt.clone();
        within(HANG, move || {
            runtime.block_on(|| {
                let fibers: Vec<_> = (0..60)
                    .map(|_| spindle::spawn(|| raw_sleep(Duration::from_millis(5))))
                    .collect();
                fibers.into_iter().for_each(|f| f.join().unwrap());
            })
        });
        let metrics = wait_for_calm(&rt);
        assert!(metrics.peak_spare_workers <= cap, "cap {cap}: {metrics:?}");
        if cap == 0 {
            assert_eq!(metrics.handoffs, 0);
        } else {
            assert!(metrics.handoffs >= 1, "{metrics:?}");
        }
    }
}

#[test]
fn ping_pong_through_hand_offs_loses_no_wake_up() {
    // 40 pairs exchange 200 messages each over fiber channels; every 20th
    // message the receiver makes a raw 1 ms sleep, so workers keep being
    // handed off and spares keep retiring while messages flow, and sleeps
    // (timers) start on spares that retire before they fire.
    let rt = Builder::new()
        .workers(2)
        .on_handoff(|_| {})
        .build()
        .unwrap();
    let rt = Arc::new(rt);
    let runtime = rt.clone();
    let total = within(HANG, move || {
        runtime.block_on(|| {
            let pairs: Vec<_> = (0..40)
                .map(|_| {
                    let (to_b, from_a) = spindle::sync::mpsc::channel::<u64>();
                    let (to_a, from_b) = spindle::sync::mpsc::channel::<u64>();
                    let b = spindle::spawn(move || {
                        let mut sum = 0;
                        for message in from_a {
                            if message % 20 == 0 {
                                raw_sleep(Duration::from_millis(1));
                            }
                            if message % 50 == 0 {
                                spindle::time::sleep(Duration::from_micros(500));
                            }
                            sum += message;
                            if to_a.send(message).is_err() {
                                break;
                            }
                        }
                        sum
                    });
                    let a = spindle::spawn(move || {
                        for message in 0..200u64 {
                            to_b.send(message).unwrap();
                            assert_eq!(from_b.recv().unwrap(), message);
                        }
                    });
                    (a, b)
                })
                .collect();
            pairs
                .into_iter()
                .map(|(a, b)| {
                    a.join().unwrap();
                    b.join().unwrap()
                })
                .sum::<u64>()
        })
    });
    assert_eq!(total, 40 * (0..200u64).sum::<u64>());
    wait_for_calm(&rt);
}

#[test]
fn shutdown_waits_for_spares_and_cancels_what_they_left() {
    // Shut down while spares hold fibers in raw sleeps and others wait in
    // their deques: the sleeping ones finish their call, the rest are
    // cancelled, every joiner hears back, and nothing hangs.
    let rt = Builder::new()
        .workers(2)
        .on_handoff(|_| {})
        .build()
        .unwrap();
    let handles = within(HANG, move || {
        let handles: Vec<_> = (0..300)
            .map(|_| rt.spawn(|| raw_sleep(Duration::from_millis(20))))
            .collect();
        std::thread::sleep(Duration::from_millis(30));
        let report = rt.shutdown();
        assert_eq!(report.stacks.in_use, 0, "{report:?}");
        handles
    });
    let (mut finished, mut cancelled) = (0, 0);
    for handle in handles {
        match handle.join() {
            Ok(()) => finished += 1,
            Err(error) if error.is_cancelled() => cancelled += 1,
            Err(error) => panic!("unexpected: {error:?}"),
        }
    }
    assert_eq!(finished + cancelled, 300);
    assert!(finished >= 2, "some ran before shutdown: {finished}");
}

#[test]
fn a_panicking_sink_does_not_take_its_worker_down() {
    let rt = Builder::new()
        .workers(1)
        .on_handoff(|_| panic!("sink bug"))
        .build()
        .unwrap();
    let rt = Arc::new(rt);
    let runtime = rt.clone();
    within(HANG, move || {
        for _ in 0..3 {
            runtime.block_on(|| {
                let behind = spindle::spawn(|| 7);
                raw_sleep(Duration::from_millis(20));
                assert_eq!(behind.join().unwrap(), 7);
            });
        }
    });
    let metrics = wait_for_calm(&rt);
    assert!(metrics.handoffs >= 1, "{metrics:?}");
    // The one worker is still there and runs fibers.
    assert_eq!(rt.block_on(|| spindle::spawn(|| 1).join().unwrap()), 1);
}

/// The calling thread's CPU time so far.
fn thread_cpu_time() -> Duration {
    // SAFETY: clock_gettime writes a plain struct we own.
    let time = unsafe {
        let mut time: libc::timespec = std::mem::zeroed();
        assert_eq!(
            libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut time),
            0
        );
        time
    };
    Duration::new(time.tv_sec as u64, time.tv_nsec as u32)
}

/// Pins the calling thread to `cpu`; false if the OS refuses.
fn pin_to(cpu: usize) -> bool {
    // SAFETY: the set is a plain struct we own, and the calls read it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// Runs a fiber on a 1-worker runtime that holds its worker with `hold`
/// (given a flag that turns true once the fiber queued behind it has run on
/// a spare) and returns the episode's report and the holding thread's CPU
/// share over the hold, measured by the thread itself.
fn hold_and_report(hold: impl Fn(&AtomicBool) + Send + Sync + 'static) -> (HandoffReport, f64) {
    let (rt, reports) = runtime_with_reports(1);
    let share = within(HANG, move || {
        let share = rt.block_on(|| {
            let ran = Arc::new(AtomicBool::new(false));
            let flag = ran.clone();
            let behind = spindle::spawn(move || flag.store(true, Ordering::Relaxed));
            let (wall, cpu) = (Instant::now(), thread_cpu_time());
            hold(&ran);
            let share = (thread_cpu_time() - cpu).as_secs_f64() / wall.elapsed().as_secs_f64();
            behind.join().unwrap();
            share
        });
        // The report is made after the slice that ended the episode; the
        // shutdown joins the worker that makes it.
        drop(rt);
        share
    });
    let reports = reports.lock().unwrap();
    assert_eq!(reports.len(), 1, "one episode: {reports:?}");
    (reports[0].clone(), share)
}

/// Spins until `ran` is set (or a long while passes).
fn spin_until(ran: &AtomicBool) {
    let give_up = Instant::now() + Duration::from_secs(20);
    while !ran.load(Ordering::Relaxed) && Instant::now() < give_up {
        std::hint::spin_loop();
    }
    assert!(ran.load(Ordering::Relaxed), "the fiber behind never ran");
}

#[test]
fn a_report_says_what_the_thread_was_doing_and_advises_blocking_only_for_a_blocked_call() {
    // A raw sleep: blocked in a system call.
    let (report, _) = hold_and_report(|_| raw_sleep(Duration::from_millis(100)));
    assert_eq!(report.state, spindle::HeldState::Blocked, "{report:?}");
    let text = report.to_string();
    assert!(
        text.contains("blocked in a system call") && text.contains("spindle::blocking"),
        "{text}"
    );

    // A spin: computing, or preempted if the machine kept the thread off
    // its core more than half the time (other processes busy); the report
    // follows the share the thread itself measured, where it is clear.
    let (report, share) = hold_and_report(spin_until);
    let text = report.to_string();
    match report.state {
        spindle::HeldState::Computing => {
            assert!(share > 0.4, "computing at a {share:.2} share: {report:?}");
            assert!(text.contains("computing without yielding"), "{text}");
        }
        spindle::HeldState::Preempted => {
            assert!(share < 0.6, "preempted at a {share:.2} share: {report:?}");
            assert!(text.contains("waiting for a core"), "{text}");
        }
        other => panic!("a spin reported as {other:?}: {report:?}"),
    }
    assert!(!text.contains("spindle::blocking"), "{text}");
}

#[test]
fn a_computing_thread_kept_off_its_core_is_reported_preempted() {
    // The worker's thread spins on one core beside a busy thread pinned to
    // the same core, at the lowest priority (nice 19, which needs no
    // privilege): the kernel gives it a small share of that core.
    // SAFETY: sched_getcpu has no preconditions.
    let cpu = unsafe { libc::sched_getcpu() };
    assert!(cpu >= 0);
    let cpu = cpu as usize;
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_sender, ready) = std::sync::mpsc::channel();
    let hog = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let pinned = pin_to(cpu);
            ready_sender.send(()).unwrap();
            while pinned && !stop.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
            pinned
        })
    };
    // The hog spins on its core before the worker's thread joins it there.
    ready.recv().unwrap();
    let (report, share) = hold_and_report(move |ran| {
        // SAFETY: plain calls on the calling thread.
        let niced = unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, 19) == 0
        };
        if pin_to(cpu) && niced {
            spin_until(ran);
        } else {
            eprintln!("cannot pin or renice the worker here: only a spin");
            spin_until(ran);
        }
    });
    stop.store(true, Ordering::Relaxed);
    let pinned = hog.join().unwrap();
    let text = report.to_string();
    assert!(!text.contains("spindle::blocking"), "{text}");
    if !pinned || share >= 0.4 {
        eprintln!("the thread kept a {share:.2} share of its core: {report:?}");
        return;
    }
    assert_eq!(
        report.state,
        spindle::HeldState::Preempted,
        "share {share:.2}: {report:?}"
    );
    assert!(text.contains("waiting for a core"), "{text}");
}
