//! The one rule for which candidates may be picked, shared by every strategy.
//!
//! A strategy never looks at `healthy` or [`Tried`] itself. It implements
//! "choose the best index among those a [`Filter`] admits" and hands that
//! closure to [`pick`], which applies the rule:
//!
//! 1. Normal mode: a candidate is admitted when it is healthy and not tried.
//!    If the strategy finds one, that is the pick (`panic: false`).
//! 2. Otherwise, if *no* candidate of the pool is healthy at all, the pool is
//!    in panic mode (as in Envoy): every untried candidate is admitted and
//!    the strategy chooses again (`panic: true`).
//! 3. Otherwise (some candidate is healthy but every healthy one was tried,
//!    or the pool is empty, or everything was tried) there is no pick.
//!
//! The normal pass costs what the strategy costs; the O(n) "is anything
//! healthy" scan runs only when the normal pass found nothing.

use crate::rng;
use crate::{Candidate, Candidates, Pick, PickContext, Tried};

/// Which candidates a strategy may choose from in the current pass.
///
/// Exists so that strategies share one definition of "pickable" and cannot
/// get the health and retry rule subtly different from each other.
#[derive(Clone, Copy)]
pub struct Filter<'a> {
    candidates: &'a dyn Candidates,
    len: usize,
    tried: Tried,
    panic: bool,
}

impl<'a> Filter<'a> {
    /// The live state of candidate `index` if the rule admits it in this
    /// pass, so a strategy reads each candidate once.
    #[inline]
    pub fn admit(&self, index: usize) -> Option<Candidate> {
        if index >= self.len || self.tried.contains(index) {
            return None;
        }
        let candidate = self.candidates.get(index);
        (self.panic || candidate.healthy).then_some(candidate)
    }

    /// Number of candidates in the pool.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the pool is empty (nothing can ever be admitted).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Applies the health and retry rule around a strategy's choice.
///
/// `choose` must return an index the filter admits whenever at least one
/// candidate is admitted, and `None` only when none is; [`pick`] calls it at
/// most twice (normal pass, then panic pass).
#[inline]
pub fn pick(
    candidates: &dyn Candidates,
    ctx: &PickContext<'_>,
    mut choose: impl FnMut(Filter<'_>) -> Option<usize>,
) -> Option<Pick> {
    let len = candidates.len();
    if len == 0 {
        return None;
    }
    let normal = Filter {
        candidates,
        len,
        tried: ctx.tried,
        panic: false,
    };
    if let Some(index) = choose(normal) {
        debug_assert!(
            normal.admit(index).is_some(),
            "strategy chose a filtered candidate"
        );
        return Some(Pick {
            index,
            panic: false,
        });
    }
    if (0..len).any(|index| candidates.get(index).healthy) {
        return None;
    }
    let panic = Filter {
        panic: true,
        ..normal
    };
    let index = choose(panic)?;
    debug_assert!(
        panic.admit(index).is_some(),
        "strategy chose a tried candidate"
    );
    Some(Pick { index, panic: true })
}

/// An admitted index drawn in proportion to weight, `bits` deciding which
/// (random bits, or a key's hash for a choice stable per key): the O(n)
/// fallback of strategies whose fast path found nothing, so the admitted
/// candidates share as their weights say (a first-admitted scan would send
/// everything to whichever comes first).
pub fn weighted_admitted(filter: &Filter<'_>, bits: u64) -> Option<usize> {
    let weight = |index: usize| filter.admit(index).map(|c| u64::from(c.weight.max(1)));
    let total: u64 = (0..filter.len()).filter_map(weight).sum();
    if total == 0 {
        return None;
    }
    let mut target = rng::scale(bits, total);
    (0..filter.len()).find(|&index| match weight(index) {
        Some(w) if target < w => true,
        Some(w) => {
            target -= w;
            false
        }
        None => false,
    })
}

/// First admitted index at or after `start`, wrapping around: the O(n)
/// fallback strategies use when their fast path found nothing.
#[inline]
pub fn first_admitted_from(filter: &Filter<'_>, start: usize) -> Option<usize> {
    let n = filter.len();
    (0..n)
        .map(|step| (start + step) % n)
        .find(|&index| filter.admit(index).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(healthy: bool) -> Candidate {
        Candidate {
            healthy,
            active: 0,
            weight: 1,
        }
    }

    fn first(cands: &[Candidate], tried: &[usize]) -> Option<Pick> {
        let mut ctx = PickContext::default();
        for &t in tried {
            ctx.tried.insert(t);
        }
        pick(&cands, &ctx, |f| first_admitted_from(&f, 0))
    }

    #[test]
    fn healthy_untried_is_picked() {
        let pool = [c(false), c(true), c(true)];
        assert_eq!(
            first(&pool, &[]),
            Some(Pick {
                index: 1,
                panic: false
            })
        );
        assert_eq!(
            first(&pool, &[1]),
            Some(Pick {
                index: 2,
                panic: false
            })
        );
    }

    #[test]
    fn all_healthy_tried_is_none_not_panic() {
        let pool = [c(false), c(true), c(false)];
        assert_eq!(first(&pool, &[1]), None);
    }

    #[test]
    fn nothing_healthy_is_panic_among_untried() {
        let pool = [c(false), c(false), c(false)];
        assert_eq!(
            first(&pool, &[]),
            Some(Pick {
                index: 0,
                panic: true
            })
        );
        assert_eq!(
            first(&pool, &[0]),
            Some(Pick {
                index: 1,
                panic: true
            })
        );
        assert_eq!(first(&pool, &[0, 1, 2]), None);
    }

    #[test]
    fn empty_pool_is_none() {
        let pool: [Candidate; 0] = [];
        assert_eq!(first(&pool, &[]), None);
    }

    #[test]
    fn first_admitted_wraps() {
        let pool = [c(true), c(false), c(false)];
        let ctx = PickContext::default();
        let got = pick(&&pool[..], &ctx, |f| first_admitted_from(&f, 2));
        assert_eq!(
            got,
            Some(Pick {
                index: 0,
                panic: false
            })
        );
    }
}
