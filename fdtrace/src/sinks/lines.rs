//! `--events`: one line per event as it happens, as text for people or JSON
//! lines for machines (`"type":"event"`).
//!
//! Lines are built from the event and what the ledger says it changed, so a
//! `close` names what it closed, and implicit closes (dup2 over an open fd,
//! close-on-exec) get lines of their own. A [`Line`] is typed (kinds,
//! addresses, states, errnos): `--kind/--port/--remote/--state` match it
//! before anything is rendered, and only the lines kept become text.
use std::io::{self, Write};

use serde::{Deserialize, Serialize};

use super::{Applied, Sink};
use crate::{
    clock::Clock,
    events::{
        Addr, Body, Comm, Event, FdKind, Open, SockOp, SockSource, SockSpec, StackId, Syscall, TcpState,
    },
    filter::{Facts, Filter},
    ledger::{CloseCause, Effect, FdEntry, Ledger},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// One line of output, before it is rendered.
#[derive(Debug, Clone, PartialEq)]
pub struct Line<'a> {
    /// CLOCK_MONOTONIC ns, as stamped in the kernel.
    pub ts_ns: u64,
    pub pid: u32,
    pub tid: u32,
    pub comm: Comm,
    /// The syscall for fd-creating events (socket, accept4, openat, pipe2,
    /// dup2, fcntl_dupfd, ...), or close, close_range, connect, bind,
    /// listen, cloexec, fork, exec, exit, tcp_connect, tcp_close,
    /// tcp_state.
    pub event: &'static str,
    pub fd: Option<i32>,
    /// Second fd of pipe/socketpair.
    pub fd2: Option<i32>,
    pub kind: Option<FdKind>,
    /// For sockets.
    pub proto: Option<SockSpec>,
    pub local: Option<&'a Addr>,
    pub remote: Option<&'a Addr>,
    pub path: Option<&'a str>,
    /// dup source, accept's listening fd.
    pub src_fd: Option<i32>,
    pub cloexec: Option<bool>,
    /// Raw return value for syscalls.
    pub ret: Option<i64>,
    /// The errno when the call failed.
    pub errno: Option<i64>,
    /// Why an fd went: close, close_range, replaced, close-on-exec.
    pub cause: Option<CloseCause>,
    /// fork: the child pid.
    pub child: Option<u32>,
    /// exit: fds the process still had open.
    pub open_at_exit: Option<usize>,
    pub exit_code: Option<u32>,
    /// TCP state (socket state events).
    pub state: Option<TcpState>,
    /// Stack map id of an fd-creating event.
    pub stack_id: Option<u32>,
    /// What the text format says in its last column.
    pub detail: Detail<'a>,
}

/// The text format's last column, kept typed until a line is printed.
#[derive(Debug, Clone, PartialEq)]
pub enum Detail<'a> {
    /// What the fd is (protocol, addresses, "listening", path), then why it
    /// went (`cause`, unless a plain close), where it came from, and
    /// whether the syscall's entry was missed.
    Fd {
        listening: bool,
        from: Option<From>,
        missed_entry: bool,
    },
    /// An open the ledger did not record: its path, if any.
    Unrecorded {
        path: Option<&'a str>,
        from: Option<From>,
        missed_entry: bool,
    },
    /// A close of an fd the ledger did not hold.
    UnknownFd,
    /// A failed fd-creating call.
    Failed {
        path: Option<&'a str>,
        errno: i64,
    },
    CloseRange {
        first: u32,
        last: u32,
        marks: bool,
        closed: usize,
    },
    /// connect/bind/listen: what the line's addresses say, with `ret`.
    SockCall {
        op: SockOp,
    },
    Cloexec(bool),
    Fork {
        child: u32,
        shares_files: bool,
        followed: bool,
    },
    Exec(&'a str),
    SockState {
        source: SockSource,
        old: Option<TcpState>,
        new: Option<TcpState>,
    },
    Exit {
        code: u32,
        open: usize,
    },
}

