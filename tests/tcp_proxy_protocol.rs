//! PROXY protocol on TCP listeners: the exact header bytes sent upstream
//! (v1, v2), a header accepted from a balancer in front (its client address
//! is the one passed on and hashed), and malformed headers refused.

mod tcp_support;

use std::collections::HashMap;
use std::net::SocketAddr;

use sluice::tcp::proxy_protocol::{V2_SIGNATURE, encode_v1, encode_v2};
use tcp_support::{Received, Tcp, closed_by_peer, recording_server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `bytes` through sluice and waits for the upstream's `ok` reply;
/// returns the client's own address.
async fn send(tcp: &Tcp, bytes: &[u8]) -> SocketAddr {
    let mut client = TcpStream::connect(tcp.addr()).await.unwrap();
    client.write_all(bytes).await.unwrap();
    let mut reply = [0u8; 2];
    client.read_exact(&mut reply).await.unwrap();
    assert_eq!(&reply, b"ok");
    client.local_addr().unwrap()
}

fn received(log: &Received) -> Vec<Vec<u8>> {
    log.lock().unwrap().clone()
}

/// What the upstream received, once `len` bytes came in all (or after 5 s):
/// it answers every read, so the client can have its reply while the bytes
/// after the PROXY header are still on their way.
async fn received_at_least(log: &Received, len: usize) -> Vec<Vec<u8>> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let got = received(log);
        if got.iter().map(Vec::len).sum::<usize>() >= len || std::time::Instant::now() >= deadline {
            return got;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn v1_header_is_sent_before_the_client_bytes() {
    let (upstream, log) = recording_server(b"ok").await;
    let tcp = Tcp::start(&[upstream], "    proxy_protocol: v1\n", "");
    let client = send(&tcp, b"hello").await;
    let expected = format!(
        "PROXY TCP4 127.0.0.1 127.0.0.1 {} {}\r\nhello",
        client.port(),
        tcp.addr().port()
    );
    let got = received_at_least(&log, expected.len()).await;
    assert_eq!(got, vec![expected.into_bytes()]);
}

#[tokio::test]
async fn v2_header_is_sent_before_the_client_bytes() {
    let (upstream, log) = recording_server(b"ok").await;
    let tcp = Tcp::start(&[upstream], "    proxy_protocol: v2\n", "");
    let client = send(&tcp, b"hello").await;
    let mut expected = V2_SIGNATURE.to_vec();
    expected.extend_from_slice(&[0x21, 0x11, 0x00, 0x0C, 127, 0, 0, 1, 127, 0, 0, 1]);
    expected.extend_from_slice(&client.port().to_be_bytes());
    expected.extend_from_slice(&tcp.addr().port().to_be_bytes());
    expected.extend_from_slice(b"hello");
    let got = received_at_least(&log, expected.len()).await;
    assert_eq!(got, vec![expected]);
}

#[tokio::test]
async fn an_accepted_header_is_the_client_address_passed_on() {
    let (upstream, log) = recording_server(b"ok").await;
    let tcp = Tcp::start(
        &[upstream],
        "    accept_proxy_protocol: true\n    proxy_protocol: v1\n",
        "",
    );
    let source: SocketAddr = "203.0.113.9:4242".parse().unwrap();
    let destination: SocketAddr = "198.51.100.1:5432".parse().unwrap();
    // v2 in, v1 out; the client's data comes in the same segment.
    send(
        &tcp,
        &[encode_v2(source, destination), b"data".to_vec()].concat(),
    )
    .await;
    // v1 in, split across writes.
    let mut client = TcpStream::connect(tcp.addr()).await.unwrap();
    let header = encode_v1(source, destination);
    client.write_all(&header[..10]).await.unwrap();
    client.flush().await.unwrap();
    client.write_all(&header[10..]).await.unwrap();
    client.write_all(b"more").await.unwrap();
    let mut reply = [0u8; 2];
    client.read_exact(&mut reply).await.unwrap();
    let expected = b"PROXY TCP4 203.0.113.9 198.51.100.1 4242 5432\r\n";
    let got = received_at_least(&log, 2 * expected.len() + b"data".len() + b"more".len()).await;
    assert_eq!(
        got,
        vec![
            [expected.as_slice(), b"data"].concat(),
            [expected.as_slice(), b"more"].concat()
        ]
    );
}

#[tokio::test]
async fn malformed_or_oversized_headers_close_the_client_and_reach_nobody() {
    let (upstream, log) = recording_server(b"ok").await;
    let tcp = Tcp::start(&[upstream], "    accept_proxy_protocol: true\n", "");
    let mut oversized = V2_SIGNATURE.to_vec();
    oversized.extend_from_slice(&[0x21, 0x11, 0xFF, 0xFF]);
    let cases: Vec<Vec<u8>> = vec![
        b"GET / HTTP/1.1\r\nhost: a\r\n\r\n".to_vec(),
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n".to_vec(),
        [b"PROXY UNKNOWN ".as_slice(), &[b'x'; 200]].concat(),
        oversized,
    ];
    for case in cases {
        let mut client = TcpStream::connect(tcp.addr()).await.unwrap();
        client.write_all(&case).await.unwrap();
        assert!(closed_by_peer(&mut client).await, "{case:?} kept open");
    }
    assert!(received(&log).is_empty(), "{:?}", received(&log));
}

#[tokio::test]
async fn a_header_that_never_completes_times_out() {
    let (upstream, log) = recording_server(b"ok").await;
    let tcp = Tcp::start(
        &[upstream],
        "    accept_proxy_protocol: true\n    header_timeout: 300ms\n",
        "",
    );
    let mut client = TcpStream::connect(tcp.addr()).await.unwrap();
    client.write_all(b"PROXY TCP4 1.2.3.4").await.unwrap();
    assert!(closed_by_peer(&mut client).await);
    assert!(received(&log).is_empty());
}

#[tokio::test]
async fn consistent_hash_keys_on_the_accepted_client_address() {
    let (a, log_a) = recording_server(b"ok").await;
    let (b, log_b) = recording_server(b"ok").await;
    let tcp = Tcp::start(
        &[a, b],
        "    accept_proxy_protocol: true\n    strategy: consistent-hash\n    hash_key: client-ip\n",
        "",
    );
    let destination: SocketAddr = "198.51.100.1:5432".parse().unwrap();
    let mut placed = HashMap::new();
    for round in 0..2u16 {
        for host in 1..=20u8 {
            let source = SocketAddr::from(([203, 0, 113, host], 1000 + round));
            let tag = format!("{host}");
            send(
                &tcp,
                &[encode_v1(source, destination), tag.into_bytes()].concat(),
            )
            .await;
        }
    }
    for (upstream, log) in [("a", &log_a), ("b", &log_b)] {
        for bytes in received(log) {
            let text = String::from_utf8(bytes).unwrap();
            let host = text.rsplit('\n').next().unwrap().to_owned();
            let first = placed.entry(host.clone()).or_insert(upstream);
            assert_eq!(*first, upstream, "client {host} moved");
        }
    }
    assert_eq!(placed.len(), 20);
    assert!(placed.values().any(|u| *u == "a") && placed.values().any(|u| *u == "b"));
}
