//! Structured concurrency: [`scope`](crate::scope()), fibers that may borrow
//! from their caller and that all finish before the scope returns.
//!
//! # Design
//! A scope is shaped like `std::thread::scope`: the closure gets a
//! [`Scope`], whose [`spawn`](Scope::spawn) takes closures that borrow
//! anything that outlives the scope, and `scope` returns only once every
//! fiber spawned in it has finished. Its failure policy is that of Java's
//! `StructuredTaskScope.ShutdownOnFailure` and Trio's nurseries: the first
//! panic, in a fiber or in the closure itself, cancels every other fiber
//! of the scope (`JoinHandle::cancel`'s request), and once they have all
//! finished the scope re-raises that panic with its own payload.
//! [`Builder::collect_all`] opts out: fibers' panics stay with their
//! handles, as with `std::thread::scope`. [`Builder::deadline`] bounds a
//! whole scope: when it passes, everything in it is cancelled, and the
//! scope returns [`Elapsed`].
//!
//! **The count.** The scope's state (shared, in an `Arc`, by the scope and
//! its fibers) counts the fibers that have not finished. A fiber stops
//! counting after its closure, its result's hand-over and everything it
//! captured have been dropped: a guard that is the last thing its root
//! closure drops, also when the closure is dropped without running (a
//! fiber cancelled before it started, or one that found no stack). The
//! scope's owner (the fiber or thread that called `scope`) waits for the
//! count to reach zero, woken by the fiber that brings it there.
//!
//! **Why borrowing is sound.** A scoped fiber's closure is spawned as an
//! ordinary `'static` fiber with its lifetime erased, so everything rests
//! on one fact: `scope` neither returns nor unwinds until the count is
//! zero. Every way out goes through the wait: a panic of the closure is
//! caught first, and the wait itself cannot be cut short. A cancellation
//! of the owner that arrives while it waits is caught, passed on to the
//! scope's fibers (**nested scopes cancel inward**: a cancelled fiber that
//! owns a scope cancels that scope's fibers, which cancel theirs), and the
//! wait goes on shielded; once every fiber has finished, the scope raises
//! the owner's cancellation (the scope's wait is a cancellation point
//! whose unwind waits for the scope's fibers). A fiber frozen during its cancellation
//! (too little stack to unwind, see `fiber/cancel.rs`) never finishes: it
//! never runs again either, so its frames' borrows are never used, and
//! the owner, polling while it waits on a cancelled scope, stops counting
//! it once its completion says it is done. A fiber's *result* may borrow
//! too; it travels through a packet shared by the fiber and its handle,
//! and the handle cannot outlive `'scope`.
//!
//! **Deadlines.** With a deadline the closure itself runs as a fiber of
//! the scope (so it must be `Send`), and the owner waits with the
//! deadline as its timeout: a deadline must cancel the closure too, and
//! cancellation is per fiber, so the closure cannot run on the owner's
//! own fiber, whose cancellation would outlive the scope.
//!
//! Rejected: a scope handle that may be kept past the call (Trio's
//! nursery object can escape its `async with` only by mistake; here the
//! lifetime makes that a compile error); joining each fiber's
//! `JoinHandle` at the end (the user may hold them, and one handle has one
//! joiner); cancelling on the scope's way out instead of at the failure
//! (siblings would run on for nothing until the closure returned).

use std::any::Any;
use std::fmt;
use std::marker::PhantomData;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::fiber::join::{Cancelled, JoinError};
use crate::fiber::spawn::{Builder as FiberBuilder, SpawnError};
use crate::fiber::{CurrentFiber, Fiber};
use crate::scheduler::Shared;
use crate::JoinHandle;

mod state;

use state::{Policy, State};

