//! The client connection's socket, with sluice's deadlines and byte counts.
//!
//! hyper's own header timeout only closes the connection and does not tell
//! an idle keep-alive connection from a slow request head. This wrapper
//! knows which phase the connection is in ([`Phase`], set by the request
//! handler) and enforces:
//! - `idle_timeout` while waiting for the first byte of the next request
//!   (the connection is closed quietly);
//! - `header_timeout` from the first byte of a request head until the head
//!   is complete (a `408` is written, then the connection closes);
//! - `send_timeout` while the client does not read what we write.
//!
//! It also counts bytes in both directions into the worker's counter row,
//! and runs every byte read through the framing scan
//! ([`super::head_scan`]) before hyper sees it, so that each request head
//! on the connection, pipelined or not, is checked.
//!
//! And it lets an idle keep-alive connection be parked (see
//! [`super::parking`]): once parking begins it reads nothing more, its
//! shutdown leaves the socket open, and when hyper drops it the socket is
//! handed back through the [`PhaseCell`] instead of being closed. A
//! connection that ends with part of a request still to come (answered
//! before its body ended) is handed back the same way, to linger (see
//! [`super::linger`]).

use std::io;
use std::mem::ManuallyDrop;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use hyper::rt::{Read, ReadBufCursor, Write};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::deadline::LazyTimer;
use super::head_scan::FramingScan;
use crate::counters::{ListenerCounter, Row};
use crate::runtime::Metered;

/// Where a client connection is in its request cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the next request since this instant.
    Idle(Instant),
    /// Reading a request head whose first byte came at this instant.
    Head(Instant),
    /// A request is being handled; no read deadline applies here (the body
    /// has its own).
    Busy,
    /// The connection became a tunnel (WebSocket or other upgrade).
    Tunnel,
}

/// The phase shared by the socket wrapper and the request handler.
///
/// Two relaxed atomics rather than a `Cell`: hyper requires an upgradable
/// connection's socket to be `Send`. Only the worker's thread touches it.
#[derive(Debug)]
pub struct PhaseCell {
    tag: AtomicU8,
    since_nanos: AtomicU64,
    /// Request heads from the start of the connection whose framing the
    /// socket's scan found clear (see [`FramingScan`]).
    clear_heads: AtomicU64,
    /// Requests the handler has taken so far.
    requests: AtomicU64,
    /// Whether every byte read so far belongs to complete request heads
    /// and bodies: hyper holds no unparsed bytes.
    at_boundary: AtomicBool,
    /// Whether the last exchange leaves the connection open: parking one
    /// that hyper is about to close would keep it open.
    keep_alive: AtomicBool,
    /// Set while the connection is being parked.
    parking: AtomicBool,
    /// The socket, handed back when hyper's state is dropped: to be parked,
    /// or to linger.
    handed_back: Mutex<Option<TcpStream>>,
}

/// A connection's phase, shared by its socket and its request handler.
pub type SharedPhase = Arc<PhaseCell>;

