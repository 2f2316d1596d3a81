//! Passive health on TCP listeners (SPEC §5): an upstream that resets
//! tunnels before answering a byte counts toward `fall` and is marked down
//! before its next active check; one that answers and then resets does not.

mod tcp_support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sluice::counters::UpstreamCounter;
use tcp_support::sockets::{echo_server, resetting_server};
use tcp_support::{Tcp, closed_by_peer, round_trip};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `flaky` (actively checked over TCP, once an hour, `fall: 2`) and a
/// live echo upstream behind round-robin.
fn start(flaky: SocketAddr, live: SocketAddr) -> Tcp {
    Tcp::from_yaml(&format!(
        "upstreams:\n\
         \x20 - id: flaky\n    address: {flaky}\n\
         \x20   health_check: {{ kind: tcp, interval: 1h, timeout: 1s, rise: 1, fall: 2 }}\n\
         \x20 - id: live\n    address: {live}\n    health_check: {{ kind: none }}\n\
         listeners:\n  - name: db\n    listen: 127.0.0.1:0\n    mode: tcp\n\
         \x20   upstreams: [flaky, live]\n"
    ))
}

/// One tunnel: send `ping` and half-close, read whatever comes back until
/// the close.
async fn one_tunnel(tcp: &Tcp) -> Vec<u8> {
    let mut client = TcpStream::connect(tcp.addr()).await.unwrap();
    client.write_all(b"ping").await.unwrap();
    client.shutdown().await.unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut got)).await;
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resets_before_any_reply_mark_the_upstream_down_before_its_next_probe() {
    let tcp = start(resetting_server(b"").await, echo_server().await);
    assert!(
        tcp.instance.region.is_up(0),
        "the tcp check passes: the port accepts"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while tcp.instance.region.is_up(0) {
        assert!(Instant::now() < deadline, "resets never marked it down");
        one_tunnel(&tcp).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(tcp.upstream(0, UpstreamCounter::Resets) >= 2);
    let to_live = tcp.upstream(1, UpstreamCounter::Requests);
    for _ in 0..4 {
        let mut client = TcpStream::connect(tcp.addr()).await.unwrap();
        assert_eq!(round_trip(&mut client, b"hello").await, b"hello");
    }
    assert_eq!(
        tcp.upstream(1, UpstreamCounter::Requests),
        to_live + 4,
        "a down upstream gets no tunnels"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_after_the_upstream_answered_is_not_a_failure() {
    let tcp = start(resetting_server(b"answer").await, echo_server().await);
    let mut answered = 0;
    for _ in 0..6 {
        if one_tunnel(&tcp).await.starts_with(b"answer") {
            answered += 1;
        }
    }
    assert_eq!(answered, 3, "round-robin sent every other tunnel there");
    // The passive detector polls every 50 ms: give it a few rounds.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(tcp.upstream(0, UpstreamCounter::Resets), 0);
    assert!(tcp.instance.region.is_up(0));
}

#[tokio::test]
async fn a_client_that_resets_is_no_upstream_failure() {
    let tcp = start(echo_server().await, echo_server().await);
    for _ in 0..4 {
        let client = TcpStream::connect(tcp.addr()).await.unwrap();
        client.set_zero_linger().unwrap();
        drop(client);
    }
    let mut client = TcpStream::connect(tcp.addr()).await.unwrap();
    assert_eq!(round_trip(&mut client, b"still").await, b"still");
    client.shutdown().await.unwrap();
    assert!(closed_by_peer(&mut client).await);
    assert_eq!(tcp.upstream(0, UpstreamCounter::Resets), 0);
    assert_eq!(tcp.upstream(1, UpstreamCounter::Resets), 0);
}
