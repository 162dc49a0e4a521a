//! Counters match known workloads.

use std::sync::Arc;
use std::time::Duration;

use spindle::Builder;

#[test]
fn spawns_are_counted_from_fibers_and_threads() {
    let rt = Builder::new().workers(2).build().unwrap();
    rt.block_on(|| {
        let fibers: Vec<_> = (0..1000).map(|i| spindle::spawn(move || i)).collect();
        fibers.into_iter().for_each(|f| {
            f.join().unwrap();
        });
    });
    for _ in 0..5 {
        rt.spawn(|| ()).join().unwrap();
    }
    let metrics = rt.metrics();
    // 1,000 from a fiber, block_on's fiber and 5 from this thread.
    assert_eq!(metrics.spawned_total, 1006);
    assert_eq!(metrics.workers.iter().map(|w| w.spawned).sum::<u64>(), 1000);
    let run: u64 = metrics.workers.iter().map(|w| w.fibers_run).sum();
    assert!(run >= 1006, "every fiber ran at least once: {run}");
    assert!(
        metrics.workers.iter().map(|w| w.injector_pops).sum::<u64>() >= 1,
        "thread spawns go through the injector"
    );
}

#[test]
fn a_forced_steal_shows_up() {
    // Fibers spawned from one fiber land on its worker; busy ones make the
    // other worker steal.
    let rt = Builder::new().workers(2).build().unwrap();
    rt.block_on(|| {
        let fibers: Vec<_> = (0..400)
            .map(|_| {
                spindle::spawn(|| {
                    let start = std::time::Instant::now();
                    while start.elapsed() < Duration::from_micros(100) {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        fibers.into_iter().for_each(|f| f.join().unwrap());
    });
    let metrics = rt.metrics();
    let steals: u64 = metrics.workers.iter().map(|w| w.steals).sum();
    let attempts: u64 = metrics.workers.iter().map(|w| w.steal_attempts).sum();
    assert!(steals > 0, "{metrics:?}");
    assert!(attempts >= 1);
    assert!(
        metrics.workers.iter().all(|w| w.fibers_run > 0),
        "both workers ran fibers: {metrics:?}"
    );
}

#[test]
fn parks_and_pool_figures_are_reported() {
    let rt = Arc::new(Builder::new().workers(2).build().unwrap());
    rt.block_on(|| spindle::time::sleep(Duration::from_millis(20)));
    // block_on's fiber stops counting as live a moment after it completes.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while rt.live_fibers() != 0 {
        assert!(std::time::Instant::now() < deadline);
        std::thread::yield_now();
    }
    let metrics = rt.metrics();
    assert!(
        metrics.workers.iter().map(|w| w.parks).sum::<u64>() > 0,
        "idle workers parked"
    );
    assert!(
        metrics
            .workers
            .iter()
            .map(|w| w.time_parked)
            .sum::<Duration>()
            > Duration::ZERO
    );
    assert_eq!(metrics.live_fibers, 0);
    assert_eq!(metrics.timers_pending, 0);
    assert!(metrics.mappings > 0);
    assert_eq!(metrics.stacks.in_use, 0);
}
