//! The rendezvous channel (`sync_channel(0)`): a send that waits for the
//! take.
//!
//! The buffer is a one-value *slot*. A blocking send puts its value in the
//! empty slot, records itself as the slot's owner, wakes a receiver and
//! parks until a receiver has taken it (`taken` passed its ticket); on
//! timeout or disconnection it takes its value back out of the slot, so the
//! value is returned in the error, as std does, and a sender unwound while
//! it waits takes it back too (and drops it). `try_send` (and a select's
//! send arm) succeeds only while a receiver is waiting; it wakes that
//! receiver and returns without waiting for the take (`channel.rs`).

use std::sync::MutexGuard;
use std::time::Instant;

use super::channel::{Channel, ChannelState};
use super::error::SendTimeoutError;
use crate::fiber::waiter::Waiter;
use crate::sync::waitlist::Wake;

impl<T> Channel<T> {
    /// The end of a blocking send whose value the caller has just put in
    /// the empty slot, under `state`: records the caller as the slot's
    /// owner, releases `state`, wakes `receiver` (popped under it), and
    /// waits for the take.
    pub(super) fn wait_in_slot(
        &self,
        mut state: MutexGuard<'_, ChannelState<T>>,
        receiver: Option<Wake>,
        deadline: Option<Instant>,
    ) -> Result<(), SendTimeoutError<T>> {
        debug_assert!(state.slot_owner.is_none(), "the slot had an owner");
        debug_assert_eq!(state.buffer.len(), 1, "the rendezvous slot overflowed");
        state.slot_owner = Some(Waiter::current());
        self.debug_check(&state);
        let ticket = state.taken + 1;
        Channel::unlock_and_wake(state, receiver);
        self.wait_taken(ticket, deadline)
    }

    /// Parks until a receiver took the value this caller put in
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
        // Set when the timed park gave up (at shutdown it does so at once).
        let mut gave_up = false;
        loop {
            let state = self.lock();
            if state.taken >= ticket {
                std::mem::forget(reclaim);
                return Ok(());
            }
            let now = Instant::now();
            let timed_out = gave_up || deadline.is_some_and(|deadline| now >= deadline);
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
            gave_up = !crate::time::park_until(deadline);
        }
    }

    /// Takes the caller's untaken value back out of the slot and
    /// releases `state`.
    pub(super) fn reclaim(&self, mut state: MutexGuard<'_, ChannelState<T>>) -> T {
        debug_assert!(state.slot_owner.is_some(), "reclaiming an unowned value");
        debug_assert_eq!(state.buffer.len(), 1, "the slot holds one value");
        state.slot_owner = None;
        let value = state
            .buffer
            .pop_back()
            .expect("an untaken value is in the slot");
        let wakes = self.room_made(&mut state);
        Channel::unlock_and_wake(state, wakes.into_iter().flatten());
        value
    }
}
