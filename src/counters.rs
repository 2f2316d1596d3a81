//! Per-worker rows of atomic counters.
//!
//! The balancer's live numbers (connections, bytes, requests, in-flight
//! requests per upstream, health) live in one memory region laid out as rows
//! of `AtomicU64` slots: one row per worker, plus a row for health that only
//! the supervisor writes. A worker writes only its own row, so the hot path
//! never contends on a cache line with another process; readers sum the
//! rows. Slots are addressed by a listener or upstream *slot number*
//! assigned when the config is compiled.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::MmapMut;

/// Most listeners a region has room for.
pub const MAX_LISTENERS: usize = 256;
/// Most upstreams a region has room for.
pub const MAX_UPSTREAMS: usize = 4096;

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
}

/// Number of [`UpstreamCounter`] kinds.
const UPSTREAM_FIELDS: usize = 5;

/// Slots in one row.
const ROW_SLOTS: usize = MAX_LISTENERS * LISTENER_FIELDS + MAX_UPSTREAMS * UPSTREAM_FIELDS;

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

/// The whole region: `rows` rows of [`ROW_SLOTS`] atomics. Row 0 is the
/// health row (written by the health checker only): one "down" flag per
/// upstream, then three check-result counters per upstream. Rows 1.. belong
/// to workers.
#[derive(Debug)]
pub struct Region {
    map: MmapMut,
    rows: usize,
}

impl Region {
    /// Maps a zeroed region with room for `workers` worker rows. Untouched
    /// pages cost no memory.
    pub fn new(workers: usize) -> std::io::Result<Arc<Region>> {
        let rows = workers + 1;
        let map = MmapMut::map_anon(rows * ROW_SLOTS * size_of::<AtomicU64>())?;
        Ok(Arc::new(Region { map, rows }))
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
        assert!(worker + 1 < self.rows, "worker {worker} has no row");
        Row {
            region: Arc::clone(self),
            row: worker + 1,
        }
    }

    /// Sum of a listener counter over every worker row.
    pub fn listener_total(&self, listener: usize, counter: ListenerCounter) -> u64 {
        let slot = listener_slot(listener, counter);
        (1..self.rows)
            .map(|row| self.slots(row)[slot].load(Ordering::Relaxed))
            .sum()
    }

    /// Sum of an upstream counter over every worker row.
    pub fn upstream_total(&self, upstream: usize, counter: UpstreamCounter) -> u64 {
        let slot = upstream_slot(upstream, counter);
        (1..self.rows)
            .map(|row| self.slots(row)[slot].load(Ordering::Relaxed))
            .sum()
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
    MAX_LISTENERS * LISTENER_FIELDS + upstream * UPSTREAM_FIELDS + counter as usize
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
        self.region.slots(self.row)[listener_slot(listener, counter)]
            .fetch_add(n, Ordering::Relaxed);
    }

    /// Subtracts from a listener gauge.
    pub fn sub_listener(&self, listener: usize, counter: ListenerCounter, n: u64) {
        self.region.slots(self.row)[listener_slot(listener, counter)]
            .fetch_sub(n, Ordering::Relaxed);
    }

    /// This worker's value of a listener counter.
    pub fn listener(&self, listener: usize, counter: ListenerCounter) -> u64 {
        self.region.slots(self.row)[listener_slot(listener, counter)].load(Ordering::Relaxed)
    }

    /// Adds to an upstream counter.
    pub fn add_upstream(&self, upstream: usize, counter: UpstreamCounter, n: u64) {
        self.region.slots(self.row)[upstream_slot(upstream, counter)]
            .fetch_add(n, Ordering::Relaxed);
    }

    /// Subtracts from an upstream gauge.
    pub fn sub_upstream(&self, upstream: usize, counter: UpstreamCounter, n: u64) {
        self.region.slots(self.row)[upstream_slot(upstream, counter)]
            .fetch_sub(n, Ordering::Relaxed);
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
    /// Counts an accepted connection on `listener`.
    pub fn new(row: &Row, listener: usize) -> ConnectionGuard {
        row.add_listener(listener, ListenerCounter::ConnectionsTotal, 1);
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
mod tests {
    use super::*;

    #[test]
    fn rows_sum_and_guards_release() {
        let region = Region::new(2).unwrap();
        let a = region.worker_row(0);
        let b = region.worker_row(1);
        a.add_listener(3, ListenerCounter::SentBytes, 5);
        b.add_listener(3, ListenerCounter::SentBytes, 7);
        assert_eq!(region.listener_total(3, ListenerCounter::SentBytes), 12);
        {
            let _g1 = ActiveGuard::new(&a, 9);
            let _g2 = ActiveGuard::new(&b, 9);
            assert_eq!(region.upstream_total(9, UpstreamCounter::Active), 2);
        }
        assert_eq!(region.upstream_total(9, UpstreamCounter::Active), 0);
        assert!(region.is_up(9));
        region.set_up(9, false);
        assert!(!region.is_up(9));
        region.count_check(9, CheckResult::Timeout);
        assert_eq!(region.checks(9, CheckResult::Timeout), 1);
        assert_eq!(region.checks(9, CheckResult::Success), 0);
        assert!(!region.is_up(9), "check counters do not touch health flags");
    }
}
