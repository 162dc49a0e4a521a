//! spindle::io::Fd on real descriptors: pipes and socketpairs with a
//! thousand fibers, one pipe shared by many readers, eventfd, inotify, a
//! pseudo-terminal (whose short reads must not clear readiness), a std
//! child's stdout read while a heartbeat keeps ticking on one worker with
//! no spare threads, plain threads, timeouts, and the blocking mode put
//! back on duplicates.

mod common;

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::within;
use spindle::io::Fd;
use spindle::Builder;

const LIMIT: Duration = Duration::from_secs(120);

fn runtime(workers: usize) -> spindle::Runtime {
    Builder::new().workers(workers).build().unwrap()
}

/// A pipe: (read end, write end), close-on-exec.
fn pipe() -> (File, File) {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 writes two descriptors into `fds`.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both were just made and are owned by nobody else.
    unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) }
}

/// Whether `fd`'s open file description has `O_NONBLOCK`.
fn is_nonblocking(fd: RawFd) -> bool {
    // SAFETY: F_GETFL reads the flags of an open descriptor.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    assert!(flags >= 0);
    flags & libc::O_NONBLOCK != 0
}

#[test]
fn a_thousand_fibers_move_bytes_through_pipes() {
    within(LIMIT, || {
        const PIPES: usize = 500; // a reader and a writer each
        const MESSAGES: usize = 20;
        let rt = runtime(2);
        let checked = rt.block_on(|| {
            let mut fibers = Vec::new();
            for pipe_index in 0..PIPES {
                let (read, write) = pipe();
                let mut read = Fd::new(read).unwrap();
                let mut write = Fd::new(write).unwrap();
                fibers.push(spindle::spawn(move || {
                    for message in 0..MESSAGES {
                        write
                            .write_all(&[(pipe_index + message) as u8; 64])
                            .unwrap();
                        spindle::yield_now();
                    }
                    0
                }));
                fibers.push(spindle::spawn(move || {
                    let mut buf = [0; 64];
                    for message in 0..MESSAGES {
                        read.read_exact(&mut buf).unwrap();
                        assert!(buf.iter().all(|&b| b == (pipe_index + message) as u8));
                    }
                    assert_eq!(read.read(&mut buf).unwrap(), 0, "EOF after the writer");
                    1
                }));
            }
            fibers.into_iter().map(|f| f.join().unwrap()).sum::<usize>()
        });
        assert_eq!(checked, PIPES);
        assert_eq!(rt.shutdown().io_registrations, 0);
    });
}

#[test]
fn a_thousand_fibers_ping_pong_over_socketpairs() {
    within(LIMIT, || {
        const PAIRS: usize = 500;
        const ROUNDS: usize = 50;
        let rt = runtime(2);
        let rounds = rt.block_on(|| {
            let mut fibers = Vec::new();
            for _ in 0..PAIRS {
                let (left, right) = UnixStream::pair().unwrap();
                let left = Fd::new(left).unwrap();
                let right = Fd::new(right).unwrap();
                fibers.push(spindle::spawn(move || {
                    let mut buf = [0; 8];
                    for round in 0..ROUNDS as u64 {
                        (&left).write_all(&round.to_le_bytes()).unwrap();
                        (&left).read_exact(&mut buf).unwrap();
                        assert_eq!(u64::from_le_bytes(buf), round + 1);
                    }
                    ROUNDS
                }));
                fibers.push(spindle::spawn(move || {
                    let mut buf = [0; 8];
                    for _ in 0..ROUNDS {
                        (&right).read_exact(&mut buf).unwrap();
                        let reply = u64::from_le_bytes(buf) + 1;
                        (&right).write_all(&reply.to_le_bytes()).unwrap();
                    }
                    0
                }));
            }
            fibers.into_iter().map(|f| f.join().unwrap()).sum::<usize>()
        });
        assert_eq!(rounds, PAIRS * ROUNDS);
    });
}

