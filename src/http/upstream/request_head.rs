//! The request head sent upstream, written from the request's parts
//! straight into one buffer: no `Request` is built, and its headers are
//! not copied into a second map.

use http::Method;
use http::header::HeaderValue;

use crate::http::forwarding::UpstreamHeaders;

/// Writes `METHOD target HTTP/1.1`, the `Host` header, the rewritten
/// headers, and `Transfer-Encoding: chunked` when the body is sent in
/// chunks.
pub fn encode(
    out: &mut Vec<u8>,
    method: &Method,
    target: &str,
    host: &HeaderValue,
    headers: &UpstreamHeaders<'_>,
    chunked: bool,
) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\n");
    headers.write(out);
    if chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;
    use http::header::HOST;

    #[test]
    fn host_is_replaced_and_every_value_kept() {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_static("client.example"));
        headers.append("x-a", HeaderValue::from_static("1"));
        headers.append("x-a", HeaderValue::from_static("2"));
        let client_ip = HeaderValue::from_static("10.0.0.1");
        let present = crate::http::forwarding::Present::of(&headers);
        let rewrite = UpstreamHeaders::new(&headers, present, &client_ip, None, None);
        let mut out = Vec::new();
        encode(
            &mut out,
            &Method::POST,
            "/p?q=1",
            &HeaderValue::from_static("backend:80"),
            &rewrite,
            true,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /p?q=1 HTTP/1.1\r\nhost: backend:80\r\nx-a: 1\r\nx-a: 2\r\n\
             x-forwarded-for: 10.0.0.1\r\nx-forwarded-proto: http\r\n\
             transfer-encoding: chunked\r\n\r\n"
        );
    }
}
