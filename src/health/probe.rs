//! One health probe: what a single check of one upstream does on the wire.
//!
//! Every kind opens a fresh TCP connection (never a pooled one, so a probe
//! sees what a new client would), says as little as the protocol allows,
//! reads only the first line or byte of the answer, and closes. The whole
//! probe, connect included, is bounded by the check's `timeout`.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::{HealthCheckConfig, HealthCheckKind, StatusSet, UpstreamAddress};
use crate::http::upstream::connect_tcp;

/// Longest first line (HTTP status line, Redis reply) a probe reads before
/// calling the answer garbage.
const MAX_LINE: usize = 512;

/// The postgres SSLRequest: length 8, code 80877103.
const SSL_REQUEST: [u8; 8] = [0x00, 0x00, 0x00, 0x08, 0x04, 0xd2, 0x16, 0x2f];

/// Why a probe failed; its `Display` is the reason logged on a state change
/// (`timeout after 1s`, `status 503`, `connection refused`).
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The probe did not finish within the check's timeout.
    #[error("timeout after {}", human(*.0))]
    Timeout(Duration),
    /// Connecting failed (refused, unreachable, no address).
    #[error("{}", io_reason(.0))]
    Connect(io::Error),
    /// Reading or writing on the connection failed.
    #[error("{}", io_reason(.0))]
    Io(io::Error),
    /// The upstream closed the connection before answering.
    #[error("connection closed before an answer")]
    Closed,
    /// `http`: a status outside `expect_status`.
    #[error("status {0}")]
    Status(u16),
    /// The answer was not what the protocol promises.
    #[error("unexpected answer {0:?}")]
    Unexpected(String),
}

impl ProbeError {
    /// Whether this is a timeout (counted as `timeout`, not `failure`).
    pub fn is_timeout(&self) -> bool {
        matches!(self, ProbeError::Timeout(_))
    }
}

/// A duration as a person writes it in the config: `1s`, `250ms`.
pub fn human(duration: Duration) -> String {
    if duration.subsec_millis() == 0 && duration.as_secs() > 0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{}ms", duration.as_millis())
    }
}

/// An I/O error as a short reason: the error kind for the common cases
/// (`connection refused`), the full message otherwise.
fn io_reason(error: &io::Error) -> String {
    use io::ErrorKind::*;
    match error.kind() {
        kind @ (ConnectionRefused | ConnectionReset | ConnectionAborted | BrokenPipe | TimedOut
        | HostUnreachable | NetworkUnreachable | AddrNotAvailable) => kind.to_string(),
        _ => error.to_string(),
    }
}

/// One upstream's check, ready to run again and again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    /// Where to connect.
    pub address: UpstreamAddress,
    /// What to check and how long it may take.
    pub check: HealthCheckConfig,
}

impl Probe {
    /// Runs one check, bounded by the check's timeout. `Ok` means passing.
    /// A `none` check always passes without touching the network.
    pub async fn run(&self) -> Result<(), ProbeError> {
        if self.check.kind == HealthCheckKind::None {
            return Ok(());
        }
        let timeout = self.check.timeout;
        match tokio::time::timeout(timeout, self.run_unbounded()).await {
            Ok(result) => result,
            Err(_) => Err(ProbeError::Timeout(timeout)),
        }
    }

    async fn run_unbounded(&self) -> Result<(), ProbeError> {
        // Resolved on every probe, so the check follows DNS as live
        // traffic does.
        let mut stream = connect_tcp(&self.address)
            .await
            .map_err(ProbeError::Connect)?;
        match self.check.kind {
            HealthCheckKind::None | HealthCheckKind::Tcp => Ok(()),
            HealthCheckKind::Http => {
                let host = self
                    .check
                    .host
                    .clone()
                    .unwrap_or_else(|| self.address.to_string());
                http(
                    &mut stream,
                    &self.check.path,
                    &host,
                    &self.check.expect_status,
                )
                .await
            }
            HealthCheckKind::Redis => redis(&mut stream).await,
            HealthCheckKind::Postgres => postgres(&mut stream).await,
        }
    }
}

