//! Pick cost per strategy and pool size, through a `Candidates` view shaped
//! like the proxy's (atomics read per candidate), all upstreams healthy.
//!
//! Kept short (two shared cores): `cargo bench -p strategies`.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use strategies::least_connections::SCAN_MAX;
use strategies::{Candidate, Candidates, PickContext, StrategyKind, UpstreamSpec};

/// Live state held in atomics, as the proxy's shared-memory view is.
struct AtomicView {
    slots: Vec<(AtomicBool, AtomicU64, u32)>,
}

impl Candidates for AtomicView {
    fn len(&self) -> usize {
        self.slots.len()
    }
    fn get(&self, index: usize) -> Candidate {
        let (healthy, active, weight) = &self.slots[index];
        Candidate {
            healthy: healthy.load(Ordering::Relaxed),
            active: active.load(Ordering::Relaxed),
            weight: *weight,
        }
    }
}

fn pool(n: usize) -> (Vec<String>, AtomicView) {
    let ids = (0..n)
        .map(|i| format!("10.0.{}.{}:8080", i / 256, i % 256))
        .collect();
    let slots = (0..n)
        .map(|i| {
            (
                AtomicBool::new(true),
                AtomicU64::new((i * 7 % 13) as u64),
                1 + (i % 3) as u32,
            )
        })
        .collect();
    (ids, AtomicView { slots })
}

fn bench_kind(c: &mut Criterion, kind: StrategyKind, sizes: &[usize], group_name: &str) {
    let mut group = c.benchmark_group(group_name);
    for &n in sizes {
        let (ids, view) = pool(n);
        let specs: Vec<_> = ids
            .iter()
            .zip(&view.slots)
            .map(|(id, slot)| UpstreamSpec { id, weight: slot.2 })
            .collect();
        let strategy = kind.build(&specs);
        let mut key = 0u64;
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                key = key.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let bytes = key.to_le_bytes();
                let ctx = PickContext {
                    key: Some(&bytes),
                    ..PickContext::default()
                };
                black_box(strategy.select(black_box(&view), &ctx))
            })
        });
    }
    group.finish();
}

fn picks(c: &mut Criterion) {
    for &(name, kind) in StrategyKind::ALL {
        bench_kind(c, kind, &[3, 10, 100, 1000], name);
    }
    // Where least-connections switches from the exact scan to two choices.
    bench_kind(
        c,
        StrategyKind::LeastConnections,
        &[16, SCAN_MAX, SCAN_MAX + 1],
        "least-connections-threshold",
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20);
    targets = picks
}
criterion_main!(benches);