/// Runs `f` with a [`Scope`] in which to spawn fibers that may borrow from
/// the caller, and returns `f`'s value once every one of them has
/// finished. The first panic (of a fiber or of `f`) cancels the others,
/// and `scope` re-raises it once all have finished (see the module docs;
/// [`Builder`] for a deadline or for collecting every result instead).
///
/// Works on a fiber (the scope's fibers go to its runtime, and the wait
/// parks) and on a plain thread (they go to the
/// [`default_runtime`](crate::default_runtime), and the wait blocks).
/// The wait is a cancellation point: a calling fiber that is cancelled
/// cancels the scope's fibers, and its own cancellation unwinds out of
/// `scope` once they have all finished.
///
/// ```
/// let mut counts = vec![0usize; 4];
/// let text = "the quick brown fox jumps over the lazy dog";
/// spindle::scope(|s| {
///     for (i, count) in counts.iter_mut().enumerate() {
///         // Borrows `text` and one element of `counts`, mutably.
///         s.spawn(move || *count = text.split(' ').filter(|w| w.len() == i + 2).count());
///     }
/// });
/// assert_eq!(counts, [0, 4, 2, 3]); // words of 2, 3, 4 and 5 letters
/// ```
///
/// A fiber spawned outside a scope must own what it uses:
///
/// ```compile_fail
/// let local = vec![1, 2, 3];
/// let fiber = spindle::spawn(|| local.len()); // error: `local` does not live long enough
/// fiber.join().unwrap();
/// ```
///
/// # Panics
/// With the first panic of the scope, once every fiber has finished; and
/// when a fiber cannot be spawned (see [`Scope::spawn`]).
#[track_caller]
pub fn scope<'env, F, T>(f: F) -> T
where
    F: for<'scope> FnOnce(&'scope Scope<'scope, 'env>) -> T,
{
    on_owner(Policy::ShutdownOnFailure, f)
}

/// A scope without a deadline: `f` runs on the caller.
fn on_owner<'env, F, T>(policy: Policy, f: F) -> T
where
    F: for<'scope> FnOnce(&'scope Scope<'scope, 'env>) -> T,
{
    let scope = Scope::new(State::new(policy));
    let outcome = catch_unwind(AssertUnwindSafe(|| f(&scope)));
    if let Err(payload) = &outcome {
        scope.state.body_failed(payload.as_ref());
    }
    let waited = scope.state.wait(None);
    if waited.owner_cancelled && outcome.is_ok() {
        owner_cancelled();
    }
    scope.finish(outcome)
}

/// Sets up a scope: a deadline, or collecting every result.
///
/// ```
/// use std::time::Duration;
/// let answer = spindle::scope::Builder::new()
///     .timeout(Duration::from_secs(60))
///     .scope(|s| s.spawn(|| 6 * 7).join().unwrap());
/// assert_eq!(answer.unwrap(), 42);
///
/// let slow = spindle::scope::Builder::new()
///     .timeout(Duration::from_millis(10))
///     .scope(|_| spindle::time::sleep(Duration::from_secs(60)));
/// assert!(slow.is_err(), "cancelled at the deadline");
/// ```
#[derive(Clone, Debug)]
pub struct Builder {
    deadline: Option<Instant>,
    policy: Policy,
}

impl Default for Builder {
    fn default() -> Builder {
        Builder::new()
    }
}

impl Builder {
    /// No deadline; the first panic cancels the rest and is re-raised.
    pub fn new() -> Builder {
        Builder {
            deadline: None,
            policy: Policy::ShutdownOnFailure,
        }
    }

    /// When `deadline` passes, everything still running in the scope (its
    /// closure too) is cancelled, and the scope returns `Err(Elapsed)`
    /// once it all has finished.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// let deadline = Instant::now() + Duration::from_millis(20);
    /// let late = spindle::scope::Builder::new().deadline(deadline).scope(|s| {
    ///     s.spawn(|| spindle::time::sleep(Duration::from_secs(60)));
    /// });
    /// assert_eq!(late.unwrap_err().deadline(), deadline);
    /// ```
    pub fn deadline(mut self, deadline: Instant) -> Builder {
        self.deadline = Some(deadline);
        self
    }

