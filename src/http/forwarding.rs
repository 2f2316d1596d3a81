//! Checking a client request and rewriting its headers for the upstream.
//!
//! Framing that two parsers could read differently is rejected, never
//! forwarded: `Transfer-Encoding` together with `Content-Length`, several or
//! comma-listed `Content-Length`s, any `Transfer-Encoding` other than one
//! plain `chunked`. Hop-by-hop headers and those named in `Connection` are
//! removed before sluice adds its own (RFC 9110 §7.6.1), so a client cannot
//! strip `X-Forwarded-For` by naming it in `Connection`.

use http::header::{
    CONNECTION, CONTENT_LENGTH, HOST, HeaderMap, HeaderName, HeaderValue, TE, TRAILER,
    TRANSFER_ENCODING, UPGRADE,
};
use http::{Method, Request, Version};

use super::error::ProxyError;

/// Longest request target accepted (414 beyond), as nginx's default large
/// header buffer.
pub const MAX_URI_LEN: usize = 8 * 1024;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Which of the headers the proxy path looks at a request has: found in
/// one pass over its names, so each check that finds its header absent
/// (the usual case for all but `Host`) costs no map lookup.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Present(u8);

impl Present {
    const HOST: u8 = 1;
    const CONTENT_LENGTH: u8 = 1 << 1;
    const TRANSFER_ENCODING: u8 = 1 << 2;
    const CONNECTION: u8 = 1 << 3;
    const UPGRADE: u8 = 1 << 4;
    const FORWARDED_FOR: u8 = 1 << 5;

    /// The headers of `headers` that matter here.
    pub fn of(headers: &HeaderMap) -> Present {
        let mut bits = 0;
        for name in headers.keys() {
            bits |= match name.as_str() {
                "host" => Present::HOST,
                "content-length" => Present::CONTENT_LENGTH,
                "transfer-encoding" => Present::TRANSFER_ENCODING,
                "connection" => Present::CONNECTION,
                "upgrade" => Present::UPGRADE,
                "x-forwarded-for" => Present::FORWARDED_FOR,
                _ => 0,
            };
        }
        Present(bits)
    }

    fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }
}

/// Rejects requests whose framing or target is ambiguous, and returns the
/// request's host (without validation of its port). `present` is
/// [`Present::of`] its headers.
pub fn check_request<B>(req: &Request<B>, present: Present) -> Result<Option<&str>, ProxyError> {
    let headers = req.headers();
    if req.method() == Method::CONNECT {
        return Err(ProxyError::BadRequest("CONNECT is not supported"));
    }
    if req.uri().path() == "*" && req.method() != Method::OPTIONS {
        return Err(ProxyError::BadRequest(
            "asterisk-form target outside OPTIONS",
        ));
    }
    let target_len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if target_len > MAX_URI_LEN {
        return Err(ProxyError::UriTooLong);
    }
    if present.has(Present::CONTENT_LENGTH | Present::TRANSFER_ENCODING) {
        check_framing(headers)?;
    }
    let mut hosts = present
        .has(Present::HOST)
        .then(|| headers.get_all(HOST).iter())
        .into_iter()
        .flatten();
    let host = match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => return Err(ProxyError::BadRequest("several Host headers")),
        (Some(value), None) => Some(
            value
                .to_str()
                .ok()
                .filter(|h| valid_host(h))
                .ok_or(ProxyError::BadRequest("invalid Host header"))?,
        ),
        (None, _) => None,
    };
    // RFC 9112 section 3.2: an HTTP/1.1 request needs a Host header, also
    // with an absolute-form target.
    if host.is_none() && req.version() >= http::Version::HTTP_11 {
        return Err(ProxyError::BadRequest("missing Host header"));
    }
    match (req.uri().authority(), host) {
        (Some(authority), _) if !valid_host(authority.as_str()) => Err(ProxyError::BadRequest(
            "invalid request target authority (user info, or a character a host cannot have)",
        )),
        (Some(authority), Some(host)) if !authority.as_str().eq_ignore_ascii_case(host) => Err(
            ProxyError::BadRequest("request target authority differs from Host"),
        ),
        (Some(authority), _) => Ok(Some(authority.as_str())),
        (None, host) => Ok(host),
    }
}

