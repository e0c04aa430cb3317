//! The events of a session, whole: records from the [`Ring`], decoded,
//! with inline stacks joined to their events; and the [`StackTable`] that
//! turns the stacks they name into frames.
//!
//! In pairing mode the fds the kernel kept join the stream here, as opens
//! ([`super::Open::adopted`]) stamped with when they were opened, and the
//! closes it paired as [`Body::Paired`] counts:
//! - at a record after which the kernel's entries no longer say what a
//!   table holds (a followed fork, an exec, a close_range, an exit), every
//!   kept fd is taken, and those opened before the record go before it;
//!   then the kernel may pair that process's fds again;
//! - whenever the session asks ([`Source::take`]: before a report, before
//!   `/proc` is read, once a second so the kernel's map does not fill).
//!
//! A take can find the fds of a child whose fork record is still in the
//! ring behind the barrier being handled (a parent that forks twice,
//! quickly, and a child that opens at once): those wait, and go right
//! after that record.
use std::{
    collections::{HashMap, HashSet},
    io,
};

use aya::maps::{MapData, RingBuf};
use log::warn;

use fdtrace_common::{FdKey, Kept};

use super::{
    assemble::{Assembler, KernelStacks, StackTable},
    decode::{self, decode, DecodeError},
    kept::KernelFds,
    ring::Ring,
    Body, Event,
};

pub struct Source {
    ring: Ring,
    assembler: Assembler,
    stacks: StackTable,
    /// Pairing mode: the kernel's kept fds.
    kernel: Option<Kernel>,
    /// Records that did not decode (a bug if ever non-zero).
    pub decode_errors: u64,
}

/// The kernel's kept fds, and what fdtrace knows about pairing them.
struct Kernel {
    fds: KernelFds,
    /// Processes that share a table with another (never paired again).
    shared: HashSet<u32>,
    /// Processes the session holds ([`Source::hold`]): a barrier does not
    /// resume them.
    held: HashSet<u32>,
    /// Taking failed (logged once).
    failed: bool,
    /// Processes the session knows: the targets, the children of followed
    /// forks and the programs `--comm` starts tracing at exec, as their
    /// records went by. The kernel traces no other process.
    known: HashSet<u32>,
    /// What was taken of a process before its fork record went by.
    early: HashMap<u32, Vec<Event>>,
}

impl Source {
    /// Reads `ring`; `stacks` is the kernel's stack map, if stacks are
    /// captured; `kernel` its kept fds, in pairing mode.
    pub fn new(
        ring: RingBuf<MapData>,
        stacks: KernelStacks,
        kernel: Option<KernelFds>,
    ) -> io::Result<Source> {
        Ok(Source {
            ring: Ring::new(ring)?,
            assembler: Assembler::default(),
            stacks: StackTable::new(stacks),
            kernel: kernel.map(|fds| Kernel {
                fds,
                shared: HashSet::new(),
                held: HashSet::new(),
                failed: false,
                known: HashSet::new(),
                early: HashMap::new(),
            }),
            decode_errors: 0,
        })
    }

    /// Records received so far (events and inline stacks).
    pub fn records(&self) -> u64 {
        self.ring.records
    }

    /// Whether the kernel pairs fds (pairing mode).
    pub fn pairing(&self) -> bool {
        self.kernel.is_some()
    }

    /// fds taken from the kernel so far.
    pub fn taken(&self) -> u64 {
        self.kernel.as_ref().map_or(0, |k| k.fds.taken)
    }

    /// Waits for records, then hands each whole event to `f`, with the
    /// table its stacks resolve in. Returns how many records were read.
    pub async fn read(&mut self, mut f: impl FnMut(Event, &StackTable)) -> io::Result<usize> {
        let Source { ring, assembler, stacks, kernel, decode_errors } = self;
        ring.read(|bytes| deliver(bytes, assembler, stacks, kernel, decode_errors, &mut f)).await
    }