/// Where a new fd came from: `from fd N` (dup), `on fd N` (accept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct From {
    pub fd: i32,
    pub accepted: bool,
}

impl<'a> Line<'a> {
    fn new(ev: &Event, event: &'static str, detail: Detail<'a>) -> Line<'a> {
        Line {
            ts_ns: ev.ts_ns,
            pid: ev.tgid,
            tid: ev.tid,
            comm: ev.comm,
            event,
            fd: None,
            fd2: None,
            kind: None,
            proto: None,
            local: None,
            remote: None,
            path: None,
            src_fd: None,
            cloexec: None,
            ret: None,
            errno: None,
            cause: None,
            child: None,
            open_at_exit: None,
            exit_code: None,
            state: None,
            stack_id: None,
            detail,
        }
    }

    /// Takes what the ledger knows of the fd: kind, protocol, addresses
    /// (the ledger's, else the line's own), path.
    fn describe(&mut self, entry: &'a FdEntry) {
        let d = &entry.desc;
        self.kind = Some(entry.kind);
        self.proto = d.sock;
        self.local = d.local().or(self.local);
        self.remote = d.remote().or(self.remote);
        self.path = d.path.as_deref();
    }

    /// Whether the line passes `--kind`/`--port`/`--remote`/`--state`.
    /// Lines about processes (fork, exec, exit) always do; a line's socket
    /// state is the last one the kernel reported for its fd.
    pub fn shown(&self, filter: &Filter, ledger: &Ledger, effects: &[Effect]) -> bool {
        if *filter == Filter::default() || matches!(self.event, "fork" | "exec" | "exit") {
            return true;
        }
        let state = self.state.or_else(|| {
            let fd = self.fd?;
            let closed = effects.iter().find_map(|e| match e {
                Effect::Closed { tgid, entry, .. } if *tgid == self.pid && entry.fd == fd => Some(entry),
                _ => None,
            });
            let entry = ledger.entry(self.pid, fd).or(closed)?;
            entry.desc.state.or(entry.desc.listening.then_some(TcpState::Listen))
        });
        filter.matches(&Facts { kind: self.kind, local: self.local, remote: self.remote, state })
    }
}

