//! One tracing session: attach, read events until told to stop, feed the
//! ledger and the outputs, detach.
//!
//! kernel → ring buffer → [`EventReader`] (decoded events) → [`Ledger`]
//! (+ stacks resolved as they first appear) → event lines / reports.
use std::{
    collections::HashMap,
    fs::File,
    io::{self, BufWriter, IsTerminal, Write},
    os::fd::{FromRawFd, OwnedFd},
    time::Duration,
};

use anyhow::{bail, Context as _};
use log::warn;
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{signal, SignalKind},
    sync::mpsc,
};

use crate::{
    attach::{self, resolve_target, Target, Tracer},
    cli::TraceArgs,
    clock::{monotonic_ns, Clock},
    events::{reader::EventReader, Body, Comm, Event, FdKind, StackId},
    filter::{Facts, Filter},
    golang,
    launch::{self, Launched},
    ledger::{Effect, Ledger},
    live::{self, StatusLine},
    pictures::Pictures,
    procfs,
    report::{self, SockState},
    sockdiag,
    stream::{Format, Printer},
    symbolize::Stacks,
};

/// How long after a `/proc` scan reconciliation waits for the events of
/// syscalls that were in flight during the scan.
const RECONCILE_SETTLE: Duration = Duration::from_millis(50);
/// How often records the kernel side did not wake us for are collected:
/// the latency of a lone event.
const DRAIN_EVERY: Duration = Duration::from_millis(10);

/// Why a session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    Duration,
    Interrupted,
    Terminated,
    /// Every target exited.
    TargetsExited,
}

/// How a session ended, and in launch mode the command's exit code (what
/// fdtrace exits with).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub stop: Stop,
    pub exit_code: Option<u8>,
}

/// Resolves the pids the user gave into processes, saying when a thread id
/// stands for its process.
pub fn resolve_targets(pids: &[u32]) -> anyhow::Result<Vec<Target>> {
    if pids.is_empty() {
        bail!("no process given: name one with -p PID, --comm NAME, or start one with `fdtrace -- CMD ARGS` (see fdtrace --help)");
    }
    let mut targets: Vec<Target> = Vec::new();
    for &pid in pids {
        let t = resolve_target(pid)?;
        if let Some(tid) = t.given_thread {
            eprintln!(
                "fdtrace: {tid} is a thread of process {} ({}); tracing the whole process",
                t.tgid, t.comm
            );
        }
        if !targets.iter().any(|x| x.tgid == t.tgid) {
            targets.push(t);
        }
    }
    Ok(targets)
}

/// The processes the session starts with: the launched command, the pids
/// given, the processes already running with the `--comm` name.
fn initial_targets(args: &TraceArgs, launched: Option<&Launched>) -> anyhow::Result<Vec<Target>> {
    if let Some(l) = launched {
        return Ok(vec![Target { tgid: l.pid, comm: l.comm.clone(), given_thread: None }]);
    }
    if args.comm.is_some() && args.pids.is_empty() {
        return Ok(vec![]);
    }
    resolve_targets(&args.pids)
}

