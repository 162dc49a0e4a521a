//! What the supervisor does when a shard ends: restart policies (Erlang's
//! permanent / transient / temporary), the restart intensity limit, and
//! exponential backoff with jitter; plus [`Config`], every knob with its
//! default and where the default came from.
//!
//! The decisions are pure functions of the exit and the clock
//! ([`Restart::wants_restart`], [`Intensity::admit`], [`Backoff::delay`]),
//! tested here without processes; `supervisor.rs` applies them.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::time::{Duration, Instant};

use super::Exit;

/// Default largest frame payload.
///
/// A guess awaiting measurement, sized from two facts: the bound exists so
/// a lying length prefix cannot make the supervisor allocate more than this
/// (it allocates the announced size before reading), and common RPC systems
/// cap messages in the same range (gRPC's default receive limit is 4 MiB).
/// Larger bulk data belongs in a file or shared memory, not in frames.
pub const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024;

/// When a shard that ended is started again (Erlang/OTP's restart types).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restart {
    /// Always restarted, whatever the exit (a server that should run forever).
    Permanent,
    /// Restarted only after an abnormal exit: a signal, or an exit code other
    /// than 0 (a job that may finish, but must not crash).
    Transient,
    /// Never restarted (a one-off job).
    Temporary,
}

impl Restart {
    /// Whether an incarnation that ended with `exit` is to be replaced.
    ///
    /// ```
    /// use spindle::shard::{Exit, Restart};
    /// let clean = Exit::Code(0);
    /// let crashed = Exit::Signal { signal: 11, core_dumped: false };
    /// assert!(Restart::Permanent.wants_restart(&clean));
    /// assert!(!Restart::Transient.wants_restart(&clean));
    /// assert!(Restart::Transient.wants_restart(&crashed));
    /// assert!(!Restart::Temporary.wants_restart(&crashed));
    /// ```
    pub fn wants_restart(self, exit: &Exit) -> bool {
        match self {
            Restart::Permanent => true,
            Restart::Transient => !exit.is_normal(),
            Restart::Temporary => false,
        }
    }
}

/// At most `max_restarts` restarts within any `period`; one more and the
/// supervisor gives up (shuts every shard down and reports
/// [`SupervisorError::IntensityExceeded`](super::SupervisorError)).
/// Erlang's `intensity` and `period`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Intensity {
    /// Restarts allowed within `period`.
    pub max_restarts: u32,
    /// The sliding window.
    pub period: Duration,
}

impl Default for Intensity {
    /// 5 restarts in 10 s: a guess, five times OTP's default of 1 in 5 s
    /// (OTP restarts with no delay; our backoff already slows a crash loop,
    /// so the limit can afford to be looser).
    fn default() -> Intensity {
        Intensity {
            max_restarts: 5,
            period: Duration::from_secs(10),
        }
    }
}

/// The recent restarts the intensity limit counts. Owned by the supervisor
/// thread.
#[derive(Debug, Default)]
pub(crate) struct RestartHistory {
    times: VecDeque<Instant>,
}

impl Intensity {
    /// Records a restart at `now`; `false` when it is one too many.
    pub(crate) fn admit(&self, history: &mut RestartHistory, now: Instant) -> bool {
        while let Some(&oldest) = history.times.front() {
            if now.duration_since(oldest) >= self.period {
                history.times.pop_front();
            } else {
                break;
            }
        }
        history.times.push_back(now);
        history.times.len() <= self.max_restarts as usize
    }
}

/// Delay before restart number `attempt` (1 for the first since the shard
/// last ran stably): `initial * 2^(attempt-1)`, capped at `max`, then up to
/// `jitter` of it taken off at random so shards that crashed together do not
/// restart in lockstep.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    /// Delay before the first restart.
    pub initial: Duration,
    /// Largest delay.
    pub max: Duration,
    /// Fraction (0.0..=1.0) of the delay that may be taken off at random.
    pub jitter: f64,
    /// An incarnation that ran at least this long resets the attempt count,
    /// so an occasional crash is always retried after `initial`.
    pub reset_after: Duration,
}

