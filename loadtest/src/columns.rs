//! The table columns the HTTP scenarios share.

use crate::report::Column;

/// Requests per second.
pub const RPS: Column = Column {
    key: "rps",
    header: "req/s (×nginx)",
    decimals: 0,
    total: false,
};
/// Median latency.
pub const P50: Column = Column {
    key: "p50_ms",
    header: "p50 ms",
    decimals: 2,
    total: false,
};
/// 99th percentile latency.
pub const P99: Column = Column {
    key: "p99_ms",
    header: "p99 ms",
    decimals: 2,
    total: false,
};
/// 99.9th percentile latency.
pub const P999: Column = Column {
    key: "p999_ms",
    header: "p99.9 ms",
    decimals: 2,
    total: false,
};
/// Failed requests or connections, summed over repetitions.
pub const ERRORS: Column = Column {
    key: "errors",
    header: "errors",
    decimals: 0,
    total: true,
};
/// The proxy's CPU seconds per 100k requests.
pub const CPU: Column = Column {
    key: "cpu_per_100k",
    header: "CPU-s/100k req",
    decimals: 2,
    total: false,
};
/// The machine's busy CPU seconds besides the proxy's during a run.
pub const OTHER_CPU: Column = Column {
    key: "other_cpu_s",
    header: "other CPU-s",
    decimals: 1,
    total: false,
};
