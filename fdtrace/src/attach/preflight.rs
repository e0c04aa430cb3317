//! Checks made before loading anything, each failing with its remedy.
use aya::{
    maps::MapType,
    programs::ProgramType,
    sys::{is_helper_supported, is_map_supported, BpfHelper},
};

use super::{btf::Btf, Error};
use crate::host::procfs;

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Root, CAP_SYS_ADMIN, or CAP_BPF with CAP_PERFMON.
pub fn check_privileges() -> Result<(), Error> {
    let caps = procfs::status("self").map(|s| s.cap_eff).unwrap_or(0);
    let has = |cap: u32| caps & (1u64 << cap) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        Ok(())
    } else {
        Err(Error::NotPrivileged)
    }
}

/// What the running kernel offers.
pub struct Kernel {
    pub release: String,
    pub btf: Btf,
    pub has_task_pt_regs: bool,
}

impl Kernel {
    pub fn probe() -> Result<Kernel, Error> {
        let release = kernel_release();
        let btf = Btf::from_sys_fs().map_err(|e| Error::NoBtf(e.to_string()))?;
        if !is_map_supported(MapType::RingBuf).unwrap_or(false) {
            return Err(Error::NoRingbuf(release));
        }
        // bpf_task_pt_regs (Linux 5.15) reads the user stack pointer.
        // `FDTRACE_NO_TASK_PT_REGS=1` runs as on a kernel without it (the
        // syscall entries stash arguments, as on 5.10): for testing that
        // path on a newer kernel.
        let has_task_pt_regs = is_helper_supported(ProgramType::TracePoint, BpfHelper::BPF_FUNC_task_pt_regs)
            .unwrap_or(false)
            && std::env::var_os("FDTRACE_NO_TASK_PT_REGS").is_none();
        Ok(Kernel { release, btf, has_task_pt_regs })
    }
}

/// `uname -r`.
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// A process to trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub tgid: u32,
    pub comm: String,
    /// The pid given was a thread of `tgid`.
    pub given_thread: Option<u32>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    /// `/proc/PID` does not exist.
    #[error("no process with pid {0}: is it still running? (`ps -p {0}`)")]
    NoSuchPid(u32),
    /// pid 0 or the kernel's own threads cannot be traced meaningfully.
    #[error("pid {0} is a kernel thread; fdtrace traces user processes")]
    KernelThread(u32),
}

/// Resolves a pid given by the user. A thread id resolves to its process
/// (all its threads share the fd table).
pub fn resolve_target(pid: u32) -> Result<Target, TargetError> {
    if pid == 0 {
        return Err(TargetError::NoSuchPid(0));
    }
    let status = procfs::status(&pid.to_string()).map_err(|_| TargetError::NoSuchPid(pid))?;
    // Kernel threads have no memory map: /proc/PID/exe does not resolve.
    if status.ppid == 2 || (pid == 2 && status.ppid == 0) {
        return Err(TargetError::KernelThread(pid));
    }
    let tgid = if status.tgid == 0 { pid } else { status.tgid };
    Ok(Target { tgid, comm: status.name, given_thread: (tgid != pid).then_some(pid) })
}

/// Whether the kernel has the uprobe PMU aya attaches uprobes with.
pub fn uprobes() -> Result<(), String> {
    let pmu = "/sys/bus/event_source/devices/uprobe/type";
    if std::path::Path::new(pmu).exists() {
        Ok(())
    } else {
        Err(format!("{pmu} is missing (a kernel without CONFIG_UPROBE_EVENTS): Go programs are traced without goroutine origins"))
    }
}
