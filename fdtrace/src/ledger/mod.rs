//! The ledger: the live set of fds of every traced process, kept by
//! pairing decoded events. Pure: no aya, no `/proc` (callers pass what they
//! read), unit-tested without root.
//!
//! Semantics, in the order the kernel applies them:
//! - an fd lives from its install (socket, accept, open, pipe, dup, ...)
//!   until close, close_range, dup2/dup3 over it, exec (if close-on-exec)
//!   or the exit of the last process using the table;
//! - threads share their process's table; fork copies it, and
//!   `CLONE_FILES` shares it; exec unshares a shared table before closing
//!   the close-on-exec fds;
//! - an install on a number the ledger still holds replaces the old
//!   lifetime (dup2) — never merges two;
//! - fds open before attach come from `/proc/PID/fd` as pre-existing;
//!   events stamped before that scan refine those entries instead of
//!   replacing them.
mod entry;
mod fdmap;
mod skfds;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use fdtrace_common::syscall::consts::{CLOSE_RANGE_CLOEXEC, EINPROGRESS};

pub use entry::{CloseCause, FdDesc, FdEntry, Origin, Site};
use skfds::SkFds;

use crate::events::{Adopted, Body, Comm, Event, FdKind, Open, SockCall, SockOp, SockStateChange, Syscall};

/// What applying an event changed.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    Opened { tgid: u32, entry: FdEntry },
    Closed { tgid: u32, entry: FdEntry, cause: CloseCause, at_ns: u64 },
}

/// An fd found in `/proc/PID/fd`.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcFd {
    pub fd: i32,
    pub kind: FdKind,
    pub cloexec: bool,
    pub desc: FdDesc,
}

/// Counters kept per (process, site) for the report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StackCounts {
    pub opened: u64,
    pub closed: u64,
}

/// A traced process as the ledger knows it.
#[derive(Clone, Debug)]
pub struct Process {
    pub tgid: u32,
    pub comm: Comm,
    pub table: TableId,
    /// When fdtrace started following it.
    pub since_ns: u64,
}

/// A process that exited, with what it still had open.
#[derive(Clone, Debug)]
pub struct Exited {
    pub tgid: u32,
    pub comm: Comm,
    pub at_ns: u64,
    pub exit_code: u32,
    pub open_at_exit: Vec<FdEntry>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableId(u64);

#[derive(Clone, Debug, Default)]
struct Table {
    fds: fdmap::FdMap,
    /// Live processes using it.
    users: u32,
}

#[derive(Debug, Default)]
pub struct Ledger {
    procs: HashMap<u32, Process>,
    tables: HashMap<TableId, Table>,
    exited: Vec<Exited>,
    stacks: HashMap<(u32, Site), StackCounts>,
    next_table: u64,
    next_serial: u64,
    /// When each (process, fd number) last changed, for reconciliation.
    touched: HashMap<(u32, i32), u64>,
    /// Socket → the fds of a table that refer to it (dups share a socket).
    by_sk: HashMap<(TableId, u64), SkFds>,
    /// Events for processes the ledger does not follow.
    pub ignored_events: u64,
    /// Opens onto a number the ledger held open (dup2/dup3 aside): the
    /// kernel only hands out free numbers, so a close was missed.
    pub overwritten: u64,
    /// Pairing mode: closes of numbers the ledger did not hold, and when,
    /// by (process, fd): the fd may be one the kernel kept and fdtrace has
    /// not taken yet, which is then closed already.
    closed_unheld: HashMap<(u32, i32), u64>,
    /// Pairing mode: fds a taken fd closed (it was opened on their number
    /// later), and when, by (process, fd): for ring events older than the
    /// taken fd that still refer to them.
    displaced: HashMap<(u32, i32), (u64, FdEntry)>,
    /// Dups whose source the ledger did not hold, by (process, source fd):
    /// (the dup's fd, its serial, when). Filled in when the kernel's kept
    /// source is taken.
    unknown_sources: HashMap<(u32, i32), Vec<WaitingDup>>,
}

/// A dup waiting for its source: its fd, its serial, when it was made.
type WaitingDup = (i32, u64, u64);

/// At most this many dups wait for their source (beyond, they stay of
/// unknown kind).
const UNKNOWN_SOURCES_KEPT: usize = 4096;

impl Ledger {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts following `tgid` with the fds `/proc` showed at `scan_ns`.
    /// Events stamped before `scan_ns` refine these entries.
    pub fn add_process(&mut self, tgid: u32, comm: Comm, scan_ns: u64, fds: Vec<ProcFd>) {
        let table = self.new_table();
        for f in fds {
            let entry = FdEntry {
                serial: self.serial(),
                fd: f.fd,
                kind: f.kind,
                cloexec: f.cloexec,
                opened_ns: scan_ns,
                origin: Origin::PreExisting,
                tid: 0,
                stack: None,
                desc: f.desc,
                adopted: false,
            };
            self.insert(table, entry);
        }
        self.attach_process(tgid, comm, table, scan_ns);
    }

