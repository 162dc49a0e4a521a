//! Channels with `std::sync::mpsc`'s API that park fibers (and block
//! threads): [`channel`] (unbounded), [`sync_channel`] (bounded, or a
//! rendezvous at capacity 0). Both ends clone: every message goes to exactly
//! one receiver. Fibers and threads may sit at either end.
//!
//! # Design
//! Every end of one channel shares one `Channel` through an `Arc`: a short
//! spin lock over the buffer and two wait queues. A message goes straight
//! to a waiting receiver (or is taken straight from a waiting sender) under
//! that lock, and the woken party finds its operation done. The pieces:
//!
//! - `channel.rs`: the `Channel`, its state and its invariants, the send
//!   and receive operations, and the designs rejected for it;
//! - `waiting.rs`: a waiting party's entry, where its message waits, and
//!   why that place stays valid while another party moves the message;
//! - `registration.rs`: what a [`Select`](super::Select) does on a
//!   channel whose lock it holds;
//! - `ends.rs`: the public ends, [`Sender`], [`SyncSender`] and
//!   [`Receiver`], and the receiver's iterators;
//! - `error.rs`: std's error types.

use std::sync::Arc;

mod channel;
mod ends;
mod error;
mod registration;
mod waiting;

pub(crate) use self::channel::Channel;
pub(crate) use self::channel::Side;
pub use self::ends::{IntoIter, Iter, Receiver, SendEnd, Sender, SyncSender, TryIter};
pub use self::error::{
    RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError,
};
pub(crate) use self::waiting::{Resolution, Resolved, Waiting};

/// Creates an unbounded channel: sends never wait.
///
/// ```
/// use spindle::sync::mpsc;
///
/// let rt = spindle::Runtime::new().unwrap();
/// let (tx, rx) = mpsc::channel();
/// for id in 0..10 {
///     let tx = tx.clone();
///     rt.spawn(move || tx.send(id).unwrap());
/// }
/// drop(tx); // the iterator below ends when every sender is gone
/// let mut got: Vec<i32> = rx.iter().collect(); // a plain thread receives
/// got.sort();
/// assert_eq!(got, (0..10).collect::<Vec<_>>());
/// ```
pub fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let channel = Arc::new(Channel::new(None));
    (Sender::first(channel.clone()), Receiver::first(channel))
}

/// Creates a channel that holds at most `capacity` messages: a send waits
/// while it is full. At capacity 0 it is a *rendezvous* channel: a send
/// completes only when a receiver takes the value.
///
/// ```
/// use spindle::sync::mpsc;
///
/// let rt = spindle::Runtime::new().unwrap();
/// let (tx, rx) = mpsc::sync_channel(0);
/// let producer = rt.spawn(move || {
///     for i in 0..3 {
///         tx.send(i).unwrap(); // returns once the thread below took it
///     }
/// });
/// assert_eq!(rx.recv(), Ok(0));
/// assert_eq!(rx.recv(), Ok(1));
/// assert_eq!(rx.recv(), Ok(2));
/// producer.join().unwrap();
/// assert_eq!(rx.recv(), Err(mpsc::RecvError)); // the sender is gone
/// ```
pub fn sync_channel<T>(capacity: usize) -> (SyncSender<T>, Receiver<T>) {
    let channel = Arc::new(Channel::new(Some(capacity)));
    (SyncSender::first(channel.clone()), Receiver::first(channel))
}
