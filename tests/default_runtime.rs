//! The process-wide default runtime: `spindle::spawn` from plain threads,
//! `spindle::run` from `main` and from tests, its settings
//! (`SPINDLE_WORKERS`, `Builder::build_default`), and `spindle::test::run`,
//! which reports a test's fiber panics in the test's own output. Process
//! facts (the worker count a fresh process takes, where the harness files
//! a panic message, how `main` exits) are checked in child processes: this
//! test binary run again.

mod common;

use std::panic::{catch_unwind, resume_unwind};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::within;

const LIMIT: Duration = Duration::from_secs(120);

/// Set in a child process, which then runs its test's child half.
const CHILD: &str = "SPINDLE_DEFAULT_RUNTIME_CHILD";

fn in_child() -> bool {
    std::env::var_os(CHILD).is_some()
}

/// Runs this binary again with `args` and `env` (and [`CHILD`] set),
/// killing it if it runs past [`LIMIT`]; returns its output.
fn run_child(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(args)
        .env(CHILD, "1")
        .env_remove("SPINDLE_WORKERS")
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > LIMIT {
            child.kill().unwrap();
            let output = child.wait_with_output().unwrap();
            panic!(
                "child {args:?} hung; stderr:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

/// Runs the test `name` alone in a child, with its output uncaptured.
fn run_test_child(name: &str, env: &[(&str, &str)]) -> Output {
    run_child(&[name, "--exact", "--nocapture", "--test-threads=1"], env)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn spawn_from_plain_threads_uses_one_default_runtime() {
    within(LIMIT, || {
        let ran = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let ran = ran.clone();
                std::thread::spawn(move || {
                    let fibers: Vec<_> = (0..50)
                        .map(|_| {
                            let ran = ran.clone();
                            spindle::spawn(move || {
                                assert!(spindle::try_current().is_some(), "runs as a fiber");
                                spindle::yield_now();
                                ran.fetch_add(1, Ordering::SeqCst);
                            })
                        })
                        .collect();
                    for fiber in fibers {
                        fiber.join().unwrap();
                    }
                    spindle::default_runtime() as *const spindle::Runtime as usize
                })
            })
            .collect();
        let runtimes: Vec<usize> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(ran.load(Ordering::SeqCst), 200);
        assert!(
            runtimes.windows(2).all(|pair| pair[0] == pair[1]),
            "one default runtime for every thread"
        );
        assert!(spindle::default_runtime().metrics().spawned_total >= 200);
    });
}

#[test]
fn a_fiber_spawns_on_its_own_runtime_not_the_default() {
    within(LIMIT, || {
        let rt = spindle::Builder::new().workers(1).build().unwrap();
        let before = rt.metrics().spawned_total;
        rt.block_on(|| spindle::spawn(|| ()).join().unwrap());
        // block_on's fiber and the one it spawned.
        assert_eq!(rt.metrics().spawned_total - before, 2);
    });
}

#[test]
fn run_returns_the_value_and_may_borrow() {
    within(LIMIT, || {
        let mut seen = Vec::new();
        let words = ["a", "bb", "ccc"];
        let total = spindle::run(|| {
            seen.push(spindle::try_current().is_some());
            words.iter().map(|w| w.len()).sum::<usize>()
        });
        assert_eq!(total, 6);
        assert_eq!(seen, [true]);
        // On a fiber, `run` calls the closure in place.
        let nested = spindle::run(|| {
            let outer = spindle::current().id();
            spindle::run(|| spindle::current().id() == outer)
        });
        assert!(nested);
    });
}

#[test]
fn run_re_raises_a_panic_with_its_payload() {
    within(LIMIT, || {
        let payload = catch_unwind(|| spindle::run(|| std::panic::panic_any(42u32))).unwrap_err();
        assert_eq!(payload.downcast_ref::<u32>(), Some(&42));
        let payload = catch_unwind(|| spindle::test::run(|| panic!("test boom"))).unwrap_err();
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"test boom"));
        // The runtime carries on.
        assert_eq!(spindle::run(|| 1), 1);
    });
}

#[test]
#[should_panic(expected = "fails the test it runs in")]
fn test_run_fails_the_test_with_the_fibers_message() {
    spindle::test::run(|| {
        let child = spindle::spawn(|| panic!("fails the test it runs in"));
        resume_unwind(child.join().unwrap_err().into_panic());
    });
}

#[test]
fn build_default_after_the_start_is_refused() {
    within(LIMIT, || {
        let _ = spindle::default_runtime();
        let error = spindle::Builder::new()
            .workers(1)
            .build_default()
            .unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::AlreadyExists);
        assert!(error.to_string().contains("build_default"), "{error}");
    });
}

