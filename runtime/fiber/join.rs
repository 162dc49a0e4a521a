//! `JoinHandle`: waiting for a fiber's result, from a fiber or a thread.
//!
//! The result travels through the fiber's own [`Completion`] (a field of
//! `FiberInner`, so joining costs no allocation of its own), type-erased as
//! a [`Value`] (kept inside the record when it is small, boxed otherwise:
//! `record.rs`) and taken back as its type by the typed `JoinHandle<T>`.
//! One atomic word orders the hand-over; no lock is taken:
//!
//! - the joiner writes who it is into `waiter`, then CASes EMPTY → WAITING;
//! - the fiber writes `result`, then swaps the word to DONE; if it was
//!   WAITING, it takes `waiter` and wakes it.
//!
//! Whoever loses the race sees the other's write: a joiner whose CAS fails
//! finds DONE and takes the result without parking; a completer that finds
//! WAITING knows the waiter is written.
//!
//! A joiner that gives up (`join_timeout`) CASes WAITING → EMPTY and takes
//! its waiter back; if that CAS fails, the fiber completed meanwhile and the
//! joiner takes the result instead. Either way nobody is left pointing at a
//! waiter that stopped waiting.
//!
//! A handle dropped before the fiber completes CASes EMPTY → DETACHED; the
//! completer that finds DETACHED takes its result back and drops it itself,
//! on the fiber's stack, where a panic in its destructor is caught and
//! reported (`fault.rs`): nobody else may run user code on a worker. A
//! handle dropped after DONE drops the result it finds, on its own thread,
//! as any value is dropped by its owner. (`join_timeout` itself is defined in
//! `time/`, with the clock: `fiber/` does not depend on `time/`. Here it is
//! [`JoinHandle::join_with`], a join whose park may give up.)
//!
//! The joiner is a [`Joiner`]: a `Waiter` (a fiber or a thread, for
//! `join`), or a task's `Waker` (for `JoinHandle` awaited as a future,
//! `future.rs`, through [`Completion::poll`]). A poll that finds its
//! earlier waker still WAITING takes it back (WAITING → EMPTY) before it
//! writes the new one, by the same rule as a joiner that gives up.
//!
//! Rejected: a separate `Arc<Packet<T>>` shared by the fiber and the handle
//! (std's design): it costs an allocation and three reference-count updates
//! per fiber (measured in `docs/decisions.md`, "Completion").

use std::any::Any;
use std::fmt;
use std::marker::PhantomData;
use std::task::Waker;

use super::record::Value;
use super::waiter::Waiter;
use super::Fiber;
use crate::loom::cell::UnsafeCell;
use crate::loom::sync::atomic::{AtomicU8, Ordering};

const EMPTY: u8 = 0;
const WAITING: u8 = 1;
const DONE: u8 = 2;
/// The handle is gone: nobody will read the result.
const DETACHED: u8 = 3;

/// A fiber's outcome, type-erased.
pub(crate) type Output = Result<Value, JoinError>;

/// Where a fiber leaves its result for its joiner.
pub(crate) struct Completion {
    state: AtomicU8,
    /// Written once by the fiber before DONE; read by the joiner after.
    result: UnsafeCell<Option<Output>>,
    /// Written by the joiner before WAITING; read by the fiber after.
    waiter: UnsafeCell<Option<Joiner>>,
}

/// Who waits for a completion. The waker is boxed so that this stays the
/// size of a `Waiter` in every fiber.
enum Joiner {
    Waiter(Waiter),
    Task(Box<Waker>),
}

// `result` and `waiter` are each written by one side and read by the other
// only after the `state` hand-over described in the module docs.
// SAFETY: so they are never accessed concurrently; their contents are Send.
unsafe impl Sync for Completion {}

impl Completion {
    pub(crate) fn new() -> Completion {
        Completion {
            state: AtomicU8::new(EMPTY),
            result: UnsafeCell::new(None),
            waiter: UnsafeCell::new(None),
        }
    }

