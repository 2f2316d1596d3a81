//! The header lines of one request head, scanned for framing as they
//! arrive: one `memchr` per line, and a byte-wise look only at the names
//! and values of `Content-Length` and `Transfer-Encoding`.
//!
//! Line ends are as httparse reads them (`\n` with an optional `\r`),
//! empty lines before the request line are skipped, an empty line ends the
//! head.

/// The longest header name that matters: `transfer-encoding`.
const NAME_MAX: usize = 17;

/// What a complete head says about the body that follows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// A body of this many bytes.
    Length(u64),
    /// A chunked body.
    Chunked,
    /// Framing two parsers could read differently, or that sluice refuses
    /// anyway: several `Content-Length`s or `Transfer-Encoding`s, both
    /// kinds, a length that is not plain digits, an encoding other than one
    /// plain `chunked`, whitespace before the colon.
    Refused,
}

/// Where the scan is within the current line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Line {
    /// Collecting the header name.
    #[default]
    Name,
    /// The rest of the line does not matter.
    Skip,
    /// In a `Content-Length` value.
    Length(Value),
    /// In a `Transfer-Encoding` value; `usize` bytes of `chunked` matched.
    Encoding(Value, usize),
}

/// Where a value is between its optional whitespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Value {
    Before,
    Inside,
    After,
}

/// Scans one request head.
#[derive(Debug, Default)]
pub struct HeadScan {
    name: [u8; NAME_MAX],
    name_len: usize,
    line: Line,
    /// Bytes seen on the current line, saturating at 2; the first one.
    line_bytes: u8,
    first_byte: u8,
    seen_request_line: bool,
    lengths: u8,
    encodings: u8,
    length: u64,
    refused: bool,
}

impl HeadScan {
    /// Whether no byte of this head has been seen yet.
    pub fn untouched(&self) -> bool {
        !self.seen_request_line && self.line_bytes == 0
    }

    /// Feeds bytes; returns how many belong to this head and, once its
    /// empty line was seen, its framing. Bytes after the head are not used.
    pub fn feed(&mut self, bytes: &[u8]) -> (usize, Option<Framing>) {
        let mut used = 0;
        while used < bytes.len() {
            let rest = &bytes[used..];
            match memchr::memchr(b'\n', rest) {
                Some(at) => {
                    self.whole_or_rest_of_line(&rest[..at]);
                    used += at + 1;
                    if let Some(framing) = self.end_line() {
                        return (used, Some(framing));
                    }
                }
                None => {
                    self.line_part(rest);
                    used = bytes.len();
                }
            }
        }
        (used, None)
    }

    /// A line that ends here: the whole line when nothing of it came
    /// before (the usual case), found by one `memchr` for the colon rather
    /// than byte by byte; else the rest of a line begun in an earlier read.
    fn whole_or_rest_of_line(&mut self, line: &[u8]) {
        let fresh = self.seen_request_line
            && self.line_bytes == 0
            && self.name_len == 0
            && self.line == Line::Name;
        if !fresh || line.is_empty() {
            self.line_part(line);
            return;
        }
        self.first_byte = line[0];
        self.line_bytes = line.len().min(2) as u8;
        let name_end = memchr::memchr(b':', line).unwrap_or(line.len());
        let name = &line[..name_end];
        let value = line.get(name_end + 1..).unwrap_or_default();
        if name.eq_ignore_ascii_case(b"content-length") && name_end < line.len() {
            self.line = Line::Length(Value::Before);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") && name_end < line.len() {
            self.line = Line::Encoding(Value::Before, 0);
        } else {
            // As byte by byte: a framing name followed by a blank before
            // its colon is refused; any other name is not looked at.
            self.line = if blank_after_framing_name(name) {
                self.refuse_line()
            } else {
                Line::Skip
            };
            return;
        }
        self.line_part(value);
    }

