//! The TCP scenarios' figures: medians over repetitions, each with its
//! median ratio to nginx and to the better of nginx and HAProxy in the
//! same repetition, and the printed table.

use serde::Serialize;

use crate::report::median;

/// The peers sluice is compared with.
const PEERS: [&str; 2] = ["nginx", "haproxy"];

/// One measurement: one case, one target, one repetition.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    /// Case name, e.g. `tcp-redis -P1 GET`.
    pub scenario: String,
    /// Target name, e.g. `sluice`.
    pub target: String,
    /// Repetition number, from 0.
    pub rep: u32,
    /// Throughput in `unit`.
    pub throughput: f64,
    /// `ops/s`, `tps` or `Gbit/s`.
    pub unit: &'static str,
    /// Failed operations, where the tool counts them.
    pub errors: Option<u64>,
    /// The proxy's CPU seconds (process tree) per unit of work.
    pub cpu_per_work: Option<f64>,
    /// What `cpu_per_work` is per: `CPU-s/100k ops`, `CPU-s/GiB`.
    pub cpu_unit: &'static str,
    /// Busy CPU seconds of the machine during the run besides the proxy.
    pub machine_busy_s: Option<f64>,
}

/// Which way a figure improves.
#[derive(Clone, Copy)]
enum Better {
    Higher,
    Lower,
}

/// A figure's median and its median ratios within repetitions.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Figure {
    /// Median value over repetitions.
    pub median: Option<f64>,
    /// Median of value / nginx's value in the same repetition.
    pub vs_nginx: Option<f64>,
    /// Median of value / the better of nginx's and HAProxy's in the same
    /// repetition (higher throughput, lower CPU).
    pub vs_best_peer: Option<f64>,
}

/// One target's summary in one case.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Case name.
    pub scenario: String,
    /// Target name.
    pub target: String,
    /// Repetitions measured.
    pub reps: usize,
    /// Throughput unit.
    pub unit: &'static str,
    /// Throughput.
    pub throughput: Figure,
    /// Errors summed over repetitions, where counted.
    pub errors: Option<u64>,
    /// CPU unit.
    pub cpu_unit: &'static str,
    /// The proxy's CPU per unit of work.
    pub cpu: Figure,
    /// Median busy CPU seconds of the machine per run besides the proxy.
    pub other_busy_s: Option<f64>,
}

/// Median and ratios of one figure of `mine` (one case and target).
fn figure(all: &[Run], mine: &[&Run], get: fn(&Run) -> Option<f64>, better: Better) -> Figure {
    let peer = |r: &Run, target: &str| {
        all.iter()
            .find(|p| p.scenario == r.scenario && p.target == target && p.rep == r.rep)
            .and_then(get)
    };
    let ratio = |a: f64, b: f64| (b > 0.0).then(|| a / b);
    let vs_nginx: Vec<f64> = mine
        .iter()
        .filter_map(|r| ratio(get(r)?, peer(r, "nginx")?))
        .collect();
    let vs_best: Vec<f64> = mine
        .iter()
        .filter_map(|r| {
            let best = PEERS
                .iter()
                .filter_map(|t| peer(r, t))
                .reduce(|a, b| match better {
                    Better::Higher => a.max(b),
                    Better::Lower => a.min(b),
                })?;
            ratio(get(r)?, best)
        })
        .collect();
    Figure {
        median: median(&mine.iter().filter_map(|r| get(r)).collect::<Vec<_>>()),
        vs_nginx: median(&vs_nginx),
        vs_best_peer: median(&vs_best),
    }
}

