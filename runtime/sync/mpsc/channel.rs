//! [`Channel`]: the state every end of one channel shares, and the send
//! and receive operations on it.
//!
//! # Design
//! One `Channel` per channel, shared by every end through an `Arc`. Its
//! `state` is one short [`SpinLock`] (never held across a park, no user
//! code under it) over the buffer (a `VecDeque`), the counts of live
//! senders and receivers, and two wait queues (`waiting.rs`): `receiving`
//! (receivers and select receive arms waiting for a message) and `sending`
//! (senders and select send arms waiting, their message in hand, for a
//! receiver or for room).
//!
//! Messages go straight from party to party whenever one waits (Go's
//! design, `waiting.rs`): a send that finds a receiver waiting writes the
//! message into that receiver's slot and wakes it, and is done; a receive
//! that finds a sender waiting takes its message out of its slot (on a
//! bounded channel: takes the oldest buffered message and moves the
//! sender's into the freed place) and wakes it. The woken party finds its
//! operation complete and does not take the lock again. Only when nobody
//! waits does a message go through the buffer. So:
//!
//! - a receiver waits only while the buffer is empty, and a sender only
//!   while it is full; a rendezvous channel (`sync_channel(0)`) has no
//!   room, so its buffer is always empty and every message goes from one
//!   sender to one receiver, named when the message moves;
//! - a rendezvous `send` waits until a receiver has the message; a
//!   `try_send` (or a select's send arm) succeeds only if a receiver is
//!   waiting, and then that receiver has it.
//!
//! A waiter queues its entry in the critical section that found it had to
//! wait, so a party that changes the state later, under the lock, finds
//! it. A waiter that gives up (timeout) or is unwound (its fiber
//! cancelled, or shutdown) removes its entry under the lock, or finds it
//! resolved and takes the outcome. A receiver unwound with a message it
//! was handed passes it on (`Channel::put_back`): to another waiting
//! receiver, or back at the head of the buffer if there is room; only a
//! rendezvous or full channel with nobody waiting drops it (its sender
//! was already told it was received, and there is nowhere to keep it
//! within the capacity), and one put back after the last sender went may
//! find the other receivers already told of the disconnection
//! (`Channel::put_back`). A sender unwound before its message was taken
//! has not sent it (the message is dropped with it); one unwound after has
//! sent it. A select's entries are resolved by whichever of its arms is
//! claimed first (`waiting.rs`, "Claims").
//!
//! A one-way trip between two fibers (the receiver waiting) is: the
//! receiver locks, queues, unlocks and parks; the sender locks, pops the
//! entry, writes the message, unlocks and unparks. The figures are in
//! `docs/decisions.md`, "Channel state lock".
//!
//! # Rejected
//! - A lock-free queue (crossbeam's list/array channels): several times the
//!   code, and the blocking paths need a lock for the wait queues anyway;
//!   the lock is held for a push or a pop only.
//! - Waking a waiter to take the message itself (each end re-checking the
//!   buffer under the lock when woken, as a notification would): a second
//!   lock pair per wait, and on a rendezvous channel a message left in a
//!   shared slot could be taken by a party other than the one woken, so
//!   capacity 0 behaved like capacity 1.
//! - The message slot on the waiter's stack (Go's `sudog.elem`): an entry
//!   would point into a stack, which a fiber abandoned at shutdown without
//!   unwinding could leave dangling once the stack is reused.
//! - std's `Mutex` for `state`: it can sleep, so its unlock is a swap
//!   where a spin lock's is a store (`spin_lock.rs`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use super::error::{RecvTimeoutError, SendTimeoutError, TryRecvError, TrySendError};
use super::waiting::{PlainSlot, Resolution, Resolved, WaitQueue, Waiting, PLAIN};
use crate::sync::spin_lock::{SpinGuard, SpinLock};
use crate::sync::waitlist::{Node, WaitList};

/// What every end of one channel shares; see the module docs.
pub struct Channel<T> {
    /// `None`: unbounded; `Some(0)`: rendezvous. Immutable.
    capacity: Option<usize>,
    /// Any party, for a push or a pop; never held across a park.
    state: SpinLock<ChannelState<T>>,
}

