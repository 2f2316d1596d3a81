//! `sluice run`: the supervisor process.
//!
//! It validates the config, binds every listener once, creates the counter
//! region, and spawns `workers` worker processes (this binary re-executed
//! as `sluice worker`) that receive the config and the listening sockets
//! over a channel each. Then it waits for events:
//! - a worker that exits is replaced (with capped exponential backoff when
//!   it keeps dying); its counters are folded into the retired row first;
//! - a worker that misses heartbeats for [`WATCHDOG`] is killed and replaced;
//! - SIGHUP or `sluice reload`: validate, bind new listeners, push the new
//!   generation to every worker, which switch in place;
//! - SIGTERM/SIGINT or `sluice stop`: workers stop accepting and drain; a
//!   second signal or SIGQUIT ends everything at once;
//! - `sluice status`: a table of workers, listeners and upstreams;
//! - the admin endpoint (`admin`): `/metrics`, `/status`, `/healthz`.

mod admin;
pub mod control;
pub mod diff;
mod status;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use command_fds::{CommandFdExt, FdMapping};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};

use crate::channel::{self, Channel, ConfigMessage, Message};
use crate::config::{self, Config, Workers};
use crate::counters::{Carried, Region};
use crate::health::{HealthChecker, HealthHandle, Target, targets_with};
use crate::runtime::{self, slots::Slots};
use crate::worker::{CHANNEL_FD, REGION_FD};
use control::Command;

/// A worker silent for this long is killed and replaced.
pub const WATCHDOG: Duration = Duration::from_secs(5);
/// A worker that lived less than this counts as failing at start.
const QUICK_DEATH: Duration = Duration::from_secs(10);
/// Longest wait before restarting a worker that keeps dying.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long a reload waits for every worker to apply it.
const APPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// A listening socket the supervisor owns.
#[derive(Debug)]
struct Bound {
    name: String,
    configured: SocketAddr,
    socket: std::net::TcpListener,
}

/// Where a listener of a new config gets its socket from.
enum Source {
    /// The socket at this index of the current ones.
    Kept(usize),
    /// A socket bound for it.
    New(std::net::TcpListener),
}

/// The sockets for `listeners`: each keeps the current socket of the same
/// listener (name and address), else of a renamed one on the same fixed
/// address, else gets a new one. Sockets of listeners that are gone are
/// closed. If a bind fails, the sockets bound so far are closed and
/// `current` is left as it was, so a refused reload leaves no stray
/// listening socket and no kept one under a name the config lacks.
fn rebind(
    current: &mut Vec<Bound>,
    listeners: &[config::ListenerConfig],
) -> Result<Vec<Bound>, String> {
    let mut claimed = vec![false; current.len()];
    let mut sources = Vec::with_capacity(listeners.len());
    for listener in listeners {
        let unclaimed = |index: &usize| !claimed[*index];
        let same = (0..current.len())
            .filter(unclaimed)
            .find(|&i| current[i].name == listener.name && current[i].configured == listener.listen)
            .or_else(|| {
                (0..current.len()).filter(unclaimed).find(|&i| {
                    current[i].configured == listener.listen && listener.listen.port() != 0
                })
            });
        let source = match same {
            Some(index) => {
                claimed[index] = true;
                Source::Kept(index)
            }
            None => crate::listener::bind(listener.listen, listener.client_speaks_first())
                .map(Source::New)
                .map_err(|error| {
                    format!(
                        "listener `{}`: cannot bind {}: {error}\n",
                        listener.name, listener.listen
                    )
                })?,
        };
        sources.push(source);
    }
    let mut previous: Vec<Option<Bound>> = std::mem::take(current).into_iter().map(Some).collect();
    let bound = listeners
        .iter()
        .zip(sources)
        .map(|(listener, source)| Bound {
            name: listener.name.clone(),
            configured: listener.listen,
            socket: match source {
                Source::Kept(index) => previous[index].take().expect("claimed once").socket,
                Source::New(socket) => socket,
            },
        })
        .collect();
    Ok(bound)
}

