//! Latency histograms in the counter region.
//!
//! A histogram is a run of row slots: one count per bucket (not
//! cumulative, so recording is one `fetch_add`), one overflow count for
//! durations past the last bound, and the sum of all durations in
//! microseconds. Readers add the rows and make the counts cumulative for
//! Prometheus' `_bucket{le=…}` series; `_count` is the sum of the buckets,
//! so it always equals the `+Inf` bucket.

use std::time::Duration;

/// Upper bounds of the buckets, in seconds (Prometheus `le` values), from
/// half a millisecond to 30 seconds.
pub const BUCKETS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// [`BUCKETS`] in microseconds, for comparing without floating point on
/// the hot path.
const BUCKET_MICROS: [u64; 15] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000, 30_000_000,
];

/// Slots one histogram takes: the buckets, the overflow bucket, the sum.
pub const HIST_FIELDS: usize = BUCKETS.len() + 2;

/// Offset of the sum (microseconds) within a histogram's slots.
pub const SUM_FIELD: usize = BUCKETS.len() + 1;

/// The slot (within a histogram) that counts `elapsed`, and the
/// microseconds to add to the sum.
pub fn bucket(elapsed: Duration) -> (usize, u64) {
    let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    (BUCKET_MICROS.partition_point(|&b| b < micros), micros)
}

/// A histogram summed over every row.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HistogramTotals {
    /// Count per bucket (not cumulative); the last one is the overflow.
    pub buckets: [u64; BUCKETS.len() + 1],
    /// Sum of the observed durations, in microseconds.
    pub sum_micros: u64,
}

impl HistogramTotals {
    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// Sum of the observations in seconds.
    pub fn sum_seconds(&self) -> f64 {
        self.sum_micros as f64 / 1e6
    }

    /// `(le, cumulative count)` for every finite bound, in order; the
    /// `+Inf` bucket is [`HistogramTotals::count`].
    pub fn cumulative(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        BUCKETS
            .iter()
            .zip(&self.buckets)
            .scan(0u64, |total, (&le, &n)| {
                *total += n;
                Some((le, *total))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_land_in_the_bucket_whose_bound_they_do_not_exceed() {
        assert_eq!(bucket(Duration::ZERO).0, 0);
        assert_eq!(bucket(Duration::from_micros(500)).0, 0);
        assert_eq!(bucket(Duration::from_micros(501)).0, 1);
        assert_eq!(bucket(Duration::from_secs(30)).0, 14);
        assert_eq!(bucket(Duration::from_secs(31)).0, 15);
        assert_eq!(bucket(Duration::from_millis(3)), (3, 3_000));
    }

    #[test]
    fn cumulative_counts_add_up_to_the_total() {
        let mut totals = HistogramTotals::default();
        totals.buckets[0] = 2;
        totals.buckets[3] = 1;
        totals.buckets[15] = 4;
        let cumulative: Vec<(f64, u64)> = totals.cumulative().collect();
        assert_eq!(cumulative.len(), BUCKETS.len());
        assert_eq!(cumulative[0], (0.0005, 2));
        assert_eq!(cumulative[3], (0.005, 3));
        assert_eq!(cumulative[14], (30.0, 3));
        assert_eq!(totals.count(), 7);
    }
}
