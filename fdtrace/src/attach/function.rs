//! The function tiers: fentry and kprobe programs on kernel functions,
//! grouped in hook families. Each family tries its candidate functions in
//! order on each tier it is allowed, and keeps the first that loads and
//! attaches; what failed, and why, goes in the plan.
use std::{collections::HashSet, fs};

use aya::{
    programs::{FEntry, KProbe, ProgramError},
    Btf, BtfError, Ebpf,
};
use fdtrace_common::programs as p;

use super::{Links, Tier};

/// One kernel function a family can hook, with its fentry and kprobe
/// programs.
#[derive(Clone, Copy, Debug)]
pub struct Candidate {
    pub function: &'static str,
    fentry: &'static str,
    kprobe: &'static str,
    /// Hooking it also reports close_range's closes (a per-fd removal,
    /// not close()'s entry point).
    pub covers_close_range: bool,
}

impl Candidate {
    /// Its program on a function tier.
    #[cfg(test)]
    pub fn program(&self, tier: Tier) -> Option<&'static str> {
        match tier {
            Tier::Fentry => Some(self.fentry),
            Tier::Kprobe => Some(self.kprobe),
            Tier::Tracepoint => None,
        }
    }
}

/// A group of hooks that replaces one part of the tracepoint tier.
#[derive(Clone, Copy, Debug)]
pub struct Family {
    pub name: &'static str,
    /// What it replaces when hooked.
    pub replaces: &'static str,
    pub candidates: &'static [Candidate],
}

const fn c(
    function: &'static str,
    fentry: &'static str,
    kprobe: &'static str,
    covers_close_range: bool,
) -> Candidate {
    Candidate { function, fentry, kprobe, covers_close_range }
}

/// Every fd installed: syscalls, SCM_RIGHTS, io_uring, pidfd_getfd.
pub const INSTALL: Family = Family {
    name: "fd install",
    replaces: "syscall exits of fd-creating calls (kept for failures)",
    candidates: &[c("fd_install", p::FENTRY_FD_INSTALL, p::KPROBE_FD_INSTALL, false)],
};

/// Removal of an fd by number. The per-fd removal functions see close,
/// close_range and io_uring's close; where they are inlined, close()'s own
/// function covers close() and close_range stays on its tracepoint.
pub const CLOSE: Family = Family {
    name: "fd close",
    replaces: "sys_enter_close (and sys_enter_close_range)",
    candidates: &[
        c("file_close_fd_locked", p::FENTRY_FD_REMOVE, p::KPROBE_FD_REMOVE, true), // 6.8+
        c("pick_file", p::FENTRY_FD_REMOVE, p::KPROBE_FD_REMOVE, true),            // 5.9 - 6.7
        c("file_close_fd", p::FENTRY_CLOSE_FD, p::KPROBE_CLOSE_FD, false),         // 6.8+
        c("close_fd", p::FENTRY_CLOSE_FD, p::KPROBE_CLOSE_FD, false),              // 5.11 - 6.7
        c("__close_fd", p::FENTRY_FD_REMOVE, p::KPROBE_FD_REMOVE, false),          // before 5.11
    ],
};

pub const TCP_CONNECT: Family = Family {
    name: "tcp connect",
    replaces: "nothing (adds the SYN_SENT state and addresses)",
    candidates: &[c("tcp_connect", p::FENTRY_TCP_CONNECT, p::KPROBE_TCP_CONNECT, false)],
};

pub const TCP_CLOSE: Family = Family {
    name: "tcp close",
    replaces: "nothing (adds the state a socket ended in)",
    candidates: &[c("tcp_close", p::FENTRY_TCP_CLOSE, p::KPROBE_TCP_CLOSE, false)],
};

pub const FAMILIES: [Family; 4] = [INSTALL, CLOSE, TCP_CONNECT, TCP_CLOSE];

/// What happened to one family.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// The tier and function it ended up on; `None`: the tracepoint tier
    /// (or nothing) covers it.
    pub hooked: Option<(Tier, Candidate)>,
    /// Every attempt that failed, with why.
    pub failures: Vec<(Tier, &'static str, String)>,
}

