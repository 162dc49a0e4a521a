//! Network I/O cost: a 64-byte TCP round trip over loopback between two
//! fibers (`spindle::net`) and between two threads (`std::net`), with one
//! connection and with 100 busy at once, in one criterion run.
//!
//! `cargo bench --bench io`. With 100 connections the figure is time per
//! round trip across all of them (a throughput); the echo example's
//! `compare` mode does the same at larger scale, in separate processes.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};

const MESSAGE: usize = 64;

fn echo(mut stream: impl Read + Write) {
    let mut buf = [0; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

fn client<S: Read + Write>(mut stream: S, round_trips: u64) -> S {
    let message = [7u8; MESSAGE];
    let mut reply = [0u8; MESSAGE];
    for _ in 0..round_trips {
        stream.write_all(&message).unwrap();
        stream.read_exact(&mut reply).unwrap();
    }
    stream
}

/// How many of `iters` round trips client `index` of `connections` makes.
fn share(iters: u64, connections: usize, index: usize) -> u64 {
    let connections = connections as u64;
    iters / connections + u64::from((index as u64) < iters % connections)
}

/// `connections` fiber clients, each connected to a fiber echo server;
/// set up once and reused by every sample (no connection churn).
fn fiber_streams(rt: &spindle::Runtime, connections: usize) -> Vec<spindle::net::TcpStream> {
    rt.block_on(|| {
        let listener = spindle::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let server = spindle::spawn(move || {
            for _ in 0..connections {
                let (stream, _) = listener.accept().unwrap();
                stream.set_nodelay(true).unwrap();
                spindle::spawn(move || echo(stream));
            }
        });
        let streams = (0..connections)
            .map(|_| {
                let stream = spindle::net::TcpStream::connect(address).unwrap();
                stream.set_nodelay(true).unwrap();
                stream
            })
            .collect();
        server.join().unwrap();
        streams
    })
}

/// `iters` round trips spread over the fiber clients.
fn fibers(
    rt: &spindle::Runtime,
    streams: &mut Vec<spindle::net::TcpStream>,
    iters: u64,
) -> Duration {
    let connections = streams.len();
    let taken = std::mem::take(streams);
    let (elapsed, back) = rt.block_on(move || {
        let start = Instant::now();
        let clients: Vec<_> = taken
            .into_iter()
            .enumerate()
            .map(|(i, stream)| spindle::spawn(move || client(stream, share(iters, connections, i))))
            .collect();
        let back: Vec<_> = clients.into_iter().map(|c| c.join().unwrap()).collect();
        (start.elapsed(), back)
    });
    *streams = back;
    elapsed
}

/// The same with one OS thread per client and per server connection.
fn thread_streams(connections: usize) -> Vec<std::net::TcpStream> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        for _ in 0..connections {
            let (stream, _) = listener.accept().unwrap();
            stream.set_nodelay(true).unwrap();
            std::thread::spawn(move || echo(stream));
        }
    });
    let streams = (0..connections)
        .map(|_| {
            let stream = std::net::TcpStream::connect(address).unwrap();
            stream.set_nodelay(true).unwrap();
            stream
        })
        .collect();
    server.join().unwrap();
    streams
}

fn threads(streams: &mut Vec<std::net::TcpStream>, iters: u64) -> Duration {
    let connections = streams.len();
    let start = Instant::now();
    let clients: Vec<_> = std::mem::take(streams)
        .into_iter()
        .enumerate()
        .map(|(i, stream)| std::thread::spawn(move || client(stream, share(iters, connections, i))))
        .collect();
    *streams = clients.into_iter().map(|c| c.join().unwrap()).collect();
    start.elapsed()
}

fn round_trip(c: &mut Criterion) {
    let rt = spindle::Builder::new().workers(2).build().unwrap();
    for connections in [1, 100] {
        let mut group = c.benchmark_group(format!("tcp_round_trip_{connections}_connections"));
        group.measurement_time(Duration::from_secs(3));
        let mut streams = fiber_streams(&rt, connections);
        group.bench_function("fibers_spindle_net", |b| {
            b.iter_custom(|iters| fibers(&rt, &mut streams, iters))
        });
        drop(streams);
        let mut streams = thread_streams(connections);
        group.bench_function("threads_std_net", |b| {
            b.iter_custom(|iters| threads(&mut streams, iters))
        });
        group.finish();
    }
}

criterion_group!(benches, round_trip);
criterion_main!(benches);
