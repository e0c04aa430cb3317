//! The output formats pinned byte for byte: one scripted session (a
//! process with sockets of every sort, files, pipes, a Go dial goroutine, a
//! followed child that exits, fds from before the trace) rendered as JSON
//! and text reports and as JSON and text event lines, compared with the
//! files in `golden/`. A change to any format shows up here as a diff;
//! when it is meant, regenerate them with `FDTRACE_BLESS=1 cargo test -p
//! fdtrace golden` and review the diff.
use std::path::PathBuf;

use crate::{
    clock::Clock,
    events::{
        Addr, Body, Comm, Event, FdKind, Open, SockCall, SockOp, SockSource, SockSpec, SockStateChange,
        StackId, StackRef, Syscall, TcpState,
    },
    filter::{Cidr, Filter},
    host::{SocketView, Sockets},
    ledger::{Effect, FdDesc, Ledger, ProcFd},
    report::{self, Head, KernelPairing, Limits, Options, SessionInfo, Stats, TargetInfo},
    sinks::lines::{lines, Format, Printer},
    symbolize::{Frame, Resolved, Stacks},
};

const PID: u32 = 100;
const CHILD: u32 = 101;
const S: u64 = 1_000_000_000;

fn stack(id: u32) -> StackRef {
    StackRef { id: StackId::Id(id), caller_ip: None, at_entry: false, python: None }
}

fn inet(s: &str) -> Option<Addr> {
    Some(Addr::Inet(s.parse().expect("an address")))
}

fn ev(ts_ns: u64, tgid: u32, body: Body) -> Event {
    Event {
        ts_ns,
        tgid,
        tid: tgid + 7,
        comm: Comm::from_str_lossy(if tgid == PID { "app" } else { "worker" }),
        body,
    }
}

fn open(syscall: Syscall, fd: i32, stack_id: u32) -> Open {
    Open::test(syscall, fd, stack_id)
}

fn tcp(fd: i32, stack_id: u32) -> Body {
    Body::Open(Open {
        socket: Some(SockSpec { family: 2, sock_type: 1, protocol: 6 }),
        raw_flags: 1,
        ..open(Syscall::Socket, fd, stack_id)
    })
}

fn sock_call(op: SockOp, fd: i32, ret: i64, addr: Option<Addr>, local: Option<Addr>) -> Body {
    let remote = if op == SockOp::Connect && ret == 0 { addr.clone() } else { None };
    Body::Sock(SockCall { op, fd, ret, addr, local, remote, sk: None })
}

