//! Connections to upstreams and sluice's HTTP/1.1 client on them.
//!
//! - [`exchange`]: one request and its response, driven by the client
//!   connection's task.
//! - `request_head`, [`response_head`], `chunked`: the wire format.
//! - [`link`]: an open connection and its read buffer.
//!
//! This module connects with a timeout and keeps idle connections. Each
//! worker is one thread, so the pool is a plain `RefCell` of idle
//! connections per upstream slot: no lock, no atomics. A connection goes
//! back to the pool when its exchange ended cleanly and is dropped when it
//! idled too long, the upstream closed it, or the pool is full. An idle
//! connection has no task: whether the upstream closed it is read from its
//! socket's readiness when it is taken, and once a second by a sweeper
//! that runs while any connection idles.

pub mod chunked;
pub mod exchange;
pub mod link;
mod request_head;
pub mod resolve;
pub mod response_head;
pub mod upload;

#[cfg(test)]
mod connect_tests;

pub use request_head::encode as encode_request_head;

use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::task::Poll;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::config::UpstreamAddress;
use link::Link;

/// Idle connections kept per upstream per worker.
const MAX_IDLE_PER_UPSTREAM: usize = 64;
/// How long an idle upstream connection is kept. Shorter than the usual
/// server keep-alive (nginx 75 s, Node.js 5 s is the exception that the
/// transparent retry covers).
const IDLE_LIFETIME: Duration = Duration::from_secs(30);
/// How often idle connections are checked for having been closed by their
/// upstream: such a socket is closed here within this long instead of
/// holding a descriptor until the pool next reaches for it.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Why connecting failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// TCP connect failed (refused, unreachable, DNS).
    #[error("connect to {address} failed: {source}")]
    Io {
        /// The upstream address.
        address: String,
        /// The cause.
        source: io::Error,
    },
    /// TCP connect did not finish in time.
    #[error("connect to {address} timed out after {timeout:?}")]
    Timeout {
        /// The upstream address.
        address: String,
        /// The timeout.
        timeout: Duration,
    },
}

struct Idle {
    link: Link,
    since: Instant,
    /// Where it leads: a slot can change hands across reloads.
    address: UpstreamAddress,
}

/// One worker's idle upstream connections, by upstream slot.
#[derive(Default)]
pub struct UpstreamConnections {
    idle: RefCell<Vec<Vec<Idle>>>,
    /// Whether a sweeper task is running (only while connections idle).
    sweeping: Cell<bool>,
}

impl std::fmt::Debug for UpstreamConnections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamConnections")
            .finish_non_exhaustive()
    }
}

/// A connection in use, tagged so it can go back to its pool.
pub struct PooledConnection {
    /// The connection.
    pub link: Link,
    /// Whether it came from the pool (it may have been closed meanwhile).
    pub reused: bool,
    slot: usize,
    address: UpstreamAddress,
    pool: Rc<UpstreamConnections>,
}

impl std::fmt::Debug for PooledConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledConnection")
            .field("slot", &self.slot)
            .field("reused", &self.reused)
            .finish()
    }
}

impl PooledConnection {
    /// Returns the connection to its pool for the next request.
    pub fn release(self) {
        let PooledConnection {
            link,
            slot,
            address,
            pool,
            ..
        } = self;
        pool.put(slot, link, address);
        if !pool.sweeping.replace(true) {
            tokio::task::spawn_local(sweep_while_idle(Rc::downgrade(&pool)));
        }
    }

    /// The connection itself, leaving the pool for good (an upgrade).
    pub fn into_link(self) -> Link {
        self.link
    }
}

impl UpstreamConnections {
    /// A pooled connection to `slot`, or a new one. `fresh` skips the pool
    /// (used after a pooled connection turned out closed).
    pub async fn acquire(
        self: &Rc<Self>,
        slot: usize,
        address: &UpstreamAddress,
        timeout: Duration,
        fresh: bool,
    ) -> Result<PooledConnection, ConnectError> {
        if !fresh && let Some(idle) = self.take(slot, address) {
            return Ok(PooledConnection {
                link: idle.link,
                reused: true,
                slot,
                address: idle.address,
                pool: Rc::clone(self),
            });
        }
        let link = connect(address, timeout).await?;
        Ok(PooledConnection {
            link,
            reused: false,
            slot,
            address: address.clone(),
            pool: Rc::clone(self),
        })
    }

    /// The most recent live idle connection to `address` in `slot`; stale,
    /// closed and other-address ones are dropped on the way.
    fn take(&self, slot: usize, address: &UpstreamAddress) -> Option<Idle> {
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(slot)?;
        let now = Instant::now();
        while let Some(conn) = list.pop() {
            if now.duration_since(conn.since) < IDLE_LIFETIME
                && conn.address == *address
                && conn.link.looks_open()
            {
                return Some(conn);
            }
        }
        None
    }

