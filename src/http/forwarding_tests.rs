use super::*;

/// [`check_request`] with the request's own [`Present`] headers.
fn checked<B>(req: &Request<B>) -> Result<Option<&str>, ProxyError> {
    check_request(req, Present::of(req.headers()))
}

/// [`upgrade_protocol`] with the headers' own [`Present`] ones.
fn upgrade_of(headers: &HeaderMap) -> Option<HeaderValue> {
    upgrade_protocol(headers, Present::of(headers))
}

/// [`keeps_alive`] with the request's own [`Present`] headers.
fn keeps<B>(req: &Request<B>) -> bool {
    keeps_alive(req, Present::of(req.headers()))
}

/// The rewrite of `headers` for a request from [`client`].
fn rewrite_of<'a>(
    headers: &'a HeaderMap,
    host: Option<&'a HeaderValue>,
    upgrade: Option<HeaderValue>,
) -> UpstreamHeaders<'a> {
    UpstreamHeaders::new(headers, Present::of(headers), &client(), host, upgrade)
}

fn request(headers: &[(&str, &str)]) -> Request<()> {
    let mut builder = Request::builder().uri("/x");
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    builder.body(()).unwrap()
}

#[test]
fn ambiguous_framing_is_rejected() {
    let cases: &[&[(&str, &str)]] = &[
        &[
            ("host", "a"),
            ("transfer-encoding", "chunked"),
            ("content-length", "3"),
        ],
        &[
            ("host", "a"),
            ("content-length", "3"),
            ("content-length", "3"),
        ],
        &[("host", "a"), ("content-length", "3, 3")],
        &[("host", "a"), ("content-length", "+3")],
        &[("host", "a"), ("transfer-encoding", "chunked, chunked")],
        &[("host", "a"), ("transfer-encoding", "x-chunked")],
        &[("host", "a"), ("transfer-encoding", " chunked")],
        &[
            ("host", "a"),
            ("transfer-encoding", "chunked"),
            ("transfer-encoding", "chunked"),
        ],
        &[("host", "a"), ("host", "b")],
        &[("host", "a/b")],
        &[],
    ];
    for headers in cases {
        assert!(
            matches!(checked(&request(headers)), Err(ProxyError::BadRequest(_))),
            "{headers:?}"
        );
    }
    assert_eq!(
        checked(&request(&[("host", "a"), ("transfer-encoding", "Chunked")])),
        Ok(Some("a"))
    );
    assert_eq!(
        checked(&request(&[("host", "a:80"), ("content-length", "12")])),
        Ok(Some("a:80"))
    );
}

#[test]
fn long_targets_are_414() {
    let req = Request::builder()
        .uri(format!("/{}", "a".repeat(MAX_URI_LEN)))
        .header("host", "a")
        .body(())
        .unwrap();
    assert_eq!(checked(&req), Err(ProxyError::UriTooLong));
}

#[test]
fn absolute_form_must_agree_with_host() {
    let req = Request::builder()
        .uri("http://b.example/x")
        .header("host", "a.example")
        .body(())
        .unwrap();
    assert!(checked(&req).is_err());
    let req = Request::builder()
        .uri("http://a.example/x")
        .header("host", "A.example")
        .body(())
        .unwrap();
    assert_eq!(checked(&req), Ok(Some("a.example")));
    let no_host = Request::builder()
        .uri("http://a.example/x")
        .body(())
        .unwrap();
    assert_eq!(
        checked(&no_host),
        Err(ProxyError::BadRequest("missing Host header")),
        "HTTP/1.1 needs Host with an absolute-form target too"
    );
    for host in [None, Some("a.example")] {
        let mut builder = Request::builder().uri("http://u:p@a.example/x");
        if let Some(host) = host {
            builder = builder.header("host", host);
        }
        let expected = match host {
            Some(_) => {
                "invalid request target authority (user info, or a character a host cannot have)"
            }
            None => "missing Host header",
        };
        assert_eq!(
            checked(&builder.body(()).unwrap()),
            Err(ProxyError::BadRequest(expected)),
            "user info never passes ({host:?})"
        );
    }
    let http10 = Request::builder()
        .version(http::Version::HTTP_10)
        .uri("http://a.example/x")
        .body(())
        .unwrap();
    assert_eq!(checked(&http10), Ok(Some("a.example")));
}