    pub fn process(&self, tgid: u32) -> Option<&Process> {
        self.procs.get(&tgid)
    }

    pub fn processes(&self) -> impl Iterator<Item = &Process> {
        self.procs.values()
    }

    /// The open fds of a live process, by number.
    pub fn open_fds(&self, tgid: u32) -> impl Iterator<Item = &FdEntry> {
        self.procs.get(&tgid).and_then(|p| self.tables.get(&p.table)).into_iter().flat_map(|t| t.fds.values())
    }

    /// Sets what the fd with `serial` refers to, if it is still open (its
    /// kind and description, as `/proc` shows them).
    pub fn refine(&mut self, tgid: u32, fd: i32, serial: u64, kind: FdKind, desc: FdDesc) {
        let Some(p) = self.procs.get(&tgid) else { return };
        let Some(t) = self.tables.get_mut(&p.table) else { return };
        if let Some(e) = t.fds.get_mut(&fd).filter(|e| e.serial == serial) {
            e.kind = kind;
            e.desc = FdDesc { sk: e.desc.sk, ..desc };
        }
    }

    /// Records the inode of the socket with `serial`, if it is still open
    /// (read from its `/proc` link once, not at every report).
    pub fn learn_inode(&mut self, tgid: u32, fd: i32, serial: u64, inode: u64) {
        let Some(p) = self.procs.get(&tgid) else { return };
        let Some(t) = self.tables.get_mut(&p.table) else { return };
        if let Some(e) = t.fds.get_mut(&fd).filter(|e| e.serial == serial) {
            e.desc.inode = Some(inode);
        }
    }

    /// The open fd `fd` of live process `tgid`.
    pub fn entry(&self, tgid: u32, fd: i32) -> Option<&FdEntry> {
        let p = self.procs.get(&tgid)?;
        self.tables.get(&p.table)?.fds.get(&fd)
    }

    pub fn exited(&self) -> &[Exited] {
        &self.exited
    }

    pub fn stack_counts(&self) -> &HashMap<(u32, Site), StackCounts> {
        &self.stacks
    }

