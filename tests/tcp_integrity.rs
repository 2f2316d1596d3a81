//! TCP passthrough moves bytes faithfully: 50 MiB arrive with the same
//! SHA-256, half-closes cross the tunnel both ways, a dead upstream is
//! retried on a live one, idle tunnels close, `max_connections` refuses
//! the excess while open tunnels keep working, and a server that speaks
//! first is heard at once.

mod tcp_support;

use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use sluice::counters::{ListenerCounter, UpstreamCounter};
use tcp_support::sockets::{blackhole, echo_server, refused_address};
use tcp_support::{Tcp, closed_by_peer, read_to_end, recording_server, round_trip};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Deterministic pseudo-random bytes (xorshift64*), fast even unoptimised.
fn random_chunk(state: &mut u64, out: &mut [u8]) {
    for word in out.chunks_mut(8) {
        *state ^= *state >> 12;
        *state ^= *state << 25;
        *state ^= *state >> 27;
        let bytes = state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
        word.copy_from_slice(&bytes[..word.len()]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_mib_of_random_bytes_arrive_with_the_same_sha256() {
    const TOTAL: usize = 50 * 1024 * 1024;
    let echo = echo_server().await;
    let tcp = Tcp::start(&[echo], "", "");
    let stream = TcpStream::connect(tcp.addr()).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let sender = tokio::spawn(async move {
        let mut hash = Sha256::new();
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut chunk = vec![0u8; 256 * 1024];
        for _ in 0..TOTAL / chunk.len() {
            random_chunk(&mut state, &mut chunk);
            hash.update(&chunk);
            writer.write_all(&chunk).await.unwrap();
        }
        writer.shutdown().await.unwrap();
        hash.finalize()
    });
    let mut hash = Sha256::new();
    let mut received = 0usize;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(30), reader.read(&mut buf))
            .await
            .expect("stalled")
            .unwrap();
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        received += n;
    }
    assert_eq!(received, TOTAL);
    assert_eq!(hash.finalize(), sender.await.unwrap());
    let total = TOTAL as u64;
    tcp.wait_for("byte counters", |t| {
        t.listener(ListenerCounter::ReceivedBytes) == total
            && t.listener(ListenerCounter::SentBytes) == total
            && t.upstream(0, UpstreamCounter::SentBytes) == total
            && t.upstream(0, UpstreamCounter::ReceivedBytes) == total
    })
    .await;
    tcp.wait_for("tunnel closed", |t| {
        t.listener(ListenerCounter::ConnectionsActive) == 0
            && t.upstream(0, UpstreamCounter::Active) == 0
    })
    .await;
}

#[tokio::test]
async fn a_client_half_close_still_gets_the_whole_reply() {
    // The upstream answers only after end of request, like `nc -q`.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        stream.read_to_end(&mut request).await.unwrap();
        let reply = vec![b'r'; 1024 * 1024];
        stream
            .write_all(format!("{} bytes\n", request.len()).as_bytes())
            .await
            .unwrap();
        stream.write_all(&reply).await.unwrap();
    });
    let tcp = Tcp::start(&[addr], "", "");
    let mut client = TcpStream::connect(tcp.addr()).await.unwrap();
    client.write_all(b"the whole request").await.unwrap();
    client.shutdown().await.unwrap();
    let reply = read_to_end(&mut client).await;
    assert!(reply.starts_with(b"17 bytes\n"), "{:?}", &reply[..20]);
    assert_eq!(reply.len(), 9 + 1024 * 1024);
}

#[tokio::test]
async fn an_upstream_half_close_still_gets_the_rest_of_the_request() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let upstream = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        stream.write_all(b"greeting").await.unwrap();
        stream.shutdown().await.unwrap();
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).await.unwrap();
        rest
    });
    let tcp = Tcp::start(&[addr], "", "");
    let mut client = TcpStream::connect(tcp.addr()).await.unwrap();
    assert_eq!(read_to_end(&mut client).await, b"greeting");
    client
        .write_all(b"sent after the upstream's end")
        .await
        .unwrap();
    client.shutdown().await.unwrap();
    let rest = tokio::time::timeout(Duration::from_secs(10), upstream)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rest, b"sent after the upstream's end");
}

