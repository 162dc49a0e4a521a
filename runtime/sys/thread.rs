//! Per-thread CPU clocks and run states: how the monitor tells a worker
//! blocked in the kernel from one computing in a fiber.
//!
//! Both look the same from the scheduler's side (the worker's tick counter
//! stands still). The kernel knows the difference, in two ways:
//! - a blocked thread's CPU time does not advance. `pthread_getcpuclockid`
//!   gives a clock that any thread of the process can read with
//!   `clock_gettime` (one system call), so the monitor reads it at every
//!   pass. But the CPU time of a thread that is runnable and waiting for a
//!   core (a loaded machine) does not advance either: the spinning fibers
//!   of `tests/metrics.rs` would be taken for blocked ones on a machine
//!   whose cores other programs keep busy.
//! - so before it acts, the monitor confirms with the thread's state
//!   letter in `/proc/self/task/<tid>/stat` (`S`: blocked in a system
//!   call; `D`: waiting in the kernel uninterruptibly; `R`: running or
//!   runnable), read through a file kept open per worker (one `pread`,
//!   dearer than the clock, so only for a worker about to be handed off).

use std::time::Duration;

use nix::time::ClockId;

/// Asks the kernel to wake the calling thread's timed waits as precisely as
/// it can (`PR_SET_TIMERSLACK` to 1 ns). The kernel's default slack is
/// added to every timed sleep and is longer than the monitor's shortest
/// sleeps during a hand-off episode (`MIN_INTERVAL` in
/// `scheduler/monitor.rs`). Best effort: failure leaves the default.
pub(crate) fn set_minimal_timer_slack() {
    let _ = nix::sys::prctl::set_timerslack(1);
}

/// The calling thread's kernel thread id.
pub(crate) fn current_tid() -> i32 {
    nix::unistd::gettid().as_raw()
}

/// A thread's `/proc` stat file, kept open to read its state repeatedly.
pub(crate) struct StatFile {
    tid: i32,
    file: std::fs::File,
}

impl StatFile {
    /// Opens thread `tid`'s stat file (of this process).
    pub(crate) fn open(tid: i32) -> Option<StatFile> {
        let file = std::fs::File::open(format!("/proc/self/task/{tid}/stat")).ok()?;
        Some(StatFile { tid, file })
    }

    /// The thread id this file belongs to.
    pub(crate) fn tid(&self) -> i32 {
        self.tid
    }

    /// The thread's state letter now (`R` running or runnable, `S`
    /// sleeping interruptibly — a futex, a timer, a socket or pipe —, `D`
    /// waiting uninterruptibly — disk, memory-map locks —, ...); `None` if
    /// unreadable.
    pub(crate) fn state(&self) -> Option<u8> {
        use std::os::unix::fs::FileExt;
        let mut buffer = [0u8; 512];
        let length = self.file.read_at(&mut buffer, 0).ok()?;
        let text = &buffer[..length];
        // "tid (comm) S ...": the comm may hold spaces or parentheses, so
        // the state is the first letter after the last ')'.
        let close = text.iter().rposition(|&b| b == b')')?;
        text.get(close + 2).copied()
    }
}

/// The calling thread's CPU-time clock id, if the system provides one.
/// A raw `libc` call: nix has the per-process CPU clock
/// (`ClockId::pid_cpu_clock_id`) but not the per-thread one.
pub(crate) fn current_cpu_clock() -> Option<libc::clockid_t> {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: pthread_self is always valid for the calling thread, and
    // `clock` is a valid place for the result.
    let result = unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut clock) };
    (result == 0).then_some(clock)
}

/// CPU time consumed so far by the thread whose clock is `clock`; `None`
/// if the clock is invalid (the thread has exited).
pub(crate) fn cpu_time(clock: libc::clockid_t) -> Option<Duration> {
    nix::time::clock_gettime(ClockId::from_raw(clock))
        .ok()
        .map(Duration::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sleeping_thread_uses_no_cpu_and_a_spinning_one_does() {
        let (sender, receiver) = std::sync::mpsc::channel();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        let sleeper = std::thread::spawn(move || {
            sender.send(current_cpu_clock().unwrap()).unwrap();
            while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        let clock = receiver.recv().unwrap();
        let before = cpu_time(clock).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let slept = cpu_time(clock).unwrap() - before;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        sleeper.join().unwrap();
        // 50 wake-ups of a few µs each: far below the 50 ms that passed.
        assert!(slept < Duration::from_millis(25), "sleeper used {slept:?}");

        let own = current_cpu_clock().unwrap();
        let start = cpu_time(own).unwrap();
        let spin_until = std::time::Instant::now() + Duration::from_millis(20);
        while std::time::Instant::now() < spin_until {}
        assert!(cpu_time(own).unwrap() - start > Duration::from_millis(1));
    }

    #[test]
    fn the_state_letter_tells_sleeping_from_running() {
        let (sender, receiver) = std::sync::mpsc::channel();
        let sleeper = std::thread::spawn(move || {
            sender.send(current_tid()).unwrap();
            std::thread::sleep(Duration::from_millis(300));
        });
        let tid = receiver.recv().unwrap();
        let stat = StatFile::open(tid).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(stat.state(), Some(b'S'));
        sleeper.join().unwrap();
        let own = StatFile::open(current_tid()).unwrap();
        assert_eq!(own.state(), Some(b'R'), "reading our own state, we run");
    }
}