    /// Called once, by the finishing fiber (or by the runtime for a fiber
    /// that never ran, or will never run again). Returns the output back if
    /// the `JoinHandle` was dropped first: nobody will read it, and the
    /// caller drops it (catching a panic of its destructor).
    #[must_use]
    pub(crate) fn complete(&self, output: Output) -> Option<Output> {
        // SAFETY: only the completer writes `result`, once, before DONE.
        self.result
            .with_mut(|result| unsafe { *result = Some(output) });
        // AcqRel: Release publishes `result`; Acquire pairs with the
        // joiner's WAITING CAS so `waiter` is visible.
        let previous = self.state.swap(DONE, Ordering::AcqRel);
        debug_assert_ne!(previous, DONE, "a fiber completed twice");
        match previous {
            WAITING => {
                // SAFETY: WAITING means the joiner wrote `waiter` and no
                // longer touches it.
                let waiter = self.waiter.with_mut(|waiter| unsafe { (*waiter).take() });
                match waiter.expect("a WAITING completion has a waiter") {
                    Joiner::Waiter(waiter) => waiter.wake(),
                    Joiner::Task(waker) => waker.wake(),
                }
                None
            }
            // SAFETY: DETACHED means the handle is gone and never reads
            // `result`: the value just written is ours again.
            DETACHED => self.result.with_mut(|result| unsafe { (*result).take() }),
            _ => None,
        }
    }

    /// The `JoinHandle` goes. Before the fiber completes, the completer
    /// will drop the result itself (DETACHED); after, the result is
    /// returned, for the caller to drop (none after a join took it).
    fn detach(&self) -> Option<Output> {
        // Acquire (both): a DONE seen here makes `result` visible. Most
        // handles go after a join, when the load alone suffices.
        if self.state.load(Ordering::Acquire) != DONE
            && self
                .state
                .compare_exchange(EMPTY, DETACHED, Ordering::Relaxed, Ordering::Acquire)
                .is_ok()
        {
            return None;
        }
        debug_assert_eq!(
            self.state.load(Ordering::Relaxed),
            DONE,
            "detached while waiting"
        );
        // SAFETY: DONE was observed with Acquire; the completer is done
        // with `result`, and only this, the one handle, takes it.
        self.result.with_mut(|result| unsafe { (*result).take() })
    }

    pub(crate) fn is_done(&self) -> bool {
        self.state.load(Ordering::Acquire) == DONE
    }

    /// Blocks (a thread) or parks (a fiber) until the result is there,
    /// parking with `park`, which returns false to give up (then `None`,
    /// and the completion is as before the call). Only the one
    /// `JoinHandle` calls it, never concurrently.
    fn wait(&self, mut park: impl FnMut() -> bool) -> Option<Output> {
        if !self.is_done() {
            // SAFETY: before WAITING only the joiner touches `waiter`.
            self.waiter
                .with_mut(|waiter| unsafe { *waiter = Some(Joiner::Waiter(Waiter::current())) });
            // AcqRel: Release publishes `waiter`; Acquire (also on failure)
            // pairs with the completer's swap so `result` is visible.
            let waiting =
                self.state
                    .compare_exchange(EMPTY, WAITING, Ordering::AcqRel, Ordering::Acquire);
            if waiting.is_err() {
                // SAFETY: the fiber finished first and never reads `waiter`.
                self.waiter.with_mut(|waiter| unsafe { *waiter = None });
            }
            // A joiner cancelled in its park gives up as a timed-out one
            // does, so that its handle's drop finds the completion as it
            // was before the call.
            let give_up = GiveUp(self);
            while !self.is_done() {
                if park() {
                    continue;
                }
                if self.give_up() {
                    std::mem::forget(give_up);
                    return None;
                }
            }
            std::mem::forget(give_up);
        }
        // SAFETY: DONE was observed with Acquire; the completer wrote
        // `result` before it and will not touch it again.
        let result = self.result.with_mut(|result| unsafe { (*result).take() });
        Some(result.expect("a DONE completion holds its result"))
    }

    /// A select's join arm starts waiting: writes the caller as the waiter,
    /// for the completer to wake, unless the fiber is done (then false, and
    /// nothing is written). The caller takes the waiter back with
    /// [`Completion::unregister`] before the handle can be joined, and
    /// only the one `JoinHandle`'s borrower calls either (a select holds
    /// it by `&mut`).
    pub(crate) fn register(&self) -> bool {
        if self.is_done() {
            return false;
        }
        // SAFETY: not DONE, and EMPTY (the borrower's earlier waits took
        // their waiter back): the completer does not read `waiter`.
        self.waiter
            .with_mut(|waiter| unsafe { *waiter = Some(Joiner::Waiter(Waiter::current())) });
        // AcqRel, as in `wait`.
        let waiting =
            self.state
                .compare_exchange(EMPTY, WAITING, Ordering::AcqRel, Ordering::Acquire);
        if waiting.is_err() {
            // SAFETY: the fiber finished first and never reads `waiter`.
            self.waiter.with_mut(|waiter| unsafe { *waiter = None });
        }
        waiting.is_ok()
    }

    /// Takes back the waiter [`Completion::register`] wrote, unless the
    /// fiber completed meanwhile (then the completer took it, and woke it
    /// or is about to).
    pub(crate) fn unregister(&self) {
        let _ = self.give_up();
    }

