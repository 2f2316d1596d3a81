//! `random`: each pick independent, with probability proportional to weight.
//!
//! Built on Vose's alias table in exact integer arithmetic, so a pick is one
//! random number, one table column and one compare at any pool size. An
//! unavailable upstream (by the [`health`] rule) is handled
//! by rejection: draw again, up to [`REDRAWS`] times, then draw once from
//! the admitted candidates' weights in an O(n) pass. Both ways give exactly
//! the weighted distribution over the admitted candidates.

use crate::health::{self, Filter};
use crate::rng;
use crate::{Candidates, Pick, PickContext, Strategy, UpstreamSpec};

/// Draws from the full table before the O(n) weighted pass.
pub const REDRAWS: usize = 8;

/// Weighted random choice through an alias table.
#[derive(Debug)]
pub struct Random {
    /// Sum of the weights: each column's capacity in the alias table.
    total: u64,
    /// Per column: draws below this stay in the column (out of `total`).
    keep: Box<[u64]>,
    /// Per column: where draws at or above `keep` go.
    alias: Box<[u32]>,
}

impl Random {
    /// Builds the alias table for a pool (O(n), off the hot path).
    pub fn new(upstreams: &[UpstreamSpec<'_>]) -> Self {
        let weights: Box<[u32]> = upstreams.iter().map(|u| u.weight.max(1)).collect();
        let n = weights.len() as u64;
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        // Column i holds weight i × n in units where every column holds
        // `total`; Vose's method moves the excess of large columns into the
        // room left in small ones.
        let mut scaled: Vec<u128> = weights
            .iter()
            .map(|&w| u128::from(w) * u128::from(n))
            .collect();
        let cap = u128::from(total);
        let mut keep = vec![total; weights.len()];
        let mut alias: Vec<u32> = (0..weights.len() as u32).collect();
        let (mut small, mut large): (Vec<usize>, Vec<usize>) =
            (0..weights.len()).partition(|&i| scaled[i] < cap);
        while let (Some(&s), Some(&l)) = (small.last(), large.last()) {
            small.pop();
            keep[s] = scaled[s] as u64;
            alias[s] = l as u32;
            scaled[l] -= cap - scaled[s];
            if scaled[l] < cap {
                large.pop();
                small.push(l);
            }
        }
        Random {
            total,
            keep: keep.into(),
            alias: alias.into(),
        }
    }

    /// One weighted draw over the whole pool.
    #[inline]
    fn draw(&self) -> usize {
        let n = self.keep.len() as u64;
        let bits = rng::next_u64();
        let column = rng::scale(bits, n) as usize;
        // The low half of bits × n is the position inside the column,
        // independent of which column was hit.
        let within = rng::scale(bits.wrapping_mul(n), self.total);
        if within < self.keep[column] {
            column
        } else {
            self.alias[column] as usize
        }
    }

    fn choose(&self, filter: &Filter<'_>) -> Option<usize> {
        if self.keep.is_empty() {
            return None;
        }
        for _ in 0..REDRAWS {
            let index = self.draw();
            if filter.admit(index).is_some() {
                return Some(index);
            }
        }
        health::weighted_admitted(filter, rng::next_u64())
    }
}

impl Strategy for Random {
    fn select(&self, candidates: &dyn Candidates, ctx: &PickContext<'_>) -> Option<Pick> {
        health::pick(candidates, ctx, |filter| self.choose(&filter))
    }
}