/// Builds the lines for one event.
pub fn lines<'a>(ev: &'a Event, effects: &'a [Effect]) -> Vec<Line<'a>> {
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
                out.push(close_line(ev, entry, CloseCause::Replaced));
            }
            out.push(open_line(ev, open, effects));
        }
        Body::Close { fd } => {
            let mut line = Line::new(ev, "close", Detail::UnknownFd);
            (line.fd, line.cause) = (Some(*fd), Some(CloseCause::Close));
            if let Some(entry) = closed(CloseCause::Close).next() {
                line.describe(entry);
                line.detail = Detail::Fd { listening: entry.desc.listening, from: None, missed_entry: false };
            }
            out.push(line);
        }
        Body::CloseRange { first, last, flags } => {
            let marks = flags & fdtrace_common::syscall::consts::CLOSE_RANGE_CLOEXEC != 0;
            let closed_n = closed(CloseCause::CloseRange).count();
            let detail = Detail::CloseRange { first: *first, last: *last, marks, closed: closed_n };
            out.push(Line::new(ev, "close_range", detail));
            for entry in closed(CloseCause::CloseRange) {
                out.push(close_line(ev, entry, CloseCause::CloseRange));
            }
        }
        Body::Sock(call) => {
            let event = match call.op {
                SockOp::Connect => "connect",
                SockOp::Bind => "bind",
                SockOp::Listen => "listen",
            };
            let mut line = Line::new(ev, event, Detail::SockCall { op: call.op });
            (line.fd, line.kind, line.ret) = (Some(call.fd), Some(FdKind::Socket), Some(call.ret));
            // The kernel's view after the call, else what the call carried.
            line.local = call.local.as_ref();
            line.remote = call.remote.as_ref();
            match call.op {
                SockOp::Connect if line.remote.is_none() => line.remote = call.addr.as_ref(),
                SockOp::Bind if line.local.is_none() => line.local = call.addr.as_ref(),
                _ => {}
            }
            if !succeeded(call.op, call.ret) {
                line.errno = Some(-call.ret);
            }
            out.push(line);
        }
        Body::SetCloexec { fd, cloexec } => {
            let mut line = Line::new(ev, "cloexec", Detail::Cloexec(*cloexec));
            (line.fd, line.cloexec) = (Some(*fd), Some(*cloexec));
            out.push(line);
        }
        Body::Fork { child, shares_files, followed } => {
            let detail = Detail::Fork { child: *child, shares_files: *shares_files, followed: *followed };
            let mut line = Line::new(ev, "fork", detail);
            line.child = Some(*child);
            out.push(line);
        }
        Body::Exec { filename, .. } => {
            let mut line = Line::new(ev, "exec", Detail::Exec(filename));
            line.path = Some(filename);
            out.push(line);
            for entry in closed(CloseCause::Exec) {
                out.push(close_line(ev, entry, CloseCause::Exec));
            }
        }
        // Pairing mode's bookkeeping, which never runs with --events.
        Body::NewSite(_) | Body::Paired { .. } => {}
        Body::SockState(change) => {
            let detail = Detail::SockState { source: change.source, old: change.old, new: change.new };
            let mut line = Line::new(ev, change.source.name(), detail);
            (line.fd, line.kind) = (change.fd, Some(FdKind::Socket));
            (line.local, line.remote, line.state) =
                (change.local.as_ref(), change.remote.as_ref(), change.new);
            out.push(line);
        }
        Body::Exit { code } => {
            let open = closed(CloseCause::Exit).count();
            let mut line = Line::new(ev, "exit", Detail::Exit { code: *code, open });
            (line.exit_code, line.open_at_exit) = (Some(*code), Some(open));
            out.push(line);
        }
    }
    out
}

/// Whether a connect/bind/listen did what it was asked (a non-blocking
/// connect in progress has).
fn succeeded(op: SockOp, ret: i64) -> bool {
    ret == 0 || (op == SockOp::Connect && ret == -fdtrace_common::syscall::consts::EINPROGRESS)
}

fn open_line<'a>(ev: &'a Event, open: &'a Open, effects: &'a [Effect]) -> Line<'a> {
    // fcntl(F_DUPFD*) is a dup: say so.
    let event = match open.syscall {
        Syscall::Fcntl => "fcntl_dupfd",
        other => other.name(),
    };
    let mut line = Line::new(ev, event, Detail::UnknownFd);
    (line.fd, line.fd2, line.src_fd) = (open.fd, open.fd2, open.src_fd);
    (line.ret, line.cloexec, line.kind) = (Some(open.ret), Some(open.cloexec), open.kind());
    if let StackId::Id(id) = open.stack.id {
        line.stack_id = Some(id);
    }
    if open.ret < 0 {
        line.errno = Some(-open.ret);
        line.path = open.path.as_deref();
        line.detail = Detail::Failed { path: open.path.as_deref(), errno: -open.ret };
        return line;
    }
    let from = open
        .src_fd
        .map(|fd| From { fd, accepted: matches!(open.syscall, Syscall::Accept | Syscall::Accept4) });
    // The ledger's entry knows what a dup'd fd refers to.
    let opened = effects.iter().find_map(|e| match e {
        Effect::Opened { entry, .. } if Some(entry.fd) == open.fd => Some(entry),
        _ => None,
    });
    line.detail = match opened {
        Some(entry) => {
            line.describe(entry);
            Detail::Fd { listening: entry.desc.listening, from, missed_entry: open.missed_entry }
        }
        None => Detail::Unrecorded { path: open.path.as_deref(), from, missed_entry: open.missed_entry },
    };
    line
}

