//! TCP passthrough listeners: accept, pick an upstream with the pool's
//! strategy, connect (another upstream on failure, up to `retries`), then
//! copy bytes both ways until both sides are done.

use std::net::SocketAddr;
use std::rc::Rc;

use strategies::{PickContext, Tried};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::counters::{ActiveGuard, ConnectionGuard, ListenerCounter, UpstreamCounter};
use crate::http::Worker;
use crate::http::upstream::connect_tcp;
use crate::runtime::{ListenerKind, Runtime};

/// Accepts TCP connections on `listener` (the runtime's listener `index`)
/// until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    worker: Rc<Worker>,
    name: Rc<str>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (stream, client) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let runtime = worker.runtime.load_full();
        let Some(index) = runtime.listener_index(&name) else {
            return;
        };
        let listener_config = &runtime.listeners[index];
        let slot = listener_config.slot;
        if worker
            .row
            .listener(slot, ListenerCounter::ConnectionsActive)
            >= u64::from(listener_config.settings.max_connections)
        {
            worker
                .row
                .add_listener(slot, ListenerCounter::ConnectionsRefused, 1);
            continue;
        }
        let guard = ConnectionGuard::new(&worker.row, slot);
        let worker = Rc::clone(&worker);
        worker.opened();
        tokio::task::spawn_local(async move {
            tunnel(&worker, &runtime, index, stream, client).await;
            drop(guard);
            worker.closed();
        });
    }
}

async fn tunnel(
    worker: &Worker,
    runtime: &Runtime,
    index: usize,
    mut client: TcpStream,
    client_addr: SocketAddr,
) {
    let listener = &runtime.listeners[index];
    let ListenerKind::Tcp(route) = &listener.kind else {
        return;
    };
    let mut tried = Tried::default();
    for _ in 0..=listener.settings.retries {
        let ctx = PickContext {
            client: Some(client_addr.ip()),
            key: None,
            tried,
        };
        let Some(pick) = route.pool.pick(worker.row.region(), &ctx) else {
            return;
        };
        tried.insert(pick.index);
        let upstream = &runtime.upstreams[route.pool.members[pick.index]];
        let timeout = upstream
            .connect_timeout
            .unwrap_or(listener.settings.connect_timeout);
        let mut server = match tokio::time::timeout(timeout, connect_tcp(&upstream.address)).await {
            Ok(Ok(server)) => server,
            Ok(Err(error)) => {
                worker
                    .row
                    .add_upstream(upstream.slot, UpstreamCounter::ConnectErrors, 1);
                tracing::warn!(upstream = %upstream.id, %error, "connect failed");
                continue;
            }
            Err(_) => {
                worker
                    .row
                    .add_upstream(upstream.slot, UpstreamCounter::ConnectErrors, 1);
                tracing::warn!(upstream = %upstream.id, "connect timed out");
                continue;
            }
        };
        let _ = server.set_nodelay(true);
        let _active = ActiveGuard::new(&worker.row, upstream.slot);
        worker
            .row
            .add_upstream(upstream.slot, UpstreamCounter::Requests, 1);
        if let Ok((sent, received)) = tokio::io::copy_bidirectional(&mut client, &mut server).await
        {
            worker
                .row
                .add_listener(listener.slot, ListenerCounter::ReceivedBytes, sent);
            worker
                .row
                .add_listener(listener.slot, ListenerCounter::SentBytes, received);
            worker
                .row
                .add_upstream(upstream.slot, UpstreamCounter::SentBytes, sent);
            worker
                .row
                .add_upstream(upstream.slot, UpstreamCounter::ReceivedBytes, received);
        }
        return;
    }
}
