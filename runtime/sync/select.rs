//! [`Select`]: wait for the first of several channel operations (receives
//! and sends on [`mpsc`](super::mpsc) channels) to complete, Go's `select`
//! for fibers and threads.
//!
//! # Design
//! Each arm pairs an operation with a handler that turns its outcome into
//! the select's result `R`; arms are boxed trait objects, so one select
//! mixes channels of different message types. [`Select::wait`] runs:
//!
//! 1. **Poll** every arm with its non-blocking form (`try_recv`,
//!    `try_send`), starting at a random arm, so that when several are ready
//!    each is chosen about equally often and none starves. The first that
//!    completes wins: its handler runs and the select returns.
//! 2. **Register**: queue one wait-list node per arm on that arm's channel
//!    (`Channel::register_receive` / `register_send`), each under the
//!    channel's lock after re-checking readiness, so a change after the
//!    check notifies the node. If an arm turned ready meanwhile, skip to 4.
//!    Receive arms go first: on a rendezvous channel, a receiver queueing
//!    wakes the send arms waiting for one, and a select must neither wake
//!    itself so nor count its own receive node as a partner (it would spin).
//! 3. **Park** until any node is notified (each notification unparks us),
//!    or the deadline passes.
//! 4. **Deregister** every node, noting which were notified, and go to 1.
//!
//! A notification is meant for one waiter ("a message arrived": one
//! receiver should come). So when the select completes arm *i*, a
//! notification received on any other arm is passed on to that list's next
//! waiter, or another waiter could sleep through a message it should have
//! had. A notification on an arm that is not ready when polled is dropped:
//! someone else consumed what it announced. (Passing those on as well
//! would be safe but can bounce a notification between two idle selects
//! forever.) A select unwound while registered (runtime shutdown) removes
//! its nodes and passes on what it received, via a drop guard.
//!
//! Rejected: crossbeam's two-phase protocol, where a select *reserves* an
//! operation and then completes it, so that a woken select never finds its
//! message gone. It needs per-operation tokens in every channel flavour;
//! here a lost race costs one more round of steps 1 to 4.
//!
//! # Limits
//! - A send arm on a rendezvous channel is ready only while a receiver
//!   waits (as [`SyncSender::try_send`]); it wakes that receiver and does
//!   not wait for the take.
//! - Unbounded `Sender`s have no send arm: their sends never wait.
//! - The values of send arms that were not chosen are dropped.

use std::cell::Cell;
use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::mpsc::QueueRef;
use super::mpsc::{
    Receiver, RecvError, Registration, SendError, SyncSender, TryRecvError, TrySendError,
};
use super::waitlist::Queue;

/// A set of channel operations to wait on; the first to complete wins.
///
/// Add arms with [`recv`](Select::recv) and [`send`](Select::send), each
/// with a handler that maps its outcome to the select's result, then run
/// it with [`wait`](Select::wait), [`wait_timeout`](Select::wait_timeout)
/// or [`try_select`](Select::try_select) (the non-blocking form). When
/// several arms are ready, one is chosen at random. A receive arm on a
/// channel whose senders are all gone is ready, with `Err(RecvError)`; a
/// send arm whose receivers are all gone is ready, with the value back in
/// `Err(SendError)`.
///
/// ```
/// use std::time::Duration;
/// use spindle::sync::{mpsc, Select};
///
/// let rt = spindle::Runtime::new().unwrap();
/// rt.block_on(|| {
///     let (numbers_tx, numbers) = mpsc::channel::<u32>();
///     let (words_tx, words) = mpsc::channel::<&str>();
///     spindle::spawn(move || words_tx.send("hello").unwrap());
///
///     // Parks until one arm completes: here, the word arrives.
///     let got = Select::new()
///         .recv(&numbers, |n| format!("number {}", n.unwrap()))
///         .recv(&words, |w| format!("word {}", w.unwrap()))
///         .wait();
///     assert_eq!(got, "word hello");
///
///     // Nothing is ready: the timeout passes (or, without waiting, the
///     // default form says so at once).
///     let got = Select::new()
///         .recv(&numbers, |n| n.unwrap())
///         .wait_timeout(Duration::from_millis(5));
///     assert!(got.is_err());
///     assert!(Select::new().recv(&numbers, |n| n.unwrap()).try_select().is_err());
///
///     // A send arm: room in a bounded channel makes it ready.
///     let (tx, rx) = mpsc::sync_channel(1);
///     let sent = Select::new()
///         .recv(&numbers, |_| "received")
///         .send(&tx, 7, |result| {
///             result.unwrap();
///             "sent"
///         })
///         .wait();
///     assert_eq!(sent, "sent");
///     assert_eq!(rx.recv(), Ok(7));
///     drop(numbers_tx);
/// });
/// ```
#[must_use = "a Select does nothing until `wait`, `wait_timeout` or `try_select` runs it"]
pub struct Select<'a, R> {
    arms: Vec<Box<dyn Arm<'a, R> + 'a>>,
}

/// [`Select::wait_timeout`]: no arm completed in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SelectTimeoutError;

/// [`Select::try_select`]: no arm could complete without waiting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrySelectError;

