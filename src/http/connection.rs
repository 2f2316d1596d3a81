//! One client connection: served with hyper while requests come, moved to
//! its listener's parking lot (see [`super::parking`]) while it waits idle,
//! and served again from there when its next request comes; answered
//! before its request ended, it lingers (see [`super::linger`]).

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::client_io::{ClientIo, Deadlines, Phase, PhaseCell, SharedPhase};
use super::linger;
use super::parking::{self, ParkingLot};
use super::proxy::{self, ConnContext};
use super::{Admitted, Worker, forwarding};
use crate::counters::ListenerCounter;
use crate::runtime::{Listener, ListenerKind, Metered};
use crate::stop::ListenerStop;

/// What the connections of one listener in one worker share: their
/// worker, their listener's name and stop signal, and the lot where they
/// park.
pub(super) struct ListenerConnections {
    worker: Rc<Worker>,
    name: Rc<str>,
    stop: ListenerStop,
    /// `None` when no descriptor was left for its epoll set: idle
    /// connections are then not parked.
    lot: Option<ParkingLot<ParkedConnection>>,
}

/// What a parked connection keeps to be served again.
struct ParkedConnection {
    client: SocketAddr,
    admitted: Admitted,
    settings: ClientSettings,
    idle_since: Instant,
}

impl ListenerConnections {
    /// Opens listener `name`'s parking lot and starts its task, which
    /// serves each parked connection again once it has something to read,
    /// until the listener stops.
    pub(super) fn open(
        worker: &Rc<Worker>,
        name: &Rc<str>,
        stop: &ListenerStop,
    ) -> Rc<ListenerConnections> {
        let lot = ParkingLot::new()
            .inspect_err(|error| {
                tracing::warn!(listener = %name, %error, "idle connections will not be parked");
            })
            .ok();
        let connections = Rc::new(ListenerConnections {
            worker: Rc::clone(worker),
            name: Rc::clone(name),
            stop: stop.clone(),
            lot,
        });
        let watched = Rc::clone(&connections);
        tokio::task::spawn_local(async move {
            if let Some(lot) = &watched.lot {
                let resume = |stream, parked| watched.resume(stream, parked);
                lot.run(watched.stop.stopping.fired(), resume).await;
            }
        });
        connections
    }

    /// Starts serving a connection from `client` just admitted.
    pub(super) fn start(
        self: &Rc<Self>,
        stream: TcpStream,
        client: SocketAddr,
        admitted: Admitted,
    ) {
        let settings = ClientSettings::of(&admitted.runtime.listeners[admitted.index]);
        let conn = self.context(client, admitted, PhaseCell::accepted());
        tokio::task::spawn_local(serve_connection(stream, conn, settings, Rc::clone(self)));
    }

    /// Serves a parked connection again, with its listener's settings as
    /// they are now (a reload while it was parked may have changed its
    /// timeouts or head size).
    fn resume(self: &Rc<Self>, stream: TcpStream, parked: ParkedConnection) {
        let settings = self
            .worker
            .runtime
            .load()
            .listeners
            .iter()
            .find(|listener| listener.slot == parked.settings.slot)
            .map_or(parked.settings, ClientSettings::of);
        let phase = PhaseCell::idle_since(parked.idle_since);
        let conn = self.context(parked.client, parked.admitted, phase);
        let serving = serve_connection(stream, conn, settings, Rc::clone(self));
        tokio::task::spawn_local(serving);
    }

    /// The context of a client connection from `client`, starting in
    /// `phase`.
    fn context(
        &self,
        client: SocketAddr,
        admitted: Admitted,
        phase: SharedPhase,
    ) -> Rc<ConnContext> {
        Rc::new(ConnContext {
            worker: Rc::clone(&self.worker),
            listener: Rc::clone(&self.name),
            client,
            forwarded_for: forwarding::address_value(client.ip()),
            phase,
            admitted,
            stop: self.stop.clone(),
            response_timer: std::cell::RefCell::default(),
        })
    }
}

/// What a client connection's socket wrapper and hyper need from the
/// listener's settings, kept for each new hyper connection after parking.
#[derive(Clone, Copy)]
struct ClientSettings {
    deadlines: Deadlines,
    slot: usize,
    /// The listener's "no rule" route and pair: where answers to requests
    /// that never reached a rule are counted.
    own: Option<Metered>,
    max_header_size: usize,
    /// Longest wait for a byte while lingering.
    linger_quiet: Duration,
}

impl ClientSettings {
    fn of(listener: &Listener) -> ClientSettings {
        let settings = &listener.settings;
        ClientSettings {
            deadlines: Deadlines {
                idle: settings.idle_timeout,
                header: settings.header_timeout,
                send: settings.send_timeout,
            },
            slot: listener.slot,
            own: match &listener.kind {
                ListenerKind::Http(routes) => Some(routes.no_rule),
                ListenerKind::Tcp(_) => None,
            },
            max_header_size: settings.max_header_size,
            linger_quiet: settings.body_timeout.min(linger::QUIET),
        }
    }
}

