//! Running the balancer: bind every listener once, then serve them.
//!
//! [`Instance::start`] binds the listeners of a validated config and runs a
//! worker on its own thread (a current-thread tokio runtime, like every
//! worker); tests use it with `127.0.0.1:0` listeners and read the bound
//! addresses back. [`run`] is `sluice run`: start, log the ready line, wait
//! for SIGINT/SIGTERM, then drain for up to `drain_timeout`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::watch;

use crate::config::Config;
use crate::counters::Region;
use crate::health::{HealthChecker, HealthHandle};
use crate::http::Worker;
use crate::runtime::{self, ListenerKind, Runtime};

/// A running balancer.
#[derive(Debug)]
pub struct Instance {
    /// Bound address of each listener, by name.
    pub addresses: BTreeMap<String, SocketAddr>,
    /// The counter region (for status and tests).
    pub region: Arc<Region>,
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
    /// The one health checker (outside every worker); stopped after them.
    health: Option<HealthHandle>,
}

impl Instance {
    /// Compiles `config`, binds its listeners and starts serving.
    pub fn start(config: &Config) -> anyhow::Result<Instance> {
        let runtime = Arc::new(runtime::compile(config)?);
        let mut sockets = Vec::with_capacity(runtime.listeners.len());
        let mut addresses = BTreeMap::new();
        for listener in &runtime.listeners {
            let socket = crate::listener::bind(listener.listen).with_context(|| {
                format!(
                    "listener `{}`: cannot bind {}",
                    listener.name, listener.listen
                )
            })?;
            addresses.insert(listener.name.clone(), socket.local_addr()?);
            sockets.push(socket);
        }
        let region = Region::new(1)?;
        // Checked upstreams read down until their first check: wait for
        // that round (bounded by the largest check timeout) before serving.
        let health = HealthChecker::start(config, Arc::clone(&region))?;
        health.wait_first_round();
        let row = region.worker_row(0);
        let (stop, stopped) = watch::channel(false);
        let drain_timeout = config.drain_timeout;
        let thread = std::thread::Builder::new()
            .name("sluice-worker".into())
            .spawn(move || worker_main(runtime, row, sockets, stopped, drain_timeout))?;
        Ok(Instance {
            addresses,
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
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        if let Some(health) = self.health.take() {
            health.stop();
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn worker_main(
    runtime: Arc<Runtime>,
    row: crate::counters::Row,
    sockets: Vec<std::net::TcpListener>,
    stopped: watch::Receiver<bool>,
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
        for (index, socket) in sockets.into_iter().enumerate() {
            let listener = match tokio::net::TcpListener::from_std(socket) {
                Ok(listener) => listener,
                Err(error) => {
                    tracing::error!(%error, "cannot register a listener");
                    continue;
                }
            };
            let stop = stopped.clone();
            let worker = std::rc::Rc::clone(&worker);
            match runtime.listeners[index].kind {
                ListenerKind::Http(_) => {
                    tokio::task::spawn_local(crate::http::serve(listener, worker, index, stop))
                }
                ListenerKind::Tcp(_) => {
                    tokio::task::spawn_local(crate::tcp::serve(listener, worker, index, stop))
                }
            };
        }
        let mut stopped = stopped;
        let _ = stopped.wait_for(|stop| *stop).await;
        if tokio::time::timeout(drain_timeout, worker.drained())
            .await
            .is_err()
        {
            tracing::warn!("drain timeout reached; closing remaining connections");
        }
    });
}

/// `sluice run`: serve `config` until SIGINT or SIGTERM.
pub fn run(config: &Config) -> anyhow::Result<()> {
    let instance = Instance::start(config)?;
    let listeners: Vec<String> = instance
        .addresses
        .iter()
        .map(|(name, addr)| format!("{name}={addr}"))
        .collect();
    tracing::info!(config = %config.source.display(), listeners = %listeners.join(" "), "sluice ready");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(wait_for_stop_signal())?;
    tracing::info!(drain_timeout = ?config.drain_timeout, "stopping: draining open connections");
    instance.stop();
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_stop_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    Ok(())
}
