//! One tracing session, in three steps: [`Session::setup`] (targets,
//! attach, the baseline from `/proc`, the sinks), [`Session::trace`] (read
//! events until told to stop: each through the [`pipeline`], reports on
//! their ticks) and [`Session::teardown`] (the final report, detach, wait
//! for a launched command).
//!
//! kernel → ring buffer → [`Source`] (whole events) → [`pipeline`]
//! ([`crate::ledger::Ledger`], stacks resolved as they first appear) →
//! [`Sinks`] (event lines, reports, pictures, the status line).
pub mod launch;
mod pipeline;
mod reconcile;
mod targets;

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use tokio::{
    signal::unix::{signal, Signal, SignalKind},
    sync::mpsc,
    time::MissedTickBehavior,
};

use self::{
    launch::Launched,
    pipeline::Pipeline,
    reconcile::{Check, Missed},
    targets::GoNotes,
};
use crate::{
    attach::{self, Target, Tracer},
    cli::TraceArgs,
    clock::{monotonic_ns, Clock},
    events::{Comm, MmapWatch, Source},
    host::{self, procfs},
    ledger::Ledger,
    python::{self, Interpreter},
    report::{self, suppress::Suppressions, text, Head, KernelPairing, SessionInfo, Stats, TargetInfo},
    sinks::{Progress, Reports, Sinks},
};

pub use targets::resolve as resolve_targets;

/// How long a launched CPython command may take to become one (a wrapper
/// that execs it) and to map its libpython.
const PYTHON_WAIT: Duration = Duration::from_secs(10);

/// How often records the kernel side did not wake us for are collected:
/// the latency of a lone event.
const DRAIN_EVERY: Duration = Duration::from_millis(10);

/// Pairing mode: how often the fds the kernel keeps are taken (the ones
/// older than this become fdtrace's).
const TAKE_EVERY: Duration = Duration::from_secs(1);

/// Pairing mode: after a take that found at least [`TAKE_BUSY`] fds (an
/// eighth of the kernel's map), the next comes this soon: in a burst of
/// opens the map fills, and what it cannot keep goes through the ring.
const TAKE_SOON: Duration = Duration::from_millis(50);
const TAKE_BUSY: usize = fdtrace_common::DEFAULT_MAX_KEPT as usize / 8;

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
    /// fds the final report counted as unclosed (`None`: no final report).
    pub unclosed: Option<usize>,
}

impl Outcome {
    /// fdtrace's exit code: `--error-exitcode`'s when the final report
    /// holds unclosed fds, else the launched command's, else 0.
    pub fn code(&self, error_exitcode: Option<u8>) -> u8 {
        match (error_exitcode, self.unclosed) {
            (Some(code), Some(n)) if n > 0 => code,
            _ => self.exit_code.unwrap_or(0),
        }
    }
}

/// Traces until told to stop.
pub async fn run(args: &TraceArgs, launched: Option<Launched>) -> anyhow::Result<Outcome> {
    let mut s = Session::setup(args, launched).await?;
    let stop = s.trace().await?;
    s.teardown(stop).await
}

/// The signals a session handles; set up before attaching, so a Ctrl-C
/// during start-up still detaches.
struct Signals {
    int: Signal,
    term: Signal,
    /// A report on demand; without a handler SIGUSR1 would end fdtrace.
    usr1: Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Signals> {
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            usr1: signal(SignalKind::user_defined1())?,
        })
    }
}

struct Session<'a> {
    args: &'a TraceArgs,
    launched: Option<Launched>,
    tracer: Tracer,
    source: Source,
    pipe: Pipeline,
    sinks: Sinks,
    info: SessionInfo,
    report_opts: report::Options,
    signals: Signals,
    exits: mpsc::UnboundedReceiver<u32>,
    /// Targets that have not exited.
    alive: usize,
    /// What reconciliation found so far.
    missed: Missed,
    /// Pairing mode: when the last two takes of the kernel's kept fds
    /// started (the closes the ledger saw of numbers it did not hold are
    /// kept until every fd the kernel kept before them was taken).
    takes_ns: [u64; 2],
    /// A launched CPython command whose interpreter is not registered
    /// yet, and since when it is waited for.
    python_pending: Option<(u32, Instant)>,
    python_polled: Instant,
}

