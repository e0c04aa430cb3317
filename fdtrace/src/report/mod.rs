//! The leak report: unclosed fds grouped by the user stack that opened
//! them. Building it is pure (ledger + resolved stacks + socket states in,
//! [`Report`] out); [`text`] and JSON render it.
//!
//! "Leaked" is not knowable for sure; the report shows evidence: fds still
//! open after `--min-age`, per stack how many are open, opened, closed, the
//! oldest, how fast the group grows, and for sockets the peers and TCP
//! states.
pub mod folded;
#[cfg(test)]
mod sample;
#[cfg(test)]
mod tests;
pub mod text;

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use serde::Serialize;

use crate::{
    events::Addr,
    filter::{Facts, Filter},
    ledger::{FdEntry, Ledger, Origin, Site},
    procfs::TcpState,
    symbolize::{Frame, Resolved, Stacks},
};

/// What to include.
#[derive(Clone, Debug)]
pub struct Options {
    /// Only fds open at least this long count as unclosed.
    pub min_age_ns: u64,
    /// Which fds count (kinds, ports, peers, states).
    pub filter: Filter,
    /// At most this many groups.
    pub top: usize,
    /// At most this many fds listed per group (JSON).
    pub fds_per_group: usize,
}

/// Facts about the session the report header shows.
#[derive(Clone, Debug, Default)]
pub struct Header {
    pub pid: u32,
    pub comm: String,
    pub started_ns: u64,
    pub now_ns: u64,
    pub is_final: bool,
    pub tier: String,
    /// Hook family → the tier it runs on.
    pub hooks: BTreeMap<String, String>,
    pub events: u64,
    pub lost_events: u64,
    pub stacks_failed: u64,
    /// Events delivered with part of their data missing, by reason
    /// ("missed_entry", "read_failed", ...); only non-zero reasons.
    pub partial_events: BTreeMap<&'static str, u64>,
    pub missed_open: u64,
    pub missed_close: u64,
    /// Reconciliation with /proc ran for this report.
    pub reconciled: bool,
    /// What the session could not do (a Go binary without symbols...).
    pub notes: Vec<String>,
    /// How goroutine origins may be wrong: noted only in reports that
    /// show some.
    pub origin_notes: Vec<String>,
    /// The processes the user asked for (pid, name), live or exited.
    pub targets: Vec<(u32, String)>,
}

/// A socket's state and addresses as `/proc/net` showed them at report time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SockState {
    pub state: Option<TcpState>,
    pub local: Option<Addr>,
    pub remote: Option<Addr>,
    /// Milliseconds since it last sent or received data.
    pub idle_ms: Option<u32>,
}

