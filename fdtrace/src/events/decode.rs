//! Ring-buffer records → [`Record`]s: an [`Event`], or a stack sent
//! inline for the same thread's next event (which [`super::assemble`]
//! joins to it).
//!
//! Records are read field by field with `bytes::Buf` in the order of their
//! `#[repr(C)]` declaration in `fdtrace-common` (native endianness, as the
//! kernel wrote them). The length is checked against the record kind
//! first, so a short or corrupt record is an error, never a panic.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

use bytes::Buf;
use fdtrace_common::{
    fd_flags, fork_flags, kind_hint, sock_source,
    syscall::{
        consts::{AF_INET, AF_INET6, AF_UNIX},
        NewFd,
    },
    EventKind, Kept, SockOp, Syscall, PATH_CAP,
};

use super::{
    Addr, Adopted, Body, Comm, Event, FdKind, Open, PyStackId, Site, SockCall, SockSource, SockSpec,
    SockStateChange, StackId, StackRef, TcpState,
};

use fdtrace_common::{STACK_INLINE, STACK_NOT_CAPTURED};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The record is shorter than a header.
    #[error("record of {0} bytes is shorter than the {1}-byte header")]
    NoHeader(usize, usize),
    /// The kind field holds no known [`EventKind`].
    #[error("unknown event kind {0}")]
    UnknownKind(u32),
    /// The record is too short for its kind.
    #[error("{kind:?} record of {len} bytes, expected at least {min}")]
    Short { kind: EventKind, len: usize, min: usize },
    /// A trailing string claims more bytes than the record holds.
    #[error("{kind:?} record claims a {claimed}-byte string but holds {held}")]
    BadStringLength { kind: EventKind, claimed: usize, held: usize },
    /// A field holds a value the kernel side never writes.
    #[error("{kind:?} record has invalid {field} {value}")]
    BadField { kind: EventKind, field: &'static str, value: u64 },
}

const HEADER_SIZE: usize = size_of::<fdtrace_common::Header>();

/// One decoded ring-buffer record.
#[derive(Clone, Debug, PartialEq)]
#[allow(
    clippy::large_enum_variant,
    reason = "a record is moved once, from decode to the assembler: boxing every event would cost an allocation each"
)]
pub enum Record {
    /// `stack_follows`: the event's stack was sent inline, in the
    /// [`Record::Stack`] just before it from the same thread; until joined
    /// its stack id is [`StackId::InlineMissing`].
    Event { event: Event, stack_follows: bool },
    /// A user stack (innermost first) for thread `tid`'s next event.
    Stack { tid: u32, frames: Vec<u64> },
    /// One event per fd a recvmsg/recvmmsg received, in order; their stack
    /// follows as for [`Record::Event`].
    Events { events: Vec<Event>, stack_follows: bool },
}

/// Decodes one ring-buffer record.
pub fn decode(record: &[u8]) -> Result<Record, DecodeError> {
    if record.len() < HEADER_SIZE {
        return Err(DecodeError::NoHeader(record.len(), HEADER_SIZE));
    }
    let mut b = record;
    let kind_raw = b.get_u32_ne();
    let kind = EventKind::from_u32(kind_raw).ok_or(DecodeError::UnknownKind(kind_raw))?;
    if record.len() < kind.min_size() {
        return Err(DecodeError::Short { kind, len: record.len(), min: kind.min_size() });
    }
    let tgid = b.get_u32_ne();
    let tid = b.get_u32_ne();
    let _pad = b.get_u32_ne();
    let ts_ns = b.get_u64_ne();
    let mut comm = [0u8; 16];
    b.copy_to_slice(&mut comm);

    let body = match kind {
        EventKind::FdOpen => Body::Open(open(&mut b)?),
        EventKind::FdsReceived => {
            let opens = received(&mut b)?;
            let stack_follows = opens.first().is_some_and(|o| o.stack.id == StackId::InlineMissing);
            let comm = Comm(comm);
            let events =
                opens.into_iter().map(|o| Event { ts_ns, tgid, tid, comm, body: Body::Open(o) }).collect();
            return Ok(Record::Events { events, stack_follows });
        }
        EventKind::Stack => {
            let n = b.get_u32_ne() as usize;
            let _pad = b.get_u32_ne();
            if n > fdtrace_common::STACK_DEPTH || n * 8 > b.remaining() {
                return Err(DecodeError::BadField { kind, field: "nframes", value: n as u64 });
            }
            return Ok(Record::Stack { tid, frames: (0..n).map(|_| b.get_u64_ne()).collect() });
        }
        EventKind::Close => Body::Close { fd: b.get_i32_ne() },
        EventKind::CloseRange => {
            Body::CloseRange { first: b.get_u32_ne(), last: b.get_u32_ne(), flags: b.get_u32_ne() }
        }
        EventKind::SockAddr => Body::Sock(sock_call(&mut b)?),
        EventKind::SetCloexec => {
            let fd = b.get_i32_ne();
            Body::SetCloexec { fd, cloexec: b.get_u32_ne() != 0 }
        }
        EventKind::Fork => {
            let child = b.get_u32_ne();
            let flags = b.get_u32_ne();
            Body::Fork {
                child,
                shares_files: flags & fork_flags::SHARES_FILES != 0,
                followed: flags & fork_flags::FOLLOWED != 0,
            }
        }
        EventKind::Exec => {
            let old_tid = b.get_u32_ne();
            let _flags = b.get_u32_ne();
            let filename = trailing_string(kind, &mut b)?;
            Body::Exec { filename: String::from_utf8_lossy(filename).into_owned(), old_tid }
        }
        EventKind::Exit => Body::Exit { code: b.get_u32_ne() },
        EventKind::SockState => Body::SockState(sock_state(&mut b)?),
        EventKind::SiteSeen => {
            let stack_id = b.get_i32_ne();
            let go_spawn_stack = b.get_i32_ne();
            let caller_ip = b.get_u64_ne();
            let origin = b.get_u64_ne();
            Body::NewSite(kernel_site(stack_id, caller_ip, go_spawn_stack, origin))
        }
        EventKind::Released => {
            let fd = b.get_i32_ne();
            let _pad = b.get_u32_ne();
            return Ok(Record::Event { event: adopted(tgid, fd, &kept(&mut b)), stack_follows: false });
        }
    };
    let stack_follows = matches!(&body, Body::Open(o) if o.stack.id == StackId::InlineMissing);
    Ok(Record::Event { event: Event { ts_ns, tgid, tid, comm: Comm(comm), body }, stack_follows })
}