    /// The joiner stops waiting: takes its waiter back (WAITING → EMPTY)
    /// and returns true, unless the fiber completed meanwhile (false: the
    /// result is there to take).
    fn give_up(&self) -> bool {
        // Acquire on failure: `result` is read after a DONE seen here.
        if self
            .state
            .compare_exchange(WAITING, EMPTY, Ordering::Acquire, Ordering::Acquire)
            .is_ok()
        {
            // SAFETY: EMPTY again: the completer will not read `waiter`;
            // it is ours.
            self.waiter.with_mut(|waiter| unsafe { *waiter = None });
            return true;
        }
        false
    }

    /// A future's poll: the result if it is there, else `None` with
    /// `waker` left to be woken when it is. Only the one `JoinHandle`'s
    /// future (which owns the handle, so `wait` is never called too) calls
    /// it, never concurrently.
    ///
    /// # Panics
    /// After it returned the result.
    pub(crate) fn poll(&self, waker: &Waker) -> Option<Output> {
        // Take back the waker an earlier poll left (Acquire on failure:
        // then DONE, and `result` is visible).
        let _ = self
            .state
            .compare_exchange(WAITING, EMPTY, Ordering::Acquire, Ordering::Acquire);
        if !self.is_done() {
            // SAFETY: EMPTY: the completer does not read `waiter`.
            self.waiter.with_mut(|slot| match unsafe { &mut *slot } {
                Some(Joiner::Task(old)) if old.will_wake(waker) => {}
                slot => *slot = Some(Joiner::Task(Box::new(waker.clone()))),
            });
            // AcqRel, as in `wait`.
            if self
                .state
                .compare_exchange(EMPTY, WAITING, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return None;
            }
            // SAFETY: the fiber finished first and never reads `waiter`.
            self.waiter.with_mut(|waiter| unsafe { *waiter = None });
        }
        // SAFETY: DONE was observed with Acquire; the completer wrote
        // `result` before it and will not touch it again.
        let result = self.result.with_mut(|result| unsafe { (*result).take() });
        Some(result.expect("a JoinHandle polled after it returned the result"))
    }
}

/// Gives a join up if its joiner is unwound out of its park (cancelled).
struct GiveUp<'a>(&'a Completion);

impl Drop for GiveUp<'_> {
    fn drop(&mut self) {
        self.0.give_up();
    }
}

/// An owned permission to join a fiber: wait for it to finish and take its
/// result. Dropping the handle detaches the fiber, which keeps running (and
/// drops its result itself when it finishes).
///
/// ```
/// let rt = spindle::Runtime::new().unwrap();
/// let answer = rt.block_on(|| spindle::spawn(|| 6 * 7).join().unwrap());
/// assert_eq!(answer, 42);
/// ```
pub struct JoinHandle<T> {
    fiber: Fiber,
    /// The result's type; the value itself sits type-erased in the fiber.
    result: PhantomData<fn() -> T>,
}

