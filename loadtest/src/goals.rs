//! Issue 9's targets for sluice, each judged from the kept runs: the
//! measured ratio (or value), the limit, and pass or fail.

use crate::report::{Run, median, peer};
use serde::Serialize;

/// One target and how sluice did.
#[derive(Debug, Clone, Serialize)]
pub struct Goal {
    /// What is asked.
    pub goal: &'static str,
    /// The scenario it is judged on.
    pub scenario: &'static str,
    /// The measured ratio or value; `None` if not measured.
    pub measured: Option<f64>,
    /// The limit it must not cross.
    pub limit: f64,
    /// Whether `measured` must be at most (true) or at least (false) `limit`.
    pub at_most: bool,
    /// How `measured` was computed.
    pub how: &'static str,
}

impl Goal {
    /// Pass (`Some(true)`), fail, or not measured.
    pub fn pass(&self) -> Option<bool> {
        self.measured.map(|m| {
            if self.at_most {
                m <= self.limit
            } else {
                m >= self.limit
            }
        })
    }
}

/// The peers sluice is compared with.
const PEERS: [&str; 2] = ["nginx", "haproxy"];

/// Median over repetitions of sluice's `key` divided by the better peer's
/// in the same repetition (the lower value if `lower_is_better`).
fn vs_better_peer(runs: &[Run], scenario: &str, key: &str, lower_is_better: bool) -> Option<f64> {
    let ratios: Vec<f64> = sluice_runs(runs, scenario)
        .filter_map(|r| {
            let mine = *r.values.get(key)?;
            let peers = PEERS
                .iter()
                .filter_map(|p| peer(runs, r, p)?.values.get(key).copied());
            let best = if lower_is_better {
                peers.reduce(f64::min)
            } else {
                peers.reduce(f64::max)
            }?;
            (best > 0.0).then(|| mine / best)
        })
        .collect();
    median(&ratios)
}

/// Kept runs of sluice in `scenario`.
fn sluice_runs<'a>(runs: &'a [Run], scenario: &'a str) -> impl Iterator<Item = &'a Run> {
    runs.iter()
        .filter(move |r| r.kept && r.scenario == scenario && r.target == "sluice")
}

/// Median over repetitions of `target`'s p99 minus direct's p99 in the same repetition.
fn p99_added(runs: &[Run], scenario: &str, target: &str) -> Option<f64> {
    let added: Vec<f64> = runs
        .iter()
        .filter(|r| r.kept && r.scenario == scenario && r.target == target)
        .filter_map(|r| {
            Some(r.values.get("p99_ms")? - peer(runs, r, "direct")?.values.get("p99_ms")?)
        })
        .collect();
    median(&added)
}

/// Every goal of issue 9, judged on `runs` (all scenarios).
pub fn evaluate(runs: &[Run]) -> Vec<Goal> {
    let sluice_p99 = p99_added(runs, "http-rate", "sluice");
    let nginx_p99 = p99_added(runs, "http-rate", "nginx");
    let idle: Vec<f64> = sluice_runs(runs, "http-idle")
        .filter_map(|r| r.values.get("kib_per_conn").copied())
        .collect();
    let errors: Vec<f64> = runs
        .iter()
        .filter(|r| r.kept && r.target == "sluice")
        .filter_map(|r| r.values.get("errors").copied())
        .collect();
    vec![
        Goal {
            goal: "keep-alive CPU per request at a fixed rate ≤ 0.8× the better of nginx/HAProxy",
            scenario: "http-rate",
            measured: vs_better_peer(runs, "http-rate", "cpu_per_100k", true),
            limit: 0.8,
            at_most: true,
            how: "median over repetitions of sluice's CPU-s/100k ÷ the lower of nginx's and HAProxy's",
        },
        Goal {
            goal: "keep-alive capacity ≥ the better of nginx/HAProxy",
            scenario: "http-keepalive",
            measured: vs_better_peer(runs, "http-keepalive", "rps", false),
            limit: 1.0,
            at_most: false,
            how: "median over repetitions of sluice's req/s ÷ the higher of nginx's and HAProxy's",
        },
        Goal {
            goal: "new-connection CPU per request ≤ 0.9× the better of nginx/HAProxy",
            scenario: "http-close",
            measured: vs_better_peer(runs, "http-close", "cpu_per_100k", true),
            limit: 0.9,
            at_most: true,
            how: "median over repetitions of sluice's CPU-s/100k ÷ the lower of nginx's and HAProxy's",
        },
        Goal {
            goal: "p99 added over direct at 10k req/s ≤ half of nginx's",
            scenario: "http-rate",
            measured: sluice_p99
                .zip(nginx_p99)
                .filter(|(_, n)| *n > 0.0)
                .map(|(s, n)| s / n),
            limit: 0.5,
            at_most: true,
            how: "median of (sluice p99 − direct p99) ÷ median of (nginx p99 − direct p99), each per repetition",
        },
        Goal {
            goal: "idle keep-alive connection ≤ 1 KiB",
            scenario: "http-idle",
            measured: median(&idle),
            limit: 1.0,
            at_most: true,
            how: "median KiB of Pss growth per idle connection",
        },
        Goal {
            goal: "no errors",
            scenario: "all",
            measured: (!errors.is_empty()).then(|| errors.iter().sum()),
            limit: 0.0,
            at_most: true,
            how: "sluice's errors summed over every kept run",
        },
    ]
}