/// A Host header value: a reg-name, IPv4 or bracketed IPv6 literal and an
/// optional port; nothing that could smuggle a path or user info.
fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'[' | b']' | b'~')
        })
}

fn check_framing(headers: &HeaderMap) -> Result<(), ProxyError> {
    let mut lengths = headers.get_all(CONTENT_LENGTH).iter();
    let has_length = match (lengths.next(), lengths.next()) {
        (Some(_), Some(_)) => return Err(ProxyError::BadRequest("several Content-Length headers")),
        (Some(value), None) => {
            if value.is_empty() || !value.as_bytes().iter().all(u8::is_ascii_digit) {
                return Err(ProxyError::BadRequest("invalid Content-Length"));
            }
            true
        }
        (None, _) => false,
    };
    let mut encodings = headers.get_all(TRANSFER_ENCODING).iter();
    match (encodings.next(), encodings.next()) {
        (None, _) => Ok(()),
        (Some(_), Some(_)) => Err(ProxyError::BadRequest("several Transfer-Encoding headers")),
        (Some(_), None) if has_length => Err(ProxyError::BadRequest(
            "both Transfer-Encoding and Content-Length",
        )),
        (Some(value), None) if value.as_bytes().eq_ignore_ascii_case(b"chunked") => Ok(()),
        (Some(_), None) => Err(ProxyError::BadRequest("unsupported Transfer-Encoding")),
    }
}

/// Whether the request asks to switch protocols (WebSocket and others);
/// `h2c` is never tunnelled.
pub fn upgrade_protocol(headers: &HeaderMap, present: Present) -> Option<HeaderValue> {
    if !present.has(Present::UPGRADE) {
        return None;
    }
    let upgrade = headers.get(UPGRADE)?;
    if upgrade.as_bytes().eq_ignore_ascii_case(b"h2c") {
        return None;
    }
    connection_tokens(headers)
        .any(|t| t.eq_ignore_ascii_case(b"upgrade"))
        .then(|| upgrade.clone())
}

/// Whether the client's connection stays open after `req` (RFC 9112
/// §9.3): for HTTP/1.1 unless it says `close`, for HTTP/1.0 only if it
/// says `keep-alive`.
pub fn keeps_alive<B>(req: &Request<B>, present: Present) -> bool {
    if !present.has(Present::CONNECTION) {
        return req.version() != Version::HTTP_10;
    }
    let mut tokens = connection_tokens(req.headers());
    if req.version() == Version::HTTP_10 {
        tokens.any(|t| t.eq_ignore_ascii_case(b"keep-alive"))
    } else {
        !tokens.any(|t| t.eq_ignore_ascii_case(b"close"))
    }
}

