//! The idle scenario's client: many keep-alive connections, each making
//! one request and then staying open without a word.

use anyhow::{Context, Result, bail};
use std::io::ErrorKind;
use std::net::TcpStream;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The one request each connection makes.
const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";

/// Connections held open after their request.
pub struct Held {
    /// The open connections (blocking mode off).
    streams: Vec<TcpStream>,
    /// Connections that failed to connect or to get a 2xx/3xx response.
    pub failed: usize,
}

impl Held {
    /// How many connections were opened and answered.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// How many of them are still open (the server has not closed them).
    pub fn still_open(&self) -> usize {
        let mut b = [0u8; 1];
        self.streams
            .iter()
            .filter(|s| match s.peek(&mut b) {
                Err(e) => e.kind() == ErrorKind::WouldBlock,
                Ok(n) => n > 0,
            })
            .count()
    }
}

/// Opens `n` connections to `127.0.0.1:port`, `batch` at a time, each
/// sending one request and reading the whole response within `timeout`.
pub fn open(port: u16, n: usize, batch: usize, timeout: Duration) -> Result<Held> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the idle client's runtime")?;
    Ok(rt.block_on(async {
        let mut held = Held {
            streams: Vec::with_capacity(n),
            failed: 0,
        };
        let mut left = n;
        while left > 0 {
            let k = left.min(batch.max(1));
            let mut set = tokio::task::JoinSet::new();
            for _ in 0..k {
                set.spawn(tokio::time::timeout(timeout, one(port)));
            }
            while let Some(r) = set.join_next().await {
                match r {
                    Ok(Ok(Ok(s))) => held.streams.push(s),
                    _ => held.failed += 1,
                }
            }
            left -= k;
        }
        held
    }))
}

/// One connection: connect, request, read the response, hand back the socket.
async fn one(port: u16) -> Result<TcpStream> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(REQUEST).await?;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            bail!("closed before the response ended");
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(status) = response_complete(&buf) {
            if !(200..400).contains(&status) {
                bail!("status {status}");
            }
            return Ok(s.into_std()?);
        }
    }
}

/// The status of the response in `buf` once it is complete (head and a
/// `Content-Length` or chunked body), `None` while more is to come.
pub fn response_complete(buf: &[u8]) -> Option<u16> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..head_end]).ok()?;
    let status: u16 = head.split_whitespace().nth(1)?.parse().ok()?;
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    };
    let body = &buf[head_end..];
    let done = if let Some(len) = header("content-length") {
        body.len() >= len.parse::<usize>().ok()?
    } else if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        body.ends_with(b"0\r\n\r\n")
    } else {
        true
    };
    done.then_some(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_the_whole_body() {
        let head = b"HTTP/1.1 200 OK\r\nServer: x\r\ncontent-length: 2\r\n\r\n";
        assert_eq!(response_complete(&head[..20]), None);
        assert_eq!(response_complete(head), None);
        let mut full = head.to_vec();
        full.extend_from_slice(b"ok");
        assert_eq!(response_complete(&full), Some(200));
    }

    #[test]
    fn reads_chunked_and_empty_responses() {
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n";
        assert_eq!(response_complete(chunked), None);
        let mut full = chunked.to_vec();
        full.extend_from_slice(b"0\r\n\r\n");
        assert_eq!(response_complete(&full), Some(200));
        assert_eq!(response_complete(b"HTTP/1.1 503 Busy\r\n\r\n"), Some(503));
    }
}
