//! Child processes for fibers: `std::process`'s API, where waiting for a
//! child, and reading or writing its pipes, parks the fiber.
//!
//! ```
//! use spindle::process::Command;
//!
//! let rt = spindle::Runtime::new().unwrap();
//! let output = rt.block_on(|| Command::new("sh").args(["-c", "echo out; echo err >&2"]).output().unwrap());
//! assert!(output.status.success());
//! assert_eq!(output.stdout, b"out\n");
//! assert_eq!(output.stderr, b"err\n");
//! ```
//!
//! # How
//! - **Spawning** is `std::process::Command::spawn`, wrapped, not redone:
//!   std already gets the hard parts right (its close-on-exec error pipe,
//!   which reports a failed `exec` as the spawn's error; `posix_spawn`
//!   where it can; what runs between `fork` and `exec`). That call blocks
//!   until the child has `exec`ed, far longer than the hand-off monitor's
//!   blocked threshold, so from a fiber it runs on the blocking pool
//!   (`spindle::blocking`).
//! - **Waiting** uses a pidfd (`pidfd_open`, `sys/process.rs`), which
//!   becomes readable when the child exits: [`Child::wait`] runs
//!   `std::process::Child::try_wait` (`waitpid` with `WNOHANG`) in the
//!   socket loop of `io/socket.rs` on the pidfd, so the fiber parks in the
//!   reactor until the exit, and a plain thread waits in `poll(2)`.
//!   std's `Child` stays the one that reaps, so its cached status and its
//!   `kill` after the exit behave as std documents.
//! - **Pipes**: the child's stdin, stdout and stderr are [`crate::io::Fd`]s
//!   over std's pipe ends ([`ChildStdin`], [`ChildStdout`],
//!   [`ChildStderr`]). `O_NONBLOCK` goes on the parent's end only (each
//!   end of a pipe is its own open file description), so the child is not
//!   affected. To hand a pipe to another child as its stdio, take the std
//!   end back with `into_inner` (blocking again) and convert that.
//! - **`output`** reads stdout and stderr at once, stderr in a fiber of its
//!   own, so a child that fills one pipe while the parent reads the other
//!   cannot deadlock them. On a plain thread it is std's
//!   `wait_with_output`.
//!
//! # Rejected
//! `SIGCHLD` and `waitpid(-1)`: a wildcard reap steals exit statuses from
//! any other code in the program that spawns children. `waitpid` on the
//! blocking pool: one pool thread per waiting child (a server running a
//! few hundred children would hold a few hundred threads); a pidfd costs a
//! descriptor and a reactor registration.

mod child;

pub use self::child::{Child, ChildStderr, ChildStdin, ChildStdout};
pub use std::process::{ExitStatus, Output, Stdio};

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::path::Path;

/// Which standard stream, as an index into [`Command::stdio_set`].
const STDIN: usize = 0;
const STDOUT: usize = 1;
const STDERR: usize = 2;

/// A process builder; `std::process::Command` for fibers.
///
/// The same methods, taking the same arguments; [`spawn`](Command::spawn)
/// returns this module's [`Child`], whose waits and pipes park the fiber.
/// Options without a method here (`CommandExt::uid`, `pre_exec`,
/// `process_group`, ...) are set on the std command through
/// [`as_std_mut`](Command::as_std_mut).
///
/// ```
/// use spindle::process::Command;
///
/// let rt = spindle::Runtime::new().unwrap();
/// let status = rt.block_on(|| Command::new("sh").arg("-c").arg("exit 3").status().unwrap());
/// assert_eq!(status.code(), Some(3));
/// ```
pub struct Command {
    inner: std::process::Command,
    /// Whether the caller set stdin, stdout, stderr (by `STDIN`, `STDOUT`,
    /// `STDERR`): `output` gives the others its own defaults, as std's does.
    stdio_set: [bool; 3],
}

impl Command {
    /// A command to run `program`, as `std::process::Command::new`:
    /// looked up in `PATH` if it has no slash; no arguments; the parent's
    /// environment, working directory and standard streams.
    ///
    /// ```
    /// let command = spindle::process::Command::new("ls");
    /// assert_eq!(command.as_std().get_program(), "ls");
    /// ```
    pub fn new<S: AsRef<OsStr>>(program: S) -> Command {
        Command {
            inner: std::process::Command::new(program),
            stdio_set: [false; 3],
        }
    }

    /// Adds an argument.
    ///
    /// ```
    /// let mut command = spindle::process::Command::new("ls");
    /// command.arg("-l");
    /// assert_eq!(command.as_std().get_args().collect::<Vec<_>>(), ["-l"]);
    /// ```
    pub fn arg<S: AsRef<OsStr>>(&mut self, arg: S) -> &mut Command {
        self.inner.arg(arg);
        self
    }