fn open(b: &mut &[u8]) -> Result<Open, DecodeError> {
    let kind = EventKind::FdOpen;
    let raw_syscall = b.get_u16_ne();
    let syscall = Syscall::from_u16(raw_syscall).ok_or(DecodeError::BadField {
        kind,
        field: "syscall",
        value: raw_syscall.into(),
    })?;
    let family = b.get_u16_ne();
    let sock_type = b.get_u16_ne();
    let protocol = b.get_u16_ne();
    let fd = b.get_i32_ne();
    let fd2 = b.get_i32_ne();
    let src_fd = b.get_i32_ne();
    let flags = b.get_u32_ne();
    let ret = b.get_i64_ne();
    let raw_flags = b.get_u64_ne();
    let stack_id = b.get_i32_ne();
    let hint = b.get_u16_ne();
    let _pad = b.get_u16_ne();
    let caller_ip = b.get_u64_ne();
    let raw_local = sock_addr(b);
    let raw_remote = sock_addr(b);
    let sk = b.get_u64_ne();
    let go_spawn_stack = b.get_i32_ne();
    let _pad3 = b.get_u32_ne();
    let go_spawn_pc = b.get_u64_ne();
    let go_transport = b.get_u64_ne();
    let py_stack = b.get_u64_ne();
    let string = trailing_string(kind, b)?;
    let local = addr(raw_local, &[]);
    let remote = addr(raw_remote, string);
    let path = match syscall {
        Syscall::Accept | Syscall::Accept4 => None,
        _ if string.is_empty() => None,
        _ => Some(String::from_utf8_lossy(string).into_owned()),
    };
    let non_neg = |v: i32| (v >= 0).then_some(v);
    Ok(Open {
        syscall,
        fd: non_neg(fd),
        fd2: non_neg(fd2),
        src_fd: non_neg(src_fd),
        ret,
        raw_flags,
        cloexec: flags & fd_flags::CLOEXEC != 0,
        socket: matches!(syscall, Syscall::Socket | Syscall::Socketpair).then_some(SockSpec {
            family,
            sock_type,
            protocol,
        }),
        local,
        remote,
        path,
        stack: stack_ref(stack_id, caller_ip, py_stack),
        missed_entry: flags & fd_flags::MISSED_ENTRY != 0,
        read_failed: flags & fd_flags::READ_FAILED != 0,
        reused_fd: flags & fd_flags::REUSED_FD != 0,
        kind_hint: kind_of_hint(hint),
        sk: (sk != 0).then_some(sk),
        go_spawn: go_spawn(go_spawn_stack, go_spawn_pc),
        go_transport: (go_transport != 0).then_some(go_transport),
        adopted: None,
    })
}

