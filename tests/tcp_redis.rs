//! A real Redis behind a TCP listener: `redis-server` on a free port, and
//! the `redis` crate's client talking to it through sluice: PING, SET/GET,
//! a 1,000-command pipeline and a 1 MiB value.

mod tcp_support;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sluice::counters::UpstreamCounter;
use tcp_support::{Tcp, missing};

/// A throwaway `redis-server` (no persistence), killed on drop even when
/// the test fails.
struct RedisServer {
    child: Child,
    addr: SocketAddr,
}

impl RedisServer {
    /// Starts one on a free port and waits until it answers PING; `None`
    /// when `redis-server` is not installed.
    async fn start() -> Option<RedisServer> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = match Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(Stdio::null())
            .spawn()
        {
            Ok(child) => child,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return None,
            Err(error) => panic!("cannot run redis-server: {error}"),
        };
        let server = RedisServer {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let client = redis::Client::open(format!("redis://{}/", server.addr)).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut con) = client.get_multiplexed_async_connection().await
                && redis::cmd("PING")
                    .query_async::<String>(&mut con)
                    .await
                    .is_ok()
            {
                return Some(server);
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "redis-server not ready"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn redis_through_sluice() {
    let Some(server) = RedisServer::start().await else {
        return missing("redis-server");
    };
    let tcp = Tcp::start(&[server.addr], "    strategy: least-connections\n", "");
    let client = redis::Client::open(format!("redis://{}/", tcp.addr())).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();

    let pong: String = redis::cmd("PING").query_async(&mut con).await.unwrap();
    assert_eq!(pong, "PONG");

    let () = redis::cmd("SET")
        .arg("greeting")
        .arg("hello through sluice")
        .query_async(&mut con)
        .await
        .unwrap();
    let value: String = redis::cmd("GET")
        .arg("greeting")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(value, "hello through sluice");

    let mut pipe = redis::pipe();
    for i in 0..1000 {
        pipe.cmd("INCRBY").arg("counter").arg(i);
    }
    let sums: Vec<i64> = pipe.query_async(&mut con).await.unwrap();
    assert_eq!(sums.len(), 1000);
    assert_eq!(sums[999], (0..1000).sum::<i64>());
    assert!(
        sums.windows(2).all(|w| w[0] <= w[1]),
        "replies out of order"
    );

    let big: Vec<u8> = (0..1024 * 1024).map(|i: u32| (i % 251) as u8).collect();
    let () = redis::cmd("SET")
        .arg("big")
        .arg(&big)
        .query_async(&mut con)
        .await
        .unwrap();
    let back: Vec<u8> = redis::cmd("GET")
        .arg("big")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(back.len(), big.len());
    assert!(back == big, "1 MiB value changed on the way");

    assert_eq!(tcp.upstream(0, UpstreamCounter::Requests), 1);
    assert!(tcp.upstream(0, UpstreamCounter::SentBytes) > 1024 * 1024);
    assert!(tcp.upstream(0, UpstreamCounter::ReceivedBytes) > 1024 * 1024);
}
