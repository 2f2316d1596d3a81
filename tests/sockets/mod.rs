//! Misbehaving peers the HTTP, TCP and health tests all need: an address
//! that refuses connections, one where connecting hangs, a server that
//! resets them, one that speaks before its client does, and an echo. `common` and `tcp_support` include it; other tests declare
//! it themselves.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// An address that refuses connections (bound, then closed).
pub fn refused_address() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A TCP echo server: writes back what it reads and, at end of stream,
/// half-closes its side once everything was echoed.
pub async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

/// A server that greets each connection with `220 ready\r\n` before its
/// client sends anything (as SMTP and MySQL servers do), then waits.
pub async fn greeting_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = stream.write_all(b"220 ready\r\n").await;
                let _ = stream.read(&mut [0u8; 1]).await;
            });
        }
    });
    addr
}

/// A server that reads once from each connection, writes `reply` (if any),
/// and resets the connection (SO_LINGER 0).
pub async fn resetting_server(reply: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                if !reply.is_empty() {
                    let _ = stream.write_all(reply).await;
                    // Let the reply reach sluice before the reset.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let _ = stream.set_zero_linger();
            });
        }
    });
    addr
}

/// A listener whose accept queue is full: the kernel drops further SYNs, so
/// connecting to it hangs (the test holds both until it ends).
pub fn blackhole() -> (
    std::net::SocketAddr,
    Vec<std::net::TcpStream>,
    socket2::Socket,
) {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    // Fill the queue; later connects hang (non-blocking so this never waits).
    let mut fillers = Vec::new();
    for _ in 0..4 {
        let filler = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        filler.set_nonblocking(true).unwrap();
        let _ = filler.connect(&addr.into());
        fillers.push(filler.into());
    }
    (addr, fillers, socket)
}
