//! Load-balancing strategies for sluice.
//!
//! A [`Strategy`] is built once per config generation from a pool's upstreams
//! ([`UpstreamSpec`]: id and weight), off the hot path. At pick time it gets
//! a live view of the candidates ([`Candidates`]: health, active connections
//! summed over all workers, weight) and a [`PickContext`] (client address,
//! optional hash key, indices already tried), and returns a [`Pick`].
//! A pick takes no lock and allocates nothing.
//!
//! This crate knows nothing of sockets, async runtimes or processes.
//!
//! # Layout
//!
//! - [`health`]: the one rule for which candidates may be picked (healthy,
//!   not tried; panic mode when nothing is healthy), applied around every
//!   strategy's choice.
//! - `rng` (private): per-thread wyrand random numbers, no locks.
//! - [`round_robin`]: `round-robin`, nginx's smooth weighted round-robin
//!   from a schedule precomputed at build time.
//! - [`random`]: `random`, weighted, through an alias table.
//! - [`least_connections`]: `least-connections`, fewest active per weight;
//!   exact scan for small pools, power-of-two-choices for large ones.
//! - [`consistent_hash`]: `consistent-hash`, a Maglev lookup table keyed by
//!   [`PickContext::key`], round-robin for keyless requests.
//!
//! # Adding a strategy
//!
//! 1. Write `src/my_strategy.rs` with a type that is built from
//!    `&[UpstreamSpec]` (precompute everything there) and implements
//!    [`Strategy`] by calling [`health::pick`] with a closure that chooses
//!    among the indices the given [`health::Filter`] admits. The closure must
//!    return an admitted index whenever one exists; never test `healthy` or
//!    `tried` yourself. Per-pick state must be atomics (or the thread-local
//!    random numbers in `rng`).
//! 2. Add a [`StrategyKind`] variant, its config name to
//!    [`StrategyKind::ALL`] and [`StrategyKind::name`], and its constructor
//!    to [`StrategyKind::build`].
//!
//! The conformance tests in `tests/conformance.rs` run over
//! [`StrategyKind::ALL`], so the new strategy is checked against the health
//! rule with no further work, and `benches/pick.rs` measures it too; add
//! its own property tests as `tests/my_strategy.rs`. `README.md` has the
//! benchmark table and the same guide.

#![warn(missing_docs)]

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

pub mod consistent_hash;
pub mod health;
pub mod least_connections;
pub mod random;
mod rng;
pub mod round_robin;

pub use consistent_hash::ConsistentHash;
pub use least_connections::LeastConnections;
pub use random::Random;
pub use round_robin::RoundRobin;

/// One upstream of a pool as the strategy sees it when it is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpstreamSpec<'a> {
    /// Stable identity of the upstream (its configured id).
    pub id: &'a str,
    /// Relative weight, at least 1.
    pub weight: u32,
}

/// The live state of one candidate at pick time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Whether health checks currently consider the upstream up.
    pub healthy: bool,
    /// Active connections (HTTP: requests in flight; TCP: open tunnels),
    /// summed over every worker process.
    pub active: u64,
    /// Relative weight, at least 1.
    pub weight: u32,
}

/// A read-only view of a pool's candidates, indexed like the
/// [`UpstreamSpec`] slice the strategy was built from.
///
/// The proxy implements it over shared memory, so reading a candidate is a
/// couple of atomic loads and never allocates.
pub trait Candidates {
    /// Number of candidates; equal to the number of specs at build time.
    fn len(&self) -> usize;
    /// Whether the pool is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The live state of candidate `index` (`index < len()`).
    fn get(&self, index: usize) -> Candidate;
}

impl Candidates for [Candidate] {
    fn len(&self) -> usize {
        <[Candidate]>::len(self)
    }
    fn get(&self, index: usize) -> Candidate {
        self[index]
    }
}

/// A reference to a view is a view, so `&&[Candidate]` (a sized type) can
/// be passed as `&dyn Candidates` in tests and simple callers.
impl<T: Candidates + ?Sized> Candidates for &T {
    fn len(&self) -> usize {
        (**self).len()
    }
    fn get(&self, index: usize) -> Candidate {
        (**self).get(index)
    }
}

