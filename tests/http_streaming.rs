//! Bodies stream both ways: chunked and sized, large and small, through the
//! proxy with their bytes intact; upgrades become tunnels after a 101.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Backend, Proxy, client, raw_exchange, status_of, upstreams_yaml};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

fn config(b: &Backend) -> String {
    format!(
        "{}listeners:\n  - name: web\n    listen: 127.0.0.1:0\n    mode: http\n    rules:\n      - path: /*\n        upstreams: [{}]\n",
        upstreams_yaml(&[b]),
        b.name
    )
}

#[tokio::test]
async fn chunked_upload_is_echoed_back_byte_for_byte() {
    let b = Backend::start("app").await;
    let proxy = Proxy::start(&config(&b));
    let chunks: Vec<Result<Bytes, std::io::Error>> = (0..64u8)
        .map(|i| Ok(Bytes::from(vec![i; 10_000 + usize::from(i)])))
        .collect();
    let expected: Vec<u8> = chunks
        .iter()
        .flat_map(|c| c.as_ref().unwrap().to_vec())
        .collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let response = client()
        .post(proxy.url("web", "/echo"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.unwrap().to_vec(), expected);
}

#[tokio::test]
async fn raw_chunked_request_is_reframed_for_the_backend() {
    let b = Backend::start("app").await;
    let proxy = Proxy::start(&config(&b));
    let response = raw_exchange(
        proxy.addr("web"),
        b"POST /echo HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(status_of(&response), 200, "{response}");
    assert!(
        response.contains("hello") && response.contains(" world"),
        "{response}"
    );
    let seen = &b.seen()[0];
    assert_eq!(
        seen.headers
            .get("transfer-encoding")
            .map(|v| v.to_str().unwrap()),
        Some("chunked")
    );
}

#[tokio::test]
async fn sized_download_keeps_its_length() {
    let b = Backend::start("app").await;
    let proxy = Proxy::start(&config(&b));
    let response = client()
        .get(proxy.url("web", "/download/5000000"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-length"], "5000000");
    let body = response.bytes().await.unwrap();
    assert_eq!(body.len(), 5_000_000);
    assert!(body.iter().all(|&b| b == b'x'));
}

#[tokio::test]
async fn keep_alive_connections_are_reused_both_sides() {
    let b = Backend::start("app").await;
    let proxy = Proxy::start(&config(&b));
    let http = client();
    for i in 0..20 {
        let text = http
            .get(proxy.url("web", &format!("/n/{i}")))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(text, format!("app GET /n/{i}"));
    }
    let region = &proxy.instance.region;
    assert_eq!(
        region.listener_total(0, sluice::counters::ListenerCounter::ConnectionsTotal),
        1,
        "client kept one connection"
    );
    assert_eq!(
        region.listener_total(0, sluice::counters::ListenerCounter::Responses2xx),
        20
    );
}

#[tokio::test]
async fn websocket_echo_through_the_proxy() {
    let b = Backend::start("app").await;
    let proxy = Proxy::start(&config(&b));
    let (mut ws, response) =
        tokio_tungstenite::connect_async(format!("ws://{}/ws", proxy.addr("web")))
            .await
            .unwrap();
    assert_eq!(response.status(), 101);
    for i in 0..10 {
        ws.send(Message::text(format!("hello {i}"))).await.unwrap();
        let reply = ws.next().await.unwrap().unwrap();
        assert_eq!(reply, Message::text(format!("hello {i}")));
    }
    let big = vec![7u8; 1 << 20];
    ws.send(Message::binary(big.clone())).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::binary(big));
    ws.close(None).await.unwrap();
    while let Some(Ok(_)) = ws.next().await {}
    drop(ws);
    proxy
        .wait_until_no_connection_is_open("the tunnel stayed open after both sides closed")
        .await;
}

#[tokio::test]
async fn an_idle_websocket_closes_at_the_idle_timeout_and_a_busy_one_does_not() {
    let b = Backend::start("app").await;
    let yaml = config(&b).replace("listeners:", "defaults:\n  idle_timeout: 600ms\nlisteners:");
    let proxy = Proxy::start(&yaml);
    let url = format!("ws://{}/ws", proxy.addr("web"));
    let (mut busy, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    // Messages every 200 ms for 1.2 s: never 600 ms without a byte.
    for i in 0..6 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        busy.send(Message::text(format!("tick {i}"))).await.unwrap();
        let reply = busy.next().await.unwrap().unwrap();
        assert_eq!(reply, Message::text(format!("tick {i}")));
    }
    let (mut idle, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(10), idle.next())
        .await
        .expect("the idle tunnel was closed");
    assert!(
        !matches!(ended, Some(Ok(Message::Text(_) | Message::Binary(_)))),
        "{ended:?}"
    );
}

#[tokio::test]
async fn upgrade_refused_by_the_upstream_stays_http() {
    let b = Backend::start("app").await;
    let proxy = Proxy::start(&config(&b));
    let response = raw_exchange(
        proxy.addr("web"),
        b"GET /plain HTTP/1.1\r\nhost: a\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\nGET /after HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(response.matches("HTTP/1.1 200").count(), 2, "{response}");
    let uris: Vec<String> = b.seen().into_iter().map(|s| s.uri).collect();
    assert_eq!(uris, ["/plain", "/after"]);
}