/// The scripted session: every sort of event, in time order.
fn events() -> Vec<Event> {
    let mut e = vec![];
    // Three sockets to 10.0.0.1:80 from stack 1; one more opened and closed.
    for (i, fd) in [5, 6, 7].into_iter().enumerate() {
        e.push(ev(S + i as u64, PID, tcp(fd, 1)));
        e.push(ev(
            S + 10 + i as u64,
            PID,
            sock_call(SockOp::Connect, fd, 0, inet("10.0.0.1:80"), inet(&format!("10.0.0.2:{}", 40000 + fd))),
        ));
    }
    e.push(ev(2 * S, PID, tcp(17, 1)));
    e.push(ev(2 * S + 1, PID, sock_call(SockOp::Connect, 17, -111, inet("10.0.0.9:81"), None)));
    e.push(ev(3 * S, PID, Body::Close { fd: 17 }));
    // A listener from stack 2.
    e.push(ev(S + 100, PID, tcp(8, 2)));
    e.push(ev(S + 101, PID, sock_call(SockOp::Bind, 8, 0, inet("0.0.0.0:8080"), inet("0.0.0.0:8080"))));
    e.push(ev(S + 102, PID, sock_call(SockOp::Listen, 8, 0, None, None)));
    // A Go dial goroutine (stack 5) started from stack 10: three Transports.
    for (i, fd) in [9, 10, 11].into_iter().enumerate() {
        let Body::Open(mut o) = tcp(fd, 5) else { unreachable!() };
        o.go_spawn =
            Some(StackRef { id: StackId::Id(10), caller_ip: Some(0x4a10), at_entry: true, python: None });
        o.go_transport = Some(0xc000_0100 + i as u64 * 0x100);
        e.push(ev(S + 200 + i as u64, PID, Body::Open(o)));
        e.push(ev(
            S + 210 + i as u64,
            PID,
            Body::SockState(SockStateChange {
                source: SockSource::TcpConnect,
                fd: Some(fd),
                old: None,
                new: Some(TcpState::SynSent),
                sk: 0xffff_0000 + fd as u64,
                local: inet(&format!("[fd00::2]:{}", 50000 + fd)),
                remote: inet("[fd00::1]:443"),
            }),
        ));
    }
    // A socket state change in softirq context (no comm).
    let mut softirq = ev(
        S + 300,
        PID,
        Body::SockState(SockStateChange {
            source: SockSource::SetState,
            fd: None,
            old: Some(TcpState::SynSent),
            new: Some(TcpState::Established),
            sk: 0xffff_0009,
            local: inet("[fd00::2]:50009"),
            remote: inet("[fd00::1]:443"),
        }),
    );
    softirq.comm = Comm::default();
    e.push(softirq);
    // A file, a pipe pair, a failed open, a dup2 over the file, cloexec.
    e.push(ev(
        S + 400,
        PID,
        Body::Open(Open { path: Some("/tmp/data".into()), cloexec: true, ..open(Syscall::Openat, 12, 3) }),
    ));
    e.push(ev(
        S + 401,
        PID,
        Body::Open(Open { fd2: Some(14), raw_flags: 0o2000000, ..open(Syscall::Pipe2, 13, 3) }),
    ));
    e.push(ev(
        S + 402,
        PID,
        Body::Open(Open {
            fd: None,
            ret: -2,
            path: Some("/etc/missing".into()),
            ..open(Syscall::Openat, 0, 3)
        }),
    ));
    e.push(ev(
        S + 403,
        PID,
        Body::Open(Open { path: Some("/tmp/old".into()), ..open(Syscall::Openat, 18, 3) }),
    ));
    e.push(ev(S + 404, PID, Body::Open(Open { src_fd: Some(13), ..open(Syscall::Dup2, 18, 3) })));
    e.push(ev(S + 405, PID, Body::SetCloexec { fd: 18, cloexec: true }));
    e.push(ev(
        S + 406,
        PID,
        Body::Open(Open { src_fd: Some(12), raw_flags: 1030, ..open(Syscall::Fcntl, 19, 3) }),
    ));
    e.push(ev(S + 407, PID, Body::CloseRange { first: 19, last: u32::MAX, flags: 0 }));
    e.push(ev(S + 408, PID, Body::CloseRange { first: 18, last: 18, flags: 4 }));
    // An accepted connection on the listener, with its peer.
    e.push(ev(
        S + 500,
        PID,
        Body::Open(Open {
            src_fd: Some(8),
            remote: inet("10.0.0.7:51000"),
            local: inet("10.0.0.2:8080"),
            ..open(Syscall::Accept4, 20, 2)
        }),
    ));
    // A followed child: a copy of the table, a unix socket, exec, exit.
    e.push(ev(4 * S, PID, Body::Fork { child: CHILD, shares_files: false, followed: true }));
    e.push(ev(
        4 * S + 1,
        CHILD,
        Body::Open(Open {
            socket: Some(SockSpec { family: 1, sock_type: 1, protocol: 0 }),
            ..open(Syscall::Socket, 21, 4)
        }),
    ));
    e.push(ev(
        4 * S + 2,
        CHILD,
        sock_call(SockOp::Connect, 21, 0, Some(Addr::Unix("/run/app.sock".into())), None),
    ));
    e.push(ev(4 * S + 3, CHILD, Body::Exec { filename: "/usr/bin/worker".into(), old_tid: CHILD }));
    e.push(ev(6 * S, CHILD, Body::Exit { code: 256 }));
    // Lines that only the event stream shows: a close of an fd fdtrace
    // does not know, an open whose entry was not seen, a non-blocking
    // connect in progress, a failed listen, TCP's close, a fork sharing
    // the table (not followed).
    e.push(ev(7 * S, PID, Body::Close { fd: 99 }));
    e.push(ev(
        7 * S + 1,
        PID,
        Body::Open(Open { missed_entry: true, src_fd: Some(8), ..open(Syscall::Accept, 22, 2) }),
    ));
    e.push(ev(7 * S + 2, PID, tcp(23, 1)));
    e.push(ev(
        7 * S + 3,
        PID,
        sock_call(SockOp::Connect, 23, -115, inet("10.0.0.1:80"), inet("10.0.0.2:40023")),
    ));
    e.push(ev(7 * S + 4, PID, sock_call(SockOp::Listen, 23, -22, None, None)));
    e.push(ev(
        7 * S + 5,
        PID,
        Body::SockState(SockStateChange {
            source: SockSource::TcpClose,
            fd: None,
            old: None,
            new: Some(TcpState::CloseWait),
            sk: 0xffff_0017,
            local: inet("10.0.0.2:40023"),
            remote: inet("10.0.0.1:80"),
        }),
    ));
    e.push(ev(7 * S + 6, PID, Body::Close { fd: 23 }));
    e.push(ev(7 * S + 7, PID, Body::Fork { child: 102, shares_files: true, followed: false }));
    e.push(ev(7 * S + 8, PID, sock_call(SockOp::Bind, 22, -98, inet("0.0.0.0:8080"), None)));
    // Too young to count at the report.
    e.push(ev(9 * S + S / 2, PID, tcp(16, 1)));
    e
}

