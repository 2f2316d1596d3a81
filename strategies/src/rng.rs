//! Lock-free random numbers for picks: a wyrand generator per thread.
//!
//! Each thread seeds its own state once from the standard library's random
//! hasher keys, so picks never share a cache line or take a lock, and two
//! workers do not walk the same sequence.

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

thread_local! {
    static STATE: Cell<u64> = Cell::new(RandomState::new().hash_one(0x5eed_u64));
}

/// Next 64 random bits from this thread's wyrand state.
#[inline]
pub(crate) fn next_u64() -> u64 {
    STATE.with(|state| {
        let s = state.get().wrapping_add(0xa076_1d64_78bd_642f);
        state.set(s);
        mix(s)
    })
}

/// Maps 64 random bits onto `0..n` without a division.
#[inline]
pub(crate) fn scale(bits: u64, n: u64) -> u64 {
    ((u128::from(bits) * u128::from(n)) >> 64) as u64
}

/// wyrand's output function.
#[inline]
pub(crate) fn mix(s: u64) -> u64 {
    let t = u128::from(s) * u128::from(s ^ 0xe703_7ed1_a0b4_28db);
    ((t >> 64) as u64) ^ (t as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_stays_in_range_and_covers_it() {
        let mut seen = [false; 7];
        for _ in 0..1000 {
            let v = scale(next_u64(), 7) as usize;
            seen[v] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }
}
