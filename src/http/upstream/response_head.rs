//! Reading an upstream's response head: httparse on the connection's read
//! buffer, header values shared with the buffer (no copies), and what the
//! head says about the body's framing and the connection's reuse.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{
    CONNECTION, CONTENT_LENGTH, HeaderMap, HeaderName, HeaderValue, TRANSFER_ENCODING,
};
use http::{StatusCode, Version};

/// Most header lines accepted in a response head (hyper's default).
const MAX_HEADERS: usize = 100;
/// Largest response head accepted: nginx's `proxy_buffer_size` answers a
/// bigger one with 502 too, at a quarter of this.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// How a response body is delimited (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// This many bytes (0 for HEAD answers, 204 and 304).
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the upstream closes the connection.
    UntilClose,
}

/// A parsed response head.
#[derive(Debug)]
pub struct ResponseHead {
    /// The status code.
    pub status: StatusCode,
    /// HTTP/1.0 or HTTP/1.1.
    pub version: Version,
    /// The headers, values sharing the head's bytes.
    pub headers: HeaderMap,
    /// The reason phrase when it is not the status's usual one, which a
    /// client then sees unchanged.
    pub reason: Option<Bytes>,
    /// How the body is delimited.
    pub framing: Framing,
    /// Whether the upstream keeps the connection open after the body.
    pub keep_alive: bool,
}

/// Why a response head is refused (the request is answered 502).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeadError {
    /// Not an HTTP/1 response head.
    #[error("malformed response head: {0}")]
    Malformed(httparse::Error),
    /// Longer than [`MAX_HEAD_BYTES`].
    #[error("response head larger than {MAX_HEAD_BYTES} bytes")]
    TooLarge,
    /// A body length two parsers could read differently.
    #[error(
        "response with ambiguous framing (Content-Length with Transfer-Encoding, or several or invalid lengths)"
    )]
    AmbiguousFraming,
    /// A transfer coding other than `chunked` alone: sluice removes
    /// `Transfer-Encoding` (hop-by-hop), so the client would get coded
    /// bytes labelled as plain (nginx refuses these too).
    #[error("response with a transfer coding other than chunked")]
    UnsupportedCoding,
}

/// Whether `buffer` may hold a complete head: it has an empty line ending
/// at or after `from` (the bytes before were looked at already). Parsing
/// only then keeps a head that trickles in a few bytes at a time from
/// being parsed again from its start on every read. One pass over the
/// line ends: `memmem::find` would build a searcher on every call, which
/// cost more than the search itself on a head of a few lines.
pub fn may_be_complete(buffer: &[u8], from: usize) -> bool {
    let window = &buffer[from.saturating_sub(2).min(buffer.len())..];
    memchr::memchr_iter(b'\n', window).any(|at| match window.get(at + 1) {
        Some(b'\n') => true,
        Some(b'\r') => window.get(at + 2) == Some(&b'\n'),
        _ => false,
    })
}

/// Where one header's name and value lie in the head.
struct Spans {
    name: (usize, usize),
    value: (usize, usize),
}

