//! Broken backends and hostile clients (issue 8's first cases): what the
//! client gets, that nothing is passed on in a form that looks whole, and
//! that silent new connections wait in the kernel, not in a worker.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Backend, Proxy, exchange, raw_exchange, read_response, status_of, upstreams_yaml};
use sluice::counters::ListenerCounter;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A backend that answers every request head with exactly `reply`, then
/// closes the connection if `close`.
async fn scripted(reply: &'static [u8], close: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let mut pending = Vec::new();
                loop {
                    if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        pending.drain(..end + 4);
                        if stream.write_all(reply).await.is_err() || close {
                            return;
                        }
                        continue;
                    }
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => pending.extend_from_slice(&buf[..n]),
                    }
                }
            });
        }
    });
    addr
}

fn config(addr: SocketAddr, settings: &str) -> String {
    format!(
        "upstreams:\n  - id: b\n    address: {addr}\n    health_check: {{ kind: none }}\ndefaults:\n  retries: 0\n{settings}listeners:\n  - name: web\n    listen: 127.0.0.1:0\n    rules:\n      - path: /*\n        upstreams: [b]\n"
    )
}

const QUIET: Duration = Duration::from_secs(3);

#[tokio::test]
async fn a_backend_dying_mid_body_gives_a_visibly_short_response_and_a_close() {
    let addr = scripted(
        b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten b",
        true,
    )
    .await;
    let proxy = Proxy::start(&config(addr, ""));
    let response = raw_exchange(
        proxy.addr("web"),
        b"GET / HTTP/1.1\r\nhost: a\r\n\r\n",
        QUIET,
    )
    .await;
    assert_eq!(status_of(&response), 200);
    assert!(
        response
            .to_ascii_lowercase()
            .contains("content-length: 100"),
        "{response}"
    );
    let body = response.split("\r\n\r\n").nth(1).unwrap();
    assert!(
        body.len() < 100,
        "the client must see a short body, got {}",
        body.len()
    );

    let chunked = scripted(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n",
        true,
    )
    .await;
    let proxy = Proxy::start(&config(chunked, ""));
    let response = raw_exchange(
        proxy.addr("web"),
        b"GET / HTTP/1.1\r\nhost: a\r\n\r\n",
        QUIET,
    )
    .await;
    assert!(response.contains("hello"), "{response}");
    assert!(
        !response.ends_with("0\r\n\r\n"),
        "no final chunk after a dead backend: {response:?}"
    );
}

#[tokio::test]
async fn invalid_framing_or_an_oversized_head_from_a_backend_is_a_502() {
    let oversized = format!(
        "HTTP/1.1 200 OK\r\nx-big: {}\r\ncontent-length: 2\r\n\r\nok",
        "a".repeat(70_000)
    );
    for reply in [
        oversized.as_bytes(),
        &b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"[..],
        &b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"[..],
        &b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello!"[..],
        &b"HTTP/1.1 200 OK\r\nx-bad: a\0b\r\ncontent-length: 2\r\n\r\nok"[..],
        &b"NONSENSE\r\n\r\n"[..],
        &b"HTTP/1.1 200 OK\r\nx-folded: a\r\n b\r\ncontent-length: 2\r\n\r\nok"[..],
        // A coding other than chunked alone would reach the client coded
        // but labelled plain once Transfer-Encoding is removed.
        &b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\nnot really gzip"[..],
        &b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"[..],
    ] {
        let reply: &'static [u8] = Box::leak(reply.to_vec().into_boxed_slice());
        let proxy = Proxy::start(&config(scripted(reply, true).await, ""));
        let response = common::raw_response(proxy.addr("web"), b"GET / HTTP/1.1\r\nhost: a\r\n\r\n").await;
        assert_eq!(status_of(&response), 502, "{:?} -> {response}", String::from_utf8_lossy(reply));
    }
}

/// A backend that answers every request with `reply` and closes, and
/// counts the requests it got.
async fn counting(reply: &'static [u8]) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&count);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            common::read_request_head(&mut stream).await;
            counted.fetch_add(1, Ordering::SeqCst);
            let _ = stream.write_all(reply).await;
        }
    });
    (addr, count)
}

