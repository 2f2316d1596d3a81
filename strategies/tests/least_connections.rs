//! `least-connections`: always a minimum of active/weight among the
//! pickable candidates, ties spread at random by weight.

use proptest::prelude::*;
use strategies::least_connections::SCAN_MAX;
use strategies::{Candidate, LeastConnections, PickContext, Strategy, Tried};

fn load_le(a: &Candidate, b: &Candidate) -> bool {
    u128::from(a.active) * u128::from(b.weight) <= u128::from(b.active) * u128::from(a.weight)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn picks_a_minimum_of_active_per_weight(
        pool in prop::collection::vec((1u32..=10, any::<bool>(), 0u64..=50), 1..=SCAN_MAX),
        tried_bits in any::<u32>(),
    ) {
        let candidates: Vec<Candidate> =
            pool.iter().map(|&(weight, healthy, active)| Candidate { healthy, active, weight }).collect();
        let mut tried = Tried::default();
        (0..pool.len()).filter(|i| tried_bits >> i & 1 == 1).for_each(|i| tried.insert(i));
        let ctx = PickContext { tried, ..PickContext::default() };
        if let Some(pick) = LeastConnections.select(&candidates, &ctx) {
            let chosen = candidates[pick.index];
            for (i, other) in candidates.iter().enumerate() {
                if !tried.contains(i) && (pick.panic || other.healthy) {
                    prop_assert!(load_le(&chosen, other), "{:?} beats chosen {:?}", other, chosen);
                }
            }
        }
    }
}

#[test]
fn ties_are_broken_at_random() {
    let candidates = vec![
        Candidate {
            healthy: true,
            active: 2,
            weight: 1
        };
        5
    ];
    let mut seen = [0usize; 5];
    for _ in 0..2_000 {
        seen[LeastConnections
            .select(&candidates, &PickContext::default())
            .unwrap()
            .index] += 1;
    }
    assert!(seen.iter().all(|&n| n > 300), "{seen:?}");
}

#[test]
fn two_choices_on_large_pools_prefers_the_less_loaded() {
    // Half the pool idle, half busy: two-choices must pick an idle one
    // whenever it samples one, so far more than half the picks are idle.
    let candidates: Vec<Candidate> = (0..1000)
        .map(|i| Candidate {
            healthy: true,
            active: if i % 2 == 0 { 0 } else { 100 },
            weight: 1,
        })
        .collect();
    let idle = (0..10_000)
        .filter(|_| {
            LeastConnections
                .select(&candidates, &PickContext::default())
                .unwrap()
                .index
                % 2
                == 0
        })
        .count();
    assert!(idle > 7_000, "{idle}");
}

#[test]
fn idle_upstreams_share_by_weight() {
    // Light traffic: nothing in flight, so every pick is a tie. (Pools
    // scanned exactly; larger ones draw two at random, which weights only
    // the tie between the two.)
    for count in [2usize, 10, SCAN_MAX] {
        let weights: Vec<u32> = (0..count).map(|i| if i == 0 { 2 } else { 1 }).collect();
        let candidates: Vec<Candidate> = weights
            .iter()
            .map(|&weight| Candidate {
                healthy: true,
                active: 0,
                weight,
            })
            .collect();
        let strategy = LeastConnections::new(&[]);
        let picks = 60_000;
        let heavy = (0..picks)
            .filter(|_| {
                strategy
                    .select(&candidates, &PickContext::default())
                    .unwrap()
                    .index
                    == 0
            })
            .count();
        let share = heavy as f64 / picks as f64;
        let expected = 2.0 / (count as f64 + 1.0);
        assert!(
            (share / expected - 1.0).abs() < 0.1,
            "{count} upstreams: weight 2 got {share}, expected {expected}"
        );
    }
}
