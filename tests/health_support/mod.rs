//! Shared pieces of the health tests: an HTTP backend that can be killed
//! outright (listener and every open connection) and restarted on the same
//! port, with a settable `/healthz` answer; fake TCP servers; a checker
//! started from YAML; a deadline loop.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sluice::counters::{CheckResult, Region};
use sluice::health::{HealthChecker, HealthHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// `/healthz` status meaning "alternate 200 and 500, starting with 200".
pub const ALTERNATE: u16 = 0;

/// An HTTP/1.1 backend written on raw sockets. `/healthz` answers
/// `health` (or alternates, see [`ALTERNATE`]); any other path answers 200
/// `name` and counts a hit. [`HealthBackend::kill`] closes the listener and
/// every connection, so the port refuses from then on.
pub struct HealthBackend {
    pub name: &'static str,
    pub addr: SocketAddr,
    pub health: Arc<AtomicU16>,
    pub hits: Arc<AtomicUsize>,
    pub probes: Arc<AtomicUsize>,
    tasks: Option<JoinSet<()>>,
    stopping: tokio::sync::watch::Sender<bool>,
}

impl HealthBackend {
    pub async fn start(name: &'static str) -> HealthBackend {
        HealthBackend::start_on(name, "127.0.0.1:0".parse().unwrap()).await
    }

    /// Listens on `addr` (an earlier backend's, to restart it).
    pub async fn start_on(name: &'static str, addr: SocketAddr) -> HealthBackend {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let health = Arc::new(AtomicU16::new(200));
        let hits = Arc::new(AtomicUsize::new(0));
        let probes = Arc::new(AtomicUsize::new(0));
        let mut tasks = JoinSet::new();
        let (h, n, p) = (health.clone(), hits.clone(), probes.clone());
        let (stopping, stop) = tokio::sync::watch::channel(false);
        tasks.spawn(async move {
            let mut conns: JoinSet<()> = JoinSet::new();
            let mut stopped = stop.clone();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let (h, n, p) = (h.clone(), n.clone(), p.clone());
                        conns.spawn(serve(stream, name, h, n, p, stop.clone()));
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                    _ = stopped.wait_for(|s| *s) => break,
                }
            }
            // Serve what already waits in the accept queue, as a server
            // shutting down gracefully does, then close the port.
            while let Ok(Ok((stream, _))) =
                tokio::time::timeout(Duration::from_millis(5), listener.accept()).await
            {
                let (h, n, p) = (h.clone(), n.clone(), p.clone());
                conns.spawn(serve(stream, name, h, n, p, stop.clone()));
            }
            drop(listener);
            let drained = async { while conns.join_next().await.is_some() {} };
            let _ = tokio::time::timeout(Duration::from_secs(2), drained).await;
        });
        HealthBackend {
            name,
            addr,
            health,
            hits,
            probes,
            tasks: Some(tasks),
            stopping,
        }
    }

    /// Sets what `/healthz` answers.
    pub fn set_health(&self, status: u16) {
        self.health.store(status, Ordering::SeqCst);
    }

    /// Stops like a server shutting down gracefully: the port refuses at
    /// once, and each open connection closes at its next request boundary
    /// (after the response in progress). Returns once all are closed.
    pub async fn kill(&mut self) {
        let _ = self.stopping.send(true);
        if let Some(mut tasks) = self.tasks.take() {
            while tasks.join_next().await.is_some() {}
        }
    }
}

async fn serve(
    mut stream: tokio::net::TcpStream,
    name: &'static str,
    health: Arc<AtomicU16>,
    hits: Arc<AtomicUsize>,
    probes: Arc<AtomicUsize>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    // A new connection has a request on its way: serve it before closing.
    let mut served = false;
    loop {
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            tokio::select! {
                biased;
                read = stream.read(&mut chunk) => match read {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                },
                _ = stop.wait_for(|s| *s), if buf.is_empty() && served => return,
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        buf.drain(..end + 4);
        let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
        let close = head.contains("connection: close");
        let status = if path == "/healthz" {
            let count = probes.fetch_add(1, Ordering::SeqCst);
            match health.load(Ordering::SeqCst) {
                ALTERNATE if count.is_multiple_of(2) => 200,
                ALTERNATE => 500,
                status => status,
            }
        } else {
            hits.fetch_add(1, Ordering::SeqCst);
            200
        };
        let response = format!(
            "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nx-backend: {name}\r\n\r\n{name}",
            name.len()
        );
        served = true;
        let stopping = *stop.borrow();
        if stream.write_all(response.as_bytes()).await.is_err() || close || stopping {
            return;
        }
    }
}

/// What a fake TCP server does with each connection.
#[derive(Clone, Copy)]
pub enum Fake {
    /// Reads once, writes these bytes, closes.
    Reply(&'static [u8]),
    /// Closes at once.
    Close,
    /// Accepts and never answers.
    Hang,
}

/// A fake server on 127.0.0.1:0; runs until the test runtime ends.
pub async fn fake(behaviour: Fake) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                match behaviour {
                    Fake::Close => {}
                    Fake::Hang => {
                        let _ = stream.read(&mut buf).await;
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                    }
                    Fake::Reply(bytes) => {
                        let _ = stream.read(&mut buf).await;
                        let _ = stream.write_all(bytes).await;
                    }
                }
            });
        }
    });
    addr
}

/// An `upstreams:` entry with a health check (the part inside `{ }`).
pub fn upstream(id: &str, addr: SocketAddr, check: &str) -> String {
    format!("  - id: {id}\n    address: {addr}\n    health_check: {{ {check} }}\n")
}

/// A whole config: `upstreams` entries and one TCP listener over them.
pub fn config(upstreams: &[String]) -> sluice::config::Config {
    let ids: Vec<String> = upstreams
        .iter()
        .map(|u| u.split_whitespace().nth(2).unwrap().to_owned())
        .collect();
    let yaml = format!(
        "upstreams:\n{}listeners:\n  - name: t\n    listen: 127.0.0.1:0\n    mode: tcp\n    upstreams: [{}]\n",
        upstreams.concat(),
        ids.join(", ")
    );
    sluice::config::parse(&yaml, Path::new("health-test.yaml"))
        .unwrap_or_else(|e| panic!("config invalid:\n{e}\n{yaml}"))
}

/// A checker over `config` with its own region (one worker row).
pub fn checker(config: &sluice::config::Config) -> (HealthHandle, Arc<Region>) {
    let region = Region::new(1).unwrap();
    let handle = HealthChecker::start(config, Arc::clone(&region)).unwrap();
    (handle, region)
}

/// Polls `condition` every 10 ms until it holds; panics with `what` after
/// `limit`. Returns the time it took.
pub async fn wait_for(
    limit: Duration,
    what: &str,
    mut condition: impl FnMut() -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        if condition() {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every check result of `slot` so far: (success, failure, timeout).
pub fn results(region: &Region, slot: usize) -> (u64, u64, u64) {
    (
        region.checks(slot, CheckResult::Success),
        region.checks(slot, CheckResult::Failure),
        region.checks(slot, CheckResult::Timeout),
    )
}
