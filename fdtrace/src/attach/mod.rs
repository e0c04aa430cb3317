//! Getting the kernel programs in: check what this kernel offers, choose a
//! tier per hook family, load, attach. Open → configure → load → attach;
//! every program is loaded and attached on its own, so one the kernel
//! refuses is skipped (with a warning) or replaced by a fallback.
//!
//! Tiers (`--attach`): fentry (BPF trampolines) and kprobe hook kernel
//! functions in families ([`function`]): fd install, fd close, TCP connect
//! and close. The tracepoint tier hooks syscall tracepoints; it works
//! wherever tracepoints do and covers whatever the function tiers do not.
//! dup2/dup3, fcntl/ioctl close-on-exec changes, connect/bind/listen and
//! the process lifecycle (fork, exec, exit) are tracepoints in every tier.
//! `auto` tries fentry, then kprobe, then the tracepoints, per family.
mod arch;
pub mod btf;
pub mod function;
mod go;
mod logs;
mod losses;
mod node;
mod preflight;
mod python;
pub mod tracefs;
mod tracepoint;

use std::fmt;

use aya::{
    maps::{MapData, PerCpuArray, RingBuf, StackTraceMap},
    programs::{
        fentry::FEntryLinkId, kprobe::KProbeLinkId, raw_trace_point::RawTracePointLinkId,
        trace_point::TracePointLinkId, uprobe::UProbeLinkId, FEntry, KProbe, RawTracePoint, TracePoint,
        UProbe,
    },
    Ebpf, EbpfLoader,
};
use fdtrace_common::{
    config_flags, runtime_flags, target, Loss, Syscall, CONFIG_GLOBAL, EVENTS_MAP, LOSSES_MAP, OPEN_FDS_MAP,
    PAIRS_MAP, PY_STACKS_MAP, RUNTIME_MAP, STACKS_MAP, TARGETS_MAP,
};

use crate::events::{KernelFds, KernelStacks};
use log::warn;

use self::{
    go::attach_go,
    logs::{ebpf_log_level, EbpfLogs, EBPF_LOGS_MAP},
};
pub use self::{
    go::GoError,
    losses::Losses,
    node::is_node,
    preflight::{resolve_target, Target},
};

/// The eBPF object, built by `build.rs` from `fdtrace-ebpf`.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/fdtrace-ebpf.o"));
/// Set by `build.rs` when it embedded an empty stub instead: what was missing.
const EBPF_MISSING: Option<&str> = option_env!("FDTRACE_EBPF_MISSING");

/// Pairing mode's maps (kept fds, pair counts, targets' flags), opened
/// again for the events' reader.
fn kernel_fds(ebpf: &Ebpf) -> Result<KernelFds, Error> {
    let fd = |name: &'static str| -> Result<std::os::fd::OwnedFd, Error> {
        let map = ebpf.map(name).ok_or_else(|| Error::BadObject(name.into()))?;
        let aya::maps::Map::HashMap(data) = map else {
            return Err(Error::BadObject(format!("{name} (not a hash map)")));
        };
        use std::os::fd::AsFd as _;
        data.fd().as_fd().try_clone_to_owned().map_err(|e| Error::BadObject(format!("{name}: {e}")))
    };
    Ok(KernelFds::new(fd(OPEN_FDS_MAP)?, fd(PAIRS_MAP)?, fd(TARGETS_MAP)?))
}

/// The object with its settings, ready to load.
fn loader<'a>(
    btf: Option<&'a aya::Btf>,
    config: &'a fdtrace_common::Config,
    level: &'a u8,
) -> EbpfLoader<'a> {
    let mut loader = EbpfLoader::new();
    loader.btf(btf).override_global(CONFIG_GLOBAL, config, true).override_global(aya_log::LEVEL, level, true);
    // Logging off: the smallest ring (a page) for the records nobody sends.
    if *level == 0 {
        loader.map_max_entries(EBPF_LOGS_MAP, 4096);
    }
    loader
}

/// How fdtrace hooks the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AttachMode {
    /// The best tier this kernel supports, per hook family.
    Auto,
    /// fentry on kernel functions (BPF trampolines); fails if unavailable.
    Fentry,
    /// kprobes on kernel functions; fails if unavailable.
    Kprobe,
    /// Syscall and sched tracepoints only.
    Tracepoint,
}