fn frame(function: &str, file: &str, line: u32, module: &str) -> Frame {
    Frame {
        function: Some(function.into()),
        file: Some(file.into()),
        line: Some(line),
        module: Some(module.into()),
        offset: None,
    }
}

fn stacks() -> Stacks {
    let mut s = Stacks::new();
    let libc = |f: &str| Frame {
        function: Some(f.into()),
        file: None,
        line: None,
        module: Some("libc.so.6".into()),
        offset: None,
    };
    let dial = [
        libc("__GI_socket"),
        frame("main.dial", "/src/app/main.go", 7, "app"),
        frame("main.main", "/src/app/main.go", 40, "app"),
    ];
    for tgid in [PID, CHILD] {
        s.insert(tgid, stack(1), Resolved::Frames(dial.to_vec().into()));
        s.insert(
            tgid,
            stack(2),
            Resolved::Frames(
                vec![libc("__GI_socket"), frame("main.serve", "/src/app/main.go", 20, "app")].into(),
            ),
        );
        s.insert(
            tgid,
            stack(3),
            Resolved::Frames(vec![frame("main.logs", "/src/app/logs.go", 3, "app")].into()),
        );
        s.insert(tgid, stack(4), Resolved::Failed("stack no longer in the stack map".into()));
        s.insert(
            tgid,
            stack(5),
            Resolved::Frames(
                vec![
                    frame("syscall.Socket", "/usr/lib/go/src/syscall/syscall_unix.go", 9, "app"),
                    frame("net.sysSocket", "/usr/lib/go/src/net/sock_cloexec.go", 19, "app"),
                    frame(
                        "net/http.(*Transport).dialConnFor",
                        "/usr/lib/go/src/net/http/transport.go",
                        1465,
                        "app",
                    ),
                    frame("runtime.goexit", "/usr/lib/go/src/runtime/asm_amd64.s", 1598, "app"),
                ]
                .into(),
            ),
        );
        s.insert(
            tgid,
            StackRef { id: StackId::Id(10), caller_ip: Some(0x4a10), at_entry: true, python: None },
            Resolved::Frames(
                vec![
                    frame(
                        "net/http.(*Transport).queueForDial",
                        "/usr/lib/go/src/net/http/transport.go",
                        1425,
                        "app",
                    ),
                    frame("main.fetchStatus", "/src/app/main.go", 30, "app"),
                    frame("main.main", "/src/app/main.go", 87, "app"),
                ]
                .into(),
            ),
        );
    }
    s
}