/// Child half: prints the default runtime's worker count, or (with
/// `SPINDLE_DEFAULT_RUNTIME_BUILD=N`) sets it to N with `build_default`
/// first. In the parent: checks what children with various settings say.
#[test]
fn the_worker_count_comes_from_the_environment_or_the_program() {
    if in_child() {
        if let Ok(count) = std::env::var("SPINDLE_DEFAULT_RUNTIME_BUILD") {
            let count = count.parse().unwrap();
            spindle::Builder::new()
                .workers(count)
                .build_default()
                .unwrap();
        }
        let workers = spindle::spawn(|| spindle::default_runtime().workers())
            .join()
            .unwrap();
        println!("default workers: {workers}");
        return;
    }
    let name = "the_worker_count_comes_from_the_environment_or_the_program";
    let workers_of = |env: &[(&str, &str)]| {
        let output = run_test_child(name, env);
        assert!(output.status.success(), "{env:?}: {}", text(&output.stderr));
        let stdout = text(&output.stdout);
        // The harness's own "test ... " may share the line.
        let after = stdout
            .split("default workers: ")
            .nth(1)
            .unwrap_or_else(|| panic!("no count printed: {stdout}"));
        let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<usize>().unwrap()
    };
    assert_eq!(workers_of(&[("SPINDLE_WORKERS", "3")]), 3);
    assert_eq!(workers_of(&[("SPINDLE_WORKERS", " 1 ")]), 1);
    let cores = std::thread::available_parallelism().unwrap().get();
    assert_eq!(workers_of(&[]), cores.min(1024));
    // The program's own setting wins over the environment.
    assert_eq!(
        workers_of(&[
            ("SPINDLE_WORKERS", "3"),
            ("SPINDLE_DEFAULT_RUNTIME_BUILD", "2")
        ]),
        2
    );
    for bad in ["0", "many", "-2", "1025"] {
        let output = run_test_child(name, &[("SPINDLE_WORKERS", bad)]);
        assert!(!output.status.success(), "SPINDLE_WORKERS={bad} was taken");
        let stderr = text(&output.stderr);
        assert!(
            stderr.contains("the default runtime cannot start")
                && stderr.contains(&format!("SPINDLE_WORKERS=\"{bad}\""))
                && stderr.contains("from 1 to 1024"),
            "SPINDLE_WORKERS={bad}: {stderr}"
        );
    }
}

#[allow(dead_code)] // its `main`: the child calls it from a test
#[path = "../examples/default_runtime.rs"]
mod default_runtime_example;

/// Child half: the example's `main`, in a fresh process whose first
/// spawn starts the default runtime; then a `main` whose fiber panics,
/// which must fail as a panicking `main` does.
#[test]
fn main_runs_on_the_default_runtime() {
    if in_child() {
        default_runtime_example::main();
        if std::env::var_os("SPINDLE_DEFAULT_RUNTIME_PANIC").is_some() {
            spindle::run(|| panic!("main's fiber gave up"));
        }
        return;
    }
    let name = "main_runs_on_the_default_runtime";
    let output = run_test_child(name, &[("SPINDLE_WORKERS", "2")]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(stdout.contains("default runtime: 2 workers"), "{stdout}");
    assert!(
        stdout.contains("sum of squares from plain threads: 30"),
        "{stdout}"
    );
    assert!(stdout.contains("words: 7"), "{stdout}");

    let output = run_test_child(name, &[("SPINDLE_DEFAULT_RUNTIME_PANIC", "1")]);
    assert_eq!(output.status.code(), Some(101), "as a panicking main");
    let stderr = text(&output.stderr);
    assert_eq!(
        stderr.matches("main's fiber gave up").count(),
        1,
        "printed once, by the hook: {stderr}"
    );
}

/// Child halves of `a_fiber_panic_is_reported_in_its_own_tests_output`,
/// run in this order (alphabetical, one test thread): the first starts
/// the default runtime, so its workers write to the first test's output;
/// the second's fibers panic.
#[test]
fn capture_child_1_starts_the_default_runtime() {
    let value = spindle::test::run(|| spindle::spawn(|| 7).join().unwrap());
    assert_eq!(value, 7);
}

#[test]
fn capture_child_2_panics_in_fibers() {
    let outcome = catch_unwind(|| {
        spindle::test::run(|| {
            let child = spindle::fiber::Builder::new()
                .name("doomed")
                .spawn(|| panic!("the child fiber's own message"))
                .unwrap();
            let error = child.join().unwrap_err();
            panic!("the test fiber saw: {error}");
        })
    });
    let payload = outcome.unwrap_err();
    if in_child() {
        // Fail the test, as an unguarded `test::run` would.
        resume_unwind(payload);
    }
    let message = payload.downcast_ref::<String>().unwrap();
    assert!(
        message.contains("the child fiber's own message"),
        "{message}"
    );
}

#[test]
fn a_fiber_panic_is_reported_in_its_own_tests_output() {
    if in_child() {
        return;
    }
    // Output captured, as `cargo test` runs tests.
    let output = run_child(&["capture_child_", "--test-threads=1"], &[]);
    assert!(!output.status.success(), "the second child test fails");
    let stdout = text(&output.stdout);
    let section = stdout
        .split("---- capture_child_2_panics_in_fibers stdout ----")
        .nth(1)
        .unwrap_or_else(|| panic!("no output section for the failing test: {stdout}"));
    // Both panics, the child fiber's and the test fiber's, with where.
    assert!(
        section.contains("fiber")
            && section.contains("'doomed'")
            && section.contains("panicked at tests/default_runtime.rs")
            && section.contains("the child fiber's own message"),
        "{stdout}"
    );
    assert!(
        section.contains("the test fiber saw: fiber panicked"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("---- capture_child_1_starts_the_default_runtime stdout ----"),
        "the passing test shows no output: {stdout}"
    );
}
