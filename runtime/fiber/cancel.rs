//! Cancelling one fiber: unwinding its stack so its destructors run, and
//! freezing it instead where an unwind cannot be made safely.
//!
//! # Cancelling
//! [`cancel_slice`] runs one slice of a fiber that is being cancelled, on
//! the calling thread. The first time, it resumes the fiber with
//! `Resume::Cancel`: the fiber's suspended `park` (or `yield_now`) raises
//! the cancellation unwind, a `Cancelled` payload through
//! `resume_unwind`, so no panic hook runs, caught at the fiber's root,
//! where it becomes `JoinError::is_cancelled`. A fiber that never started
//! is started with `Resume::Cancel`: its closure is dropped on its own
//! stack. Once the unwind is raised (`FiberInner::cancelling`), the fiber
//! is an ordinary fiber again to whoever runs it: a destructor that parks
//! really parks, and its runner resumes it with `Resume::Run` once it is
//! unparked. Only timed waits differ: where no timer can run (the shutdown
//! pass), they time out at once (`time/timer.rs`).
//!
//! The scheduling of cancelled fibers (when to run them, how long to wait
//! for the parked ones) is the caller's: the shutdown pass in
//! `scheduler/shutdown.rs`.
//!
//! # Freezing
//! Two things would make an unwind abort the whole process:
//! - **Too little stack.** A fiber parked deep in its stack may have too
//!   little left below the park point for the unwinder itself; overflowing
//!   the guard page aborts. So before raising the unwind, the fiber
//!   measures what is left; below [`UNWIND_STACK_NEEDED`] it does not
//!   unwind.
//! - **A destructor that panics during the unwind.** Rust then panics
//!   again, with a panic that cannot unwind ("panic in a destructor during
//!   cleanup"), and aborts once the panic hook returns. The runtime's panic
//!   hook (`sys/panic.rs`, installed once per process in front of the
//!   previous hook) recognises that panic in a fiber being cancelled on a
//!   thread that allows it ([`FreezeHere`]) and does not return. Every
//!   other panic of such a fiber goes to the previous hook, run on the
//!   cancelling thread's stack: std's default hook prints a full backtrace
//!   for a panic raised during an unwind, which a fiber parked deep may
//!   not have the stack for.
//!
//! In both cases the fiber *freezes*: it suspends with `Suspend::Freeze`
//! and is never resumed. Its runner hands it to [`freeze`], which completes
//! its joiner (`JoinError::is_cancelled`), marks it DONE, and leaks it: the
//! coroutine is never dropped (corosensei would force-unwind it), its stack
//! never goes back to the pool, and the `FiberInner` is never freed, which
//! keeps its runtime's stack memory mapped for the frames it left (a
//! `blocking` call may still be using them). Values on its stack are never
//! dropped: a lock it held stays held. [`freeze`] also takes fibers that
//! its caller gives up on (parked past a grace period), without resuming
//! them. Each frozen fiber is reported ([`FrozenFiber`]).
//!
//! A freeze inside the panic hook leaves its thread unusable: std's
//! per-thread panic count stays raised and the thread is marked as inside
//! the hook, so any later panic on it aborts. The shutdown pass therefore
//! runs on a thread of its own and leaves that thread after such a freeze.
//! And the hook's global lock stays read-locked by the frozen frame, so a
//! later `std::panic::set_hook` or `take_hook` blocks forever: the price of
//! not aborting, documented on `ShutdownReport`.
//!
//! Rejected: unwinding on a fresh, larger stack (the unwinder must walk the
//! fiber's own frames, in place); `catch_unwind` around each destructor
//! (the compiler's cleanup code calls them, not ours); forcing the
//! coroutine to return (corosensei's `force_reset` skips every destructor
//! and then reuses a stack whose frames may still be pointed to).

use std::cell::Cell;
use std::panic::{Location, PanicHookInfo};
use std::sync::Arc;

use super::context::{self, Resume, Suspend};
use super::join::{Cancelled, JoinError};
use super::stack::StackCache;
use super::{current_ptr, slice, FiberId, FiberInner, CURRENT};
use crate::sys::panic::Hook;

/// Stack a fiber must have left below the point where its cancellation
/// unwind starts; with less it is frozen, not unwound. Measured: a park and
/// the unwind out of it through a dozen frames with destructors (or with a
/// destructor that panics) touch a third of this (`docs/decisions.md`,
/// "UNWIND_STACK_NEEDED"); the rest is for the user's destructors.
pub const UNWIND_STACK_NEEDED: usize = 16 * 1024;

/// The message of the panic that std raises, and cannot unwind, when a
/// destructor panics during an unwind (`core::panicking::panic_in_cleanup`).
const PANIC_IN_CLEANUP: &str = "panic in a destructor during cleanup";

