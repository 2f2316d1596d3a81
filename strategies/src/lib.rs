//! Load-balancing strategies for sluice.
//!
//! A [`Strategy`] is built once per config generation from a pool's upstreams
//! ([`UpstreamSpec`]: id and weight), off the hot path. At pick time it gets
//! a live view of the candidates ([`Candidates`]: health, active connections
//! summed over all workers, weight) and a [`PickContext`] (client address,
//! optional hash key, indices already tried), and returns a [`Pick`].
//!
//! This crate knows nothing of sockets, async runtimes or processes.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

mod round_robin;

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
    /// Smooth weighted round-robin (the default).
    #[default]
    RoundRobin,
}

impl StrategyKind {
    /// Every kind with its config name, for parsing and "did you mean".
    pub const ALL: &'static [(&'static str, StrategyKind)] =
        &[("round-robin", StrategyKind::RoundRobin)];

    /// The config name of this kind.
    pub fn name(self) -> &'static str {
        match self {
            StrategyKind::RoundRobin => "round-robin",
        }
    }

    /// Builds the strategy for a pool with these upstreams.
    pub fn build(self, upstreams: &[UpstreamSpec<'_>]) -> Box<dyn Strategy> {
        match self {
            StrategyKind::RoundRobin => Box::new(RoundRobin::new(upstreams)),
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
