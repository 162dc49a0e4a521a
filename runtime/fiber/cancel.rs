//! Cancelling one fiber: unwinding its stack so its destructors run, and
//! freezing it instead where an unwind cannot be made safely.
//!
//! Two things cancel a fiber: a request ([`request_cancel`], which
//! `JoinHandle::cancel` calls), taken at the fiber's next cancellation
//! point on whatever worker runs it; and shutdown, which resumes every
//! fiber left with `Resume::Cancel` on a thread of its own. Both raise the
//! same unwind, with the same freeze where it cannot be made.
//!
//! # The unwind
//! The cancellation unwind is a `Cancelled` payload raised through
//! `resume_unwind` ([`raise`]), so no panic hook runs; it is caught at the
//! fiber's root, where it becomes `JoinError::is_cancelled`. Once it is
//! raised (`FiberInner::cancelling`), the fiber is an ordinary fiber again
//! to whoever runs it: a destructor that parks really parks, and is
//! resumed once it is unparked; no wait raises a second unwind. Code that
//! catches the unwind (`catch_unwind`) and carries on has opted out; its
//! waits do not raise again, except where the runtime itself caught it
//! to keep it out of a frame that cannot unwind (a hooked C library
//! call, [`caught`]), which re-arms it.
//!
//! # The request
//! `FiberInner::cancel_requested` is set once, by any thread, and never
//! cleared while the fiber lives; the request then unparks the fiber
//! (an ordinary `unpark`): a parked fiber is scheduled, one running or
//! queued gets the unpark token, so its next park returns at once. The
//! fiber looks at the flag at its **cancellation points**: on its way into
//! every park (`CurrentFiber::take_token`, before the token), when a park
//! returns (`fiber::suspend`), and at every `yield_now`. So a request is
//! never lost: one that lands on a RUNNING fiber takes effect at its next
//! wait; one that races a park either is seen on the way in, or its unpark
//! finds the fiber still RUNNING (the park's `finish_park` then fails and
//! the fiber runs on, to the check after the park) or PARKED (it is
//! scheduled, and checks when resumed).
//!
//! The flag is read and written Relaxed: it carries no data, and whenever
//! the fiber must see it, the unpark that follows the store has published
//! it already (the unpark's AcqRel on the state word pairs with the
//! Acquire by which the fiber's next runner takes it: `begin_run`, or
//! `finish_park`'s failure; a token taken by `take_token` is an Acquire
//! too). A look that misses it only delays the unwind to the next point.
//!
//! A fiber that has not started when its request lands never runs its
//! closure: `fiber_main` finds the flag at its start and only drops the
//! closure, on the fiber's stack, as shutdown does with a fiber that
//! never ran. (Rejected: running it to its first wait, which runs user
//! code that the canceller asked not to run.)
//!
//! Why yields too: a computation that yields now and then, to be fair to
//! the others, can be cancelled without polling [`is_cancelled`], as in
//! Kotlin, where `yield()` checks for cancellation; and the runtime
//! itself never yields where an unwind would break an invariant.
//! Rejected: yields that are not cancellation points, which would leave
//! such a fiber running for good.
//!
//! [`is_cancelled`] is true from the request (or shutdown's `Resume::Cancel`)
//! on, including inside the unwind's destructors: a destructor can tell a
//! wait that will not finish from one that is only slow.
//!
//! # Shields
//! [`shield`] counts its nesting in `FiberInner::shield_depth` (the
//! fiber's own code touches it; a guard lifts it on the way out, by a
//! return or a panic). Inside a shield a cancellation point is an
//! ordinary wait; the request stays, and takes effect at the first
//! cancellation point after the outermost shield. A shielded fiber that
//! shutdown resumes with `Resume::Cancel` records the request and returns
//! from its wait (a spurious wake-up to the wait's loop); the shutdown
//! pass then runs it as it runs a destructor, within the grace period.
//!
//! # What the waits do about it
//! Any wait built on `park` is a cancellation point, so every wait in the
//! crate must be safe to unwind from: it removes what it registered (a
//! wait-list node, a timer, a reactor interest, a join's waiter) and
//! passes on what it was handed and will not use, so that no other party
//! loses a wake-up: a wait list's waiter unwound after a notification
//! wakes the next waiter (`sync/waitlist.rs`); a Mutex waiter handed the
//! lock releases it to the next (`sync/mutex.rs`); a grant's waiter gives
//! back what it was granted (`sync/grant.rs`: semaphore permits, read and
//! write locks); a joiner takes its waiter back (`fiber/join.rs`).
//! `blocking` catches the unwind, waits for its closure to finish (which
//! may borrow the fiber's stack), then resumes it.
//!
//! # Cancelling at shutdown
//! [`cancel_slice`] runs one slice of a fiber that is being cancelled, on
//! the calling thread. The first time, it resumes the fiber with
//! `Resume::Cancel`: the fiber's suspended `park` (or `yield_now`) raises
//! the unwind. A fiber that never started is started with
//! `Resume::Cancel`: its closure is dropped on its own stack. Only timed
//! waits differ from a worker's: where no timer can run (the shutdown
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
//! and is never resumed. (A worker cancels only through requests, and
//! only the first case happens there: on a worker, as in any Rust
//! unwind, a destructor that panics during the unwind aborts. A worker
//! hands the frozen fiber to [`freeze_on_worker`], which reports it on
//! stderr and counts it in `Metrics::frozen_fibers`.) Its runner hands it
//! to [`freeze`], which completes
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
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use super::context::{self, Resume, Suspend};
use super::join::{Cancelled, JoinError};
use super::stack::StackCache;
use super::state::Unparked;
use super::{current_ptr, slice, CurrentFiber, FiberId, FiberInner, CURRENT};
use crate::scheduler::Shared;
use crate::sys::panic::Hook;

