//! Reports made by hand, for the tests of what renders them.
use super::{Group, Peer, Report, Stats};
use crate::{events::TcpState, symbolize::Frame};

pub fn frame(f: &str) -> Frame {
    Frame { function: Some(f.into()), file: None, line: None, module: Some("app".into()), offset: None }
}

pub fn group(stack: &[&str], spawned_by: &[&str], origin: &str, open: usize) -> Group {
    Group {
        stack: stack.iter().map(|f| frame(f)).collect(),
        spawned_by: spawned_by.iter().map(|f| frame(f)).collect(),
        origin: origin.into(),
        open,
        opened: open as u64,
        closed: 0,
        oldest_age_s: 1.0,
        growth_per_s: 0.0,
        kinds: Default::default(),
        peers: vec![],
        findings: vec![],
        same_peers_as: vec![],
        fds: vec![],
        asynchronous: None,
    }
}

pub fn report(groups: Vec<Group>) -> Report {
    Report {
        ty: "report".into(),
        pid: 7,
        comm: "app".into(),
        ns_pid: None,
        pids: vec![7],
        targets: vec![],
        elapsed_s: 2.0,
        is_final: true,
        tier: "tracepoint".into(),
        hooks: Default::default(),
        stats: Stats { events: 10, ..Stats::default() },
        complete: true,
        open_fds: 9,
        unclosed: groups.iter().map(|g| g.open).sum(),
        min_age_s: 1.0,
        kinds: vec!["socket".into()],
        groups,
        more_groups: 0,
        suppressed: vec![],
        exited: vec![],
        notes: vec![],
        origin_notes: vec![],
    }
}

/// A group of `n` sockets in CLOSE_WAIT, growing at 1.5/s.
pub fn close_wait(n: usize) -> Group {
    let mut g = group(&["socket", "watch_feed", "main"], &[], "stack", n);
    g.growth_per_s = 1.5;
    g.peers =
        vec![Peer { remote: "10.0.0.1:80".into(), state: Some(TcpState::CloseWait), count: n, idle_s: None }];
    g
}