impl AttachMode {
    /// The function tiers to try, in order.
    fn function_tiers(self) -> &'static [Tier] {
        match self {
            AttachMode::Auto => &[Tier::Fentry, Tier::Kprobe],
            AttachMode::Fentry => &[Tier::Fentry],
            AttachMode::Kprobe => &[Tier::Kprobe],
            AttachMode::Tracepoint => &[],
        }
    }
}

/// A tier a hook ended up on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tier {
    Fentry,
    Kprobe,
    Tracepoint,
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Tier::Fentry => "fentry",
            Tier::Kprobe => "kprobe",
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
    /// Go programs among the targets (pid, executable, what it is), whose
    /// goroutines are followed back to where they were started.
    pub go_programs: Vec<(u32, std::path::PathBuf, crate::golang::GoBinary)>,
    /// CPython programs among the targets, and where their interpreters
    /// keep their frames: each fd's Python stack is read.
    pub python_programs: Vec<(u32, fdtrace_common::PyInfo)>,
    /// A CPython program is expected later (a launched `python3`), whose
    /// interpreter is registered once it runs ([`Tracer::add_python`]).
    pub python_later: bool,
    /// Node programs among the targets (pid, executable): their sockets
    /// are joined to the JavaScript that asked for them.
    pub node_programs: Vec<(u32, std::path::PathBuf)>,
    /// `--comm`: also trace processes that exec or fork with this name.
    pub comm: Option<String>,
    /// Pair in the kernel what it can (no sink wants every event): see
    /// `fdtrace-ebpf`'s `keep`.
    pub pairing: bool,
    /// Records carry the thread's name (`--events` shows it).
    pub thread_names: bool,
}