    /// [`deadline`](Builder::deadline) `timeout` from now (none if that is
    /// beyond the clock's range).
    ///
    /// ```
    /// use std::time::Duration;
    /// let quick = spindle::scope::Builder::new().timeout(Duration::from_secs(60)).scope(|_| 1);
    /// assert_eq!(quick, Ok(1));
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Builder {
        self.deadline = Instant::now().checked_add(timeout);
        self
    }

    /// A fiber's panic no longer cancels its siblings nor is re-raised by
    /// the scope: each handle's [`join`](ScopedJoinHandle::join) returns
    /// its fiber's own result, payload and all. As with
    /// `std::thread::scope`, a panic nobody joined makes the scope panic
    /// at its end. A panic of the closure itself still cancels the rest.
    ///
    /// ```
    /// let results = spindle::scope::Builder::new().collect_all().scope(|s| {
    ///     let fibers: Vec<_> = (0..4)
    ///         .map(|i| s.spawn(move || if i == 2 { panic!("two") } else { i }))
    ///         .collect();
    ///     fibers.into_iter().map(|f| f.join().map_err(|e| e.to_string())).collect::<Vec<_>>()
    /// });
    /// let results = results.unwrap();
    /// assert_eq!(results[3], Ok(3), "a sibling's panic cancelled nothing");
    /// assert!(results[2].as_ref().unwrap_err().contains("two"));
    /// ```
    pub fn collect_all(mut self) -> Builder {
        self.policy = Policy::CollectAll;
        self
    }

    /// Runs the scope (see [`scope`](crate::scope())): `Ok` with `f`'s value,
    /// or `Err(Elapsed)` if the deadline passed first (everything was
    /// cancelled). `f` must be `Send`: with a deadline it runs as a fiber.
    ///
    /// # Panics
    /// As [`scope`](crate::scope()), and with the policy above.
    #[track_caller]
    pub fn scope<'env, F, T>(self, f: F) -> Result<T, Elapsed>
    where
        F: for<'scope> FnOnce(&'scope Scope<'scope, 'env>) -> T + Send,
        T: Send,
    {
        let Some(deadline) = self.deadline else {
            return Ok(on_owner(self.policy, f));
        };
        let scope = Scope::new(State::new(self.policy));
        let scope_ref = &scope;
        let body = scope_ref.spawn(move || {
            // The closure's panic cancels the rest, as without a deadline.
            catch_unwind(AssertUnwindSafe(|| f(scope_ref))).unwrap_or_else(|payload| {
                scope_ref.state.body_failed(payload.as_ref());
                resume_unwind(payload)
            })
        });
        let waited = scope.state.wait(Some(deadline));
        let outcome = match body.into_result() {
            Ok(_) if waited.owner_cancelled => owner_cancelled(),
            Ok(value) => Ok(value),
            Err(error) if error.is_panic() => Err(error.into_panic()),
            // Cancelled (by the deadline, or with the owner) or never run.
            Err(_) if waited.owner_cancelled => owner_cancelled(),
            Err(_) => return scope.finish_elapsed(deadline),
        };
        let value = scope.finish(outcome);
        if waited.elapsed {
            Err(Elapsed { deadline })
        } else {
            Ok(value)
        }
    }
}

/// The scope's owner was cancelled while it waited: once the scope's
/// fibers have finished, its cancellation takes effect here, at a
/// cancellation point, which raises it as any wait does. (The request was
/// seen as an unwind out of the wait, so no shield holds it back.)
fn owner_cancelled() -> ! {
    crate::yield_now();
    panic!(
        "the owner of a scope was cancelled inside a shield, and the scope has no value to return"
    );
}

/// A panic payload's message, if it is a string.
fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|message| (*message).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "Box<dyn Any>".to_owned())
}

