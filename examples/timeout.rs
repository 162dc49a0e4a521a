//! A timeout built from a scope's deadline: `with_timeout` runs an
//! operation as the body of a scope with `scope::Builder::timeout`; when
//! the time is up, everything the operation started (here, fibers that
//! "fetch" from two slow replicas) is cancelled and the caller gets
//! `Err(Elapsed)`, with nothing left running.
//!
//! Prints the fast operation's result, then the slow one's timeout.

use std::time::{Duration, Instant};

/// Runs `operation` with `timeout`; it may spawn fibers in the scope it
/// is given, which are cancelled with it.
fn with_timeout<'env, T, F>(timeout: Duration, operation: F) -> Result<T, spindle::scope::Elapsed>
where
    F: for<'scope> FnOnce(&'scope spindle::scope::Scope<'scope, 'env>) -> T + Send,
    T: Send,
{
    spindle::scope::Builder::new()
        .timeout(timeout)
        .scope(operation)
}

/// A "fetch" that takes `delay`.
fn fetch(replica: &str, delay: Duration) -> String {
    spindle::time::sleep(delay);
    format!("answer from {replica}")
}

pub fn main() {
    let fast = with_timeout(Duration::from_secs(5), |s| {
        let a = s.spawn(|| fetch("replica a", Duration::from_millis(10)));
        let b = s.spawn(|| fetch("replica b", Duration::from_millis(20)));
        (a.join().unwrap(), b.join().unwrap())
    });
    println!("fast: {fast:?}");

    let started = Instant::now();
    let slow = with_timeout(Duration::from_millis(100), |s| {
        let a = s.spawn(|| fetch("replica a", Duration::from_secs(3600)));
        a.join()
    });
    let elapsed = slow.expect_err("the hour-long fetch cannot finish in time");
    println!(
        "slow: {elapsed} (after {} ms)",
        started.elapsed().as_millis()
    );
}
