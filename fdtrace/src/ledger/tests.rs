//! Ledger semantics, one behaviour per test, Given/When/Then.
use super::*;
use crate::events::{Addr, Open, SockSource, SockSpec, SockStateChange, StackId, StackRef, TcpState};

const PID: u32 = 100;

fn ev(ts_ns: u64, tgid: u32, body: Body) -> Event {
    Event { ts_ns, tgid, tid: tgid, comm: Comm::from_str_lossy("app"), body }
}

fn stack(id: u32) -> StackRef {
    StackRef { id: StackId::Id(id), caller_ip: None, at_entry: false, python: None }
}

fn open(syscall: Syscall, fd: i32) -> Open {
    Open::test(syscall, fd, 1)
}

fn socket(fd: i32) -> Body {
    Body::Open(Open {
        socket: Some(SockSpec { family: 2, sock_type: 1, protocol: 6 }),
        ..open(Syscall::Socket, fd)
    })
}

fn file(fd: i32, cloexec: bool) -> Body {
    Body::Open(Open { cloexec, path: Some(format!("/tmp/f{fd}")), ..open(Syscall::Openat, fd) })
}

fn dup(syscall: Syscall, src: i32, fd: i32) -> Body {
    Body::Open(Open { src_fd: Some(src), ..open(syscall, fd) })
}

/// A ledger following PID with no fds, attached at t=0.
fn given_empty() -> Ledger {
    let mut l = Ledger::new();
    l.add_process(PID, Comm::from_str_lossy("app"), 0, vec![]);
    l
}

fn apply(l: &mut Ledger, events: &[Event]) -> Vec<Effect> {
    let mut out = vec![];
    for e in events {
        l.apply(e, &mut out);
    }
    out
}

fn open_fds(l: &Ledger, tgid: u32) -> Vec<i32> {
    l.open_fds(tgid).map(|e| e.fd).collect()
}

fn closes(effects: &[Effect]) -> Vec<(i32, CloseCause)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Closed { entry, cause, .. } => Some((entry.fd, *cause)),
            Effect::Opened { .. } => None,
        })
        .collect()
}

#[test]
fn open_then_close_leaves_nothing_open() {
    let mut l = given_empty();
    let fx = apply(&mut l, &[ev(1, PID, socket(3)), ev(2, PID, Body::Close { fd: 3 })]);
    assert!(open_fds(&l, PID).is_empty());
    assert_eq!(closes(&fx), vec![(3, CloseCause::Close)]);
    assert_eq!(
        l.stack_counts()[&(PID, Site { stack: stack(1), spawn: None })],
        StackCounts { opened: 1, closed: 1 }
    );
}

#[test]
fn failed_opens_install_nothing() {
    let mut l = given_empty();
    let failed = Body::Open(Open { fd: None, ret: -24, ..open(Syscall::Socket, 0) });
    apply(&mut l, &[ev(1, PID, failed)]);
    assert!(open_fds(&l, PID).is_empty());
}

#[test]
fn dup_shares_the_source_file_and_both_stay_open() {
    let mut l = given_empty();
    apply(&mut l, &[ev(1, PID, socket(3)), ev(2, PID, dup(Syscall::Dup, 3, 4))]);
    assert_eq!(open_fds(&l, PID), vec![3, 4]);
    assert_eq!(l.entry(PID, 4).unwrap().kind, FdKind::Socket);
}

#[test]
fn dup2_onto_an_open_fd_closes_it_first() {
    let mut l = given_empty();
    let fx = apply(
        &mut l,
        &[ev(1, PID, socket(3)), ev(2, PID, file(5, false)), ev(3, PID, dup(Syscall::Dup2, 3, 5))],
    );
    assert_eq!(closes(&fx), vec![(5, CloseCause::Replaced)]);
    let five = l.entry(PID, 5).unwrap();
    assert_eq!(five.kind, FdKind::Socket);
    assert_ne!(five.serial, l.entry(PID, 3).unwrap().serial);
}

#[test]
fn reusing_a_number_starts_a_new_lifetime() {
    let mut l = given_empty();
    apply(&mut l, &[ev(1, PID, socket(3))]);
    let first = l.entry(PID, 3).unwrap().serial;
    apply(&mut l, &[ev(2, PID, Body::Close { fd: 3 }), ev(3, PID, file(3, false))]);
    let second = l.entry(PID, 3).unwrap();
    assert_ne!(second.serial, first);
    assert_eq!((second.kind, second.opened_ns), (FdKind::File, 3));
}