/// What the function tiers can do here, learned while attaching: the
/// functions the kernel can kprobe (read on first use), and tiers found
/// unusable for every function (no kprobe PMU, fentry refused), which are
/// not tried again.
pub struct Prober {
    tracefs_root: std::path::PathBuf,
    kallsyms: Option<HashSet<String>>,
    dead: Vec<(Tier, String)>,
}

impl Prober {
    pub fn new(tracefs_root: &std::path::Path) -> Prober {
        let mut dead = vec![];
        if !std::path::Path::new("/sys/bus/event_source/devices/kprobe").exists() {
            dead.push((Tier::Kprobe, explain(Tier::Kprobe, "attach", "kprobe/type")));
        }
        Prober { tracefs_root: tracefs_root.to_path_buf(), kallsyms: None, dead }
    }

    /// Functions the kernel can kprobe (`available_filter_functions`, else
    /// `/proc/kallsyms` text symbols).
    fn can_kprobe(&mut self, function: &str) -> bool {
        let root = &self.tracefs_root;
        self.kallsyms
            .get_or_insert_with(|| {
                let text = fs::read_to_string(root.join("available_filter_functions"))
                    .or_else(|_| fs::read_to_string("/proc/kallsyms"))
                    .unwrap_or_default();
                parse_symbols(&text)
            })
            .contains(function)
    }

    fn dead(&self, tier: Tier) -> Option<&str> {
        self.dead.iter().find(|(t, _)| *t == tier).map(|(_, why)| why.as_str())
    }
}

/// Function names from `available_filter_functions` lines (`name [module]`)
/// or kallsyms lines (`addr t name [module]`).
fn parse_symbols(text: &str) -> HashSet<String> {
    text.lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            match cols.as_slice() {
                [_, kind, name, ..] if kind.len() == 1 => {
                    matches!(*kind, "t" | "T").then(|| name.to_string())
                }
                [name, ..] => Some(name.to_string()),
                [] => None,
            }
        })
        // GCC clones (`foo.isra.0`) are not the function itself.
        .filter(|n| !n.contains('.'))
        .collect()
}

/// Tries `family` on `tiers` in order; attaches the first candidate that
/// works.
pub fn attach(
    ebpf: &mut Ebpf,
    btf: Option<&Btf>,
    prober: &mut Prober,
    family: &Family,
    tiers: &[Tier],
    links: &mut Links,
) -> Outcome {
    let mut out = Outcome::default();
    for &tier in tiers {
        for cand in family.candidates {
            if let Some(why) = prober.dead(tier) {
                out.failures.push((tier, cand.function, why.to_string()));
                continue;
            }
            let result = match tier {
                Tier::Fentry => try_fentry(ebpf, btf, cand, links),
                Tier::Kprobe => try_kprobe(ebpf, prober, cand, links),
                Tier::Tracepoint => continue,
            };
            match result {
                Ok(()) => {
                    out.hooked = Some((tier, *cand));
                    return out;
                }
                // A function this kernel does not have is not worth
                // reporting per tier.
                Err(Missing) => continue,
                Err(Failed(why)) => {
                    // The kernel refuses the tier itself: skip it from now on.
                    if tier == Tier::Fentry && why == explain(Tier::Fentry, "load", "Operation not permitted")
                    {
                        prober.dead.push((tier, why.clone()));
                    }
                    out.failures.push((tier, cand.function, why));
                }
            }
        }
    }
    out
}

enum AttachError {
    Missing,
    Failed(String),
}
use AttachError::{Failed, Missing};

