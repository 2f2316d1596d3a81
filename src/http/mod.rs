//! The HTTP listener: accepting client connections and serving them with
//! hyper's HTTP/1.1 server (keep-alive, upgrades), one task per connection
//! on the worker's single thread.
//!
//! - [`client_io`]: the client socket with idle/head/send deadlines.
//! - `connection`: one client connection, served, parked and resumed.
//! - [`proxy`]: one request: check, route, proxy or serve a file.
//! - [`forwarding`]: request checks and header rewriting.
//! - [`upstream`]: sluice's HTTP/1.1 client toward upstreams and its
//!   keep-alive pool.
//! - [`deadline`]: timers for deadlines that keep moving later.
//! - [`body`]: streaming request and response bodies.
//! - [`head_scan`]: the raw request stream followed, every head checked.
//! - [`static_files`], [`tunnel`], [`hash_key`], [`error`].

pub mod body;
pub mod client_io;
mod connection;
pub mod deadline;
pub mod error;
pub mod forwarding;
pub mod hash_key;
pub mod head_scan;
pub mod linger;
pub mod parking;
pub mod proxy;
pub mod static_files;
pub mod tunnel;
pub mod upstream;

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::counters::{ConnectionGuard, ListenerCounter, Row};
use crate::runtime::Runtime;
use crate::stop::{ListenerStop, StopSignal};
use connection::ListenerConnections;
use upstream::UpstreamConnections;

/// What one worker shares between its connections.
pub struct Worker {
    /// This worker's counter row.
    pub row: Row,
    /// The config generation new requests use.
    pub runtime: ArcSwap<Runtime>,
    /// Idle upstream connections.
    pub connections: Rc<UpstreamConnections>,
    /// Client connections open in this worker (all listeners), for draining.
    open: Cell<usize>,
    drained: tokio::sync::Notify,
    request_seq: Cell<u64>,
    request_seed: u64,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("open", &self.open.get())
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// A worker serving `runtime`, writing counters into `row`.
    pub fn new(row: Row, runtime: Arc<Runtime>) -> Rc<Worker> {
        Rc::new(Worker {
            row,
            runtime: ArcSwap::new(runtime),
            connections: Rc::new(UpstreamConnections::default()),
            open: Cell::new(0),
            drained: tokio::sync::Notify::new(),
            request_seq: Cell::new(0),
            request_seed: rand::random(),
        })
    }

    /// A fresh request id: 16 hex digits, unique per worker run.
    pub fn next_request_id(&self) -> String {
        let seq = self.request_seq.get().wrapping_add(1);
        self.request_seq.set(seq);
        format!(
            "{:016x}",
            self.request_seed ^ seq.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        )
    }

    /// Waits until every client connection of this worker has closed.
    pub async fn drained(&self) {
        while self.open.get() > 0 {
            self.drained.notified().await;
        }
    }

    /// Admits a client connection on listener `name`: counts it as open
    /// (for the gauges and for draining) until the returned guard drops.
    /// Refuses it, counted, when `max_connections` connections are open on
    /// that listener across all workers, or when a reload removed the
    /// listener.
    pub fn admit(self: &Rc<Self>, name: &str) -> Result<Admitted, Refusal> {
        let runtime = self.runtime.load_full();
        let index = runtime
            .listener_index(name)
            .ok_or(Refusal::ListenerRemoved)?;
        let listener = &runtime.listeners[index];
        let slot = listener.slot;
        // Counted first, then checked: two workers admitting at once both
        // see each other, so the limit is never passed (at worst both
        // refuse).
        let connection = ConnectionGuard::new(&self.row, slot);
        if self
            .row
            .region()
            .listener_total(slot, ListenerCounter::ConnectionsActive)
            > u64::from(listener.settings.max_connections)
        {
            drop(connection);
            self.row
                .add_listener(slot, ListenerCounter::ConnectionsRefused, 1);
            return Err(Refusal::Full);
        }
        self.row
            .add_listener(slot, ListenerCounter::ConnectionsTotal, 1);
        self.open.set(self.open.get() + 1);
        Ok(Admitted {
            worker: Rc::clone(self),
            _connection: connection,
            runtime,
            index,
        })
    }
}