pub async fn run(args: &TraceArgs, mut launched: Option<Launched>) -> anyhow::Result<Outcome> {
    let pictures = Pictures { flamegraph: args.flamegraph.clone(), folded: args.folded.clone() };
    pictures.check()?;
    let mut targets = initial_targets(args, launched.as_ref())?;
    let go_programs = match &launched {
        // Before exec /proc/PID/exe is fdtrace: inspect the command's file.
        Some(l) => golang::inspect(&l.path).map(|g| (l.pid, l.path.clone(), g)).into_iter().collect(),
        None => targets
            .iter()
            .filter_map(|t| {
                let exe = std::path::PathBuf::from(format!("/proc/{}/exe", t.tgid));
                Some((t.tgid, exe.clone(), golang::inspect(&exe)?))
            })
            .collect(),
    };
    let opts = attach::Options {
        mode: args.attach,
        follow_forks: args.follow_forks,
        stacks: !args.no_stacks,
        ringbuf_size: args.ringbuf_size,
        stack_entries: fdtrace_common::DEFAULT_STACK_ENTRIES,
        go_programs,
        comm: args.comm.clone(),
    };
    // Handle signals from here on: a Ctrl-C during start-up still detaches.
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    // A report on demand; without a handler SIGUSR1 would end fdtrace.
    let mut sigusr1 = signal(SignalKind::user_defined1())?;
    let started = std::time::Instant::now();
    let tgids: Vec<u32> = targets.iter().map(|t| t.tgid).collect();
    let (mut tracer, ring) = Tracer::start(&opts, &tgids)?;
    // Loading parsed the kernel's BTF and the eBPF object (tens of MiB, now
    // freed): give the pages back rather than keep them for the session.
    // SAFETY: no preconditions.
    unsafe { libc::malloc_trim(0) };
    // --comm: what runs now. Processes that exec after the hooks went in
    // are added by the kernel; scanning after attaching misses none.
    if let Some(comm) = &args.comm {
        for pid in procfs::pids_with_comm(comm) {
            let Ok(t) = resolve_target(pid) else { continue };
            if targets.iter().any(|x| x.tgid == t.tgid) {
                continue;
            }
            tracer.add_target(t.tgid)?;
            targets.push(t);
        }
    }
    let (notes, origin_notes) = goroutine_notes(&tracer, &opts.go_programs, args.follow_forks);
    let mut reader = EventReader::new(ring).context("watching the ring buffer")?;

    // The baseline: what is open now. Events stamped before the scan refine
    // it (see the ledger). A target that exits during start-up is reported
    // as exited, with whatever events it produced.
    let mut ledger = Ledger::new();
    let (exit_tx, mut exit_rx) = mpsc::unbounded_channel();
    let started_ns = monotonic_ns();
    for t in &targets {
        let scan_ns = monotonic_ns();
        let fds = procfs::list_fds(t.tgid).unwrap_or_default();
        ledger.add_process(t.tgid, Comm::from_str_lossy(&t.comm), scan_ns, fds);
        watch_exit(t.tgid, exit_tx.clone())?;
    }
    let mut alive = targets.len();

    log::debug!(
        "callers of libc syscall wrappers: {}",
        if tracer.plan.caller_ip {
            "recovered from the user stack pointer"
        } else {
            "not recoverable (no bpf_task_pt_regs)"
        }
    );
    let mut names: Vec<String> = targets.iter().map(|t| format!("{} ({})", t.tgid, t.comm)).collect();
    if let Some(comm) = &args.comm {
        names.push(format!("every process named {comm} from now on"));
    }
    eprintln!(
        "fdtrace: tracing {} via {} hooks ({} tier) in {} ms; {}",
        names.join(", "),
        tracer.plan.attached.len(),
        tracer.plan.tier_summary(),
        started.elapsed().as_millis(),
        if launched.is_some() { "report when it exits" } else { "Ctrl-C to stop" }
    );
    // Everything is in place: let the command exec.
    if let Some(l) = &mut launched {
        l.release()?;
    }

    let deadline = tokio::time::sleep(args.duration.unwrap_or(Duration::from_secs(u64::MAX / 4)));
    tokio::pin!(deadline);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + args.interval, args.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    // The kernel side wakes us only when records pile up (see
    // `attach::WAKEUP_BYTES`): the rest is collected on this tick.
    let mut drain = tokio::time::interval(DRAIN_EVERY);
    drain.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    let mut status_ticks = tokio::time::interval(Duration::from_secs(1));
    status_ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Where reports go is a terminal: status line and colours.
    let terminal = match &args.output {
        Some(_) => false,
        None if launched.is_some() => io::stderr().is_terminal(),
        None => io::stdout().is_terminal(),
    };
    let no_color = std::env::var("NO_COLOR").ok();

    let clock = Clock::new();
    let out: BufWriter<Box<dyn Write>> = BufWriter::new(match &args.output {
        Some(path) => Box::new(File::create(path).with_context(|| format!("creating {}", path.display()))?),
        // The command's output is the terminal's: reports stay out of it.
        None if launched.is_some() => Box::new(io::stderr()),
        None => Box::new(io::stdout()),
    });
    let output = if args.events {
        Output::Events(Printer::new(out, args.format, clock))
    } else {
        Output::Reports { out, format: args.format }
    };
    let (root_pid, root_comm) = match targets.first() {
        Some(t) => (t.tgid, t.comm.clone()),
        None => (0, args.comm.clone().unwrap_or_default()),
    };
    let mut s = Session {
        tracer: &tracer,
        ledger,
        stacks: Stacks::new(),
        output,
        effects: Vec::new(),
        pending_inline: HashMap::new(),
        output_closed: false,
        missed_open: 0,
        missed_close: 0,
        targets: targets.iter().map(|t| t.tgid).collect(),
        watch_comm: args.comm.is_some(),
        event_filter: args.event_filter(),
        pictures,
        pictures_failed: None,
        status: StatusLine::new(terminal),
        paint: report::text::Paint {
            enabled: live::use_color(args.color, args.no_color, no_color.as_deref(), terminal),
        },
        header: report::Header {
            pid: root_pid,
            comm: root_comm,
            started_ns,
            tier: tracer.plan.tier_summary(),
            hooks: tracer
                .plan
                .families
                .iter()
                .map(|(f, o)| {
                    (f.name.to_string(), o.hooked.map_or("tracepoint".to_string(), |(t, _)| t.to_string()))
                })
                .collect(),
            notes,
            origin_notes,
            ..report::Header::default()
        },
        report_opts: report::Options {
            min_age_ns: args.min_age.as_nanos() as u64,
            filter: args.report_filter(),
            top: args.top,
            fds_per_group: args.fds_per_group,
        },
    };

    let stop = loop {
        tokio::select! {
            r = reader.read(|ev| s.event(ev)) => {
                r.context("reading the ring buffer")?;
                s.flush();
                if s.output_closed { break Stop::Interrupted; }
            }
            _ = drain.tick() => {
                if reader.drain(|ev| s.event(ev)) > 0 {
                    s.flush();
                }
                if s.output_closed { break Stop::Interrupted; }
            }
            _ = ticks.tick(), if !args.events => {
                s.report(&mut reader, false).await;
                if s.output_closed { break Stop::Interrupted; }
            }
            _ = sigusr1.recv() => {
                if args.events {
                    s.status.clear();
                    eprintln!("fdtrace: SIGUSR1: reports are off while --events streams events");
                } else {
                    s.report(&mut reader, false).await;
                    if s.output_closed { break Stop::Interrupted; }
                }
            }
            _ = status_ticks.tick(), if s.status.enabled() => s.draw_status(reader.records),
            _ = sigint.recv() => match &launched {
                // The command decides what an interrupt means; its exit
                // ends the session.
                Some(l) => forward(l, libc::SIGINT),
                None => break Stop::Interrupted,
            },
            _ = sigterm.recv() => match &launched {
                Some(l) => forward(l, libc::SIGTERM),
                None => break Stop::Terminated,
            },
            _ = &mut deadline => break Stop::Duration,
            Some(tgid) = exit_rx.recv() => {
                s.status.clear();
                if launched.is_none() {
                    eprintln!("fdtrace: process {tgid} exited");
                }
                alive -= 1;
                // --comm goes on until stopped: more may start.
                if alive == 0 && !s.watch_comm {
                    break Stop::TargetsExited;
                }
            }
        }
    };
    // What the kernel sent before we stopped still counts.
    reader.drain(|ev| s.event(ev));
    if !args.events || s.pictures.wanted() {
        s.report(&mut reader, true).await;
    }
    s.flush();

    let losses = tracer.losses();
    log::debug!(
        "peak RSS {} MiB; {} stacks symbolized",
        procfs::status("self").map(|st| st.vm_hwm_kb / 1024).unwrap_or(0),
        s.stacks.len()
    );
    let pictures_failed = s.pictures_failed.take();
    drop(s);
    let detach = std::time::Instant::now();
    drop(tracer);
    log::debug!("detached in {} ms", detach.elapsed().as_millis());
    let exit_code = match &mut launched {
        Some(l) => Some(wait_for_command(l, &mut exit_rx, &mut sigint, &mut sigterm).await),
        None => None,
    };
    eprintln!(
        "fdtrace: {} events, {} lost{}{}",
        reader.records,
        losses.lost_events(),
        if losses.lost_events() > 0 { " (ring buffer full: raise --ringbuf-size)" } else { "" },
        if reader.decode_errors > 0 {
            format!(", {} undecodable", reader.decode_errors)
        } else {
            String::new()
        },
    );
    match pictures_failed {
        Some(e) => Err(e),
        None => Ok(Outcome { stop, exit_code }),
    }
}

