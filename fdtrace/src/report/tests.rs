//! Report building, Given/When/Then, on synthetic ledgers.
use std::collections::HashMap;

use super::*;
use crate::{
    events::{
        Addr, Body, Comm, Event, FdKind, Open, SockCall, SockOp, SockSpec, StackId, StackRef, Syscall,
        TcpState,
    },
    filter::Filter,
    host::{SocketView, Sockets},
    ledger::{Ledger, ProcFd},
    report::suppress::Suppressions,
    symbolize::{Frame, Resolved, Stacks},
};

/// What a report is made of in these tests: what counts, and how much an
/// output shows of it.
#[derive(Clone)]
struct Opts {
    min_age_ns: u64,
    filter: Filter,
    top: usize,
    fds_per_group: usize,
    suppress: Suppressions,
}

/// The session facts a report header shows.
#[derive(Clone, Default)]
struct Header {
    info: SessionInfo,
    stats: Stats,
    now_ns: u64,
}

/// A report as an output with `o`'s limits shows it.
fn build(h: &Header, o: &Opts, l: &Ledger, s: &Stacks, sockets: &Sockets) -> Report {
    let head = Head { info: &h.info, stats: &h.stats, now_ns: h.now_ns, is_final: true };
    let opts = Options {
        min_age_ns: o.min_age_ns,
        filter: o.filter.clone(),
        suppress: o.suppress.clone(),
        fds_per_group: o.fds_per_group,
    };
    super::build(head, &opts, l, s, sockets).limited(Limits { top: o.top, fds_per_group: o.fds_per_group })
}

/// A socket as the kernel shows it at report time.
fn view(state: TcpState, idle_ms: Option<u32>) -> SocketView {
    SocketView { inode: 0, spec: None, state: Some(state), local: None, remote: None, idle_ms, queues: None }
}

const PID: u32 = 100;
const S: u64 = 1_000_000_000;

fn stack(id: u32) -> StackRef {
    StackRef { id: StackId::Id(id), caller_ip: None, at_entry: false, python: None }
}

fn frames(names: &[&str]) -> Resolved {
    Resolved::Frames(
        names
            .iter()
            .map(|n| Frame {
                function: Some(n.to_string()),
                file: Some("main.go".into()),
                line: Some(7),
                module: Some("app".into()),
                offset: None,
            })
            .collect::<Vec<_>>()
            .into(),
    )
}

fn ev(ts_ns: u64, body: Body) -> Event {
    Event { ts_ns, tgid: PID, tid: PID, comm: Comm::from_str_lossy("app"), body }
}

fn socket(ts: u64, fd: i32, stack_id: u32) -> Event {
    ev(
        ts,
        Body::Open(Open {
            raw_flags: 1,
            socket: Some(SockSpec { family: 2, sock_type: 1, protocol: 6 }),
            ..Open::test(Syscall::Socket, fd, stack_id)
        }),
    )
}

/// A socket opened in a net/http dial goroutine (stack 1) started from
/// `spawn`, dialing for `transport`.
fn go_dial(ts: u64, fd: i32, spawn: u32, transport: u64) -> Event {
    let mut e = socket(ts, fd, 1);
    if let Body::Open(o) = &mut e.body {
        o.go_spawn = Some(stack(spawn));
        o.go_transport = Some(transport);
    }
    e
}

/// `given`, plus spawn stacks 10 and 11 (two callers) and 12 (unresolvable).
fn given_go(events: &[Event]) -> (Ledger, Stacks) {
    let (l, mut s) = given(events);
    s.insert(
        PID,
        stack(10),
        frames(&["net/http.(*Transport).queueForDial", "main.fetchStatus", "main.main"]),
    );
    s.insert(PID, stack(11), frames(&["net/http.(*Transport).queueForDial", "main.poll", "main.main"]));
    s.insert(PID, stack(12), Resolved::Failed("gone".into()));
    (l, s)
}

fn connect(ts: u64, fd: i32, peer: &str) -> Event {
    let addr = Some(Addr::Inet(peer.parse().unwrap()));
    ev(
        ts,
        Body::Sock(SockCall {
            op: SockOp::Connect,
            fd,
            ret: 0,
            addr: addr.clone(),
            local: None,
            remote: addr,
            sk: None,
        }),
    )
}

