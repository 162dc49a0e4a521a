//! Blocking calls without stalling other fibers: [`blocking`] runs a
//! closure on a pool of OS threads while the calling fiber parks.
//!
//! A fiber that makes a blocking system call (a disk read, `getaddrinfo`, a
//! `sleep`) holds its worker thread for the whole call, and every fiber
//! queued behind it waits. `blocking(|| ..)` hands the call to a thread of
//! the runtime's blocking pool (a `Pool`, `thread_pool.rs`, made at the
//! first call) instead; the worker runs other fibers meanwhile and the
//! caller is woken when the result is in. On a plain thread it simply runs
//! the closure.
//!
//! The closure may borrow from the caller's stack, because the caller never
//! leaves `blocking` before the closure has finished: not even when the
//! waiting fiber is cancelled (`JoinHandle::cancel`) or the runtime shuts
//! down and unwinds it (the unwind is caught, the wait completes, then the
//! unwind resumes). A cancelled `blocking` call therefore takes as long as
//! its closure: the closure itself is never interrupted.
//!
//! A raw blocking call nobody wrapped in `blocking` is rescued too, later
//! and at a higher price: the monitor sees the worker held and hands its
//! queued fibers to a spare worker thread (`scheduler/handoff.rs`), and
//! reports the episode. `blocking` is the cheap, explicit way: several
//! times faster than raw calls handed off on `cargo bench --bench
//! blocking` (figures in `docs/decisions.md`, "blocking over the
//! hand-off").

use std::any::Any;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::fiber::waiter::Waiter;
use crate::lock::MutexExt;
use crate::thread_pool::Job;

/// Where a pool thread leaves a job's outcome for the waiting fiber.
struct ResultSlot<T> {
    result: Mutex<Option<std::thread::Result<T>>>,
    /// Set (Release) after `result` is written; read (Acquire) by the fiber.
    done: AtomicBool,
    waiter: Waiter,
}

/// Runs `f` on the runtime's blocking pool while the calling fiber parks,
/// and returns its result; a panic in `f` resumes in the caller. Called on
/// a plain thread (outside fibers, or on a pool thread: `blocking` inside
/// `blocking`), it runs `f` right there.
///
/// ```
/// let rt = spindle::Runtime::new().unwrap();
/// let path = std::env::temp_dir();
/// let listed = rt.block_on(|| {
///     // The directory scan runs on a pool thread; this fiber's worker runs
///     // other fibers meanwhile. The closure may borrow `path`.
///     spindle::blocking(|| std::fs::read_dir(&path).map(|entries| entries.count()))
/// });
/// assert!(listed.is_ok());
/// ```
pub fn blocking<'a, F, T>(f: F) -> T
where
    F: FnOnce() -> T + Send + 'a,
    T: Send + 'a,
{
    let Some(fiber) = crate::fiber::try_current() else {
        return f();
    };
    let slot = Arc::new(ResultSlot {
        result: Mutex::new(None),
        done: AtomicBool::new(false),
        waiter: Waiter::Fiber(fiber.clone()),
    });
    let pool_slot = slot.clone();
    let job: Box<dyn FnOnce() + Send + 'a> = Box::new(move || {
        let outcome = catch_unwind(AssertUnwindSafe(f));
        *pool_slot.result.lock_unpoisoned() = Some(outcome);
        // Release: `result` is written before `done` is seen.
        pool_slot.done.store(true, Ordering::Release);
        pool_slot.waiter.wake();
    });
    // SAFETY: only the lifetime changes, and the job touches no `'a` data
    // once this function has returned or unwound out of it. The job uses
    // `f` (and what `f` borrows) only inside `catch_unwind`; after it sets
    // `done` (Release) it only unparks `waiter` (a `'static` handle) and
    // drops its `Arc` of the slot. This function leaves only after seeing
    // `done` (Acquire): the wait below completes even if the fiber is
    // unwound (the unwind is caught, the wait finished, then the unwind
    // resumed), and a job the pool could not take runs here, before the
    // wait. And before leaving, either way, it takes the outcome (a `T`,
    // which may borrow `'a` data) out of the slot, so the job's drop of
    // the slot never drops a `T`.
    let job: Job = unsafe { std::mem::transmute::<Box<dyn FnOnce() + Send + 'a>, Job>(job) };
    if let Some(job) = fiber.inner.shared.blocking_pool().submit(job) {
        job(); // no pool thread could be started: run it in place
    }
    let waited = catch_unwind(AssertUnwindSafe(|| {
        while !slot.done.load(Ordering::Acquire) {
            crate::park();
        }
    }));
    if let Err(unwind) = waited {
        // Cancelled: finish waiting (an ordinary park now that the unwind
        // is under way, which the job's end unparks), then carry on
        // unwinding.
        while !slot.done.load(Ordering::Acquire) {
            crate::park();
            std::thread::yield_now();
        }
        // Dropped here, while what it may borrow is alive (see SAFETY).
        drop(slot.result.lock_unpoisoned().take());
        resume_unwind(unwind);
    }
    let outcome = slot
        .result
        .lock_unpoisoned()
        .take()
        .expect("a finished job left its result");
    match outcome {
        Ok(value) => value,
        Err(panic) => resume_unwind(panic as Box<dyn Any + Send>),
    }
}