/// One report. The JSON form is documented in the README and kept stable.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Report {
    #[serde(rename = "type")]
    pub ty: &'static str,
    pub pid: u32,
    pub comm: String,
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
    pub events: u64,
    pub lost_events: u64,
    pub stacks_failed: u64,
    /// Events the kernel side could only send in part, by reason:
    /// "missed_entry" (a syscall's entry was not seen), "read_failed"
    /// (user memory unreadable), "inflight_full", "targets_full".
    pub partial_events: BTreeMap<&'static str, u64>,
    pub missed_open: u64,
    pub missed_close: u64,
    /// No events lost and the ledger agreed with /proc.
    pub complete: bool,
    /// fds the traced processes had open (all kinds, all ages).
    pub open_fds: usize,
    /// fds counted as unclosed: of the reported kinds, older than min age.
    pub unclosed: usize,
    pub min_age_s: f64,
    pub kinds: Vec<&'static str>,
    pub groups: Vec<Group>,
    /// Groups left out by `--top`.
    pub more_groups: usize,
    /// Traced processes that exited, with what they left open.
    pub exited: Vec<ExitInfo>,
    /// Limits of this session's view (see the README).
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct TargetInfo {
    pub pid: u32,
    pub comm: String,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ExitInfo {
    pub pid: u32,
    pub comm: String,
    /// wait(2) status.
    pub status: u32,
    pub open_at_exit: usize,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Group {
    /// Innermost first. Empty for the pseudo-groups named in `origin`.
    pub stack: Vec<Frame>,
    /// Go: the stack that started the goroutine that opened these fds
    /// (innermost first: the `go` statement's function), when it was
    /// followed. Empty otherwise.
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
}

/// A known leak pattern, recognized from the group's evidence.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Finding {
    /// "http-transport-per-request", "http-bodies-not-closed".
    pub kind: &'static str,
    /// What it means and what to do, for people.
    pub message: String,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Peer {
    pub remote: String,
    pub state: Option<&'static str>,
    pub count: usize,
    /// The least idle of these sockets has sent or received nothing for
    /// this long (when the kernel reports it).
    pub idle_s: Option<f64>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct FdInfo {
    pub pid: u32,
    pub fd: i32,
    pub kind: &'static str,
    pub proto: Option<String>,
    pub local: Option<String>,
    pub remote: Option<String>,
    pub state: Option<&'static str>,
    pub path: Option<String>,
    pub age_s: f64,
    /// Seconds since it last sent or received data (TCP).
    pub idle_s: Option<f64>,
    /// Still open in a process that exited.
    pub at_exit: bool,
    /// Go: the `*http.Transport` that dialed it ("0xc000130000").
    pub http_transport: Option<String>,
}

/// How fds are grouped: by the stack that opened them (and in Go the
/// stack that started the goroutine), or by why there is no stack.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Stack { frames: Arc<[Frame]>, spawn: Option<Arc<[Frame]>> },
    Origin(String),
}

struct Candidate<'a> {
    pid: u32,
    entry: &'a FdEntry,
    /// When it was last seen open (now, or the process's exit).
    until_ns: u64,
    at_exit: bool,
}

pub fn build(
    h: &Header,
    opts: &Options,
    ledger: &Ledger,
    stacks: &Stacks,
    states: &HashMap<(u32, i32), SockState>,
) -> Report {
    let mut candidates: Vec<Candidate> = vec![];
    let mut pids: Vec<u32> = ledger.processes().map(|p| p.tgid).collect();
    let mut open_fds = 0;
    for p in ledger.processes() {
        for entry in ledger.open_fds(p.tgid) {
            open_fds += 1;
            candidates.push(Candidate { pid: p.tgid, entry, until_ns: h.now_ns, at_exit: false });
        }
    }
    for gone in ledger.exited() {
        pids.push(gone.tgid);
        for entry in &gone.open_at_exit {
            candidates.push(Candidate { pid: gone.tgid, entry, until_ns: gone.at_ns, at_exit: true });
        }
    }
    pids.sort_unstable();
    pids.dedup();

    let old_enough: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| c.until_ns.saturating_sub(c.entry.opened_ns) >= opts.min_age_ns)
        .collect();

    // Raw stack keys → group key (identical symbolic stacks merge).
    let key_of = |pid: u32, entry: &FdEntry| -> Key {
        match (entry.origin, entry.site()) {
            (Origin::PreExisting, _) => Key::Origin("pre-existing".into()),
            (Origin::MissedOpen, _) => Key::Origin("missed-open".into()),
            (_, None) => Key::Origin("not-captured".into()),
            (_, Some(site)) => site_key(pid, site, stacks),
        }
    };

    let elapsed_ns = h.now_ns.saturating_sub(h.started_ns).max(1);
    let mut groups: HashMap<Key, Group> = HashMap::new();
    let mut unclosed = 0;
    for c in &old_enough {
        let info = fd_info(c, states.get(&(c.pid, c.entry.fd)).filter(|_| !c.at_exit));
        let facts = Facts {
            kind: Some(info.kind),
            local: info.local.as_deref(),
            remote: info.remote.as_deref(),
            state: info.state,
        };
        if !opts.filter.matches(&facts) {
            continue;
        }
        unclosed += 1;
        let key = key_of(c.pid, c.entry);
        let g = groups.entry(key.clone()).or_insert_with(|| Group {
            stack: match &key {
                Key::Stack { frames, .. } => frames.to_vec(),
                Key::Origin(_) => vec![],
            },
            spawned_by: match &key {
                Key::Stack { spawn: Some(s), .. } => s.to_vec(),
                _ => vec![],
            },
            origin: match &key {
                Key::Stack { .. } => "stack".into(),
                Key::Origin(o) => o.clone(),
            },
            open: 0,
            opened: 0,
            closed: 0,
            oldest_age_s: 0.0,
            growth_per_s: 0.0,
            kinds: BTreeMap::new(),
            peers: vec![],
            findings: vec![],
            same_peers_as: vec![],
            fds: vec![],
        });
        g.open += 1;
        g.oldest_age_s = g.oldest_age_s.max(info.age_s);
        let kind = c.entry.desc.sock.map(|s| s.label()).unwrap_or_else(|| c.entry.kind.name().to_string());
        *g.kinds.entry(kind).or_default() += 1;
        g.fds.push(info);
    }

    // Opened/closed per group from the ledger's per-stack counters.
    let mut totals: HashMap<Key, (u64, u64)> = HashMap::new();
    for (&(pid, site), counts) in ledger.stack_counts() {
        let key = site_key(pid, site, stacks);
        if !matches!(key, Key::Stack { .. }) {
            continue;
        }
        let t = totals.entry(key).or_default();
        t.0 += counts.opened;
        t.1 += counts.closed;
    }

    let mut groups: Vec<(Key, Group)> = groups.into_iter().collect();
    for (key, g) in &mut groups {
        if let Some(&(opened, closed)) = totals.get(key) {
            (g.opened, g.closed) = (opened, closed);
            g.growth_per_s = opened.saturating_sub(closed) as f64 / secs(elapsed_ns);
        }
        g.peers = peers(&g.fds);
        g.findings = findings(g);
        g.fds.sort_by(|a, b| b.age_s.total_cmp(&a.age_s).then(a.fd.cmp(&b.fd)));
        g.fds.truncate(opts.fds_per_group);
    }
    groups.sort_by(|(_, a), (_, b)| {
        b.open.cmp(&a.open).then(b.opened.cmp(&a.opened)).then(a.origin.cmp(&b.origin))
    });
    let more_groups = groups.len().saturating_sub(opts.top);
    groups.truncate(opts.top);
    link_stackless(&mut groups);
    let any_spawn = groups.iter().any(|(_, g)| !g.spawned_by.is_empty());

    Report {
        ty: "report",
        pid: h.pid,
        comm: h.comm.clone(),
        targets: h.targets.iter().map(|(pid, comm)| TargetInfo { pid: *pid, comm: comm.clone() }).collect(),
        pids,
        elapsed_s: secs(elapsed_ns),
        is_final: h.is_final,
        tier: h.tier.clone(),
        hooks: h.hooks.clone(),
        events: h.events,
        lost_events: h.lost_events,
        stacks_failed: h.stacks_failed,
        partial_events: h.partial_events.clone(),
        missed_open: h.missed_open,
        missed_close: h.missed_close,
        complete: h.lost_events == 0 && h.missed_open == 0 && h.missed_close == 0,
        open_fds,
        unclosed,
        min_age_s: secs(opts.min_age_ns),
        kinds: opts.filter.kind_names(),
        groups: groups.into_iter().map(|(_, g)| g).collect(),
        more_groups,
        exited: ledger
            .exited()
            .iter()
            .map(|e| ExitInfo {
                pid: e.tgid,
                comm: e.comm.to_string(),
                status: e.exit_code,
                open_at_exit: e.open_at_exit.len(),
            })
            .collect(),
        notes: h.notes.iter().chain(h.origin_notes.iter().filter(|_| any_spawn)).cloned().collect(),
    }
}