/// An owned list of candidate states, for tests and simple callers.
impl Candidates for Vec<Candidate> {
    fn len(&self) -> usize {
        <[Candidate]>::len(self)
    }
    fn get(&self, index: usize) -> Candidate {
        self[index]
    }
}

/// A fixed-size array of candidate states, for tests and simple callers.
impl<const N: usize> Candidates for [Candidate; N] {
    fn len(&self) -> usize {
        N
    }
    fn get(&self, index: usize) -> Candidate {
        self[index]
    }
}

/// Indices already tried for the current request or connection, as a bit
/// set: retries never go back to one of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tried(u128);

impl Tried {
    /// Marks `index` as tried. Indices past 127 are not tracked (pools that
    /// large retry at most `retries` times and may rarely repeat one).
    pub fn insert(&mut self, index: usize) {
        if index < 128 {
            self.0 |= 1 << index;
        }
    }
    /// Whether `index` was tried already.
    pub fn contains(&self, index: usize) -> bool {
        index < 128 && self.0 & (1 << index) != 0
    }
    /// Whether nothing was tried yet.
    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }
}

/// What a strategy may look at besides the candidates.
#[derive(Clone, Copy, Debug, Default)]
pub struct PickContext<'a> {
    /// The client's address, when known.
    pub client: Option<IpAddr>,
    /// The hash key extracted by the proxy for `consistent-hash` (the bytes
    /// of a header, cookie, path, query parameter or client IP); `None` when
    /// the request has no such key.
    pub key: Option<&'a [u8]>,
    /// Candidates already tried for this request.
    pub tried: Tried,
}

/// The result of a pick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pick {
    /// Index of the chosen candidate.
    pub index: usize,
    /// True when no untried candidate was healthy and the pick was made
    /// among all untried candidates (panic mode).
    pub panic: bool,
}

/// A balancing algorithm over one pool.
///
/// Implementations are shared by every connection of a worker, so `select`
/// takes `&self`; any per-pick state is atomic. `select` must not allocate
/// or lock.
pub trait Strategy: Send + Sync + fmt::Debug {
    /// Picks a candidate, or `None` when every candidate was tried already
    /// or the pool is empty.
    fn select(&self, candidates: &dyn Candidates, ctx: &PickContext<'_>) -> Option<Pick>;
}

/// The strategies a pool can be configured with, by config name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum StrategyKind {
    /// Independent weighted random picks.
    Random,
    /// Smooth weighted round-robin (the default).
    #[default]
    RoundRobin,
    /// Fewest active connections per weight, ties at random.
    LeastConnections,
    /// Maglev consistent hashing on the request's hash key.
    ConsistentHash,
}

impl StrategyKind {
    /// Every kind with its config name, for parsing and "did you mean".
    pub const ALL: &'static [(&'static str, StrategyKind)] = &[
        ("random", StrategyKind::Random),
        ("round-robin", StrategyKind::RoundRobin),
        ("least-connections", StrategyKind::LeastConnections),
        ("consistent-hash", StrategyKind::ConsistentHash),
    ];

    /// The config name of this kind.
    pub fn name(self) -> &'static str {
        match self {
            StrategyKind::Random => "random",
            StrategyKind::RoundRobin => "round-robin",
            StrategyKind::LeastConnections => "least-connections",
            StrategyKind::ConsistentHash => "consistent-hash",
        }
    }

    /// Builds the strategy for a pool with these upstreams.
    pub fn build(self, upstreams: &[UpstreamSpec<'_>]) -> Box<dyn Strategy> {
        match self {
            StrategyKind::Random => Box::new(Random::new(upstreams)),
            StrategyKind::RoundRobin => Box::new(RoundRobin::new(upstreams)),
            StrategyKind::LeastConnections => Box::new(LeastConnections::new(upstreams)),
            StrategyKind::ConsistentHash => Box::new(ConsistentHash::new(upstreams)),
        }
    }
}

/// Error for a strategy name that is not known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownStrategy(pub String);

impl fmt::Display for UnknownStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown strategy `{}`", self.0)
    }
}

impl std::error::Error for UnknownStrategy {}

impl FromStr for StrategyKind {
    type Err = UnknownStrategy;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StrategyKind::ALL
            .iter()
            .find(|(name, _)| *name == s)
            .map(|(_, kind)| *kind)
            .ok_or_else(|| UnknownStrategy(s.to_owned()))
    }
}
