//! Fibers: what one is, how it runs a slice, parks and wakes.
//!
//! - `state.rs`: the atomic state machine (who may run the fiber).
//! - `context.rs`: the corosensei coroutine the fiber runs on.
//! - `stack/`: where its stack comes from and goes back to.
//! - `spawn.rs`: the fiber `Builder` (spawning on a given runtime),
//!   `SpawnError`; `spawn` and `try_spawn` are `default_runtime.rs`'s.
//! - `record.rs`: the record's memory: the root closure stored inside it
//!   (`Entry`), a one-word name, and the pools that reuse finished records.
//! - `ages.rs`: how long the items of a free list have been free, which
//!   the record pool and the stack pool's warm lists decay by.
//! - `join.rs`: `JoinHandle`, `JoinError` and the fiber's `Completion`.
//! - `cancel.rs`: cancelling one fiber (the unwind its destructors run
//!   in), and freezing it where an unwind cannot be made safely.
//! - `fault.rs`: user code that runs outside a fiber's function (its
//!   result's and closure's drops, fiber-local destructors), caught and
//!   reported; a failure of the runtime's own code, which aborts; a stack
//!   overflow, reported from the `SIGSEGV` handler.
//! - `dump.rs`: `Runtime::dump`, the list of live fibers with backtraces of
//!   the parked ones.
//! - The per-fiber wait state, which the layers above (`time`, `sync`,
//!   `io`, `blocking`) park and wake through: `waiter.rs` (a fiber or a
//!   thread to wake), `wait_node.rs` (its entry in a wait list, kept
//!   between waits) and `locals.rs` (its fiber-local values).
//!
//! A fiber is an `Arc<FiberInner>`. See `FiberInner`'s "Ownership" for the
//! one reference that is special, the *scheduling reference*.
//!
//! # Layering
//! `fiber/` and `scheduler/` depend on each other (a fiber is queued by
//! the scheduler, and the scheduler runs fibers), and on nothing above
//! them: no `time`, no `sync`. A wait with a deadline is built in `time/`
//! from `CurrentFiber`, the running fiber's view of itself (its runtime,
//! a handle for its waker, its token, its park).

pub(crate) mod ages;
pub(crate) mod cancel;
pub(crate) mod context;
pub(crate) mod dump;
pub(crate) mod fault;
pub(crate) mod join;
pub(crate) mod locals;
pub(crate) mod record;
pub(crate) mod spawn;
pub(crate) mod stack;
pub(crate) mod state;
pub(crate) mod wait_node;
pub(crate) mod waiter;

pub use self::cancel::{is_cancelled, shield, FreezeReason, FrozenFiber, UNWIND_STACK_NEEDED};
pub use self::dump::{
    DumpedFiber, FiberDump, FiberState, NotCaptured, StackTrace, CAPTURE_STACK_NEEDED,
};
pub use self::spawn::Builder;

use std::cell::{Cell, UnsafeCell};
use std::fmt;
use std::mem::ManuallyDrop;
use std::num::{NonZeroU64, NonZeroUsize};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use self::context::{Context, FiberYielder, Resume, Suspend};
use self::join::Completion;
use self::locals::Locals;
pub(crate) use self::record::Entry;
use self::record::FiberName;
use self::stack::StackCache;
use self::state::{Phase, State, Unparked};
use self::wait_node::NodeCache;
use crate::scheduler::Shared;

/// How a fiber's root function is started.
pub(crate) enum Start {
    /// Run it.
    Run,
    /// The runtime shut down before it ran: report cancellation.
    Cancelled,
    /// No stack could be had: report the error.
    NoStack(std::io::Error),
}

