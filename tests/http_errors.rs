//! The statuses sluice answers itself (SPEC §10, HTTP part), each checked
//! on what the client got and on what the backend received.

mod common;

use std::time::Duration;

use common::{
    Backend, Proxy, exchange, raw_exchange, raw_response, read_until_quiet, status_of,
    upstreams_yaml,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const QUIET: Duration = Duration::from_secs(5);

fn config(backends: &[&Backend], settings: &str, rule: &str) -> String {
    let ids: Vec<&str> = backends.iter().map(|b| b.name).collect();
    format!(
        "{}defaults:\n{settings}listeners:\n  - name: web\n    listen: 127.0.0.1:0\n    mode: http\n    rules:\n      - path: /*\n        upstreams: [{}]\n{rule}",
        upstreams_yaml(backends),
        ids.join(", ")
    )
}

#[tokio::test]
async fn smuggling_vectors_get_400_and_reach_nobody() {
    let b = Backend::start("app").await;
    let proxy = Proxy::start(&config(&[&b], "  retries: 2\n", ""));
    let cases = [
        "POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\ncontent-length: 4\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 4\r\ncontent-length: 5\r\n\r\nabcde",
        "POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 4\r\ncontent-length: 4\r\n\r\nabcd",
        "POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 4, 4\r\n\r\nabcd",
        "POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: x-chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
        "GET / HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n",
        "GET / HTTP/1.1\r\n\r\n",
        "GET http://other.test/ HTTP/1.1\r\nhost: a\r\n\r\n",
        "GET / HTTP/1.1\r\nhost: a\r\nbad header\r\n\r\n",
        "GARBAGE\r\n\r\n",
    ];
    for case in cases {
        let response = raw_response(proxy.addr("web"), case.as_bytes()).await;
        assert_eq!(status_of(&response), 400, "{case:?} -> {response}");
    }
    assert!(b.seen().is_empty(), "forwarded: {:?}", b.seen());
}

#[tokio::test]
async fn a_400_closes_the_connection_so_nothing_is_smuggled_after_it() {
    let b = Backend::start("app").await;
    let proxy = Proxy::start(&config(&[&b], "  retries: 2\n", ""));
    let response = raw_exchange(
        proxy.addr("web"),
        b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 0\r\ntransfer-encoding: chunked\r\n\r\nGET /smuggled HTTP/1.1\r\nhost: a\r\n\r\n",
        QUIET,
    )
    .await;
    assert_eq!(status_of(&response), 400);
    assert_eq!(response.matches("HTTP/1.1").count(), 1, "{response}");
    assert!(b.seen().is_empty());
}

#[tokio::test]
async fn upstream_down_is_502_and_a_live_one_is_retried() {
    let live = Backend::start("live").await;
    let dead = Backend::dead("dead");
    let only_dead = Proxy::start(&config(&[&dead], "  retries: 2\n", ""));
    let response = raw_response(only_dead.addr("web"), b"GET / HTTP/1.1\r\nhost: a\r\n\r\n").await;
    assert_eq!(status_of(&response), 502, "{response}");
    assert!(response.contains("connect failed"));

    let mixed = Proxy::start(&config(&[&dead, &live], "  retries: 2\n", ""));
    for _ in 0..6 {
        let response = raw_response(
            mixed.addr("web"),
            b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\n\r\nabc",
        )
        .await;
        assert_eq!(status_of(&response), 200, "{response}");
    }
    assert_eq!(live.seen().len(), 6);
    assert!(live.seen().iter().all(|s| s.body_len == 3));
}

#[tokio::test]
async fn slow_upstream_is_504() {
    let b = Backend::start("slow").await;
    let proxy = Proxy::start(&config(&[&b], "  response_timeout: 300ms\n", ""));
    let response = raw_response(
        proxy.addr("web"),
        b"GET /slow/3000 HTTP/1.1\r\nhost: a\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&response), 504, "{response}");
    assert!(response.contains("timeout"));
}

#[tokio::test]
async fn a_retry_after_a_connect_that_hung_gets_its_whole_response_timeout() {
    let (hole, _fillers, _listener) = common::sockets::blackhole();
    let live = Backend::start("live").await;
    let proxy = Proxy::start(&format!(
        "upstreams:\n  - id: hole\n    address: {hole}\n    health_check: {{ kind: none }}\n\
         \x20 - id: live\n    address: {}\n    health_check: {{ kind: none }}\n\
         defaults:\n  connect_timeout: 600ms\n  response_timeout: 500ms\n  retries: 1\n\
         listeners:\n  - name: web\n    listen: 127.0.0.1:0\n    rules:\n      - path: /*\n        upstreams: [hole, live]\n",
        live.addr
    ));
    // Round-robin over [hole, live]: the first request tries the hanging
    // upstream first (the second request guards against a changed start).
    let mut slowest = Duration::ZERO;
    for _ in 0..2 {
        let started = std::time::Instant::now();
        let response = raw_response(
            proxy.addr("web"),
            b"GET /slow/200 HTTP/1.1\r\nhost: a\r\n\r\n",
        )
        .await;
        slowest = slowest.max(started.elapsed());
        assert_eq!(status_of(&response), 200, "{response}");
    }
    assert!(slowest >= Duration::from_millis(600), "{slowest:?}");
    assert_eq!(live.seen().len(), 2);
}

#[tokio::test]
async fn upstream_closing_before_a_response_is_502() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = tokio::io::AsyncReadExt::read(&mut stream, &mut buf).await;
            drop(stream);
        }
    });
    let yaml = format!(
        "upstreams:\n  - id: closer\n    address: {addr}\n    health_check: {{ kind: none }}\nlisteners:\n  - name: web\n    listen: 127.0.0.1:0\n    mode: http\n    rules:\n      - path: /*\n        upstreams: [closer]\n"
    );
    let proxy = Proxy::start(&yaml);
    let response = raw_response(proxy.addr("web"), b"GET / HTTP/1.1\r\nhost: a\r\n\r\n").await;
    assert_eq!(status_of(&response), 502, "{response}");
}