/// Why a fiber was frozen instead of unwound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FreezeReason {
    /// Too little stack was left below its park point for an unwind.
    StackLow {
        /// Bytes left between the park point and the guard page.
        left: usize,
        /// What an unwind needs ([`UNWIND_STACK_NEEDED`]).
        needed: usize,
    },
    /// A destructor panicked while the fiber was unwound (Rust aborts the
    /// process there; the runtime's panic hook froze the fiber instead).
    DestructorPanicked,
    /// It was still waiting (parked, or yielding) in a destructor when the
    /// shutdown's grace period ran out (`Builder::shutdown_grace`).
    StillWaiting,
}

impl std::fmt::Display for FreezeReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FreezeReason::StackLow { left, needed } => write!(
                f,
                "{left} bytes of stack were left below its park point, an unwind needs {needed}"
            ),
            FreezeReason::DestructorPanicked => {
                f.write_str("a destructor panicked while it was unwound")
            }
            FreezeReason::StillWaiting => {
                f.write_str("it was still waiting in a destructor when the grace period ran out")
            }
        }
    }
}

/// A fiber that shutdown could not unwind and froze instead: it will never
/// run again, its stack is left as it was (the values on it are never
/// dropped), and its joiner got `JoinError::is_cancelled`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrozenFiber {
    /// Its id.
    pub id: FiberId,
    /// Its name, if it was given one.
    pub name: Option<String>,
    /// The spawn call that made it.
    pub spawned_at: &'static Location<'static>,
    /// Why it was frozen.
    pub reason: FreezeReason,
}

impl std::fmt::Display for FrozenFiber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "fiber {}{} (spawned at {}) was frozen, not unwound: {}",
            self.id,
            super::fault::NameSuffix(self.name.as_deref()),
            self.spawned_at,
            self.reason
        )
    }
}

/// How one cancelling slice ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// The fiber finished (unwound to its root, or its closure dropped);
    /// its stack is released and it is DONE.
    Finished,
    /// A destructor yielded (state: RUNNING).
    Yielded,
    /// A destructor parked (state: RUNNING); the caller runs `finish_park`.
    Parked,
    /// The fiber froze (state: RUNNING); the caller hands it to [`freeze`].
    /// After `DestructorPanicked`, the calling thread may not panic again:
    /// the caller leaves it.
    Frozen(FreezeReason),
}

/// Runs one slice of a fiber being cancelled, on the calling thread, which
/// holds it RUNNING (`State::begin_run`): raises the cancellation unwind in
/// it the first time (module docs), lets it carry on after that.
pub(crate) fn cancel_slice(fiber: &Arc<FiberInner>, cache: &mut StackCache) -> Step {
    // The runner holds the fiber RUNNING, which lets it read the flag the
    // fiber's own code writes (on this same thread, in its last slice).
    let input = if fiber.cancelling.get() {
        Resume::Run
    } else {
        Resume::Cancel
    };
    match slice(
        fiber,
        input,
        cache,
        &std::sync::atomic::AtomicBool::new(false),
    ) {
        None => Step::Finished,
        Some(Suspend::Yield) => Step::Yielded,
        Some(Suspend::Park) => Step::Parked,
        Some(Suspend::Freeze) => Step::Frozen(
            FREEZING
                .with(Cell::take)
                .expect("a fiber that froze left its reason"),
        ),
    }
}

/// Gives up on a fiber for good, without resuming it: completes its joiner
/// with `JoinError::is_cancelled` (unless it completed already), marks it
/// DONE and leaks it (module docs, "Freezing"). The caller holds it RUNNING,
/// with its scheduling reference, which this takes.
pub(crate) fn freeze(fiber: Arc<FiberInner>, reason: FreezeReason) -> FrozenFiber {
    if !fiber.completion.is_done() {
        // A JoinError: no user code to drop.
        drop(fiber.completion.complete(Err(JoinError::cancelled())));
    }
    fiber.state.finish();
    let frozen = FrozenFiber {
        id: fiber.id,
        name: fiber.name().map(str::to_owned),
        spawned_at: fiber.location,
        reason,
    };
    // The fiber's frames, its stack and its runtime's stack memory stay as
    // they are for good; its slot registry cell keeps pointing at it (a
    // fiber that is DONE to anyone who looks).
    std::mem::forget(fiber);
    frozen
}

