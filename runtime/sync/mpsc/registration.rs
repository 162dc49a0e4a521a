//! What a [`Select`](crate::sync::Select) does on a channel: with the
//! channel's lock held (a select locks all its channels at once, in address
//! order), try an arm's operation without waiting, or queue the arm's entry
//! (`waiting.rs`); later, with the lock taken again, remove the entry.

use super::channel::{Channel, Side};
use super::error::{RecvError, SendError};
use super::waiting::{Resolution, Waiting};
use crate::sync::spin_lock::RawSpinLock;
use crate::sync::waitlist::Node;

impl<T> Channel<T> {
    /// The channel's lock word, for a select to take with its others.
    pub(crate) fn raw_lock(&self) -> &RawSpinLock {
        self.state_lock().raw()
    }

    /// A receive that needs no waiting, by a select that holds this
    /// channel's lock: a message, or `Err` if every sender is gone; `None`
    /// if it would wait. A sender to wake afterwards goes to `wakes`.
    ///
    /// # Safety
    /// The caller holds [`Channel::raw_lock`] for the whole call.
    pub(crate) unsafe fn recv_locked(
        &self,
        wakes: &mut Vec<Resolution>,
    ) -> Option<Result<T, RecvError>> {
        // SAFETY: the caller holds the lock; the reference ends with this
        // call and no other exists meanwhile.
        let state = unsafe { self.state_lock().data_locked() };
        match self.take_now(state) {
            Some((value, wake)) => {
                wakes.extend(wake);
                Some(Ok(value))
            }
            None if state.senders == 0 => Some(Err(RecvError)),
            None => None,
        }
    }

    /// A send that needs no waiting, by a select that holds this channel's
    /// lock: `Ok` with the operation's outcome (`Err(SendError)` if every
    /// receiver is gone), or the value back if it would wait. A receiver to
    /// wake afterwards goes to `wakes`.
    ///
    /// # Safety
    /// As [`Channel::recv_locked`].
    pub(crate) unsafe fn send_locked(
        &self,
        value: T,
        wakes: &mut Vec<Resolution>,
    ) -> Result<Result<(), SendError<T>>, T> {
        // SAFETY: as in `recv_locked`.
        let state = unsafe { self.state_lock().data_locked() };
        if state.receivers == 0 {
            return Ok(Err(SendError(value)));
        }
        let wake = self.give_now(state, value)?;
        wakes.extend(wake);
        Ok(Ok(()))
    }

    /// Queues a select arm's entry on `side`, by a select that holds this
    /// channel's lock and found the arm would wait.
    ///
    /// # Safety
    /// As [`Channel::recv_locked`].
    pub(crate) unsafe fn register_locked(&self, side: Side, entry: Waiting<T>) {
        // SAFETY: as in `recv_locked`.
        let state = unsafe { self.state_lock().data_locked() };
        state.queue(side).push(entry);
    }

    /// Removes a select arm's entry (`node`, `arm`) from `side`, if it is
    /// still there; takes the lock.
    pub(crate) fn deregister(&self, side: Side, node: &Node, arm: u32) {
        self.lock().queue(side).remove(node, arm);
    }
}