impl<'a> Session<'a> {
    async fn setup(args: &'a TraceArgs, mut launched: Option<Launched>) -> anyhow::Result<Session<'a>> {
        let suppress = Suppressions::load(&args.suppress)?;
        let mut targets = targets::initial(args, launched.as_ref())?;
        let sinks = Sinks::from_args(args, launched.is_some(), Clock::new())?;
        let signals = Signals::new()?;
        let started = Instant::now();
        let pairing = !sinks.wants_events() && !args.no_kernel_pairing;
        let Attached { tracer, mut source, notes, python, python_later } =
            attach(args, launched.as_ref(), &mut targets, pairing)?;
        let (ledger, exits, started_ns) = baseline(&targets)?;
        // Before the command execs: every mapping of its new image is
        // recorded.
        let (mmaps, mmaps_note) = watch_mappings(&targets, launched.is_some());
        // The targets were added held: with their baseline read, the kernel
        // may pair their fds.
        source.added_held(&targets.iter().map(|t| t.tgid).collect::<Vec<_>>());
        source.resume();
        // The targets in another pid namespace (containers): their pid there.
        let ns_pids: BTreeMap<u32, u32> =
            targets.iter().filter_map(|t| Some((t.tgid, procfs::ns_pid(t.tgid)?))).collect();
        announce(args, &targets, &ns_pids, &tracer, started, launched.is_some());
        // Everything is in place: let the command exec.
        if let Some(l) = &mut launched {
            l.release()?;
        }
        let (pid, comm) = match targets.first() {
            Some(t) => (t.tgid, t.comm.clone()),
            None => (0, args.comm.clone().unwrap_or_default()),
        };
        let info = SessionInfo {
            pid,
            comm: comm.clone(),
            started_ns,
            tier: tracer.plan.tier_summary(),
            hooks: tracer.plan.hooks(),
            notes: notes.notes.into_iter().chain(mmaps_note).collect(),
            origin_notes: notes.origin_notes,
            targets: vec![],
            ns_pids: Default::default(),
        };
        let mut pipe = Pipeline::new(
            ledger,
            targets.iter().map(|t| t.tgid).collect(),
            args.comm.is_some(),
            comm,
            ns_pids,
        );
        if let Some(m) = mmaps {
            if launched.is_none() {
                // Running already: what they mapped before the records.
                let now = monotonic_ns();
                for t in &targets {
                    pipe.stacks.seed_maps(t.tgid, now);
                }
            }
            pipe.mmaps = Some(m);
        }
        for (tgid, interp) in python {
            pipe.stacks.add_python(tgid, interp);
        }
        let python_pending = launched.as_ref().filter(|_| python_later).map(|l| l.pid);
        Ok(Session {
            args,
            launched,
            source,
            pipe,
            sinks,
            info,
            report_opts: report::Options {
                min_age_ns: args.min_age.as_nanos() as u64,
                filter: args.report_filter(),
                suppress,
                fds_per_group: args.fds_per_group,
            },
            signals,
            exits,
            alive: targets.len(),
            missed: Missed::default(),
            takes_ns: [0; 2],
            python_pending: python_pending.map(|pid| (pid, Instant::now())),
            python_polled: Instant::now(),
            tracer,
        })
    }

    /// Reads events until told to stop.
    async fn trace(&mut self) -> anyhow::Result<Stop> {
        let args = self.args;
        let deadline = tokio::time::sleep(args.duration.unwrap_or(Duration::from_secs(u64::MAX / 4)));
        tokio::pin!(deadline);
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + args.interval, args.interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // The kernel side wakes the ring's reader only when records pile
        // up (see `attach::WAKEUP_BYTES`); it collects the rest every 10 ms
        // on its own (`events/ring.rs`). The mapping records are collected
        // on this tick.
        let mut drain = tokio::time::interval(DRAIN_EVERY);
        drain.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut status_ticks = tokio::time::interval(Duration::from_secs(1));
        status_ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // Pairing mode: the fds the kernel kept longer than this become
        // fdtrace's, so its map does not fill with long-lived ones.
        let mut next_take = tokio::time::Instant::now() + TAKE_EVERY;
        let pairing = self.source.pairing();
        let periodic = self.sinks.wants(Reports::Every);
        let status = self.sinks.wants_status();
        // A reconciliation under way: the report follows when it is due.
        let mut check: Option<Check> = None;

        let stop = loop {
            let due = check.as_ref().map(|c| c.due);
            let Session { source, pipe, sinks, .. } = self;
            tokio::select! {
                r = source.read(|ev, raw| pipe.event(ev, raw, sinks)) => {
                    r.context("reading the ring buffer")?;
                    sinks.flush();
                }
                _ = drain.tick() => pipe.sync_maps(),
                _ = ticks.tick(), if periodic && check.is_none() => check = Some(self.start_check()),
                _ = tokio::time::sleep_until(next_take), if pairing && check.is_none() => {
                    let busy = self.take() >= TAKE_BUSY;
                    next_take = tokio::time::Instant::now() + if busy { TAKE_SOON } else { TAKE_EVERY };
                }
                _ = tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)), if due.is_some() => {
                    if let Some(c) = check.take() {
                        self.judge(c);
                        self.report(false);
                    }
                }
                _ = self.signals.usr1.recv() => {
                    if periodic {
                        if check.is_none() {
                            check = Some(self.start_check());
                        }
                    } else {
                        self.sinks.say(format_args!("SIGUSR1: reports are off while --events streams events"));
                    }
                }
                _ = status_ticks.tick(), if status => self.progress(),
                _ = self.signals.int.recv() => match &self.launched {
                    // The command decides what an interrupt means; its exit
                    // ends the session.
                    Some(l) => forward(l, libc::SIGINT),
                    None => break Stop::Interrupted,
                },
                _ = self.signals.term.recv() => match &self.launched {
                    Some(l) => forward(l, libc::SIGTERM),
                    None => break Stop::Terminated,
                },
                _ = &mut deadline => break Stop::Duration,
                Some(tgid) = self.exits.recv() => {
                    if self.launched.is_none() {
                        self.sinks.say(format_args!("process {tgid} exited"));
                    }
                    self.alive -= 1;
                    // --comm goes on until stopped: more may start.
                    if self.alive == 0 && self.args.comm.is_none() {
                        break Stop::TargetsExited;
                    }
                }
            }
            if self.sinks.closed() {
                break Stop::Interrupted;
            }
            if self.python_pending.is_some() {
                self.register_python();
            }
        };
        Ok(stop)
    }

    /// A launched CPython command: once it has exec'd and its dynamic
    /// loader has mapped its libpython, its interpreter is registered, and
    /// its opens from then on carry their Python stacks. What could not be
    /// done becomes a note.
    fn register_python(&mut self) {
        let Some((pid, since)) = self.python_pending else { return };
        // Before its exec the command is a copy of fdtrace.
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
        if exe.is_none() || exe == std::env::current_exe().ok() {
            return;
        }
        if self.python_polled.elapsed() < DRAIN_EVERY {
            return;
        }
        self.python_polled = Instant::now();
        let why = match python::inspect(pid) {
            Ok(Some(interp)) => match self.tracer.add_python(pid, &interp.info) {
                Ok(()) => {
                    log::debug!("pid {pid}: CPython {} registered", interp.version);
                    self.pipe.stacks.add_python(pid, interp);
                    self.python_pending = None;
                    return;
                }
                Err(why) => why,
            },
            // Its libpython not mapped yet; or not CPython yet (a wrapper,
            // a pyenv shim, that execs it next): a while.
            Err(python::PyError::NotLoaded { .. }) | Ok(None) if since.elapsed() < PYTHON_WAIT => return,
            Ok(None) => {
                log::debug!("pid {pid}: not CPython after {PYTHON_WAIT:?}");
                self.python_pending = None;
                return;
            }
            Err(e) => e.to_string(),
        };
        self.python_pending = None;
        let note = format!("pid {pid}: Python frames not named: {why}");
        self.sinks.say(format_args!("{note}"));
        self.info.notes.push(note);
    }

    /// The final report, detaching, and in launch mode waiting for the
    /// command.
    async fn teardown(mut self, stop: Stop) -> anyhow::Result<Outcome> {
        // What the kernel sent (or kept) before we stopped still counts.
        self.take();
        let mut unclosed = None;
        // --error-exitcode needs the final count, whatever is printed.
        if self.sinks.wants(Reports::Final) || self.args.error_exitcode.is_some() {
            let check = self.start_check();
            tokio::time::sleep_until(check.due).await;
            self.judge(check);
            unclosed = Some(self.report(true));
        }
        self.sinks.flush();
        let losses = self.tracer.losses();
        log::debug!(
            "peak RSS {} MiB; {} stacks symbolized",
            procfs::status("self").map(|st| st.vm_hwm_kb / 1024).unwrap_or(0),
            self.pipe.stacks.resolved()
        );
        if self.source.pairing() {
            log::debug!(
                "kernel pairing: {} fds kept, {} closes paired there, {} taken by fdtrace; {} opens sent \
                 instead ({} for want of room), {} kept fds overwritten",
                losses.kept,
                losses.paired,
                self.source.taken(),
                losses.not_kept,
                losses.kept_full,
                losses.kept_overwritten
            );
        }
        let Session { tracer, source, sinks, pipe, mut launched, mut exits, mut signals, .. } = self;
        let finished = sinks.finish();
        let detach = Instant::now();
        tracer.detach();
        log::debug!(
            "detached in {} ms (the kernel finishes in the background)",
            detach.elapsed().as_millis()
        );
        let exit_code = match &mut launched {
            Some(l) => Some(wait_for_command(l, &mut exits, &mut signals).await),
            None => None,
        };
        let mmaps = pipe.mmaps.as_ref();
        let mapping_records = mmaps.map_or(String::new(), |m| {
            let mut s = format!("; {} mapping records, {} lost", m.records, m.lost);
            if m.undecodable > 0 {
                s += &format!(", {} undecodable", m.undecodable);
            }
            s
        });
        eprintln!(
            "fdtrace: {} events, {} lost{}{}{mapping_records}",
            source.records() + losses.kept_in_kernel(),
            losses.lost_events(),
            if losses.ringbuf_full > 0 { " (ring buffer full: raise --ringbuf-size)" } else { "" },
            if source.decode_errors > 0 {
                format!(", {} undecodable", source.decode_errors)
            } else {
                String::new()
            },
        );
        finished.map(|()| Outcome { stop, exit_code, unclosed })
    }

    /// Pairing mode: takes the fds the kernel keeps and the pairs it
    /// counted into the ledger. Returns how many fds it took.
    fn take(&mut self) -> usize {
        let started = monotonic_ns();
        let Session { source, pipe, sinks, .. } = self;
        let n = source.take(|ev, raw| pipe.event(ev, raw, sinks));
        self.after_take(started);
        n
    }

    fn after_take(&mut self, started: u64) {
        self.pipe.ledger.forget_closes_before(self.takes_ns[0]);
        self.takes_ns = [self.takes_ns[1], started];
    }

    /// Starts a reconciliation. In pairing mode the kernel stops pairing
    /// the processes' fds until it is judged (an fd it opened and closed
    /// unseen during the scan would look missed) and hands over what it
    /// kept.
    fn start_check(&mut self) -> Check {
        if self.source.pairing() {
            let started = monotonic_ns();
            let tgids: Vec<u32> = self.pipe.ledger.processes().map(|p| p.tgid).collect();
            let Session { source, pipe, sinks, .. } = self;
            source.hold(&tgids, |ev, raw| pipe.event(ev, raw, sinks));
            self.after_take(started);
        }
        Check::start(&self.pipe.ledger)
    }

    /// Ends a reconciliation: the events of the syscalls that were in
    /// flight during the scan are in by now (drained first; in pairing
    /// mode, with the fds the kernel kept in that moment), and the ledger
    /// is corrected. Then the kernel may pair again.
    fn judge(&mut self, check: Check) {
        self.take();
        let m = check.judge(&mut self.pipe.ledger);
        self.missed.open += m.open;
        self.missed.close += m.close;
        self.source.resume();
    }

    /// How complete the data is, now.
    fn stats(&self) -> Stats {
        let losses = self.tracer.losses();
        Stats {
            events: self.source.records() + losses.kept_in_kernel(),
            lost_events: losses.lost_events(),
            lost_by_reason: losses.lost().into_iter().map(|(k, n)| (k.to_string(), n)).collect(),
            stacks_failed: losses.stack_failed,
            partial_events: losses.partial().into_iter().map(|(k, n)| (k.to_string(), n)).collect(),
            missed_open: self.missed.open,
            // Opens onto numbers the ledger held open are closes it missed
            // too.
            // So are kept fds whose number the kernel installed again.
            missed_close: self.missed.close + self.pipe.ledger.overwritten + losses.kept_overwritten,
            kernel_pairing: self.source.pairing().then(|| KernelPairing {
                kept: losses.kept,
                paired: losses.paired,
                taken: self.source.taken(),
                sent: losses.not_kept,
                tables_full: losses.kept_full,
            }),
        }
    }

    /// Builds a report and hands it to the sinks that want it.
    /// Returns how many fds it counted as unclosed.
    fn report(&mut self, is_final: bool) -> usize {
        let sockets = host::sockets(&mut self.pipe.ledger);
        let ledger = &self.pipe.ledger;
        self.info.comm = self.pipe.comm.clone();
        self.info.targets =
            self.pipe
                .targets
                .iter()
                .map(|&tgid| {
                    let comm = ledger.process(tgid).map(|p| p.comm.to_string()).or_else(|| {
                        ledger.exited().iter().rfind(|e| e.tgid == tgid).map(|e| e.comm.to_string())
                    });
                    TargetInfo {
                        pid: tgid,
                        comm: comm.unwrap_or_default(),
                        ns_pid: self.pipe.ns_pids.get(&tgid).copied(),
                    }
                })
                .collect();
        self.info.ns_pids.clone_from(&self.pipe.ns_pids);
        let stats = self.stats();
        let built = Instant::now();
        let mut info = std::borrow::Cow::Borrowed(&self.info);
        if let Some(note) = self.pipe.mmaps.as_ref().and_then(mappings_lost_note) {
            info.to_mut().notes.push(note);
        }
        let head = Head { info: &info, stats: &stats, now_ns: monotonic_ns(), is_final };
        let r = report::build(head, &self.report_opts, ledger, &self.pipe.stacks, &sockets);
        self.sinks.report(&r);
        // The bench reads this line.
        log::debug!(
            "report: {} groups, {} unclosed of {} open fds, built and written in {:.1} ms",
            r.groups.len(),
            r.unclosed,
            r.open_fds,
            built.elapsed().as_secs_f64() * 1e3
        );
        r.unclosed
    }

    /// Redraws the status line.
    fn progress(&mut self) {
        let ledger = &self.pipe.ledger;
        let kinds = &self.report_opts.filter.kinds;
        let open = ledger
            .processes()
            .map(|p| {
                ledger.open_fds(p.tgid).filter(|e| kinds.as_ref().is_none_or(|k| k.contains(&e.kind))).count()
            })
            .sum();
        let losses = self.tracer.losses();
        let events = self.source.records() + losses.kept_in_kernel();
        let p = Progress { events, open, lost: losses.lost_events() };
        self.sinks.progress(p);
    }
}

