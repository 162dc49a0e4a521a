//! An echo server on fibers, a load-generating client, and a side-by-side
//! comparison with a thread-per-connection `std::net` server.
//!
//! Shows: the plain blocking-style loop (`read`, then `write_all`) that a
//! fiber per connection runs, while the runtime turns it into readiness
//! events underneath; and what that buys over one OS thread per connection.
//!
//! ```text
//! cargo run --release --example echo -- server [--addr 127.0.0.1:7000] [--workers 2] [--threads]
//! cargo run --release --example echo -- client [--addr 127.0.0.1:7000] [--connections 1000]
//!                                              [--seconds 3] [--size 64] [--workers 2]
//! cargo run --release --example echo -- compare [--connections 100,1000] [--seconds 3]
//! ```
//!
//! - `server` echoes every byte back, one fiber per connection on
//!   `--workers` workers (with `--threads`: one OS thread per connection,
//!   std::net). It prints `listening on ADDRESS`.
//! - `client` opens `--connections` connections at once (fibers on its own
//!   runtime), then each sends `--size`-byte messages and waits for the echo
//!   for `--seconds`, checking every byte. It prints messages per second and
//!   round-trip latency percentiles.
//! - `compare` runs, for each connection count, the fiber server and then
//!   the thread server as child processes (each with 2 workers or as many
//!   threads as connections), drives both with the same client, and prints
//!   the throughput ratio, and the server's CPU time per round trip (from
//!   `/proc/PID/stat`): on a machine shared with other work, the kernel
//!   gives 1,000 server threads a larger share of the CPU than 2 workers,
//!   so throughput alone mixes efficiency with that share; CPU per round
//!   trip does not. Servers run in child processes so that server
//!   and client descriptors count against separate `ulimit -n` budgets
//!   (10,000 connections need 10,000 on each side).

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use spindle::net::{TcpListener, TcpStream};

struct Options {
    mode: String,
    addr: String,
    workers: usize,
    threads: bool,
    connections: Vec<usize>,
    seconds: f64,
    size: usize,
}

fn options() -> Options {
    let mut args = std::env::args().skip(1);
    let mut options = Options {
        mode: args.next().unwrap_or_else(|| usage("no mode given")),
        addr: "127.0.0.1:7000".into(),
        workers: 2,
        threads: false,
        connections: Vec::new(),
        seconds: 3.0,
        size: 64,
    };
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--addr" => options.addr = value(),
            "--workers" => options.workers = parse(&value()),
            "--threads" => options.threads = true,
            "--connections" => {
                options.connections = value().split(',').map(parse).collect();
            }
            "--seconds" => options.seconds = parse(&value()),
            "--size" => options.size = parse(&value()),
            _ => usage(&format!("unknown flag {flag}")),
        }
    }
    if options.connections.is_empty() {
        options.connections = match options.mode.as_str() {
            "compare" => vec![100, 1000],
            _ => vec![1000],
        };
    }
    options
}

fn parse<T: std::str::FromStr>(text: &str) -> T {
    text.parse()
        .unwrap_or_else(|_| usage(&format!("cannot parse {text:?}")))
}

fn usage(problem: &str) -> ! {
    eprintln!("echo: {problem}\nusage: echo server|client|compare [flags] (see the top of examples/echo.rs)");
    std::process::exit(2)
}

fn main() {
    let options = options();
    match options.mode.as_str() {
        "server" if options.threads => thread_server(&options.addr),
        "server" => fiber_server(&options.addr, options.workers),
        "client" => {
            let report = client(
                &options.addr,
                options.connections[0],
                options.seconds,
                options.size,
                options.workers,
            );
            println!("{}", report.line());
        }
        "compare" => compare(&options),
        other => usage(&format!("unknown mode {other}")),
    }
}

/// One fiber per connection: the loop a user writes.
fn fiber_server(addr: &str, workers: usize) {
    let rt = spindle::Builder::new().workers(workers).build().unwrap();
    rt.block_on(|| {
        let listener = TcpListener::bind(addr).unwrap();
        println!("listening on {}", listener.local_addr().unwrap());
        loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    spindle::spawn(move || echo_loop(stream));
                }
                // Out of descriptors, say: `accept` has already backed off;
                // log and keep serving.
                Err(error) => eprintln!("accept: {error}"),
            }
        }
    });
}

