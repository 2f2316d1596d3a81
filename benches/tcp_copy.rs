//! How a TCP tunnel should move bytes: tokio's `copy_bidirectional`
//! against sluice's own pump in its three modes (buffered read/write,
//! `splice(2)` through a pipe, adaptive), on
//! - `bulk`: 1 GiB one way through the tunnel into a sink;
//! - `rr`: 32 persistent connections doing 64-byte request/response round
//!   trips against an echo server (Redis- or PostgreSQL-like traffic);
//! - `churn`: a new connection per 64-byte round trip.
//!
//! Each role (client, tunnel, upstream) runs on its own thread with a
//! current-thread runtime, like a sluice worker. The tunnel thread's CPU
//! time comes from /proc/thread-self/stat.
//!
//! Run: `cargo bench --bench tcp_copy` (release profile). Arguments:
//! `[rounds] [case...]`, e.g. `cargo bench --bench tcp_copy -- 3 bulk rr`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sluice::tcp::copy::{self, CopyMode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

const GIB: u64 = 1024 * 1024 * 1024;
const RR_CONNECTIONS: usize = 32;
const RR_TRIPS: usize = 5_000;
const CHURN_CONNECTIONS: usize = 8;
const CHURN_TRIPS: usize = 1_000;

#[derive(Clone, Copy, Debug)]
enum Pump {
    Tokio,
    Ours(CopyMode),
}

const PUMPS: [Pump; 4] = [
    Pump::Tokio,
    Pump::Ours(CopyMode::Buffered),
    Pump::Ours(CopyMode::Splice),
    Pump::Ours(CopyMode::Adaptive),
];

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// User + system CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    // Fields 14 and 15 of stat(5) (utime, stime), counted from `state` (3).
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let hz = 100; // USER_HZ is 100 on every Linux ABI
    Duration::from_millis(ticks * 1000 / hz)
}

/// Runs `serve` for each connection of a fresh listener on its own thread.
fn server<F, Fut>(serve: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std_listener.local_addr().unwrap();
    std_listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let local = tokio::task::LocalSet::new();
        local.block_on(&runtime(), async move {
            let listener = TcpListener::from_std(std_listener).unwrap();
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                tokio::task::spawn_local(serve(stream));
            }
        });
    });
    addr
}

/// The tunnel under test, on its own thread, until `stop` fires; returns
/// its address and a receiver for its CPU time.
fn tunnel(
    upstream: SocketAddr,
    pump: Pump,
) -> (
    SocketAddr,
    oneshot::Sender<()>,
    std::sync::mpsc::Receiver<Duration>,
) {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std_listener.local_addr().unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let (cpu_tx, cpu_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let start = thread_cpu();
        let local = tokio::task::LocalSet::new();
        local.block_on(&runtime(), async move {
            let listener = TcpListener::from_std(std_listener).unwrap();
            let accept = async {
                while let Ok((mut client, _)) = listener.accept().await {
                    let _ = client.set_nodelay(true);
                    tokio::task::spawn_local(async move {
                        let Ok(mut server) = TcpStream::connect(upstream).await else {
                            return;
                        };
                        let _ = server.set_nodelay(true);
                        match pump {
                            Pump::Tokio => {
                                let _ =
                                    tokio::io::copy_bidirectional(&mut client, &mut server).await;
                            }
                            Pump::Ours(mode) => {
                                let _ = copy::bidirectional(
                                    &mut client,
                                    &mut server,
                                    Duration::from_secs(60),
                                    mode,
                                    &|_, _| {},
                                )
                                .await;
                            }
                        }
                    });
                }
            };
            tokio::select! {
                () = accept => {}
                _ = stopped => {}
            }
        });
        let _ = cpu_tx.send(thread_cpu() - start);
    });
    (addr, stop, cpu_rx)
}

/// A sink that reads to end of stream and answers the byte count.
async fn sink(mut stream: TcpStream) {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n as u64,
        }
    }
    let _ = stream.write_all(&total.to_le_bytes()).await;
}