/// A channel's state, under `Channel::state`.
///
/// # Invariants
/// - `buffer.len() <= capacity`; so a rendezvous channel's buffer is
///   always empty;
/// - while a receiver waits (an unresolved entry in `receiving`), the
///   buffer is empty; while a sender waits, it is full;
/// - once `senders` or `receivers` reaches 0 it stays 0, and then nobody
///   waits on the side whose partners are gone.
pub(crate) struct ChannelState<T> {
    /// Messages sent and not yet received, for receivers to come.
    buffer: VecDeque<T>,
    /// Live `Sender`s or `SyncSender`s.
    pub(super) senders: usize,
    /// Live `Receiver`s.
    pub(super) receivers: usize,
    /// Receivers (and select receive arms) waiting for a message or for the
    /// last sender to go.
    pub(super) receiving: WaitQueue<T>,
    /// Senders (and select send arms) waiting, message in hand, for a
    /// receiver, for room, or for the last receiver to go.
    pub(super) sending: WaitQueue<T>,
}

/// Which side of a channel a plain waiter waits on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Receiving,
    Sending,
}

/// How a plain wait ended.
enum Waited {
    /// Resolved by a party on the other side: done, or closed.
    Resolved { closed: bool },
    /// The deadline passed; the waiter removed its entry.
    TimedOut,
}

impl<T> ChannelState<T> {
    pub(super) fn queue(&mut self, side: Side) -> &mut WaitQueue<T> {
        match side {
            Side::Receiving => &mut self.receiving,
            Side::Sending => &mut self.sending,
        }
    }
}

impl<T> Channel<T> {
    pub(super) fn new(capacity: Option<usize>) -> Channel<T> {
        Channel {
            capacity,
            state: SpinLock::new(ChannelState {
                buffer: VecDeque::new(),
                senders: 1,
                receivers: 1,
                receiving: WaitQueue::new(),
                sending: WaitQueue::new(),
            }),
        }
    }

