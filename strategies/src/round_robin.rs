//! Round-robin: placeholder until the smooth weighted version lands.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::{Candidates, Pick, PickContext, Strategy, UpstreamSpec};

/// Cycles through the candidates in order.
#[derive(Debug)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl RoundRobin {
    /// Builds the strategy for a pool.
    pub fn new(_upstreams: &[UpstreamSpec<'_>]) -> Self {
        RoundRobin {
            next: AtomicUsize::new(0),
        }
    }
}

impl Strategy for RoundRobin {
    fn select(&self, candidates: &dyn Candidates, ctx: &PickContext<'_>) -> Option<Pick> {
        let n = candidates.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for panic in [false, true] {
            for step in 0..n {
                let index = (start + step) % n;
                if ctx.tried.contains(index) {
                    continue;
                }
                if panic || candidates.get(index).healthy {
                    return Some(Pick { index, panic });
                }
            }
        }
        None
    }
}
