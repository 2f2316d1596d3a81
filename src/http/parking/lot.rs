//! The parking lot: one listener's parked connections, waited on together
//! by one task.
//!
//! A parked connection keeps only its socket, its idle deadline and what
//! it needs to be served again, in one slab entry: no task, no tokio
//! registration, no buffer. Its socket sits in the lot's own epoll set,
//! which tokio watches as a single descriptor. A socket that becomes
//! readable (a request, or the client's close) leaves the lot and is handed
//! back to be served; one whose idle deadline passes is closed; all are
//! closed when the listener stops.

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::os::fd::OwnedFd;

use rustix::buffer::spare_capacity;
use rustix::event::{Timespec, epoll};
use slab::Slab;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Readiness events taken from the epoll set per call.
const EVENTS_PER_WAIT: usize = 256;

/// Stale deadlines (of connections that left the lot before theirs) kept
/// before the deadline heap is rebuilt from the parked entries.
const STALE_DEADLINES_ALLOWED: usize = 1024;

/// Parked connections of one listener, each with a `T` the lot hands back
/// with its socket.
pub struct ParkingLot<T> {
    epoll: AsyncFd<OwnedFd>,
    parked: RefCell<Slab<Parked<T>>>,
    /// Idle deadlines, earliest first, with the token of the park they
    /// were set for. A connection that leaves the lot before its deadline
    /// leaves a stale entry here, skipped when popped and dropped when the
    /// heap is rebuilt.
    deadlines: RefCell<BinaryHeap<Reverse<(Instant, u64)>>>,
    /// Wakes the lot's task when a park sets a deadline earlier than any
    /// it was sleeping for.
    earlier_deadline: Notify,
    /// Tells apart successive parks in the same slab entry.
    generation: Cell<u32>,
    /// Set once the listener stopped: nothing more is parked.
    closed: Cell<bool>,
}

/// One parked connection.
struct Parked<T> {
    stream: std::net::TcpStream,
    deadline: Instant,
    generation: u32,
    payload: T,
}

impl<T> std::fmt::Debug for ParkingLot<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParkingLot")
            .field("parked", &self.parked.borrow().len())
            .finish_non_exhaustive()
    }
}