/// Passes a signal fdtrace got on to the launched command, unless it was
/// the terminal's Ctrl-C, which the command (in the same foreground
/// process group) got already.
fn forward(l: &Launched, sig: i32) {
    if sig == libc::SIGINT && launch::interrupt_reached_command() {
        return;
    }
    l.signal(sig);
}

/// Waits for the launched command to exit (it may outlive the trace with
/// `-d`), passing signals on; returns its exit code as a shell gives it.
async fn wait_for_command(
    l: &mut Launched,
    exit_rx: &mut mpsc::UnboundedReceiver<u32>,
    sigint: &mut tokio::signal::unix::Signal,
    sigterm: &mut tokio::signal::unix::Signal,
) -> u8 {
    if !procfs::is_zombie_or_gone(l.pid) {
        eprintln!("fdtrace: stopped tracing; waiting for {} (pid {}) to exit", l.name, l.pid);
        loop {
            tokio::select! {
                _ = exit_rx.recv() => break,
                _ = sigint.recv() => forward(l, libc::SIGINT),
                _ = sigterm.recv() => forward(l, libc::SIGTERM),
            }
        }
    }
    let code = l.wait_exit();
    eprintln!("fdtrace: {} (pid {}) exited with code {code}", l.name, l.pid);
    code
}