/// Parses a complete head at the start of `buffer` and removes it from
/// there; `Ok(None)` while the head is incomplete. `head_request`: the
/// request was `HEAD`, so the response has no body whatever it says.
pub fn parse(buffer: &mut BytesMut, head_request: bool) -> Result<Option<ResponseHead>, HeadError> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let base = buffer.as_ptr() as usize;
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buffer,
        &mut slots,
    );
    let length = match parsed {
        Ok(httparse::Status::Complete(length)) if length <= MAX_HEAD_BYTES => length,
        Ok(httparse::Status::Complete(_)) => return Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) if buffer.len() >= MAX_HEAD_BYTES => {
            return Err(HeadError::TooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(error) => return Err(HeadError::Malformed(error)),
    };
    let offset = |part: &[u8]| (part.as_ptr() as usize - base, part.len());
    // Where each header lies, kept while the head is split off the buffer
    // (a vector: an array of `MAX_HEADERS` would be zeroed on every call).
    let spans: Vec<Spans> = response
        .headers
        .iter()
        .map(|header| Spans {
            name: offset(header.name.as_bytes()),
            value: offset(header.value),
        })
        .collect();
    let code = response.code.unwrap_or_default();
    let version = if response.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    // httparse gives a reason that is not UTF-8 as a static "": only one
    // inside the head is kept (an empty one is the canonical one anyway).
    let reason = response
        .reason
        .filter(|r| !r.is_empty())
        .map(|r| offset(r.as_bytes()));
    let status =
        StatusCode::from_u16(code).map_err(|_| HeadError::Malformed(httparse::Error::Status))?;
    let head = buffer.split_to(length).freeze();
    let slice = |(start, len): (usize, usize)| head.slice(start..start + len);
    let mut headers = HeaderMap::with_capacity(spans.len());
    // What the framing and reuse depend on is noted on the way, instead of
    // being looked up in the map afterwards.
    let mut facts = FramingFacts::default();
    for span in &spans {
        let name = HeaderName::from_bytes(&slice(span.name))
            .map_err(|_| HeadError::Malformed(httparse::Error::HeaderName))?;
        let value = HeaderValue::from_maybe_shared(slice(span.value))
            .map_err(|_| HeadError::Malformed(httparse::Error::HeaderValue))?;
        facts.note(&name, &value);
        headers.append(name, value);
    }
    let reason = reason.map(slice).filter(|r| {
        status
            .canonical_reason()
            .is_none_or(|c| c.as_bytes() != &r[..])
    });
    let framing = facts.framing(status, head_request)?;
    let keep_alive = framing != Framing::UntilClose
        && match version {
            Version::HTTP_10 => facts.keep_alive_token,
            _ => !facts.close_token,
        };
    Ok(Some(ResponseHead {
        status,
        version,
        headers,
        reason,
        framing,
        keep_alive,
    }))
}

/// The headers that decide a response's framing and reuse.
#[derive(Default)]
struct FramingFacts {
    /// `Content-Length` headers seen, and the last one's value.
    lengths: usize,
    length: Option<u64>,
    /// Whether any `Transfer-Encoding` was seen, how many codings all of
    /// them name, and whether the last one ends in `chunked`.
    coded: bool,
    codings: usize,
    chunked: bool,
    close_token: bool,
    keep_alive_token: bool,
}

impl FramingFacts {
    fn note(&mut self, name: &HeaderName, value: &HeaderValue) {
        if *name == CONTENT_LENGTH {
            self.lengths += 1;
            self.length = parse_length(value.as_bytes());
        } else if *name == TRANSFER_ENCODING {
            self.coded = true;
            for token in value
                .as_bytes()
                .split(|b| *b == b',')
                .map(<[u8]>::trim_ascii)
            {
                self.codings += usize::from(!token.is_empty());
                self.chunked = token.eq_ignore_ascii_case(b"chunked");
            }
        } else if *name == CONNECTION {
            for token in value
                .as_bytes()
                .split(|b| *b == b',')
                .map(<[u8]>::trim_ascii)
            {
                self.close_token |= token.eq_ignore_ascii_case(b"close");
                self.keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }

    /// How the body is delimited (RFC 9112 §6.3); a length two parsers
    /// could read differently is refused.
    fn framing(&self, status: StatusCode, head_request: bool) -> Result<Framing, HeadError> {
        // A length that does not parse is refused whatever the request
        // (a HEAD answer's Content-Length goes to the client as it is).
        if self.lengths > 1 || (self.lengths == 1 && (self.coded || self.length.is_none())) {
            return Err(HeadError::AmbiguousFraming);
        }
        if head_request
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            return Ok(Framing::Length(0));
        }
        if self.coded {
            return match (self.codings, self.chunked) {
                (1, true) => Ok(Framing::Chunked),
                _ => Err(HeadError::UnsupportedCoding),
            };
        }
        match (self.lengths, self.length) {
            (0, _) => Ok(Framing::UntilClose),
            (_, Some(length)) => Ok(Framing::Length(length)),
            (_, None) => Err(HeadError::AmbiguousFraming),
        }
    }
}

/// A `Content-Length` value: decimal digits only.
fn parse_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |total, &digit| {
        if !digit.is_ascii_digit() {
            return None;
        }
        total.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
    })
}

#[cfg(test)]
#[path = "response_head_tests.rs"]
mod tests;
