//! `examples/websocket.rs`'s server on tokio and tokio-tungstenite: the
//! same upgrade and the same echo of every data message. Drive it with
//! `cargo run --release --example websocket -- client --addr ADDR` from
//! spindle's root.

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

fn main() {
    let (addr, workers) = args("127.0.0.1:9002");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_io()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let listener = TcpListener::bind(addr.as_str()).await.expect("bind");
        println!("listening on {}", listener.local_addr().unwrap());
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            tokio::spawn(async move {
                let _ = stream.set_nodelay(true);
                let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else { return };
                while let Some(Ok(message)) = socket.next().await {
                    if matches!(message, Message::Binary(_) | Message::Text(_))
                        && socket.send(message).await.is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
}

fn args(default_addr: &str) -> (String, usize) {
    let mut addr = default_addr.to_string();
    let mut workers = 2;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => addr = value,
            "--workers" => workers = value.parse().expect("--workers N"),
            _ => panic!("usage: [--addr HOST:PORT] [--workers N]"),
        }
    }
    (addr, workers)
}
