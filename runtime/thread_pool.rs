//! A pool of OS threads that run closures: [`Pool`]. A runtime has up to two,
//! the blocking pool (`blocking/`, threads that run closures handed over by
//! fibers) and the spare workers' pool (`scheduler/handoff.rs`, threads
//! that run the worker loop on a spare slot). The pool knows nothing of
//! fibers or the scheduler (it uses only `lock.rs`), so the scheduler,
//! which owns both pools, depends on it and not on `blocking/`.
//!
//! A job queue under one std lock, with a condvar for idle threads. A job
//! goes to an idle thread if there is one; otherwise a new thread is started
//! while fewer than `max_threads` exist; otherwise it waits in the queue for
//! the next thread to finish. If the OS refuses a new thread, the job waits
//! for an existing one, or, with none at all, runs on the caller. An idle
//! thread that gets no job for `keep_alive` exits, so after a burst the
//! pool shrinks back to nothing.
//!
//! A pool made [`Pool::with_prestart`] keeps one thread idle or starting
//! ahead of demand: a thread that takes a job while none is idle first
//! starts the next one, so the caller that submits (the monitor, starting
//! spare workers) wakes an idle thread instead of paying for a thread
//! start.
//!
//! The pool threads are not joined at shutdown: one may be inside a call
//! that never returns (a read from a terminal). After shutdown they still
//! run the jobs already queued (a fiber waits for each), then exit.

use crate::lock::{CondvarExt, MutexExt};
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// A closure for a pool thread.
pub(crate) type Job = Box<dyn FnOnce() + Send + 'static>;

/// A pool of OS threads that run jobs; see the module docs.
pub(crate) struct Pool {
    state: Mutex<PoolState>,
    /// Idle threads wait here for a job (or for shutdown).
    work: Condvar,
    max_threads: usize,
    keep_alive: Duration,
    thread_name: String,
    /// Keep one thread idle ahead of demand: a thread that takes a job
    /// while no other is idle first starts a spare one (see `prestart`).
    prestart: bool,
}

/// Under `Pool::state`.
struct PoolState {
    queue: VecDeque<Job>,
    /// Pool threads alive now.
    threads: usize,
    /// Of them, waiting for a job.
    idle: usize,
    /// The most threads alive at once so far (for tests and metrics).
    peak: usize,
    /// Threads started and not yet running their loop (counted in
    /// `threads`): each will take a queued job.
    starting: usize,
    shutdown: bool,
}

impl Pool {
    pub(crate) fn new(max_threads: usize, keep_alive: Duration, thread_name: String) -> Pool {
        Pool::with_prestart(max_threads, keep_alive, thread_name, false)
    }

    /// A pool that keeps one thread idle ahead of demand (with `prestart`),
    /// for callers that submit from a thread whose time matters more than
    /// the new thread's: the monitor starting spare workers, for which a
    /// thread start measured several times dearer than waking an idle one
    /// (figures in `docs/decisions.md`, "Blocking pool prestart").
    pub(crate) fn with_prestart(
        max_threads: usize,
        keep_alive: Duration,
        thread_name: String,
        prestart: bool,
    ) -> Pool {
        Pool {
            state: Mutex::new(PoolState {
                queue: VecDeque::new(),
                threads: 0,
                idle: 0,
                peak: 0,
                starting: 0,
                shutdown: false,
            }),
            work: Condvar::new(),
            max_threads,
            keep_alive,
            thread_name,
            prestart,
        }
    }

    /// Queues a job; starts a thread for it if none is idle and the cap
    /// allows. If the OS refuses a new thread, the job waits for an existing
    /// one, or, with none at all, is returned to run on the caller.
    pub(crate) fn submit(self: &Arc<Self>, job: Job) -> Option<Job> {
        let mut state = self.state.lock_unpoisoned();
        state.queue.push_back(job);
        if state.idle > 0 {
            drop(state);
            self.work.notify_one();
            return None;
        }
        if state.threads >= self.max_threads {
            return None; // the next thread to finish takes it
        }
        if self.prestart && state.starting >= state.queue.len() {
            // A thread on its way will take it (and start the next one):
            // the caller does not pay for a thread start.
            return None;
        }
        Pool::count_start(&mut state);
        drop(state);
        if let Some(mut state) = self.start_counted() {
            if state.threads == 0 {
                // Nobody will ever take it: give it back to run in place.
                return state.queue.pop_back();
            }
        }
        None
    }

    /// Counts a thread about to be started (the caller holds `state`): in
    /// `threads` and `starting`, and in `peak`.
    fn count_start(state: &mut PoolState) {
        state.threads += 1;
        state.starting += 1;
        state.peak = state.peak.max(state.threads);
    }

    /// Starts a pool thread that `count_start` counted. If the OS refuses,
    /// takes the count back and returns the state, still locked, so the
    /// caller can act on the corrected count; `None` if the thread started.
    fn start_counted(self: &Arc<Self>) -> Option<MutexGuard<'_, PoolState>> {
        let pool = self.clone();
        let started = std::thread::Builder::new()
            .name(self.thread_name.clone())
            .spawn(move || pool.run())
            .is_ok();
        if started {
            return None;
        }
        let mut state = self.state.lock_unpoisoned();
        state.threads -= 1;
        state.starting -= 1;
        Some(state)
    }

    /// A pool thread's body.
    fn run(self: Arc<Self>) {
        let mut state = self.state.lock_unpoisoned();
        state.starting -= 1;
        loop {
            if let Some(job) = state.queue.pop_front() {
                // Keep one thread idle or on its way, for the next job.
                let prestart = self.prestart
                    && state.idle + state.starting < 1 + state.queue.len()
                    && state.threads < self.max_threads
                    && !state.shutdown;
                if prestart {
                    Pool::count_start(&mut state);
                }
                drop(state);
                if prestart {
                    // Refused: the job still runs, on this thread.
                    drop(self.start_counted());
                }
                job();
                state = self.state.lock_unpoisoned();
                continue;
            }
            if state.shutdown {
                break;
            }
            state.idle += 1;
            let (next, timed_out) = self.work.wait_timeout_unpoisoned(state, self.keep_alive);
            state = next;
            state.idle -= 1;
            if timed_out && state.queue.is_empty() {
                break;
            }
        }
        state.threads -= 1;
    }

    /// Threads alive now, and the most alive at once so far.
    pub(crate) fn threads(&self) -> (usize, usize) {
        let state = self.state.lock_unpoisoned();
        (state.threads, state.peak)
    }

    /// Idle threads exit now; busy ones once no job is left in the queue.
    pub(crate) fn shutdown(&self) {
        self.state.lock_unpoisoned().shutdown = true;
        self.work.notify_all();
    }
}
