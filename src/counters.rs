//! Per-worker rows of atomic counters.
//!
//! The balancer's live numbers (connections, bytes, requests, in-flight
//! requests per upstream, health) live in one memory region laid out as rows
//! of `AtomicU64` slots: one row per worker, plus a row for health that only
//! the supervisor writes. A worker writes only its own row, so the hot path
//! never contends on a cache line with another process; readers sum the
//! rows. Slots are addressed by a listener or upstream *slot number*
//! assigned when the config is compiled.
//!
//! The region is a memfd mapped shared: the supervisor creates it and every
//! worker process maps the same pages. Row 0 is the health row, row 1 the
//! retired row (counters of workers that died, folded in so totals never go
//! backwards), rows 2.. one per worker.
//!
//! A row holds, in order: listener counters, upstream counters, an
//! upstream latency histogram per upstream ([`histogram`]), then per
//! *route* (a listener's rule label, or its "no rule matched" route) a
//! request latency histogram and a retry count, then per *pair* (a route
//! and an upstream id, or a route and "sluice answered itself") responses
//! by status class. Only listener and upstream `Active` slots are gauges.

pub mod histogram;

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use memmap2::MmapMut;

/// Most listeners a region has room for.
pub const MAX_LISTENERS: usize = 256;
/// Most upstreams a region has room for.
pub const MAX_UPSTREAMS: usize = 4096;
/// Most routes (distinct rule labels per listener, plus one "no rule"
/// route per HTTP listener) a region has room for.
pub const MAX_ROUTES: usize = 2048;
/// Most (route, upstream) pairs a region has room for.
pub const MAX_PAIRS: usize = 16384;

/// Status classes counted per pair, as rendered in metric labels.
pub const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Index into [`STATUS_CLASSES`] of an HTTP status code (anything out of
/// range counts as 5xx).
pub fn status_class(status: u16) -> usize {
    match status {
        100..=499 => usize::from(status / 100 - 1),
        _ => 4,
    }
}

/// Counters kept per listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum ListenerCounter {
    /// Client connections accepted.
    ConnectionsTotal,
    /// Client connections open now (a gauge).
    ConnectionsActive,
    /// Connections refused because `max_connections` was reached.
    ConnectionsRefused,
    /// Bytes read from clients.
    ReceivedBytes,
    /// Bytes written to clients.
    SentBytes,
    /// HTTP responses with a 1xx status.
    Responses1xx,
    /// HTTP responses with a 2xx status.
    Responses2xx,
    /// HTTP responses with a 3xx status.
    Responses3xx,
    /// HTTP responses with a 4xx status.
    Responses4xx,
    /// HTTP responses with a 5xx status.
    Responses5xx,
}

/// Number of [`ListenerCounter`] kinds.
const LISTENER_FIELDS: usize = 10;

/// Counters kept per upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum UpstreamCounter {
    /// Requests in flight (HTTP) or open tunnels (TCP): a gauge that feeds
    /// least-connections.
    Active,
    /// Requests sent or tunnels opened.
    Requests,
    /// Failed connection attempts.
    ConnectErrors,
    /// Bytes sent to the upstream.
    SentBytes,
    /// Bytes received from the upstream.
    ReceivedBytes,
    /// Connections the upstream reset or closed before a response: with
    /// connect errors, what passive health detection counts.
    Resets,
    /// Requests the upstream answered (a response head) and tunnels it
    /// answered (a first byte back, or a clean end): what breaks a run of
    /// passive failures.
    Answered,
}

/// Number of [`UpstreamCounter`] kinds.
const UPSTREAM_FIELDS: usize = 7;

/// Rows before the first worker row: health, retired.
const FIXED_ROWS: usize = 2;
/// The retired row.
const RETIRED_ROW: usize = 1;

/// Slots per route: its request histogram, then its retry count.
const ROUTE_FIELDS: usize = histogram::HIST_FIELDS + 1;
/// Offset of the retry count within a route.
const RETRIES_FIELD: usize = histogram::HIST_FIELDS;
/// Slots per pair: one per status class.
const PAIR_FIELDS: usize = STATUS_CLASSES.len();

