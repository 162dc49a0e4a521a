//! Process-per-shard mode with real processes and real signals: crash
//! containment, bad input, restart policies, the intensity limit, backoff,
//! shutdown without zombies, and shards dying with their supervisor.
//!
//! How a test binary becomes a shard: every test here starts with
//! `shard::start(config(TEST_NAME, ..), entry)`. The supervisor re-executes
//! this test binary with the libtest arguments `TEST_NAME --exact` (see
//! [`config`]), so the shard process runs just that one test function,
//! whose first line, `shard::start`, sees the shard identity in the
//! environment, runs `entry` and exits. Nothing before that call runs in a
//! shard by accident because nothing comes before it. (The tests that need
//! a supervisor process of their own re-execute themselves as one first;
//! an environment variable tells that process which part to play.)

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::os::fd::FromRawFd;
use std::time::{Duration, Instant};

use common::within;
use spindle::shard::{
    self, Backoff, Config, Event, Exit, Incoming, Peer, Restart, SendError, Shard,
};

/// A hang becomes a failure after this long; not a speed check.
const LIMIT: Duration = Duration::from_secs(120);
/// How long to wait for any one expected event.
const EVENT_LIMIT: Duration = Duration::from_secs(30);

/// A configuration whose shards re-run only `test` in this binary, quietly,
/// with one worker each (tests run in parallel, on machines with as few as
/// 2 cores).
fn config(test: &str, shards: usize) -> Config {
    Config::new(shards)
        .args([test, "--exact", "--test-threads=1", "--quiet"])
        .quiet(true)
        .workers(1)
        .backoff(Duration::from_millis(1), Duration::from_millis(5))
        .intensity(1000, Duration::from_secs(60))
}

/// The shard side used by most tests: a tiny text protocol.
///
/// From the supervisor: `ping` -> `pong <id> <generation>`; `crash
/// segv|abort|panic|exit <code>`; `stream <to> <count>` sends `seq <i>` to
/// shard `to` (numbered on from the previous `stream`) then replies
/// `streamed <count>`; `report` -> `received <n> gaps
/// <g> down <d>`; `garbage malformed|oversized|truncated` writes a bad frame
/// straight to the socket; `unknown` probes sends to a shard id that does
/// not exist; `fuzz <seed> <count>` sends random frames, then garbage.
fn serve(me: Shard) {
    let mut expected: HashMap<usize, u64> = HashMap::new();
    let (mut received, mut gaps, mut down) = (0u64, 0u64, 0u64);
    let mut next_seq = 0u64; // continues across `stream` requests
    loop {
        let incoming = match me.recv() {
            Ok(incoming) => incoming,
            Err(_) => return,
        };
        let bytes = match incoming {
            Incoming::Message {
                from: Peer::Shard(from),
                bytes,
            } => {
                if let Some(Ok(seq)) = text(&bytes).strip_prefix("seq ").map(str::parse::<u64>) {
                    let next = expected.entry(from).or_insert(0);
                    if seq != *next {
                        gaps += 1;
                    }
                    *next = seq + 1;
                    received += 1;
                }
                continue;
            }
            Incoming::Message {
                from: Peer::Supervisor,
                bytes,
            } => bytes,
            Incoming::Undeliverable { to, reason } => {
                reply(&me, &format!("undeliverable {to} {reason:?}"));
                continue;
            }
            Incoming::ShardDown { .. } => {
                down += 1;
                continue;
            }
        };
        let request = text(&bytes);
        let words: Vec<&str> = request.split(' ').collect();
        match words[..] {
            ["ping"] => reply(&me, &format!("pong {} {}", me.id(), me.generation())),
            ["crash", how] => crash(how, 0),
            ["crash", "exit", code] => crash("exit", code.parse().unwrap()),
            ["stream", to, count] => {
                let count: u64 = count.parse().unwrap();
                for _ in 0..count {
                    me.send(to.parse().unwrap(), format!("seq {next_seq}").as_bytes())
                        .unwrap();
                    next_seq += 1;
                }
                reply(&me, &format!("streamed {count}"));
            }
            ["report"] => reply(&me, &format!("received {received} gaps {gaps} down {down}")),
            ["garbage", kind] => garbage(kind),
            // Hung as a whole: no fiber, heartbeat included, runs again.
            // SAFETY: raising a signal at ourselves has no preconditions.
            ["hang"] => unsafe {
                libc::raise(libc::SIGSTOP);
            },
            ["unknown"] => {
                let local = me.send(me.count() + 5, b"x");
                assert!(matches!(local, Err(SendError::UnknownShard(_))));
                // Bypass the local check: the supervisor must refuse it too.
                raw_socket().write_all(&frame(1, 999, b"x")).unwrap();
            }
            ["fuzz", seed, count] => fuzz(&me, seed.parse().unwrap(), count.parse().unwrap()),
            _ => reply(&me, "what?"),
        }
    }
}