/// What attaching gave.
struct Attached {
    tracer: Tracer,
    /// The events it will send.
    source: Source,
    /// On following goroutines and naming Python frames.
    notes: GoNotes,
    /// The CPython programs whose Python frames are named.
    python: Vec<(u32, Interpreter)>,
    /// The launched command runs CPython: its interpreter is registered
    /// once it runs.
    python_later: bool,
}

/// Loads and attaches the kernel programs for `targets` (and, with
/// `--comm`, adds the processes with the name that run now). Returns the
/// tracer, the events it will send, and the notes on following goroutines
/// (what could not be followed; how origins may be wrong) and on naming
/// Python frames, and the CPython programs whose frames are named.
fn attach(
    args: &TraceArgs,
    launched: Option<&Launched>,
    targets: &mut Vec<Target>,
    pairing: bool,
) -> anyhow::Result<Attached> {
    // Python frames are part of a stack: none without stacks.
    let python = if args.no_stacks { vec![] } else { targets::python_programs(targets, launched) };
    let opts = attach::Options {
        mode: args.attach,
        follow_forks: args.follow_forks,
        stacks: !args.no_stacks,
        ringbuf_size: args.ringbuf_size.unwrap_or_else(|| crate::cli::default_ringbuf_size(!pairing)),
        stack_entries: fdtrace_common::DEFAULT_STACK_ENTRIES,
        go_programs: targets::go_programs(targets, launched),
        node_programs: if args.no_stacks { vec![] } else { targets::node_programs(targets, launched) },
        python_later: !args.no_stacks && launched.is_some_and(|l| python::runs_cpython(&l.path)),
        python_programs: python
            .iter()
            .filter_map(|(tgid, interp)| Some((*tgid, interp.as_ref().ok()?.info)))
            .collect(),
        comm: args.comm.clone(),
        pairing,
        thread_names: args.events,
    };
    let tgids: Vec<u32> = targets.iter().map(|t| t.tgid).collect();
    let (mut tracer, ring) = Tracer::start(&opts, &tgids)?;
    // Loading parsed the kernel's BTF and the eBPF object (tens of MiB, now
    // freed): give the pages back rather than keep them for the session.
    // SAFETY: no preconditions.
    unsafe { libc::malloc_trim(0) };
    if let Some(comm) = &args.comm {
        targets::add_running_with_comm(comm, &mut tracer, targets)?;
    }
    let mut notes = targets::goroutine_notes(&tracer, &opts.go_programs, args.follow_forks);
    for (tgid, why) in &tracer.plan.node {
        let note = format!("pid {tgid}: the JavaScript behind its sockets is not found: {why}");
        eprintln!("fdtrace: {note}");
        notes.notes.push(note);
    }
    let mut named = vec![];
    for (tgid, interp) in python {
        let failed = tracer.plan.python.iter().find(|(t, _)| *t == tgid).map(|(_, why)| why.clone());
        let why = match (interp, failed) {
            (Ok(_), Some(why)) => why,
            (Err(why), _) => why,
            (Ok(interp), None) => {
                named.push((tgid, interp));
                continue;
            }
        };
        let note = format!("pid {tgid}: Python frames not named: {why}");
        eprintln!("fdtrace: {note}");
        notes.notes.push(note);
    }
    let source = Source::new(ring, tracer.take_stacks(), tracer.take_kernel_fds())
        .context("watching the ring buffer")?;
    log::debug!(
        "callers of libc syscall wrappers: {}",
        if tracer.plan.caller_ip {
            "recovered from the user stack pointer"
        } else {
            "not recoverable (no bpf_task_pt_regs)"
        }
    );
    let python_later = opts.python_later && tracer.plan.python.is_empty();
    Ok(Attached { tracer, source, notes, python: named, python_later })
}

