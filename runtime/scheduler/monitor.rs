//! The monitor: a thread that watches the workers' progress and rescues
//! fibers trapped behind a fiber that does not give its worker back (Go's
//! `sysmon`).
//!
//! # Why
//! Fibers are not preempted. A fiber that makes a raw blocking system call,
//! or computes without yielding, keeps whatever sits in its worker's next
//! slot and deque from running. Filling an empty next slot wakes nobody (a
//! futex wake per ping-pong message would cost too much, see `queue.rs`),
//! so even with another worker asleep those fibers would wait. And when
//! every worker is held so, the whole runtime stops.
//!
//! # How
//! Each pass reads every worker's tick counter (`Remote::ticks`, bumped at
//! every scheduling decision). A worker whose counter stands still is in
//! one fiber (or asleep, which `idle.rs` tells). If fibers wait that only
//! it would run (its next slot or deque), or that nobody awake will take
//! (the injector, with every worker held):
//!
//! 1. if a configured worker sleeps, wake it (the usual `notify_one`): it
//!    searches and steals the trapped fibers, next slots included;
//! 2. otherwise, once the worker has been held past its **hand-off
//!    threshold**, declare it *stuck* and start a spare worker that steals
//!    its queue (`handoff.rs`).
//!
//! Only a worker held by *fiber code* qualifies
//! (`HandoffState::is_in_fiber`; the runtime's own short locks that fiber
//! code takes, a timer queue's, are the scheduler's:
//! `HandoffState::outside_fiber`), and the threshold depends on what its
//! thread is doing, which its CPU clock and its state letter tell
//! (`sys/thread.rs`):
//! - **blocked** in a system call (state `S`, little CPU): handed off
//!   after `Builder::handoff_blocked_after` (default
//!   `DEFAULT_HANDOFF_BLOCKED`, as eager as Go is with threads in system
//!   calls);
//! - **computing** (at least half the time on a CPU): after
//!   `Builder::handoff_running_after` (default `DEFAULT_HANDOFF_RUNNING`,
//!   Go's preemption slice), so ordinary slices never cause one, and only
//!   when no other
//!   worker makes progress (one that does will steal the trapped fibers; a
//!   spare would only compete for the cores);
//! - waiting uninterruptibly in the kernel (state `D`: a disk, page
//!   faults): after the running threshold too;
//! - **runnable but not running** (the machine is loaded): never; another
//!   thread would wait for a core as well. A fiber that computed past the
//!   running threshold counts as computing even if the OS kept its thread
//!   off a core for longer than that.
//!
//! What the verdict found goes into the episode's report
//! (`HandoffReport::state`, a `HeldState`): blocked, computing,
//! uninterruptible, or preempted (computing, but off a core more than half
//! the time it held the worker), so that only a blocked call is told to use
//! `spindle::blocking`.
//!
//! It also trims free stacks that have been idle past their age (the
//! stack pool's decay, every [`DECAY_INTERVAL`]), and frees the pooled
//! fiber records idle past theirs, as Go's scavenger returns idle memory.
//!
//! The monitor also fires the due timers of workers that cannot: held and
//! stuck workers, and spare slots without a thread (timers of fibers that
//! slept while on a spare that has since retired). Their fibers go to the
//! injector.
//!
//! # How often
//! - while a worker that may be blocked in a system call (its thread ran
//!   little since the last pass, or sits in one now) is held with fibers
//!   waiting behind it, and for [`EPISODE_LINGER`] after a hand-off: every
//!   fifth of the blocked threshold (or of [`BUSY_INTERVAL`], if shorter),
//!   at least [`MIN_INTERVAL`], as Go's sysmon checks at its shortest
//!   period while there is work. A held worker whose thread runs (or waits
//!   for a core) cannot reach a threshold before the running one, so it
//!   gets no fast passes: under load, threads preempted in the middle of
//!   a slice would otherwise keep the monitor at its fastest period,
//!   competing with them for the cores (`docs/decisions.md`,
//!   "Verdict::Watching");
//! - right after a worker that made progress was seen in a system call in
//!   a fiber (`Verdict::Suspect`): after exactly the blocked threshold,
//!   spun through if it is at most [`MAX_SPIN`];
//! - while a worker is held in one fiber, running, with fibers queued
//!   behind it: every [`BUSY_INTERVAL`];
//! - otherwise the interval doubles up to [`IDLE_INTERVAL`] (from
//!   [`BUSY_INTERVAL`] while fibers are queued and every worker that holds
//!   some makes progress), so an idle runtime costs next to no CPU
//!   (`docs/decisions.md`, "IDLE_INTERVAL"), and a busy one a wake-up of
//!   the monitor per idle period, not per busy one ("BUSY_INTERVAL
//!   backoff").
//!
//! A pass never waits longer than until the earliest timer it fires for
//! others, nor (at most every [`BUSY_INTERVAL`]) than until the earliest
//! timer of a worker that was running at the pass: a fiber that blocks
//! that worker meanwhile would strand the fiber waiting for the timer for
//! as long as an idle period's wait (`docs/decisions.md`,
//! "Survey::next_owner_timer"). A worker asleep until its timer wakes
//! for it itself and costs no pass.
//!
//! It also polls the I/O reactor, without blocking, when no worker has for
//! `io::reactor::STALE_AFTER` (Go's sysmon does the same with `netpoll`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::handoff::{hand_off, HeldState};
use super::park::Parker;
use super::{Remote, Shared};
use crate::sys::thread::StatFile;

