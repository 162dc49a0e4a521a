//! The ends of a channel: [`Sender`], [`SyncSender`] and [`Receiver`], and
//! the receiver's iterators. Each end holds the channel (`channel.rs`)
//! through an `Arc` and is counted in it while it lives.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::channel::Channel;
use super::error::{
    RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError,
};

/// The sending end of an unbounded [`channel`](super::channel()). Clone it
/// for more senders.
pub struct Sender<T> {
    handle: SendHandle<T>,
}

/// The sending end of a bounded [`sync_channel`](super::sync_channel()).
/// Clone it for more senders.
pub struct SyncSender<T> {
    handle: SendHandle<T>,
}

/// One live sender of a channel, counted in `senders` from when it is made
/// or cloned until it is dropped: the part [`Sender`] and [`SyncSender`]
/// share (they differ only in which operations they offer).
struct SendHandle<T> {
    channel: Arc<Channel<T>>,
}

impl<T> SendHandle<T> {
    /// A send with no deadline: `SendTimeoutError::Timeout` cannot come
    /// back, so the error is std's `SendError`.
    #[inline]
    fn send(&self, value: T) -> Result<(), SendError<T>> {
        self.channel.send(value, None).map_err(|error| match error {
            SendTimeoutError::Disconnected(value) | SendTimeoutError::Timeout(value) => {
                SendError(value)
            }
        })
    }
}

impl<T> Clone for SendHandle<T> {
    fn clone(&self) -> SendHandle<T> {
        self.channel.add_sender();
        SendHandle {
            channel: self.channel.clone(),
        }
    }
}

impl<T> Drop for SendHandle<T> {
    fn drop(&mut self) {
        self.channel.drop_sender();
    }
}

/// The receiving end of a [`channel`](super::channel()) or
/// [`sync_channel`](super::sync_channel()). Unlike std's, it clones: the
/// clones share one stream, each message going to exactly one of them.
pub struct Receiver<T> {
    channel: Arc<Channel<T>>,
}

impl<T> Sender<T> {
    /// The sender a new unbounded channel starts with (its `senders` count
    /// starts at 1).
    pub(super) fn first(channel: Arc<Channel<T>>) -> Sender<T> {
        Sender {
            handle: SendHandle { channel },
        }
    }

    /// Sends `value`; never waits. Fails, handing the value back, if every
    /// [`Receiver`] is gone.
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        self.handle.send(value)
    }

    pub(crate) fn channel(&self) -> &Channel<T> {
        &self.handle.channel
    }
}

impl<T> SyncSender<T> {
    /// The sender a new bounded channel starts with (its `senders` count
    /// starts at 1).
    pub(super) fn first(channel: Arc<Channel<T>>) -> SyncSender<T> {
        SyncSender {
            handle: SendHandle { channel },
        }
    }

    /// Sends `value`, parking the calling fiber (or blocking the thread)
    /// while the channel is full; on a rendezvous channel, until a receiver
    /// has taken it. Fails, handing the value back, if every [`Receiver`]
    /// is gone (also while waiting).
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        self.handle.send(value)
    }

    /// Like [`SyncSender::send`], giving up after `timeout` (the value comes
    /// back in the error).
    pub fn send_timeout(&self, value: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        self.handle
            .channel
            .send(value, Instant::now().checked_add(timeout))
    }

    /// Sends `value` if that needs no waiting: a receiver is waiting (the
    /// value is handed to that receiver, which is woken), or there is room.
    /// On a rendezvous channel only the first makes it succeed.
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        self.handle.channel.try_send(value)
    }

    pub(crate) fn channel(&self) -> &Channel<T> {
        &self.handle.channel
    }
}

impl<T> Receiver<T> {
    /// The receiver a new channel starts with (its `receivers` count starts
    /// at 1).
    pub(super) fn first(channel: Arc<Channel<T>>) -> Receiver<T> {
        Receiver { channel }
    }

    /// Receives a message, parking the calling fiber (or blocking the
    /// thread) until one arrives. Fails once every sender is gone and the
    /// buffer is empty.
    pub fn recv(&self) -> Result<T, RecvError> {
        self.channel.recv(None).map_err(|_| RecvError)
    }

    /// Like [`Receiver::recv`], giving up after `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.channel.recv(Instant::now().checked_add(timeout))
    }

    /// Receives a message if one is there now; never waits.
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        self.channel.try_recv()
    }

    /// An iterator that receives until every sender is gone (`recv` in a
    /// loop).
    pub fn iter(&self) -> Iter<'_, T> {
        Iter { receiver: self }
    }

    /// An iterator over the messages there now (`try_recv` in a loop).
    pub fn try_iter(&self) -> TryIter<'_, T> {
        TryIter { receiver: self }
    }

    pub(crate) fn channel(&self) -> &Channel<T> {
        &self.channel
    }
}

