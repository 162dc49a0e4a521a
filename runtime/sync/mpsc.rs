//! Channels with `std::sync::mpsc`'s API that park fibers (and block
//! threads): [`channel`] (unbounded), [`sync_channel`] (bounded, or a
//! rendezvous at capacity 0). Both ends clone: every message goes to exactly
//! one receiver. Fibers and threads may sit at either end.
//!
//! The error types, std's, are in `mpsc/error.rs`.
//!
//! # Design
//! One `Channel` per channel, shared by every end through an `Arc`:
//!
//! - `state`, a short `std::sync::Mutex` (never held across a park) over
//!   the buffer (a `VecDeque`), the counts of live senders and receivers,
//!   and three wait queues (`WaitList` nodes): `waiting_receivers`
//!   (waiting for a message or for the last sender to go),
//!   `waiting_senders` (waiting for room, or for the rendezvous slot to
//!   empty) and `awaiting_receiver` (select send arms on a rendezvous
//!   channel, waiting for a receiver to arrive).
//!
//! A waiter checks its condition and queues its node in the same critical
//! section, so a party that changes the state and pops a waiter under the
//! lock cannot miss it. A send pops one waiting receiver in the critical
//! section that queues its message, and wakes it after unlocking, so a
//! ping-pong between two fibers is: lock, push, pop a node, unlock,
//! unpark. (The queues had locks of their own until this was measured:
//! one lock for all took the round trip from 290 to 267 ns, below.) A
//! woken waiter re-checks: a newcomer may have taken the message first (barging,
//! as in the Mutex), and then it queues again. A waiter that leaves without
//! using a notification it received (timeout, unwound at shutdown) passes it
//! on; `WaitList` does that.
//!
//! Measured (a shared 2-core machine; medians of 36 runs of 2,000,000
//! round trips, alternating builds, with 1 and 2 workers): a round trip
//! between two fibers, a message each way with a park and an unpark each,
//! 267 ns; 290 ns with a lock per wait queue; 345 ns before waiters kept
//! their wait node between waits (`waitlist.rs`). `cargo bench --bench
//! channel` gives 300–340 ns on the same machine. `perf` puts nearly all
//! of it in atomic read-modify-writes (~10–15 ns each on this VM), about
//! 12 per one-way trip: per one-way
//! trip, a lock/unlock pair to queue a waiting receiver, one in `send`,
//! one for the woken receiver to take the message, and the park, unpark
//! and next-slot updates. Fewer would need the value handed straight to a
//! waiting receiver (Go's `sendDirect`) through a node on its stack, which
//! is unsafe code outside `fiber/` and the scheduler; not done.
//!
//! ## Rendezvous (`sync_channel(0)`)
//! The buffer becomes a one-value *slot*. A blocking send puts its value in
//! the empty slot, records itself as the slot's owner, wakes a receiver and
//! parks until a receiver has taken it (`taken` passed its ticket); on
//! timeout or disconnection it takes its value back out of the slot, so the
//! value is returned in the error, as std does. `try_send` (and a select's
//! send arm) succeeds only while a receiver is waiting; it wakes that
//! receiver and returns without waiting for the take.
//!
//! ## Rejected
//! - A lock-free queue (crossbeam's list/array channels): several times the
//!   code, and the blocking paths need a lock for the wait lists anyway; the
//!   std lock is held for a push or a pop only.
//! - Intrusive wait nodes on the waiters' stacks, with the value written
//!   straight into them (Go's `sendDirect`): two reference-count updates
//!   and the receiver's second lock pair fewer per wait, but a node linked
//!   by its address is unsafe code in `sync/`, which STYLE.md keeps to
//!   `fiber/`, the scheduler's queues and `sys/` (and a fiber unwound at
//!   shutdown must unlink its node first). The heap node a waiter keeps
//!   between waits (`waitlist.rs`) removed the allocation without it.
//! - A spin lock for `state`, whose unlock is a plain store where std's is
//!   a swap (it must see sleeping waiters): one read-modify-write fewer per
//!   lock, three per one-way trip, but again unsafe code in `sync/` (the
//!   data in an `UnsafeCell`), and a holder preempted by the OS would leave
//!   the other workers spinning instead of sleeping.
//! - Waiting senders and receivers on one list with `notify_all`: every
//!   message would wake every waiter to fight over it.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::waitlist::{Node, Queue, WaitList, Wake};
use crate::fiber::waiter::Waiter;
use crate::lock::MutexExt;

