//! spindle::process with real child processes: output that would deadlock
//! a sequential reader, a child read and waited for while a heartbeat
//! ticks on one worker with no spare threads, two hundred children waited
//! for at once, kill and timeouts, pipes both ways, plain threads, and
//! registrations gone at shutdown.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use common::within;
use spindle::process::{Command, Stdio};
use spindle::Builder;

const LIMIT: Duration = Duration::from_secs(120);

fn runtime(workers: usize) -> spindle::Runtime {
    Builder::new().workers(workers).build().unwrap()
}

/// Writes a megabyte to stderr, then one to stdout: a parent that read
/// stdout to its end before stderr would wait forever on a child blocked
/// on a full stderr pipe.
fn stderr_first() -> Command {
    let mut command = Command::new("sh");
    command.args([
        "-c",
        "head -c 1000000 /dev/zero >&2; head -c 1000000 /dev/zero | tr '\\0' x",
    ]);
    command
}

#[test]
fn output_reads_both_pipes_at_once_in_a_fiber_and_on_a_thread() {
    within(LIMIT, || {
        let rt = runtime(1);
        for output in [
            rt.block_on(|| stderr_first().output().unwrap()),
            stderr_first().output().unwrap(),
        ] {
            assert!(output.status.success());
            assert_eq!(output.stderr.len(), 1_000_000);
            assert!(output.stderr.iter().all(|&b| b == 0));
            assert_eq!(output.stdout.len(), 1_000_000);
            assert!(output.stdout.iter().all(|&b| b == b'x'));
        }
    });
}

#[test]
fn a_child_is_read_and_waited_for_while_a_heartbeat_ticks_on_one_worker() {
    within(LIMIT, || {
        let rt = common::one_worker_no_spares();
        let (output, status, during_output, during_wait) = rt.block_on(|| {
            let heartbeat = common::Heartbeat::start();
            let before = heartbeat.beats();
            let output = Command::new("sh")
                .args(["-c", "sleep 0.2; echo late"])
                .output()
                .unwrap();
            let during_output = heartbeat.beats() - before;
            let before = heartbeat.beats();
            let status = Command::new("sleep").arg("0.2").status().unwrap();
            let during_wait = heartbeat.beats() - before;
            heartbeat.stop();
            (output, status, during_output, during_wait)
        });
        assert_eq!(output.stdout, b"late\n");
        assert!(status.success());
        // 200 ms each at a beat per 2 ms; a tenth of that proves the worker
        // was free, under any load.
        assert!(during_output >= 10, "{during_output} beats during output");
        assert!(during_wait >= 10, "{during_wait} beats during wait");
    });
}

#[test]
fn two_hundred_children_are_waited_for_at_once() {
    within(LIMIT, || {
        const CHILDREN: i32 = 200;
        let rt = runtime(2);
        let start = Instant::now();
        let codes = rt.block_on(|| {
            let waiters: Vec<_> = (0..CHILDREN)
                .map(|i| {
                    spindle::spawn(move || {
                        let mut child = Command::new("sh")
                            .args(["-c", &format!("sleep 0.5; exit {}", i % 100)])
                            .spawn()
                            .unwrap();
                        child.wait().unwrap().code().unwrap()
                    })
                })
                .collect();
            waiters
                .into_iter()
                .map(|w| w.join().unwrap())
                .collect::<Vec<_>>()
        });
        let elapsed = start.elapsed();
        assert_eq!(codes, (0..CHILDREN).map(|i| i % 100).collect::<Vec<_>>());
        // One after the other they would take CHILDREN * 0.5 s.
        assert!(elapsed < Duration::from_secs(30), "took {elapsed:?}");
        let report = rt.shutdown();
        assert_eq!(report.io_registrations, 0, "every pidfd deregistered");
    });
}

#[test]
fn kill_wait_timeout_and_try_wait_as_std() {
    within(LIMIT, || {
        let rt = runtime(2);
        rt.block_on(|| {
            let mut child = Command::new("sleep").arg("30").spawn().unwrap();
            let start = Instant::now();
            assert!(child
                .wait_timeout(Duration::from_millis(20))
                .unwrap()
                .is_none());
            assert!(start.elapsed() >= Duration::from_millis(20));
            assert!(child.try_wait().unwrap().is_none());
            child.kill().unwrap();
            let status = child.wait().unwrap();
            assert_eq!(status.signal(), Some(9));
            assert_eq!(child.wait().unwrap(), status, "the status is kept");
            assert_eq!(child.try_wait().unwrap(), Some(status));

            let error = Command::new("/no/such/program").spawn().unwrap_err();
            assert_eq!(error.kind(), ErrorKind::NotFound);
        });
    });
}

#[test]
fn a_megabyte_through_cat_with_a_writer_and_a_reader_fiber() {
    within(LIMIT, || {
        let rt = runtime(2);
        rt.block_on(|| {
            let mut cat = Command::new("cat")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let mut stdin = cat.stdin.take().unwrap();
            let mut stdout = cat.stdout.take().unwrap();
            let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
            let expected = data.clone();
            let writer = spindle::spawn(move || stdin.write_all(&data).unwrap());
            let mut echoed = Vec::new();
            stdout.read_to_end(&mut echoed).unwrap();
            writer.join().unwrap();
            assert!(echoed == expected, "cat echoed every byte in order");
            assert!(cat.wait().unwrap().success());
        });
    });
}

#[test]
fn a_plain_thread_spawns_waits_and_times_out() {
    within(LIMIT, || {
        assert_eq!(
            Command::new("sh")
                .args(["-c", "exit 5"])
                .status()
                .unwrap()
                .code(),
            Some(5)
        );
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        assert!(child
            .wait_timeout(Duration::from_millis(10))
            .unwrap()
            .is_none());
        child.kill().unwrap();
        assert_eq!(child.wait().unwrap().signal(), Some(9));
        let mut stdout = Command::new("echo")
            .arg("thread")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
            .stdout
            .take()
            .unwrap();
        let mut text = String::new();
        stdout.read_to_string(&mut text).unwrap();
        assert_eq!(text, "thread\n");
    });
}

#[test]
fn output_keeps_the_streams_the_caller_set_and_spawn_keeps_its_defaults() {
    within(LIMIT, || {
        let rt = runtime(1);
        rt.block_on(|| {
            let mut command = Command::new("sh");
            command
                .args(["-c", "echo out; echo err >&2"])
                .stdout(Stdio::null());
            let output = command.output().unwrap();
            assert!(output.stdout.is_empty(), "stdout was set to null");
            assert_eq!(output.stderr, b"err\n", "stderr captured by default");
            // After `output`, `spawn` inherits again: no pipes.
            let mut quiet = Command::new("true");
            quiet.output().unwrap();
            let mut child = quiet.spawn().unwrap();
            assert!(child.stdout.is_none() && child.stderr.is_none() && child.stdin.is_none());
            child.wait().unwrap();
        });
    });
}