/// Check period while a worker is held in one fiber, running, with fibers
/// queued behind it: its hand-off comes within a period of its threshold.
/// Measured: each check costs ~2–5 µs of the monitor's CPU
/// (`docs/decisions.md`).
pub(super) const BUSY_INTERVAL: Duration = Duration::from_millis(1);

/// The longest period, reached by doubling while nothing is queued
/// anywhere: Go's sysmon backs off to the same (`docs/decisions.md` has
/// what an idle runtime costs).
pub(super) const IDLE_INTERVAL: Duration = Duration::from_millis(10);

/// How long after a hand-off the monitor keeps its fast period although
/// nothing is held yet: the spare it started may block in its first fiber
/// too. A guess, several chain links long (`docs/decisions.md`); a worker
/// stuck for good with a busy runtime around it costs the fast period only
/// this long.
const EPISODE_LINGER: Duration = Duration::from_millis(1);

/// How often the monitor asks the stack pool to trim stacks idle past
/// their age (`StackPool::decay`): a tenth of `DECAY_AGE`, so a stack is
/// trimmed at most a tenth later than its age says.
const DECAY_INTERVAL: Duration = Duration::from_millis(100);

/// The longest wait the monitor spins through instead of sleeping: the
/// look again after the blocked threshold at a suspected blocking call
/// (`Verdict::Suspect`). A guess bounded by two measurements: the spin's
/// cost per link of a chain of blocking calls, and how far a futex sleep
/// that short overshoots (`docs/decisions.md`).
const MAX_SPIN: Duration = Duration::from_micros(50);

/// The shortest period: below this, passes (a few reads of each worker)
/// would keep the monitor's core busy. A guess (`docs/decisions.md`).
const MIN_INTERVAL: Duration = Duration::from_micros(10);

/// The monitor thread's body.
pub(super) fn run(shared: Arc<Shared>, parker: Parker) {
    // Our waits are short during an episode; the kernel's default timer
    // slack would stretch them several times over.
    crate::sys::thread::set_minimal_timer_slack();
    let mut monitor = Monitor::new(shared, parker);
    while monitor.wait() {
        monitor.pass();
    }
}

/// The monitor's state between passes. Owned by the monitor thread.
struct Monitor {
    shared: Arc<Shared>,
    parker: Parker,
    /// What it remembers of each worker slot, by index.
    records: Vec<SlotRecord>,
    /// The period while a worker is held with fibers behind it: a fifth of
    /// the blocked threshold or of [`BUSY_INTERVAL`], whichever is
    /// shorter, and at least [`MIN_INTERVAL`].
    episode_interval: Duration,
    /// How long to wait before the next pass.
    interval: Duration,
    /// Whether that wait is spun through instead of slept (see
    /// [`MAX_SPIN`]).
    spin_wait: bool,
    /// When the monitor last handed a worker off.
    last_handoff: Option<Instant>,
    /// When it last asked the stack pool to decay.
    last_decay: Instant,
    /// The workers the current pass found past their threshold (kept
    /// between passes for its allocation).
    held: Vec<HeldWorker>,
}

