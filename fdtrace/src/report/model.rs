//! The report as fdtrace prints it in JSON (`--format json`, one object per
//! line, documented in the README and pinned by `golden/reports.jsonl`),
//! and reads back (tests, the bench): every type here serializes and
//! deserializes.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    events::{FdKind, TcpState},
    symbolize::Frame,
};

/// What the session knows of itself, for report headers.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SessionInfo {
    /// The first target (or 0, for `--comm` before any process matched).
    pub pid: u32,
    pub comm: String,
    /// When tracing started (CLOCK_MONOTONIC ns).
    pub started_ns: u64,
    pub tier: String,
    /// Hook family → the tier it runs on.
    pub hooks: BTreeMap<String, String>,
    /// What the session could not do (a Go binary without symbols...).
    pub notes: Vec<String>,
    /// How goroutine origins may be wrong: noted only in reports that
    /// show some.
    pub origin_notes: Vec<String>,
    /// The processes the user asked for, live or exited.
    pub targets: Vec<TargetInfo>,
    /// Host pid → pid in its own pid namespace, for the traced processes
    /// that run in another pid namespace than fdtrace (containers).
    pub ns_pids: BTreeMap<u32, u32>,
}

/// How complete the data is: what the kernel side and reconciliation
/// counted. Embedded in every report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Records received from the kernel.
    pub events: u64,
    /// Events the kernel dropped (see `lost_by_reason`).
    pub lost_events: u64,
    /// Why, when known: "ringbuf_full" (raise `--ringbuf-size`),
    /// "scratch_busy" (a program ran while another used the CPU's record
    /// buffer); non-zero reasons only, and absent when there are none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub lost_by_reason: BTreeMap<String, u64>,
    /// Events sent without their stack.
    pub stacks_failed: u64,
    /// Events the kernel side could only send in part, by reason:
    /// "missed_entry" (a syscall's entry was not seen), "read_failed"
    /// (user memory unreadable), "inflight_full", "targets_full"; non-zero
    /// reasons only.
    pub partial_events: BTreeMap<String, u64>,
    /// fds found in `/proc` that no event opened.
    pub missed_open: u64,
    /// fds the ledger held that `/proc` no longer had, and opens onto a
    /// number the ledger held open.
    pub missed_close: u64,
    /// What the kernel paired itself (report mode): absent when it paired
    /// nothing (`--events`, `--no-kernel-pairing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_pairing: Option<KernelPairing>,
}

/// Counts of the kernel's own pairing: these fds' events never went
/// through the ring.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelPairing {
    /// fds the kernel kept instead of sending their open.
    pub kept: u64,
    /// Of those, closed and counted in the kernel (open and close: no
    /// record, no userspace work).
    pub paired: u64,
    /// Kept fds fdtrace took from the kernel (still open when it looked,
    /// or at an exec, fork or exit).
    pub taken: u64,
    /// Opens sent through the ring after all (an inline stack, a dup of an
    /// fd fdtrace holds).
    pub sent: u64,
    /// Opens sent through the ring because the kernel's tables were full
    /// (raise nothing: nothing is lost, it only costs more).
    pub tables_full: u64,
}

impl Stats {
    /// No events lost and the ledger agreed with `/proc`.
    pub fn complete(&self) -> bool {
        self.lost_events == 0 && self.missed_open == 0 && self.missed_close == 0
    }

    /// What the lost events say to do, e.g. "ring buffer full: raise
    /// --ringbuf-size".
    pub fn loss_remedy(&self) -> String {
        let why: Vec<String> = self
            .lost_by_reason
            .iter()
            .map(|(reason, n)| match reason.as_str() {
                "ringbuf_full" => format!("{n} ring buffer full: raise --ringbuf-size"),
                "scratch_busy" => format!("{n} nested kernel programs"),
                other => format!("{n} {}", other.replace('_', " ")),
            })
            .collect();
        match why.as_slice() {
            [] => "raise --ringbuf-size".into(),
            // One reason: the count is the total already shown.
            [one] => one.split_once(' ').map_or(one.clone(), |(_, rest)| rest.to_string()),
            many => many.join("; "),
        }
    }
}