impl Default for Backoff {
    /// 10 ms doubling to 1 s, 25 % jitter, reset after 1 s of running.
    /// Guesses: 10 ms is above the few milliseconds a re-exec takes, so a
    /// crash loop costs at most about one restart per 10 ms even before
    /// doubling, and short enough that a one-off crash is back in service
    /// at once; 1 s caps how long a shard stays down once its cause is
    /// fixed.
    fn default() -> Backoff {
        Backoff {
            initial: Duration::from_millis(10),
            max: Duration::from_secs(1),
            jitter: 0.25,
            reset_after: Duration::from_secs(1),
        }
    }
}

impl Backoff {
    /// The delay before restart `attempt` (1-based); `random` is any 64-bit
    /// random number (it picks the jitter).
    pub(crate) fn delay(&self, attempt: u32, random: u64) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        let full = self
            .initial
            .checked_mul(1u32 << doublings)
            .unwrap_or(self.max)
            .min(self.max);
        let jitter = self.jitter.clamp(0.0, 1.0);
        let fraction = (random >> 11) as f64 / (1u64 << 53) as f64; // in [0, 1)
        full.mul_f64(1.0 - jitter * fraction)
    }
}

/// A shard's sign of life (see [`Config::heartbeat`]).
///
/// The beat comes from a fiber of the shard's own runtime, so it stops when
/// the runtime stops scheduling: every worker stuck in a loop that never
/// parks, or in a raw blocking call, or the process stopped (`SIGSTOP`). One
/// stuck fiber among workers that still schedule is not a hung shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    /// How often a shard beats.
    pub interval: Duration,
    /// Silence after which the shard is declared hung.
    pub timeout: Duration,
}

impl Default for Heartbeat {
    /// A beat a second, hung after 10 s of silence. Guesses: a beat costs
    /// one header-only frame a second per shard, nothing measurable; ten
    /// missed beats keep a loaded machine (a small one running compilers)
    /// from declaring a merely slow shard hung.
    fn default() -> Heartbeat {
        Heartbeat {
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
        }
    }
}

/// How to run the shards: how many, how to start them, how to supervise.
///
/// ```
/// use std::time::Duration;
/// use spindle::shard::{Config, Restart};
/// let config = Config::new(4)
///     .restart(Restart::Transient)
///     .restart_shard(0, Restart::Permanent)
///     .intensity(10, Duration::from_secs(5))
///     .backoff(Duration::from_millis(5), Duration::from_millis(500))
///     .max_frame(1 << 20);
/// assert_eq!(config.shards(), 4);
/// ```
///
/// Every field is set by the builder methods below and read-only once
/// [`start`](super::start) has it: the supervisor's threads share it through
/// `Links`, and a shard reads `workers` only (the rest reaches shards through
/// their environment, so both sides agree on the supervisor's values).
#[derive(Clone, Debug)]
pub struct Config {
    /// Number of shards; ids are `0..shards`.
    pub(crate) shards: usize,
    /// Policy of shards without an override.
    pub(crate) restart: Restart,
    /// Per-shard policies; the last one given for a shard wins.
    pub(crate) restart_overrides: Vec<(usize, Restart)>,
    /// The restart intensity limit.
    pub(crate) intensity: Intensity,
    /// Delays between restarts.
    pub(crate) backoff: Backoff,
    /// Largest frame payload, both directions.
    pub(crate) max_frame: usize,
    /// `SIGTERM` to `SIGKILL` at shutdown.
    pub(crate) shutdown_grace: Duration,
    /// Longest a write to one shard's socket may block.
    pub(crate) write_timeout: Duration,
    /// Heartbeat interval and timeout, or none.
    pub(crate) heartbeat: Option<Heartbeat>,
    /// Shard command line; `None`: the supervisor's own arguments.
    pub(crate) args: Option<Vec<OsString>>,
    /// Extra environment for shards.
    pub(crate) env: Vec<(OsString, OsString)>,
    /// Worker threads per shard runtime; `None`: the Builder default.
    pub(crate) workers: Option<usize>,
    /// Shards' stdout and stderr to /dev/null.
    pub(crate) quiet: bool,
}