async fn echo(mut stream: TcpStream) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn bulk(addr: SocketAddr) -> (f64, &'static str) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let chunk = vec![0x5Au8; 256 * 1024];
    let started = Instant::now();
    let mut sent = 0;
    while sent < GIB {
        stream.write_all(&chunk).await.unwrap();
        sent += chunk.len() as u64;
    }
    stream.shutdown().await.unwrap();
    let mut count = [0u8; 8];
    stream.read_exact(&mut count).await.unwrap();
    assert_eq!(u64::from_le_bytes(count), GIB);
    let secs = started.elapsed().as_secs_f64();
    (GIB as f64 / secs / (1024.0 * 1024.0 * 1024.0), "GiB/s")
}

async fn round_trips(stream: &mut TcpStream, trips: usize) {
    let request = [7u8; 64];
    let mut reply = [0u8; 64];
    for _ in 0..trips {
        stream.write_all(&request).await.unwrap();
        stream.read_exact(&mut reply).await.unwrap();
    }
}

async fn request_response(addr: SocketAddr) -> (f64, &'static str) {
    let local = tokio::task::LocalSet::new();
    let started = Instant::now();
    local
        .run_until(async {
            let tasks: Vec<_> = (0..RR_CONNECTIONS)
                .map(|_| {
                    tokio::task::spawn_local(async move {
                        let mut stream = TcpStream::connect(addr).await.unwrap();
                        stream.set_nodelay(true).unwrap();
                        round_trips(&mut stream, RR_TRIPS).await;
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
        })
        .await;
    let ops = (RR_CONNECTIONS * RR_TRIPS) as f64;
    (ops / started.elapsed().as_secs_f64(), "round trips/s")
}

async fn churn(addr: SocketAddr) -> (f64, &'static str) {
    let local = tokio::task::LocalSet::new();
    let started = Instant::now();
    local
        .run_until(async {
            let tasks: Vec<_> = (0..CHURN_CONNECTIONS)
                .map(|_| {
                    tokio::task::spawn_local(async move {
                        for _ in 0..CHURN_TRIPS {
                            let mut stream = TcpStream::connect(addr).await.unwrap();
                            stream.set_nodelay(true).unwrap();
                            round_trips(&mut stream, 1).await;
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
        })
        .await;
    let ops = (CHURN_CONNECTIONS * CHURN_TRIPS) as f64;
    (ops / started.elapsed().as_secs_f64(), "connections/s")
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let rounds: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(3);
    let mut cases: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| a.parse::<usize>().is_err())
        .collect();
    if cases.is_empty() {
        cases = vec!["bulk", "rr", "churn"];
    }
    let sink_addr = server(sink);
    let echo_addr = server(echo);
    let rt = runtime();
    for case in cases {
        let upstream = if case == "bulk" { sink_addr } else { echo_addr };
        let mut results: Vec<(Pump, Vec<(f64, Duration)>)> =
            PUMPS.iter().map(|&p| (p, Vec::new())).collect();
        for _ in 0..rounds {
            for (pump, samples) in &mut results {
                let (addr, stop, cpu) = tunnel(upstream, *pump);
                let (value, unit) = rt.block_on(async {
                    match case {
                        "bulk" => bulk(addr).await,
                        "rr" => request_response(addr).await,
                        _ => churn(addr).await,
                    }
                });
                let _ = stop.send(());
                let cpu = cpu.recv().unwrap();
                samples.push((value, cpu));
                println!(
                    "{case:5} {:<20} {value:>12.2} {unit}  tunnel cpu {cpu:?}",
                    format!("{pump:?}")
                );
            }
        }
        println!("-- {case}: median of {rounds}");
        for (pump, samples) in &mut results {
            samples.sort_by(|a, b| a.0.total_cmp(&b.0));
            let (value, cpu) = samples[samples.len() / 2];
            println!(
                "   {:<20} {value:>12.2}  tunnel cpu {cpu:?}",
                format!("{pump:?}")
            );
        }
    }
}
