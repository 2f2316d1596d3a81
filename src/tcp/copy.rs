//! Moving bytes both ways through a tunnel: backpressure, half-close,
//! idle timeout, live byte counts, and a zero-copy path.
//!
//! Each direction is a loop that reads from one socket and writes all of it
//! to the other before reading again, so a slow reader stops the fast
//! writer (backpressure) and at most one buffer (or one pipe) per direction
//! is in flight. End of stream on one side becomes `shutdown(SHUT_WR)` on
//! the other (half-close), and the tunnel ends when both directions ended,
//! when either fails, or when no byte moved for the idle timeout.
//!
//! Two ways to move the bytes: through a user-space buffer (`read` +
//! `write`; one buffer shared by all tunnels of the worker, as the bytes
//! leave it in the same poll that read them), or with `splice(2)` through a
//! pipe, where the bytes stay in the kernel. [`CopyMode::Adaptive`], the default, starts with the buffer and
//! switches a direction to splice once a read fills the whole buffer: bulk
//! transfers then skip the copies into and out of user space, while small
//! request/response exchanges keep the cheaper read/write (the numbers are
//! in `benches/tcp_copy.rs` and the README).

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use rustix::pipe::{PipeFlags, SpliceFlags};
use tokio::io::{AsyncRead, Interest, ReadBuf};
use tokio::net::TcpStream;
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::time::Instant;

/// The read/write path's buffer (one per worker thread, see
/// `SHARED_BUFFER`). A read that fills it is the sign of a bulk transfer
/// (see [`CopyMode::Adaptive`]).
pub const BUFFER_SIZE: usize = 32 * 1024;
/// Most bytes one `splice` call moves; the pipe is sized to match so one
/// call can fill it.
const PIPE_SIZE: usize = 256 * 1024;
/// A splice smaller than this looks like request/response traffic...
const SMALL_SPLICE: usize = 4 * 1024;
/// ...and this many in a row send an adaptive direction back to read/write.
const SMALL_SPLICES_TO_SWITCH_BACK: u32 = 8;

/// How a tunnel moves bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CopyMode {
    /// `read` into a user-space buffer, `write` it out.
    Buffered,
    /// `splice` from the socket into a pipe and from the pipe to the other
    /// socket: no copy through user space. Through the buffer when no pipe
    /// can be made.
    Splice,
    /// Buffered until a read fills the buffer, then splice until a run of
    /// small transfers; per direction.
    #[default]
    Adaptive,
}

/// Which way bytes went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From the client to the upstream.
    ToUpstream,
    /// From the upstream to the client.
    ToClient,
}

/// Why a tunnel ended other than both sides finishing.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// No byte moved either way for the idle timeout.
    #[error("idle for {0:?}")]
    Idle(Duration),
    /// Reading from or writing to the client failed.
    #[error("client: {0}")]
    Client(io::Error),
    /// Reading from or writing to the upstream failed.
    #[error("upstream: {0}")]
    Upstream(io::Error),
}

/// Bytes moved each way by a tunnel that ended cleanly.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Client to upstream.
    pub to_upstream: u64,
    /// Upstream to client.
    pub to_client: u64,
}

/// Copies both ways between `client` and `upstream` until both directions
/// reached end of stream (each end propagated as a half-close), either side
/// failed, or nothing moved for `idle`. `on_bytes` is called for every chunk
/// moved, so counters stay live during long tunnels.
pub async fn bidirectional(
    client: &mut TcpStream,
    upstream: &mut TcpStream,
    idle: Duration,
    mode: CopyMode,
    on_bytes: &dyn Fn(Direction, u64),
) -> Result<Totals, CopyError> {
    let activity = Cell::new(Instant::now());
    let side = |direction| Side {
        activity: &activity,
        on_bytes,
        direction,
    };
    // Split halves, not `&TcpStream`: their `poll_read`/`poll_write` take a
    // short read or write as "drained" and skip the extra syscall that would
    // only return EAGAIN, one per message on request/response traffic.
    let (client_read, client_write) = client.split();
    let (upstream_read, upstream_write) = upstream.split();
    let up = one_way(
        client_read,
        upstream_write,
        mode,
        side(Direction::ToUpstream),
    );
    let down = one_way(upstream_read, client_write, mode, side(Direction::ToClient));
    tokio::select! {
        result = async { tokio::try_join!(up, down) } => {
            result.map(|(to_upstream, to_client)| Totals { to_upstream, to_client })
        }
        () = idle_watch(&activity, idle) => Err(CopyError::Idle(idle)),
    }
}