/// `GET path` with `Connection: close`; passes when the status line's code
/// is in `expect`. Reads nothing past the status line.
async fn http(
    stream: &mut TcpStream,
    path: &str,
    host: &str,
    expect: &StatusSet,
) -> Result<(), ProbeError> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: sluice-health-check\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(ProbeError::Io)?;
    let line = read_line(stream).await?;
    let status = parse_status_line(&line).ok_or_else(|| ProbeError::Unexpected(line.clone()))?;
    if expect.contains(status) {
        Ok(())
    } else {
        Err(ProbeError::Status(status))
    }
}

/// The code of an `HTTP/1.x NNN reason` status line.
fn parse_status_line(line: &str) -> Option<u16> {
    let mut parts = line.splitn(3, ' ');
    let version = parts.next()?;
    if !version.starts_with("HTTP/") {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 {
        return None;
    }
    code.parse().ok().filter(|c| (100..=599).contains(c))
}

/// `PING` answered `+PONG`; an error reply (`-ERR`, `-NOAUTH`) fails.
async fn redis(stream: &mut TcpStream) -> Result<(), ProbeError> {
    stream
        .write_all(b"PING\r\n")
        .await
        .map_err(ProbeError::Io)?;
    let line = read_line(stream).await?;
    if line == "+PONG" {
        Ok(())
    } else {
        Err(ProbeError::Unexpected(line))
    }
}

/// An SSLRequest answered with one byte, `S` or `N`; we close right after.
async fn postgres(stream: &mut TcpStream) -> Result<(), ProbeError> {
    stream
        .write_all(&SSL_REQUEST)
        .await
        .map_err(ProbeError::Io)?;
    let mut byte = [0u8; 1];
    match stream.read(&mut byte).await.map_err(ProbeError::Io)? {
        0 => Err(ProbeError::Closed),
        _ if byte[0] == b'S' || byte[0] == b'N' => Ok(()),
        _ => Err(ProbeError::Unexpected(
            String::from_utf8_lossy(&byte).into_owned(),
        )),
    }
}

/// Reads up to the first CRLF (or LF), at most [`MAX_LINE`] bytes.
async fn read_line(stream: &mut TcpStream) -> Result<String, ProbeError> {
    let mut buf = Vec::with_capacity(128);
    let mut chunk = [0u8; 256];
    loop {
        if let Some(end) = buf.iter().position(|&b| b == b'\n') {
            let line = &buf[..end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            return Ok(String::from_utf8_lossy(line).into_owned());
        }
        if buf.len() >= MAX_LINE {
            buf.truncate(64);
            return Err(ProbeError::Unexpected(
                String::from_utf8_lossy(&buf).into_owned(),
            ));
        }
        let n = stream.read(&mut chunk).await.map_err(ProbeError::Io)?;
        if n == 0 {
            return if buf.is_empty() {
                Err(ProbeError::Closed)
            } else {
                Err(ProbeError::Unexpected(
                    String::from_utf8_lossy(&buf).into_owned(),
                ))
            };
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_parse_strictly() {
        assert_eq!(parse_status_line("HTTP/1.1 200 OK"), Some(200));
        assert_eq!(parse_status_line("HTTP/1.0 503"), Some(503));
        assert_eq!(parse_status_line("HTTP/1.1 2000 OK"), None);
        assert_eq!(parse_status_line("SSH-2.0-OpenSSH"), None);
        assert_eq!(parse_status_line("HTTP/1.1 abc"), None);
    }

    #[test]
    fn reasons_read_like_the_config() {
        assert_eq!(
            ProbeError::Timeout(Duration::from_secs(1)).to_string(),
            "timeout after 1s"
        );
        assert_eq!(
            ProbeError::Timeout(Duration::from_millis(250)).to_string(),
            "timeout after 250ms"
        );
        assert_eq!(ProbeError::Status(503).to_string(), "status 503");
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(
            ProbeError::Connect(refused).to_string(),
            "connection refused"
        );
    }
}