/// Where each section of a row starts.
const UPSTREAMS_BASE: usize = MAX_LISTENERS * LISTENER_FIELDS;
const UPSTREAM_HIST_BASE: usize = UPSTREAMS_BASE + MAX_UPSTREAMS * UPSTREAM_FIELDS;
const ROUTES_BASE: usize = UPSTREAM_HIST_BASE + MAX_UPSTREAMS * histogram::HIST_FIELDS;
const PAIRS_BASE: usize = ROUTES_BASE + MAX_ROUTES * ROUTE_FIELDS;

/// Slots in one row.
const ROW_SLOTS: usize = PAIRS_BASE + MAX_PAIRS * PAIR_FIELDS;

/// A histogram in the region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Histogram {
    /// Request duration of a route (by route slot).
    Route(usize),
    /// Attempt duration of an upstream (by upstream slot).
    Upstream(usize),
}

impl Histogram {
    fn base(self) -> usize {
        match self {
            Histogram::Route(route) => {
                assert!(route < MAX_ROUTES, "route slot {route} out of range");
                ROUTES_BASE + route * ROUTE_FIELDS
            }
            Histogram::Upstream(upstream) => {
                assert!(
                    upstream < MAX_UPSTREAMS,
                    "upstream slot {upstream} out of range"
                );
                UPSTREAM_HIST_BASE + upstream * histogram::HIST_FIELDS
            }
        }
    }
}

/// Results of active health checks, per upstream (written by the health
/// checker only, in the health row).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum CheckResult {
    /// The probe passed.
    Success,
    /// The probe failed (refused, wrong answer, wrong status).
    Failure,
    /// The probe did not finish within its timeout.
    Timeout,
}

/// The whole region: `rows` rows of `ROW_SLOTS` atomics. Row 0 is the
/// health row (written by the health checker only): one "down" flag per
/// upstream, then three check-result counters per upstream. Rows 1.. belong
/// to workers.
#[derive(Debug)]
pub struct Region {
    map: MmapMut,
    rows: usize,
    file: File,
}

impl Region {
    /// Creates a zeroed region (a memfd) with room for `workers` worker
    /// rows. Untouched pages cost no memory.
    pub fn new(workers: usize) -> std::io::Result<Arc<Region>> {
        let fd = rustix::fs::memfd_create("sluice-counters", rustix::fs::MemfdFlags::CLOEXEC)?;
        let rows = workers + FIXED_ROWS;
        rustix::fs::ftruncate(&fd, (rows * ROW_SLOTS * size_of::<AtomicU64>()) as u64)?;
        Region::map(fd, workers)
    }

