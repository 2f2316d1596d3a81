//! Conformance suite: every strategy in `StrategyKind::ALL` obeys the health
//! and retry rule, whatever the pool looks like.

use proptest::prelude::*;
use strategies::{
    Candidate, Candidates, Pick, PickContext, Strategy, StrategyKind, Tried, UpstreamSpec,
};

/// A generated pool: one entry per candidate, `(weight, healthy, active)`.
type Pool = Vec<(u32, bool, u64)>;

fn pools() -> impl proptest::strategy::Strategy<Value = Pool> {
    // Up to 40 candidates so least-connections' two-choices path is covered.
    prop::collection::vec((1u32..=10, any::<bool>(), 0u64..=20), 0..=40)
}

fn build(kind: StrategyKind, pool: &Pool) -> (Box<dyn Strategy>, Vec<Candidate>) {
    let ids: Vec<String> = (0..pool.len()).map(|i| format!("up-{i}")).collect();
    let specs: Vec<UpstreamSpec<'_>> = pool
        .iter()
        .zip(&ids)
        .map(|(&(weight, _, _), id)| UpstreamSpec { id, weight })
        .collect();
    let candidates = pool
        .iter()
        .map(|&(weight, healthy, active)| Candidate {
            healthy,
            active,
            weight,
        })
        .collect();
    (kind.build(&specs), candidates)
}

/// What the rule says a pick must look like for this pool and tried set.
fn check(candidates: &[Candidate], tried: Tried, got: Option<Pick>) -> Result<(), TestCaseError> {
    let untried = |i: &usize| !tried.contains(*i);
    let any_healthy = candidates.iter().any(|c| c.healthy);
    let healthy_untried = (0..candidates.len())
        .filter(untried)
        .any(|i| candidates[i].healthy);
    let any_untried = (0..candidates.len()).any(|i| untried(&i));
    match got {
        Some(pick) => {
            prop_assert!(pick.index < candidates.len());
            prop_assert!(!tried.contains(pick.index), "picked tried {}", pick.index);
            if pick.panic {
                prop_assert!(!any_healthy, "panic pick while some candidate is healthy");
            } else {
                prop_assert!(
                    candidates[pick.index].healthy,
                    "picked unhealthy {}",
                    pick.index
                );
            }
        }
        None => {
            prop_assert!(
                !healthy_untried,
                "None while a healthy untried candidate exists"
            );
            prop_assert!(
                any_healthy || !any_untried,
                "None in panic mode with untried candidates"
            );
        }
    }
    Ok(())
}

fn context(key: &Option<Vec<u8>>, tried: Tried) -> PickContext<'_> {
    PickContext {
        client: None,
        key: key.as_deref(),
        tried,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Single picks with an arbitrary tried set follow the rule.
    #[test]
    fn picks_follow_the_health_rule(
        pool in pools(),
        tried_bits in any::<u64>(),
        key in prop::option::of(prop::collection::vec(any::<u8>(), 0..16)),
    ) {
        for &(_, kind) in StrategyKind::ALL {
            let (strategy, candidates) = build(kind, &pool);
            let mut tried = Tried::default();
            (0..pool.len()).filter(|i| tried_bits >> (i % 64) & 1 == 1).for_each(|i| tried.insert(i));
            for _ in 0..4 {
                let got = strategy.select(&&candidates[..], &context(&key, tried));
                check(&candidates, tried, got)?;
            }
        }
    }

    /// Retrying until `None` visits each pickable candidate exactly once and
    /// stops only when the rule says nothing is left.
    #[test]
    fn retries_visit_each_candidate_once(
        pool in pools(),
        key in prop::option::of(prop::collection::vec(any::<u8>(), 0..16)),
    ) {
        for &(_, kind) in StrategyKind::ALL {
            let (strategy, candidates) = build(kind, &pool);
            let mut tried = Tried::default();
            let mut picks = 0;
            while let Some(pick) = strategy.select(&candidates, &context(&key, tried)) {
                check(&candidates, tried, Some(pick))?;
                tried.insert(pick.index);
                picks += 1;
                prop_assert!(picks <= pool.len(), "{kind:?} repeated a candidate");
            }
            let healthy = candidates.iter().filter(|c| c.healthy).count();
            let expected = if healthy == 0 { pool.len() } else { healthy };
            prop_assert_eq!(picks, expected, "{:?} stopped early", kind);
        }
    }
}

#[test]
fn empty_pool_gives_none() {
    for &(_, kind) in StrategyKind::ALL {
        let strategy = kind.build(&[]);
        let none: [Candidate; 0] = [];
        assert_eq!(
            strategy.select(&none, &PickContext::default()),
            None,
            "{kind:?}"
        );
        let key = PickContext {
            key: Some(b"k"),
            ..PickContext::default()
        };
        assert_eq!(strategy.select(&none, &key), None, "{kind:?}");
    }
}

#[test]
fn panic_mode_is_flagged() {
    let specs = [
        UpstreamSpec { id: "a", weight: 1 },
        UpstreamSpec { id: "b", weight: 2 },
    ];
    let down = [
        Candidate {
            healthy: false,
            active: 0,
            weight: 1,
        },
        Candidate {
            healthy: false,
            active: 0,
            weight: 2,
        },
    ];
    for &(_, kind) in StrategyKind::ALL {
        let pick = kind.build(&specs).select(&down, &PickContext::default());
        assert!(pick.is_some_and(|p| p.panic), "{kind:?}: {pick:?}");
    }
}

#[test]
fn names_round_trip_and_default_is_round_robin() {
    assert_eq!(StrategyKind::default(), StrategyKind::RoundRobin);
    for &(name, kind) in StrategyKind::ALL {
        assert_eq!(kind.name(), name);
        assert_eq!(name.parse::<StrategyKind>(), Ok(kind));
    }
    let names: Vec<_> = StrategyKind::ALL.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        [
            "random",
            "round-robin",
            "least-connections",
            "consistent-hash"
        ]
    );
    assert!("fastest".parse::<StrategyKind>().is_err());
}

#[test]
fn strategies_are_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync + ?Sized>() {}
    assert_send_sync::<dyn Strategy>();
    let _: &dyn Candidates = &Vec::<Candidate>::new();
}