/// An [`fdtrace_common::FdsReceived`]: one `Open` per fd, sharing the
/// call's stack, flags and goroutine.
fn received(b: &mut &[u8]) -> Result<Vec<Open>, DecodeError> {
    let kind = EventKind::FdsReceived;
    let raw_syscall = b.get_u16_ne();
    let syscall = match Syscall::from_u16(raw_syscall) {
        Some(s @ (Syscall::Recvmsg | Syscall::Recvmmsg)) => s,
        _ => return Err(DecodeError::BadField { kind, field: "syscall", value: raw_syscall.into() }),
    };
    let n = usize::from(b.get_u16_ne());
    let flags = b.get_u32_ne();
    let raw_flags = b.get_u64_ne();
    let stack_id = b.get_i32_ne();
    let _pad = b.get_u32_ne();
    let caller_ip = b.get_u64_ne();
    let go_spawn_stack = b.get_i32_ne();
    let _pad2 = b.get_u32_ne();
    let go_spawn_pc = b.get_u64_ne();
    let go_transport = b.get_u64_ne();
    let py_stack = b.get_u64_ne();
    let per_fd = size_of::<fdtrace_common::ReceivedFd>();
    if n == 0 || n > fdtrace_common::MAX_RECEIVED_FDS || n * per_fd > b.remaining() {
        return Err(DecodeError::BadField { kind, field: "n", value: n as u64 });
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let fd = b.get_i32_ne();
        let hint = b.get_u16_ne();
        let cloexec = b.get_u8();
        let _pad = b.get_u8();
        let sk = b.get_u64_ne();
        out.push(Open {
            syscall,
            fd: (fd >= 0).then_some(fd),
            fd2: None,
            src_fd: None,
            ret: i64::from(fd),
            raw_flags,
            cloexec: cloexec != 0,
            socket: None,
            local: None,
            remote: None,
            path: None,
            stack: stack_ref(stack_id, caller_ip, py_stack),
            missed_entry: false,
            read_failed: flags & fd_flags::READ_FAILED != 0,
            reused_fd: false,
            kind_hint: kind_of_hint(hint),
            sk: (sk != 0).then_some(sk),
            go_spawn: go_spawn(go_spawn_stack, go_spawn_pc),
            go_transport: (go_transport != 0).then_some(go_transport),
            adopted: None,
        });
    }
    Ok(out)
}

/// A place as the kernel keys it ([`fdtrace_common::SiteKey`]).
pub fn kernel_site(stack_id: i32, caller_ip: u64, go_spawn_stack: i32, origin: u64) -> Site {
    let (go_spawn_pc, py_stack) = fdtrace_common::SiteKey::split_origin(go_spawn_stack, origin);
    site(stack_id, caller_ip, go_spawn_stack, go_spawn_pc, py_stack)
}

/// A place: the stack at the open and the runtime's origin of it.
fn site(stack_id: i32, caller_ip: u64, go_spawn_stack: i32, go_spawn_pc: u64, py_stack: u64) -> Site {
    Site { stack: stack_ref(stack_id, caller_ip, py_stack), spawn: go_spawn(go_spawn_stack, go_spawn_pc) }
}

/// An fd the kernel kept, as the open it stood for: stamped with when it
/// was opened, by the thread that opened it; no path (the kernel does not
/// read it when it keeps an fd) and no thread name.
pub fn adopted(tgid: u32, fd: i32, k: &Kept) -> Event {
    let syscall = Syscall::from_u16(k.syscall).unwrap_or(Syscall::Other);
    let hint = kind_of_hint(k.kind_hint);
    let kind = match Syscall::from_u16(k.origin_syscall).map(|s| s.new_fd()) {
        Some(NewFd::Of(kind)) => kind,
        Some(NewFd::FromInode { fallback }) => hint.or(fallback).unwrap_or(FdKind::Other),
        _ => hint.unwrap_or(FdKind::Other),
    };
    let raw = |a: &fdtrace_common::SockAddr| RawSockAddr {
        family: a.family,
        port: a.port,
        scope_id: a.scope_id,
        addr: a.addr,
    };
    let flags = u32::from(k.fd_flags);
    let non_neg = |v: i32| (v >= 0).then_some(v);
    let Site { stack, spawn } = site(k.stack_id, k.caller_ip, k.go_spawn_stack, k.go_spawn_pc, k.py_stack);
    let open = Open {
        syscall,
        fd: Some(fd),
        fd2: None,
        src_fd: non_neg(k.src_fd),
        ret: i64::from(fd),
        raw_flags: 0,
        cloexec: flags & fd_flags::CLOEXEC != 0,
        socket: (k.sock_type != 0).then_some(SockSpec {
            family: k.family,
            sock_type: k.sock_type,
            protocol: k.protocol,
        }),
        local: addr(raw(&k.local), &[]),
        remote: addr(raw(&k.remote), &[]),
        path: None,
        stack,
        missed_entry: flags & fd_flags::MISSED_ENTRY != 0,
        read_failed: flags & fd_flags::READ_FAILED != 0,
        reused_fd: false,
        kind_hint: hint,
        sk: (k.sk != 0).then_some(k.sk),
        go_spawn: spawn,
        go_transport: (k.go_transport != 0).then_some(k.go_transport),
        adopted: Some(Adopted {
            kind,
            state: u8::try_from(k.state).ok().and_then(TcpState::from_u8),
            listening: flags & fd_flags::LISTENING != 0,
        }),
    };
    Event { ts_ns: k.opened_ns, tgid, tid: k.tid, comm: Comm::default(), body: Body::Open(open) }
}

/// A [`Kept`] as a [`fdtrace_common::Released`] record carries it.
fn kept(b: &mut &[u8]) -> Kept {
    let mut k = Kept {
        opened_ns: b.get_u64_ne(),
        tid: b.get_u32_ne(),
        syscall: b.get_u16_ne(),
        kind_hint: b.get_u16_ne(),
        family: b.get_u16_ne(),
        sock_type: b.get_u16_ne(),
        protocol: b.get_u16_ne(),
        fd_flags: b.get_u16_ne(),
        src_fd: b.get_i32_ne(),
        stack_id: b.get_i32_ne(),
        caller_ip: b.get_u64_ne(),
        go_spawn_stack: b.get_i32_ne(),
        state: b.get_u32_ne(),
        go_spawn_pc: b.get_u64_ne(),
        go_transport: b.get_u64_ne(),
        sk: b.get_u64_ne(),
        ..Kept::default()
    };
    let addr = |b: &mut &[u8]| {
        let r = sock_addr(b);
        fdtrace_common::SockAddr { family: r.family, port: r.port, scope_id: r.scope_id, addr: r.addr }
    };
    k.local = addr(b);
    k.remote = addr(b);
    k.origin_syscall = b.get_u16_ne();
    for _ in 0..3 {
        b.get_u16_ne();
    }
    k.py_stack = b.get_u64_ne();
    k
}

