//! `consistent-hash`: Maglev lookup table (Eisenbud et al., NSDI 2016).
//!
//! At build time each upstream gets a permutation of the table's slots from
//! two hashes of its id (offset and skip); upstreams then take turns
//! claiming their next free slot until the table is full. Turns are handed
//! out in proportion to weight, so an upstream's share of slots, and so of
//! keys, is its share of the total weight. Removing one of N upstreams
//! changes only about 1/N of the slots, because the others' permutations do
//! not depend on it.
//!
//! The table size is the smallest prime at least [`MIN_TABLE_SIZE`] and at
//! least [`SLOTS_PER_UPSTREAM`] × upstreams. Turns go to upstreams in order
//! of id, not of config position, and all hashes are xxh3 with fixed seeds,
//! so every worker, restart and sluice instance with the same upstreams
//! builds the same table.
//!
//! A pick hashes [`PickContext::key`] to a slot. If that slot's upstream is
//! unavailable (by the [`health`] rule: unhealthy, or tried
//! already) the walk goes on to the following slots, so only that
//! upstream's keys move, spread over the others by weight, and they come
//! back when it recovers. A walk longer than [`WALK_LIMIT`] slots (a badly
//! degraded pool) ends in an O(n) scan from a position derived from the key,
//! still stable per key. Requests without a key are spread by round-robin.

use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::health::{self, Filter};
use crate::rng;
use crate::round_robin::RoundRobin;
use crate::{Candidates, Pick, PickContext, Strategy, UpstreamSpec};

/// Smallest table size: a prime, so every skip generates a full permutation.
pub const MIN_TABLE_SIZE: usize = 65_537;

/// Slots per upstream at least, which keeps each upstream's share of keys
/// within about 1% of its weight share.
pub const SLOTS_PER_UPSTREAM: usize = 100;

/// Table slots examined before falling back to a linear scan.
pub const WALK_LIMIT: usize = 64;

/// Seed for hashing request keys. Changing it remaps every key in every
/// deployment: it is part of sluice's stable behaviour.
pub const KEY_SEED: u64 = 0x736c_7569_6365_6b79;

/// Seed for an upstream's permutation offset (same stability as
/// [`KEY_SEED`]).
const OFFSET_SEED: u64 = 0x736c_7569_6365_6f66;

/// Seed for an upstream's permutation skip (same stability as [`KEY_SEED`]).
const SKIP_SEED: u64 = 0x736c_7569_6365_736b;

/// Marks a slot not yet claimed while the table is being filled.
const EMPTY: u32 = u32::MAX;

/// Maglev consistent hashing with round-robin for keyless requests.
#[derive(Debug)]
pub struct ConsistentHash {
    /// Slot → candidate index.
    table: Box<[u32]>,
    /// Used when the request has no hash key.
    fallback: RoundRobin,
}

impl ConsistentHash {
    /// Builds the lookup table (O(table size × log), off the hot path).
    pub fn new(upstreams: &[UpstreamSpec<'_>]) -> Self {
        ConsistentHash {
            table: build_table(upstreams).into(),
            fallback: RoundRobin::new(upstreams),
        }
    }

    fn choose(&self, filter: &Filter<'_>, key: &[u8]) -> Option<usize> {
        let size = self.table.len();
        if size == 0 {
            return None;
        }
        let hash = xxh3_64_with_seed(key, KEY_SEED);
        // The key's first slot, then slots drawn from the key's hash: a
        // member that is down has its keys spread over the others as the
        // table shares them (by weight), where the next slot along would
        // hand them to whichever member follows most often. The same key
        // probes the same slots, so it stays where it went.
        let mut bits = hash;
        for _ in 0..WALK_LIMIT.min(size) {
            let index = self.table[rng::scale(bits, size as u64) as usize] as usize;
            if filter.admit(index).is_some() {
                return Some(index);
            }
            bits = rng::mix(bits);
        }
        health::weighted_admitted(filter, rng::mix(bits))
    }
}

impl Strategy for ConsistentHash {
    fn select(&self, candidates: &dyn Candidates, ctx: &PickContext<'_>) -> Option<Pick> {
        match ctx.key {
            Some(key) => health::pick(candidates, ctx, |filter| self.choose(&filter, key)),
            None => self.fallback.select(candidates, ctx),
        }
    }
}

/// Smallest prime table size for `upstreams` upstreams.
fn table_size_for(upstreams: usize) -> usize {
    let mut size = MIN_TABLE_SIZE.max(upstreams.saturating_mul(SLOTS_PER_UPSTREAM));
    while !is_prime(size) {
        size += 1;
    }
    size
}

fn is_prime(n: usize) -> bool {
    n >= 2
        && (2..)
            .take_while(|d| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}

/// Fills a Maglev table with weighted turns.
fn build_table(upstreams: &[UpstreamSpec<'_>]) -> Vec<u32> {
    if upstreams.is_empty() {
        return Vec::new();
    }
    let size = table_size_for(upstreams.len());
    let m = size as u64;
    let mut order: Vec<usize> = (0..upstreams.len()).collect();
    order.sort_by_key(|&i| (upstreams[i].id, i));
    let offset: Vec<u64> = upstreams
        .iter()
        .map(|u| xxh3_64_with_seed(u.id.as_bytes(), OFFSET_SEED) % m)
        .collect();
    let skip: Vec<u64> = upstreams
        .iter()
        .map(|u| xxh3_64_with_seed(u.id.as_bytes(), SKIP_SEED) % (m - 1) + 1)
        .collect();
    let weight: Vec<u64> = upstreams
        .iter()
        .map(|u| u64::from(u.weight.max(1)))
        .collect();
    // The unwrap cannot fail: `upstreams` is not empty.
    let max_weight = *weight.iter().max().unwrap();
    let mut credit = vec![0u64; upstreams.len()];
    let mut next = vec![0u64; upstreams.len()];
    let mut table = vec![EMPTY; size];
    let mut filled = 0;
    loop {
        for &i in &order {
            credit[i] += weight[i];
            while credit[i] >= max_weight {
                credit[i] -= max_weight;
                // Each permutation visits every slot once (`m` is prime and
                // `skip` in 1..m), so a free slot is found while any remains.
                loop {
                    let slot = ((offset[i] + next[i] * skip[i]) % m) as usize;
                    next[i] += 1;
                    if table[slot] == EMPTY {
                        table[slot] = i as u32;
                        break;
                    }
                }
                filled += 1;
                if filled == size {
                    return table;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_sizes_are_prime_and_large_enough() {
        assert_eq!(table_size_for(3), 65_537);
        assert_eq!(table_size_for(1000), 100_003);
        assert!(is_prime(table_size_for(5000)));
        assert!(table_size_for(5000) >= 500_000);
    }

    #[test]
    fn table_is_full_and_weighted() {
        let specs = [
            UpstreamSpec { id: "a", weight: 3 },
            UpstreamSpec { id: "b", weight: 1 },
        ];
        let table = build_table(&specs);
        let a = table.iter().filter(|&&i| i == 0).count();
        let b = table.iter().filter(|&&i| i == 1).count();
        assert_eq!(a + b, table.len());
        assert!((a as f64 / table.len() as f64 - 0.75).abs() < 0.001);
    }
}