/// Where results go: event lines, or reports.
enum Output<W: Write> {
    Events(Printer<W>),
    Reports { out: W, format: Format },
}

/// The state of a running session: decoded events → ledger → outputs.
struct Session<'t, W: Write> {
    tracer: &'t Tracer,
    ledger: Ledger,
    stacks: Stacks,
    output: Output<W>,
    effects: Vec<Effect>,
    /// Inline stacks waiting for their event, by tid.
    pending_inline: HashMap<u32, Vec<u64>>,
    /// stdout went away (`fdtrace ... | head`): time to stop.
    output_closed: bool,
    missed_open: u64,
    missed_close: u64,
    header: report::Header,
    report_opts: report::Options,
    /// The processes the user named (or launched, or that matched --comm).
    targets: Vec<u32>,
    /// `--comm`: processes the kernel adds at exec join the session.
    watch_comm: bool,
    /// What `--events` shows.
    event_filter: Filter,
    /// Written at the final report.
    pictures: Pictures,
    pictures_failed: Option<anyhow::Error>,
    /// The one-line status on a terminal.
    status: StatusLine,
    /// Colours in text reports.
    paint: report::text::Paint,
}

impl<W: Write> Session<'_, W> {
    fn event(&mut self, mut ev: Event) {
        // Events from softirq context (TCP state changes) carry the
        // socket's owner but no thread: name it after the process.
        if ev.comm.0[0] == 0 {
            if let Some(p) = self.ledger.process(ev.tgid) {
                ev.comm = p.comm;
            }
        }
        // An inline stack belongs to the same thread's next event.
        match &mut ev.body {
            Body::UserStack(frames) => {
                self.pending_inline.insert(ev.tid, std::mem::take(frames));
                return;
            }
            Body::Open(open) if open.stack.id == StackId::InlinePending => {
                if let Some(frames) = self.pending_inline.remove(&ev.tid) {
                    open.stack.id = StackId::Inline(self.stacks.intern_inline(frames));
                }
            }
            _ => {}
        }
        self.effects.clear();
        if matches!(ev.body, Body::Exec { .. }) && self.watch_comm && self.ledger.process(ev.tgid).is_none() {
            // Added by the kernel at this exec (--comm): its fds now are
            // what it kept across exec and what it opened since (events
            // stamped before the scan refine those).
            let scan_ns = monotonic_ns();
            let fds = procfs::list_fds(ev.tgid).unwrap_or_default();
            self.ledger.add_process(ev.tgid, ev.comm, scan_ns, fds);
            self.targets.push(ev.tgid);
        } else {
            self.ledger.apply(&ev, &mut self.effects);
        }
        // Resolve new stacks now, while the process (and its maps) exist.
        for e in &self.effects {
            if let Effect::Opened { tgid, entry } = e {
                for stack in [entry.stack, entry.desc.go_spawn].into_iter().flatten() {
                    if !self.stacks.known(*tgid, stack) {
                        let tracer = self.tracer;
                        self.stacks.resolve(*tgid, stack, |id| tracer.stack(id));
                    }
                }
            }
        }
        if let Body::Exit { .. } = ev.body {
            self.header.comm =
                self.ledger.exited().last().map_or(self.header.comm.clone(), |e| e.comm.to_string());
        }
        if let Output::Events(p) = &mut self.output {
            let (filter, ledger, effects) = (&self.event_filter, &self.ledger, &self.effects);
            let keep = |line: &crate::stream::Line| shown(filter, ledger, effects, line);
            self.status.clear();
            if let Err(e) = p.event(&ev, effects, keep) {
                self.write_failed(e);
            }
        }
    }

    /// Reconciles live processes with /proc, then builds and prints a
    /// report.
    async fn report(&mut self, reader: &mut EventReader, is_final: bool) {
        self.status.clear();
        let live: Vec<u32> = self.ledger.processes().map(|p| p.tgid).collect();
        let scans: Vec<(u32, u64, Vec<i32>)> = live
            .iter()
            .filter_map(|&tgid| {
                let scan_ns = monotonic_ns();
                procfs::fd_numbers(tgid).ok().map(|fds| (tgid, scan_ns, fds))
            })
            .collect();
        let reconciled = !scans.is_empty() && scans.len() == live.len();
        if !scans.is_empty() {
            tokio::time::sleep(RECONCILE_SETTLE).await;
            reader.drain(|ev| self.event(ev));
            let settle = RECONCILE_SETTLE.as_nanos() as u64;
            for (tgid, scan_ns, fds) in scans {
                let mut fx = vec![];
                let (open, close) = self.ledger.reconcile(
                    tgid,
                    scan_ns,
                    &fds,
                    scan_ns.saturating_sub(settle),
                    |fd| procfs::describe_fd(tgid, fd),
                    &mut fx,
                );
                if open + close > 0 {
                    warn!("pid {tgid}: /proc disagrees with the events: {open} missed opens, {close} missed closes (corrected)");
                }
                self.missed_open += open;
                self.missed_close += close;
            }
        }
        let losses = self.tracer.losses();
        self.header.now_ns = monotonic_ns();
        self.header.is_final = is_final;
        self.header.events = reader.records;
        self.header.lost_events = losses.lost_events();
        self.header.stacks_failed = losses.stack_failed;
        self.header.partial_events = losses.partial();
        self.header.missed_open = self.missed_open;
        // Opens onto numbers the ledger held open are closes it missed too.
        self.header.missed_close = self.missed_close + self.ledger.overwritten;
        self.header.reconciled = reconciled;
        self.header.targets = self
            .targets
            .iter()
            .map(|&tgid| {
                let comm = self.ledger.process(tgid).map(|p| p.comm.to_string()).or_else(|| {
                    self.ledger.exited().iter().rfind(|e| e.tgid == tgid).map(|e| e.comm.to_string())
                });
                (tgid, comm.unwrap_or_default())
            })
            .collect();
        let built = std::time::Instant::now();
        let states = self.socket_states();
        let r = report::build(&self.header, &self.report_opts, &self.ledger, &self.stacks, &states);
        if let Output::Reports { out, format } = &mut self.output {
            let result = match format {
                Format::Text => writeln!(out, "{}", report::text::render_with(&r, self.paint)),
                Format::Json => {
                    serde_json::to_writer(&mut *out, &r).map_err(io::Error::from).and_then(|()| writeln!(out))
                }
            };
            log::debug!(
                "report: {} groups, {} unclosed of {} open fds, built and written in {:.1} ms",
                r.groups.len() + r.more_groups,
                r.unclosed,
                r.open_fds,
                built.elapsed().as_secs_f64() * 1e3
            );
            if let Err(e) = result.and_then(|()| out.flush()) {
                self.write_failed(e);
            }
        }
        if is_final && self.pictures.wanted() {
            // Every group, not only --top; the fds themselves are not drawn.
            let opts = report::Options { top: usize::MAX, fds_per_group: 0, ..self.report_opts.clone() };
            let all = report::build(&self.header, &opts, &self.ledger, &self.stacks, &states);
            self.pictures_failed = self.pictures.write(&all).err();
        }
    }

    /// Redraws the status line.
    fn draw_status(&mut self, events: u64) {
        let kinds = &self.report_opts.filter.kinds;
        let open = self
            .ledger
            .processes()
            .map(|p| {
                self.ledger
                    .open_fds(p.tgid)
                    .filter(|e| kinds.as_ref().is_none_or(|k| k.contains(&e.kind)))
                    .count()
            })
            .sum();
        let status = self.status.status(events, open, self.tracer.losses().lost_events());
        self.status.draw(&status);
    }

    /// States, addresses and idle times of live processes' sockets: TCP
    /// from sock_diag (one dump per report) when the process shares our
    /// network namespace, everything else from `/proc/PID/net`.
    fn socket_states(&self) -> HashMap<(u32, i32), SockState> {
        let mut states = HashMap::new();
        let mut diag: Option<HashMap<u64, sockdiag::TcpSocket>> = None;
        // `/proc/PID/net` shows the process's network namespace: read once
        // per namespace (followed children share their parent's).
        let mut tables: HashMap<Option<u64>, HashMap<u64, procfs::SocketRow>> = HashMap::new();
        let empty = HashMap::new();
        for p in self.ledger.processes() {
            let fds = self.ledger.open_fds(p.tgid).filter(|e| e.kind == FdKind::Socket).map(|e| e.fd);
            let inodes = procfs::socket_inodes(p.tgid, fds);
            if inodes.is_empty() {
                continue;
            }
            let tcp = if sockdiag::same_netns(p.tgid) {
                &*diag.get_or_insert_with(|| sockdiag::tcp_sockets().unwrap_or_default())
            } else {
                &empty
            };
            let netns = std::fs::metadata(format!("/proc/{}/ns/net", p.tgid))
                .ok()
                .map(|m| std::os::unix::fs::MetadataExt::ino(&m));
            for (fd, inode) in inodes {
                let state = match tcp.get(&inode) {
                    Some(s) => SockState {
                        state: s.state,
                        local: Some(s.local.clone()),
                        remote: s.remote.clone(),
                        idle_ms: s.idle_ms,
                    },
                    None => {
                        let table = tables.entry(netns).or_insert_with(|| procfs::sockets(p.tgid));
                        let Some(row) = table.get(&inode) else { continue };
                        SockState {
                            state: row.state,
                            local: row.local.clone(),
                            remote: row.remote.clone(),
                            idle_ms: None,
                        }
                    }
                };
                states.insert((p.tgid, fd), state);
            }
        }
        states
    }

    fn flush(&mut self) {
        let result = match &mut self.output {
            Output::Events(p) => p.flush(),
            Output::Reports { out, .. } => out.flush(),
        };
        if let Err(e) = result {
            self.write_failed(e);
        }
    }

    fn write_failed(&mut self, e: io::Error) {
        if e.kind() == io::ErrorKind::BrokenPipe {
            self.output_closed = true;
        } else {
            warn!("writing output: {e}");
        }
    }
}