/// An upstream for one connection: reads the request head, writes
/// `reply`, then runs `then` on the socket; what that returns comes out of
/// the receiver.
async fn one_connection<T, F, Fut>(
    reply: &'static [u8],
    then: F,
) -> (SocketAddr, tokio::sync::oneshot::Receiver<T>)
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + Send,
    T: Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (heard, heard_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        common::read_request_head(&mut stream).await;
        stream.write_all(reply).await.unwrap();
        let _ = heard.send(then(stream).await);
    });
    (addr, heard_rx)
}

#[tokio::test]
async fn a_slow_upload_after_an_early_response_head_is_not_cut_at_idle_timeout() {
    let (addr, heard_rx) = one_connection(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
        |mut stream| async move {
            let mut body = [0u8; 10];
            stream.read_exact(&mut body).await.unwrap();
            stream.write_all(b"2\r\nok\r\n0\r\n\r\n").await.unwrap();
            body
        },
    )
    .await;
    let proxy = Proxy::start(&config(addr, "  idle_timeout: 1s\n"));
    let mut client = TcpStream::connect(proxy.addr("web")).await.unwrap();
    client
        .write_all(b"POST /stream HTTP/1.1\r\nhost: a\r\ncontent-length: 10\r\n\r\n")
        .await
        .unwrap();
    // One byte every 300 ms: 3 s in all, against an idle_timeout of 1 s
    // for the response, which sends nothing until the upload ends.
    for byte in b"0123456789" {
        tokio::time::sleep(Duration::from_millis(300)).await;
        client.write_all(&[*byte]).await.unwrap();
    }
    // The connection closes at the idle timeout after the response.
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut response)).await;
    let response = String::from_utf8_lossy(&response);
    assert_eq!(status_of(&response), 200, "{response}");
    assert!(
        response.ends_with("\r\n\r\n2\r\nok\r\n0\r\n\r\n"),
        "{response:?}"
    );
    assert_eq!(&heard_rx.await.unwrap(), b"0123456789");
}

#[tokio::test]
async fn a_full_duplex_upstream_and_a_client_that_writes_before_reading_both_finish() {
    const SIZE: usize = 32 << 20;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (heard, heard_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        common::read_request_head(&mut stream).await;
        let (mut reader, mut writer) = stream.into_split();
        // Reads the upload while it sends its answer, as an echo does; the
        // answer's last byte goes once the whole upload is in.
        let reading = tokio::spawn(async move {
            let mut body = vec![0u8; SIZE];
            reader.read_exact(&mut body).await.map(|_| body.len())
        });
        let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {SIZE}\r\n\r\n");
        writer.write_all(head.as_bytes()).await.unwrap();
        writer.write_all(&vec![b'y'; SIZE - 1]).await.unwrap();
        let uploaded = reading.await.unwrap().unwrap();
        writer.write_all(b"y").await.unwrap();
        let _ = heard.send(uploaded);
    });
    let proxy = Proxy::start(&config(addr, "  send_timeout: 3s\n"));
    let mut client = TcpStream::connect(proxy.addr("web")).await.unwrap();
    let head = format!("POST /echo HTTP/1.1\r\nhost: a\r\ncontent-length: {SIZE}\r\n\r\n");
    client.write_all(head.as_bytes()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(20), client.write_all(&vec![b'x'; SIZE]))
        .await
        .expect("the upload stalled")
        .expect("the upload was refused");
    let response = tokio::time::timeout(Duration::from_secs(20), async {
        let mut response = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = client.read(&mut buf).await.unwrap();
            response.extend_from_slice(&buf[..n]);
            let head_end = response.windows(4).position(|w| w == b"\r\n\r\n");
            if n == 0 || head_end.is_some_and(|end| response.len() >= end + 4 + SIZE) {
                return response;
            }
        }
    })
    .await
    .expect("the response stalled");
    let head_end = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    assert!(response.starts_with(b"HTTP/1.1 200"));
    assert_eq!(response.len() - head_end - 4, SIZE, "short response");
    assert_eq!(heard_rx.await.unwrap(), SIZE, "short upload");
}

