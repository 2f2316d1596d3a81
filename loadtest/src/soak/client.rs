//! The soak's client: connections of four kinds, in a fixed mix, driven by
//! a number of concurrent tasks on the harness's runtime.
//!
//! - keep-alive: many requests on one connection (mostly `GET /`, every
//!   20th a 32 KiB download, every 25th a 4 KiB upload);
//! - one-shot: a new connection for one request with `Connection: close`;
//! - aborted upload: announces 1 MiB, sends 64 KiB, goes away;
//! - aborted download: asks for 1 MiB, reads 16 KiB, goes away.
//!
//! Every other abort resets the connection (zero linger) instead of closing
//! it. Each connection binds its own loopback source address
//! (`127.0.0.2`–`127.0.0.251`) so 100k connections do not run out of
//! ephemeral ports.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Longest wait for any one read, write or connect.
const STEP: Duration = Duration::from_secs(10);

/// What one connection does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    KeepAlive,
    OneShot,
    AbortUpload,
    AbortDownload,
}

/// The mix, per 20 connections: 6 keep-alive, 8 one-shot, 3 aborted
/// uploads, 3 aborted downloads.
fn kind(index: usize) -> Kind {
    match index % 20 {
        0..6 => Kind::KeepAlive,
        6..14 => Kind::OneShot,
        14..17 => Kind::AbortUpload,
        _ => Kind::AbortDownload,
    }
}

/// Requests per keep-alive connection so that `connections` connections
/// make about `requests` requests.
pub fn per_keep_alive(connections: usize, requests: usize) -> usize {
    let keep_alive = connections * 6 / 20;
    let others = connections - keep_alive;
    (requests.saturating_sub(others) / keep_alive.max(1)).max(1)
}

/// What a run did, counted by all its tasks.
#[derive(Debug, Default)]
pub struct Totals {
    /// Connections finished (of any kind).
    pub connections: AtomicUsize,
    /// Requests answered completely with 200.
    pub completed: AtomicU64,
    /// Requests given up on purpose (the two abort kinds).
    pub aborted: AtomicU64,
    /// Requests that failed: connect, I/O error, timeout or a status other
    /// than 200.
    pub errors: AtomicU64,
}