fn file(ts: u64, fd: i32, stack_id: u32) -> Event {
    let Body::Open(o) = socket(ts, fd, stack_id).body else { unreachable!() };
    ev(ts, Body::Open(Open { syscall: Syscall::Openat, socket: None, path: Some("/var/log/x".into()), ..o }))
}

fn opts() -> Opts {
    Opts {
        min_age_ns: S,
        filter: Filter { kinds: Some(vec![FdKind::Socket]), ..Filter::default() },
        top: 10,
        fds_per_group: 100,
        suppress: Suppressions::default(),
    }
}

fn all_fds() -> Opts {
    Opts { filter: Filter::default(), ..opts() }
}

fn header(now_ns: u64) -> Header {
    Header {
        info: SessionInfo {
            pid: PID,
            comm: "app".into(),
            started_ns: 0,
            tier: "tracepoint".into(),
            ..SessionInfo::default()
        },
        stats: Stats::default(),
        now_ns,
    }
}

/// A ledger following PID since t=0 and stacks 1, 2 (same frames) and 3.
fn given(events: &[Event]) -> (Ledger, Stacks) {
    let mut l = Ledger::new();
    l.add_process(PID, Comm::from_str_lossy("app"), 0, vec![]);
    let mut out = vec![];
    for e in events {
        l.apply(e, &mut out);
    }
    let mut s = Stacks::new();
    s.insert(PID, stack(1), frames(&["net.dial", "main.leak"]));
    s.insert(PID, stack(2), frames(&["net.dial", "main.leak"]));
    s.insert(PID, stack(3), frames(&["os.Open", "main.logs"]));
    (l, s)
}

fn build_at(now_s: u64, events: &[Event], o: &Opts) -> Report {
    let (l, s) = given(events);
    build(&header(now_s * S), o, &l, &s, &HashMap::new())
}

#[test]
fn identical_symbolic_stacks_form_one_group() {
    let r = build_at(10, &[socket(S, 3, 1), socket(2 * S, 4, 2), socket(3 * S, 5, 1)], &opts());
    assert_eq!(r.groups.len(), 1);
    let g = &r.groups[0];
    assert_eq!((g.open, g.opened, g.closed), (3, 3, 0));
    assert_eq!(g.stack[1].function.as_deref(), Some("main.leak"));
    assert_eq!(g.oldest_age_s, 9.0);
}

#[test]
fn young_fds_do_not_count() {
    let r = build_at(10, &[socket(S, 3, 1), socket(9 * S + S / 2, 4, 1)], &opts());
    assert_eq!((r.unclosed, r.open_fds), (1, 2));
    assert_eq!(r.groups[0].open, 1);
}

#[test]
fn only_sockets_unless_all_fds() {
    let events = [socket(S, 3, 1), file(S, 4, 3)];
    assert_eq!(build_at(10, &events, &opts()).groups.len(), 1);
    let all = build_at(10, &events, &all_fds());
    assert_eq!(all.groups.len(), 2);
    assert!(all.groups.iter().any(|g| g.kinds.get("file") == Some(&1)));
    assert!(all.groups.iter().any(|g| g.kinds.get("tcp") == Some(&1)));
}

#[test]
fn kind_filter_shows_only_those_kinds() {
    // Given a socket, a file and a pipe, all old enough
    let Body::Open(o) = file(S, 5, 3).body else { unreachable!() };
    let pipe = ev(S, Body::Open(Open { syscall: Syscall::Pipe2, path: None, fd2: Some(6), ..o }));
    let events = [socket(S, 3, 1), file(S, 4, 3), pipe];
    // When the report asks for files and pipes
    let f = Filter { kinds: Some(vec![FdKind::File, FdKind::Pipe]), ..Filter::default() };
    let r = build_at(10, &events, &Opts { filter: f, ..opts() });
    // Then the socket is left out, and the report says which kinds it shows.
    assert_eq!(r.kinds, ["file", "pipe"]);
    assert_eq!((r.unclosed, r.open_fds), (3, 4), "{r:#?}");
    assert!(r.groups.iter().all(|g| !g.kinds.contains_key("tcp")));
}