#[test]
fn many_fibers_share_one_pipe_by_reference() {
    within(LIMIT, || {
        const READERS: usize = 100;
        const RECORDS: u64 = 20; // per reader
        let rt = runtime(2);
        let total = rt.block_on(|| {
            let (read, write) = pipe();
            let read = Arc::new(Fd::new(read).unwrap());
            let readers: Vec<_> = (0..READERS)
                .map(|_| {
                    let read = read.clone();
                    spindle::spawn(move || {
                        // Records are 8 bytes, under PIPE_BUF: each write and
                        // each read moves exactly one.
                        let mut sum = 0;
                        let mut record = [0; 8];
                        for _ in 0..RECORDS {
                            (&*read).read_exact(&mut record).unwrap();
                            sum += u64::from_le_bytes(record);
                        }
                        sum
                    })
                })
                .collect();
            let mut write = Fd::new(write).unwrap();
            for value in 1..=READERS as u64 * RECORDS {
                write.write_all(&value.to_le_bytes()).unwrap();
            }
            readers.into_iter().map(|r| r.join().unwrap()).sum::<u64>()
        });
        let n = READERS as u64 * RECORDS;
        assert_eq!(total, n * (n + 1) / 2);
    });
}

#[test]
fn readable_and_writable_wait_for_readiness_and_time_out() {
    within(LIMIT, || {
        let rt = runtime(2);
        rt.block_on(|| {
            // SAFETY: eventfd returns a new descriptor or -1.
            let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
            assert!(raw >= 0);
            // SAFETY: just made, owned by nobody else.
            let event = Arc::new(Fd::new(unsafe { File::from_raw_fd(raw) }).unwrap());
            event
                .set_read_timeout(Some(Duration::from_millis(20)))
                .unwrap();
            let start = Instant::now();
            let error = event.readable().unwrap_err();
            assert_eq!(error.kind(), ErrorKind::TimedOut);
            assert!(start.elapsed() >= Duration::from_millis(20));
            event.set_read_timeout(None).unwrap();

            let poster = event.clone();
            let post = spindle::spawn(move || {
                spindle::time::sleep(Duration::from_millis(5));
                (&*poster).write_all(&3u64.to_le_bytes()).unwrap();
            });
            event.readable().unwrap();
            let mut count = [0; 8];
            (&*event).read_exact(&mut count).unwrap();
            assert_eq!(u64::from_le_bytes(count), 3);
            post.join().unwrap();
            event.writable().unwrap();

            // A full pipe: writable waits until a reader makes room.
            let (read, write) = pipe();
            let write = Fd::new(write).unwrap();
            let mut filled = 0;
            loop {
                match write.get_ref().write(&[0; 4096]) {
                    Ok(n) => filled += n,
                    Err(error) if error.kind() == ErrorKind::WouldBlock => break,
                    Err(error) => panic!("{error}"),
                }
            }
            write
                .set_write_timeout(Some(Duration::from_millis(10)))
                .unwrap();
            assert_eq!(write.writable().unwrap_err().kind(), ErrorKind::TimedOut);
            write.set_write_timeout(None).unwrap();
            let drain = spindle::spawn(move || {
                let mut read = Fd::new(read).unwrap();
                let mut buf = vec![0; filled];
                read.read_exact(&mut buf).unwrap();
            });
            write.writable().unwrap();
            drain.join().unwrap();
        });
    });
}

