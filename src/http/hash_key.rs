//! Extracting a request's `consistent-hash` key (SPEC §4).

use std::net::IpAddr;

use http::header::COOKIE;
use http::request::Parts;

use crate::config::HashKey;

/// The key bytes for `hash_key`, or `None` when the request lacks it (the
/// strategy then falls back to round-robin).
pub fn extract(hash_key: Option<&HashKey>, parts: &Parts, client: IpAddr) -> Option<Vec<u8>> {
    match hash_key? {
        HashKey::ClientIp => Some(match client {
            IpAddr::V4(ip) => ip.octets().to_vec(),
            IpAddr::V6(ip) => ip.octets().to_vec(),
        }),
        HashKey::Header(name) => parts.headers.get(name).map(|v| v.as_bytes().to_vec()),
        HashKey::Cookie(name) => parts
            .headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_bytes().to_vec()),
        HashKey::Path => Some(parts.uri.path().as_bytes().to_vec()),
        HashKey::Query(name) => parts
            .uri
            .query()?
            .split('&')
            .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_bytes().to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut builder = http::Request::builder().uri(uri);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn every_source() {
        let ip: IpAddr = "10.0.0.7".parse().unwrap();
        let p = parts(
            "/a/b?x=1&user=ann&z",
            &[
                ("x-user", "bob"),
                ("cookie", "a=1; session=s3"),
                ("cookie", "c=2"),
            ],
        );
        assert_eq!(extract(None, &p, ip), None);
        assert_eq!(
            extract(Some(&HashKey::ClientIp), &p, ip),
            Some(vec![10, 0, 0, 7])
        );
        assert_eq!(
            extract(Some(&HashKey::Header("x-user".parse().unwrap())), &p, ip).unwrap(),
            b"bob"
        );
        assert_eq!(
            extract(Some(&HashKey::Cookie("session".into())), &p, ip).unwrap(),
            b"s3"
        );
        assert_eq!(
            extract(Some(&HashKey::Cookie("c".into())), &p, ip).unwrap(),
            b"2"
        );
        assert_eq!(extract(Some(&HashKey::Path), &p, ip).unwrap(), b"/a/b");
        assert_eq!(
            extract(Some(&HashKey::Query("user".into())), &p, ip).unwrap(),
            b"ann"
        );
        assert_eq!(
            extract(Some(&HashKey::Query("z".into())), &p, ip).unwrap(),
            b""
        );
        assert_eq!(extract(Some(&HashKey::Query("nope".into())), &p, ip), None);
        assert_eq!(
            extract(Some(&HashKey::Header("x-none".parse().unwrap())), &p, ip),
            None
        );
    }
}