    /// Hands over whatever is in the ring now, without waiting.
    pub fn drain(&mut self, mut f: impl FnMut(Event, &StackTable)) -> usize {
        let Source { ring, assembler, stacks, kernel, decode_errors } = self;
        ring.drain(|bytes| deliver(bytes, assembler, stacks, kernel, decode_errors, &mut f))
    }

    /// Pairing mode: takes every fd the kernel keeps and the pairs it
    /// counted, and hands them to `f` (after what the ring holds now, which
    /// comes first). Returns how many fds were taken.
    pub fn take(&mut self, mut f: impl FnMut(Event, &StackTable)) -> usize {
        self.drain(&mut f);
        let Source { stacks, kernel, .. } = self;
        let Some(k) = kernel else { return 0 };
        let Taken { fds, order, pairs } = k.take_all();
        for ev in pairs.into_iter().chain(adopted(&fds, &order)) {
            k.hand(ev, stacks, &mut f);
        }
        order.len()
    }

    /// Pairing mode: stops the kernel pairing these processes' fds (while
    /// fdtrace holds its ledger against `/proc`) and takes what it kept.
    pub fn hold(&mut self, tgids: &[u32], f: impl FnMut(Event, &StackTable)) {
        if let Some(k) = &mut self.kernel {
            for &tgid in tgids {
                k.log(k.fds.hold(tgid));
                k.held.insert(tgid);
            }
        }
        self.take(f);
    }

    /// Pairing mode: `tgids` were added held (see `attach`): the next
    /// [`Source::resume`] lets the kernel pair their fds.
    pub fn added_held(&mut self, tgids: &[u32]) {
        if let Some(k) = &mut self.kernel {
            k.held.extend(tgids);
            k.known.extend(tgids);
        }
    }

    /// Lets the kernel pair the fds of the processes [`Source::hold`] held
    /// again.
    pub fn resume(&mut self) {
        if let Some(k) = &mut self.kernel {
            for tgid in std::mem::take(&mut k.held) {
                k.log(k.fds.resume(tgid, k.shared.contains(&tgid)));
            }
        }
    }
}

impl Kernel {
    /// Hands over a taken fd or pair count, or keeps it until its
    /// process's fork record goes by.
    fn hand(&mut self, ev: Event, stacks: &StackTable, f: &mut impl FnMut(Event, &StackTable)) {
        if self.known.contains(&ev.tgid) {
            f(ev, stacks);
        } else {
            self.early.entry(ev.tgid).or_default().push(ev);
        }
    }

    /// Every kept fd (in the order they were opened), and the new pair
    /// counts.
    fn take_all(&mut self) -> Taken {
        let fds = match self.fds.take() {
            Ok(fds) => fds,
            Err(e) => {
                self.warn_once(&e);
                vec![]
            }
        };
        // Sorting the events themselves (a stable sort, moving whole
        // events) was 14% of fdtrace's CPU taking 32,768 fds in a burst
        // (perf), and holding them all 11.6 MB of its peak (heaptrack):
        // this sorts 24-byte keys, and the events are made one at a time
        // as they are handed over.
        let mut order: Vec<Order> =
            fds.iter().enumerate().map(|(i, (key, k))| (k.opened_ns, key.tgid, key.fd, i as u32)).collect();
        order.sort_unstable();
        let pairs = match self.fds.new_pairs() {
            Ok(p) => p,
            Err(e) => {
                self.warn_once(&e);
                vec![]
            }
        };
        let pairs = pairs
            .into_iter()
            .map(|(s, count)| Event {
                ts_ns: 0,
                tgid: s.tgid,
                tid: 0,
                comm: Default::default(),
                body: Body::Paired {
                    site: decode::kernel_site(s.stack_id, s.caller_ip, s.go_spawn_stack, s.origin),
                    count,
                },
            })
            .collect();
        Taken { fds, order, pairs }
    }

    fn warn_once(&mut self, e: &io::Error) {
        if !self.failed {
            self.failed = true;
            warn!("taking the fds the kernel kept failed: {e}; the reports miss them");
        }
    }

