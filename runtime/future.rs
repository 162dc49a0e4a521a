//! Futures and fibers together: [`block_on`] awaits a future from a fiber
//! (or a plain thread), and async code awaits a fiber's [`JoinHandle`]
//! ([`Join`]).
//!
//! ```
//! let rt = spindle::Runtime::new().unwrap();
//! let sum = rt.block_on(|| {
//!     let (sender, receiver) = futures::channel::oneshot::channel();
//!     let fiber = spindle::spawn(move || sender.send(21).unwrap());
//!     // An async block awaiting a future channel and a fiber, run on this fiber.
//!     spindle::future::block_on(async move {
//!         let value = receiver.await.unwrap();
//!         fiber.await.unwrap();
//!         value * 2
//!     })
//! });
//! assert_eq!(sum, 42);
//! ```
//!
//! # How
//! A future is polled until it is ready; between polls the caller parks
//! (`spindle::park`: a fiber parks and its worker runs other fibers, a
//! plain thread parks as `std::thread::park`), and the future's `Waker`
//! unparks it, from any thread. Fibers have their own stacks, so there is
//! no executor here: the fiber is the task, `block_on` its whole poll loop,
//! and a future polled this way may block inside `poll` (a spindle lock, a
//! socket read) without harm, since blocking a fiber is parking it.
//!
//! A `JoinHandle` turns into a future ([`Join`], by `IntoFuture`, so
//! `handle.await` works) whose waker waits in the fiber's `Completion`
//! (`fiber/join.rs`) where a joiner's `Waiter` would; it allocates only
//! the boxed waker.
//!
//! # What works, what does not
//! Works: any future that needs no particular runtime to drive it:
//! `futures`' channels and combinators, `async-channel`, `async-lock`
//! (and `event-listener`, under both); also async-io's (smol's, async-std's)
//! sockets and timers, whose reactor runs on a helper thread of async-io's
//! own when none of its `block_on` calls drives it.
//!
//! Does not work: futures that need the *ambient* runtime of another
//! executor, above all tokio's: its sockets, timers (`tokio::time::sleep`)
//! and `tokio::spawn` panic ("there is no reactor running") when polled
//! outside a tokio runtime, and spindle's reactor cannot stand in for
//! tokio's. Run such code on a tokio runtime of its own and reach it with
//! channels, or call its `Runtime::block_on` inside [`crate::blocking`]
//! (it blocks a pool thread, not a worker). Thread-bound values held across
//! an `.await` are subject to the crate's one rule ("Fibers move between
//! threads"): a fiber may wake up on another worker.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use crate::fiber::join::{JoinError, JoinHandle};
use crate::fiber::waiter::Waiter;

/// Runs `future` to completion on the calling fiber and returns its
/// output: polls it, parks the fiber until its waker is called, polls
/// again. On a plain thread it parks the thread. The future may borrow
/// from the caller and need not be `Send`.
///
/// The name is the one `futures::executor::block_on` and `pollster` use
/// for the same loop; what it blocks is the caller, which in a fiber means
/// the fiber parks while its worker runs others.
///
/// ```
/// use std::time::Duration;
/// let rt = spindle::Runtime::new().unwrap();
/// let (sender, receiver) = futures::channel::mpsc::unbounded::<u32>();
/// // A plain thread feeds a future channel; a fiber awaits it.
/// let feeder = std::thread::spawn(move || {
///     for i in 1..=3 {
///         std::thread::sleep(Duration::from_millis(1));
///         sender.unbounded_send(i).unwrap();
///     }
/// });
/// let total: u32 = rt.block_on(|| {
///     use futures::StreamExt;
///     spindle::future::block_on(receiver.fold(0, |sum, i| async move { sum + i }))
/// });
/// feeder.join().unwrap();
/// assert_eq!(total, 6);
/// ```
pub fn block_on<F: IntoFuture>(future: F) -> F::Output {
    let mut future = pin!(future.into_future());
    let waker = Waker::from(Arc::new(Unpark(Waiter::current())));
    let mut context = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        // A wake that came during the poll left the token: this returns at
        // once, and the future is polled again.
        crate::park();
    }
}

/// The waker of [`block_on`]: unparks the fiber or thread that polls.
struct Unpark(Waiter);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.wake();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.wake();
    }
}

/// A [`JoinHandle`] as a future: ready with the fiber's result (what
/// [`JoinHandle::join`] returns) once the fiber has finished. Made by
/// `IntoFuture`, so async code writes `handle.await`; combinators and other
/// executors take `handle.into_future()`. Dropping it detaches the fiber,
/// as dropping the handle does.
///
/// `JoinHandle` itself is not a `Future`: `let _ = spindle::spawn(..)`,
/// the usual way to detach a fiber, would then trip clippy's
/// `let_underscore_future` in every program that does it.
///
/// ```
/// use std::future::IntoFuture;
/// let rt = spindle::Runtime::new().unwrap();
/// let fiber = rt.spawn(|| 6 * 7);
/// // Any executor can await a fiber; here, the `futures` crate's, on a plain thread.
/// let answer = futures::executor::block_on(fiber.into_future()).unwrap();
/// assert_eq!(answer, 42);
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct Join<T> {
    /// `None` once it returned the result.
    handle: Option<JoinHandle<T>>,
}

impl<T: 'static> IntoFuture for JoinHandle<T> {
    type Output = Result<T, JoinError>;
    type IntoFuture = Join<T>;

    fn into_future(self) -> Join<T> {
        Join { handle: Some(self) }
    }
}

impl<T: 'static> Future for Join<T> {
    type Output = Result<T, JoinError>;

    /// # Panics
    /// When polled again after it returned `Ready`.
    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        let handle = self
            .handle
            .as_ref()
            .expect("a fiber's Join polled after it returned its result");
        let result = handle.poll_join(context);
        if result.is_ready() {
            self.handle = None;
        }
        result
    }
}

impl<T> fmt::Debug for Join<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Join")
            .field("handle", &self.handle)
            .finish()
    }
}