#[test]
fn close_range_closes_only_the_range() {
    let mut l = given_empty();
    let setup: Vec<Event> = (3..8).map(|fd| ev(1, PID, file(fd, false))).collect();
    apply(&mut l, &setup);
    let fx = apply(&mut l, &[ev(2, PID, Body::CloseRange { first: 4, last: 6, flags: 0 })]);
    assert_eq!(open_fds(&l, PID), vec![3, 7]);
    assert_eq!(closes(&fx).len(), 3);
}

#[test]
fn close_range_to_uint_max_closes_everything_above() {
    let mut l = given_empty();
    apply(&mut l, &[ev(1, PID, file(3, false)), ev(1, PID, file(900, false))]);
    apply(&mut l, &[ev(2, PID, Body::CloseRange { first: 3, last: u32::MAX, flags: 0 })]);
    assert!(open_fds(&l, PID).is_empty());
}

#[test]
fn close_range_cloexec_only_marks_and_exec_then_closes() {
    let mut l = given_empty();
    apply(&mut l, &[ev(1, PID, file(3, false)), ev(1, PID, file(4, false))]);
    let fx = apply(&mut l, &[ev(2, PID, Body::CloseRange { first: 4, last: 4, flags: CLOSE_RANGE_CLOEXEC })]);
    assert!(fx.is_empty());
    assert_eq!(open_fds(&l, PID), vec![3, 4]);
    let fx = apply(&mut l, &[ev(3, PID, Body::Exec { filename: "/bin/true".into(), old_tid: PID })]);
    assert_eq!(closes(&fx), vec![(4, CloseCause::Exec)]);
    assert_eq!(open_fds(&l, PID), vec![3]);
}

#[test]
fn a_failing_close_range_closes_nothing() {
    let mut l = given_empty();
    apply(&mut l, &[ev(1, PID, file(3, false))]);
    apply(&mut l, &[ev(2, PID, Body::CloseRange { first: 9, last: 3, flags: 0 })]);
    assert_eq!(open_fds(&l, PID), vec![3]);
}

#[test]
fn exec_closes_cloexec_fds_tracking_fcntl_changes() {
    let mut l = given_empty();
    apply(
        &mut l,
        &[
            ev(1, PID, file(3, true)),  // O_CLOEXEC
            ev(1, PID, file(4, false)), // plain
            ev(1, PID, file(5, true)),  // O_CLOEXEC, then cleared
            ev(2, PID, Body::SetCloexec { fd: 5, cloexec: false }),
            ev(2, PID, Body::SetCloexec { fd: 4, cloexec: true }),
        ],
    );
    let fx = apply(&mut l, &[ev(3, PID, Body::Exec { filename: "/bin/sh".into(), old_tid: PID })]);
    let mut closed = closes(&fx);
    closed.sort();
    assert_eq!(closed, vec![(3, CloseCause::Exec), (4, CloseCause::Exec)]);
    assert_eq!(open_fds(&l, PID), vec![5]);
}

#[test]
fn dup2_clears_cloexec_and_dup3_can_set_it() {
    let mut l = given_empty();
    let dup3 = Body::Open(Open { src_fd: Some(3), cloexec: true, ..open(Syscall::Dup3, 7) });
    apply(&mut l, &[ev(1, PID, file(3, true)), ev(2, PID, dup(Syscall::Dup2, 3, 6)), ev(3, PID, dup3)]);
    assert!(!l.entry(PID, 6).unwrap().cloexec);
    assert!(l.entry(PID, 7).unwrap().cloexec);
}

#[test]
fn exit_closes_everything_and_keeps_what_was_open_at_exit() {
    let mut l = given_empty();
    apply(&mut l, &[ev(1, PID, socket(3)), ev(1, PID, file(4, false)), ev(2, PID, Body::Close { fd: 4 })]);
    let fx = apply(&mut l, &[ev(5, PID, Body::Exit { code: 0 })]);
    assert_eq!(closes(&fx), vec![(3, CloseCause::Exit)]);
    assert!(l.process(PID).is_none());
    let gone = &l.exited()[0];
    assert_eq!((gone.tgid, gone.at_ns), (PID, 5));
    assert_eq!(gone.open_at_exit.iter().map(|e| e.fd).collect::<Vec<_>>(), vec![3]);
    // Open at exit does not count as closed by the program.
    assert_eq!(
        l.stack_counts()[&(PID, Site { stack: stack(1), spawn: None })],
        StackCounts { opened: 2, closed: 1 }
    );
}

