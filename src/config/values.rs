//! Parsers for the config's value syntaxes: durations, sizes, status sets,
//! addresses, path and host patterns, hash keys, methods.
//!
//! Each takes the text as written and returns the typed value or a one-line
//! reason; the validator adds the position. Kept free of YAML so they are
//! easy to test on their own.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use http::Method;
use http::header::HeaderName;

use super::model::{HashKey, StatusSet, UpstreamAddress};
use super::suggest::did_you_mean;
use crate::runtime::headers::HeaderTemplate;

/// Longest duration accepted: one year. Far beyond any sane timeout, and
/// small enough that `Instant::now() + d` can never overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Parses a duration with a required unit: `250ms`, `2s`, `5m`, `1h`.
pub fn duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    if text.starts_with('-') {
        return Err(format!("duration `{text}` must be positive"));
    }
    if number.is_empty() {
        return Err(format!(
            "`{text}` is not a duration; write e.g. `250ms`, `2s`, `5m` or `1h`"
        ));
    }
    let millis_per = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "" => {
            return Err(format!(
                "duration `{text}` needs a unit: `{text}s`, `{text}ms`, `{text}m` or `{text}h`"
            ));
        }
        _ => {
            return Err(format!(
                "unknown unit in duration `{text}`; use `ms`, `s`, `m` or `h`"
            ));
        }
    };
    let too_large = || format!("duration `{text}` is too large (at most 8760h)");
    let number: u64 = number.parse().map_err(|_| too_large())?;
    let millis = number.checked_mul(millis_per).ok_or_else(too_large)?;
    let value = Duration::from_millis(millis);
    if value > MAX_DURATION {
        return Err(too_large());
    }
    Ok(value)
}

/// Parses a size: a plain byte count or a number with `k`, `m` or `g`
/// (binary multiples, either case).
pub fn size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    if text.starts_with('-') {
        return Err(format!("size `{text}` must not be negative"));
    }
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    if number.is_empty() {
        return Err(format!(
            "`{text}` is not a size; write e.g. `65536`, `64k` or `10m`"
        ));
    }
    let shift = match unit {
        "" => 0,
        "k" | "K" => 10,
        "m" | "M" => 20,
        "g" | "G" => 30,
        _ => {
            return Err(format!(
                "unknown unit in size `{text}`; use `k`, `m` or `g`"
            ));
        }
    };
    let too_large = || format!("size `{text}` is too large");
    let number: u64 = number.parse().map_err(|_| too_large())?;
    let bytes = number.checked_mul(1 << shift).ok_or_else(too_large)?;
    // Sizes are compared with usize counters; keep them within 2^48 bytes.
    if bytes > 1 << 48 {
        return Err(too_large());
    }
    Ok(bytes)
}

/// Parses a status set: `200`, `200-399` or `200,204,300-399`, every code
/// within 100-599.
pub fn status_set(text: &str) -> Result<StatusSet, String> {
    let mut ranges = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        let (low, high) = match part.split_once('-') {
            Some((low, high)) => (low.trim(), high.trim()),
            None => (part, part),
        };
        let code = |s: &str| -> Result<u16, String> {
            match s.parse::<u16>() {
                Ok(code) if (100..=599).contains(&code) => Ok(code),
                Ok(_) => Err(format!("status `{s}` is outside 100-599")),
                Err(_) => Err(format!(
                    "`{text}` is not a status set; write e.g. `200`, `200-399` or `200,204,300-399`"
                )),
            }
        };
        let (low, high) = (code(low)?, code(high)?);
        if low > high {
            return Err(format!("status range `{part}` is backwards"));
        }
        ranges.push(low..=high);
    }
    Ok(StatusSet(ranges))
}

/// Parses a listen address: `IP:PORT`, `[v6]:PORT`, or a bare port bound on
/// `default_ip`. Port 0 (any free port) is allowed.
pub fn listen(text: &str, default_ip: IpAddr) -> Result<SocketAddr, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse::<u16>()
            .map(|port| SocketAddr::new(default_ip, port))
            .map_err(|_| format!("port `{text}` is out of range (0-65535)"));
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    match text.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            if port.parse::<u16>().is_err() {
                return Err(format!("port `{port}` is out of range (0-65535)"));
            }
            let host = host.trim_start_matches('[').trim_end_matches(']');
            if host.parse::<IpAddr>().is_err() {
                return Err(format!(
                    "`{host}` is not an IP address; a listener binds an IP (`0.0.0.0`, `127.0.0.1`, `[::]`)"
                ));
            }
            Err(format!("`{text}` is not an address"))
        }
        _ => Err(format!(
            "`{text}` is not a listen address; write `IP:PORT`, `[IPv6]:PORT` or a port"
        )),
    }
}