/// The comma-separated tokens of every `Connection` value, split on bytes
/// (a token that is not a valid header name is skipped by its users).
fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &[u8]> {
    headers
        .get_all(CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// Headers that concern one connection only (RFC 9110 §7.6.1), never
/// forwarded.
static HOP_BY_HOP: [HeaderName; 7] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    TE,
    TRAILER,
    TRANSFER_ENCODING,
    UPGRADE,
];

/// `1 << i` if `name` is `HOP_BY_HOP[i]`, else 0 (a match on the name's
/// text: cheaper than comparing it with seven names).
fn hop_by_hop_bit(name: &str) -> u8 {
    match name {
        "connection" => 1,
        "keep-alive" => 1 << 1,
        "proxy-connection" => 1 << 2,
        "te" => 1 << 3,
        "trailer" => 1 << 4,
        "transfer-encoding" => 1 << 5,
        "upgrade" => 1 << 6,
        _ => 0,
    }
}

/// [`hop_by_hop_bit`] of a name in any case (a `Connection` token),
/// lower-cased on the stack: no name is longer than 17 bytes.
fn hop_by_hop_bit_of(name: &[u8]) -> u8 {
    let mut lower = [0u8; 17];
    let Some(lower) = lower.get_mut(..name.len()) else {
        return 0;
    };
    for (to, from) in lower.iter_mut().zip(name) {
        *to = from.to_ascii_lowercase();
    }
    std::str::from_utf8(lower).map_or(0, hop_by_hop_bit)
}

/// The names `Connection` lists beyond the hop-by-hop ones (which go
/// anyway), and whether it says `close`, which also names a header called
/// `close`.
fn connection_named(headers: &HeaderMap) -> (Vec<&[u8]>, bool) {
    let mut close = false;
    let named = connection_tokens(headers)
        .filter(|t| {
            let is_close = t.eq_ignore_ascii_case(b"close");
            close |= is_close;
            !is_close && hop_by_hop_bit_of(t) == 0
        })
        .collect();
    (named, close)
}

/// Removes hop-by-hop headers and every header named in `Connection`.
///
/// One pass over the names finds which hop-by-hop headers are present, so
/// a request without any (the common case) costs no lookups, and a
/// response with only `Connection: keep-alive` costs one removal.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let mut present = 0u8;
    for name in headers.keys() {
        present |= hop_by_hop_bit(name.as_str());
    }
    if present == 0 {
        return;
    }
    if present & 1 != 0 {
        // Names that are hop-by-hop anyway are removed below, and `close`,
        // the usual token, is looked up without building a name: only
        // other names cost an allocation.
        let (named, close) = connection_named(headers);
        let named: Vec<HeaderName> = named
            .into_iter()
            .filter_map(|t| HeaderName::from_bytes(t).ok())
            .collect();
        if close {
            headers.remove("close");
        }
        for name in named {
            headers.remove(name);
        }
    }
    for (index, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << index) != 0 {
            headers.remove(name);
        }
    }
}

/// The client's address as a header value (`X-Forwarded-For`), made once
/// per client connection.
pub fn address_value(ip: std::net::IpAddr) -> HeaderValue {
    let text = match ip {
        std::net::IpAddr::V4(v4) => {
            // `Display` goes through the formatting machinery, several
            // times dearer than this for the usual case.
            let mut text = String::with_capacity(15);
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text.push('.');
                }
                if octet >= 100 {
                    text.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    text.push(char::from(b'0' + octet / 10 % 10));
                }
                text.push(char::from(b'0' + octet % 10));
            }
            text
        }
        std::net::IpAddr::V6(v6) => v6.to_string(),
    };
    HeaderValue::try_from(text).expect("an IP address is a valid header value")
}

/// The request's host (as [`check_request`] found it) as a header value:
/// the client's own `Host` value when it is that, shared rather than
/// copied. `None` only for a host no header value can carry, which a
/// parsed URI authority never is.
pub fn host_value(headers: &HeaderMap, host: &str) -> Option<HeaderValue> {
    match headers.get(HOST) {
        Some(value) if value.as_bytes() == host.as_bytes() => Some(value.clone()),
        _ => HeaderValue::from_str(host).ok(),
    }
}

/// A client request's headers as its upstream gets them: hop-by-hop
/// headers and those named in `Connection` left out, `Expect` answered
/// here, `X-Forwarded-*` set, configured headers set, the upgrade kept if
/// one was asked for.
///
/// Decided once per request and applied as the request head is written:
/// the client's header map itself is never changed, which spares a
/// removal or insertion (a hash and a probe) per rewritten header.
#[derive(Debug)]
pub struct UpstreamHeaders<'a> {
    client: &'a HeaderMap,
    /// The client sent a `Content-Length`.
    has_length: bool,
    /// Names in `Connection` other than hop-by-hop ones and `close`.
    named: Vec<&'a [u8]>,
    /// `Connection` says `close`: a header named `close` is left out too.
    close_named: bool,
    forwarded_for: Option<HeaderValue>,
    forwarded_host: Option<&'a HeaderValue>,
    upgrade: Option<HeaderValue>,
    /// Configured headers, replacing any the client sent.
    set: Vec<(HeaderName, HeaderValue)>,
}

