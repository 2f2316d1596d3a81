//! Runs, their medians and ratios to nginx, and the per-scenario tables.

use serde::Serialize;
use std::collections::BTreeMap;

/// A run's figures by key (`rps`, `p99_ms`, `cpu_per_100k`, ...): each
/// scenario measures its own set, named by its columns.
pub type Values = BTreeMap<String, f64>;

/// One measurement: one target, one scenario, one repetition.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    /// Scenario name, e.g. `http-keepalive`.
    pub scenario: String,
    /// Target name, e.g. `sluice`.
    pub target: String,
    /// Repetition number, from 0.
    pub rep: u32,
    /// 0 for the first measurement, 1 for the re-run of a disturbed repetition.
    pub attempt: u32,
    /// Whether the summaries use this run (false: replaced by its re-run).
    pub kept: bool,
    /// Why its repetition looked disturbed, if it did.
    pub disturbed: Option<String>,
    /// The figures.
    pub values: Values,
}

/// One column of a scenario's table.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Column {
    /// Key in [`Run::values`].
    pub key: &'static str,
    /// Header in the table.
    pub header: &'static str,
    /// Decimals shown.
    pub decimals: usize,
    /// Summed over repetitions (errors) rather than the median, and shown
    /// without a ratio.
    pub total: bool,
}

/// A figure's median over repetitions (or total) and the median of its
/// per-repetition ratio to nginx.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Figure {
    /// Median value (the sum for a total column).
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
    /// Repetitions whose first run looked disturbed and were measured again.
    pub reruns: usize,
    /// Each column's figure, by key.
    pub figures: BTreeMap<String, Figure>,
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

/// The kept run of `target` in the same scenario and repetition as `r`.
pub fn peer<'a>(runs: &'a [Run], r: &Run, target: &str) -> Option<&'a Run> {
    runs.iter()
        .find(|n| n.kept && n.scenario == r.scenario && n.target == target && n.rep == r.rep)
}

/// Median (or total) and ratio-to-nginx of one column over `mine`.
fn figure(runs: &[Run], mine: &[&Run], c: &Column) -> Figure {
    let values: Vec<f64> = mine
        .iter()
        .filter_map(|r| r.values.get(c.key).copied())
        .collect();
    if c.total {
        return Figure {
            median: (!values.is_empty()).then(|| values.iter().sum()),
            vs_nginx: None,
        };
    }
    let ratios: Vec<f64> = mine
        .iter()
        .filter_map(|r| {
            let a = *r.values.get(c.key)?;
            let b = *peer(runs, r, "nginx")?.values.get(c.key)?;
            (b > 0.0).then(|| a / b)
        })
        .collect();
    Figure {
        median: median(&values),
        vs_nginx: median(&ratios),
    }
}

/// Summaries of every (scenario, target) pair of the kept runs, in the
/// order first measured (replaced runs included, so a re-run of the first
/// repetition does not reorder the table).
pub fn summarise(runs: &[Run], columns: &[Column]) -> Vec<Summary> {
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
                .filter(|r| r.kept && r.scenario == s && r.target == t)
                .collect();
            Summary {
                scenario: s.to_string(),
                target: t.to_string(),
                reps: mine.len(),
                reruns: mine.iter().filter(|r| r.attempt > 0).count(),
                figures: columns
                    .iter()
                    .map(|c| (c.key.to_string(), figure(runs, &mine, c)))
                    .collect(),
            }
        })
        .collect()
}

/// `value (×ratio)` with the given precision, or `-`.
fn cell(f: Option<&Figure>, decimals: usize) -> String {
    match f.map(|f| (f.median, f.vs_nginx)) {
        Some((Some(v), Some(r))) => format!("{v:.decimals$} ({r:.2}×)"),
        Some((Some(v), None)) => format!("{v:.decimals$}"),
        _ => "-".to_string(),
    }
}

