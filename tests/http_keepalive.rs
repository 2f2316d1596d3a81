//! Idle keep-alive client connections are parked (their hyper state
//! dropped, the socket kept) and come back for their next request: nothing
//! the client sends around a park may be lost, and the idle timeout still
//! counts from the last response.

mod common;

use std::time::Duration;

use common::metrics::{get, samples, value};
use common::{Backend, Proxy, exchange, read_until_quiet, upstreams_yaml};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longer than sluice's wait before parking an idle connection.
const PARKED: Duration = Duration::from_millis(600);

fn config(backend: &Backend, idle: &str) -> String {
    format!(
        "{}defaults:\n  idle_timeout: {idle}\n  header_timeout: 5s\nlisteners:\n  - name: web\n    listen: 127.0.0.1:0\n    rules:\n      - path: /*\n        upstreams: [{}]\n",
        upstreams_yaml(&[backend]),
        backend.name
    )
}

fn statuses(responses: &str) -> Vec<&str> {
    responses
        .match_indices("HTTP/1.1 ")
        .map(|(at, _)| &responses[at + 9..at + 12])
        .collect()
}

/// Opens a connection to sluice and gets a 200 for `path` on it.
async fn answered_connection(proxy: &Proxy, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(proxy.addr("web")).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nhost: a\r\n\r\n");
    let response = exchange(&mut stream, request.as_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    stream
}

#[tokio::test]
async fn a_parked_connection_serves_what_comes_next_in_order() {
    let b = Backend::start("app").await;
    let proxy = Proxy::start(&config(&b, "10s"));
    let mut stream = answered_connection(&proxy, "/first").await;

    tokio::time::sleep(PARKED).await;
    stream
        .write_all(b"GET /second HTTP/1.1\r\nhost: a\r\n\r\nPOST /third HTTP/1.1\r\nhost: a\r\ncontent-length: 10\r\n\r\n01234")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    stream.write_all(b"56789").await.unwrap();
    let responses = read_until_quiet(&mut stream, Duration::from_millis(500)).await;
    assert_eq!(statuses(&responses), ["200", "200"], "{responses}");

    tokio::time::sleep(PARKED).await;
    assert!(
        exchange(&mut stream, b"GET /fourth HTTP/1.1\r\nhost: a\r\n\r\n")
            .await
            .starts_with("HTTP/1.1 200")
    );

    let seen: Vec<(String, usize)> = b.seen().into_iter().map(|s| (s.uri, s.body_len)).collect();
    let expected = [
        ("/first", 0),
        ("/second", 0),
        ("/third", 10),
        ("/fourth", 0),
    ];
    let expected: Vec<(String, usize)> =
        expected.iter().map(|(u, l)| (u.to_string(), *l)).collect();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn a_head_that_pauses_mid_way_is_not_parked_away() {
    let b = Backend::start("app").await;
    let proxy = Proxy::start(&config(&b, "10s"));
    let mut stream = TcpStream::connect(proxy.addr("web")).await.unwrap();
    stream
        .write_all(b"GET /a HTTP/1.1\r\nhost: a\r\n\r\nGET /b HTTP/1.1\r\nhost:")
        .await
        .unwrap();
    tokio::time::sleep(PARKED).await;
    stream.write_all(b" a\r\n\r\n").await.unwrap();
    let responses = read_until_quiet(&mut stream, Duration::from_millis(500)).await;
    assert_eq!(statuses(&responses), ["200", "200"], "{responses}");
    let uris: Vec<String> = b.seen().into_iter().map(|s| s.uri).collect();
    assert_eq!(uris, ["/a", "/b"]);
}

#[tokio::test]
async fn a_parked_connection_closes_at_its_idle_timeout_and_not_before() {
    let b = Backend::start("app").await;
    let proxy = Proxy::start(&config(&b, "1500ms"));
    let mut stream = answered_connection(&proxy, "/").await;
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(900), stream.read(&mut byte)).await;
    assert!(early.is_err(), "closed before the idle timeout: {early:?}");
    let closed = tokio::time::timeout(Duration::from_secs(3), stream.read(&mut byte)).await;
    assert!(
        matches!(closed, Ok(Ok(0))),
        "a parked connection is closed quietly at idle_timeout: {closed:?}"
    );
}

#[tokio::test]
async fn a_connection_the_client_closes_is_not_kept_parked() {
    let b = Backend::start("app").await;
    let proxy = Proxy::start(&config(&b, "10s"));
    for request in [
        &b"GET / HTTP/1.0\r\nhost: a\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
    ] {
        let mut stream = TcpStream::connect(proxy.addr("web")).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut all = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut all)).await;
        assert!(
            read.is_ok(),
            "the connection stayed open after the response"
        );
        let response = String::from_utf8_lossy(&all);
        assert!(response.starts_with("HTTP/1."), "{response}");
        assert_eq!(&response[9..12], "200", "{response}");
    }
}

#[tokio::test]
async fn parked_connections_count_as_open_until_their_client_closes() {
    let b = Backend::start("app").await;
    let yaml = format!("admin: {{ listen: 127.0.0.1:0 }}\n{}", config(&b, "30s"));
    let proxy = Proxy::start(&yaml);
    let admin = proxy.instance.admin.unwrap();
    let first = answered_connection(&proxy, "/").await;
    let _second = answered_connection(&proxy, "/").await;
    tokio::time::sleep(PARKED).await;
    let active = || async {
        let (_, _, text) = get(admin, "/metrics").await;
        value(
            &samples(&text),
            "sluice_listener_connections_active",
            &[("listener", "web")],
        )
    };
    assert_eq!(active().await, 2.0);
    drop(first);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while active().await != 1.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a closed parked connection is still counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn stopping_closes_parked_connections_without_waiting_for_the_drain() {
    let b = Backend::start("app").await;
    let yaml = format!("drain_timeout: 60s\n{}", config(&b, "30s"));
    let proxy = Proxy::start(&yaml);
    let mut parked = Vec::new();
    for _ in 0..3 {
        parked.push(answered_connection(&proxy, "/").await);
    }
    tokio::time::sleep(PARKED).await;
    let stopped = tokio::task::spawn_blocking(move || proxy.instance.stop());
    for stream in &mut parked {
        let mut byte = [0u8; 1];
        let closed = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut byte)).await;
        assert!(
            matches!(closed, Ok(Ok(0))),
            "a parked connection stays open after stop: {closed:?}"
        );
    }
    tokio::time::timeout(Duration::from_secs(10), stopped)
        .await
        .expect("stop waited for the drain timeout")
        .unwrap();
}

#[tokio::test]
async fn a_pipelined_head_cut_short_gets_the_header_timeout_and_a_408() {
    let b = Backend::start("app").await;
    let yaml = config(&b, "30s").replace("header_timeout: 5s", "header_timeout: 500ms");
    let proxy = Proxy::start(&yaml);
    let mut stream = TcpStream::connect(proxy.addr("web")).await.unwrap();
    stream
        .write_all(b"GET /one HTTP/1.1\r\nhost: a\r\n\r\nGET /two HTTP/1.1\r\nHo")
        .await
        .unwrap();
    // Both the first answer and the 408 come long before the idle timeout.
    let mut answers = String::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answers.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "still open: {answers}");
    assert_eq!(statuses(&answers), ["200", "408"], "{answers}");
}
