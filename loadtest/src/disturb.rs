//! Spotting a disturbed repetition: other work on the machine during a run
//! (a build, a test suite) shows as more busy CPU besides the proxy than
//! the same target's other runs had, or as the direct baseline moving.

use crate::report::{Run, median};

/// A run's other busy CPU seconds above this multiple of its target's
/// median (and by at least [`OTHER_MIN_EXCESS_S`]) marks it disturbed.
pub const OTHER_FACTOR: f64 = 1.25;
/// The least excess of other busy CPU seconds that counts, so tiny
/// figures (fixed-rate runs, idle connections) do not trip on noise.
pub const OTHER_MIN_EXCESS_S: f64 = 0.3;
/// The direct baseline's request rate deviating from its median by more
/// than this fraction marks its repetition disturbed.
pub const DIRECT_DEVIATION: f64 = 0.15;
/// A fixed-rate run that achieved less than this fraction of its offered
/// rate (`offered_rps`) did not do the same work as its peers.
pub const OFFERED_SHORTFALL: f64 = 0.95;
/// Fewer repetitions than this give no meaningful median to compare with.
pub const MIN_REPS: usize = 3;

/// The disturbed repetitions among the kept `runs` of one scenario, each
/// once, with the reason (the first found), in repetition order. Falling
/// short of an offered rate counts at any number of repetitions; the
/// comparisons with a median need [`MIN_REPS`].
pub fn disturbed(runs: &[Run]) -> Vec<(u32, String)> {
    let mut found: Vec<(u32, String)> = Vec::new();
    let mut flag = |rep: u32, why: String| {
        if !found.iter().any(|(r, _)| *r == rep) {
            found.push((rep, why));
        }
    };
    for r in runs.iter().filter(|r| r.kept) {
        if let (Some(&offered), Some(&rps)) = (r.values.get("offered_rps"), r.values.get("rps"))
            && rps < offered * OFFERED_SHORTFALL
        {
            flag(
                r.rep,
                format!("{}: {rps:.0} req/s of {offered:.0} offered", r.target),
            );
        }
    }
    let mut targets: Vec<&str> = runs.iter().map(|r| r.target.as_str()).collect();
    targets.sort_unstable();
    targets.dedup();
    for target in targets {
        let mine: Vec<&Run> = runs
            .iter()
            .filter(|r| r.kept && r.target == target)
            .collect();
        if mine.len() < MIN_REPS {
            continue;
        }
        let others: Vec<f64> = mine
            .iter()
            .filter_map(|r| r.values.get("other_cpu_s").copied())
            .collect();
        if let Some(m) = median(&others) {
            for r in &mine {
                if let Some(&o) = r.values.get("other_cpu_s")
                    && o > m * OTHER_FACTOR
                    && o - m >= OTHER_MIN_EXCESS_S
                {
                    flag(
                        r.rep,
                        format!("{target}: other CPU-s {o:.2} against a median of {m:.2}"),
                    );
                }
            }
        }
        if target != "direct" {
            continue;
        }
        let rates: Vec<f64> = mine
            .iter()
            .filter_map(|r| r.values.get("rps").copied())
            .collect();
        if let Some(m) = median(&rates).filter(|m| *m > 0.0) {
            for r in &mine {
                if let Some(&v) = r.values.get("rps")
                    && ((v - m) / m).abs() > DIRECT_DEVIATION
                {
                    flag(
                        r.rep,
                        format!("direct: {v:.0} req/s against a median of {m:.0}"),
                    );
                }
            }
        }
    }
    found.sort_by_key(|(rep, _)| *rep);
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures::run;

    fn runs(target: &str, key: &str, values: &[f64]) -> Vec<Run> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| run("s", target, i as u32, &[(key, *v)]))
            .collect()
    }

    #[test]
    fn busy_machine_marks_its_repetition() {
        let r = runs("sluice", "other_cpu_s", &[4.0, 4.1, 6.0, 3.9, 4.0]);
        let d = disturbed(&r);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].0, 2);
        assert!(d[0].1.contains("sluice"));
    }

    #[test]
    fn small_absolute_excess_is_noise() {
        let r = runs("sluice", "other_cpu_s", &[0.4, 0.4, 0.6, 0.4, 0.4]);
        assert!(disturbed(&r).is_empty());
    }

    #[test]
    fn direct_baseline_moving_marks_its_repetition() {
        let r = runs(
            "direct",
            "rps",
            &[50_000.0, 52_000.0, 40_000.0, 51_000.0, 60_000.0],
        );
        let reps: Vec<u32> = disturbed(&r).into_iter().map(|(rep, _)| rep).collect();
        assert_eq!(reps, vec![2, 4]);
        // Only the direct baseline's rate counts: a proxy's may differ by design.
        let r = runs("sluice", "rps", &[50_000.0, 52_000.0, 40_000.0]);
        assert!(disturbed(&r).is_empty());
    }

    #[test]
    fn falling_short_of_the_offered_rate_marks_its_repetition() {
        let r = [
            run(
                "s",
                "sluice",
                0,
                &[("offered_rps", 10_000.0), ("rps", 9_990.0)],
            ),
            run(
                "s",
                "nginx",
                0,
                &[("offered_rps", 10_000.0), ("rps", 6_000.0)],
            ),
        ];
        let d = disturbed(&r);
        assert_eq!(d.len(), 1);
        assert!(d[0].1.starts_with("nginx: 6000 req/s of 10000"));
    }

    #[test]
    fn too_few_repetitions_are_not_judged() {
        let r = runs("direct", "rps", &[50_000.0, 10_000.0]);
        assert!(disturbed(&r).is_empty());
    }

    #[test]
    fn replaced_runs_do_not_count() {
        let mut r = runs("sluice", "other_cpu_s", &[4.0, 4.0, 9.0, 4.0]);
        r[2].kept = false;
        assert!(disturbed(&r).is_empty());
    }
}