/// A worker a pass found held past its threshold.
struct HeldWorker {
    index: usize,
    /// Fibers are queued on it (its next slot or deque).
    local_work: bool,
    /// What its thread is doing.
    state: HeldState,
}

/// What the monitor remembers about one worker slot between passes.
struct SlotRecord {
    /// The tick counter at the last pass.
    ticks: u64,
    /// When the monitor first saw `ticks` at its current value.
    since: Instant,
    /// The thread's CPU time at the last pass, and when it was read.
    cpu_sample: Option<(Duration, Instant)>,
    /// The thread's CPU time at `since`.
    cpu_since: Option<Duration>,
    /// The thread's `/proc` stat file, opened at its first hand-off
    /// candidacy (reopened when another thread takes the slot).
    stat: Option<StatFile>,
}

/// What one pass found a worker doing: the monitor's verdict on it.
enum Verdict {
    /// Made a scheduling decision since the last pass, or sits idle.
    Fine,
    /// Asleep on the sleepers list: free to take work.
    Asleep,
    /// In one fiber since the last pass, and past its hand-off threshold
    /// for what its thread is doing (`state`).
    Held { state: HeldState },
    /// In one fiber since the last pass, under its threshold; `blocked` if
    /// its thread ran little since the last pass (it may be blocked in a
    /// system call, and is worth a look again within the blocked
    /// threshold). A thread that runs (or waits for a core) cannot be
    /// handed off before the running threshold: ordinary passes suffice.
    Watching { blocked: bool },
    /// Made progress since the last pass but is blocked in a system call
    /// in a fiber now: worth a look after the blocked threshold.
    Suspect,
}

/// What one pass over the workers found, for the rescue and the next wait.
#[derive(Default)]
struct Survey {
    /// Fibers wait somewhere: a worker's next slot or deque, the injector
    /// or the spawn backlog.
    work_waiting: bool,
    /// Some worker is in one fiber, under its threshold, with fibers
    /// queued behind it, and may be blocked in a system call
    /// (`Verdict::Watching { blocked: true }`).
    watching: bool,
    /// Some worker is in one fiber with fibers queued behind it, running
    /// (or waiting for a core): under its threshold, or past it but left
    /// alone while others make progress.
    held_running: bool,
    /// Configured workers asleep, free to take work.
    asleep: usize,
    /// Workers that made progress since the last pass.
    progressing: usize,
    /// Some worker looks like the next link of a chain of blocking calls
    /// ([`Verdict::Suspect`]).
    suspect: bool,
    /// How long until the earliest timer the monitor fires for others.
    next_timer: Option<Duration>,
    /// How long until the earliest timer of a running worker, which fires
    /// it itself unless a fiber holds it by then.
    next_owner_timer: Option<Duration>,
}

impl Monitor {
    fn new(shared: Arc<Shared>, parker: Parker) -> Monitor {
        let start = Instant::now();
        let records = shared
            .remotes
            .iter()
            .map(|r| SlotRecord {
                ticks: r.ticks.load(Ordering::Relaxed),
                since: start,
                cpu_sample: None,
                cpu_since: None,
                stat: None,
            })
            .collect();
        let blocked_after = shared.spares.config().blocked_after;
        Monitor {
            episode_interval: (blocked_after.min(BUSY_INTERVAL) / 5).max(MIN_INTERVAL),
            shared,
            parker,
            records,
            interval: BUSY_INTERVAL,
            spin_wait: false,
            last_handoff: None,
            last_decay: start,
            held: Vec::new(),
        }
    }

    /// Waits `interval` (spinning or sleeping, as planned). Returns false
    /// once the runtime shuts down.
    fn wait(&self) -> bool {
        let shared = &self.shared;
        if shared.is_shutdown() {
            return false;
        }
        if self.spin_wait {
            // A short, exact wait (see `Verdict::Suspect` and `MAX_SPIN`): a
            // futex sleep this short overshoots it.
            let until = Instant::now() + self.interval;
            while Instant::now() < until && !shared.is_shutdown() {
                std::hint::spin_loop();
            }
        } else {
            self.parker.park(Some(self.interval));
        }
        !shared.is_shutdown()
    }

