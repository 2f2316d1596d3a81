//! The rise/fall state machine of one upstream, free of I/O and clocks so
//! the thresholds can be tested exactly.
//!
//! Rules (HAProxy's, plus the first-check rule of SPEC §5):
//! - An upstream starts [`State::Unknown`], which reads as down: it takes no
//!   traffic before its first check.
//! - The first check decides at once: a pass makes it up, a failure down
//!   (`rise`/`fall` do not apply to the very first result).
//! - Up: `fall` consecutive failures make it down; a pass resets the count.
//! - Down: `rise` consecutive passes make it up; a failure resets the count.
//! - Passive failures (failed connects and resets on live traffic) count toward `fall`
//!   like active failures, several at a time; they never bring an upstream
//!   up, and while it is down they reset the `rise` count.

/// Health of one upstream as the checker sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Not checked yet; treated as down.
    Unknown,
    /// Takes traffic.
    Up,
    /// Takes no traffic (except in panic mode).
    Down,
}

impl State {
    /// Whether workers may pick it.
    pub fn is_up(self) -> bool {
        self == State::Up
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            State::Unknown => "unknown",
            State::Up => "up",
            State::Down => "down",
        })
    }
}

/// A state change, for the log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    /// State before.
    pub from: State,
    /// State after.
    pub to: State,
}

/// Consecutive-result counters and the current state of one upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    state: State,
    rise: u32,
    fall: u32,
    successes: u32,
    failures: u32,
}

impl Thresholds {
    /// A fresh, unchecked upstream.
    pub fn new(rise: u32, fall: u32) -> Thresholds {
        Thresholds {
            state: State::Unknown,
            rise: rise.max(1),
            fall: fall.max(1),
            successes: 0,
            failures: 0,
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Consecutive failures counted so far (for the passive log reason).
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// New thresholds after a reload; the state and counts are kept.
    pub fn set_limits(&mut self, rise: u32, fall: u32) {
        self.rise = rise.max(1);
        self.fall = fall.max(1);
    }

    /// Records an active check's result.
    pub fn record(&mut self, passed: bool) -> Option<Transition> {
        let from = self.state;
        if passed {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            let to_up = match self.state {
                State::Unknown => true,
                State::Down => self.successes >= self.rise,
                State::Up => false,
            };
            if to_up {
                self.state = State::Up;
            }
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            let to_down = match self.state {
                State::Unknown => true,
                State::Up => self.failures >= self.fall,
                State::Down => false,
            };
            if to_down {
                self.state = State::Down;
            }
        }
        self.changed(from)
    }

    /// Records that live traffic got answers: failures seen before no
    /// longer run on into later ones (`fall` counts consecutive ones).
    pub fn record_passive_success(&mut self) {
        if self.state == State::Up {
            self.failures = 0;
        }
    }

    /// Records `count` failures seen on live traffic.
    pub fn record_passive(&mut self, count: u32) -> Option<Transition> {
        let from = self.state;
        self.successes = 0;
        self.failures = self.failures.saturating_add(count);
        if self.state == State::Up && self.failures >= self.fall {
            self.state = State::Down;
        }
        self.changed(from)
    }

    fn changed(&mut self, from: State) -> Option<Transition> {
        if from == self.state {
            return None;
        }
        self.successes = 0;
        self.failures = 0;
        Some(Transition {
            from,
            to: self.state,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_check_decides_at_once() {
        let mut up = Thresholds::new(2, 3);
        assert_eq!(up.state(), State::Unknown);
        assert!(!up.state().is_up());
        assert_eq!(up.record(true).map(|t| t.to), Some(State::Up));
        let mut down = Thresholds::new(2, 3);
        assert_eq!(down.record(false).map(|t| t.to), Some(State::Down));
    }

    #[test]
    fn fall_and_rise_need_consecutive_results() {
        let mut t = Thresholds::new(2, 3);
        t.record(true);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(true), None, "a pass resets the failures");
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), None);
        assert_eq!(
            t.record(false),
            Some(Transition {
                from: State::Up,
                to: State::Down
            })
        );
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(false), None, "a failure resets the passes");
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(true).map(|t| t.to), Some(State::Up));
    }

    #[test]
    fn alternating_results_never_change_state() {
        for start in [true, false] {
            let mut t = Thresholds::new(2, 3);
            let first = t.record(start).map(|t| t.to);
            for i in 0..50 {
                assert_eq!(t.record(i % 2 == 0), None);
            }
            assert_eq!(Some(t.state()), first);
        }
    }

    #[test]
    fn passive_failures_count_toward_fall_only() {
        let mut t = Thresholds::new(2, 3);
        t.record(true);
        assert_eq!(t.record_passive(2), None);
        assert_eq!(t.record_passive(1).map(|t| t.to), Some(State::Down));
        assert_eq!(t.record(true), None);
        assert_eq!(t.record_passive(1), None, "passive never brings it up");
        assert_eq!(t.record(true), None, "and it reset the rise count");
        assert_eq!(t.record(true).map(|t| t.to), Some(State::Up));
        let mut unknown = Thresholds::new(2, 3);
        assert_eq!(unknown.record_passive(5), None);
        assert_eq!(unknown.state(), State::Unknown);
    }
}