/// Everything the runtime knows about one fiber.
///
/// Fields are grouped by who may touch them.
///
/// # Ownership: the scheduling reference
/// Every fiber that is not DONE owns exactly one *scheduling reference*,
/// which travels with the right to run it:
/// - SCHEDULED: held by the run queue entry (or the spawner about to push);
/// - RUNNING: held by the worker running it (`Worker::run_fiber`);
/// - PARKED: left inside the fiber: the worker `mem::forget`s its `Arc`
///   after `State::finish_park` succeeds, and the unparker that wins the
///   PARKED → SCHEDULED transition takes it back with `Arc::from_raw`
///   ([`Fiber::unpark`]) and pushes it into a queue;
/// - DONE: the worker drops it; whoever drops the last reference on a
///   worker of its runtime passes the record to [`recycle`] for reuse.
///
/// So parking and unparking touch no reference count, and a parked fiber
/// that nobody will ever wake stays alive (its stack intact) until shutdown
/// finds it through the stack pool's slot registry, which therefore holds a
/// plain pointer. Other references (`Fiber` handles held by wakers,
/// `JoinHandle`s) are ordinary clones. A fiber dump (`dump.rs`) turns a
/// registry pointer into a clone of its own while it claims the registry
/// cell, which keeps the fiber from finishing in between; and a dump that
/// wins PARKED → DUMPING holds the scheduling reference as an unparker
/// would, until it parks the fiber again or queues it.
///
/// Rejected: a counted reference in the slot registry, which costs four
/// reference-count updates more per spawn + join (`docs/decisions.md`,
/// "FiberInner").
pub(crate) struct FiberInner {
    // --- Set at spawn (for a reused record, by `spawned` while it is
    // unique), immutable after: anyone may read.
    pub(crate) id: FiberId,
    name: FiberName,
    /// Where it was spawned (`#[track_caller]` through the spawn calls),
    /// for fiber dumps.
    location: &'static std::panic::Location<'static>,
    /// Usable stack bytes the fiber asked for, rounded to pages; `None`
    /// for the runtime's default (taken through the worker's cache).
    stack_size: Option<NonZeroUsize>,
    /// The runtime the fiber belongs to (for unparks from anywhere).
    pub(crate) shared: Arc<Shared>,

    // --- Any thread, through the atomics.
    pub(crate) state: State,
    /// The fiber's result, for its `JoinHandle`.
    pub(crate) completion: Completion,
    /// Set, once, by `cancel::request_cancel` (any thread, through
    /// `JoinHandle::cancel`); never cleared while the fiber lives (an
    /// emptied record starts with it clear). Read by the fiber's own code
    /// at its cancellation points and by `is_cancelled` (`cancel.rs`,
    /// "The request", says why Relaxed is enough both ways).
    pub(crate) cancel_requested: AtomicBool,

    // --- Owned by whoever has the fiber RUNNING (a worker, or the shutdown
    // thread) or DUMPING (a fiber dump); never touched concurrently, per the
    // state machine.
    /// The coroutine, created at first run.
    context: UnsafeCell<Option<Context>>,
    /// Start of the stack's guard page (for the overflow report).
    guard: Cell<usize>,

    // --- Owned by the fiber's own code, on its own stack.
    /// The root function until the fiber starts (its closure inside the
    /// record when small, `record.rs`).
    entry: UnsafeCell<Option<Entry>>,
    /// How to switch back to the worker; set when the fiber starts.
    yielder: Cell<*const FiberYielder>,
    /// Set when shutdown's cancellation unwind has been raised in this
    /// fiber (or it was started only to drop its closure). Per fiber, not
    /// `std::thread::panicking()`: the thread that runs the cancellation
    /// may itself be unwinding for its own reasons. Its runner reads it
    /// between slices, to resume the fiber with `Resume::Run` from then on
    /// (`cancel.rs`).
    cancelling: Cell<bool>,
    /// How many `shield` calls the fiber's code is inside: while above
    /// zero, its waits are not cancellation points (`cancel.rs`).
    shield_depth: Cell<u32>,
    /// Fiber-local values (`locals.rs`): made by the fiber's code on
    /// first access, dropped by it at its end in `fiber_main`.
    locals: Locals,
    /// The fiber's wait-list node, kept between waits so that a wait
    /// allocates nothing (`wait_node.rs`). It names this fiber, so it
    /// is dropped at the fiber's end in `fiber_main`, which breaks that
    /// cycle.
    wait_node: NodeCache,
}

// The non-Sync fields (`context`, `guard`, `entry`, `yielder`, `cancelling`,
// `shield_depth`, `locals`, `wait_node`) are only touched by the thread holding the fiber
// RUNNING, or DUMPING, which grants the same (see state.rs).
// SAFETY: the `state` atomic grants that to one thread at a time, acq/rel.
unsafe impl Sync for FiberInner {}
// SAFETY: as above; the entry closure, the context and the fiber-local
// values are Send.
unsafe impl Send for FiberInner {}

