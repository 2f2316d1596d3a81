//! TCP passthrough listeners (SPEC §2, §4): sluice in front of databases
//! and any other TCP service.
//!
//! One task per client connection: refuse it past `max_connections`, read
//! a PROXY header first when the listener expects one, pick an upstream
//! with the pool's strategy (`consistent-hash` keys on the client IP),
//! connect within `connect_timeout` (another upstream on failure, up to
//! `retries`; with none left the client is closed at once), send a PROXY
//! header when the listener is set to, then copy bytes both ways until both
//! sides are done or the tunnel idled for `idle_timeout`.
//!
//! - [`copy`]: the byte pump (backpressure, half-close, idle, splice).
//! - [`proxy_protocol`]: PROXY v1/v2 headers, written and parsed.

pub mod copy;
pub mod proxy_protocol;

use std::cell::Cell;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use strategies::{PickContext, Tried};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::config::ProxyProtocolVersion;
use crate::counters::{ActiveGuard, ListenerCounter, Row, UpstreamCounter};
use crate::http::Worker;
use crate::http::next_admitted;
use crate::http::upstream::connect_tcp;
use crate::runtime::{Listener, ListenerKind, Runtime, TcpRoute, Upstream};
use copy::{CopyError, CopyMode, Direction};
use proxy_protocol::{ProxyHeader, ProxyHeaderError};

