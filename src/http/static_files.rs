//! Serving a rule's `public` folder.
//!
//! tower-http's `ServeDir` does content types, ETag and Last-Modified with
//! 304s, Range requests and `index.html`; it already refuses `..` and
//! absolute components. On top, the resolved file must stay inside the
//! folder after symlinks are followed, and a request path segment may not
//! carry a separator, backslash or NUL.

use std::path::{Path, PathBuf};

use http::{Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tower::ServiceExt;
use tower_http::services::ServeDir;

use super::body::ResponseBody;
use super::error::plain_text;

/// Serves `path` (the request's normalised path, whose first
/// `prefix_len` bytes matched the rule) from `root` (canonical).
pub async fn serve(
    root: &Path,
    path: &str,
    prefix_len: usize,
    req: Request<Incoming>,
) -> Response<ResponseBody> {
    let remainder = path.get(prefix_len..).unwrap_or_default();
    if remainder.is_empty() && !path.ends_with('/') {
        // The rule's own folder without its slash (`/assets` for
        // `/assets/*`): redirected like any folder, so its pages'
        // relative links resolve inside it.
        let mut response = plain_text(StatusCode::TEMPORARY_REDIRECT, bytes::Bytes::new());
        redirect_to_folder(&mut response, path, req.uri().query());
        return response;
    }
    let Some(relative) = safe_relative(remainder) else {
        return not_found();
    };
    if !stays_inside(root, &relative).await {
        return not_found();
    }
    let (mut parts, _) = req.into_parts();
    let query = parts.uri.query().map(str::to_owned);
    let encoded = encode_path(&relative);
    parts.uri = match Uri::builder().path_and_query(encoded).build() {
        Ok(uri) => uri,
        Err(_) => return not_found(),
    };
    keep_ranges_that_apply(root, &mut parts).await;
    let request = Request::from_parts(parts, http_body_util::Empty::<bytes::Bytes>::new());
    let mut response = match folder(root).oneshot(request).await {
        Ok(response) => {
            response.map(|body| ResponseBody::boxed(body.map_err(Into::into).boxed_unsync()))
        }
        Err(error) => match error {},
    };
    if matches!(
        response.status(),
        StatusCode::TEMPORARY_REDIRECT | StatusCode::PERMANENT_REDIRECT
    ) {
        redirect_to_folder(&mut response, path, query.as_deref());
    }
    response
}

/// The folder as tower-http serves it: `index.html` for folders, and a
/// request for several ranges answered whole (200) rather than refused,
/// as RFC 9110 allows a server that sends no multipart answers.
fn folder(root: &Path) -> ServeDir {
    ServeDir::new(root)
        .append_index_html_on_directories(true)
        .ignore_multi_range_requests(true)
}

/// Drops a `Range` the file must be sent whole for (RFC 9110 section
/// 14.2, 13.1.5): one in a unit other than bytes, and one whose
/// `If-Range` no longer matches the file (a download resumed after the
/// file changed must not get bytes of the new file spliced onto the old).
/// tower-http reads neither.
async fn keep_ranges_that_apply(root: &Path, parts: &mut http::request::Parts) {
    use http::header::{ETAG, IF_RANGE, LAST_MODIFIED, RANGE};
    let Some(range) = parts.headers.get(RANGE) else {
        return;
    };
    // Range units are case-insensitive (RFC 9110 section 14.1); tower-http
    // reads only `bytes=`.
    match range.as_bytes().split_at_checked(6) {
        Some((b"bytes=", _)) => {}
        Some((unit, ranges)) if unit.eq_ignore_ascii_case(b"bytes=") => {
            let mut lower = b"bytes=".to_vec();
            lower.extend_from_slice(ranges);
            match http::HeaderValue::from_bytes(&lower) {
                Ok(value) => parts.headers.insert(RANGE, value),
                Err(_) => parts.headers.remove(RANGE),
            };
        }
        _ => {
            parts.headers.remove(RANGE);
            return;
        }
    }
    let Some(if_range) = parts.headers.remove(IF_RANGE) else {
        return;
    };
    let probe = Request::builder()
        .method(http::Method::HEAD)
        .uri(parts.uri.clone())
        .body(http_body_util::Empty::<bytes::Bytes>::new());
    let current = match probe {
        Ok(probe) => match folder(root).oneshot(probe).await {
            Ok(head) => head,
            Err(error) => match error {},
        },
        Err(_) => {
            parts.headers.remove(RANGE);
            return;
        }
    };
    // A strong ETag, or the exact date the file was last modified.
    let etag = current
        .headers()
        .get(ETAG)
        .filter(|tag| !tag.as_bytes().starts_with(b"W/"));
    let matches = etag.is_some_and(|tag| *tag == if_range)
        || current.headers().get(LAST_MODIFIED) == Some(&if_range);
    if !matches {
        parts.headers.remove(RANGE);
    }
}

/// ServeDir redirects a folder to its path with a slash, but it saw the
/// path below the rule's prefix: point the client at the normalised path
/// it asked for. Never the raw one, which routing read past (`//evil.com/..`
/// would make a redirect to another site), and never one starting `//`.
fn redirect_to_folder(response: &mut Response<ResponseBody>, path: &str, query: Option<&str>) {
    let query = query.map(|q| format!("?{q}")).unwrap_or_default();
    let path = encode_path(path.trim_start_matches('/').trim_end_matches('/'));
    if let Ok(location) = http::HeaderValue::try_from(format!("/{path}/{query}")) {
        response
            .headers_mut()
            .insert(http::header::LOCATION, location);
    }
}

/// The path under the folder, as segments joined by `/`, or `None` if a
/// segment could escape or confuse the file system.
fn safe_relative(remainder: &str) -> Option<String> {
    let mut out = String::with_capacity(remainder.len());
    for segment in remainder.split('/').filter(|s| !s.is_empty()) {
        if segment == "."
            || segment == ".."
            || segment.contains(['\\', '\0'])
            || segment.contains("%2F")
            || segment.contains("%2f")
        {
            return None;
        }
        out.push('/');
        out.push_str(segment);
    }
    if remainder.ends_with('/') || out.is_empty() {
        out.push('/');
    }
    Some(out)
}

/// Whether the file (or a directory's `index.html`) resolves, symlinks
/// followed, to a place inside `root`. Missing files pass: ServeDir answers
/// 404 for them.
async fn stays_inside(root: &Path, relative: &str) -> bool {
    let candidate: PathBuf = root.join(relative.trim_start_matches('/'));
    let index = candidate.join("index.html");
    for path in [candidate, index] {
        match tokio::fs::canonicalize(&path).await {
            Ok(real) if !real.starts_with(root) => return false,
            _ => {}
        }
    }
    true
}

/// Percent-encodes each segment for the URI handed to ServeDir.
fn encode_path(relative: &str) -> String {
    let mut out = String::with_capacity(relative.len());
    for byte in relative.bytes() {
        if byte.is_ascii_alphanumeric() || b"/-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn not_found() -> Response<ResponseBody> {
    plain_text(
        StatusCode::NOT_FOUND,
        bytes::Bytes::from_static(b"404 not found\n"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_segments_are_refused() {
        assert_eq!(safe_relative("/app.js").as_deref(), Some("/app.js"));
        assert_eq!(safe_relative("").as_deref(), Some("/"));
        assert_eq!(safe_relative("/dir/").as_deref(), Some("/dir/"));
        for bad in ["/../x", "/a/..", "/a\\b", "/a\0b", "/a%2Fb", "/."] {
            assert_eq!(safe_relative(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn encoding_keeps_separators() {
        assert_eq!(encode_path("/a b/ü.txt"), "/a%20b/%C3%BC.txt");
    }
}
