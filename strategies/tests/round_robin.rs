//! `round-robin`: exactly nginx's smooth weighted round-robin, cycle by
//! cycle.

use proptest::prelude::*;
use strategies::{Candidate, PickContext, RoundRobin, Strategy, UpstreamSpec};

fn specs<'a>(ids: &'a [String], weights: &[u32]) -> Vec<UpstreamSpec<'a>> {
    weights
        .iter()
        .zip(ids)
        .map(|(&weight, id)| UpstreamSpec { id, weight })
        .collect()
}

fn healthy(weights: &[u32]) -> Vec<Candidate> {
    weights
        .iter()
        .map(|&weight| Candidate {
            healthy: true,
            active: 0,
            weight,
        })
        .collect()
}

fn picks(strategy: &RoundRobin, candidates: &[Candidate], count: usize) -> Vec<usize> {
    // The unwrap cannot fail: every candidate is healthy and none is tried.
    (0..count)
        .map(|_| {
            strategy
                .select(&candidates, &PickContext::default())
                .unwrap()
                .index
        })
        .collect()
}

/// nginx's algorithm as written in `ngx_http_upstream_get_peer`, per pick.
fn nginx(weights: &[u32], count: usize) -> Vec<usize> {
    let total: i64 = weights.iter().map(|&w| i64::from(w)).sum();
    let mut current = vec![0i64; weights.len()];
    (0..count)
        .map(|_| {
            let mut best = 0;
            for (i, &w) in weights.iter().enumerate() {
                current[i] += i64::from(w);
                if current[i] > current[best] {
                    best = i;
                }
            }
            current[best] -= total;
            best
        })
        .collect()
}

#[test]
fn five_one_one_is_the_nginx_sequence() {
    let ids = ["a", "b", "c"].map(String::from);
    let strategy = RoundRobin::new(&specs(&ids, &[5, 1, 1]));
    let got = picks(&strategy, &healthy(&[5, 1, 1]), 14);
    assert_eq!(got, [0, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 2, 0, 0]);
}

#[test]
fn down_upstream_leaves_the_others_even() {
    let ids = ["a", "b", "c"].map(String::from);
    let strategy = RoundRobin::new(&specs(&ids, &[5, 1, 1]));
    let mut candidates = healthy(&[5, 1, 1]);
    candidates[0].healthy = false;
    let got = picks(&strategy, &candidates, 70);
    let b = got.iter().filter(|&&i| i == 1).count();
    assert_eq!(b, 35, "{got:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The pick sequence equals nginx's over two cycles, and every cycle
    /// gives each upstream exactly its weight (no bursts beyond nginx's).
    #[test]
    fn equals_nginx_exactly_per_cycle(weights in prop::collection::vec(1u32..=20, 1..=8)) {
        let ids: Vec<String> = (0..weights.len()).map(|i| i.to_string()).collect();
        let strategy = RoundRobin::new(&specs(&ids, &weights));
        let total: usize = weights.iter().map(|&w| w as usize).sum();
        let got = picks(&strategy, &healthy(&weights), 2 * total);
        prop_assert_eq!(&got, &nginx(&weights, 2 * total));
        for cycle in got.chunks(total) {
            for (i, &w) in weights.iter().enumerate() {
                prop_assert_eq!(cycle.iter().filter(|&&p| p == i).count(), w as usize);
            }
        }
    }
}

/// Picks from several threads share one cursor: together they still hand
/// out each cycle position exactly once.
#[test]
fn concurrent_picks_keep_exact_shares() {
    let ids = ["a", "b", "c"].map(String::from);
    let strategy = RoundRobin::new(&specs(&ids, &[5, 1, 1]));
    let candidates = healthy(&[5, 1, 1]);
    let counts: Vec<Vec<usize>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| picks(&strategy, &candidates, 7_000)))
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let all: Vec<usize> = counts.concat();
    let share = |i| all.iter().filter(|&&p| p == i).count();
    assert_eq!((share(0), share(1), share(2)), (20_000, 4_000, 4_000));
}

/// In panic mode (every candidate down) the rotation goes on: two equal
/// upstreams alternate instead of one taking every pick.
#[test]
fn panic_mode_keeps_rotating() {
    let ids = ["a", "b"].map(String::from);
    let strategy = RoundRobin::new(&specs(&ids, &[1, 1]));
    let down: Vec<Candidate> = healthy(&[1, 1])
        .into_iter()
        .map(|c| Candidate {
            healthy: false,
            ..c
        })
        .collect();
    let got = picks(&strategy, &down, 20);
    assert_eq!(got.iter().filter(|&&p| p == 0).count(), 10, "{got:?}");
    assert_eq!(got.iter().filter(|&&p| p == 1).count(), 10, "{got:?}");
}

#[test]
fn survivors_after_a_long_run_of_down_upstreams_share_evenly() {
    // A zone outage with the pool written zone by zone: the first 70 of
    // 100 are down, a run longer than the walk before the fallback.
    let ids: Vec<String> = (0..100).map(|i| format!("u{i}")).collect();
    let weights = [1u32; 100];
    let strategy = RoundRobin::new(&specs(&ids, &weights));
    let mut candidates = healthy(&weights);
    for down in &mut candidates[..70] {
        down.healthy = false;
    }
    let mut counts = [0usize; 100];
    for index in picks(&strategy, &candidates, 30_000) {
        counts[index] += 1;
    }
    let survivors = &counts[70..];
    let (low, high) = (
        *survivors.iter().min().unwrap(),
        *survivors.iter().max().unwrap(),
    );
    // 1,000 picks each on average.
    assert!(high < 2 * low, "shares from {low} to {high}: {survivors:?}");
}
