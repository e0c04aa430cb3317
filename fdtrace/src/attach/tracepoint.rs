//! The tracepoint tier: `syscalls:sys_{enter,exit}_*` for fd syscalls, and
//! the sched lifecycle tracepoints.
use std::collections::{HashMap, HashSet};

use aya::{
    programs::{RawTracePoint, TracePoint},
    Ebpf,
};
use fdtrace_common::{
    programs,
    syscall::{Entry, Exit},
    tracepoint::{self as layout, inet_sock_set_state, sys_enter, sys_exit},
    Config, Syscall,
};

use super::{
    arch,
    preflight::Kernel,
    tracefs::{Format, Tracefs},
    Error, Links, Plan,
};

/// Offsets the lifecycle programs need, from BTF and tracepoint formats.
pub fn lifecycle_config(tracefs: &Tracefs, kernel: &Kernel) -> Result<Config, Error> {
    let field = |s: &'static str, m: &'static str, name: &'static str| {
        kernel.btf.member_offset(s, m).ok_or_else(|| Error::MissingField(name, kernel.release.clone()))
    };
    let mut config = Config {
        task_tgid_off: field("task_struct", "tgid", "task_struct.tgid")?,
        task_files_off: field("task_struct", "files", "task_struct.files")?,
        task_exit_code_off: field("task_struct", "exit_code", "task_struct.exit_code")?,
        task_signal_off: field("task_struct", "signal", "task_struct.signal")?,
        signal_live_off: field("signal_struct", "live", "signal_struct.live")?,
        ..Config::default()
    };
    // The fd → socket walk is optional: without it, socket addresses come
    // from syscall arguments only.
    let opt = |s: &str, m: &str| kernel.btf.member_offset(s, m).unwrap_or(0);
    let sock = [
        opt("files_struct", "fdt"),
        opt("fdtable", "max_fds"),
        opt("fdtable", "fd"),
        opt("file", "private_data"),
        opt("file", "f_inode"),
        opt("inode", "i_mode"),
        opt("socket", "sk"),
    ];
    // Offsets of 0 are legitimate for some of these (fdtable.max_fds), so
    // require the structs to exist rather than the offsets to be non-zero.
    let have_walk = ["files_struct", "fdtable", "file", "inode", "socket", "sock_common"]
        .iter()
        .all(|s| kernel.btf.has_struct(s))
        && sock[6] != 0;
    if have_walk {
        config.files_fdt_off = sock[0];
        config.fdtable_max_fds_off = sock[1];
        config.fdtable_fd_off = sock[2];
        config.file_private_data_off = sock[3];
        config.file_inode_off = sock[4];
        config.inode_mode_off = sock[5];
        config.socket_sk_off = sock[6];
        config.skc_family_off = opt("sock_common", "skc_family");
        config.skc_num_off = opt("sock_common", "skc_num");
        config.skc_dport_off = opt("sock_common", "skc_dport");
        config.skc_rcv_saddr_off = opt("sock_common", "skc_rcv_saddr");
        config.skc_daddr_off = opt("sock_common", "skc_daddr");
        config.skc_v6_rcv_saddr_off = opt("sock_common", "skc_v6_rcv_saddr");
        config.skc_v6_daddr_off = opt("sock_common", "skc_v6_daddr");
        config.skc_state_off = opt("sock_common", "skc_state");
        config.fdtable_close_on_exec_off = opt("fdtable", "close_on_exec");
        let plain = |s: &str, m: &str| kernel.btf.plain_member_offset(s, m).unwrap_or(0);
        config.sk_type_off = plain("sock", "sk_type");
        config.sk_protocol_off = plain("sock", "sk_protocol");
    }
    // A thread's TLS base, which names its CPython thread state: x86_64's
    // `task_struct.thread.fsbase`.
    if let (Some(thread), Some(fsbase)) = (
        kernel.btf.member_offset("task_struct", "thread"),
        kernel.btf.member_offset("thread_struct", "fsbase"),
    ) {
        config.task_fsbase_off = thread + fsbase;
    }
    if !kernel.has_task_pt_regs {
        config.task_stack_off = opt("task_struct", "stack");
        config.thread_size = arch::THREAD_SIZE;
    }
    if let Some(exec) = tracefs.format("sched", "sched_process_exec") {
        config.exec_filename_loc_off = exec.get("filename").map_or(0, |f| f.offset);
        config.exec_old_pid_off = exec.get("old_pid").map_or(0, |f| f.offset);
    }
    if let Some(exit) = tracefs.format("sched", "sched_process_exit") {
        // Newer kernels say whether the whole group is dead; older ones make
        // the program read signal->live.
        config.exit_group_dead_off = exit.get("group_dead").map_or(0, |f| f.offset);
    }
    Ok(config)
}