    /// Maps a region another process created (a worker mapping the
    /// supervisor's memfd).
    pub fn open(fd: OwnedFd, workers: usize) -> std::io::Result<Arc<Region>> {
        let expected = ((workers + FIXED_ROWS) * ROW_SLOTS * size_of::<AtomicU64>()) as u64;
        let file = File::from(fd);
        if file.metadata()?.len() != expected {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "counter region has an unexpected size",
            ));
        }
        Region::map(OwnedFd::from(file), workers)
    }

    fn map(fd: OwnedFd, workers: usize) -> std::io::Result<Arc<Region>> {
        let file = File::from(fd);
        // SAFETY: the file is a memfd sized above that nobody truncates; its
        // contents are only ever accessed through atomics.
        let map = unsafe { MmapMut::map_mut(&file)? };
        Ok(Arc::new(Region {
            map,
            rows: workers + FIXED_ROWS,
            file,
        }))
    }

    /// The memfd, to hand to worker processes.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Number of worker rows.
    pub fn workers(&self) -> usize {
        self.rows - FIXED_ROWS
    }

    /// Folds a dead worker's row into the retired row and zeroes it: its
    /// counters keep counting in the totals, its gauges (open connections,
    /// requests in flight) drop to zero.
    pub fn retire(&self, worker: usize) {
        let row = self.slots(worker + FIXED_ROWS);
        let retired = self.slots(RETIRED_ROW);
        for (slot, (cell, total)) in row.iter().zip(retired).enumerate() {
            // Reading first leaves the (many) untouched slots unwritten.
            if cell.load(Ordering::Relaxed) == 0 {
                continue;
            }
            let value = cell.swap(0, Ordering::Relaxed);
            if value != 0 && !is_gauge(slot) {
                total.fetch_add(value, Ordering::Relaxed);
            }
        }
    }

    /// Starts upstream slot `upstream`'s counters, histogram and check
    /// counts over at zero (its gauge aside), for a slot a reload hands to
    /// a new identity after another had it: the old counts are taken back
    /// through the retired and health rows (sums wrap).
    pub fn reset_upstream(&self, upstream: usize) {
        for counted in upstream_counted(upstream) {
            let total = self.counted_total(counted);
            if total != 0 {
                self.counted_add(counted, total.wrapping_neg());
            }
        }
    }

    /// Adds what upstream slot `from`'s counters, latency histogram and
    /// check counts gained since `carried` to slot `to`'s, and notes it in
    /// `carried`. For an upstream whose address a reload changed: health
    /// must start over at the new address, so it moves to a new slot, and
    /// its series go on from where they were. Called when the reload is
    /// prepared and again when the workers applied it, so what the old
    /// slot counted in between is carried too.
    pub fn carry_upstream(&self, from: usize, to: usize, carried: &mut Carried) {
        let pairs = upstream_counted(from).zip(upstream_counted(to));
        carried.0.resize(pairs.len(), 0);
        for ((source, target), seen) in pairs.zip(&mut carried.0) {
            let now = self.counted_total(source);
            self.counted_add(target, now.wrapping_sub(*seen));
            *seen = now;
        }
    }

    fn counted_total(&self, counted: Counted) -> u64 {
        match counted {
            Counted::Rows(slot) => self.total(slot),
            Counted::Health(slot) => self.slots(0)[slot].load(Ordering::Relaxed),
        }
    }

    /// Adds `n` (wrapping) where a counter's totals can be changed from
    /// outside the workers: the retired row, or the health row.
    fn counted_add(&self, counted: Counted, n: u64) {
        let (row, slot) = match counted {
            Counted::Rows(slot) => (RETIRED_ROW, slot),
            Counted::Health(slot) => (0, slot),
        };
        self.slots(row)[slot].fetch_add(n, Ordering::Relaxed);
    }

    fn slots(&self, row: usize) -> &[AtomicU64] {
        assert!(row < self.rows, "row {row} out of {}", self.rows);
        let base = self.map.as_ptr().cast::<AtomicU64>();
        // SAFETY: the mapping is page-aligned, `rows * ROW_SLOTS` u64s long,
        // zero-initialised, and only ever accessed through atomics; the
        // borrow lives no longer than `self`, which owns the mapping.
        unsafe { std::slice::from_raw_parts(base.add(row * ROW_SLOTS), ROW_SLOTS) }
    }

    /// The row a worker writes (`worker` counts from 0).
    pub fn worker_row(self: &Arc<Self>, worker: usize) -> Row {
        assert!(
            worker + FIXED_ROWS < self.rows,
            "worker {worker} has no row"
        );
        Row {
            region: Arc::clone(self),
            row: worker + FIXED_ROWS,
        }
    }

    /// Sum of a listener counter over every worker row.
    pub fn listener_total(&self, listener: usize, counter: ListenerCounter) -> u64 {
        self.total(listener_slot(listener, counter))
    }

    /// Sum of an upstream counter over every worker row.
    pub fn upstream_total(&self, upstream: usize, counter: UpstreamCounter) -> u64 {
        self.total(upstream_slot(upstream, counter))
    }

    /// Sum over every row of one slot (wrapping: a reset slot's retired
    /// row holds the negated old counts).
    fn total(&self, slot: usize) -> u64 {
        (RETIRED_ROW..self.rows)
            .map(|row| self.slots(row)[slot].load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }

    /// Responses of a (route, upstream) pair in status class `class` (an
    /// index into [`STATUS_CLASSES`]), over every worker row.
    pub fn pair_total(&self, pair: usize, class: usize) -> u64 {
        self.total(pair_slot(pair, class))
    }

    /// Requests of a route moved to another upstream after a failed
    /// connect, over every worker row.
    pub fn retries_total(&self, route: usize) -> u64 {
        self.total(retries_slot(route))
    }

    /// A histogram summed over every worker row.
    pub fn histogram(&self, histogram: Histogram) -> histogram::HistogramTotals {
        let base = histogram.base();
        let mut totals = histogram::HistogramTotals::default();
        for (index, bucket) in totals.buckets.iter_mut().enumerate() {
            *bucket = self.total(base + index);
        }
        totals.sum_micros = self.total(base + histogram::SUM_FIELD);
        totals
    }

    /// Whether an upstream is currently considered up.
    pub fn is_up(&self, upstream: usize) -> bool {
        self.slots(0)[upstream].load(Ordering::Relaxed) == 0
    }

    /// Records an upstream's health (written by whoever runs the checks).
    pub fn set_up(&self, upstream: usize, up: bool) {
        self.slots(0)[upstream].store(u64::from(!up), Ordering::Relaxed);
    }

    /// Counts one health check result for an upstream.
    pub fn count_check(&self, upstream: usize, result: CheckResult) {
        self.slots(0)[check_slot(upstream, result)].fetch_add(1, Ordering::Relaxed);
    }

    /// How many checks of an upstream ended with `result`.
    pub fn checks(&self, upstream: usize, result: CheckResult) -> u64 {
        self.slots(0)[check_slot(upstream, result)].load(Ordering::Relaxed)
    }
}

