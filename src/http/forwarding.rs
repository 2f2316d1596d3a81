//! Checking a client request and rewriting its headers for the upstream.
//!
//! Framing that two parsers could read differently is rejected, never
//! forwarded: `Transfer-Encoding` together with `Content-Length`, several or
//! comma-listed `Content-Length`s, any `Transfer-Encoding` other than one
//! plain `chunked`. Hop-by-hop headers and those named in `Connection` are
//! removed before sluice adds its own (RFC 9110 §7.6.1), so a client cannot
//! strip `X-Forwarded-For` by naming it in `Connection`.

use http::header::{
    CONNECTION, CONTENT_LENGTH, EXPECT, HOST, HeaderMap, HeaderName, HeaderValue, TE, TRAILER,
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

/// Rejects requests whose framing or target is ambiguous, and returns the
/// request's host (without validation of its port).
pub fn check_request<B>(req: &Request<B>) -> Result<Option<&str>, ProxyError> {
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
    check_framing(headers)?;
    let mut hosts = headers.get_all(HOST).iter();
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
    match (req.uri().authority(), host) {
        (Some(authority), Some(host)) if !authority.as_str().eq_ignore_ascii_case(host) => Err(
            ProxyError::BadRequest("request target authority differs from Host"),
        ),
        (Some(authority), _) => Ok(Some(authority.as_str())),
        (None, None) if req.version() >= http::Version::HTTP_11 => {
            Err(ProxyError::BadRequest("missing Host header"))
        }
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
pub fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
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
pub fn keeps_alive<B>(req: &Request<B>) -> bool {
    let mut tokens = connection_tokens(req.headers());
    if req.version() == Version::HTTP_10 {
        tokens.any(|t| t.eq_ignore_ascii_case(b"keep-alive"))
    } else {
        !tokens.any(|t| t.eq_ignore_ascii_case(b"close"))
    }
}

/// Whether a response's own headers close the client connection after it
/// (sluice's answers that end a connection say `Connection: close`).
pub fn closes(headers: &HeaderMap) -> bool {
    connection_tokens(headers).any(|t| t.eq_ignore_ascii_case(b"close"))
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
fn hop_by_hop_bit(name: &HeaderName) -> u8 {
    match name.as_str() {
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

/// Removes hop-by-hop headers and every header named in `Connection`.
///
/// One pass over the names finds which hop-by-hop headers are present, so
/// a request without any (the common case) costs no lookups, and a
/// response with only `Connection: keep-alive` costs one removal.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let mut present = 0u8;
    for name in headers.keys() {
        present |= hop_by_hop_bit(name);
    }
    if present == 0 {
        return;
    }
    if present & 1 != 0 {
        // Names that are hop-by-hop anyway are removed below, and `close`,
        // the usual token, is looked up without building a name: only
        // other names cost an allocation.
        let mut close = false;
        let named: Vec<HeaderName> = connection_tokens(headers)
            .filter(|t| {
                let is_close = t.eq_ignore_ascii_case(b"close");
                close |= is_close;
                !is_close
                    && !HOP_BY_HOP
                        .iter()
                        .any(|hop| t.eq_ignore_ascii_case(hop.as_str().as_bytes()))
            })
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

/// Rewrites a client request's headers for the upstream: hop-by-hop
/// removed, `Expect` answered here, `X-Forwarded-*` set (`client` is the
/// client's [`address_value`], `host` the request's [`host_value`]), the
/// upgrade kept if one was asked for.
pub fn to_upstream(
    headers: &mut HeaderMap,
    client: &HeaderValue,
    host: Option<&HeaderValue>,
    upgrade: Option<HeaderValue>,
) {
    remove_hop_by_hop(headers);
    headers.remove(EXPECT);
    let forwarded_for = match joined(headers, &X_FORWARDED_FOR) {
        Some(mut previous) => {
            previous.push_str(", ");
            previous.push_str(client.to_str().unwrap_or_default());
            HeaderValue::try_from(previous).ok()
        }
        None => Some(client.clone()),
    };
    if let Some(value) = forwarded_for {
        headers.insert(X_FORWARDED_FOR.clone(), value);
    }
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
    match host {
        Some(host) => headers.insert(X_FORWARDED_HOST.clone(), host.clone()),
        None => headers.remove(&X_FORWARDED_HOST),
    };
    if let Some(protocol) = upgrade {
        headers.insert(UPGRADE, protocol);
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    }
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
