//! Decoding a chunked response body (RFC 9112 §7.1) out of the
//! connection's read buffer, with the grammar of the request-side scan
//! ([`ChunkedScan`]): one grammar for both directions. Chunk data leaves
//! the buffer as shared `Bytes` (no copy); sizes, extensions and trailers
//! are consumed and dropped, as nginx does with an upstream's trailers.

use bytes::{Buf, Bytes, BytesMut};

use crate::http::head_scan::chunked::{ChunkedScan, Progress};

/// What one step of decoding gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// Chunk data.
    Data(Bytes),
    /// The buffer holds no more of the body: read more.
    NeedMore,
    /// The body ended; the buffer's rest is not part of it.
    End,
}

/// Not a chunked body (the response is cut and the connection dropped).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid chunked body from the upstream")]
pub struct InvalidChunk;

/// Follows one chunked body.
#[derive(Debug, Default)]
pub struct ChunkedDecoder {
    scan: ChunkedScan,
    ended: bool,
}

impl ChunkedDecoder {
    /// Consumes framing bytes from the front of `buffer` until chunk data,
    /// the end of the body, or the end of the buffer.
    pub fn decode(&mut self, buffer: &mut BytesMut) -> Result<Decoded, InvalidChunk> {
        loop {
            if self.ended {
                return Ok(Decoded::End);
            }
            if buffer.is_empty() {
                return Ok(Decoded::NeedMore);
            }
            if let Some(left) = self.scan.data_left() {
                let take = usize::try_from(left).map_or(buffer.len(), |l| l.min(buffer.len()));
                let data = buffer.split_to(take).freeze();
                self.scan.feed(&data);
                return Ok(Decoded::Data(data));
            }
            let (used, progress) = self.scan.feed_framing(buffer);
            buffer.advance(used);
            match progress {
                Progress::Invalid => return Err(InvalidChunk),
                Progress::Done => self.ended = true,
                Progress::More => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed in pieces of `step` bytes.
    fn decode_in_steps(input: &[u8], step: usize) -> Result<(Vec<u8>, Vec<u8>), InvalidChunk> {
        let mut decoder = ChunkedDecoder::default();
        let mut buffer = BytesMut::new();
        let mut data = Vec::new();
        let mut fed = 0;
        loop {
            match decoder.decode(&mut buffer)? {
                Decoded::Data(bytes) => data.extend_from_slice(&bytes),
                Decoded::End => return Ok((data, buffer.to_vec())),
                Decoded::NeedMore if fed == input.len() => return Err(InvalidChunk),
                Decoded::NeedMore => {
                    let end = (fed + step).min(input.len());
                    buffer.extend_from_slice(&input[fed..end]);
                    fed = end;
                }
            }
        }
    }

    #[test]
    fn data_extensions_and_trailers_in_any_split() {
        let body = b"5;name=v\r\nhello\r\nB \t\r\n wide world\r\n0\r\nx-t: 1\r\n\r\nNEXT";
        for step in [1, 2, 3, 7, body.len()] {
            let (data, rest) = decode_in_steps(body, step).unwrap();
            assert_eq!(data, b"hello wide world", "step {step}");
            assert!(b"NEXT".starts_with(&rest), "step {step}: {rest:?}");
        }
    }

    #[test]
    fn broken_grammar_is_refused() {
        for body in [
            &b"x\r\n"[..],
            b"\r\n",
            b"5\r\nhelloX\r\n0\r\n\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"1;ext\nx",
            b"11111111111111111\r\n",
            b"0\r\n\rX",
        ] {
            assert_eq!(decode_in_steps(body, 1), Err(InvalidChunk), "{body:?}");
        }
    }
}
