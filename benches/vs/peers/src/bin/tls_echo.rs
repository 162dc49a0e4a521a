//! `examples/tls.rs`'s server on tokio and tokio-rustls: the same
//! run-time test certificate (rcgen, `localhost`, written as DER to
//! `--cert`, default `spindle-tls-example.der` in the temporary
//! directory), the same ring provider, the same echo. Drive it with
//! `cargo run --release --example tls -- client --addr ADDR` from
//! spindle's root.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;

fn main() {
    let (addr, workers, cert_path) = args("127.0.0.1:8444");
    let key = rcgen::KeyPair::generate().expect("key");
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    let cert = params.self_signed(&key).expect("certificate");
    std::fs::write(&cert_path, cert.der()).expect("write the certificate");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)
        .expect("server config");
    let acceptor = TlsAcceptor::from(Arc::new(config));
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
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = stream.set_nodelay(true);
                let Ok(mut tls) = acceptor.accept(stream).await else { return };
                let mut buf = vec![0; 16 * 1024];
                loop {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if tls.write_all(&buf[..n]).await.is_err() || tls.flush().await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
}

fn args(default_addr: &str) -> (String, usize, std::path::PathBuf) {
    let mut addr = default_addr.to_string();
    let mut workers = 2;
    let mut cert = std::env::temp_dir().join("spindle-tls-example.der");
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => addr = value,
            "--workers" => workers = value.parse().expect("--workers N"),
            "--cert" => cert = value.into(),
            _ => panic!("usage: [--addr HOST:PORT] [--workers N] [--cert FILE]"),
        }
    }
    (addr, workers, cert)
}