/// The deadline of a scope passed before everything in it had finished;
/// all of it was cancelled.
///
/// ```
/// use std::time::Duration;
/// let elapsed = spindle::scope::Builder::new()
///     .timeout(Duration::from_millis(5))
///     .scope(|_| spindle::time::sleep(Duration::from_secs(60)))
///     .unwrap_err();
/// assert!(elapsed.to_string().contains("deadline passed"));
/// assert!(elapsed.deadline() <= std::time::Instant::now());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Elapsed {
    deadline: Instant,
}

impl Elapsed {
    /// The deadline that passed.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }
}

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "the scope's deadline passed before it finished; everything in it was cancelled",
        )
    }
}

impl std::error::Error for Elapsed {}

/// Where the fibers of a [`scope`](crate::scope()) are spawned. `'scope` is
/// the scope's own lifetime, `'env` what its fibers may borrow. Scoped
/// fibers may spawn more fibers into the same scope.
///
/// ```
/// let total = std::sync::atomic::AtomicUsize::new(0);
/// spindle::scope(|s| {
///     s.spawn(|| {
///         // A fiber of the scope spawns into it too.
///         s.spawn(|| total.fetch_add(2, std::sync::atomic::Ordering::SeqCst));
///         total.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
///     });
/// });
/// assert_eq!(total.into_inner(), 3);
/// ```
pub struct Scope<'scope, 'env: 'scope> {
    state: Arc<State>,
    /// The runtime the scope's fibers go to.
    shared: Arc<Shared>,
    scope: PhantomData<&'scope mut &'scope ()>,
    env: PhantomData<&'env mut &'env ()>,
}

impl<'scope, 'env> Scope<'scope, 'env> {
    fn new(state: State) -> Scope<'scope, 'env> {
        let shared = match CurrentFiber::get() {
            Some(fiber) => fiber.shared().clone(),
            None => crate::default_runtime::default_shared().clone(),
        };
        Scope {
            state: Arc::new(state),
            shared,
            scope: PhantomData,
            env: PhantomData,
        }
    }

    /// Spawns a fiber in the scope; `f` may borrow anything that outlives
    /// the scope. A fiber spawned into a scope that is being cancelled is
    /// cancelled at once.
    ///
    /// # Panics
    /// When the fiber cannot be spawned (see [`crate::try_spawn`]); use
    /// [`fiber::Builder::spawn_scoped`](FiberBuilder::spawn_scoped) for the
    /// error instead.
    ///
    /// ```
    /// let mut squares = [0u64; 8];
    /// spindle::scope(|s| {
    ///     for (i, square) in squares.iter_mut().enumerate() {
    ///         s.spawn(move || *square = (i as u64).pow(2));
    ///     }
    /// });
    /// assert_eq!(squares[7], 49);
    /// ```
    #[track_caller]
    pub fn spawn<F, T>(&'scope self, f: F) -> ScopedJoinHandle<'scope, T>
    where
        F: FnOnce() -> T + Send + 'scope,
        T: Send + 'scope,
    {
        FiberBuilder::new()
            .spawn_scoped(self, f)
            .unwrap_or_else(|error| panic!("Scope::spawn failed: {error}"))
    }

    /// Cancels every fiber of the scope that has not finished (and any
    /// spawned into it later), as [`crate::JoinHandle::cancel`] does. The
    /// scope's closure carries on (it is not one of its fibers, unless the
    /// scope has a deadline).
    ///
    /// ```
    /// use std::time::Duration;
    /// spindle::scope(|s| {
    ///     let sleeper = s.spawn(|| spindle::time::sleep(Duration::from_secs(60)));
    ///     assert!(!s.is_cancelled());
    ///     s.cancel();
    ///     assert!(s.is_cancelled());
    ///     assert!(sleeper.join().unwrap_err().is_cancelled());
    /// });
    /// ```
    pub fn cancel(&self) {
        self.state.cancel_all();
    }

    /// Whether the scope is being cancelled: by a panic, its deadline,
    /// [`Scope::cancel`], or its owner's cancellation (see the example of
    /// [`Scope::cancel`]).
    pub fn is_cancelled(&self) -> bool {
        self.state.is_cancelled()
    }

    /// The closure's outcome, after the wait: its value, or the panic
    /// the policy says to re-raise.
    fn finish<T>(&self, outcome: Result<T, Box<dyn Any + Send>>) -> T {
        let (first_panic, unjoined) = self.state.take_failures();
        match outcome {
            // The owner's cancellation goes on unwinding.
            Err(payload) if payload.is::<Cancelled>() => resume_unwind(payload),
            Err(payload) => resume_unwind(first_panic.unwrap_or(payload)),
            Ok(value) => {
                if let Some(payload) = first_panic {
                    resume_unwind(payload);
                }
                assert!(
                    unjoined == 0,
                    "{unjoined} scoped fiber(s) panicked and their handles were not joined"
                );
                value
            }
        }
    }

    /// The deadline passed and the closure's fiber has no value: the
    /// scope's first panic if there was one, else `Elapsed`.
    fn finish_elapsed<T>(&self, deadline: Instant) -> Result<T, Elapsed> {
        if let (Some(payload), _) = self.state.take_failures() {
            resume_unwind(payload);
        }
        Err(Elapsed { deadline })
    }
}

impl fmt::Debug for Scope<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope")
            .field("running", &self.state.running())
            .field("cancelled", &self.state.is_cancelled())
            .finish_non_exhaustive()
    }
}