/// An fd as the report lists it: addresses and state from `/proc`/sock_diag
/// at report time (`st`, for live processes), else what the events said.
fn fd_info(c: &Candidate, st: Option<&SockState>) -> FdInfo {
    let d = &c.entry.desc;
    let local = st.and_then(|s| s.local.clone()).or_else(|| d.local.clone());
    let remote = st.and_then(|s| s.remote.clone()).or_else(|| d.remote.clone());
    FdInfo {
        pid: c.pid,
        fd: c.entry.fd,
        kind: c.entry.kind.name(),
        proto: d.sock.map(|s| s.label()),
        local: local.map(|a| a.to_string()),
        remote: remote.map(|a| a.to_string()),
        // /proc's state now, else the last the kernel reported.
        state: st.and_then(|s| s.state).or(d.state).map(TcpState::name).or(d.listening.then_some("LISTEN")),
        path: d.path.clone(),
        age_s: secs(c.until_ns.saturating_sub(c.entry.opened_ns)),
        idle_s: st.and_then(|s| s.idle_ms).map(|ms| f64::from(ms) / 1000.0),
        at_exit: c.at_exit,
        http_transport: d.go_transport.map(|t| format!("{t:#x}")),
    }
}

/// Points each stackless group at the groups with a stack that share a
/// peer (remote and state) with it.
fn link_stackless(groups: &mut [(Key, Group)]) {
    let peers_of = |g: &Group| -> Vec<(String, Option<&'static str>)> {
        g.peers
            .iter()
            .filter(|p| !p.remote.starts_with("listening"))
            .map(|p| (p.remote.clone(), p.state))
            .collect()
    };
    let with_stack: Vec<(usize, Vec<_>)> = groups
        .iter()
        .enumerate()
        .filter(|(_, (k, _))| matches!(k, Key::Stack { .. }))
        .map(|(i, (_, g))| (i + 1, peers_of(g)))
        .collect();
    for (key, g) in groups.iter_mut() {
        if !matches!(key, Key::Origin(o) if o == "pre-existing" || o == "missed-open") {
            continue;
        }
        let mine = peers_of(g);
        g.same_peers_as = with_stack
            .iter()
            .filter(|(_, theirs)| theirs.iter().any(|p| mine.contains(p)))
            .map(|(n, _)| *n)
            .collect();
    }
}

