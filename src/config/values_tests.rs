//! Tests for the value parsers.

use std::net::SocketAddr;
use std::time::Duration;

use super::*;

#[test]
fn durations_need_a_unit() {
    assert_eq!(duration("250ms"), Ok(Duration::from_millis(250)));
    assert_eq!(duration("2s"), Ok(Duration::from_secs(2)));
    assert_eq!(duration("5m"), Ok(Duration::from_secs(300)));
    assert_eq!(duration("1h"), Ok(Duration::from_secs(3600)));
    assert_eq!(duration("0s"), Ok(Duration::ZERO));
    assert!(duration("2").unwrap_err().contains("needs a unit"));
    assert!(duration("2 s").unwrap_err().contains("unknown unit"));
    assert!(duration("2d").unwrap_err().contains("unknown unit"));
    assert!(duration("1.5s").unwrap_err().contains("unknown unit"));
    assert!(duration("-2s").unwrap_err().contains("positive"));
    assert!(duration("s").unwrap_err().contains("not a duration"));
    assert!(duration("").unwrap_err().contains("not a duration"));
}

#[test]
fn durations_reject_huge_values() {
    assert!(
        duration("99999999999999999999999s")
            .unwrap_err()
            .contains("too large")
    );
    assert!(
        duration("18446744073709551615h")
            .unwrap_err()
            .contains("too large")
    );
    assert!(duration("8761h").unwrap_err().contains("too large"));
    assert_eq!(duration("8760h"), Ok(MAX_DURATION));
}

#[test]
fn sizes_take_suffixes_or_bytes() {
    assert_eq!(size("0"), Ok(0));
    assert_eq!(size("65536"), Ok(65536));
    assert_eq!(size("64k"), Ok(64 * 1024));
    assert_eq!(size("64K"), Ok(64 * 1024));
    assert_eq!(size("10m"), Ok(10 << 20));
    assert_eq!(size("1g"), Ok(1 << 30));
    assert!(size("10mb").unwrap_err().contains("unknown unit"));
    assert!(size("-1").unwrap_err().contains("negative"));
    assert!(size("k").unwrap_err().contains("not a size"));
    assert!(
        size("99999999999999999999g")
            .unwrap_err()
            .contains("too large")
    );
    assert!(size("300000g").unwrap_err().contains("too large"));
}

#[test]
fn status_sets_take_codes_ranges_and_lists() {
    let one = status_set("200").unwrap();
    assert!(one.contains(200) && !one.contains(201));
    let range = status_set("200-399").unwrap();
    assert!(range.contains(200) && range.contains(399) && !range.contains(400));
    let list = status_set("200, 204,300-399").unwrap();
    assert_eq!(list.0, vec![200..=200, 204..=204, 300..=399]);
    assert!(status_set("99").unwrap_err().contains("outside 100-599"));
    assert!(
        status_set("200-600")
            .unwrap_err()
            .contains("outside 100-599")
    );
    assert!(status_set("399-200").unwrap_err().contains("backwards"));
    assert!(status_set("2xx").unwrap_err().contains("not a status set"));
    assert!(status_set("200,").unwrap_err().contains("not a status set"));
}

#[test]
fn listen_addresses() {
    let parse = |s: &str| listen(s, ANY_V4);
    assert_eq!(
        parse("8080"),
        Ok("0.0.0.0:8080".parse::<SocketAddr>().unwrap())
    );
    assert_eq!(
        listen("9901", LOOPBACK_V4),
        Ok("127.0.0.1:9901".parse().unwrap())
    );
    assert_eq!(parse("127.0.0.1:0"), Ok("127.0.0.1:0".parse().unwrap()));
    assert_eq!(parse("[::1]:443"), Ok("[::1]:443".parse().unwrap()));
    assert!(parse("70000").unwrap_err().contains("out of range"));
    assert!(
        parse("127.0.0.1:70000")
            .unwrap_err()
            .contains("out of range")
    );
    assert!(
        parse("localhost:80")
            .unwrap_err()
            .contains("not an IP address")
    );
    assert!(
        parse("127.0.0.1")
            .unwrap_err()
            .contains("not a listen address")
    );
    assert!(parse("").unwrap_err().contains("not a listen address"));
}