mod error;

pub use self::error::{
    RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError,
};

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
    (
        Sender {
            channel: channel.clone(),
        },
        Receiver { channel },
    )
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
    (
        SyncSender {
            channel: channel.clone(),
        },
        Receiver { channel },
    )
}

/// The sending end of an unbounded [`channel`]. Clone it for more senders.
pub struct Sender<T> {
    channel: Arc<Channel<T>>,
}

/// The sending end of a bounded [`sync_channel`]. Clone it for more
/// senders.
pub struct SyncSender<T> {
    channel: Arc<Channel<T>>,
}

/// The receiving end of a [`channel`] or [`sync_channel`]. Unlike std's, it
/// clones: the clones share one stream, each message going to exactly one
/// of them.
pub struct Receiver<T> {
    channel: Arc<Channel<T>>,
}

/// What every end of one channel shares; see the module docs.
pub(crate) struct Channel<T> {
    /// `None`: unbounded; `Some(0)`: rendezvous. Immutable.
    capacity: Option<usize>,
    /// Any party, for a push or a pop; never held across a park.
    state: Mutex<State<T>>,
}

/// A channel's state, under `Channel::state`.
///
/// # Invariants
/// - `queue.len() <= capacity`, or `<= 1` for a rendezvous channel;
/// - `slot_owner` is `Some` only on a rendezvous channel whose slot holds
///   the value of a blocking send that waits for it to be taken;
/// - once `senders` or `receivers` reaches 0 it stays 0.
struct State<T> {
    queue: VecDeque<T>,
    /// Live `Sender`s or `SyncSender`s.
    senders: usize,
    /// Live `Receiver`s.
    receivers: usize,
    /// Rendezvous only: values taken from the slot so far; a blocking send
    /// whose value went in when this was `n` is done when it passes `n`.
    taken: u64,
    /// Rendezvous only: the blocking sender whose value is in the slot.
    slot_owner: Option<Waiter>,
    /// Receivers (and select receive arms) waiting for a message or for the
    /// last sender to go.
    waiting_receivers: VecDeque<Arc<Node>>,
    /// Senders (and select send arms on a bounded channel) waiting for
    /// room, or for the last receiver to go.
    waiting_senders: VecDeque<Arc<Node>>,
    /// Select send arms on a rendezvous channel, waiting for a receiver to
    /// start waiting (or for the slot to empty, or the last receiver to go).
    awaiting_receiver: VecDeque<Arc<Node>>,
}

/// One of a channel's wait queues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Which {
    Receivers,
    Senders,
    AwaitingReceiver,
}

impl<T> State<T> {
    fn queue_of(&mut self, which: Which) -> &mut VecDeque<Arc<Node>> {
        match which {
            Which::Receivers => &mut self.waiting_receivers,
            Which::Senders => &mut self.waiting_senders,
            Which::AwaitingReceiver => &mut self.awaiting_receiver,
        }
    }
}

/// A channel's wait queues, type-erased over the message type, so that a
/// select can leave and notify them ([`ListRef`]).
pub(crate) trait Lists {
    fn remove_from(&self, which: Which, node: &Arc<Node>) -> bool;
    fn notify_in(&self, which: Which) -> bool;
}

impl<T> Lists for Channel<T> {
    fn remove_from(&self, which: Which, node: &Arc<Node>) -> bool {
        WaitList::remove_from(self.lock().queue_of(which), node)
    }

    fn notify_in(&self, which: Which) -> bool {
        let wake = WaitList::pop(self.lock().queue_of(which), false);
        let woke = wake.is_some();
        if let Some(wake) = wake {
            wake.wake();
        }
        woke
    }
}

