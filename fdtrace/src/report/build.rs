//! Building a report from the ledger, the resolved stacks and the socket
//! views: pure, unit-tested in `tests.rs`.
use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use super::{
    model::{AsyncOrigin, ExitInfo, FdInfo, Finding, Group, Peer, Report, SessionInfo, Stats, Suppressed},
    suppress::Suppressions,
};
use crate::{
    events::{Addr, TcpState},
    filter::{Facts, Filter},
    host::{SocketView, Sockets},
    ledger::{FdEntry, Ledger, Origin, Site},
    symbolize::{perfmap::JIT_MODULE, Frame, Resolved, Stacks},
};

/// What counts as unclosed.
#[derive(Clone, Debug)]
pub struct Options {
    /// Only fds open at least this long count as unclosed.
    pub min_age_ns: u64,
    /// Which fds count (kinds, ports, peers, states).
    pub filter: Filter,
    /// Stacks whose fds never count (`--suppress`).
    pub suppress: Suppressions,
    /// At most this many fds listed per group, the oldest: what the
    /// outputs show (`--fds-per-group`). Counts, kinds, peers and findings
    /// are of every fd; the list is not built beyond this (at 100,000 fds
    /// it was 26 MB of every report).
    pub fds_per_group: usize,
}

/// What the report says about the session, and when it is made.
#[derive(Clone, Copy, Debug)]
pub struct Head<'a> {
    pub info: &'a SessionInfo,
    pub stats: &'a Stats,
    /// CLOCK_MONOTONIC ns.
    pub now_ns: u64,
    pub is_final: bool,
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

/// The whole report: every group, with the oldest `opts.fds_per_group`
/// fds of each (see [`Report::limited`]).
pub fn build(h: Head<'_>, opts: &Options, ledger: &Ledger, stacks: &Stacks, sockets: &Sockets) -> Report {
    let (candidates, open_fds) = candidates(ledger, h.now_ns);
    // What a process left open at exit counts whatever its age: it can
    // never grow older (the valgrind --track-fds signal).
    let counted = candidates
        .iter()
        .filter(|c| c.at_exit || c.until_ns.saturating_sub(c.entry.opened_ns) >= opts.min_age_ns);
    let mut groups: HashMap<Key, Tally> = HashMap::new();
    let mut unclosed = 0;
    // Per exited process: the fds counted, by kind, and their groups.
    let mut left: HashMap<u32, (BTreeMap<String, usize>, Vec<Key>)> = HashMap::new();
    // Per suppression rule (in the file's order): its groups and fds.
    let mut suppressed: BTreeMap<String, (Vec<Key>, usize)> = BTreeMap::new();
    for c in counted {
        let seen = Seen::of(c, sockets.get(&(c.pid, c.entry.fd)).filter(|_| !c.at_exit));
        if !opts.filter.matches(&seen.facts()) {
            continue;
        }
        let key = key_of(c.pid, c.entry, stacks);
        if let Key::Stack { frames, spawn } = &key {
            if let Some(rule) = opts.suppress.matching(frames, spawn.as_deref().unwrap_or_default()) {
                let (keys, fds) = suppressed.entry(rule.text.clone()).or_default();
                *fds += 1;
                if !keys.contains(&key) {
                    keys.push(key);
                }
                continue;
            }
        }
        unclosed += 1;
        let kind = c.entry.desc.sock.map(|s| s.label()).unwrap_or_else(|| c.entry.kind.name().to_string());
        if c.at_exit {
            let (kinds, keys) = left.entry(c.pid).or_default();
            *kinds.entry(kind.clone()).or_default() += 1;
            if !keys.contains(&key) {
                keys.push(key.clone());
            }
        }
        groups.entry(key).or_insert_with_key(Tally::new).add(seen, kind, opts.fds_per_group);
    }
    let elapsed_ns = h.now_ns.saturating_sub(h.info.started_ns).max(1);
    let groups = finish_groups(groups, &totals(ledger, stacks), elapsed_ns, opts.fds_per_group);
    let any_spawn = groups.iter().any(|g| !g.spawned_by.is_empty());
    let info = h.info;
    let mut pids: Vec<u32> =
        ledger.processes().map(|p| p.tgid).chain(ledger.exited().iter().map(|e| e.tgid)).collect();
    pids.sort_unstable();
    pids.dedup();

    Report {
        ty: "report".into(),
        pid: info.pid,
        comm: info.comm.clone(),
        ns_pid: info.ns_pids.get(&info.pid).copied(),
        targets: info.targets.clone(),
        pids,
        elapsed_s: secs(elapsed_ns),
        is_final: h.is_final,
        tier: info.tier.clone(),
        hooks: info.hooks.clone(),
        stats: h.stats.clone(),
        complete: h.stats.complete(),
        open_fds,
        unclosed,
        min_age_s: secs(opts.min_age_ns),
        kinds: opts.filter.kind_names().into_iter().map(String::from).collect(),
        groups,
        more_groups: 0,
        suppressed: opts
            .suppress
            .rules
            .iter()
            .filter_map(|r| {
                let (keys, fds) = suppressed.get(&r.text)?;
                Some(Suppressed { rule: r.text.clone(), groups: keys.len(), fds: *fds })
            })
            .collect(),
        exited: ledger
            .exited()
            .iter()
            .map(|e| {
                let (kinds, keys) = left.get(&e.tgid).cloned().unwrap_or_default();
                ExitInfo {
                    pid: e.tgid,
                    comm: e.comm.to_string(),
                    ns_pid: info.ns_pids.get(&e.tgid).copied(),
                    status: e.exit_code,
                    open_at_exit: e.open_at_exit.len(),
                    unclosed: kinds.values().sum(),
                    unclosed_kinds: kinds,
                    places: keys.len(),
                }
            })
            .collect(),
        notes: info
            .notes
            .iter()
            .chain(info.origin_notes.iter().filter(|_| any_spawn))
            .cloned()
            .chain(stacks.notes())
            .collect(),
        origin_notes: info.origin_notes.clone(),
    }
}