/// Why fdtrace cannot trace. Each message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `build.rs` lacked the eBPF toolchain and embedded a stub.
    #[error(
        "this fdtrace was built without its eBPF programs ({0}): run `cargo xtask build-ebpf`, then rebuild"
    )]
    NotBuilt(&'static str),
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
    /// `--attach fentry|kprobe` and that tier does not work here.
    #[error("--attach {tier}: the {family} hooks cannot use {tier} on this kernel:\n{why}\nuse --attach auto (or run `fdtrace check`)")]
    TierUnavailable { tier: Tier, family: &'static str, why: String },
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
    /// Each function family and what it ended up on.
    pub families: Vec<(function::Family, function::Outcome)>,
    /// Hooks attached, e.g. "syscalls:sys_enter_socket".
    pub attached: Vec<String>,
    /// Hooks skipped, with why.
    pub skipped: Vec<(String, String)>,
    /// The kernel side can read the caller of a frameless libc wrapper.
    pub caller_ip: bool,
    /// Per Go program: whether its goroutine origins are followed.
    pub go: Vec<(u32, Result<(), GoError>)>,
    /// CPython programs whose Python stacks cannot be read, and why.
    pub python: Vec<(u32, String)>,
    /// Node programs whose sockets cannot be joined to the JavaScript
    /// that asked for them, and why.
    pub node: Vec<(u32, String)>,
}

/// What `fdtrace check` found.
#[derive(Debug)]
pub struct Check {
    pub kernel: String,
    pub privileged: Result<(), String>,
    /// BTF and ring buffer present.
    pub kernel_support: Result<(), String>,
    pub task_pt_regs: bool,
    pub tracefs: Result<String, String>,
    /// Syscalls whose tracepoints exist (of those fdtrace uses).
    pub syscall_tracepoints: usize,
    pub families: Vec<CheckRow>,
    /// uprobes (following goroutines in Go programs).
    pub uprobes: Result<(), String>,
}

/// Each function tier for one family: the function it hooked, or why not.
#[derive(Debug)]
pub struct CheckRow {
    pub family: function::Family,
    pub tiers: Vec<(Tier, Result<String, String>)>,
}

/// The tracepoints of the syscalls that receive fds (`Role::Receives`),
/// which `fd_install` makes unnecessary.
fn receive_hooks() -> Vec<String> {
    Syscall::ALL
        .into_iter()
        .filter(|sc| sc.role() == fdtrace_common::syscall::Role::Receives)
        .flat_map(|sc| ["enter", "exit"].map(|phase| format!("sys_{phase}_{}", sc.name())))
        .collect()
}

/// Data waiting in the ring buffer that makes the kernel side wake
/// fdtrace (a quarter of the ring when that is less).
pub const WAKEUP_BYTES: u32 = 256 << 10;

impl Plan {
    /// "fentry", "tracepoint", or per family when they differ, e.g.
    /// "kprobe (fd install, fd close) + tracepoint".
    pub fn tier_summary(&self) -> String {
        let mut by_tier: std::collections::BTreeMap<Tier, Vec<&str>> = Default::default();
        for (family, outcome) in &self.families {
            let tier = outcome.hooked.map_or(Tier::Tracepoint, |(t, _)| t);
            by_tier.entry(tier).or_default().push(family.name);
        }
        match by_tier.len() {
            0 => "tracepoint".into(),
            1 => by_tier.keys().next().expect("one").to_string(),
            _ => by_tier
                .iter()
                .map(|(t, fams)| {
                    if *t == Tier::Tracepoint {
                        t.to_string()
                    } else {
                        format!("{t} ({})", fams.join(", "))
                    }
                })
                .collect::<Vec<_>>()
                .join(" + "),
        }
    }

    /// Hook family → the tier it runs on ("tracepoint" where no function
    /// tier took it).
    pub fn hooks(&self) -> std::collections::BTreeMap<String, String> {
        self.families
            .iter()
            .map(|(f, o)| {
                (f.name.to_string(), o.hooked.map_or("tracepoint".to_string(), |(t, _)| t.to_string()))
            })
            .collect()
    }

    /// The function hooked for a family, if any.
    pub fn hooked(&self, name: &str) -> Option<(Tier, function::Candidate)> {
        self.families.iter().find(|(f, _)| f.name == name).and_then(|(_, o)| o.hooked)
    }
}

/// What was attached, so it can be detached in parallel.
#[derive(Default)]
pub struct Links {
    pub tracepoints: Vec<(String, TracePointLinkId)>,
    pub raw_tracepoints: Vec<(String, RawTracePointLinkId)>,
    pub fentry: Vec<(String, FEntryLinkId)>,
    pub kprobes: Vec<(String, KProbeLinkId)>,
    pub uprobes: Vec<(String, UProbeLinkId)>,
}

/// The loaded and attached programs. Dropping it detaches everything.
pub struct Tracer {
    ebpf: Ebpf,
    pub plan: Plan,
    links: Links,
    stacks: Option<KernelStacks>,
    losses: Option<PerCpuArray<MapData, u64>>,
    /// Pairing mode: the kernel's kept fds, for the events' reader.
    kernel_fds: Option<KernelFds>,
    pairing: bool,
    /// The kernel side's log records, with debug logging on; held for its
    /// `Drop`, after the links are gone.
    _logs: Option<EbpfLogs>,
}

impl Tracer {
    /// Loads and attaches the programs for `targets`. Returns the ring
    /// buffer to read events from; it exists before any hook is attached,
    /// so nothing is emitted unread.
    pub fn start(opts: &Options, targets: &[u32]) -> Result<(Tracer, RingBuf<MapData>), Error> {
        if let Some(missing) = EBPF_MISSING {
            return Err(Error::NotBuilt(missing));
        }
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
        if opts.pairing {
            config.flags |= config_flags::PAIRING;
        }
        if opts.stacks && !opts.node_programs.is_empty() {
            config.flags |= config_flags::NODE;
        }
        let python = !opts.python_programs.is_empty() || opts.python_later;
        if opts.stacks && python && config.task_fsbase_off != 0 {
            config.flags |= config_flags::PYTHON;
        }
        if opts.thread_names {
            config.flags |= config_flags::COMM;
        }
        if let Some(comm) = &opts.comm {
            config.flags |= config_flags::MATCH_COMM;
            let n = comm.len().min(15);
            config.comm[..n].copy_from_slice(&comm.as_bytes()[..n]);
        }
        // The kernel side wakes fdtrace only when this much waits (the
        // session also drains every DRAIN_EVERY): an interrupt per record
        // would cost more than the tracing itself.
        config.wakeup_bytes = (opts.ringbuf_size / 4).min(WAKEUP_BYTES);

        // One parse of the kernel's BTF serves the loader and fentry.
        let aya_btf = aya::Btf::from_sys_fs().ok();
        let level = ebpf_log_level();
        let mut ebpf = loader(aya_btf.as_ref(), &config, &level)
            .map_max_entries(EVENTS_MAP, opts.ringbuf_size)
            .map_max_entries(STACKS_MAP, opts.stack_entries)
            .load(EBPF_OBJECT)
            .map_err(Error::Object)?;
        // Before any program is loaded: the programs refer to the log ring,
        // which the logger takes out of `ebpf` and keeps open.
        let logs = if level > 0 { EbpfLogs::start(&mut ebpf) } else { None };

        let ring = ebpf.take_map(EVENTS_MAP).ok_or_else(|| Error::BadObject(EVENTS_MAP.into()))?;
        let ring = RingBuf::try_from(ring).map_err(|source| Error::Map { map: EVENTS_MAP, source })?;
        let stacks = Some(KernelStacks {
            native: ebpf.take_map(STACKS_MAP).and_then(|m| StackTraceMap::try_from(m).ok()),
            python: ebpf.take_map(PY_STACKS_MAP).and_then(|m| aya::maps::HashMap::try_from(m).ok()),
        });
        let losses = ebpf.take_map(LOSSES_MAP).and_then(|m| PerCpuArray::try_from(m).ok());
        let kernel_fds = if opts.pairing { Some(kernel_fds(&ebpf)?) } else { None };

        let regs_at_exit = kernel.has_task_pt_regs;
        let mut plan = Plan { caller_ip: regs_at_exit || config.task_stack_off != 0, ..Plan::default() };
        let mut links = Links::default();

        if config.flags & config_flags::PYTHON != 0 {
            for (tgid, info) in &opts.python_programs {
                if let Err(why) = python::register(&mut ebpf, *tgid, info) {
                    plan.python.push((*tgid, why));
                }
            }
        } else if opts.stacks && python {
            for (tgid, _) in &opts.python_programs {
                plan.python.push((*tgid, "this kernel's BTF has no task_struct.thread.fsbase".into()));
            }
        }
        if config.flags & config_flags::NODE != 0 {
            for (tgid, exe) in &opts.node_programs {
                if let Err(why) = node::attach_node(&mut ebpf, &mut links, *tgid, exe) {
                    plan.node.push((*tgid, why));
                }
            }
        }
        // Go uprobes before the fd hooks: every fd seen opened in a
        // goroutine started from then on finds its origin.
        for (tgid, exe, go) in &opts.go_programs {
            plan.go.push((*tgid, attach_go(&mut ebpf, &mut links, *tgid, exe, go)));
        }

        // Function families first: what they cover decides which
        // tracepoints are still needed.
        let tiers = opts.mode.function_tiers();
        let mut prober = function::Prober::new(&tracefs.root);
        for family in function::FAMILIES {
            let outcome =
                function::attach(&mut ebpf, aya_btf.as_ref(), &mut prober, &family, tiers, &mut links);
            if outcome.hooked.is_none() && matches!(opts.mode, AttachMode::Fentry | AttachMode::Kprobe) {
                let why = if outcome.failures.is_empty() {
                    "none of its kernel functions exists here".to_string()
                } else {
                    function::summarize(&outcome.failures)
                };
                return Err(Error::TierUnavailable { tier: tiers[0], family: family.name, why });
            }
            plan.families.push((family, outcome));
        }
        let mut runtime = 0;
        if plan.hooked(function::INSTALL.name).is_some() {
            runtime |= runtime_flags::INSTALL_HOOKED;
        }
        if plan.hooked(function::TCP_CONNECT.name).is_some() {
            runtime |= runtime_flags::TCP_HOOKED;
        }
        {
            let map = ebpf.map_mut(RUNTIME_MAP).ok_or_else(|| Error::BadObject(RUNTIME_MAP.into()))?;
            let mut map: aya::maps::Array<_, u32> =
                aya::maps::Array::try_from(map).map_err(|source| Error::Map { map: RUNTIME_MAP, source })?;
            map.set(0, runtime, 0).map_err(|source| Error::Map { map: RUNTIME_MAP, source })?;
        }
        let mut covered = std::collections::HashSet::new();
        let receive = receive_hooks();
        if plan.hooked(function::INSTALL.name).is_some() {
            // fd_install reports received fds: their syscalls' hooks would
            // only see them again.
            covered.extend(receive.iter().map(String::as_str));
        }
        if let Some((_, cand)) = plan.hooked(function::CLOSE.name) {
            covered.insert("sys_enter_close");
            if cand.covers_close_range {
                // Its exit stays: close_range(CLOSE_RANGE_CLOEXEC) only
                // marks fds, and the ledger needs the marks for exec.
                covered.insert("sys_enter_close_range");
            }
        }
        tracepoint::attach(&mut ebpf, &tracefs, &mut plan, &mut links, kernel.has_task_pt_regs, &covered);
        for (hook, why) in &plan.skipped {
            warn!("skipped {hook}: {why}");
        }
        if !plan.attached.iter().any(|h| h.contains("sys_exit")) {
            let reasons: Vec<String> = plan.skipped.iter().map(|(h, w)| format!("  {h}: {w}")).collect();
            return Err(Error::NothingAttached(reasons.join("\n")));
        }
        // The targets last, when every hook is in: tracing starts at once
        // for all of them, not hook by hook (an open seen before its
        // close's hook is attached would look like a missed close).
        {
            let map = ebpf.map_mut(TARGETS_MAP).ok_or_else(|| Error::BadObject(TARGETS_MAP.into()))?;
            let mut map: aya::maps::HashMap<_, u32, u32> = aya::maps::HashMap::try_from(map)
                .map_err(|source| Error::Map { map: TARGETS_MAP, source })?;
            for &tgid in targets {
                map.insert(tgid, initial_flags(opts.pairing), 0)
                    .map_err(|source| Error::Map { map: TARGETS_MAP, source })?;
            }
        }
        let pairing = opts.pairing;
        Ok((Tracer { ebpf, plan, links, stacks, losses, kernel_fds, pairing, _logs: logs }, ring))
    }

    /// Probes the kernel without tracing anything: what each tier can do
    /// for each hook family, and the plan `--attach auto` would pick.
    pub fn check() -> Check {
        let mut c = Check {
            kernel: preflight::kernel_release(),
            privileged: preflight::check_privileges().map_err(|e| e.to_string()),
            kernel_support: Ok(()),
            task_pt_regs: false,
            tracefs: Err("not checked".into()),
            syscall_tracepoints: 0,
            families: vec![],
            uprobes: preflight::uprobes(),
        };
        if c.privileged.is_err() {
            return c;
        }
        let kernel = match preflight::Kernel::probe() {
            Ok(k) => k,
            Err(e) => {
                c.kernel_support = Err(e.to_string());
                return c;
            }
        };
        c.task_pt_regs = kernel.has_task_pt_regs;
        let tracefs = match tracefs::Tracefs::locate_or_mount() {
            Ok(t) => t,
            Err(e) => {
                c.tracefs = Err(e.to_string());
                return c;
            }
        };
        c.tracefs = Ok(format!(
            "{}{}",
            tracefs.root.display(),
            if tracefs.mounted_now { " (was not mounted; mounted it)" } else { "" }
        ));
        c.syscall_tracepoints = Syscall::ALL
            .iter()
            .filter(|sc| !sc.phases(kernel.has_task_pt_regs).is_empty())
            .filter(|sc| {
                tracefs.exists("syscalls", &format!("sys_exit_{}", sc.name()))
                    || tracefs.exists("syscalls", &format!("sys_enter_{}", sc.name()))
            })
            .count();
        let config = match tracepoint::lifecycle_config(&tracefs, &kernel) {
            Ok(cfg) => cfg,
            Err(e) => {
                c.kernel_support = Err(e.to_string());
                return c;
            }
        };
        let aya_btf = aya::Btf::from_sys_fs().ok();
        let mut prober = function::Prober::new(&tracefs.root);
        // The programs as `start` would load them (logging on or off).
        let level = ebpf_log_level();
        let load = || {
            loader(aya_btf.as_ref(), &config, &level)
                .map_max_entries(EVENTS_MAP, 1 << 16)
                .map_max_entries(STACKS_MAP, 16)
                .load(EBPF_OBJECT)
        };
        for family in function::FAMILIES {
            let mut row = CheckRow { family, tiers: vec![] };
            for tier in [Tier::Fentry, Tier::Kprobe] {
                let result = match load() {
                    Err(e) => Err(format!("loading the object: {}", function::error_chain(&e))),
                    Ok(mut ebpf) => {
                        let mut links = Links::default();
                        let out = function::attach(
                            &mut ebpf,
                            aya_btf.as_ref(),
                            &mut prober,
                            &family,
                            &[tier],
                            &mut links,
                        );
                        let result = match out.hooked {
                            Some((_, cand)) => Ok(cand.function.to_string()),
                            None if out.failures.is_empty() => {
                                Err("no candidate function in this kernel".into())
                            }
                            None => Err(function::summarize(&out.failures)),
                        };
                        drop(Tracer {
                            ebpf,
                            plan: Plan::default(),
                            links,
                            stacks: None,
                            losses: None,
                            kernel_fds: None,
                            pairing: false,
                            _logs: None,
                        });
                        result
                    }
                };
                row.tiers.push((tier, result));
            }
            c.families.push(row);
        }
        c
    }

    /// Adds a process to the traced set after start (`--comm` matches
    /// found in `/proc`).
    pub fn add_target(&mut self, tgid: u32) -> Result<(), Error> {
        let map = self.ebpf.map_mut(TARGETS_MAP).ok_or_else(|| Error::BadObject(TARGETS_MAP.into()))?;
        let mut map: aya::maps::HashMap<_, u32, u32> =
            aya::maps::HashMap::try_from(map).map_err(|source| Error::Map { map: TARGETS_MAP, source })?;
        map.insert(tgid, initial_flags(self.pairing), 0)
            .map_err(|source| Error::Map { map: TARGETS_MAP, source })
    }

    /// Registers process `tgid`'s CPython interpreter: its opens from now
    /// on carry their Python stacks. Only in sessions that read Python
    /// stacks ([`Options::python_programs`], [`Options::python_later`]).
    pub fn add_python(&mut self, tgid: u32, info: &fdtrace_common::PyInfo) -> Result<(), String> {
        python::register(&mut self.ebpf, tgid, info)
    }

    /// Stops tracing and gives the caller back at once. No process is a
    /// target any more (every program returns at its first lookup), then a
    /// child process takes over the kernel objects and closes them: removing
    /// a syscall tracepoint's probe waits for an RCU grace period under a
    /// global mutex (`perf_trace_destroy`), tens of ms each under load, so
    /// the 45 of the tracepoint tier take 1–2 s that Ctrl-C need not wait
    /// for. The child ("fdtrace-detach") closes everything it inherited and
    /// exits; until then `bpftool link` still lists the links. Where fork
    /// fails, this process does the waiting.
    pub fn detach(mut self) {
        if let Some(map) = self.ebpf.map_mut(TARGETS_MAP) {
            if let Ok(mut map) = aya::maps::HashMap::<_, u32, u32>::try_from(map) {
                let tgids: Vec<u32> = map.keys().filter_map(Result::ok).collect();
                for tgid in tgids {
                    let _ = map.remove(&tgid);
                }
            }
        }
        // The child must hold its copies until this process has dropped
        // its own (whoever closes last does the kernel's work): it waits
        // for the end of a pipe whose write end only this process holds.
        let mut pipe = [-1i32; 2];
        // SAFETY: pipe2 fills the two-int array.
        if unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) } == 0 {
            let [read_end, write_end] = pipe;
            // SAFETY: the child only makes raw system calls (no allocation,
            // no lock another thread may have held at the fork) and exits.
            if unsafe { libc::fork() } == 0 {
                // SAFETY: in the child, on fds and memory it owns; _exit
                // runs no destructor of the parent's state.
                unsafe {
                    libc::prctl(libc::PR_SET_NAME, c"fdtrace-detach".as_ptr());
                    libc::close(write_end);
                    // Its stdout and stderr first: a pipe's reader sees the
                    // end of fdtrace's output now, not after the detach.
                    libc::syscall(libc::SYS_close_range, 0u32, 2u32, 0u32);
                    let mut byte = 0u8;
                    while libc::read(read_end, (&raw mut byte).cast(), 1) < 0 {}
                    libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
                    libc::_exit(0);
                }
            }
            // SAFETY: our own fd.
            unsafe { libc::close(read_end) };
            drop(self);
            // SAFETY: our own fd; the child may go on.
            unsafe { libc::close(write_end) };
        }
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
            scratch_busy: sum(Loss::ScratchBusy),
            recv_truncated: sum(Loss::RecvTruncated),
            kept: sum(Loss::Kept),
            paired: sum(Loss::Paired),
            not_kept: sum(Loss::NotKept),
            kept_full: sum(Loss::KeptFull),
            kept_overwritten: sum(Loss::KeptOverwritten),
        }
    }

    /// The stack map, for the events' reader (`None` once taken, or when
    /// the object has none).
    pub fn take_stacks(&mut self) -> KernelStacks {
        self.stacks.take().unwrap_or_default()
    }

    /// Pairing mode: the kernel's kept fds, for the events' reader (`None`
    /// once taken, or when the kernel does not pair).
    pub fn take_kernel_fds(&mut self) -> Option<KernelFds> {
        self.kernel_fds.take()
    }
}