/// Checks that a record has `field` where the programs read it
/// (`fdtrace_common::tracepoint`).
fn has(f: &Format, field: layout::Field) -> Result<(), String> {
    match f.get(field.name) {
        Some(got) if got.offset == field.offset && got.size == field.size => Ok(()),
        Some(got) => Err(format!(
            "{} at offset {} size {} (expected {}, {})",
            field.name, got.offset, got.size, field.offset, field.size
        )),
        None => Err(format!("no {} field", field.name)),
    }
}

/// Checks a `sys_enter_*` record has the layout the programs read, and
/// returns its number of arguments.
fn enter_arity(f: &Format) -> Result<usize, String> {
    has(f, sys_enter::NR)?;
    let mut args: Vec<_> = f
        .fields
        .iter()
        .filter(|(name, _)| !name.starts_with("common_") && *name != sys_enter::NR.name)
        .map(|(_, field)| *field)
        .collect();
    args.sort_by_key(|a| a.offset);
    for (i, a) in args.iter().enumerate() {
        if a.offset != sys_enter::arg(i) || a.size != sys_enter::ARG_SIZE {
            return Err(format!(
                "argument {i} at offset {} size {} (expected {} size {})",
                a.offset,
                a.size,
                sys_enter::arg(i),
                sys_enter::ARG_SIZE
            ));
        }
    }
    Ok(args.len())
}

/// The `inet_sock_set_state` offsets `fdtrace-ebpf/src/tcp.rs` reads.
fn set_state_layout_ok(f: &Format) -> Result<(), String> {
    inet_sock_set_state::ALL.iter().try_for_each(|&field| has(f, field))
}

fn exit_layout_ok(f: &Format) -> Result<(), String> {
    has(f, sys_exit::NR).and_then(|()| has(f, sys_exit::RET))
}

/// The stashing entry program of `sc`: the one for its arity in the
/// syscall table, which must also be the arity of this kernel's record
/// (the kernel refuses a program that reads past the record's end).
fn stash_program(sc: Syscall, f: &Format) -> Result<&'static str, String> {
    let n = enter_arity(f)?;
    if n != sc.arity() {
        return Err(format!(
            "{n} arguments, but fdtrace's syscall table says {} (fdtrace-common/src/syscall.rs)",
            sc.arity()
        ));
    }
    programs::SYS_ENTER.get(n).copied().ok_or_else(|| format!("{n} arguments"))
}

/// Loads and attaches the tracepoint tier. Failures are recorded in `plan`
/// (skipped hooks), never fatal here: the caller decides whether what was
/// attached is enough.
/// `covered`: tracepoints a function hook replaces (e.g. "sys_enter_close").
pub fn attach(
    ebpf: &mut Ebpf,
    tracefs: &Tracefs,
    plan: &mut Plan,
    links: &mut Links,
    regs_at_exit: bool,
    covered: &HashSet<&str>,
) {
    attach_syscalls(ebpf, tracefs, plan, links, regs_at_exit, covered);
    attach_lifecycle(ebpf, tracefs, plan, links);
}

fn load_tracepoint<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut TracePoint, String> {
    let prog: &mut TracePoint = ebpf
        .program_mut(name)
        .ok_or_else(|| format!("program {name} missing from the object"))?
        .try_into()
        .map_err(|e| format!("{e}"))?;
    prog.load().map_err(|e| format!("the kernel refused {name}: {e:#}"))?;
    Ok(prog)
}

/// The program that serves `phase` of `sc`, given the tracepoint's format
/// (checked against the layout the program reads). Every name this can
/// return is in the object: `object_has_every_program_the_loader_asks_for`
/// (attach/mod.rs) checks it.
pub fn program_for(sc: Syscall, phase: &str, format: &Format) -> Result<String, String> {
    let name = format!("sys_{phase}_{}", sc.name());
    match (phase, sc.entry()) {
        ("enter", Entry::Own) => enter_arity(format).map(|_| name),
        ("enter", _) => stash_program(sc, format).map(str::to_string),
        _ if sc.exit() == Exit::Created => exit_layout_ok(format).map(|()| programs::SYS_EXIT_CREATED.into()),
        _ => exit_layout_ok(format).map(|()| name),
    }
}