#[test]
fn inotify_events_wake_a_parked_reader() {
    within(LIMIT, || {
        let dir = std::env::temp_dir().join(format!("spindle-inotify-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let rt = runtime(1);
        let name = rt.block_on(|| {
            // SAFETY: inotify_init1 returns a new descriptor or -1.
            let raw = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
            assert!(raw >= 0);
            let path = std::ffi::CString::new(dir.to_str().unwrap()).unwrap();
            // SAFETY: `path` is a valid C string for the call.
            let watch = unsafe { libc::inotify_add_watch(raw, path.as_ptr(), libc::IN_CREATE) };
            assert!(watch >= 0);
            // SAFETY: just made, owned by nobody else.
            let mut inotify = Fd::new(unsafe { File::from_raw_fd(raw) }).unwrap();
            let create = dir.join("created");
            let creator = spindle::spawn(move || {
                spindle::time::sleep(Duration::from_millis(5));
                File::create(create).unwrap();
            });
            // One event: a header (wd, mask, cookie, len) and the name.
            let mut buf = [0u8; 4096];
            let n = inotify.read(&mut buf).unwrap();
            creator.join().unwrap();
            let header = std::mem::size_of::<libc::inotify_event>();
            assert!(n > header);
            let name = &buf[header..n];
            String::from_utf8_lossy(name)
                .trim_end_matches('\0')
                .to_string()
        });
        assert_eq!(name, "created");
        std::fs::remove_dir_all(&dir).unwrap();
    });
}

/// A pseudo-terminal pair: (master, slave), the slave in canonical mode.
fn pty() -> (File, File) {
    // SAFETY: plain calls on the descriptor posix_openpt returns; ptsname_r
    // writes a NUL-terminated path into `name`.
    unsafe {
        let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        assert!(master >= 0);
        assert_eq!(libc::grantpt(master), 0);
        assert_eq!(libc::unlockpt(master), 0);
        let mut name = [0 as libc::c_char; 128];
        assert_eq!(libc::ptsname_r(master, name.as_mut_ptr(), name.len()), 0);
        let slave = libc::open(
            name.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        assert!(slave >= 0);
        (File::from_raw_fd(master), File::from_raw_fd(slave))
    }
}

#[test]
fn a_terminal_returns_one_line_per_read_and_the_next_without_a_new_edge() {
    within(LIMIT, || {
        let rt = runtime(1);
        let lines = rt.block_on(|| {
            let (master, slave) = pty();
            let mut slave = Fd::new(slave).unwrap();
            let mut master = Fd::new(master).unwrap();
            let reader = spindle::spawn(move || {
                let mut lines = Vec::new();
                let mut buf = [0; 64];
                for _ in 0..3 {
                    // Canonical mode: each read returns one line, short of
                    // the buffer, with more already waiting.
                    let n = slave.read(&mut buf).unwrap();
                    lines.push(String::from_utf8_lossy(&buf[..n]).into_owned());
                }
                lines
            });
            spindle::time::sleep(Duration::from_millis(5)); // the reader parks first
            master.write_all(b"one\ntwo\nthree\n").unwrap();
            reader.join().unwrap()
        });
        assert_eq!(lines, ["one\n", "two\n", "three\n"]);
    });
}

#[test]
fn a_std_child_is_read_while_a_heartbeat_ticks_on_one_worker() {
    within(LIMIT, || {
        let rt = common::one_worker_no_spares();
        let (text, beats_during) = rt.block_on(|| {
            let heartbeat = common::Heartbeat::start();
            let mut child = std::process::Command::new("sh")
                .args(["-c", "sleep 0.2; echo late"])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let mut stdout = Fd::new(child.stdout.take().unwrap()).unwrap();
            let before = heartbeat.beats();
            let mut text = String::new();
            stdout.read_to_string(&mut text).unwrap();
            let during = heartbeat.beats() - before;
            heartbeat.stop();
            child.wait().unwrap();
            (text, during)
        });
        assert_eq!(text, "late\n");
        // 200 ms at one beat per 2 ms; a tenth of that proves the worker
        // was free, under any load.
        assert!(beats_during >= 10, "only {beats_during} heartbeats");
    });
}

#[test]
fn a_plain_thread_blocks_in_poll_and_times_out() {
    within(LIMIT, || {
        let (left, right) = UnixStream::pair().unwrap();
        let mut left = Fd::new(left).unwrap();
        left.set_read_timeout(Some(Duration::from_millis(10)))
            .unwrap();
        let error = left.read(&mut [0; 4]).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::TimedOut);
        left.set_read_timeout(None).unwrap();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(5));
            (&right).write_all(b"ping").unwrap();
        });
        let mut buf = [0; 4];
        left.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping");
        writer.join().unwrap();
    });
}

#[test]
fn blocking_mode_comes_back_on_drop_and_into_inner_but_only_if_it_was_on() {
    let (read, write) = pipe();
    // SAFETY: dup returns a new descriptor for the same description.
    let duplicate = unsafe { File::from_raw_fd(libc::dup(read.as_raw_fd())) };
    let fd = Fd::new(read).unwrap();
    assert!(is_nonblocking(duplicate.as_raw_fd()), "the flag is shared");
    drop(fd);
    assert!(!is_nonblocking(duplicate.as_raw_fd()), "restored on drop");

    let fd = Fd::new(write).unwrap();
    let write = fd.into_inner();
    assert!(!is_nonblocking(write.as_raw_fd()), "restored by into_inner");

    let (left, _right) = UnixStream::pair().unwrap();
    left.set_nonblocking(true).unwrap();
    let left = Fd::new(left).unwrap().into_inner();
    assert!(
        is_nonblocking(left.as_raw_fd()),
        "left as the caller set it"
    );
}
