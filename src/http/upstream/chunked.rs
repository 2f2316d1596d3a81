//! Decoding a chunked response body (RFC 9112 §7.1) out of the
//! connection's read buffer. Chunk data leaves the buffer as shared
//! `Bytes` (no copy); sizes, extensions and trailers are consumed and
//! dropped, as nginx does with an upstream's trailers.

use bytes::{Buf, Bytes, BytesMut};

/// Where the decoder is within the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// In a chunk size; `digits` read so far.
    Size {
        size: u64,
        digits: u8,
    },
    /// Whitespace after the size.
    SizeSpace(u64),
    /// A chunk extension, up to `\r`.
    Extension(u64),
    /// The `\n` ending a size line.
    SizeLf(u64),
    /// Inside chunk data, with this many bytes left.
    Data(u64),
    DataCr,
    DataLf,
    /// After the last chunk or a trailer line.
    LineStart,
    Trailer,
    TrailerLf,
    EndLf,
    Done,
}

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
#[derive(Debug)]
pub struct ChunkedDecoder {
    state: State,
}

impl Default for ChunkedDecoder {
    fn default() -> ChunkedDecoder {
        ChunkedDecoder {
            state: State::Size { size: 0, digits: 0 },
        }
    }
}

impl ChunkedDecoder {
    /// Consumes framing bytes from the front of `buffer` until chunk data,
    /// the end of the body, or the end of the buffer.
    pub fn decode(&mut self, buffer: &mut BytesMut) -> Result<Decoded, InvalidChunk> {
        let mut used = 0;
        let result = loop {
            if self.state == State::Done {
                break Ok(Decoded::End);
            }
            if let State::Data(left) = self.state
                && used < buffer.len()
            {
                buffer.advance(used);
                let take = usize::try_from(left).map_or(buffer.len(), |l| l.min(buffer.len()));
                let left = left - take as u64;
                self.state = if left == 0 {
                    State::DataCr
                } else {
                    State::Data(left)
                };
                return Ok(Decoded::Data(buffer.split_to(take).freeze()));
            }
            let Some(&byte) = buffer.get(used) else {
                break Ok(Decoded::NeedMore);
            };
            used += 1;
            match self.step(byte) {
                Some(state) => self.state = state,
                None => break Err(InvalidChunk),
            }
        };
        buffer.advance(used);
        result
    }

    /// The state after `byte`, or `None` if it breaks the grammar.
    fn step(&self, byte: u8) -> Option<State> {
        Some(match (self.state, byte) {
            (State::Size { size, digits }, b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F') => {
                if digits == 16 {
                    return None;
                }
                let digit = char::from(byte).to_digit(16)?;
                State::Size {
                    size: size << 4 | u64::from(digit),
                    digits: digits + 1,
                }
            }
            (State::Size { digits: 0, .. }, _) => return None,
            (State::Size { size, .. } | State::SizeSpace(size), b' ' | b'\t') => {
                State::SizeSpace(size)
            }
            (State::Size { size, .. } | State::SizeSpace(size), b';') => State::Extension(size),
            (State::Size { size, .. } | State::SizeSpace(size) | State::Extension(size), b'\r') => {
                State::SizeLf(size)
            }
            (State::Extension(_), b'\n') => return None,
            (State::Extension(size), _) => State::Extension(size),
            (State::SizeLf(0), b'\n') => State::LineStart,
            (State::SizeLf(size), b'\n') => State::Data(size),
            (State::DataCr, b'\r') => State::DataLf,
            (State::DataLf, b'\n') => State::Size { size: 0, digits: 0 },
            (State::LineStart, b'\r') => State::EndLf,
            (State::LineStart | State::Trailer, b'\n') => return None,
            (State::Trailer, b'\r') => State::TrailerLf,
            (State::LineStart | State::Trailer, _) => State::Trailer,
            (State::TrailerLf, b'\n') => State::LineStart,
            (State::EndLf, b'\n') => State::Done,
            _ => return None,
        })
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
            b"11111111111111111\r\n",
            b"0\r\nx-t\n\r\n",
            b"0\r\n\rX",
        ] {
            assert_eq!(decode_in_steps(body, 1), Err(InvalidChunk), "{body:?}");
        }
    }
}