#[test]
fn threads_share_the_table() {
    let mut l = given_empty();
    let mut by_thread = ev(1, PID, socket(3));
    by_thread.tid = PID + 1;
    apply(&mut l, &[by_thread, ev(2, PID, Body::Close { fd: 3 })]);
    assert!(open_fds(&l, PID).is_empty());
}

#[test]
fn a_followed_fork_starts_with_a_copy_of_the_parents_table() {
    let mut l = given_empty();
    apply(
        &mut l,
        &[
            ev(1, PID, socket(3)),
            ev(2, PID, Body::Fork { child: 200, shares_files: false, followed: true }),
            ev(3, 200, Body::Close { fd: 3 }),
        ],
    );
    assert_eq!(open_fds(&l, PID), vec![3], "the child's close is its own");
    assert!(open_fds(&l, 200).is_empty());
    apply(&mut l, &[ev(4, 200, file(4, false))]);
    assert_eq!(open_fds(&l, PID), vec![3]);
    assert!(l.process(200).is_some());
}

#[test]
fn inherited_fds_are_new_lifetimes() {
    let mut l = given_empty();
    apply(
        &mut l,
        &[ev(1, PID, socket(3)), ev(2, PID, Body::Fork { child: 200, shares_files: false, followed: true })],
    );
    let (p, c) = (l.entry(PID, 3).unwrap(), l.entry(200, 3).unwrap());
    assert_ne!(p.serial, c.serial);
    assert_eq!(c.origin, Origin::Inherited);
    assert_eq!(c.stack, p.stack);
}

#[test]
fn a_child_copy_of_an_fd_from_before_the_trace_is_from_before_too() {
    // Given a process with an fd open before fdtrace attached
    let mut l = Ledger::new();
    let pre = ProcFd { fd: 3, kind: FdKind::Socket, cloexec: false, desc: FdDesc::default() };
    l.add_process(PID, Comm::from_str_lossy("app"), 0, vec![pre]);
    // When it forks a followed child
    apply(&mut l, &[ev(2, PID, Body::Fork { child: 200, shares_files: false, followed: true })]);
    // Then the child's copy is pre-existing too, not a stackless open
    let c = l.entry(200, 3).unwrap();
    assert_eq!((c.origin, c.stack), (Origin::PreExisting, None));
}

#[test]
fn clone_files_shares_the_table_until_exec_unshares_it() {
    let mut l = given_empty();
    apply(
        &mut l,
        &[
            ev(1, PID, file(3, true)),
            ev(2, PID, Body::Fork { child: 200, shares_files: true, followed: true }),
        ],
    );
    apply(&mut l, &[ev(3, 200, file(4, false))]);
    assert_eq!(open_fds(&l, PID), vec![3, 4], "a shared table sees the child's open");
    apply(&mut l, &[ev(4, 200, Body::Exec { filename: "/bin/x".into(), old_tid: 200 })]);
    assert_eq!(open_fds(&l, 200), vec![4], "exec unshared, then closed the cloexec fd");
    assert_eq!(open_fds(&l, PID), vec![3, 4], "the parent's table is untouched");
}

#[test]
fn exit_of_one_sharer_keeps_the_table_for_the_other() {
    let mut l = given_empty();
    apply(
        &mut l,
        &[ev(1, PID, socket(3)), ev(2, PID, Body::Fork { child: 200, shares_files: true, followed: true })],
    );
    let fx = apply(&mut l, &[ev(3, 200, Body::Exit { code: 0 })]);
    assert!(closes(&fx).is_empty());
    assert_eq!(open_fds(&l, PID), vec![3]);
}

#[test]
fn unfollowed_forks_and_unknown_pids_are_ignored() {
    let mut l = given_empty();
    apply(
        &mut l,
        &[ev(1, PID, Body::Fork { child: 200, shares_files: false, followed: false }), ev(2, 999, socket(3))],
    );
    assert!(l.process(200).is_none());
    assert_eq!(l.ignored_events, 1);
}

