//! Medians, ratios to nginx, the printed table and the JSON file.

use serde::Serialize;

/// One measurement: one target, one scenario, one repetition.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    /// Scenario name, e.g. `http-keepalive`.
    pub scenario: String,
    /// Target name, e.g. `sluice`.
    pub target: String,
    /// Repetition number, from 0.
    pub rep: u32,
    /// Requests per second.
    pub rps: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// Non-2xx/3xx responses plus socket errors.
    pub errors: u64,
    /// The proxy's CPU seconds per 100k requests (`None` for the direct backend).
    pub cpu_per_100k: Option<f64>,
    /// Busy CPU seconds of the whole machine during the run besides the
    /// measured proxy: wrk, the backend, and any other load on the machine.
    pub machine_busy_s: Option<f64>,
}

/// A figure's median over repetitions and the median of its per-repetition
/// ratio to nginx.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Figure {
    /// Median value.
    pub median: Option<f64>,
    /// Median of value / nginx's value in the same repetition.
    pub vs_nginx: Option<f64>,
}

/// The summary of one target in one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Scenario name.
    pub scenario: String,
    /// Target name.
    pub target: String,
    /// Repetitions measured.
    pub reps: usize,
    /// Requests per second.
    pub rps: Figure,
    /// Median latency, ms.
    pub p50_ms: Figure,
    /// 99th percentile latency, ms.
    pub p99_ms: Figure,
    /// Errors summed over all repetitions.
    pub errors: u64,
    /// CPU seconds per 100k requests.
    pub cpu_per_100k: Figure,
    /// Median busy CPU seconds of the machine per run besides the proxy
    /// (wrk, backend, other load): a disturbed run shows up here.
    pub other_busy_s: Option<f64>,
}

/// The median of `v` (mean of the middle two for an even count); `None` if empty.
pub fn median(v: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Median and ratio-to-nginx of one figure of `target` in `scenario`.
fn figure(runs: &[Run], scenario: &str, target: &str, get: fn(&Run) -> Option<f64>) -> Figure {
    let mine: Vec<&Run> = runs
        .iter()
        .filter(|r| r.scenario == scenario && r.target == target)
        .collect();
    let values: Vec<f64> = mine.iter().filter_map(|r| get(r)).collect();
    let ratios: Vec<f64> = mine
        .iter()
        .filter_map(|r| {
            let nginx = runs
                .iter()
                .find(|n| n.scenario == scenario && n.target == "nginx" && n.rep == r.rep)?;
            let (a, b) = (get(r)?, get(nginx)?);
            (b > 0.0).then(|| a / b)
        })
        .collect();
    Figure {
        median: median(&values),
        vs_nginx: median(&ratios),
    }
}

/// Summaries of every (scenario, target) pair, in first-seen order.
pub fn summarise(runs: &[Run]) -> Vec<Summary> {
    let mut keys: Vec<(String, String)> = Vec::new();
    for r in runs {
        let k = (r.scenario.clone(), r.target.clone());
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys.into_iter()
        .map(|(s, t)| Summary {
            reps: runs
                .iter()
                .filter(|r| r.scenario == s && r.target == t)
                .count(),
            rps: figure(runs, &s, &t, |r| Some(r.rps)),
            p50_ms: figure(runs, &s, &t, |r| Some(r.p50_ms)),
            p99_ms: figure(runs, &s, &t, |r| Some(r.p99_ms)),
            errors: runs
                .iter()
                .filter(|r| r.scenario == s && r.target == t)
                .map(|r| r.errors)
                .sum(),
            cpu_per_100k: figure(runs, &s, &t, |r| r.cpu_per_100k),
            other_busy_s: median(
                &runs
                    .iter()
                    .filter(|r| r.scenario == s && r.target == t)
                    .filter_map(|r| r.machine_busy_s)
                    .collect::<Vec<_>>(),
            ),
            scenario: s,
            target: t,
        })
        .collect()
}

/// `value (×ratio)` with the given precision, or `-`.
fn cell(f: Figure, precision: usize) -> String {
    match (f.median, f.vs_nginx) {
        (Some(v), Some(r)) => format!("{v:.precision$} ({r:.2}×)"),
        (Some(v), None) => format!("{v:.precision$}"),
        _ => "-".to_string(),
    }
}

/// The table as printed (and pasted into the README): medians, each with
/// its ratio to nginx in the same repetition.
pub fn table(summaries: &[Summary]) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "| {:<15} | {:<8} | {:>18} | {:>15} | {:>15} | {:>6} | {:>18} | {:>11} |\n",
        "scenario",
        "target",
        "req/s (×nginx)",
        "p50 ms",
        "p99 ms",
        "errors",
        "CPU-s/100k req",
        "other CPU-s"
    ));
    out.push_str(&format!(
        "|{:-<17}|{:-<10}|{:->20}|{:->17}|{:->17}|{:->8}|{:->20}|{:->13}|\n",
        "", "", "", "", "", "", "", ""
    ));
    for s in summaries {
        out.push_str(&format!(
            "| {:<15} | {:<8} | {:>18} | {:>15} | {:>15} | {:>6} | {:>18} | {:>11} |\n",
            s.scenario,
            s.target,
            cell(s.rps, 0),
            cell(s.p50_ms, 2),
            cell(s.p99_ms, 2),
            s.errors,
            cell(s.cpu_per_100k, 2),
            s.other_busy_s
                .map_or("-".to_string(), |b| format!("{b:.1}")),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    fn run(target: &str, rep: u32, rps: f64) -> Run {
        Run {
            scenario: "s".into(),
            target: target.into(),
            rep,
            rps,
            p50_ms: 1.0,
            p99_ms: 2.0,
            errors: 0,
            cpu_per_100k: None,
            machine_busy_s: None,
        }
    }

    #[test]
    fn ratios_pair_by_repetition() {
        let runs = [
            run("nginx", 0, 100.0),
            run("sluice", 0, 150.0),
            run("nginx", 1, 200.0),
            run("sluice", 1, 200.0),
            run("nginx", 2, 100.0),
            run("sluice", 2, 120.0),
        ];
        let s = summarise(&runs);
        let sluice = s.iter().find(|s| s.target == "sluice").expect("sluice row");
        assert_eq!(sluice.rps.median, Some(150.0));
        assert_eq!(sluice.rps.vs_nginx, Some(1.2));
        assert_eq!(sluice.cpu_per_100k.median, None);
    }
}