#[test]
fn port_remote_and_state_filters_pick_sockets() {
    // Given three connected sockets and a file
    let events = [
        socket(S, 3, 1),
        connect(S, 3, "10.0.0.7:5432"),
        socket(S, 4, 1),
        connect(S, 4, "10.9.0.1:443"),
        socket(S, 5, 1),
        connect(S, 5, "[fd00::3]:443"),
        file(S, 6, 3),
    ];
    let (l, s) = given(&events);
    // and socket 4 in CLOSE_WAIT at report time
    let mut states = HashMap::new();
    states.insert((PID, 4), view(TcpState::CloseWait, None));
    let remotes = |r: &Report| -> Vec<String> {
        let mut v: Vec<String> =
            r.groups.iter().flat_map(|g| g.fds.iter().filter_map(|f| f.remote.clone())).collect();
        v.sort();
        v
    };
    let with = |f: Filter| build(&header(10 * S), &Opts { filter: f, ..opts() }, &l, &s, &states);
    // When filtering by port 443: both :443 peers, IPv4 and IPv6.
    let r = with(Filter { ports: vec![443], ..Filter::default() });
    assert_eq!(remotes(&r), ["10.9.0.1:443", "[fd00::3]:443"]);
    // By peer prefix: only the 10.0.0.0/16 one.
    let r = with(Filter {
        remotes: vec![crate::filter::Cidr::parse("10.0.0.0/16").unwrap()],
        ..Filter::default()
    });
    assert_eq!(remotes(&r), ["10.0.0.7:5432"]);
    // By IPv6 prefix.
    let r =
        with(Filter { remotes: vec![crate::filter::Cidr::parse("fd00::/8").unwrap()], ..Filter::default() });
    assert_eq!(remotes(&r), ["[fd00::3]:443"]);
    // By state: only the CLOSE_WAIT one; the file never matches.
    let r = with(Filter { states: vec![TcpState::CloseWait], ..Filter::default() });
    assert_eq!(remotes(&r), ["10.9.0.1:443"]);
    assert_eq!(r.unclosed, 1);
}

#[test]
fn growth_is_net_opens_per_second_and_closes_count() {
    let mut events = vec![];
    for i in 0..20 {
        events.push(socket(i * S / 2, 10 + i as i32, 1));
    }
    for i in 0..5 {
        events.push(ev(5 * S, Body::Close { fd: 10 + i }));
    }
    let r = build_at(10, &events, &opts());
    let g = &r.groups[0];
    // 19 are older than 1 s, 5 of those closed; the one opened at 9.5 s is
    // too young to count but was opened.
    assert_eq!((g.open, g.opened, g.closed), (14, 20, 5));
    assert!((g.growth_per_s - 1.5).abs() < 1e-9, "growth {}", g.growth_per_s);
}

#[test]
fn peers_are_counted_with_their_states() {
    let events =
        [socket(S, 3, 1), connect(S, 3, "127.0.0.1:9901"), socket(S, 4, 1), connect(S, 4, "127.0.0.1:9901")];
    let (l, s) = given(&events);
    let mut states = HashMap::new();
    states.insert((PID, 3), view(TcpState::Established, Some(12_500)));
    states.insert((PID, 4), view(TcpState::CloseWait, Some(900)));
    let r = build(&header(5 * S), &opts(), &l, &s, &states);
    let peers = &r.groups[0].peers;
    assert_eq!(peers.len(), 2);
    assert!(peers.iter().all(|p| p.remote == "127.0.0.1:9901" && p.count == 1));
    assert!(peers.iter().any(|p| p.state == Some(TcpState::CloseWait)));
    let text = text::render(&r);
    assert!(text.contains("CLOSE_WAIT  ← peer closed, this process did not"), "{text}");
    assert!(text.contains("ESTABLISHED, idle ≥ 12.5 s"), "{text}");
    assert_eq!(r.groups[0].fds.iter().find(|f| f.fd == 3).unwrap().idle_s, Some(12.5));
}

#[test]
fn many_clients_of_one_host_are_counted_per_host() {
    let mut events = vec![];
    for i in 0..8 {
        events.push(socket(S, 10 + i, 1));
        events.push(connect(S, 10 + i, &format!("10.0.0.1:{}", 40000 + i)));
    }
    let r = build_at(10, &events, &opts());
    assert_eq!(
        r.groups[0].peers,
        vec![Peer { remote: "10.0.0.1:*".into(), state: None, count: 8, idle_s: None }]
    );
}