#[test]
fn a_reused_pid_never_merges_with_the_dead_process() {
    let mut l = given_empty();
    apply(
        &mut l,
        &[
            ev(1, PID, Body::Fork { child: 200, shares_files: false, followed: true }),
            ev(2, 200, socket(5)),
            ev(3, 200, Body::Exit { code: 0 }),
            ev(4, PID, Body::Fork { child: 200, shares_files: false, followed: true }),
        ],
    );
    assert!(open_fds(&l, 200).is_empty(), "the new 200 only has the parent's (empty) table");
    assert_eq!(l.exited().len(), 1);
    assert_eq!(l.exited()[0].open_at_exit[0].fd, 5);
}

#[test]
fn pre_existing_fds_have_no_stack_and_are_refined_by_earlier_events() {
    let mut l = Ledger::new();
    let pre = |fd| ProcFd { fd, kind: FdKind::Socket, cloexec: false, desc: FdDesc::default() };
    l.add_process(PID, Comm::from_str_lossy("app"), 10, vec![pre(3), pre(4)]);
    assert_eq!(l.entry(PID, 3).unwrap().origin, Origin::PreExisting);
    assert_eq!(l.entry(PID, 3).unwrap().stack, None);
    // An open stamped before the scan is the same fd the scan found.
    let fx = apply(&mut l, &[ev(9, PID, socket(4))]);
    assert!(closes(&fx).is_empty());
    assert_eq!(l.entry(PID, 4).unwrap().stack, Some(stack(1)));
    // After the scan, an open on a held number means a missed close.
    let fx = apply(&mut l, &[ev(11, PID, socket(3))]);
    assert_eq!(closes(&fx), vec![(3, CloseCause::Replaced)]);
    assert_eq!(l.overwritten, 1, "counted as a missed close");
}

#[test]
fn accept_records_the_peer_and_the_listeners_local_address() {
    let mut l = given_empty();
    let local: Addr = Addr::Inet("127.0.0.1:8080".parse().unwrap());
    let peer: Addr = Addr::Inet("127.0.0.1:50000".parse().unwrap());
    let accept =
        Body::Open(Open { src_fd: Some(3), remote: Some(peer.clone()), ..open(Syscall::Accept4, 5) });
    apply(
        &mut l,
        &[
            ev(1, PID, socket(3)),
            ev(
                2,
                PID,
                Body::Sock(SockCall {
                    op: SockOp::Bind,
                    fd: 3,
                    ret: 0,
                    addr: Some(local.clone()),
                    local: None,
                    remote: None,
                    sk: None,
                }),
            ),
            ev(
                3,
                PID,
                Body::Sock(SockCall {
                    op: SockOp::Listen,
                    fd: 3,
                    ret: 0,
                    addr: None,
                    local: None,
                    remote: None,
                    sk: None,
                }),
            ),
            ev(4, PID, accept),
        ],
    );
    assert!(l.entry(PID, 3).unwrap().desc.listening);
    let conn = l.entry(PID, 5).unwrap();
    assert_eq!((conn.desc.local(), conn.desc.remote()), (Some(&local), Some(&peer)));
}

#[test]
fn the_kernels_view_of_addresses_wins_over_the_calls_arguments() {
    let mut l = given_empty();
    let asked = Addr::Inet("127.0.0.1:0".parse().unwrap());
    let actual = Addr::Inet("127.0.0.1:41000".parse().unwrap());
    let bind = SockCall {
        op: SockOp::Bind,
        fd: 3,
        ret: 0,
        addr: Some(asked),
        local: Some(actual.clone()),
        remote: None,
        sk: None,
    };
    apply(&mut l, &[ev(1, PID, socket(3)), ev(2, PID, Body::Sock(bind))]);
    assert_eq!(l.entry(PID, 3).unwrap().desc.local(), Some(&actual));
}

#[test]
fn connect_in_progress_records_the_peer_but_a_refused_one_does_not() {
    let mut l = given_empty();
    let peer = Addr::Inet("127.0.0.1:9901".parse().unwrap());
    let connect = |fd, ret| {
        Body::Sock(SockCall {
            op: SockOp::Connect,
            fd,
            ret,
            addr: Some(peer.clone()),
            local: None,
            remote: None,
            sk: None,
        })
    };
    apply(
        &mut l,
        &[
            ev(1, PID, socket(3)),
            ev(1, PID, socket(4)),
            ev(2, PID, connect(3, -115)),
            ev(2, PID, connect(4, -111)),
        ],
    );
    assert_eq!(l.entry(PID, 3).unwrap().desc.remote(), Some(&peer));
    assert_eq!(l.entry(PID, 4).unwrap().desc.remote(), None);
}