/// What the supervisor knows of one worker index.
#[derive(Debug)]
struct WorkerState {
    pid: Option<u32>,
    channel: Option<Rc<Channel>>,
    started: Instant,
    last_seen: Instant,
    quick_deaths: u32,
    restarts: u64,
    applied: u64,
}

/// Things that happen to the supervisor.
enum Event {
    Message(usize, u32, Message),
    Exited(usize, u32, std::process::ExitStatus),
    Respawn(usize),
    /// The first checks of a reload's new upstreams are done: the reload of
    /// this generation can go to the workers.
    ChecksDone(u64),
    Control(Command, oneshot::Sender<(bool, String)>),
    Admin(crate::admin::Page, oneshot::Sender<String>),
}

/// An upstream a reload moved to another address: its old and new
/// counter slots, and what was carried from one to the other so far.
struct Carry {
    from: usize,
    to: usize,
    carried: Carried,
}

/// A reload waiting for workers to apply it.
struct PendingReload {
    generation: u64,
    /// Whether the config went to the workers (after the first checks).
    sent: bool,
    waiting: HashSet<usize>,
    summary: String,
    reply: Option<oneshot::Sender<(bool, String)>>,
    deadline: Instant,
    /// Upstreams moved to another address, carried again once the workers
    /// applied the reload.
    carries: Vec<Carry>,
}

struct Supervisor {
    config: Config,
    text: String,
    generation: u64,
    slots: Slots,
    bound: Vec<Bound>,
    region: Arc<Region>,
    workers: Vec<WorkerState>,
    events: mpsc::UnboundedSender<Event>,
    pending: Option<PendingReload>,
    /// A SIGHUP came while `pending` was under way: reload again once it
    /// ends, so an edit made meanwhile is not lost.
    reload_queued: bool,
    stopping: Option<Instant>,
    reloads: (u64, u64),
    health: HealthHandle,
    admin: Option<crate::admin::AdminHandle>,
}

/// How many workers `workers:` asks for: `auto` is one per CPU core.
fn worker_count(workers: Workers) -> usize {
    match workers {
        Workers::Auto => std::thread::available_parallelism().map_or(1, |n| n.get()),
        Workers::Count(n) => n.get(),
    }
}

/// What the health checker watches for `config`, at the supervisor's slots.
fn health_targets(config: &Config, slots: &Slots) -> Vec<Target> {
    targets_with(config, |_, upstream| {
        // `Slots::assign` gave every upstream of this config a slot.
        slots
            .upstream(&upstream.id, &upstream.address.to_string())
            .expect("every upstream has a slot")
    })
}

/// Runs the supervisor for the config at `path` until stopped.
pub fn run(path: &Path) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Signal handlers first: a SIGHUP or SIGTERM during start-up is queued
    // and handled once the event loop runs, instead of killing the process.
    let signals = {
        let _context = rt.enter();
        Signals::new()?
    };
    let (config, text) =
        config::load_with_text(path).map_err(|errors| anyhow::anyhow!("{errors}"))?;
    runtime::compile(&config)?;
    if let Some(user) = &config.user {
        crate::worker::check_user(user)?;
    }
    raise_open_files_limit();
    let count = worker_count(config.workers);
    let slots = Slots::assign(&config, &Slots::default())?;
    let mut bound = Vec::new();
    for listener in &config.listeners {
        let socket = crate::listener::bind(listener.listen, listener.client_speaks_first())
            .with_context(|| {
                format!(
                    "listener `{}`: cannot bind {}",
                    listener.name, listener.listen
                )
            })?;
        bound.push(Bound {
            name: listener.name.clone(),
            configured: listener.listen,
            socket,
        });
    }
    let admin_socket = match &config.admin {
        Some(admin) => Some((admin.listen, crate::admin::bind(admin.listen)?)),
        None => None,
    };
    let region = Region::new(count)?;
    // Checked upstreams read down until their first check: wait for that
    // round (bounded by the largest check timeout) before serving.
    let health =
        HealthChecker::start_targets(health_targets(&config, &slots), Arc::clone(&region))?;
    health.wait_first_round();
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let (events, receiver) = mpsc::unbounded_channel();
        let now = Instant::now();
        let workers = (0..count)
            .map(|_| WorkerState {
                pid: None,
                channel: None,
                started: now,
                last_seen: now,
                quick_deaths: 0,
                restarts: 0,
                applied: 0,
            })
            .collect();
        let mut supervisor = Supervisor {
            config,
            text,
            generation: 1,
            slots,
            bound,
            region,
            workers,
            events,
            pending: None,
            reload_queued: false,
            stopping: None,
            reloads: (0, 0),
            health,
            admin: None,
        };
        if let Some((configured, socket)) = admin_socket {
            supervisor.apply_admin(admin::AdminChange::Start(configured, socket))?;
        }
        let dir = control::ensure_state_dir()?;
        let socket_path = control::socket_path(std::process::id());
        let _ = std::fs::remove_file(&socket_path);
        let control = UnixListener::bind(&socket_path)
            .with_context(|| format!("control socket {}", socket_path.display()))?;
        let _remove_socket = RemoveOnDrop(socket_path.clone());
        for index in 0..count {
            supervisor.spawn(index)?;
        }
        supervisor
            .wait_until_ready(receiver, control, &dir, signals)
            .await
    })
}