/// Summaries of every (case, target) pair, in first-seen order.
pub fn summarise(runs: &[Run]) -> Vec<Summary> {
    let mut keys: Vec<(&str, &str)> = Vec::new();
    for r in runs {
        let k = (r.scenario.as_str(), r.target.as_str());
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys.into_iter()
        .map(|(s, t)| {
            let mine: Vec<&Run> = runs
                .iter()
                .filter(|r| r.scenario == s && r.target == t)
                .collect();
            let errors: Vec<u64> = mine.iter().filter_map(|r| r.errors).collect();
            Summary {
                scenario: s.to_string(),
                target: t.to_string(),
                reps: mine.len(),
                unit: mine[0].unit,
                throughput: figure(runs, &mine, |r| Some(r.throughput), Better::Higher),
                errors: (!errors.is_empty()).then(|| errors.iter().sum()),
                cpu_unit: mine[0].cpu_unit,
                cpu: figure(runs, &mine, |r| r.cpu_per_work, Better::Lower),
                other_busy_s: median(
                    &mine
                        .iter()
                        .filter_map(|r| r.machine_busy_s)
                        .collect::<Vec<_>>(),
                ),
            }
        })
        .collect()
}

/// `value (×nginx, ×best peer)`, or `-`.
fn cell(f: Figure, precision: usize) -> String {
    let ratio = |r: Option<f64>| r.map_or("-".to_string(), |r| format!("{r:.2}×"));
    match f.median {
        Some(v) => format!(
            "{v:.precision$} ({}, {})",
            ratio(f.vs_nginx),
            ratio(f.vs_best_peer)
        ),
        None => "-".to_string(),
    }
}

/// Three significant-ish decimals for small figures, none for big ones.
fn precision(v: Option<f64>) -> usize {
    match v {
        Some(v) if v.abs() >= 1000.0 => 0,
        Some(v) if v.abs() >= 10.0 => 1,
        _ => 3,
    }
}

/// The table as printed: medians, each with its ratio to nginx and to the
/// better peer in the same repetition.
pub fn table(summaries: &[Summary]) -> String {
    let mut out = format!(
        "| {:<20} | {:<8} | {:>30} | {:<6} | {:>6} | {:>28} | {:<14} | {:>11} |\n",
        "scenario",
        "target",
        "throughput (×nginx, ×best peer)",
        "unit",
        "errors",
        "proxy CPU (×nginx, ×best peer)",
        "CPU unit",
        "other CPU-s"
    );
    out.push_str(&format!(
        "|{:-<22}|{:-<10}|{:->32}|{:-<8}|{:->8}|{:->30}|{:-<16}|{:->13}|\n",
        "", "", "", "", "", "", "", ""
    ));
    for s in summaries {
        out.push_str(&format!(
            "| {:<20} | {:<8} | {:>30} | {:<6} | {:>6} | {:>28} | {:<14} | {:>11} |\n",
            s.scenario,
            s.target,
            cell(s.throughput, precision(s.throughput.median)),
            s.unit,
            s.errors.map_or("-".to_string(), |e| e.to_string()),
            cell(s.cpu, precision(s.cpu.median)),
            s.cpu_unit,
            s.other_busy_s
                .map_or("-".to_string(), |b| format!("{b:.1}")),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(target: &str, rep: u32, throughput: f64, cpu: Option<f64>) -> Run {
        Run {
            scenario: "tcp-x".into(),
            target: target.into(),
            rep,
            throughput,
            unit: "ops/s",
            errors: Some(rep.into()),
            cpu_per_work: cpu,
            cpu_unit: "CPU-s/100k ops",
            machine_busy_s: None,
        }
    }

    #[test]
    fn ratios_pair_by_repetition_against_nginx_and_the_better_peer() {
        let runs = [
            run("nginx", 0, 100.0, Some(2.0)),
            run("haproxy", 0, 120.0, Some(3.0)),
            run("sluice", 0, 150.0, Some(1.0)),
            run("nginx", 1, 200.0, Some(2.0)),
            run("haproxy", 1, 100.0, Some(1.0)),
            run("sluice", 1, 220.0, Some(2.0)),
            run("direct", 1, 400.0, None),
        ];
        let s = summarise(&runs);
        let sluice = s.iter().find(|s| s.target == "sluice").expect("sluice row");
        assert_eq!(sluice.reps, 2);
        assert_eq!(sluice.throughput.median, Some(185.0));
        // rep 0: 150/100 and 150/120; rep 1: 220/200 and 220/200.
        assert_eq!(sluice.throughput.vs_nginx, Some((1.5 + 1.1) / 2.0));
        assert_eq!(sluice.throughput.vs_best_peer, Some((1.25 + 1.1) / 2.0));
        // CPU: lower is better: rep 0 best peer 2.0, rep 1 best peer 1.0.
        assert_eq!(sluice.cpu.vs_nginx, Some((0.5 + 1.0) / 2.0));
        assert_eq!(sluice.cpu.vs_best_peer, Some((0.5 + 2.0) / 2.0));
        assert_eq!(sluice.errors, Some(1));
        let direct = s.iter().find(|s| s.target == "direct").expect("direct row");
        assert_eq!(direct.cpu.median, None);
        assert_eq!(direct.throughput.vs_nginx, Some(2.0));
    }

    #[test]
    fn the_table_has_a_row_per_summary() {
        let runs = [
            run("nginx", 0, 100.0, Some(2.0)),
            run("sluice", 0, 50.0, None),
        ];
        let t = table(&summarise(&runs));
        assert_eq!(t.lines().count(), 4);
        assert!(t.contains("100.0 (1.00×, 1.00×)"), "{t}");
        assert!(t.contains("50.0 (0.50×, 0.50×)"), "{t}");
    }
}