    /// Drops idle connections their upstream closed or that idled past
    /// [`IDLE_LIFETIME`]; returns whether any is left.
    fn sweep(&self) -> bool {
        let now = Instant::now();
        let mut left = false;
        for list in self.idle.borrow_mut().iter_mut() {
            list.retain(|conn| {
                now.duration_since(conn.since) < IDLE_LIFETIME && conn.link.looks_open()
            });
            left |= !list.is_empty();
        }
        left
    }

    fn put(&self, slot: usize, mut link: Link, address: UpstreamAddress) {
        link.idle();
        let mut idle = self.idle.borrow_mut();
        if idle.len() <= slot {
            idle.resize_with(slot + 1, Vec::new);
        }
        let list = &mut idle[slot];
        if list.len() >= MAX_IDLE_PER_UPSTREAM {
            list.remove(0);
        }
        list.push(Idle {
            link,
            since: Instant::now(),
            address,
        });
    }
}

/// Sweeps the pool every [`SWEEP_EVERY`] while it holds idle connections;
/// ends when none is left (the next release starts another).
async fn sweep_while_idle(pool: Weak<UpstreamConnections>) {
    loop {
        tokio::time::sleep(SWEEP_EVERY).await;
        let Some(pool) = pool.upgrade() else {
            return;
        };
        if !pool.sweep() {
            pool.sweeping.set(false);
            return;
        }
    }
}

/// Opens a TCP connection within `timeout`.
async fn connect(address: &UpstreamAddress, timeout: Duration) -> Result<Link, ConnectError> {
    let label = address.to_string();
    let stream = match tokio::time::timeout(timeout, connect_tcp(address)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(source)) => {
            return Err(ConnectError::Io {
                address: label,
                source,
            });
        }
        Err(_) => {
            return Err(ConnectError::Timeout {
                address: label,
                timeout,
            });
        }
    };
    // Nagle only delays small request heads; latency matters more here.
    let _ = stream.set_nodelay(true);
    Ok(Link::new(stream))
}

/// Connects to an IP literal directly; a hostname is resolved through
/// [`resolve`] (answers reused for a second, the last good one kept while
/// the resolver fails), and its addresses raced by [`connect_any`].
pub async fn connect_tcp(address: &UpstreamAddress) -> io::Result<TcpStream> {
    if let Ok(ip) = address.host.parse::<std::net::IpAddr>() {
        return TcpStream::connect(SocketAddr::new(ip, address.port)).await;
    }
    let addresses = resolve::resolve(&address.host, address.port).await?;
    connect_any(&addresses).await
}

/// How long an attempt at one address of a hostname runs alone before
/// the next address is tried alongside it (RFC 8305's "Connection Attempt
/// Delay").
pub const NEXT_ADDRESS_DELAY: Duration = Duration::from_millis(250);

/// Connects to the first of `addresses` that accepts, as Happy Eyeballs
/// (RFC 8305) does: they are tried in order, the next one as soon as an
/// attempt fails or after [`NEXT_ADDRESS_DELAY`] with attempts still
/// pending, which go on. So an address that silently drops connection
/// attempts delays a connect by 250 ms instead of using up its timeout.
async fn connect_any(addresses: &[SocketAddr]) -> io::Result<TcpStream> {
    match addresses {
        // The common case: nothing to race, nothing to box.
        [only] => TcpStream::connect(*only).await,
        _ => connect_staggered(addresses, NEXT_ADDRESS_DELAY).await,
    }
}

/// [`connect_any`] with `delay` between starts.
async fn connect_staggered(addresses: &[SocketAddr], delay: Duration) -> io::Result<TcpStream> {
    type Attempt = std::pin::Pin<Box<dyn std::future::Future<Output = io::Result<TcpStream>>>>;
    let mut pending: Vec<Attempt> = Vec::new();
    let mut next = 0;
    let mut last_error = None;
    // An attempt failed: the next address starts at once.
    let mut failed = false;
    let mut timer = std::pin::pin!(tokio::time::sleep(delay));
    std::future::poll_fn(|cx| {
        loop {
            let due = pending.is_empty() || failed || timer.as_mut().poll(cx).is_ready();
            if due && next < addresses.len() {
                pending.push(Box::pin(TcpStream::connect(addresses[next])));
                next += 1;
                failed = false;
                timer.as_mut().reset(Instant::now() + delay);
            }
            let mut i = 0;
            while i < pending.len() {
                match pending[i].as_mut().poll(cx) {
                    Poll::Ready(Ok(stream)) => return Poll::Ready(Ok(stream)),
                    Poll::Ready(Err(error)) => {
                        last_error = Some(error);
                        failed = true;
                        drop(pending.swap_remove(i));
                    }
                    Poll::Pending => i += 1,
                }
            }
            if next == addresses.len() {
                if pending.is_empty() {
                    return Poll::Ready(Err(last_error.take().unwrap_or_else(|| {
                        io::Error::new(io::ErrorKind::NotFound, "host resolved to no address")
                    })));
                }
                return Poll::Pending;
            }
            // Another address is due now (a failure, or the delay passed);
            // else wait for an attempt or the delay, whose poll registers
            // the wake-up.
            if !failed && !pending.is_empty() && timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    })
    .await
}