/// Requests cancellation of `fiber` (`JoinHandle::cancel`, and the
/// runtime's own users: a scope cancelling its fibers): sets its request
/// and unparks it, so that a parked fiber wakes to unwind and a running
/// one unwinds at its next cancellation point (module docs, "The
/// request"). A no-op on a fiber already requested or finished. Any
/// thread.
pub(crate) fn request_cancel(fiber: &Arc<FiberInner>) {
    // Relaxed (module docs, "The request"): the unpark below publishes it.
    if fiber.completion.is_done() || fiber.cancel_requested.swap(true, Ordering::Relaxed) {
        return;
    }
    if fiber.state.unpark() == Unparked::MustSchedule {
        // ("Ownership" on FiberInner.)
        // SAFETY: we won PARKED → SCHEDULED, so the scheduling reference
        // the parked fiber holds is ours to take.
        let scheduling_reference = unsafe { Arc::from_raw(Arc::as_ptr(fiber)) };
        Shared::schedule(scheduling_reference);
    }
}

/// A cancellation point of the running `fiber` (its own code calls it, on
/// its way into a park or a yield and when a park returns): raises the
/// cancellation unwind if one was requested, the fiber is not inside a
/// shield, and no unwind is under way already.
#[inline]
pub(super) fn cancellation_point(fiber: &FiberInner) {
    // Relaxed (module docs, "The request").
    if fiber.cancel_requested.load(Ordering::Relaxed) {
        raise_requested(fiber);
    }
}

#[cold]
#[inline(never)]
fn raise_requested(fiber: &FiberInner) {
    if fiber.shield_depth.get() == 0 && !fiber.cancelling.replace(true) {
        raise(fiber);
    }
}

/// The running `fiber` was resumed with `Resume::Cancel` (shutdown):
/// raises the unwind, once; inside a shield it only records the request,
/// which takes effect at the first wait after the shield.
pub(super) fn on_shutdown_cancel(fiber: &FiberInner) {
    // Relaxed: the fiber's own store, read by its own code (and by
    // `is_cancelled`, which needs no more).
    fiber.cancel_requested.store(true, Ordering::Relaxed);
    cancellation_point(fiber);
}

/// A cancellation unwind was caught before it could leave a frame that
/// cannot unwind (a hooked C library call, which reports `ECANCELED`
/// instead) or must not (a scope's wait for its fibers): the fiber is no
/// longer unwinding, and the unwind is raised again at its next
/// cancellation point.
pub(crate) fn caught(fiber: CurrentFiber) {
    fiber.inner().cancelling.set(false);
}

/// Whether cancellation has been requested for the calling fiber
/// (`JoinHandle::cancel`, or the runtime shutting down while the fiber
/// is suspended); false on a plain thread. It stays true once set, also
/// inside the destructors that the cancellation unwind runs and inside a
/// [`shield`], so code can tell a wait that will not finish from one
/// that is only slow. A long computation that never waits can poll it.
///
/// ```
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::sync::Arc;
///
/// /// Records, as it is dropped, whether its fiber was being cancelled.
/// struct Witness(Arc<AtomicBool>);
/// impl Drop for Witness {
///     fn drop(&mut self) {
///         self.0.store(spindle::is_cancelled(), Ordering::SeqCst);
///     }
/// }
///
/// let rt = spindle::Runtime::new().unwrap();
/// rt.block_on(|| {
///     assert!(!spindle::is_cancelled());
///     let (seen, started) = (Arc::new(AtomicBool::new(false)), Arc::new(spindle::sync::Latch::new(1)));
///     let (witness, running) = (Witness(seen.clone()), started.clone());
///     let fiber = spindle::spawn(move || {
///         let _witness = witness;
///         running.count_down();
///         spindle::time::sleep(std::time::Duration::from_secs(60)); // unwinds from here
///     });
///     started.wait();
///     fiber.cancel();
///     assert!(fiber.join().unwrap_err().is_cancelled());
///     assert!(seen.load(Ordering::SeqCst), "true inside the unwind's destructors");
/// });
/// ```
pub fn is_cancelled() -> bool {
    // Relaxed (module docs, "The request").
    CurrentFiber::get().is_some_and(|fiber| fiber.inner().cancel_requested.load(Ordering::Relaxed))
}