impl<T: 'static> JoinHandle<T> {
    pub(crate) fn new(fiber: Fiber) -> JoinHandle<T> {
        JoinHandle {
            fiber,
            result: PhantomData,
        }
    }

    /// Waits for the fiber to finish and returns its result. From a fiber
    /// this parks the fiber (its worker runs others); from a plain thread it
    /// blocks the thread. A panic in the fiber comes back as
    /// `Err(JoinError)` holding the panic's payload:
    /// [`JoinError::panic_payload`] downcasts it in place, and
    /// `.map_err(JoinError::into_panic)` turns the result into std's
    /// `std::thread::Result<T>`, the payload as the error.
    ///
    /// ```
    /// let rt = spindle::Runtime::new().unwrap();
    /// let handle = rt.spawn(|| -> u32 { panic!("no answer") });
    /// // std's form: Err(payload), as `std::thread::JoinHandle::join` gives.
    /// let result: std::thread::Result<u32> = handle.join().map_err(spindle::JoinError::into_panic);
    /// let payload = result.unwrap_err();
    /// assert_eq!(payload.downcast_ref::<&str>(), Some(&"no answer"));
    /// ```
    pub fn join(self) -> Result<T, JoinError> {
        let output = self
            .fiber
            .inner
            .completion
            .wait(|| {
                super::park();
                true
            })
            .expect("an untimed wait returns the result");
        downcast(output)
    }

    /// [`JoinHandle::join`], parking with `park` (one park, however it
    /// ends), which returns false to give up: then the handle comes back as
    /// `Err`, to wait again or to drop. `time/` makes `join_timeout` of it.
    pub(crate) fn join_with(
        self,
        park: impl FnMut() -> bool,
    ) -> Result<Result<T, JoinError>, JoinHandle<T>> {
        match self.fiber.inner.completion.wait(park) {
            Some(output) => Ok(downcast(output)),
            None => Err(self),
        }
    }

    /// The result if the fiber has finished, else `Pending` with
    /// `context`'s waker to be woken when it does: `future.rs`'s `Join`,
    /// which owns the handle. Panics once it has returned `Ready`.
    pub(crate) fn poll_join(
        &self,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<T, JoinError>> {
        match self.fiber.inner.completion.poll(context.waker()) {
            Some(output) => std::task::Poll::Ready(downcast(output)),
            None => std::task::Poll::Pending,
        }
    }

    /// Requests cancellation of the fiber: it unwinds from the wait it is
    /// parked in, or from its next one (any park: sleeps, locks, channels,
    /// `join`, `spindle::net` calls; `blocking` first waits for its
    /// closure), running its destructors, and [`JoinHandle::join`] then
    /// returns an error whose [`JoinError::is_cancelled`] is true. A fiber
    /// that has not started never runs its closure (it is dropped). Inside
    /// [`crate::shield`] waits are not cancellation points; a fiber can
    /// ask [`crate::is_cancelled`]. A no-op on a fiber that has finished
    /// or was cancelled already; callable from fibers and plain threads.
    ///
    /// The unwind is an unwind like a panic's: a `sync::Mutex` or `RwLock`
    /// guard held across the cancelled wait poisons its lock. Wrap a
    /// critical section that waits in [`crate::shield`] to finish it first.
    ///
    /// A fiber too low on stack to unwind at its park point is frozen
    /// instead (never resumed, its stack left as it is, reported on
    /// stderr and counted in `Metrics::frozen_fibers`); its joiner still
    /// sees it cancelled.
    ///
    /// ```
    /// let rt = spindle::Runtime::new().unwrap();
    /// rt.block_on(|| {
    ///     let (tx, rx) = spindle::sync::mpsc::channel::<u32>();
    ///     let fiber = spindle::spawn(move || rx.recv()); // waits forever
    ///     fiber.cancel();
    ///     fiber.cancel(); // a no-op
    ///     assert!(fiber.join().unwrap_err().is_cancelled());
    ///     assert!(tx.send(1).is_err(), "its receiver was dropped in the unwind");
    /// });
    /// ```
    pub fn cancel(&self) {
        super::cancel::request_cancel(&self.fiber.inner);
    }

    /// Whether the fiber has finished (its result is ready); never blocks.
    pub fn is_finished(&self) -> bool {
        self.fiber.inner.completion.is_done()
    }

    /// Where the result will be, for a select's join arm.
    pub(crate) fn completion(&self) -> &Completion {
        &self.fiber.inner.completion
    }

    /// The fiber this handle joins.
    pub fn fiber(&self) -> &Fiber {
        &self.fiber
    }
}

/// A fiber's type-erased outcome as its `JoinHandle`'s type.
fn downcast<T: 'static>(output: Output) -> Result<T, JoinError> {
    output.map(|value| {
        value
            .take::<T>()
            .expect("a fiber's result has its JoinHandle's type")
    })
}

impl<T> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        drop(self.fiber.inner.completion.detach());
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("fiber", &self.fiber)
            .finish_non_exhaustive()
    }
}

/// Why a fiber produced no value.
pub struct JoinError {
    kind: JoinErrorKind,
}

enum JoinErrorKind {
    Panic(Box<dyn Any + Send + 'static>),
    Cancelled,
    NoStack(std::io::Error),
}

/// The panic payload spindle unwinds a fiber with when it is cancelled
/// (`fiber/cancel.rs`). Not a panic: no hook runs for it.
pub(crate) struct Cancelled;

impl JoinError {
    /// The error for a fiber whose function panicked (or was unwound by a
    /// cancellation, recognised by its payload).
    pub(crate) fn from_panic(payload: Box<dyn Any + Send + 'static>) -> JoinError {
        if payload.is::<Cancelled>() {
            JoinError {
                kind: JoinErrorKind::Cancelled,
            }
        } else {
            JoinError {
                kind: JoinErrorKind::Panic(payload),
            }
        }
    }

    pub(crate) fn cancelled() -> JoinError {
        JoinError {
            kind: JoinErrorKind::Cancelled,
        }
    }

    pub(crate) fn no_stack(error: std::io::Error) -> JoinError {
        JoinError {
            kind: JoinErrorKind::NoStack(error),
        }
    }

    /// The fiber panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self.kind, JoinErrorKind::Panic(_))
    }

