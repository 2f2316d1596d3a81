//! `random`: picks follow the weights (chi-square test) and skip unavailable
//! candidates without skewing the others.

use proptest::prelude::*;
use strategies::{Candidate, PickContext, Random, Strategy, UpstreamSpec};

const PICKS: usize = 100_000;

/// Upper bound of the chi-square distribution with `df` degrees of freedom
/// at about five standard deviations (Wilson–Hilferty), so a correct
/// strategy fails with probability around 1e-7 per case.
fn chi_square_bound(df: f64) -> f64 {
    let z = 5.0;
    df * (1.0 - 2.0 / (9.0 * df) + z * (2.0 / (9.0 * df)).sqrt()).powi(3)
}

/// Counts picks and returns the chi-square statistic against the weights of
/// the candidates that may be picked.
fn chi_square(weights: &[u32], healthy: &[bool]) -> (f64, f64) {
    let ids: Vec<String> = (0..weights.len()).map(|i| i.to_string()).collect();
    let specs: Vec<_> = weights
        .iter()
        .zip(&ids)
        .map(|(&weight, id)| UpstreamSpec { id, weight })
        .collect();
    let candidates: Vec<_> = weights
        .iter()
        .zip(healthy)
        .map(|(&weight, &healthy)| Candidate {
            healthy,
            active: 0,
            weight,
        })
        .collect();
    let strategy = Random::new(&specs);
    let mut counts = vec![0usize; weights.len()];
    for _ in 0..PICKS {
        // The unwrap cannot fail: callers keep at least one candidate healthy.
        counts[strategy
            .select(&candidates, &PickContext::default())
            .unwrap()
            .index] += 1;
    }
    let live: Vec<usize> = (0..weights.len()).filter(|&i| healthy[i]).collect();
    let total: f64 = live.iter().map(|&i| f64::from(weights[i])).sum();
    let stat = live
        .iter()
        .map(|&i| {
            let expected = PICKS as f64 * f64::from(weights[i]) / total;
            (counts[i] as f64 - expected).powi(2) / expected
        })
        .sum();
    assert!((0..weights.len()).all(|i| healthy[i] || counts[i] == 0));
    (stat, (live.len() - 1).max(1) as f64)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn weighted_within_chi_square_bound(weights in prop::collection::vec(1u32..=10, 2..=8)) {
        let (stat, df) = chi_square(&weights, &vec![true; weights.len()]);
        prop_assert!(stat < chi_square_bound(df), "chi2 {stat} df {df} weights {weights:?}");
    }

    /// With some candidates down, the rest keep their relative weights
    /// (covers both the redraw path and the O(n) fallback pass).
    #[test]
    fn unavailable_candidates_do_not_skew_the_rest(
        weights in prop::collection::vec(1u32..=10, 3..=8),
        down in prop::collection::vec(any::<bool>(), 8),
    ) {
        let mut healthy: Vec<bool> = down[..weights.len()].iter().map(|d| !d).collect();
        healthy[0] = true;
        healthy[1] = true;
        let (stat, df) = chi_square(&weights, &healthy);
        prop_assert!(stat < chi_square_bound(df), "chi2 {stat} df {df}");
    }
}

#[test]
fn heavy_skew_uses_fallback_pass_correctly() {
    // Weight 1000 down, two weight-1 upstreams up: nearly every draw is
    // rejected, so picks come from the O(n) pass and must still be 50/50.
    let (stat, df) = chi_square(&[1000, 1, 1], &[false, true, true]);
    assert!(stat < chi_square_bound(df), "chi2 {stat}");
}
