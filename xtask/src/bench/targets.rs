//! The targets of issue 11 ("Production load"), and whether a run meets
//! them. Pure: the numbers in, verdicts out; the table prints each beside
//! its figure, so every run says where it stands.
use serde::Serialize;

/// fdtrace's ratio to untraced (a stack on every fd-creating event), per
/// workload: at least this, and at least bpftrace's in the same run.
pub const WORKLOAD_RATIO: [(&str, f64); 4] =
    [("connect", 0.90), ("accept", 0.80), ("open", 0.65), ("mix", 0.65)];
/// `--no-stacks` at most this far below the floor (the same hooks, empty).
pub const NO_STACKS_GAP: f64 = 0.05;
/// A process fdtrace does not trace, while it traces another.
pub const UNTRACED_COST: f64 = 0.90;
/// Start to the "tracing" line.
pub const START_MS: f64 = 100.0;
/// SIGINT to exit (the final report included).
pub const STOP_MS: f64 = 100.0;
pub const IDLE_RSS_MIB: f64 = 32.0;
/// With 100,000 fds tracked.
pub const PEAK_RSS_MIB: f64 = 64.0;
/// fdtrace's CPU (user + system) per event.
pub const CPU_US_PER_EVENT: f64 = 0.1;

/// One target, measured.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Verdict {
    pub what: String,
    /// The figure, e.g. "0.78×", "276 ms".
    pub measured: String,
    /// What it must be, e.g. "≥ 0.90×, ≥ bpftrace 0.87×, 0 lost".
    pub target: String,
    pub met: bool,
}

impl Verdict {
    pub fn word(&self) -> &'static str {
        if self.met {
            "met"
        } else {
            "MISSED"
        }
    }
}

pub fn workload_ratio(workload: &str) -> Option<f64> {
    WORKLOAD_RATIO.iter().find(|(w, _)| *w == workload).map(|(_, r)| *r)
}

/// An fdtrace cell with stacks: its workload's ratio, at least bpftrace's,
/// nothing lost. A NaN (a tracer that did not run) misses.
pub fn fdtrace_cell(workload: &str, label: &str, ratio: f64, lost: u64, bpftrace: Option<f64>) -> Verdict {
    let want = workload_ratio(workload);
    let mut target = vec![];
    if let Some(w) = want {
        target.push(format!("{w:.2}×"));
    }
    if let Some(b) = bpftrace {
        target.push(format!("bpftrace {b:.2}×"));
    }
    let met = want.is_none_or(|w| ratio >= w) && bpftrace.is_none_or(|b| ratio >= b) && lost == 0;
    Verdict {
        what: format!("{workload} {label}"),
        measured: format!("{ratio:.2}×, {lost} lost"),
        target: format!("≥ {}, 0 lost", target.join(", ≥ ")),
        met,
    }
}

/// A `--no-stacks` cell: within [`NO_STACKS_GAP`] of its tier's floor,
/// nothing lost.
pub fn no_stacks_cell(workload: &str, label: &str, ratio: f64, lost: u64, floor: f64) -> Verdict {
    Verdict {
        what: format!("{workload} {label}"),
        measured: format!("{ratio:.2}×, {lost} lost"),
        target: format!("≥ floor {floor:.2}× − {NO_STACKS_GAP:.2}, 0 lost"),
        met: ratio >= floor - NO_STACKS_GAP - 1e-9 && lost == 0,
    }
}

/// `value` ≤ `limit`.
pub fn at_most(what: &str, value: f64, limit: f64, unit: &str, decimals: usize) -> Verdict {
    Verdict {
        what: what.into(),
        measured: format!("{value:.decimals$} {unit}"),
        target: format!("≤ {limit:.decimals$} {unit}"),
        met: value <= limit,
    }
}

/// `value` ≥ `limit`.
pub fn at_least(what: &str, value: f64, limit: f64, unit: &str, decimals: usize) -> Verdict {
    Verdict {
        what: what.into(),
        measured: format!("{value:.decimals$}{unit}"),
        target: format!("≥ {limit:.decimals$}{unit}"),
        met: value >= limit,
    }
}

/// `n` == 0.
pub fn none_lost(what: &str, n: u64) -> Verdict {
    Verdict { what: what.into(), measured: format!("{n} lost"), target: "0 lost".into(), met: n == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_fdtrace_cell_needs_its_ratio_bpftraces_and_nothing_lost() {
        // Given the connect target (0.90×) and bpftrace at 0.87×:
        let ok = fdtrace_cell("connect", "fdtrace tracepoint", 0.91, 0, Some(0.87));
        assert!(ok.met);
        assert_eq!(ok.target, "≥ 0.90×, ≥ bpftrace 0.87×, 0 lost");
        // Below the target, below bpftrace, or losing events: missed.
        assert!(!fdtrace_cell("connect", "x", 0.89, 0, Some(0.80)).met);
        assert!(!fdtrace_cell("open", "x", 0.70, 0, Some(0.72)).met);
        assert!(!fdtrace_cell("mix", "x", 0.70, 1, Some(0.60)).met);
        // A tracer that did not run does not meet anything.
        assert!(!fdtrace_cell("accept", "x", f64::NAN, 0, Some(0.5)).met);
        assert!(fdtrace_cell("accept", "x", 0.80, 0, None).met);
    }

    #[test]
    fn no_stacks_is_judged_against_the_floor() {
        assert!(no_stacks_cell("open", "x", 0.70, 0, 0.75).met);
        assert!(!no_stacks_cell("open", "x", 0.69, 0, 0.75).met);
        assert!(!no_stacks_cell("open", "x", 0.80, 3, 0.75).met);
        assert_eq!(no_stacks_cell("open", "x", 0.7, 0, 0.75).target, "≥ floor 0.75× − 0.05, 0 lost");
    }

    #[test]
    fn limits() {
        assert!(at_most("start", 99.0, START_MS, "ms", 0).met);
        assert!(!at_most("start", 101.0, START_MS, "ms", 0).met);
        assert!(!at_most("start", f64::NAN, START_MS, "ms", 0).met);
        assert!(at_least("untraced", 0.9, UNTRACED_COST, "×", 2).met);
        assert_eq!(at_least("untraced", 0.84, UNTRACED_COST, "×", 2).measured, "0.84×");
        assert!(none_lost("sustained", 0).met && !none_lost("sustained", 5).met);
        assert_eq!(workload_ratio("open"), Some(0.65));
    }
}
