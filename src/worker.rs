//! A worker: serves the listeners of the current config generation on one
//! thread (a current-thread tokio runtime), and, as a process, obeys its
//! supervisor.
//!
//! [`ListenerSet`] keeps one accept loop per listener name: a reload keeps
//! the loops of listeners whose socket did not change, starts new ones and
//! stops removed ones (their open connections finish on their own).
//! [`run_process`] is the hidden `sluice worker` command the supervisor
//! re-executes: it maps the counter region, receives configs and listening
//! sockets over its channel, applies them, sends heartbeats, and exits when
//! told to stop or when the supervisor is gone.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::{oneshot, watch};

use crate::channel::{Channel, ChannelError, ConfigMessage, Message};
use crate::counters::Region;
use crate::http::Worker;
use crate::runtime::{self, ListenerKind, Runtime};

/// Descriptor number of the channel in a worker process.
pub const CHANNEL_FD: i32 = 3;
/// Descriptor number of the counter region in a worker process.
pub const REGION_FD: i32 = 4;
/// How often a worker tells its supervisor it is alive.
pub const HEARTBEAT: Duration = Duration::from_millis(500);

/// The accept loops a worker runs, by listener name.
#[derive(Debug, Default)]
pub struct ListenerSet {
    running: HashMap<String, Running>,
}

#[derive(Debug)]
struct Running {
    address: SocketAddr,
    http: bool,
    stop: watch::Sender<bool>,
    /// Resolves once the accept loop has ended and closed its socket.
    closed: oneshot::Receiver<()>,
}

/// Accept loops told to stop; [`Stopping::closed`] resolves once none of
/// them holds its listening socket any more.
#[derive(Debug, Default)]
#[must_use = "wait for the stopped listeners to close before reporting a reload as applied"]
pub struct Stopping(Vec<oneshot::Receiver<()>>);

impl Stopping {
    /// Waits until every stopped accept loop has closed its socket, so a
    /// removed listener refuses connections from then on.
    pub async fn closed(self) {
        for closed in self.0 {
            let _ = closed.await;
        }
    }
}

impl ListenerSet {
    /// Serves `sockets` (name, listening socket) for `runtime`, which the
    /// worker has already switched to: keeps loops whose socket and mode
    /// are unchanged, starts the others, stops the ones no longer listed.
    pub fn apply(
        &mut self,
        worker: &Rc<Worker>,
        runtime: &Runtime,
        sockets: Vec<(String, std::net::TcpListener)>,
    ) -> Stopping {
        let mut stopping = Stopping::default();
        let mut wanted = HashMap::new();
        for (name, socket) in sockets {
            let Some(index) = runtime.listener_index(&name) else {
                continue;
            };
            let http = matches!(runtime.listeners[index].kind, ListenerKind::Http(_));
            let address = match socket.local_addr() {
                Ok(address) => address,
                Err(error) => {
                    tracing::error!(listener = %name, %error, "listening socket unusable");
                    continue;
                }
            };
            wanted.insert(name.clone(), ());
            if let Some(running) = self.running.get(&name)
                && running.address == address
                && running.http == http
            {
                continue;
            }
            if let Some(old) = self.running.remove(&name) {
                stopping.0.push(old.stop());
            }
            match start(worker, &name, socket, http) {
                Ok(running) => {
                    self.running.insert(
                        name,
                        Running {
                            address,
                            http,
                            ..running
                        },
                    );
                }
                Err(error) => tracing::error!(listener = %name, %error, "cannot serve listener"),
            }
        }
        for name in self
            .running
            .keys()
            .filter(|name| !wanted.contains_key(*name))
            .cloned()
            .collect::<Vec<_>>()
        {
            if let Some(removed) = self.running.remove(&name) {
                stopping.0.push(removed.stop());
            }
        }
        stopping
    }

    /// Stops every accept loop; open connections are told to finish.
    pub fn stop_all(&mut self) -> Stopping {
        Stopping(
            self.running
                .drain()
                .map(|(_, running)| running.stop())
                .collect(),
        )
    }
}

