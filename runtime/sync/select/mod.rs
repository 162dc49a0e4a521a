//! [`Select`]: wait for the first of several operations to complete, Go's
//! `select` for fibers and threads: receives and sends on
//! [`mpsc`](super::mpsc) channels, a fiber finishing, a timeout or a
//! deadline, a socket turning ready.
//!
//! # Design
//! Each arm pairs an operation with a handler that turns its outcome into
//! the select's result `R` (`arms.rs`); arms are boxed trait objects, so
//! one select mixes channels of different message types. A select is
//! built once and may be waited on again and again: every wait runs Go's
//! `selectgo` over the arms, and reuses the select's node and scratch
//! space, so a select waited on in a loop allocates nothing after its
//! first few waits.
//!
//! 1. **Prepare** each arm (a timeout starts counting; a send arm whose
//!    value went in an earlier wait asks for the next, or sits out).
//! 2. **Lock** every channel arm's channel, in address order (so two
//!    selects never deadlock), and **poll** the arms in a random order (a
//!    fresh permutation each time, so that every ready arm is chosen
//!    equally often). The first operation that needs no waiting completes,
//!    under the locks: its handler runs and the select returns. All
//!    channels are locked at once, so the poll sees one instant:
//!    [`Select::try_select`] fails only if no arm was ready at that
//!    instant.
//! 3. **Register**, still under the locks: a channel arm queues an entry
//!    for the select's one node (`mpsc/waiting.rs`), with its message slot
//!    in its boxed arm. Then unlock, and register the *signal* arms (a
//!    join, a timer, a readiness arm, `readiness.rs`): each arranges for
//!    its event to wake the select's waiter.
//! 4. **Park** until a party on some arm's channel resolves the node: it
//!    claims the node first (so exactly one arm completes) and then moves
//!    the message, as it would for a plain waiter. Or until a signal arm's
//!    event has come, or the deadline passes: then the select withdraws
//!    its node (which a claim may beat: then the claim wins), and the
//!    signal arm, or the timeout, is the outcome.
//! 5. **Deregister** every arm (a channel arm takes its lock in turn,
//!    which also waits out a claim in progress), and finish the arm
//!    chosen. Steps 4 and 5, and the drop guard below, are
//!    `registered.rs`.
//!
//! A resolution is a completed operation, never a hint to try again, so a
//! woken select never finds its message gone and nothing needs passing
//! on. A signal is the other way round: it only wakes the select, which
//! takes it by withdrawing its node, so a signal that comes for a select
//! that chose another arm (a fiber finishing, a socket turning ready) is
//! left for whoever looks next. A readiness arm's win is a hint, as any
//! readiness is: the operation that follows may still find nothing and
//! wait.
//!
//! A select unwound while registered (its fiber cancelled, or the runtime
//! shutting down) withdraws and deregisters in a drop guard. A message a
//! receive arm was handed first is not lost: it is passed on to another
//! waiting receiver, or put back at the head of the channel's buffer if
//! there is room, and dropped only if neither can take it (a rendezvous
//! or full channel with nobody waiting: its sender has already been told
//! it was received), as for a plain receiver (`mpsc/channel.rs`,
//! `Channel::put_back`, which also names the race left at the end of a
//! stream). A send arm unwound after a receiver took its value has sent
//! it; one unwound before keeps it, as when no arm was chosen.
//!
//! A select holds its channels' locks while it polls and registers, which
//! is a few pushes and pops per arm; the locks never wait on anything but
//! each other, and are always taken in one order.
//!
//! Rejected: checking the arms one at a time, each under its own lock,
//! then queueing on each: a non-blocking select could then report nothing
//! ready while some arm was ready at every instant, and an arm that turns
//! ready between its check and its queueing needs a second round. And for
//! the signal arms, resolving the node from the event's side (a fiber's
//! completion or the reactor claiming the select's node, as a channel
//! does): each would need a queue entry for the select's node and a claim
//! protocol of its own, where a wake-up and a withdrawal need neither.
//!
//! # Limits
//! - The values of send arms that were never chosen are dropped with the
//!   select.
//! - A [`send`](Select::send) arm sends its one value; once it has gone,
//!   the arm sits out later waits of a reused select
//!   ([`send_with`](Select::send_with) makes a new value each time).