    /// Bytes of the current line (no `\n`).
    fn line_part(&mut self, part: &[u8]) {
        let Some(&first) = part.first() else {
            return;
        };
        if self.line_bytes == 0 {
            self.first_byte = first;
        }
        self.line_bytes = self
            .line_bytes
            .saturating_add(part.len().min(2) as u8)
            .min(2);
        if !self.seen_request_line {
            return;
        }
        for &byte in part {
            match self.line {
                Line::Skip => return,
                Line::Name => self.name_byte(byte),
                Line::Length(value) => self.length_byte(value, byte),
                Line::Encoding(value, matched) => self.encoding_byte(value, matched, byte),
            }
        }
    }

    fn name_byte(&mut self, byte: u8) {
        let name = &self.name[..self.name_len];
        let framing_name = name.eq_ignore_ascii_case(b"content-length")
            || name.eq_ignore_ascii_case(b"transfer-encoding");
        match byte {
            b':' if name.eq_ignore_ascii_case(b"content-length") => {
                self.line = Line::Length(Value::Before);
            }
            b':' if name.eq_ignore_ascii_case(b"transfer-encoding") => {
                self.line = Line::Encoding(Value::Before, 0);
            }
            b' ' | b'\t' if framing_name => {
                self.refused = true;
                self.line = Line::Skip;
            }
            _ if self.name_len == NAME_MAX || byte == b':' => self.line = Line::Skip,
            _ => {
                self.name[self.name_len] = byte;
                self.name_len += 1;
            }
        }
    }

    fn length_byte(&mut self, value: Value, byte: u8) {
        self.line = match (value, byte) {
            (Value::Before, b' ' | b'\t') => Line::Length(Value::Before),
            (Value::Before | Value::Inside, b'0'..=b'9') => {
                match self
                    .length
                    .checked_mul(10)
                    .and_then(|l| l.checked_add(u64::from(byte - b'0')))
                {
                    Some(length) => {
                        self.length = length;
                        Line::Length(Value::Inside)
                    }
                    None => self.refuse_line(),
                }
            }
            (Value::Inside | Value::After, b' ' | b'\t' | b'\r') => Line::Length(Value::After),
            _ => self.refuse_line(),
        };
    }

    fn encoding_byte(&mut self, value: Value, matched: usize, byte: u8) {
        const CHUNKED: &[u8] = b"chunked";
        self.line = match (value, byte) {
            (Value::Before, b' ' | b'\t') => Line::Encoding(Value::Before, 0),
            (Value::Before | Value::Inside, _)
                if matched < CHUNKED.len() && byte.eq_ignore_ascii_case(&CHUNKED[matched]) =>
            {
                Line::Encoding(Value::Inside, matched + 1)
            }
            (Value::Inside | Value::After, b' ' | b'\t' | b'\r') if matched == CHUNKED.len() => {
                Line::Encoding(Value::After, matched)
            }
            _ => self.refuse_line(),
        };
    }

    fn refuse_line(&mut self) -> Line {
        self.refused = true;
        Line::Skip
    }

    /// The line ended; returns the framing if it was the head's last.
    fn end_line(&mut self) -> Option<Framing> {
        let empty = self.line_bytes == 0 || (self.line_bytes == 1 && self.first_byte == b'\r');
        if !self.seen_request_line {
            self.seen_request_line = !empty;
        } else if empty {
            return Some(self.framing());
        } else {
            match self.line {
                Line::Length(Value::Before) => self.refused = true,
                Line::Length(_) => self.lengths = self.lengths.saturating_add(1),
                Line::Encoding(_, 7) => self.encodings = self.encodings.saturating_add(1),
                Line::Encoding(..) => self.refused = true,
                Line::Name | Line::Skip => {}
            }
        }
        self.line = Line::Name;
        self.name_len = 0;
        self.line_bytes = 0;
        None
    }

    fn framing(&self) -> Framing {
        match (self.refused, self.lengths, self.encodings) {
            (false, 0, 0) => Framing::Empty,
            (false, 1, 0) => Framing::Length(self.length),
            (false, 0, 1) => Framing::Chunked,
            _ => Framing::Refused,
        }
    }
}