/// Raises the cancellation unwind in the running fiber, which has just
/// been resumed with `Resume::Cancel` (`fiber::suspend`), or freezes it if
/// too little stack is left for the unwind. Never returns.
#[cold]
#[inline(never)]
pub(super) fn raise(fiber: &FiberInner) -> ! {
    let left = stack_left();
    if left < UNWIND_STACK_NEEDED {
        freeze_here(
            fiber,
            FreezeReason::StackLow {
                left,
                needed: UNWIND_STACK_NEEDED,
            },
        );
    }
    // Not a panic: no hook prints it. Caught at the fiber's root, it
    // becomes `JoinError::is_cancelled`.
    std::panic::resume_unwind(Box::new(Cancelled))
}

/// Bytes of stack left below the caller's frame, above the running
/// fiber's guard page.
#[inline(never)]
fn stack_left() -> usize {
    let marker = 0u8;
    let here = std::ptr::addr_of!(marker) as usize;
    let guard = CURRENT.with(|c| c.get().guard);
    here.saturating_sub(guard + crate::sys::memory::page_size())
}

/// Suspends the running fiber for good (module docs, "Freezing"), leaving
/// the reason to its runner, which runs on this same thread.
fn freeze_here(fiber: &FiberInner, reason: FreezeReason) -> ! {
    FREEZING.with(|freezing| freezing.set(Some(reason)));
    loop {
        // SAFETY: `fiber` runs on this thread; its yielder was set at its
        // start and lives on its stack. Its runner never resumes it again.
        unsafe { context::suspend(fiber.yielder.get(), Suspend::Freeze) };
    }
}

thread_local! {
    /// Why the fiber that has just suspended with `Suspend::Freeze` on this
    /// thread froze: set by the fiber, taken by its runner after the switch.
    static FREEZING: Cell<Option<FreezeReason>> = const { Cell::new(None) };

    /// Whether fibers run by this thread may freeze inside the panic hook
    /// (the thread is then left for good): set by the shutdown pass's
    /// threads only ([`FreezeHere`]).
    static MAY_FREEZE_IN_HOOK: Cell<bool> = const { Cell::new(false) };
}

/// Lets fibers that the calling thread cancels freeze inside the panic
/// hook, while it is held: the thread must be one that can be left for
/// good after such a freeze.
pub(crate) struct FreezeHere(());

impl FreezeHere {
    pub(crate) fn enable() -> FreezeHere {
        MAY_FREEZE_IN_HOOK.with(|allowed| allowed.set(true));
        FreezeHere(())
    }
}

impl Drop for FreezeHere {
    fn drop(&mut self) {
        MAY_FREEZE_IN_HOOK.with(|allowed| allowed.set(false));
    }
}

/// A panic's message, if it is a string (`PanicHookInfo::payload_as_str`,
/// which is newer than this crate's minimum Rust).
fn panic_message<'a>(info: &'a PanicHookInfo<'_>) -> Option<&'a str> {
    let payload = info.payload();
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
}

/// The runtime's part of the process's panic hook (`sys/panic.rs`). In a
/// fiber being cancelled on a thread that allows it ([`FreezeHere`]), a
/// panic that cannot unwind because a destructor panicked during the
/// unwind freezes the fiber instead of letting the process abort, and any
/// other panic goes to the previous hook on the cancelling thread's stack:
/// std's default hook prints a full backtrace for a panic raised during an
/// unwind, which takes more stack than a fiber parked deep may have left.
/// Anywhere else the panic goes to the previous hook, here.
pub(crate) fn intercept_panic(info: &PanicHookInfo<'_>, previous: &Hook) {
    let fiber = current_ptr();
    if !MAY_FREEZE_IN_HOOK.with(Cell::get) || fiber.is_null() {
        return previous(info);
    }
    // SAFETY: the fiber runs on this thread (it is the one panicking).
    let fiber = unsafe { &*fiber };
    if !fiber.cancelling.get() {
        return previous(info);
    }
    if panic_message(info) == Some(PANIC_IN_CLEANUP) {
        freeze_here(fiber, FreezeReason::DestructorPanicked);
    }
    // SAFETY: the yielder is the running fiber's; the closure holds only
    // the panic and the previous hook.
    unsafe { context::on_parent_stack(fiber.yielder.get(), || previous(info)) };
}

#[cfg(test)]
mod tests {
    //! How much stack an unwind needs, measured by painting: a fiber fills
    //! the free part of its stack below its frame with a pattern, parks,
    //! and is cancelled; the lowest byte no longer holding the pattern is
    //! the deepest the park, the unwind and what ran in it went. Each
    //! measurement runs in a child process (this binary again), alone, so
    //! that nothing else uses the stack, and the panicking case's freeze
    //! leaves nobody else's panic hook locked.

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::super::CURRENT;
    use super::*;
    use crate::sync::Latch;

    const PAINT: u8 = 0xA5;

    /// Where the fiber's stack starts (above the guard) and where the
    /// fiber's deepest own frame was, for the scan.
    static LIMIT: AtomicUsize = AtomicUsize::new(0);
    static DEEPEST: AtomicUsize = AtomicUsize::new(0);