/// Whether an event line passes `--kind`/`--port`/`--remote`/`--state`.
/// Lines about processes (fork, exec, exit) always do; a line's socket
/// state is the last one the kernel reported for its fd.
pub(crate) fn shown(
    filter: &Filter,
    ledger: &Ledger,
    effects: &[Effect],
    line: &crate::stream::Line,
) -> bool {
    if *filter == Filter::default() || matches!(line.event.as_str(), "fork" | "exec" | "exit") {
        return true;
    }
    let state = line.state.or_else(|| {
        let fd = line.fd?;
        let closed = effects.iter().find_map(|e| match e {
            Effect::Closed { tgid, entry, .. } if *tgid == line.pid && entry.fd == fd => Some(entry),
            _ => None,
        });
        let entry = ledger.entry(line.pid, fd).or(closed)?;
        entry.desc.state.map(|s| s.name()).or(entry.desc.listening.then_some("LISTEN"))
    });
    filter.matches(&Facts {
        kind: line.kind,
        local: line.local.as_deref(),
        remote: line.remote.as_deref(),
        state,
    })
}

/// What following goroutines in the Go programs among the targets could
/// not do, and how the origins it found may be wrong: for the reports.
fn goroutine_notes(
    tracer: &Tracer,
    go: &[(u32, std::path::PathBuf, golang::GoBinary)],
    follow_forks: bool,
) -> (Vec<String>, Vec<String>) {
    let mut notes = vec![];
    let mut origin_notes = vec![];
    for ((tgid, result), (_, _, binary)) in tracer.plan.go.iter().zip(go) {
        match result {
            Ok(()) => {
                log::debug!(
                    "pid {tgid}: {} goroutine origins followed",
                    binary.version.as_deref().unwrap_or("Go")
                );
                if let Some(why) = binary.imprecision() {
                    origin_notes.push(format!("pid {tgid}: {why}"));
                }
            }
            Err(e) => {
                let note = format!("pid {tgid}: {e}");
                eprintln!("fdtrace: {note}");
                notes.push(note);
            }
        }
    }
    if !go.is_empty() && follow_forks {
        notes.push("goroutine origins are followed in the traced Go programs, not in their children".into());
    }
    (notes, origin_notes)
}

/// Sends `tgid` on `tx` when the process exits (pidfd readable).
fn watch_exit(tgid: u32, tx: mpsc::UnboundedSender<u32>) -> anyhow::Result<()> {
    // SAFETY: pidfd_open takes (pid, flags) and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, tgid as libc::pid_t, 0) };
    if fd < 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ESRCH) {
            // Already gone.
            let _ = tx.send(tgid);
            return Ok(());
        }
        return Err(err).context("pidfd_open (Linux 5.3+) to watch for the target's exit");
    }
    // SAFETY: fd is a fresh pidfd we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // SAFETY: the OwnedFd stays open, and the same fd, inside the AsyncFd.
    let fd = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
        .map_err(|e| io::Error::other(e.to_string()))?;
    tokio::spawn(async move {
        if fd.readable().await.is_ok() {
            let _ = tx.send(tgid);
        }
    });
    Ok(())
}