impl Running {
    /// Tells the accept loop (and its connections) to stop.
    fn stop(self) -> oneshot::Receiver<()> {
        let _ = self.stop.send(true);
        self.closed
    }
}

/// Starts the accept loop of one listener.
fn start(
    worker: &Rc<Worker>,
    name: &str,
    socket: std::net::TcpListener,
    http: bool,
) -> std::io::Result<Running> {
    socket.set_nonblocking(true)?;
    let address = socket.local_addr()?;
    let listener = tokio::net::TcpListener::from_std(socket)?;
    let (stop, stopped) = watch::channel(false);
    let (closed_tx, closed) = oneshot::channel();
    let name: Rc<str> = Rc::from(name);
    let worker = Rc::clone(worker);
    tokio::task::spawn_local(async move {
        if http {
            crate::http::serve(listener, worker, name, stopped).await;
        } else {
            crate::tcp::serve(listener, worker, name, stopped).await;
        }
        // The loop's future, and with it the listening socket, is gone.
        let _ = closed_tx.send(());
    });
    Ok(Running {
        address,
        http,
        stop,
        closed,
    })
}

/// A config generation ready to switch to.
struct Generation {
    runtime: Runtime,
    /// Listening sockets by listener name, applied after the switch.
    sockets: Vec<(String, std::net::TcpListener)>,
    drain_timeout: Duration,
}

/// Parses and compiles a config message.
fn compile(message: ConfigMessage) -> anyhow::Result<Generation> {
    let config = crate::config::parse_validated(&message.text, &message.source)
        .map_err(|errors| anyhow::anyhow!("{errors}"))?;
    let runtime = runtime::compile_with(&config, &message.slots)?;
    let sockets = message
        .listeners
        .into_iter()
        .map(|(name, fd)| (name, std::net::TcpListener::from(fd)))
        .collect();
    Ok(Generation {
        runtime,
        sockets,
        drain_timeout: config.drain_timeout,
    })
}

/// Whether workers can run as `user`: it exists, and this process is
/// root or already that user. Checked by `sluice check`, at start and on
/// reload, so a wrong `user:` is a clear error there instead of workers
/// that fail to start, again and again, behind a balancer that says it is
/// ready.
pub fn check_user(user: &str) -> anyhow::Result<()> {
    let entry = find_user(user)?;
    let me = nix::unistd::geteuid();
    if !me.is_root() && me != entry.uid {
        anyhow::bail!(
            "`user: {user}` needs sluice to run as root (it runs as uid {me}); remove `user:` to run workers as uid {me}"
        );
    }
    Ok(())
}

fn find_user(user: &str) -> anyhow::Result<nix::unistd::User> {
    nix::unistd::User::from_name(user)
        .with_context(|| format!("looking up user `{user}`"))?
        .ok_or_else(|| anyhow::anyhow!("`user: {user}`: no such user"))
}

/// Drops this process to `user` and its primary group (supplementary
/// groups cleared first, then the group, then the user: the order that
/// leaves no privilege behind). Nothing to drop when it already runs as
/// that user.
fn drop_privileges(user: &str) -> anyhow::Result<()> {
    use nix::unistd::{geteuid, setgid, setgroups, setuid};
    let entry = find_user(user)?;
    if !geteuid().is_root() && geteuid() == entry.uid {
        return Ok(());
    }
    setgroups(&[entry.gid]).context("setgroups")?;
    setgid(entry.gid).context("setgid")?;
    setuid(entry.uid).context("setuid")?;
    Ok(())
}

/// Names this process `sluice` for `top`, `pgrep` and `pidof`: started
/// from `/proc/self/exe`, it would be named `exe`.
fn name_process() {
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16
    // bytes from the pointer, which the literal provides for the call.
    let named = unsafe { libc::prctl(libc::PR_SET_NAME, c"sluice".as_ptr() as libc::c_ulong) };
    if named != 0 {
        tracing::debug!("cannot name the worker process");
    }
}

