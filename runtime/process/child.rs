//! [`Child`]: a running child process whose waits park the fiber, and its
//! pipes ([`ChildStdin`], [`ChildStdout`], [`ChildStderr`]).

use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use super::{ExitStatus, Output};
use crate::io::fd::RawDescriptor;
use crate::io::readiness::Direction;
use crate::io::socket::Socket;
use crate::io::Fd;
use crate::sys::process::Pidfd;

/// The write end of a child's stdin: `std::process::ChildStdin` whose
/// writes park the fiber while the pipe is full. Dropping it closes the
/// pipe (the child reads end-of-file).
///
/// ```
/// use std::io::Write;
/// use spindle::process::{Command, Stdio};
/// let rt = spindle::Runtime::new().unwrap();
/// let output = rt.block_on(|| {
///     let mut child = Command::new("wc").arg("-c").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
///     let mut stdin: spindle::process::ChildStdin = child.stdin.take().unwrap();
///     stdin.write_all(&[b'x'; 100_000]).unwrap(); // more than a pipe holds: parks until wc reads
///     drop(stdin);
///     child.wait_with_output().unwrap()
/// });
/// assert_eq!(String::from_utf8(output.stdout).unwrap().trim(), "100000");
/// ```
pub type ChildStdin = Fd<std::process::ChildStdin>;

/// The read end of a child's stdout: `std::process::ChildStdout` whose
/// reads park the fiber until the child writes.
///
/// ```
/// use std::io::{BufRead, BufReader};
/// use spindle::process::{Command, Stdio};
/// let rt = spindle::Runtime::new().unwrap();
/// let lines = rt.block_on(|| {
///     let mut child = Command::new("printf").arg("a\\nb\\n").stdout(Stdio::piped()).spawn().unwrap();
///     let stdout: spindle::process::ChildStdout = child.stdout.take().unwrap();
///     let lines: Vec<String> = BufReader::new(stdout).lines().map(Result::unwrap).collect();
///     child.wait().unwrap();
///     lines
/// });
/// assert_eq!(lines, ["a", "b"]);
/// ```
pub type ChildStdout = Fd<std::process::ChildStdout>;

/// The read end of a child's stderr; as [`ChildStdout`].
///
/// ```
/// use std::io::Read;
/// use spindle::process::{Command, Stdio};
/// let rt = spindle::Runtime::new().unwrap();
/// let text = rt.block_on(|| {
///     let mut child = Command::new("sh").args(["-c", "echo oops >&2"]).stderr(Stdio::piped()).spawn().unwrap();
///     let mut stderr: spindle::process::ChildStderr = child.stderr.take().unwrap();
///     let mut text = String::new();
///     stderr.read_to_string(&mut text).unwrap();
///     child.wait().unwrap();
///     text
/// });
/// assert_eq!(text, "oops\n");
/// ```
pub type ChildStderr = Fd<std::process::ChildStderr>;

/// A running (or exited, not yet waited for) child process;
/// `std::process::Child` for fibers.
///
/// As with std, dropping a `Child` neither kills nor reaps the process:
/// call [`wait`](Child::wait) (or `kill` then `wait`) so that no zombie is
/// left.
///
/// ```
/// use std::time::Duration;
/// use spindle::process::Command;
///
/// let rt = spindle::Runtime::new().unwrap();
/// rt.block_on(|| {
///     let mut child = Command::new("sleep").arg("10").spawn().unwrap();
///     assert!(child.wait_timeout(Duration::from_millis(10)).unwrap().is_none());
///     child.kill().unwrap();
///     let status = child.wait().unwrap(); // parks until the exit
///     assert!(!status.success());
/// });
/// ```
pub struct Child {
    /// The child's stdin, if it was set to [`Stdio::piped`](super::Stdio::piped).
    pub stdin: Option<ChildStdin>,
    /// The child's stdout, if piped.
    pub stdout: Option<ChildStdout>,
    /// The child's stderr, if piped.
    pub stderr: Option<ChildStderr>,
    /// The wait on the pidfd (readable once the child has exited).
    /// Declared before `pidfd`, so it deregisters while the pidfd is open.
    exit: Socket<RawDescriptor>,
    pidfd: Pidfd,
    /// std's child, with its pipes taken: it reaps, and keeps the status.
    child: std::process::Child,
}

impl Child {
    /// Wraps a freshly spawned std child: its pipes become [`Fd`]s and a
    /// pidfd is opened. On failure the child is killed and reaped.
    pub(super) fn new(mut child: std::process::Child) -> io::Result<Child> {
        let wrapped = Pidfd::open(child.id()).and_then(|pidfd| {
            let stdin = child.stdin.take().map(Fd::new).transpose()?;
            let stdout = child.stdout.take().map(Fd::new).transpose()?;
            let stderr = child.stderr.take().map(Fd::new).transpose()?;
            Ok((pidfd, stdin, stdout, stderr))
        });
        match wrapped {
            Ok((pidfd, stdin, stdout, stderr)) => Ok(Child {
                stdin,
                stdout,
                stderr,
                exit: Socket::new(RawDescriptor(pidfd.as_raw_fd())),
                pidfd,
                child,
            }),
            Err(error) => {
                let _ = child.kill();
                let _ = crate::blocking(|| child.wait());
                Err(error)
            }
        }
    }