/// The ledger's baseline: what the targets have open now (events stamped
/// before the scan refine it, see the ledger), and a watch on each for its
/// exit. A target that exits during start-up is reported as exited, with
/// whatever events it produced. Also: when tracing started.
fn baseline(targets: &[Target]) -> anyhow::Result<(Ledger, mpsc::UnboundedReceiver<u32>, u64)> {
    let mut ledger = Ledger::new();
    let (exit_tx, exits) = mpsc::unbounded_channel();
    let started_ns = monotonic_ns();
    for t in targets {
        let scan_ns = monotonic_ns();
        let fds = procfs::list_fds(t.tgid).unwrap_or_default();
        ledger.add_process(t.tgid, Comm::from_str_lossy(&t.comm), scan_ns, fds);
        targets::watch_exit(t.tgid, exit_tx.clone())?;
    }
    Ok((ledger, exits, started_ns))
}

/// Watches the targets' mappings (see [`MmapWatch`]): on every thread of
/// each (their later threads and children inherit it); a launched command
/// has one thread, blocked before its exec. Without it, tracing goes on:
/// returns the note that says what is missing.
fn watch_mappings(targets: &[Target], launched: bool) -> (Option<MmapWatch>, Option<String>) {
    let mut cut = None;
    let mut tasks: Vec<u32> = if launched {
        targets.iter().map(|t| t.tgid).collect()
    } else {
        targets.iter().flat_map(|t| procfs::threads(t.tgid)).collect()
    };
    // A perf event per thread and CPU: a process with thousands of threads
    // on a big machine would take more fds than fdtrace may open. Then
    // the main threads only (their children still inherit the events).
    let needed = MmapWatch::events_for(tasks.len());
    if needed > mapping_events_budget() {
        cut = Some(format!(
            "mappings recorded from the main threads only ({} threads would take {needed} perf events): \
             the stacks of short-lived children forked by other threads may show as ??",
            tasks.len()
        ));
        tasks = targets.iter().map(|t| t.tgid).collect();
    }
    match MmapWatch::open(&tasks) {
        Ok(m) => {
            if let Some(note) = &cut {
                eprintln!("fdtrace: note: {note}");
            }
            (Some(m), cut)
        }
        Err(e) => {
            let note = format!(
                "mappings not recorded: {e}; stacks of processes that exit before fdtrace names them (within \
                 milliseconds of their opens) may show as ??"
            );
            eprintln!("fdtrace: warning: {note}");
            (None, Some(note))
        }
    }
}