fn stack_ref(stack_id: i32, caller_ip: u64, py_stack: u64) -> StackRef {
    StackRef {
        id: match stack_id {
            STACK_NOT_CAPTURED => StackId::NotCaptured,
            STACK_INLINE => StackId::InlineMissing,
            id if id >= 0 => StackId::Id(id as u32),
            err => StackId::Failed(err),
        },
        caller_ip: (caller_ip != 0).then_some(caller_ip),
        at_entry: false,
        python: PyStackId::new(py_stack),
    }
}

fn kind_of_hint(hint: u16) -> Option<FdKind> {
    match hint {
        kind_hint::SOCKET => Some(FdKind::Socket),
        kind_hint::PIPE => Some(FdKind::Pipe),
        kind_hint::FILE => Some(FdKind::File),
        kind_hint::ANON => Some(FdKind::Other),
        _ => None,
    }
}

fn go_spawn(stack: i32, pc: u64) -> Option<StackRef> {
    (stack >= 0).then_some(StackRef {
        id: StackId::Id(stack as u32),
        caller_ip: (pc != 0).then_some(pc),
        at_entry: true,
        python: None,
    })
}

fn sock_state(b: &mut &[u8]) -> Result<SockStateChange, DecodeError> {
    let kind = EventKind::SockState;
    let raw_source = b.get_u16_ne();
    let source = match raw_source {
        sock_source::TCP_CONNECT => SockSource::TcpConnect,
        sock_source::TCP_CLOSE => SockSource::TcpClose,
        sock_source::SET_STATE => SockSource::SetState,
        v => return Err(DecodeError::BadField { kind, field: "source", value: v.into() }),
    };
    let _family = b.get_u16_ne();
    let fd = b.get_i32_ne();
    let old = b.get_u32_ne();
    let new = b.get_u32_ne();
    let sk = b.get_u64_ne();
    let local = addr(sock_addr(b), &[]);
    let remote = addr(sock_addr(b), &[]);
    let state = |v: u32| u8::try_from(v).ok().and_then(TcpState::from_u8);
    Ok(SockStateChange {
        source,
        fd: (fd >= 0).then_some(fd),
        old: state(old),
        new: state(new),
        sk,
        local,
        remote,
    })
}

fn sock_call(b: &mut &[u8]) -> Result<SockCall, DecodeError> {
    let kind = EventKind::SockAddr;
    let raw_op = b.get_u16_ne();
    let op =
        SockOp::from_u16(raw_op).ok_or(DecodeError::BadField { kind, field: "op", value: raw_op.into() })?;
    let _pad = b.get_u16_ne();
    let fd = b.get_i32_ne();
    let ret = b.get_i64_ne();
    let _flags = b.get_u32_ne();
    let _pad1 = b.get_u32_ne();
    let raw_addr = sock_addr(b);
    let raw_local = sock_addr(b);
    let raw_remote = sock_addr(b);
    let sk = b.get_u64_ne();
    let string = trailing_string(kind, b)?;
    Ok(SockCall {
        op,
        fd,
        ret,
        addr: addr(raw_addr, string),
        local: addr(raw_local, &[]),
        remote: addr(raw_remote, &[]),
        sk: (sk != 0).then_some(sk),
    })
}

struct RawSockAddr {
    family: u16,
    port: u16,
    scope_id: u32,
    addr: [u8; 16],
}

fn sock_addr(b: &mut &[u8]) -> RawSockAddr {
    let family = b.get_u16_ne();
    let port = b.get_u16_ne();
    let scope_id = b.get_u32_ne();
    let mut addr = [0u8; 16];
    b.copy_to_slice(&mut addr);
    RawSockAddr { family, port, scope_id, addr }
}

fn addr(raw: RawSockAddr, unix_path: &[u8]) -> Option<Addr> {
    match raw.family {
        0 => None,
        AF_INET => {
            let ip = Ipv4Addr::new(raw.addr[0], raw.addr[1], raw.addr[2], raw.addr[3]);
            Some(Addr::Inet(SocketAddr::new(IpAddr::V4(ip), raw.port)))
        }
        AF_INET6 => {
            let ip = Ipv6Addr::from(raw.addr);
            Some(Addr::Inet(SocketAddr::V6(SocketAddrV6::new(ip, raw.port, 0, raw.scope_id))))
        }
        AF_UNIX => Some(Addr::Unix(unix_path_string(unix_path))),
        other => Some(Addr::Other(other)),
    }
}