    /// One pass: the chores, a look at every worker, the rescue of
    /// fibers trapped behind held ones, and the plan for the next wait.
    fn pass(&mut self) {
        // Readiness nobody has collected for a while (every worker busy in
        // long slices): collect it (`io/reactor.rs`).
        self.shared.reactor.poll_if_stale();
        let now = Instant::now();
        self.decay_pools(now);
        let survey = self.survey(now);
        self.rescue(&survey, now);
        self.plan_next_wait(&survey, now);
    }

    /// Trims the stacks and frees the fiber records idle past their age,
    /// every [`DECAY_INTERVAL`].
    fn decay_pools(&mut self, now: Instant) {
        if now - self.last_decay >= DECAY_INTERVAL {
            // Free stacks idle past their age go back to the kernel
            // (`StackPool::decay`, `fiber/stack/pool.rs`), and so do
            // pooled records (`RecordPool::decay`, `fiber/record.rs`).
            self.shared.stacks.decay();
            self.shared.records.decay(now);
            self.last_decay = now;
        }
    }

    /// Reads every used slot: fires the timers of those that cannot, and
    /// judges each active, not-stuck worker (the held ones go to `held`).
    fn survey(&mut self, now: Instant) -> Survey {
        let shared = &*self.shared;
        let mut survey = Survey {
            work_waiting: !shared.globals_are_empty(),
            ..Survey::default()
        };
        self.held.clear();
        for (index, remote) in shared.used_remotes().iter().enumerate() {
            let active = remote.handoff.is_active();
            let stuck = remote.handoff.is_stuck();
            if !active || stuck {
                // Nobody fires this slot's timers now: we do.
                fire_timers_for(shared, remote, now, &mut survey.next_timer);
            }
            let local_work = !remote.next.is_empty() || !remote.stealer.is_empty();
            survey.work_waiting |= local_work;
            if !active || stuck {
                continue;
            }
            let work = local_work || survey.work_waiting;
            let verdict = judge(shared, index, remote, &mut self.records[index], now, work);
            if matches!(verdict, Verdict::Watching { .. } | Verdict::Held { .. }) {
                // Held in one fiber, it fires no timers: we do (under the
                // queue's lock, so racing its owner is harmless). The woken
                // fibers go to the injector, where any free worker, or a
                // spare, takes them. (A worker busy in the scheduler's own
                // code, firing its timers say, is `Fine`: we leave its
                // timers to it.)
                fire_timers_for(shared, remote, now, &mut survey.next_timer);
            }
            if matches!(verdict, Verdict::Fine | Verdict::Suspect) {
                if let Some(wait) = remote.timers.time_to_earliest(shared.epoch, now) {
                    let next = &mut survey.next_owner_timer;
                    *next = Some(next.map_or(wait, |n| n.min(wait)));
                }
            }
            match verdict {
                Verdict::Fine => survey.progressing += 1,
                Verdict::Suspect => {
                    survey.progressing += 1;
                    survey.suspect = true;
                }
                Verdict::Asleep => survey.asleep += 1,
                Verdict::Watching { blocked } => {
                    survey.watching |= local_work && blocked;
                    survey.held_running |= local_work && !blocked;
                }
                Verdict::Held { state } => {
                    survey.held_running |= local_work;
                    self.held.push(HeldWorker {
                        index,
                        local_work,
                        state,
                    });
                }
            }
        }
        survey.work_waiting |= !shared.globals_are_empty();
        survey
    }