impl FiberInner {
    /// The fiber's name, if it was given one.
    pub(crate) fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    pub(crate) fn new(
        shared: Arc<Shared>,
        name: Option<Box<str>>,
        location: &'static std::panic::Location<'static>,
        stack_size: Option<NonZeroUsize>,
        entry: Entry,
    ) -> FiberInner {
        FiberInner {
            id: FiberId::next(),
            name: FiberName::new(name),
            location,
            stack_size,
            shared,
            state: State::new_scheduled(),
            completion: Completion::new(),
            cancel_requested: AtomicBool::new(false),
            context: UnsafeCell::new(None),
            guard: Cell::new(0),
            entry: UnsafeCell::new(Some(entry)),
            yielder: Cell::new(std::ptr::null()),
            cancelling: Cell::new(false),
            shield_depth: Cell::new(0),
            locals: Locals::new(),
            wait_node: NodeCache::new(),
        }
    }

    /// The record of a fiber being spawned on `shared`: a finished record
    /// of that runtime kept by the calling worker, or by the runtime's pool
    /// (`record.rs`, "Reused"), made ready as `new` would; else a new one.
    pub(crate) fn spawned(
        shared: &Arc<Shared>,
        name: Option<Box<str>>,
        location: &'static std::panic::Location<'static>,
        stack_size: Option<NonZeroUsize>,
        entry: Entry,
    ) -> Arc<FiberInner> {
        let Some(mut record) = shared.take_record() else {
            return Arc::new(FiberInner::new(
                shared.clone(),
                name,
                location,
                stack_size,
                entry,
            ));
        };
        let inner = unique_mut(&mut record).expect("a kept record is unique");
        debug_assert!(inner.context.get_mut().is_none() && inner.entry.get_mut().is_none());
        inner.id = FiberId::next();
        inner.name = FiberName::new(name);
        inner.location = location;
        inner.stack_size = stack_size;
        inner.state = State::new_scheduled();
        *inner.entry.get_mut() = Some(entry);
        record
    }

    /// Empties a finished record for reuse: drops what its fiber left (its
    /// result, its fiber-local table and wait node) and clears what its
    /// runs set. The runtime, and the fields `spawned` sets, stay.
    fn empty(&mut self) {
        self.completion = Completion::new();
        self.locals = Locals::new();
        self.wait_node = NodeCache::new();
        self.guard.set(0);
        self.yielder.set(std::ptr::null());
        self.cancelling.set(false);
        self.shield_depth.set(0);
        *self.cancel_requested.get_mut() = false;
    }
}

/// Takes the last reference to a fiber's record: a finished fiber's record
/// is emptied and kept for reuse by the calling worker, if it is one of the
/// record's runtime (`record.rs`, "Reused"); otherwise, or if another
/// reference turns out to exist, this is an ordinary drop.
pub(crate) fn recycle(mut fiber: Arc<FiberInner>) {
    // Where nothing would keep it (a plain thread, or a runtime whose pool
    // has closed), skip the emptying.
    if !fiber.shared.has_record_room() {
        return;
    }
    let Some(inner) = unique_mut(&mut fiber) else {
        return;
    };
    if inner.state.phase() != Phase::Done {
        return;
    }
    // May run the destructors of the fiber's result and fiber-local values:
    // before any pool is borrowed.
    inner.empty();
    Shared::keep_record(fiber);
}

/// The record behind `fiber`, to change, if `fiber` is its only reference.
/// Checked with a load of the reference count rather than by
/// `Arc::get_mut`, whose guard against `Weak`s costs a compare-and-swap
/// and a store: no `Weak<FiberInner>` is ever made, so a count of one
/// means no other reference exists, and none can appear (a new one is
/// cloned from an existing one). Raw pointers to records (the slot
/// registry's) point only at fibers that hold a stack, which a finished
/// or pooled record does not, and a reference taken through one is
/// counted like any other.
#[inline]
fn unique_mut(fiber: &mut Arc<FiberInner>) -> Option<&mut FiberInner> {
    if Arc::strong_count(fiber) != 1 {
        return None;
    }
    // Pairs with the Release of the last other holder's drop, so that its
    // accesses to the record come before ours.
    std::sync::atomic::fence(Ordering::Acquire);
    // `Arc::as_ptr` is derived from the allocation's own pointer, so
    // writing through it is allowed.
    // SAFETY: `fiber` is the only reference to the record (above) and is
    // held mutably: nobody else touches the record while the borrow lives.
    Some(unsafe { &mut *Arc::as_ptr(fiber).cast_mut() })
}

