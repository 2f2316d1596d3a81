//! A scan of raw request-head bytes for framing headers.
//!
//! hyper resolves `Transfer-Encoding` + `Content-Length` the RFC 9112 way
//! (chunked wins, the length is dropped) and silently merges identical
//! duplicate `Content-Length`s, so the handler never sees them. sluice
//! answers such requests 400 instead, as HAProxy does: this scanner counts
//! those header lines as the bytes arrive, one `memchr` per line, and leaves
//! a verdict for the handler.

/// Longest header-name prefix we need to see: `transfer-encoding:`.
const PREFIX: usize = 18;

/// Counts framing headers in one request head at a time.
#[derive(Debug, Default)]
pub struct HeadScanner {
    prefix: [u8; PREFIX],
    prefix_len: usize,
    seen_request_line: bool,
    content_length: u8,
    transfer_encoding: u8,
    done: bool,
}

/// What the scan of one head found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// At most one framing header.
    Clear,
    /// Several `Content-Length`s, several `Transfer-Encoding`s, or both kinds.
    Ambiguous,
}

impl HeadScanner {
    /// Starts over for a new request head.
    pub fn reset(&mut self) {
        *self = HeadScanner::default();
    }

    /// Feeds bytes that arrived; returns the verdict once the head ended.
    /// Bytes after the end of the head (a body) are ignored.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Option<Framing> {
        while !self.done && !bytes.is_empty() {
            match memchr::memchr(b'\n', bytes) {
                Some(at) => {
                    self.keep_prefix(&bytes[..at]);
                    bytes = &bytes[at + 1..];
                    if let Some(verdict) = self.end_line() {
                        return Some(verdict);
                    }
                }
                None => {
                    self.keep_prefix(bytes);
                    bytes = &[];
                }
            }
        }
        None
    }

    fn keep_prefix(&mut self, bytes: &[u8]) {
        let take = bytes.len().min(PREFIX - self.prefix_len);
        self.prefix[self.prefix_len..self.prefix_len + take].copy_from_slice(&bytes[..take]);
        self.prefix_len += take;
    }

    fn end_line(&mut self) -> Option<Framing> {
        let line = &self.prefix[..self.prefix_len];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let empty = line.is_empty();
        if self.seen_request_line {
            if empty {
                self.done = true;
                let ambiguous = self.content_length + self.transfer_encoding > 1;
                return Some(if ambiguous {
                    Framing::Ambiguous
                } else {
                    Framing::Clear
                });
            }
            if starts_with_name(line, b"content-length") {
                self.content_length = self.content_length.saturating_add(1);
            } else if starts_with_name(line, b"transfer-encoding") {
                self.transfer_encoding = self.transfer_encoding.saturating_add(1);
            }
        } else if !empty {
            self.seen_request_line = true;
        }
        self.prefix_len = 0;
        None
    }
}

/// Whether a header line starts with `name` followed by `:` or whitespace
/// (hyper rejects the whitespace form itself).
fn starts_with_name(line: &[u8], name: &[u8]) -> bool {
    line.len() > name.len()
        && line[..name.len()].eq_ignore_ascii_case(name)
        && matches!(line[name.len()], b':' | b' ' | b'\t')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_in_pieces(head: &[u8], piece: usize) -> Option<Framing> {
        let mut scanner = HeadScanner::default();
        head.chunks(piece).find_map(|chunk| scanner.feed(chunk))
    }

    #[test]
    fn verdicts_whatever_the_read_sizes() {
        let cases: [(&[u8], Framing); 7] = [
            (b"GET / HTTP/1.1\r\nhost: a\r\n\r\n", Framing::Clear),
            (b"POST / HTTP/1.1\r\ncontent-length: 3\r\n\r\nabc", Framing::Clear),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", Framing::Clear),
            (b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", Framing::Ambiguous),
            (b"POST / HTTP/1.1\r\ncontent-length: 3\r\ncontent-length: 3\r\n\r\n", Framing::Ambiguous),
            (b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\nTRANSFER-ENCODING: chunked\r\n\r\n", Framing::Ambiguous),
            (b"\r\nPOST / HTTP/1.1\nx-content-length: 3\ncontent-length: 3\n\n", Framing::Clear),
        ];
        for (head, expected) in cases {
            for piece in [1, 2, 5, 17, 1000] {
                assert_eq!(
                    scan_in_pieces(head, piece),
                    Some(expected),
                    "{:?} in pieces of {piece}",
                    String::from_utf8_lossy(head)
                );
            }
        }
    }

    #[test]
    fn body_bytes_after_the_head_are_ignored() {
        let mut scanner = HeadScanner::default();
        let verdict =
            scanner.feed(b"POST / HTTP/1.1\r\ncontent-length: 40\r\n\r\ncontent-length: 1\r\n\r\n");
        assert_eq!(verdict, Some(Framing::Clear));
        assert_eq!(scanner.feed(b"transfer-encoding: chunked\r\n\r\n"), None);
    }

    #[test]
    fn an_unfinished_head_has_no_verdict() {
        let mut scanner = HeadScanner::default();
        assert_eq!(
            scanner.feed(b"GET / HTTP/1.1\r\ncontent-length: 1\r\ncontent-len"),
            None
        );
    }
}
