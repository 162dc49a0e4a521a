//! A fiber's execution context: the one place that drives corosensei.
//!
//! A [`Context`] is a corosensei coroutine running on one of our stacks.
//! Workers [`resume`](Context::resume) it; code inside the fiber
//! [`suspend`]s back to whichever worker resumed it last.
//!
//! # Why a suspended fiber may move to another thread
//! corosensei's `Coroutine` is `!Send`, because in general the code on its
//! stack may hold thread-bound values across a suspension point, and moving
//! the stack moves them. spindle moves suspended fibers between workers (that
//! is what work stealing is), so [`Context`] is declared `Send` on this
//! argument:
//!
//! 1. The fiber's root closure and its result are `Send` (spawn requires it),
//!    so everything the fiber *starts with* and *returns* may cross threads.
//! 2. A fiber only changes threads while suspended inside [`suspend`]; at
//!    that moment its stack is inert memory owned by the fiber (the state
//!    machine in `state.rs` ensures one runner at a time), and the registers
//!    that pointed into the old thread were saved by corosensei. The stack
//!    switch itself is thread-agnostic.
//! 3. What remains is what the compiler cannot see: a value on the fiber's
//!    stack that is tied to the OS thread, held *across* a suspension. That is
//!    the rule spindle puts on its users, stated once in the crate docs
//!    ("Fibers move between threads"): do not hold a `thread_local!`
//!    reference, a `std::sync::MutexGuard` (or any lock guard of a
//!    thread-owned lock), or other thread-bound handle across a call that can
//!    park or yield. Fiber-aware locks and fiber-local storage are the
//!    replacements.
//!
//! To keep the runtime itself on the right side of point 3, every
//! thread-local the runtime reads from fiber code is read through a
//! non-inlined accessor, so a thread-local address computed before a
//! suspension is never reused after it (`current_ptr` in `fiber/mod.rs`,
//! `with_current` in `scheduler/worker.rs`).

use corosensei::{Coroutine, CoroutineResult, Yielder};

use super::stack::Stack;

/// What a worker passes into a fiber when it resumes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Resume {
    /// Carry on.
    Run,
    /// The runtime is shutting down: unwind the fiber's stack.
    Cancel,
    /// A fiber dump holds this parked fiber (DUMPING): take a backtrace on
    /// its stack into the request's slot and suspend again, still parked.
    Dump(super::dump::Request),
}

/// Why a fiber switched back to its worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Suspend {
    /// `yield_now`: requeue me behind the others.
    Yield,
    /// `park`: leave me suspended until someone unparks me.
    Park,
    /// Being cancelled, I cannot be unwound safely: never resume me, and
    /// leave my stack as it is (`cancel.rs`, which passes the reason
    /// beside the switch: a payload here would widen every switch's value).
    Freeze,
}

/// The handle fiber code uses to switch back to its worker.
pub(crate) type FiberYielder = Yielder<Resume, Suspend>;

/// A fiber's coroutine on one of our stacks.
///
/// # Invariants
/// At most one thread resumes it at a time (the fiber state machine grants
/// the right), and it is only dropped once finished (never force-unwound by
/// corosensei: cancellation is our own, see `Resume::Cancel`). A context
/// that suspended with `Suspend::Freeze` is never dropped at all.
pub(crate) struct Context {
    coroutine: Coroutine<Resume, Suspend, (), Stack>,
}

// The argument is the module docs' "Why a suspended fiber may move to
// another thread"; in short:
// SAFETY: the root closure is Send; a fiber moves only while suspended, with
// one runner at a time; thread-bound values across a suspension: user rule.
unsafe impl Send for Context {}

impl Context {
    /// A context that will run `body` on `stack` when first resumed. `body`
    /// receives the yielder and the first `Resume` value.
    pub(crate) fn new(stack: Stack, body: impl FnOnce(&FiberYielder, Resume) + 'static) -> Context {
        Context {
            coroutine: Coroutine::with_stack(stack, body),
        }
    }

    /// Switches to the fiber until it suspends (`Some`) or returns (`None`).
    pub(crate) fn resume(&mut self, input: Resume) -> Option<Suspend> {
        match self.coroutine.resume(input) {
            CoroutineResult::Yield(reason) => Some(reason),
            CoroutineResult::Return(()) => None,
        }
    }

    /// The stack back, once the fiber has returned.
    pub(crate) fn into_stack(self) -> Stack {
        debug_assert!(
            self.coroutine.done(),
            "stack taken from an unfinished fiber"
        );
        self.coroutine.into_stack()
    }
}

/// Switches from the running fiber back to its worker.
///
/// # Safety
/// `yielder` must be the yielder of the fiber running on this thread now.
pub(crate) unsafe fn suspend(yielder: *const FiberYielder, reason: Suspend) -> Resume {
    // SAFETY: the caller passes the running fiber's yielder, which lives on
    // that fiber's stack for as long as the fiber runs.
    unsafe { (*yielder).suspend(reason) }
}

/// Runs `f` on the stack of the thread that resumed the running fiber,
/// below the frame that resumed it, and returns to the fiber's stack: for
/// code that may need more stack than the fiber has left.
///
/// # Safety
/// `yielder` must be the yielder of the fiber running on this thread now,
/// and `f` must not take that yielder (or anything holding it) with it.
pub(crate) unsafe fn on_parent_stack(yielder: *const FiberYielder, f: impl FnOnce()) {
    /// `f`, declared `Send`: corosensei asks it of the closure so that a
    /// yielder cannot reach the parent's thread, and the caller promises
    /// that `f` holds none. The closure runs on this same thread.
    struct SameThread<F>(F);
    // SAFETY: see above: the closure stays on this thread, and holds no
    // yielder.
    unsafe impl<F> Send for SameThread<F> {}
    impl<F: FnOnce()> SameThread<F> {
        fn run(self) {
            (self.0)()
        }
    }
    let call = SameThread(f);
    // SAFETY: the caller passes the running fiber's yielder, which lives on
    // that fiber's stack for as long as the fiber runs.
    unsafe { (*yielder).on_parent_stack(move || call.run()) }
}