#[test]
fn pre_existing_fds_form_their_own_group() {
    let mut l = Ledger::new();
    let pre = ProcFd { fd: 3, kind: FdKind::Socket, cloexec: false, desc: Default::default() };
    l.add_process(PID, Comm::from_str_lossy("app"), 0, vec![pre]);
    let r = build(&header(10 * S), &opts(), &l, &Stacks::new(), &HashMap::new());
    assert_eq!(r.groups[0].origin, "pre-existing");
    assert!(text::render(&r).contains("open before fdtrace attached"));
}

#[test]
fn what_was_open_at_exit_stays_in_the_report() {
    let r = build_at(20, &[socket(S, 3, 1), ev(5 * S, Body::Exit { code: 0 })], &opts());
    let g = &r.groups[0];
    assert_eq!(g.open, 1);
    assert!(g.fds[0].at_exit);
    assert_eq!(g.fds[0].age_s, 4.0, "age counts until the exit");
    assert_eq!(r.pids, vec![PID]);
    let tcp = [("tcp".to_string(), 1)].into_iter().collect();
    let want = ExitInfo {
        pid: PID,
        comm: "app".into(),
        ns_pid: None,
        status: 0,
        open_at_exit: 1,
        unclosed: 1,
        unclosed_kinds: tcp,
        places: 1,
    };
    assert_eq!(r.exited, vec![want]);
    assert!(text::render(&r).contains("pid 100 (app) exited (status 0) with 1 fds open: 1 tcp from 1 place"));
}

#[test]
fn a_process_in_another_pid_namespace_is_named_with_its_pid_there() {
    let events = [socket(S, 3, 1), ev(5 * S, Body::Exit { code: 0 })];
    let (l, s) = given(&events);
    let mut h = header(20 * S);
    h.info.targets = vec![TargetInfo { pid: PID, comm: "app".into(), ns_pid: Some(1) }];
    h.info.ns_pids = [(PID, 1)].into_iter().collect();
    let r = build(&h, &opts(), &l, &s, &Sockets::new());
    assert_eq!(r.ns_pid, Some(1));
    assert_eq!(r.exited[0].ns_pid, Some(1));
    let t = text::render(&r);
    assert!(t.starts_with("fdtrace report: pid 100 (app, pid 1 in its namespace) · "), "{t}");
    assert!(t.contains("  pid 100 (app, pid 1 in its namespace) exited (status 0) with 1 fds open"), "{t}");
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!((v["ns_pid"].as_u64(), v["targets"][0]["ns_pid"].as_u64()), (Some(1), Some(1)));
    assert_eq!(v["exited"][0]["ns_pid"].as_u64(), Some(1));
    let back: Report = serde_json::from_value(v).unwrap();
    assert_eq!(back.exited[0].ns_pid, Some(1));

    // Two targets, one of them in a namespace; in fdtrace's own namespace
    // the JSON has no ns_pid at all.
    h.info.targets.push(TargetInfo { pid: 200, comm: "b".into(), ns_pid: None });
    let r = build(&h, &opts(), &l, &s, &Sockets::new());
    assert!(
        text::render(&r).starts_with("fdtrace report: pids 100 (app, pid 1 in its namespace), 200 (b) · ")
    );
    let r = build(&header(20 * S), &opts(), &l, &s, &Sockets::new());
    let json = serde_json::to_string(&r).unwrap();
    assert!(!json.contains("ns_pid"), "{json}");
    assert!(text::render(&r).contains("  pid 100 (app) exited (status 0)"));
}

#[test]
fn what_was_open_at_exit_counts_however_young() {
    // Opened 0.1 s before the exit, with --min-age 1: it can never grow
    // older, so it counts; a live fd as young does not.
    let events = [
        socket(S, 3, 1),
        socket(4 * S + S / 2, 4, 3),
        file(49 * S / 10, 5, 3),
        ev(5 * S, Body::Exit { code: 3 << 8 }),
    ];
    let r = build_at(20, &events, &all_fds());
    assert_eq!(r.unclosed, 3);
    let e = &r.exited[0];
    assert_eq!((e.open_at_exit, e.unclosed, e.places), (3, 3, 2));
    let kinds: Vec<(&str, usize)> = e.unclosed_kinds.iter().map(|(k, n)| (k.as_str(), *n)).collect();
    assert_eq!(kinds, vec![("file", 1), ("tcp", 2)]);
    let text = text::render(&r);
    assert!(text.contains("exited (status 3) with 3 fds open: 2 tcp, 1 file from 2 places"), "{text}");
    assert!(text.contains("open longer than 1.0 s or left open at exit"), "{text}");

    let live = build_at(5, &[socket(S, 3, 1), socket(4 * S + S / 2, 4, 1)], &opts());
    assert_eq!(live.unclosed, 1, "a live fd younger than --min-age does not count yet");
}