/// `sun_path` bytes → "/path" (cut at the first NUL), "@abstract", or "".
fn unix_path_string(path: &[u8]) -> String {
    match path.split_first() {
        None => String::new(),
        Some((0, rest)) => {
            let end = rest.iter().rposition(|&c| c != 0).map_or(0, |i| i + 1);
            format!("@{}", String::from_utf8_lossy(&rest[..end]))
        }
        Some(_) => {
            let end = path.iter().position(|&c| c == 0).unwrap_or(path.len());
            String::from_utf8_lossy(&path[..end]).into_owned()
        }
    }
}

/// Reads `path_len`, padding, and the used part of the string buffer.
fn trailing_string<'a>(kind: EventKind, b: &mut &'a [u8]) -> Result<&'a [u8], DecodeError> {
    let len = usize::from(b.get_u16_ne());
    b.advance(6);
    if len > PATH_CAP || len > b.remaining() {
        return Err(DecodeError::BadStringLength { kind, claimed: len, held: b.remaining() });
    }
    Ok(&b[..len])
}

#[cfg(test)]
mod tests {
    use super::*;
    use fdtrace_common::{
        Close, CloseRange, Exec, Exit, FdOpen, Fork, Header, Kept, Released, SetCloexec, SiteSeen, SockAddr,
        SockAddrEvent,
    };