/// One operation of a select, type-erased over its message type.
trait Arm<'a, R> {
    /// Tries the operation without waiting. True if it completed (or
    /// failed for good, disconnected); the outcome is kept for `finish`.
    fn try_complete(&mut self) -> bool;
    /// Whether this is a send arm (queued after the receive arms).
    fn is_send(&self) -> bool;
    /// Queues a node on the channel's wait list, or `None` if the operation
    /// could complete now. `own`: the select's nodes queued so far.
    fn register(&self, own: &[(usize, Registration<'a>)]) -> Option<Registration<'a>>;
    /// Runs the handler on the outcome `try_complete` kept.
    fn finish(self: Box<Self>) -> R;
}

struct RecvArm<'a, T, F> {
    receiver: &'a Receiver<T>,
    outcome: Option<Result<T, RecvError>>,
    handler: F,
}

struct SendArm<'a, T, F> {
    sender: &'a SyncSender<T>,
    /// The value until it is sent (or handed back by a disconnection).
    value: Option<T>,
    outcome: Option<Result<(), SendError<T>>>,
    handler: F,
}

impl<'a, T, R, F: FnOnce(Result<T, RecvError>) -> R> Arm<'a, R> for RecvArm<'a, T, F> {
    fn try_complete(&mut self) -> bool {
        debug_assert!(self.outcome.is_none(), "an arm completed twice");
        match self.receiver.try_recv() {
            Ok(value) => self.outcome = Some(Ok(value)),
            Err(TryRecvError::Disconnected) => self.outcome = Some(Err(RecvError)),
            Err(TryRecvError::Empty) => return false,
        }
        true
    }

    fn is_send(&self) -> bool {
        false
    }

    fn register(&self, _own: &[(usize, Registration<'a>)]) -> Option<Registration<'a>> {
        let receiver: &'a Receiver<T> = self.receiver;
        receiver.channel().register_receive()
    }

    fn finish(self: Box<Self>) -> R {
        let outcome = self.outcome.expect("finish after try_complete");
        (self.handler)(outcome)
    }
}

impl<'a, T, R, F: FnOnce(Result<(), SendError<T>>) -> R> Arm<'a, R> for SendArm<'a, T, F> {
    fn try_complete(&mut self) -> bool {
        debug_assert!(self.outcome.is_none(), "an arm completed twice");
        let value = self.value.take().expect("an unsent send arm has its value");
        match self.sender.try_send(value) {
            Ok(()) => self.outcome = Some(Ok(())),
            Err(TrySendError::Disconnected(value)) => self.outcome = Some(Err(SendError(value))),
            Err(TrySendError::Full(value)) => {
                self.value = Some(value);
                return false;
            }
        }
        true
    }

    fn is_send(&self) -> bool {
        true
    }

    fn register(&self, own: &[(usize, Registration<'a>)]) -> Option<Registration<'a>> {
        let sender: &'a SyncSender<T> = self.sender;
        sender
            .channel()
            .register_send(|node| own.iter().any(|(_, mine)| Arc::ptr_eq(&mine.node, node)))
    }

    fn finish(self: Box<Self>) -> R {
        let outcome = self.outcome.expect("finish after try_complete");
        (self.handler)(outcome)
    }
}

impl<'a, R> Select<'a, R> {
    /// A select with no arms.
    pub fn new() -> Select<'a, R> {
        Select { arms: Vec::new() }
    }

    /// Adds an arm that receives from `receiver`; if chosen, `handler` gets
    /// the message, or `Err(RecvError)` if every sender is gone.
    pub fn recv<T: 'a>(
        mut self,
        receiver: &'a Receiver<T>,
        handler: impl FnOnce(Result<T, RecvError>) -> R + 'a,
    ) -> Select<'a, R> {
        self.arms.push(Box::new(RecvArm {
            receiver,
            outcome: None,
            handler,
        }));
        self
    }

    /// Adds an arm that sends `value` on `sender`; if chosen, `handler` gets
    /// `Ok(())`, or the value back in `Err(SendError)` if every receiver is
    /// gone. If another arm is chosen, `value` is dropped.
    pub fn send<T: 'a>(
        mut self,
        sender: &'a SyncSender<T>,
        value: T,
        handler: impl FnOnce(Result<(), SendError<T>>) -> R + 'a,
    ) -> Select<'a, R> {
        self.arms.push(Box::new(SendArm {
            sender,
            value: Some(value),
            outcome: None,
            handler,
        }));
        self
    }

    /// The number of arms.
    pub fn len(&self) -> usize {
        self.arms.len()
    }

    /// Whether there are no arms.
    pub fn is_empty(&self) -> bool {
        self.arms.is_empty()
    }

    /// Parks the calling fiber (or blocks the thread) until an arm
    /// completes, and returns its handler's result.
    ///
    /// # Panics
    /// If there are no arms (it would wait forever).
    pub fn wait(self) -> R {
        assert!(
            !self.arms.is_empty(),
            "Select::wait with no arms would wait forever"
        );
        self.run(None, true)
            .expect("a select without deadline completes")
    }

    /// Like [`Select::wait`], giving up after `timeout`.
    pub fn wait_timeout(self, timeout: Duration) -> Result<R, SelectTimeoutError> {
        match Instant::now().checked_add(timeout) {
            Some(deadline) => self.wait_deadline(deadline),
            None if self.arms.is_empty() => {
                crate::time::sleep(timeout); // "forever"
                Err(SelectTimeoutError)
            }
            None => Ok(self.wait()),
        }
    }

    /// Like [`Select::wait`], giving up at `deadline`. With no arms, waits
    /// for the deadline.
    pub fn wait_deadline(self, deadline: Instant) -> Result<R, SelectTimeoutError> {
        if self.arms.is_empty() {
            crate::time::sleep_until(deadline);
            return Err(SelectTimeoutError);
        }
        self.run(Some(deadline), true).ok_or(SelectTimeoutError)
    }

    /// Completes an arm that is ready now, if any; never waits (a select
    /// with a default case).
    pub fn try_select(self) -> Result<R, TrySelectError> {
        self.run(None, false).ok_or(TrySelectError)
    }

    /// Steps 1 to 4 of the module docs. `None`: the deadline passed, or
    /// nothing was ready and `block` is false.
    fn run(self, deadline: Option<Instant>, block: bool) -> Option<R> {
        let mut arms = self.arms;
        let count = arms.len();
        if count == 0 {
            return None;
        }
        let start = random_below(count);
        let order = move || (0..count).map(move |k| (start + k) % count);
        // Arms whose nodes were notified in the last round, with their queue.
        let mut notified: Vec<(usize, QueueRef<'a>)> = Vec::new();
        loop {
            // 1. Poll.
            if let Some(chosen) = order().find(|&index| arms[index].try_complete()) {
                for &(index, queue) in &notified {
                    if index != chosen {
                        queue.notify_one(); // not ours to use: pass it on
                    }
                }
                let arm = arms.swap_remove(chosen);
                drop(arms); // unsent values of the other arms
                return Some(arm.finish());
            }
            if !block || deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                return None;
            }
            // 2. Register.
            let mut registered = Registered {
                entries: Vec::with_capacity(count),
            };
            let mut ready = false;
            // Receive arms first: queueing one on a rendezvous channel wakes
            // send arms waiting for a receiver, which must not be our own.
            let receives = order().filter(|&index| !arms[index].is_send());
            let sends = order().filter(|&index| arms[index].is_send());
            for index in receives.chain(sends) {
                match arms[index].register(&registered.entries) {
                    Some(registration) => registered.entries.push((index, registration)),
                    None => {
                        ready = true;
                        break;
                    }
                }
            }
            // 3. Park.
            if !ready {
                while !registered.any_notified() {
                    if !crate::time::park_until(deadline) {
                        break;
                    }
                }
            }
            // 4. Deregister.
            notified = registered.deregister();
        }
    }
}

