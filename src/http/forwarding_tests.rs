use super::*;

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
            matches!(
                check_request(&request(headers)),
                Err(ProxyError::BadRequest(_))
            ),
            "{headers:?}"
        );
    }
    assert_eq!(
        check_request(&request(&[("host", "a"), ("transfer-encoding", "Chunked")])),
        Ok(Some("a"))
    );
    assert_eq!(
        check_request(&request(&[("host", "a:80"), ("content-length", "12")])),
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
    assert_eq!(check_request(&req), Err(ProxyError::UriTooLong));
}

#[test]
fn absolute_form_must_agree_with_host() {
    let req = Request::builder()
        .uri("http://b.example/x")
        .header("host", "a.example")
        .body(())
        .unwrap();
    assert!(check_request(&req).is_err());
    let req = Request::builder()
        .uri("http://a.example/x")
        .header("host", "A.example")
        .body(())
        .unwrap();
    assert_eq!(check_request(&req), Ok(Some("a.example")));
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

#[test]
fn connection_named_headers_go_but_forwarded_headers_are_set() {
    let mut headers = request(&[
        ("connection", "x-forwarded-for, x-secret, keep-alive"),
        ("x-secret", "1"),
        ("keep-alive", "timeout=5"),
        ("x-forwarded-for", "1.1.1.1"),
        ("te", "trailers"),
        ("x-kept", "yes"),
    ])
    .headers()
    .clone();
    to_upstream(
        &mut headers,
        &client(),
        Some(&HeaderValue::from_static("ex.com")),
        None,
    );
    assert!(headers.get("x-secret").is_none());
    assert!(headers.get("keep-alive").is_none());
    assert!(headers.get("te").is_none());
    assert!(headers.get("connection").is_none());
    assert_eq!(headers["x-forwarded-for"], "10.0.0.1");
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert_eq!(headers["x-forwarded-host"], "ex.com");
    assert_eq!(headers["x-kept"], "yes");
}

#[test]
fn forwarded_for_is_appended() {
    let mut headers = request(&[
        ("x-forwarded-for", "1.1.1.1"),
        ("x-forwarded-for", "2.2.2.2"),
    ])
    .headers()
    .clone();
    to_upstream(&mut headers, &client(), None, None);
    assert_eq!(headers["x-forwarded-for"], "1.1.1.1, 2.2.2.2, 10.0.0.1");
}

#[test]
fn upgrades_are_kept_except_h2c() {
    let ws = request(&[
        ("connection", "keep-alive, Upgrade"),
        ("upgrade", "websocket"),
    ]);
    let protocol = upgrade_protocol(ws.headers());
    assert_eq!(protocol.as_ref().unwrap(), "websocket");
    let mut headers = ws.headers().clone();
    to_upstream(&mut headers, &client(), None, protocol);
    assert_eq!(headers["upgrade"], "websocket");
    assert_eq!(headers["connection"], "upgrade");
    let h2c = request(&[("connection", "upgrade"), ("upgrade", "h2c")]);
    assert!(upgrade_protocol(h2c.headers()).is_none());
    assert!(upgrade_protocol(request(&[("upgrade", "websocket")]).headers()).is_none());
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
    assert!(keeps_alive(&request(Version::HTTP_11, None)));
    assert!(keeps_alive(&request(Version::HTTP_11, Some("te"))));
    assert!(!keeps_alive(&request(Version::HTTP_11, Some("te, Close"))));
    assert!(!keeps_alive(&request(Version::HTTP_10, None)));
    assert!(keeps_alive(&request(Version::HTTP_10, Some("Keep-Alive"))));

    let mut headers = HeaderMap::new();
    assert!(!closes(&headers));
    headers.insert(CONNECTION, HeaderValue::from_static("close"));
    assert!(closes(&headers));
}
