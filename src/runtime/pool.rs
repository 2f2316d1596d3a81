//! A pool: the upstreams of one rule or TCP listener, its strategy, and the
//! live view the strategy picks from.

use strategies::{Candidate, Candidates, Pick, PickContext, Strategy};

use crate::config::HashKey;
use crate::counters::{Region, UpstreamCounter};

/// A compiled pool.
#[derive(Debug)]
pub struct Pool {
    /// Upstream indices (into [`super::Runtime::upstreams`]), in config order.
    pub members: Vec<usize>,
    /// Counter slot of each member (parallel to `members`).
    slots: Vec<usize>,
    /// Weight of each member (parallel to `members`).
    weights: Vec<u32>,
    /// The balancing algorithm.
    strategy: Box<dyn Strategy>,
    /// Where `consistent-hash` reads its key.
    pub hash_key: Option<HashKey>,
}

impl Pool {
    /// Builds a pool; `members` are (upstream index, counter slot, id, weight).
    pub fn new(
        members: &[(usize, usize, &str, u32)],
        kind: strategies::StrategyKind,
        hash_key: Option<HashKey>,
    ) -> Pool {
        let specs: Vec<strategies::UpstreamSpec<'_>> = members
            .iter()
            .map(|&(_, _, id, weight)| strategies::UpstreamSpec { id, weight })
            .collect();
        Pool {
            members: members.iter().map(|m| m.0).collect(),
            slots: members.iter().map(|m| m.1).collect(),
            weights: members.iter().map(|m| m.3).collect(),
            strategy: kind.build(&specs),
            hash_key,
        }
    }

    /// Picks a member; the returned index is into `members`.
    pub fn pick(&self, region: &Region, ctx: &PickContext<'_>) -> Option<Pick> {
        self.strategy.select(&LiveView { pool: self, region }, ctx)
    }
}

/// The pool's members as the strategy sees them: health and active
/// connections read from the counter region at pick time.
struct LiveView<'a> {
    pool: &'a Pool,
    region: &'a Region,
}

impl Candidates for LiveView<'_> {
    fn len(&self) -> usize {
        self.pool.slots.len()
    }

    fn get(&self, index: usize) -> Candidate {
        let slot = self.pool.slots[index];
        Candidate {
            healthy: self.region.is_up(slot),
            active: self.region.upstream_total(slot, UpstreamCounter::Active),
            weight: self.pool.weights[index],
        }
    }
}