#[tokio::test]
async fn a_dead_upstream_is_retried_on_a_live_one() {
    let echo = echo_server().await;
    let tcp = Tcp::start(
        &[refused_address(), echo],
        "    strategy: round-robin\n",
        "  retries: 1\n",
    );
    for i in 0..6u8 {
        let mut client = TcpStream::connect(tcp.addr()).await.unwrap();
        assert_eq!(round_trip(&mut client, &[i; 100]).await, [i; 100]);
    }
    assert!(tcp.upstream(0, UpstreamCounter::ConnectErrors) >= 1);
    assert_eq!(tcp.upstream(1, UpstreamCounter::Requests), 6);
}

#[tokio::test]
async fn with_no_upstream_left_the_client_is_closed_at_once() {
    let tcp = Tcp::start(
        &[refused_address(), refused_address()],
        "",
        "  retries: 5\n",
    );
    let mut client = TcpStream::connect(tcp.addr()).await.unwrap();
    let started = Instant::now();
    assert!(closed_by_peer(&mut client).await);
    assert!(started.elapsed() < Duration::from_secs(2));
    // Two upstreams: the pool has nothing untried after two attempts.
    assert_eq!(
        tcp.upstream(0, UpstreamCounter::ConnectErrors)
            + tcp.upstream(1, UpstreamCounter::ConnectErrors),
        2
    );
}