#[test]
fn suppressed_stacks_are_left_out_and_counted() {
    let suppress = Suppressions::parse("main.logs\n").unwrap();
    let events = [socket(S, 3, 1), file(S, 4, 3), file(S, 5, 3)];
    let r = build_at(10, &events, &Opts { suppress, ..all_fds() });
    assert_eq!(r.groups.len(), 1, "{:#?}", r.groups);
    assert_eq!(r.groups[0].stack[1].function.as_deref(), Some("main.leak"));
    assert_eq!(r.unclosed, 1);
    assert_eq!(r.suppressed, vec![Suppressed { rule: "main.logs".into(), groups: 1, fds: 2 }]);
    let text = text::render(&r);
    assert!(text.contains("suppressed: 2 fds from 1 place by \"main.logs\""), "{text}");
    // A rule that matches nothing is not listed.
    let suppress = Suppressions::parse("nothing.here\n").unwrap();
    let r = build_at(10, &events, &Opts { suppress, ..all_fds() });
    assert!(r.suppressed.is_empty());
    assert_eq!(r.unclosed, 3);
}

#[test]
fn top_limits_groups_and_says_how_many_were_left_out() {
    let events = [socket(S, 3, 1), file(S, 4, 3)];
    let r = build_at(10, &events, &Opts { top: 1, ..all_fds() });
    assert_eq!((r.groups.len(), r.more_groups), (1, 1));
    assert!(text::render(&r).contains("1 more groups"));
}

#[test]
fn nothing_unclosed_says_so() {
    let r = build_at(10, &[socket(S, 3, 1), ev(2 * S, Body::Close { fd: 3 })], &opts());
    assert!(r.groups.is_empty());
    assert!(text::render(&r).contains("no sockets open longer than 1.0 s"));
}

#[test]
fn completeness_follows_losses_and_reconciliation() {
    let (l, s) = given(&[]);
    let ok = build(&header(S), &opts(), &l, &s, &HashMap::new());
    assert!(ok.complete);
    let mut h = header(S);
    h.stats.lost_events = 3;
    let lossy = build(&h, &opts(), &l, &s, &HashMap::new());
    assert!(!lossy.complete);
    assert!(text::render(&lossy).contains("3 LOST (raise --ringbuf-size)"));
}

#[test]
fn text_fits_in_100_columns() {
    let long: Vec<String> =
        (0..30).map(|i| format!("github.com/some/very/long/module/path/pkg{i}.(*Type).Method{i}")).collect();
    let names: Vec<&str> = long.iter().map(String::as_str).collect();
    let (l, mut s) = given(&[socket(S, 3, 9)]);
    s.insert(PID, stack(9), frames(&names));
    let r = build(&header(10 * S), &opts(), &l, &s, &HashMap::new());
    for line in text::render(&r).lines() {
        assert!(line.chars().count() <= 100, "too wide: {line}");
    }
}

#[test]
fn stacks_start_at_the_programs_own_code() {
    let lib = |f: &str| Frame {
        function: Some(f.into()),
        file: Some(format!("/rustc/x/library/std/{f}.rs")),
        line: Some(1),
        module: Some("app".into()),
        offset: None,
    };
    let own = |f: &str| Frame {
        function: Some(f.into()),
        file: Some("/src/app.rs".into()),
        line: Some(9),
        module: Some("app".into()),
        offset: None,
    };
    let (l, mut s) = given(&[socket(S, 3, 9)]);
    s.insert(
        PID,
        stack(9),
        Resolved::Frames(
            vec![lib("socket"), lib("connect"), own("fetch"), own("main"), lib("lang_start"), lib("start")]
                .into(),
        ),
    );
    let text = text::render(&build(&header(10 * S), &opts(), &l, &s, &HashMap::new()));
    assert!(text.contains("(2 library frames: socket ← connect)"), "{text}");
    assert!(
        text.contains("    at fetch  /src/app.rs:9\n       main  /src/app.rs:9\n       … 2 more frames"),
        "{text}"
    );
}

