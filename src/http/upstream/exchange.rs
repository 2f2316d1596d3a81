//! One request and its response on an upstream connection, driven by the
//! client connection's own task: no second task, no channel between them.
//!
//! The request (head, then its body, chunked when it has no length) is
//! written while the response is read, so an upstream that answers before
//! it has read the whole body, or streams its answer while it reads (an
//! echo), works as it would directly. After the head, the rest of the
//! request goes out from a task of its own (see [`super::upload`]), so it
//! does not wait for the client to read the response. A connection goes
//! back to the pool only when both messages ended cleanly and the upstream
//! keeps it open.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::{Method, StatusCode};
use hyper::body::{Body, SizeHint};
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;

use super::PooledConnection;
use super::chunked::{ChunkedDecoder, Decoded, InvalidChunk};
use super::link::Link;
use super::response_head::{self, Framing, HeadError, ResponseHead};
use super::upload::{self, Upload, UploadEnd};
use crate::http::body::{BoxError, RequestBody};

/// The request on its way out: its head, then body parts queued for the
/// socket, then the rest of the body.
#[derive(Debug)]
pub struct RequestWriter {
    head: Vec<u8>,
    /// How much of the head was written.
    head_sent: usize,
    /// Body parts (and chunk framing) not yet written.
    queue: VecDeque<Bytes>,
    body: RequestBody,
    body_ended: bool,
    chunked: bool,
    /// The request is `HEAD`: its answer has no body whatever it says.
    head_request: bool,
    /// Whether any byte reached the socket.
    wrote: bool,
    /// Bytes reached the socket since [`RequestWriter::take_progress`].
    progressed: bool,
    /// The socket refused a write: nothing more is sent, but the upstream
    /// may still have answered.
    refused: bool,
}

/// Why writing the request stopped.
pub(super) enum WriteError {
    /// The client's body failed (its [`crate::http::body::BodyState`] says
    /// why).
    Body,
    /// The upstream socket refused the write.
    Socket,
}

impl RequestWriter {
    /// A request of `method` with this head and body; `chunked` when the
    /// body has no `Content-Length` and is sent in chunks.
    pub fn new(method: &Method, head: Vec<u8>, body: RequestBody, chunked: bool) -> RequestWriter {
        RequestWriter {
            head,
            head_sent: 0,
            queue: VecDeque::new(),
            body_ended: body.is_end_stream() && !chunked,
            body,
            chunked,
            head_request: *method == Method::HEAD,
            wrote: false,
            progressed: false,
            refused: false,
        }
    }

    /// Whether the whole request was written.
    fn done(&self) -> bool {
        self.head_sent == self.head.len() && self.queue.is_empty() && self.body_ended
    }

    /// Whether bytes reached the socket since the last call.
    pub(super) fn take_progress(&mut self) -> bool {
        std::mem::take(&mut self.progressed)
    }