/// Raises the soft open-files limit to the hard one (each connection holds
/// one or two descriptors, and a TCP tunnel up to four more for its pipes
/// while it splices).
fn raise_open_files_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if let Some(hard) = limit.maximum
        && limit.current != Some(hard)
    {
        limit.current = Some(hard);
        match setrlimit(Resource::Nofile, limit) {
            Ok(()) => tracing::info!(limit = hard, "raised the open files limit"),
            Err(error) => tracing::warn!(%error, "cannot raise the open files limit"),
        }
    }
}

/// The signals the supervisor acts on.
struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    quit: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers (inside a runtime context).
    fn new() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            quit: signal(SignalKind::quit())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }
}

struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Supervisor {
    /// Starts worker `index` and hands it the current generation.
    fn spawn(&mut self, index: usize) -> anyhow::Result<()> {
        let (ours, theirs) = channel::pair()?;
        let region_fd = self.region.fd().try_clone_to_owned()?;
        // Ready before the child exists, so no failure leaves it running.
        let channel = Rc::new(Channel::new(ours)?);
        let message = self.config_message()?;
        // The binary this supervisor runs, also once it has been replaced
        // or removed on disk (an upgrade in place): the kernel keeps it.
        let mut command = tokio::process::Command::new("/proc/self/exe");
        // Named `sluice` in `ps`, not after the link it was started from.
        command
            .arg0("sluice")
            .arg("worker")
            .args([
                "--index",
                &index.to_string(),
                "--workers",
                &self.workers.len().to_string(),
            ])
            .args(["--supervisor", &std::process::id().to_string()])
            .stdin(std::process::Stdio::null());
        if let Some(user) = &self.config.user {
            command.args(["--user", user]);
        }
        command
            .fd_mappings(vec![
                FdMapping {
                    parent_fd: theirs,
                    child_fd: CHANNEL_FD,
                },
                FdMapping {
                    parent_fd: region_fd,
                    child_fd: REGION_FD,
                },
            ])
            .context("passing descriptors to the worker")?;
        let mut child = command.spawn().context("starting a worker")?;
        let pid = child.id().unwrap_or_default();
        let now = Instant::now();
        let state = &mut self.workers[index];
        state.pid = Some(pid);
        state.channel = Some(Rc::clone(&channel));
        state.started = now;
        state.last_seen = now;
        let events = self.events.clone();
        tokio::task::spawn_local(async move {
            if let Err(error) = channel.send(&Message::Config(message)).await {
                tracing::warn!(worker = index, %error, "cannot send the config to a new worker");
            }
            loop {
                tokio::select! {
                    status = child.wait() => {
                        if let Ok(status) = status {
                            let _ = events.send(Event::Exited(index, pid, status));
                        }
                        return;
                    }
                    message = channel.recv() => match message {
                        Ok(message) => {
                            let _ = events.send(Event::Message(index, pid, message));
                        }
                        Err(_) => {
                            if let Ok(status) = child.wait().await {
                                let _ = events.send(Event::Exited(index, pid, status));
                            }
                            return;
                        }
                    },
                }
            }
        });
        tracing::debug!(worker = index, pid, "worker started");
        Ok(())
    }

    /// The current generation as a message (with fresh copies of the
    /// listening sockets).
    fn config_message(&self) -> std::io::Result<ConfigMessage> {
        let listeners = self
            .bound
            .iter()
            .map(|b| Ok((b.name.clone(), OwnedFd::from(b.socket.try_clone()?))))
            .collect::<std::io::Result<_>>()?;
        Ok(ConfigMessage {
            generation: self.generation,
            source: self.config.source.clone(),
            text: self.text.clone(),
            slots: self.slots.clone(),
            listeners,
        })
    }

    /// Waits for every worker to apply the first config, announces
    /// readiness, then runs the event loop.
    async fn wait_until_ready(
        mut self,
        mut events: mpsc::UnboundedReceiver<Event>,
        control: UnixListener,
        dir: &Path,
        signals: Signals,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + APPLY_TIMEOUT;
        while self.workers.iter().any(|w| w.applied < self.generation) {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(event)) => self.handle(event)?,
                Ok(None) => anyhow::bail!("event channel closed"),
                Err(_) => {
                    tracing::warn!("not every worker reported ready in time; continuing");
                    break;
                }
            }
        }
        let listeners: Vec<String> = self
            .bound
            .iter()
            .map(|b| {
                format!(
                    "{}={}",
                    b.name,
                    b.socket
                        .local_addr()
                        .map_or_else(|_| b.configured.to_string(), |a| a.to_string())
                )
            })
            .collect();
        tracing::info!(
            pid = std::process::id(),
            workers = self.workers.len(),
            listeners = %listeners.join(" "),
            admin = %self.admin_address(),
            control = %dir.display(),
            "sluice ready"
        );
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
        self.event_loop(events, control, signals).await
    }

    async fn event_loop(
        mut self,
        mut events: mpsc::UnboundedReceiver<Event>,
        control: UnixListener,
        signals: Signals,
    ) -> anyhow::Result<()> {
        let Signals {
            mut terminate,
            mut interrupt,
            mut quit,
            mut hangup,
        } = signals;
        let mut watchdog = tokio::time::interval(Duration::from_millis(500));
        loop {
            if self.stopping.is_some() && self.workers.iter().all(|w| w.pid.is_none()) {
                tracing::info!("stopped");
                return Ok(());
            }
            tokio::select! {
                Some(event) = events.recv() => self.handle(event)?,
                _ = terminate.recv() => self.signal_stop(),
                _ = interrupt.recv() => self.signal_stop(),
                _ = quit.recv() => self.kill_all_and_exit(),
                _ = hangup.recv() => self.reload(None),
                accepted = control.accept() => match accepted {
                    Ok((stream, _)) => {
                        tokio::task::spawn_local(serve_control(stream, self.events.clone()));
                    }
                    Err(error) => {
                        // Out of descriptors, say: a pause instead of a
                        // loop that retries at full speed.
                        tracing::warn!(%error, "cannot accept a control connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                _ = watchdog.tick() => self.check_watchdog(),
            }
        }
    }

    fn handle(&mut self, event: Event) -> anyhow::Result<()> {
        match event {
            Event::Message(index, pid, message) => {
                if self.workers[index].pid != Some(pid) {
                    return Ok(());
                }
                self.workers[index].last_seen = Instant::now();
                match message {
                    Message::Applied(generation) => {
                        self.workers[index].applied = generation;
                        self.reload_progress(index, generation, None);
                    }
                    Message::Rejected(generation, error) => {
                        tracing::error!(worker = index, %error, "worker rejected the config");
                        self.reload_progress(index, generation, Some(error));
                    }
                    Message::Heartbeat => {}
                    Message::Config(_) | Message::Stop => {
                        tracing::warn!(worker = index, "unexpected message from a worker")
                    }
                }
            }
            Event::Exited(index, pid, status) => self.exited(index, pid, status),
            Event::ChecksDone(generation) => self.push_reload(generation),
            Event::Respawn(index) => {
                if self.stopping.is_none()
                    && self.workers[index].pid.is_none()
                    && let Err(error) = self.spawn(index)
                {
                    // Out of processes or descriptors, say: the others
                    // keep serving, and this one is tried again.
                    tracing::error!(
                        worker = index,
                        error = format!("{error:#}"),
                        "cannot start a worker"
                    );
                    // Counts as a quick death, so the retries back off.
                    self.workers[index].started = Instant::now();
                    self.schedule_respawn(index);
                }
            }
            Event::Admin(page, reply) => {
                let _ = reply.send(self.render_admin(page));
            }
            Event::Control(command, reply) => match command {
                Command::Status => {
                    let _ = reply.send((true, status::render(self)));
                }
                Command::Reload => self.reload(Some(reply)),
                Command::Stop => {
                    let _ = reply.send((true, "stopping\n".to_owned()));
                    self.begin_stop();
                }
            },
        }
        Ok(())
    }

    fn exited(&mut self, index: usize, pid: u32, status: std::process::ExitStatus) {
        let state = &mut self.workers[index];
        if state.pid != Some(pid) {
            return;
        }
        state.pid = None;
        state.channel = None;
        self.region.retire(index);
        if let Some(pending) = &mut self.pending {
            pending.waiting.remove(&index);
        }
        if self.stopping.is_some() {
            tracing::info!(worker = index, pid, %status, "worker stopped");
            return;
        }
        tracing::warn!(worker = index, pid, %status, "worker exited; replacing it");
        self.schedule_respawn(index);
    }

    /// Starts worker `index` again after a delay that doubles with each
    /// quick death in a row (a crash loop does not spin the CPU).
    fn schedule_respawn(&mut self, index: usize) {
        let state = &mut self.workers[index];
        let lived = state.started.elapsed();
        state.quick_deaths = if lived < QUICK_DEATH {
            state.quick_deaths + 1
        } else {
            0
        };
        state.restarts += 1;
        let delay = match state.quick_deaths {
            0 | 1 => Duration::ZERO,
            n => (Duration::from_millis(100) * 2u32.saturating_pow(n - 2)).min(MAX_BACKOFF),
        };
        tracing::debug!(worker = index, restart_in = ?delay, "worker restart scheduled");
        let events = self.events.clone();
        tokio::task::spawn_local(async move {
            tokio::time::sleep(delay).await;
            let _ = events.send(Event::Respawn(index));
        });
    }

    fn check_watchdog(&mut self) {
        // A stopping worker has left its loop and sends no heartbeats while
        // it drains; the stop's own deadline bounds it instead.
        for (index, state) in self.workers.iter().enumerate() {
            if let Some(pid) = state.pid
                && self.stopping.is_none()
                && state.last_seen.elapsed() > WATCHDOG
            {
                tracing::error!(worker = index, pid, "worker stopped answering; killing it");
                kill(pid, rustix::process::Signal::KILL);
            }
        }
        if let Some(pending) = &self.pending
            && pending.sent
            && (pending.waiting.is_empty() || Instant::now() > pending.deadline)
        {
            self.finish_reload(None);
        }
        if let Some(deadline) = self.stopping
            && Instant::now() > deadline
        {
            tracing::warn!("drain timeout reached; killing remaining workers");
            self.kill_all_and_exit();
        }
    }

    fn signal_stop(&mut self) {
        if self.stopping.is_some() {
            tracing::warn!("second stop signal: exiting now");
            self.kill_all_and_exit();
        }
        self.begin_stop();
    }

    fn begin_stop(&mut self) {
        if self.stopping.is_some() {
            return;
        }
        tracing::info!(drain_timeout = ?self.config.drain_timeout, "stopping: draining open connections");
        self.stopping = Some(Instant::now() + self.config.drain_timeout + Duration::from_secs(2));
        for state in &self.workers {
            if let Some(channel) = &state.channel {
                let channel = Rc::clone(channel);
                tokio::task::spawn_local(async move {
                    let _ = channel.send(&Message::Stop).await;
                });
            }
        }
    }

    fn kill_all_and_exit(&mut self) -> ! {
        for state in &self.workers {
            if let Some(pid) = state.pid {
                kill(pid, rustix::process::Signal::KILL);
            }
        }
        let _ = std::fs::remove_file(control::socket_path(std::process::id()));
        std::process::exit(0);
    }

    /// Starts a reload; `reply` (from `sluice reload`) gets the outcome.
    fn reload(&mut self, reply: Option<oneshot::Sender<(bool, String)>>) {
        if self.stopping.is_some() {
            answer(reply, false, "stopping; reload refused\n".to_owned());
            return;
        }
        if self.pending.is_some() {
            if reply.is_none() {
                tracing::info!("reload signal during a reload; reloading again once it ends");
                self.reload_queued = true;
            }
            answer(reply, false, "a reload is already in progress\n".to_owned());
            return;
        }
        match self.prepare_reload() {
            Ok((summary, carries)) => {
                // New upstreams take traffic only after their first check
                // (unchanged ones keep their state): the workers get the
                // config once those checks are done, waited for off the
                // event loop.
                self.health
                    .update_targets(health_targets(&self.config, &self.slots));
                let generation = self.generation;
                self.pending = Some(PendingReload {
                    generation,
                    sent: false,
                    waiting: HashSet::new(),
                    summary,
                    reply,
                    deadline: Instant::now() + APPLY_TIMEOUT,
                    carries,
                });
                let waiter = self.health.first_round_waiter();
                let events = self.events.clone();
                tokio::task::spawn_local(async move {
                    let _ = tokio::task::spawn_blocking(move || waiter.wait()).await;
                    let _ = events.send(Event::ChecksDone(generation));
                });
            }
            Err(errors) => {
                self.reloads.1 += 1;
                tracing::error!("reload refused; the running config stays:\n{errors}");
                answer(
                    reply,
                    false,
                    format!("{errors}reload refused; the running config stays\n"),
                );
            }
        }
    }

    /// Sends a prepared reload's config to every live worker.
    fn push_reload(&mut self, generation: u64) {
        let Some(pending) = &mut self.pending else {
            return;
        };
        if pending.generation != generation || pending.sent {
            return;
        }
        pending.sent = true;
        pending.deadline = Instant::now() + APPLY_TIMEOUT;
        pending.waiting = (0..self.workers.len())
            .filter(|&i| self.workers[i].pid.is_some())
            .collect();
        for (index, state) in self.workers.iter().enumerate() {
            let (Some(channel), Ok(message)) = (state.channel.clone(), self.config_message())
            else {
                continue;
            };
            tokio::task::spawn_local(async move {
                if let Err(error) = channel.send(&Message::Config(message)).await {
                    tracing::warn!(worker = index, %error, "cannot send the new config");
                }
            });
        }
        if self.pending.as_ref().is_some_and(|p| p.waiting.is_empty()) {
            self.finish_reload(None);
        }
    }

    /// Validates the file, binds new listeners and switches the
    /// supervisor's own state to the new generation. Nothing changes when
    /// it fails.
    fn prepare_reload(&mut self) -> Result<(String, Vec<Carry>), String> {
        let (config, text) =
            config::load_with_text(&self.config.source).map_err(|errors| format!("{errors}\n"))?;
        runtime::compile(&config)
            .map_err(|error| format!("{}: {error}\n", config.source.display()))?;
        if let Some(user) = &config.user {
            crate::worker::check_user(user)
                .map_err(|error| format!("{}: {error:#}\n", config.source.display()))?;
        }
        let slots = Slots::assign(&config, &self.slots).map_err(|error| format!("{error}\n"))?;
        let admin = admin::plan(self.admin.as_ref(), config.admin.as_ref())?;
        let bound = rebind(&mut self.bound, &config.listeners)?;
        // Only once the reload cannot fail: a kept socket may change mode,
        // and the old config must keep its settings if the reload is refused.
        for (listener, kept) in config.listeners.iter().zip(&bound) {
            let defer = listener.client_speaks_first();
            if let Err(error) = crate::listener::set_deferred_accept(&kept.socket, defer) {
                tracing::warn!(listener = %listener.name, %error, "cannot set deferred accept");
            }
        }
        let workers = (self.workers.len(), worker_count(config.workers));
        let summary = diff::describe(&self.config, &config, workers);
        self.bound = bound;
        self.config = config;
        self.text = text;
        let carries = self.carry_moved_upstreams(&slots);
        self.slots = slots;
        self.generation += 1;
        if let Err(error) = self.apply_admin(admin) {
            tracing::error!(%error, "cannot serve the admin endpoint");
        }
        Ok((summary, carries))
    }

    /// Starts the counters of slots new identities take over at zero and
    /// carries the totals of upstreams `slots` moves to another address
    /// (see [`Region::carry_upstream`]); returns the carries, to be done
    /// again once the workers applied the reload.
    fn carry_moved_upstreams(&self, slots: &Slots) -> Vec<Carry> {
        let moved = slots.moved_upstreams(&self.slots);
        // An upstream moved back onto its own slot keeps its counts there.
        let kept = |slot: &usize| moved.iter().any(|&(from, to)| from == to && to == *slot);
        for slot in slots.new_upstream_slots(&self.slots) {
            if !kept(&slot) {
                self.region.reset_upstream(slot);
            }
        }
        moved
            .into_iter()
            .filter(|(from, to)| from != to)
            .map(|(from, to)| {
                let mut carried = Carried::default();
                self.region.carry_upstream(from, to, &mut carried);
                Carry { from, to, carried }
            })
            .collect()
    }

    fn reload_progress(&mut self, index: usize, generation: u64, error: Option<String>) {
        let Some(pending) = &mut self.pending else {
            return;
        };
        if pending.generation != generation || !pending.sent {
            return;
        }
        pending.waiting.remove(&index);
        if error.is_some() || pending.waiting.is_empty() {
            self.finish_reload(error);
        }
    }

    fn finish_reload(&mut self, error: Option<String>) {
        let Some(mut pending) = self.pending.take() else {
            return;
        };
        for carry in &mut pending.carries {
            self.region
                .carry_upstream(carry.from, carry.to, &mut carry.carried);
        }
        match error {
            None => {
                self.reloads.0 += 1;
                if !pending.waiting.is_empty() {
                    tracing::warn!(workers = ?pending.waiting, "some workers did not confirm the reload in time");
                }
                tracing::info!(generation = pending.generation, changes = %pending.summary.trim_end().replace('\n', "; "), "config reloaded");
                answer(pending.reply, true, pending.summary);
            }
            Some(error) => {
                self.reloads.1 += 1;
                answer(
                    pending.reply,
                    false,
                    format!("a worker rejected the config: {error}\n"),
                );
            }
        }
        if std::mem::take(&mut self.reload_queued) {
            self.reload(None);
        }
    }
}

fn answer(reply: Option<oneshot::Sender<(bool, String)>>, ok: bool, text: String) {
    if let Some(reply) = reply {
        let _ = reply.send((ok, text));
    }
}

fn kill(pid: u32, signal: rustix::process::Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(pid, signal);
    }
}

/// One control connection: read the command, ask the event loop, answer.
async fn serve_control(stream: tokio::net::UnixStream, events: mpsc::UnboundedSender<Event>) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(tokio::io::AsyncReadExt::take(read, 256));
    if tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut line))
        .await
        .is_err()
    {
        return;
    }
    let (ok, text) = match Command::parse(&line) {
        Some(command) => {
            let (reply, answer) = oneshot::channel();
            if events.send(Event::Control(command, reply)).is_err() {
                return;
            }
            answer
                .await
                .unwrap_or((false, "supervisor is shutting down\n".to_owned()))
        }
        None => (false, format!("unknown command {:?}\n", line.trim())),
    };
    // A client that never reads must not keep this task and its socket.
    let answer = format!("{}\n{text}", if ok { "ok" } else { "error" });
    let _ = tokio::time::timeout(Duration::from_secs(5), write.write_all(answer.as_bytes())).await;
}