/// Every fd that could count: those open in live processes now, and those
/// processes that exited still had open at exit. Also: how many are open
/// in live processes.
fn candidates(ledger: &Ledger, now_ns: u64) -> (Vec<Candidate<'_>>, usize) {
    let mut out: Vec<Candidate> = vec![];
    for p in ledger.processes() {
        for entry in ledger.open_fds(p.tgid) {
            out.push(Candidate { pid: p.tgid, entry, until_ns: now_ns, at_exit: false });
        }
    }
    let open = out.len();
    for gone in ledger.exited() {
        for entry in &gone.open_at_exit {
            out.push(Candidate { pid: gone.tgid, entry, until_ns: gone.at_ns, at_exit: true });
        }
    }
    (out, open)
}

/// The group an fd belongs to (identical symbolic stacks merge).
fn key_of(pid: u32, entry: &FdEntry, stacks: &Stacks) -> Key {
    match (entry.origin, entry.site()) {
        (Origin::PreExisting, _) => Key::Origin("pre-existing".into()),
        (Origin::MissedOpen, _) => Key::Origin("missed-open".into()),
        (_, None) => Key::Origin("not-captured".into()),
        (_, Some(site)) => site_key(pid, site, stacks),
    }
}

fn empty_group(key: &Key) -> Group {
    let (stack, spawned_by, origin) = match key {
        Key::Stack { frames, spawn } => (
            frames.to_vec(),
            spawn.as_deref().map(<[Frame]>::to_vec).unwrap_or_default(),
            "stack".to_string(),
        ),
        Key::Origin(o) => (vec![], vec![], o.clone()),
    };
    let asynchronous = async_origin(&stack);
    Group {
        stack,
        spawned_by,
        origin,
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
        asynchronous,
    }
}