/// Whether `name` (a header line up to its colon) is `Content-Length` or
/// `Transfer-Encoding` followed by a space or tab.
fn blank_after_framing_name(name: &[u8]) -> bool {
    [&b"content-length"[..], b"transfer-encoding"]
        .iter()
        .any(|framing| {
            name.len() > framing.len()
                && name[..framing.len()].eq_ignore_ascii_case(framing)
                && matches!(name[framing.len()], b' ' | b'\t')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_in_pieces(head: &[u8], piece: usize) -> Option<(usize, Framing)> {
        let mut scan = HeadScan::default();
        let mut offset = 0;
        for chunk in head.chunks(piece) {
            if let (used, Some(framing)) = scan.feed(chunk) {
                return Some((offset + used, framing));
            }
            offset += chunk.len();
        }
        None
    }

    #[test]
    fn framing_whatever_the_read_sizes() {
        let cases: [(&[u8], Framing); 21] = [
            (b"GET / HTTP/1.1\r\nhost: a\r\n\r\n", Framing::Empty),
            (b"POST / HTTP/1.1\r\ncontent-length: 3\r\n\r\n", Framing::Length(3)),
            (b"POST / HTTP/1.1\r\nContent-Length:\t 0012 \r\n\r\n", Framing::Length(12)),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", Framing::Chunked),
            (b"POST / HTTP/1.1\r\ntransfer-encoding:CHUNKED  \r\n\r\n", Framing::Chunked),
            (b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", Framing::Refused),
            (b"POST / HTTP/1.1\r\ncontent-length: 3\r\ncontent-length: 3\r\n\r\n", Framing::Refused),
            (b"POST / HTTP/1.1\r\ncontent-length: 3, 3\r\n\r\n", Framing::Refused),
            (b"POST / HTTP/1.1\r\ncontent-length: +3\r\n\r\n", Framing::Refused),
            (b"POST / HTTP/1.1\r\ncontent-length: \r\n\r\n", Framing::Refused),
            (b"POST / HTTP/1.1\r\ncontent-length: 99999999999999999999\r\n\r\n", Framing::Refused),
            (b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\nTRANSFER-ENCODING: chunked\r\n\r\n", Framing::Refused),
            (b"POST / HTTP/1.1\r\ntransfer-encoding: gzip, chunked\r\n\r\n", Framing::Refused),
            (b"POST / HTTP/1.1\r\ntransfer-encoding: chunkedx\r\n\r\n", Framing::Refused),
            (b"POST / HTTP/1.1\r\ntransfer-encoding : chunked\r\n\r\n", Framing::Refused),
            (b"\r\n\nPOST / HTTP/1.1\nx-content-length: 3\ncontent-lengths: 4\n\n", Framing::Empty),
            (b"POST / HTTP/1.1\r\ncontent-length\t: 3\r\n\r\n", Framing::Refused),
            (b"POST / HTTP/1.1\r\ncontent-length 3\r\n\r\n", Framing::Refused),
            (b"POST / HTTP/1.1\r\ncontent-lengthx : 3\r\n\r\n", Framing::Empty),
            (b"POST / HTTP/1.1\r\ntransfer-encodingx: chunked\r\n\r\n", Framing::Empty),
            (b"POST / HTTP/1.1\r\n: chunked\r\nCONTENT-LENGTH:7\r\n\r\n", Framing::Length(7)),
        ];
        for (head, expected) in cases {
            for piece in [1, 2, 5, 17, 1000] {
                assert_eq!(
                    scan_in_pieces(head, piece),
                    Some((head.len(), expected)),
                    "{:?} in pieces of {piece}",
                    String::from_utf8_lossy(head)
                );
            }
        }
    }

    #[test]
    fn the_request_line_and_an_unfinished_head_give_no_framing() {
        let mut scan = HeadScan::default();
        assert_eq!(scan.feed(b"GET /content-length: HTTP/1.1\r\n").1, None);
        assert_eq!(scan.feed(b"content-length: 1\r\ncontent-len").1, None);
        assert_eq!(scan.feed(b"gth: 1\r\n\r\nbody").1, Some(Framing::Refused));
    }
}
