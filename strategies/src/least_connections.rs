//! `least-connections`: the candidate with the fewest active connections per
//! unit of weight, ties broken at random.
//!
//! Load is `active / weight`, compared exactly by cross-multiplying
//! (`a.active × b.weight` against `b.active × a.weight`), using the live
//! weight of each [`Candidate`].
//!
//! Cost: an exact pick reads every candidate, O(n) — a few nanoseconds per
//! candidate through the `Candidates` view, since each read is a couple of
//! atomic loads in shared memory. Pools larger than [`SCAN_MAX`] use
//! power-of-two-choices instead (two random admitted candidates, the less
//! loaded wins; Mitzenmacher's result is that this keeps the maximum load
//! within O(log log n) of the mean), which is O(1). The threshold comes
//! from the benchmark in this crate's README: a full scan of 32 candidates
//! costs about as much as the other strategies' whole pick budget.

use std::cmp::Ordering;

use crate::health::{self, Filter};
use crate::rng;
use crate::{Candidate, Candidates, Pick, PickContext, Strategy, UpstreamSpec};

/// Largest pool that is scanned exactly; larger pools use
/// power-of-two-choices.
pub const SCAN_MAX: usize = 32;

/// Random pairs drawn for power-of-two-choices before falling back to a
/// full scan (only reached when most candidates are unavailable).
pub const P2C_ATTEMPTS: usize = 4;

/// Least active connections per weight.
#[derive(Debug, Default)]
pub struct LeastConnections;

impl LeastConnections {
    /// Builds the strategy; it keeps no per-pool state.
    pub fn new(_upstreams: &[UpstreamSpec<'_>]) -> Self {
        LeastConnections
    }
}

impl Strategy for LeastConnections {
    fn select(&self, candidates: &dyn Candidates, ctx: &PickContext<'_>) -> Option<Pick> {
        health::pick(candidates, ctx, |filter| {
            if filter.len() <= SCAN_MAX {
                scan(&filter)
            } else {
                two_choices(&filter).or_else(|| scan(&filter))
            }
        })
    }
}

/// Orders two candidates by `active / weight`.
#[inline]
fn compare_load(a: &Candidate, b: &Candidate) -> Ordering {
    let left = u128::from(a.active) * u128::from(b.weight.max(1));
    let right = u128::from(b.active) * u128::from(a.weight.max(1));
    left.cmp(&right)
}

/// Exact minimum over all admitted candidates; among equal loads each is
/// chosen with equal probability (reservoir sampling on a local wyrand
/// stream, so ties cost a multiply, not a thread-local access).
pub(crate) fn scan(filter: &Filter<'_>) -> Option<usize> {
    let mut stream = rng::next_u64();
    let mut best: Option<(usize, Candidate)> = None;
    let mut ties = 0u64;
    for index in 0..filter.len() {
        let Some(candidate) = filter.admit(index) else {
            continue;
        };
        let order = best
            .as_ref()
            .map_or(Ordering::Less, |(_, b)| compare_load(&candidate, b));
        match order {
            Ordering::Less => {
                best = Some((index, candidate));
                ties = 1;
            }
            Ordering::Equal => {
                ties += 1;
                stream = stream.wrapping_add(0xa076_1d64_78bd_642f);
                if rng::scale(rng::mix(stream), ties) == 0 {
                    best = Some((index, candidate));
                }
            }
            Ordering::Greater => {}
        }
    }
    best.map(|(index, _)| index)
}

/// Power-of-two-choices: the less loaded of two distinct random admitted
/// candidates; `None` if no admitted candidate turned up in
/// [`P2C_ATTEMPTS`] pairs.
fn two_choices(filter: &Filter<'_>) -> Option<usize> {
    let n = filter.len() as u64;
    for _ in 0..P2C_ATTEMPTS {
        let bits = rng::next_u64();
        let first = rng::scale(bits, n);
        let mut second = rng::scale(bits.wrapping_mul(n), n - 1);
        if second >= first {
            second += 1;
        }
        let (first, second) = (first as usize, second as usize);
        match (filter.admit(first), filter.admit(second)) {
            (Some(a), Some(b)) => {
                return Some(match compare_load(&a, &b) {
                    Ordering::Less => first,
                    Ordering::Greater => second,
                    Ordering::Equal if rng::mix(bits) & 1 == 0 => first,
                    Ordering::Equal => second,
                });
            }
            (Some(_), None) => return Some(first),
            (None, Some(_)) => return Some(second),
            (None, None) => {}
        }
    }
    None
}