    /// Writes what it can; `Ready(Ok)` once the whole request is out.
    pub(super) fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        stream: &mut TcpStream,
    ) -> Poll<Result<(), WriteError>> {
        loop {
            while self.head_sent < self.head.len() || !self.queue.is_empty() {
                let written = {
                    let mut slices = [IoSlice::new(&[]); 4];
                    let mut count = 0;
                    if self.head_sent < self.head.len() {
                        slices[0] = IoSlice::new(&self.head[self.head_sent..]);
                        count = 1;
                    }
                    for (bytes, slice) in self.queue.iter().zip(slices[count..].iter_mut()) {
                        *slice = IoSlice::new(bytes);
                        count += 1;
                    }
                    match ready!(Pin::new(&mut *stream).poll_write_vectored(cx, &slices[..count])) {
                        Ok(0) | Err(_) => {
                            self.refused = true;
                            return Poll::Ready(Err(WriteError::Socket));
                        }
                        Ok(written) => written,
                    }
                };
                self.wrote = true;
                self.progressed = true;
                self.consume(written);
            }
            if self.body_ended {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut self.body).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    // Trailers are dropped, as the response's are.
                    if let Ok(data) = frame.into_data()
                        && !data.is_empty()
                    {
                        if self.chunked {
                            self.queue.push_back(chunk_size_line(data.len()));
                            self.queue.push_back(data);
                            self.queue.push_back(Bytes::from_static(b"\r\n"));
                        } else {
                            self.queue.push_back(data);
                        }
                    }
                }
                Some(Err(_)) => return Poll::Ready(Err(WriteError::Body)),
                None => {
                    self.body_ended = true;
                    if self.chunked {
                        self.queue.push_back(Bytes::from_static(b"0\r\n\r\n"));
                    }
                }
            }
        }
    }

    fn consume(&mut self, mut written: usize) {
        let from_head = (self.head.len() - self.head_sent).min(written);
        self.head_sent += from_head;
        written -= from_head;
        while written > 0
            && let Some(front) = self.queue.front_mut()
        {
            if front.len() > written {
                front.advance(written);
                return;
            }
            written -= front.len();
            self.queue.pop_front();
        }
    }

    /// Drives the writing alongside reading: a socket that refuses more
    /// only stops the writing (the answer may be on its way).
    fn poll_alongside(
        &mut self,
        cx: &mut Context<'_>,
        stream: &mut TcpStream,
    ) -> Result<(), BodyFailed> {
        if self.refused || self.done() {
            return Ok(());
        }
        match self.poll_write(cx, stream) {
            Poll::Ready(Err(WriteError::Body)) => Err(BodyFailed),
            _ => Ok(()),
        }
    }
}

/// `{size in hex}\r\n`, written on the stack instead of through the
/// formatting machinery.
fn chunk_size_line(size: usize) -> Bytes {
    let mut line = [0u8; 2 * size_of::<usize>() + 2];
    let digits = (size.max(1).ilog2() / 4 + 1) as usize;
    for (i, slot) in line[..digits].iter_mut().enumerate() {
        let nibble = (size >> (4 * (digits - 1 - i))) & 0xf;
        *slot = b"0123456789abcdef"[nibble];
    }
    line[digits..digits + 2].copy_from_slice(b"\r\n");
    Bytes::copy_from_slice(&line[..digits + 2])
}

/// The client's request body failed while it was being sent.
struct BodyFailed;

/// How an exchange failed before a usable response head.
#[derive(Debug)]
pub enum Failure {
    /// Not a byte was written (the connection had closed): the body, not
    /// yet read, is handed back for another attempt.
    Unsent(RequestBody),
    /// The request was (maybe partly) written and no response byte came,
    /// or the client's body failed.
    Lost,
    /// The connection failed after part of a response (an interim answer,
    /// or part of a head) came: the request is never sent again.
    Cut,
    /// The response head was refused.
    Invalid(HeadError),
}

/// A response head and the rest of the exchange.
#[derive(Debug)]
pub struct Answer {
    /// The head.
    pub head: ResponseHead,
    /// The body, which finishes the request too.
    pub body: UpstreamBody,
}

/// Where reading up to the response head ended.
enum HeadOutcome {
    Head(ResponseHead),
    Invalid(HeadError),
    /// The connection failed before a byte of the request was written.
    Unsent,
    /// The connection failed after, or the client's body failed.
    Lost,
    /// The connection failed once part of a response had come.
    Cut,
}

