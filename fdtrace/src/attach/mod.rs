//! Getting the kernel programs in: check what this kernel offers, choose a
//! tier per hook family, load, attach. Open → configure → load → attach;
//! every program is loaded and attached on its own, so one the kernel
//! refuses is skipped (with a warning) or replaced by a fallback.
//!
//! Tiers (`--attach`): the tracepoint tier hooks syscall tracepoints and the
//! sched lifecycle tracepoints; it works wherever tracepoints do.
pub mod btf;
mod preflight;
pub mod tracefs;
mod tracepoint;

use std::fmt;

use aya::{
    maps::{MapData, PerCpuArray, RingBuf, StackTraceMap},
    programs::{
        raw_trace_point::RawTracePointLinkId, trace_point::TracePointLinkId, RawTracePoint, TracePoint,
    },
    Ebpf, EbpfLoader,
};
use fdtrace_common::{
    config_flags, target, Loss, CONFIG_GLOBAL, EVENTS_MAP, LOSSES_MAP, STACKS_MAP, TARGETS_MAP,
};
use log::warn;

pub use preflight::{resolve_target, Target};

/// The eBPF object, built by `build.rs` from `fdtrace-ebpf`.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/fdtrace-ebpf.o"));

/// How fdtrace hooks the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AttachMode {
    /// The best tier this kernel supports, per hook.
    Auto,
    /// Syscall and sched tracepoints only.
    Tracepoint,
}

/// A tier a hook ended up on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    Tracepoint,
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Tier::Tracepoint => "tracepoint",
        })
    }
}

#[derive(Clone, Debug)]
pub struct Options {
    pub mode: AttachMode,
    pub follow_forks: bool,
    pub stacks: bool,
    /// Ring buffer size in bytes (a power of two, at least a page).
    pub ringbuf_size: u32,
    pub stack_entries: u32,
}