#[test]
fn dup2_onto_itself_changes_nothing() {
    let mut l = given_empty();
    apply(&mut l, &[ev(1, PID, socket(3))]);
    let serial = l.entry(PID, 3).unwrap().serial;
    let fx = apply(&mut l, &[ev(2, PID, dup(Syscall::Dup2, 3, 3))]);
    assert!(fx.is_empty());
    assert_eq!(l.entry(PID, 3).unwrap().serial, serial);
}

fn sk_socket(fd: i32, sk: u64) -> Body {
    let Body::Open(o) = socket(fd) else { unreachable!() };
    Body::Open(Open { sk: Some(sk), ..o })
}

fn state_change(sk: u64, fd: Option<i32>, new: TcpState) -> Body {
    Body::SockState(SockStateChange {
        source: SockSource::SetState,
        fd,
        old: None,
        new: Some(new),
        sk,
        local: None,
        remote: Some(Addr::Inet("10.0.0.1:443".parse().unwrap())),
    })
}

#[test]
fn socket_state_reaches_every_fd_of_the_socket() {
    let mut l = given_empty();
    apply(
        &mut l,
        &[
            ev(1, PID, sk_socket(3, 0xa0)),
            ev(2, PID, dup(Syscall::Dup, 3, 4)),
            ev(3, PID, state_change(0xa0, None, TcpState::CloseWait)),
        ],
    );
    for fd in [3, 4] {
        let d = &l.entry(PID, fd).unwrap().desc;
        assert_eq!((d.state, d.remote().is_some()), (Some(TcpState::CloseWait), true), "fd {fd}");
    }
    // After both closes, a late state change touches nothing.
    apply(
        &mut l,
        &[
            ev(4, PID, Body::Close { fd: 3 }),
            ev(4, PID, Body::Close { fd: 4 }),
            ev(5, PID, sk_socket(3, 0xb0)),
        ],
    );
    apply(&mut l, &[ev(6, PID, state_change(0xa0, None, TcpState::Close))]);
    assert_eq!(l.entry(PID, 3).unwrap().desc.state, None);
}

#[test]
fn a_state_change_naming_an_fd_indexes_its_socket() {
    let mut l = given_empty();
    apply(&mut l, &[ev(1, PID, socket(5)), ev(2, PID, state_change(0xc0, Some(5), TcpState::SynSent))]);
    apply(&mut l, &[ev(3, PID, state_change(0xc0, None, TcpState::Established))]);
    assert_eq!(l.entry(PID, 5).unwrap().desc.state, Some(TcpState::Established));
}

#[test]
fn pipe_installs_both_ends() {
    let mut l = given_empty();
    let pipe = Body::Open(Open { fd: Some(3), fd2: Some(4), ret: 0, ..open(Syscall::Pipe2, 3) });
    apply(&mut l, &[ev(1, PID, pipe)]);
    assert_eq!(open_fds(&l, PID), vec![3, 4]);
    assert!(l.open_fds(PID).all(|e| e.kind == FdKind::Pipe));
}

fn proc_fd(fd: i32, kind: FdKind) -> ProcFd {
    ProcFd { fd, kind, cloexec: false, desc: FdDesc::default() }
}

#[test]
fn reconcile_reports_and_corrects_missed_opens_and_closes() {
    let mut l = given_empty();
    apply(&mut l, &[ev(1, PID, socket(3)), ev(1, PID, socket(4))]);
    let mut fx = vec![];
    let found = l.reconcile(PID, 50, &[4, 9], 40, |fd| Some(proc_fd(fd, FdKind::Pipe)), &mut fx);
    assert_eq!(found, (1, 1));
    assert_eq!(open_fds(&l, PID), vec![4, 9]);
    assert_eq!(l.entry(PID, 9).unwrap().origin, Origin::MissedOpen);
    assert_eq!(closes(&fx), vec![(3, CloseCause::MissedClose)]);
}