#[test]
fn json_has_the_documented_fields() {
    let r = build_at(10, &[socket(S, 3, 1), connect(S, 3, "127.0.0.1:9901")], &opts());
    let v = serde_json::to_value(&r).unwrap();
    for key in ["type", "pid", "elapsed_s", "final", "lost_events", "missed_open", "missed_close", "groups"] {
        assert!(v.get(key).is_some(), "no {key} in {v}");
    }
    assert_eq!(v["type"], "report");
    let g = &v["groups"][0];
    for key in ["stack", "open", "opened", "closed", "oldest_age_s", "growth_per_s", "fds"] {
        assert!(g.get(key).is_some(), "no {key} in group {g}");
    }
    for key in ["function", "file", "line", "module"] {
        assert!(g["stack"][0].get(key).is_some(), "no {key} in frame");
    }
    for key in ["pid", "fd", "kind", "local", "remote", "state", "age_s"] {
        assert!(g["fds"][0].get(key).is_some(), "no {key} in fd");
    }
    assert_eq!(g["fds"][0]["remote"], "127.0.0.1:9901");
}

#[test]
fn goroutines_group_by_the_stack_that_started_them() {
    let events = [
        go_dial(S, 3, 10, 0xa),
        go_dial(S, 4, 11, 0xb),
        go_dial(2 * S, 5, 10, 0xc),
        go_dial(2 * S, 6, 12, 0xd),
        ev(3 * S, Body::Close { fd: 5 }),
    ];
    let (l, s) = given_go(&events);
    let mut h = header(10 * S);
    h.info.origin_notes = vec!["go1.19: parents not recorded".into()];
    let r = build(&h, &opts(), &l, &s, &HashMap::new());
    assert_eq!(r.groups.len(), 3, "{r:#?}");
    assert_eq!(r.notes, ["go1.19: parents not recorded"], "shown with the origins it qualifies");
    let by_caller = |f: &str| {
        r.groups.iter().find(|g| g.spawned_by.iter().any(|x| x.function.as_deref() == Some(f))).unwrap()
    };
    let fetch = by_caller("main.fetchStatus");
    assert_eq!((fetch.open, fetch.opened, fetch.closed), (1, 2, 1));
    assert_eq!(fetch.stack[1].function.as_deref(), Some("main.leak"), "the opening stack is kept");
    assert_eq!(by_caller("main.poll").open, 1);
    // An unresolvable spawn stack leaves the fd grouped by its own stack.
    let plain = r.groups.iter().find(|g| g.spawned_by.is_empty()).unwrap();
    assert_eq!((plain.open, plain.opened), (1, 1));
    let text = text::render(&r);
    assert!(text.contains("started by"), "{text}");
    let started = text.find("at main.fetchStatus").expect(&text);
    assert!(text[..started].contains("net.dial"), "the opening stack is shown before the caller:\n{text}");
}

#[test]
fn a_transport_per_request_is_named() {
    let events: Vec<Event> = (0..5).map(|i| go_dial((i + 1) * S, 3 + i as i32, 10, 0x100 + i)).collect();
    let (l, s) = given_go(&events);
    let r = build(&header(10 * S), &opts(), &l, &s, &HashMap::new());
    let g = &r.groups[0];
    assert_eq!(g.findings.len(), 1, "{g:#?}");
    assert_eq!(g.findings[0].kind, "http-transport-per-request");
    assert!(g.findings[0].message.starts_with("5 connections from 5 different http.Transports"));
    assert_eq!(g.fds[0].http_transport.as_deref(), Some("0x100"));
    assert!(text::render(&r).contains("CloseIdleConnections"));
}