/// The group key of an fd opened at `site` in process `pid`.
fn site_key(pid: u32, site: Site, stacks: &Stacks) -> Key {
    match stacks.get(pid, site.stack) {
        Some(Resolved::Frames(f)) => Key::Stack {
            frames: f.clone(),
            // A spawn stack that could not be resolved leaves the group
            // keyed by its own stack.
            spawn: site.spawn.and_then(|s| match stacks.get(pid, s) {
                Some(Resolved::Frames(f)) if !f.is_empty() => Some(f.clone()),
                _ => None,
            }),
        },
        Some(Resolved::NotCaptured) => Key::Origin("not-captured".into()),
        Some(Resolved::Failed(why)) => Key::Origin(format!("failed: {why}")),
        None => Key::Origin("failed: not resolved".into()),
    }
}

/// Recognizes net/http's two classic connection leaks from which
/// `*http.Transport` dialed each of a group's sockets (before `fds` is
/// truncated).
///
/// - every socket from a Transport of its own: a Transport (or Client with
///   one) made per request and dropped; its idle keep-alive connection
///   stays open until the process exits.
/// - many sockets of one Transport to one peer, still growing: a Transport
///   keeps at most `MaxIdleConnsPerHost` (2) idle connections per host, so
///   more means connections still in use: response bodies not read to EOF
///   and closed.
fn findings(g: &Group) -> Vec<Finding> {
    const MIN: usize = 3;
    let mut per_transport: HashMap<&str, usize> = HashMap::new();
    for f in &g.fds {
        if let Some(t) = &f.http_transport {
            *per_transport.entry(t).or_default() += 1;
        }
    }
    let dialed: usize = per_transport.values().sum();
    let mut out = vec![];
    if dialed >= MIN && per_transport.len() * 10 >= dialed * 9 {
        out.push(Finding {
            kind: "http-transport-per-request",
            message: format!(
                "{dialed} connections from {} different http.Transports: a Transport (or a Client with its own) \
                 is made per request and dropped, and each keeps its idle connection open. Share one \
                 Transport/Client, or call CloseIdleConnections() when done with it.",
                per_transport.len()
            ),
        });
    } else if let Some((_, &n)) = per_transport.iter().max_by_key(|(_, n)| **n) {
        if n > MIN && g.growth_per_s >= 0.05 && g.peers.len() == 1 {
            out.push(Finding {
                kind: "http-bodies-not-closed",
                message: format!(
                    "{n} connections of one http.Transport to one host, and growing: more than it keeps idle, \
                     so they are still in use. Read each response body to EOF and Close() it."
                ),
            });
        }
    }
    out
}

/// A peer (remote address, or what a listener listens on) and its state.
type PeerKey = (String, Option<&'static str>);

/// Remote address + state → count, most common first. When a group has
/// many peers that differ only by port (the clients of a server), they are
/// counted per address: `127.0.0.1:*`.
fn peers(fds: &[FdInfo]) -> Vec<Peer> {
    const MANY: usize = 3;
    // (remote, state) → (count, least idle).
    let count = |key: &dyn Fn(&FdInfo) -> Option<String>| {
        let mut counts: HashMap<PeerKey, (usize, Option<f64>)> = HashMap::new();
        for f in fds {
            if let Some(k) = key(f) {
                let e = counts.entry((k, f.state)).or_insert((0, f.idle_s));
                e.0 += 1;
                e.1 = match (e.1, f.idle_s) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    _ => None,
                };
            }
        }
        counts
    };
    let remote = |f: &FdInfo| match (&f.remote, f.state) {
        (Some(r), _) => Some(r.clone()),
        (None, Some("LISTEN")) => Some(format!("listening on {}", f.local.as_deref().unwrap_or("?"))),
        (None, _) => None,
    };
    let mut counts = count(&remote);
    if counts.len() > MANY {
        let by_host = count(&|f: &FdInfo| {
            let r = remote(f)?;
            Some(match r.rsplit_once(':') {
                Some((host, _port)) if f.remote.is_some() => format!("{host}:*"),
                _ => r,
            })
        });
        if by_host.len() < counts.len() {
            counts = by_host;
        }
    }
    let mut peers: Vec<Peer> = counts
        .into_iter()
        .map(|((remote, state), (count, idle_s))| Peer { remote, state, count, idle_s })
        .collect();
    peers.sort_by(|a, b| b.count.cmp(&a.count).then(a.remote.cmp(&b.remote)));
    peers
}

fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}
