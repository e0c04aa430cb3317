//! The floor: what the hooks fdtrace attaches cost by themselves. An empty
//! bpftrace program, filtered by pid, on each hook fdtrace attaches on a
//! tier: the syscall tracepoints from fdtrace's syscall table
//! (`fdtrace_common::Syscall::ALL`), the process lifecycle tracepoints, and
//! on the function tiers the kernel functions `fdtrace check` says that
//! tier hooks here (fdtrace's hook families). No one tracing the same
//! events can cost less than this; `--no-stacks` is measured against it.
//!
//! The rules that pick the tracepoints mirror `fdtrace/src/attach/mod.rs`
//! (what a function family covers) and `attach/tracepoint.rs` (`phases`);
//! the bench compares the count with the one fdtrace prints when it starts
//! ("via N hooks"), so a drift between the two shows in every run.
use std::path::Path;

use fdtrace::attach::function::{Family, CLOSE, FAMILIES, INSTALL};
use fdtrace_common::{syscall::Role, Syscall};

/// What `fdtrace check` says that the floor needs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CheckFacts {
    /// `bpf_task_pt_regs`: syscall arguments are read at exit, so most
    /// syscalls need no entry program.
    pub regs_at_exit: bool,
    /// (family, tier, the function that tier hooks here).
    pub functions: Vec<(String, String, String)>,
}

impl CheckFacts {
    /// Reads `fdtrace check`'s text: the user registers line, and per hook
    /// family the lines `    fentry   yes (fd_install)`.
    pub fn parse(text: &str) -> CheckFacts {
        let mut facts = CheckFacts {
            regs_at_exit: text.lines().any(|l| {
                l.strip_prefix("user registers:")
                    .is_some_and(|r| r.trim_start().starts_with("bpf_task_pt_regs"))
            }),
            functions: vec![],
        };
        let mut family: Option<&str> = None;
        for line in text.lines() {
            if let Some(f) = FAMILIES.iter().find(|f| line.starts_with(&format!("  {} (", f.name))) {
                family = Some(f.name);
                continue;
            }
            if !line.starts_with("    ") {
                family = None;
                continue;
            }
            let Some(name) = family else { continue };
            let mut words = line.split_whitespace();
            let (Some(tier), Some("yes")) = (words.next(), words.next()) else { continue };
            let function = words.next().map(|w| w.trim_matches(|c| c == '(' || c == ')'));
            if let Some(function) = function.filter(|f| !f.is_empty()) {
                facts.functions.push((name.to_string(), tier.to_string(), function.to_string()));
            }
        }
        facts
    }

    /// The function `tier` hooks for `family` here, if it can.
    fn function(&self, family: &Family, tier: &str) -> Option<&str> {
        self.functions
            .iter()
            .find(|(f, t, _)| f == family.name && t == tier)
            .map(|(_, _, func)| func.as_str())
    }
}

/// The lifecycle and TCP-state tracepoints of every tier (fdtrace's
/// `LIFECYCLE` and the fork raw tracepoint, in attach/tracepoint.rs). Fork
/// is a raw tracepoint in fdtrace; bpftrace 0.17 has no raw tracepoints,
/// so the floor takes the plain one.
const LIFECYCLE: [(&str, &str); 4] = [
    ("sched", "sched_process_fork"),
    ("sched", "sched_process_exec"),
    ("sched", "sched_process_exit"),
    ("sock", "inet_sock_set_state"),
];

/// The hooks fdtrace attaches on `tier`, as bpftrace probes, and how many
/// of them are tracepoints (what fdtrace's "via N hooks" counts).
/// `tracepoint_exists(category, name)` says which this kernel has.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Floor {
    pub tier: String,
    pub probes: Vec<String>,
    pub tracepoints: usize,
}