    /// Frees the fibers trapped behind each held worker: wakes a sleeper
    /// to steal them, or hands the worker off to a spare.
    fn rescue(&mut self, survey: &Survey, now: Instant) {
        let held = std::mem::take(&mut self.held);
        let shared = &self.shared;
        let mut asleep = survey.asleep;
        for &HeldWorker {
            index,
            local_work,
            state,
        } in &held
        {
            if local_work && asleep > 0 && shared.notify_one_reported() {
                // First resort, and cheap: a sleeping worker will steal the
                // trapped fibers, next slot included.
                asleep -= 1;
                continue;
            }
            if state.is_running() && survey.progressing > 0 {
                // A spare would compete for the cores with the computing
                // fiber and the workers still making progress, which will
                // steal the trapped fibers when they run dry: a spare only
                // when nothing else moves (found by `examples/timers`, where
                // a spare beside a fiber spawning a million others slowed
                // the spawning: `docs/decisions.md`, "Monitor::rescue").
                continue;
            }
            // A held worker with an empty queue still costs parallelism
            // when fibers wait elsewhere and nobody is free to run them.
            if local_work || (survey.work_waiting && asleep == 0) {
                // Relaxed: a last look, narrowing the window in which the
                // fiber we judged gives its worker back before the mark
                // lands (its report would then name the next fiber to end
                // a slice there, and the spare would retire at once).
                let record = &self.records[index];
                if shared.remotes[index].ticks.load(Ordering::Relaxed) != record.ticks {
                    continue;
                }
                hand_off(shared, index, record.since, record.cpu_since, state);
                self.last_handoff = Some(now);
            }
        }
        self.held = held;
    }

    /// Chooses the wait before the next pass from what this one found.
    fn plan_next_wait(&mut self, survey: &Survey, now: Instant) {
        // Right after a hand-off, keep looking fast: the spare we started
        // may block in its first fiber as well (a chain of blocking calls).
        let lingering = self
            .last_handoff
            .is_some_and(|at| now - at < EPISODE_LINGER);
        self.interval = if survey.watching || (lingering && survey.work_waiting) {
            self.episode_interval
        } else if survey.held_running {
            BUSY_INTERVAL
        } else if survey.work_waiting {
            // Fibers are queued, but every worker that holds some makes
            // progress: they will run them. Back off as when idle, from
            // `BUSY_INTERVAL` (a busy runtime otherwise pays a wake-up of
            // the monitor every period: `docs/decisions.md`, "BUSY_INTERVAL
            // backoff").
            (self.interval * 2).clamp(BUSY_INTERVAL, IDLE_INTERVAL)
        } else {
            (self.interval * 2).min(IDLE_INTERVAL)
        };
        self.spin_wait = false;
        let blocked_after = self.shared.spares.config().blocked_after;
        if survey.suspect && blocked_after <= MAX_SPIN {
            self.interval = blocked_after;
            self.spin_wait = true;
        }
        if let Some(timer) = survey.next_timer {
            self.interval = self.interval.min(timer.max(MIN_INTERVAL));
        }
        if let Some(timer) = survey.next_owner_timer {
            // Be there when a running worker's timer falls due (no more
            // often than `BUSY_INTERVAL`): if a fiber holds the worker by
            // then, the fiber waiting for the timer is stranded, and an
            // idle period's wait would leave it so for that long.
            self.interval = self.interval.min(timer.max(BUSY_INTERVAL));
        }
    }
}

