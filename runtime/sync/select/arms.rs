//! The arms of a [`Select`](super::Select): one operation each, with the
//! handler that turns its outcome into the select's result.
//!
//! Two kinds, by how the select learns an arm is ready (module docs of
//! `select/mod.rs`):
//! - **channel arms** ([`RecvArm`], [`SendArm`]) queue an entry for the
//!   select's node on their channel; the party that completes the
//!   operation claims and resolves the node, moving the message through
//!   the arm's slot;
//! - **signal arms** ([`JoinArm`], [`TimerArm`], and the readiness arms of
//!   `readiness.rs`) only wake the select's waiter when their event comes
//!   (a fiber finishes, a deadline passes, a socket turns ready); the
//!   select, woken, sees the event and claims the win itself by
//!   withdrawing its node. Nothing moves through them, so an event that
//!   comes for a select that has chosen another arm is simply not taken.

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use crate::sync::mpsc::{Channel, RecvError, Resolution, SendError, Side, Waiting};
use crate::sync::spin_lock::RawSpinLock;
use crate::sync::waitlist::Node;
use crate::JoinHandle;

/// When the wait in progress began, read from the clock at most once per
/// wait (only a timeout arm asks).
pub(super) struct Start(Option<Instant>);

impl Start {
    pub(super) fn new() -> Start {
        Start(None)
    }

    fn now(&mut self) -> Instant {
        *self.0.get_or_insert_with(Instant::now)
    }
}

/// One operation of a select, type-erased over its message type.
///
/// A select calls, per wait: `prepare`; `try_complete` (under the locks);
/// if it must wait, `register` (under the locks), then `signalled` after
/// each wake-up, then `deregister`; on the arm chosen, `settle` (a channel
/// arm resolved by another party) and `finish`.
///
/// Between `register` and `deregister`, a party on another thread may move
/// a message through a channel arm's slot: the select touches its arms
/// only through `&self` then, and keeps the boxes (whose contents do not
/// move) alive.
pub(super) trait Arm<'a, R> {
    /// The lock of the arm's channel; `None` for a signal arm.
    fn lock(&self) -> Option<&'a RawSpinLock>;
    /// Gets the arm ready for a wait; false if it takes no part in this one
    /// (a send arm with nothing left to send).
    fn prepare(&mut self, start: &mut Start) -> bool;
    /// The time this arm becomes ready by itself (a timer arm).
    fn deadline(&self) -> Option<Instant> {
        None
    }
    /// Completes the operation if it needs no waiting (or fails for good,
    /// disconnected); true if so, and the outcome is kept for `finish`.
    /// Parties to wake once the locks are released go to `wakes`.
    ///
    /// # Safety
    /// The caller holds `self.lock()`, if any.
    unsafe fn try_complete(&mut self, wakes: &mut Vec<Resolution>) -> bool;
    /// Queues the arm's entry for `node` as arm `index`, or (a signal arm)
    /// arranges for its event to wake `node`'s waiter. Never blocks.
    ///
    /// # Safety
    /// The caller holds `self.lock()`, if any, found the arm would wait,
    /// and keeps this arm in place, touching it only through `&self`,
    /// until it has called `deregister`.
    unsafe fn register(&self, node: &Node, index: u32);
    /// Whether a signal arm's event has come since it registered (and the
    /// select may take it); always false for a channel arm.
    fn signalled(&self) -> bool {
        false
    }
    /// Undoes `register` (takes the channel's lock, which also waits out a
    /// party resolving the entry).
    fn deregister(&self, node: &Node, index: u32);
    /// Takes the outcome of the arm's resolution (`closed`: the other side
    /// had gone) from its slot, for `finish`. Only channel arms are
    /// resolved by another party.
    ///
    /// # Safety
    /// The arm's entry was resolved so, and has been deregistered since.
    unsafe fn settle(&mut self, closed: bool);
    /// Runs the handler on the outcome kept.
    fn finish(&mut self) -> R;
    /// The select was unwound after this arm was resolved: deals with the
    /// outcome nobody will see (a message received is passed back to the
    /// channel; a send's value handed back is kept for the next wait).
    fn salvage(&mut self) {}
}

pub(super) struct RecvArm<'a, T, F> {
    channel: &'a Channel<T>,
    /// Where a sender puts the message while the arm is registered.
    slot: UnsafeCell<MaybeUninit<T>>,
    /// Set by `try_complete` or `settle`, taken by `finish`.
    outcome: Option<Result<T, RecvError>>,
    handler: F,
}