fn attach_syscalls(
    ebpf: &mut Ebpf,
    tracefs: &Tracefs,
    plan: &mut Plan,
    links: &mut Links,
    regs_at_exit: bool,
    covered: &HashSet<&str>,
) {
    // What to attach: (hook, tracepoint, program).
    let mut wanted: Vec<(String, String, String)> = vec![];
    for sc in Syscall::ALL {
        for &phase in sc.phases(regs_at_exit) {
            let name = format!("sys_{phase}_{}", sc.name());
            if covered.contains(name.as_str()) {
                continue;
            }
            let hook = format!("syscalls:{name}");
            let Some(format) = tracefs.format("syscalls", &name) else {
                plan.skipped.push((hook, "tracepoint not present on this kernel".into()));
                continue;
            };
            // Programs are named like their tracepoints, but for the
            // argument-stashing entries, which are shared by arity.
            match program_for(sc, phase, &format) {
                Ok(program) => wanted.push((hook, name, program)),
                Err(why) => plan.skipped.push((hook, why)),
            }
        }
    }
    let loaded = load_in_parallel(ebpf, wanted.iter().map(|w| w.2.as_str()).collect());
    for (hook, name, program) in wanted {
        if let Some(Err(why)) = loaded.get(&program) {
            plan.skipped.push((hook, why.clone()));
            continue;
        }
        let Some(prog) = ebpf.program_mut(&program).and_then(|p| <&mut TracePoint>::try_from(p).ok()) else {
            plan.skipped.push((hook, format!("program {program} missing from the object")));
            continue;
        };
        match prog.attach("syscalls", &name) {
            Ok(id) => {
                links.tracepoints.push((program.to_string(), id));
                plan.attached.push(hook);
            }
            Err(e) => plan.skipped.push((hook, format!("attach failed: {e:#}"))),
        }
    }
}

