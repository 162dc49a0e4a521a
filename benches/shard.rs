//! Message round trips at three distances, in one criterion run: two fibers
//! over a spindle channel, two threads over a std channel, and two shard
//! processes through their supervisor (shard 0 -> supervisor -> shard 1 and
//! back: four socket hops), plus supervisor <-> shard (two hops). Each
//! message is 8 bytes, as in `benches/channel.rs`.
//!
//! `cargo bench --bench shard`
//!
//! A shard does its socket I/O through `spindle::net::UnixStream`
//! (`runtime/shard/transport.rs`): a waiting fiber parks in the reactor.
//! The supervisor side runs a reader thread per shard
//! (`runtime/shard/incarnation.rs`), so its half of each hop includes a
//! thread wake-up.

use std::time::{Duration, Instant};

use criterion::Criterion;
use spindle::shard::{self, Config, Event, Incoming, Peer, Shard, Supervisor};

mod common;

/// Shard 1 echoes what shards send it; shard 0, told `run <n>` by the
/// supervisor, makes `n` round trips with shard 1 and answers with the
/// nanoseconds they took. Both echo the supervisor's other messages.
fn shard_main(me: Shard) {
    while let Ok(incoming) = me.recv() {
        let Incoming::Message { from, bytes } = incoming else {
            continue;
        };
        match from {
            Peer::Shard(peer) => me.send(peer, &bytes).unwrap(),
            Peer::Supervisor => match bytes.strip_prefix(b"run ") {
                Some(count) => {
                    let count: u64 = std::str::from_utf8(count).unwrap().parse().unwrap();
                    let nanos = round_trips_to_shard_1(&me, count).as_nanos() as u64;
                    me.send_to_supervisor(&nanos.to_le_bytes()).unwrap();
                }
                None => me.send_to_supervisor(&bytes).unwrap(),
            },
        }
    }
}

fn round_trips_to_shard_1(me: &Shard, count: u64) -> Duration {
    let start = Instant::now();
    for i in 0..count {
        me.send(1, &i.to_le_bytes()).unwrap();
        loop {
            if let Ok(Incoming::Message {
                from: Peer::Shard(1),
                bytes,
            }) = me.recv()
            {
                assert_eq!(bytes, i.to_le_bytes());
                break;
            }
        }
    }
    start.elapsed()
}

/// The next message from shard `from` (skipping other events).
fn message_from(supervisor: &Supervisor, from_shard: usize) -> Vec<u8> {
    loop {
        match supervisor.recv_timeout(Duration::from_secs(60)) {
            Some(Event::Message { from, bytes, .. }) if from == from_shard => return bytes,
            Some(Event::Exited { shard, exit, .. }) => panic!("shard {shard} {exit}"),
            Some(_) => {}
            None => panic!("no answer from shard {from_shard} within 60 s"),
        }
    }
}

fn round_trip(c: &mut Criterion, supervisor: &Supervisor) {
    let mut group = c.benchmark_group("message_round_trip");
    group.measurement_time(Duration::from_secs(3));

    let rt = spindle::Builder::new().workers(2).build().unwrap();
    group.bench_function("fibers_spindle_mpsc", |b| {
        b.iter_custom(|iters| common::fiber_channel_round_trips(&rt, iters))
    });
    drop(rt);

    group.bench_function("threads_std_mpsc", |b| {
        b.iter_custom(common::thread_channel_round_trips)
    });

    group.bench_function("supervisor_to_shard", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for i in 0..iters {
                supervisor.send(1, &i.to_le_bytes()).unwrap();
                assert_eq!(message_from(supervisor, 1), i.to_le_bytes());
            }
            start.elapsed()
        })
    });

    group.bench_function("shard_to_shard_via_supervisor", |b| {
        b.iter_custom(|iters| {
            supervisor
                .send(0, format!("run {iters}").as_bytes())
                .unwrap();
            let nanos = message_from(supervisor, 0);
            Duration::from_nanos(u64::from_le_bytes(nanos.try_into().unwrap()))
        })
    });
    group.finish();
}

fn main() {
    // First: in the shard processes (this bench binary, re-executed) this
    // runs `shard_main` and never returns.
    let supervisor = shard::start(Config::new(2).workers(1), shard_main).unwrap();
    let mut started = 0;
    while started < 2 {
        if let Some(Event::Started { .. }) = supervisor.recv() {
            started += 1;
        }
    }
    let mut criterion = Criterion::default().configure_from_args();
    round_trip(&mut criterion, &supervisor);
    criterion.final_summary();
    supervisor.shutdown().unwrap();
}