use std::cell::Cell;
use std::error::Error;
use std::fmt;
use std::time::{Duration, Instant};

use self::arms::{Arm, JoinArm, RecvArm, SendArm, Start, TimerArm, When};
use self::registered::Registered;
use super::mpsc::{Receiver, RecvError, Resolution, SendEnd, SendError};
use super::spin_lock::RawSpinLock;
use super::waitlist::{Node, WaitList};
use crate::JoinHandle;

mod arms;
mod readiness;
mod registered;

/// A set of operations to wait on; the first to complete wins.
///
/// Add arms, each with a handler that maps its outcome to the select's
/// result: [`recv`](Select::recv), [`send`](Select::send) and
/// [`send_with`](Select::send_with) on channels (a [`Sender`] or a
/// [`SyncSender`]), [`join`](Select::join) on a fiber,
/// [`timeout`](Select::timeout) and [`deadline`](Select::deadline), and
/// [`readable`](Select::readable) and [`writable`](Select::writable) on a
/// socket. Then run it with [`wait`](Select::wait),
/// [`wait_timeout`](Select::wait_timeout) or
/// [`try_select`](Select::try_select) (the non-blocking form), as often as
/// you like: a select is reusable. When several arms are ready, one is
/// chosen at random. A receive arm on a channel whose senders are all gone
/// is ready, with `Err(RecvError)`; a send arm whose receivers are all
/// gone is ready, with the value back in `Err(SendError)`.
///
/// [`Sender`]: super::mpsc::Sender
/// [`SyncSender`]: super::mpsc::SyncSender
///
/// ```
/// use std::time::Duration;
/// use spindle::sync::{mpsc, Select};
///
/// let rt = spindle::Runtime::new().unwrap();
/// rt.block_on(|| {
///     let (numbers_tx, numbers) = mpsc::channel::<u32>();
///     let (words_tx, words) = mpsc::channel::<&str>();
///     spindle::spawn(move || words_tx.send("hello").unwrap());
///
///     // Parks until one arm completes: here, the word arrives.
///     let got = Select::new()
///         .recv(&numbers, |n| format!("number {}", n.unwrap()))
///         .recv(&words, |w| format!("word {}", w.unwrap()))
///         .wait();
///     assert_eq!(got, "word hello");
///
///     // Nothing is ready: the timeout arm fires (or, without waiting, the
///     // default form says so at once).
///     let got = Select::new()
///         .recv(&numbers, |n| Some(n.unwrap()))
///         .timeout(Duration::from_millis(5), || None)
///         .wait();
///     assert_eq!(got, None);
///     assert!(Select::new().recv(&numbers, |n| n.unwrap()).try_select().is_err());
///
///     // A send arm: room in a bounded channel makes it ready.
///     let (tx, rx) = mpsc::sync_channel(1);
///     let sent = Select::new()
///         .recv(&numbers, |_| "received")
///         .send(&tx, 7, |result| {
///             result.unwrap();
///             "sent"
///         })
///         .wait();
///     assert_eq!(sent, "sent");
///     assert_eq!(rx.recv(), Ok(7));
///     drop(numbers_tx);
/// });
/// ```
///
/// A select built once serves a loop; its handlers are `FnMut`, and a
/// result type of your own says which arm won:
///
/// ```
/// use std::time::Duration;
/// use spindle::sync::{mpsc, Select};
///
/// enum Event {
///     Job(u32),
///     Closed,
///     Tick,
/// }
///
/// let rt = spindle::Runtime::new().unwrap();
/// rt.block_on(|| {
///     let (tx, jobs) = mpsc::sync_channel(4);
///     spindle::spawn(move || (1..=3).for_each(|job| tx.send(job).unwrap()));
///     let mut select = Select::new()
///         .recv(&jobs, |job| job.map_or(Event::Closed, Event::Job))
///         .timeout(Duration::from_secs(60), || Event::Tick);
///     let mut total = 0;
///     loop {
///         match select.wait() {
///             Event::Job(job) => total += job,
///             Event::Closed => break,
///             Event::Tick => println!("idle for a minute"),
///         }
///     }
///     assert_eq!(total, 6);
/// });
/// ```
#[must_use = "a Select does nothing until `wait`, `wait_timeout` or `try_select` runs it"]
pub struct Select<'a, R> {
    arms: Vec<Box<dyn Arm<'a, R> + 'a>>,
    /// Space each wait needs, kept between waits so that a reused select
    /// allocates nothing once it has grown.
    scratch: Scratch<'a>,
}