impl<T> ParkingLot<T> {
    /// An empty lot with its epoll set; fails only when no descriptor is
    /// left for it.
    pub fn new() -> io::Result<ParkingLot<T>> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        // SAFETY: the `OwnedFd` is moved into the `AsyncFd` and only read
        // through `get_ref`, so its descriptor stays the same and open for
        // as long as it is registered.
        let epoll = unsafe { AsyncFd::register_with_interest(epoll, Interest::READABLE)? };
        Ok(ParkingLot {
            epoll,
            parked: RefCell::new(Slab::new()),
            deadlines: RefCell::new(BinaryHeap::new()),
            earlier_deadline: Notify::new(),
            generation: Cell::new(0),
            closed: Cell::new(false),
        })
    }

    /// How many connections are parked.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.parked.borrow().len()
    }

    /// Parks `stream` until it becomes readable (then it and `payload` go
    /// to [`ParkingLot::run`]'s `resume`) or until `deadline` (then it is
    /// closed). A lot that stopped, or a socket that cannot be watched,
    /// closes the connection at once.
    pub fn park(&self, stream: TcpStream, deadline: Instant, payload: T) {
        if self.closed.get() {
            return;
        }
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(error) => {
                tracing::debug!(%error, "cannot park a connection; closing it");
                return;
            }
        };
        let generation = self.generation.get().wrapping_add(1);
        self.generation.set(generation);
        let mut parked = self.parked.borrow_mut();
        let entry = parked.vacant_entry();
        let token = token(entry.key(), generation);
        let watched = epoll::add(
            self.epoll.get_ref(),
            &stream,
            epoll::EventData::new_u64(token),
            epoll::EventFlags::IN | epoll::EventFlags::RDHUP,
        );
        if let Err(error) = watched {
            tracing::warn!(%error, "cannot park a connection; closing it");
            return;
        }
        entry.insert(Parked {
            stream,
            deadline,
            generation,
            payload,
        });
        let mut deadlines = self.deadlines.borrow_mut();
        let earliest = deadlines.peek().map(|Reverse((at, _))| *at);
        deadlines.push(Reverse((deadline, token)));
        if earliest.is_none_or(|at| deadline < at) {
            self.earlier_deadline.notify_one();
        }
        if deadlines.len() > parked.len() + STALE_DEADLINES_ALLOWED {
            *deadlines = parked
                .iter()
                .map(|(key, p)| Reverse((p.deadline, self::token(key, p.generation))))
                .collect();
        }
    }

    /// Watches the parked connections until `stopped` resolves: hands each
    /// one that becomes readable to `resume`, closes each one whose
    /// deadline passed, and at the end closes all that are left.
    pub async fn run(&self, stopped: impl Future<Output = ()>, resume: impl Fn(TcpStream, T)) {
        tokio::pin!(stopped);
        let mut events = Vec::with_capacity(EVENTS_PER_WAIT);
        loop {
            let next = self.deadlines.borrow().peek().map(|Reverse((at, _))| *at);
            tokio::select! {
                ready = self.epoll.readable() => {
                    if let Err(error) = self.take_ready(ready, &mut events) {
                        tracing::error!(%error, "parked connections cannot be watched; closing them");
                        break;
                    }
                    for event in &events {
                        self.resume(event.data.u64(), &resume);
                    }
                }
                () = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {
                    self.expire(Instant::now());
                }
                () = self.earlier_deadline.notified() => {}
                () = &mut stopped => break,
            }
        }
        self.close_all();
    }

    /// Fills `events` with the readiness events waiting in the epoll set.
    fn take_ready(
        &self,
        ready: io::Result<tokio::io::unix::AsyncFdReadyGuard<'_, OwnedFd>>,
        events: &mut Vec<epoll::Event>,
    ) -> io::Result<()> {
        let mut guard = ready?;
        events.clear();
        match epoll::wait(
            self.epoll.get_ref(),
            spare_capacity(events),
            Some(&Timespec::default()),
        ) {
            Ok(n) if n < EVENTS_PER_WAIT => guard.clear_ready(),
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(error) => return Err(error.into()),
        }
        Ok(())
    }

    /// Takes the connection `token` names out of the lot and hands it to
    /// `resume`.
    fn resume(&self, token: u64, resume: &impl Fn(TcpStream, T)) {
        let Some(parked) = self.take(token) else {
            return;
        };
        match TcpStream::from_std(parked.stream) {
            Ok(stream) => resume(stream, parked.payload),
            Err(error) => tracing::debug!(%error, "cannot serve a parked connection again"),
        }
    }

    /// Closes every connection whose deadline is `now` or earlier.
    fn expire(&self, now: Instant) {
        loop {
            let due = {
                let mut deadlines = self.deadlines.borrow_mut();
                match deadlines.peek() {
                    Some(Reverse((at, token))) if *at <= now => {
                        let token = *token;
                        deadlines.pop();
                        token
                    }
                    _ => return,
                }
            };
            // Dropped here, outside the borrows: the socket closes (and
            // leaves the epoll set with it).
            drop(self.take(due));
        }
    }

    /// Removes the connection `token` names, if it is still parked.
    fn take(&self, token: u64) -> Option<Parked<T>> {
        let (key, generation) = untoken(token);
        let mut parked = self.parked.borrow_mut();
        if parked.get(key)?.generation != generation {
            return None;
        }
        let entry = parked.remove(key);
        let _ = epoll::delete(self.epoll.get_ref(), &entry.stream);
        Some(entry)
    }

    /// Closes every parked connection and parks no more.
    fn close_all(&self) {
        self.closed.set(true);
        let parked = std::mem::take(&mut *self.parked.borrow_mut());
        self.deadlines.borrow_mut().clear();
        drop(parked);
    }
}

/// The epoll data of a park: its slab key and generation.
fn token(key: usize, generation: u32) -> u64 {
    (u64::from(generation) << 32) | (key as u64 & 0xffff_ffff)
}

fn untoken(token: u64) -> (usize, u32) {
    ((token & 0xffff_ffff) as usize, (token >> 32) as u32)
}

#[cfg(test)]
#[path = "lot_tests.rs"]
mod tests;
