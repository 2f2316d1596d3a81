//! Extracting a request's `consistent-hash` key (SPEC §4).

use std::net::IpAddr;

use http::header::COOKIE;
use http::request::Parts;

use crate::config::HashKey;
use crate::runtime::router::normalize_path;

/// The key bytes for `hash_key`, or `None` when the request lacks it or
/// it is empty (the strategy then falls back to round-robin, as nginx's
/// `hash` does for an empty key: else every anonymous client would land on
/// one upstream).
pub fn extract(hash_key: Option<&HashKey>, parts: &Parts, client: IpAddr) -> Option<Vec<u8>> {
    let key = match hash_key? {
        HashKey::ClientIp => match client {
            IpAddr::V4(ip) => ip.octets().to_vec(),
            IpAddr::V6(ip) => ip.octets().to_vec(),
        },
        HashKey::Header(name) => parts.headers.get(name)?.as_bytes().to_vec(),
        HashKey::Cookie(name) => cookie(parts, name.as_bytes())?.to_vec(),
        // The path routing saw: `/a//b` and `/a/%62` are `/a/b` here too.
        HashKey::Path => normalize_path(parts.uri.path()).ok()?.as_bytes().to_vec(),
        HashKey::Query(name) => parts
            .uri
            .query()?
            .split('&')
            .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
            .find(|(k, _)| k == name)?
            .1
            .as_bytes()
            .to_vec(),
    };
    (!key.is_empty()).then_some(key)
}

/// The value of cookie `name`, read as bytes (one cookie of other text
/// elsewhere in the header must not hide it), without the quotes RFC 6265
/// allows around it.
fn cookie<'a>(parts: &'a Parts, name: &[u8]) -> Option<&'a [u8]> {
    let value = parts
        .headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b';'))
        .filter_map(|pair| {
            let pair = pair.trim_ascii();
            let at = pair.iter().position(|b| *b == b'=')?;
            Some((pair[..at].trim_ascii(), pair[at + 1..].trim_ascii()))
        })
        .find(|(k, _)| *k == name)?
        .1;
    Some(
        value
            .strip_prefix(b"\"")
            .and_then(|v| v.strip_suffix(b"\""))
            .unwrap_or(value),
    )
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
            extract(Some(&HashKey::Query("z".into())), &p, ip),
            None,
            "a name without a value is an empty key"
        );
        assert_eq!(extract(Some(&HashKey::Query("nope".into())), &p, ip), None);
        assert_eq!(
            extract(Some(&HashKey::Header("x-none".parse().unwrap())), &p, ip),
            None
        );
    }

    #[test]
    fn empty_keys_fall_back_and_odd_forms_agree() {
        let ip: IpAddr = "10.0.0.7".parse().unwrap();
        let empty = parts("/a?user=", &[("x-user", ""), ("cookie", "session=")]);
        for key in [
            HashKey::Header("x-user".parse().unwrap()),
            HashKey::Cookie("session".into()),
            HashKey::Query("user".into()),
        ] {
            assert_eq!(extract(Some(&key), &empty, ip), None, "{key:?}");
        }
        let session = HashKey::Cookie("session".into());
        let mut utf8 = parts("/", &[]);
        utf8.headers.insert(
            COOKIE,
            http::HeaderValue::from_bytes("name=Jos\u{e9}; session=abc".as_bytes()).unwrap(),
        );
        assert_eq!(extract(Some(&session), &utf8, ip).unwrap(), b"abc");
        let quoted = parts("/", &[("cookie", "session=\"abc\"")]);
        assert_eq!(extract(Some(&session), &quoted, ip).unwrap(), b"abc");
        for path in ["/p/u//1", "/p/u/%31", "/p/./u/1", "/p/x/../u/1"] {
            assert_eq!(
                extract(Some(&HashKey::Path), &parts(path, &[]), ip).unwrap(),
                b"/p/u/1",
                "{path}"
            );
        }
    }
}