/// One report.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Report {
    /// Always "report".
    #[serde(rename = "type")]
    pub ty: String,
    pub pid: u32,
    pub comm: String,
    /// `pid` in its own pid namespace, when it runs in another one than
    /// fdtrace (a container); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ns_pid: Option<u32>,
    /// The processes asked for: every `-p`, the launched command, the
    /// processes `--comm` matched.
    pub targets: Vec<TargetInfo>,
    /// Every process in the report (the targets and followed children).
    pub pids: Vec<u32>,
    pub elapsed_s: f64,
    #[serde(rename = "final")]
    pub is_final: bool,
    pub tier: String,
    /// Hook family ("fd install", "fd close", "tcp connect", "tcp close")
    /// → "fentry", "kprobe" or "tracepoint".
    pub hooks: BTreeMap<String, String>,
    #[serde(flatten)]
    pub stats: Stats,
    /// No events lost and the ledger agreed with /proc.
    pub complete: bool,
    /// fds the traced processes had open (all kinds, all ages).
    pub open_fds: usize,
    /// fds counted as unclosed: of the reported kinds, older than min age.
    pub unclosed: usize,
    pub min_age_s: f64,
    /// The kinds counted (`["all"]` for every kind).
    pub kinds: Vec<String>,
    pub groups: Vec<Group>,
    /// Groups left out by `--top`.
    pub more_groups: usize,
    /// Groups `--suppress` left out, per rule that matched (absent
    /// without suppressions).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suppressed: Vec<Suppressed>,
    /// Traced processes that exited, with what they left open.
    pub exited: Vec<ExitInfo>,
    /// Limits of this session's view (see the README).
    pub notes: Vec<String>,
    /// The notes on goroutine origins, shown in `notes` when a group
    /// listed has one.
    #[serde(skip)]
    pub origin_notes: Vec<String>,
}

/// What one `--suppress` rule left out of a report.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Suppressed {
    pub rule: String,
    pub groups: usize,
    pub fds: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TargetInfo {
    pub pid: u32,
    pub comm: String,
    /// The pid in its own pid namespace, when that is not fdtrace's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ns_pid: Option<u32>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ExitInfo {
    pub pid: u32,
    pub comm: String,
    /// The pid in its own pid namespace, when that is not fdtrace's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ns_pid: Option<u32>,
    /// wait(2) status.
    pub status: u32,
    /// Every fd it had open when it exited.
    pub open_at_exit: usize,
    /// Of those, the ones the report counts (its kinds and filters; any
    /// age: an fd open at exit can never grow older), by kind ("tcp",
    /// "udp", "file"...), and from how many places (groups).
    #[serde(default)]
    pub unclosed: usize,
    #[serde(default)]
    pub unclosed_kinds: BTreeMap<String, usize>,
    #[serde(default)]
    pub places: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Group {
    /// Innermost first. Empty for the pseudo-groups named in `origin`.
    pub stack: Vec<Frame>,
    /// Go: the stack that started the goroutine that opened these fds
    /// (innermost first: the `go` statement's function), when it was
    /// followed. Node: the stack that asked for the socket (see
    /// `asynchronous`). Empty otherwise.
    pub spawned_by: Vec<Frame>,
    /// "stack", or for fds without a stack: "pre-existing" (open when
    /// fdtrace attached), "missed-open" (found by reconciliation),
    /// "not-captured", "failed: <why>".
    pub origin: String,
    /// Unclosed fds in this group now (older than min age).
    pub open: usize,
    /// Opened and closed by this stack during the trace.
    pub opened: u64,
    pub closed: u64,
    pub oldest_age_s: f64,
    /// Net opens per second over the trace.
    pub growth_per_s: f64,
    /// Kinds with counts; sockets by protocol (tcp, udp6, unix-stream...).
    pub kinds: BTreeMap<String, usize>,
    /// For sockets: peers with counts, most common first.
    pub peers: Vec<Peer>,
    /// Known leak patterns this group matches.
    pub findings: Vec<Finding>,
    /// For fds without a stack (open before fdtrace attached, or found in
    /// /proc): the groups, numbered from 1 as listed, whose sockets have
    /// the same peer and state: probably the same leak, from before.
    pub same_peers_as: Vec<usize>,
    pub fds: Vec<FdInfo>,
    /// Set when the stack holds none of the program's own code because the
    /// fds were opened from a runtime's event loop (Node's tick queue, a
    /// DNS callback): the code that asked for them ran earlier. For Node
    /// sockets `spawned_by` is then the stack that asked (where the
    /// socket's handle was made, `new TCP()` in `net.Socket.connect`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asynchronous: Option<AsyncOrigin>,
}

/// Where an asynchronous open came from.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AsyncOrigin {
    /// "node".
    pub runtime: String,
    /// The outermost frame of the runtime's own JavaScript: the event
    /// loop's entry (`processTicksAndRejections`, `onlookup`, ...).
    pub entry: Frame,
}

