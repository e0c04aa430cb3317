//! `--events`: one line per event as it happens, as text for people or JSON
//! lines for machines (`"type":"event"`).
//!
//! Lines are built from the event and what the ledger says it changed, so a
//! `close` names what it closed, and implicit closes (dup2 over an open fd,
//! close-on-exec) get lines of their own.
use std::io::{self, Write};

use fdtrace_common::syscall::consts::EINPROGRESS;
use serde::Serialize;

use crate::{
    clock::Clock,
    events::{Addr, Body, Event, FdKind, Open, SockOp, SockSource},
    ledger::{CloseCause, Effect, FdEntry},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// One line of output, text or JSON.
#[derive(Serialize, Debug, Default, Clone, PartialEq)]
pub struct Line {
    #[serde(rename = "type")]
    pub ty: &'static str,
    /// RFC 3339 UTC.
    pub time: String,
    /// CLOCK_MONOTONIC ns, as stamped in the kernel.
    pub ts_ns: u64,
    pub pid: u32,
    pub tid: u32,
    pub comm: String,
    /// The syscall for fd-creating events (socket, accept4, openat, pipe2,
    /// dup2, fcntl_dupfd, ...), or close, close_range, connect, bind,
    /// listen, cloexec, fork, exec, exit.
    pub event: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fd: Option<i32>,
    /// Second fd of pipe/socketpair.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fd2: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    /// tcp, udp6, unix-stream, ... for sockets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proto: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// dup source, accept's listening fd.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src_fd: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cloexec: Option<bool>,
    /// Raw return value for syscalls.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ret: Option<i64>,
    /// errno name when the call failed (EMFILE, ECONNREFUSED, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why an fd went: close, close_range, replaced, close-on-exec.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<&'static str>,
    /// fork: the child pid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub child: Option<u32>,
    /// exit: fds the process still had open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_at_exit: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<u32>,
    /// TCP state (socket state events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<&'static str>,
    /// Stack map id of an fd-creating event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stack_id: Option<u32>,
    /// Free-form detail for the text format.
    #[serde(skip)]
    pub details: String,
}

/// Builds the lines for one event.
pub fn lines(ev: &Event, effects: &[Effect], clock: &Clock) -> Vec<Line> {
    let base = Line {
        ty: "event",
        time: clock.rfc3339(ev.ts_ns),
        ts_ns: ev.ts_ns,
        pid: ev.tgid,
        tid: ev.tid,
        comm: ev.comm.to_string(),
        ..Line::default()
    };
    let closed = |cause: CloseCause| {
        effects.iter().filter_map(move |e| match e {
            Effect::Closed { entry, cause: c, .. } if *c == cause => Some(entry),
            _ => None,
        })
    };
    let mut out = Vec::new();
    match &ev.body {
        Body::Open(open) => {
            // dup2/dup3 over an open fd closes it first.
            for entry in closed(CloseCause::Replaced) {
                out.push(close_line(&base, entry, CloseCause::Replaced));
            }
            out.push(open_line(&base, open, effects));
        }
        Body::Close { fd } => {
            let mut line =
                Line { event: "close".into(), fd: Some(*fd), cause: Some("close"), ..base.clone() };
            match closed(CloseCause::Close).next() {
                Some(entry) => describe(&mut line, entry),
                None => line.details = "(fd not known to fdtrace)".into(),
            }
            out.push(line);
        }
        Body::CloseRange { first, last, flags } => {
            let range = if *last == u32::MAX { format!("{first}..max") } else { format!("{first}..{last}") };
            let what = if flags & 4 != 0 { "marked close-on-exec" } else { "closed" };
            let n = closed(CloseCause::CloseRange).count();
            out.push(Line {
                event: "close_range".into(),
                details: format!(
                    "fds {range}: {what}{}",
                    if flags & 4 != 0 { String::new() } else { format!(" {n}") }
                ),
                ..base.clone()
            });
            for entry in closed(CloseCause::CloseRange) {
                out.push(close_line(&base, entry, CloseCause::CloseRange));
            }
        }
        Body::Sock(call) => {
            let event = match call.op {
                SockOp::Connect => "connect",
                SockOp::Bind => "bind",
                SockOp::Listen => "listen",
            };
            let mut line = Line {
                event: event.into(),
                fd: Some(call.fd),
                kind: Some("socket"),
                ret: Some(call.ret),
                ..base.clone()
            };
            // The kernel's view after the call, else what the call carried.
            line.local = call.local.as_ref().map(Addr::to_string);
            line.remote = call.remote.as_ref().map(Addr::to_string);
            match call.op {
                SockOp::Connect if line.remote.is_none() => {
                    line.remote = call.addr.as_ref().map(Addr::to_string)
                }
                SockOp::Bind if line.local.is_none() => line.local = call.addr.as_ref().map(Addr::to_string),
                _ => {}
            }
            let addr = match call.op {
                SockOp::Connect => line.remote.clone(),
                SockOp::Bind | SockOp::Listen => line.local.clone(),
            };
            line.details = match (call.op, call.ret) {
                (SockOp::Connect, ret) if ret == 0 || ret == -EINPROGRESS => format!(
                    "{} -> {}{}",
                    line.local.clone().unwrap_or_default(),
                    addr.unwrap_or_default(),
                    if call.ret == -EINPROGRESS { " (in progress)" } else { "" }
                )
                .trim_start()
                .to_string(),
                (SockOp::Bind, 0) => format!("bound {}", addr.unwrap_or_default()),
                (SockOp::Listen, 0) => {
                    format!("listening on {}", addr.unwrap_or_default()).trim_end().to_string()
                }
                (_, ret) => {
                    line.error = Some(errno_name(-ret));
                    format!("{} failed: {}", addr.unwrap_or_default(), errno_text(-ret))
                        .trim_start()
                        .to_string()
                }
            };
            out.push(line);
        }
        Body::SetCloexec { fd, cloexec } => out.push(Line {
            event: "cloexec".into(),
            fd: Some(*fd),
            cloexec: Some(*cloexec),
            details: if *cloexec { "close-on-exec set" } else { "close-on-exec cleared" }.into(),
            ..base.clone()
        }),
        Body::Fork { child, shares_files, followed } => out.push(Line {
            event: "fork".into(),
            child: Some(*child),
            details: format!(
                "child {child}{}{}",
                if *shares_files { " (shares the fd table)" } else { "" },
                if *followed { ", followed" } else { "" }
            ),
            ..base.clone()
        }),
        Body::Exec { filename, .. } => {
            out.push(Line {
                event: "exec".into(),
                path: Some(filename.clone()),
                details: filename.clone(),
                ..base.clone()
            });
            for entry in closed(CloseCause::Exec) {
                out.push(close_line(&base, entry, CloseCause::Exec));
            }
        }
        // Part of the next event, not an event.
        Body::UserStack(_) => {}
        Body::SockState(change) => {
            let state = |s: Option<crate::events::TcpState>| s.map_or("?", |s| s.name());
            let mut line = Line {
                event: change.source.name().into(),
                fd: change.fd,
                kind: Some("socket"),
                local: change.local.as_ref().map(Addr::to_string),
                remote: change.remote.as_ref().map(Addr::to_string),
                state: change.new.map(|s| s.name()),
                ..base.clone()
            };
            let addrs = format!(
                "{} -> {}",
                line.local.clone().unwrap_or_else(|| "?".into()),
                line.remote.clone().unwrap_or_else(|| "?".into())
            );
            line.details = match change.source {
                SockSource::TcpConnect => format!("{addrs} (SYN out)"),
                SockSource::TcpClose => format!("{addrs}, closed in {}", state(change.new)),
                SockSource::SetState => format!("{addrs} {} -> {}", state(change.old), state(change.new)),
            };
            out.push(line);
        }
        Body::Exit { code } => {
            let open = closed(CloseCause::Exit).count();
            out.push(Line {
                event: "exit".into(),
                exit_code: Some(*code),
                open_at_exit: Some(open),
                details: format!("{}, {open} fds open at exit", exit_status(*code)),
                ..base.clone()
            });
        }
    }
    out
}

fn open_line(base: &Line, open: &Open, effects: &[Effect]) -> Line {
    // fcntl(F_DUPFD*) is a dup: say so.
    let event = match open.syscall {
        crate::events::Syscall::Fcntl => "fcntl_dupfd",
        other => other.name(),
    };
    let mut line = Line {
        event: event.into(),
        fd: open.fd,
        fd2: open.fd2,
        src_fd: open.src_fd,
        ret: Some(open.ret),
        cloexec: Some(open.cloexec),
        kind: open.kind().map(FdKind::name),
        ..base.clone()
    };
    if let crate::events::StackId::Id(id) = open.stack.id {
        line.stack_id = Some(id);
    }
    if open.ret < 0 {
        line.error = Some(errno_name(-open.ret));
        line.details = format!("failed: {}", errno_text(-open.ret));
        if let Some(p) = &open.path {
            line.path = Some(p.clone());
            line.details = format!("{p} {}", line.details);
        }
        return line;
    }
    // The ledger's entry knows what a dup'd fd refers to.
    let opened = effects.iter().find_map(|e| match e {
        Effect::Opened { entry, .. } if Some(entry.fd) == open.fd => Some(entry),
        _ => None,
    });
    match opened {
        Some(entry) => describe(&mut line, entry),
        None => line.details = open.path.clone().unwrap_or_default(),
    }
    if let Some(src) = open.src_fd {
        let from = match open.syscall {
            crate::events::Syscall::Accept | crate::events::Syscall::Accept4 => format!("on fd {src}"),
            _ => format!("from fd {src}"),
        };
        line.details = format!("{} ({from})", line.details).trim_start().to_string();
    }
    if open.missed_entry {
        line.details.push_str(" [entry not seen: started before attach]");
    }
    line
}

fn close_line(base: &Line, entry: &FdEntry, cause: CloseCause) -> Line {
    let mut line =
        Line { event: "close".into(), fd: Some(entry.fd), cause: Some(cause.name()), ..base.clone() };
    describe(&mut line, entry);
    if cause != CloseCause::Close {
        line.details = format!("{} ({})", line.details, cause.name()).trim_start().to_string();
    }
    line
}

/// Fills kind, protocol, addresses and path from what the ledger knows.
fn describe(line: &mut Line, entry: &FdEntry) {
    line.kind = Some(entry.kind.name());
    let d = &entry.desc;
    line.proto = d.sock.map(|s| s.label());
    line.local = d.local.as_ref().map(Addr::to_string).or(line.local.take());
    line.remote = d.remote.as_ref().map(Addr::to_string).or(line.remote.take());
    line.path = d.path.clone();
    let mut parts: Vec<String> = vec![];
    if let Some(p) = &line.proto {
        parts.push(p.clone());
    }
    match (&line.local, &line.remote) {
        (Some(l), Some(r)) => parts.push(format!("{l} -> {r}")),
        (Some(l), None) => parts.push(l.clone()),
        (None, Some(r)) => parts.push(format!("-> {r}")),
        (None, None) => {}
    }
    if d.listening {
        parts.push("listening".into());
    }
    if let Some(p) = &d.path {
        parts.push(p.clone());
    }
    line.details = parts.join(" ");
}

fn exit_status(code: u32) -> String {
    // wait(2) encoding: signal in the low 7 bits, exit status above.
    match code & 0x7f {
        0 => format!("exit status {}", (code >> 8) & 0xff),
        sig => format!("killed by signal {sig}"),
    }
}

/// "EMFILE" for 24.
pub fn errno_name(errno: i64) -> String {
    fdtrace_common::syscall::consts::errno_name(errno)
        .map_or_else(|| format!("errno {errno}"), str::to_string)
}

fn errno_text(errno: i64) -> String {
    let text = io::Error::from_raw_os_error(errno as i32).to_string();
    let text = text.split(" (os error").next().unwrap_or(&text).to_string();
    format!("{} ({text})", errno_name(errno))
}

/// Writes lines as text columns or JSON.
pub struct Printer<W: Write> {
    out: W,
    format: Format,
    clock: Clock,
    header_done: bool,
}

impl<W: Write> Printer<W> {
    pub fn new(out: W, format: Format, clock: Clock) -> Self {
        Printer { out, format, clock, header_done: false }
    }

    /// Prints the lines of one event that `keep` keeps.
    pub fn event(&mut self, ev: &Event, effects: &[Effect], keep: impl Fn(&Line) -> bool) -> io::Result<()> {
        for line in lines(ev, effects, &self.clock).into_iter().filter(|l| keep(l)) {
            self.line(&line)?;
        }
        Ok(())
    }

    fn line(&mut self, line: &Line) -> io::Result<()> {
        match self.format {
            Format::Json => {
                serde_json::to_writer(&mut self.out, line)?;
                writeln!(self.out)
            }
            Format::Text => {
                if !self.header_done {
                    self.header_done = true;
                    writeln!(
                        self.out,
                        "{:<12} {:<15} {:<15} {:<12} {:>5} {:<8} DETAILS",
                        "TIME", "PID/TID", "COMM", "EVENT", "FD", "KIND"
                    )?;
                }
                let fd = match (line.fd, line.fd2) {
                    (Some(a), Some(b)) => format!("{a},{b}"),
                    (Some(a), None) => a.to_string(),
                    (None, _) => "-".into(),
                };
                writeln!(
                    self.out,
                    "{:<12} {:<15} {:<15} {:<12} {:>5} {:<8} {}",
                    self.clock.time_of_day(line.ts_ns),
                    format!("{}/{}", line.pid, line.tid),
                    line.comm,
                    line.event,
                    fd,
                    line.kind.unwrap_or("-"),
                    line.details
                )
            }
        }
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