impl FiberBuilder {
    /// Spawns the fiber in `scope` with this builder's name and stack size
    /// (see [`Scope::spawn`]), or says why it cannot.
    ///
    /// ```
    /// let names = spindle::scope(|s| {
    ///     let fiber = spindle::fiber::Builder::new()
    ///         .name("scoped")
    ///         .spawn_scoped(s, || spindle::current().name().map(str::to_owned))
    ///         .unwrap();
    ///     fiber.join().unwrap()
    /// });
    /// assert_eq!(names.as_deref(), Some("scoped"));
    /// ```
    #[track_caller]
    pub fn spawn_scoped<'scope, 'env, F, T>(
        self,
        scope: &'scope Scope<'scope, 'env>,
        f: F,
    ) -> Result<ScopedJoinHandle<'scope, T>, SpawnError>
    where
        F: FnOnce() -> T + Send + 'scope,
        T: Send + 'scope,
    {
        let state = &scope.state;
        let slot = state.reserve();
        let packet: Arc<Packet<T>> = Arc::new(Packet(Mutex::new(None)));
        let task = Child {
            f,
            packet: packet.clone(),
            done: Done {
                state: state.clone(),
                slot,
            },
        };
        let root: Box<dyn FnOnce() + Send + 'scope> = Box::new(move || task.run());
        // Only the lifetime changes. The scope does not return or unwind
        // until its count is zero (module docs, "Why borrowing is sound"),
        // and the fiber stops counting only when `Done`, the last thing
        // `root` drops, is dropped: after `f`, its captures and the
        // packet's reference, whether `root` ran or was dropped unrun (a
        // failed spawn drops it at once). A fiber frozen before that never
        // runs again, and stops counting once its completion is done.
        // SAFETY: hence `root` may borrow `'scope` data though typed
        // `'static`.
        let root: Box<dyn FnOnce() + Send + 'static> = unsafe { std::mem::transmute(root) };
        let handle = match self.spawn_in(&scope.shared, root) {
            Ok(handle) => handle,
            Err(error) => {
                state.spawn_failed(slot);
                return Err(error);
            }
        };
        state.register(slot, handle.fiber());
        Ok(ScopedJoinHandle {
            handle,
            packet,
            state: state.clone(),
            scope: PhantomData,
        })
    }
}