/// A select's working space for one wait; empty between waits.
struct Scratch<'a> {
    /// The arms taking part in this wait (their indices), in poll order.
    order: Vec<u32>,
    /// Their channels' locks, each once, in address order.
    locks: Vec<&'a RawSpinLock>,
    /// Parties an arm completed in the poll has to wake once unlocked.
    wakes: Vec<Resolution>,
}

/// [`Select::wait_timeout`]: no arm completed in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SelectTimeoutError;

/// [`Select::try_select`]: no arm could complete without waiting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrySelectError;

/// How one run of a select ended.
enum Ran<R> {
    /// An arm was chosen; its handler's result.
    Chosen(R),
    /// Nothing was ready at the deadline (or at once, for `try_select`).
    NotReady,
    /// No arm took part: nothing could ever be ready.
    NoArms,
}

impl<'a, R> Select<'a, R> {
    /// A select with no arms.
    ///
    /// ```
    /// let select = spindle::sync::Select::<()>::new();
    /// assert!(select.is_empty());
    /// ```
    pub fn new() -> Select<'a, R> {
        Select {
            arms: Vec::new(),
            scratch: Scratch {
                order: Vec::new(),
                locks: Vec::new(),
                wakes: Vec::new(),
            },
        }
    }

    fn with(mut self, arm: impl Arm<'a, R> + 'a) -> Select<'a, R> {
        assert!(
            u32::try_from(self.arms.len()).is_ok_and(|count| count < u32::MAX >> 2),
            "a select of over a billion arms"
        );
        self.arms.push(Box::new(arm));
        self
    }

    /// Adds an arm that receives from `receiver`; if chosen, `handler` gets
    /// the message, or `Err(RecvError)` if every sender is gone (and then
    /// the arm is ready in every later wait).
    ///
    /// ```
    /// use spindle::sync::{mpsc, Select};
    ///
    /// let (tx, rx) = mpsc::channel();
    /// tx.send("ping").unwrap();
    /// assert_eq!(Select::new().recv(&rx, |m| m.unwrap()).wait(), "ping");
    /// ```
    pub fn recv<T: 'a>(
        self,
        receiver: &'a Receiver<T>,
        handler: impl FnMut(Result<T, RecvError>) -> R + 'a,
    ) -> Select<'a, R> {
        self.with(RecvArm::new(receiver.channel(), handler))
    }

    /// Adds an arm that sends `value` on `sender` (a
    /// [`SyncSender`](super::mpsc::SyncSender), or an unbounded
    /// [`Sender`](super::mpsc::Sender), whose sends are always ready); if
    /// chosen, `handler` gets `Ok(())`, or the value back in
    /// `Err(SendError)` if every receiver is gone. The arm sends this one
    /// value: once it has gone, a reused select leaves the arm out. If the
    /// select is dropped before the arm is chosen, `value` is dropped.
    ///
    /// ```
    /// use spindle::sync::{mpsc, Select};
    ///
    /// let (tx, rx) = mpsc::channel(); // unbounded: the send is ready
    /// Select::new().send(&tx, 5, |sent| sent.unwrap()).wait();
    /// assert_eq!(rx.recv(), Ok(5));
    /// ```
    pub fn send<T: 'a>(
        self,
        sender: &'a impl SendEnd<T>,
        value: T,
        handler: impl FnMut(Result<(), SendError<T>>) -> R + 'a,
    ) -> Select<'a, R> {
        let mut value = Some(value);
        self.with(SendArm::new(
            sender.end_channel(),
            move || value.take(),
            handler,
        ))
    }

    /// Adds an arm that sends on `sender` a value `make` makes: in the
    /// first wait the arm takes part in, and again in each wait after its
    /// last value went (a value not sent waits for the next wait of a
    /// reused select). The handler is as for [`Select::send`].
    ///
    /// ```
    /// use spindle::sync::{mpsc, Select};
    ///
    /// let (tx, rx) = mpsc::sync_channel(8);
    /// let mut next = 0;
    /// let mut select = Select::new().send_with(
    ///     &tx,
    ///     || {
    ///         next += 1;
    ///         next
    ///     },
    ///     |sent| sent.unwrap(),
    /// );
    /// for _ in 0..3 {
    ///     select.wait();
    /// }
    /// drop(select);
    /// assert_eq!(rx.try_iter().collect::<Vec<_>>(), [1, 2, 3]);
    /// ```
    pub fn send_with<T: 'a>(
        self,
        sender: &'a impl SendEnd<T>,
        mut make: impl FnMut() -> T + 'a,
        handler: impl FnMut(Result<(), SendError<T>>) -> R + 'a,
    ) -> Select<'a, R> {
        self.with(SendArm::new(
            sender.end_channel(),
            move || Some(make()),
            handler,
        ))
    }

    /// Adds an arm that is ready once the fiber `handle` joins has
    /// finished (returned, panicked, or was cancelled); if chosen,
    /// `handler` runs, and `handle.join()` after the select then returns
    /// at once. The handle is borrowed mutably: nobody may join it while
    /// the select waits.
    ///
    /// ```
    /// use std::time::Duration;
    /// use spindle::sync::Select;
    ///
    /// let rt = spindle::Runtime::new().unwrap();
    /// rt.block_on(|| {
    ///     let mut worker = spindle::spawn(|| 6 * 7);
    ///     let finished = Select::new()
    ///         .join(&mut worker, || true)
    ///         .timeout(Duration::from_secs(60), || false)
    ///         .wait();
    ///     assert!(finished);
    ///     assert_eq!(worker.join().unwrap(), 42);
    /// });
    /// ```
    pub fn join<T: 'static>(
        self,
        handle: &'a mut JoinHandle<T>,
        handler: impl FnMut() -> R + 'a,
    ) -> Select<'a, R> {
        self.with(JoinArm::new(handle, handler))
    }

    /// Adds an arm that is ready `timeout` after each wait begins (Go's
    /// `case <-time.After(timeout)`); if chosen, `handler` runs. A timeout
    /// too long for the clock never fires.
    ///
    /// ```
    /// use std::time::Duration;
    /// use spindle::sync::{mpsc, Select};
    ///
    /// let (_tx, rx) = mpsc::channel::<u8>();
    /// let mut select = Select::new()
    ///     .recv(&rx, |_| "message")
    ///     .timeout(Duration::from_millis(2), || "timeout");
    /// assert_eq!(select.wait(), "timeout");
    /// assert_eq!(select.wait(), "timeout"); // counted afresh each wait
    /// ```
    pub fn timeout(self, timeout: Duration, handler: impl FnMut() -> R + 'a) -> Select<'a, R> {
        self.with(TimerArm::new(When::After(timeout), handler))
    }

    /// Adds an arm that is ready at `deadline` (in every wait from then
    /// on); if chosen, `handler` runs.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use spindle::sync::{mpsc, Select};
    ///
    /// let (_tx, rx) = mpsc::channel::<u8>();
    /// let deadline = Instant::now() + Duration::from_millis(2);
    /// let got = Select::new()
    ///     .recv(&rx, |_| "message")
    ///     .deadline(deadline, || "deadline")
    ///     .wait();
    /// assert_eq!(got, "deadline");
    /// assert!(Instant::now() >= deadline);
    /// ```
    pub fn deadline(self, deadline: Instant, handler: impl FnMut() -> R + 'a) -> Select<'a, R> {
        self.with(TimerArm::new(When::At(deadline), handler))
    }

    /// The number of arms.
    ///
    /// ```
    /// let (_tx, rx) = spindle::sync::mpsc::channel::<u8>();
    /// let select = spindle::sync::Select::new().recv(&rx, |_| ());
    /// assert_eq!(select.len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        self.arms.len()
    }

    /// Whether there are no arms.
    ///
    /// ```
    /// assert!(spindle::sync::Select::<()>::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.arms.is_empty()
    }

    /// Parks the calling fiber (or blocks the thread) until an arm
    /// completes, and returns its handler's result. May be called again:
    /// each call is a new wait over the same arms.
    ///
    /// # Panics
    /// If no arm can take part (none were added, or only send arms whose
    /// values have gone): it would wait forever.
    ///
    /// ```
    /// use spindle::sync::{mpsc, Select};
    ///
    /// let (tx, rx) = mpsc::sync_channel(0);
    /// std::thread::spawn(move || tx.send(3).unwrap());
    /// assert_eq!(Select::new().recv(&rx, |m| m.unwrap()).wait(), 3);
    /// ```
    pub fn wait(&mut self) -> R {
        match self.run(None, true) {
            Ran::Chosen(result) => result,
            Ran::NotReady => unreachable!("a select without deadline waits until an arm completes"),
            Ran::NoArms => panic!(
                "Select::wait with no arm that can take part (none, or only send arms \
                 whose values have gone) would wait forever"
            ),
        }
    }

    /// Like [`Select::wait`], giving up after `timeout`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use spindle::sync::{mpsc, Select, SelectTimeoutError};
    ///
    /// let (_tx, rx) = mpsc::channel::<u8>();
    /// let got = Select::new().recv(&rx, |_| ()).wait_timeout(Duration::from_millis(1));
    /// assert_eq!(got, Err(SelectTimeoutError));
    /// ```
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<R, SelectTimeoutError> {
        match Instant::now().checked_add(timeout) {
            Some(deadline) => self.wait_deadline(deadline),
            None => match self.run(None, true) {
                Ran::Chosen(result) => Ok(result),
                _ => {
                    crate::time::sleep(timeout); // "forever"
                    Err(SelectTimeoutError)
                }
            },
        }
    }

    /// Like [`Select::wait`], giving up at `deadline`. With no arm that can
    /// take part, waits for the deadline.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use spindle::sync::{mpsc, Select};
    ///
    /// let (tx, rx) = mpsc::channel();
    /// tx.send(1).unwrap();
    /// let deadline = Instant::now() + Duration::from_secs(60);
    /// assert_eq!(Select::new().recv(&rx, |m| m.unwrap()).wait_deadline(deadline), Ok(1));
    /// ```
    pub fn wait_deadline(&mut self, deadline: Instant) -> Result<R, SelectTimeoutError> {
        match self.run(Some(deadline), true) {
            Ran::Chosen(result) => Ok(result),
            Ran::NotReady => Err(SelectTimeoutError),
            Ran::NoArms => {
                crate::time::sleep_until(deadline);
                Err(SelectTimeoutError)
            }
        }
    }

    /// Completes an arm that is ready now, if any; never waits (a select
    /// with a default case).
    ///
    /// ```
    /// use spindle::sync::{mpsc, Select, TrySelectError};
    ///
    /// let (tx, rx) = mpsc::channel();
    /// let mut select = Select::new().recv(&rx, |m| m.unwrap());
    /// assert_eq!(select.try_select(), Err(TrySelectError));
    /// tx.send(9).unwrap();
    /// assert_eq!(select.try_select(), Ok(9));
    /// ```
    pub fn try_select(&mut self) -> Result<R, TrySelectError> {
        match self.run(None, false) {
            Ran::Chosen(result) => Ok(result),
            Ran::NotReady | Ran::NoArms => Err(TrySelectError),
        }
    }

    /// Steps 1 to 5 of the module docs.
    fn run(&mut self, deadline: Option<Instant>, block: bool) -> Ran<R> {
        let Select { arms, scratch } = self;
        // 1. Prepare.
        let mut start = Start::new();
        scratch.order.clear();
        for (index, arm) in (0..).zip(arms.iter_mut()) {
            if arm.prepare(&mut start) {
                scratch.order.push(index);
            }
        }
        if scratch.order.is_empty() {
            return Ran::NoArms;
        }
        shuffle(&mut scratch.order);
        scratch.collect_locks(arms);
        let block = block && deadline.is_none_or(|deadline| Instant::now() < deadline);
        let node = block.then(|| Node::for_current(None));
        // 2. Poll, with every channel locked.
        scratch.lock_all();
        let chosen = scratch.order.iter().copied().find(|&index| {
            // SAFETY: we hold every arm's lock.
            unsafe { arms[index as usize].try_complete(&mut scratch.wakes) }
        });
        let node = match (chosen, node) {
            (None, Some(node)) => node,
            (chosen, node) => {
                // SAFETY: we took these locks above; no reference into the
                // channels' states outlives the arms' calls.
                unsafe { scratch.unlock_all() };
                scratch.wakes.drain(..).for_each(Resolution::wake);
                if let Some(node) = node {
                    WaitList::recycle(node);
                }
                return match chosen {
                    Some(index) => Ran::Chosen(arms[index as usize].finish()),
                    None => Ran::NotReady,
                };
            }
        };
        debug_assert!(
            scratch.wakes.is_empty(),
            "nothing completed, yet parties to wake"
        );
        // 3. Register: the channel arms under the same locks, then the
        // signal arms, unlocked (a readiness arm takes its socket's lock).
        for &index in &scratch.order {
            let arm = &arms[index as usize];
            if arm.lock().is_some() {
                // SAFETY: we hold the arm's lock, and it would wait (it was
                // polled under the same locks); `Registered` keeps the arms
                // in place and touches them only through `&` until every
                // one is deregistered.
                unsafe { arm.register(&node, index) };
            }
        }
        // SAFETY: as above.
        unsafe { scratch.unlock_all() };
        let registered = Registered::new(arms, &scratch.order, node);
        // 4. Park, and 5. deregister, and finish the arm chosen.
        let ending = registered.park(deadline);
        match registered.deregister(ending) {
            Some(index) => Ran::Chosen(arms[index as usize].finish()),
            None => Ran::NotReady,
        }
    }
}

