//! WebSocket with `tungstenite`, unmodified, over `spindle::net::TcpStream`:
//! tungstenite's blocking `WebSocket<S>` takes any `Read + Write`, so a
//! fiber per connection runs the upgrade handshake and a message echo as
//! plain blocking code, parking wherever the socket would block.
//!
//! ```text
//! cargo run --release --example websocket -- server [--addr 127.0.0.1:9001] [--workers 2]
//! cargo run --release --example websocket -- client [--addr 127.0.0.1:9001] [--connections 1000]
//!                                                   [--seconds 3] [--size 64] [--workers 2]
//! ```
//!
//! - `server` prints `listening on ADDRESS`; each connection is a fiber
//!   that completes the upgrade and sends every data message back.
//! - `client` opens `--connections` WebSocket connections at once
//!   (fibers), each sending `--size`-byte binary messages and waiting for
//!   the echo for `--seconds`, every echo checked; it prints upgrades per
//!   second and round trips per second.
//!
//! The same server on tokio (tokio-tungstenite) is `ws_echo` in
//! `benches/vs/peers`, so one client measures both.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use spindle::net::{TcpListener, TcpStream};
use tungstenite::Message;

struct Options {
    mode: String,
    addr: String,
    workers: usize,
    connections: usize,
    seconds: f64,
    size: usize,
}

fn main() {
    let options = options();
    match options.mode.as_str() {
        "server" => server(&options),
        "client" => client(&options),
        other => usage(&format!("unknown mode {other}")),
    }
}

fn server(options: &Options) {
    let rt = spindle::Builder::new()
        .workers(options.workers)
        .build()
        .unwrap();
    rt.block_on(|| {
        let listener = TcpListener::bind(&options.addr).unwrap();
        println!("listening on {}", listener.local_addr().unwrap());
        loop {
            let Ok((stream, _)) = listener.accept() else {
                continue;
            };
            spindle::spawn(move || {
                let _ = stream.set_nodelay(true);
                let Ok(mut socket) = tungstenite::accept(stream) else {
                    return;
                };
                // The plain blocking loop: read a message, send it back.
                loop {
                    match socket.read() {
                        Ok(message @ (Message::Binary(_) | Message::Text(_))) => {
                            if socket.send(message).is_err() {
                                return;
                            }
                        }
                        Ok(_) => {} // pings are answered by tungstenite itself
                        Err(_) => return,
                    }
                }
            });
        }
    });
}

fn client(options: &Options) {
    let address: std::net::SocketAddr = options.addr.parse().expect("an IP address and port");
    let (connections, size, seconds) = (options.connections, options.size, options.seconds);
    let rt = spindle::Builder::new()
        .workers(options.workers)
        .build()
        .unwrap();
    rt.block_on(move || {
        let ready = Arc::new(spindle::sync::Barrier::new(connections + 1));
        let stop = Arc::new(AtomicBool::new(false));
        let trips = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let fibers: Vec<_> = (0..connections)
            .map(|index| {
                let (ready, stop, trips) = (ready.clone(), stop.clone(), trips.clone());
                spindle::spawn(move || {
                    let tcp = connect_with_retry(address);
                    tcp.set_nodelay(true).unwrap();
                    let url = format!("ws://{address}/");
                    let (mut socket, _) = tungstenite::client(url.as_str(), tcp).expect("upgrade");
                    let message: Vec<u8> = (0..size).map(|i| (index + i) as u8).collect();
                    ready.wait();
                    let mut count = 0;
                    while !stop.load(Ordering::Relaxed) {
                        socket.send(Message::binary(message.clone())).unwrap();
                        match socket.read().unwrap() {
                            Message::Binary(reply) => {
                                assert_eq!(&reply[..], &message[..], "echo differs")
                            }
                            other => panic!("unexpected message {other:?}"),
                        }
                        count += 1;
                    }
                    let _ = socket.close(None);
                    trips.fetch_add(count, Ordering::Relaxed);
                })
            })
            .collect();
        ready.wait();
        let upgrades = start.elapsed();
        let measuring = Instant::now();
        spindle::time::sleep(Duration::from_secs_f64(seconds));
        stop.store(true, Ordering::Relaxed);
        fibers.into_iter().for_each(|f| f.join().unwrap());
        let elapsed = measuring.elapsed();
        let trips = trips.load(Ordering::Relaxed);
        println!(
            "{connections} WebSocket connections: upgrades in {:.2} s = {:.0}/s; \
             {trips} round trips in {:.2} s = {:.0}/s",
            upgrades.as_secs_f64(),
            connections as f64 / upgrades.as_secs_f64(),
            elapsed.as_secs_f64(),
            trips as f64 / elapsed.as_secs_f64(),
        );
    });
}

/// Connects, retrying while a burst of connects overflows the backlog.
fn connect_with_retry(address: std::net::SocketAddr) -> TcpStream {
    for _ in 0..20 {
        match TcpStream::connect_timeout(&address, Duration::from_secs(10)) {
            Ok(stream) => return stream,
            Err(_) => spindle::time::sleep(Duration::from_millis(50)),
        }
    }
    panic!("cannot connect to {address}")
}

fn options() -> Options {
    let mut args = std::env::args().skip(1);
    let mut options = Options {
        mode: args.next().unwrap_or_else(|| usage("no mode given")),
        addr: "127.0.0.1:9001".into(),
        workers: 2,
        connections: 1000,
        seconds: 3.0,
        size: 64,
    };
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        match flag.as_str() {
            "--addr" => options.addr = value,
            "--workers" => options.workers = parse(&value),
            "--connections" => options.connections = parse(&value),
            "--seconds" => options.seconds = parse(&value),
            "--size" => options.size = parse(&value),
            _ => usage(&format!("unknown flag {flag}")),
        }
    }
    options
}

fn parse<T: std::str::FromStr>(text: &str) -> T {
    text.parse()
        .unwrap_or_else(|_| usage(&format!("cannot parse {text:?}")))
}

fn usage(problem: &str) -> ! {
    eprintln!("websocket: {problem}\nusage: websocket server|client [flags] (see the top of examples/websocket.rs)");
    std::process::exit(2)
}