    /// Applies one event; what changed is appended to `out`.
    pub fn apply(&mut self, ev: &Event, out: &mut Vec<Effect>) {
        let Some(proc) = self.procs.get_mut(&ev.tgid) else {
            self.ignored_events += 1;
            return;
        };
        if ev.comm.0[0] != 0 {
            proc.comm = ev.comm;
        }
        let (tgid, table) = (proc.tgid, proc.table);
        match &ev.body {
            Body::Open(open) => self.open(tgid, table, ev, open, out),
            Body::Close { fd } => {
                // A close stamped before a taken fd was opened is of an
                // earlier fd with its number, which the ledger never held.
                let stale = self.table_mut(table).fds.get(fd).is_some_and(|e| e.opened_after(ev.ts_ns));
                if !stale && !self.close(tgid, table, *fd, CloseCause::Close, ev.ts_ns, out) {
                    self.closed_unheld.insert((tgid, *fd), ev.ts_ns);
                }
            }
            Body::CloseRange { first, last, flags } => {
                // close_range fails (closing nothing) when first > last.
                if first > last {
                    return;
                }
                let (lo, hi) = (*first as i64, (*last).min(i32::MAX as u32) as i64);
                let at = ev.ts_ns;
                if flags & CLOSE_RANGE_CLOEXEC != 0 {
                    let t = self.table_mut(table);
                    for e in t.fds.range_mut(lo as i32..=hi as i32).filter(|e| !e.opened_after(at)) {
                        e.cloexec = true;
                    }
                } else {
                    let fds: Vec<i32> = self
                        .table_mut(table)
                        .fds
                        .range(lo as i32..=hi as i32)
                        .filter(|e| !e.opened_after(at))
                        .map(|e| e.fd)
                        .collect();
                    for fd in fds {
                        self.close(tgid, table, fd, CloseCause::CloseRange, ev.ts_ns, out);
                    }
                }
            }
            Body::Sock(call) => self.sock_call(table, call, ev.ts_ns),
            Body::SetCloexec { fd, cloexec } => {
                if let Some(e) = self.table_mut(table).fds.get_mut(fd).filter(|e| !e.opened_after(ev.ts_ns)) {
                    e.cloexec = *cloexec;
                }
            }
            Body::Fork { child, shares_files, followed } => {
                if *followed {
                    self.fork(table, *child, *shares_files, ev, out);
                }
            }
            Body::Exec { .. } => self.exec(tgid, table, ev.ts_ns, out),
            Body::Exit { code } => self.exit(tgid, *code, ev.ts_ns, out),
            Body::SockState(change) => self.sock_state(table, change),
            Body::NewSite(_) => {}
            Body::Paired { site, count } => {
                let c = self.stacks.entry((tgid, *site)).or_default();
                c.opened += count;
                c.closed += count;
            }
        }
    }

    fn open(&mut self, tgid: u32, table: TableId, ev: &Event, open: &Open, out: &mut Vec<Effect>) {
        if open.ret < 0 || open.reused_fd {
            return;
        }
        if let Some(kept) = &open.adopted {
            return self.adopt(tgid, table, ev, open, kept, out);
        }
        // dup2(fd, fd) changes nothing.
        if open.is_dup() && open.src_fd.is_some() && open.src_fd == open.fd {
            return;
        }
        let since_ns = self.procs.get(&tgid).map_or(0, |p| p.since_ns);
        let fds = [open.fd, open.fd2];
        for fd in fds.into_iter().flatten() {
            // The number is held by an fd the kernel kept, opened after
            // this: this one was closed before that (the kernel hands out
            // free numbers only), unseen in between.
            if self.table_mut(table).fds.get(&fd).is_some_and(|e| e.opened_after(ev.ts_ns)) {
                let c =
                    self.stacks.entry((tgid, Site { stack: open.stack, spawn: open.go_spawn })).or_default();
                c.opened += 1;
                c.closed += 1;
                continue;
            }
            // The dup family copies what the source refers to.
            let (kind, mut desc) = match (open.is_dup(), open.src_fd) {
                (true, Some(src)) => match self.source_at(tgid, table, src, ev.ts_ns) {
                    Some(s) => (s.kind, s.desc.clone()),
                    None => {
                        // Pairing mode: a source the kernel kept and
                        // fdtrace has not taken yet; filled in when it is.
                        log::debug!(
                            "{:?} of fd {src} into {fd} at {}: the source is unknown (yet)",
                            open.syscall,
                            ev.ts_ns
                        );
                        if self.unknown_sources.len() >= UNKNOWN_SOURCES_KEPT {
                            self.unknown_sources.clear();
                        }
                        let serial = self.next_serial + 1;
                        self.unknown_sources.entry((tgid, src)).or_default().push((fd, serial, ev.ts_ns));
                        (FdKind::Other, FdDesc::default())
                    }
                },
                (true, None) => (FdKind::Other, FdDesc::default()),
                (false, _) => (open.kind().unwrap_or(FdKind::Other), FdDesc::default()),
            };
            if !open.is_dup() {
                desc.path = open.path.clone();
                desc.sock = open.socket;
                desc = desc
                    .with_ends(open.local.clone(), open.remote.clone())
                    .with_go(open.go_spawn, open.go_transport);
                desc.sk = open.sk;
                if let (Syscall::Accept | Syscall::Accept4, Some(listener)) = (open.syscall, open.src_fd) {
                    let listener = self.table_mut(table).fds.get(&listener);
                    if desc.local().is_none() {
                        desc.set_local(listener.and_then(|l| l.desc.local().cloned()));
                    }
                    // An accepted socket has the listener's protocol.
                    desc.sock = listener.and_then(|l| l.desc.sock);
                }
            }
            // An event stamped before the /proc scan describes an fd the
            // scan may already hold: refine it rather than replace it.
            let refines = ev.ts_ns <= since_ns
                && self.table_mut(table).fds.get(&fd).is_some_and(|e| e.origin == Origin::PreExisting);
            if !refines {
                // (Before the scan the ledger's view is not complete yet.)
                let held = self.table_mut(table).fds.contains_key(&fd);
                if held && !matches!(open.syscall, Syscall::Dup2 | Syscall::Dup3) && ev.ts_ns > since_ns {
                    self.overwritten += 1;
                }
                self.close(tgid, table, fd, CloseCause::Replaced, ev.ts_ns, out);
            }
            let entry = FdEntry {
                serial: self.serial(),
                fd,
                kind,
                cloexec: open.cloexec,
                opened_ns: ev.ts_ns,
                origin: Origin::Syscall(open.syscall),
                tid: ev.tid,
                stack: Some(open.stack),
                desc,
                adopted: false,
            };
            if let Some(site) = entry.site() {
                self.stacks.entry((tgid, site)).or_default().opened += 1;
            }
            self.touched.insert((tgid, fd), ev.ts_ns);
            self.insert(table, entry.clone());
            out.push(Effect::Opened { tgid, entry });
        }
    }

