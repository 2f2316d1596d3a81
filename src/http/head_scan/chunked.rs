//! A chunked request body, followed only to find where it ends, with the
//! grammar hyper's decoder accepts: hex size, optional whitespace and
//! extensions up to `\r\n`, the data, `\r\n`; after the `0` chunk,
//! trailer lines up to an empty `\r\n` line. Anything hyper's decoder
//! refuses makes the body [`Progress::Invalid`].

/// Where the scan is within the chunked body.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum State {
    /// Before the first hex digit of a size.
    #[default]
    Start,
    Size,
    SizeSpace,
    Extension,
    SizeLf,
    /// Inside chunk data, with this many bytes left.
    Data(u64),
    DataCr,
    DataLf,
    /// After the last chunk or a trailer line: `\r` ends the body.
    EndCr,
    EndLf,
    Trailer,
    TrailerLf,
}

/// What the bytes fed so far did to the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// The body goes on.
    More,
    /// The body ended; the rest of the input is the next request.
    Done,
    /// Not a chunked body hyper would accept (it closes the connection).
    Invalid,
}

/// Follows one chunked body.
#[derive(Debug, Default)]
pub struct ChunkedScan {
    state: State,
    size: u64,
}

impl ChunkedScan {
    /// Feeds bytes; returns how many belong to the body and its progress.
    pub fn feed(&mut self, bytes: &[u8]) -> (usize, Progress) {
        self.feed_until(bytes, false)
    }

    /// Like [`feed`](Self::feed), but stops where chunk data begins: a
    /// decoder takes the data itself (see [`data_left`](Self::data_left)).
    pub fn feed_framing(&mut self, bytes: &[u8]) -> (usize, Progress) {
        self.feed_until(bytes, true)
    }

    /// How much of the current chunk's data is left, when the scan is in
    /// chunk data.
    pub fn data_left(&self) -> Option<u64> {
        match self.state {
            State::Data(left) => Some(left),
            _ => None,
        }
    }

    fn feed_until(&mut self, bytes: &[u8], stop_at_data: bool) -> (usize, Progress) {
        let mut used = 0;
        while used < bytes.len() {
            let rest = &bytes[used..];
            match self.state {
                State::Data(_) if stop_at_data => break,
                State::Data(left) => {
                    let take = usize::try_from(left).map_or(rest.len(), |l| l.min(rest.len()));
                    used += take;
                    self.state = match left - take as u64 {
                        0 => State::DataCr,
                        left => State::Data(left),
                    };
                }
                State::Extension => match memchr::memchr2(b'\r', b'\n', rest) {
                    Some(at) if rest[at] == b'\r' => {
                        used += at + 1;
                        self.state = State::SizeLf;
                    }
                    Some(at) => return (used + at, Progress::Invalid),
                    None => used = bytes.len(),
                },
                State::Trailer => match memchr::memchr(b'\r', rest) {
                    Some(at) => {
                        used += at + 1;
                        self.state = State::TrailerLf;
                    }
                    None => used = bytes.len(),
                },
                state => {
                    used += 1;
                    match self.step(state, rest[0]) {
                        Some(State::Start) if state == State::EndLf => {
                            return (used, Progress::Done);
                        }
                        Some(next) => self.state = next,
                        None => return (used, Progress::Invalid),
                    }
                }
            }
        }
        (used, Progress::More)
    }

    /// The state after `byte` in one of the byte-wise states; `None` if
    /// hyper would refuse it. After the final `\n` it returns `Start`.
    fn step(&mut self, state: State, byte: u8) -> Option<State> {
        match (state, byte) {
            (State::Start | State::Size, _) if byte.is_ascii_hexdigit() => {
                let digit = (byte as char).to_digit(16).map(u64::from)?;
                self.size = self.size.checked_mul(16)?.checked_add(digit)?;
                Some(State::Size)
            }
            (State::Size | State::SizeSpace, b' ' | b'\t') => Some(State::SizeSpace),
            (State::Size | State::SizeSpace, b';') => Some(State::Extension),
            (State::Size | State::SizeSpace, b'\r') => Some(State::SizeLf),
            (State::SizeLf, b'\n') => {
                let size = std::mem::take(&mut self.size);
                Some(if size == 0 {
                    State::EndCr
                } else {
                    State::Data(size)
                })
            }
            (State::DataCr, b'\r') => Some(State::DataLf),
            (State::DataLf, b'\n') => Some(State::Start),
            (State::EndCr, b'\r') => Some(State::EndLf),
            (State::EndCr, _) => Some(State::Trailer),
            (State::EndLf, b'\n') => Some(State::Start),
            (State::TrailerLf, b'\n') => Some(State::EndCr),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_in_pieces(body: &[u8], piece: usize) -> (usize, Progress) {
        let mut scan = ChunkedScan::default();
        let mut offset = 0;
        for chunk in body.chunks(piece) {
            match scan.feed(chunk) {
                (used, Progress::More) => offset += used,
                (used, progress) => return (offset + used, progress),
            }
        }
        (offset, Progress::More)
    }

    #[test]
    fn the_end_of_a_chunked_body_whatever_the_read_sizes() {
        let cases: [(&[u8], usize, Progress); 9] = [
            (b"0\r\n\r\nGET", 5, Progress::Done),
            (b"5\r\nhello\r\n0\r\n\r\n", 15, Progress::Done),
            (
                b"a ;x=\"y\"\r\n0123456789\r\n00\r\nx-trailer: 1\r\ny: 2\r\n\r\nnext",
                48,
                Progress::Done,
            ),
            (b"1\t\r\n\n\r\n0\r\n\r\n", 12, Progress::Done),
            (b"5\r\nhello\r\n", 10, Progress::More),
            (b"5\r\nhelloX", 9, Progress::Invalid),
            (b"x\r\n", 1, Progress::Invalid),
            (b"5\nhello", 2, Progress::Invalid),
            (b"1;ext\nx", 5, Progress::Invalid),
        ];
        for (body, used, progress) in cases {
            for piece in [1, 2, 3, 7, 1000] {
                assert_eq!(
                    scan_in_pieces(body, piece),
                    (used, progress),
                    "{:?} in pieces of {piece}",
                    String::from_utf8_lossy(body)
                );
            }
        }
    }

    #[test]
    fn an_oversized_chunk_size_is_invalid() {
        let mut scan = ChunkedScan::default();
        assert_eq!(scan.feed(b"10000000000000000\r\n").1, Progress::Invalid);
    }
}