/// Classifies an active, not-stuck worker, updating what we remember of it.
fn judge(
    shared: &Shared,
    index: usize,
    remote: &Remote,
    record: &mut SlotRecord,
    now: Instant,
    work: bool,
) -> Verdict {
    // Relaxed: a progress hint; a stale read delays a rescue by one pass.
    let ticks = remote.ticks.load(Ordering::Relaxed);
    let cpu_now = remote.handoff.thread_cpu_time();
    let previous = std::mem::replace(&mut record.cpu_sample, cpu_now.map(|cpu| (cpu, now)));
    if ticks != record.ticks {
        record.ticks = ticks;
        record.since = now;
        record.cpu_since = cpu_now;
        // Progress since the last pass; but if it is in a fiber now and
        // sits in a system call, it may be the next link of a chain of
        // blocking calls: look again after exactly the blocked threshold
        // instead of a whole period. (Its CPU clock cannot say more yet: a
        // spare that just took its slot has no previous sample.)
        if work && remote.handoff.is_in_fiber() && state_letter(remote, record) == Some(b'S') {
            return Verdict::Suspect;
        }
        return Verdict::Fine;
    }
    if index < shared.num_workers && shared.idle.is_parked(index) {
        return Verdict::Asleep;
    }
    // Its thread has been in one fiber (or in the scheduler's own code)
    // since the last pass. Only fiber code is handed off: the scheduler's
    // own waits (a stack's `madvise` under the kernel's memory-map lock)
    // are short unless the machine is overloaded, and more threads would
    // only add to the contention (found by `tests/million.rs`).
    if !remote.handoff.is_in_fiber() {
        // The scheduler's own work (firing thousands of due timers, say):
        // it decides again soon. Neither hand it off nor help it.
        return Verdict::Fine;
    }
    if record.cpu_since.is_none() && cpu_now.is_some() {
        // Its CPU clock was not readable when the hold began (the monitor
        // started after the worker had entered this fiber): the hold's CPU
        // time is unknown, and taking the wall time for it would call a
        // blocked thread computing. Judge from here on.
        record.since = now;
        record.cpu_since = cpu_now;
        return Verdict::Watching {
            blocked: ran_little(cpu_now, previous, now),
        };
    }
    let config = shared.spares.config();
    let held_for = now - record.since;
    // Computing: past the running threshold with at least half of it on a
    // CPU. A thread that only waited for a core is not helped by another
    // thread (the machine is loaded). One that computed that long but was
    // kept off a core more than half the time it held the worker is
    // reported as preempted, not as a long computation.
    let computed = match (cpu_now, record.cpu_since) {
        (Some(cpu_now), Some(cpu_since)) => cpu_now.saturating_sub(cpu_since),
        _ => held_for, // no clock: trust the wall time
    };
    if held_for >= config.running_after && computed * 2 >= config.running_after {
        let state = if computed * 2 >= held_for {
            HeldState::Computing
        } else {
            HeldState::Preempted
        };
        return Verdict::Held { state };
    }
    // Blocked: it ran less than half of the last interval, and its state
    // letter says where it waits (see `sys/thread.rs`): `S`, a system call
    // (a sleep, a pipe, a futex), is handed off past the blocked
    // threshold; `D`, an uninterruptible wait (a disk read, page faults
    // under the memory-map lock), only past the running threshold.
    let ran_little = ran_little(cpu_now, previous, now);
    if !ran_little || held_for < config.blocked_after {
        // Not yet judged blocked. Worth fast looks if it may be: it ran
        // little, or it ran but sits in a system call now (a spare that has
        // just taken a fiber that blocks: the next link of a chain). A
        // thread that runs needs none (under load, one preempted in the
        // middle of a slice would otherwise keep the monitor at its
        // fastest period, competing for the cores).
        let blocked = ran_little || state_letter(remote, record) == Some(b'S');
        return Verdict::Watching { blocked };
    }
    let (threshold, state) = match state_letter(remote, record) {
        Some(b'S') => (config.blocked_after, HeldState::Blocked),
        Some(b'D') => (config.running_after, HeldState::Uninterruptible),
        // Runnable: preempted, or just back from its wait.
        _ => return Verdict::Watching { blocked: false },
    };
    if held_for >= threshold {
        Verdict::Held { state }
    } else {
        Verdict::Watching { blocked: false }
    }
}

/// Whether a thread ran less than half of the time since the previous
/// sample of its CPU clock.
fn ran_little(
    cpu_now: Option<Duration>,
    previous: Option<(Duration, Instant)>,
    now: Instant,
) -> bool {
    match (cpu_now, previous) {
        (Some(cpu_now), Some((cpu_then, then))) => {
            cpu_now.saturating_sub(cpu_then) * 2 < now - then
        }
        _ => false,
    }
}

/// The slot's thread's state letter now.
fn state_letter(remote: &Remote, record: &mut SlotRecord) -> Option<u8> {
    let tid = remote.handoff.tid();
    if record.stat.as_ref().is_none_or(|stat| stat.tid() != tid) {
        record.stat = StatFile::open(tid);
    }
    record.stat.as_ref().and_then(StatFile::state)
}

/// Fires the due timers of a slot whose owner cannot (stuck, or no thread),
/// and notes when its next one is due.
fn fire_timers_for(shared: &Shared, remote: &Remote, now: Instant, next: &mut Option<Duration>) {
    let timers = &remote.timers;
    if !timers.has_pending() {
        return;
    }
    if timers.is_due(shared.epoch, now) {
        timers.fire_due(shared.epoch, now);
    }
    if let Some(wait) = timers.time_to_earliest(shared.epoch, now) {
        *next = Some(next.map_or(wait, |n| n.min(wait)));
    }
}