fn client() -> HeaderValue {
    address_value("10.0.0.1".parse().unwrap())
}

#[test]
fn addresses_are_formatted_as_display_does() {
    for ip in [
        "0.0.0.0",
        "10.0.0.1",
        "255.255.255.255",
        "192.168.100.9",
        "::1",
        "2001:db8::7",
    ] {
        let ip: std::net::IpAddr = ip.parse().unwrap();
        assert_eq!(address_value(ip), ip.to_string().as_str());
    }
}

#[test]
fn hop_by_hop_headers_go_in_any_mix() {
    let mut headers = request(&[
        ("connection", "Keep-Alive, close, X-Named"),
        ("keep-alive", "timeout=5"),
        ("x-named", "1"),
        ("close", "a field named by the close option"),
        ("trailer", "x"),
        ("upgrade", "websocket"),
        ("proxy-connection", "keep-alive"),
        ("te", "trailers"),
        ("transfer-encoding", "chunked"),
        ("x-kept", "yes"),
    ])
    .headers()
    .clone();
    remove_hop_by_hop(&mut headers);
    assert_eq!(headers.len(), 1, "{headers:?}");
    assert_eq!(headers["x-kept"], "yes");
    let mut plain = request(&[("host", "a"), ("accept", "*/*")])
        .headers()
        .clone();
    remove_hop_by_hop(&mut plain);
    assert_eq!(plain.len(), 2);
}

#[test]
fn host_value_shares_the_host_header() {
    let req = request(&[("host", "a.example:8080")]);
    assert_eq!(
        host_value(req.headers(), "a.example:8080").unwrap(),
        "a.example:8080"
    );
    assert_eq!(host_value(req.headers(), "b.example").unwrap(), "b.example");
}

/// The header lines `rewrite` writes, as (name, value) pairs.
fn lines(rewrite: &UpstreamHeaders<'_>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    rewrite.write(&mut out);
    String::from_utf8(out)
        .unwrap()
        .split_terminator("\r\n")
        .map(|line| {
            let (name, value) = line.split_once(": ").unwrap();
            (name.to_owned(), value.to_owned())
        })
        .collect()
}

/// The values written for `name`.
fn values<'a>(lines: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    lines
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

#[test]
fn connection_named_headers_go_but_forwarded_headers_are_set() {
    let req = request(&[
        ("connection", "x-forwarded-for, x-secret, keep-alive, close"),
        ("x-secret", "1"),
        ("close", "a field named by the close option"),
        ("keep-alive", "timeout=5"),
        ("x-forwarded-for", "1.1.1.1"),
        ("x-forwarded-proto", "https"),
        ("te", "trailers"),
        ("expect", "100-continue"),
        ("host", "ex.com"),
        ("x-kept", "yes"),
    ]);
    let host = HeaderValue::from_static("ex.com");
    let rewrite = rewrite_of(req.headers(), Some(&host), None);
    let lines = lines(&rewrite);
    assert_eq!(
        lines,
        [
            ("x-kept".to_owned(), "yes".to_owned()),
            ("x-forwarded-for".to_owned(), "10.0.0.1".to_owned()),
            ("x-forwarded-proto".to_owned(), "http".to_owned()),
            ("x-forwarded-host".to_owned(), "ex.com".to_owned()),
        ]
    );
}

#[test]
fn forwarded_for_is_appended() {
    let req = request(&[
        ("x-forwarded-for", "1.1.1.1"),
        ("x-forwarded-for", "2.2.2.2"),
    ]);
    let rewrite = rewrite_of(req.headers(), None, None);
    let lines = lines(&rewrite);
    assert_eq!(
        values(&lines, "x-forwarded-for"),
        ["1.1.1.1, 2.2.2.2, 10.0.0.1"]
    );
    assert!(values(&lines, "x-forwarded-host").is_empty());
}

