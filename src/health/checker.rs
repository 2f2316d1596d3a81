//! Scheduling: one prober task per checked upstream plus one passive
//! poller, all on one current-thread tokio runtime in a thread of its own
//! (never a worker's), writing results to the health row of the region.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::HealthError;
use super::probe::{Probe, ProbeError};
use super::state::{State, Thresholds, Transition};
use crate::config::{
    Config, HealthCheckKind, ListenerMode, ProxyProtocolVersion, RuleAction, UpstreamConfig,
};
use crate::counters::{CheckResult, Region, UpstreamCounter};

/// How often the passive detector reads the live connect-error totals.
pub const PASSIVE_POLL: Duration = Duration::from_millis(50);

/// Extra time `wait_first_round` allows beyond the largest check timeout,
/// for scheduling.
const FIRST_ROUND_SLACK: Duration = Duration::from_millis(250);

/// One upstream to check: what the checker needs from the config, plus the
/// counter slot its health and results live in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Upstream id (logs).
    pub id: String,
    /// Its slot in the region's health row and upstream counters.
    pub slot: usize,
    /// How to check it.
    pub probe: Probe,
}

impl Target {
    /// Identity across reloads: same id and address is the same upstream.
    fn key(&self) -> Key {
        (self.id.clone(), self.probe.address.to_string())
    }

    fn checked(&self) -> bool {
        self.probe.check.kind != HealthCheckKind::None
    }

    /// Whether `other` asks its upstream the same question (kind, path,
    /// host, statuses); timing and thresholds aside. When a reload changes
    /// the question, the old answers say nothing about the new one.
    fn asks_as(&self, other: &Target) -> bool {
        let (a, b) = (&self.probe.check, &other.probe.check);
        a.kind == b.kind
            && a.path == b.path
            && a.host == b.host
            && a.expect_status == b.expect_status
            && self.probe.proxy_protocol == other.probe.proxy_protocol
    }
}

type Key = (String, String);

/// The targets of `config`, with each upstream's slot given by `slot_of`
/// (upstream index in the config, upstream) so the slot policy lives with
/// whoever compiles the config.
pub fn targets_with(
    config: &Config,
    slot_of: impl Fn(usize, &UpstreamConfig) -> usize,
) -> Vec<Target> {
    config
        .upstreams
        .iter()
        .enumerate()
        .map(|(index, upstream)| Target {
            id: upstream.id.clone(),
            slot: slot_of(index, upstream),
            probe: Probe {
                address: upstream.address.clone(),
                check: upstream.health_check.clone(),
                proxy_protocol: proxy_protocol_to(config, &upstream.id),
            },
        })
        .collect()
}

/// The PROXY protocol version an upstream's traffic starts with: that of
/// the tcp listeners using it, when they all send the same one and no
/// HTTP rule uses it (else its probes send none).
fn proxy_protocol_to(config: &Config, id: &str) -> Option<ProxyProtocolVersion> {
    let mut versions = config.listeners.iter().filter_map(|listener| match &listener.mode {
        ListenerMode::Tcp(tcp) => tcp
            .pool
            .upstreams
            .iter()
            .any(|u| u == id)
            .then_some(tcp.proxy_protocol),
        ListenerMode::Http(http) => http
            .rules
            .iter()
            .any(|rule| {
                matches!(&rule.action, RuleAction::Proxy { pool, .. } if pool.upstreams.iter().any(|u| u == id))
            })
            .then_some(None),
    });
    let first = versions.next()??;
    versions.all(|v| v == Some(first)).then_some(first)
}

/// The targets of `config` with today's slot policy: slot = index in
/// `config.upstreams` (what `runtime::compile` assigns).
pub fn targets(config: &Config) -> Vec<Target> {
    targets_with(config, |index, _| index)
}

/// The health checker of the whole balancer. Exists once, in the
/// supervisor: workers only read what it writes.
#[derive(Debug)]
pub struct HealthChecker;

impl HealthChecker {
    /// Starts checking every upstream of `config`. Checked upstreams read
    /// down until their first check passes; `none` ones read up at once.
    pub fn start(config: &Config, region: Arc<Region>) -> Result<HealthHandle, HealthError> {
        HealthChecker::start_targets(targets(config), region)
    }

    /// Starts checking `targets` (for callers with their own slot policy).
    pub fn start_targets(
        targets: Vec<Target>,
        region: Arc<Region>,
    ) -> Result<HealthHandle, HealthError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(HealthError::Runtime)?;
        let (commands, receiver) = mpsc::unbounded_channel();
        let mut handle = HealthHandle {
            commands,
            thread: None,
            first_round: Arc::new(FirstRound::default()),
            region: Arc::clone(&region),
            known: HashMap::new(),
            max_timeout: Duration::ZERO,
        };
        handle.register(&targets);
        let first_round = Arc::clone(&handle.first_round);
        let thread = std::thread::Builder::new()
            .name("sluice-health".into())
            .spawn(move || {
                let local = tokio::task::LocalSet::new();
                local.block_on(&runtime, run(targets, region, first_round, receiver));
            })
            .map_err(HealthError::Thread)?;
        handle.thread = Some(thread);
        Ok(handle)
    }
}

