//! The path of one event: → [`Ledger`] (pairing) → stacks it brings
//! resolved while the process still exists → the sinks that want events.
use std::collections::BTreeMap;

use crate::{
    clock::monotonic_ns,
    events::{Body, Event, FdKind, MmapWatch, RawStacks, StackRef},
    host::procfs,
    ledger::{Effect, Ledger},
    sinks::{Applied, Sinks},
    symbolize::Stacks,
};

pub struct Pipeline {
    pub ledger: Ledger,
    pub stacks: Stacks,
    /// What the last event changed (kept to reuse its allocation).
    effects: Vec<Effect>,
    /// The processes the user named (or launched, or that matched
    /// `--comm`), in the order they joined.
    pub targets: Vec<u32>,
    /// `--comm`: processes the kernel adds at exec join the session.
    watch_comm: bool,
    /// The name the report header gives the session: the first target's,
    /// and after an exit the name of the process that exited last (a
    /// launched command is named after exec).
    pub comm: String,
    /// Host pid → pid in its own pid namespace, for the processes that
    /// joined in another pid namespace than fdtrace's (read from `/proc`
    /// when they join: a pid's namespace never changes).
    pub ns_pids: BTreeMap<u32, u32>,
    /// The kernel's records of the targets' mappings, for naming the
    /// stacks of processes that are gone by the time they are seen.
    pub mmaps: Option<MmapWatch>,
}

impl Pipeline {
    /// `ns_pids`: those of the targets.
    pub fn new(
        ledger: Ledger,
        targets: Vec<u32>,
        watch_comm: bool,
        comm: String,
        ns_pids: BTreeMap<u32, u32>,
    ) -> Pipeline {
        Pipeline {
            ledger,
            stacks: Stacks::new(),
            effects: Vec::new(),
            targets,
            watch_comm,
            comm,
            ns_pids,
            mmaps: None,
        }
    }

    /// Notes the namespace pid of a process that joined (or forgets the
    /// one of an earlier process with its pid).
    fn joined(&mut self, tgid: u32) {
        match procfs::ns_pid(tgid) {
            Some(n) => self.ns_pids.insert(tgid, n),
            None => self.ns_pids.remove(&tgid),
        };
    }

    /// Takes the mapping records the kernel wrote since the last call.
    pub fn sync_maps(&mut self) {
        sync_maps(&mut self.mmaps, &mut self.stacks);
    }

    pub fn event(&mut self, mut ev: Event, raw: &dyn RawStacks, sinks: &mut Sinks) {
        // Events from softirq context (TCP state changes) carry the
        // socket's owner but no thread: name it after the process.
        if ev.comm.0[0] == 0 {
            if let Some(p) = self.ledger.process(ev.tgid) {
                ev.comm = p.comm;
            }
        }
        self.effects.clear();
        // A place the kernel saw open its first fd: its stacks are named
        // now, while the process lives.
        if let Body::NewSite(site) = &ev.body {
            for stack in [Some(site.stack), site.spawn].into_iter().flatten() {
                resolve(&mut self.stacks, &mut self.mmaps, ev.tgid, stack, raw, ev.ts_ns);
            }
        }
        // A file the kernel kept: its path, which it does not read then.
        if let Body::Open(open) = &mut ev.body {
            let file = open.adopted.as_ref().is_some_and(|k| matches!(k.kind, FdKind::File | FdKind::Memfd));
            if let (true, None, Some(fd)) = (file, &open.path, open.fd) {
                open.path = procfs::fd_path(ev.tgid, fd);
            }
        }
        if matches!(ev.body, Body::Exec { .. }) && self.watch_comm && self.ledger.process(ev.tgid).is_none() {
            // Added by the kernel at this exec (--comm): its fds now are
            // what it kept across exec and what it opened since (events
            // stamped before the scan refine those).
            let scan_ns = monotonic_ns();
            let fds = procfs::list_fds(ev.tgid).unwrap_or_default();
            self.ledger.add_process(ev.tgid, ev.comm, scan_ns, fds);
            self.targets.push(ev.tgid);
            self.joined(ev.tgid);
        } else {
            self.ledger.apply(&ev, &mut self.effects);
        }
        // A followed child (-f): a child of `unshare --pid --fork` is the
        // first of a new namespace.
        if let Body::Fork { child, followed: true, .. } = ev.body {
            self.joined(child);
        }
        // Resolve new stacks now, while the process (and its maps) exist.
        for e in &self.effects {
            if let Effect::Opened { tgid, entry } = e {
                for stack in [entry.stack, entry.desc.go_spawn()].into_iter().flatten() {
                    resolve(&mut self.stacks, &mut self.mmaps, *tgid, stack, raw, entry.opened_ns);
                }
                // A dup whose source nobody saw (the kernel paired the
                // source's close while the dup was in flight, another
                // thread closing it): the fd itself says what it is.
                if entry.kind == FdKind::Other && entry.origin.is_dup() {
                    if let Some(f) = procfs::describe_fd(*tgid, entry.fd) {
                        self.ledger.refine(*tgid, entry.fd, entry.serial, f.kind, f.desc);
                    }
                }
            }
        }
        if let Body::Exit { .. } = ev.body {
            if let Some(e) = self.ledger.exited().last() {
                self.comm = e.comm.to_string();
            }
        }
        sinks.event(&Applied { event: &ev, effects: &self.effects, ledger: &self.ledger });
    }
}

fn sync_maps(mmaps: &mut Option<MmapWatch>, stacks: &mut Stacks) {
    if let Some(m) = mmaps {
        m.drain(|ev| stacks.mapped(ev));
    }
}

/// Names a stack captured at `at_ns`, if it is new, with the mappings
/// recorded up to now (the records of the mappings it was captured in are
/// in: they were written before the event that brought the stack).
fn resolve(
    stacks: &mut Stacks,
    mmaps: &mut Option<MmapWatch>,
    tgid: u32,
    stack: StackRef,
    raw: &dyn RawStacks,
    at_ns: u64,
) {
    if !stacks.known(tgid, stack) {
        sync_maps(mmaps, stacks);
        stacks.resolve(tgid, stack, raw, at_ns);
    }
}
