//! Lingering close, as nginx's `lingering_close`: a connection answered
//! before its request ended (an upstream, or sluice, answered while the
//! body was still coming) sends its FIN after the answer, then reads and
//! drops what the client still sends before closing.
//!
//! Closing a socket with unread bytes makes the kernel send a reset, and a
//! client that writes its whole body before reading (Python's
//! `http.client`, many SDKs) then gets "connection reset" instead of the
//! 401 or 413 it was sent. Lingering ends when the client closes, after
//! [`QUIET`] without a byte, or after [`TOTAL`] in all (nginx's
//! `lingering_timeout` and `lingering_time`).

use std::io;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;

/// Longest wait for the client's next byte (nginx's `lingering_timeout`);
/// a listener's shorter `body_timeout` takes its place.
pub const QUIET: Duration = Duration::from_secs(5);
/// Longest a connection lingers in all (nginx's `lingering_time`).
pub const TOTAL: Duration = Duration::from_secs(30);

/// Half-closes `stream`, then reads and drops what comes until the client
/// closes, `quiet` passes without a byte, or [`TOTAL`] passed. `received`
/// is told the size of every read. The socket closes when this returns.
pub async fn linger(stream: TcpStream, quiet: Duration, received: impl Fn(usize)) {
    let _ = rustix::net::shutdown(&stream, rustix::net::Shutdown::Write);
    let end = Instant::now() + TOTAL;
    // On the heap: this runs rarely, and a buffer inside the future would
    // make it large.
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let now = Instant::now();
        if now >= end {
            return;
        }
        let wait = tokio::time::timeout_at((now + quiet).min(end), stream.readable());
        if !matches!(wait.await, Ok(Ok(()))) {
            return;
        }
        match stream.try_read(&mut buf) {
            Ok(0) => return,
            Ok(n) => received(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}