impl Drop for FiberInner {
    fn drop(&mut self) {
        debug_assert!(
            self.context.get_mut().is_none(),
            "a started fiber was dropped without being finished"
        );
    }
}

/// What one slice of a fiber ended with.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// It called `yield_now`; the caller requeues it (state: RUNNING).
    Yielded,
    /// It called `park`; the caller runs `finish_park` (state: RUNNING).
    Parked,
    /// It returned; its stack is released and the state is DONE.
    Finished,
    /// Its cancellation could not be unwound (too little stack left): it
    /// is suspended for good; the caller hands it to `cancel::freeze`
    /// (state: RUNNING).
    Frozen(cancel::FreezeReason),
}

/// Runs `fiber` until it suspends or finishes, on the calling thread. The
/// caller has made it RUNNING (`State::begin_run`). At the first run the
/// fiber gets its stack (default-size stacks from `cache`).
///
/// `in_fiber` is set while the fiber's own code runs (not while its stack
/// is taken or given back): the monitor hands off only workers held by
/// fiber code (`scheduler/monitor.rs`).
pub(crate) fn run_slice(
    fiber: &Arc<FiberInner>,
    input: Resume,
    cache: &mut StackCache,
    in_fiber: &std::sync::atomic::AtomicBool,
) -> Outcome {
    match slice(fiber, input, cache, in_fiber) {
        Some(Suspend::Yield) => Outcome::Yielded,
        Some(Suspend::Park) => Outcome::Parked,
        // A fiber whose cancellation was requested, too low on stack to
        // unwind (the panic-hook freeze is the shutdown pass's alone).
        Some(Suspend::Freeze) => Outcome::Frozen(cancel::take_freeze_reason()),
        None => Outcome::Finished,
    }
}

/// One slice of `fiber` on the calling thread, which holds it RUNNING,
/// resumed with `input`: the reason it suspended, or `None` once it has
/// finished (its stack released, DONE). At the first run it takes its
/// stack (see `run_slice`); with `Resume::Cancel` it starts only to drop
/// its closure (`fiber_main`), and one that cannot have a stack is
/// finished here, on the calling thread's stack. Inlined into both
/// callers: a call of its own showed in a spawn + join's instruction count
/// (`docs/decisions.md`, "Fault paths off the hot paths").
#[inline(always)]
fn slice(
    fiber: &Arc<FiberInner>,
    input: Resume,
    cache: &mut StackCache,
    in_fiber: &std::sync::atomic::AtomicBool,
) -> Option<Suspend> {
    let pool = &fiber.shared.stacks;
    // SAFETY: the caller holds the fiber RUNNING, so this thread alone
    // touches `context`; fiber code never touches it.
    let context = unsafe { &mut *fiber.context.get() };
    if context.is_none() {
        let stack = match fiber.stack_size {
            None => cache.acquire(pool),
            Some(size) => pool.acquire_sized(size.get()),
        };
        let stack = match stack {
            Ok(stack) => stack,
            Err(_) if input == Resume::Cancel => {
                finish_unstarted(fiber, Start::Cancelled);
                return None;
            }
            Err(error) => {
                fault::report_without_stack(fiber, &error);
                finish_unstarted(fiber, Start::NoStack(error));
                return None;
            }
        };
        // A plain pointer: the scheduling reference keeps the fiber alive
        // while it is started (see "Ownership" on FiberInner).
        stack.set_owner(Arc::as_ptr(fiber).cast_mut().cast());
        fiber.guard.set(stack.guard().0);
        let inner: *const FiberInner = Arc::as_ptr(fiber);
        *context = Some(Context::new(stack, move |yielder, first| {
            fiber_main(inner, yielder, first)
        }));
    }
    let running = context.as_mut().expect("context was just ensured");
    let previous = CURRENT.replace(Running {
        fiber: Arc::as_ptr(fiber),
        guard: fiber.guard.get(),
    });
    // Relaxed: a hint for the monitor, which re-checks what it sees.
    in_fiber.store(true, Ordering::Relaxed);
    let suspended = running.resume(input);
    in_fiber.store(false, Ordering::Relaxed);
    CURRENT.set(previous);
    if suspended.is_none() {
        let stack = context.take().expect("context present").into_stack();
        stack.clear_owner();
        if fiber.stack_size.is_none() {
            cache.release(pool, stack);
        } else {
            pool.release(stack);
        }
        fiber.state.finish();
    }
    suspended
}