/// `sluice worker`: the process side of a worker. Descriptors 3 (channel)
/// and 4 (counter region) were set up by the supervisor; `user`, if set,
/// is who the worker runs as once it holds them.
pub fn run_process(
    index: usize,
    workers: usize,
    supervisor: u32,
    user: Option<&str>,
) -> anyhow::Result<()> {
    use rustix::process::{Signal, getppid, set_parent_process_death_signal};
    set_parent_process_death_signal(Some(Signal::KILL)).context("PR_SET_PDEATHSIG")?;
    name_process();
    if getppid().map(|p| p.as_raw_nonzero().get() as u32) != Some(supervisor) {
        anyhow::bail!("supervisor {supervisor} is gone");
    }
    // SAFETY: the supervisor placed these descriptors at these numbers for
    // this process and nothing else in it owns them.
    let (channel_fd, region_fd) = unsafe {
        (
            OwnedFd::from_raw_fd(CHANNEL_FD),
            OwnedFd::from_raw_fd(REGION_FD),
        )
    };
    let region = Region::open(region_fd, workers).context("mapping the counter region")?;
    if let Some(user) = user {
        drop_privileges(user).with_context(|| format!("dropping privileges to `{user}`"))?;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    // The supervised loop runs as a task of its own: the future handed to
    // `block_on` is polled again whenever any task of the set wakes, and a
    // select over the channel, the heartbeat and three signals is not worth
    // polling once per request.
    local.block_on(&rt, async move {
        let supervised = tokio::task::spawn_local(async move {
            let channel = Channel::new(channel_fd)?;
            serve_supervised(channel, region, index).await
        });
        match supervised.await {
            Ok(result) => result,
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        }
    })
}

async fn serve_supervised(
    channel: Channel,
    region: Arc<Region>,
    index: usize,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let Message::Config(first) = channel.recv().await? else {
        anyhow::bail!("the first message from the supervisor was not a config");
    };
    let generation = first.generation;
    let Generation {
        runtime,
        sockets,
        mut drain_timeout,
    } = compile(first)?;
    let runtime = Arc::new(runtime);
    let worker = Worker::new(region.worker_row(index), Arc::clone(&runtime));
    let mut listeners = ListenerSet::default();
    listeners.apply(&worker, &runtime, sockets).closed().await;
    channel.send(&Message::Applied(generation)).await?;

    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut quit = signal(SignalKind::quit())?;
    loop {
        tokio::select! {
            message = channel.recv() => match message {
                Ok(Message::Config(config)) => {
                    let generation = config.generation;
                    match compile(config) {
                        Ok(Generation { runtime, sockets, drain_timeout: drain }) => {
                            let runtime = Arc::new(runtime);
                            worker.runtime.store(Arc::clone(&runtime));
                            listeners.apply(&worker, &runtime, sockets).closed().await;
                            drain_timeout = drain;
                            channel.send(&Message::Applied(generation)).await?;
                        }
                        Err(error) => channel.send(&Message::Rejected(generation, format!("{error:#}"))).await?,
                    }
                }
                Ok(Message::Stop) => break,
                Ok(other) => tracing::warn!(?other, "unexpected message from the supervisor"),
                Err(ChannelError::Closed) => {
                    tracing::warn!("supervisor gone; exiting");
                    std::process::exit(1);
                }
                Err(error) => return Err(error.into()),
            },
            _ = heartbeat.tick() => {
                crate::http::parking::return_freed_memory();
                channel.send(&Message::Heartbeat).await?;
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = quit.recv() => std::process::exit(0),
        }
    }
    listeners.stop_all().closed().await;
    let drained = async {
        tokio::select! {
            () = worker.drained() => {}
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
            _ = quit.recv() => {}
        }
    };
    if tokio::time::timeout(drain_timeout, drained).await.is_err() {
        tracing::warn!("drain timeout reached; closing remaining connections");
    }
    Ok(())
}