/// Counts upstreams whose first check has not finished yet.
#[derive(Debug, Default)]
struct FirstRound {
    pending: Mutex<usize>,
    done: Condvar,
}

/// Waits for the first round of checks from any thread (see
/// [`HealthHandle::first_round_waiter`]).
#[derive(Debug)]
pub struct FirstRoundWaiter {
    first_round: Arc<FirstRound>,
    limit: Duration,
}

impl FirstRoundWaiter {
    /// Blocks until no upstream waits for its first check, or the limit.
    pub fn wait(&self) -> bool {
        let deadline = std::time::Instant::now() + self.limit;
        let mut pending = lock(&self.first_round.pending);
        while *pending > 0 {
            let now = std::time::Instant::now();
            if now >= deadline {
                tracing::warn!(
                    pending = *pending,
                    "first health-check round not finished in time; unchecked upstreams stay down until their first check"
                );
                return false;
            }
            pending = self
                .first_round
                .done
                .wait_timeout(pending, deadline - now)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        true
    }
}

impl FirstRound {
    fn add(&self, n: usize) {
        *lock(&self.pending) += n;
    }

    fn finish_one(&self) {
        let mut pending = lock(&self.pending);
        *pending = pending.saturating_sub(1);
        if *pending == 0 {
            self.done.notify_all();
        }
    }

    fn clear(&self) {
        *lock(&self.pending) = 0;
        self.done.notify_all();
    }
}

/// Locks a mutex, ignoring poisoning: the data is a plain counter that a
/// panicking holder cannot leave half-written.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

enum Command {
    Update(Vec<Target>),
    Stop,
}

/// Control of a running [`HealthChecker`]: wait for the first round, apply
/// a reloaded config, stop. Dropping it stops the checker.
#[derive(Debug)]
pub struct HealthHandle {
    commands: mpsc::UnboundedSender<Command>,
    thread: Option<JoinHandle<()>>,
    first_round: Arc<FirstRound>,
    region: Arc<Region>,
    /// Every upstream being checked, by identity.
    known: HashMap<Key, Target>,
    /// Largest check timeout among the current targets.
    max_timeout: Duration,
}

impl HealthHandle {
    /// Blocks until every upstream not yet checked has had its first
    /// check, bounded by the largest check timeout (plus a little slack).
    /// Returns false (and logs) when that bound ran out first.
    pub fn wait_first_round(&self) -> bool {
        self.first_round_waiter().wait()
    }

    /// The same wait, to run on another thread (an event loop hands it to
    /// a blocking task rather than stopping for it).
    pub fn first_round_waiter(&self) -> FirstRoundWaiter {
        FirstRoundWaiter {
            first_round: Arc::clone(&self.first_round),
            limit: self.max_timeout + FIRST_ROUND_SLACK,
        }
    }

    /// Applies a reloaded config: unchanged upstreams (same id and address)
    /// keep their state, new ones read down until their first check passes,
    /// removed ones stop being checked. Call [`wait_first_round`] after it
    /// to let new upstreams be checked before traffic reaches them.
    ///
    /// [`wait_first_round`]: HealthHandle::wait_first_round
    pub fn update(&mut self, config: &Config) {
        self.update_targets(targets(config));
    }

    /// [`update`](HealthHandle::update) with an explicit slot policy.
    pub fn update_targets(&mut self, targets: Vec<Target>) {
        self.register(&targets);
        let _ = self.commands.send(Command::Update(targets));
    }

    /// Stops every prober and waits for the checker thread to end.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let _ = self.commands.send(Command::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.first_round.clear();
    }

    /// The synchronous part of start and update: the health row is right
    /// for every target before the call returns, so no worker can pick an
    /// unchecked upstream.
    fn register(&mut self, targets: &[Target]) {
        // A kept upstream whose slot moved carries its state along; read
        // every old value before writing any new one.
        let carried: Vec<(usize, bool)> = targets
            .iter()
            .filter_map(|t| {
                let old = self.known.get(&t.key())?.slot;
                (old != t.slot).then(|| (t.slot, self.region.is_up(old)))
            })
            .collect();
        for (slot, up) in carried {
            self.region.set_up(slot, up);
        }
        let mut fresh = 0;
        for target in targets {
            match self.known.get(&target.key()) {
                Some(old) if old.asks_as(target) => continue,
                // A new question: its first answer decides (the reload
                // waits for it); until then the state stays as it was,
                // for the workers still on the old config.
                Some(_) => {}
                None => self.region.set_up(target.slot, !target.checked()),
            }
            if target.checked() {
                fresh += 1;
            }
        }
        self.first_round.add(fresh);
        self.known = targets.iter().map(|t| (t.key(), t.clone())).collect();
        self.max_timeout = targets
            .iter()
            .filter(|t| t.checked())
            .map(|t| t.probe.check.timeout)
            .max()
            .unwrap_or(Duration::ZERO);
    }
}

