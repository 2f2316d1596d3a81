//! `consistent-hash`: stable keys, weighted shares, minimal disruption when
//! an upstream leaves, goes down or comes back.

use proptest::prelude::*;
use strategies::{Candidate, ConsistentHash, PickContext, Strategy, UpstreamSpec};

/// Keys per share/disruption measurement: enough for ±0.1% noise.
const KEYS: u32 = 1_000_000;

struct Pool {
    ids: Vec<String>,
    weights: Vec<u32>,
}

impl Pool {
    fn new(weights: &[u32]) -> Self {
        Pool {
            ids: (0..weights.len())
                .map(|i| format!("10.0.0.{i}:80"))
                .collect(),
            weights: weights.to_vec(),
        }
    }

    fn without(&self, gone: usize) -> Self {
        let mut pool = Pool {
            ids: self.ids.clone(),
            weights: self.weights.clone(),
        };
        pool.ids.remove(gone);
        pool.weights.remove(gone);
        pool
    }

    fn strategy(&self) -> ConsistentHash {
        let specs: Vec<_> = self
            .ids
            .iter()
            .zip(&self.weights)
            .map(|(id, &weight)| UpstreamSpec { id, weight })
            .collect();
        ConsistentHash::new(&specs)
    }

    fn candidates(&self) -> Vec<Candidate> {
        self.weights
            .iter()
            .map(|&weight| Candidate {
                healthy: true,
                active: 0,
                weight,
            })
            .collect()
    }

    /// The id each of `keys` maps to.
    fn mapping(&self, candidates: &[Candidate], keys: u32) -> Vec<&str> {
        let strategy = self.strategy();
        (0..keys)
            .map(|k| {
                let key = k.to_le_bytes();
                let ctx = PickContext {
                    key: Some(&key),
                    ..PickContext::default()
                };
                // The unwrap cannot fail: the pool has a healthy candidate.
                self.ids[strategy.select(&candidates, &ctx).unwrap().index].as_str()
            })
            .collect()
    }
}

fn moved(before: &[&str], after: &[&str]) -> f64 {
    before.iter().zip(after).filter(|(a, b)| a != b).count() as f64 / before.len() as f64
}

/// Each share within 2% of its weight share, relative (stricter than two
/// percentage points).
#[test]
fn shares_follow_weights_within_two_percent() {
    for weights in [&[1, 1, 1][..], &[5, 1, 1], &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]] {
        let pool = Pool::new(weights);
        let mapping = pool.mapping(&pool.candidates(), KEYS);
        let total: u32 = weights.iter().sum();
        for (id, &w) in pool.ids.iter().zip(weights) {
            let share = mapping.iter().filter(|m| *m == id).count() as f64 / f64::from(KEYS);
            let expected = f64::from(w) / f64::from(total);
            assert!(
                (share / expected - 1.0).abs() <= 0.02,
                "{weights:?}: {id} has {share}, expected {expected}"
            );
        }
    }
}

#[test]
fn removing_one_of_n_moves_only_its_keys_and_adding_it_back_restores() {
    let keys = KEYS / 4;
    for n in [3, 5, 10, 50] {
        let pool = Pool::new(&vec![1; n]);
        let before = pool.mapping(&pool.candidates(), keys);
        let gone = n / 2;
        let smaller = pool.without(gone);
        let after = smaller.mapping(&smaller.candidates(), keys);
        let share = moved(&before, &after);
        assert!(
            share <= 1.0 / n as f64 + 0.01,
            "n={n}: {share} of keys moved"
        );
        let back = pool.mapping(&pool.candidates(), keys);
        assert_eq!(
            before, back,
            "n={n}: adding the upstream back did not restore the mapping"
        );
    }
}