#[tokio::test]
async fn a_request_is_not_sent_again_once_part_of_a_response_came() {
    for reply in [
        &b"HTTP/1.1 200 OK\r\nx-half: "[..],
        &b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\n"[..],
    ] {
        let (first, first_count) = counting(reply).await;
        let (second, second_count) = counting(reply).await;
        let proxy = Proxy::start(&format!(
            "upstreams:\n  - id: a\n    address: {first}\n    health_check: {{ kind: none }}\n  - id: b\n    address: {second}\n    health_check: {{ kind: none }}\ndefaults:\n  retries: 1\nlisteners:\n  - name: web\n    listen: 127.0.0.1:0\n    rules:\n      - path: /*\n        upstreams: [a, b]\n"
        ));
        let response =
            common::raw_response(proxy.addr("web"), b"DELETE /x HTTP/1.1\r\nhost: a\r\n\r\n").await;
        assert_eq!(status_of(&response), 502, "{response}");
        let sent = first_count.load(Ordering::SeqCst) + second_count.load(Ordering::SeqCst);
        assert_eq!(
            sent,
            1,
            "sent again after {:?}",
            String::from_utf8_lossy(reply)
        );
    }
}

#[tokio::test]
async fn bytes_beyond_content_length_are_dropped_and_the_client_connection_stays_in_sync() {
    let addr = scripted(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\nsmuggle", false).await;
    let proxy = Proxy::start(&config(addr, ""));
    let mut client = TcpStream::connect(proxy.addr("web")).await.unwrap();
    for _ in 0..3 {
        let response = exchange(&mut client, b"GET / HTTP/1.1\r\nhost: a\r\n\r\n").await;
        assert_eq!(status_of(&response), 200, "{response}");
        assert!(response.ends_with("\r\n\r\nok"), "{response:?}");
    }
}

#[tokio::test]
async fn interim_answers_are_skipped_and_an_unusual_reason_is_kept() {
    let addr = scripted(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </s.css>\r\n\r\nHTTP/1.1 200 Fine Thanks\r\ncontent-length: 2\r\n\r\nok",
        false,
    )
    .await;
    let proxy = Proxy::start(&config(addr, ""));
    let mut client = TcpStream::connect(proxy.addr("web")).await.unwrap();
    for _ in 0..2 {
        let response = exchange(&mut client, b"GET / HTTP/1.1\r\nhost: a\r\n\r\n").await;
        assert!(
            response.starts_with("HTTP/1.1 200 Fine Thanks\r\n"),
            "{response:?}"
        );
        assert!(!response.contains("link:"), "{response:?}");
        assert!(response.ends_with("\r\n\r\nok"), "{response:?}");
    }
}

#[tokio::test]
async fn chunk_extensions_and_trailers_are_dropped_and_the_connection_reused() {
    let addr = scripted(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: t\r\n\r\n",
        false,
    )
    .await;
    let proxy = Proxy::start(&config(addr, ""));
    let response = raw_exchange(
        proxy.addr("web"),
        b"GET /1 HTTP/1.1\r\nhost: a\r\n\r\nGET /2 HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
        QUIET,
    )
    .await;
    assert_eq!(
        response.matches("HTTP/1.1 200 OK").count(),
        2,
        "{response:?}"
    );
    assert_eq!(
        response
            .matches("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
            .count(),
        2,
        "{response:?}"
    );
    assert!(
        !response.contains("x=y") && !response.contains("x-trailer"),
        "{response:?}"
    );
    assert_eq!(
        proxy
            .instance
            .region
            .upstream_total(0, sluice::counters::UpstreamCounter::Requests),
        2
    );
}

#[tokio::test]
async fn a_body_delimited_by_close_arrives_whole_every_time() {
    let addr = scripted(b"HTTP/1.1 200 OK\r\n\r\nthe whole body", true).await;
    let proxy = Proxy::start(&config(addr, ""));
    for _ in 0..3 {
        let response = raw_exchange(
            proxy.addr("web"),
            b"GET / HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
            QUIET,
        )
        .await;
        assert_eq!(status_of(&response), 200, "{response:?}");
        assert!(
            response.ends_with("\r\nthe whole body\r\n0\r\n\r\n"),
            "{response:?}"
        );
    }
}

#[tokio::test]
async fn a_response_head_that_trickles_in_byte_by_byte_is_answered() {
    let (addr, _) = one_connection(b"", |mut stream| async move {
        for byte in b"HTTP/1.1 200 OK\r\nx-slow: yes\r\ncontent-length: 4\r\n\r\nslow" {
            stream.write_all(&[*byte]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    let proxy = Proxy::start(&config(addr, ""));
    let response =
        common::raw_response(proxy.addr("web"), b"GET / HTTP/1.1\r\nhost: a\r\n\r\n").await;
    assert_eq!(status_of(&response), 200, "{response}");
    assert!(response.contains("x-slow: yes"), "{response}");
    assert!(response.ends_with("\r\n\r\nslow"), "{response:?}");
}

#[tokio::test]
async fn a_101_for_another_protocol_is_not_tunnelled() {
    let addr = scripted(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: something-else\r\nconnection: upgrade\r\n\r\n", false).await;
    let proxy = Proxy::start(&config(addr, ""));
    let response = common::raw_response(
        proxy.addr("web"),
        b"GET /ws HTTP/1.1\r\nhost: a\r\nconnection: upgrade\r\nupgrade: websocket\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&response), 502, "{response}");
}

#[tokio::test]
async fn a_tunnel_passes_the_upstreams_half_close_and_keeps_the_other_way() {
    let (addr, heard_rx) = one_connection(
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\nbye",
        |mut stream| async move {
            stream.shutdown().await.unwrap();
            let mut late = Vec::new();
            stream.read_to_end(&mut late).await.unwrap();
            late
        },
    )
    .await;
    let proxy = Proxy::start(&config(addr, ""));
    let mut client = TcpStream::connect(proxy.addr("web")).await.unwrap();
    client
        .write_all(b"GET /ws HTTP/1.1\r\nhost: a\r\nconnection: upgrade\r\nupgrade: websocket\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n")
        .await
        .unwrap();
    let mut received = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut received))
        .await
        .expect("the upstream's end of stream reached the client")
        .unwrap();
    let received = String::from_utf8(received).unwrap();
    assert!(received.starts_with("HTTP/1.1 101"), "{received}");
    assert!(received.ends_with("\r\n\r\nbye"), "{received:?}");
    client.write_all(b"still here").await.unwrap();
    client.shutdown().await.unwrap();
    let late = tokio::time::timeout(Duration::from_secs(5), heard_rx)
        .await
        .expect("the upstream saw the client's end of stream")
        .unwrap();
    assert_eq!(late, b"still here");
}

#[tokio::test]
async fn expect_100_continue_is_answered_and_the_body_arrives() {
    let b = Backend::start("app").await;
    let proxy = Proxy::start(&format!(
        "{}listeners:\n  - name: web\n    listen: 127.0.0.1:0\n    rules:\n      - path: /*\n        upstreams: [app]\n",
        upstreams_yaml(&[&b])
    ));
    let mut client = TcpStream::connect(proxy.addr("web")).await.unwrap();
    client.write_all(b"POST /upload HTTP/1.1\r\nhost: a\r\nexpect: 100-continue\r\ncontent-length: 5\r\n\r\n").await.unwrap();
    let mut interim = [0u8; 25];
    client.read_exact(&mut interim).await.unwrap();
    assert!(
        interim.starts_with(b"HTTP/1.1 100 Continue\r\n"),
        "{:?}",
        String::from_utf8_lossy(&interim)
    );
    client.write_all(b"hello").await.unwrap();
    let response = read_response(&mut client).await;
    assert_eq!(status_of(&response), 200, "{response}");
    let seen = &b.seen()[0];
    assert_eq!(seen.body_len, 5);
    assert!(
        seen.headers.get("expect").is_none(),
        "Expect is answered by sluice, not forwarded"
    );
    assert_eq!(
        status_of(&exchange(&mut client, b"GET /next HTTP/1.1\r\nhost: a\r\n\r\n").await),
        200,
        "the connection stays in sync"
    );
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped_at_send_timeout() {
    let b = Backend::start("app").await;
    let proxy = Proxy::start(&format!(
        "{}defaults:\n  send_timeout: 300ms\nlisteners:\n  - name: web\n    listen: 127.0.0.1:0\n    rules:\n      - path: /*\n        upstreams: [app]\n",
        upstreams_yaml(&[&b])
    ));
    let client = TcpStream::connect(proxy.addr("web")).await.unwrap();
    client.set_nodelay(true).unwrap();
    let mut client = client;
    client
        .write_all(b"GET /download/268435456 HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let region = &proxy.instance.region;
    let active = || region.listener_total(0, sluice::counters::ListenerCounter::ConnectionsActive);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while active() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "a client that does not read is never dropped"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sent = region.listener_total(0, sluice::counters::ListenerCounter::SentBytes);
    assert!(
        sent < 268_435_456 / 2,
        "sluice kept writing ({sent} bytes) to a client that reads nothing"
    );
}

/// sluice (with `settings`) in front of an upstream that answers `reply`
/// to every request head, and a client that sent `sent` (a head and the
/// start of a longer body) and read the answer.
async fn answered_mid_upload(
    reply: &'static [u8],
    settings: &str,
    sent: &[u8],
) -> (Proxy, TcpStream, String) {
    let proxy = Proxy::start(&config(scripted(reply, false).await, settings));
    let mut client = TcpStream::connect(proxy.addr("web")).await.unwrap();
    client.write_all(sent).await.unwrap();
    let response = read_response(&mut client).await;
    (proxy, client, response)
}

#[tokio::test]
async fn an_early_answer_before_the_upload_ends_never_desyncs_the_client() {
    let mut sent = b"POST /upload HTTP/1.1\r\nhost: a\r\ncontent-length: 200000\r\n\r\n".to_vec();
    sent.extend_from_slice(&[b'x'; 1000]);
    let (_proxy, mut client, response) = answered_mid_upload(
        b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 8\r\n\r\ntoo big!",
        "  body_timeout: 2s\n",
        &sent,
    )
    .await;
    assert_eq!(status_of(&response), 413, "{response}");
    // The upload was cut short, so the connection cannot carry another
    // request: what the client sends next is never answered as one, and
    // the connection ends (at the latest at body_timeout) instead of
    // waiting for the rest of the upload.
    let _ = client
        .write_all(b"GET /after HTTP/1.1\r\nhost: a\r\n\r\n")
        .await;
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut rest)).await;
    assert!(
        ended.is_ok(),
        "the connection stayed open after the early answer"
    );
    let rest = String::from_utf8_lossy(&rest);
    assert!(!rest.contains("HTTP/1.1"), "desynced: {rest:?}");
}

/// Sends a request head declaring `body_len` bytes, then the whole body,
/// before reading anything (as Python's `http.client` does), and returns
/// the response and whether the write failed.
async fn upload_then_read(addr: SocketAddr, body_len: usize) -> (String, Option<std::io::Error>) {
    let mut client = TcpStream::connect(addr).await.unwrap();
    let head = format!("POST /upload HTTP/1.1\r\nhost: a\r\ncontent-length: {body_len}\r\n\r\n");
    client.write_all(head.as_bytes()).await.unwrap();
    let body = vec![b'x'; body_len];
    let failed = tokio::time::timeout(Duration::from_secs(20), client.write_all(&body))
        .await
        .expect("the upload was neither read nor refused")
        .err();
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut response)).await;
    (String::from_utf8_lossy(&response).into_owned(), failed)
}

#[tokio::test]
async fn a_client_that_uploads_before_reading_gets_an_early_answer_not_a_reset() {
    let addr = scripted(
        b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 4\r\n\r\nnope",
        false,
    )
    .await;
    let proxy = Proxy::start(&config(addr, ""));
    // More than the socket buffers on both sides hold, so the upload is
    // still being sent when the answer is complete.
    let (response, failed) = upload_then_read(proxy.addr("web"), 32 << 20).await;
    assert!(failed.is_none(), "the upload was reset: {failed:?}");
    assert_eq!(status_of(&response), 401, "{response}");
    assert!(response.ends_with("\r\n\r\nnope"), "{response:?}");
}

#[tokio::test]
async fn a_413_from_sluice_reaches_a_client_still_uploading() {
    let b = Backend::start("app").await;
    let proxy = Proxy::start(&config(b.addr, "  max_body_size: 1024\n"));
    let (response, failed) = upload_then_read(proxy.addr("web"), 32 << 20).await;
    assert!(failed.is_none(), "the upload was reset: {failed:?}");
    assert_eq!(status_of(&response), 413, "{response}");
    assert!(b.seen().is_empty(), "forwarded: {:?}", b.seen());
}

#[tokio::test]
async fn a_lingering_connection_closes_once_the_client_goes_quiet() {
    let (proxy, client, response) = answered_mid_upload(
        b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 4\r\n\r\nnope",
        "  body_timeout: 300ms\n",
        b"POST /upload HTTP/1.1\r\nhost: a\r\ncontent-length: 1000000\r\n\r\nsome",
    )
    .await;
    assert_eq!(status_of(&response), 401, "{response}");
    // The client neither sends nor closes: the connection lingers for the
    // quiet time (here `body_timeout`), not for the 30 s limit.
    proxy
        .wait_until_no_connection_is_open("the lingering connection stayed open")
        .await;
    drop(client);
}

#[tokio::test]
async fn connect_and_asterisk_targets_are_refused() {
    let b = Backend::start("app").await;
    let proxy = Proxy::start(&format!(
        "{}listeners:\n  - name: web\n    listen: 127.0.0.1:0\n    rules:\n      - path: /*\n        upstreams: [app]\n",
        upstreams_yaml(&[&b])
    ));
    for request in [
        &b"CONNECT example.com:443 HTTP/1.1\r\nhost: example.com:443\r\n\r\n"[..],
        &b"GET * HTTP/1.1\r\nhost: a\r\n\r\n"[..],
    ] {
        let response = raw_exchange(proxy.addr("web"), request, QUIET).await;
        assert_eq!(
            status_of(&response),
            400,
            "{:?} -> {response}",
            String::from_utf8_lossy(request)
        );
    }
    assert!(b.seen().is_empty());
}

#[tokio::test]
async fn connections_beyond_max_connections_are_refused_while_the_others_keep_working() {
    let b = Backend::start("app").await;
    let proxy = Proxy::start(&format!(
        "{}defaults:\n  max_connections: 2\nlisteners:\n  - name: web\n    listen: 127.0.0.1:0\n    rules:\n      - path: /*\n        upstreams: [app]\n",
        upstreams_yaml(&[&b])
    ));
    let mut first = TcpStream::connect(proxy.addr("web")).await.unwrap();
    let mut second = TcpStream::connect(proxy.addr("web")).await.unwrap();
    for client in [&mut first, &mut second] {
        client
            .write_all(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(status_of(&read_response(client).await), 200);
    }
    let mut third = TcpStream::connect(proxy.addr("web")).await.unwrap();
    let _ = third.write_all(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n").await;
    let refused = common::read_until_quiet(&mut third, QUIET).await;
    assert!(
        refused.is_empty(),
        "the third connection was served: {refused}"
    );
    assert_eq!(
        status_of(&exchange(&mut first, b"GET /again HTTP/1.1\r\nhost: a\r\n\r\n").await),
        200,
        "open connections keep working"
    );
    let refused_count = proxy
        .instance
        .region
        .listener_total(0, sluice::counters::ListenerCounter::ConnectionsRefused);
    assert_eq!(refused_count, 1);
}

#[tokio::test]
async fn out_of_descriptors_the_worker_backs_off_and_recovers() {
    use std::os::unix::process::CommandExt;
    let b = Backend::start("app").await;
    let state = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.yaml");
    std::fs::write(
        &path,
        format!("workers: 1\n{}listeners:\n  - name: web\n    listen: 127.0.0.1:0\n    rules:\n      - path: /*\n        upstreams: [app]\n", upstreams_yaml(&[&b])),
    )
    .unwrap();
    let mut command = common::processes::command(state.path());
    command
        .args(["run", "-c"])
        .arg(&path)
        .stderr(std::process::Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between
    // fork and exec.
    unsafe {
        command.pre_exec(|| {
            let limit = rustix::process::Rlimit {
                current: Some(64),
                maximum: Some(64),
            };
            rustix::process::setrlimit(rustix::process::Resource::Nofile, limit)
                .map_err(std::io::Error::from)
        });
    }
    let mut child = command.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    let line = lines
        .by_ref()
        .map(Result::unwrap)
        .find(|l| l.contains("sluice ready"))
        .expect("ready line");
    let (log, backing_off) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if line.contains("accept failed; backing off") {
                let _ = log.send(());
            }
        }
    });
    let addr: SocketAddr = line
        .split("web=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .trim_matches('"')
        .parse()
        .unwrap();
    // Hold far more connections than the worker has descriptors for.
    let mut held = Vec::new();
    for _ in 0..150 {
        if let Ok(stream) = TcpStream::connect(addr).await {
            held.push(stream);
        }
    }
    let ran_out =
        tokio::task::spawn_blocking(move || backing_off.recv_timeout(Duration::from_secs(10)))
            .await
            .unwrap();
    assert!(
        ran_out.is_ok(),
        "the worker never ran out of descriptors, so nothing was tested"
    );
    drop(held);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let response = raw_exchange(
            addr,
            b"GET / HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
            Duration::from_secs(2),
        )
        .await;
        if response.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never recovered after running out of descriptors"
        );
    }
    let _ = child.kill();
    let _ = child.wait();
    for pid in std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
    {
        let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if cmdline.contains(&format!("--supervisor\0{}", child.id())) {
            common::processes::signal(pid, rustix::process::Signal::KILL);
        }
    }
}

#[tokio::test]
async fn a_stalled_upstream_body_is_cut_at_idle_timeout() {
    let addr = scripted(
        b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\nthe start of it",
        false,
    )
    .await;
    let proxy = Proxy::start(&config(addr, "  idle_timeout: 400ms\n"));
    let started = std::time::Instant::now();
    let response = raw_exchange(
        proxy.addr("web"),
        b"GET / HTTP/1.1\r\nhost: a\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(status_of(&response), 200);
    assert!(response.ends_with("the start of it"), "{response:?}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(350) && took < Duration::from_secs(4),
        "cut after {took:?}"
    );
}

/// Splits `stream` at `cuts` and writes the pieces 50 ms apart, so sluice
/// reads them separately; reads until sluice closes (panics after 10 s of
/// silence) and returns what came back.
async fn pipelined(addr: SocketAddr, stream: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut client = TcpStream::connect(addr).await.unwrap();
    client.set_nodelay(true).unwrap();
    let mut from = 0;
    for &to in cuts.iter().chain([&stream.len()]) {
        // Writes after sluice closed may fail; what came back decides.
        let _ = client.write_all(&stream[from..to]).await;
        from = to;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), client.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return out,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "sluice kept the connection open after {:?}",
                String::from_utf8_lossy(&out)
            ),
        }
    }
}

/// The statuses and bodies of the `Content-Length`-framed responses in
/// `bytes`, in order.
fn responses(mut bytes: &[u8]) -> Vec<(u16, String)> {
    let mut out = Vec::new();
    while let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().unwrap());
        let body = &bytes[end + 4..(end + 4 + length).min(bytes.len())];
        out.push((status_of(&head), String::from_utf8_lossy(body).into_owned()));
        bytes = &bytes[(end + 4 + length).min(bytes.len())..];
    }
    assert!(bytes.is_empty(), "trailing bytes: {bytes:?}");
    out
}