#[test]
fn reconcile_does_not_judge_fds_with_events_around_the_scan() {
    let mut l = given_empty();
    // fd 3 opened just before the scan, fd 4 closed just after it (the scan
    // still saw it), fd 5 is in /proc but its open event is still in flight.
    apply(&mut l, &[ev(48, PID, socket(3)), ev(1, PID, socket(4)), ev(52, PID, Body::Close { fd: 4 })]);
    let mut fx = vec![];
    let found = l.reconcile(PID, 50, &[4, 5], 45, |fd| Some(proc_fd(fd, FdKind::Socket)), &mut fx);
    assert_eq!(found, (1, 0), "fd 5 is a missed open; 3 and 4 were touched near the scan");
    assert_eq!(open_fds(&l, PID), vec![3, 5]);
}

#[test]
fn a_correct_ledger_reconciles_to_zero() {
    let mut l = given_empty();
    apply(&mut l, &[ev(1, PID, socket(3)), ev(2, PID, file(4, false)), ev(3, PID, Body::Close { fd: 3 })]);
    let mut fx = vec![];
    assert_eq!(l.reconcile(PID, 100, &[4], 90, |_| None, &mut fx), (0, 0));
    assert!(fx.is_empty());
}

/// An fd received over SCM_RIGHTS, as recvmsg's exit (tracepoint tier) or
/// fd_install (function tiers) reports it: the inode's kind, the kernel's
/// socket and addresses, the receiving call's stack.
fn received(syscall: Syscall, fd: i32, hint: Option<FdKind>, cloexec: bool) -> Body {
    Body::Open(Open { kind_hint: hint, cloexec, ..open(syscall, fd) })
}

#[test]
fn received_fds_are_open_with_the_receivers_stack_and_the_kind_their_inode_says() {
    // Given a process with nothing open
    let mut l = given_empty();
    // When one recvmsg receives a socket, a pipe and a file of no known
    // inode kind, and a recvmmsg two more
    let local = Addr::Inet("127.0.0.1:8080".parse().unwrap());
    let sock = Body::Open(Open {
        sk: Some(0xd0),
        local: Some(local.clone()),
        kind_hint: Some(FdKind::Socket),
        ..open(Syscall::Recvmsg, 5)
    });
    apply(
        &mut l,
        &[
            ev(1, PID, sock),
            ev(1, PID, received(Syscall::Recvmsg, 6, Some(FdKind::Pipe), false)),
            ev(1, PID, received(Syscall::Recvmsg, 7, None, false)),
            ev(2, PID, received(Syscall::Recvmmsg, 8, Some(FdKind::File), false)),
            ev(2, PID, received(Syscall::Recvmmsg, 9, Some(FdKind::Other), false)),
        ],
    );
    // Then all five are open, from the receiving calls, with their stack
    assert_eq!(open_fds(&l, PID), vec![5, 6, 7, 8, 9]);
    let kinds: Vec<FdKind> = l.open_fds(PID).map(|e| e.kind).collect();
    assert_eq!(kinds, [FdKind::Socket, FdKind::Pipe, FdKind::Other, FdKind::File, FdKind::Other]);
    for e in l.open_fds(PID) {
        let want = if e.fd < 8 { Syscall::Recvmsg } else { Syscall::Recvmmsg };
        assert_eq!((e.origin, e.stack), (Origin::Syscall(want), Some(stack(1))), "fd {}", e.fd);
    }
    // And the socket has the kernel's address and is indexed by its sk
    let five = &l.entry(PID, 5).unwrap().desc;
    assert_eq!((five.sk, five.local().cloned(), five.sock), (Some(0xd0), Some(local), None));
    assert_eq!(l.stack_counts()[&(PID, Site { stack: stack(1), spawn: None })].opened, 5);
}

#[test]
fn a_received_socket_follows_its_state_changes() {
    // Given a socket received over SCM_RIGHTS
    let mut l = given_empty();
    let sock =
        Body::Open(Open { sk: Some(0xe0), kind_hint: Some(FdKind::Socket), ..open(Syscall::Recvmsg, 4) });
    apply(&mut l, &[ev(1, PID, sock)]);
    // When its peer closes (a state change known only by its sk)
    apply(&mut l, &[ev(2, PID, state_change(0xe0, None, TcpState::CloseWait))]);
    // Then the received fd shows it
    assert_eq!(l.entry(PID, 4).unwrap().desc.state, Some(TcpState::CloseWait));
}