    /// An fd the kernel kept since `ev.ts_ns`, taken now. What the ledger
    /// holds under its number, and the closes it saw, say whether it is
    /// still open: a close of the number after the open means it was
    /// closed; a held fd opened later means it was closed and the number
    /// reused; a held fd opened earlier was closed before this one opened.
    fn adopt(
        &mut self,
        tgid: u32,
        table: TableId,
        ev: &Event,
        open: &Open,
        kept: &Adopted,
        out: &mut Vec<Effect>,
    ) {
        let Some(fd) = open.fd else { return };
        let stack = Some(open.stack);
        let site = Site { stack: open.stack, spawn: open.go_spawn };
        let closed_since = self.closed_unheld.get(&(tgid, fd)).is_some_and(|&at| at >= ev.ts_ns);
        let since_ns = self.procs.get(&tgid).map_or(0, |p| p.since_ns);
        let held = self.table_mut(table).fds.get(&fd).map(|e| (e.opened_ns, e.origin));
        let newer_held = matches!(held, Some((at, origin)) if at > ev.ts_ns && origin != Origin::PreExisting);
        if closed_since || newer_held {
            // Opened and closed, both seen only by the kernel.
            self.closed_unheld.remove(&(tgid, fd));
            let c = self.stacks.entry((tgid, site)).or_default();
            c.opened += 1;
            c.closed += 1;
            return;
        }
        let refines = ev.ts_ns <= since_ns && matches!(held, Some((_, Origin::PreExisting)));
        if !refines && held.is_some() {
            // Ring events from before this open may still name the old fd
            // as a dup's source.
            if let Some(old) = self.table_mut(table).fds.get(&fd).cloned() {
                self.displaced.insert((tgid, fd), (ev.ts_ns, old));
            }
            self.close(tgid, table, fd, CloseCause::Close, ev.ts_ns, out);
        }
        let desc = FdDesc {
            path: open.path.clone(),
            sock: open.socket,
            listening: kept.listening,
            inode: None,
            sk: open.sk,
            state: kept.state,
            ..FdDesc::default()
        }
        .with_ends(open.local.clone(), open.remote.clone())
        .with_go(open.go_spawn, open.go_transport);
        let entry = FdEntry {
            serial: self.serial(),
            fd,
            kind: kept.kind,
            cloexec: open.cloexec,
            opened_ns: ev.ts_ns,
            origin: Origin::Syscall(open.syscall),
            tid: ev.tid,
            stack,
            desc,
            adopted: true,
        };
        self.stacks.entry((tgid, site)).or_default().opened += 1;
        self.touched.insert((tgid, fd), ev.ts_ns);
        // Dups of it the ring carried before it was taken: they refer to
        // what it refers to.
        for (dup, serial, at) in self.unknown_sources.remove(&(tgid, fd)).unwrap_or_default() {
            if at < ev.ts_ns {
                continue;
            }
            if let Some(d) = self.table_mut(table).fds.get_mut(&dup).filter(|d| d.serial == serial) {
                d.kind = entry.kind;
                d.desc = entry.desc.clone();
            }
        }
        self.insert(table, entry.clone());
        out.push(Effect::Opened { tgid, entry });
    }