/// One OS thread per connection, std::net: the baseline.
fn thread_server(addr: &str) {
    let listener = std::net::TcpListener::bind(addr).unwrap();
    println!("listening on {}", listener.local_addr().unwrap());
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                std::thread::spawn(move || echo_loop(stream));
            }
            Err(error) => {
                eprintln!("accept: {error}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

fn echo_loop(mut stream: impl Read + Write) {
    let mut buf = [0; 16 * 1024];
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

/// What a client run measured.
struct Report {
    connections: usize,
    messages: u64,
    elapsed: Duration,
    /// Round-trip latencies in microseconds, sorted.
    latencies: Vec<u32>,
}

impl Report {
    fn per_second(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> u32 {
        if self.latencies.is_empty() {
            return 0;
        }
        let index = ((self.latencies.len() - 1) as f64 * p).round() as usize;
        self.latencies[index]
    }

    fn line(&self) -> String {
        format!(
            "{} connections: {} round trips in {:.2} s = {:.0}/s; latency p50 {} µs, p99 {} µs, p99.9 {} µs, max {} µs",
            self.connections,
            self.messages,
            self.elapsed.as_secs_f64(),
            self.per_second(),
            self.percentile(0.50),
            self.percentile(0.99),
            self.percentile(0.999),
            self.latencies.last().copied().unwrap_or(0),
        )
    }
}

/// Opens `connections` connections, then runs request/response round
/// trips on all of them for `seconds`, every echo checked byte for byte.
fn client(addr: &str, connections: usize, seconds: f64, size: usize, workers: usize) -> Report {
    let rt = spindle::Builder::new().workers(workers).build().unwrap();
    let addr = addr.to_string();
    rt.block_on(move || {
        let address: std::net::SocketAddr = spindle::net::lookup_host(addr.as_str())
            .unwrap()
            .into_iter()
            .next()
            .expect("an address");
        let ready = Arc::new(spindle::sync::Barrier::new(connections + 1));
        let stop = Arc::new(AtomicBool::new(false));
        let messages = Arc::new(AtomicU64::new(0));
        let fibers: Vec<_> = (0..connections)
            .map(|index| {
                let (ready, stop, messages) = (ready.clone(), stop.clone(), messages.clone());
                spindle::spawn(move || {
                    let mut stream = connect_with_retry(address);
                    stream.set_nodelay(true).unwrap();
                    let message: Vec<u8> = (0..size).map(|i| (index + i) as u8).collect();
                    let mut reply = vec![0; size];
                    let mut latencies = Vec::new();
                    ready.wait();
                    while !stop.load(Ordering::Relaxed) {
                        let sent = Instant::now();
                        stream.write_all(&message).unwrap();
                        stream.read_exact(&mut reply).unwrap();
                        latencies.push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32);
                        assert_eq!(reply, message, "echo differs");
                    }
                    messages.fetch_add(latencies.len() as u64, Ordering::Relaxed);
                    latencies
                })
            })
            .collect();
        ready.wait();
        let start = Instant::now();
        spindle::time::sleep(Duration::from_secs_f64(seconds));
        stop.store(true, Ordering::Relaxed);
        let mut latencies: Vec<u32> = Vec::new();
        for fiber in fibers {
            latencies.extend(fiber.join().unwrap());
        }
        let elapsed = start.elapsed();
        latencies.sort_unstable();
        Report {
            connections,
            messages: messages.load(Ordering::Relaxed),
            elapsed,
            latencies,
        }
    })
}

/// Connects, retrying while the server's backlog is full (a burst of
/// thousands of connects can overflow it; the kernel then drops SYNs and
/// the connect may fail).
fn connect_with_retry(address: std::net::SocketAddr) -> TcpStream {
    let mut tries = 0;
    loop {
        match TcpStream::connect_timeout(&address, Duration::from_secs(10)) {
            Ok(stream) => return stream,
            Err(error) if tries < 20 => {
                tries += 1;
                if tries == 1 {
                    eprintln!("connect: {error}; retrying");
                }
                spindle::time::sleep(Duration::from_millis(50));
            }
            Err(error) => panic!("connect to {address}: {error}"),
        }
    }
}

/// A server in a child process (this program, re-run in server mode).
struct Child {
    process: std::process::Child,
    addr: String,
}

impl Child {
    fn start(threads: bool) -> Child {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command.args(["server", "--addr", "127.0.0.1:0", "--workers", "2"]);
        if threads {
            command.arg("--threads");
        }
        let mut process = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(process.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("server said {line:?}"))
            .to_string();
        Child { process, addr }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

fn compare(options: &Options) {
    println!(
        "echo compare: {}-byte messages, {} s per run, client: fibers on {} workers; \
         servers: fibers on 2 workers vs one std::thread per connection",
        options.size, options.seconds, options.workers
    );
    let mut ratios = Vec::new();
    for &connections in &options.connections {
        let mut rates = [0.0; 2];
        let mut cpu_per_trip = [0.0; 2];
        for (slot, threads) in [(0, false), (1, true)] {
            let server = Child::start(threads);
            let cpu_before = process_cpu(server.process.id());
            let client_cpu_before = process_cpu(std::process::id());
            let report = client(
                &server.addr,
                connections,
                options.seconds,
                options.size,
                options.workers,
            );
            let server_cpu = process_cpu(server.process.id()) - cpu_before;
            let client_cpu = process_cpu(std::process::id()) - client_cpu_before;
            let kind = if threads { "threads" } else { "fibers " };
            rates[slot] = report.per_second();
            cpu_per_trip[slot] = server_cpu.as_secs_f64() * 1e6 / report.messages.max(1) as f64;
            println!(
                "  {kind} {}; server CPU {:.2} s = {:.1} µs per round trip; client CPU {:.2} s = {:.1} µs",
                report.line(),
                server_cpu.as_secs_f64(),
                cpu_per_trip[slot],
                client_cpu.as_secs_f64(),
                client_cpu.as_secs_f64() * 1e6 / report.messages.max(1) as f64,
            );
        }
        let ratio = rates[0] / rates[1];
        let efficiency = cpu_per_trip[1] / cpu_per_trip[0];
        println!(
            "  => {connections} connections: throughput fibers / threads = {ratio:.2}x; \
             server CPU per round trip threads / fibers = {efficiency:.2}x"
        );
        ratios.push((connections, ratio, efficiency));
    }
    print!("summary (throughput ratio, CPU-efficiency ratio):");
    for (connections, ratio, efficiency) in ratios {
        print!(" {connections} conns {ratio:.2}x, {efficiency:.2}x;");
    }
    println!();
}

/// User + system CPU time a process has used so far (`/proc/PID/stat`,
/// fields 14 and 15, in clock ticks).
fn process_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may hold spaces; count from after it.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<u64> = after_name
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
    // SAFETY: sysconf only reads a configuration value.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_nanos(ticks * 1_000_000_000 / per_second)
}