/// Returns once `activity` is `idle` in the past (also used by HTTP's
/// upgraded tunnels).
pub async fn idle_watch(activity: &Cell<Instant>, idle: Duration) {
    loop {
        let deadline = activity.get() + idle;
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep_until(deadline).await;
    }
}

/// One direction's bookkeeping.
struct Side<'a> {
    activity: &'a Cell<Instant>,
    on_bytes: &'a dyn Fn(Direction, u64),
    direction: Direction,
}

impl Side<'_> {
    fn moved(&self, n: usize) {
        self.touch();
        (self.on_bytes)(self.direction, n as u64);
    }

    /// Records progress that is not a read (a partial write to a slow
    /// reader): the tunnel is not idle while bytes still drain.
    fn touch(&self) {
        self.activity.set(Instant::now());
    }

    /// Attributes an error to the socket it happened on.
    fn read_error(&self, error: io::Error) -> CopyError {
        match self.direction {
            Direction::ToUpstream => CopyError::Client(error),
            Direction::ToClient => CopyError::Upstream(error),
        }
    }

    fn write_error(&self, error: io::Error) -> CopyError {
        match self.direction {
            Direction::ToUpstream => CopyError::Upstream(error),
            Direction::ToClient => CopyError::Client(error),
        }
    }
}

async fn one_way(
    mut from: ReadHalf<'_>,
    to: WriteHalf<'_>,
    mode: CopyMode,
    side: Side<'_>,
) -> Result<u64, CopyError> {
    let mut total = 0;
    let mut pipe = None;
    let mut splicing = mode == CopyMode::Splice;
    // Consecutive small splices seen by an adaptive direction.
    let mut small = 0;
    loop {
        let n = if splicing {
            let through = match &pipe {
                Some(through) => through,
                None => match Pipe::new() {
                    Ok(made) => pipe.insert(made),
                    Err(error) => {
                        // Out of descriptors or pipe memory: the tunnel
                        // goes on through the buffer (an adaptive one tries
                        // again at its next full read).
                        tracing::debug!(%error, "no pipe for splice; copying through the buffer");
                        splicing = false;
                        continue;
                    }
                },
            };
            let n = splice_in(from.as_ref(), through)
                .await
                .map_err(|e| side.read_error(e))?;
            if n > 0 {
                side.moved(n);
                splice_out(through, to.as_ref(), n, &side)
                    .await
                    .map_err(|e| side.write_error(e))?;
            }
            if mode == CopyMode::Adaptive {
                small = if n < SMALL_SPLICE { small + 1 } else { 0 };
                // The bulk part is over (a big reply was followed by small
                // exchanges): back to the cheaper read/write. The pipe is
                // empty; it is closed, so an open tunnel holds only its
                // two sockets and no pipe memory between bursts.
                splicing = small < SMALL_SPLICES_TO_SWITCH_BACK;
                if !splicing {
                    pipe = None;
                }
            }
            n
        } else {
            let moved = std::future::poll_fn(|cx| move_through_shared(&mut from, to.as_ref(), cx))
                .await
                .map_err(|failure| match failure {
                    Failed::Read(e) => side.read_error(e),
                    Failed::Write(e) => side.write_error(e),
                })?;
            if moved.read > 0 {
                side.moved(moved.read);
            }
            if let Some(rest) = moved.unwritten {
                write_tracked(to.as_ref(), &rest, || side.touch())
                    .await
                    .map_err(|e| side.write_error(e))?;
            }
            if mode == CopyMode::Adaptive && moved.read == BUFFER_SIZE {
                splicing = true;
                small = 0;
            }
            moved.read
        };
        if n == 0 {
            half_close(to.as_ref());
            return Ok(total);
        }
        total += n as u64;
    }
}