    /// Forgets closes of unheld numbers from before `ns`: every fd the
    /// kernel kept by then has been taken since.
    pub fn forget_closes_before(&mut self, ns: u64) {
        self.closed_unheld.retain(|_, at| *at >= ns);
        self.displaced.retain(|_, (at, _)| *at >= ns);
    }

    /// The fd `src` referred to at `at_ns`: what the table holds, unless
    /// that was opened later (a kept fd taken before this older ring event
    /// was read), when it is the fd that one displaced.
    fn source_at(&mut self, tgid: u32, table: TableId, src: i32, at_ns: u64) -> Option<&FdEntry> {
        let later = self.table_mut(table).fds.get(&src).is_some_and(|e| e.opened_after(at_ns));
        if later {
            return self.displaced.get(&(tgid, src)).map(|(_, e)| e).filter(|e| e.opened_ns <= at_ns);
        }
        self.table_mut(table).fds.get(&src)
    }

    fn sock_call(&mut self, table: TableId, call: &SockCall, at: u64) {
        // Failed calls change nothing; a non-blocking connect in progress
        // already has its peer.
        if call.ret < 0 && !(call.op == SockOp::Connect && call.ret == -EINPROGRESS) {
            return;
        }
        let Some(e) = self.table_mut(table).fds.get_mut(&call.fd).filter(|e| !e.opened_after(at)) else {
            return;
        };
        // The kernel's view wins over the call's argument.
        match call.op {
            SockOp::Connect => e.desc.set_remote(call.remote.clone().or_else(|| call.addr.clone())),
            SockOp::Bind => e.desc.set_local(call.local.clone().or_else(|| call.addr.clone())),
            SockOp::Listen => e.desc.listening = true,
        }
        if call.local.is_some() {
            e.desc.set_local(call.local.clone());
        }
        let newly_indexed = e.desc.sk.is_none() && call.sk.is_some();
        if newly_indexed {
            e.desc.sk = call.sk;
            let (fd, sk) = (e.fd, call.sk.unwrap_or_default());
            self.by_sk.entry((table, sk)).or_default().push(fd);
        }
    }

    fn fork(&mut self, table: TableId, child: u32, shares: bool, ev: &Event, out: &mut Vec<Effect>) {
        // A pid seen before belongs to a process that is gone: the new one
        // starts a new life.
        if self.procs.contains_key(&child) {
            self.exit(child, 0, ev.ts_ns, out);
        }
        let child_table = if shares {
            table
        } else {
            let at = ev.ts_ns;
            let copy: Vec<FdEntry> =
                self.table_mut(table).fds.values().filter(|e| !e.opened_after(at)).cloned().collect();
            let t = self.new_table();
            for mut e in copy {
                e.serial = self.serial();
                // Where the parent's came from is unknown (open before the
                // trace, or found by reconciliation): the child's copy says
                // the same.
                if !matches!(e.origin, Origin::PreExisting | Origin::MissedOpen) {
                    e.origin = Origin::Inherited;
                }
                e.tid = 0;
                self.insert(t, e);
            }
            t
        };
        self.attach_process(child, ev.comm, child_table, ev.ts_ns);
    }