    /// Adds arguments.
    ///
    /// ```
    /// let mut command = spindle::process::Command::new("ls");
    /// command.args(["-l", "-a"]);
    /// assert_eq!(command.as_std().get_args().count(), 2);
    /// ```
    pub fn args<I, S>(&mut self, args: I) -> &mut Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.inner.args(args);
        self
    }

    /// Sets an environment variable for the child.
    ///
    /// ```
    /// use spindle::process::Command;
    /// let rt = spindle::Runtime::new().unwrap();
    /// let output = rt.block_on(|| Command::new("sh").args(["-c", "echo $GREETING"]).env("GREETING", "hi").output().unwrap());
    /// assert_eq!(output.stdout, b"hi\n");
    /// ```
    pub fn env<K: AsRef<OsStr>, V: AsRef<OsStr>>(&mut self, key: K, value: V) -> &mut Command {
        self.inner.env(key, value);
        self
    }

    /// Sets several environment variables.
    ///
    /// ```
    /// let mut command = spindle::process::Command::new("env");
    /// command.envs([("A", "1"), ("B", "2")]);
    /// assert_eq!(command.as_std().get_envs().count(), 2);
    /// ```
    pub fn envs<I, K, V>(&mut self, vars: I) -> &mut Command
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        self.inner.envs(vars);
        self
    }

    /// Removes an environment variable from the child's environment.
    ///
    /// ```
    /// let mut command = spindle::process::Command::new("env");
    /// command.env_remove("HOME");
    /// assert_eq!(command.as_std().get_envs().next().unwrap().1, None);
    /// ```
    pub fn env_remove<K: AsRef<OsStr>>(&mut self, key: K) -> &mut Command {
        self.inner.env_remove(key);
        self
    }

    /// Clears the child's environment: it inherits none of the parent's.
    ///
    /// ```
    /// use spindle::process::Command;
    /// let rt = spindle::Runtime::new().unwrap();
    /// let output = rt.block_on(|| Command::new("/usr/bin/env").env_clear().env("ONLY", "me").output().unwrap());
    /// assert_eq!(output.stdout, b"ONLY=me\n");
    /// ```
    pub fn env_clear(&mut self) -> &mut Command {
        self.inner.env_clear();
        self
    }

    /// Sets the child's working directory.
    ///
    /// ```
    /// use spindle::process::Command;
    /// let rt = spindle::Runtime::new().unwrap();
    /// let output = rt.block_on(|| Command::new("pwd").current_dir("/").output().unwrap());
    /// assert_eq!(output.stdout, b"/\n");
    /// ```
    pub fn current_dir<P: AsRef<Path>>(&mut self, dir: P) -> &mut Command {
        self.inner.current_dir(dir);
        self
    }

    /// Sets the child's stdin: [`Stdio::piped`] gives the [`Child`] a
    /// [`ChildStdin`] to write to. The default is to inherit the parent's
    /// (for [`output`](Command::output): none, `Stdio::null`).
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// use spindle::process::{Command, Stdio};
    /// let rt = spindle::Runtime::new().unwrap();
    /// let echoed = rt.block_on(|| {
    ///     let mut cat = Command::new("cat").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    ///     cat.stdin.take().unwrap().write_all(b"meow").unwrap(); // closed when dropped
    ///     let mut echoed = String::new();
    ///     cat.stdout.take().unwrap().read_to_string(&mut echoed).unwrap();
    ///     cat.wait().unwrap();
    ///     echoed
    /// });
    /// assert_eq!(echoed, "meow");
    /// ```
    pub fn stdin<T: Into<Stdio>>(&mut self, cfg: T) -> &mut Command {
        self.inner.stdin(cfg);
        self.stdio_set[STDIN] = true;
        self
    }

    /// Sets the child's stdout: [`Stdio::piped`] gives the [`Child`] a
    /// [`ChildStdout`] to read. The default is to inherit the parent's (for
    /// [`output`](Command::output): a pipe, captured).
    ///
    /// ```
    /// use spindle::process::{Command, Stdio};
    /// let rt = spindle::Runtime::new().unwrap();
    /// let output = rt.block_on(|| Command::new("echo").arg("dropped").stdout(Stdio::null()).output().unwrap());
    /// assert!(output.stdout.is_empty());
    /// ```
    pub fn stdout<T: Into<Stdio>>(&mut self, cfg: T) -> &mut Command {
        self.inner.stdout(cfg);
        self.stdio_set[STDOUT] = true;
        self
    }

    /// Sets the child's stderr; as [`Command::stdout`].
    ///
    /// ```
    /// use spindle::process::{Command, Stdio};
    /// let rt = spindle::Runtime::new().unwrap();
    /// let output = rt.block_on(|| Command::new("sh").args(["-c", "echo e >&2"]).stderr(Stdio::null()).output().unwrap());
    /// assert!(output.stderr.is_empty());
    /// ```
    pub fn stderr<T: Into<Stdio>>(&mut self, cfg: T) -> &mut Command {
        self.inner.stderr(cfg);
        self.stdio_set[STDERR] = true;
        self
    }

    /// Starts the child and returns its [`Child`]. The parent's standard
    /// streams are inherited unless set otherwise. In a fiber, std's
    /// spawn (which waits for the child's `exec`) runs on the blocking
    /// pool.
    ///
    /// # Errors
    /// std's: the program cannot be found or run, or descriptors or
    /// processes ran out; or no pidfd could be opened for the child (then
    /// the child has been killed and reaped).
    ///
    /// ```
    /// use spindle::process::Command;
    /// let rt = spindle::Runtime::new().unwrap();
    /// rt.block_on(|| {
    ///     let mut child = Command::new("true").spawn().unwrap();
    ///     assert!(child.wait().unwrap().success());
    ///     assert!(Command::new("/no/such/program").spawn().is_err());
    /// });
    /// ```
    pub fn spawn(&mut self) -> io::Result<Child> {
        let inner = &mut self.inner;
        let child = crate::blocking(move || inner.spawn())?;
        Child::new(child)
    }

    /// Runs the child to its end and returns its exit status, its stdio
    /// inherited unless set otherwise; the fiber parks meanwhile.
    ///
    /// # Errors
    /// As [`Command::spawn`] and [`Child::wait`].
    ///
    /// ```
    /// use spindle::process::Command;
    /// let rt = spindle::Runtime::new().unwrap();
    /// assert!(rt.block_on(|| Command::new("true").status().unwrap()).success());
    /// ```
    pub fn status(&mut self) -> io::Result<ExitStatus> {
        self.spawn()?.wait()
    }

    /// Runs the child to its end and collects its stdout and stderr (each
    /// captured in a pipe unless set otherwise; stdin is `Stdio::null`
    /// unless set), as `std::process::Command::output`.
    ///
    /// # Errors
    /// As [`Command::spawn`] and [`Child::wait_with_output`].
    ///
    /// ```
    /// use spindle::process::Command;
    /// let rt = spindle::Runtime::new().unwrap();
    /// let output = rt.block_on(|| Command::new("echo").arg("hello").output().unwrap());
    /// assert_eq!(output.stdout, b"hello\n");
    /// ```
    pub fn output(&mut self) -> io::Result<Output> {
        let defaults: [fn() -> Stdio; 3] = [Stdio::null, Stdio::piped, Stdio::piped];
        self.set_unset_stdio(defaults);
        let spawned = self.spawn();
        // Back to what a later `spawn` or `status` would have had.
        self.set_unset_stdio([Stdio::inherit; 3]);
        spawned?.wait_with_output()
    }

    /// Gives each stream the caller did not set its value from `values`.
    fn set_unset_stdio(&mut self, values: [fn() -> Stdio; 3]) {
        let [stdin, stdout, stderr] = values;
        if !self.stdio_set[STDIN] {
            self.inner.stdin(stdin());
        }
        if !self.stdio_set[STDOUT] {
            self.inner.stdout(stdout());
        }
        if !self.stdio_set[STDERR] {
            self.inner.stderr(stderr());
        }
    }

    /// The std command underneath, to read its settings (`get_program`,
    /// `get_args`, `get_envs`, `get_current_dir`).
    ///
    /// ```
    /// let mut command = spindle::process::Command::new("ls");
    /// command.current_dir("/tmp");
    /// assert_eq!(command.as_std().get_current_dir(), Some(std::path::Path::new("/tmp")));
    /// ```
    pub fn as_std(&self) -> &std::process::Command {
        &self.inner
    }

    /// The std command underneath, to set what this type has no method for
    /// (`std::os::unix::process::CommandExt`). Set stdio with this type's
    /// own methods ([`Command::stdin`], [`Command::stdout`],
    /// [`Command::stderr`]), not through it: [`Command::output`] gives its
    /// defaults to, and afterwards resets, every stream those did not set.
    ///
    /// ```
    /// use std::os::unix::process::CommandExt;
    /// use spindle::process::Command;
    /// let rt = spindle::Runtime::new().unwrap();
    /// let mut command = Command::new("sh");
    /// command.args(["-c", "echo $0"]).as_std_mut().arg0("renamed");
    /// assert_eq!(rt.block_on(|| command.output().unwrap()).stdout, b"renamed\n");
    /// ```
    pub fn as_std_mut(&mut self) -> &mut std::process::Command {
        &mut self.inner
    }
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}
