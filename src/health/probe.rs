//! One health probe: what a single check of one upstream does on the wire.
//!
//! Every kind opens a fresh TCP connection (never a pooled one, so a probe
//! sees what a new client would), says as little as the protocol allows,
//! reads only the first line or message of the answer, and closes. The whole
//! probe, connect included, is bounded by the check's `timeout`.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::{
    HealthCheckConfig, HealthCheckKind, ProxyProtocolVersion, StatusSet, UpstreamAddress,
};
use crate::http::upstream::connect_tcp;

/// Longest first line (HTTP status line, Redis reply) a probe reads before
/// calling the answer garbage.
const MAX_LINE: usize = 512;

/// The postgres StartupMessage (protocol 3.0) for user and database
/// `postgres`, which most clusters have: an answer to it says whether the
/// server takes connections now.
const STARTUP: &[u8] =
    b"\x00\x00\x00\x29\x00\x03\x00\x00user\x00postgres\x00database\x00postgres\x00\x00";

/// The postgres Terminate message, sent before closing after a successful
/// login so the server does not log an unexpected end of file.
const TERMINATE: [u8; 5] = [b'X', 0x00, 0x00, 0x00, 0x04];

/// SQLSTATEs of a postgres server that refuses new connections now:
/// shutting down (57P01, 57P02), starting, stopping or in recovery
/// (57P03), or full (53300).
const REFUSING: [&str; 4] = ["57P01", "57P02", "57P03", "53300"];