#[tokio::test]
async fn every_pipelined_head_gets_the_framing_check() {
    const GOOD: &str = "GET /good HTTP/1.1\r\nhost: a\r\n\r\n";
    const TE_AND_CL: &str = "POST /bad HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    const TWO_LENGTHS: &str =
        "POST /bad HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\ncontent-length: 3\r\n\r\nabc";
    const AFTER: &str = "GET /after HTTP/1.1\r\nhost: a\r\n\r\n";
    let chunked_upload = "POST /chunked HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\nb\r\n wide world\r\n0\r\nx-trailer: t\r\n\r\n";
    let sized_upload = "POST /sized HTTP/1.1\r\nhost: a\r\ncontent-length: 11\r\n\r\nhello world";
    // A body that looks like a bad head must not be taken for one.
    let tricky_body = "content-length: 1\r\ntransfer-encoding: chunked\r\n\r\n";
    let tricky_upload = format!(
        "POST /tricky HTTP/1.1\r\nhost: a\r\ncontent-length: {}\r\n\r\n{tricky_body}",
        tricky_body.len()
    );

    struct Case {
        name: &'static str,
        stream: String,
        cuts: Vec<Vec<usize>>,
        served: Vec<(&'static str, usize)>,
    }
    let good_then_bad = format!("{GOOD}{TE_AND_CL}{AFTER}");
    let in_bad_name = GOOD.len() + TE_AND_CL.find("Encoding").unwrap();
    let cases = [
        Case {
            name: "good then TE+CL in one write",
            stream: good_then_bad.clone(),
            cuts: vec![vec![]],
            served: vec![("/good", 0)],
        },
        Case {
            name: "good then TE+CL split in odd places",
            stream: good_then_bad.clone(),
            cuts: vec![
                vec![7],
                vec![GOOD.len() - 1],
                vec![GOOD.len() + 3, in_bad_name],
                vec![
                    10,
                    GOOD.len() + 30,
                    in_bad_name + 2,
                    good_then_bad.len() - 3,
                ],
            ],
            served: vec![("/good", 0)],
        },
        Case {
            name: "two goods then duplicate Content-Length",
            stream: format!("{GOOD}{GOOD}{TWO_LENGTHS}{AFTER}"),
            cuts: vec![vec![], vec![GOOD.len() + 5, 2 * GOOD.len() + 40]],
            served: vec![("/good", 0), ("/good", 0)],
        },
        Case {
            name: "chunked body then a bad head",
            stream: format!("{chunked_upload}{TWO_LENGTHS}{AFTER}"),
            cuts: vec![
                vec![],
                vec![70],
                vec![chunked_upload.len() - 4, chunked_upload.len() + 2],
            ],
            served: vec![("/chunked", 16)],
        },
        Case {
            name: "sized body then a bad head",
            stream: format!("{sized_upload}{TE_AND_CL}{AFTER}"),
            cuts: vec![
                vec![],
                vec![sized_upload.len() - 5],
                vec![sized_upload.len() + 1],
            ],
            served: vec![("/sized", 11)],
        },
        Case {
            name: "a body that looks like a bad head, then good heads",
            stream: format!("{tricky_upload}{GOOD}{AFTER}"),
            cuts: vec![vec![], vec![tricky_upload.len() - 10]],
            served: vec![("/tricky", tricky_body.len()), ("/good", 0), ("/after", 0)],
        },
    ];
    for case in cases {
        for cuts in &case.cuts {
            let b = Backend::start("app").await;
            let proxy = Proxy::start(&format!(
                "{}listeners:\n  - name: web\n    listen: 127.0.0.1:0\n    rules:\n      - path: /*\n        upstreams: [app]\n",
                upstreams_yaml(&[&b])
            ));
            let mut stream = case.stream.clone();
            let refused = !case.served.iter().any(|(path, _)| *path == "/after");
            if !refused {
                // A clean stream ends with a request that closes.
                stream.push_str("GET /last HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n");
            }
            let got = responses(&pipelined(proxy.addr("web"), stream.as_bytes(), cuts).await);
            let context = format!("{} cut at {cuts:?}: {got:?}", case.name);
            let mut expected: Vec<u16> = vec![200; case.served.len()];
            expected.push(if refused { 400 } else { 200 });
            assert_eq!(
                got.iter().map(|(status, _)| *status).collect::<Vec<_>>(),
                expected,
                "{context}"
            );
            for ((_, body), (path, _)) in got.iter().zip(&case.served) {
                assert!(body.ends_with(path), "{context}");
            }
            if refused {
                assert!(
                    got.last().unwrap().1.contains("ambiguous message framing"),
                    "{context}"
                );
            }
            let mut seen: Vec<(String, usize)> =
                b.seen().into_iter().map(|s| (s.uri, s.body_len)).collect();
            if !refused {
                assert_eq!(
                    seen.pop().map(|s| s.0),
                    Some("/last".to_owned()),
                    "{context}"
                );
            }
            let expected: Vec<(String, usize)> = case
                .served
                .iter()
                .map(|(p, n)| ((*p).to_owned(), *n))
                .collect();
            assert_eq!(seen, expected, "the backend saw other requests: {context}");
        }
    }
}

#[tokio::test]
async fn a_silent_new_connection_waits_in_the_kernel_until_it_speaks_or_gives_up() {
    let addr = scripted(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", false).await;
    let proxy = Proxy::start(&config(addr, "  idle_timeout: 300ms\n"));
    let accepted = || {
        proxy
            .instance
            .region
            .listener_total(0, ListenerCounter::ConnectionsTotal)
    };
    let mut speaks_late = TcpStream::connect(proxy.addr("web")).await.unwrap();
    let mut never_speaks = TcpStream::connect(proxy.addr("web")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(accepted(), 0, "a connection without bytes was handed over");

    let response = exchange(&mut speaks_late, b"GET / HTTP/1.1\r\nhost: a\r\n\r\n").await;
    assert_eq!(status_of(&response), 200, "{response}");

    let mut byte = [0u8; 1];
    let closed = tokio::time::timeout(Duration::from_secs(10), never_speaks.read(&mut byte)).await;
    assert!(
        matches!(closed, Ok(Ok(0))),
        "a silent connection was not closed: {closed:?}"
    );
    assert_eq!(accepted(), 2);
}
