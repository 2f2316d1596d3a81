//! Shared pieces of the TCP tests: raw TCP upstreams on 127.0.0.1:0 (echo,
//! recording), sluice started with a `mode: tcp` listener, and waiting on
//! counters instead of sleeping.

#![allow(dead_code)]

#[path = "../sockets/mod.rs"]
pub mod sockets;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice::counters::{ListenerCounter, UpstreamCounter};
use sluice::instance::Instance;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// sluice with one tcp listener `db` in front of `upstreams` (ids `u0`,
/// `u1`, ... in order), plus `listener` keys (indented by 4) and
/// `defaults` keys (indented by 2).
pub struct Tcp {
    pub instance: Instance,
    _dir: tempfile::TempDir,
}

impl Tcp {
    pub fn start(upstreams: &[SocketAddr], listener: &str, defaults: &str) -> Tcp {
        Tcp::start_with("", upstreams, listener, defaults)
    }

    /// Like [`Tcp::start`], with top-level keys (`drain_timeout: 1s\n`) too.
    pub fn start_with(top: &str, upstreams: &[SocketAddr], listener: &str, defaults: &str) -> Tcp {
        let mut yaml =
            format!("{top}defaults:\n  health_check: {{ kind: none }}\n{defaults}upstreams:\n");
        for (i, addr) in upstreams.iter().enumerate() {
            yaml.push_str(&format!("  - id: u{i}\n    address: {addr}\n"));
        }
        let ids: Vec<String> = (0..upstreams.len()).map(|i| format!("u{i}")).collect();
        yaml.push_str(&format!(
            "listeners:\n  - name: db\n    listen: 127.0.0.1:0\n    mode: tcp\n    upstreams: [{}]\n{listener}",
            ids.join(", ")
        ));
        Tcp::from_yaml(&yaml)
    }

    /// sluice from a whole config with a tcp listener named `db`.
    pub fn from_yaml(yaml: &str) -> Tcp {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.yaml");
        std::fs::write(&path, yaml).unwrap();
        let config =
            sluice::config::load(&path).unwrap_or_else(|e| panic!("config invalid:\n{e}\n{yaml}"));
        Tcp {
            instance: Instance::start(&config).unwrap(),
            _dir: dir,
        }
    }

    /// Stops sluice (stop accepting, drain, end the worker); blocks.
    pub fn stop(self) {
        self.instance.stop();
    }

    pub fn addr(&self) -> SocketAddr {
        self.instance.address("db")
    }

    pub fn listener(&self, counter: ListenerCounter) -> u64 {
        self.instance.region.listener_total(0, counter)
    }

    pub fn upstream(&self, index: usize, counter: UpstreamCounter) -> u64 {
        self.instance.region.upstream_total(index, counter)
    }

    /// Waits (up to 10 s) until `check` holds; counters are updated by the
    /// worker thread, so tests poll them instead of sleeping a fixed time.
    pub async fn wait_for(&self, what: &str, check: impl Fn(&Tcp) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !check(self) {
            assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// What a recording server received, one entry per connection, appended
/// as bytes arrive.
pub type Received = Arc<Mutex<Vec<Vec<u8>>>>;

/// A server that records every byte it receives and answers each read with
/// `reply` (when not empty).
pub async fn recording_server(reply: &'static [u8]) -> (SocketAddr, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received: Received = Arc::default();
    let log = Arc::clone(&received);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let log = Arc::clone(&log);
            let index = {
                let mut log = log.lock().unwrap();
                log.push(Vec::new());
                log.len() - 1
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    log.lock().unwrap()[index].extend_from_slice(&buf[..n]);
                    if !reply.is_empty() && stream.write_all(reply).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, received)
}

/// Reads until end of stream, giving up after 10 s.
pub async fn read_to_end(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out))
        .await
        .expect("no end of stream within 10 s")
        .unwrap();
    out
}

/// Sends `message` and reads exactly as many bytes back.
pub async fn round_trip(stream: &mut TcpStream, message: &[u8]) -> Vec<u8> {
    stream.write_all(message).await.unwrap();
    let mut back = vec![0u8; message.len()];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut back))
        .await
        .expect("no echo within 10 s")
        .unwrap();
    back
}

/// True when the peer closed `stream` (end of stream or reset) within 5 s.
pub async fn closed_by_peer(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

/// Where PostgreSQL and Redis binaries are missing: fail under CI (the
/// servers are part of the CI image), skip with a note elsewhere.
pub fn missing(what: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{what} is not installed, and CI=true requires it");
    }
    eprintln!("skipping: {what} is not installed (set CI=true to make this fail)");
}