/// Whether the fiber has started (it has its stack). The caller holds it
/// RUNNING.
pub(crate) fn has_started(fiber: &FiberInner) -> bool {
    // SAFETY: the RUNNING holder alone touches `context`.
    unsafe { (*fiber.context.get()).is_some() }
}

/// Completes a fiber that never got a stack, on the calling thread's stack.
fn finish_unstarted(fiber: &FiberInner, start: Start) -> Outcome {
    // SAFETY: the fiber never started, so its code is not running and the
    // RUNNING owner (us) may take the entry.
    let entry = unsafe { (*fiber.entry.get()).take() }.expect("an unstarted fiber has its entry");
    let output = run_entry(fiber, entry, start);
    // A JoinError: no user code to drop.
    drop(fiber.completion.complete(output));
    fiber.state.finish();
    Outcome::Finished
}

/// Calls the root function. With `Start::Run` it catches the user's panic
/// itself; otherwise it only drops the closure, which is user code outside
/// the fiber's function (`fault.rs`): a panic there is caught and reported,
/// and the fiber's outcome is what it would have been.
fn run_entry(fiber: &FiberInner, entry: Entry, start: Start) -> join::Output {
    let fallback = match &start {
        Start::Run => return entry.run(start),
        Start::Cancelled => None,
        Start::NoStack(error) => Some(error.kind()),
    };
    let mut output = None;
    fault::run_caught(fiber, fault::Dropping::Closure, || {
        output = Some(entry.run(start));
    });
    output.unwrap_or_else(|| match fallback {
        Some(kind) => Err(join::JoinError::no_stack(kind.into())),
        None => Err(join::JoinError::cancelled()),
    })
}

/// The first frame on every fiber stack.
fn fiber_main(fiber: *const FiberInner, yielder: &FiberYielder, first: Resume) {
    // SAFETY: the resuming worker holds the fiber's scheduling reference
    // for the whole slice ("Ownership" on FiberInner).
    let fiber = unsafe { &*fiber };
    fiber.yielder.set(yielder);
    // SAFETY: fiber code owns `entry`; this is the fiber's first instruction.
    let entry = unsafe { (*fiber.entry.get()).take() }.expect("a starting fiber has its entry");
    // Relaxed: see `cancel.rs`, "The request"; a request that this misses
    // takes effect at the fiber's first wait.
    let start = if first == Resume::Cancel || fiber.cancel_requested.load(Ordering::Relaxed) {
        // Started only to drop its closure (shutdown, or cancelled before
        // it ran): a wait in that drop is a wait during a cancellation
        // (`cancel.rs`), in which `is_cancelled` is true.
        fiber.cancel_requested.store(true, Ordering::Relaxed);
        fiber.cancelling.set(true);
        Start::Cancelled
    } else {
        Start::Run
    };
    let output = run_entry(fiber, entry, start);
    // User code outside the fiber's function, on its own stack: caught,
    // reported, counted (`fault.rs`).
    for _ in 0..fiber.locals.drop_all() {
        fault::report(fiber, fault::Dropping::FiberLocal);
    }
    fiber.wait_node.clear();
    if let Some(unread) = fiber.completion.complete(output) {
        fault::run_caught(fiber, fault::Dropping::Result, move || drop(unread));
    }
}

/// The fiber running on this thread now, and its guard page.
#[derive(Clone, Copy)]
struct Running {
    fiber: *const FiberInner,
    guard: usize,
}

thread_local! {
    /// Set by whoever resumes a fiber, for the duration of the slice. A
    /// const-initialised `Cell` of plain data: reading it is
    /// async-signal-safe, which the overflow handler relies on.
    static CURRENT: Cell<Running> = const { Cell::new(Running { fiber: std::ptr::null(), guard: 0 }) };
}

/// The fiber running on the calling thread, if any.
///
/// Never inlined: fiber code may migrate between threads at any suspension,
/// and an inlined thread-local access lets the compiler reuse a
/// thread-local address computed before the suspension.
#[inline(never)]
fn current_ptr() -> *const FiberInner {
    CURRENT.with(|c| c.get().fiber)
}