/// One wait queue of one channel, as a [`Queue`] a waiter can leave.
#[derive(Clone, Copy)]
pub(crate) struct ListRef<'a> {
    channel: &'a dyn Lists,
    which: Which,
}

impl Queue for ListRef<'_> {
    fn remove(&self, node: &Arc<Node>) -> bool {
        self.channel.remove_from(self.which, node)
    }

    fn notify_one(&self) -> bool {
        self.channel.notify_in(self.which)
    }
}

/// A select arm's node, queued on one of a channel's wait lists.
pub(crate) struct Registration<'a> {
    pub(crate) list: ListRef<'a>,
    pub(crate) node: Arc<Node>,
}

impl<T> Channel<T> {
    fn new(capacity: Option<usize>) -> Channel<T> {
        Channel {
            capacity,
            state: Mutex::new(State {
                queue: VecDeque::new(),
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

    /// One of this channel's wait queues, as a [`Queue`].
    fn list(&self, which: Which) -> ListRef<'_> {
        ListRef {
            channel: self,
            which,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Nothing panics under this lock except allocation failure, which
        // leaves the state consistent; ignore poisoning.
        self.state.lock_unpoisoned()
    }

    /// Releases `state`, then wakes the waiters popped under it (never
    /// woken under the lock: a woken fiber on another worker would only
    /// run into it).
    fn unlock_and_wake(state: MutexGuard<'_, State<T>>, wakes: impl IntoIterator<Item = Wake>) {
        drop(state);
        wakes.into_iter().for_each(Wake::wake);
    }

    fn is_rendezvous(&self) -> bool {
        self.capacity == Some(0)
    }

    /// Whether a send that puts its value in the buffer fits now.
    fn has_room(&self, state: &State<T>) -> bool {
        match self.capacity {
            None => true,
            Some(capacity) => state.queue.len() < capacity.max(1),
        }
    }

    /// Checks the invariants on `State` (debug builds).
    fn debug_check(&self, state: &State<T>) {
        debug_assert!(
            state.queue.len() <= self.capacity.map_or(usize::MAX, |c| c.max(1)),
            "the buffer holds {} values, over capacity {:?}",
            state.queue.len(),
            self.capacity
        );
        debug_assert!(
            state.slot_owner.is_none() || (self.is_rendezvous() && state.queue.len() == 1),
            "a slot owner without its value in the slot"
        );
    }

    /// Whether a `try_send` succeeds now (a rendezvous needs a receiver
    /// already waiting, other than the caller's own select nodes, for which
    /// `is_own` is true). The caller holds `state`.
    fn can_try_send(&self, state: &State<T>, is_own: impl Fn(&Arc<Node>) -> bool) -> bool {
        match self.capacity {
            Some(0) => state.queue.is_empty() && state.waiting_receivers.iter().any(|n| !is_own(n)),
            _ => self.has_room(state),
        }
    }

    /// Pops the front message and releases `state`, then wakes whoever the
    /// pop concerns: a rendezvous sender waiting for the take, and one
    /// sender waiting for room.
    fn pop(&self, mut state: MutexGuard<'_, State<T>>) -> Option<T> {
        let value = state.queue.pop_front()?;
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

    /// After a bounded channel's buffer lost a value: pops the waiters that
    /// may go now, to be woken once `state` is released.
    fn room_made(&self, state: &mut State<T>) -> [Option<Wake>; 2] {
        let sender = if self.capacity.is_some() {
            WaitList::pop(&mut state.waiting_senders, false)
        } else {
            None
        };
        // The slot is empty: if a receiver waits, a select send arm can go
        // now.
        [sender, self.receiver_queued(state)]
    }

    pub(crate) fn try_recv(&self) -> Result<T, TryRecvError> {
        let state = self.lock();
        let disconnected = state.senders == 0;
        match self.pop(state) {
            Some(value) => Ok(value),
            None if disconnected => Err(TryRecvError::Disconnected),
            None => Err(TryRecvError::Empty),
        }
    }

    fn recv(&self, deadline: Option<Instant>) -> Result<T, RecvTimeoutError> {
        loop {
            let mut state = self.lock();
            if !state.queue.is_empty() {
                return Ok(self.pop(state).expect("the queue is not empty"));
            }
            if state.senders == 0 {
                return Err(RecvTimeoutError::Disconnected);
            }
            let node = WaitList::push(&mut state.waiting_receivers);
            let send_arm = self.receiver_queued(&mut state);
            Channel::unlock_and_wake(state, send_arm);
            let notified = super::waitlist::wait_in(&self.list(Which::Receivers), &node, deadline);
            WaitList::recycle(node);
            if !notified {
                return Err(RecvTimeoutError::Timeout);
            }
        }
    }

    /// After a receiver queued on `waiting_receivers` (or the rendezvous
    /// slot emptied): on a rendezvous channel, pops a select send arm
    /// waiting for that, to be woken once `state` is released.
    fn receiver_queued(&self, state: &mut State<T>) -> Option<Wake> {
        if self.is_rendezvous() {
            WaitList::pop(&mut state.awaiting_receiver, false)
        } else {
            None
        }
    }

    pub(crate) fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        let mut state = self.lock();
        if state.receivers == 0 {
            return Err(TrySendError::Disconnected(value));
        }
        if !self.can_try_send(&state, |_| false) {
            return Err(TrySendError::Full(value));
        }
        state.queue.push_back(value);
        self.debug_check(&state);
        let receiver = WaitList::pop(&mut state.waiting_receivers, false);
        Channel::unlock_and_wake(state, receiver);
        Ok(())
    }

    fn send(&self, value: T, deadline: Option<Instant>) -> Result<(), SendTimeoutError<T>> {
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
            let notified = super::waitlist::wait_in(&self.list(Which::Senders), &node, deadline);
            WaitList::recycle(node);
            if !notified {
                return Err(SendTimeoutError::Timeout(value));
            }
            state = self.lock();
        }
        state.queue.push_back(value);
        let receiver = WaitList::pop(&mut state.waiting_receivers, false);
        if !self.is_rendezvous() {
            self.debug_check(&state);
            Channel::unlock_and_wake(state, receiver);
            return Ok(());
        }
        debug_assert!(state.slot_owner.is_none(), "the slot had an owner");
        debug_assert_eq!(state.queue.len(), 1, "the rendezvous slot overflowed");
        state.slot_owner = Some(Waiter::current());
        self.debug_check(&state);
        let ticket = state.taken + 1;
        Channel::unlock_and_wake(state, receiver);
        self.wait_taken(ticket, deadline)
    }

    /// Rendezvous: parks until a receiver took the value this caller put in
    /// the slot (`ticket`), or takes it back on timeout or disconnection.
    fn wait_taken(
        &self,
        ticket: u64,
        deadline: Option<Instant>,
    ) -> Result<(), SendTimeoutError<T>> {
        /// Takes the value back (and drops it) if the sender is unwound.
        struct Reclaim<'a, T> {
            channel: &'a Channel<T>,
            ticket: u64,
        }
        impl<T> Drop for Reclaim<'_, T> {
            fn drop(&mut self) {
                let state = self.channel.lock();
                if state.taken < self.ticket {
                    let value = self.channel.reclaim(state);
                    drop(value);
                }
            }
        }
        let reclaim = Reclaim {
            channel: self,
            ticket,
        };
        loop {
            let state = self.lock();
            if state.taken >= ticket {
                std::mem::forget(reclaim);
                return Ok(());
            }
            let now = Instant::now();
            let timed_out = deadline.is_some_and(|deadline| now >= deadline);
            if state.receivers == 0 || timed_out {
                let disconnected = state.receivers == 0;
                std::mem::forget(reclaim);
                let value = self.reclaim(state);
                return Err(if disconnected {
                    SendTimeoutError::Disconnected(value)
                } else {
                    SendTimeoutError::Timeout(value)
                });
            }
            drop(state);
            // The receiver that takes the value wakes `slot_owner`, us; a
            // spurious or stale wake-up just goes round the loop.
            crate::time::park_until(deadline);
        }
    }

    /// Rendezvous: takes the caller's untaken value back out of the slot and
    /// releases `state`.
    fn reclaim(&self, mut state: MutexGuard<'_, State<T>>) -> T {
        debug_assert!(state.slot_owner.is_some(), "reclaiming an unowned value");
        debug_assert_eq!(state.queue.len(), 1, "the slot holds one value");
        state.slot_owner = None;
        let value = state
            .queue
            .pop_back()
            .expect("an untaken value is in the slot");
        let wakes = self.room_made(&mut state);
        Channel::unlock_and_wake(state, wakes.into_iter().flatten());
        value
    }

    fn add_sender(&self) {
        let mut state = self.lock();
        debug_assert!(state.senders > 0, "a sender cloned from nothing");
        state.senders += 1;
    }

    fn drop_sender(&self) {
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

    fn add_receiver(&self) {
        let mut state = self.lock();
        debug_assert!(state.receivers > 0, "a receiver cloned from nothing");
        state.receivers += 1;
    }

    fn drop_receiver(&self) {
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
            std::mem::take(&mut state.queue)
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

    /// Queues a select receive arm's node, unless a receive would complete
    /// now (a message, or no senders left): then `None`.
    pub(crate) fn register_receive(&self) -> Option<Registration<'_>> {
        let mut state = self.lock();
        if !state.queue.is_empty() || state.senders == 0 {
            return None;
        }
        let node = WaitList::push(&mut state.waiting_receivers);
        let send_arm = self.receiver_queued(&mut state);
        Channel::unlock_and_wake(state, send_arm);
        Some(Registration {
            list: self.list(Which::Receivers),
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
        let which = if self.is_rendezvous() {
            Which::AwaitingReceiver
        } else {
            Which::Senders
        };
        let node = WaitList::push(state.queue_of(which));
        Some(Registration {
            list: self.list(which),
            node,
        })
    }
}

impl<T> Sender<T> {
    /// Sends `value`; never waits. Fails, handing the value back, if every
    /// [`Receiver`] is gone.
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        self.channel.send(value, None).map_err(|error| match error {
            SendTimeoutError::Disconnected(value) | SendTimeoutError::Timeout(value) => {
                SendError(value)
            }
        })
    }
}

impl<T> SyncSender<T> {
    /// Sends `value`, parking the calling fiber (or blocking the thread)
    /// while the channel is full; on a rendezvous channel, until a receiver
    /// has taken it. Fails, handing the value back, if every [`Receiver`]
    /// is gone (also while waiting).
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        self.channel.send(value, None).map_err(|error| match error {
            SendTimeoutError::Disconnected(value) | SendTimeoutError::Timeout(value) => {
                SendError(value)
            }
        })
    }

    /// Like [`SyncSender::send`], giving up after `timeout` (the value comes
    /// back in the error).
    pub fn send_timeout(&self, value: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        self.channel
            .send(value, Instant::now().checked_add(timeout))
    }

    /// Sends `value` if that needs no waiting: there is room, or, on a
    /// rendezvous channel, a receiver is waiting (it is woken and takes the
    /// value; this does not wait for the take).
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        self.channel.try_send(value)
    }

    pub(crate) fn channel(&self) -> &Channel<T> {
        &self.channel
    }
}

impl<T> Receiver<T> {
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

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Sender<T> {
        self.channel.add_sender();
        Sender {
            channel: self.channel.clone(),
        }
    }
}

impl<T> Clone for SyncSender<T> {
    fn clone(&self) -> SyncSender<T> {
        self.channel.add_sender();
        SyncSender {
            channel: self.channel.clone(),
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

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.channel.drop_sender();
    }
}

impl<T> Drop for SyncSender<T> {
    fn drop(&mut self) {
        self.channel.drop_sender();
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