#[test]
fn configured_headers_replace_the_clients_and_sluices_own() {
    let req = request(&[("x-real-ip", "spoofed"), ("x-kept", "yes")]);
    let mut rewrite = rewrite_of(req.headers(), None, None);
    rewrite.set(
        HeaderName::from_static("x-real-ip"),
        HeaderValue::from_static("10.0.0.1"),
    );
    rewrite.set(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static("https"),
    );
    let lines = lines(&rewrite);
    assert_eq!(values(&lines, "x-real-ip"), ["10.0.0.1"]);
    assert_eq!(values(&lines, "x-forwarded-proto"), ["https"]);
    assert_eq!(values(&lines, "x-kept"), ["yes"]);
}

#[test]
fn a_length_named_in_connection_is_not_sent() {
    let req = request(&[("content-length", "5")]);
    assert!(rewrite_of(req.headers(), None, None).has_length());
    let req = request(&[("content-length", "5"), ("connection", "Content-Length")]);
    let rewrite = rewrite_of(req.headers(), None, None);
    assert!(!rewrite.has_length());
    assert!(values(&lines(&rewrite), "content-length").is_empty());
}

#[test]
fn upgrades_are_kept_except_h2c() {
    let ws = request(&[
        ("connection", "keep-alive, Upgrade"),
        ("upgrade", "websocket"),
    ]);
    let protocol = upgrade_of(ws.headers());
    assert_eq!(protocol.as_ref().unwrap(), "websocket");
    let rewrite = rewrite_of(ws.headers(), None, protocol);
    let lines = lines(&rewrite);
    assert_eq!(values(&lines, "upgrade"), ["websocket"]);
    assert_eq!(values(&lines, "connection"), ["upgrade"]);
    let h2c = request(&[("connection", "upgrade"), ("upgrade", "h2c")]);
    assert!(upgrade_of(h2c.headers()).is_none());
    assert!(upgrade_of(request(&[("upgrade", "websocket")]).headers()).is_none());
}

#[test]
fn keep_alive_follows_the_version_and_the_connection_tokens() {
    let request = |version: Version, connection: Option<&str>| {
        let mut builder = Request::builder().version(version).uri("/");
        if let Some(value) = connection {
            builder = builder.header(CONNECTION, value);
        }
        builder.body(()).unwrap()
    };
    assert!(keeps(&request(Version::HTTP_11, None)));
    assert!(keeps(&request(Version::HTTP_11, Some("te"))));
    assert!(!keeps(&request(Version::HTTP_11, Some("te, Close"))));
    assert!(!keeps(&request(Version::HTTP_10, None)));
    assert!(keeps(&request(Version::HTTP_10, Some("Keep-Alive"))));
}

#[test]
fn connection_tokens_are_recognised_in_any_case() {
    assert_eq!(hop_by_hop_bit_of(b"Keep-Alive"), 1 << 1);
    assert_eq!(hop_by_hop_bit_of(b"TRANSFER-ENCODING"), 1 << 5);
    assert_eq!(hop_by_hop_bit_of(b"x-named"), 0);
    assert_eq!(
        hop_by_hop_bit_of(b"a-name-longer-than-any-hop-by-hop-one"),
        0
    );
}

#[test]
fn present_headers_are_found_in_one_pass() {
    let req = request(&[
        ("Host", "a"),
        ("X-Forwarded-For", "1.1.1.1"),
        ("accept", "*/*"),
    ]);
    let present = Present::of(req.headers());
    assert!(present.has(Present::HOST) && present.has(Present::FORWARDED_FOR));
    assert!(!present.has(Present::CONNECTION | Present::CONTENT_LENGTH | Present::UPGRADE));
    assert_eq!(Present::of(&HeaderMap::new()), Present::default());
}