    fn exec(&mut self, tgid: u32, table: TableId, ts_ns: u64, out: &mut Vec<Effect>) {
        // execve unshares a shared table, then closes close-on-exec fds.
        let table = if self.table_mut(table).users > 1 {
            let copy: Vec<FdEntry> = self.table_mut(table).fds.values().cloned().collect();
            self.table_mut(table).users -= 1;
            let t = self.new_table();
            for e in copy {
                self.insert(t, e);
            }
            self.table_mut(t).users = 1;
            if let Some(p) = self.procs.get_mut(&tgid) {
                p.table = t;
            }
            t
        } else {
            table
        };
        let doomed: Vec<i32> = self
            .table_mut(table)
            .fds
            .values()
            .filter(|e| e.cloexec && !e.opened_after(ts_ns))
            .map(|e| e.fd)
            .collect();
        for fd in doomed {
            self.close(tgid, table, fd, CloseCause::Exec, ts_ns, out);
        }
    }

    fn exit(&mut self, tgid: u32, exit_code: u32, ts_ns: u64, out: &mut Vec<Effect>) {
        let Some(proc) = self.procs.remove(&tgid) else {
            return;
        };
        let table = self.table_mut(proc.table);
        table.users -= 1;
        // Still open at exit: the classic leak signal, kept for the report.
        let open_at_exit: Vec<FdEntry> = table.fds.values().cloned().collect();
        if table.users == 0 {
            let fds: Vec<i32> = table.fds.keys().collect();
            for fd in fds {
                self.close(tgid, proc.table, fd, CloseCause::Exit, ts_ns, out);
            }
            self.tables.remove(&proc.table);
        }
        self.exited.push(Exited { tgid, comm: proc.comm, at_ns: ts_ns, exit_code, open_at_exit });
    }

    /// Removes `fd` from a table, if the ledger holds it.
    fn close(
        &mut self,
        tgid: u32,
        table: TableId,
        fd: i32,
        cause: CloseCause,
        at_ns: u64,
        out: &mut Vec<Effect>,
    ) -> bool {
        let Some(entry) = self.remove(table, fd) else {
            return false;
        };
        if cause != CloseCause::MissedClose {
            self.touched.insert((tgid, fd), at_ns);
        }
        // Exit is not the program closing it: the fd counts as open at exit.
        if let (Some(site), false) = (entry.site(), cause == CloseCause::Exit) {
            self.stacks.entry((tgid, site)).or_default().closed += 1;
        }
        out.push(Effect::Closed { tgid, entry, cause, at_ns });
        true
    }