/// Loads the tracepoint programs `names` (each once), on as many threads
/// as there are CPUs: the kernel verifies each program in the thread that
/// loads it, and privileged loads verify concurrently. Most of fdtrace's
/// start-up is these ~40 verifications. A program that fails stays failed.
fn load_in_parallel(ebpf: &mut Ebpf, names: HashSet<&str>) -> HashMap<String, Result<(), String>> {
    let mut progs: Vec<(String, &mut TracePoint)> = vec![];
    let mut results = HashMap::new();
    for (name, prog) in ebpf.programs_mut() {
        if !names.contains(name) {
            continue;
        }
        match <&mut TracePoint>::try_from(prog) {
            Ok(tp) => progs.push((name.to_string(), tp)),
            Err(e) => {
                results.insert(name.to_string(), Err(format!("{e}")));
            }
        }
    }
    for name in names {
        if !progs.iter().any(|(n, _)| n == name) && !results.contains_key(name) {
            results.insert(name.to_string(), Err(format!("program {name} missing from the object")));
        }
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8);
    let mut shares: Vec<Vec<(String, &mut TracePoint)>> = (0..threads).map(|_| vec![]).collect();
    for (i, prog) in progs.into_iter().enumerate() {
        shares[i % threads].push(prog);
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = shares
            .into_iter()
            .map(|share| {
                scope.spawn(move || {
                    share
                        .into_iter()
                        .map(|(name, prog)| {
                            let loaded = prog.load().map_err(|e| format!("the kernel refused {name}: {e:#}"));
                            (name, loaded)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for handle in handles {
            match handle.join() {
                Ok(done) => results.extend(done),
                Err(_) => log::error!("a program-loading thread panicked"),
            }
        }
    });
    results
}

/// The lifecycle and TCP-state tracepoints: (program, category, name).
/// `sched_process_fork` is a raw tracepoint ([`programs::PROCESS_FORK`]).
pub const LIFECYCLE: [(&str, &str, &str); 3] = [
    (programs::PROCESS_EXEC, "sched", "sched_process_exec"),
    (programs::PROCESS_EXIT, "sched", "sched_process_exit"),
    (programs::SOCK_SET_STATE, "sock", "inet_sock_set_state"),
];

fn attach_lifecycle(ebpf: &mut Ebpf, tracefs: &Tracefs, plan: &mut Plan, links: &mut Links) {
    // fork: a raw tracepoint, for the child's task_struct.
    let fork = (|| -> Result<_, String> {
        let prog: &mut RawTracePoint = ebpf
            .program_mut(programs::PROCESS_FORK)
            .ok_or("program missing from the object")?
            .try_into()
            .map_err(|e| format!("{e}"))?;
        prog.load().map_err(|e| format!("the kernel refused it: {e:#}"))?;
        prog.attach("sched_process_fork").map_err(|e| format!("attach failed: {e:#}"))
    })();
    match fork {
        Ok(id) => {
            links.raw_tracepoints.push((programs::PROCESS_FORK.to_string(), id));
            plan.attached.push("raw_tp:sched_process_fork".into());
        }
        Err(why) => plan.skipped.push(("raw_tp:sched_process_fork".into(), why)),
    }
    for (program, category, name) in LIFECYCLE {
        let hook = format!("{category}:{name}");
        if name == "inet_sock_set_state" {
            let layout = tracefs
                .format(category, name)
                .map_or(Err("not present on this kernel".into()), |f| set_state_layout_ok(&f));
            if let Err(why) = layout {
                plan.skipped.push((hook, format!("{why} (TCP states will come from /proc at report time)")));
                continue;
            }
        }
        if !tracefs.exists(category, name) {
            plan.skipped.push((hook, "tracepoint not present on this kernel".into()));
            continue;
        }
        let result = load_tracepoint(ebpf, program)
            .and_then(|p| p.attach(category, name).map_err(|e| format!("attach failed: {e:#}")));
        match result {
            Ok(id) => {
                links.tracepoints.push((program.to_string(), id));
                plan.attached.push(hook);
            }
            Err(why) => plan.skipped.push((hook, why)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table's arities are those of this kernel's tracepoints (the VM
    /// matrix checks older kernels: a mismatch skips the hook there).
    #[test]
    fn the_syscall_tables_arities_match_this_kernels_tracepoints() {
        let Some(root) = Tracefs::locate() else {
            let why = "tracefs is not mounted (mount -t tracefs tracefs /sys/kernel/tracing)";
            assert!(
                std::env::var("CI").map_or(true, |v| v != "true" && v != "1"),
                "{why}; CI=true: a failure"
            );
            eprintln!("SKIPPED the_syscall_tables_arities_match_this_kernels_tracepoints: {why}");
            return;
        };
        let tracefs = Tracefs { root, mounted_now: false };
        let mut checked = 0;
        for sc in Syscall::ALL.into_iter().filter(|sc| sc.entry() != Entry::None) {
            let name = format!("sys_enter_{}", sc.name());
            // memfd_secret needs CONFIG_SECRETMEM; readable formats need root.
            let Some(format) = tracefs.format("syscalls", &name) else { continue };
            assert_eq!(enter_arity(&format), Ok(sc.arity()), "{name}");
            checked += 1;
        }
        if checked == 0 {
            eprintln!("SKIPPED the_syscall_tables_arities_match_this_kernels_tracepoints: no readable syscall formats (not root?)");
        }
    }

    #[test]
    fn syscall_layouts_are_checked() {
        let enter = Format::parse("\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;\n\tfield:int family;\toffset:16;\tsize:8;\tsigned:0;\n\tfield:int type;\toffset:24;\tsize:8;\tsigned:0;\n");
        assert_eq!(enter_arity(&enter), Ok(2));
        // The stashing program is picked by the table's arity, which the
        // format must agree with.
        assert_eq!(program_for(Syscall::Listen, "enter", &enter), Ok("sys_enter_2".into()));
        assert!(program_for(Syscall::Socket, "enter", &enter).unwrap_err().contains("table says 3"));
        assert!(program_for(Syscall::Pipe2, "exit", &Format::default()).is_err());
        let shifted = Format::parse("\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;\n\tfield:int family;\toffset:12;\tsize:4;\tsigned:0;\n");
        assert!(enter_arity(&shifted).is_err());
        let exit = Format::parse("\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;\n\tfield:long ret;\toffset:16;\tsize:8;\tsigned:1;\n");
        assert_eq!(exit_layout_ok(&exit), Ok(()));
        assert!(exit_layout_ok(&Format::default()).is_err());
    }
}