/// A target's flags when fdtrace adds it. In pairing mode it starts held:
/// until its baseline is read from `/proc`, every event goes through the
/// ring (an fd the kernel kept before the scan and paired after it would
/// leave the scan's entry for it open forever); the session resumes it.
fn initial_flags(pairing: bool) -> u32 {
    if pairing {
        target::ROOT | target::HELD
    } else {
        target::ROOT
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
        // Takes the links of one program type out of aya's ownership.
        macro_rules! take {
            ($links:ident, $ty:ty) => {
                for (program, id) in std::mem::take(&mut self.links.$links) {
                    let prog: Option<&mut $ty> =
                        self.ebpf.program_mut(&program).and_then(|p| p.try_into().ok());
                    if let Some(link) = prog.and_then(|p| p.take_link(id).ok()) {
                        owned.push(Box::new(link));
                    }
                }
            };
        }
        take!(tracepoints, TracePoint);
        take!(raw_tracepoints, RawTracePoint);
        // fentry and kprobe links are few and quick to remove, and removing
        // them patches kernel text: one at a time, before the tracepoints.
        let mut sequential: Vec<Box<dyn Send>> = Vec::new();
        std::mem::swap(&mut owned, &mut sequential);
        take!(fentry, FEntry);
        take!(kprobes, KProbe);
        take!(uprobes, UProbe);
        std::mem::swap(&mut owned, &mut sequential);
        drop(sequential);
        let per_thread = owned.len().div_ceil(THREADS).max(1);
        std::thread::scope(|s| {
            while !owned.is_empty() {
                let batch: Vec<Box<dyn Send>> = owned.drain(..per_thread.min(owned.len())).collect();
                s.spawn(move || drop(batch));
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use object::{Object as _, ObjectSection as _, ObjectSymbol as _, SymbolKind};

    use super::*;

    /// Every program the loader may ask for, with the section (program
    /// type) it must be in: the syscall tracepoints on both kinds of
    /// kernels (registers readable at exit or not), every candidate of
    /// every function family on both function tiers, the lifecycle
    /// tracepoints and the Go uprobes.
    fn programs_asked_for() -> BTreeMap<String, &'static str> {
        let mut want = BTreeMap::new();
        for sc in Syscall::ALL {
            for regs_at_exit in [true, false] {
                for &phase in sc.phases(regs_at_exit) {
                    // The layout the programs read: what the loader checks
                    // tracefs against.
                    let format = expected_format(sc, phase);
                    let program = tracepoint::program_for(sc, phase, &format)
                        .unwrap_or_else(|e| panic!("{phase} of {sc:?}: {e}"));
                    want.insert(program, "tracepoint");
                }
            }
        }
        for family in function::FAMILIES {
            for cand in family.candidates {
                for (tier, section) in [(Tier::Fentry, "fentry"), (Tier::Kprobe, "kprobe")] {
                    want.insert(cand.program(tier).expect("a function tier").to_string(), section);
                }
            }
        }
        for (program, _, _) in tracepoint::LIFECYCLE {
            want.insert(program.to_string(), "tracepoint");
        }
        want.insert(fdtrace_common::programs::PROCESS_FORK.to_string(), "raw_tp");
        for (program, _) in go::GO_HOOKS.into_iter().chain(node::HOOKS) {
            want.insert(program.to_string(), "uprobe");
        }
        want
    }

    /// A tracefs format with the layout fdtrace_common::tracepoint and the
    /// syscall table describe.
    fn expected_format(sc: Syscall, phase: &str) -> tracefs::Format {
        use fdtrace_common::tracepoint::{sys_enter, sys_exit};
        let line = |f: &str, off: u32, size: u32| {
            format!("\tfield:long {f};\toffset:{off};\tsize:{size};\tsigned:0;\n")
        };
        let mut text = line(sys_enter::NR.name, sys_enter::NR.offset, sys_enter::NR.size);
        if phase == "enter" {
            for i in 0..sc.arity() {
                text += &line(&format!("arg{i}"), sys_enter::arg(i), sys_enter::ARG_SIZE);
            }
        } else {
            text += &line(sys_exit::RET.name, sys_exit::RET.offset, sys_exit::RET.size);
        }
        tracefs::Format::parse(&text)
    }

    /// The programs in the built object, by name, with their section (the
    /// part before any '/').
    fn programs_in_object() -> BTreeMap<String, String> {
        let obj = object::File::parse(EBPF_OBJECT).expect("the embedded eBPF object parses as ELF");
        obj.symbols()
            .filter(|s| s.kind() == SymbolKind::Text && s.is_global())
            .filter_map(|s| {
                let section = obj.section_by_index(s.section_index()?).ok()?;
                let section = section.name().ok()?.split('/').next()?.to_string();
                Some((s.name().ok()?.to_string(), section))
            })
            .filter(|(_, section)| {
                ["tracepoint", "raw_tp", "fentry", "kprobe", "uprobe"].contains(&section.as_str())
            })
            .collect()
    }

    /// Needs no root: a syscall in the table without its program, or a
    /// program renamed on one side only, fails here rather than as a
    /// "skipped" warning at run time.
    #[test]
    fn object_has_every_program_the_loader_asks_for() {
        let have = programs_in_object();
        let want = programs_asked_for();
        for (program, section) in &want {
            match have.get(program) {
                Some(got) => {
                    assert_eq!(got, section, "{program} is a {got} program, the loader loads it as {section}")
                }
                None => panic!(
                    "the eBPF object has no program {program} (a {section} program the loader asks for)"
                ),
            }
        }
        // And nothing in the object is never asked for.
        let unused: BTreeSet<_> = have.keys().filter(|p| !want.contains_key(*p)).collect();
        assert!(unused.is_empty(), "programs in the object the loader never loads: {unused:?}");
    }

    #[test]
    fn received_fds_hooks_are_those_of_the_receiving_syscalls() {
        assert_eq!(
            receive_hooks(),
            ["sys_enter_recvmsg", "sys_exit_recvmsg", "sys_enter_recvmmsg", "sys_exit_recvmmsg"]
        );
    }

    #[test]
    fn the_kernel_sides_log_level_is_zero_unless_debug_logging_is_on() {
        // The test binary installs no logger: the level filter is Off.
        assert_eq!(ebpf_log_level(), 0);
    }

    /// The user-memory layouts the kernel side reads (LP64), against libc.
    #[test]
    fn received_fds_layouts_match_libc() {
        use fdtrace_common::syscall::consts::*;
        assert_eq!(std::mem::offset_of!(libc::msghdr, msg_control) as u64, MSGHDR_CONTROL_OFF);
        assert_eq!(std::mem::offset_of!(libc::msghdr, msg_controllen) as u64, MSGHDR_CONTROLLEN_OFF);
        assert_eq!(size_of::<libc::mmsghdr>() as u64, MMSGHDR_SIZE);
        assert_eq!(size_of::<libc::cmsghdr>() as u64, CMSGHDR_SIZE);
        // SAFETY: CMSG_LEN is arithmetic.
        assert_eq!(u64::from(unsafe { libc::CMSG_LEN(0) }), CMSGHDR_SIZE);
        assert_eq!(
            (MSG_CMSG_CLOEXEC, SOL_SOCKET, SCM_RIGHTS),
            (libc::MSG_CMSG_CLOEXEC as u64, libc::SOL_SOCKET, libc::SCM_RIGHTS)
        );
    }
}