/// `len`, `is_empty` and `capacity`, the same on every end; `$end` names
/// the end in the examples, `$make` makes a channel of capacity 2 (or an
/// unbounded one) and `$pick` picks the end from the pair.
macro_rules! buffer_methods {
    ($end:ident, $make:expr, $pick:tt, $capacity:expr) => {
        impl<T> $end<T> {
            /// How many messages are buffered now, sent and not yet
            /// received (a snapshot, stale as soon as it is read). A
            /// sender waiting with its message in hand is not counted, so a
            /// rendezvous channel's `len` is always 0.
            ///
            /// ```
            /// use spindle::sync::mpsc;
            ///
            #[doc = concat!("let channel = ", stringify!($make), ";")]
            /// channel.0.send(1).unwrap();
            /// channel.0.send(2).unwrap();
            #[doc = concat!("assert_eq!(channel.", stringify!($pick), ".len(), 2);")]
            /// ```
            pub fn len(&self) -> usize {
                self.channel().len()
            }

            /// Whether no message is buffered now (`len() == 0`).
            ///
            /// ```
            /// use spindle::sync::mpsc;
            ///
            #[doc = concat!("let channel = ", stringify!($make), ";")]
            #[doc = concat!("assert!(channel.", stringify!($pick), ".is_empty());")]
            /// ```
            pub fn is_empty(&self) -> bool {
                self.len() == 0
            }

            /// How many messages the channel buffers at most: `None` for an
            /// unbounded [`channel`](super::channel()), the capacity given
            /// to [`sync_channel`](super::sync_channel()) otherwise
            /// (`Some(0)`: a rendezvous channel).
            ///
            /// ```
            /// use spindle::sync::mpsc;
            ///
            #[doc = concat!("let channel = ", stringify!($make), ";")]
            #[doc = concat!("assert_eq!(channel.", stringify!($pick), ".capacity(), ", stringify!($capacity), ");")]
            /// assert_eq!(mpsc::sync_channel::<u8>(0).1.capacity(), Some(0));
            /// ```
            pub fn capacity(&self) -> Option<usize> {
                self.channel().capacity()
            }
        }
    };
}

buffer_methods!(Sender, mpsc::channel::<u8>(), 0, None);
buffer_methods!(SyncSender, mpsc::sync_channel::<u8>(2), 0, Some(2));
buffer_methods!(Receiver, mpsc::sync_channel::<u8>(2), 1, Some(2));

/// A sending end, [`Sender`] or [`SyncSender`]: what a
/// [`Select`](crate::sync::Select) send arm sends on. Sealed: only those
/// two implement it.
///
/// ```
/// use spindle::sync::mpsc::{self, SendEnd};
/// use spindle::sync::Select;
///
/// fn offer<S: SendEnd<u8>>(sender: &S) -> bool {
///     Select::new().send(sender, 1, |sent| sent.is_ok()).try_select() == Ok(true)
/// }
/// let (unbounded, _rx1) = mpsc::channel();
/// let (full, _rx2) = mpsc::sync_channel(0); // nobody receiving: not ready
/// assert!(offer(&unbounded));
/// assert!(!offer(&full));
/// ```
pub trait SendEnd<T>: sealed::Sealed<T> {}

pub(crate) mod sealed {
    /// What [`SendEnd`](super::SendEnd) needs, out of users' reach.
    pub trait Sealed<T> {
        /// The channel the end sends on.
        fn end_channel(&self) -> &super::Channel<T>;
    }
}

impl<T> SendEnd<T> for Sender<T> {}
impl<T> SendEnd<T> for SyncSender<T> {}

impl<T> sealed::Sealed<T> for Sender<T> {
    fn end_channel(&self) -> &Channel<T> {
        self.channel()
    }
}

impl<T> sealed::Sealed<T> for SyncSender<T> {
    fn end_channel(&self) -> &Channel<T> {
        self.channel()
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Sender<T> {
        Sender {
            handle: self.handle.clone(),
        }
    }
}

impl<T> Clone for SyncSender<T> {
    fn clone(&self) -> SyncSender<T> {
        SyncSender {
            handle: self.handle.clone(),
        }
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Receiver<T> {
        self.channel.add_receiver();
        Receiver {
            channel: self.channel.clone(),
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.channel.drop_receiver();
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender").finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for SyncSender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SyncSender").finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver").finish_non_exhaustive()
    }
}

/// Receives until every sender is gone; from [`Receiver::iter`].
#[derive(Debug)]
pub struct Iter<'a, T> {
    receiver: &'a Receiver<T>,
}

/// The messages there now; from [`Receiver::try_iter`].
#[derive(Debug)]
pub struct TryIter<'a, T> {
    receiver: &'a Receiver<T>,
}

/// Receives until every sender is gone; from `Receiver::into_iter`.
#[derive(Debug)]
pub struct IntoIter<T> {
    receiver: Receiver<T>,
}

impl<T> Iterator for Iter<'_, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.receiver.recv().ok()
    }
}

impl<T> Iterator for TryIter<'_, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.receiver.try_recv().ok()
    }
}

impl<T> Iterator for IntoIter<T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.receiver.recv().ok()
    }
}

impl<'a, T> IntoIterator for &'a Receiver<T> {
    type Item = T;
    type IntoIter = Iter<'a, T>;
    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}

impl<T> IntoIterator for Receiver<T> {
    type Item = T;
    type IntoIter = IntoIter<T>;
    fn into_iter(self) -> IntoIter<T> {
        IntoIter { receiver: self }
    }
}
