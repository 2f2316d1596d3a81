//! Follows the raw request byte stream of a client connection and checks
//! the framing headers of every request head on it.
//!
//! hyper resolves `Transfer-Encoding` + `Content-Length` the RFC 9112 way
//! (chunked wins, the length is dropped) and silently merges identical
//! duplicate `Content-Length`s, so the handler never sees them. sluice
//! answers such requests 400 instead, as HAProxy does. To see every head,
//! also the second one of a pipelined read or one that follows a body in
//! the same buffer, [`FramingScan`] follows message framing exactly as
//! hyper does: head, then a body of `Content-Length` bytes or a chunked
//! body, then the next head.
//!
//! It counts the heads whose framing is clear, from the start of the
//! connection; at the first head that is not (or bytes hyper could not
//! parse either) it stops following, so every later request counts as
//! unchecked and is refused. Costs per read: one `memchr` per head line,
//! one per chunk-size line, nothing per body byte; no allocation.
//!
//! - [`head`]: the header lines of one head.
//! - [`chunked`]: a chunked body, to find where it ends.

pub mod chunked;
pub mod head;

use chunked::{ChunkedScan, Progress};
use head::{Framing, HeadScan};

/// Where the scan is in the request stream.
#[derive(Debug)]
enum Stage {
    /// Inside a request head (or before its first byte).
    Head(HeadScan),
    /// Inside a `Content-Length` body with this many bytes left.
    Length(u64),
    /// Inside a chunked body.
    Chunked(ChunkedScan),
    /// A head was refused or the stream could not be followed: nothing
    /// after this point is checked.
    Stopped,
}

/// Follows one connection's request stream and counts its clear heads.
#[derive(Debug)]
pub struct FramingScan {
    stage: Stage,
    clear: u64,
}

impl Default for FramingScan {
    fn default() -> Self {
        FramingScan {
            stage: Stage::Head(HeadScan::default()),
            clear: 0,
        }
    }
}

impl FramingScan {
    /// How many request heads, counted from the start of the connection,
    /// were complete and had clear framing. Request `k` (from 0) may be
    /// served only if `k` is below this.
    pub fn clear_heads(&self) -> u64 {
        self.clear
    }

    /// Whether the scan stopped: a head was refused or the bytes could not
    /// be followed (hyper rejects those too and closes).
    pub fn stopped(&self) -> bool {
        matches!(self.stage, Stage::Stopped)
    }

    /// Whether the bytes fed so far end exactly where a request ended:
    /// no part of a head or body is pending.
    pub fn at_boundary(&self) -> bool {
        matches!(&self.stage, Stage::Head(head) if head.untouched())
    }

    /// Feeds the bytes of one read, in the order they arrived.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let (used, next) = match &mut self.stage {
                Stage::Head(head) => match head.feed(bytes) {
                    (used, None) => (used, None),
                    (used, Some(framing)) => (used, Some(self.after_head(framing))),
                },
                Stage::Length(left) => {
                    let used = usize::try_from(*left).map_or(bytes.len(), |l| l.min(bytes.len()));
                    *left -= used as u64;
                    let next = (*left == 0).then(|| Stage::Head(HeadScan::default()));
                    (used, next)
                }
                Stage::Chunked(body) => match body.feed(bytes) {
                    (used, Progress::More) => (used, None),
                    (used, Progress::Done) => (used, Some(Stage::Head(HeadScan::default()))),
                    (used, Progress::Invalid) => (used, Some(Stage::Stopped)),
                },
                Stage::Stopped => return,
            };
            bytes = &bytes[used..];
            if let Some(next) = next {
                self.stage = next;
            }
        }
    }

    /// The stage after a head with `framing` ended (and counts it).
    fn after_head(&mut self, framing: Framing) -> Stage {
        if framing == Framing::Refused {
            return Stage::Stopped;
        }
        self.clear += 1;
        match framing {
            Framing::Length(length) if length > 0 => Stage::Length(length),
            Framing::Chunked => Stage::Chunked(ChunkedScan::default()),
            _ => Stage::Head(HeadScan::default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clear_in_pieces(stream: &[u8], piece: usize) -> (u64, bool) {
        let mut scan = FramingScan::default();
        for chunk in stream.chunks(piece) {
            scan.feed(chunk);
        }
        (scan.clear_heads(), scan.stopped())
    }

    #[test]
    fn every_head_of_a_pipelined_stream_is_checked_whatever_the_read_sizes() {
        let cases: [(&[u8], u64, bool); 7] = [
            (b"GET / HTTP/1.1\r\nhost: a\r\n\r\nGET /2 HTTP/1.1\r\nhost: a\r\n\r\n", 2, false),
            (
                b"GET / HTTP/1.1\r\nhost: a\r\n\r\nPOST / HTTP/1.1\r\ncontent-length: 1\r\ntransfer-encoding: chunked\r\n\r\n",
                1,
                true,
            ),
            (
                b"POST / HTTP/1.1\r\ncontent-length: 44\r\n\r\nGET / HTTP/1.1\r\ncontent-length: 1\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\n\r\n",
                2,
                false,
            ),
            (
                b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nx-t: 1\r\n\r\nGET / HTTP/1.1\r\ncontent-length: 2\r\ncontent-length: 2\r\n\r\n",
                1,
                true,
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\nA\r\n0123456789\r\n0\r\n\r\nGET / HTTP/1.1\n\n",
                2,
                false,
            ),
            (
                b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhelloX\r\n",
                1,
                true,
            ),
            (b"GET / HTTP/1.1\r\nhost: a\r\n\r\nGET /2 HTTP/1.1\r\nhost: a\r\n", 1, false),
        ];
        for (stream, clear, stopped) in cases {
            for piece in [1, 2, 3, 7, 16, 10_000] {
                assert_eq!(
                    clear_in_pieces(stream, piece),
                    (clear, stopped),
                    "{:?} in pieces of {piece}",
                    String::from_utf8_lossy(stream)
                );
            }
        }
    }

    #[test]
    fn a_body_that_looks_like_a_head_is_skipped() {
        let body = b"GET /x HTTP/1.1\r\ncontent-length: 1\r\ncontent-length: 1\r\n\r\n";
        let mut stream =
            format!("POST / HTTP/1.1\r\ncontent-length: {}\r\n\r\n", body.len()).into_bytes();
        stream.extend_from_slice(body);
        stream.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(clear_in_pieces(&stream, 5), (2, false));
    }
}