/// Switches the running fiber back to its worker. When it is resumed, it
/// raises the cancellation unwind if it is to be cancelled: resumed with
/// `Resume::Cancel` (shutdown), or found with its cancellation requested
/// (`JoinHandle::cancel`); once, outside a shield, or it freezes if the
/// unwind cannot be made safely (`cancel.rs`). A park or yield in a
/// destructor that runs during that unwind is an ordinary one.
///
/// `fiber` is the fiber running on this thread (from `current_ptr`).
fn suspend(fiber: *const FiberInner, reason: Suspend) {
    debug_assert!(
        std::ptr::eq(fiber, current_ptr()),
        "suspend of a fiber that is not running here"
    );
    // SAFETY: `fiber` is the fiber running on this thread; its yielder was
    // set at its start and lives on its stack.
    let mut resume = unsafe { context::suspend((*fiber).yielder.get(), reason) };
    while let Resume::Dump(request) = resume {
        // A fiber dump holds this parked fiber: take the backtrace here, on
        // our own stack, and park again without returning to the caller.
        // SAFETY: the dumper resumed us, on its thread: we run.
        dump::capture_here(unsafe { &*fiber }, request);
        // SAFETY: as above; still this fiber, still its yielder.
        resume = unsafe { context::suspend((*fiber).yielder.get(), reason) };
    }
    // SAFETY: `fiber` still names the running fiber: it may be on another
    // thread now, but its `FiberInner` has not moved, and its scheduling
    // reference keeps it alive. Its own code (this) owns `cancelling` and
    // `shield_depth`. (No second look at the thread-local: a call per
    // switch.)
    let fiber = unsafe { &*fiber };
    if resume == Resume::Cancel {
        cancel::on_shutdown_cancel(fiber);
    } else {
        // Woken (by the request's unpark, or by anything else): a request
        // that came while it was away takes effect here.
        cancel::cancellation_point(fiber);
    }
}

/// A fiber's unique identifier, like `std::thread::ThreadId`. Ids are never
/// reused within a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FiberId(NonZeroU64);

impl FiberId {
    /// Ids are handed out to each thread in blocks of [`ID_BLOCK`], so
    /// spawning fibers on two workers does not bounce one counter's cache
    /// line between them. Never inlined: called from fiber code, which may
    /// change threads between calls (see `context.rs`).
    #[inline(never)]
    fn next() -> FiberId {
        const ID_BLOCK: u64 = 1024;
        static NEXT_BLOCK: AtomicU64 = AtomicU64::new(1);
        thread_local! {
            static BLOCK: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
        }
        BLOCK.with(|block| {
            let (mut next, mut end) = block.get();
            if next == end {
                // Relaxed: uniqueness needs atomicity only, not ordering.
                next = NEXT_BLOCK.fetch_add(ID_BLOCK, Ordering::Relaxed);
                end = next + ID_BLOCK;
            }
            block.set((next + 1, end));
            FiberId(NonZeroU64::new(next).expect("fiber ids start at 1"))
        })
    }

    /// The id as a number (for logs and traces).
    pub fn as_u64(&self) -> u64 {
        self.0.get()
    }
}

impl fmt::Display for FiberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A handle to a fiber: its identity, and the means to wake it.
///
/// Cloning is cheap (a reference count). Like `std::thread::Thread`, it is
/// how a fiber that parked itself is woken: [`Fiber::unpark`].
///
/// ```
/// let rt = spindle::Runtime::new().unwrap();
/// rt.block_on(|| {
///     let me = spindle::current();
///     let waker = spindle::spawn(move || me.unpark());
///     spindle::park(); // returns once the other fiber has unparked us
///     waker.join().unwrap();
/// });
/// ```
#[derive(Clone)]
pub struct Fiber {
    /// Dropped by hand, in `Drop`, so that the last handle to a finished
    /// fiber passes its record on for reuse (`recycle`).
    pub(crate) inner: ManuallyDrop<Arc<FiberInner>>,
}

impl Drop for Fiber {
    fn drop(&mut self) {
        // SAFETY: the handle is going away: `inner` is taken once, here,
        // and not used after.
        let inner = unsafe { ManuallyDrop::take(&mut self.inner) };
        // Relaxed: a hint; `recycle` checks uniqueness itself.
        if Arc::strong_count(&inner) == 1 {
            recycle(inner);
        }
    }
}

