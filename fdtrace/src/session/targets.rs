//! The processes a session traces: the pids given, the launched command,
//! the processes `--comm` matches; which of them are Go programs (their
//! goroutines are followed); and noticing when they exit.
use std::{
    io,
    os::fd::{FromRawFd, OwnedFd},
    path::PathBuf,
};

use anyhow::{bail, Context as _};
use tokio::{io::unix::AsyncFd, sync::mpsc};

use super::launch::Launched;
use crate::{
    attach::{self, resolve_target, Target, Tracer},
    cli::TraceArgs,
    golang::{self, GoBinary},
    host::procfs,
    python::{self, Interpreter},
};

/// Resolves the pids the user gave into processes, saying when a thread id
/// stands for its process.
pub fn resolve(pids: &[u32]) -> anyhow::Result<Vec<Target>> {
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
pub fn initial(args: &TraceArgs, launched: Option<&Launched>) -> anyhow::Result<Vec<Target>> {
    if let Some(l) = launched {
        return Ok(vec![Target { tgid: l.pid, comm: l.comm.clone(), given_thread: None }]);
    }
    if args.comm.is_some() && args.pids.is_empty() {
        return Ok(vec![]);
    }
    resolve(&args.pids)
}

/// The Go programs among the targets, and their executables.
pub fn go_programs(targets: &[Target], launched: Option<&Launched>) -> Vec<(u32, PathBuf, GoBinary)> {
    match launched {
        // Before exec /proc/PID/exe is fdtrace: inspect the command's file.
        Some(l) => golang::inspect(&l.path).map(|g| (l.pid, l.path.clone(), g)).into_iter().collect(),
        None => targets
            .iter()
            .filter_map(|t| {
                let exe = PathBuf::from(format!("/proc/{}/exe", t.tgid));
                Some((t.tgid, exe.clone(), golang::inspect(&exe)?))
            })
            .collect(),
    }
}

/// The CPython programs among the targets running now, with their
/// interpreters; or why a CPython program's Python frames cannot be named.
/// A launched command is inspected once it runs (its interpreter is not
/// mapped before its exec).
pub fn python_programs(
    targets: &[Target],
    launched: Option<&Launched>,
) -> Vec<(u32, Result<Interpreter, String>)> {
    if launched.is_some() {
        return vec![];
    }
    targets
        .iter()
        .filter_map(|t| match python::inspect(t.tgid) {
            Ok(None) => None,
            Ok(Some(interp)) => {
                log::debug!(
                    "pid {}: CPython {} ({}, offsets from its {})",
                    t.tgid,
                    interp.version,
                    interp.library.display(),
                    interp.offsets_from
                );
                Some((t.tgid, Ok(interp)))
            }
            Err(e) => Some((t.tgid, Err(e.to_string()))),
        })
        .collect()
}

/// The Node programs among the targets, and their executables.
pub fn node_programs(targets: &[Target], launched: Option<&Launched>) -> Vec<(u32, PathBuf)> {
    match launched {
        Some(l) => [(l.pid, l.path.clone())].into_iter().filter(|(_, p)| attach::is_node(p)).collect(),
        None => targets
            .iter()
            .filter_map(|t| {
                let exe = std::fs::read_link(format!("/proc/{}/exe", t.tgid)).ok()?;
                attach::is_node(&exe).then(|| (t.tgid, PathBuf::from(format!("/proc/{}/exe", t.tgid))))
            })
            .collect(),
    }
}

/// `--comm`: the processes with the name that run now. Processes that exec
/// after the hooks went in are added by the kernel; scanning after
/// attaching misses none.
pub fn add_running_with_comm(
    comm: &str,
    tracer: &mut Tracer,
    targets: &mut Vec<Target>,
) -> anyhow::Result<()> {
    for pid in procfs::pids_with_comm(comm) {
        let Ok(t) = resolve_target(pid) else { continue };
        if targets.iter().any(|x| x.tgid == t.tgid) {
            continue;
        }
        tracer.add_target(t.tgid)?;
        targets.push(t);
    }
    Ok(())
}

/// For the reports: what following goroutines in the Go programs among the
/// targets could not do, and how the origins it found may be wrong.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GoNotes {
    pub notes: Vec<String>,
    /// Shown only in reports that show some origins.
    pub origin_notes: Vec<String>,
}

pub fn goroutine_notes(tracer: &Tracer, go: &[(u32, PathBuf, GoBinary)], follow_forks: bool) -> GoNotes {
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
    GoNotes { notes, origin_notes }
}

/// Sends `tgid` on `tx` when the process exits (pidfd readable).
pub fn watch_exit(tgid: u32, tx: mpsc::UnboundedSender<u32>) -> anyhow::Result<()> {
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