/// Why an accepted connection was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `max_connections` are open on the listener.
    Full,
    /// A reload removed the listener (its accept loop ends).
    ListenerRemoved,
}

/// An admitted client connection: open in the counters and for the drain
/// until dropped.
#[derive(Debug)]
pub struct Admitted {
    worker: Rc<Worker>,
    _connection: ConnectionGuard,
    /// The config generation the connection was admitted under.
    pub runtime: Arc<Runtime>,
    /// Its listener's index in that generation.
    pub index: usize,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let open = self.worker.open.get() - 1;
        self.worker.open.set(open);
        if open == 0 {
            self.worker.drained.notify_waiters();
        }
    }
}

/// Accepts HTTP connections on `listener` (the runtime's listener `name`)
/// until `shutdown` turns true; open connections then finish their current
/// request and close.
pub async fn serve(
    listener: TcpListener,
    worker: Rc<Worker>,
    name: Rc<str>,
    shutdown: watch::Receiver<bool>,
) {
    let inherited_nodelay = nodelay_for_accepted(&listener);
    let stop = listener_stop(&worker, &shutdown);
    let connections = ListenerConnections::open(&worker, &name, &stop);
    while let Some((stream, client, admitted)) =
        next_admitted(&listener, &worker, &name, &stop.stopping).await
    {
        if !inherited_nodelay {
            let _ = stream.set_nodelay(true);
        }
        connections.start(stream, client, admitted);
    }
}

/// Sets `TCP_NODELAY` on the listening socket, which Linux copies to every
/// connection it accepts: one system call per listener instead of one per
/// connection. Returns whether accepted connections have it that way.
fn nodelay_for_accepted(listener: &TcpListener) -> bool {
    cfg!(target_os = "linux")
        && socket2::SockRef::from(listener)
            .set_tcp_nodelay(true)
            .is_ok()
}

/// The stop of a listener of `worker` whose accept loop ends when
/// `shutdown` turns true: its connections are cut `drain_timeout` later.
pub fn listener_stop(worker: &Rc<Worker>, shutdown: &watch::Receiver<bool>) -> ListenerStop {
    let worker = Rc::clone(worker);
    ListenerStop::follow(shutdown.clone(), move || {
        worker.runtime.load().drain_timeout
    })
}

/// The next connection admitted on listener `name` (see
/// [`Worker::admit`]), or `None` once the listener stops: `stopping`
/// fired or a reload removed it.
pub async fn next_admitted(
    listener: &TcpListener,
    worker: &Rc<Worker>,
    name: &str,
    stopping: &StopSignal,
) -> Option<(tokio::net::TcpStream, std::net::SocketAddr, Admitted)> {
    loop {
        let (stream, client) = next_connection(listener, stopping.fired()).await?;
        match worker.admit(name) {
            Ok(admitted) => return Some((stream, client, admitted)),
            Err(Refusal::Full) => continue,
            Err(Refusal::ListenerRemoved) => return None,
        }
    }
}

/// The next accepted connection, or `None` once `stopped` resolved.
/// Failed accepts are retried (after a pause when descriptors or memory run
/// out).
pub async fn next_connection(
    listener: &TcpListener,
    stopped: impl Future<Output = ()>,
) -> Option<(tokio::net::TcpStream, std::net::SocketAddr)> {
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => return Some(pair),
                Err(error) => accept_failed(error).await,
            },
            () = &mut stopped => return None,
        }
    }
}

/// Out of descriptors or memory: wait a little instead of spinning on the
/// error while the queue stays full; other errors concern one connection.
async fn accept_failed(error: std::io::Error) {
    use rustix::io::Errno;
    let resource = error.raw_os_error().is_some_and(|code| {
        [Errno::MFILE, Errno::NFILE, Errno::NOBUFS, Errno::NOMEM]
            .iter()
            .any(|e| e.raw_os_error() == code)
    });
    if resource {
        tracing::warn!(%error, "accept failed; backing off");
        tokio::time::sleep(Duration::from_millis(100)).await;
    } else {
        tracing::debug!(%error, "accept failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_connections_inherit_nodelay() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        assert!(nodelay_for_accepted(&listener));
        let addr = listener.local_addr().unwrap();
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        assert!(accepted.nodelay().unwrap());
    }
}
