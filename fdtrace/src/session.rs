//! One tracing session: attach, read events until told to stop, feed the
//! ledger and the outputs, detach.
//!
//! kernel → ring buffer → [`EventReader`] (decoded events) → [`Ledger`]
//! → stream lines / reports.
use std::{
    io::{self, BufWriter},
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
    events::{reader::EventReader, Comm},
    ledger::{Effect, Ledger},
    procfs,
    stream::Printer,
};

/// Why a session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    Duration,
    Interrupted,
    Terminated,
    /// Every target exited.
    TargetsExited,
}

/// Resolves the pids the user gave into processes, saying when a thread id
/// stands for its process.
pub fn resolve_targets(pids: &[u32]) -> anyhow::Result<Vec<Target>> {
    if pids.is_empty() {
        bail!("no process given: name one with -p PID (see fdtrace --help)");
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

pub async fn run(args: &TraceArgs) -> anyhow::Result<Stop> {
    let targets = resolve_targets(&args.pids)?;
    let tgids: Vec<u32> = targets.iter().map(|t| t.tgid).collect();
    let opts = attach::Options {
        mode: args.attach,
        follow_forks: args.follow_forks,
        stacks: !args.no_stacks,
        ringbuf_size: args.ringbuf_size,
        stack_entries: fdtrace_common::DEFAULT_STACK_ENTRIES,
    };
    // Handle signals from here on: a Ctrl-C during start-up still detaches.
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let started = std::time::Instant::now();
    let (tracer, ring) = Tracer::start(&opts, &tgids)?;
    let mut reader = EventReader::new(ring).context("watching the ring buffer")?;

    // The baseline: what is open now. Events stamped before the scan refine
    // it (see the ledger). A target that exits during start-up is reported
    // as exited, with whatever events it produced.
    let mut ledger = Ledger::new();
    let (exit_tx, mut exit_rx) = mpsc::unbounded_channel();
    for t in &targets {
        let scan_ns = monotonic_ns();
        let fds = procfs::list_fds(t.tgid).unwrap_or_default();
        ledger.add_process(t.tgid, Comm::from_str_lossy(&t.comm), scan_ns, fds);
        watch_exit(t.tgid, exit_tx.clone())?;
    }
    let mut alive = tgids.len();

    let names: Vec<String> = targets.iter().map(|t| format!("{} ({})", t.tgid, t.comm)).collect();
    eprintln!(
        "fdtrace: tracing {} via {} hooks ({} tier) in {} ms; Ctrl-C to stop",
        names.join(", "),
        tracer.plan.attached.len(),
        tracer.plan.tier.map_or("no".into(), |t| t.to_string()),
        started.elapsed().as_millis()
    );

    let deadline = tokio::time::sleep(args.duration.unwrap_or(Duration::from_secs(u64::MAX / 4)));
    tokio::pin!(deadline);

    let clock = Clock::new();
    let printer = args.events.then(|| Printer::new(BufWriter::new(io::stdout().lock()), args.format, clock));
    let mut pipe = Pipeline { ledger, printer, effects: Vec::new(), output_closed: false };

    let stop = loop {
        tokio::select! {
            r = reader.read(|ev| pipe.event(ev)) => {
                r.context("reading the ring buffer")?;
                pipe.flush();
                if pipe.output_closed { break Stop::Interrupted; }
            }
            _ = sigint.recv() => break Stop::Interrupted,
            _ = sigterm.recv() => break Stop::Terminated,
            _ = &mut deadline => break Stop::Duration,
            Some(tgid) = exit_rx.recv() => {
                eprintln!("fdtrace: process {tgid} exited");
                alive -= 1;
                if alive == 0 {
                    break Stop::TargetsExited;
                }
            }
        }
    };
    // What the kernel sent before we stopped still counts.
    reader.drain(|ev| pipe.event(ev));
    pipe.flush();

    let losses = tracer.losses();
    drop(tracer);
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
    Ok(stop)
}

/// Decoded events → ledger → outputs.
struct Pipeline<W: io::Write> {
    ledger: Ledger,
    printer: Option<Printer<W>>,
    effects: Vec<Effect>,
    /// stdout went away (`fdtrace ... | head`): time to stop.
    output_closed: bool,
}

impl<W: io::Write> Pipeline<W> {
    fn event(&mut self, ev: crate::events::Event) {
        self.effects.clear();
        self.ledger.apply(&ev, &mut self.effects);
        if let Some(p) = self.printer.as_mut() {
            if let Err(e) = p.event(&ev, &self.effects) {
                self.write_failed(e);
            }
        }
    }

    fn flush(&mut self) {
        if let Some(Err(e)) = self.printer.as_mut().map(|p| p.flush()) {
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