#[test]
fn a_long_list_keeps_its_oldest_fds_and_counts_every_one() {
    // 50 sockets of one group, opened at 1..50 s, each from a Transport of
    // its own, 10 peers; the list keeps 3 of them (trimmed many times).
    let mut events = vec![];
    for i in 0..50u64 {
        let fd = 3 + i as i32;
        events.push(go_dial((i + 1) * S, fd, 10, 0x100 + i));
        events.push(connect((i + 1) * S, fd, &format!("10.0.0.{}:80", i % 10)));
    }
    let (l, s) = given_go(&events);
    let r = build(&header(60 * S), &Opts { fds_per_group: 3, ..opts() }, &l, &s, &HashMap::new());
    let g = &r.groups[0];
    assert_eq!(g.open, 50);
    assert_eq!(g.fds.iter().map(|f| f.fd).collect::<Vec<_>>(), [3, 4, 5], "the oldest, oldest first");
    assert_eq!(g.fds[0].age_s, 59.0);
    assert_eq!(g.peers.len(), 10);
    assert!(g.peers.iter().all(|p| p.count == 5), "{:?}", g.peers);
    assert!(g.findings[0].message.starts_with("50 connections from 50 different http.Transports"));
    let unlimited =
        build(&header(60 * S), &Opts { fds_per_group: usize::MAX, ..opts() }, &l, &s, &HashMap::new());
    assert_eq!(unlimited.groups[0].fds.len(), 50);
    assert_eq!(unlimited.groups[0].fds[..3], g.fds[..]);
}

#[test]
fn one_transport_growing_past_its_idle_pool_is_named() {
    let peer = "127.0.0.1:8080";
    let mut events = vec![];
    for i in 0..5 {
        events.push(go_dial((i + 1) * S, 3 + i as i32, 10, 0xa));
        events.push(connect((i + 1) * S, 3 + i as i32, peer));
    }
    let (l, s) = given_go(&events);
    let r = build(&header(10 * S), &opts(), &l, &s, &HashMap::new());
    let kinds: Vec<&str> = r.groups[0].findings.iter().map(|f| f.kind.as_str()).collect();
    assert_eq!(kinds, ["http-bodies-not-closed"]);

    // Two sockets of one Transport are its idle pool: nothing to say.
    let (l, s) = given_go(&events[..4]);
    let r = build(&header(10 * S), &opts(), &l, &s, &HashMap::new());
    assert!(r.groups[0].findings.is_empty());
}

#[test]
fn notes_are_shown() {
    let (l, s) = given(&[]);
    let mut h = header(S);
    h.info.notes = vec!["pid 100: Go binary (go1.22) without symbols".into()];
    h.info.origin_notes = vec!["go1.19: parents not recorded".into()];
    let r = build(&h, &opts(), &l, &s, &HashMap::new());
    assert_eq!(r.notes.len(), 1, "no goroutine origins in the report: no note on them");
    assert!(text::render(&r).contains("note: pid 100: Go binary (go1.22) without symbols"));
}

#[test]
fn sockets_from_before_point_at_the_group_with_the_same_peers() {
    let mut l = Ledger::new();
    let peer: Addr = Addr::Inet("127.0.0.1:8080".parse().unwrap());
    let old = ProcFd {
        fd: 3,
        kind: FdKind::Socket,
        cloexec: false,
        desc: crate::ledger::FdDesc::default().with_ends(None, Some(peer)),
    };
    l.add_process(PID, Comm::from_str_lossy("app"), 0, vec![old]);
    let mut out = vec![];
    for e in [socket(S, 4, 1), connect(S, 4, "127.0.0.1:8080"), socket(S, 5, 3), connect(S, 5, "10.0.0.1:53")]
    {
        l.apply(&e, &mut out);
    }
    let (_, s) = given(&[]);
    let r = build(&header(10 * S), &opts(), &l, &s, &HashMap::new());
    let pre = r.groups.iter().find(|g| g.origin == "pre-existing").unwrap();
    let n = r
        .groups
        .iter()
        .position(|g| g.stack.iter().any(|f| f.function.as_deref() == Some("main.leak")))
        .unwrap();
    assert_eq!(pre.same_peers_as, [n + 1]);
    assert!(text::render(&r).contains(&format!("same peers and states as #{}", n + 1)));
}