/// A Node stack whose JavaScript frames are all Node's own (`node:net`,
/// `node:internal/...`): opened from the event loop (the tick queue runs
/// `net.connect`'s connect), the program's code that asked for it is not
/// on the stack. The outermost of those frames is where the loop entered.
fn async_origin(stack: &[Frame]) -> Option<AsyncOrigin> {
    let entry = stack.iter().rfind(|f| f.module.as_deref() == Some(JIT_MODULE) && f.file.is_some())?;
    stack.iter().all(Frame::is_library).then(|| AsyncOrigin { runtime: "node".into(), entry: entry.clone() })
}

/// Opened and closed per group with a stack, from the ledger's per-stack
/// counters.
fn totals(ledger: &Ledger, stacks: &Stacks) -> HashMap<Key, (u64, u64)> {
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
    totals
}

/// Counts, growth, peers and findings for each group; the groups in order
/// (most unclosed first), the stackless ones pointing at their likely
/// source.
fn finish_groups(
    groups: HashMap<Key, Tally<'_>>,
    totals: &HashMap<Key, (u64, u64)>,
    elapsed_ns: u64,
    limit: usize,
) -> Vec<Group> {
    let mut groups: Vec<(Key, Group)> = groups
        .into_iter()
        .map(|(key, t)| {
            let (mut g, fds, peer_counts, transports) = t.listed(limit);
            if let Some(&(opened, closed)) = totals.get(&key) {
                (g.opened, g.closed) = (opened, closed);
                g.growth_per_s = opened.saturating_sub(closed) as f64 / secs(elapsed_ns);
            }
            g.peers = peers(peer_counts);
            g.findings = findings(&g, &transports);
            g.fds = fds;
            (key, g)
        })
        .collect();
    // Ties are broken by the stacks themselves, so that equal inputs give
    // equal reports.
    let names = |frames: &[Frame]| -> Vec<String> { frames.iter().map(Frame::label).collect() };
    groups.sort_by(|(_, a), (_, b)| {
        b.open
            .cmp(&a.open)
            .then(b.opened.cmp(&a.opened))
            .then(a.origin.cmp(&b.origin))
            .then_with(|| names(&a.stack).cmp(&names(&b.stack)))
            .then_with(|| names(&a.spawned_by).cmp(&names(&b.spawned_by)))
    });
    let mut groups: Vec<Group> = groups.into_iter().map(|(_, g)| g).collect();
    link_stackless(&mut groups);
    groups
}

/// What is known of an fd at report time: the socket view of a live
/// process's socket (from sock_diag or `/proc`), else what the events said.
struct Seen<'a> {
    c: &'a Candidate<'a>,
    local: Option<&'a Addr>,
    remote: Option<&'a Addr>,
    state: Option<TcpState>,
    view: Option<&'a SocketView>,
}

impl<'a> Seen<'a> {
    fn of(c: &'a Candidate<'a>, view: Option<&'a SocketView>) -> Seen<'a> {
        let d = &c.entry.desc;
        Seen {
            c,
            local: view.and_then(|v| v.local.as_ref()).or(d.local()),
            remote: view.and_then(|v| v.remote.as_ref()).or(d.remote()),
            // The kernel's state now, else the last it reported.
            state: view.and_then(|v| v.state).or(d.state).or(d.listening.then_some(TcpState::Listen)),
            view,
        }
    }

    fn facts(&self) -> Facts<'a> {
        Facts { kind: Some(self.c.entry.kind), local: self.local, remote: self.remote, state: self.state }
    }

    fn idle_s(&self) -> Option<f64> {
        self.view.and_then(|v| v.idle_ms).map(|ms| f64::from(ms) / 1000.0)
    }

    /// Who it is connected to, or what it listens on, and its state.
    fn peer(&self) -> Option<PeerKey> {
        let remote = match (self.remote, self.state) {
            (Some(r), _) => Remote::Addr(r.to_string()),
            (None, Some(TcpState::Listen)) => {
                Remote::Listening(format!("listening on {}", self.local.map_or("?".into(), Addr::to_string)))
            }
            (None, _) => return None,
        };
        Some((remote, self.state))
    }