impl FiberInner {
    /// The usable bytes of the fiber's stack: what it asked for (or the
    /// runtime's default), rounded up to pages as the stack was carved.
    /// Plain arithmetic, so the overflow report may call it.
    fn stack_bytes(&self) -> usize {
        match self.stack_size {
            None => self.shared.stacks.default_size(),
            Some(size) => stack::StackPool::round_size(size.get()),
        }
    }
}

impl Fiber {
    /// The usable size of the fiber's stack in bytes: the size given to
    /// [`fiber::Builder::stack_size`](crate::fiber::Builder::stack_size),
    /// or else the runtime's
    /// ([`Builder::stack_size`](crate::Builder::stack_size)), rounded up to
    /// whole pages as the stack is carved. Known before the fiber first
    /// runs (its stack is taken then).
    ///
    /// ```
    /// let rt = spindle::Runtime::new().unwrap();
    /// let fiber = spindle::fiber::Builder::new()
    ///     .stack_size(100 * 1024)
    ///     .spawn_on(&rt, || spindle::current().stack_size())
    ///     .unwrap();
    /// let size = fiber.join().unwrap();
    /// assert!(size >= 100 * 1024 && size % 4096 == 0);
    /// let default = rt.spawn(|| spindle::current().stack_size()).join().unwrap();
    /// assert_eq!(default, spindle::DEFAULT_STACK_SIZE);
    /// ```
    pub fn stack_size(&self) -> usize {
        self.inner.stack_bytes()
    }

    /// The fiber's unique id.
    pub fn id(&self) -> FiberId {
        self.inner.id
    }

    /// The name given through [`crate::fiber::Builder::name`], if any.
    pub fn name(&self) -> Option<&str> {
        self.inner.name.as_deref()
    }

    /// Makes the fiber's token available, waking it if it is parked, with
    /// the semantics of `std::thread::Thread::unpark`: an unpark before the
    /// fiber parks is not lost (its next `park` returns at once); several
    /// unparks before a park count as one. May be called from any fiber or
    /// thread. Woken from a worker, the fiber runs next on that worker
    /// (message-passing locality); from elsewhere it goes to the runtime's
    /// global queue.
    pub fn unpark(&self) {
        if self.inner.state.unpark() == Unparked::MustSchedule {
            // ("Ownership" on FiberInner.)
            // SAFETY: we won PARKED → SCHEDULED, so the scheduling reference
            // the parked fiber holds is ours to take.
            let scheduling_reference = unsafe { Arc::from_raw(Arc::as_ptr(&self.inner)) };
            Shared::schedule(scheduling_reference);
        }
    }
}

impl fmt::Debug for Fiber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fiber")
            .field("id", &self.inner.id)
            .field("name", &self.inner.name)
            .field("state", &self.inner.state.phase().name())
            .finish()
    }
}

/// The fiber that calls it, like `std::thread::current`.
///
/// # Panics
/// Outside a fiber (on a plain thread). Use [`try_current`] to ask.
pub fn current() -> Fiber {
    try_current().expect(
        "spindle::current() called outside a fiber; use spindle::try_current() on plain threads",
    )
}

/// The fiber that calls it, or `None` on a plain thread.
pub fn try_current() -> Option<Fiber> {
    CurrentFiber::get().map(CurrentFiber::handle)
}

/// How many workers the running fiber's runtime has, or `None` on a plain
/// thread (`sync::Mutex` spins only where another worker may run the
/// holder).
pub(crate) fn current_runtime_workers() -> Option<usize> {
    CurrentFiber::get().map(|fiber| fiber.shared().num_workers())
}

