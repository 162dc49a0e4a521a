//! Process-per-shard mode: crash-isolated shard processes under a
//! supervisor, with message passing.
//!
//! Fibers share one address space, so one wild pointer or stack overflow
//! ends them all. A **shard** is a process with its own spindle runtime: a
//! crash stays inside it, and a **supervisor** in the parent process
//! restarts it, as Erlang/OTP does (plus the backoff OTP lacks). Use fibers
//! for cheap concurrency inside a shard, shards for hard fault boundaries.
//!
//! # The one call
//! A program calls [`start`] first thing in `main`, with its [`Config`] and
//! the shard entry function. In the supervisor process it starts the shards
//! and returns a [`Supervisor`]; in a shard process (the same program,
//! re-executed with the shard's identity in its environment) it runs the
//! entry function on a new [`Runtime`](crate::Runtime) and exits, never
//! returning. Everything before the call runs in every process, so do not
//! put work there.
//!
//! ```
//! use spindle::shard::{self, Config, Event, Incoming, Peer};
//!
//! let config = Config::new(2).quiet(true);
//! let supervisor = shard::start(config, |me| {
//!     // Shard side: answer each request with our id appended. `recv` also
//!     // brings notices (another shard went down, a message of ours could
//!     // not be delivered), which this shard skips; it fails only once the
//!     // supervisor has closed the connection: then the shard is done.
//!     while let Ok(incoming) = me.recv() {
//!         if let Incoming::Message { from: Peer::Supervisor, mut bytes } = incoming {
//!             bytes.push(b'0' + me.id() as u8);
//!             if me.send_to_supervisor(&bytes).is_err() {
//!                 return; // the supervisor is gone
//!             }
//!         }
//!     }
//! })
//! .unwrap();
//! // Supervisor side: plain threads.
//! let mut answers = Vec::new();
//! while answers.len() < 2 {
//!     match supervisor.recv().unwrap() {
//!         Event::Started { shard, .. } => supervisor.send(shard, b"hi").unwrap(),
//!         Event::Message { bytes, .. } => answers.push(bytes),
//!         _ => {}
//!     }
//! }
//! answers.sort();
//! assert_eq!(answers, [b"hi0".to_vec(), b"hi1".to_vec()]);
//! supervisor.shutdown().unwrap();
//! ```
//!
//! # How it is built
//! - **Starting a shard** (`incarnation.rs`): the supervisor re-executes the
//!   current program (`/proc/self/exe`) with `std::process::Command`,
//!   passing the shard's identity (id, count, generation, socket descriptor,
//!   frame limit, ...) in `SPINDLE_*` variables (`child.rs` lists them). It
//!   never runs shard code in a fork of itself: the child of a threaded
//!   process inherits every lock another thread held at the fork, held
//!   forever, so only async-signal-safe calls are allowed there. Between
//!   `Command`'s fork and the exec only two such calls run: clear
//!   close-on-exec on the shard's socket and set `PR_SET_PDEATHSIG` so
//!   shards die with the supervisor.
//! - **IPC** (`frame.rs`, `transport.rs`): one Unix socketpair per shard;
//!   length-prefixed frames of at most [`Config::max_frame`] bytes
//!   ([`DEFAULT_MAX_FRAME`] unless set). Shards address each other by id
//!   ([`Shard::send`]); the supervisor routes. All shard traffic crosses the
//!   supervisor, so a shard-to-shard message costs two socket hops; direct
//!   shard-to-shard socketpairs would halve that but need every pair (N²
//!   sockets) re-wired at each restart; they are left out while the hop's
//!   cost, which `benches/shard.rs` prints as a round trip, does not demand
//!   them.
//! - **Supervision** (`supervisor.rs`, `policy.rs`): per incarnation a
//!   keeper thread (spawn, `waitpid` on that pid, report) and a reader thread
//!   (decode, route); one loop thread makes every decision. Threads, not a
//!   `poll(2)` loop: blocking reads and waits are the obvious version, and
//!   two threads per shard is cheap at the tens of shards a machine runs;
//!   with hundreds a reactor thread would be the next step. Crashes are
//!   detected by each keeper's `waitpid`, signals sent through pidfds.
//! - **Hostile input**: the supervisor decodes with total functions
//!   (`frame.rs`), checks lengths before allocating, and treats the first
//!   bad frame from a shard as that shard's fault: it is killed and the
//!   restart policy applies. Other shards never notice.
//!
//! Rejected: a shared-memory segment for bulk bytes (memfd + mmap): it
//! reintroduces exactly the shared mutable state shards exist to remove, and
//! frames up to [`DEFAULT_MAX_FRAME`] cover the examples.
//!
//! A **hung** shard is caught two ways: its runtime sends a heartbeat frame
//! every [`Heartbeat::interval`] from a fiber (so the beat stops when no
//! worker schedules any more), and the supervisor loop kills a shard it has
//! heard nothing from for [`Heartbeat::timeout`]; a shard that stops reading
//! its socket is caught by the write timeout when someone writes to it.
//!
//! # Invariants
//! - Shards share no memory with each other or the supervisor: only bytes
//!   on sockets.
//! - Every frame an incarnation wrote is routed before its successor starts;
//!   messages never come from a dead generation after a new one runs.
//! - Every child is reaped by the thread that spawned it; no zombies
//!   outlive [`Supervisor::shutdown`].

mod child;
mod frame;
mod incarnation;
mod message;
mod policy;
mod supervisor;
mod transport;

pub use child::Shard;
pub use frame::FrameError;
pub use message::{Exit, Incoming, Peer, RecvError, SendError, Undeliverable};
pub use policy::{Backoff, Config, Heartbeat, Intensity, Restart, DEFAULT_MAX_FRAME};
pub use supervisor::{Event, StopReason, Supervisor, SupervisorError};

/// Runs this process as what it is: in a shard process, runs `entry` with
/// the shard's [`Shard`] handle on a new runtime and exits (code 0 when it
/// returns, 101 when it panics), never returning; in the supervisor, starts
/// `config.shards()` shard processes and returns the [`Supervisor`].
///
/// Call it first in `main` (or first in a test function, see
/// `tests/shard.rs`): shard processes run everything before it too.
///
/// # Errors
/// If the supervisor's loop thread cannot be started.
pub fn start<F>(config: Config, entry: F) -> std::io::Result<Supervisor>
where
    F: FnOnce(Shard) + Send,
{
    child::run_if_shard(&config, entry);
    Supervisor::start(config)
}