impl<'a, T, F> RecvArm<'a, T, F> {
    pub(super) fn new(channel: &'a Channel<T>, handler: F) -> RecvArm<'a, T, F> {
        RecvArm {
            channel,
            slot: UnsafeCell::new(MaybeUninit::uninit()),
            outcome: None,
            handler,
        }
    }
}

impl<'a, T, R, F: FnMut(Result<T, RecvError>) -> R> Arm<'a, R> for RecvArm<'a, T, F> {
    fn lock(&self) -> Option<&'a RawSpinLock> {
        let channel: &'a Channel<T> = self.channel;
        Some(channel.raw_lock())
    }

    fn prepare(&mut self, _: &mut Start) -> bool {
        debug_assert!(self.outcome.is_none(), "an outcome left from a wait");
        true
    }

    unsafe fn try_complete(&mut self, wakes: &mut Vec<Resolution>) -> bool {
        // SAFETY: the caller holds the channel's lock.
        self.outcome = unsafe { self.channel.recv_locked(wakes) };
        self.outcome.is_some()
    }

    unsafe fn register(&self, node: &Node, index: u32) {
        let slot = NonNull::new(self.slot.get().cast::<T>()).expect("a field is not null");
        // SAFETY: the slot is in this arm's box, which the caller keeps in
        // place and does not touch mutably until it has deregistered the
        // entry (or seen it resolved: `settle`'s contract); it is a
        // receiver's, so it holds nothing yet (a message from an earlier
        // wait was read out by `settle`).
        let entry = unsafe { Waiting::new(node, slot, index, true) };
        // SAFETY: the caller holds the channel's lock.
        unsafe { self.channel.register_locked(Side::Receiving, entry) };
    }

    fn deregister(&self, node: &Node, index: u32) {
        self.channel.deregister(Side::Receiving, node, index);
    }

    unsafe fn settle(&mut self, closed: bool) {
        self.outcome = Some(if closed {
            Err(RecvError)
        } else {
            // SAFETY: resolved as done: a sender wrote a message into the
            // slot before resolving, and, deregistered, nobody touches the
            // slot any more (the caller's promise).
            Ok(unsafe { self.slot.get_mut().assume_init_read() })
        });
    }

    fn finish(&mut self) -> R {
        let outcome = self.outcome.take().expect("finish after an outcome");
        (self.handler)(outcome)
    }

    fn salvage(&mut self) {
        if let Some(Ok(message)) = self.outcome.take() {
            self.channel.put_back(message);
        }
    }
}

pub(super) struct SendArm<'a, T, P, F> {
    channel: &'a Channel<T>,
    message: Message<T>,
    /// The next value to send, asked for when the last one has gone;
    /// `None`: nothing more, and the arm takes no part.
    produce: P,
    /// Set by `try_complete` or `settle`, taken by `finish`.
    outcome: Option<Result<(), SendError<T>>>,
    handler: F,
}

impl<'a, T, P, F> SendArm<'a, T, P, F> {
    pub(super) fn new(channel: &'a Channel<T>, produce: P, handler: F) -> SendArm<'a, T, P, F> {
        SendArm {
            channel,
            message: Message::empty(),
            produce,
            outcome: None,
            handler,
        }
    }
}

/// A send arm's message, until it is sent (or handed back by a
/// disconnection); while the arm is registered, the slot a receiver takes
/// it from. Dropped holding it (an arm that was never chosen), it drops
/// the message.
struct Message<T> {
    slot: UnsafeCell<MaybeUninit<T>>,
    /// Whether `slot` holds the message. Changed only through `&mut self`.
    holds: bool,
}

impl<T> Message<T> {
    fn empty() -> Message<T> {
        Message {
            slot: UnsafeCell::new(MaybeUninit::uninit()),
            holds: false,
        }
    }

    /// Takes the message out.
    fn take(&mut self) -> T {
        assert!(self.holds, "a send arm without its message");
        self.holds = false;
        // SAFETY: `holds` said the slot holds the message, and `&mut self`
        // means the arm is not registered (see `Arm`), so nobody else
        // touches it.
        unsafe { self.slot.get_mut().assume_init_read() }
    }

    /// Puts the message in (a new one, or one a send that would have
    /// waited gave back).
    fn put(&mut self, value: T) {
        debug_assert!(!self.holds, "a send arm with two messages");
        self.slot.get_mut().write(value);
        self.holds = true;
    }
}

impl<T> Drop for Message<T> {
    fn drop(&mut self) {
        if self.holds {
            drop(self.take());
        }
    }
}

impl<'a, T, R, P, F> Arm<'a, R> for SendArm<'a, T, P, F>
where
    P: FnMut() -> Option<T>,
    F: FnMut(Result<(), SendError<T>>) -> R,
{
    fn lock(&self) -> Option<&'a RawSpinLock> {
        let channel: &'a Channel<T> = self.channel;
        Some(channel.raw_lock())
    }

    fn prepare(&mut self, _: &mut Start) -> bool {
        debug_assert!(self.outcome.is_none(), "an outcome left from a wait");
        if !self.message.holds {
            if let Some(value) = (self.produce)() {
                self.message.put(value);
            }
        }
        self.message.holds
    }

