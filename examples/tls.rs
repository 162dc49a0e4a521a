//! TLS with `rustls`, unmodified, over `spindle::net::TcpStream`: rustls's
//! blocking `StreamOwned` takes any `Read + Write`, so a fiber per
//! connection runs the handshake and the encrypted echo as plain blocking
//! code, parking wherever the socket would block.
//!
//! ```text
//! cargo run --release --example tls -- server [--addr 127.0.0.1:8443] [--workers 2] [--cert FILE]
//! cargo run --release --example tls -- client [--addr 127.0.0.1:8443] [--connections 1000]
//!                                             [--seconds 3] [--size 64] [--workers 2] [--cert FILE]
//! ```
//!
//! - `server` makes a **test certificate at run time** (`rcgen`, for the
//!   name `localhost`; never use it for anything else), writes it (DER) to
//!   `--cert` (default: `spindle-tls-example.der` in the temporary
//!   directory) and prints `listening on ADDRESS`; each connection is a
//!   fiber that echoes what it decrypts.
//! - `client` trusts that certificate alone, opens `--connections`
//!   connections at once (fibers), each doing a full handshake and then
//!   `--size`-byte round trips for `--seconds`, every echo checked; it
//!   prints handshakes per second and round trips per second.
//!
//! The same server on tokio (tokio-rustls) is `tls_echo` in
//! `benches/vs/peers`, which writes its certificate the same way, so one
//! client measures both.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{
    ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection, StreamOwned,
};
use spindle::net::{TcpListener, TcpStream};

struct Options {
    mode: String,
    addr: String,
    workers: usize,
    connections: usize,
    seconds: f64,
    size: usize,
    cert: std::path::PathBuf,
}

fn main() {
    let options = options();
    match options.mode.as_str() {
        "server" => server(&options),
        "client" => client(&options),
        other => usage(&format!("unknown mode {other}")),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn server(options: &Options) {
    // A throwaway self-signed certificate, made fresh at every start.
    let key = rcgen::KeyPair::generate().expect("key");
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    let cert = params.self_signed(&key).expect("certificate");
    std::fs::write(&options.cert, cert.der()).expect("write the certificate");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)
        .expect("server config");
    let config = Arc::new(config);
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
            let config = config.clone();
            spindle::spawn(move || {
                let _ = stream.set_nodelay(true);
                let connection = ServerConnection::new(config).expect("server connection");
                echo(StreamOwned::new(connection, stream));
            });
        }
    });
}

/// The plain blocking echo loop, on the TLS stream.
fn echo(mut stream: impl Read + Write) {
    let mut buf = [0; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream
                    .write_all(&buf[..n])
                    .and_then(|()| stream.flush())
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

fn client(options: &Options) {
    let der = std::fs::read(&options.cert)
        .expect("read the server's certificate (start the server first)");
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(der))
        .expect("trust the certificate");
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let config = Arc::new(config);
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
                let (config, ready, stop, trips) =
                    (config.clone(), ready.clone(), stop.clone(), trips.clone());
                spindle::spawn(move || {
                    let tcp = connect_with_retry(address);
                    tcp.set_nodelay(true).unwrap();
                    let name = ServerName::try_from("localhost").unwrap();
                    let connection =
                        ClientConnection::new(config, name).expect("client connection");
                    let mut tls = StreamOwned::new(connection, tcp);
                    let message: Vec<u8> = (0..size).map(|i| (index + i) as u8).collect();
                    let mut reply = vec![0; size];
                    // The first round trip completes the handshake.
                    tls.write_all(&message).unwrap();
                    tls.read_exact(&mut reply).unwrap();
                    ready.wait();
                    let mut count = 0;
                    while !stop.load(Ordering::Relaxed) {
                        tls.write_all(&message).unwrap();
                        tls.read_exact(&mut reply).unwrap();
                        assert_eq!(reply, message, "echo differs");
                        count += 1;
                    }
                    trips.fetch_add(count, Ordering::Relaxed);
                })
            })
            .collect();
        ready.wait();
        let handshakes = start.elapsed();
        let measuring = Instant::now();
        spindle::time::sleep(Duration::from_secs_f64(seconds));
        stop.store(true, Ordering::Relaxed);
        fibers.into_iter().for_each(|f| f.join().unwrap());
        let elapsed = measuring.elapsed();
        let trips = trips.load(Ordering::Relaxed);
        println!(
            "{connections} TLS connections: handshakes (and a first echo) in {:.2} s = {:.0}/s; \
             {trips} round trips in {:.2} s = {:.0}/s",
            handshakes.as_secs_f64(),
            connections as f64 / handshakes.as_secs_f64(),
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
        addr: "127.0.0.1:8443".into(),
        workers: 2,
        connections: 1000,
        seconds: 3.0,
        size: 64,
        cert: std::env::temp_dir().join("spindle-tls-example.der"),
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
            "--cert" => options.cert = value.into(),
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
    eprintln!("tls: {problem}\nusage: tls server|client [flags] (see the top of examples/tls.rs)");
    std::process::exit(2)
}