#[tokio::test]
async fn oversized_head_is_431_and_long_uri_414() {
    let b = Backend::start("app").await;
    let proxy = Proxy::start(&config(&[&b], "  max_header_size: 8k\n", ""));
    let big_header = format!(
        "GET / HTTP/1.1\r\nhost: a\r\nx-big: {}\r\n\r\n",
        "a".repeat(9000)
    );
    assert_eq!(
        status_of(&raw_response(proxy.addr("web"), big_header.as_bytes()).await),
        431
    );
    let long_uri = format!("GET /{} HTTP/1.1\r\nhost: a\r\n\r\n", "u".repeat(8200));
    let proxy = Proxy::start(&config(&[&b], "  max_header_size: 64k\n", ""));
    assert_eq!(
        status_of(&raw_response(proxy.addr("web"), long_uri.as_bytes()).await),
        414
    );
    assert!(b.seen().is_empty());
}

#[tokio::test]
async fn body_over_the_limit_is_413_declared_or_streamed() {
    let b = Backend::start("app").await;
    let proxy = Proxy::start(&config(&[&b], "  max_body_size: 1k\n", ""));
    let declared = format!(
        "POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 2000\r\n\r\n{}",
        "b".repeat(2000)
    );
    let response = raw_response(proxy.addr("web"), declared.as_bytes()).await;
    assert_eq!(status_of(&response), 413, "{response}");
    assert!(b.seen().is_empty());

    let chunk = "c".repeat(600);
    let chunked = format!(
        "POST /echo HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n258\r\n{chunk}\r\n258\r\n{chunk}\r\n0\r\n\r\n"
    );
    let response = raw_response(proxy.addr("web"), chunked.as_bytes()).await;
    assert!(matches!(status_of(&response), 413 | 200), "{response}");
    assert!(
        !response.contains(&"c".repeat(1200)),
        "more than the limit passed: {response}"
    );

    let fits = format!(
        "POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 1000\r\n\r\n{}",
        "d".repeat(1000)
    );
    assert_eq!(
        status_of(&raw_response(proxy.addr("web"), fits.as_bytes()).await),
        200
    );
}