/// Blocks the caller until its token is available, like
/// `std::thread::park`: in a fiber, the fiber parks and its worker runs other
/// fibers; on a plain thread, the thread parks (`std::thread::park`).
///
/// Returns at once if an unpark came first (consuming it). May also return
/// spuriously, without an unpark, as std's may, so call it in a loop that
/// re-checks the condition it waits for. A park is a cancellation point:
/// in a fiber whose cancellation was requested (`JoinHandle::cancel`, not
/// inside a [`shield`]), or when the runtime shuts down, `park` does not
/// return: the fiber is unwound from there (its destructors run). A park
/// inside such a destructor is an ordinary park (at shutdown, for at most
/// the runtime's `Builder::shutdown_grace`; the fiber is then frozen, see
/// `ShutdownReport`); so is a park after a `catch_unwind` that caught the
/// unwind. [`park_timeout`](crate::park_timeout) is the same with a
/// timeout.
pub fn park() {
    let Some(fiber) = CurrentFiber::get() else {
        std::thread::park();
        return;
    };
    if !fiber.take_token() {
        fiber.park_after_token_check();
    }
}

/// The fiber running on this thread, as its own code sees it: what code
/// that parks it needs (its runtime, a handle for its waker, its token,
/// the park itself) without a reference count of its own. `time/` builds
/// the timed park from it; `locals.rs` and `wait_node.rs` find the fiber's
/// wait state through it.
///
/// # Invariants
/// Held only by the code of the fiber it names, while that code runs (it
/// is not `Send`). That fiber is alive meanwhile, across parks and moves
/// to other threads: its `FiberInner` does not move, and its scheduling
/// reference keeps it alive ("Ownership" on `FiberInner`).
#[derive(Clone, Copy)]
pub(crate) struct CurrentFiber(NonNull<FiberInner>);

impl CurrentFiber {
    /// The fiber running on the calling thread, or `None` on a plain thread.
    #[inline]
    pub(crate) fn get() -> Option<CurrentFiber> {
        NonNull::new(current_ptr().cast_mut()).map(CurrentFiber)
    }

    #[inline]
    fn inner(&self) -> &FiberInner {
        // SAFETY: the fiber is alive while its code runs (invariant), and
        // the reference lives no longer than this value, which only that
        // code holds.
        unsafe { self.0.as_ref() }
    }

    /// The runtime the fiber belongs to.
    #[inline]
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.inner().shared
    }

    /// A handle of its own to the fiber (one reference count), for a waker.
    #[inline]
    pub(crate) fn handle(self) -> Fiber {
        // SAFETY: the fiber is alive while its code runs (invariant).
        let inner = unsafe { clone_raw(self.0.as_ptr()) };
        Fiber {
            inner: ManuallyDrop::new(inner),
        }
    }

    /// The fiber wants to park: consumes a pending unpark token. Returns
    /// true if there was one (then the park returns at once).
    ///
    /// Every park is a cancellation point: a cancellation requested for the
    /// fiber (outside a shield) raises its unwind here, before the token is
    /// looked at (`cancel.rs`), so callers must be ready to unwind.
    #[inline]
    pub(crate) fn take_token(self) -> bool {
        cancel::cancellation_point(self.inner());
        self.inner().state.take_token()
    }

    /// Parks the fiber until it is unparked (or spuriously), without a
    /// look at its token: the caller has just called
    /// [`CurrentFiber::take_token`] and found none.
    #[inline]
    pub(crate) fn park_after_token_check(self) {
        suspend(self.0.as_ptr(), Suspend::Park);
    }
}

/// A reference of its own to the fiber at `fiber`.
///
/// # Safety
/// `fiber` must point into a live `Arc<FiberInner>` whose count some other
/// holder keeps above zero for the duration of the call.
#[inline]
unsafe fn clone_raw(fiber: *const FiberInner) -> Arc<FiberInner> {
    // SAFETY: the caller's promise; the count we add is ours.
    unsafe {
        Arc::increment_strong_count(fiber);
        Arc::from_raw(fiber)
    }
}

/// Lets the other runnable fibers of this worker run before the caller
/// continues, like `std::thread::yield_now` (which it calls on a plain
/// thread). The fiber goes to the back of its worker's queue; with nothing
/// else to run there, it carries on without switching away
/// (`scheduler::yield_in_place`). Like a park, it is a cancellation point
/// (`JoinHandle::cancel`), so a computation that yields now and then can
/// be cancelled.
pub fn yield_now() {
    let Some(fiber) = CurrentFiber::get() else {
        std::thread::yield_now();
        return;
    };
    // A yield is a cancellation point too (`cancel.rs` says why).
    cancel::cancellation_point(fiber.inner());
    if !crate::scheduler::yield_in_place(Arc::as_ptr(fiber.shared())) {
        suspend(fiber.0.as_ptr(), Suspend::Yield);
    }
}
