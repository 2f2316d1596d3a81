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
//! glibc's allocator keeps freed memory in its heap, so a burst of
//! connections that then go idle would keep costing their peak. The worker
//! calls [`return_freed_memory`] on its heartbeat; after enough parked
//! connections it hands free heap pages back to the system.

use std::cell::Cell;
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

/// Connections parked since the last [`return_freed_memory`] that make
/// handing memory back worth its cost (a walk over the heap).
const TRIM_AFTER_PARKED: u32 = 64;

thread_local! {
    static PARKED_SINCE_TRIM: Cell<u32> = const { Cell::new(0) };
}

/// Counts a connection just parked (on the worker's thread).
pub fn note_parked() {
    PARKED_SINCE_TRIM.with(|count| count.set(count.get().saturating_add(1)));
}

/// Called periodically on the worker's thread: once enough connections
/// were parked since the last call, returns the free pages of the heap
/// (their hyper buffers, among others) to the system.
pub fn return_freed_memory() {
    if PARKED_SINCE_TRIM.with(|count| count.replace(0)) >= TRIM_AFTER_PARKED {
        trim_heap();
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim_heap() {
    // SAFETY: malloc_trim only releases free memory of the allocator's own
    // heaps; it is safe to call at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim_heap() {}
