//! [`Channel`]: the state every end of one channel shares, and the send
//! and receive operations on it.
//!
//! # Design
//! One `Channel` per channel, shared by every end through an `Arc`. Its
//! `state` is one short `std::sync::Mutex` (never held across a park) over
//! the buffer (a `VecDeque`), the counts of live senders and receivers, and
//! three wait queues of `WaitList` nodes: `waiting_receivers` (waiting for
//! a message or for the last sender to go), `waiting_senders` (waiting for
//! room, or for the rendezvous slot to empty) and `awaiting_receiver`
//! (select send arms on a rendezvous channel, waiting for a receiver to
//! arrive).
//!
//! A waiter checks its condition and queues its node in the same critical
//! section, so a party that changes the state and pops a waiter under the
//! lock cannot miss it. A send pops one waiting receiver in the critical
//! section that queues its message, and wakes it after unlocking, so a
//! ping-pong between two fibers is: lock, push, pop a node, unlock,
//! unpark. The wait queues share the buffer's lock rather than each having
//! its own, because a lock pair fewer per wait measured faster. A woken
//! waiter re-checks: a newcomer may have taken the message first (barging,
//! as in the Mutex), and then it queues again. A waiter that leaves without
//! using a notification it received (timeout, unwound at shutdown) passes
//! it on; `waitlist::wait_in` does that.
//!
//! Nearly all of a round trip's cost is atomic read-modify-writes: per
//! one-way trip, a lock/unlock pair to queue a waiting receiver, one in
//! `send`, one for the woken receiver to take the message, and the park,
//! unpark and next-slot updates. The measurements are in
//! `docs/decisions.md`, "Channel state lock".
//!
//! # Rejected
//! - A lock-free queue (crossbeam's list/array channels): several times the
//!   code, and the blocking paths need a lock for the wait queues anyway;
//!   the std lock is held for a push or a pop only.
//! - Intrusive wait nodes on the waiters' stacks, with the value written
//!   straight into them (Go's `sendDirect`): two reference-count updates
//!   and the receiver's second lock pair fewer per wait, but a node linked
//!   by its address is a raw pointer into another fiber's stack, unsafe
//!   code of a kind `sync/` does without (its only unsafe code is the data
//!   cells of `Mutex`, `RwLock` and `OnceCell`), and a fiber unwound at
//!   shutdown would have to unlink its node first. The heap node a waiter
//!   keeps between waits (`waitlist.rs`) removes the allocation without it.
//! - A spin lock for `state`, whose unlock is a plain store where std's is
//!   a swap (it must see sleeping waiters): one read-modify-write fewer per
//!   lock, three per one-way trip, but a second hand-written lock with an
//!   unsafe data cell of its own, and a holder preempted by the OS would
//!   leave the other workers spinning instead of sleeping.
//! - Waiting senders and receivers on one list with `notify_all`: every
//!   message would wake every waiter to fight over it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use super::error::{RecvTimeoutError, SendTimeoutError, TryRecvError, TrySendError};
use crate::fiber::waiter::Waiter;
use crate::lock::MutexExt;
use crate::sync::waitlist::{self, Node, WaitList, Wake};

/// What every end of one channel shares; see the module docs.
pub(crate) struct Channel<T> {
    /// `None`: unbounded; `Some(0)`: rendezvous. Immutable.
    capacity: Option<usize>,
    /// Any party, for a push or a pop; never held across a park.
    state: Mutex<ChannelState<T>>,
}

/// A channel's state, under `Channel::state`.
///
/// # Invariants
/// - `buffer.len() <= capacity`, or `<= 1` for a rendezvous channel;
/// - `slot_owner` is `Some` only on a rendezvous channel whose slot holds
///   the value of a blocking send that waits for it to be taken;
/// - once `senders` or `receivers` reaches 0 it stays 0.
pub(super) struct ChannelState<T> {
    /// The messages sent and not yet received; on a rendezvous channel,
    /// the slot.
    pub(super) buffer: VecDeque<T>,
    /// Live `Sender`s or `SyncSender`s.
    pub(super) senders: usize,
    /// Live `Receiver`s.
    pub(super) receivers: usize,
    /// Rendezvous only: values taken from the slot so far; a blocking send
    /// whose value went in when this was `n` is done when it passes `n`.
    pub(super) taken: u64,
    /// Rendezvous only: the blocking sender whose value is in the slot.
    pub(super) slot_owner: Option<Waiter>,
    /// Receivers (and select receive arms) waiting for a message or for the
    /// last sender to go.
    pub(super) waiting_receivers: VecDeque<Arc<Node>>,
    /// Senders (and select send arms on a bounded channel) waiting for
    /// room, or for the last receiver to go.
    pub(super) waiting_senders: VecDeque<Arc<Node>>,
    /// Select send arms on a rendezvous channel, waiting for a receiver to
    /// start waiting (or for the slot to empty, or the last receiver to go).
    pub(super) awaiting_receiver: VecDeque<Arc<Node>>,
}