impl Drop for HealthHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// What the checker thread knows of one upstream.
struct Tracker {
    target: Target,
    thresholds: Thresholds,
    /// Live connect-error total at the last passive poll.
    live_seen: Live,
    /// Its first check has not finished yet.
    first_pending: bool,
}

struct Entry {
    tracker: Rc<RefCell<Tracker>>,
    prober: Option<tokio::task::JoinHandle<()>>,
}

/// Shared by the tasks of the checker thread (one thread, so `Rc`).
struct Shared {
    region: Arc<Region>,
    first_round: Arc<FirstRound>,
    entries: RefCell<HashMap<Key, Entry>>,
}

async fn run(
    targets: Vec<Target>,
    region: Arc<Region>,
    first_round: Arc<FirstRound>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let shared = Rc::new(Shared {
        region,
        first_round,
        entries: RefCell::new(HashMap::new()),
    });
    apply(&shared, targets);
    let passive = tokio::task::spawn_local(passive_loop(Rc::clone(&shared)));
    while let Some(command) = commands.recv().await {
        match command {
            Command::Update(targets) => apply(&shared, targets),
            Command::Stop => break,
        }
    }
    passive.abort();
    for (_, entry) in shared.entries.borrow_mut().drain() {
        if let Some(prober) = entry.prober {
            prober.abort();
        }
    }
}

/// Makes the running probers match `targets`.
fn apply(shared: &Rc<Shared>, targets: Vec<Target>) {
    let mut entries = shared.entries.borrow_mut();
    let mut next = HashMap::with_capacity(targets.len());
    for target in targets {
        let key = target.key();
        let checked = target.checked();
        let entry = match entries.remove(&key) {
            Some(mut entry) => {
                let probe_changed;
                {
                    let mut tracker = entry.tracker.borrow_mut();
                    if tracker.target.slot != target.slot {
                        tracker.live_seen = Live::of(&shared.region, target.slot);
                    }
                    let check = &target.probe.check;
                    probe_changed = tracker.target.probe != target.probe;
                    if !tracker.target.asks_as(&target) && checked {
                        // Counted in the first round by `register`.
                        tracker.thresholds = Thresholds::new(check.rise.get(), check.fall.get());
                        if tracker.first_pending {
                            shared.first_round.finish_one();
                        }
                        tracker.first_pending = true;
                    }
                    tracker
                        .thresholds
                        .set_limits(check.rise.get(), check.fall.get());
                    if !checked {
                        tracker.thresholds = always_up(&target);
                        shared.region.set_up(target.slot, true);
                        if std::mem::take(&mut tracker.first_pending) {
                            shared.first_round.finish_one();
                        }
                    }
                    tracker.target = target;
                }
                match (&entry.prober, checked) {
                    (Some(prober), false) => {
                        prober.abort();
                        entry.prober = None;
                    }
                    (None, true) => {
                        entry.prober = Some(spawn_prober(shared, &entry.tracker));
                    }
                    // A changed check (or interval) is probed at once,
                    // not after the interval already under way.
                    (Some(prober), true) if probe_changed => {
                        prober.abort();
                        entry.prober = Some(spawn_prober(shared, &entry.tracker));
                    }
                    _ => {}
                }
                entry
            }
            None => {
                let check = &target.probe.check;
                let tracker = Rc::new(RefCell::new(Tracker {
                    live_seen: Live::of(&shared.region, target.slot),
                    thresholds: if checked {
                        Thresholds::new(check.rise.get(), check.fall.get())
                    } else {
                        always_up(&target)
                    },
                    first_pending: checked,
                    target,
                }));
                let prober = checked.then(|| spawn_prober(shared, &tracker));
                Entry { tracker, prober }
            }
        };
        next.insert(key, entry);
    }
    for (_, removed) in entries.drain() {
        if let Some(prober) = removed.prober {
            prober.abort();
        }
        if removed.tracker.borrow().first_pending {
            shared.first_round.finish_one();
        }
    }
    *entries = next;
}

/// Thresholds already up, for a `none` upstream.
fn always_up(target: &Target) -> Thresholds {
    let check = &target.probe.check;
    let mut thresholds = Thresholds::new(check.rise.get(), check.fall.get());
    thresholds.record(true);
    thresholds
}