/// The instant phase timestamps count from.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl PhaseCell {
    /// The phase of a connection just accepted: idle, since now.
    pub fn accepted() -> SharedPhase {
        PhaseCell::idle_since(Instant::now())
    }

    /// The phase of a connection idle since `since` (one served again after
    /// parking).
    pub fn idle_since(since: Instant) -> SharedPhase {
        let cell = Arc::new(PhaseCell {
            tag: AtomicU8::new(0),
            since_nanos: AtomicU64::new(0),
            clear_heads: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            at_boundary: AtomicBool::new(true),
            keep_alive: AtomicBool::new(true),
            parking: AtomicBool::new(false),
            handed_back: Mutex::new(None),
        });
        cell.set(Phase::Idle(since));
        cell
    }

    /// Whether every byte read so far ends where a request ends: no part
    /// of a next request head has come yet.
    pub fn at_boundary(&self) -> bool {
        self.at_boundary.load(Ordering::Relaxed)
    }

    /// Whether the connection has waited for its next request for at
    /// least `quiet`, with nothing read that hyper has not handled: its
    /// hyper state can then be dropped without losing a byte.
    pub fn parkable(&self, quiet: Duration) -> bool {
        matches!(self.get(), Phase::Idle(since) if since.elapsed() >= quiet)
            && self.at_boundary.load(Ordering::Relaxed)
            && self.keep_alive.load(Ordering::Relaxed)
            && self.requests.load(Ordering::Relaxed) == self.clear_heads.load(Ordering::Relaxed)
    }

    /// Records whether the exchange just answered leaves the connection
    /// open (see [`super::forwarding::keeps_alive`]).
    pub fn set_keep_alive(&self, keep_alive: bool) {
        self.keep_alive.store(keep_alive, Ordering::Relaxed);
    }

    /// Starts parking: the socket reads nothing more and survives hyper's
    /// shutdown and drop (see [`PhaseCell::take_handed_back`]).
    pub fn begin_parking(&self) {
        self.parking.store(true, Ordering::Relaxed);
    }

    /// The socket, once hyper's state is dropped: the connection's if its
    /// parking began, or if it ended with part of a request still to come
    /// (it must linger); `None` if it was closed (or upgraded).
    pub fn take_handed_back(&self) -> Option<TcpStream> {
        self.handed_back.lock().ok()?.take()
    }

    fn is_parking(&self) -> bool {
        self.parking.load(Ordering::Relaxed)
    }

    /// The current phase.
    pub fn get(&self) -> Phase {
        let since = epoch() + Duration::from_nanos(self.since_nanos.load(Ordering::Relaxed));
        match self.tag.load(Ordering::Relaxed) {
            0 => Phase::Idle(since),
            1 => Phase::Head(since),
            2 => Phase::Busy,
            _ => Phase::Tunnel,
        }
    }

    /// Called once per request hyper hands over, in order: whether its
    /// head was not found clear by the raw scan (ambiguous framing, or a
    /// head the scan could not reach), so it must be refused. The scan runs
    /// on every read before hyper sees the bytes, so a clear head is always
    /// counted by the time hyper parsed it.
    pub fn take_ambiguous_framing(&self) -> bool {
        let index = self.requests.fetch_add(1, Ordering::Relaxed);
        index >= self.clear_heads.load(Ordering::Relaxed)
    }

    /// Moves to `phase`.
    pub fn set(&self, phase: Phase) {
        let (tag, since) = match phase {
            Phase::Idle(since) => (0, Some(since)),
            Phase::Head(since) => (1, Some(since)),
            Phase::Busy => (2, None),
            Phase::Tunnel => (3, None),
        };
        if let Some(since) = since {
            let nanos = since.saturating_duration_since(epoch()).as_nanos();
            self.since_nanos
                .store(u64::try_from(nanos).unwrap_or(u64::MAX), Ordering::Relaxed);
        }
        self.tag.store(tag, Ordering::Relaxed);
    }
}

/// Deadlines that apply to one client connection.
#[derive(Clone, Copy, Debug)]
pub struct Deadlines {
    /// Keep-alive idle time.
    pub idle: Duration,
    /// Whole-head read time.
    pub header: Duration,
    /// Time a write may stay blocked.
    pub send: Duration,
}

/// What is written when the head deadline passes.
const TIMEOUT_408: &[u8] = b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 37\r\nconnection: close\r\n\r\n408 request timeout: head not received\n";

/// The client socket with deadlines and byte counting.
#[derive(Debug)]
pub struct ClientIo {
    /// Dropped by hand: closed, or handed back when parking.
    stream: ManuallyDrop<TcpStream>,
    phase: SharedPhase,
    deadlines: Deadlines,
    row: Row,
    listener: usize,
    /// The listener's "no rule" route and pair, where its 408s are counted.
    own: Option<Metered>,
    read_timer: LazyTimer,
    write_timer: LazyTimer,
    framing: FramingScan,
    /// The client sent end of stream, or a deadline ended the connection:
    /// either way, nothing more is worth reading from it.
    done_reading: bool,
}

impl ClientIo {
    /// Wraps a client connection in `phase`: just accepted, or back from
    /// parking (at a request boundary either way).
    pub fn new(
        stream: TcpStream,
        phase: SharedPhase,
        deadlines: Deadlines,
        row: Row,
        (listener, own): (usize, Option<Metered>),
    ) -> ClientIo {
        ClientIo {
            stream: ManuallyDrop::new(stream),
            phase,
            deadlines,
            row,
            listener,
            own,
            read_timer: LazyTimer::default(),
            write_timer: LazyTimer::default(),
            framing: FramingScan::default(),
            done_reading: false,
        }
    }

    /// Whether the connection ends with part of a request still to come
    /// from a client that may be sending it: an answer came before the
    /// request's body (or head) ended. Closing now would reset the
    /// connection under the answer, so the socket lingers instead.
    fn must_linger(&self) -> bool {
        !self.done_reading && !self.framing.at_boundary() && self.phase.get() != Phase::Tunnel
    }