impl<'a> UpstreamHeaders<'a> {
    /// The rewrite of `client` (whose [`Present`] headers are `present`)
    /// for a request from `client_ip` (its [`address_value`]) to `host`
    /// (its [`host_value`]), upgrading to `upgrade` if one was asked for.
    pub fn new(
        client: &'a HeaderMap,
        present: Present,
        client_ip: &HeaderValue,
        host: Option<&'a HeaderValue>,
        upgrade: Option<HeaderValue>,
    ) -> UpstreamHeaders<'a> {
        let (named, close_named) = if present.has(Present::CONNECTION) {
            connection_named(client)
        } else {
            (Vec::new(), false)
        };
        let mut rewrite = UpstreamHeaders {
            client,
            has_length: present.has(Present::CONTENT_LENGTH),
            named,
            close_named,
            forwarded_for: None,
            forwarded_host: host,
            upgrade,
            set: Vec::new(),
        };
        let previous =
            if !present.has(Present::FORWARDED_FOR) || rewrite.is_named(X_FORWARDED_FOR.as_str()) {
                None
            } else {
                joined(client, &X_FORWARDED_FOR)
            };
        rewrite.forwarded_for = match previous {
            Some(mut previous) => {
                previous.push_str(", ");
                previous.push_str(client_ip.to_str().unwrap_or_default());
                HeaderValue::try_from(previous).ok()
            }
            None => Some(client_ip.clone()),
        };
        rewrite
    }

    /// Sets a configured header, replacing the client's and sluice's own.
    pub fn set(&mut self, name: HeaderName, value: HeaderValue) {
        self.set.retain(|(set, _)| *set != name);
        self.set.push((name, value));
    }

    /// Whether the upstream gets a `Content-Length` (else a body goes in
    /// chunks).
    pub fn has_length(&self) -> bool {
        self.has_length && !self.is_named(CONTENT_LENGTH.as_str())
    }

    fn is_named(&self, name: &str) -> bool {
        (self.close_named && name == "close")
            || self
                .named
                .iter()
                .any(|t| t.eq_ignore_ascii_case(name.as_bytes()))
    }

    fn is_set(&self, name: &HeaderName) -> bool {
        self.set.iter().any(|(set, _)| set == name)
    }

    /// Writes every header line but `Host` (the request line's writer
    /// adds that).
    pub fn write(&self, out: &mut Vec<u8>) {
        for (name, value) in self.client {
            let text = name.as_str();
            if replaced_here(text) || self.is_named(text) || self.is_set(name) {
                continue;
            }
            header_line(out, text, value.as_bytes());
        }
        let own = [
            (&X_FORWARDED_FOR, self.forwarded_for.as_ref()),
            (&X_FORWARDED_PROTO, Some(&HeaderValue::from_static("http"))),
            (&X_FORWARDED_HOST, self.forwarded_host),
        ];
        for (name, value) in own {
            if let Some(value) = value
                && !self.is_set(name)
            {
                header_line(out, name.as_str(), value.as_bytes());
            }
        }
        for (name, value) in &self.set {
            header_line(out, name.as_str(), value.as_bytes());
        }
        if let Some(protocol) = &self.upgrade {
            header_line(out, "upgrade", protocol.as_bytes());
            header_line(out, "connection", b"upgrade");
        }
    }
}

/// `name: value` and the line end.
fn header_line(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Client headers never passed on as they are: hop-by-hop ones, `Expect`
/// (answered here), and those sluice writes itself.
fn replaced_here(name: &str) -> bool {
    hop_by_hop_bit(name) != 0
        || matches!(
            name,
            "expect" | "host" | "x-forwarded-for" | "x-forwarded-proto" | "x-forwarded-host"
        )
}

/// Every value of `name`, joined with `, `.
fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let mut values = headers.get_all(name).iter().filter_map(|v| v.to_str().ok());
    let first = values.next()?;
    Some(values.fold(first.to_owned(), |mut all, v| {
        all.push_str(", ");
        all.push_str(v);
        all
    }))
}

/// Cleans an upstream response's headers for the client; a 101 keeps its
/// `Upgrade` and `Connection: upgrade`.
pub fn to_client(headers: &mut HeaderMap, switching_protocols: bool) {
    let upgrade = if switching_protocols {
        headers.get(UPGRADE).cloned()
    } else {
        None
    };
    remove_hop_by_hop(headers);
    if let Some(protocol) = upgrade {
        headers.insert(UPGRADE, protocol);
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

#[cfg(test)]
#[path = "forwarding_tests.rs"]
mod tests;