fn spawn_prober(
    shared: &Rc<Shared>,
    tracker: &Rc<RefCell<Tracker>>,
) -> tokio::task::JoinHandle<()> {
    tokio::task::spawn_local(prober(Rc::clone(shared), Rc::clone(tracker)))
}

/// Checks one upstream forever: probe, record, sleep until one (jittered)
/// interval after the probe started. The first probe runs at once.
async fn prober(shared: Rc<Shared>, tracker: Rc<RefCell<Tracker>>) {
    loop {
        let started = Instant::now();
        let probe = tracker.borrow().target.probe.clone();
        let result = probe.run().await;
        let interval = {
            let mut tracker = tracker.borrow_mut();
            on_result(&shared, &mut tracker, result);
            tracker.target.probe.check.interval
        };
        tokio::time::sleep_until(started + jittered(interval)).await;
    }
}

/// An interval shortened by a random 0–10%, so probers started together
/// drift apart without ever checking less often than configured.
fn jittered(interval: Duration) -> Duration {
    let cut: f64 = rand::random_range(0.0..0.1);
    interval.mul_f64(1.0 - cut)
}

fn on_result(shared: &Shared, tracker: &mut Tracker, result: Result<(), ProbeError>) {
    let slot = tracker.target.slot;
    let counted = match &result {
        Ok(()) => CheckResult::Success,
        Err(error) if error.is_timeout() => CheckResult::Timeout,
        Err(_) => CheckResult::Failure,
    };
    shared.region.count_check(slot, counted);
    let transition = tracker.thresholds.record(result.is_ok());
    if let Some(transition) = transition {
        let reason = match &result {
            Ok(()) if transition.from == State::Unknown => "first check passed".to_owned(),
            Ok(()) => format!("{} passing checks", tracker.target.probe.check.rise),
            Err(error) if transition.from == State::Unknown => error.to_string(),
            Err(error) => format!(
                "{} failed checks, the last: {error}",
                tracker.target.probe.check.fall
            ),
        };
        change(shared, &tracker.target, transition, &reason);
    } else if let Err(error) = &result {
        tracing::debug!(upstream = %tracker.target.id, %error, "health check failed");
    }
    if tracker.first_pending {
        tracker.first_pending = false;
        shared.first_round.finish_one();
    }
}

/// Writes a state change to the health row and logs it.
fn change(shared: &Shared, target: &Target, transition: Transition, reason: &str) {
    shared.region.set_up(target.slot, transition.to.is_up());
    let (id, from, to) = (&target.id, transition.from, transition.to);
    if to.is_up() {
        tracing::info!(upstream = %id, %from, %to, %reason, "upstream {id} {from} -> {to}: {reason}");
    } else {
        tracing::warn!(upstream = %id, %from, %to, %reason, "upstream {id} {from} -> {to}: {reason}");
    }
}

/// Reads every checked upstream's live connect-error total each
/// [`PASSIVE_POLL`] and counts new errors toward `fall` at once.
async fn passive_loop(shared: Rc<Shared>) {
    let mut tick = tokio::time::interval(PASSIVE_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let entries = shared.entries.borrow();
        for entry in entries.values() {
            let mut tracker = entry.tracker.borrow_mut();
            let now = Live::of(&shared.region, tracker.target.slot);
            let seen = std::mem::replace(&mut tracker.live_seen, now);
            if !tracker.target.checked() {
                continue;
            }
            let resets = now.resets.saturating_sub(seen.resets);
            let new = now.connect_errors.saturating_sub(seen.connect_errors) + resets;
            // Which came first within one poll is unknown: the answers are
            // taken first, so failures after them count.
            if now.answered != seen.answered {
                tracker.thresholds.record_passive_success();
            }
            if new == 0 {
                continue;
            }
            let new = u32::try_from(new).unwrap_or(u32::MAX);
            let counted = tracker.thresholds.failures().saturating_add(new);
            if let Some(transition) = tracker.thresholds.record_passive(new) {
                let reason =
                    format!("{counted} failures on live traffic (failed connects, resets)");
                change(&shared, &tracker.target, transition, &reason);
            }
        }
    }
}

/// Live traffic to one upstream so far, summed over workers: failed
/// connects and connections reset before a response count toward `fall`,
/// and requests answered in between break the run (`fall` counts
/// consecutive failures).
#[derive(Clone, Copy, Debug, Default)]
struct Live {
    connect_errors: u64,
    resets: u64,
    /// Requests and tunnels the upstream answered.
    answered: u64,
}

impl Live {
    fn of(region: &Region, slot: usize) -> Live {
        Live {
            connect_errors: region.upstream_total(slot, UpstreamCounter::ConnectErrors),
            resets: region.upstream_total(slot, UpstreamCounter::Resets),
            answered: region.upstream_total(slot, UpstreamCounter::Answered),
        }
    }
}
