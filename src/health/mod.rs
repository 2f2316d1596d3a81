//! Active health checks and passive failure detection (SPEC §5).
//!
//! Health decides who gets traffic. It runs once for the whole balancer, in
//! the supervisor: [`HealthChecker::start`] spawns one thread with a
//! current-thread tokio runtime holding one prober task per checked
//! upstream and one passive poller. Workers never check anything; they read
//! the health row of the shared [`Region`](crate::counters::Region), which
//! only this module writes.
//!
//! - [`probe`]: what one check does on the wire (`tcp`, `http`, `redis`,
//!   `postgres`; `none` never touches the network).
//! - [`state`]: the rise/fall state machine, including the first-check rule
//!   (the first result decides at once; unchecked reads as down).
//! - [`checker`]: scheduling (interval with up to 10% jitter, timeout), the
//!   passive poller that counts failed connects and resets on live traffic toward
//!   `fall`, reloads, first-round waiting, one log line per state change.

pub mod checker;
pub mod probe;
pub mod state;

pub use checker::{HealthChecker, HealthHandle, Target, targets, targets_with};
pub use probe::{Probe, ProbeError};
pub use state::{State, Thresholds, Transition};

/// Why the health checker could not start.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// Building its tokio runtime failed.
    #[error("cannot build the health checker runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// Spawning its thread failed.
    #[error("cannot spawn the health checker thread: {0}")]
    Thread(#[source] std::io::Error),
}
