//! Structured concurrency with `spindle::scope`: a fan-out whose fibers
//! borrow the caller's data (a slice of numbers, and one slot each of a
//! results vector), then the same fan-out with one fiber that panics: its
//! siblings, parked in a long sleep, are cancelled (their destructors
//! run), and the scope re-raises the panic once all of them have finished.
//!
//! Prints the per-chunk sums, then which siblings were cancelled and the
//! panic the scope re-raised.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Says, as it is dropped, that its fiber unwound.
struct Noisy<'a>(usize, &'a AtomicUsize);

impl Drop for Noisy<'_> {
    fn drop(&mut self) {
        if spindle::is_cancelled() {
            println!("  fiber {} cancelled", self.0);
            self.1.fetch_add(1, Ordering::SeqCst);
        }
    }
}

pub fn main() {
    let numbers: Vec<u64> = (1..=1_000).collect();
    let mut sums = vec![0u64; 4];
    spindle::scope(|s| {
        for (chunk, sum) in numbers.chunks(250).zip(sums.iter_mut()) {
            s.spawn(move || *sum = chunk.iter().sum());
        }
    });
    println!(
        "sums of four chunks: {sums:?} (total {})",
        sums.iter().sum::<u64>()
    );

    let cancelled = AtomicUsize::new(0);
    let started = spindle::sync::Latch::new(3);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        spindle::scope(|s| {
            for i in 0..3 {
                let (cancelled, started) = (&cancelled, &started);
                s.spawn(move || {
                    let _noisy = Noisy(i, cancelled);
                    started.count_down();
                    spindle::time::sleep(Duration::from_secs(3600));
                });
            }
            started.wait();
            s.spawn(|| panic!("fiber 3 found bad input"));
        })
    }));
    let payload = outcome.expect_err("the scope re-raises the panic");
    assert_eq!(
        cancelled.load(Ordering::SeqCst),
        3,
        "every sibling was cancelled"
    );
    println!(
        "{} siblings cancelled; the scope re-raised: {:?}",
        cancelled.load(Ordering::SeqCst),
        payload.downcast_ref::<&str>().unwrap()
    );
}