#[tokio::test]
async fn slow_head_gets_408_and_idle_keep_alive_closes_quietly() {
    let b = Backend::start("app").await;
    let proxy = Proxy::start(&config(
        &[&b],
        "  header_timeout: 300ms\n  idle_timeout: 300ms\n",
        "",
    ));
    let mut stream = TcpStream::connect(proxy.addr("web")).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: a\r\n")
        .await
        .unwrap();
    let response = read_until_quiet(&mut stream, QUIET).await;
    assert_eq!(status_of(&response), 408, "{response}");

    let mut stream = TcpStream::connect(proxy.addr("web")).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let response = read_until_quiet(&mut stream, QUIET).await;
    assert_eq!(status_of(&response), 200);
    assert!(
        !response.contains("408"),
        "an idle connection is closed without a 408: {response}"
    );
    assert!(b.seen().len() == 1);
}

#[tokio::test]
async fn slow_body_gets_408() {
    let b = Backend::start("app").await;
    let proxy = Proxy::start(&config(&[&b], "  body_timeout: 300ms\n", ""));
    let mut stream = TcpStream::connect(proxy.addr("web")).await.unwrap();
    stream
        .write_all(b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 100\r\n\r\nonly-a-bit")
        .await
        .unwrap();
    let response = read_until_quiet(&mut stream, QUIET).await;
    assert_eq!(status_of(&response), 408, "{response}");
}

#[tokio::test]
async fn every_upstream_refusing_is_502_and_503_when_all_are_down() {
    let dead1 = Backend::dead("dead1");
    let dead2 = Backend::dead("dead2");
    let proxy = Proxy::start(&config(&[&dead1, &dead2], "  retries: 5\n", ""));
    let response = raw_response(proxy.addr("web"), b"GET / HTTP/1.1\r\nhost: a\r\n\r\n").await;
    assert_eq!(
        status_of(&response),
        502,
        "both tried, both refused: {response}"
    );
    for slot in 0..2 {
        proxy.instance.region.set_up(slot, false);
    }
    let response = raw_response(proxy.addr("web"), b"GET / HTTP/1.1\r\nhost: a\r\n\r\n").await;
    assert_eq!(
        status_of(&response),
        503,
        "no healthy upstream, panic picks failed too: {response}"
    );
    assert!(response.contains("no upstream available"));
}

/// A backend that answers the first request on each connection, then
/// closes the connection when the next request arrives (the keep-alive
/// close race). Returns its address and the number of connections.
async fn closes_after_one_response() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::Ordering;
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&connections);
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = stream.read(&mut buf).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    head.extend_from_slice(&buf[..n]);
                }
                stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await
                    .unwrap();
                let _ = stream.read(&mut buf).await;
            });
        }
    });
    (addr, connections)
}

#[tokio::test]
async fn a_pooled_connection_closed_by_the_upstream_is_replaced_for_bodyless_requests() {
    use std::sync::atomic::Ordering;
    let (addr, connections) = closes_after_one_response().await;
    let yaml = format!(
        "upstreams:\n  - id: flaky\n    address: {addr}\n    health_check: {{ kind: none }}\ndefaults:\n  retries: 0\nlisteners:\n  - name: web\n    listen: 127.0.0.1:0\n    rules:\n      - path: /*\n        upstreams: [flaky]\n"
    );
    let proxy = Proxy::start(&yaml);
    let mut client = TcpStream::connect(proxy.addr("web")).await.unwrap();
    for _ in 0..3 {
        let response = exchange(&mut client, b"GET / HTTP/1.1\r\nhost: a\r\n\r\n").await;
        assert_eq!(status_of(&response), 200, "{response}");
        assert!(response.ends_with("ok"));
    }
    assert_eq!(
        connections.load(Ordering::SeqCst),
        3,
        "each request after the first needed a fresh connection"
    );

    let response = exchange(
        &mut client,
        b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 0\r\n\r\n",
    )
    .await;
    assert_eq!(
        status_of(&response),
        502,
        "a bodyless POST that may have been sent is not replayed: {response}"
    );
    let mut client = TcpStream::connect(proxy.addr("web")).await.unwrap();
    assert_eq!(
        status_of(&exchange(&mut client, b"GET / HTTP/1.1\r\nhost: a\r\n\r\n").await),
        200
    );
    let response = exchange(
        &mut client,
        b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 4\r\n\r\nbody",
    )
    .await;
    assert_eq!(
        status_of(&response),
        502,
        "a request whose body was sent is not replayed: {response}"
    );
}