    /// The fiber was cancelled before it finished (`JoinHandle::cancel`,
    /// or the runtime shut down): its stack was unwound (destructors
    /// ran), or it never started, or it was frozen (`FrozenFiber`).
    pub fn is_cancelled(&self) -> bool {
        matches!(self.kind, JoinErrorKind::Cancelled)
    }

    /// The panic payload, borrowed, to downcast where it lies (`None` if
    /// the fiber did not panic): `std::thread::JoinHandle::join` gives the
    /// payload itself as the error, and this is that payload.
    ///
    /// ```
    /// let rt = spindle::Runtime::new().unwrap();
    /// let error = rt.spawn(|| std::panic::panic_any(7_u32)).join().unwrap_err();
    /// let code = error.panic_payload().and_then(|p| p.downcast_ref::<u32>());
    /// assert_eq!(code, Some(&7));
    /// ```
    pub fn panic_payload(&self) -> Option<&(dyn Any + Send + 'static)> {
        match &self.kind {
            JoinErrorKind::Panic(payload) => Some(&**payload),
            _ => None,
        }
    }

    /// The panic payload, as `std::thread::JoinHandle::join` returns it, for
    /// `std::panic::resume_unwind`. Other errors become a `String` payload.
    ///
    /// ```
    /// let rt = spindle::Runtime::new().unwrap();
    /// let error = rt.spawn(|| panic!("lost")).join().unwrap_err();
    /// let payload = error.into_panic();
    /// assert_eq!(payload.downcast_ref::<&str>(), Some(&"lost"));
    /// ```
    pub fn into_panic(self) -> Box<dyn Any + Send + 'static> {
        match self.kind {
            JoinErrorKind::Panic(payload) => payload,
            _ => Box::new(self.to_string()),
        }
    }
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            JoinErrorKind::Panic(payload) => {
                let message = payload
                    .downcast_ref::<&str>()
                    .copied()
                    .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
                match message {
                    Some(message) => write!(f, "fiber panicked: {message}"),
                    None => write!(f, "fiber panicked"),
                }
            }
            JoinErrorKind::Cancelled => write!(f, "fiber cancelled before it finished"),
            JoinErrorKind::NoStack(error) => {
                write!(f, "fiber never ran: no stack could be had: {error}")
            }
        }
    }
}

impl fmt::Debug for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JoinError({self})")
    }
}

impl std::error::Error for JoinError {}

/// `Completion`'s hand-over, model-checked (`crate::loom` says how to run
/// them). The joiner is a thread (its waiter is its thread handle, which
/// loom's `park` and `unpark` drive); the fiber's end is a thread calling
/// `complete`. loom reports a joiner left parked with the result in place
/// as a deadlock, and a `result` or `waiter` access the state word leaves
/// unordered as a causality violation.
#[cfg(all(test, spindle_loom))]
mod loom_models {
    use super::{Completion, Output, Value};
    use loom::thread;
    use std::sync::Arc;

    fn output(value: u32) -> Output {
        Ok(Value::new(value))
    }

    fn value(output: Output) -> u32 {
        output
            .expect("the fiber returned")
            .take::<u32>()
            .expect("a u32")
    }

    /// The fiber finishes on another thread.
    fn completing(value: u32) -> (Arc<Completion>, thread::JoinHandle<()>) {
        let completion = Arc::new(Completion::new());
        let fiber = {
            let completion = completion.clone();
            thread::spawn(move || drop(completion.complete(output(value))))
        };
        (completion, fiber)
    }

    /// A join, parking until woken.
    fn join(completion: &Completion) -> u32 {
        let output = completion.wait(|| {
            thread::park();
            true
        });
        value(output.expect("an untimed wait returns the result"))
    }

    /// `complete` races `join`: whether the joiner finds DONE, or parks
    /// and is woken, it gets the result, once.
    #[test]
    fn loom_complete_races_join() {
        crate::loom::model(|| {
            let (completion, fiber) = completing(42);
            assert_eq!(join(&completion), 42);
            fiber.join().unwrap();
        });
    }

    /// `join_timeout` gives up (its park says the deadline passed) while
    /// the fiber completes: either it takes its waiter back before the
    /// completer looks, and a later join gets the result, or the completer
    /// won and the give-up takes the result instead. The completer never
    /// reads a waiter that gave up.
    #[test]
    fn loom_join_timeout_gives_up_while_completing() {
        crate::loom::model(|| {
            let (completion, fiber) = completing(7);
            let result = match completion.wait(|| false) {
                Some(output) => value(output),
                None => join(&completion),
            };
            assert_eq!(result, 7);
            fiber.join().unwrap();
        });
    }
}