impl Group {
    /// Whether its fds were seen being opened (not pre-existing, missed,
    /// or without a stack).
    pub fn has_stack(&self) -> bool {
        self.origin == "stack"
    }
}

/// A known leak pattern, recognized from the group's evidence.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Finding {
    /// "http-transport-per-request", "http-bodies-not-closed".
    pub kind: String,
    /// What it means and what to do, for people.
    pub message: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Peer {
    pub remote: String,
    #[serde(default, with = "crate::events::named::option")]
    pub state: Option<TcpState>,
    pub count: usize,
    /// The least idle of these sockets has sent or received nothing for
    /// this long (when the kernel reports it).
    pub idle_s: Option<f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FdInfo {
    pub pid: u32,
    pub fd: i32,
    #[serde(with = "crate::events::named")]
    pub kind: FdKind,
    pub proto: Option<String>,
    pub local: Option<String>,
    pub remote: Option<String>,
    #[serde(default, with = "crate::events::named::option")]
    pub state: Option<TcpState>,
    pub path: Option<String>,
    pub age_s: f64,
    /// Seconds since it last sent or received data (TCP).
    pub idle_s: Option<f64>,
    /// Still open in a process that exited.
    pub at_exit: bool,
    /// Go: the `*http.Transport` that dialed it ("0xc000130000").
    pub http_transport: Option<String>,
}

/// How much of a report an output shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// At most this many groups.
    pub top: usize,
    /// At most this many fds listed per group.
    pub fds_per_group: usize,
}

impl Limits {
    /// Every group and every fd.
    pub const ALL: Limits = Limits { top: usize::MAX, fds_per_group: usize::MAX };
}

impl Report {
    /// The report as an output shows it: the first `top` groups (the rest
    /// counted in `more_groups`), each with its first `fds_per_group` fds;
    /// stackless groups point at the groups listed with the same peers,
    /// and the notes on goroutine origins stay when a group listed has one.
    pub fn limited(&self, limits: Limits) -> Report {
        let keep = self.groups.len().min(limits.top);
        let mut groups: Vec<Group> = self.groups[..keep]
            .iter()
            .map(|g| Group {
                stack: g.stack.clone(),
                spawned_by: g.spawned_by.clone(),
                origin: g.origin.clone(),
                kinds: g.kinds.clone(),
                peers: g.peers.clone(),
                findings: g.findings.clone(),
                same_peers_as: vec![],
                asynchronous: g.asynchronous.clone(),
                fds: g.fds[..g.fds.len().min(limits.fds_per_group)].to_vec(),
                ..*g
            })
            .collect();
        super::build::link_stackless(&mut groups);
        let any_spawn = groups.iter().any(|g| !g.spawned_by.is_empty());
        let mut notes: Vec<String> =
            self.notes.iter().filter(|n| !self.origin_notes.contains(n)).cloned().collect();
        if any_spawn {
            notes.extend(self.origin_notes.iter().cloned());
        }
        Report {
            ty: self.ty.clone(),
            comm: self.comm.clone(),
            targets: self.targets.clone(),
            pids: self.pids.clone(),
            tier: self.tier.clone(),
            hooks: self.hooks.clone(),
            stats: self.stats.clone(),
            kinds: self.kinds.clone(),
            more_groups: self.more_groups + (self.groups.len() - keep),
            groups,
            exited: self.exited.clone(),
            suppressed: self.suppressed.clone(),
            notes,
            origin_notes: self.origin_notes.clone(),
            ..*self
        }
    }
}
