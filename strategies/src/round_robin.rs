//! `round-robin`: smooth weighted round-robin, as nginx does it.
//!
//! nginx's algorithm keeps a running score per upstream: every pick adds each
//! weight to its score, takes the highest score and subtracts the total
//! weight from it. Weights 5:1:1 give `a a b a c a a`: the heavy upstream is
//! spread out, never sent a burst. Doing that per pick is O(n) and needs a
//! lock, so [`RoundRobin`] runs the algorithm once at build time for one full
//! cycle and stores the resulting schedule; a pick is one atomic
//! `fetch_add` and one table read.
//!
//! The cycle is `sum(weights) / gcd(weights)` long. Pools whose cycle would
//! exceed [`MAX_CYCLE`] entries have their weights scaled down to fit (each
//! weight stays at least 1), which keeps ratios to within 1/[`MAX_CYCLE`] of
//! the total.
//!
//! Unavailable upstreams (by the [`health`] rule) are skipped
//! by walking on in the schedule, and the shared cursor is moved past the
//! skipped entries so that the remaining upstreams keep their relative
//! shares. A walk longer than [`WALK_LIMIT`] entries (a badly degraded pool)
//! ends in an O(n) scan.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::health::{self, Filter};
use crate::rng;
use crate::{Candidates, Pick, PickContext, Strategy, UpstreamSpec};

/// Longest schedule kept per pool: 65 536 entries (256 KiB).
pub const MAX_CYCLE: u64 = 1 << 16;

/// Schedule entries examined before falling back to a linear scan.
pub const WALK_LIMIT: usize = 64;

/// Smooth weighted round-robin over a precomputed cycle.
#[derive(Debug)]
pub struct RoundRobin {
    schedule: Box<[u32]>,
    next: AtomicUsize,
}

impl RoundRobin {
    /// Builds the schedule for a pool (O(n × cycle length), off the hot
    /// path).
    pub fn new(upstreams: &[UpstreamSpec<'_>]) -> Self {
        let weights: Vec<u64> = upstreams
            .iter()
            .map(|u| u64::from(u.weight.max(1)))
            .collect();
        RoundRobin {
            schedule: smooth_schedule(&cycle_weights(&weights)).into(),
            next: AtomicUsize::new(0),
        }
    }

    /// The next admitted index in schedule order; shared with
    /// `consistent-hash`, which falls back to it for requests without a key.
    pub(crate) fn choose(&self, filter: &Filter<'_>) -> Option<usize> {
        let len = self.schedule.len();
        if len == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut position = start % len;
        for step in 0..len.min(WALK_LIMIT) {
            let index = self.schedule[position] as usize;
            if filter.admit(index).is_some() {
                if step > 0 {
                    self.next.fetch_add(step, Ordering::Relaxed);
                }
                return Some(index);
            }
            position += 1;
            if position == len {
                position = 0;
            }
        }
        // A long run of unavailable entries: a weighted draw among the
        // admitted, not the first one after the run, which would take
        // every pick that lands in it.
        let found = health::weighted_admitted(filter, rng::next_u64());
        if found.is_none() {
            // Nothing admitted: give the step back, so the panic pass that
            // follows continues the rotation instead of skipping a slot.
            self.next.fetch_sub(1, Ordering::Relaxed);
        }
        found
    }
}

impl Strategy for RoundRobin {
    fn select(&self, candidates: &dyn Candidates, ctx: &PickContext<'_>) -> Option<Pick> {
        health::pick(candidates, ctx, |filter| self.choose(&filter))
    }
}

/// Reduces weights to the shortest cycle with the same schedule, scaling
/// them down when the cycle would exceed [`MAX_CYCLE`].
fn cycle_weights(weights: &[u64]) -> Vec<u64> {
    let reduce = |ws: Vec<u64>| {
        let g = ws.iter().copied().fold(0, gcd).max(1);
        ws.into_iter().map(|w| w / g).collect::<Vec<_>>()
    };
    let reduced = reduce(weights.to_vec());
    let total: u64 = reduced.iter().sum();
    if total <= MAX_CYCLE {
        return reduced;
    }
    let scaled = reduced
        .iter()
        .map(|&w| ((u128::from(w) * u128::from(MAX_CYCLE) / u128::from(total)) as u64).max(1))
        .collect();
    reduce(scaled)
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// nginx's smooth weighted round-robin run for one cycle of `sum(weights)`
/// picks; ties go to the lowest index, as in nginx.
pub(crate) fn smooth_schedule(weights: &[u64]) -> Vec<u32> {
    let total: u64 = weights.iter().sum();
    let mut current = vec![0i64; weights.len()];
    let mut schedule = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for (i, &w) in weights.iter().enumerate() {
            current[i] += w as i64;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total as i64;
        schedule.push(best as u32);
    }
    schedule
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_example_5_1_1() {
        assert_eq!(smooth_schedule(&[5, 1, 1]), [0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn weights_reduce_by_gcd_and_scale_to_fit() {
        assert_eq!(cycle_weights(&[4, 2, 2]), [2, 1, 1]);
        let big = cycle_weights(&[u64::from(u32::MAX), 1]);
        assert!(big.iter().sum::<u64>() <= MAX_CYCLE + 1);
        assert_eq!(big[1], 1);
    }
}