/// One scenario's table (Markdown): a title line with the scenario and how
/// it ran, then per target the medians, each with its ratio to nginx in
/// the same repetition, the repetitions and how many were re-run.
pub fn table(scenario: &str, mode: &str, columns: &[Column], summaries: &[Summary]) -> String {
    let mut rows: Vec<Vec<String>> = vec![
        ["target", "reps", "re-run"]
            .iter()
            .map(|s| s.to_string())
            .chain(columns.iter().map(|c| c.header.to_string()))
            .collect(),
    ];
    for s in summaries {
        rows.push(
            [s.target.clone(), s.reps.to_string(), s.reruns.to_string()]
                .into_iter()
                .chain(
                    columns
                        .iter()
                        .map(|c| cell(s.figures.get(c.key), c.decimals)),
                )
                .collect(),
        );
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let line = |r: &Vec<String>| {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, w))| {
                let pad = w - c.chars().count();
                if i == 0 {
                    format!("{c}{}", " ".repeat(pad))
                } else {
                    format!("{}{c}", " ".repeat(pad))
                }
            })
            .collect();
        format!("| {} |\n", cells.join(" | "))
    };
    let mut out = format!("{scenario} ({mode})\n\n");
    out.push_str(&line(&rows[0]));
    let rule: Vec<String> = widths
        .iter()
        .enumerate()
        .map(|(i, w)| {
            if i == 0 {
                "-".repeat(w + 2)
            } else {
                format!("{}:", "-".repeat(w + 1))
            }
        })
        .collect();
    out.push_str(&format!("|{}|\n", rule.join("|")));
    for r in &rows[1..] {
        out.push_str(&line(r));
    }
    out
}

/// Runs built by hand, for the tests of this and other modules.
#[cfg(test)]
pub mod fixtures {
    use super::Run;

    /// A kept first-attempt run of `target` with the given figures.
    pub fn run(scenario: &str, target: &str, rep: u32, values: &[(&str, f64)]) -> Run {
        Run {
            scenario: scenario.into(),
            target: target.into(),
            rep,
            attempt: 0,
            kept: true,
            disturbed: None,
            values: values.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        }
    }
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

    fn run(target: &str, rep: u32, values: &[(&str, f64)]) -> Run {
        fixtures::run("s", target, rep, values)
    }

    const RPS: Column = Column {
        key: "rps",
        header: "req/s",
        decimals: 0,
        total: false,
    };
    const ERRORS: Column = Column {
        key: "errors",
        header: "errors",
        decimals: 0,
        total: true,
    };

    #[test]
    fn ratios_pair_by_repetition() {
        let runs = [
            run("nginx", 0, &[("rps", 100.0)]),
            run("sluice", 0, &[("rps", 150.0), ("errors", 1.0)]),
            run("nginx", 1, &[("rps", 200.0)]),
            run("sluice", 1, &[("rps", 200.0), ("errors", 2.0)]),
            run("nginx", 2, &[("rps", 100.0)]),
            run("sluice", 2, &[("rps", 120.0), ("errors", 0.0)]),
        ];
        let s = summarise(&runs, &[RPS, ERRORS]);
        let sluice = s.iter().find(|s| s.target == "sluice").expect("sluice row");
        assert_eq!(sluice.figures["rps"].median, Some(150.0));
        assert_eq!(sluice.figures["rps"].vs_nginx, Some(1.2));
        assert_eq!(sluice.figures["errors"].median, Some(3.0));
        assert_eq!(sluice.figures["errors"].vs_nginx, None);
    }

    #[test]
    fn replaced_runs_are_left_out() {
        let mut old = run("sluice", 0, &[("rps", 1.0)]);
        old.kept = false;
        let mut new = run("sluice", 0, &[("rps", 100.0)]);
        new.attempt = 1;
        let s = summarise(&[old, new], &[RPS]);
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].reps, s[0].reruns), (1, 1));
        assert_eq!(s[0].figures["rps"].median, Some(100.0));
    }

    #[test]
    fn rows_keep_the_order_first_measured() {
        let mut first = run("direct", 0, &[("rps", 1.0)]);
        first.kept = false;
        let runs = [
            first,
            run("nginx", 0, &[("rps", 1.0)]),
            run("direct", 0, &[("rps", 2.0)]),
        ];
        let order: Vec<String> = summarise(&runs, &[RPS])
            .into_iter()
            .map(|s| s.target)
            .collect();
        assert_eq!(order, ["direct", "nginx"]);
    }

    #[test]
    fn table_names_the_mode_and_shows_ratios() {
        let runs = [
            run("nginx", 0, &[("rps", 100.0)]),
            run("sluice", 0, &[("rps", 150.0)]),
        ];
        let t = table("s", "unpinned", &[RPS], &summarise(&runs, &[RPS]));
        assert!(t.starts_with("s (unpinned)\n"));
        assert!(t.contains("| sluice |"));
        assert!(t.contains("150 (1.50×)"));
    }
}
