//! Parking idle keep-alive client connections.
//!
//! hyper keeps a read and a write buffer (8 KiB each) for every connection
//! it serves, idle or not, and each connection has its task and its tokio
//! registration: about 17 KiB per idle keep-alive client. So a connection
//! that has waited [`PARK_AFTER`] for its next request, with nothing read
//! that hyper has not handled, is parked: its hyper state is shut down and
//! dropped while the socket stays open (see [`super::client_io`]), its
//! task ends, and the bare socket moves to its listener's [`ParkingLot`]
//! (a few hundred bytes per connection) until the next request,
//! `idle_timeout` or shutdown. The next request gets a fresh task and
//! hyper connection. nginx's keep-alive handler frees its buffers the same
//! way.
//!
//! The allocator keeps freed pages for a while to reuse them, so a burst of
//! connections that then go idle would keep costing their peak for that
//! while: the worker calls [`return_freed_memory`] on its heartbeat.

use std::time::Duration;

use tokio::time::Instant;

use super::client_io::{Phase, PhaseCell};

pub mod lot;

pub use lot::ParkingLot;

/// How long a connection waits for its next request before it is parked:
/// long enough that a client sending request after request never is.
pub const PARK_AFTER: Duration = Duration::from_millis(200);

/// When to check next whether a connection in `phase` can be parked.
pub fn next_check(phase: &PhaseCell) -> Instant {
    let now = Instant::now();
    match phase.get() {
        Phase::Idle(since) if since + PARK_AFTER > now => since + PARK_AFTER,
        _ => now + PARK_AFTER,
    }
}

/// Called on the worker's thread at every heartbeat: hands the free pages
/// of its heap back to the system (the `sluice` binary allocates with
/// mimalloc, see `main.rs`). mimalloc would keep them for reuse until its
/// next allocation after a purge delay, so memory freed just before the
/// worker went quiet, such as the buffers of connections just parked,
/// would stay.
pub fn return_freed_memory() {
    // SAFETY: mi_collect only frees and purges memory mimalloc itself holds
    // unused; it may be called at any time.
    unsafe {
        libmimalloc_sys::mi_collect(true);
    }
}