    /// Brings a process's table in line with `/proc/PID/fd` as scanned at
    /// `scan_ns`: entries the scan lacks were closed without the ledger
    /// seeing it (missed close); fds the scan has that the ledger lacks were
    /// opened unseen (missed open). Returns (missed opens, missed closes).
    ///
    /// fds touched by an event since `quiet_since_ns` are not judged: a
    /// syscall in flight during the scan (installed, exit event not yet
    /// sent) is not a miss. Call this a little after the scan, once its
    /// events are in, with `quiet_since_ns` a little before it.
    pub fn reconcile(
        &mut self,
        tgid: u32,
        scan_ns: u64,
        actual: &[i32],
        quiet_since_ns: u64,
        mut describe: impl FnMut(i32) -> Option<ProcFd>,
        out: &mut Vec<Effect>,
    ) -> (u64, u64) {
        let Some(table) = self.procs.get(&tgid).map(|p| p.table) else {
            return (0, 0);
        };
        self.touched.retain(|_, ts| *ts >= quiet_since_ns);
        let quiet = |touched: &HashMap<(u32, i32), u64>, fd: i32| !touched.contains_key(&(tgid, fd));
        let actual: std::collections::BTreeSet<i32> = actual.iter().copied().collect();
        let held: Vec<i32> = self.table_mut(table).fds.keys().collect();
        let gone: Vec<i32> =
            held.into_iter().filter(|fd| !actual.contains(fd) && quiet(&self.touched, *fd)).collect();
        let missed_close = gone.len() as u64;
        for fd in gone {
            self.close(tgid, table, fd, CloseCause::MissedClose, scan_ns, out);
        }
        let mut missed_open = 0;
        for &fd in &actual {
            if self.table_mut(table).fds.contains_key(&fd) || !quiet(&self.touched, fd) {
                continue;
            }
            // Closed again since the scan: nothing to add.
            let Some(f) = describe(fd) else { continue };
            missed_open += 1;
            let entry = FdEntry {
                serial: self.serial(),
                fd,
                kind: f.kind,
                cloexec: f.cloexec,
                opened_ns: scan_ns,
                origin: Origin::MissedOpen,
                tid: 0,
                stack: None,
                desc: f.desc,
                adopted: false,
            };
            self.insert(table, entry.clone());
            out.push(Effect::Opened { tgid, entry });
        }
        (missed_open, missed_close)
    }

    fn attach_process(&mut self, tgid: u32, comm: Comm, table: TableId, since_ns: u64) {
        self.table_mut(table).users += 1;
        self.procs.insert(tgid, Process { tgid, comm, table, since_ns });
    }

    /// Puts an entry in a table, keeping the socket index.
    fn insert(&mut self, table: TableId, entry: FdEntry) {
        if let Some(sk) = entry.desc.sk {
            self.by_sk.entry((table, sk)).or_default().push(entry.fd);
        }
        if let Some(old) = self.table_mut(table).fds.insert(entry.fd, entry) {
            self.unindex(table, &old);
        }
    }

    fn remove(&mut self, table: TableId, fd: i32) -> Option<FdEntry> {
        let entry = self.table_mut(table).fds.remove(&fd)?;
        self.unindex(table, &entry);
        Some(entry)
    }

    fn unindex(&mut self, table: TableId, entry: &FdEntry) {
        if let Some(sk) = entry.desc.sk {
            if let Some(fds) = self.by_sk.get_mut(&(table, sk)) {
                if fds.remove(entry.fd) {
                    self.by_sk.remove(&(table, sk));
                }
            }
        }
    }

    /// A socket's state or addresses changed: update every fd of the
    /// process that refers to it (by fd when the event names one).
    fn sock_state(&mut self, table: TableId, change: &SockStateChange) {
        let mut fds = self.by_sk.get(&(table, change.sk)).map(SkFds::to_vec).unwrap_or_default();
        if let Some(fd) = change.fd {
            if !fds.contains(&fd) {
                fds.push(fd);
            }
        }
        for fd in fds {
            let newly_indexed = {
                let Some(e) = self.table_mut(table).fds.get_mut(&fd) else { continue };
                if e.kind != FdKind::Socket {
                    continue;
                }
                if change.new.is_some() {
                    e.desc.state = change.new;
                }
                if change.local.is_some() {
                    e.desc.set_local(change.local.clone());
                }
                if change.remote.is_some() {
                    e.desc.set_remote(change.remote.clone());
                }
                let newly = e.desc.sk.is_none();
                e.desc.sk.get_or_insert(change.sk);
                newly
            };
            if newly_indexed {
                self.by_sk.entry((table, change.sk)).or_default().push(fd);
            }
        }
    }

    fn new_table(&mut self) -> TableId {
        self.next_table += 1;
        let id = TableId(self.next_table);
        self.tables.insert(id, Table::default());
        id
    }

    fn table_mut(&mut self, id: TableId) -> &mut Table {
        self.tables.entry(id).or_default()
    }

    fn serial(&mut self) -> u64 {
        self.next_serial += 1;
        self.next_serial
    }
}
