//! A one-shot channel: [`oneshot()`] makes a [`Sender`] that sends one
//! value and a [`Receiver`] that waits for it, parking a fiber or blocking a
//! thread, whichever it is.
//!
//! # Design
//! One short `std::sync::Mutex` (never held across a park) over the value,
//! whether each end is alive, and who waits: the receiver records itself,
//! unlocks and parks; the sender (or the sender's drop) stores, unlocks and
//! wakes it. The receiver re-checks under the lock after every wake-up, so a
//! wake-up that comes before it parks (the token is kept) or a spurious one
//! is harmless. A receiver unwound mid-wait leaves only a stale `Waiter`
//! handle behind, and its drop clears even that; waking a stale handle does
//! nothing harmful.
//!
//! Rejected: a lock-free state word with the value in an `UnsafeCell`
//! (tokio's design, like `JoinHandle`'s completion here): faster, but
//! unsafe code whose soundness rests on a state machine of who may touch
//! the value when, for a primitive rarely hot enough to pay for it. A
//! bounded `mpsc` of capacity 1: three wait queues for one value.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::mpsc::{RecvError, RecvTimeoutError, TryRecvError};
use crate::fiber::waiter::Waiter;
use crate::lock::MutexExt;

/// Creates a one-shot channel: one value, from one sender to one receiver.
///
/// ```
/// use spindle::sync::oneshot;
///
/// let rt = spindle::Runtime::new().unwrap();
/// let (tx, rx) = oneshot::oneshot();
/// rt.spawn(move || tx.send(6 * 7).unwrap());
/// assert_eq!(rx.recv(), Ok(42)); // a plain thread waits for the fiber
///
/// let (tx, rx) = oneshot::oneshot::<u32>();
/// drop(tx); // a sender dropped without sending wakes the receiver
/// assert_eq!(rx.recv(), Err(spindle::sync::mpsc::RecvError));
/// ```
pub fn oneshot<T>() -> (Sender<T>, Receiver<T>) {
    let state = Arc::new(Mutex::new(OneshotState {
        value: None,
        sender_alive: true,
        receiver_alive: true,
        waiter: None,
    }));
    (
        Sender {
            state: state.clone(),
        },
        Receiver { state },
    )
}

/// Sends the one value; from [`oneshot()`].
pub struct Sender<T> {
    /// Shared with the receiver; see `OneshotState`.
    state: Arc<Mutex<OneshotState<T>>>,
}

/// Receives the one value; from [`oneshot()`].
pub struct Receiver<T> {
    /// Shared with the sender; see `OneshotState`.
    state: Arc<Mutex<OneshotState<T>>>,
}

/// What both ends of one oneshot share, under a `std::sync::Mutex` that
/// either end holds briefly and never across a park. Nothing panics under
/// it, so its poisoning is ignored.
///
/// # Invariants
/// - `value` is set at most once, and only while `receiver_alive`;
/// - `waiter` is set only by the receiver, while it waits.
struct OneshotState<T> {
    value: Option<T>,
    /// False once the sender has sent or been dropped.
    sender_alive: bool,
    receiver_alive: bool,
    /// The receiver, while it waits.
    waiter: Option<Waiter>,
}

impl<T> OneshotState<T> {
    /// The sender is gone (it sent, or was dropped without sending): marks
    /// it so, releases the lock and wakes a waiting receiver.
    fn close_sender(mut state: MutexGuard<'_, OneshotState<T>>) {
        state.sender_alive = false;
        let waiter = state.waiter.take();
        drop(state);
        if let Some(waiter) = waiter {
            waiter.wake();
        }
    }
}

impl<T> Sender<T> {
    /// Sends `value`, waking the receiver. Fails, handing the value back,
    /// if the receiver is gone.
    pub fn send(self, value: T) -> Result<(), T> {
        let mut state = self.state.lock_unpoisoned();
        if !state.receiver_alive {
            return Err(value);
        }
        debug_assert!(state.value.is_none(), "a oneshot sent twice");
        state.value = Some(value);
        OneshotState::close_sender(state);
        Ok(())
        // Drop sees `sender_alive == false` and does nothing more.
    }

    /// Whether the receiver is gone (a send would fail).
    pub fn is_closed(&self) -> bool {
        !self.state.lock_unpoisoned().receiver_alive
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let state = self.state.lock_unpoisoned();
        if !state.sender_alive {
            return; // sent
        }
        OneshotState::close_sender(state);
    }
}

impl<T> Receiver<T> {
    /// Waits for the value, parking the calling fiber (or blocking the
    /// thread). Fails if the sender was dropped without sending.
    pub fn recv(mut self) -> Result<T, RecvError> {
        self.wait(None).map_err(|_| RecvError)
    }

    /// Like [`Receiver::recv`], giving up after `timeout`; the receiver
    /// stays usable after a timeout.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.wait(Instant::now().checked_add(timeout))
    }

    /// Takes the value if it is there now; never waits. After the value
    /// has been taken, reports `Disconnected`.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let mut state = self.state.lock_unpoisoned();
        match state.value.take() {
            Some(value) => Ok(value),
            None if state.sender_alive => Err(TryRecvError::Empty),
            None => Err(TryRecvError::Disconnected),
        }
    }

    fn wait(&mut self, deadline: Option<Instant>) -> Result<T, RecvTimeoutError> {
        // Set when the timed park gave up (at shutdown it does so at once).
        let mut gave_up = false;
        loop {
            let mut state = self.state.lock_unpoisoned();
            if let Some(value) = state.value.take() {
                state.waiter = None;
                return Ok(value);
            }
            if !state.sender_alive {
                state.waiter = None;
                return Err(RecvTimeoutError::Disconnected);
            }
            let now = Instant::now();
            if gave_up || deadline.is_some_and(|deadline| now >= deadline) {
                state.waiter = None;
                return Err(RecvTimeoutError::Timeout);
            }
            if state.waiter.is_none() {
                state.waiter = Some(Waiter::current());
            }
            drop(state);
            // The sender wakes `waiter`, us; a stale or spurious wake-up just
            // goes round the loop.
            gave_up = !crate::time::park_until(deadline);
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut state = self.state.lock_unpoisoned();
        state.receiver_alive = false;
        state.waiter = None;
        let value = state.value.take();
        drop(state);
        drop(value); // outside the lock: its destructor may do anything
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("oneshot::Sender").finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("oneshot::Receiver").finish_non_exhaustive()
    }
}