/// An owned permission to join a scoped fiber. It cannot outlive its
/// scope; dropping it leaves the fiber running, and the scope waits for
/// it anyway.
///
/// ```
/// let name = String::from("borrowed");
/// let length = spindle::scope(|s| {
///     let handle = s.spawn(|| name.len());
///     assert_eq!(handle.fiber().name(), None, "an unnamed fiber");
///     handle.join().unwrap()
/// });
/// assert_eq!(length, 8);
/// ```
pub struct ScopedJoinHandle<'scope, T> {
    handle: JoinHandle<()>,
    packet: Arc<Packet<T>>,
    state: Arc<State>,
    scope: PhantomData<&'scope ()>,
}

impl<T> ScopedJoinHandle<'_, T> {
    /// Waits for the fiber to finish and returns its result, as
    /// [`JoinHandle::join`]: `Err` if it panicked (with its payload; for
    /// the panic the scope re-raises, a message saying so), was cancelled,
    /// or never ran.
    ///
    /// ```
    /// spindle::scope::Builder::new().collect_all().scope(|s| {
    ///     let failing = s.spawn(|| -> u32 { panic!("no") });
    ///     assert!(failing.join().unwrap_err().is_panic());
    ///     assert_eq!(s.spawn(|| 5).join().unwrap(), 5);
    /// }).unwrap();
    /// ```
    pub fn join(self) -> Result<T, JoinError> {
        let state = self.state.clone();
        let result = self.into_result();
        if matches!(&result, Err(error) if error.is_panic()) {
            state.panic_joined();
        }
        result
    }

    /// Joins the fiber. Its `JoinHandle<()>` says whether the root closure
    /// ran to its end; if it did, the packet holds the result.
    fn into_result(self) -> Result<T, JoinError> {
        self.handle.join()?;
        let result = self
            .packet
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        result.expect("a scoped fiber whose root closure returned left its result")
    }

    /// Requests the fiber's cancellation, as [`JoinHandle::cancel`].
    ///
    /// ```
    /// let (tx, rx) = spindle::sync::mpsc::channel::<u32>();
    /// spindle::scope(|s| {
    ///     let waiting = s.spawn(|| rx.recv()); // borrows the receiver
    ///     waiting.cancel();
    ///     while !waiting.is_finished() {
    ///         spindle::yield_now();
    ///     }
    ///     assert!(waiting.join().unwrap_err().is_cancelled());
    /// });
    /// drop(tx);
    /// ```
    pub fn cancel(&self) {
        self.handle.cancel();
    }

    /// Whether the fiber has finished; never blocks.
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    /// The fiber this handle joins.
    pub fn fiber(&self) -> &Fiber {
        self.handle.fiber()
    }
}

impl<T> fmt::Debug for ScopedJoinHandle<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopedJoinHandle")
            .field("fiber", self.handle.fiber())
            .finish_non_exhaustive()
    }
}

/// A scoped fiber's result, handed from the fiber to its handle.
struct Packet<T>(Mutex<Option<Result<T, JoinError>>>);

/// A scoped fiber's root closure, with what it needs. Fields drop in
/// order: `done`, which stops the fiber counting, last.
struct Child<F, T> {
    f: F,
    packet: Arc<Packet<T>>,
    done: Done,
}

impl<F: FnOnce() -> T, T> Child<F, T> {
    fn run(self) {
        let Child { f, packet, done } = self;
        let result = match catch_unwind(AssertUnwindSafe(f)) {
            Ok(value) => Ok(value),
            Err(payload) => Err(done.state.fiber_failed(payload)),
        };
        *packet.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
        drop(packet);
        drop(done);
    }
}

/// Stops its fiber counting when dropped (module docs, "The count").
struct Done {
    state: Arc<State>,
    slot: usize,
}

impl Drop for Done {
    fn drop(&mut self) {
        self.state.finished(self.slot);
    }
}