    fn log(&self, r: io::Result<()>) {
        if let Err(e) = r {
            warn!("updating a traced process's pairing flags failed: {e}");
        }
    }

    /// A record after which the kernel's entries for its process no longer
    /// say what the table holds: the kept fds opened before it go before
    /// it, the rest after; then pairing resumes.
    fn barrier(&mut self, ev: Event, stacks: &StackTable, f: &mut impl FnMut(Event, &StackTable)) {
        let (tgid, at) = (ev.tgid, ev.ts_ns);
        let Taken { fds, order, pairs } = self.take_all();
        for p in pairs {
            self.hand(p, stacks, f);
        }
        let (before, after) = order.split_at(order.partition_point(|o| o.0 < at));
        for a in adopted(&fds, before) {
            self.hand(a, stacks, f);
        }
        let mut born = None;
        let resume = match ev.body {
            Body::Fork { child, shares_files, followed: true } => {
                if shares_files {
                    // The kernel stopped pairing both; say so again, in
                    // case a flag update of ours crossed its store.
                    self.shared.extend([tgid, child]);
                    self.log(self.fds.resume(child, true));
                }
                born = Some(child);
                Some(tgid)
            }
            Body::Exit { .. } => {
                self.fds.forget(tgid);
                self.known.remove(&tgid);
                self.early.remove(&tgid);
                None
            }
            _ => {
                // An exec that --comm starts tracing at announces its process.
                self.known.insert(tgid);
                Some(tgid)
            }
        };
        let exited = resume.is_none();
        f(ev, stacks);
        if let Some(child) = born {
            self.known.insert(child);
            for e in self.early.remove(&child).unwrap_or_default() {
                f(e, stacks);
            }
        }
        for a in adopted(&fds, after) {
            match exited && a.tgid == tgid {
                // Of the process that exited: the ledger no longer has it.
                true => f(a, stacks),
                false => self.hand(a, stacks, f),
            }
        }
        if let Some(tgid) = resume.filter(|t| !self.held.contains(t)) {
            self.log(self.fds.resume(tgid, self.shared.contains(&tgid)));
        }
    }
}

/// A kept fd's place in the order they were opened: (opened, tgid, fd,
/// index in the taken list).
type Order = (u64, u32, i32, u32);

/// What a take found.
struct Taken {
    fds: Vec<(FdKey, Kept)>,
    /// `fds` in the order they were opened.
    order: Vec<Order>,
    pairs: Vec<Event>,
}

/// The kept fds `order` names, as adopted opens, in that order.
fn adopted<'a>(fds: &'a [(FdKey, Kept)], order: &'a [Order]) -> impl Iterator<Item = Event> + 'a {
    order.iter().map(|&(.., i)| {
        let (key, k) = &fds[i as usize];
        decode::adopted(key.tgid, key.fd, k)
    })
}

/// Whether an event is a barrier for the kernel's kept fds (see
/// [`Kernel::barrier`]).
fn is_barrier(ev: &Event) -> bool {
    matches!(
        ev.body,
        Body::Fork { followed: true, .. } | Body::Exec { .. } | Body::CloseRange { .. } | Body::Exit { .. }
    )
}

fn deliver(
    bytes: &[u8],
    assembler: &mut Assembler,
    stacks: &mut StackTable,
    kernel: &mut Option<Kernel>,
    errors: &mut u64,
    f: &mut impl FnMut(Event, &StackTable),
) {
    match decode(bytes) {
        Ok(record) => {
            for event in assembler.push(record, stacks) {
                match kernel {
                    Some(k) if is_barrier(&event) => k.barrier(event, stacks, f),
                    _ => f(event, stacks),
                }
            }
        }
        Err(e) => {
            *errors += 1;
            log_decode_error(&e, *errors);
        }
    }
}

fn log_decode_error(e: &DecodeError, count: u64) {
    // The first few are worth seeing; after that, the count is in the summary.
    if count <= 5 {
        log::warn!("undecodable event record: {e}");
    }
}