fn close_line<'a>(ev: &Event, entry: &'a FdEntry, cause: CloseCause) -> Line<'a> {
    let mut line = Line::new(
        ev,
        "close",
        Detail::Fd { listening: entry.desc.listening, from: None, missed_entry: false },
    );
    (line.fd, line.cause) = (Some(entry.fd), Some(cause));
    line.describe(entry);
    line
}

/// The last column of the text format.
fn details(line: &Line) -> String {
    let addr = |a: Option<&Addr>| a.map(Addr::to_string).unwrap_or_default();
    match &line.detail {
        Detail::Fd { listening, from, missed_entry } => {
            let mut d = describe(line, *listening);
            if let Some(cause) = line.cause.filter(|c| *c != CloseCause::Close) {
                d = format!("{d} ({})", cause.name()).trim_start().to_string();
            }
            suffixed(d, *from, *missed_entry)
        }
        Detail::Unrecorded { path, from, missed_entry } => {
            suffixed(path.unwrap_or_default().to_string(), *from, *missed_entry)
        }
        Detail::UnknownFd => "(fd not known to fdtrace)".into(),
        Detail::Failed { path: Some(p), errno } => format!("{p} failed: {}", errno_text(*errno)),
        Detail::Failed { path: None, errno } => format!("failed: {}", errno_text(*errno)),
        Detail::CloseRange { first, last, marks, closed } => {
            let range = if *last == u32::MAX { format!("{first}..max") } else { format!("{first}..{last}") };
            match marks {
                true => format!("fds {range}: marked close-on-exec"),
                false => format!("fds {range}: closed {closed}"),
            }
        }
        Detail::SockCall { op } => {
            let ret = line.ret.unwrap_or_default();
            let target = match op {
                SockOp::Connect => addr(line.remote),
                SockOp::Bind | SockOp::Listen => addr(line.local),
            };
            match (op, succeeded(*op, ret)) {
                (SockOp::Connect, true) => format!(
                    "{} -> {target}{}",
                    addr(line.local),
                    if ret != 0 { " (in progress)" } else { "" }
                )
                .trim_start()
                .to_string(),
                (SockOp::Bind, true) => format!("bound {target}"),
                (SockOp::Listen, true) => format!("listening on {target}").trim_end().to_string(),
                (_, false) => format!("{target} failed: {}", errno_text(-ret)).trim_start().to_string(),
            }
        }
        Detail::Cloexec(true) => "close-on-exec set".into(),
        Detail::Cloexec(false) => "close-on-exec cleared".into(),
        Detail::Fork { child, shares_files, followed } => format!(
            "child {child}{}{}",
            if *shares_files { " (shares the fd table)" } else { "" },
            if *followed { ", followed" } else { "" }
        ),
        Detail::Exec(filename) => filename.to_string(),
        Detail::SockState { source, old, new } => {
            let or_unknown = |a: Option<&Addr>| a.map_or_else(|| "?".to_string(), Addr::to_string);
            let state = |s: Option<TcpState>| s.map_or("?", TcpState::name);
            let addrs = format!("{} -> {}", or_unknown(line.local), or_unknown(line.remote));
            match source {
                SockSource::TcpConnect => format!("{addrs} (SYN out)"),
                SockSource::TcpClose => format!("{addrs}, closed in {}", state(*new)),
                SockSource::SetState => format!("{addrs} {} -> {}", state(*old), state(*new)),
            }
        }
        Detail::Exit { code, open } => format!("{}, {open} fds open at exit", exit_status(*code)),
    }
}

/// Protocol, addresses, "listening", path.
fn describe(line: &Line, listening: bool) -> String {
    let mut parts: Vec<String> = vec![];
    if let Some(p) = &line.proto {
        parts.push(p.label());
    }
    match (line.local, line.remote) {
        (Some(l), Some(r)) => parts.push(format!("{l} -> {r}")),
        (Some(l), None) => parts.push(l.to_string()),
        (None, Some(r)) => parts.push(format!("-> {r}")),
        (None, None) => {}
    }
    if listening {
        parts.push("listening".into());
    }
    if let Some(p) = line.path {
        parts.push(p.to_string());
    }
    parts.join(" ")
}