    /// The child's process id.
    ///
    /// ```
    /// use spindle::process::Command;
    /// let rt = spindle::Runtime::new().unwrap();
    /// rt.block_on(|| {
    ///     let mut child = Command::new("true").spawn().unwrap();
    ///     assert!(child.id() > 0);
    ///     child.wait().unwrap();
    /// });
    /// ```
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Sends the child `SIGKILL`, as `std::process::Child::kill` (which it
    /// calls): the child is not reaped; call [`wait`](Child::wait) after.
    ///
    /// # Errors
    /// std's.
    ///
    /// ```
    /// use spindle::process::Command;
    /// let rt = spindle::Runtime::new().unwrap();
    /// rt.block_on(|| {
    ///     let mut child = Command::new("sleep").arg("10").spawn().unwrap();
    ///     child.kill().unwrap();
    ///     child.wait().unwrap();
    /// });
    /// ```
    pub fn kill(&mut self) -> io::Result<()> {
        self.child.kill()
    }

    /// The exit status if the child has exited (reaping it), else `None`;
    /// never waits.
    ///
    /// # Errors
    /// std's.
    ///
    /// ```
    /// use spindle::process::Command;
    /// let rt = spindle::Runtime::new().unwrap();
    /// rt.block_on(|| {
    ///     let mut child = Command::new("sleep").arg("10").spawn().unwrap();
    ///     assert!(child.try_wait().unwrap().is_none());
    ///     child.kill().unwrap();
    ///     child.wait().unwrap();
    ///     assert!(child.try_wait().unwrap().is_some()); // kept after the reap
    /// });
    /// ```
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    /// Waits for the child to exit and returns its status: the fiber parks
    /// in the reactor on the child's pidfd (a plain thread blocks). Closes
    /// [`stdin`](Child::stdin) first, as std does, so a child reading it
    /// sees end-of-file instead of waiting for the parent forever. Waiting
    /// again returns the same status.
    ///
    /// # Errors
    /// std's (`waitpid` failing, for example when `SIGCHLD` is ignored and
    /// the kernel reaped the child itself).
    ///
    /// ```
    /// use spindle::process::Command;
    /// let rt = spindle::Runtime::new().unwrap();
    /// let status = rt.block_on(|| Command::new("sh").args(["-c", "exit 7"]).spawn().unwrap().wait().unwrap());
    /// assert_eq!(status.code(), Some(7));
    /// ```
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        drop(self.stdin.take());
        self.wait_until(None)
    }

    /// Like [`wait`](Child::wait), giving up after `timeout`: `Ok(None)`
    /// if the child is still running then. Leaves stdin open.
    ///
    /// # Errors
    /// As [`Child::wait`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use spindle::process::Command;
    /// let rt = spindle::Runtime::new().unwrap();
    /// rt.block_on(|| {
    ///     let mut child = Command::new("true").spawn().unwrap();
    ///     let status = child.wait_timeout(Duration::from_secs(60)).unwrap();
    ///     assert!(status.unwrap().success());
    /// });
    /// ```
    pub fn wait_timeout(&mut self, timeout: Duration) -> io::Result<Option<ExitStatus>> {
        match self.wait_until(Instant::now().checked_add(timeout)) {
            Ok(status) => Ok(Some(status)),
            Err(error) if error.kind() == io::ErrorKind::TimedOut => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// `try_wait` in the socket loop on the pidfd: tried at once, then
    /// after each readiness edge (the exit), until `deadline`
    /// (`TimedOut`).
    fn wait_until(&mut self, deadline: Option<Instant>) -> io::Result<ExitStatus> {
        let child = &mut self.child;
        self.exit.io_until(
            Direction::Read,
            move || deadline,
            |_| match child.try_wait()? {
                Some(status) => Ok(status),
                None => Err(io::ErrorKind::WouldBlock.into()),
            },
            |_| false,
        )
    }

    /// Closes stdin, reads stdout and stderr to their ends at once (stderr
    /// in a fiber of its own, so a child filling one pipe while the other
    /// is read cannot deadlock), then waits; as std's
    /// `Child::wait_with_output`, which it is on a plain thread.
    ///
    /// # Errors
    /// A read's or the wait's; a failure to start the stderr reader fiber
    /// (`ErrorKind::Other`).
    ///
    /// ```
    /// use spindle::process::{Command, Stdio};
    /// let rt = spindle::Runtime::new().unwrap();
    /// let output = rt.block_on(|| {
    ///     let child = Command::new("sh").args(["-c", "echo out; echo err >&2"])
    ///         .stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    ///     child.wait_with_output().unwrap()
    /// });
    /// assert_eq!((output.stdout, output.stderr), (b"out\n".to_vec(), b"err\n".to_vec()));
    /// ```
    pub fn wait_with_output(mut self) -> io::Result<Output> {
        drop(self.stdin.take());
        let stdout = self.stdout.take();
        let stderr = self.stderr.take();
        if crate::fiber::try_current().is_none() {
            // std's, which polls both pipes on this thread.
            self.child.stdout = stdout.map(Fd::into_inner);
            self.child.stderr = stderr.map(Fd::into_inner);
            return self.child.wait_with_output();
        }
        let stderr_reader = stderr
            .map(|stderr| crate::try_spawn(move || read_to_end(stderr)))
            .transpose()
            .map_err(io::Error::other)?;
        let stdout = stdout.map(read_to_end).transpose()?.unwrap_or_default();
        let stderr = match stderr_reader {
            None => Vec::new(),
            Some(reader) => match reader.join() {
                Ok(read) => read?,
                Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
                Err(error) => return Err(io::Error::other(error.to_string())),
            },
        };
        let status = self.wait()?;
        Ok(Output {
            status,
            stdout,
            stderr,
        })
    }
}

/// Everything `pipe` gives until end-of-file.
fn read_to_end(mut pipe: impl Read) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    pipe.read_to_end(&mut bytes)?;
    Ok(bytes)
}

impl std::fmt::Debug for Child {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Child")
            .field("pid", &self.child.id())
            .field("pidfd", &self.pidfd)
            .field("stdin", &self.stdin)
            .field("stdout", &self.stdout)
            .field("stderr", &self.stderr)
            .finish_non_exhaustive()
    }
}
