//! How a [`Select`](crate::sync::Select) waits on a channel: it queues a
//! node on one of the channel's wait queues ([`Registration`]), and later
//! leaves that queue, or passes on a notification it did not use, through
//! a [`QueueRef`], which erases the message type so that one select can
//! hold queues of channels of different types.

use std::sync::Arc;

use super::channel::{Channel, WaitQueue};
use crate::sync::waitlist::{Node, Queue, WaitList};

/// A channel's wait queues, type-erased over the message type, so that a
/// select can leave and notify them ([`QueueRef`]).
pub(crate) trait ChannelQueues {
    /// Removes `node` from `queue` if it is still there. Returns false if a
    /// notifier had already popped it.
    fn remove_from(&self, queue: WaitQueue, node: &Arc<Node>) -> bool;
    /// Wakes the first waiter of `queue`, if any. Returns whether there was
    /// one.
    fn notify_in(&self, queue: WaitQueue) -> bool;
}

impl<T> ChannelQueues for Channel<T> {
    fn remove_from(&self, queue: WaitQueue, node: &Arc<Node>) -> bool {
        WaitList::remove_from(self.lock().queue_of(queue), node)
    }

    fn notify_in(&self, queue: WaitQueue) -> bool {
        // Popped under the lock (a temporary of this statement), woken
        // after it.
        match WaitList::pop(self.lock().queue_of(queue), false) {
            Some(wake) => {
                wake.wake();
                true
            }
            None => false,
        }
    }
}

/// One wait queue of one channel, as a [`Queue`] a waiter can leave.
#[derive(Clone, Copy)]
pub(crate) struct QueueRef<'a> {
    channel: &'a dyn ChannelQueues,
    queue: WaitQueue,
}

impl Queue for QueueRef<'_> {
    fn remove(&self, node: &Arc<Node>) -> bool {
        self.channel.remove_from(self.queue, node)
    }

    fn notify_one(&self) -> bool {
        self.channel.notify_in(self.queue)
    }
}

/// A select arm's node, queued on one of a channel's wait queues.
pub(crate) struct Registration<'a> {
    pub(crate) queue: QueueRef<'a>,
    pub(crate) node: Arc<Node>,
}

impl<T> Channel<T> {
    /// One of this channel's wait queues, as a [`Queue`].
    pub(super) fn queue_ref(&self, queue: WaitQueue) -> QueueRef<'_> {
        QueueRef {
            channel: self,
            queue,
        }
    }

    /// Queues a select receive arm's node, unless a receive would complete
    /// now (a message, or no senders left): then `None`.
    pub(crate) fn register_receive(&self) -> Option<Registration<'_>> {
        let mut state = self.lock();
        if !state.buffer.is_empty() || state.senders == 0 {
            return None;
        }
        let node = WaitList::push(&mut state.waiting_receivers);
        let send_arm = self.receiver_queued(&mut state);
        Channel::unlock_and_wake(state, send_arm);
        Some(Registration {
            queue: self.queue_ref(WaitQueue::Receivers),
            node,
        })
    }

    /// Queues a select send arm's node, unless a `try_send` would complete
    /// now (room, or no receivers left): then `None`. `is_own` tells the
    /// select's own nodes, queued already: a select does not rendezvous
    /// with its own receive arm. (The select queues its send arms last, so
    /// that its receive arms' `receiver_queued` does not wake itself.)
    pub(crate) fn register_send(
        &self,
        is_own: impl Fn(&Arc<Node>) -> bool,
    ) -> Option<Registration<'_>> {
        let mut state = self.lock();
        if state.receivers == 0 || self.can_try_send(&state, is_own) {
            return None;
        }
        let queue = if self.is_rendezvous() {
            WaitQueue::AwaitingReceiver
        } else {
            WaitQueue::Senders
        };
        let node = WaitList::push(state.queue_of(queue));
        Some(Registration {
            queue: self.queue_ref(queue),
            node,
        })
    }
}