/// `text (from fd N)` and ` [entry not seen ...]`.
fn suffixed(text: String, from: Option<From>, missed_entry: bool) -> String {
    let mut text = match from {
        Some(From { fd, accepted: true }) => format!("{text} (on fd {fd})").trim_start().to_string(),
        Some(From { fd, accepted: false }) => format!("{text} (from fd {fd})").trim_start().to_string(),
        None => text,
    };
    if missed_entry {
        text.push_str(" [entry not seen: started before attach]");
    }
    text
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

/// An event line as JSON (`--events --format json`): the field order and
/// names are the documented schema (pinned by `golden/events.jsonl`). Reads
/// back with serde too (tests, the bench).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventLine {
    /// Always "event".
    #[serde(rename = "type")]
    pub ty: String,
    /// RFC 3339 UTC.
    pub time: String,
    /// CLOCK_MONOTONIC ns, as stamped in the kernel.
    pub ts_ns: u64,
    pub pid: u32,
    pub tid: u32,
    pub comm: String,
    /// See [`Line::event`].
    pub event: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fd: Option<i32>,
    /// Second fd of pipe/socketpair.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fd2: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "crate::events::named::option")]
    pub kind: Option<FdKind>,
    /// tcp, udp6, unix-stream, ... for sockets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proto: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// dup source, accept's listening fd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_fd: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloexec: Option<bool>,
    /// Raw return value for syscalls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ret: Option<i64>,
    /// errno name when the call failed (EMFILE, ECONNREFUSED, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why an fd went.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "crate::events::named::option")]
    pub cause: Option<CloseCause>,
    /// fork: the child pid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child: Option<u32>,
    /// exit: fds the process still had open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_at_exit: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<u32>,
    /// TCP state (socket state events).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "crate::events::named::option")]
    pub state: Option<TcpState>,
    /// Stack map id of an fd-creating event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack_id: Option<u32>,
}

impl EventLine {
    fn of(line: &Line, clock: &Clock) -> EventLine {
        EventLine {
            ty: "event".into(),
            time: clock.rfc3339(line.ts_ns),
            ts_ns: line.ts_ns,
            pid: line.pid,
            tid: line.tid,
            comm: line.comm.to_string(),
            event: line.event.into(),
            fd: line.fd,
            fd2: line.fd2,
            kind: line.kind,
            proto: line.proto.map(|p| p.label()),
            local: line.local.map(Addr::to_string),
            remote: line.remote.map(Addr::to_string),
            path: line.path.map(String::from),
            src_fd: line.src_fd,
            cloexec: line.cloexec,
            ret: line.ret,
            error: line.errno.map(errno_name),
            cause: line.cause,
            child: line.child,
            open_at_exit: line.open_at_exit,
            exit_code: line.exit_code,
            state: line.state,
            stack_id: line.stack_id,
        }
    }
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

    pub fn line(&mut self, line: &Line) -> io::Result<()> {
        match self.format {
            Format::Json => {
                serde_json::to_writer(&mut self.out, &EventLine::of(line, &self.clock))?;
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
                    line.kind.map_or("-", FdKind::name),
                    details(line)
                )
            }
        }
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// The `--events` sink: the lines of every event that pass the filter.
pub struct Lines<W: Write> {
    printer: Printer<W>,
    filter: Filter,
}

impl<W: Write> Lines<W> {
    pub fn new(printer: Printer<W>, filter: Filter) -> Self {
        Lines { printer, filter }
    }
}

impl<W: Write> Sink for Lines<W> {
    fn wants_events(&self) -> bool {
        true
    }

    fn event(&mut self, a: &Applied) -> io::Result<()> {
        for line in lines(a.event, a.effects) {
            if line.shown(&self.filter, a.ledger, a.effects) {
                self.printer.line(&line)?;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.printer.flush()
    }
}