    /// The bytes the kernel side sends for `value`: the record up to its
    /// used string, rounded up to 8 (as `send_scratch` does).
    fn wire<T>(value: &T, string_len: Option<usize>) -> Vec<u8> {
        // SAFETY: T is one of the #[repr(C)] plain-data records.
        let bytes = unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) };
        match string_len {
            Some(n) => bytes[..size_of::<T>() - PATH_CAP + n.div_ceil(8) * 8].to_vec(),
            None => bytes.to_vec(),
        }
    }

    fn header(kind: EventKind) -> Header {
        Header {
            kind: kind as u32,
            tgid: 100,
            tid: 101,
            _pad: 0,
            ts_ns: 5_000,
            comm: *b"curl\0\0\0\0\0\0\0\0\0\0\0\0",
        }
    }

    /// The event of a record that must decode to one.
    fn event(bytes: &[u8]) -> Event {
        match decode(bytes) {
            Ok(Record::Event { event, .. }) => event,
            other => panic!("not an event: {other:?}"),
        }
    }

    fn path_buf(s: &[u8]) -> [u8; PATH_CAP] {
        let mut p = [0u8; PATH_CAP];
        p[..s.len()].copy_from_slice(s);
        p
    }

    fn fd_open() -> FdOpen {
        FdOpen {
            header: header(EventKind::FdOpen),
            syscall: Syscall::Openat as u16,
            family: 0,
            sock_type: 0,
            protocol: 0,
            fd: 7,
            fd2: -1,
            src_fd: -1,
            fd_flags: fd_flags::CLOEXEC,
            ret: 7,
            flags: 0o2000000,
            stack_id: 12,
            kind_hint: 0,
            _pad: 0,
            caller_ip: 0x4000,
            local: SockAddr::default(),
            remote: SockAddr::default(),
            sk: 0,
            go_spawn_stack: STACK_NOT_CAPTURED,
            _pad3: 0,
            go_spawn_pc: 0,
            go_transport: 0,
            py_stack: 0x5eed,
            path_len: 10,
            _pad2: [0; 6],
            path: path_buf(b"/etc/hosts"),
        }
    }

    #[test]
    fn open_round_trips_with_its_path() {
        let ev = event(&wire(&fd_open(), Some(10)));
        assert_eq!((ev.tgid, ev.tid, ev.ts_ns), (100, 101, 5_000));
        assert_eq!(ev.comm.as_str(), "curl");
        let Body::Open(o) = ev.body else { panic!("not an open: {ev:?}") };
        assert_eq!(o.syscall, Syscall::Openat);
        assert_eq!((o.fd, o.fd2, o.src_fd, o.ret), (Some(7), None, None, 7));
        assert!(o.cloexec);
        assert_eq!(o.path.as_deref(), Some("/etc/hosts"));
        assert_eq!(
            o.stack,
            StackRef {
                id: StackId::Id(12),
                caller_ip: Some(0x4000),
                at_entry: false,
                python: PyStackId::new(0x5eed)
            }
        );
        assert_eq!(o.socket, None);
    }

    #[test]
    fn accept_carries_the_peer_not_a_path() {
        let mut r = fd_open();
        r.syscall = Syscall::Accept4 as u16;
        r.src_fd = 3;
        r.path_len = 0;
        r.remote = SockAddr {
            family: AF_INET,
            port: 9901,
            scope_id: 0,
            addr: [127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        };
        r.local = SockAddr { port: 40000, ..r.remote };
        let Body::Open(o) = event(&wire(&r, Some(0))).body else { panic!() };
        assert_eq!(o.remote, Some(Addr::Inet("127.0.0.1:9901".parse().unwrap())));
        assert_eq!(o.local, Some(Addr::Inet("127.0.0.1:40000".parse().unwrap())));
        assert_eq!(o.src_fd, Some(3));
        assert_eq!(o.path, None);
    }

    #[test]
    fn socket_keeps_family_type_protocol_and_failed_stacks() {
        let mut r = fd_open();
        r.syscall = Syscall::Socket as u16;
        (r.family, r.sock_type, r.protocol) = (AF_INET6, 1, 6);
        r.path_len = 0;
        r.stack_id = -14;
        r.caller_ip = 0;
        let Body::Open(o) = event(&wire(&r, Some(0))).body else { panic!() };
        assert_eq!(o.socket.unwrap().label(), "tcp6");
        assert_eq!(
            o.stack,
            StackRef {
                id: StackId::Failed(-14),
                caller_ip: None,
                at_entry: false,
                python: PyStackId::new(0x5eed)
            }
        );
    }

    #[test]
    fn sock_call_decodes_unix_paths_and_ipv6() {
        let mut r = SockAddrEvent {
            header: header(EventKind::SockAddr),
            op: SockOp::Connect as u16,
            _pad: 0,
            fd: 4,
            ret: -115,
            flags: 0,
            _pad1: 0,
            addr: SockAddr { family: AF_UNIX, ..Default::default() },
            local: SockAddr::default(),
            remote: SockAddr::default(),
            sk: 0xffff_8880_1234_5678,
            path_len: 13,
            _pad2: [0; 6],
            path: path_buf(b"/run/x.sock\0\0"),
        };
        let Body::Sock(s) = event(&wire(&r, Some(13))).body else { panic!() };
        assert_eq!((s.op, s.fd, s.ret), (SockOp::Connect, 4, -115));
        assert_eq!(s.addr, Some(Addr::Unix("/run/x.sock".into())));

        r.path = path_buf(b"\0abstract");
        r.path_len = 9;
        let Body::Sock(s) = event(&wire(&r, Some(9))).body else { panic!() };
        assert_eq!(s.addr, Some(Addr::Unix("@abstract".into())));

        let mut ip6 = [0u8; 16];
        ip6[15] = 1;
        r.addr = SockAddr { family: AF_INET6, port: 443, scope_id: 0, addr: ip6 };
        r.path_len = 0;
        let Body::Sock(s) = event(&wire(&r, Some(0))).body else { panic!() };
        assert_eq!(s.addr, Some(Addr::Inet("[::1]:443".parse().unwrap())));
    }

    #[test]
    fn fixed_size_records_round_trip() {
        let cases: Vec<(Vec<u8>, Body)> = vec![
            (wire(&Close { header: header(EventKind::Close), fd: 9, _pad: 0 }, None), Body::Close { fd: 9 }),
            (
                wire(
                    &CloseRange {
                        header: header(EventKind::CloseRange),
                        first: 3,
                        last: u32::MAX,
                        flags: 4,
                        _pad: 0,
                    },
                    None,
                ),
                Body::CloseRange { first: 3, last: u32::MAX, flags: 4 },
            ),
            (
                wire(&SetCloexec { header: header(EventKind::SetCloexec), fd: 5, cloexec: 1 }, None),
                Body::SetCloexec { fd: 5, cloexec: true },
            ),
            (
                wire(
                    &Fork { header: header(EventKind::Fork), child_tgid: 200, flags: fork_flags::FOLLOWED },
                    None,
                ),
                Body::Fork { child: 200, shares_files: false, followed: true },
            ),
            (
                wire(&Exit { header: header(EventKind::Exit), exit_code: 256, _pad: 0 }, None),
                Body::Exit { code: 256 },
            ),
            (
                wire(
                    &Exec {
                        header: header(EventKind::Exec),
                        old_tid: 101,
                        flags: 0,
                        path_len: 8,
                        _pad: [0; 6],
                        path: path_buf(b"/bin/sh\0"),
                    },
                    Some(8),
                ),
                Body::Exec { filename: "/bin/sh\0".into(), old_tid: 101 },
            ),
        ];
        for (bytes, body) in cases {
            assert_eq!(event(&bytes).body, body);
        }
    }

    #[test]
    fn a_released_fd_decodes_to_an_adopted_open_stamped_when_it_opened() {
        let mut remote = SockAddr { family: 2, port: 8080, ..SockAddr::default() };
        remote.addr[..4].copy_from_slice(&[10, 0, 0, 9]);
        let kept = Kept {
            opened_ns: 1_234,
            tid: 103,
            syscall: Syscall::Dup as u16,
            origin_syscall: Syscall::Socket as u16,
            family: 2,
            sock_type: 1,
            protocol: 6,
            fd_flags: (fd_flags::CLOEXEC | fd_flags::LISTENING) as u16,
            src_fd: 3,
            stack_id: 12,
            caller_ip: 0x4000,
            go_spawn_stack: STACK_NOT_CAPTURED,
            state: TcpState::Listen as u32,
            sk: 0xffff_8880_0000_1000,
            remote,
            py_stack: 0x5eed,
            ..Kept::default()
        };
        let rec = Released { header: header(EventKind::Released), fd: 9, _pad: 0, kept };
        let ev = event(&wire(&rec, None));
        // When and by whom it was opened, not when it was released.
        assert_eq!((ev.tgid, ev.tid, ev.ts_ns), (100, 103, 1_234));
        let Body::Open(o) = ev.body else { panic!("not an open: {ev:?}") };
        assert_eq!((o.syscall, o.fd, o.src_fd, o.cloexec), (Syscall::Dup, Some(9), Some(3), true));
        assert_eq!(
            o.stack,
            StackRef {
                id: StackId::Id(12),
                caller_ip: Some(0x4000),
                at_entry: false,
                python: PyStackId::new(0x5eed)
            }
        );
        assert_eq!(o.remote, Some(Addr::Inet("10.0.0.9:8080".parse().unwrap())));
        assert_eq!(o.sk, Some(0xffff_8880_0000_1000));
        let a = o.adopted.expect("adopted");
        // A dup of a socket is a socket: its kind comes from the origin.
        assert_eq!((a.kind, a.state, a.listening), (FdKind::Socket, Some(TcpState::Listen), true));
    }

    #[test]
    fn a_new_site_decodes_its_stack_and_goroutine_origin() {
        let rec = SiteSeen {
            header: header(EventKind::SiteSeen),
            stack_id: 7,
            go_spawn_stack: 8,
            caller_ip: 0,
            origin: 0x4500,
        };
        let ev = event(&wire(&rec, None));
        let Body::NewSite(site) = ev.body else { panic!("not a site: {ev:?}") };
        assert_eq!(site.stack.id, StackId::Id(7));
        assert_eq!(site.stack.python, None, "a Go origin");
        assert!(site.spawn.is_some());
        let python = SiteSeen { go_spawn_stack: STACK_NOT_CAPTURED, origin: 0x5eed, ..rec };
        let Body::NewSite(site) = event(&wire(&python, None)).body else { panic!("not a site") };
        assert_eq!((site.spawn, site.stack.python), (None, PyStackId::new(0x5eed)), "a Python stack");
    }

    #[test]
    fn inline_stacks_decode_their_frames_only() {
        let mut rec = fdtrace_common::StackRecord {
            header: header(EventKind::Stack),
            nframes: 3,
            _pad: 0,
            frames: [0; fdtrace_common::STACK_DEPTH],
        };
        rec.frames[..3].copy_from_slice(&[0x10, 0x20, 0x30]);
        let bytes = wire(&rec, None);
        let sent = &bytes[..48 + 3 * 8];
        assert_eq!(decode(sent).unwrap(), Record::Stack { tid: 101, frames: vec![0x10, 0x20, 0x30] });
        rec.nframes = 4;
        assert!(decode(&wire(&rec, None)[..48 + 3 * 8]).is_err(), "claims more frames than sent");
        let mut r = fd_open();
        r.stack_id = STACK_INLINE;
        let Ok(Record::Event { event, stack_follows: true }) = decode(&wire(&r, Some(10))) else { panic!() };
        let Body::Open(o) = event.body else { panic!() };
        assert_eq!(o.stack.id, StackId::InlineMissing, "until its stack is joined");
    }

    #[test]
    fn sock_states_and_kind_hints_decode() {
        let ss = fdtrace_common::SockState {
            header: header(EventKind::SockState),
            source: sock_source::TCP_CLOSE,
            family: AF_INET,
            fd: -1,
            old_state: 0,
            new_state: 8,
            sk: 0xffff_8880_0000_1000,
            local: SockAddr {
                family: AF_INET,
                port: 5000,
                scope_id: 0,
                addr: [127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            },
            remote: SockAddr::default(),
        };
        let Body::SockState(c) = event(&wire(&ss, None)).body else { panic!() };
        assert_eq!(
            (c.source, c.fd, c.old, c.new, c.sk),
            (SockSource::TcpClose, None, None, Some(TcpState::CloseWait), ss.sk)
        );
        assert_eq!(c.local, Some(Addr::Inet("127.0.0.1:5000".parse().unwrap())));
        let mut bad = ss;
        bad.source = 77;
        assert!(decode(&wire(&bad, None)).is_err());

        let mut r = fd_open();
        r.syscall = Syscall::Recvmsg as u16;
        r.kind_hint = kind_hint::SOCKET;
        r.sk = 0x1000;
        let Body::Open(o) = event(&wire(&r, Some(10))).body else { panic!() };
        assert_eq!((o.kind(), o.sk), (Some(FdKind::Socket), Some(0x1000)));
    }

    /// A seeded fuzz: every prefix of valid records, and valid records
    /// with bytes flipped (kinds, lengths, counts, addresses).
    /// Each must decode or be an error; a panic fails the test.
    /// An `FdsReceived` of `n` fds (3, 4, ...), as sent: only `n` fds.
    fn received_wire(n: usize) -> Vec<u8> {
        let mut r = fdtrace_common::FdsReceived {
            header: header(EventKind::FdsReceived),
            syscall: Syscall::Recvmsg as u16,
            n: n as u16,
            fd_flags: 0,
            flags: 0x4000_0000,
            stack_id: 7,
            _pad: 0,
            caller_ip: 0x5000,
            go_spawn_stack: STACK_NOT_CAPTURED,
            _pad2: 0,
            go_spawn_pc: 0,
            go_transport: 0,
            py_stack: 0,
            fds: [fdtrace_common::ReceivedFd::default(); fdtrace_common::MAX_RECEIVED_FDS],
        };
        for (i, slot) in r.fds.iter_mut().enumerate().take(n) {
            *slot = fdtrace_common::ReceivedFd {
                fd: 3 + i as i32,
                kind_hint: if i == 0 { kind_hint::SOCKET } else { kind_hint::FILE },
                cloexec: u8::from(i % 2 == 0),
                _pad: 0,
                sk: if i == 0 { 0xffff_8880_0000_2000 } else { 0 },
            };
        }
        let per_fd = size_of::<fdtrace_common::ReceivedFd>();
        let full = wire(&r, None);
        full[..full.len() - (fdtrace_common::MAX_RECEIVED_FDS - n) * per_fd].to_vec()
    }

    #[test]
    fn received_fds_decode_to_one_open_each_with_the_calls_stack() {
        let Ok(Record::Events { events, stack_follows: false }) = decode(&received_wire(3)) else {
            panic!("not the events of a received-fds record")
        };
        let opens: Vec<&Open> = events
            .iter()
            .map(|e| match &e.body {
                Body::Open(o) => o,
                other => panic!("not an open: {other:?}"),
            })
            .collect();
        assert_eq!(opens.iter().map(|o| o.fd).collect::<Vec<_>>(), [Some(3), Some(4), Some(5)]);
        assert_eq!(opens.iter().map(|o| o.cloexec).collect::<Vec<_>>(), [true, false, true]);
        assert_eq!(opens[0].kind(), Some(FdKind::Socket));
        assert_eq!(opens[1].kind(), Some(FdKind::File));
        assert_eq!(opens[0].sk, Some(0xffff_8880_0000_2000));
        assert!(opens.iter().all(|o| o.syscall == Syscall::Recvmsg
            && o.stack
                == StackRef { id: StackId::Id(7), caller_ip: Some(0x5000), at_entry: false, python: None }));
        // Claiming more fds than sent, or none, is an error.
        let mut bad = received_wire(3);
        bad[42..44].copy_from_slice(&4u16.to_ne_bytes());
        assert!(decode(&bad).is_err());
        bad[42..44].copy_from_slice(&0u16.to_ne_bytes());
        assert!(decode(&bad).is_err());
    }

    #[test]
    fn mutated_and_random_records_never_panic() {
        let mut seeds = vec![wire(&fd_open(), Some(10)), wire(&fd_open(), Some(0)), received_wire(3)];
        for kind in [EventKind::Close, EventKind::CloseRange, EventKind::Exit, EventKind::SockState] {
            let mut r = wire(&fd_open(), Some(10));
            r[..4].copy_from_slice(&(kind as u32).to_ne_bytes());
            seeds.push(r);
        }
        let mut next = crate::fuzz::xorshift(0x9e37_79b9_7f4a_7c15);
        let (mut ok, mut errors) = (0, 0);
        let mut tally = |r: Result<Record, DecodeError>| match r {
            Ok(_) => ok += 1,
            Err(_) => errors += 1,
        };
        for seed in &seeds {
            for len in 0..=seed.len() {
                tally(decode(&seed[..len]));
            }
        }
        for _ in 0..200_000 {
            let seed = &seeds[next() as usize % seeds.len()];
            let mut r = seed.clone();
            for _ in 0..1 + next() % 4 {
                let i = next() as usize % r.len();
                r[i] = next() as u8;
            }
            r.truncate(
                next() as usize % (r.len() + 1).max(1) + if next().is_multiple_of(2) { r.len() } else { 0 },
            );
            tally(decode(&r));
        }
        assert!(ok > 0 && errors > 0, "the fuzz reached both outcomes ({ok} decoded, {errors} errors)");
    }

    #[test]
    fn short_records_are_errors() {
        let full = wire(&fd_open(), Some(10));
        for len in 0..EventKind::FdOpen.min_size() {
            assert!(decode(&full[..len]).is_err(), "{len}-byte prefix decoded");
        }
        assert_eq!(decode(&full[..10]), Err(DecodeError::NoHeader(10, 40)));
    }

    #[test]
    fn a_string_longer_than_the_record_is_an_error() {
        let mut r = fd_open();
        r.path_len = 200;
        let bytes = wire(&r, Some(10));
        assert!(matches!(decode(&bytes), Err(DecodeError::BadStringLength { claimed: 200, .. })));
        r.path_len = u16::MAX;
        assert!(decode(&wire(&r, None)).is_err());
    }

    #[test]
    fn unknown_kinds_and_fields_are_errors() {
        let mut bytes = wire(&Close { header: header(EventKind::Close), fd: 1, _pad: 0 }, None);
        bytes[0] = 99;
        assert_eq!(decode(&bytes), Err(DecodeError::UnknownKind(99)));
        let mut r = fd_open();
        r.syscall = 999;
        assert!(matches!(decode(&wire(&r, Some(10))), Err(DecodeError::BadField { field: "syscall", .. })));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A small deterministic fuzz: random lengths and contents, with the
        // kind field forced valid half the time.
        let mut next = crate::fuzz::xorshift(0x2545_f491_4f6c_dd1d);
        for _ in 0..20_000 {
            let len = (next() % 450) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if len >= 4 && next().is_multiple_of(2) {
                let kind = EventKind::ALL[(next() % EventKind::ALL.len() as u64) as usize] as u32;
                bytes[..4].copy_from_slice(&kind.to_ne_bytes());
            }
            let _ = decode(&bytes);
        }
    }
}