/// Why a tunnel ended without a clean finish on both sides (logged at debug
/// level: each of these is one client's business, not the balancer's).
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    /// `accept_proxy_protocol` is on and the client sent a bad header.
    #[error("refused PROXY header: {0}")]
    ProxyHeader(#[from] ProxyHeaderError),
    /// `accept_proxy_protocol` is on and no complete header came in time.
    #[error("no complete PROXY header within {0:?}")]
    ProxyHeaderTimeout(Duration),
    /// The client closed or failed before its PROXY header was complete.
    #[error("client closed during the PROXY header: {0}")]
    ProxyHeaderRead(io::Error),
    /// Every upstream the pool offered failed to connect.
    #[error("no upstream could be connected")]
    NoUpstream,
    /// Writing the PROXY header or early client bytes upstream failed.
    #[error("upstream write failed: {0}")]
    UpstreamWrite(io::Error),
    /// The byte pump ended with an error or the idle timeout.
    #[error(transparent)]
    Copy(#[from] CopyError),
}

/// Accepts TCP connections on `listener` (the runtime's listener `name`)
/// until `shutdown` turns true. Tunnels already open run on until they end
/// or the drain ends.
pub async fn serve(
    listener: TcpListener,
    worker: Rc<Worker>,
    name: Rc<str>,
    shutdown: watch::Receiver<bool>,
) {
    let stop = crate::http::listener_stop(&worker, &shutdown);
    while let Some((stream, client, admitted)) =
        next_admitted(&listener, &worker, &name, &stop.stopping).await
    {
        let (runtime, index) = (Arc::clone(&admitted.runtime), admitted.index);
        let row = worker.row.clone();
        let cut = stop.cut.clone();
        tokio::task::spawn_local(async move {
            tokio::select! {
                ended = tunnel(&row, &runtime, index, stream, client) => {
                    if let Err(error) = ended {
                        tracing::debug!(%client, %error, "tunnel ended");
                    }
                }
                () = cut.fired() => tracing::debug!(%client, "tunnel cut at drain_timeout"),
            }
            drop(admitted);
        });
    }
}

/// One client connection, from its first byte to its close.
async fn tunnel(
    row: &Row,
    runtime: &Runtime,
    index: usize,
    mut client: TcpStream,
    peer: SocketAddr,
) -> Result<(), TunnelError> {
    let listener = &runtime.listeners[index];
    let ListenerKind::Tcp(route) = &listener.kind else {
        return Ok(());
    };
    // The address the client reached: only PROXY headers need it, so the
    // getsockname call is skipped otherwise.
    let local = match route.proxy_protocol {
        Some(_) => client.local_addr().unwrap_or(listener.listen),
        None => listener.listen,
    };
    let (mut source, mut destination, mut early) = (peer, local, Vec::new());
    if route.accept_proxy_protocol {
        let timeout = listener.settings.header_timeout;
        let (header, rest) = tokio::time::timeout(timeout, read_proxy_header(&client))
            .await
            .map_err(|_| TunnelError::ProxyHeaderTimeout(timeout))??;
        if let ProxyHeader::Proxied {
            source: s,
            destination: d,
        } = header
        {
            (source, destination) = (s, d);
        }
        row.add_listener(listener.slot, ListenerCounter::ReceivedBytes, rest.1);
        early = rest.0;
    }
    let (mut server, upstream, _active) =
        connect(row, runtime, listener, route, source.ip()).await?;
    row.add_upstream(upstream.slot, UpstreamCounter::Requests, 1);
    let mut first = match route.proxy_protocol {
        Some(ProxyProtocolVersion::V1) => proxy_protocol::encode_v1(source, destination),
        Some(ProxyProtocolVersion::V2) => proxy_protocol::encode_v2(source, destination),
        None => Vec::new(),
    };
    first.extend_from_slice(&early);
    if !first.is_empty() {
        copy::write_all(&server, &first)
            .await
            .map_err(TunnelError::UpstreamWrite)?;
        row.add_upstream(
            upstream.slot,
            UpstreamCounter::SentBytes,
            first.len() as u64,
        );
    }
    let (listener_slot, upstream_slot) = (listener.slot, upstream.slot);
    let answered = Cell::new(false);
    let on_bytes = |direction, n| match direction {
        Direction::ToUpstream => {
            row.add_listener(listener_slot, ListenerCounter::ReceivedBytes, n);
            row.add_upstream(upstream_slot, UpstreamCounter::SentBytes, n);
        }
        Direction::ToClient => {
            if !answered.replace(true) {
                row.add_upstream(upstream_slot, UpstreamCounter::Answered, 1);
            }
            row.add_listener(listener_slot, ListenerCounter::SentBytes, n);
            row.add_upstream(upstream_slot, UpstreamCounter::ReceivedBytes, n);
        }
    };
    let copied = copy::bidirectional(
        &mut client,
        &mut server,
        listener.settings.idle_timeout,
        CopyMode::default(),
        &on_bytes,
    )
    .await;
    match &copied {
        Err(error) if reset_before_answering(error, answered.get()) => {
            row.add_upstream(upstream_slot, UpstreamCounter::Resets, 1);
        }
        // Closed cleanly without a byte back: served, if silently.
        Ok(_) if !answered.get() => row.add_upstream(upstream_slot, UpstreamCounter::Answered, 1),
        _ => {}
    }
    copied?;
    Ok(())
}

/// Whether a tunnel's end counts toward the upstream's `fall` (SPEC §5):
/// the upstream reset the connection before sending back a single byte, as
/// a server that accepts and then drops everything does (crashing,
/// overloaded, a wrong process on the port). A reset after it answered
/// ends one session that it was serving, which says nothing about the
/// next one; HTTP counts a reset before a response the same way.
fn reset_before_answering(error: &CopyError, answered: bool) -> bool {
    let CopyError::Upstream(error) = error else {
        return false;
    };
    let reset = matches!(
        error.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    );
    reset && !answered
}

/// The key `consistent-hash` uses on a TCP listener: the client IP's octets
/// (the only `hash_key` a TCP listener may have, as in HTTP's `client-ip`).
fn client_ip_key(ip: IpAddr) -> ([u8; 16], usize) {
    let mut key = [0u8; 16];
    match ip {
        IpAddr::V4(ip) => {
            key[..4].copy_from_slice(&ip.octets());
            (key, 4)
        }
        IpAddr::V6(ip) => (ip.octets(), 16),
    }
}

/// Picks and connects an upstream, another one after each failure, up to
/// `retries` more. A tunnel counts as active on its upstream from the
/// pick, so picks made while it connects see it: an upstream whose
/// connects hang would otherwise look idle to least-connections and win
/// every pick.
async fn connect<'a>(
    row: &Row,
    runtime: &'a Runtime,
    listener: &Listener,
    route: &TcpRoute,
    client: IpAddr,
) -> Result<(TcpStream, &'a Upstream, ActiveGuard), TunnelError> {
    let (key, key_len) = client_ip_key(client);
    let mut tried = Tried::default();
    for _ in 0..=listener.settings.retries {
        let ctx = PickContext {
            client: Some(client),
            key: Some(&key[..key_len]),
            tried,
        };
        let Some(pick) = route.pool.pick(row.region(), &ctx) else {
            break;
        };
        tried.insert(pick.index);
        let upstream = &runtime.upstreams[route.pool.members[pick.index]];
        let active = ActiveGuard::new(row, upstream.slot);
        let timeout = upstream
            .connect_timeout
            .unwrap_or(listener.settings.connect_timeout);
        let started = std::time::Instant::now();
        let attempt = tokio::time::timeout(timeout, connect_tcp(&upstream.address)).await;
        // A tunnel's upstream latency is its connect time.
        row.observe_upstream(upstream.slot, started.elapsed());
        match attempt {
            Ok(Ok(server)) => {
                // Small writes (database queries) go out at once.
                let _ = server.set_nodelay(true);
                return Ok((server, upstream, active));
            }
            Ok(Err(error)) => {
                tracing::warn!(upstream = %upstream.id, %error, "connect failed");
            }
            Err(_) => {
                tracing::warn!(upstream = %upstream.id, ?timeout, "connect timed out");
            }
        }
        row.add_upstream(upstream.slot, UpstreamCounter::ConnectErrors, 1);
    }
    Err(TunnelError::NoUpstream)
}

/// Reads a PROXY header from `client`, never more than
/// [`proxy_protocol::MAX_HEADER`] bytes. Returns the header and the stream
/// bytes that came after it in the same reads (with their count), which
/// belong to the upstream.
async fn read_proxy_header(
    client: &TcpStream,
) -> Result<(ProxyHeader, (Vec<u8>, u64)), TunnelError> {
    let mut buf = vec![0u8; proxy_protocol::MAX_HEADER];
    let mut filled = 0;
    loop {
        client
            .readable()
            .await
            .map_err(TunnelError::ProxyHeaderRead)?;
        let n = match client.try_read(&mut buf[filled..]) {
            Ok(0) => {
                return Err(TunnelError::ProxyHeaderRead(
                    io::ErrorKind::UnexpectedEof.into(),
                ));
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(TunnelError::ProxyHeaderRead(e)),
        };
        filled += n;
        if let Some((header, used)) = proxy_protocol::parse(&buf[..filled])? {
            buf.truncate(filled);
            let rest = buf.split_off(used);
            return Ok((header, (rest, filled as u64)));
        }
        if filled == buf.len() {
            // `parse` refuses a header longer than MAX_HEADER before this;
            // this is a second guard against a buffer that cannot grow.
            return Err(ProxyHeaderError::V2TooLong(filled).into());
        }
    }
}