#[tokio::test]
async fn an_idle_tunnel_is_closed_and_a_busy_one_is_not() {
    let echo = echo_server().await;
    let tcp = Tcp::start(&[echo], "    idle_timeout: 400ms\n", "");
    let mut busy = TcpStream::connect(tcp.addr()).await.unwrap();
    let mut idle = TcpStream::connect(tcp.addr()).await.unwrap();
    assert_eq!(round_trip(&mut idle, b"once").await, b"once");
    let started = Instant::now();
    // Keep the busy tunnel moving past the idle timeout of the other one.
    while started.elapsed() < Duration::from_millis(800) {
        assert_eq!(round_trip(&mut busy, b"tick").await, b"tick");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(closed_by_peer(&mut idle).await, "idle tunnel still open");
    assert_eq!(round_trip(&mut busy, b"still here").await, b"still here");
}

#[tokio::test]
async fn max_connections_refuses_the_excess_and_open_tunnels_keep_working() {
    let echo = echo_server().await;
    let tcp = Tcp::start(&[echo], "    max_connections: 2\n", "");
    let mut first = TcpStream::connect(tcp.addr()).await.unwrap();
    let mut second = TcpStream::connect(tcp.addr()).await.unwrap();
    assert_eq!(round_trip(&mut first, b"1").await, b"1");
    assert_eq!(round_trip(&mut second, b"2").await, b"2");
    let mut third = TcpStream::connect(tcp.addr()).await.unwrap();
    assert!(closed_by_peer(&mut third).await, "third connection served");
    assert_eq!(tcp.listener(ListenerCounter::ConnectionsRefused), 1);
    assert_eq!(round_trip(&mut first, b"again").await, b"again");
    assert_eq!(round_trip(&mut second, b"again").await, b"again");
    drop(first);
    tcp.wait_for("a slot freed", |t| {
        t.listener(ListenerCounter::ConnectionsActive) == 1
    })
    .await;
    let mut fourth = TcpStream::connect(tcp.addr()).await.unwrap();
    assert_eq!(round_trip(&mut fourth, b"4").await, b"4");
}

#[tokio::test]
async fn least_connections_sees_open_tunnels() {
    let (a, _) = recording_server(b"").await;
    let (b, _) = recording_server(b"").await;
    let tcp = Tcp::start(&[a, b], "    strategy: least-connections\n", "");
    let mut open = Vec::new();
    for _ in 0..6 {
        open.push(TcpStream::connect(tcp.addr()).await.unwrap());
        let n = open.len() as u64;
        tcp.wait_for("tunnel counted", |t| {
            t.upstream(0, UpstreamCounter::Active) + t.upstream(1, UpstreamCounter::Active) == n
        })
        .await;
    }
    assert_eq!(tcp.upstream(0, UpstreamCounter::Active), 3);
    assert_eq!(tcp.upstream(1, UpstreamCounter::Active), 3);
}

#[tokio::test]
async fn stopping_sluice_ends_open_tunnels_and_accepts_no_more() {
    let echo = echo_server().await;
    let tcp = Tcp::start_with("drain_timeout: 1s\n", &[echo], "", "");
    let addr = tcp.addr();
    let mut open = TcpStream::connect(addr).await.unwrap();
    assert_eq!(round_trip(&mut open, b"before").await, b"before");
    let started = Instant::now();
    tokio::task::spawn_blocking(move || tcp.stop())
        .await
        .unwrap();
    assert!(
        closed_by_peer(&mut open).await,
        "tunnel outlived the worker"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(TcpStream::connect(addr).await.is_err(), "still accepting");
}

#[tokio::test]
async fn a_connect_that_hangs_is_cut_at_connect_timeout_and_retried() {
    let echo = echo_server().await;
    let (hole, _fillers, _listener) = blackhole();
    let tcp = Tcp::start(
        &[hole, echo],
        "",
        "  connect_timeout: 300ms\n  retries: 1\n",
    );
    let mut slowest = Duration::ZERO;
    for i in 0..4u8 {
        let started = Instant::now();
        let mut client = TcpStream::connect(tcp.addr()).await.unwrap();
        assert_eq!(round_trip(&mut client, &[i; 10]).await, [i; 10]);
        slowest = slowest.max(started.elapsed());
    }
    assert!(tcp.upstream(0, UpstreamCounter::ConnectErrors) >= 1);
    assert!(slowest >= Duration::from_millis(300), "{slowest:?}");
    assert!(slowest < Duration::from_secs(3), "{slowest:?}");
}

#[tokio::test]
async fn a_server_that_speaks_first_is_heard_before_the_client_sends() {
    let greeter = tcp_support::sockets::greeting_server().await;
    let tcp = Tcp::start(&[greeter], "", "");
    let mut client = TcpStream::connect(tcp.addr()).await.unwrap();
    let mut greeting = [0u8; 11];
    // Well under the second a deferred accept would hold the connection.
    let heard =
        tokio::time::timeout(Duration::from_millis(900), client.read_exact(&mut greeting)).await;
    assert!(
        matches!(heard, Ok(Ok(_))),
        "no greeting while the client was silent: {heard:?}"
    );
    assert_eq!(&greeting, b"220 ready\r\n");
}

#[tokio::test]
async fn a_tunnel_counts_as_active_on_its_upstream_while_it_connects() {
    let (hole, _fillers, _listener) = blackhole();
    let tcp = Tcp::start(&[hole], "", "  connect_timeout: 2s\n  retries: 0\n");
    let mut client = TcpStream::connect(tcp.addr()).await.unwrap();
    tcp.wait_for("a connecting tunnel counted as active", |t| {
        t.upstream(0, UpstreamCounter::Active) == 1
    })
    .await;
    assert!(closed_by_peer(&mut client).await, "no upstream, no tunnel");
    tcp.wait_for("the failed connect no longer counted", |t| {
        t.upstream(0, UpstreamCounter::Active) == 0
    })
    .await;
    assert_eq!(tcp.upstream(0, UpstreamCounter::ConnectErrors), 1);
}