    struct Noisy(u64);
    impl Drop for Noisy {
        fn drop(&mut self) {
            std::hint::black_box(self.0);
        }
    }

    struct Bomb;
    impl Drop for Bomb {
        fn drop(&mut self) {
            panic!("a destructor panics during the unwind");
        }
    }

    /// Paints the stack from well below this frame down to the guard page.
    #[inline(never)]
    fn paint_below() {
        let marker = 0u8;
        let here = std::ptr::addr_of!(marker) as usize;
        let limit = CURRENT.with(|c| c.get().guard) + crate::sys::memory::page_size();
        let top = here - 1024;
        // SAFETY: [limit, top) is this fiber's own stack, below every live
        // frame (with room for the call to write_bytes itself).
        unsafe { std::ptr::write_bytes(limit as *mut u8, PAINT, top - limit) };
        LIMIT.store(limit, Ordering::SeqCst);
    }

    /// Twelve frames with a destructor each, then paint, then park.
    #[inline(never)]
    fn deep(depth: u64, parked: &Latch, never: &Latch, bomb: bool) {
        let _noisy = Noisy(depth);
        if depth == 0 {
            let _bomb = bomb.then(|| Bomb);
            let marker = 0u8;
            DEEPEST.store(std::ptr::addr_of!(marker) as usize, Ordering::SeqCst);
            paint_below();
            parked.count_down();
            never.wait();
        } else {
            deep(depth - 1, parked, never, bomb);
        }
    }

    /// In the child: parks a painted fiber, shuts down, prints what the
    /// unwind used below the fiber's deepest frame.
    fn measure(bomb: bool) {
        let rt = crate::Builder::new().workers(1).build().unwrap();
        // Keeps the stack memory mapped after the runtime has gone.
        let shared = rt.shared().clone();
        let (parked, never) = (Arc::new(Latch::new(1)), Arc::new(Latch::new(1)));
        let (parked2, never2) = (parked.clone(), never.clone());
        let _fiber = rt.spawn(move || deep(12, &parked2, &never2, bomb));
        parked.wait();
        let report = rt.shutdown();
        assert_eq!(report.frozen.len(), usize::from(bomb), "{report:?}");
        let limit = LIMIT.load(Ordering::SeqCst);
        let deepest = DEEPEST.load(Ordering::SeqCst);
        let mut lowest = limit;
        // SAFETY: the fiber's stack, still mapped (`shared` holds the pool).
        while unsafe { *(lowest as *const u8) } == PAINT {
            lowest += 1;
        }
        println!("MEASURED {}", deepest - lowest);
        drop(shared);
        if bomb {
            // The frozen fiber holds std's panic-hook lock (module docs),
            // which the test harness takes as it ends: leave first.
            std::process::exit(0);
        }
    }

    /// Runs `case` in a child, with std's backtraces on panics on or off.
    fn run_measurement(case: &str, backtrace: &str) -> usize {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "fiber::cancel::tests::an_unwind_needs_well_under_the_reserve",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("SPINDLE_TEST_UNWIND_CASE", case)
            .env("RUST_BACKTRACE", backtrace)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        while child.try_wait().unwrap().is_none() {
            if started.elapsed() > std::time::Duration::from_secs(60) {
                child.kill().unwrap();
                panic!("{case}: hung");
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let output = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{case}: {stdout}\n{stderr}");
        stdout
            .lines()
            .find_map(|line| line.split("MEASURED ").nth(1))
            .and_then(|figure| figure.split_whitespace().next())
            .unwrap_or_else(|| panic!("{case}: no figure in {stdout}"))
            .parse()
            .unwrap()
    }

    /// The figures behind [`UNWIND_STACK_NEEDED`] (`docs/decisions.md`):
    /// `cargo test --lib an_unwind_needs -- --nocapture` prints them.
    #[test]
    fn an_unwind_needs_well_under_the_reserve() {
        match std::env::var("SPINDLE_TEST_UNWIND_CASE").as_deref() {
            Ok("unwind") => return measure(false),
            Ok("panic") => return measure(true),
            _ => {}
        }
        let unwind = run_measurement("unwind", "0");
        let panic = run_measurement("panic", "0");
        let panic_with_backtrace = run_measurement("panic", "1");
        println!(
            "below the deepest frame: park + cancellation unwind {unwind} bytes; \
             with a destructor panicking in it {panic} bytes ({panic_with_backtrace} with \
             RUST_BACKTRACE=1); reserve {UNWIND_STACK_NEEDED}"
        );
        assert!(unwind.max(panic) * 2 <= UNWIND_STACK_NEEDED);
    }
}