/// Sends the request and reads up to the response head, skipping interim
/// (1xx) answers other than 101.
pub async fn exchange(
    mut connection: PooledConnection,
    mut writer: RequestWriter,
) -> Result<Answer, Failure> {
    // How much of the buffer was looked at for the end of a head.
    let mut scanned = 0;
    // Whether any response byte came (an interim answer counts).
    let mut answered = false;
    let outcome = poll_fn(|cx| {
        let link = &mut connection.link;
        if writer.poll_alongside(cx, &mut link.stream).is_err() {
            return Poll::Ready(HeadOutcome::Lost);
        }
        let failed = if writer.wrote {
            HeadOutcome::Lost
        } else {
            HeadOutcome::Unsent
        };
        if writer.refused && !writer.wrote {
            return Poll::Ready(failed);
        }
        loop {
            let parsed = if response_head::may_be_complete(&link.buffer, scanned) {
                response_head::parse(&mut link.buffer, writer.head_request)
            } else if link.buffer.len() >= response_head::MAX_HEAD_BYTES {
                Err(HeadError::TooLarge)
            } else {
                Ok(None)
            };
            match parsed {
                Err(error) => return Poll::Ready(HeadOutcome::Invalid(error)),
                Ok(Some(head)) if head.status.is_informational() && head.status != 101 => {
                    scanned = 0;
                    answered = true;
                }
                Ok(Some(head)) => return Poll::Ready(HeadOutcome::Head(head)),
                Ok(None) => {
                    scanned = link.buffer.len();
                    match ready!(link.poll_fill(cx)) {
                        Ok(0) | Err(_) if answered || !link.buffer.is_empty() => {
                            return Poll::Ready(HeadOutcome::Cut);
                        }
                        Ok(0) | Err(_) => return Poll::Ready(failed),
                        Ok(_) => {}
                    }
                }
            }
        }
    })
    .await;
    match outcome {
        HeadOutcome::Head(head) => {
            let body = UpstreamBody::new(connection, writer, &head);
            Ok(Answer { head, body })
        }
        HeadOutcome::Invalid(error) => Err(Failure::Invalid(error)),
        HeadOutcome::Unsent => Err(Failure::Unsent(writer.body)),
        HeadOutcome::Lost => Err(Failure::Lost),
        HeadOutcome::Cut => Err(Failure::Cut),
    }
}

/// How much of the response body is left.
#[derive(Debug)]
enum Remaining {
    Length(u64),
    Chunked(ChunkedDecoder),
    UntilClose,
}

/// What the read buffer holds next.
enum Next {
    Data(Bytes),
    /// Nothing of the body: read more.
    Read,
    End,
}

impl Remaining {
    fn next(&mut self, buffer: &mut BytesMut) -> Result<Next, InvalidChunk> {
        Ok(match self {
            Remaining::Length(0) => Next::End,
            Remaining::Length(_) | Remaining::UntilClose if buffer.is_empty() => Next::Read,
            Remaining::Length(left) => {
                let take = usize::try_from(*left).map_or(buffer.len(), |l| l.min(buffer.len()));
                *left -= take as u64;
                Next::Data(buffer.split_to(take).freeze())
            }
            Remaining::UntilClose => Next::Data(buffer.split().freeze()),
            Remaining::Chunked(decoder) => match decoder.decode(buffer)? {
                Decoded::Data(data) => Next::Data(data),
                Decoded::NeedMore => Next::Read,
                Decoded::End => Next::End,
            },
        })
    }
}

/// A response body read from the upstream connection, which also writes
/// what is left of the request.
#[derive(Debug)]
pub struct UpstreamBody {
    /// `None` once the body ended (the connection went back to the pool or
    /// was closed).
    connection: Option<PooledConnection>,
    sending: Sending,
    remaining: Remaining,
    keep_alive: bool,
}

/// Where the rest of the request is being written from.
#[derive(Debug)]
enum Sending {
    /// From the response body's own polls (the request was written in
    /// full with the head, or no second descriptor could be made).
    Here(RequestWriter),
    /// From a task of its own.
    Apart(Upload),
}

impl UpstreamBody {
    fn new(
        connection: PooledConnection,
        writer: RequestWriter,
        head: &ResponseHead,
    ) -> UpstreamBody {
        let remaining = match head.framing {
            Framing::Length(length) => Remaining::Length(length),
            Framing::Chunked => Remaining::Chunked(ChunkedDecoder::default()),
            Framing::UntilClose => Remaining::UntilClose,
        };
        let more_to_read = !matches!(remaining, Remaining::Length(0));
        let apart = more_to_read && !writer.done() && !writer.refused;
        let sending = match apart.then(|| upload::second_descriptor(&connection.link.stream)) {
            Some(Ok(second)) => Sending::Apart(Upload::start(writer, second)),
            _ => Sending::Here(writer),
        };
        let mut body = UpstreamBody {
            connection: Some(connection),
            sending,
            remaining,
            keep_alive: head.keep_alive,
        };
        // A 101's connection stays for the tunnel.
        if matches!(body.remaining, Remaining::Length(0))
            && head.status != StatusCode::SWITCHING_PROTOCOLS
        {
            body.end();
        }
        body
    }