impl<'a> Scratch<'a> {
    /// The locks of the arms in `order`, each once, in address order.
    fn collect_locks<R>(&mut self, arms: &[Box<dyn Arm<'a, R> + 'a>]) {
        self.locks.clear();
        self.locks.extend(
            self.order
                .iter()
                .filter_map(|&index| arms[index as usize].lock()),
        );
        self.locks
            .sort_unstable_by_key(|lock| std::ptr::from_ref(*lock) as usize);
        self.locks.dedup_by(|a, b| std::ptr::eq(*a, *b));
    }

    fn lock_all(&self) {
        for lock in &self.locks {
            lock.lock();
        }
    }

    /// # Safety
    /// The caller took every lock with `lock_all`, and no reference into
    /// the states they guard outlives this call.
    unsafe fn unlock_all(&self) {
        for lock in self.locks.iter().rev() {
            // SAFETY: the caller's promise.
            unsafe { lock.unlock() };
        }
    }
}

impl<R> Default for Select<'_, R> {
    fn default() -> Self {
        Select::new()
    }
}

impl<R> fmt::Debug for Select<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Select")
            .field("arms", &self.arms.len())
            .finish()
    }
}

impl fmt::Display for SelectTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("timed out waiting on select")
    }
}

impl fmt::Display for TrySelectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no operation of the select was ready")
    }
}

impl Error for SelectTimeoutError {}
impl Error for TrySelectError {}

/// Puts `order` in a random order (Fisher-Yates), the order in which a
/// select polls its arms.
fn shuffle(order: &mut [u32]) {
    for last in (1..order.len()).rev() {
        order.swap(last, random_below(last + 1));
    }
}

/// A pseudo-random number below `bound` (> 0), for the select's poll
/// order: xorshift64* on a per-thread seed. Not inlined: a fiber may change
/// threads between calls, and an inlined thread-local access could reuse
/// another call's thread-local address (see `fiber::current_ptr`).
#[inline(never)]
fn random_below(bound: usize) -> usize {
    thread_local! {
        static SEED: Cell<u64> = const { Cell::new(0) };
    }
    SEED.with(|seed| {
        let mut x = seed.get();
        if x == 0 {
            // First use on this thread: seed from the cell's address, which
            // differs between threads, mixed (splitmix64's finaliser).
            x = std::ptr::from_ref(seed) as usize as u64;
            x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            x = (x ^ (x >> 31)) | 1;
        }
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        seed.set(x);
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as usize % bound
    })
}
