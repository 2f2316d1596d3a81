//! Header rules, X-Forwarded-*, hop-by-hop removal and Host forwarding.

mod common;

use common::{Backend, Proxy, raw_response, status_of, upstreams_yaml};

fn config(b: &Backend, rule_extra: &str) -> String {
    format!(
        "{}listeners:\n  - name: web\n    listen: 127.0.0.1:0\n    mode: http\n    headers:\n      - key: x-real-ip\n        value: $ip\n      - key: x-client\n        value: \"$ip:$port $scheme $host\"\n      - key: x-request-source\n        value: sluice\n      - key: x-id\n        value: $request_id\n    rules:\n      - path: /*\n        upstreams: [{}]\n{rule_extra}",
        upstreams_yaml(&[b]),
        b.name
    )
}

async fn send(proxy: &Proxy, head: &str) -> String {
    raw_response(proxy.addr("web"), format!("{head}\r\n").as_bytes()).await
}

#[tokio::test]
async fn templates_and_forwarded_headers_reach_the_backend() {
    let b = Backend::start("app").await;
    let proxy = Proxy::start(&config(&b, ""));
    let response = send(
        &proxy,
        "GET /x HTTP/1.1\r\nhost: shop.test:8443\r\nx-request-source: spoofed\r\nx-forwarded-for: 203.0.113.9\r\nx-forwarded-proto: https\r\nx-forwarded-host: evil\r\nconnection: close\r\n",
    )
    .await;
    assert_eq!(status_of(&response), 200);
    let seen = &b.seen()[0];
    let h = |name: &str| {
        seen.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    assert_eq!(h("x-real-ip"), "127.0.0.1");
    let client_port: u16 = h("x-client")
        .split([':', ' '])
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(client_port, 0);
    assert!(
        h("x-client").ends_with(" http shop.test"),
        "{}",
        h("x-client")
    );
    assert_eq!(h("x-request-source"), "sluice");
    assert_eq!(h("x-id").len(), 16);
    assert_eq!(h("x-forwarded-for"), "203.0.113.9, 127.0.0.1");
    assert_eq!(h("x-forwarded-proto"), "http");
    assert_eq!(h("x-forwarded-host"), "shop.test:8443");
    assert_eq!(h("host"), "shop.test:8443");
    assert!(seen.headers.get("connection").is_none_or(|v| v != "close"));
}

#[tokio::test]
async fn request_ids_differ_per_request() {
    let b = Backend::start("app").await;
    let proxy = Proxy::start(&config(&b, ""));
    for _ in 0..3 {
        send(&proxy, "GET / HTTP/1.1\r\nhost: a\r\nconnection: close\r\n").await;
    }
    let ids: std::collections::HashSet<String> = b
        .seen()
        .iter()
        .map(|s| s.headers["x-id"].to_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 3);
}

#[tokio::test]
async fn connection_cannot_strip_sluice_headers_but_strips_its_own_names() {
    let b = Backend::start("app").await;
    let proxy = Proxy::start(&config(&b, ""));
    send(
        &proxy,
        "GET / HTTP/1.1\r\nhost: a\r\nconnection: close, x-forwarded-for, x-real-ip, x-request-source, x-private\r\nx-private: secret\r\nkeep-alive: timeout=5\r\nproxy-connection: keep-alive\r\nte: trailers\r\nupgrade: h2c\r\n",
    )
    .await;
    let seen = &b.seen()[0];
    assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen.headers["x-real-ip"], "127.0.0.1");
    assert_eq!(seen.headers["x-request-source"], "sluice");
    for gone in [
        "x-private",
        "keep-alive",
        "proxy-connection",
        "te",
        "upgrade",
    ] {
        assert!(seen.headers.get(gone).is_none(), "{gone} was forwarded");
    }
}

#[tokio::test]
async fn pass_host_false_sends_the_upstream_address() {
    let b = Backend::start("app").await;
    let proxy = Proxy::start(&config(&b, "        pass_host: false\n"));
    send(
        &proxy,
        "GET / HTTP/1.1\r\nhost: public.test\r\nconnection: close\r\n",
    )
    .await;
    assert_eq!(b.seen()[0].headers["host"], b.addr.to_string().as_str());
    assert_eq!(b.seen()[0].headers["x-forwarded-host"], "public.test");
}

#[tokio::test]
async fn response_hop_by_hop_headers_are_not_passed_to_the_client() {
    let b = Backend::start("app").await;
    let proxy = Proxy::start(&config(&b, ""));
    let response = send(&proxy, "GET / HTTP/1.1\r\nhost: a\r\n").await;
    assert_eq!(status_of(&response), 200);
    assert!(response.contains("x-backend: app"));
    assert!(
        !response.to_ascii_lowercase().contains("connection: close"),
        "keep-alive is kept: {response}"
    );
}