/// At most this many perf events for mapping records: 2,048, and a
/// quarter of the fds fdtrace may open (the rest are its maps, programs,
/// links and /proc reads).
fn mapping_events_budget() -> usize {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    let soft =
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 { lim.rlim_cur } else { 1024 };
    usize::try_from(soft / 4).unwrap_or(usize::MAX).min(2048)
}

/// What a report says when mapping records were lost.
fn mappings_lost_note(m: &MmapWatch) -> Option<String> {
    (m.lost > 0).then(|| {
        format!(
            "{} mapping records lost (the perf ring was full between two reads): stacks of processes \
             that exited before fdtrace named them may show as ??",
            m.lost
        )
    })
}

/// The start-up line: what is traced, how, how long attaching took.
fn announce(
    args: &TraceArgs,
    targets: &[Target],
    ns_pids: &BTreeMap<u32, u32>,
    tracer: &Tracer,
    started: Instant,
    launched: bool,
) {
    let mut names: Vec<String> =
        targets.iter().map(|t| text::process(t.tgid, &t.comm, ns_pids.get(&t.tgid).copied())).collect();
    if let Some(comm) = &args.comm {
        names.push(format!("every process named {comm} from now on"));
    }
    eprintln!(
        "fdtrace: tracing {} via {} hooks ({} tier) in {} ms; {}",
        names.join(", "),
        tracer.plan.attached.len(),
        tracer.plan.tier_summary(),
        started.elapsed().as_millis(),
        if launched { "report when it exits" } else { "Ctrl-C to stop" }
    );
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
    exits: &mut mpsc::UnboundedReceiver<u32>,
    signals: &mut Signals,
) -> u8 {
    if !procfs::is_zombie_or_gone(l.pid) {
        eprintln!("fdtrace: stopped tracing; waiting for {} (pid {}) to exit", l.name, l.pid);
        loop {
            tokio::select! {
                _ = exits.recv() => break,
                _ = signals.int.recv() => forward(l, libc::SIGINT),
                _ = signals.term.recv() => forward(l, libc::SIGTERM),
            }
        }
    }
    let code = l.wait_exit();
    eprintln!("fdtrace: {} (pid {}) exited with code {code}", l.name, l.pid);
    code
}