    #[inline]
    pub(super) fn lock(&self) -> SpinGuard<'_, ChannelState<T>> {
        self.state.lock()
    }

    /// The lock itself, for a select that locks several channels at once.
    pub(super) fn state_lock(&self) -> &SpinLock<ChannelState<T>> {
        &self.state
    }

    /// Messages in the buffer now (a snapshot).
    pub(super) fn len(&self) -> usize {
        self.lock().buffer.len()
    }

    /// How many messages the buffer holds at most; `None`: unbounded.
    pub(super) fn capacity(&self) -> Option<usize> {
        self.capacity
    }

    /// Whether a send into the buffer fits now.
    fn has_room(&self, state: &ChannelState<T>) -> bool {
        self.capacity
            .is_none_or(|capacity| state.buffer.len() < capacity)
    }

    /// A receive that needs no waiting, under the lock: the oldest buffered
    /// message (and a waiting sender's message moves into the room made),
    /// or a waiting sender's message itself. With the sender to wake once
    /// the lock is released.
    #[inline]
    pub(super) fn take_now(&self, state: &mut ChannelState<T>) -> Option<(T, Option<Resolution>)> {
        let Some(value) = state.buffer.pop_front() else {
            // A sender waits on a non-full buffer only at capacity 0.
            let (value, wake) = state.sending.pop_claimed()?.take();
            return Some((value, Some(wake)));
        };
        let wake = state.sending.pop_claimed().map(|sender| {
            let (moved, wake) = sender.take();
            state.buffer.push_back(moved);
            wake
        });
        Some((value, wake))
    }

    /// A send that needs no waiting, under the lock: to a waiting receiver,
    /// else into the buffer if there is room; with the receiver to wake
    /// once the lock is released. `Err` gives the message back if it must
    /// wait.
    #[inline]
    pub(super) fn give_now(
        &self,
        state: &mut ChannelState<T>,
        value: T,
    ) -> Result<Option<Resolution>, T> {
        if let Some(receiver) = state.receiving.pop_claimed() {
            debug_assert!(state.buffer.is_empty(), "a receiver waited beside messages");
            return Ok(Some(receiver.deliver(value)));
        }
        if self.has_room(state) {
            state.buffer.push_back(value);
            return Ok(None);
        }
        Err(value)
    }

    /// Passes on a message a receiver was handed but will never return (it
    /// was unwound, its fiber cancelled, before it could): to another
    /// waiting receiver, else back at the head of the buffer if there is
    /// room, as the oldest message it was. Dropped (after unlocking) if
    /// neither can take it, or nobody receives any more: on a rendezvous or
    /// full channel with no receiver waiting there is nowhere to keep it
    /// without breaking the capacity, and its sender has been told it was
    /// received.
    ///
    /// One race is left: if the last sender went while the message was in
    /// the unwound receiver's hands, the receivers waiting then were told
    /// the channel is disconnected (the buffer was empty), so a message put
    /// back into the buffer is found only by a receive made later, and is
    /// dropped with the channel if none is. Rejected for now: counting the
    /// messages in receivers' hands, and holding the disconnection back
    /// while any are, which costs every hand-off two more atomic updates.
    pub(crate) fn put_back(&self, value: T) {
        let mut state = self.lock();
        if state.receivers == 0 {
            drop(state);
            drop(value);
            return;
        }
        if let Some(receiver) = state.receiving.pop_claimed() {
            let wake = receiver.deliver(value);
            Channel::unlock_and_wake(state, Some(wake));
        } else if self.has_room(&state) {
            state.buffer.push_front(value);
        } else {
            drop(state);
            drop(value);
        }
    }

    /// Releases `state`, then wakes the party an operation under it
    /// popped (never under the lock: a woken fiber on another worker would
    /// only run into it).
    #[inline]
    fn unlock_and_wake(state: SpinGuard<'_, ChannelState<T>>, wake: Option<Resolution>) {
        drop(state);
        if let Some(wake) = wake {
            wake.wake();
        }
    }

    /// A receive that needs no waiting (`take_now`), completed; else the
    /// state, still locked, for the caller to decide.
    #[inline]
    fn recv_now(&self) -> Result<T, SpinGuard<'_, ChannelState<T>>> {
        let mut state = self.lock();
        match self.take_now(&mut state) {
            Some((value, wake)) => {
                Channel::unlock_and_wake(state, wake);
                Ok(value)
            }
            None => Err(state),
        }
    }

    pub(super) fn try_recv(&self) -> Result<T, TryRecvError> {
        match self.recv_now() {
            Ok(value) => Ok(value),
            Err(state) if state.senders == 0 => Err(TryRecvError::Disconnected),
            Err(_) => Err(TryRecvError::Empty),
        }
    }

    pub(super) fn recv(&self, deadline: Option<Instant>) -> Result<T, RecvTimeoutError> {
        let mut state = match self.recv_now() {
            Ok(value) => return Ok(value),
            Err(state) => state,
        };
        if state.senders == 0 {
            return Err(RecvTimeoutError::Disconnected);
        }
        let node = Node::for_current(None);
        let slot = PlainSlot::new(&node);
        // SAFETY: `node` and `slot` live until this function returns, and
        // `wait_resolved` returns (or unwinds) only once the node is
        // released or the entry removed under the lock; we read the slot
        // only then.
        state
            .receiving
            .push(unsafe { Waiting::new(&node, slot.as_ptr(), PLAIN, false) });
        drop(state);
        let waited = self.wait_resolved(&node, &slot, Side::Receiving, deadline);
        let result = match waited {
            // SAFETY: resolved as done, so the sender wrote a message into
            // the slot before resolving, and nobody touches it any more.
            Waited::Resolved { closed: false } => Ok(unsafe { slot.take() }),
            Waited::Resolved { closed: true } => Err(RecvTimeoutError::Disconnected),
            Waited::TimedOut => Err(RecvTimeoutError::Timeout),
        };
        drop(slot);
        WaitList::recycle(node);
        result
    }

    pub(super) fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        let mut state = self.lock();
        if state.receivers == 0 {
            return Err(TrySendError::Disconnected(value));
        }
        match self.give_now(&mut state, value) {
            Ok(wake) => {
                Channel::unlock_and_wake(state, wake);
                Ok(())
            }
            Err(value) => Err(TrySendError::Full(value)),
        }
    }

    pub(super) fn send(
        &self,
        value: T,
        deadline: Option<Instant>,
    ) -> Result<(), SendTimeoutError<T>> {
        let mut state = self.lock();
        if state.receivers == 0 {
            return Err(SendTimeoutError::Disconnected(value));
        }
        let value = match self.give_now(&mut state, value) {
            Ok(wake) => {
                Channel::unlock_and_wake(state, wake);
                return Ok(());
            }
            Err(value) => value,
        };
        // Full, or a rendezvous with no receiver: wait, message in hand.
        let node = Node::for_current(None);
        let slot = PlainSlot::new(&node);
        // SAFETY: not queued yet.
        unsafe { slot.put(value) };
        // SAFETY: as in `recv`; the slot holds our message.
        state
            .sending
            .push(unsafe { Waiting::new(&node, slot.as_ptr(), PLAIN, false) });
        drop(state);
        let waited = self.wait_resolved(&node, &slot, Side::Sending, deadline);
        let result = match waited {
            Waited::Resolved { closed: false } => Ok(()),
            Waited::Resolved { closed: true } => {
                // SAFETY: the last receiver went with our message still in
                // the slot, and nobody touches it any more.
                Err(SendTimeoutError::Disconnected(unsafe { slot.take() }))
            }
            // SAFETY: we removed our entry, message still in the slot.
            Waited::TimedOut => Err(SendTimeoutError::Timeout(unsafe { slot.take() })),
        };
        drop(slot);
        WaitList::recycle(node);
        result
    }

    /// Parks until a party on the other side resolves `node`'s plain entry
    /// on `side` and releases the node, or the deadline passes (then
    /// removes the entry). If the caller is unwound meanwhile (its fiber
    /// cancelled, or the runtime shutting down), the entry is removed, or
    /// its outcome settled: a message a receiver was handed is passed on
    /// (`put_back`); a sender's own message, not taken, is dropped with the
    /// send that did not happen; a sender whose message was taken has sent
    /// it.
    fn wait_resolved(
        &self,
        node: &Arc<Node>,
        slot: &PlainSlot<T>,
        side: Side,
        deadline: Option<Instant>,
    ) -> Waited {
        /// Runs if the waiter is unwound inside the wait.
        struct Leave<'a, T> {
            channel: &'a Channel<T>,
            node: &'a Arc<Node>,
            slot: &'a PlainSlot<T>,
            side: Side,
        }
        impl<T> Drop for Leave<'_, T> {
            fn drop(&mut self) {
                let removed = self
                    .channel
                    .lock()
                    .queue(self.side)
                    .remove(self.node, PLAIN);
                // Not removed: resolved under the lock we just held, so the
                // resolution is final; its resolver is done once released.
                if !removed {
                    self.node.wait_released();
                }
                let resolution = self.node.resolution().map(Resolved::from_code);
                let holds_message = match self.side {
                    Side::Receiving => resolution.is_some_and(|r| !r.closed),
                    Side::Sending => removed || resolution.is_some_and(|r| r.closed),
                };
                if holds_message {
                    // SAFETY: the slot holds a message (delivered to us, or
                    // our own untaken one), and our entry is gone from the
                    // queue, so nobody else touches it.
                    let message = unsafe { self.slot.take() };
                    match self.side {
                        // Handed to us: passed on, not lost.
                        Side::Receiving => self.channel.put_back(message),
                        // Our own, never sent: the send did not happen.
                        Side::Sending => drop(message),
                    }
                }
            }
        }
        let leave = Leave {
            channel: self,
            node,
            slot,
            side,
        };
        loop {
            if let Some(code) = node.resolution() {
                node.wait_released();
                std::mem::forget(leave);
                let resolved = Resolved::from_code(code);
                debug_assert_eq!(resolved.arm, PLAIN, "a plain entry resolved for an arm");
                return Waited::Resolved {
                    closed: resolved.closed,
                };
            }
            if !crate::time::park_until(deadline) && self.lock().queue(side).remove(node, PLAIN) {
                std::mem::forget(leave);
                return Waited::TimedOut;
            }
            // Woken (or timed out but resolved meanwhile, under the lock:
            // the loop reads the resolution).
        }
    }

    pub(super) fn add_sender(&self) {
        let mut state = self.lock();
        debug_assert!(state.senders > 0, "a sender cloned from nothing");
        state.senders += 1;
    }

    pub(super) fn drop_sender(&self) {
        let mut state = self.lock();
        debug_assert!(state.senders > 0, "more senders dropped than made");
        state.senders -= 1;
        // The last sender gone: every waiting receiver fails now.
        let receivers = if state.senders == 0 {
            state.receiving.close_all()
        } else {
            Vec::new()
        };
        drop(state);
        receivers.into_iter().for_each(Resolution::wake);
    }

    pub(super) fn add_receiver(&self) {
        let mut state = self.lock();
        debug_assert!(state.receivers > 0, "a receiver cloned from nothing");
        state.receivers += 1;
    }

    pub(super) fn drop_receiver(&self) {
        let mut state = self.lock();
        debug_assert!(state.receivers > 0, "more receivers dropped than made");
        state.receivers -= 1;
        if state.receivers > 0 {
            return;
        }
        // Nobody will receive: waiting senders get their messages back, and
        // the buffered ones are dropped (after unlocking: their destructors
        // may use this channel).
        let senders = state.sending.close_all();
        let discarded = std::mem::take(&mut state.buffer);
        drop(state);
        drop(discarded);
        senders.into_iter().for_each(Resolution::wake);
    }
}