/// One of an upstream's counters (never its gauge): a slot summed over the
/// rows, or a check count in the health row.
#[derive(Clone, Copy, Debug)]
enum Counted {
    Rows(usize),
    Health(usize),
}

/// Every counter of upstream slot `upstream`, in a fixed order.
fn upstream_counted(upstream: usize) -> impl ExactSizeIterator<Item = Counted> {
    // `Active` is an upstream's first field: its block starts there.
    let block = upstream_slot(upstream, UpstreamCounter::Active);
    let counters = (block..block + UPSTREAM_FIELDS).filter(|&slot| !is_gauge(slot));
    let histogram = Histogram::Upstream(upstream).base();
    let checks = [
        CheckResult::Success,
        CheckResult::Failure,
        CheckResult::Timeout,
    ]
    .map(|result| Counted::Health(check_slot(upstream, result)));
    counters
        .chain(histogram..histogram + histogram::HIST_FIELDS)
        .map(Counted::Rows)
        .chain(checks)
        .collect::<Vec<_>>()
        .into_iter()
}

/// What [`Region::carry_upstream`] has carried so far, per counter.
#[derive(Debug, Default)]
pub struct Carried(Vec<u64>);

/// Whether a row slot holds a gauge (zeroed, not summed, when a worker
/// retires).
fn is_gauge(slot: usize) -> bool {
    if slot < UPSTREAMS_BASE {
        slot % LISTENER_FIELDS == ListenerCounter::ConnectionsActive as usize
    } else if slot < UPSTREAM_HIST_BASE {
        (slot - UPSTREAMS_BASE) % UPSTREAM_FIELDS == UpstreamCounter::Active as usize
    } else {
        false
    }
}

fn pair_slot(pair: usize, class: usize) -> usize {
    assert!(pair < MAX_PAIRS, "pair slot {pair} out of range");
    PAIRS_BASE + pair * PAIR_FIELDS + class.min(PAIR_FIELDS - 1)
}

fn retries_slot(route: usize) -> usize {
    assert!(route < MAX_ROUTES, "route slot {route} out of range");
    ROUTES_BASE + route * ROUTE_FIELDS + RETRIES_FIELD
}

fn check_slot(upstream: usize, result: CheckResult) -> usize {
    assert!(
        upstream < MAX_UPSTREAMS,
        "upstream slot {upstream} out of range"
    );
    MAX_UPSTREAMS + upstream * 3 + result as usize
}

fn listener_slot(listener: usize, counter: ListenerCounter) -> usize {
    assert!(
        listener < MAX_LISTENERS,
        "listener slot {listener} out of range"
    );
    listener * LISTENER_FIELDS + counter as usize
}

fn upstream_slot(upstream: usize, counter: UpstreamCounter) -> usize {
    assert!(
        upstream < MAX_UPSTREAMS,
        "upstream slot {upstream} out of range"
    );
    UPSTREAMS_BASE + upstream * UPSTREAM_FIELDS + counter as usize
}

/// One worker's row: the only place a worker writes counters.
#[derive(Clone, Debug)]
pub struct Row {
    region: Arc<Region>,
    row: usize,
}

impl Row {
    /// The region this row belongs to (for reading totals and health).
    pub fn region(&self) -> &Region {
        &self.region
    }

    /// Adds to a listener counter.
    pub fn add_listener(&self, listener: usize, counter: ListenerCounter, n: u64) {
        self.add(listener_slot(listener, counter), n);
    }

    /// Subtracts from a listener gauge.
    pub fn sub_listener(&self, listener: usize, counter: ListenerCounter, n: u64) {
        self.add(listener_slot(listener, counter), n.wrapping_neg());
    }