/// Longest postgres error a probe reads.
const MAX_PG_ERROR: usize = 4096;

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
    /// `postgres`: the server refuses new connections now (SQLSTATE and
    /// message).
    #[error("refusing connections: {1} ({0})")]
    Refusing(String, String),
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
    /// The PROXY protocol header the upstream's listeners send it, which
    /// a probe sends too (as a local connection), since a backend that
    /// requires one refuses a connection without it.
    pub proxy_protocol: Option<ProxyProtocolVersion>,
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
        if let Some(version) = self.proxy_protocol {
            stream
                .write_all(&crate::tcp::proxy_protocol::encode_local(version))
                .await
                .map_err(ProbeError::Io)?;
        }
        match self.check.kind {
            HealthCheckKind::None | HealthCheckKind::Tcp => Ok(()),
            HealthCheckKind::Http => {
                let host = self
                    .check
                    .host
                    .clone()
                    .unwrap_or_else(|| self.address.host_header());
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

/// `GET path` with `Connection: close`; passes when the final status
/// line's code is in `expect`.
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
    let status = read_final_status(stream).await?;
    if expect.contains(status) {
        Ok(())
    } else {
        Err(ProbeError::Status(status))
    }
}

/// Longest run of interim (1xx) response heads a probe reads past before
/// the final status line.
const MAX_INTERIM: usize = 16 * 1024;

/// The status of the final response: interim ones (`100 Continue`, `103
/// Early Hints`) are read past, as a client does. Reads nothing past the
/// final status line.
async fn read_final_status(stream: &mut TcpStream) -> Result<u16, ProbeError> {
    let mut buf = Vec::with_capacity(256);
    loop {
        let line = read_line(stream, &mut buf).await?;
        let status = parse_status_line(&line).ok_or(ProbeError::Unexpected(line))?;
        if !(100..200).contains(&status) || status == 101 {
            return Ok(status);
        }
        // An interim head: dropped whole, then the next status line.
        loop {
            if let Some(head_end) = memchr::memmem::find(&buf, b"\r\n\r\n") {
                buf.drain(..head_end + 4);
                break;
            }
            if buf.len() >= MAX_INTERIM {
                return Err(ProbeError::Unexpected(
                    "interim responses without end".to_owned(),
                ));
            }
            read_more(stream, &mut buf).await?;
        }
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

/// `PING` answered `+PONG`. A server that wants a password first
/// (`-NOAUTH`, `-WRONGPASS`) is serving, as the postgres probe takes an
/// authentication request: it passes. Other errors (`-LOADING`,
/// `-MASTERDOWN`, `-BUSY`) fail.
async fn redis(stream: &mut TcpStream) -> Result<(), ProbeError> {
    stream
        .write_all(b"PING\r\n")
        .await
        .map_err(ProbeError::Io)?;
    let line = read_line(stream, &mut Vec::with_capacity(128)).await?;
    if redis_serving(&line) {
        Ok(())
    } else {
        Err(ProbeError::Unexpected(line))
    }
}

/// Whether a Redis answer to `PING` shows a server taking commands.
fn redis_serving(answer: &str) -> bool {
    answer == "+PONG" || answer.starts_with("-NOAUTH ") || answer.starts_with("-WRONGPASS ")
}

/// A StartupMessage; passes when the server asks to authenticate (`R`),
/// or refuses this login for a reason of its own (no such role, no
/// `pg_hba.conf` entry: the server takes connections). Fails when it
/// refuses every connection now ([`REFUSING`]: shutting down, starting
/// up, in recovery, full), which an answer to an SSLRequest alone does
/// not show.
async fn postgres(stream: &mut TcpStream) -> Result<(), ProbeError> {
    stream.write_all(STARTUP).await.map_err(ProbeError::Io)?;
    let mut head = [0u8; 5];
    stream
        .read_exact(&mut head)
        .await
        .map_err(|error| match error.kind() {
            io::ErrorKind::UnexpectedEof => ProbeError::Closed,
            _ => ProbeError::Io(error),
        })?;
    match head[0] {
        b'R' => {
            // Only AuthenticationOk (code 0) leaves a session to end.
            let _ = stream.write_all(&TERMINATE).await;
            Ok(())
        }
        b'E' => {
            let length = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
            let mut body = vec![0u8; length.saturating_sub(4).min(MAX_PG_ERROR)];
            stream.read_exact(&mut body).await.map_err(ProbeError::Io)?;
            match postgres_error_code(&body) {
                Some(code) if REFUSING.contains(&code.as_str()) => {
                    Err(ProbeError::Refusing(code, postgres_error_message(&body)))
                }
                _ => Ok(()),
            }
        }
        other => Err(ProbeError::Unexpected(
            String::from_utf8_lossy(&[other]).into_owned(),
        )),
    }
}

/// The fields of a postgres ErrorResponse body: (type, text) pairs.
fn postgres_error_fields(body: &[u8]) -> impl Iterator<Item = (u8, String)> + '_ {
    body.split(|&b| b == 0)
        .take_while(|field| !field.is_empty())
        .map(|field| (field[0], String::from_utf8_lossy(&field[1..]).into_owned()))
}

/// The SQLSTATE (`C` field) of a postgres ErrorResponse body.
fn postgres_error_code(body: &[u8]) -> Option<String> {
    postgres_error_fields(body).find_map(|(kind, text)| (kind == b'C').then_some(text))
}

/// The message (`M` field) of a postgres ErrorResponse body.
fn postgres_error_message(body: &[u8]) -> String {
    postgres_error_fields(body)
        .find_map(|(kind, text)| (kind == b'M').then_some(text))
        .unwrap_or_default()
}

/// The first line in `buf` (without its CRLF or LF; left in `buf`),
/// reading into `buf` until it holds one, at most [`MAX_LINE`] bytes.
async fn read_line(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<String, ProbeError> {
    loop {
        if let Some(end) = memchr::memchr(b'\n', buf) {
            let line = &buf[..end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            return Ok(String::from_utf8_lossy(line).into_owned());
        }
        if buf.len() >= MAX_LINE {
            return Err(ProbeError::Unexpected(
                String::from_utf8_lossy(&buf[..64]).into_owned(),
            ));
        }
        read_more(stream, buf).await?;
    }
}

/// Appends one read to `buf`; the upstream closing is an error (what it
/// sent so far, if anything, was not a whole answer).
async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(), ProbeError> {
    let mut chunk = [0u8; 1024];
    let n = stream.read(&mut chunk).await.map_err(ProbeError::Io)?;
    if n == 0 {
        return Err(match buf.is_empty() {
            true => ProbeError::Closed,
            false => ProbeError::Unexpected(
                String::from_utf8_lossy(&buf[..buf.len().min(MAX_LINE)]).into_owned(),
            ),
        });
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_startup_message_is_well_formed() {
        assert_eq!(STARTUP.len(), 41);
        assert_eq!(u32::from_be_bytes(STARTUP[..4].try_into().unwrap()), 41);
        assert_eq!(
            u32::from_be_bytes(STARTUP[4..8].try_into().unwrap()),
            3 << 16
        );
    }

    #[test]
    fn postgres_errors_give_their_code_and_message() {
        let body =
            b"SFATAL\0VFATAL\0C57P03\0Mthe database system is shutting down\0Fpostmaster.c\0\0";
        assert_eq!(postgres_error_code(body).as_deref(), Some("57P03"));
        assert_eq!(
            postgres_error_message(body),
            "the database system is shutting down"
        );
        assert_eq!(postgres_error_code(b"\0"), None);
        assert_eq!(postgres_error_code(b""), None);
    }

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