impl Config {
    /// `shards` shards (ids `0..shards`), all [`Restart::Permanent`], with the
    /// defaults of [`Intensity`], [`Backoff`] and [`DEFAULT_MAX_FRAME`], a
    /// 5 s shutdown grace, a 10 s write timeout and the default
    /// [`Heartbeat`].
    ///
    /// # Panics
    /// If `shards` is 0 or does not fit in a `u32` minus one.
    pub fn new(shards: usize) -> Config {
        assert!(
            shards > 0 && shards < u32::MAX as usize,
            "a supervisor runs between 1 and u32::MAX - 1 shards"
        );
        Config {
            shards,
            restart: Restart::Permanent,
            restart_overrides: Vec::new(),
            intensity: Intensity::default(),
            backoff: Backoff::default(),
            max_frame: DEFAULT_MAX_FRAME,
            // A guess: long enough for a shard to flush and close files after
            // SIGTERM, short enough that Ctrl-C feels prompt (systemd's
            // default stop timeout is 90 s; ours is interactive).
            shutdown_grace: Duration::from_secs(5),
            // A guess: a shard that has not drained its socket for 10 s is
            // hung; the supervisor kills it rather than stall the sender.
            write_timeout: Duration::from_secs(10),
            heartbeat: Some(Heartbeat::default()),
            args: None,
            env: Vec::new(),
            workers: None,
            quiet: false,
        }
    }

    /// How many shards.
    pub fn shards(&self) -> usize {
        self.shards
    }

    /// The restart policy of every shard without an override.
    pub fn restart(mut self, policy: Restart) -> Config {
        self.restart = policy;
        self
    }

    /// The restart policy of one shard.
    pub fn restart_shard(mut self, shard: usize, policy: Restart) -> Config {
        self.restart_overrides.push((shard, policy));
        self
    }

    /// The policy that applies to `shard`.
    pub fn restart_of(&self, shard: usize) -> Restart {
        self.restart_overrides
            .iter()
            .rev()
            .find(|(id, _)| *id == shard)
            .map_or(self.restart, |&(_, policy)| policy)
    }

    /// The intensity limit: at most `max_restarts` in `period`.
    pub fn intensity(mut self, max_restarts: u32, period: Duration) -> Config {
        self.intensity = Intensity {
            max_restarts,
            period,
        };
        self
    }

    /// Exponential backoff from `initial` to `max` (other [`Backoff`] fields
    /// keep their defaults; see [`Config::backoff_with`]).
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Config {
        self.backoff.initial = initial;
        self.backoff.max = max;
        self
    }

    /// Every backoff setting.
    pub fn backoff_with(mut self, backoff: Backoff) -> Config {
        self.backoff = backoff;
        self
    }

    /// Largest frame payload in bytes, both ways.
    ///
    /// # Panics
    /// If it does not fit the 32-bit length field.
    pub fn max_frame(mut self, bytes: usize) -> Config {
        assert!(bytes <= u32::MAX as usize - super::frame::ENVELOPE);
        self.max_frame = bytes;
        self
    }

    /// How long shutdown waits after `SIGTERM` before `SIGKILL`.
    pub fn shutdown_grace(mut self, grace: Duration) -> Config {
        self.shutdown_grace = grace;
        self
    }

    /// How long a write to a shard's socket may block before the shard is
    /// declared hung and killed.
    pub fn write_timeout(mut self, timeout: Duration) -> Config {
        self.write_timeout = timeout;
        self
    }