    /// The fd as the report lists it.
    fn info(&self) -> FdInfo {
        let (c, d) = (self.c, &self.c.entry.desc);
        FdInfo {
            pid: c.pid,
            fd: c.entry.fd,
            kind: c.entry.kind,
            proto: d.sock.map(|s| s.label()),
            local: self.local.map(Addr::to_string),
            remote: self.remote.map(Addr::to_string),
            state: self.state,
            path: d.path.clone(),
            age_s: secs(c.until_ns.saturating_sub(c.entry.opened_ns)),
            idle_s: self.idle_s(),
            at_exit: c.at_exit,
            http_transport: d.go_transport().map(|t| format!("{t:#x}")),
        }
    }
}

/// The order fds are listed in: oldest first, then by fd, pid, and
/// whether it was left at exit (no two fds share all four).
fn listed_first(a: &Candidate<'_>, b: &Candidate<'_>) -> std::cmp::Ordering {
    b.age_ns()
        .cmp(&a.age_ns())
        .then(a.entry.fd.cmp(&b.entry.fd))
        .then(a.pid.cmp(&b.pid))
        .then(a.at_exit.cmp(&b.at_exit))
}

impl Candidate<'_> {
    fn age_ns(&self) -> u64 {
        self.until_ns.saturating_sub(self.entry.opened_ns)
    }
}

/// A group while its fds are counted: its counts, and what its peers,
/// findings and fd list are made from.
struct Tally<'a> {
    group: Group,
    peers: HashMap<PeerKey, PeerCount>,
    /// Go: sockets per `*http.Transport` that dialed them.
    transports: HashMap<u64, usize>,
    /// The oldest fds so far, at most twice the limit between trims.
    oldest: Vec<Seen<'a>>,
}

impl<'a> Tally<'a> {
    fn new(key: &Key) -> Tally<'a> {
        Tally { group: empty_group(key), peers: HashMap::new(), transports: HashMap::new(), oldest: vec![] }
    }

    /// Counts one fd; keeps it for the list while it is among the oldest
    /// `limit`.
    fn add(&mut self, seen: Seen<'a>, kind: String, limit: usize) {
        let g = &mut self.group;
        g.open += 1;
        g.oldest_age_s = g.oldest_age_s.max(secs(seen.c.age_ns()));
        *g.kinds.entry(kind).or_default() += 1;
        if let Some(key) = seen.peer() {
            let idle = seen.idle_s();
            self.peers.entry(key).or_insert(PeerCount { count: 0, idle_s: idle }).add(1, idle);
        }
        if let Some(t) = seen.c.entry.desc.go_transport() {
            *self.transports.entry(t).or_default() += 1;
        }
        if limit == 0 {
            return;
        }
        self.oldest.push(seen);
        if self.oldest.len() >= limit.saturating_mul(2) {
            self.oldest.select_nth_unstable_by(limit - 1, |a, b| listed_first(a.c, b.c));
            self.oldest.truncate(limit);
        }
    }

    /// The fds to list, in order.
    fn listed(
        mut self,
        limit: usize,
    ) -> (Group, Vec<FdInfo>, HashMap<PeerKey, PeerCount>, HashMap<u64, usize>) {
        self.oldest.sort_unstable_by(|a, b| listed_first(a.c, b.c));
        self.oldest.truncate(limit);
        let fds = self.oldest.iter().map(Seen::info).collect();
        (self.group, fds, self.peers, self.transports)
    }
}

/// Points each stackless group at the groups with a stack, as listed, that
/// share a peer (remote and state) with it.
pub(super) fn link_stackless(groups: &mut [Group]) {
    let peers_of = |g: &Group| -> Vec<(String, Option<TcpState>)> {
        g.peers
            .iter()
            .filter(|p| !p.remote.starts_with("listening"))
            .map(|p| (p.remote.clone(), p.state))
            .collect()
    };
    let with_stack: Vec<(usize, Vec<_>)> =
        groups.iter().enumerate().filter(|(_, g)| g.has_stack()).map(|(i, g)| (i + 1, peers_of(g))).collect();
    for g in groups.iter_mut() {
        if g.origin != "pre-existing" && g.origin != "missed-open" {
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
            frames: Arc::clone(f),
            // A spawn stack that could not be resolved leaves the group
            // keyed by its own stack.
            spawn: site.spawn.and_then(|s| match stacks.get(pid, s) {
                Some(Resolved::Frames(f)) if !f.is_empty() => Some(Arc::clone(f)),
                _ => None,
            }),
        },
        Some(Resolved::NotCaptured) => Key::Origin("not-captured".into()),
        Some(Resolved::Failed(why)) => Key::Origin(format!("failed: {why}")),
        None => Key::Origin("failed: not resolved".into()),
    }
}

