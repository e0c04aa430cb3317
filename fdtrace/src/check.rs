//! `fdtrace check`: what this kernel offers and which hooks fdtrace would
//! use, for people and for bug reports.
use std::fmt::Write as _;

use crate::attach::{Check, Tier};

/// Whether fdtrace can trace at all here.
pub fn usable(c: &Check) -> bool {
    c.privileged.is_ok() && c.kernel_support.is_ok() && c.tracefs.is_ok() && c.syscall_tracepoints > 0
}

pub fn render(c: &Check) -> String {
    let mut out = String::new();
    let yes_no = |r: &Result<(), String>| match r {
        Ok(()) => "yes".to_string(),
        Err(e) => format!("NO: {e}"),
    };
    let _ = writeln!(out, "kernel:             {}", c.kernel);
    let _ = writeln!(out, "privileges:         {}", yes_no(&c.privileged));
    if c.privileged.is_err() {
        return out;
    }
    let _ = writeln!(out, "BTF + ring buffer:  {}", yes_no(&c.kernel_support));
    if c.kernel_support.is_err() {
        return out;
    }
    let _ = writeln!(
        out,
        "user registers:     {}",
        if c.task_pt_regs {
            "bpf_task_pt_regs: syscall arguments read at exit, libc callers recovered"
        } else {
            "no bpf_task_pt_regs (before 5.15): arguments stashed at syscall entry"
        }
    );
    let _ = writeln!(
        out,
        "tracefs:            {}",
        match &c.tracefs {
            Ok(p) => p.clone(),
            Err(e) => format!("NO: {e}"),
        }
    );
    let _ = writeln!(out, "syscall tracepoints: {} of the syscalls fdtrace hooks", c.syscall_tracepoints);
    let _ = writeln!(
        out,
        "uprobes:            {}",
        match &c.uprobes {
            Ok(()) => "yes (Go programs: goroutines followed to the code that started them)".to_string(),
            Err(e) => format!("NO: {e}"),
        }
    );
    let _ =
        writeln!(out, "\nhook families (function tiers; the tracepoint tier covers any family they cannot):");
    let mut plan = vec![];
    for row in &c.families {
        let _ = writeln!(out, "  {} (replaces {}):", row.family.name, row.family.replaces);
        let mut chosen = None;
        for (tier, result) in &row.tiers {
            match result {
                Ok(function) => {
                    let _ = writeln!(out, "    {tier:<8} yes ({function})");
                    chosen.get_or_insert(*tier);
                }
                Err(why) => {
                    let _ = writeln!(out, "    {tier:<8} no: {why}");
                }
            }
        }
        plan.push((row.family.name, chosen.unwrap_or(Tier::Tracepoint)));
    }
    let _ = writeln!(out, "\nplan with --attach auto:");
    for (family, tier) in &plan {
        let _ = writeln!(out, "  {family:<12} {tier}");
    }
    let _ = writeln!(
        out,
        "  {:<12} tracepoint (dup2/dup3, fcntl, ioctl, connect/bind/listen, fork/exec/exit)",
        "always"
    );
    out
}