fn try_fentry(
    ebpf: &mut Ebpf,
    btf: Option<&Btf>,
    cand: &Candidate,
    links: &mut Links,
) -> Result<(), AttachError> {
    let btf = btf.ok_or_else(|| Failed("no kernel BTF for fentry".into()))?;
    let prog: &mut FEntry = ebpf
        .program_mut(cand.fentry)
        .ok_or_else(|| Failed(format!("program {} missing from the object", cand.fentry)))?
        .try_into()
        .map_err(|e| Failed(format!("{e}")))?;
    // A program already loaded for another function cannot be reused.
    if prog.fd().is_ok() {
        return Err(Failed(format!("{} is already attached elsewhere", cand.fentry)));
    }
    match prog.load(cand.function, btf) {
        Ok(()) => {}
        // Not in the kernel's BTF: this kernel does not have the function.
        Err(ProgramError::Btf(BtfError::UnknownBtfTypeName { .. })) => return Err(Missing),
        Err(e) => return Err(Failed(explain(Tier::Fentry, "load", &error_chain(&e)))),
    }
    match prog.attach() {
        Ok(id) => {
            links.fentry.push((cand.fentry.to_string(), id));
            Ok(())
        }
        Err(e) => {
            // Leave it unloaded so a kprobe can take over.
            let why = explain(Tier::Fentry, "attach", &error_chain(&e));
            let _ = prog.unload();
            Err(Failed(why))
        }
    }
}

fn try_kprobe(
    ebpf: &mut Ebpf,
    prober: &mut Prober,
    cand: &Candidate,
    links: &mut Links,
) -> Result<(), AttachError> {
    if !prober.can_kprobe(cand.function) {
        return Err(Missing);
    }
    let prog: &mut KProbe = ebpf
        .program_mut(cand.kprobe)
        .ok_or_else(|| Failed(format!("program {} missing from the object", cand.kprobe)))?
        .try_into()
        .map_err(|e| Failed(format!("{e}")))?;
    if prog.fd().is_err() {
        prog.load().map_err(|e| Failed(explain(Tier::Kprobe, "load", &error_chain(&e))))?;
    }
    let id = prog
        .attach(cand.function, 0)
        .map_err(|e| Failed(explain(Tier::Kprobe, "attach", &error_chain(&e))))?;
    links.kprobes.push((cand.kprobe.to_string(), id));
    Ok(())
}

/// The known ways a tier fails, in words; anything else verbatim.
fn explain(tier: Tier, step: &str, error: &str) -> String {
    if error.contains("kprobe/type") {
        return "no kprobe PMU (/sys/bus/event_source/devices/kprobe is missing): this kernel has no kprobes"
            .into();
    }
    if tier == Tier::Fentry && step == "load" && error.contains("Operation not permitted") {
        return "the kernel refuses fentry programs (EPERM: no BPF trampolines, or lockdown)".into();
    }
    if error.contains("Device or resource busy") {
        return format!("{step}: function already traced exclusively (EBUSY)");
    }
    let error = error.trim_end_matches(". Verifier output: ").trim_end();
    format!("{step}: {error}")
}

/// Failures grouped by reason: "reason (f1, f2)".
pub fn summarize(failures: &[(Tier, &'static str, String)]) -> String {
    let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
    for (_, function, why) in failures {
        match groups.iter_mut().find(|(w, _)| *w == why.as_str()) {
            Some((_, fs)) => fs.push(function),
            None => groups.push((why.as_str(), vec![function])),
        }
    }
    groups.iter().map(|(why, fs)| format!("{why} ({})", fs.join(", "))).collect::<Vec<_>>().join("; ")
}

/// An error with its sources, on one line (aya's errors nest the errno).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        let text = inner.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_from_both_formats() {
        let kallsyms = "ffffffff81000000 T _stext\nffffffff81234560 t pick_file\nffffffff81234570 t pick_file.isra.0\nffffffff82000000 D some_data\nffffffffc0000000 t mod_func\t[ext4]\n";
        let s = parse_symbols(kallsyms);
        assert!(s.contains("pick_file") && s.contains("_stext") && s.contains("mod_func"));
        assert!(!s.contains("some_data") && !s.contains("pick_file.isra.0"));
        let filter = "fd_install\nclose_fd\ntcp_connect [some_mod]\n";
        let s = parse_symbols(filter);
        assert!(s.contains("fd_install") && s.contains("tcp_connect"));
    }

    #[test]
    fn close_candidates_prefer_per_fd_removal() {
        assert!(CLOSE.candidates[0].covers_close_range && CLOSE.candidates[1].covers_close_range);
        assert!(CLOSE.candidates[2..].iter().all(|c| !c.covers_close_range));
    }
}