/// One of a channel's wait queues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WaitQueue {
    /// `ChannelState::waiting_receivers`.
    Receivers,
    /// `ChannelState::waiting_senders`.
    Senders,
    /// `ChannelState::awaiting_receiver`.
    AwaitingReceiver,
}

impl<T> ChannelState<T> {
    pub(super) fn queue_of(&mut self, queue: WaitQueue) -> &mut VecDeque<Arc<Node>> {
        match queue {
            WaitQueue::Receivers => &mut self.waiting_receivers,
            WaitQueue::Senders => &mut self.waiting_senders,
            WaitQueue::AwaitingReceiver => &mut self.awaiting_receiver,
        }
    }
}

impl<T> Channel<T> {
    pub(super) fn new(capacity: Option<usize>) -> Channel<T> {
        Channel {
            capacity,
            state: Mutex::new(ChannelState {
                buffer: VecDeque::new(),
                senders: 1,
                receivers: 1,
                taken: 0,
                slot_owner: None,
                waiting_receivers: VecDeque::new(),
                waiting_senders: VecDeque::new(),
                awaiting_receiver: VecDeque::new(),
            }),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, ChannelState<T>> {
        // Nothing panics under this lock except allocation failure, which
        // leaves the state consistent; ignore poisoning.
        self.state.lock_unpoisoned()
    }

    /// Releases `state`, then wakes the waiters popped under it (never
    /// woken under the lock: a woken fiber on another worker would only
    /// run into it).
    pub(super) fn unlock_and_wake(
        state: MutexGuard<'_, ChannelState<T>>,
        wakes: impl IntoIterator<Item = Wake>,
    ) {
        drop(state);
        wakes.into_iter().for_each(Wake::wake);
    }

    pub(super) fn is_rendezvous(&self) -> bool {
        self.capacity == Some(0)
    }

    /// Whether a send that puts its value in the buffer fits now.
    fn has_room(&self, state: &ChannelState<T>) -> bool {
        match self.capacity {
            None => true,
            Some(capacity) => state.buffer.len() < capacity.max(1),
        }
    }

    /// Checks the invariants on `ChannelState` (debug builds).
    pub(super) fn debug_check(&self, state: &ChannelState<T>) {
        debug_assert!(
            state.buffer.len() <= self.capacity.map_or(usize::MAX, |c| c.max(1)),
            "the buffer holds {} values, over capacity {:?}",
            state.buffer.len(),
            self.capacity
        );
        debug_assert!(
            state.slot_owner.is_none() || (self.is_rendezvous() && state.buffer.len() == 1),
            "a slot owner without its value in the slot"
        );
    }

    /// Whether a `try_send` succeeds now (a rendezvous needs a receiver
    /// already waiting, other than the caller's own select nodes, for which
    /// `is_own` is true). The caller holds `state`.
    pub(super) fn can_try_send(
        &self,
        state: &ChannelState<T>,
        is_own: impl Fn(&Arc<Node>) -> bool,
    ) -> bool {
        match self.capacity {
            Some(0) => {
                state.buffer.is_empty() && state.waiting_receivers.iter().any(|n| !is_own(n))
            }
            _ => self.has_room(state),
        }
    }

    /// Pops the front message and releases `state`, then wakes whoever the
    /// pop concerns: a rendezvous sender waiting for the take, and one
    /// sender waiting for room.
    fn pop(&self, mut state: MutexGuard<'_, ChannelState<T>>) -> Option<T> {
        let value = state.buffer.pop_front()?;
        let owner = if self.is_rendezvous() {
            state.taken += 1;
            state.slot_owner.take()
        } else {
            None
        };
        let wakes = self.room_made(&mut state);
        Channel::unlock_and_wake(state, wakes.into_iter().flatten());
        if let Some(owner) = owner {
            owner.wake();
        }
        Some(value)
    }

    /// After the buffer lost a value: pops the waiters that may go now (on
    /// a bounded channel, a sender waiting for room), to be woken once
    /// `state` is released.
    pub(super) fn room_made(&self, state: &mut ChannelState<T>) -> [Option<Wake>; 2] {
        let sender = if self.capacity.is_some() {
            WaitList::pop(&mut state.waiting_senders, false)
        } else {
            None
        };
        // The slot is empty: if a receiver waits, a select send arm can go
        // now.
        [sender, self.receiver_queued(state)]
    }

    pub(super) fn try_recv(&self) -> Result<T, TryRecvError> {
        let state = self.lock();
        let disconnected = state.senders == 0;
        match self.pop(state) {
            Some(value) => Ok(value),
            None if disconnected => Err(TryRecvError::Disconnected),
            None => Err(TryRecvError::Empty),
        }
    }

    pub(super) fn recv(&self, deadline: Option<Instant>) -> Result<T, RecvTimeoutError> {
        loop {
            let mut state = self.lock();
            if !state.buffer.is_empty() {
                return Ok(self.pop(state).expect("the buffer is not empty"));
            }
            if state.senders == 0 {
                return Err(RecvTimeoutError::Disconnected);
            }
            let node = WaitList::push(&mut state.waiting_receivers);
            let send_arm = self.receiver_queued(&mut state);
            Channel::unlock_and_wake(state, send_arm);
            let notified =
                waitlist::wait_in(&self.queue_ref(WaitQueue::Receivers), &node, deadline);
            WaitList::recycle(node);
            if !notified {
                return Err(RecvTimeoutError::Timeout);
            }
        }
    }

    /// After a receiver queued on `waiting_receivers` (or the rendezvous
    /// slot emptied): on a rendezvous channel, pops a select send arm
    /// waiting for that, to be woken once `state` is released.
    pub(super) fn receiver_queued(&self, state: &mut ChannelState<T>) -> Option<Wake> {
        if self.is_rendezvous() {
            WaitList::pop(&mut state.awaiting_receiver, false)
        } else {
            None
        }
    }

    pub(super) fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        let mut state = self.lock();
        if state.receivers == 0 {
            return Err(TrySendError::Disconnected(value));
        }
        if !self.can_try_send(&state, |_| false) {
            return Err(TrySendError::Full(value));
        }
        state.buffer.push_back(value);
        self.debug_check(&state);
        let receiver = WaitList::pop(&mut state.waiting_receivers, false);
        Channel::unlock_and_wake(state, receiver);
        Ok(())
    }

    pub(super) fn send(
        &self,
        value: T,
        deadline: Option<Instant>,
    ) -> Result<(), SendTimeoutError<T>> {
        let mut state = self.lock();
        loop {
            if state.receivers == 0 {
                return Err(SendTimeoutError::Disconnected(value));
            }
            if self.has_room(&state) {
                break;
            }
            let node = WaitList::push(&mut state.waiting_senders);
            drop(state);
            let notified = waitlist::wait_in(&self.queue_ref(WaitQueue::Senders), &node, deadline);
            WaitList::recycle(node);
            if !notified {
                return Err(SendTimeoutError::Timeout(value));
            }
            state = self.lock();
        }
        state.buffer.push_back(value);
        let receiver = WaitList::pop(&mut state.waiting_receivers, false);
        if self.is_rendezvous() {
            return self.wait_in_slot(state, receiver, deadline);
        }
        self.debug_check(&state);
        Channel::unlock_and_wake(state, receiver);
        Ok(())
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
            WaitList::pop_all(&mut state.waiting_receivers)
        } else {
            Vec::new()
        };
        Channel::unlock_and_wake(state, receivers);
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
        // Nobody will receive: drop the buffered messages (after unlocking:
        // their destructors may use this channel), except a value whose
        // blocking sender waits in a rendezvous; it takes it back.
        let owner = state.slot_owner.clone();
        let discarded = if owner.is_some() {
            VecDeque::new()
        } else {
            std::mem::take(&mut state.buffer)
        };
        let mut senders = WaitList::pop_all(&mut state.waiting_senders);
        senders.extend(WaitList::pop_all(&mut state.awaiting_receiver));
        drop(state);
        drop(discarded);
        if let Some(owner) = owner {
            owner.wake();
        }
        senders.into_iter().for_each(Wake::wake);
    }
}