/// The bytes as text; random bytes (the fuzz test) read as "".
fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or("")
}

fn reply(me: &Shard, message: &str) {
    me.send_to_supervisor(message.as_bytes()).unwrap();
}

/// Ends this process the way `how` says.
fn crash(how: &str, code: i32) {
    match how {
        "segv" | "kill" => {
            let signal = if how == "segv" {
                libc::SIGSEGV
            } else {
                libc::SIGKILL
            };
            // SAFETY: restoring the default action and raising a signal at
            // ourselves; the process dies as a segfaulting program does.
            unsafe {
                libc::signal(signal, libc::SIG_DFL);
                libc::raise(signal);
            }
            unreachable!("the signal's default action ends the process");
        }
        "abort" => std::process::abort(),
        "panic" => panic!("shard asked to panic"),
        "exit" => std::process::exit(code),
        _ => panic!("unknown crash {how}"),
    }
}

/// The shard's own socket, for writing bytes that bypass the transport.
fn raw_socket() -> std::mem::ManuallyDrop<std::fs::File> {
    let fd: i32 = std::env::var("SPINDLE_SHARD_FD").unwrap().parse().unwrap();
    // SAFETY: the descriptor is this shard's open socket (owned by the
    // transport, which stays alive); ManuallyDrop keeps us from closing it.
    std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(fd) })
}