/// Why fdtrace cannot trace. Each message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Neither root nor CAP_BPF+CAP_PERFMON (or CAP_SYS_ADMIN).
    #[error("fdtrace needs root (or the CAP_BPF and CAP_PERFMON capabilities) to load eBPF programs: run it with sudo")]
    NotPrivileged,
    /// `/sys/kernel/btf/vmlinux` is missing or unreadable.
    #[error("this kernel has no BTF ({0}); fdtrace needs a kernel built with CONFIG_DEBUG_INFO_BTF=y (all major distribution kernels since 2020 have it)")]
    NoBtf(String),
    /// A struct field fdtrace needs is not in the kernel's BTF.
    #[error("the kernel's BTF has no {0}; this kernel is not supported — please report `uname -r` ({1})")]
    MissingField(&'static str, String),
    /// BPF ring buffers arrived in Linux 5.8.
    #[error("this kernel ({0}) has no BPF ring buffer; fdtrace needs Linux 5.8 or newer")]
    NoRingbuf(String),
    #[error(transparent)]
    Tracefs(#[from] tracefs::NotMounted),
    /// The object itself could not be loaded (maps).
    #[error("loading fdtrace's eBPF object failed: {0}")]
    Object(#[source] aya::EbpfError),
    /// Nothing at all could be attached.
    #[error("no fd hook could be attached on this kernel:\n{0}\nrun `fdtrace check` for details")]
    NothingAttached(String),
    #[error("fdtrace's eBPF object lacks {0} (a build problem: rebuild with `cargo xtask build-ebpf`)")]
    BadObject(String),
    #[error("updating the eBPF map {map}: {source}")]
    Map {
        map: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
}

/// What was attached where, for the start-up line and report headers.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub tier: Option<Tier>,
    /// Hooks attached, e.g. "syscalls:sys_enter_socket".
    pub attached: Vec<String>,
    /// Hooks skipped, with why.
    pub skipped: Vec<(String, String)>,
    /// The kernel side can read the caller of a frameless libc wrapper.
    pub caller_ip: bool,
}

/// Counts of what the kernel side could not deliver in full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Losses {
    /// Events dropped: the ring buffer was full.
    pub ringbuf_full: u64,
    /// Events sent without their stack.
    pub stack_failed: u64,
    pub inflight_full: u64,
    pub missed_entry: u64,
    pub read_failed: u64,
    pub targets_full: u64,
    /// Not losses: stacks sent inline after a stack-map collision.
    pub stack_inline: u64,
}

impl Losses {
    /// Events that never reached userspace.
    pub fn lost_events(&self) -> u64 {
        self.ringbuf_full
    }
}

/// What was attached, so it can be detached in parallel.
#[derive(Default)]
pub struct Links {
    pub tracepoints: Vec<(&'static str, TracePointLinkId)>,
    pub raw_tracepoints: Vec<(&'static str, RawTracePointLinkId)>,
}

/// The loaded and attached programs. Dropping it detaches everything.
pub struct Tracer {
    ebpf: Ebpf,
    pub plan: Plan,
    links: Links,
    stacks: Option<StackTraceMap<MapData>>,
    losses: Option<PerCpuArray<MapData, u64>>,
}

impl Tracer {
    /// Loads and attaches the programs for `targets`. Returns the ring
    /// buffer to read events from; it exists before any hook is attached,
    /// so nothing is emitted unread.
    pub fn start(opts: &Options, targets: &[u32]) -> Result<(Tracer, RingBuf<MapData>), Error> {
        preflight::check_privileges()?;
        let kernel = preflight::Kernel::probe()?;
        let tracefs = tracefs::Tracefs::locate_or_mount()?;
        if tracefs.mounted_now {
            eprintln!("fdtrace: tracefs was not mounted; mounted it at {}", tracefs.root.display());
        }

        let mut config = tracepoint::lifecycle_config(&tracefs, &kernel)?;
        if opts.follow_forks {
            config.flags |= config_flags::FOLLOW_FORKS;
        }
        if opts.stacks {
            config.flags |= config_flags::CAPTURE_STACKS;
        }
        if kernel.has_task_pt_regs {
            config.flags |= config_flags::HAVE_TASK_PT_REGS;
        }

        let mut ebpf = EbpfLoader::new()
            .override_global(CONFIG_GLOBAL, &config, true)
            .map_max_entries(EVENTS_MAP, opts.ringbuf_size)
            .map_max_entries(STACKS_MAP, opts.stack_entries)
            .load(EBPF_OBJECT)
            .map_err(Error::Object)?;

        {
            let map = ebpf.map_mut(TARGETS_MAP).ok_or_else(|| Error::BadObject(TARGETS_MAP.into()))?;
            let mut map: aya::maps::HashMap<_, u32, u32> = aya::maps::HashMap::try_from(map)
                .map_err(|source| Error::Map { map: TARGETS_MAP, source })?;
            for &tgid in targets {
                map.insert(tgid, target::ROOT, 0)
                    .map_err(|source| Error::Map { map: TARGETS_MAP, source })?;
            }
        }
        let ring = ebpf.take_map(EVENTS_MAP).ok_or_else(|| Error::BadObject(EVENTS_MAP.into()))?;
        let ring = RingBuf::try_from(ring).map_err(|source| Error::Map { map: EVENTS_MAP, source })?;
        let stacks = ebpf.take_map(STACKS_MAP).and_then(|m| StackTraceMap::try_from(m).ok());
        let losses = ebpf.take_map(LOSSES_MAP).and_then(|m| PerCpuArray::try_from(m).ok());

        let mut plan = Plan { caller_ip: kernel.has_task_pt_regs, ..Plan::default() };
        let mut links = Links::default();
        match opts.mode {
            AttachMode::Auto | AttachMode::Tracepoint => {
                tracepoint::attach(&mut ebpf, &tracefs, &mut plan, &mut links, kernel.has_task_pt_regs);
                plan.tier = Some(Tier::Tracepoint);
            }
        }
        for (hook, why) in &plan.skipped {
            warn!("skipped {hook}: {why}");
        }
        if !plan.attached.iter().any(|h| h.contains("sys_exit")) {
            let reasons: Vec<String> = plan.skipped.iter().map(|(h, w)| format!("  {h}: {w}")).collect();
            return Err(Error::NothingAttached(reasons.join("\n")));
        }
        Ok((Tracer { ebpf, plan, links, stacks, losses }, ring))
    }

    /// Sums the per-CPU loss counters.
    pub fn losses(&self) -> Losses {
        let Some(map) = &self.losses else { return Losses::default() };
        let sum =
            |loss: Loss| -> u64 { map.get(&(loss as u32), 0).map(|values| values.iter().sum()).unwrap_or(0) };
        Losses {
            ringbuf_full: sum(Loss::RingbufFull),
            stack_failed: sum(Loss::StackFailed),
            inflight_full: sum(Loss::InflightFull),
            missed_entry: sum(Loss::MissedEntry),
            read_failed: sum(Loss::ReadFailed),
            targets_full: sum(Loss::TargetsFull),
            stack_inline: sum(Loss::StackInline),
        }
    }

    /// The frames of a user stack, innermost first.
    pub fn stack(&self, id: u32) -> Option<Vec<u64>> {
        let trace = self.stacks.as_ref()?.get(&id, 0).ok()?;
        Some(trace.frames().iter().map(|f| f.ip).collect())
    }
}

impl Drop for Tracer {
    /// Detaches every link. Removing a tracepoint probe waits for RCU grace
    /// periods (tens of ms each); done one after another, 76 links take
    /// over 5 s. Concurrent waiters share grace periods, so the links are
    /// dropped from several threads at once.
    fn drop(&mut self) {
        const THREADS: usize = 128;
        let mut owned: Vec<Box<dyn Send>> = Vec::new();
        for (program, id) in std::mem::take(&mut self.links.tracepoints) {
            let prog: Option<&mut TracePoint> =
                self.ebpf.program_mut(program).and_then(|p| p.try_into().ok());
            if let Some(link) = prog.and_then(|p| p.take_link(id).ok()) {
                owned.push(Box::new(link));
            }
        }
        for (program, id) in std::mem::take(&mut self.links.raw_tracepoints) {
            let prog: Option<&mut RawTracePoint> =
                self.ebpf.program_mut(program).and_then(|p| p.try_into().ok());
            if let Some(link) = prog.and_then(|p| p.take_link(id).ok()) {
                owned.push(Box::new(link));
            }
        }
        let per_thread = owned.len().div_ceil(THREADS).max(1);
        std::thread::scope(|s| {
            while !owned.is_empty() {
                let batch: Vec<Box<dyn Send>> = owned.drain(..per_thread.min(owned.len())).collect();
                s.spawn(move || drop(batch));
            }
        });
    }
}