/// Serves one client connection with hyper until it closes, or until it
/// has waited idle long enough to move to its listener's parking lot,
/// which starts this again when its next request comes.
async fn serve_connection(
    stream: TcpStream,
    conn: Rc<ConnContext>,
    client: ClientSettings,
    listener: Rc<ListenerConnections>,
) {
    let io = ClientIo::new(
        stream,
        Arc::clone(&conn.phase),
        client.deadlines,
        conn.worker.row.clone(),
        (client.slot, client.own),
    );
    let serving = serve_until_idle(io, &conn, &client, listener.lot.is_some());
    let stream = match serving.await {
        Ended::Closed => return,
        Ended::Lingering(stream) => {
            linger_apart(stream, conn, client.slot, client.linger_quiet);
            return;
        }
        Ended::Parked(stream) => stream,
    };
    let Some(lot) = &listener.lot else {
        return;
    };
    let idle_since = match conn.phase.get() {
        Phase::Idle(since) => since,
        _ => Instant::now(),
    };
    // Nothing else holds the context once hyper's state is gone; were it
    // otherwise, closing an idle connection is what its idle timeout does.
    let Ok(conn) = Rc::try_unwrap(conn) else {
        tracing::debug!("idle connection still referenced; closed instead of parked");
        return;
    };
    let parked = ParkedConnection {
        client: conn.client,
        admitted: conn.admitted,
        settings: client,
        idle_since,
    };
    lot.park(stream, idle_since + client.deadlines.idle, parked);
}

/// Lingers with `stream` on a task of its own (this one's large state is
/// freed); the connection counts as open until it closes.
fn linger_apart(stream: TcpStream, conn: Rc<ConnContext>, slot: usize, quiet: Duration) {
    tokio::task::spawn_local(async move {
        let row = &conn.worker.row;
        let received = |n: usize| row.add_listener(slot, ListenerCounter::ReceivedBytes, n as u64);
        tokio::select! {
            () = linger::linger(stream, quiet, received) => {}
            () = conn.stop.cut.fired() => {}
        }
    });
}

/// How hyper's part of a client connection ended.
enum Ended {
    /// Closed, cut, or upgraded into a tunnel.
    Closed,
    /// Idle long enough: the socket, to be parked.
    Parked(TcpStream),
    /// With part of a request still to come: the socket, to linger.
    Lingering(TcpStream),
}

/// Runs hyper on `io` until the connection ends, has been idle long enough
/// to be parked, or ended with part of a request still to come.
async fn serve_until_idle(
    io: ClientIo,
    conn: &Rc<ConnContext>,
    client: &ClientSettings,
    can_park: bool,
) -> Ended {
    let max_header_size = client.max_header_size;
    let stop = &conn.stop;
    let service = {
        let conn = Rc::clone(conn);
        service_fn(move |req| proxy::handle(Rc::clone(&conn), req))
    };
    // Boxed: hyper's connection state is large, and inline it would make
    // this future large too, copied whole when the task is spawned.
    let mut connection = Box::pin(
        // No timer: hyper's only timed setting, the header read timeout, is
        // off (the socket wrapper keeps sluice's deadlines).
        http1::Builder::new()
            .header_read_timeout(None)
            .max_buf_size(max_header_size.max(8192) + 8192)
            .max_header_size(max_header_size)
            .serve_connection(io, service)
            .with_upgrades(),
    );
    let park_check = tokio::time::sleep(parking::PARK_AFTER);
    tokio::pin!(park_check);
    let mut parking = false;
    let result = loop {
        tokio::select! {
            result = connection.as_mut() => break result,
            () = stop.stopping.fired() => {
                connection.as_mut().graceful_shutdown();
                tokio::select! {
                    result = connection.as_mut() => break result,
                    () = stop.cut.fired() => {
                        tracing::debug!("connection cut at drain_timeout");
                        return Ended::Closed;
                    }
                }
            }
            () = &mut park_check, if can_park && !parking => {
                if conn.phase.parkable(parking::PARK_AFTER) {
                    conn.phase.begin_parking();
                    connection.as_mut().graceful_shutdown();
                    parking = true;
                } else {
                    park_check.as_mut().reset(parking::next_check(&conn.phase));
                }
            }
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "client connection ended with an error");
        if let Some(status) = hyper_answer(&error) {
            conn.worker.row.count_own_answer(
                client.slot,
                client.own.map(Metered::slots),
                status,
                head_age(&conn.phase),
            );
        }
    }
    // Dropping hyper's state drops the socket wrapper, which hands the
    // socket back if parking began or the connection must linger.
    drop(connection);
    match conn.phase.take_handed_back() {
        Some(stream) if parking => Ended::Parked(stream),
        Some(stream) => Ended::Lingering(stream),
        None => Ended::Closed,
    }
}

/// The answer hyper wrote itself before it ended a connection over
/// `error`: 431 or 414 for a head or URI too long, 400 for any other
/// request it could not parse; none for the HTTP/2 preface, its internal
/// errors, or anything but a parse error.
fn hyper_answer(error: &hyper::Error) -> Option<u16> {
    if !error.is_parse() {
        return None;
    }
    let text = error.to_string();
    if error.is_parse_too_large() {
        return Some(if text.starts_with("URI too long") {
            414
        } else {
            431
        });
    }
    (!text.contains("HTTP2 preface") && !text.starts_with("internal error")).then_some(400)
}

/// How long ago the head being read began; zero outside a head.
fn head_age(phase: &SharedPhase) -> Duration {
    match phase.get() {
        Phase::Head(since) => since.elapsed(),
        _ => Duration::ZERO,
    }
}