    /// The connection, for a 101 answer: it becomes one end of a tunnel.
    pub fn into_link(mut self) -> Option<Link> {
        self.connection.take().map(PooledConnection::into_link)
    }

    /// The body ended: its connection goes back to the pool if the request
    /// was written in full and the upstream sent nothing more.
    fn end(&mut self) {
        let sent = match &self.sending {
            Sending::Here(writer) => writer.done(),
            Sending::Apart(upload) => upload.ended() == Some(UploadEnd::Sent),
        };
        if let Some(connection) = self.connection.take()
            && self.keep_alive
            && sent
            && connection.link.buffer.is_empty()
        {
            connection.release();
        }
    }

    /// The next part of the body, `None` at its end.
    pub fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, BoxError>>> {
        loop {
            let Some(connection) = self.connection.as_mut() else {
                return Poll::Ready(None);
            };
            let link = &mut connection.link;
            let body_failed = match &mut self.sending {
                Sending::Here(writer) => writer.poll_alongside(cx, &mut link.stream).is_err(),
                Sending::Apart(upload) => {
                    upload.notify(cx);
                    upload.ended() == Some(UploadEnd::BodyFailed)
                }
            };
            if body_failed {
                self.connection = None;
                return Poll::Ready(Some(Err("request body failed".into())));
            }
            match self.remaining.next(&mut link.buffer) {
                Err(error) => {
                    self.connection = None;
                    return Poll::Ready(Some(Err(error.into())));
                }
                Ok(Next::End) => {
                    self.end();
                    return Poll::Ready(None);
                }
                Ok(Next::Data(data)) => {
                    if matches!(self.remaining, Remaining::Length(0)) {
                        self.end();
                    }
                    return Poll::Ready(Some(Ok(data)));
                }
                Ok(Next::Read) => {}
            }
            match ready!(link.poll_fill(cx)) {
                Ok(0) if matches!(self.remaining, Remaining::UntilClose) => {
                    self.connection = None;
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    self.connection = None;
                    return Poll::Ready(Some(Err("upstream closed before the body ended".into())));
                }
                Ok(_) => {}
                Err(error) => {
                    self.connection = None;
                    return Poll::Ready(Some(Err(error.into())));
                }
            }
        }
    }

    /// Whether part of the request body went out since the last call: an
    /// upload that still moves keeps the response from counting as
    /// stalled (the upstream may be waiting for it before it answers on).
    pub fn take_upload_progress(&mut self) -> bool {
        match &mut self.sending {
            Sending::Here(writer) => writer.take_progress(),
            Sending::Apart(upload) => upload.take_progress(),
        }
    }

    /// Closes the connection: the response was cut short.
    pub fn close(&mut self) {
        self.connection = None;
    }

    /// Whether nothing more will come.
    pub fn is_end_stream(&self) -> bool {
        self.connection.is_none() || matches!(self.remaining, Remaining::Length(0))
    }

    /// The exact remaining length when the upstream gave one.
    pub fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Remaining::Length(left) => SizeHint::with_exact(left),
            _ if self.connection.is_none() => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::chunk_size_line;

    #[test]
    fn chunk_sizes_are_lower_case_hex_lines() {
        for (size, line) in [
            (1, "1\r\n"),
            (15, "f\r\n"),
            (16, "10\r\n"),
            (0xabc, "abc\r\n"),
            (1 << 20, "100000\r\n"),
            (usize::MAX, "ffffffffffffffff\r\n"),
        ] {
            assert_eq!(&chunk_size_line(size)[..], line.as_bytes(), "{size}");
        }
    }
}