#[test]
fn fds_received_with_msg_cmsg_cloexec_close_at_exec() {
    // Given one fd received with MSG_CMSG_CLOEXEC and one without
    let mut l = given_empty();
    apply(
        &mut l,
        &[
            ev(1, PID, received(Syscall::Recvmsg, 5, Some(FdKind::File), true)),
            ev(1, PID, received(Syscall::Recvmmsg, 6, Some(FdKind::File), false)),
        ],
    );
    // When the process execs
    let fx = apply(&mut l, &[ev(2, PID, Body::Exec { filename: "/bin/true".into(), old_tid: PID })]);
    // Then only the close-on-exec one is gone
    assert_eq!(closes(&fx), vec![(5, CloseCause::Exec)]);
    assert_eq!(open_fds(&l, PID), vec![6]);
}

#[test]
fn a_received_fd_on_a_number_still_held_replaces_it_and_counts_a_missed_close() {
    // Given fd 5 open
    let mut l = given_empty();
    apply(&mut l, &[ev(1, PID, file(5, false))]);
    // When an fd arrives on number 5 (the kernel only hands out free
    // numbers: its close was missed)
    let fx = apply(&mut l, &[ev(2, PID, received(Syscall::Recvmsg, 5, Some(FdKind::Pipe), false))]);
    // Then the old lifetime ends and the received one begins
    assert_eq!(closes(&fx), vec![(5, CloseCause::Replaced)]);
    assert_eq!((l.entry(PID, 5).unwrap().kind, l.overwritten), (FdKind::Pipe, 1));
}

// Kernel pairing: fds the kernel kept and fdtrace took later arrive as
// adopted opens, out of order with the ring's events.

fn adopted(fd: i32, stack_id: u32) -> Body {
    let kept = Adopted { kind: FdKind::Socket, state: Some(TcpState::Established), listening: false };
    Body::Open(Open { adopted: Some(kept), ..Open::test(Syscall::Socket, fd, stack_id) })
}

fn site_counts(l: &Ledger, stack_id: u32) -> (u64, u64) {
    let site = Site { stack: stack(stack_id), spawn: None };
    l.stack_counts().get(&(PID, site)).map_or((0, 0), |c| (c.opened, c.closed))
}

#[test]
fn a_taken_fd_nobody_closed_is_open_with_the_kernels_state() {
    let mut l = given_empty();
    let fx = apply(&mut l, &[ev(5, PID, adopted(7, 2))]);
    assert!(closes(&fx).is_empty());
    let e = l.entry(PID, 7).unwrap();
    assert!(e.adopted);
    assert_eq!((e.opened_ns, e.kind, e.desc.state), (5, FdKind::Socket, Some(TcpState::Established)));
    assert_eq!(site_counts(&l, 2), (1, 0));
}

#[test]
fn a_close_seen_after_a_kept_open_closes_it_when_taken() {
    // The kernel kept fd 7 at t=5; the ring carried a close of 7 at t=8
    // (an exit path the kernel could not pair); then the take.
    let mut l = given_empty();
    let fx = apply(&mut l, &[ev(8, PID, Body::Close { fd: 7 }), ev(5, PID, adopted(7, 2))]);
    assert!(closes(&fx).is_empty(), "never held, so never reported open");
    assert!(open_fds(&l, PID).is_empty());
    assert_eq!(site_counts(&l, 2), (1, 1), "counted as opened and closed");
}

#[test]
fn a_close_from_before_a_kept_open_is_of_an_earlier_fd() {
    let mut l = given_empty();
    apply(&mut l, &[ev(3, PID, Body::Close { fd: 7 }), ev(5, PID, adopted(7, 2))]);
    assert_eq!(open_fds(&l, PID), vec![7]);
    // And once every kept fd up to t=4 is taken, that close is forgotten.
    l.forget_closes_before(4);
    assert!(l.closed_unheld.is_empty());
}

#[test]
fn a_newer_fd_on_the_number_means_the_kept_one_was_closed() {
    // fd 7 kept at t=5, closed unseen, 7 reused by a ring open at t=9.
    let mut l = given_empty();
    apply(&mut l, &[ev(9, PID, socket(7)), ev(5, PID, adopted(7, 2))]);
    assert_eq!(l.entry(PID, 7).unwrap().opened_ns, 9, "the newer fd stays");
    assert_eq!(site_counts(&l, 2), (1, 1));
    assert_eq!(l.overwritten, 0);
}