    /// This worker's value of a listener counter.
    #[cfg(test)]
    pub fn listener(&self, listener: usize, counter: ListenerCounter) -> u64 {
        self.region.slots(self.row)[listener_slot(listener, counter)].load(Ordering::Relaxed)
    }

    /// Adds to an upstream counter.
    pub fn add_upstream(&self, upstream: usize, counter: UpstreamCounter, n: u64) {
        self.add(upstream_slot(upstream, counter), n);
    }

    /// Subtracts from an upstream gauge.
    pub fn sub_upstream(&self, upstream: usize, counter: UpstreamCounter, n: u64) {
        self.add(upstream_slot(upstream, counter), n.wrapping_neg());
    }

    /// Counts a response by its status class.
    pub fn count_response(&self, listener: usize, status: u16) {
        let counter = match status {
            100..=199 => ListenerCounter::Responses1xx,
            200..=299 => ListenerCounter::Responses2xx,
            300..=399 => ListenerCounter::Responses3xx,
            400..=499 => ListenerCounter::Responses4xx,
            _ => ListenerCounter::Responses5xx,
        };
        self.add_listener(listener, counter, 1);
    }

    /// Counts an answer sluice wrote to a request it could not route (a
    /// head it could not parse, or that timed out), `elapsed` after the
    /// head's first byte: on the listener, and on its "no rule" route and
    /// pair (`own`, as (route, pair)) if it has them.
    pub fn count_own_answer(
        &self,
        listener: usize,
        own: Option<(usize, usize)>,
        status: u16,
        elapsed: Duration,
    ) {
        self.count_response(listener, status);
        if let Some((route, pair)) = own {
            self.observe_request(route, pair, status, elapsed);
        }
    }

    /// A plain load and store, not a locked read-modify-write: a row has
    /// one writer, its worker's thread (readers only load), and a locked
    /// add costs tens of cycles on the hot path, several times a request.
    fn add(&self, slot: usize, n: u64) {
        let cell = &self.region.slots(self.row)[slot];
        cell.store(
            cell.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    /// Records one finished request: its response's status class on
    /// `pair` and its duration in `route`'s histogram.
    pub fn observe_request(&self, route: usize, pair: usize, status: u16, elapsed: Duration) {
        self.add(pair_slot(pair, status_class(status)), 1);
        self.observe(Histogram::Route(route), elapsed);
    }

    /// Records one attempt's duration at an upstream.
    pub fn observe_upstream(&self, upstream: usize, elapsed: Duration) {
        self.observe(Histogram::Upstream(upstream), elapsed);
    }

    /// Counts one retry of a request of `route` on another upstream.
    pub fn count_retry(&self, route: usize) {
        self.add(retries_slot(route), 1);
    }

    fn observe(&self, histogram: Histogram, elapsed: Duration) {
        let base = histogram.base();
        let (bucket, micros) = histogram::bucket(elapsed);
        self.add(base + bucket, 1);
        self.add(base + histogram::SUM_FIELD, micros);
    }
}

/// Holds one unit of an upstream's active gauge and gives it back on drop,
/// so every exit path (error, cancel, panic) releases it.
#[derive(Debug)]
pub struct ActiveGuard {
    row: Row,
    upstream: usize,
}

impl ActiveGuard {
    /// Counts one more active connection or request on `upstream`.
    pub fn new(row: &Row, upstream: usize) -> ActiveGuard {
        row.add_upstream(upstream, UpstreamCounter::Active, 1);
        ActiveGuard {
            row: row.clone(),
            upstream,
        }
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.row
            .sub_upstream(self.upstream, UpstreamCounter::Active, 1);
    }
}

/// Holds one unit of a listener's active-connection gauge.
#[derive(Debug)]
pub struct ConnectionGuard {
    row: Row,
    listener: usize,
}

impl ConnectionGuard {
    /// Counts a connection as open on `listener` (the total of accepted
    /// ones is the caller's to count, once it admits the connection).
    pub fn new(row: &Row, listener: usize) -> ConnectionGuard {
        row.add_listener(listener, ListenerCounter::ConnectionsActive, 1);
        ConnectionGuard {
            row: row.clone(),
            listener,
        }
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.row
            .sub_listener(self.listener, ListenerCounter::ConnectionsActive, 1);
    }
}

#[cfg(test)]
mod tests;