/// A frame as `frame.rs` encodes it: length, kind, peer, payload.
fn frame(kind: u8, peer: u32, payload: &[u8]) -> Vec<u8> {
    let mut bytes = ((payload.len() + 5) as u32).to_le_bytes().to_vec();
    bytes.push(kind);
    bytes.extend_from_slice(&peer.to_le_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

/// Writes one bad frame; the supervisor should kill us for it.
fn garbage(kind: &str) {
    let mut socket = raw_socket();
    match kind {
        "malformed" => socket.write_all(&frame(9, 0, b"?")).unwrap(),
        "oversized" => socket.write_all(&(1_000_000u32).to_le_bytes()).unwrap(),
        "truncated" => {
            let whole = frame(1, 0, &[7; 100]);
            socket.write_all(&whole[..30]).unwrap();
            std::process::exit(0);
        }
        _ => panic!("unknown garbage {kind}"),
    }
    // Wait to be killed.
    std::thread::sleep(Duration::from_secs(60));
}

/// `count` well-delimited frames with random destinations (real shards,
/// unknown ids, the supervisor) and random payloads, then random bytes.
fn fuzz(me: &Shard, seed: u64, count: usize) {
    let mut state = seed | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut socket = raw_socket();
    for _ in 0..count {
        let peer = match next() % 4 {
            0 => u32::MAX,
            1 => (next() % (me.count() as u64 + 3)) as u32,
            2 => next() as u32,
            _ => 0,
        };
        let payload: Vec<u8> = (0..next() % 48).map(|_| next() as u8).collect();
        socket.write_all(&frame(1, peer, &payload)).unwrap();
    }
    let junk: Vec<u8> = (0..1 + next() % 64).map(|_| next() as u8).collect();
    // A random first byte may still form a valid header: keep going with
    // more junk until the supervisor gives up on us.
    for _ in 0..1000 {
        if socket.write_all(&junk).is_err() {
            break;
        }
    }
    std::thread::sleep(Duration::from_secs(60));
}

/// The supervisor's event stream with a memory: waiting for one event
/// keeps the others for later waits.
struct Watch {
    supervisor: shard::Supervisor,
    pending: Vec<Event>,
    seen: usize,
}

impl Watch {
    fn new(supervisor: shard::Supervisor) -> Watch {
        Watch {
            supervisor,
            pending: Vec::new(),
            seen: 0,
        }
    }

    /// The first event (pending or new) for which `test` says `Some`.
    fn wait<T>(&mut self, what: &str, mut test: impl FnMut(&Event) -> Option<T>) -> T {
        if let Some(index) = self.pending.iter().position(|event| test(event).is_some()) {
            let event = self.pending.remove(index);
            return test(&event).unwrap();
        }
        let deadline = Instant::now() + EVENT_LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(event) = self.supervisor.recv_timeout(left) else {
                panic!(
                    "waited {EVENT_LIMIT:?} for {what}; {} events seen, pending: {:?}",
                    self.seen, self.pending
                );
            };
            self.seen += 1;
            if let Some(found) = test(&event) {
                return found;
            }
            self.pending.push(event);
        }
    }

    /// The next message from `shard` that starts with `prefix`.
    fn message(&mut self, shard: usize, prefix: &str) -> String {
        self.wait(
            &format!("a '{prefix}' from shard {shard}"),
            |event| match event {
                Event::Message { from, bytes, .. }
                    if *from == shard && bytes.starts_with(prefix.as_bytes()) =>
                {
                    Some(String::from_utf8(bytes.clone()).unwrap())
                }
                _ => None,
            },
        )
    }

    fn started(&mut self, shard: usize, generation: u64) -> u32 {
        self.wait(
            &format!("shard {shard} generation {generation} started"),
            |event| match event {
                Event::Started {
                    shard: s,
                    generation: g,
                    pid,
                } if (*s, *g) == (shard, generation) => Some(*pid),
                _ => None,
            },
        )
    }

    fn exited(&mut self, shard: usize, generation: u64) -> (Exit, Option<Duration>) {
        self.wait(
            &format!("shard {shard} generation {generation} exited"),
            |event| match event {
                Event::Exited {
                    shard: s,
                    generation: g,
                    exit,
                    restart_in,
                } if (*s, *g) == (shard, generation) => Some((*exit, *restart_in)),
                _ => None,
            },
        )
    }

    /// Pings `shard` and checks it answers as incarnation `generation`.
    fn ping(&mut self, shard: usize, generation: u64) {
        self.supervisor.send(shard, b"ping").unwrap();
        let pong = self.message(shard, "pong");
        assert_eq!(pong, format!("pong {shard} {generation}"));
    }
}

fn is_signal(exit: Exit, expected: i32) -> bool {
    matches!(exit, Exit::Signal { signal, .. } if signal == expected)
}

#[test]
fn containment_100_crashes_while_survivors_exchange_messages() {
    let supervisor = shard::start(
        config(
            "containment_100_crashes_while_survivors_exchange_messages",
            4,
        ),
        serve,
    )
    .unwrap();
    within(LIMIT, move || {
        let mut watch = Watch::new(supervisor);
        for shard in 0..4 {
            watch.started(shard, 1);
        }
        let mut generations = [1u64; 4];
        let mut streamed = 0u64;
        let kinds = ["segv", "abort", "panic", "kill"];
        for round in 0..100 {
            if round % 10 == 0 {
                // Survivor 0 streams to survivor 1 while the others crash.
                watch.supervisor.send(0, b"stream 1 50").unwrap();
                streamed += 50;
            }
            let target = 2 + round % 2;
            let kind = kinds[(round / 2) % 4];
            let generation = generations[target];
            if kind == "kill" {
                assert!(watch.supervisor.signal(target, libc::SIGKILL).unwrap());
            } else {
                watch
                    .supervisor
                    .send(target, format!("crash {kind}").as_bytes())
                    .unwrap();
            }
            let (exit, restart_in) = watch.exited(target, generation);
            let as_expected = match kind {
                "segv" => is_signal(exit, libc::SIGSEGV),
                "abort" => is_signal(exit, libc::SIGABRT),
                "panic" => exit == Exit::Code(101),
                _ => is_signal(exit, libc::SIGKILL),
            };
            assert!(as_expected, "round {round}: {kind} ended as {exit}");
            assert!(restart_in.is_some(), "permanent shards are restarted");
            generations[target] += 1;
            watch.started(target, generation + 1);
            if round % 10 == 9 {
                // The survivors kept serving, as their first incarnation.
                watch.ping(0, 1);
                watch.ping(1, 1);
            }
        }
        for target in [2, 3] {
            watch.ping(target, generations[target]);
        }
        for _ in 0..streamed / 50 {
            watch.message(0, "streamed 50");
        }
        // Everything shard 0 streamed was routed before its "streamed"
        // replies reached us, so it is already in shard 1's socket, ahead of
        // this request.
        watch.supervisor.send(1, b"report").unwrap();
        let report = watch.message(1, "received");
        assert!(
            report.starts_with(&format!("received {streamed} gaps 0 ")),
            "no message between survivors may be lost: {report}"
        );
        watch.supervisor.shutdown().unwrap();
    });
}

#[test]
fn bad_frames_get_the_sender_restarted_and_nobody_else() {
    let config = config("bad_frames_get_the_sender_restarted_and_nobody_else", 4).max_frame(1024);
    let supervisor = shard::start(config, serve).unwrap();
    within(LIMIT, move || {
        let mut watch = Watch::new(supervisor);
        for shard in 0..4 {
            watch.started(shard, 1);
        }
        let cases = [(1, "malformed"), (2, "oversized"), (3, "truncated")];
        for (shard, kind) in cases {
            watch
                .supervisor
                .send(shard, format!("garbage {kind}").as_bytes())
                .unwrap();
        }
        for (shard, kind) in cases {
            let error = watch.wait(
                &format!("shard {shard} disconnected"),
                |event| match event {
                    Event::Disconnected {
                        shard: s, error, ..
                    } if *s == shard => Some(error.to_string()),
                    _ => None,
                },
            );
            assert!(
                error.contains(kind),
                "shard {shard} sent {kind}, got: {error}"
            );
            let (exit, restart_in) = watch.exited(shard, 1);
            assert!(restart_in.is_some(), "shard {shard} ({exit}) is restarted");
            watch.started(shard, 2);
            watch.ping(shard, 2);
        }
        // The bystander never noticed, apart from the shard-down notices.
        watch.ping(0, 1);
        watch.supervisor.send(0, b"report").unwrap();
        assert_eq!(watch.message(0, "received"), "received 0 gaps 0 down 3");

        // Unknown shard ids are errors: to the supervisor's caller at once,
        // and to a shard that bypasses its local check, as a notice.
        assert!(matches!(
            watch.supervisor.send(99, b"x"),
            Err(SendError::UnknownShard(99))
        ));
        assert!(matches!(
            watch.supervisor.send(0, &[0; 1025]),
            Err(SendError::TooLarge {
                length: 1025,
                max: 1024
            })
        ));
        watch.supervisor.send(0, b"unknown").unwrap();
        assert_eq!(
            watch.message(0, "undeliverable"),
            "undeliverable 999 UnknownShard"
        );
        watch.ping(0, 1);
        watch.supervisor.shutdown().unwrap();
    });
}

#[test]
fn garbled_frames_never_crash_the_supervisor() {
    // 20 incarnations of shard 1 each send 500 random frames (10,000 in all)
    // and then garbage; shard 0 keeps answering throughout.
    let supervisor = shard::start(
        config("garbled_frames_never_crash_the_supervisor", 2),
        serve,
    )
    .unwrap();
    within(LIMIT, move || {
        let mut watch = Watch::new(supervisor);
        watch.started(0, 1);
        for generation in 1..=20 {
            watch.started(1, generation);
            let command = format!("fuzz {} 500", generation * 7919);
            watch.supervisor.send(1, command.as_bytes()).unwrap();
            watch.exited(1, generation);
            watch.ping(0, 1);
        }
        watch.started(1, 21);
        watch.ping(1, 21);
        watch.supervisor.shutdown().unwrap();
    });
}

#[test]
fn restart_policies_follow_erlang_and_backoff_waits() {
    let backoff = Backoff {
        initial: Duration::from_millis(200),
        max: Duration::from_secs(1),
        jitter: 0.0,
        reset_after: Duration::from_secs(60),
    };
    let config = config("restart_policies_follow_erlang_and_backoff_waits", 4)
        .backoff_with(backoff)
        .restart_shard(0, Restart::Temporary)
        .restart_shard(1, Restart::Transient)
        .restart_shard(2, Restart::Transient)
        .restart_shard(3, Restart::Permanent);
    let supervisor = shard::start(config, |me| {
        // The first incarnation ends at once: 0 and 2 abnormally (code 1),
        // 1 and 3 normally (code 0); later incarnations serve.
        if me.generation() == 1 {
            std::process::exit(if me.id() % 2 == 0 { 1 } else { 0 });
        }
        serve(me)
    })
    .unwrap();
    within(LIMIT, move || {
        let mut watch = Watch::new(supervisor);
        let mut exited_at = [None; 4];
        for (shard, exited_at) in exited_at.iter_mut().enumerate() {
            let (exit, restart_in) = watch.exited(shard, 1);
            *exited_at = Some(Instant::now());
            let expected_exit = Exit::Code(if shard % 2 == 0 { 1 } else { 0 });
            assert_eq!(exit, expected_exit);
            let expected_restart = match shard {
                0 => None,                             // temporary: never
                1 => None,                             // transient, normal exit
                _ => Some(Duration::from_millis(200)), // transient abnormal; permanent
            };
            assert_eq!(restart_in, expected_restart, "shard {shard}");
        }
        for shard in [2, 3] {
            watch.started(shard, 2);
            let waited = exited_at[shard].unwrap().elapsed();
            assert!(
                waited >= Duration::from_millis(150),
                "backoff of 200 ms, restarted after {waited:?}"
            );
            watch.ping(shard, 2);
        }
        // Give a wrong restart time to happen, then check it did not.
        std::thread::sleep(Duration::from_millis(500));
        for shard in [0, 1] {
            assert!(
                matches!(watch.supervisor.send(shard, b"ping"), Err(SendError::ShardDown(s)) if s == shard)
            );
            assert!(
                !watch
                    .pending
                    .iter()
                    .any(|event| matches!(event, Event::Started { shard: s, generation, .. } if *s == shard && *generation > 1)),
                "shard {shard} must not be restarted"
            );
        }
        watch.supervisor.shutdown().unwrap();
    });
}

#[test]
fn intensity_limit_stops_the_supervisor_with_an_error() {
    let config = config("intensity_limit_stops_the_supervisor_with_an_error", 2)
        .restart_shard(1, Restart::Temporary)
        .intensity(3, Duration::from_secs(60));
    let supervisor = shard::start(config, |me| {
        if me.id() == 0 {
            std::process::exit(3); // a shard that crashes as soon as it starts
        }
        serve(me)
    })
    .unwrap();
    within(LIMIT, move || {
        let mut watch = Watch::new(supervisor);
        for generation in 1..=3 {
            let (exit, restart_in) = watch.exited(0, generation);
            assert_eq!(exit, Exit::Code(3));
            assert!(restart_in.is_some(), "restart {generation} of 3 is allowed");
        }
        let (_, restart_in) = watch.exited(0, 4);
        assert_eq!(restart_in, None, "the fourth restart in 60 s exceeds 3");
        watch.wait("Stopping", |event| {
            matches!(event, Event::Stopping { .. }).then_some(())
        });
        watch.wait("Stopped", |event| {
            matches!(event, Event::Stopped).then_some(())
        });
        let outcome = watch.supervisor.shutdown();
        let error = outcome.expect_err("the supervisor gave up");
        assert!(matches!(
            error,
            shard::SupervisorError::IntensityExceeded {
                shard: 0,
                exit: Exit::Code(3),
                ..
            }
        ));
        assert!(
            error.to_string().contains("more than 3 restarts"),
            "{error}"
        );
    });
}

#[test]
fn heartbeats_catch_a_hung_shard() {
    let beat = shard::Heartbeat {
        interval: Duration::from_millis(50),
        // Generous: the bystander must not miss 3 s of beats on a loaded CI
        // machine, or it would be killed too.
        timeout: Duration::from_secs(3),
    };
    let config = config("heartbeats_catch_a_hung_shard", 2).heartbeat(Some(beat));
    let supervisor = shard::start(config, serve).unwrap();
    within(LIMIT, move || {
        let mut watch = Watch::new(supervisor);
        watch.started(0, 1);
        watch.started(1, 1);
        // Beating shards are left alone well past the timeout.
        std::thread::sleep(Duration::from_millis(3500));
        watch.ping(0, 1);
        watch.ping(1, 1);
        let hung_at = Instant::now();
        watch.supervisor.send(1, b"hang").unwrap();
        watch.wait("shard 1 declared hung", |event| {
            matches!(
                event,
                Event::Hung {
                    shard: 1,
                    generation: 1
                }
            )
            .then_some(())
        });
        let silent = hung_at.elapsed();
        assert!(
            silent >= Duration::from_millis(2900),
            "declared hung after only {silent:?}"
        );
        let (exit, restart_in) = watch.exited(1, 1);
        assert!(is_signal(exit, libc::SIGKILL), "{exit}");
        assert!(restart_in.is_some());
        watch.started(1, 2);
        watch.ping(1, 2);
        watch.ping(0, 1);
        watch.supervisor.shutdown().unwrap();
    });
}

/// The state letter of process `pid` from `/proc`, or `None` if it is gone.
fn process_state(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ppid ...": comm may contain spaces, so split after ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?.chars().next()?;
    let parent = fields.next()?.parse().ok()?;
    Some((state, parent))
}

#[test]
fn shutdown_leaves_no_zombies_or_strays() {
    let config = config("shutdown_leaves_no_zombies_or_strays", 3)
        .shutdown_grace(Duration::from_millis(500));
    let supervisor = shard::start(config, |me| {
        if me.id() == 2 {
            // A stubborn shard: only SIGKILL ends it.
            // SAFETY: setting a signal's action to "ignore" has no preconditions.
            unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
        }
        serve(me)
    })
    .unwrap();
    within(LIMIT, move || {
        let mut watch = Watch::new(supervisor);
        let pids: Vec<u32> = (0..3).map(|shard| watch.started(shard, 1)).collect();
        for shard in 0..3 {
            watch.ping(shard, 1);
        }
        let started = Instant::now();
        watch.supervisor.shutdown().unwrap();
        assert!(
            started.elapsed() >= Duration::from_millis(450),
            "the stubborn shard was given the grace period"
        );
        let me = std::process::id();
        for pid in pids {
            // Gone, or the pid already reused by a process that is not ours.
            if let Some((state, parent)) = process_state(pid) {
                assert_ne!(parent, me, "shard {pid} is still our child (state {state})");
            }
        }
    });
}

#[test]
fn killing_the_supervisor_takes_its_shards_down() {
    const TEST: &str = "killing_the_supervisor_takes_its_shards_down";
    if std::env::var_os("SHARD_TEST_INNER_SUPERVISOR").is_some() {
        // We are the supervisor process the outer test runs (or one of its
        // shards: then `start` does not return).
        let supervisor = shard::start(config(TEST, 3), serve).unwrap();
        while let Some(event) = supervisor.recv() {
            if let Event::Started { pid, .. } = event {
                println!("shard-pid {pid}");
            }
        }
        return;
    }
    within(LIMIT, || {
        // Orphans of our descendants become our children instead of init's,
        // so we can reap the shards and see what killed them. Process-wide,
        // but harmless to the other tests: only processes orphaned below us
        // are affected, and they are reaped here or at our exit.
        // SAFETY: prctl with integer arguments only.
        assert_eq!(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) }, 0);
        /// Kills the inner supervisor even if this test fails half-way.
        struct Reap(std::process::Child);
        impl Drop for Reap {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let mut inner = Reap(
            std::process::Command::new(std::env::current_exe().unwrap())
                .args([TEST, "--exact", "--nocapture", "--test-threads=1"])
                .env("SHARD_TEST_INNER_SUPERVISOR", "1")
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let stdout = std::io::BufReader::new(inner.0.stdout.take().unwrap());
        let mut lines = std::io::BufRead::lines(stdout);
        let mut pids = Vec::new();
        while pids.len() < 3 {
            let line = lines
                .next()
                .expect("the inner supervisor printed its shards")
                .unwrap();
            // libtest's "test <name> ... " may share the line with our output.
            if let Some((_, pid)) = line.split_once("shard-pid ") {
                pids.push(pid.trim().parse::<u32>().unwrap());
            }
        }
        for &pid in &pids {
            assert!(process_state(pid).is_some(), "shard {pid} runs");
        }
        drop(inner); // SIGKILL: no chance to clean up, then reaped
        let deadline = Instant::now() + Duration::from_secs(30);
        for pid in pids {
            // Each shard is re-parented to us when the supervisor dies; reap
            // it and check the kernel's parent-death SIGKILL is what ended it.
            loop {
                let mut status = 0;
                // SAFETY: waitpid writes the status into a local integer.
                let reaped = unsafe { libc::waitpid(pid as i32, &mut status, libc::WNOHANG) };
                if reaped == pid as i32 {
                    assert!(
                        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL,
                        "shard {pid} ended with status {status:#x}, not by SIGKILL"
                    );
                    break;
                }
                // 0: still running; -1 (ECHILD): not re-parented to us yet.
                assert!(
                    Instant::now() < deadline,
                    "shard {pid} outlived its supervisor by 30 s"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            assert!(process_state(pid).is_none(), "shard {pid} reaped");
        }
    });
}

#[test]
fn a_termination_signal_shuts_the_shards_down() {
    const TEST: &str = "a_termination_signal_shuts_the_shards_down";
    if std::env::var_os("SHARD_TEST_TERMINATION").is_some() {
        // We are the supervisor process the outer test runs (or its shard:
        // then `start` does not return). The handlers are process-wide, so
        // they are installed here rather than in the test harness.
        let supervisor = shard::start(config(TEST, 1), serve).unwrap();
        supervisor.watch_termination_signals().unwrap();
        let again = supervisor.watch_termination_signals().unwrap_err();
        assert_eq!(again.kind(), std::io::ErrorKind::AlreadyExists);
        let mut watch = Watch::new(supervisor);
        watch.started(0, 1);
        watch.ping(0, 1);
        // SAFETY: kill with integer arguments only.
        assert_eq!(unsafe { libc::kill(libc::getpid(), libc::SIGTERM) }, 0);
        watch.wait("the supervisor stopping on SIGTERM", |event| {
            matches!(
                event,
                Event::Stopping {
                    reason: shard::StopReason::Signal(libc::SIGTERM)
                }
            )
            .then_some(())
        });
        watch.supervisor.wait().unwrap();
        println!("stopped by SIGTERM");
        return;
    }
    let output = within(LIMIT, || {
        common::run_child(TEST, &[("SHARD_TEST_TERMINATION", "1")])
    });
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "status {:?}\n{stdout}\n{stderr}",
        output.status
    );
    assert!(stdout.contains("stopped by SIGTERM"), "{stdout}");
}