pub fn floor(tier: &str, check: &CheckFacts, tracepoint_exists: impl Fn(&str, &str) -> bool) -> Floor {
    let function = |family: &Family| match tier {
        "fentry" | "kprobe" => check.function(family, tier),
        _ => None,
    };
    let mut functions = vec![];
    let mut covered: Vec<String> = vec![];
    for family in FAMILIES {
        let Some(f) = function(&family) else { continue };
        let probe = if tier == "fentry" { format!("kfunc:{f}") } else { format!("kprobe:{f}") };
        functions.push(probe);
        if family.name == INSTALL.name {
            // fd_install reports received fds: their syscalls' hooks go.
            for sc in Syscall::ALL.into_iter().filter(|sc| sc.role() == Role::Receives) {
                covered.extend(["enter", "exit"].map(|p| format!("sys_{p}_{}", sc.name())));
            }
        }
        if family.name == CLOSE.name {
            covered.push("sys_enter_close".into());
            if CLOSE.candidates.iter().any(|c| c.function == f && c.covers_close_range) {
                covered.push("sys_enter_close_range".into());
            }
        }
    }
    let mut probes = vec![];
    for sc in Syscall::ALL {
        for &phase in sc.phases(check.regs_at_exit) {
            let name = format!("sys_{phase}_{}", sc.name());
            if !covered.contains(&name) && tracepoint_exists("syscalls", &name) {
                probes.push(format!("tracepoint:syscalls:{name}"));
            }
        }
    }
    for (category, name) in LIFECYCLE {
        if tracepoint_exists(category, name) {
            probes.push(format!("tracepoint:{category}:{name}"));
        }
    }
    let tracepoints = probes.len();
    probes.extend(functions);
    Floor { tier: tier.to_string(), probes, tracepoints }
}

/// Whether tracefs has this tracepoint (mounted where fdtrace looks).
pub fn tracefs_has(category: &str, name: &str) -> bool {
    ["/sys/kernel/tracing/events", "/sys/kernel/debug/tracing/events"]
        .iter()
        .any(|root| Path::new(root).join(category).join(name).exists())
}