#[tokio::test]
async fn a_get_whose_upstream_went_away_mid_keep_alive_moves_to_another_upstream() {
    use tokio::io::AsyncReadExt;
    // Answers one request, then on the next one on that connection stops
    // listening and closes: the pooled connection is lost, and so is the
    // fresh connect sluice tries next.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dying = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        common::read_request_head(&mut stream).await;
        stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\ndying")
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        let _ = stream.read(&mut buf).await;
        drop(listener);
    });
    let good = Backend::start("good").await;
    // Weights 100:1 send the first two requests to `dying`.
    let yaml = format!(
        "upstreams:\n  - id: dying\n    address: {dying}\n    weight: 100\n    health_check: {{ kind: none }}\n\
         \x20 - id: good\n    address: {}\n    health_check: {{ kind: none }}\n\
         defaults:\n  retries: 2\nlisteners:\n  - name: web\n    listen: 127.0.0.1:0\n    rules:\n      - path: /*\n        upstreams: [dying, good]\n",
        good.addr
    );
    let proxy = Proxy::start(&yaml);
    let first = raw_response(proxy.addr("web"), b"GET /one HTTP/1.1\r\nhost: a\r\n\r\n").await;
    assert!(first.ends_with("dying"), "{first}");
    let second = raw_response(proxy.addr("web"), b"GET /two HTTP/1.1\r\nhost: a\r\n\r\n").await;
    assert_eq!(status_of(&second), 200, "{second}");
    assert!(second.contains("good GET /two"), "{second}");
}

#[tokio::test]
async fn an_idle_upstream_connection_its_upstream_closed_is_closed_within_seconds() {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (closed, closed_seen) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        common::read_request_head(&mut stream).await;
        stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .await
            .unwrap();
        // The backend ends the keep-alive connection, then waits to see
        // sluice close its end.
        stream.shutdown().await.unwrap();
        let mut buf = [0u8; 64];
        let _ = closed.send(stream.read(&mut buf).await.map(|n| n == 0));
    });
    let yaml = format!(
        "upstreams:\n  - id: b\n    address: {addr}\n    health_check: {{ kind: none }}\nlisteners:\n  - name: web\n    listen: 127.0.0.1:0\n    rules:\n      - path: /*\n        upstreams: [b]\n"
    );
    let proxy = Proxy::start(&yaml);
    let response = raw_response(proxy.addr("web"), b"GET / HTTP/1.1\r\nhost: a\r\n\r\n").await;
    assert_eq!(status_of(&response), 200, "{response}");
    let closed = tokio::time::timeout(Duration::from_secs(5), closed_seen)
        .await
        .expect("sluice kept holding the connection its upstream closed")
        .unwrap();
    assert!(closed.unwrap(), "sluice sent bytes instead of closing");
}

/// One rule over the resetting upstream (with `reset_check` as its health
/// check) and then `live` (unchecked), round-robin.
fn reset_then_live(reset: std::net::SocketAddr, live: &Backend, reset_check: &str) -> String {
    format!(
        "upstreams:\n  - id: reset\n    address: {reset}\n    health_check: {{ {reset_check} }}\n  - id: live\n    address: {}\n    health_check: {{ kind: none }}\nlisteners:\n  - name: web\n    listen: 127.0.0.1:0\n    rules:\n      - path: /*\n        upstreams: [reset, live]\n",
        live.addr
    )
}