/// Runs `connections` connections of the mix against `target` with
/// `concurrency` tasks; `per_keep_alive` requests per keep-alive one.
pub async fn run(
    target: SocketAddr,
    connections: usize,
    per_keep_alive: usize,
    concurrency: usize,
    totals: Arc<Totals>,
) {
    let next = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (next, totals) = (Arc::clone(&next), Arc::clone(&totals));
            tokio::spawn(async move {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= connections {
                        return;
                    }
                    let result = one_connection(target, index, per_keep_alive, &totals).await;
                    if let Err(error) = result
                        && totals.errors.fetch_add(1, Ordering::Relaxed) < 5
                    {
                        eprintln!("soak: connection {index} ({:?}): {error}", kind(index));
                    }
                    totals.connections.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for task in tasks {
        let _ = task.await;
    }
}

async fn one_connection(
    target: SocketAddr,
    index: usize,
    per_keep_alive: usize,
    totals: &Totals,
) -> io::Result<()> {
    let mut conn = Conn::open(target, index).await?;
    match kind(index) {
        Kind::KeepAlive => {
            for n in 0..per_keep_alive {
                let (request, body): (&[u8], usize) = if n % 25 == 24 {
                    (
                        b"POST /upload HTTP/1.1\r\nhost: soak\r\ncontent-length: 4096\r\n\r\n",
                        4096,
                    )
                } else if n % 20 == 19 {
                    (b"GET /bytes/32768 HTTP/1.1\r\nhost: soak\r\n\r\n", 0)
                } else {
                    (b"GET / HTTP/1.1\r\nhost: soak\r\n\r\n", 0)
                };
                let step = async {
                    conn.send(request, body).await?;
                    conn.expect_ok(totals).await
                };
                step.await.map_err(|e| {
                    let line = request.split(|&b| b == b'\r').next().unwrap_or_default();
                    io::Error::new(
                        e.kind(),
                        format!("request {n}, {}: {e}", String::from_utf8_lossy(line)),
                    )
                })?;
            }
        }
        Kind::OneShot => {
            conn.send(
                b"GET / HTTP/1.1\r\nhost: soak\r\nconnection: close\r\n\r\n",
                0,
            )
            .await?;
            conn.expect_ok(totals).await?;
        }
        Kind::AbortUpload => {
            conn.send(
                b"POST /upload HTTP/1.1\r\nhost: soak\r\ncontent-length: 1048576\r\n\r\n",
                64 * 1024,
            )
            .await?;
            conn.abort(index, totals);
        }
        Kind::AbortDownload => {
            conn.send(b"GET /bytes/1048576 HTTP/1.1\r\nhost: soak\r\n\r\n", 0)
                .await?;
            conn.read_at_least(16 * 1024).await?;
            conn.abort(index, totals);
        }
    }
    Ok(())
}

/// A client connection with the bytes read but not yet used.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(target: SocketAddr, index: usize) -> io::Result<Conn> {
        let socket = TcpSocket::new_v4()?;
        let source = Ipv4Addr::new(127, 0, 0, 2 + (index % 250) as u8);
        socket.bind(SocketAddr::from((source, 0)))?;
        let stream = step(socket.connect(target)).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(64 * 1024),
        })
    }

    /// Writes a request head and `body` bytes of body.
    async fn send(&mut self, head: &[u8], body: usize) -> io::Result<()> {
        const ZEROS: [u8; 16 * 1024] = [0; 16 * 1024];
        step(self.stream.write_all(head)).await?;
        let mut left = body;
        while left > 0 {
            let n = left.min(ZEROS.len());
            step(self.stream.write_all(&ZEROS[..n])).await?;
            left -= n;
        }
        Ok(())
    }

    /// Reads until at least `n` bytes are buffered.
    async fn read_at_least(&mut self, n: usize) -> io::Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        while self.buf.len() < n {
            let got = step(self.stream.read(&mut chunk)).await?;
            if got == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..got]);
        }
        Ok(())
    }

    /// Reads one response with a `Content-Length` body; an error unless
    /// it is a 200.
    async fn expect_ok(&mut self, totals: &Totals) -> io::Result<()> {
        let end = loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            let want = self.buf.len() + 1;
            self.read_at_least(want).await?;
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| io::Error::other(format!("no content-length in {head:?}")))?;
        self.read_at_least(end + length).await?;
        self.buf.drain(..end + length);
        if !head.starts_with("http/1.1 200 ") {
            return Err(io::Error::other(format!("status: {head:?}")));
        }
        totals.completed.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Goes away mid-request: a reset for odd connections, a close for
    /// even ones.
    fn abort(self, index: usize, totals: &Totals) {
        if index % 2 == 1 {
            let _ = self.stream.set_zero_linger();
        }
        totals.aborted.fetch_add(1, Ordering::Relaxed);
    }
}

/// `future` within [`STEP`], a timeout being an error.
async fn step<T>(future: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    tokio::time::timeout(STEP, future)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no progress within 10 s"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How many requests `connections` connections of the mix make when each
    /// keep-alive one makes `per_keep_alive`.
    fn requests_for(connections: usize, per_keep_alive: usize) -> usize {
        (0..connections.min(20))
            .map(|i| match kind(i) {
                Kind::KeepAlive => per_keep_alive,
                _ => 1,
            })
            .sum::<usize>()
            * (connections / 20)
    }

    #[test]
    fn the_mix_adds_up_to_the_requested_totals() {
        let per = per_keep_alive(100_000, 1_000_000);
        assert_eq!(per, 31);
        let total = requests_for(100_000, per);
        assert!((950_000..=1_050_000).contains(&total), "{total}");
    }
}