/// The floor's bpftrace script for `pid`: empty actions, a pid filter.
pub fn script(probes: &[String], pid: u32) -> String {
    format!("BEGIN {{ printf(\"attached\\n\"); }}\n{}\n/pid == {pid}/ {{ }}\n", probes.join(",\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHECK_TRACEPOINTS_ONLY: &str = "\
kernel:             6.18.44
privileges:         yes
BTF + ring buffer:  yes
user registers:     bpf_task_pt_regs: syscall arguments read at exit, libc callers recovered
tracefs:            /sys/kernel/tracing

hook families (function tiers; the tracepoint tier covers any family they cannot):
  fd install (replaces syscall exits of fd-creating calls (kept for failures)):
    fentry no: the kernel refuses fentry programs (EPERM: no BPF trampolines, or lockdown) (fd_install)
    kprobe no: no kprobe PMU: this kernel has no kprobes (fd_install)
  fd close (replaces sys_enter_close (and sys_enter_close_range)):
    fentry no: the kernel refuses fentry programs (file_close_fd_locked, pick_file)
    kprobe no: no kprobe PMU (file_close_fd_locked, pick_file)

plan with --attach auto:
  fd install   tracepoint
";

    const CHECK_FUNCTIONS: &str = "\
user registers:     no bpf_task_pt_regs (before 5.15): arguments stashed at syscall entry
hook families (function tiers; the tracepoint tier covers any family they cannot):
  fd install (replaces syscall exits of fd-creating calls (kept for failures)):
    fentry   yes (fd_install)
    kprobe   yes (fd_install)
  fd close (replaces sys_enter_close (and sys_enter_close_range)):
    fentry   yes (close_fd)
    kprobe   yes (pick_file)
  tcp connect (replaces nothing (adds the SYN_SENT state and addresses)):
    fentry   yes (tcp_connect)
    kprobe   no: attach: EBUSY (tcp_connect)
  tcp close (replaces nothing (adds the state a socket ended in)):
    fentry   yes (tcp_close)
    kprobe   yes (tcp_close)

plan with --attach auto:
  fd install   fentry
";

    #[test]
    fn check_facts_come_from_fdtraces_check_text() {
        let none = CheckFacts::parse(CHECK_TRACEPOINTS_ONLY);
        assert!(none.regs_at_exit);
        assert!(none.functions.is_empty());
        let all = CheckFacts::parse(CHECK_FUNCTIONS);
        assert!(!all.regs_at_exit);
        assert_eq!(all.function(&INSTALL, "fentry"), Some("fd_install"));
        assert_eq!(all.function(&CLOSE, "fentry"), Some("close_fd"));
        assert_eq!(all.function(&CLOSE, "kprobe"), Some("pick_file"));
        assert_eq!(all.functions.len(), 7, "tcp connect has no kprobe: {:?}", all.functions);
    }

    #[test]
    fn the_tracepoint_floor_has_a_hook_per_phase_of_every_syscall_in_the_table() {
        let check = CheckFacts { regs_at_exit: true, functions: vec![] };
        let f = floor("tracepoint", &check, |_, _| true);
        // With the registers at exit: every exit, and close's entries.
        let expect: usize = Syscall::ALL.into_iter().map(|sc| sc.phases(true).len()).sum::<usize>() + 4;
        assert_eq!(f.probes.len(), expect);
        assert_eq!(f.tracepoints, expect);
        for p in ["sys_exit_socket", "sys_exit_openat", "sys_enter_close", "sys_exit_accept4", "sys_exit_dup"]
        {
            assert!(f.probes.contains(&format!("tracepoint:syscalls:{p}")), "{p}");
        }
        assert!(!f.probes.iter().any(|p| p.contains("sys_enter_socket")));
        assert!(f.probes.contains(&"tracepoint:sched:sched_process_fork".to_string()));
        // Before 5.15 the entries stash the arguments.
        let old = floor("tracepoint", &CheckFacts::default(), |_, _| true);
        assert!(old.probes.contains(&"tracepoint:syscalls:sys_enter_socket".to_string()));
        // Only what the kernel has.
        let some = floor("tracepoint", &check, |_, n| n != "sys_exit_memfd_secret");
        assert_eq!(some.probes.len(), expect - 1);
    }

    #[test]
    fn function_tiers_add_their_functions_and_drop_what_they_cover() {
        let check = CheckFacts::parse(CHECK_FUNCTIONS);
        let tp = floor("tracepoint", &check, |_, _| true);
        let fentry = floor("fentry", &check, |_, _| true);
        for probe in ["kfunc:fd_install", "kfunc:close_fd", "kfunc:tcp_connect", "kfunc:tcp_close"] {
            assert!(fentry.probes.contains(&probe.to_string()), "{probe}");
        }
        // close_fd does not see close_range: its entry stays.
        assert!(!fentry.probes.iter().any(|p| p.ends_with(":sys_enter_close")));
        assert!(fentry.probes.iter().any(|p| p.ends_with(":sys_enter_close_range")));
        assert!(!fentry.probes.iter().any(|p| p.contains("recvmsg")));
        // The fd-creating exits are kept (failures).
        assert!(fentry.probes.iter().any(|p| p.ends_with(":sys_exit_socket")));
        assert_eq!(fentry.tracepoints, tp.tracepoints - 5);
        // pick_file covers close_range too; tcp connect stays off kprobes.
        let kprobe = floor("kprobe", &check, |_, _| true);
        assert!(!kprobe.probes.iter().any(|p| p.ends_with(":sys_enter_close_range")));
        assert!(kprobe.probes.contains(&"kprobe:pick_file".to_string()));
        assert!(!kprobe.probes.iter().any(|p| p.contains("tcp_connect")));
    }

    #[test]
    fn the_floor_script_filters_every_probe_by_pid_and_does_nothing() {
        let s = script(&["tracepoint:syscalls:sys_exit_openat".into(), "kprobe:fd_install".into()], 42);
        assert!(s.starts_with("BEGIN { printf(\"attached\\n\"); }\n"));
        assert!(s.ends_with("tracepoint:syscalls:sys_exit_openat,\nkprobe:fd_install\n/pid == 42/ { }\n"));
    }
}