/// Recognizes net/http's two classic connection leaks from which
/// `*http.Transport` dialed each of a group's sockets (`per_transport`:
/// every socket of the group, by Transport).
///
/// - every socket from a Transport of its own: a Transport (or Client with
///   one) made per request and dropped; its idle keep-alive connection
///   stays open until the process exits.
/// - many sockets of one Transport to one peer, still growing: a Transport
///   keeps at most `MaxIdleConnsPerHost` (2) idle connections per host, so
///   more means connections still in use: response bodies not read to EOF
///   and closed.
fn findings(g: &Group, per_transport: &HashMap<u64, usize>) -> Vec<Finding> {
    const MIN: usize = 3;
    let dialed: usize = per_transport.values().sum();
    let mut out = vec![];
    if dialed >= MIN && per_transport.len() * 10 >= dialed * 9 {
        out.push(Finding {
            kind: "http-transport-per-request".into(),
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
                kind: "http-bodies-not-closed".into(),
                message: format!(
                    "{n} connections of one http.Transport to one host, and growing: more than it keeps idle, \
                     so they are still in use. Read each response body to EOF and Close() it."
                ),
            });
        }
    }
    out
}

/// A peer: a remote address (its port can be dropped: `127.0.0.1:*`), or
/// what a listener listens on.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Remote {
    Addr(String),
    Listening(String),
}

impl Remote {
    /// The address without its port, for counting the clients of a server.
    fn host(self) -> Remote {
        match self {
            Remote::Addr(r) => match r.rsplit_once(':') {
                Some((host, _port)) => Remote::Addr(format!("{host}:*")),
                None => Remote::Addr(r),
            },
            listening => listening,
        }
    }

    fn into_string(self) -> String {
        match self {
            Remote::Addr(s) | Remote::Listening(s) => s,
        }
    }
}

/// A peer and the state of its sockets.
type PeerKey = (Remote, Option<TcpState>);

/// How many sockets of a group have a peer, and the least idle of them
/// (when the kernel reports idle times for all of them).
#[derive(Clone, Copy, Debug)]
struct PeerCount {
    count: usize,
    idle_s: Option<f64>,
}

impl PeerCount {
    fn add(&mut self, count: usize, idle_s: Option<f64>) {
        self.count += count;
        self.idle_s = match (self.idle_s, idle_s) {
            (Some(a), Some(b)) => Some(a.min(b)),
            _ => None,
        };
    }
}

/// Peer + state → count, most common first. When a group has many peers
/// that differ only by port (the clients of a server), they are counted
/// per address: `127.0.0.1:*`.
fn peers(counts: HashMap<PeerKey, PeerCount>) -> Vec<Peer> {
    const MANY: usize = 3;
    let mut counts = counts;
    if counts.len() > MANY {
        let mut by_host: HashMap<PeerKey, PeerCount> = HashMap::new();
        for ((remote, state), c) in &counts {
            by_host
                .entry((remote.clone().host(), *state))
                .or_insert(PeerCount { count: 0, idle_s: c.idle_s })
                .add(c.count, c.idle_s);
        }
        if by_host.len() < counts.len() {
            counts = by_host;
        }
    }
    let mut peers: Vec<Peer> = counts
        .into_iter()
        .map(|((remote, state), c)| Peer {
            remote: remote.into_string(),
            state,
            count: c.count,
            idle_s: c.idle_s,
        })
        .collect();
    peers.sort_by(|a, b| b.count.cmp(&a.count).then(a.remote.cmp(&b.remote)).then(a.state.cmp(&b.state)));
    peers
}

fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}
