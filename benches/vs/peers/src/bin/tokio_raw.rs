//! `examples/http_hello`'s responder, line for line, on tokio: the same
//! request-line and header parsing through a buffered reader, the same
//! response bytes, the same flush rule for pipelined requests. Serves on
//! `--addr` (default 127.0.0.1:8083) with `--workers` worker threads.

use tokio::io::{self, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};

const BODY: &str = "Hello, world!";

fn main() {
    let (addr, workers) = args("127.0.0.1:8083");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_io()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let listener = TcpListener::bind(addr.as_str()).await.expect("bind");
        println!("listening on {}", listener.local_addr().unwrap());
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(async move {
                        let _ = serve(stream).await;
                    });
                }
                Err(error) => eprintln!("accept: {error}"),
            }
        }
    });
}

async fn serve(stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let (read_half, write_half) = stream.into_split();
    let mut reader = BufReader::new(read_half);
    let mut writer = BufWriter::new(write_half);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            return writer.flush().await;
        }
        let request_line = line.trim_end();
        if request_line.is_empty() {
            continue;
        }
        let http_10 = request_line.ends_with("HTTP/1.0");
        let mut keep_alive = !http_10;
        let mut content_length = 0u64;
        let mut chunked = false;
        loop {
            line.clear();
            if reader.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let Some((name, value)) = header.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("connection") {
                if value.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if value.eq_ignore_ascii_case("keep-alive") {
                    keep_alive = true;
                }
            } else if name.eq_ignore_ascii_case("content-length") {
                content_length = value.parse().unwrap_or(0);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = !value.eq_ignore_ascii_case("identity");
            }
        }
        if chunked {
            writer
                .write_all(b"HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .await?;
            return writer.flush().await;
        }
        io::copy(&mut (&mut reader).take(content_length), &mut io::sink()).await?;
        let connection = if keep_alive {
            if http_10 {
                "Connection: keep-alive\r\n"
            } else {
                ""
            }
        } else {
            "Connection: close\r\n"
        };
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{}\r\n{}",
            BODY.len(),
            connection,
            BODY
        );
        writer.write_all(response.as_bytes()).await?;
        if !keep_alive {
            return writer.flush().await;
        }
        if reader.buffer().is_empty() {
            writer.flush().await?;
        }
    }
}

/// `--addr HOST:PORT` and `--workers N` (default 2).
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