/// Runs `f` with the calling fiber's waits shielded from cancellation:
/// inside it, a wait is not a cancellation point, so a request (from
/// [`JoinHandle::cancel`](crate::JoinHandle::cancel), or shutdown's)
/// takes effect at the first wait after `f` returns. Shields nest; a
/// panic out of `f` lifts the shield as it leaves. On a plain thread it
/// simply runs `f`.
///
/// A shielded wait is an ordinary one, woken early by the request only
/// as by any spurious wake-up; at shutdown, the grace period
/// (`Builder::shutdown_grace`) bounds it as it bounds a destructor's.
///
/// ```
/// use std::time::Duration;
/// let rt = spindle::Runtime::new().unwrap();
/// rt.block_on(|| {
///     let (started, go) = (spindle::sync::Latch::new(1), spindle::sync::Latch::new(1));
///     let (started, go) = (std::sync::Arc::new(started), std::sync::Arc::new(go));
///     let (s, g) = (started.clone(), go.clone());
///     let fiber = spindle::spawn(move || {
///         let saved = spindle::shield(|| {
///             s.count_down();
///             g.wait(); // not a cancellation point in here
///             "saved"
///         });
///         spindle::time::sleep(Duration::from_secs(60)); // unwinds here
///         saved
///     });
///     started.wait();
///     fiber.cancel();
///     go.count_down();
///     assert!(fiber.join().unwrap_err().is_cancelled());
/// });
/// ```
pub fn shield<R>(f: impl FnOnce() -> R) -> R {
    let Some(fiber) = CurrentFiber::get() else {
        return f();
    };
    let depth = &fiber.inner().shield_depth;
    depth.set(depth.get().checked_add(1).expect("shields nested too deep"));
    let _lift = Lift(fiber);
    f()
}

/// Lifts one shield when `shield` leaves, returning or unwinding.
struct Lift(CurrentFiber);

impl Drop for Lift {
    fn drop(&mut self) {
        let depth = &self.0.inner().shield_depth;
        debug_assert!(depth.get() > 0, "a shield lifted twice");
        depth.set(depth.get() - 1);
    }
}

/// Takes the reason the fiber that has just suspended with
/// `Suspend::Freeze` on this thread left (see [`freeze_here`]).
pub(super) fn take_freeze_reason() -> FreezeReason {
    FREEZING
        .with(Cell::take)
        .expect("a fiber that froze left its reason")
}

/// A worker's end of a fiber that froze on it (its requested cancellation
/// found too little stack to unwind): freezes it for good ([`freeze`]),
/// reports it on stderr and counts it (`Metrics::frozen_fibers`). The
/// caller holds it RUNNING, with its scheduling reference.
pub(crate) fn freeze_on_worker(fiber: Arc<FiberInner>, reason: FreezeReason) {
    let shared = fiber.shared.clone();
    let frozen = freeze(fiber, reason);
    let count = shared.count_frozen();
    crate::fiber::fault::write_line(format_args!(
        "spindle: cancel: {frozen} ({count} frozen so far, Metrics::frozen_fibers)"
    ));
}

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
        Some(Suspend::Freeze) => Step::Frozen(take_freeze_reason()),
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

/// Where a fiber's panic may be reported instead of by the panic hook: true
/// if it took the panic (the hook then prints nothing). A layer above sets
/// it (`test.rs`: a test's fibers report to the test).
pub(crate) type PanicReporter = fn(&PanicHookInfo<'_>) -> bool;

/// The reporter [`intercept_panic`] asks first, once set.
static REPORTER: OnceLock<PanicReporter> = OnceLock::new();

/// Sets the panic reporter, once per process; later calls do nothing.
pub(crate) fn set_panic_reporter(reporter: PanicReporter) {
    let _ = REPORTER.set(reporter);
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
    if REPORTER.get().is_some_and(|report| report(info)) {
        return;
    }
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
