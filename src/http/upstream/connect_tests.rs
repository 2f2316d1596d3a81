//! A hostname's addresses raced by `connect_any`, on real sockets.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use socket2::{Domain, Socket, Type};

use super::{connect_any, connect_staggered};

/// A listener whose accept queue is full, so the kernel drops further
/// SYNs and a connect to it hangs; held (with its fillers) by the caller.
fn blackhole() -> (SocketAddr, Socket, Vec<Socket>) {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    socket.bind(&any.into()).unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let fillers = (0..4)
        .map(|_| {
            let filler = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
            filler.set_nonblocking(true).unwrap();
            let _ = filler.connect(&addr.into());
            filler
        })
        .collect();
    (addr, socket, fillers)
}

/// An address nothing listens on: connects are refused at once.
fn refused() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Far longer than the delay between addresses, far shorter than the
/// kernel's own SYN retries on a silent address (over a minute).
const PATIENCE: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_silent_first_address_does_not_hold_up_the_next() {
    let (hole, _queue, _fillers) = blackhole();
    let live = TcpListener::bind("127.0.0.1:0").unwrap();
    let live_addr = live.local_addr().unwrap();
    let stream = tokio::time::timeout(PATIENCE, connect_any(&[hole, live_addr]))
        .await
        .expect("the live second address was tried")
        .unwrap();
    assert_eq!(stream.peer_addr().unwrap(), live_addr);
}

#[tokio::test]
async fn a_refusing_address_moves_on_to_the_next() {
    let live = TcpListener::bind("127.0.0.1:0").unwrap();
    let live_addr = live.local_addr().unwrap();
    let stream = tokio::time::timeout(PATIENCE, connect_any(&[refused(), live_addr]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stream.peer_addr().unwrap(), live_addr);
}

#[tokio::test]
async fn the_first_address_wins_when_it_answers() {
    let first = TcpListener::bind("127.0.0.1:0").unwrap();
    let second = TcpListener::bind("127.0.0.1:0").unwrap();
    let first_addr = first.local_addr().unwrap();
    let stream = connect_any(&[first_addr, second.local_addr().unwrap()])
        .await
        .unwrap();
    assert_eq!(stream.peer_addr().unwrap(), first_addr);
}

#[tokio::test]
async fn all_refusing_fails_with_the_last_error() {
    let error = tokio::time::timeout(PATIENCE, connect_any(&[refused(), refused()]))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::ConnectionRefused);
}

#[tokio::test]
async fn no_address_fails_clearly() {
    let error = connect_any(&[]).await.unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::NotFound);
}

#[tokio::test]
async fn a_failure_starts_the_next_address_at_once_while_others_are_pending() {
    let (hole, _queue, _fillers) = blackhole();
    let live = TcpListener::bind("127.0.0.1:0").unwrap();
    let live_addr = live.local_addr().unwrap();
    // The refusing address starts after one delay and fails at once, so
    // the live one starts then, not a second delay later.
    let delay = Duration::from_secs(2);
    let connected = tokio::time::timeout(
        delay + delay / 2,
        connect_staggered(&[hole, refused(), live_addr], delay),
    )
    .await
    .expect("the live address started right after the refusal")
    .unwrap();
    assert_eq!(connected.peer_addr().unwrap(), live_addr);
}
