//! Request-path normalisation: the one canonical form routing (and static
//! files) look at, so that `/a/%2e%2e/b`, `/a/../b` and `//b` cannot be used
//! to reach a rule, or a file, under a name the rules did not foresee.

use std::borrow::Cow;

/// Why a request path cannot be normalised. The proxy answers `400` for all
/// of them; the variants exist so the log line can say which check failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadPath {
    /// The path is empty or does not start with `/` (origin-form targets
    /// always do; `*` and absolute-form are handled before routing).
    #[error("the request path does not start with '/'")]
    NotAbsolute,
    /// A `%` not followed by two hexadecimal digits.
    #[error("malformed percent-encoding at byte {offset} of the request path")]
    BadEscape {
        /// Byte offset of the offending `%` in the raw path.
        offset: usize,
    },
    /// A NUL byte, raw or as `%00`: never legitimate, and a classic way to
    /// truncate a file name behind a check.
    #[error("the request path contains a NUL byte")]
    Nul,
    /// The percent-decoded bytes are not valid UTF-8.
    #[error("the decoded request path is not valid UTF-8")]
    NotUtf8,
}

/// Normalises a request path for matching.
///
/// - the query string (from the first `?`) and any fragment (from the first
///   `#`) are dropped;
/// - percent-encoding is decoded once, except `%2F` / `%2f`, which stays as
///   the three characters `%2F` inside its segment (an encoded slash is data,
///   not a separator). Decoding is not repeated: `%252e` becomes `%2e`, not
///   `.`, so whoever uses the result (static files) must not decode it again;
/// - dot-segments are removed (RFC 3986 §5.2.4); a `..` above the root stays
///   at the root;
/// - repeated slashes are merged; a trailing slash is kept.
///
/// Returns a borrowed slice of `raw` when nothing but a query string needs to
/// go, which is the common case: it then does not allocate.
pub fn normalize_path(raw: &str) -> Result<Cow<'_, str>, BadPath> {
    let end = raw.find(['?', '#']).unwrap_or(raw.len());
    let path = &raw[..end];
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(BadPath::NotAbsolute);
    }
    if is_normal(bytes)? {
        return Ok(Cow::Borrowed(path));
    }
    slow(bytes).map(Cow::Owned)
}

/// Fast check: `Ok(true)` when `bytes` is already in normal form (no escape
/// to decode other than an upper-case `%2F`, no empty or dot-segment except a
/// trailing slash).
fn is_normal(bytes: &[u8]) -> Result<bool, BadPath> {
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            0 => return Err(BadPath::Nul),
            b'%' => {
                if bytes.get(i + 1) != Some(&b'2') || bytes.get(i + 2) != Some(&b'F') {
                    return Ok(false);
                }
                i += 3;
                continue;
            }
            b'/' => {
                let rest = &bytes[i + 1..];
                let seg_end = rest.iter().position(|&b| b == b'/').unwrap_or(rest.len());
                let seg = &rest[..seg_end];
                // An empty segment is fine only as the trailing slash.
                if (seg.is_empty() && seg_end < rest.len()) || seg == b"." || seg == b".." {
                    return Ok(false);
                }
            }
            _ => {}
        }
        i += 1;
    }
    Ok(true)
}

/// The full algorithm, for paths `is_normal` rejected. `bytes` starts with
/// `/` and holds no query.
fn slow(bytes: &[u8]) -> Result<String, BadPath> {
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    // Segments after the leading '/'. Offsets are kept for error reports.
    let mut seg_start = 1;
    loop {
        let seg_end = bytes[seg_start..]
            .iter()
            .position(|&b| b == b'/')
            .map_or(bytes.len(), |p| seg_start + p);
        let last = seg_end == bytes.len();
        let mark = out.len();
        out.push(b'/');
        decode_into(&bytes[seg_start..seg_end], seg_start, &mut out)?;
        let seg = &out[mark + 1..];
        let dropped = seg.is_empty() || seg == b"." || seg == b"..";
        if seg == b".." {
            out.truncate(mark);
            // Drop the previous segment; at the root there is none and the
            // `..` simply goes (it cannot climb above `/`). The only '/' in
            // `out` are separators: an encoded slash stays "%2F".
            let prev = out.iter().rposition(|&b| b == b'/').unwrap_or(0);
            out.truncate(prev);
        } else if dropped {
            out.truncate(mark);
        }
        if last {
            // A trailing empty or dot-segment leaves a trailing slash
            // ("/a/", "/a/." and "/a/b/.." all end in "/a/").
            if dropped {
                out.push(b'/');
            }
            break;
        }
        seg_start = seg_end + 1;
    }
    String::from_utf8(out).map_err(|_| BadPath::NotUtf8)
}

/// Percent-decodes `seg` (which starts at `offset` in the raw path) onto
/// `out`, keeping an encoded slash as `%2F`.
fn decode_into(seg: &[u8], offset: usize, out: &mut Vec<u8>) -> Result<(), BadPath> {
    let mut i = 0;
    while i < seg.len() {
        let b = seg[i];
        if b == 0 {
            return Err(BadPath::Nul);
        }
        if b != b'%' {
            out.push(b);
            i += 1;
            continue;
        }
        let bad = BadPath::BadEscape { offset: offset + i };
        let hi = seg.get(i + 1).and_then(|&h| hex(h)).ok_or(bad)?;
        let lo = seg.get(i + 2).and_then(|&l| hex(l)).ok_or(bad)?;
        match hi << 4 | lo {
            0 => return Err(BadPath::Nul),
            b'/' => out.extend_from_slice(b"%2F"),
            d => out.push(d),
        }
        i += 3;
    }
    Ok(())
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