thread_local! {
    /// The read buffer all tunnels of a worker's thread share. Bytes read
    /// into it go out to the other socket in the same poll, so it is free
    /// again at once: it stays hot in the cache, and a tunnel holds no
    /// buffer of its own (only what a full socket would not take yet).
    static SHARED_BUFFER: RefCell<Box<[u8]>> = RefCell::new(vec![0; BUFFER_SIZE].into_boxed_slice());
}

/// What one read through the shared buffer moved.
struct Moved {
    /// Bytes read (0: end of stream).
    read: usize,
    /// The part of them the other socket did not take yet.
    unwritten: Option<Vec<u8>>,
}

/// Which side of a move failed.
enum Failed {
    Read(io::Error),
    Write(io::Error),
}

/// Reads what `from` has into the shared buffer and writes as much of it
/// to `to` as its socket takes now; the rest is copied out, to be written
/// once there is room.
fn move_through_shared(
    from: &mut ReadHalf<'_>,
    to: &TcpStream,
    cx: &mut Context<'_>,
) -> Poll<Result<Moved, Failed>> {
    SHARED_BUFFER.with_borrow_mut(|buffer| {
        let mut read = ReadBuf::new(buffer);
        // `poll_read` of a split half takes a short read as "drained" and
        // skips the extra read that would only return EAGAIN.
        ready!(Pin::new(&mut *from).poll_read(cx, &mut read)).map_err(Failed::Read)?;
        let bytes = read.filled();
        let mut written = 0;
        while written < bytes.len() {
            match to.try_write(&bytes[written..]) {
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Poll::Ready(Err(Failed::Write(e))),
            }
        }
        Poll::Ready(Ok(Moved {
            read: bytes.len(),
            unwritten: (written < bytes.len()).then(|| bytes[written..].to_vec()),
        }))
    })
}

/// Ends our write side of `socket` so its peer reads end of stream. A peer
/// that is already gone makes this fail; the other direction reports that.
fn half_close(socket: &TcpStream) {
    let _ = rustix::net::shutdown(socket, rustix::net::Shutdown::Write);
}

/// Writes all of `buf` to `to`, waiting for room as needed.
pub(crate) async fn write_all(to: &TcpStream, buf: &[u8]) -> io::Result<()> {
    write_tracked(to, buf, || {}).await
}

/// Writes all of `buf`, calling `progress` after every partial write.
async fn write_tracked(to: &TcpStream, mut buf: &[u8], progress: impl Fn()) -> io::Result<()> {
    // The write is tried first: the socket usually has room, and waiting
    // for writability that is already known costs more than the write.
    while !buf.is_empty() {
        match to.try_write(buf) {
            Ok(n) => {
                buf = &buf[n..];
                progress();
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => to.writable().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A pipe for one direction's splices. It is always drained before the
/// next read, so a splice into it never finds it full.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let (read, write) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
        // A bigger pipe moves more per call; the default (64 KiB) still
        // works when the limit (/proc/sys/fs/pipe-max-size) forbids it.
        let _ = rustix::pipe::fcntl_setpipe_size(&write, PIPE_SIZE);
        Ok(Pipe { read, write })
    }
}

const SPLICE_FLAGS: SpliceFlags = SpliceFlags::MOVE.union(SpliceFlags::NONBLOCK);

async fn splice_in(from: &TcpStream, pipe: &Pipe) -> io::Result<usize> {
    loop {
        from.readable().await?;
        let result = from.try_io(Interest::READABLE, || {
            rustix::pipe::splice(from, None, &pipe.write, None, PIPE_SIZE, SPLICE_FLAGS)
                .map_err(io::Error::from)
        });
        match result {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            result => return result,
        }
    }
}

async fn splice_out(
    pipe: &Pipe,
    to: &TcpStream,
    mut left: usize,
    side: &Side<'_>,
) -> io::Result<()> {
    while left > 0 {
        to.writable().await?;
        let result = to.try_io(Interest::WRITABLE, || {
            rustix::pipe::splice(&pipe.read, None, to, None, left, SPLICE_FLAGS)
                .map_err(io::Error::from)
        });
        match result {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                left -= n;
                side.touch();
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "copy_tests.rs"]
mod tests;
