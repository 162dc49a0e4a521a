//! Isolation: threads share memory and can collide; processes cannot,
//! and must ship their results over IPC.
//!
//! ```text
//! cargo run --release --example isolation -- [--increments 10000000]
//! ```
//!
//! First two OS threads add 1 to one shared counter `--increments` times
//! each without a lock (a separate atomic load and store per increment: a
//! race, but no undefined behaviour), and updates are lost whenever both
//! read the same value. Then two shard processes each count to the same
//! number in their own memory, where nothing else can touch the counter,
//! and send their totals to the supervisor over their sockets; the sum is
//! exact. Prints both totals beside the expected one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use spindle::shard::{self, Config, Event, Incoming, Peer, Shard};

fn increments() -> u64 {
    std::env::args()
        .skip_while(|arg| arg != "--increments")
        .nth(1)
        .map_or(10_000_000, |value| {
            value.replace('_', "").parse().expect("--increments N")
        })
}

/// A shard: on `count`, counts in its own memory and reports the total.
fn count_alone(me: Shard) {
    while let Ok(incoming) = me.recv() {
        if let Incoming::Message {
            from: Peer::Supervisor,
            ..
        } = incoming
        {
            // The same load-then-store as the threads: only this process can
            // see this counter, so no update can be lost.
            let counter = AtomicU64::new(0);
            for _ in 0..increments() {
                let value = counter.load(Ordering::Relaxed);
                counter.store(value + 1, Ordering::Relaxed);
            }
            let total = counter.load(Ordering::Relaxed);
            me.send_to_supervisor(&total.to_le_bytes()).unwrap();
        }
    }
}

fn main() {
    let supervisor = shard::start(Config::new(2).workers(1), count_alone).expect("start shards");
    let increments = increments();
    let expected = 2 * increments;
    // Let the shards finish starting first, so they do not take the cores
    // the racing threads need.
    let mut shards = Vec::new();
    while shards.len() < 2 {
        match supervisor.recv().expect("the supervisor runs") {
            Event::Started { shard, .. } => shards.push(shard),
            Event::Exited { shard, exit, .. } => panic!("shard {shard} {exit}"),
            _ => {}
        }
    }

    let shared = Arc::new(AtomicU64::new(0));
    let start_line = Arc::new(std::sync::Barrier::new(2));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let shared = shared.clone();
            let start_line = start_line.clone();
            std::thread::spawn(move || {
                start_line.wait(); // both race from the start
                for _ in 0..increments {
                    let value = shared.load(Ordering::Relaxed);
                    shared.store(value + 1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let threads_total = shared.load(Ordering::Relaxed);
    println!(
        "2 threads, one shared counter:  {threads_total:>10} of {expected} ({} updates lost)",
        expected - threads_total
    );

    for shard in shards {
        supervisor.send(shard, b"count").unwrap();
    }
    let mut totals = Vec::new();
    while totals.len() < 2 {
        match supervisor.recv().expect("the supervisor runs") {
            Event::Message { bytes, .. } => {
                totals.push(u64::from_le_bytes(bytes.try_into().expect("8 bytes")));
            }
            Event::Exited { shard, exit, .. } => panic!("shard {shard} {exit}"),
            _ => {}
        }
    }
    let processes_total: u64 = totals.iter().sum();
    println!(
        "2 processes, a counter each:    {processes_total:>10} of {expected} (counts {totals:?} shipped over IPC and added)"
    );
    assert_eq!(processes_total, expected);
    supervisor.shutdown().expect("clean shutdown");
}