#[test]
fn config_order_does_not_change_the_mapping() {
    let pool = Pool::new(&[1, 2, 3, 4]);
    let mut reversed = Pool {
        ids: pool.ids.clone(),
        weights: pool.weights.clone(),
    };
    reversed.ids.reverse();
    reversed.weights.reverse();
    assert_eq!(
        pool.mapping(&pool.candidates(), 10_000),
        reversed.mapping(&reversed.candidates(), 10_000)
    );
}

#[test]
fn down_upstream_moves_only_its_keys_and_they_come_back() {
    let pool = Pool::new(&[1; 5]);
    let up = pool.candidates();
    let before = pool.mapping(&up, 100_000);
    let mut down = up.clone();
    down[2].healthy = false;
    let during = pool.mapping(&down, 100_000);
    for (b, d) in before.iter().zip(&during) {
        if *b == pool.ids[2] {
            assert_ne!(d, b);
        } else {
            assert_eq!(d, b, "a key not on the down upstream moved");
        }
    }
    assert_eq!(pool.mapping(&up, 100_000), before);
}

#[test]
fn tried_upstream_gives_the_next_choice() {
    let pool = Pool::new(&[1; 4]);
    let strategy = pool.strategy();
    let candidates = pool.candidates();
    let ctx = PickContext {
        key: Some(b"user-42"),
        ..PickContext::default()
    };
    let first = strategy.select(&candidates, &ctx).unwrap();
    let mut retry = ctx;
    retry.tried.insert(first.index);
    let second = strategy.select(&candidates, &retry).unwrap();
    assert_ne!(first.index, second.index);
    assert_eq!(
        strategy.select(&candidates, &retry),
        Some(second),
        "the retry choice is stable too"
    );
}

#[test]
fn keyless_requests_use_round_robin() {
    let pool = Pool::new(&[1; 3]);
    let strategy = pool.strategy();
    let candidates = pool.candidates();
    let got: Vec<usize> = (0..6)
        .map(|_| {
            strategy
                .select(&candidates, &PickContext::default())
                .unwrap()
                .index
        })
        .collect();
    assert_eq!(got, [0, 1, 2, 0, 1, 2]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn same_key_same_upstream(
        weights in prop::collection::vec(1u32..=5, 1..=12),
        keys in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..32), 1..50),
    ) {
        let pool = Pool::new(&weights);
        let (one, two) = (pool.strategy(), pool.strategy());
        let candidates = pool.candidates();
        for key in &keys {
            let ctx = PickContext { key: Some(key), ..PickContext::default() };
            let first = one.select(&candidates, &ctx);
            prop_assert_eq!(first, one.select(&candidates, &ctx));
            prop_assert_eq!(first, two.select(&candidates, &ctx));
        }
    }
}

/// Shares of the healthy members when `down` are down.
fn shares_while_down(weights: &[u32], down: &[usize]) -> Vec<f64> {
    let pool = Pool::new(weights);
    let mut candidates = pool.candidates();
    for &index in down {
        candidates[index].healthy = false;
    }
    let keys = KEYS / 10;
    let mapping = pool.mapping(&candidates, keys);
    pool.ids
        .iter()
        .map(|id| mapping.iter().filter(|m| *m == id).count() as f64 / f64::from(keys))
        .collect()
}

#[test]
fn a_down_members_keys_spread_over_the_others_by_weight() {
    // Its keys do not all go to whichever member follows it in the table.
    for (weights, down, expected) in [
        (&[1, 1, 1][..], 0, [0.0, 0.5, 0.5]),
        (&[1, 1, 1], 1, [0.5, 0.0, 0.5]),
        (&[1000, 1, 1], 0, [0.0, 0.5, 0.5]),
        (&[1000, 3, 1], 0, [0.0, 0.75, 0.25]),
    ] {
        let shares = shares_while_down(weights, &[down]);
        for (share, want) in shares.iter().zip(expected) {
            assert!(
                (share - want).abs() <= 0.04,
                "{weights:?} with {down} down: {shares:?}, expected {expected:?}"
            );
        }
    }
}
