//! A million live fibers under the kernel's default mapping limit.
//!
//! Its own test binary, so its ~4.5 GB peak and its memory mappings are not
//! shared with other tests.

mod common;

use std::sync::Arc;
use std::time::Duration;

use spindle::sync::Latch;

#[test]
fn a_million_live_fibers_fit_under_the_stock_mapping_limit() {
    const FIBERS: usize = 1_000_000;
    let max_map_count: usize = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let rt = spindle::Builder::new().workers(2).build().unwrap();
    let (peak_maps, live, in_use) = common::within(Duration::from_secs(600), move || {
        let started = Arc::new(Latch::new(FIBERS));
        let release = Arc::new(Latch::new(1));
        let (started2, release2) = (started.clone(), release.clone());
        let handles = rt.block_on(move || {
            (0..FIBERS)
                .map(|_| {
                    let (started, release) = (started2.clone(), release2.clone());
                    spindle::spawn(move || {
                        started.count_down();
                        release.wait();
                    })
                })
                .collect::<Vec<_>>()
        });
        started.wait();
        let peak = (
            spindle::os::map_count(),
            rt.live_fibers(),
            rt.stack_stats().in_use,
        );
        release.count_down();
        for handle in handles {
            handle.join().unwrap();
        }
        // A fiber stops counting as live just after its joiner can see its
        // result (once its stack is back in the pool): allow it a moment.
        while rt.live_fibers() != 0 {
            std::thread::yield_now();
        }
        peak
    });
    // The spawning fiber (block_on's) may still be counted for a moment.
    assert!(
        (FIBERS..=FIBERS + 1).contains(&live),
        "all fibers alive at once: {live}"
    );
    assert_eq!(in_use, FIBERS, "each on its own stack");
    assert!(peak_maps < 1_000, "{peak_maps} mappings held at peak");
    assert!(peak_maps < max_map_count);
}