/// The address a bare listener port binds: every IPv4 interface.
pub const ANY_V4: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

/// The address a bare admin port binds: loopback only.
pub const LOOPBACK_V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Parses an upstream address: `host:port` (hostname or IP) or
/// `[v6]:port`, port 1-65535.
pub fn upstream_address(text: &str) -> Result<UpstreamAddress, String> {
    let text = text.trim();
    let usage = || format!("`{text}` is not an upstream address; write `host:port`");
    if let Some((scheme, rest)) = text.split_once("://") {
        let authority = rest.split('/').next().unwrap_or(rest);
        // A URL without a port means its scheme's.
        let port = match scheme.to_ascii_lowercase().as_str() {
            _ if authority
                .rsplit_once(':')
                .is_some_and(|(_, p)| !p.contains(']')) =>
            {
                ""
            }
            "http" | "ws" => ":80",
            "https" | "wss" => ":443",
            _ => "",
        };
        return Err(format!(
            "`{text}` is a URL; write the upstream as `host:port` (`{authority}{port}`), without `{scheme}://` or a path"
        ));
    }
    if let Some((authority, _)) = text.split_once('/') {
        return Err(format!(
            "`{text}` has a path; write the upstream as `host:port` (`{authority}`)"
        ));
    }
    let (host, port) = text.rsplit_once(':').ok_or_else(usage)?;
    let host = if let Some(inner) = host.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or_else(usage)?;
        inner
            .parse::<Ipv6Addr>()
            .map_err(|_| format!("`{inner}` is not an IPv6 address"))?;
        inner
    } else {
        if host.contains(':') {
            return Err(format!("write an IPv6 upstream as `[{host}]:{port}`"));
        }
        if host.parse::<IpAddr>().is_err() {
            hostname(host)?;
        }
        host
    };
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(usage());
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("port `{port}` is out of range (1-65535)")),
        Ok(port) => Ok(UpstreamAddress {
            host: host.to_owned(),
            port,
        }),
    }
}

/// Checks a DNS name: dot-separated labels of letters, digits and inner
/// hyphens (underscores tolerated, as found in service records).
fn hostname(host: &str) -> Result<(), String> {
    let valid_label = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.is_empty() || name.len() > 253 || !name.split('.').all(valid_label) {
        return Err(format!("`{host}` is not a valid host name"));
    }
    Ok(())
}

/// Checks a rule path pattern: starts with `/`, `*` only as a whole
/// segment, no empty segments, query or fragment.
pub fn path_pattern(text: &str) -> Result<String, String> {
    if !text.starts_with('/') {
        return Err(format!("path `{text}` must start with `/`"));
    }
    if text.contains(['?', '#']) {
        return Err(format!(
            "path `{text}` must not contain a query or fragment (`?`, `#`)"
        ));
    }
    if text.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(format!(
            "path `{text}` must not contain spaces or control characters"
        ));
    }
    if text.contains("//") {
        return Err(format!("path `{text}` has an empty segment (`//`)"));
    }
    for segment in text.split('/') {
        if !percent_encoding_ok(segment) {
            return Err(format!(
                "path `{text}` has a bad `%` escape (two hex digits, decoding to UTF-8 without NUL)"
            ));
        }
        let dots = segment.to_ascii_lowercase().replace("%2e", ".");
        if dots == "." || dots == ".." {
            return Err(format!(
                "path `{text}` has a `{segment}` segment; request paths are matched with them removed"
            ));
        }
        if segment.contains('*') && segment != "*" {
            return Err(format!(
                "`*` must be a whole segment in path `{text}` (as in `/users/*/avatar` or `/assets/*`)"
            ));
        }
    }
    Ok(text.to_owned())
}

/// Whether `segment`'s percent-escapes are well formed and decode to
/// UTF-8 without NUL, as the router requires of request paths.
fn percent_encoding_ok(segment: &str) -> bool {
    let bytes = segment.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex_value = |b: u8| char::from(b).to_digit(16);
            let high = bytes.get(i + 1).copied().and_then(hex_value);
            let low = bytes.get(i + 2).copied().and_then(hex_value);
            let (Some(high), Some(low)) = (high, low) else {
                return false;
            };
            // Two hex digits: at most 0xff, so the narrowing is exact.
            decoded.push((high * 16 + low) as u8);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    !decoded.contains(&0) && std::str::from_utf8(&decoded).is_ok()
}

