//! An open HTTP/1.1 connection to an upstream: its socket and the bytes
//! read from it that no response used yet.

use std::future::Future;
use std::io;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// First read size; doubled after each read that fills it (up to
/// [`MAX_READ`]) so a large body moves in large reads.
const FIRST_READ: usize = 8 * 1024;
const MAX_READ: usize = 256 * 1024;

/// An upstream connection between or during exchanges.
#[derive(Debug)]
pub struct Link {
    /// The socket.
    pub stream: TcpStream,
    /// Read but not yet used.
    pub buffer: BytesMut,
    read_size: usize,
}

impl Link {
    /// A fresh connection.
    pub fn new(stream: TcpStream) -> Link {
        Link {
            stream,
            buffer: BytesMut::new(),
            read_size: FIRST_READ,
        }
    }

    /// Reads more into the buffer; `Ok(0)` at the upstream's end of stream.
    pub fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        // What is left of the last allocation is used first: reserving a
        // full read each time would allocate for every response.
        if self.buffer.capacity() - self.buffer.len() < self.read_size / 4 {
            self.buffer.reserve(self.read_size);
        }
        let spare = self.buffer.capacity() - self.buffer.len();
        // A fresh `read_buf` per poll: it keeps no state between polls.
        let read = std::task::ready!(pin!(self.stream.read_buf(&mut self.buffer)).poll(cx))?;
        if read == spare && self.read_size < MAX_READ {
            self.read_size *= 2;
        }
        Poll::Ready(Ok(read))
    }

    /// Makes the connection idle: a read buffer grown by a large body is
    /// given back instead of being kept by an idle connection.
    pub fn idle(&mut self) {
        if self.buffer.capacity() > 2 * FIRST_READ {
            self.buffer = BytesMut::new();
        }
        self.read_size = FIRST_READ;
    }

    /// The socket and any bytes read past the last response (the first
    /// bytes of an upgraded protocol).
    pub fn into_parts(self) -> (TcpStream, BytesMut) {
        (self.stream, self.buffer)
    }

    /// Whether an idle connection can carry another request: the upstream
    /// has neither closed it nor sent anything unasked. Costs no system
    /// call unless the socket was reported readable.
    pub fn looks_open(&self) -> bool {
        if !self.buffer.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(Waker::noop());
        match self.stream.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            // Readable: closed, reset, stray bytes, or a stale readiness.
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
        }
    }
}