/// A select's queued nodes. Dropped without `deregister` (the select was
/// unwound while parked), it removes them and passes on every notification
/// they received.
struct Registered<'a> {
    entries: Vec<(usize, Registration<'a>)>,
}

impl<'a> Registered<'a> {
    fn any_notified(&self) -> bool {
        self.entries
            .iter()
            .any(|(_, registration)| registration.node.is_notified())
    }

    /// Removes every node; returns the arms whose node had been notified
    /// (a notifier popped it before we could remove it).
    fn deregister(mut self) -> Vec<(usize, QueueRef<'a>)> {
        std::mem::take(&mut self.entries)
            .into_iter()
            .filter(|(_, registration)| !registration.queue.remove(&registration.node))
            .map(|(index, registration)| (index, registration.queue))
            .collect()
    }
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        for (_, registration) in self.entries.drain(..) {
            if !registration.queue.remove(&registration.node) {
                registration.queue.notify_one();
            }
        }
    }
}

impl<R> Default for Select<'_, R> {
    fn default() -> Self {
        Select::new()
    }
}

impl<R> fmt::Debug for Select<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Select")
            .field("arms", &self.arms.len())
            .finish()
    }
}

impl fmt::Display for SelectTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("timed out waiting on select")
    }
}

impl fmt::Display for TrySelectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no operation of the select was ready")
    }
}

impl Error for SelectTimeoutError {}
impl Error for TrySelectError {}

/// A pseudo-random number below `bound` (> 0), for the select's starting
/// arm: xorshift64* on a per-thread seed. Not inlined: a fiber may change
/// threads between calls, and an inlined thread-local access could reuse
/// another call's thread-local address (see `fiber::current_ptr`).
#[inline(never)]
fn random_below(bound: usize) -> usize {
    thread_local! {
        static SEED: Cell<u64> = const { Cell::new(0) };
    }
    SEED.with(|seed| {
        let mut x = seed.get();
        if x == 0 {
            // First use on this thread: seed from the cell's address, which
            // differs between threads, mixed (splitmix64's finaliser).
            x = std::ptr::from_ref(seed) as usize as u64;
            x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            x = (x ^ (x >> 31)) | 1;
        }
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        seed.set(x);
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as usize % bound
    })
}
