use std::cell::RefCell;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

/// A connected pair: (the side a test drives, the side the pump owns).
async fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let outer = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (inner, _) = listener.accept().await.unwrap();
    (outer, inner)
}

/// Bulk then small exchanges then half-closes, in every mode: the adaptive
/// pump switches to splice for the bulk part and back for the small one,
/// and no byte is lost or reordered on either switch.
#[tokio::test]
async fn every_mode_moves_bulk_then_small_exchanges_exactly() {
    for mode in [CopyMode::Buffered, CopyMode::Splice, CopyMode::Adaptive] {
        let (mut client, mut client_inner) = pair().await;
        let (mut upstream, mut upstream_inner) = pair().await;
        let counted = RefCell::new(Totals::default());
        let on_bytes = |direction, n| {
            let mut counted = counted.borrow_mut();
            match direction {
                Direction::ToUpstream => counted.to_upstream += n,
                Direction::ToClient => counted.to_client += n,
            }
        };
        let pump = bidirectional(
            &mut client_inner,
            &mut upstream_inner,
            Duration::from_secs(10),
            mode,
            &on_bytes,
        );
        let bulk: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i % 253) as u8).collect();
        let drive = async {
            client.write_all(&bulk).await.unwrap();
            let mut got = vec![0u8; bulk.len()];
            upstream.read_exact(&mut got).await.unwrap();
            assert!(got == bulk, "{mode:?}: bulk changed");
            for i in 0..50u8 {
                client.write_all(&[i; 10]).await.unwrap();
                let mut request = [0u8; 10];
                upstream.read_exact(&mut request).await.unwrap();
                assert_eq!(request, [i; 10]);
                upstream.write_all(&[i; 20]).await.unwrap();
                let mut reply = [0u8; 20];
                client.read_exact(&mut reply).await.unwrap();
                assert_eq!(reply, [i; 20]);
            }
            client.shutdown().await.unwrap();
            let mut rest = Vec::new();
            upstream.read_to_end(&mut rest).await.unwrap();
            assert!(rest.is_empty());
            upstream.write_all(b"last words").await.unwrap();
            upstream.shutdown().await.unwrap();
            let mut last = Vec::new();
            client.read_to_end(&mut last).await.unwrap();
            assert_eq!(last, b"last words");
        };
        let (totals, ()) = tokio::join!(pump, drive);
        let totals = totals.unwrap();
        let expected = Totals {
            to_upstream: bulk.len() as u64 + 500,
            to_client: 1000 + 10,
        };
        assert_eq!(totals, expected, "{mode:?}");
        assert_eq!(*counted.borrow(), expected, "{mode:?}: live counts");
    }
}

#[tokio::test]
async fn nothing_moving_for_the_idle_timeout_ends_the_tunnel() {
    let (_client, mut client_inner) = pair().await;
    let (_upstream, mut upstream_inner) = pair().await;
    let started = Instant::now();
    let result = bidirectional(
        &mut client_inner,
        &mut upstream_inner,
        Duration::from_millis(100),
        CopyMode::Adaptive,
        &|_, _| {},
    )
    .await;
    assert!(matches!(result, Err(CopyError::Idle(_))), "{result:?}");
    assert!(started.elapsed() >= Duration::from_millis(100));
}

/// Write progress counts as activity: a client that reads a big reply
/// more slowly than the idle timeout's worth keeps the tunnel open while
/// the bytes drain to it, although nothing is read from the upstream for
/// several idle timeouts (the pump holds a full pipe and waits for room).
/// Small socket buffers on the client side make the pump's writes the
/// bottleneck.
#[tokio::test]
async fn a_slow_reader_draining_a_reply_keeps_the_tunnel_open() {
    // Buffered: the shared buffer's unwritten rest is kept and written as
    // room comes; Adaptive: the same through splice.
    for mode in [CopyMode::Buffered, CopyMode::Adaptive] {
        slow_reader_drains_the_whole_reply(mode).await;
    }
}

async fn slow_reader_drains_the_whole_reply(mode: CopyMode) {
    const REPLY: usize = 384 * 1024;
    const STEP: usize = 2 * 1024;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut client = socket
        .connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (mut client_inner, _) = listener.accept().await.unwrap();
    rustix::net::sockopt::set_socket_send_buffer_size(&client_inner, 4096).unwrap();
    let (mut upstream, mut upstream_inner) = pair().await;
    let idle = Duration::from_millis(300);
    let pump = bidirectional(
        &mut client_inner,
        &mut upstream_inner,
        idle,
        mode,
        &|_, _| {},
    );
    tokio::pin!(pump);
    let reply: Vec<u8> = (0..REPLY).map(|i| (i % 251) as u8).collect();
    let started = Instant::now();
    let drive = async {
        let (_, got) = tokio::join!(upstream.write_all(&reply), async {
            let mut got = Vec::with_capacity(REPLY);
            let mut step = vec![0u8; STEP];
            while got.len() < REPLY {
                let n = client.read(&mut step).await.unwrap();
                assert!(n > 0, "end of stream after {} bytes", got.len());
                got.extend_from_slice(&step[..n]);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            got
        });
        got
    };
    let got = tokio::select! {
        result = &mut pump => panic!("the tunnel ended while its reply drained: {result:?}"),
        got = drive => got,
    };
    assert!(got == reply, "{mode:?}: the reply changed");
    assert!(
        started.elapsed() > idle * 3,
        "the reader was not slow enough to test anything: {:?}",
        started.elapsed()
    );
    client.shutdown().await.unwrap();
    upstream.shutdown().await.unwrap();
    let totals = pump.await.unwrap();
    assert_eq!(totals.to_client, REPLY as u64);
}