/// The ledger after the session, with the effects of each event.
fn ledger() -> (Ledger, Vec<(Event, Vec<Effect>)>) {
    let mut l = Ledger::new();
    let pre = vec![
        ProcFd {
            fd: 3,
            kind: FdKind::Socket,
            cloexec: false,
            desc: FdDesc { inode: Some(777), ..FdDesc::default() }.with_ends(None, inet("10.0.0.1:80")),
        },
        ProcFd {
            fd: 4,
            kind: FdKind::File,
            cloexec: false,
            desc: FdDesc { path: Some("/var/log/app.log".into()), ..FdDesc::default() },
        },
    ];
    l.add_process(PID, Comm::from_str_lossy("app"), 0, pre);
    let mut applied = vec![];
    for e in events() {
        let mut fx = vec![];
        l.apply(&e, &mut fx);
        applied.push((e, fx));
    }
    (l, applied)
}

fn info() -> SessionInfo {
    SessionInfo {
        pid: PID,
        comm: "app".into(),
        started_ns: 0,
        tier: "tracepoint".into(),
        hooks: [
            ("fd close", "tracepoint"),
            ("fd install", "tracepoint"),
            ("tcp close", "tracepoint"),
            ("tcp connect", "tracepoint"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect(),
        notes: vec!["pid 100: a note about the session".into()],
        origin_notes: vec!["pid 100: go1.19.8: the runtime does not record a goroutine's parent".into()],
        targets: vec![TargetInfo { pid: PID, comm: "app".into(), ns_pid: None }],
        ns_pids: Default::default(),
    }
}

fn stats() -> Stats {
    Stats {
        events: 321,
        lost_events: 0,
        lost_by_reason: Default::default(),
        stacks_failed: 1,
        partial_events: [("missed_entry".to_string(), 2)].into_iter().collect(),
        missed_open: 0,
        missed_close: 1,
        kernel_pairing: Some(KernelPairing { kept: 200, paired: 180, taken: 20, sent: 21, tables_full: 0 }),
    }
}

fn sockets() -> Sockets {
    let view = |state, local: &str, remote: Option<&str>, idle_ms| SocketView {
        inode: 0,
        spec: None,
        state: Some(state),
        local: inet(local),
        remote: remote.and_then(inet),
        idle_ms,
        queues: None,
    };
    [
        ((PID, 5), view(TcpState::Established, "10.0.0.2:40005", Some("10.0.0.1:80"), Some(12_500))),
        ((PID, 6), view(TcpState::CloseWait, "10.0.0.2:40006", Some("10.0.0.1:80"), Some(2_500))),
        ((PID, 3), view(TcpState::Established, "10.0.0.2:39000", Some("10.0.0.1:80"), None)),
        ((PID, 8), view(TcpState::Listen, "0.0.0.0:8080", None, None)),
    ]
    .into_iter()
    .collect()
}

/// Reports of the session: sockets with the defaults; every kind with a
/// small --top and --fds-per-group; a --port/--state filter.
fn reports() -> Vec<(&'static str, report::Report)> {
    let (l, _) = ledger();
    let (s, info, stats, views) = (stacks(), info(), stats(), sockets());
    let head = Head { info: &info, stats: &stats, now_ns: 10 * S, is_final: true };
    let sockets_only = Filter { kinds: Some(vec![FdKind::Socket]), ..Filter::default() };
    let filtered = Filter {
        kinds: Some(vec![FdKind::Socket]),
        ports: vec![80, 443],
        states: vec![TcpState::Established, TcpState::CloseWait, TcpState::SynSent],
        remotes: vec![Cidr::parse("10.0.0.0/8").expect("cidr"), Cidr::parse("fd00::/8").expect("cidr")],
    };
    let report = |filter: Filter, limits: Limits| {
        report::build(
            head,
            &Options { min_age_ns: S, filter, suppress: Default::default(), fds_per_group: usize::MAX },
            &l,
            &s,
            &views,
        )
        .limited(limits)
    };
    let defaults = Limits { top: 10, fds_per_group: 1000 };
    vec![
        ("sockets", report(sockets_only, defaults)),
        ("all", report(Filter::default(), Limits { top: 4, fds_per_group: 2 })),
        ("filtered", report(filtered, defaults)),
    ]
}

fn event_lines(format: Format, filter: &Filter) -> String {
    let (_, applied) = ledger();
    let mut l = Ledger::new();
    l.add_process(PID, Comm::from_str_lossy("app"), 0, vec![]);
    let mut out = Vec::new();
    {
        let mut p = Printer::new(&mut out, format, Clock::fixed(1_764_000_000 * S as i128, 0));
        for (e, _) in applied {
            let mut fx = vec![];
            l.apply(&e, &mut fx);
            for line in lines(&e, &fx) {
                if line.shown(filter, &l, &fx) {
                    p.line(&line).expect("writing to memory");
                }
            }
        }
    }
    String::from_utf8(out).expect("utf-8")
}

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/golden")
}

/// Compares `got` with the golden file `name` (or writes it, blessing).
fn check(name: &str, got: &str) {
    let path = golden_dir().join(name);
    if std::env::var_os("FDTRACE_BLESS").is_some() {
        std::fs::create_dir_all(golden_dir()).expect("golden dir");
        std::fs::write(&path, got).expect("writing a golden file");
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (create it with FDTRACE_BLESS=1)", path.display()));
    if want != got {
        let first = want
            .lines()
            .zip(got.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(want.lines().count().min(got.lines().count()));
        panic!(
            "{name} differs from {} at line {}:\nwant: {}\ngot:  {}\n(if the change is meant: FDTRACE_BLESS=1 cargo test -p fdtrace golden)",
            path.display(),
            first + 1,
            want.lines().nth(first).unwrap_or("<end>"),
            got.lines().nth(first).unwrap_or("<end>"),
        );
    }
}

#[test]
fn json_reports_are_byte_for_byte_the_documented_schema() {
    let mut json = String::new();
    for (_, r) in reports() {
        json.push_str(&serde_json::to_string(&r).expect("serializable"));
        json.push('\n');
    }
    check("reports.jsonl", &json);
}

#[test]
fn text_reports_are_unchanged() {
    let mut text = String::new();
    for (name, r) in reports() {
        text.push_str(&format!("==== {name}\n"));
        text.push_str(&report::text::render(&r));
    }
    check("reports.txt", &text);
}

#[test]
fn event_lines_are_unchanged() {
    check("events.jsonl", &event_lines(Format::Json, &Filter::default()));
    check("events.txt", &event_lines(Format::Text, &Filter::default()));
    let f = Filter {
        kinds: Some(vec![FdKind::Socket, FdKind::Pipe]),
        ports: vec![80, 443, 8080],
        states: vec![],
        remotes: vec![],
    };
    check("events-filtered.jsonl", &event_lines(Format::Json, &f));
    let f = Filter { states: vec![TcpState::SynSent, TcpState::Listen], ..Filter::default() };
    check("events-by-state.jsonl", &event_lines(Format::Json, &f));
}

#[test]
fn json_reads_back_into_the_same_values() {
    // Every golden JSON line, read into the typed values and written
    // again, gives the same bytes: what the tests and the bench read is
    // what fdtrace writes.
    let read = |name: &str| std::fs::read_to_string(golden_dir().join(name)).expect("golden file");
    for line in read("reports.jsonl").lines() {
        let r: report::Report = serde_json::from_str(line).expect("a report");
        assert_eq!(serde_json::to_string(&r).expect("serializable"), line);
    }
    for name in ["events.jsonl", "events-filtered.jsonl", "events-by-state.jsonl"] {
        for line in read(name).lines() {
            let e: crate::sinks::lines::EventLine = serde_json::from_str(line).expect("an event line");
            assert_eq!(serde_json::to_string(&e).expect("serializable"), line);
        }
    }
}