#[tokio::test]
async fn an_idempotent_request_reset_before_a_response_moves_to_another_upstream() {
    let live = Backend::start("live").await;
    let reset = common::sockets::resetting_server(b"").await;
    let proxy = Proxy::start(&reset_then_live(reset, &live, "kind: none"));
    for _ in 0..4 {
        let response = raw_response(proxy.addr("web"), b"GET / HTTP/1.1\r\nhost: a\r\n\r\n").await;
        assert_eq!(status_of(&response), 200, "{response}");
    }
    assert_eq!(live.seen().len(), 4);
    let response = raw_response(
        proxy.addr("web"),
        b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 0\r\n\r\n",
    )
    .await;
    let response2 = raw_response(
        proxy.addr("web"),
        b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 0\r\n\r\n",
    )
    .await;
    let statuses = [status_of(&response), status_of(&response2)];
    assert!(
        statuses.contains(&502),
        "a POST that hit the resetting upstream is not replayed: {statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resets_on_live_traffic_mark_an_upstream_down_before_its_next_probe() {
    let live = Backend::start("live").await;
    let reset = common::sockets::resetting_server(b"").await;
    let check = "kind: tcp, interval: 1h, timeout: 1s, rise: 1, fall: 2";
    let proxy = Proxy::start(&reset_then_live(reset, &live, check));
    assert!(
        proxy.instance.region.is_up(0),
        "the tcp check passes: the port accepts"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while proxy.instance.region.is_up(0) {
        assert!(
            std::time::Instant::now() < deadline,
            "resets never marked the upstream down"
        );
        let response = raw_response(proxy.addr("web"), b"GET / HTTP/1.1\r\nhost: a\r\n\r\n").await;
        assert_eq!(status_of(&response), 200, "{response}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let served = live.seen().len();
    for _ in 0..5 {
        raw_response(proxy.addr("web"), b"GET / HTTP/1.1\r\nhost: a\r\n\r\n").await;
    }
    assert_eq!(
        live.seen().len(),
        served + 5,
        "a down upstream gets no traffic"
    );
}

#[tokio::test]
async fn a_slow_upload_is_not_cut_by_the_response_timeout_while_it_moves() {
    let b = Backend::start("app").await;
    let proxy = Proxy::start(&config(
        &[&b],
        "  response_timeout: 400ms\n  body_timeout: 2s\n",
        "",
    ));
    let chunks = futures_util::stream::unfold(0u8, |i| async move {
        if i == 6 {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
        Some((
            Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'u'; 1000])),
            i + 1,
        ))
    });
    let response = common::client()
        .post(format!("http://{}/sink", proxy.addr("web")))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        200,
        "900 ms of upload, 400 ms response timeout"
    );
    assert_eq!(response.text().await.unwrap(), "6000");
}

#[tokio::test]
async fn a_client_pausing_its_upload_is_bound_by_body_timeout_not_response_timeout() {
    let b = Backend::start("app").await;
    let proxy = Proxy::start(&config(
        &[&b],
        "  response_timeout: 400ms\n  body_timeout: 3s\n",
        "",
    ));
    let mut client = TcpStream::connect(proxy.addr("web")).await.unwrap();
    client
        .write_all(b"POST /sink HTTP/1.1\r\nhost: a\r\ncontent-length: 10\r\n\r\nab")
        .await
        .unwrap();
    // The upstream waits for the client: not its fault, not a 504.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let response = exchange(&mut client, b"cdefghij").await;
    assert_eq!(status_of(&response), 200, "{response}");
    assert!(response.ends_with("10"), "{response}");
}

#[tokio::test]
async fn empty_responses_keep_their_upstream_connection() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&connections);
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut pending = Vec::new();
                loop {
                    while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        pending.drain(..end + 4);
                        if stream
                            .write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => pending.extend_from_slice(&buf[..n]),
                    }
                }
            });
        }
    });
    let yaml = format!(
        "upstreams:\n  - id: empty\n    address: {addr}\n    health_check: {{ kind: none }}\nlisteners:\n  - name: web\n    listen: 127.0.0.1:0\n    rules:\n      - path: /*\n        upstreams: [empty]\n"
    );
    let proxy = Proxy::start(&yaml);
    for method in ["GET", "HEAD", "GET", "DELETE", "GET"] {
        let request = format!("{method} / HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n");
        let response = raw_exchange(proxy.addr("web"), request.as_bytes(), QUIET).await;
        assert_eq!(status_of(&response), 204, "{response}");
    }
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "one upstream connection serves every empty response"
    );
}