    /// Follows the request stream through bytes just read (not in a
    /// tunnel, and not once the scan stopped).
    fn scan(&mut self, bytes: &[u8]) {
        if self.framing.stopped() {
            return;
        }
        self.framing.feed(bytes);
        self.phase
            .clear_heads
            .store(self.framing.clear_heads(), Ordering::Relaxed);
        self.phase
            .at_boundary
            .store(self.framing.at_boundary(), Ordering::Relaxed);
    }

    /// The read deadline for the current phase, if any.
    fn read_deadline(&self) -> Option<Instant> {
        match self.phase.get() {
            Phase::Idle(since) => Some(since + self.deadlines.idle),
            Phase::Head(since) => Some(since + self.deadlines.header),
            Phase::Busy | Phase::Tunnel => None,
        }
    }

    /// Polls the read deadline; `Ready` means it passed.
    fn poll_read_deadline(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(deadline) = self.read_deadline() else {
            return Poll::Pending;
        };
        self.read_timer.poll_until(deadline, cx)
    }

    fn poll_read_inner(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.phase.is_parking() {
            // Bytes of the next request stay in the socket for the hyper
            // connection that serves it after parking.
            return Poll::Pending;
        }
        let (before, room) = (buf.filled().len(), buf.remaining());
        match Pin::new(&mut *self.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len() - before;
                self.done_reading |= n == 0 && room > 0;
                if n > 0 {
                    self.row
                        .add_listener(self.listener, ListenerCounter::ReceivedBytes, n as u64);
                    match self.phase.get() {
                        Phase::Idle(_) => self.phase.set(Phase::Head(Instant::now())),
                        Phase::Head(_) | Phase::Busy => {}
                        Phase::Tunnel => return Poll::Ready(Ok(())),
                    }
                    self.scan(&buf.filled()[before..]);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if self.poll_read_deadline(cx).is_pending() {
                    return Poll::Pending;
                }
                self.done_reading = true;
                match self.phase.get() {
                    Phase::Head(since) => {
                        // Best effort: a 408 fits in any socket buffer; if the
                        // client stopped reading, the close says enough.
                        let _ = self.stream.try_write(TIMEOUT_408);
                        self.row.count_own_answer(
                            self.listener,
                            self.own.map(Metered::slots),
                            408,
                            since.elapsed(),
                        );
                        Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "request head timeout",
                        )))
                    }
                    // Idle keep-alive connection: end it like a client close.
                    _ => Poll::Ready(Ok(())),
                }
            }
        }
    }

    fn after_write(
        &mut self,
        result: Poll<io::Result<usize>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>> {
        match result {
            Poll::Ready(Ok(n)) => {
                self.write_timer.disarm();
                self.row
                    .add_listener(self.listener, ListenerCounter::SentBytes, n as u64);
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let deadline = self
                    .write_timer
                    .armed_for()
                    .unwrap_or_else(|| Instant::now() + self.deadlines.send);
                ready!(self.write_timer.poll_until(deadline, cx));
                self.done_reading = true;
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "client did not read within send_timeout",
                )))
            }
        }
    }
}

impl Read for ClientIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // SAFETY: the ReadBuf is built over hyper's uninitialised cursor and
        // only ever filled by tokio's read, which initialises what it fills;
        // we advance the cursor by exactly the filled length.
        let n = unsafe {
            let mut tbuf = ReadBuf::uninit(buf.as_mut());
            ready!(this.poll_read_inner(cx, &mut tbuf))?;
            tbuf.filled().len()
        };
        // SAFETY: `n` bytes were just initialised by the read above.
        unsafe { buf.advance(n) };
        Poll::Ready(Ok(()))
    }
}

impl Write for ClientIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut *this.stream).poll_write(cx, buf);
        this.after_write(result, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut *this.stream).poll_write_vectored(cx, bufs);
        this.after_write(result, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().stream).poll_flush(cx)
    }

    /// A real `shutdown(2)` only for a tunnel, whose half-close the other
    /// side must see while it may still send. Otherwise hyper shuts the
    /// socket down only as the connection ends, and drops it right after:
    /// the close sends the same FIN, one system call per connection sooner
    /// (a parking connection is handed back instead, and must stay open).
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.phase.get() != Phase::Tunnel {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut *this.stream).poll_shutdown(cx)
    }
}

impl Drop for ClientIo {
    fn drop(&mut self) {
        // SAFETY: `stream` is taken exactly once, here, and not used after.
        let stream = unsafe { ManuallyDrop::take(&mut self.stream) };
        if (self.phase.is_parking() || self.must_linger())
            && let Ok(mut slot) = self.phase.handed_back.lock()
        {
            *slot = Some(stream);
        }
    }
}
