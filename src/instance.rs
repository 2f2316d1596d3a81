//! An in-process balancer: one worker on its own thread, serving the
//! listeners of a config. Tests and `sluice demo` use it (with
//! `127.0.0.1:0` listeners whose bound addresses are read back); `sluice
//! run` uses the multi-process [`crate::supervisor`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::watch;

use crate::admin::{AdminHandle, Page, Renderer, Snapshot, WorkerInfo};
use crate::config::Config;
use crate::counters::{Region, Row};
use crate::health::{HealthChecker, HealthHandle};
use crate::http::Worker;
use crate::runtime::slots::Slots;
use crate::runtime::{self, Runtime};
use crate::worker::ListenerSet;

/// A running in-process balancer.
#[derive(Debug)]
pub struct Instance {
    /// Bound address of each listener, by name.
    pub addresses: BTreeMap<String, SocketAddr>,
    /// The counter region (for tests and status).
    pub region: Arc<Region>,
    /// Bound address of the admin endpoint, if the config has one.
    pub admin: Option<SocketAddr>,
    stop: watch::Sender<Stop>,
    thread: Option<JoinHandle<()>>,
    /// The one health checker (outside every worker); stopped after them.
    health: Option<HealthHandle>,
}

impl Instance {
    /// Compiles `config`, binds its listeners and starts serving.
    pub fn start(config: &Config) -> anyhow::Result<Instance> {
        let runtime = Arc::new(runtime::compile(config)?);
        let mut sockets = Vec::with_capacity(config.listeners.len());
        let mut addresses = BTreeMap::new();
        for listener in &config.listeners {
            let defer = listener.client_speaks_first();
            let socket = crate::listener::bind(listener.listen, defer).with_context(|| {
                format!(
                    "listener `{}`: cannot bind {}",
                    listener.name, listener.listen
                )
            })?;
            addresses.insert(listener.name.clone(), socket.local_addr()?);
            sockets.push((listener.name.clone(), socket));
        }
        let region = Region::new(1)?;
        // Checked upstreams read down until their first check: wait for
        // that round (bounded by the largest check timeout) before serving.
        let health = HealthChecker::start(config, Arc::clone(&region))?;
        health.wait_first_round();
        let admin = match &config.admin {
            Some(admin) => {
                let socket = crate::admin::bind(admin.listen)?;
                let state = AdminState {
                    config: config.clone(),
                    slots: runtime.slots.clone(),
                    region: Arc::clone(&region),
                    bound: addresses.clone(),
                };
                Some((admin.listen, socket, state))
            }
            None => None,
        };
        let admin_address = match &admin {
            Some((_, socket, _)) => Some(socket.local_addr()?),
            None => None,
        };
        let row = region.worker_row(0);
        let (stop, stopped) = watch::channel(Stop::Running);
        let drain_timeout = config.drain_timeout;
        let thread = std::thread::Builder::new()
            .name("sluice-worker".into())
            .spawn(move || serve(runtime, row, sockets, admin, stopped, drain_timeout))?;
        Ok(Instance {
            addresses,
            admin: admin_address,
            region,
            stop,
            thread: Some(thread),
            health: Some(health),
        })
    }

    /// The bound address of listener `name`.
    pub fn address(&self, name: &str) -> SocketAddr {
        self.addresses[name]
    }

    /// Stops accepting, lets open connections finish (up to the drain
    /// timeout) and waits for the worker to end.
    pub fn stop(mut self) {
        self.shutdown(Stop::Drain);
    }

    fn shutdown(&mut self, how: Stop) {
        let _ = self.stop.send(how);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        if let Some(health) = self.health.take() {
            health.stop();
        }
    }
}

/// Dropping an instance stops it at once: open connections are cut
/// (`stop()` drains them).
impl Drop for Instance {
    fn drop(&mut self) {
        self.shutdown(Stop::Now);
    }
}

/// How the in-process worker is asked to end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    Running,
    /// Stop accepting and let open connections finish (drain).
    Drain,
    /// End now, cutting open connections.
    Now,
}

/// What the in-process admin endpoint renders from (one worker, which
/// never restarts, and no reloads).
struct AdminState {
    config: Config,
    slots: Slots,
    region: Arc<Region>,
    bound: BTreeMap<String, SocketAddr>,
}

impl AdminState {
    fn render(&self, page: Page) -> String {
        Snapshot {
            config: &self.config,
            slots: &self.slots,
            region: &self.region,
            bound: self.bound.iter().map(|(n, a)| (n.as_str(), *a)).collect(),
            workers: vec![WorkerInfo {
                pid: Some(std::process::id()),
                state: "running",
                restarts: 0,
            }],
            reloads: (0, 0),
            generation: 1,
        }
        .render(page)
    }
}

fn serve(
    runtime: Arc<Runtime>,
    row: Row,
    sockets: Vec<(String, std::net::TcpListener)>,
    admin: Option<(SocketAddr, std::net::TcpListener, AdminState)>,
    mut stopped: watch::Receiver<Stop>,
    drain_timeout: Duration,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            tracing::error!(%error, "cannot start the worker runtime");
            return;
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let worker = Worker::new(row, Arc::clone(&runtime));
        let mut listeners = ListenerSet::default();
        listeners.apply(&worker, &runtime, sockets).closed().await;
        let _admin = admin.and_then(|(configured, socket, state)| {
            let state = Rc::new(state);
            let renderer: Renderer = Rc::new(move |page| {
                let page = state.render(page);
                Box::pin(async move { Some(page) })
            });
            AdminHandle::start(configured, socket, renderer)
                .inspect_err(|error| tracing::error!(%error, "cannot serve the admin endpoint"))
                .ok()
        });
        let how = stopped
            .wait_for(|stop| *stop != Stop::Running)
            .await
            .map_or(Stop::Now, |how| *how);
        listeners.stop_all().closed().await;
        if how == Stop::Now {
            return;
        }
        let drained = async {
            tokio::select! {
                () = worker.drained() => {}
                _ = stopped.wait_for(|stop| *stop == Stop::Now) => {}
            }
        };
        if tokio::time::timeout(drain_timeout, drained).await.is_err() {
            tracing::warn!("drain timeout reached; closing remaining connections");
        }
    });
}
