//! What a std user looks for: `len`/`capacity` on every channel kind,
//! `Fiber::stack_size`, `park_timeout` at the crate root beside `park`,
//! a `JoinError`'s payload as std gives it, and the one way to add
//! semaphore permits.

mod common;

use std::time::{Duration, Instant};

use common::within;
use spindle::sync::{mpsc, Semaphore};
use spindle::{Builder, JoinError, DEFAULT_STACK_SIZE};

const HANG: Duration = Duration::from_secs(300);

#[test]
fn len_and_capacity_on_every_channel_kind() {
    let rt = Builder::new().workers(2).build().unwrap();
    within(HANG, move || {
        // Unbounded.
        let (tx, rx) = mpsc::channel();
        assert_eq!((tx.capacity(), rx.capacity()), (None, None));
        for i in 0..5 {
            tx.send(i).unwrap();
        }
        assert_eq!((tx.len(), rx.len()), (5, 5));
        rx.recv().unwrap();
        assert_eq!(rx.len(), 4);
        assert!(!rx.is_empty());
        // Bounded: full at its capacity; a waiting sender is not counted.
        let (tx, rx) = mpsc::sync_channel(2);
        assert_eq!((tx.capacity(), rx.capacity()), (Some(2), Some(2)));
        tx.send(1).unwrap();
        tx.send(2).unwrap();
        let blocked = {
            let tx = tx.clone();
            rt.spawn(move || tx.send(3).unwrap())
        };
        std::thread::sleep(Duration::from_millis(10));
        assert_eq!(rx.len(), 2);
        assert_eq!(rx.recv(), Ok(1)); // the waiting message moves in
        blocked.join().unwrap();
        assert_eq!(tx.len(), 2);
        // Rendezvous: never holds a message.
        let (tx, rx) = mpsc::sync_channel(0);
        assert_eq!(rx.capacity(), Some(0));
        let sender = rt.spawn(move || tx.send(7).unwrap());
        std::thread::sleep(Duration::from_millis(10));
        assert_eq!(rx.len(), 0);
        assert!(rx.is_empty());
        assert_eq!(rx.recv(), Ok(7));
        sender.join().unwrap();
    });
}

#[test]
fn fiber_stack_size_for_default_and_custom_sizes() {
    let rt = Builder::new().workers(2).build().unwrap();
    let page = 4096;
    let default = rt.spawn(|| spindle::current().stack_size());
    assert_eq!(default.join().unwrap(), DEFAULT_STACK_SIZE);
    for asked in [100 * 1024, 256 * 1024, 1024 * 1024 + 1] {
        let fiber = spindle::fiber::Builder::new()
            .stack_size(asked)
            .spawn_on(&rt, || spindle::current().stack_size())
            .unwrap();
        // Known from the handle too, before or after it runs.
        let from_handle = fiber.fiber().stack_size();
        let inside = fiber.join().unwrap();
        assert_eq!(inside, from_handle);
        assert!(inside >= asked && inside < asked + page && inside % page == 0);
    }
    // A runtime with another default.
    let small = Builder::new().stack_size(32 * 1024).build().unwrap();
    let size = small
        .spawn(|| spindle::current().stack_size())
        .join()
        .unwrap();
    assert_eq!(size, 32 * 1024);
}

#[test]
fn park_timeout_lives_at_the_crate_root_too() {
    let rt = Builder::new().workers(1).build().unwrap();
    within(HANG, move || {
        let same: fn(Duration) = spindle::park_timeout;
        let also: fn(Duration) = spindle::time::park_timeout;
        assert!(std::ptr::fn_addr_eq(same, also), "two different functions");
        rt.block_on(|| {
            let start = Instant::now();
            spindle::park_timeout(Duration::from_millis(5));
            assert!(start.elapsed() >= Duration::from_millis(5));
        });
        let start = Instant::now();
        spindle::park_timeout(Duration::from_millis(5)); // a plain thread
        assert!(start.elapsed() >= Duration::from_millis(5));
    });
}

#[test]
fn a_join_error_gives_its_payload_as_std_does() {
    let rt = Builder::new().workers(1).build().unwrap();
    let error = rt
        .spawn(|| std::panic::panic_any(5_i64))
        .join()
        .unwrap_err();
    assert_eq!(
        error.panic_payload().and_then(|p| p.downcast_ref::<i64>()),
        Some(&5)
    );
    // std's `thread::Result`: the payload is the error.
    let result: std::thread::Result<()> = rt
        .spawn(|| panic!("boom"))
        .join()
        .map_err(JoinError::into_panic);
    assert_eq!(result.unwrap_err().downcast_ref::<&str>(), Some(&"boom"));
}

#[test]
fn semaphore_release_is_the_one_way_to_add_permits() {
    let semaphore = Semaphore::new(0);
    semaphore.release(3);
    assert_eq!(semaphore.available_permits(), 3);
    let permit = semaphore.acquire_many(3);
    permit.forget();
    semaphore.release(1);
    assert_eq!(semaphore.available_permits(), 1);
}