    /// Heartbeats: each shard's runtime sends one every `interval`; a shard
    /// from which nothing (no heartbeat, no message) has arrived for
    /// `timeout` is declared hung, killed and restarted by its policy
    /// ([`Event::Hung`](super::Event::Hung)). `None` turns them off.
    pub fn heartbeat(mut self, heartbeat: Option<Heartbeat>) -> Config {
        self.heartbeat = heartbeat;
        self
    }

    /// Command-line arguments for shard processes (default: this process's
    /// own arguments). A test binary passes its test's name here so the
    /// re-executed harness runs only that test (see `tests/shard.rs`).
    pub fn args<I, S>(mut self, args: I) -> Config
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args = Some(args.into_iter().map(Into::into).collect());
        self
    }

    /// An extra environment variable for shard processes.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Config {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Worker threads of each shard's runtime (default: the
    /// [`Builder`](crate::Builder) default, one per core).
    pub fn workers(mut self, count: usize) -> Config {
        self.workers = Some(count);
        self
    }

    /// Send the shards' stdout and stderr to `/dev/null` (tests that crash
    /// shards on purpose use it to keep the output readable).
    pub fn quiet(mut self, quiet: bool) -> Config {
        self.quiet = quiet;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults' docs (on the `Default` impls and `Config::new`) state
    /// them in words for users; these are the words, so that a change of a
    /// default fails here until its doc says the new value too.
    #[test]
    fn the_documented_defaults_are_the_defaults() {
        let intensity = Intensity::default();
        assert_eq!(intensity.max_restarts, 5);
        assert_eq!(intensity.period, Duration::from_secs(10));
        let backoff = Backoff::default();
        assert_eq!(backoff.initial, Duration::from_millis(10));
        assert_eq!(backoff.max, Duration::from_secs(1));
        assert_eq!(backoff.jitter, 0.25);
        assert_eq!(backoff.reset_after, Duration::from_secs(1));
        let heartbeat = Heartbeat::default();
        assert_eq!(heartbeat.interval, Duration::from_secs(1));
        assert_eq!(heartbeat.timeout, Duration::from_secs(10));
        let config = Config::new(1);
        assert_eq!(config.shutdown_grace, Duration::from_secs(5));
        assert_eq!(config.write_timeout, Duration::from_secs(10));
    }

    #[test]
    fn backoff_doubles_caps_and_jitters_down_only() {
        let backoff = Backoff {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(100),
            jitter: 0.5,
            reset_after: Duration::from_secs(1),
        };
        assert_eq!(backoff.delay(1, 0), Duration::from_millis(10));
        assert_eq!(backoff.delay(2, 0), Duration::from_millis(20));
        assert_eq!(backoff.delay(4, 0), Duration::from_millis(80));
        assert_eq!(backoff.delay(5, 0), Duration::from_millis(100));
        assert_eq!(backoff.delay(u32::MAX, 0), Duration::from_millis(100));
        let jittered = backoff.delay(5, u64::MAX);
        assert!(jittered >= Duration::from_millis(50) && jittered < Duration::from_millis(51));
    }

    #[test]
    fn intensity_is_a_sliding_window() {
        let limit = Intensity {
            max_restarts: 2,
            period: Duration::from_secs(10),
        };
        let mut history = RestartHistory::default();
        let start = Instant::now();
        assert!(limit.admit(&mut history, start));
        assert!(limit.admit(&mut history, start + Duration::from_secs(1)));
        assert!(!limit.admit(&mut history, start + Duration::from_secs(2)));
        // The first two have left the window by t = 12 s.
        let mut fresh = RestartHistory::default();
        assert!(limit.admit(&mut fresh, start));
        assert!(limit.admit(&mut fresh, start + Duration::from_secs(1)));
        assert!(limit.admit(&mut fresh, start + Duration::from_secs(11)));
    }
}