#[test]
fn colours_mark_the_evidence_only_when_asked() {
    // Given a report with CLOSE_WAIT peers, growth and lost events
    let mut r = sample::report(vec![sample::close_wait(3)]);
    r.stats.lost_events = 2;
    r.complete = false;
    // When rendered with and without colours
    let plain = text::render(&r);
    let coloured = text::render_with(&r, text::Paint { enabled: true });
    // Then only the coloured one has ANSI sequences, around the evidence
    assert!(!plain.contains('\x1b'), "{plain}");
    assert!(coloured.contains("    \x1b[1;31m    3 × 10.0.0.1:80 CLOSE_WAIT"), "{coloured}");
    assert!(coloured.contains("\x1b[1;31mDATA INCOMPLETE\x1b[0m"), "{coloured}");
    assert!(coloured.contains("\x1b[1;31m2 LOST"), "{coloured}");
    assert!(coloured.contains("\x1b[33mgrowing +1.5/s\x1b[0m"), "{coloured}");
    // and the words are the same once the sequences are removed
    let stripped = coloured.replace("\x1b[1;31m", "").replace("\x1b[33m", "").replace("\x1b[0m", "");
    assert_eq!(stripped, plain);
}

#[test]
fn lost_events_say_why_and_what_to_do() {
    let (l, s) = given(&[]);
    let mut h = header(S);
    // Given events lost to a full ring only, then also to nested programs
    h.stats.lost_events = 3;
    h.stats.lost_by_reason = [("ringbuf_full".to_string(), 3)].into_iter().collect();
    let text = text::render(&build(&h, &opts(), &l, &s, &HashMap::new()));
    assert!(text.contains("3 LOST (ring buffer full: raise --ringbuf-size)"), "{text}");
    h.stats.lost_events = 5;
    h.stats.lost_by_reason.insert("scratch_busy".into(), 2);
    let text = text::render(&build(&h, &opts(), &l, &s, &HashMap::new()));
    assert!(
        text.contains("5 LOST (3 ring buffer full: raise --ringbuf-size; 2 nested kernel programs)"),
        "{text}"
    );
    // and in JSON the reasons appear only when there are some.
    let r = build(&h, &opts(), &l, &s, &HashMap::new());
    assert_eq!(serde_json::to_value(&r).unwrap()["lost_by_reason"]["scratch_busy"], 2);
    h.stats = Stats::default();
    let r = build(&h, &opts(), &l, &s, &HashMap::new());
    assert!(serde_json::to_value(&r).unwrap().get("lost_by_reason").is_none());
}

/// Node's frames: native ones in the `node` binary, JavaScript ones from
/// its perf map.
fn node_stack(js: &[&str]) -> Resolved {
    let native = |f: &str| Frame {
        function: Some(f.into()),
        file: None,
        line: None,
        module: Some("node".into()),
        offset: None,
    };
    let mut frames = vec![native("uv__tcp_connect"), native("node::TCPWrap::Connect")];
    frames.extend(js.iter().map(|n| crate::symbolize::perfmap::frame(n)));
    frames.push(native("uv_run"));
    Resolved::Frames(frames.into())
}

#[test]
fn a_node_connect_from_the_tick_queue_is_asynchronous_and_one_group_whatever_the_tiers() {
    let (l, mut s) = given(&[socket(S, 3, 1), socket(S, 4, 2), socket(S, 5, 3)]);
    // The same functions, compiled by different tiers.
    s.insert(
        PID,
        stack(1),
        node_stack(&[
            "JS:~internalConnect node:net:1038:25",
            "JS:~processTicksAndRejections node:internal/process/task_queues:67:35",
        ]),
    );
    s.insert(
        PID,
        stack(2),
        node_stack(&[
            "JS:*internalConnect node:net:1038:25",
            "JS:^processTicksAndRejections node:internal/process/task_queues:67:35",
        ]),
    );
    // The program's own function on the stack: not asynchronous.
    s.insert(PID, stack(3), node_stack(&["JS:~connect node:net:1200:3", "JS:^fetchStatus /app/a.js:15:21"]));
    let r = build(&header(10 * S), &opts(), &l, &s, &HashMap::new());
    assert_eq!(r.groups.len(), 2, "{r:#?}");
    let tick = r.groups.iter().find(|g| g.open == 2).unwrap();
    let a = tick.asynchronous.as_ref().unwrap();
    assert_eq!(
        (a.runtime.as_str(), a.entry.function.as_deref()),
        ("node", Some("processTicksAndRejections"))
    );
    let own = r.groups.iter().find(|g| g.open == 1).unwrap();
    assert_eq!(own.asynchronous, None);
    let text = text::render(&r);
    assert!(
        text.contains("asynchronous: opened from node's event loop in processTicksAndRejections"),
        "{text}"
    );
    assert!(text.contains("fetchStatus  /app/a.js:15"), "{text}");
}