/// Checks a host pattern (`example.com` or `*.example.com`) and returns it
/// lower-cased.
pub fn host_pattern(text: &str) -> Result<String, String> {
    let lower = text.trim().to_ascii_lowercase();
    let name = lower.strip_prefix("*.").unwrap_or(&lower);
    if name.contains(':') {
        return Err(format!(
            "host `{text}` must not have a port; hosts match without it"
        ));
    }
    if name.contains('*') {
        return Err(format!(
            "`*` is allowed only as a leading `*.` in host `{text}`"
        ));
    }
    hostname(name).map_err(|_| format!("`{text}` is not a valid host pattern"))?;
    Ok(lower)
}

/// Parses a `hash_key`: `client-ip`, `header:NAME`, `cookie:NAME`, `path`
/// or `query:NAME`.
pub fn hash_key(text: &str) -> Result<HashKey, String> {
    const FORMS: [&str; 5] = ["client-ip", "header:", "cookie:", "path", "query:"];
    let named = |name: &str, what: &str| -> Result<String, String> {
        if name.is_empty() {
            Err(format!("`{text}` needs a {what} name after the colon"))
        } else {
            Ok(name.to_owned())
        }
    };
    match text.split_once(':') {
        None if text == "client-ip" => Ok(HashKey::ClientIp),
        None if text == "path" => Ok(HashKey::Path),
        Some(("header", name)) => HeaderName::from_bytes(named(name, "header")?.as_bytes())
            .map(HashKey::Header)
            .map_err(|_| format!("`{name}` is not a valid header name")),
        Some(("cookie", name)) => named(name, "cookie").map(HashKey::Cookie),
        Some(("query", name)) => named(name, "query parameter").map(HashKey::Query),
        _ => {
            let head = text.split(':').next().unwrap_or(text);
            let hint = did_you_mean(head, FORMS.iter().map(|f| f.trim_end_matches(':')));
            Err(format!(
                "unknown hash_key `{text}`{hint}; use `client-ip`, `header:NAME`, `cookie:NAME`, `path` or `query:NAME`"
            ))
        }
    }
}

/// Methods a rule may match on.
const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// Parses an HTTP method name, any case, into its upper-case form.
pub fn method(text: &str) -> Result<Method, String> {
    let upper = text.trim().to_ascii_uppercase();
    if METHODS.contains(&upper.as_str()) {
        // A standard method name is a valid token, so this cannot fail.
        return Method::from_bytes(upper.as_bytes()).map_err(|err| err.to_string());
    }
    let hint = did_you_mean(&upper, METHODS.iter().copied());
    Err(format!("unknown method `{text}`{hint}"))
}

/// Headers a config may not set: they frame the message or belong to the
/// hop, and setting them would invite request smuggling.
const RESERVED_HEADERS: [&str; 9] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// Parses a header name for a `headers` entry.
pub fn header_name(text: &str) -> Result<HeaderName, String> {
    let name = HeaderName::from_bytes(text.as_bytes())
        .map_err(|_| format!("`{text}` is not a valid header name"))?;
    if RESERVED_HEADERS.contains(&name.as_str()) {
        return Err(format!(
            "header `{text}` cannot be set by the config; the proxy manages it"
        ));
    }
    Ok(name)
}

/// Checks a header value template: no CR, LF, NUL or other control
/// characters but tab.
pub fn header_value(text: &str) -> Result<String, String> {
    if text.contains(['\r', '\n', '\0']) {
        return Err("header value must not contain CR, LF or NUL".to_owned());
    }
    if text.chars().any(|c| c.is_control() && c != '\t') {
        return Err("header value must not contain control characters".to_owned());
    }
    // The template the runtime will compile: an unknown `$name` is
    // reported here, with its position, not first when sluice starts.
    match HeaderTemplate::compile(HeaderName::from_static("x"), text) {
        Ok(_) => Ok(text.to_owned()),
        Err(error) if error.name.is_empty() => Err("not a valid header value".to_owned()),
        Err(error) => Err(format!(
            "unknown variable `${}` (known: {}; `$$` is a literal `$`)",
            error.name,
            HeaderTemplate::VARIABLES
        )),
    }
}

#[cfg(test)]
#[path = "values_tests.rs"]
mod tests;