    unsafe fn try_complete(&mut self, wakes: &mut Vec<Resolution>) -> bool {
        let value = self.message.take();
        // SAFETY: the caller holds the channel's lock.
        match unsafe { self.channel.send_locked(value, wakes) } {
            Ok(outcome) => {
                self.outcome = Some(outcome);
                true
            }
            Err(value) => {
                self.message.put(value);
                false
            }
        }
    }

    unsafe fn register(&self, node: &Node, index: u32) {
        debug_assert!(
            self.message.holds,
            "a send arm registered without its message"
        );
        let slot = NonNull::new(self.message.slot.get().cast::<T>()).expect("a field is not null");
        // SAFETY: as for a receive arm; the slot holds the message.
        let entry = unsafe { Waiting::new(node, slot, index, true) };
        // SAFETY: the caller holds the channel's lock.
        unsafe { self.channel.register_locked(Side::Sending, entry) };
    }

    fn deregister(&self, node: &Node, index: u32) {
        self.channel.deregister(Side::Sending, node, index);
    }

    unsafe fn settle(&mut self, closed: bool) {
        self.outcome = Some(if closed {
            // The receivers went; the message is still ours.
            Err(SendError(self.message.take()))
        } else {
            // A receiver took it out of the slot.
            self.message.holds = false;
            Ok(())
        });
    }

    fn finish(&mut self) -> R {
        let outcome = self.outcome.take().expect("finish after an outcome");
        (self.handler)(outcome)
    }

    fn salvage(&mut self) {
        // Sent: a receiver has it. Handed back: ours, for the next wait.
        if let Some(Err(SendError(value))) = self.outcome.take() {
            self.message.put(value);
        }
    }
}

/// Ready once a fiber has finished: its `JoinHandle`'s completion wakes the
/// select's waiter, as it would a joiner.
pub(super) struct JoinArm<'a, T, F> {
    /// Borrowed mutably: the completion has room for one waiter, and
    /// nobody else may join or wait on it meanwhile.
    handle: &'a mut JoinHandle<T>,
    handler: F,
}

impl<'a, T, F> JoinArm<'a, T, F> {
    pub(super) fn new(handle: &'a mut JoinHandle<T>, handler: F) -> JoinArm<'a, T, F> {
        JoinArm { handle, handler }
    }
}

impl<'a, T: 'static, R, F: FnMut() -> R> Arm<'a, R> for JoinArm<'a, T, F> {
    fn lock(&self) -> Option<&'a RawSpinLock> {
        None
    }

    fn prepare(&mut self, _: &mut Start) -> bool {
        true
    }

    unsafe fn try_complete(&mut self, _: &mut Vec<Resolution>) -> bool {
        self.handle.is_finished()
    }

    unsafe fn register(&self, _: &Node, _: u32) {
        // False: it finished since `try_complete`; `signalled` says so.
        let _ = self.handle.completion().register();
    }

    fn signalled(&self) -> bool {
        self.handle.is_finished()
    }

    fn deregister(&self, _: &Node, _: u32) {
        self.handle.completion().unregister();
    }

    unsafe fn settle(&mut self, _: bool) {
        unreachable!("a join arm is never resolved by another party");
    }

    fn finish(&mut self) -> R {
        (self.handler)()
    }
}

/// When a timer arm fires.
pub(super) enum When {
    /// This long after each wait begins (Go's `time.After` in a `select`).
    After(Duration),
    /// At this instant, in every wait (ready at once once it has passed).
    At(Instant),
}

/// Ready at a deadline: the select parks with it as its timeout.
pub(super) struct TimerArm<F> {
    when: When,
    /// This wait's deadline (`None`: too far away to be reached).
    deadline: Option<Instant>,
    handler: F,
}

impl<F> TimerArm<F> {
    pub(super) fn new(when: When, handler: F) -> TimerArm<F> {
        TimerArm {
            when,
            deadline: None,
            handler,
        }
    }

    fn has_passed(&self) -> bool {
        self.deadline
            .is_some_and(|deadline| Instant::now() >= deadline)
    }
}

impl<'a, R, F: FnMut() -> R> Arm<'a, R> for TimerArm<F> {
    fn lock(&self) -> Option<&'a RawSpinLock> {
        None
    }

    fn prepare(&mut self, start: &mut Start) -> bool {
        self.deadline = match self.when {
            When::After(timeout) => start.now().checked_add(timeout),
            When::At(deadline) => Some(deadline),
        };
        true
    }

    fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    unsafe fn try_complete(&mut self, _: &mut Vec<Resolution>) -> bool {
        self.has_passed()
    }

    unsafe fn register(&self, _: &Node, _: u32) {
        // The select parks with this deadline (`Arm::deadline`).
    }

    fn signalled(&self) -> bool {
        self.has_passed()
    }

    fn deregister(&self, _: &Node, _: u32) {}

    unsafe fn settle(&mut self, _: bool) {
        unreachable!("a timer arm is never resolved by another party");
    }

    fn finish(&mut self) -> R {
        (self.handler)()
    }
}