/// The goals as a Markdown table; `mode` names how a scenario ran.
pub fn table(goals: &[Goal], mode: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::from(
        "issue 9 targets (sluice)\n\n| target | measured | limit | result | scenario |\n|---|--:|--:|---|---|\n",
    );
    for g in goals {
        let result = match g.pass() {
            Some(true) => "pass",
            Some(false) => "FAIL",
            None => "not measured",
        };
        let scenario = match mode(g.scenario) {
            Some(m) => format!("{} ({m})", g.scenario),
            None => g.scenario.to_string(),
        };
        out.push_str(&format!(
            "| {} | {} | {} {} | {result} | {scenario} |\n",
            g.goal,
            g.measured.map_or("-".to_string(), |m| format!("{m:.3}")),
            if g.at_most { "≤" } else { "≥" },
            g.limit,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures::run;

    #[test]
    fn compares_with_the_better_peer_of_each_repetition() {
        let runs = [
            run("http-rate", "sluice", 0, &[("cpu_per_100k", 1.6)]),
            run("http-rate", "nginx", 0, &[("cpu_per_100k", 2.0)]),
            run("http-rate", "haproxy", 0, &[("cpu_per_100k", 4.0)]),
            run("http-keepalive", "sluice", 0, &[("rps", 90.0)]),
            run("http-keepalive", "nginx", 0, &[("rps", 80.0)]),
            run("http-keepalive", "haproxy", 0, &[("rps", 100.0)]),
        ];
        let g = evaluate(&runs);
        assert_eq!(g[0].measured, Some(0.8));
        assert_eq!(g[0].pass(), Some(true));
        assert_eq!(g[1].measured, Some(0.9));
        assert_eq!(g[1].pass(), Some(false));
        assert_eq!(g[2].pass(), None);
    }

    #[test]
    fn judges_added_latency_idle_memory_and_errors() {
        let runs = [
            run("http-rate", "direct", 0, &[("p99_ms", 1.0)]),
            run(
                "http-rate",
                "sluice",
                0,
                &[("p99_ms", 1.4), ("errors", 0.0)],
            ),
            run("http-rate", "nginx", 0, &[("p99_ms", 2.0)]),
            run(
                "http-idle",
                "sluice",
                0,
                &[("kib_per_conn", 1.2), ("errors", 2.0)],
            ),
        ];
        let g = evaluate(&runs);
        let p99 = g[3].measured.expect("measured");
        assert!((p99 - 0.4).abs() < 1e-9);
        assert_eq!(g[3].pass(), Some(true));
        assert_eq!((g[4].measured, g[4].pass()), (Some(1.2), Some(false)));
        assert_eq!((g[5].measured, g[5].pass()), (Some(2.0), Some(false)));
    }

    #[test]
    fn table_says_which_mode_ran() {
        let t = table(&evaluate(&[]), |s| {
            (s == "http-keepalive").then(|| "unpinned".to_string())
        });
        assert!(t.contains("| http-keepalive (unpinned) |"));
        assert!(t.contains("not measured"));
    }
}