#[test]
fn an_older_fd_on_the_number_was_closed_before_the_kept_one() {
    let mut l = given_empty();
    let fx = apply(&mut l, &[ev(2, PID, socket(7)), ev(5, PID, adopted(7, 2))]);
    assert_eq!(closes(&fx), vec![(7, CloseCause::Close)]);
    assert_eq!(l.entry(PID, 7).unwrap().opened_ns, 5);
    assert_eq!(l.overwritten, 0, "the kernel saw that close; nothing was missed");
}

#[test]
fn ring_events_older_than_a_taken_fd_do_not_touch_it() {
    // Taken at t=5; ring events from t<5 about number 7 are about an
    // earlier fd: a stale close, a cloexec change, a close_range, an open.
    let mut l = given_empty();
    apply(&mut l, &[ev(5, PID, adopted(7, 2))]);
    let stale = [
        ev(3, PID, Body::SetCloexec { fd: 7, cloexec: true }),
        ev(3, PID, Body::CloseRange { first: 0, last: u32::MAX, flags: 0 }),
        ev(4, PID, Body::Close { fd: 7 }),
        ev(2, PID, socket(7)),
    ];
    let fx = apply(&mut l, &stale);
    assert!(closes(&fx).is_empty());
    let e = l.entry(PID, 7).unwrap();
    assert_eq!((e.opened_ns, e.cloexec), (5, false));
    assert_eq!(site_counts(&l, 1), (1, 1), "the stale open was opened and closed");
    // A close after the open is its close.
    let fx = apply(&mut l, &[ev(6, PID, Body::Close { fd: 7 })]);
    assert_eq!(closes(&fx), vec![(7, CloseCause::Close)]);
}

#[test]
fn a_kept_open_from_before_the_scan_refines_the_scanned_fd() {
    let mut l = Ledger::new();
    let pre = ProcFd { fd: 4, kind: FdKind::Socket, cloexec: false, desc: FdDesc::default() };
    l.add_process(PID, Comm::from_str_lossy("app"), 10, vec![pre]);
    let fx = apply(&mut l, &[ev(9, PID, adopted(4, 3))]);
    assert!(closes(&fx).is_empty(), "the same fd the scan found");
    assert_eq!(l.entry(PID, 4).unwrap().stack, Some(stack(3)));
}

#[test]
fn pairs_the_kernel_counted_add_to_their_site() {
    let mut l = given_empty();
    let site = Site { stack: stack(4), spawn: None };
    apply(&mut l, &[ev(1, PID, socket(3)), ev(2, PID, Body::Paired { site, count: 41 })]);
    assert_eq!(site_counts(&l, 4), (41, 41));
    assert_eq!(open_fds(&l, PID), vec![3]);
}

#[test]
fn a_dup_read_before_its_kept_source_was_taken_takes_its_kind_when_it_is() {
    let mut l = given_empty();
    // dup(5) -> 7 through the ring at t=6; the kernel kept 5 (a socket,
    // opened at t=5) and hands it over later.
    apply(&mut l, &[ev(6, PID, dup(Syscall::Dup, 5, 7))]);
    assert_eq!(l.entry(PID, 7).unwrap().kind, FdKind::Other);
    apply(&mut l, &[ev(5, PID, adopted(5, 2))]);
    let d = l.entry(PID, 7).unwrap();
    assert_eq!((d.kind, d.desc.state), (FdKind::Socket, Some(TcpState::Established)));
    assert_eq!(open_fds(&l, PID), vec![5, 7]);
}

#[test]
fn a_sockets_inode_is_learned_for_its_own_lifetime_only() {
    // Given a socket on fd 3
    let mut l = given_empty();
    apply(&mut l, &[ev(10, PID, socket(3))]);
    let serial = l.entry(PID, 3).unwrap().serial;
    // When its inode is learned under another serial, then under its own
    l.learn_inode(PID, 3, serial + 1, 111);
    assert_eq!(l.entry(PID, 3).unwrap().desc.inode, None);
    l.learn_inode(PID, 3, serial, 222);
    // Then only its own sticks
    assert_eq!(l.entry(PID, 3).unwrap().desc.inode, Some(222));
}
