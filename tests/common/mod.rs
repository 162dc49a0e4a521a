//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::time::Duration;

/// Runs `f` on a thread and fails the test if it has not finished within
/// `limit`. Not a speed check: the limits are minutes, there to turn a lost
/// wake-up (a hang) into a failure instead of a stuck CI run.
pub fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(value) => {
            worker.join().unwrap();
            value
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            // The closure panicked: surface its panic.
            std::panic::resume_unwind(worker.join().unwrap_err())
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("did not finish within {limit:?}: a lost wake-up or a deadlock")
        }
    }
}

/// The process's resident set size now, in bytes (VmRSS).
pub fn rss_bytes() -> usize {
    status_field("VmRSS:")
}

/// A `/proc/self/status` field given in kB, in bytes.
pub fn status_field(name: &str) -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(name)).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<usize>()
        .unwrap()
        * 1024
}

/// Re-runs the current test binary with only `test_name`, with `env` set,
/// and returns its output (for tests that must crash a process).
pub fn run_child(test_name: &str, env: &[(&str, &str)]) -> std::process::Output {
    let mut command = std::process::Command::new(std::env::current_exe().unwrap());
    command.args([test_name, "--exact", "--nocapture", "--test-threads=1"]);
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().unwrap()
}

/// A fiber that counts a beat every 2 ms until stopped. On a runtime with
/// one worker and no spare workers ([`one_worker_no_spares`]), beats that
/// go on while another fiber waits prove that the wait left the worker
/// free: a wait that held it would stop them.
pub struct Heartbeat {
    beats: std::sync::Arc<std::sync::atomic::AtomicU64>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    fiber: spindle::JoinHandle<()>,
}

impl Heartbeat {
    /// Starts the beating fiber; call it from a fiber of the runtime.
    pub fn start() -> Heartbeat {
        use std::sync::atomic::Ordering;
        let beats = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let fiber = {
            let (beats, stop) = (beats.clone(), stop.clone());
            spindle::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    spindle::time::sleep(Duration::from_millis(2));
                    beats.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        Heartbeat { beats, stop, fiber }
    }

    /// The beats so far.
    pub fn beats(&self) -> u64 {
        self.beats.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stops the fiber and waits for it.
    pub fn stop(self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.fiber.join().unwrap();
    }
}

/// A runtime with one worker and no spare workers: a fiber that held the
/// worker in a system call would stop every other fiber.
pub fn one_worker_no_spares() -> spindle::Runtime {
    spindle::Builder::new()
        .workers(1)
        .max_spare_workers(0)
        .build()
        .unwrap()
}

/// A raw blocking call, with no help from the runtime: the `nanosleep`
/// system call itself, which not even the `interpose` feature's hooks on
/// the C library's sleeps see.
pub fn raw_sleep(duration: Duration) {
    let request = libc::timespec {
        tv_sec: duration.as_secs() as libc::time_t,
        tv_nsec: duration.subsec_nanos() as libc::c_long,
    };
    // SAFETY: nanosleep reads one timespec, which lives across the call,
    // and is asked for no remainder.
    unsafe {
        libc::syscall(
            libc::SYS_nanosleep,
            &request as *const libc::timespec,
            std::ptr::null_mut::<libc::timespec>(),
        )
    };
}

/// Counts its drops in a shared counter: a destructor that ran exactly
/// once (or not at all) shows in the count.
pub struct Witness(pub std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Witness {
    fn drop(&mut self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A drop counter for [`Witness`]es, at zero.
pub fn counter() -> std::sync::Arc<std::sync::atomic::AtomicUsize> {
    std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0))
}

/// Waits, from a fiber, until `handle`'s fiber is parked (its `Debug`
/// says so).
pub fn wait_parked<T: 'static>(handle: &spindle::JoinHandle<T>) {
    while !format!("{:?}", handle.fiber()).contains("\"parked\"") {
        spindle::time::sleep(Duration::from_micros(200));
    }
}
