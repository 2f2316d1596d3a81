//! Repetitions: every target measured once per repetition, in an order
//! rotated by one each time so none is always first or last, and a
//! repetition that looks disturbed measured once more.

use crate::disturb;
use crate::report::{Run, Values};
use anyhow::Result;

/// Measures each of `targets` (named by `name`) `reps` times with
/// `measure`, then re-runs each disturbed repetition once: its first runs
/// stay in the result marked as not kept, with the reason.
pub fn measure_all<T>(
    scenario: &str,
    targets: &[T],
    name: impl Fn(&T) -> &str,
    reps: u32,
    mut measure: impl FnMut(&T) -> Result<Values>,
) -> Vec<Run> {
    let mut one = |rep: u32, attempt: u32, runs: &mut Vec<Run>| {
        let n = targets.len();
        for i in 0..n {
            let t = &targets[(i + rep as usize) % n];
            match measure(t) {
                Ok(values) => {
                    let run = Run {
                        scenario: scenario.to_string(),
                        target: name(t).to_string(),
                        rep,
                        attempt,
                        kept: true,
                        disturbed: None,
                        values,
                    };
                    eprintln!("{}", describe(&run));
                    runs.push(run);
                }
                Err(e) => eprintln!("{scenario} rep {rep} {}: {e:#}", name(t)),
            }
        }
    };
    let mut runs = Vec::new();
    for rep in 0..reps {
        one(rep, 0, &mut runs);
    }
    for (rep, why) in disturb::disturbed(&runs) {
        eprintln!("{scenario} rep {rep} looks disturbed ({why}); measuring it again");
        for r in runs.iter_mut().filter(|r| r.rep == rep) {
            r.kept = false;
            r.disturbed = Some(why.clone());
        }
        one(rep, 1, &mut runs);
    }
    // A re-run is kept either way (once only), but says if it looked disturbed too.
    for (rep, why) in disturb::disturbed(&runs) {
        for r in runs
            .iter_mut()
            .filter(|r| r.kept && r.rep == rep && r.attempt > 0)
        {
            r.disturbed = Some(why.clone());
        }
    }
    runs
}

/// One progress line: scenario, repetition, target and every figure.
fn describe(r: &Run) -> String {
    let figures: Vec<String> = r
        .values
        .iter()
        .map(|(k, v)| format!("{k} {v:.2}"))
        .collect();
    format!(
        "{} rep {}{} {:<8} {}",
        r.scenario,
        r.rep,
        if r.attempt > 0 { " (re-run)" } else { "" },
        r.target,
        figures.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::bail;

    #[test]
    fn rotates_the_order_each_repetition() {
        let mut order = Vec::new();
        let runs = measure_all(
            "s",
            &["a", "b", "c"],
            |t| t,
            3,
            |t| {
                order.push(*t);
                Ok(Values::new())
            },
        );
        assert_eq!(order, ["a", "b", "c", "b", "c", "a", "c", "a", "b"]);
        assert_eq!(runs.len(), 9);
        assert!(runs.iter().all(|r| r.kept && r.attempt == 0));
    }

    #[test]
    fn re_runs_a_disturbed_repetition_once() {
        // Other load is high in the third measurement of "x" only.
        let mut calls = 0;
        let runs = measure_all(
            "s",
            &["x"],
            |t| t,
            4,
            |_| {
                calls += 1;
                let other = if calls == 3 { 9.0 } else { 4.0 };
                Ok(Values::from([("other_cpu_s".to_string(), other)]))
            },
        );
        assert_eq!(calls, 5);
        let replaced: Vec<&Run> = runs.iter().filter(|r| !r.kept).collect();
        assert_eq!(replaced.len(), 1);
        assert_eq!(replaced[0].rep, 2);
        assert!(replaced[0].disturbed.is_some());
        let rerun = runs.iter().find(|r| r.attempt == 1).expect("re-run");
        assert!(rerun.kept && rerun.rep == 2 && rerun.disturbed.is_none());
    }

    #[test]
    fn a_failed_measurement_is_left_out() {
        let runs = measure_all(
            "s",
            &["ok", "bad"],
            |t| t,
            1,
            |t| {
                if *t == "bad" {
                    bail!("no");
                }
                Ok(Values::new())
            },
        );
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].target, "ok");
    }
}