#[test]
fn upstream_addresses() {
    let ok = |s: &str, host: &str, port: u16| {
        assert_eq!(
            upstream_address(s),
            Ok(UpstreamAddress {
                host: host.into(),
                port
            }),
            "{s}"
        );
    };
    ok("127.0.0.1:3000", "127.0.0.1", 3000);
    ok("app.internal:8080", "app.internal", 8080);
    ok("localhost:65535", "localhost", 65535);
    ok("[::1]:5432", "::1", 5432);
    assert!(
        upstream_address("127.0.0.1:0")
            .unwrap_err()
            .contains("out of range")
    );
    assert!(
        upstream_address("127.0.0.1:65536")
            .unwrap_err()
            .contains("out of range")
    );
    assert!(
        upstream_address("127.0.0.1")
            .unwrap_err()
            .contains("host:port")
    );
    assert!(upstream_address("::1:80").unwrap_err().contains("[::1]:80"));
    assert!(upstream_address("[nope]:80").unwrap_err().contains("IPv6"));
    assert!(
        upstream_address("bad host:80")
            .unwrap_err()
            .contains("not a valid host name")
    );
    assert!(
        upstream_address("-x.com:80")
            .unwrap_err()
            .contains("not a valid host name")
    );
    let url = upstream_address("http://127.0.0.1:3000/api").unwrap_err();
    assert!(
        url.contains("is a URL") && url.contains("(`127.0.0.1:3000`)"),
        "{url}"
    );
    let no_port = upstream_address("https://app.example/api").unwrap_err();
    assert!(no_port.contains("(`app.example:443`)"), "{no_port}");
    let path = upstream_address("app:3000/api").unwrap_err();
    assert!(
        path.contains("has a path") && path.contains("(`app:3000`)"),
        "{path}"
    );
}

#[test]
fn path_patterns() {
    for ok in ["/", "/api", "/*", "/assets/*", "/users/*/avatar", "/api/"] {
        assert_eq!(path_pattern(ok).as_deref(), Ok(ok));
    }
    assert!(path_pattern("api").unwrap_err().contains("start with `/`"));
    assert!(path_pattern("/api*").unwrap_err().contains("whole segment"));
    assert!(path_pattern("/a/**").unwrap_err().contains("whole segment"));
    assert!(path_pattern("/a?b=1").unwrap_err().contains("query"));
    assert!(path_pattern("/a//b").unwrap_err().contains("empty segment"));
    assert!(path_pattern("/a b").unwrap_err().contains("spaces"));
    let err = |p: &str| path_pattern(p).unwrap_err();
    assert!(err("/a/../b").contains("`..` segment"));
    assert!(err("/a/%2E").contains("`%2E` segment"));
    for bad in ["/a%zz", "/a%2", "/a%00", "/a%ff", "/a%+1"] {
        assert!(err(bad).contains("bad `%` escape"), "{bad}");
    }
    assert_eq!(path_pattern("/caf%C3%A9").as_deref(), Ok("/caf%C3%A9"));
}

#[test]
fn host_patterns() {
    assert_eq!(host_pattern("Example.COM").as_deref(), Ok("example.com"));
    assert_eq!(
        host_pattern("*.example.com").as_deref(),
        Ok("*.example.com")
    );
    assert!(host_pattern("example.com:80").unwrap_err().contains("port"));
    assert!(host_pattern("a.*.com").unwrap_err().contains("leading"));
    assert!(
        host_pattern("*example.com")
            .unwrap_err()
            .contains("leading")
    );
    assert!(
        host_pattern("exa mple.com")
            .unwrap_err()
            .contains("not a valid host")
    );
}

#[test]
fn hash_keys() {
    assert_eq!(hash_key("client-ip"), Ok(HashKey::ClientIp));
    assert_eq!(hash_key("path"), Ok(HashKey::Path));
    assert_eq!(
        hash_key("cookie:session"),
        Ok(HashKey::Cookie("session".into()))
    );
    assert_eq!(hash_key("query:user"), Ok(HashKey::Query("user".into())));
    assert_eq!(
        hash_key("header:X-User"),
        Ok(HashKey::Header(HeaderName::from_static("x-user")))
    );
    assert!(
        hash_key("cookie:")
            .unwrap_err()
            .contains("needs a cookie name")
    );
    assert!(
        hash_key("header:bad name")
            .unwrap_err()
            .contains("not a valid header name")
    );
    assert!(
        hash_key("client_ip")
            .unwrap_err()
            .contains("did you mean `client-ip`?")
    );
    assert!(
        hash_key("cokie:x")
            .unwrap_err()
            .contains("did you mean `cookie`?")
    );
}

#[test]
fn methods_and_headers() {
    assert_eq!(method("get"), Ok(Method::GET));
    assert_eq!(method("PATCH"), Ok(Method::PATCH));
    assert!(method("GTE").unwrap_err().contains("did you mean `GET`?"));
    assert_eq!(header_name("X-Real-IP").unwrap().as_str(), "x-real-ip");
    assert!(
        header_name("bad header")
            .unwrap_err()
            .contains("not a valid header name")
    );
    assert!(
        header_name("Content-Length")
            .unwrap_err()
            .contains("cannot be set")
    );
    assert_eq!(header_value("$ip, $port"), Ok("$ip, $port".into()));
    assert!(
        header_value("a\r\nb: c")
            .unwrap_err()
            .contains("CR, LF or NUL")
    );
    assert!(header_value("a\0").unwrap_err().contains("CR, LF or NUL"));
    assert!(header_value("a\u{7f}").unwrap_err().contains("control"));
}
