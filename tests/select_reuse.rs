//! One select reused for many waits allocates nothing per wait: its node,
//! its scratch space and its arms are kept between waits, and every arm
//! deregisters what it registered. Counted with a global allocator, so
//! this file holds this one test (other tests in the binary would add
//! their allocations to the count).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::within;
use spindle::sync::{mpsc, Latch, Select};
use spindle::Builder;

/// The system allocator, counting allocations.
struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// 10,000 waits of one select over a receive arm (half the waits park for
/// the message), a join arm on a fiber that does not finish, and a timeout
/// arm: fewer allocations in all than a tenth of the waits (an allocation
/// per wait, or a registration left behind that grows a queue, would
/// count at least one per wait).
#[test]
fn a_reused_select_allocates_nothing_per_wait() {
    const WAITS: usize = 10_000;
    let rt = Builder::new().workers(2).build().unwrap();
    let counted = within(Duration::from_secs(300), move || {
        rt.block_on(|| {
            let (tx, rx) = mpsc::sync_channel::<usize>(0);
            let producer = spindle::spawn(move || {
                for i in 0..WAITS * 2 {
                    if i % 2 == 0 {
                        spindle::yield_now(); // the select parks first
                    }
                    tx.send(i).unwrap();
                }
            });
            let release = Arc::new(Latch::new(1));
            let mut sleeper = {
                let release = release.clone();
                spindle::spawn(move || release.wait())
            };
            let mut select = Select::new()
                .recv(&rx, |m| m.unwrap())
                .join(&mut sleeper, || usize::MAX)
                .timeout(Duration::from_secs(3600), || usize::MAX);
            // Warm up: the first waits grow the scratch space and the
            // channel's queues to their working size.
            for expected in 0..WAITS {
                assert_eq!(select.wait(), expected);
            }
            let before = ALLOCATIONS.load(Ordering::Relaxed);
            for expected in WAITS..WAITS * 2 {
                assert_eq!(select.wait(), expected);
            }
            let counted = ALLOCATIONS.load(Ordering::Relaxed) - before;
            drop(select);
            producer.join().unwrap();
            release.count_down();
            sleeper.join().unwrap();
            counted
        })
    });
    assert!(
        counted < WAITS / 10,
        "{counted} allocations in {WAITS} waits of one select"
    );
}
