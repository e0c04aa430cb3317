//! Events as the rest of fdtrace sees them: whole domain events, decoded
//! from the ring buffer's wire records (`fdtrace-common`) into plain Rust
//! types. Nothing past this module looks at wire layouts.
//!
//! kernel → [`ring`] (records, as the kernel wrote them) → [`decode`]
//! (one record, one [`Record`]) → [`assemble`] (a stack sent inline is
//! attached to the event it belongs to) → [`Event`]s, read through
//! [`Source`], which also hands out the raw frames of the stacks the events
//! name ([`RawStacks`]). In pairing mode the kernel keeps short-lived fds
//! to itself: [`kept`] takes the ones still open out of its map when they
//! are needed, and [`Source`] puts them in the stream where they belong.
mod assemble;
mod decode;
mod kept;
mod mmaps;
mod ring;
mod source;

use std::{fmt, net::SocketAddr};

pub use assemble::{KernelStacks, StackTable};
pub use decode::{decode, DecodeError, Record};
pub use fdtrace_common::{FdKind, SockOp, Syscall};
pub use kept::KernelFds;
pub use mmaps::{MapEvent, MmapWatch, MmapsError};
pub use source::Source;

/// One thing that happened in a traced process.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// CLOCK_MONOTONIC nanoseconds.
    pub ts_ns: u64,
    pub tgid: u32,
    pub tid: u32,
    pub comm: Comm,
    pub body: Body,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Body {
    /// One or two fds were installed (or the call failed: `ret < 0`).
    Open(Open),
    /// `close(fd)`.
    Close { fd: i32 },
    /// `close_range(first, last, flags)`.
    CloseRange { first: u32, last: u32, flags: u32 },
    /// connect/bind/listen returned.
    Sock(SockCall),
    /// The close-on-exec flag of `fd` was set or cleared.
    SetCloexec { fd: i32, cloexec: bool },
    /// The process forked `child` (a process, not a thread).
    Fork { child: u32, shares_files: bool, followed: bool },
    /// The process completed an execve.
    Exec { filename: String, old_tid: u32 },
    /// The last thread of the process exited.
    Exit { code: u32 },
    /// A TCP socket was connected, closed, or changed state.
    SockState(SockStateChange),
    /// Pairing mode: a place in the program opened its first fd, which
    /// the kernel kept; its stacks are to be named while the process
    /// lives.
    NewSite(Site),
    /// Pairing mode: `count` more fds opened at a place were closed, both
    /// seen only by the kernel.
    Paired { site: Site, count: u64 },
}

/// A place in a program that opens fds: the stack at the open and, for a
/// goroutine, the stack at the `go` statement that started it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Site {
    pub stack: StackRef,
    pub spawn: Option<StackRef>,
}

/// What a [`Body::SockState`] reports.
#[derive(Clone, Debug, PartialEq)]
pub struct SockStateChange {
    pub source: SockSource,
    /// The fd, when the event names one (connect); else the socket is
    /// found by `sk`.
    pub fd: Option<i32>,
    pub old: Option<TcpState>,
    pub new: Option<TcpState>,
    pub sk: u64,
    pub local: Option<Addr>,
    pub remote: Option<Addr>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SockSource {
    /// `tcp_connect()`: the SYN is about to go out.
    TcpConnect,
    /// `tcp_close()`: the last reference to the socket is gone.
    TcpClose,
    /// `sock:inet_sock_set_state`.
    SetState,
}

impl SockSource {
    pub fn name(self) -> &'static str {
        match self {
            SockSource::TcpConnect => "tcp_connect",
            SockSource::TcpClose => "tcp_close",
            SockSource::SetState => "tcp_state",
        }
    }
}

/// TCP states as numbered in the kernel (`include/net/tcp_states.h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TcpState {
    Established = 1,
    SynSent,
    SynRecv,
    FinWait1,
    FinWait2,
    TimeWait,
    Close,
    CloseWait,
    LastAck,
    Listen,
    Closing,
    NewSynRecv,
}

impl TcpState {
    pub fn from_u8(v: u8) -> Option<Self> {
        use TcpState::*;
        Some(match v {
            1 => Established,
            2 => SynSent,
            3 => SynRecv,
            4 => FinWait1,
            5 => FinWait2,
            6 => TimeWait,
            7 => Close,
            8 => CloseWait,
            9 => LastAck,
            10 => Listen,
            11 => Closing,
            12 => NewSynRecv,
            _ => return None,
        })
    }

    /// The state [`TcpState::name`] names.
    pub fn from_name(name: &str) -> Option<TcpState> {
        (1..=12).filter_map(TcpState::from_u8).find(|s| s.name() == name)
    }

    pub fn name(self) -> &'static str {
        use TcpState::*;
        match self {
            Established => "ESTABLISHED",
            SynSent => "SYN_SENT",
            SynRecv => "SYN_RECV",
            FinWait1 => "FIN_WAIT1",
            FinWait2 => "FIN_WAIT2",
            TimeWait => "TIME_WAIT",
            Close => "CLOSE",
            CloseWait => "CLOSE_WAIT",
            LastAck => "LAST_ACK",
            Listen => "LISTEN",
            Closing => "CLOSING",
            NewSynRecv => "NEW_SYN_RECV",
        }
    }
}

/// Result of an fd-creating syscall.
#[derive(Clone, Debug, PartialEq)]
pub struct Open {
    pub syscall: Syscall,
    /// The new fd; `None` when the call failed or the fd is unknown.
    pub fd: Option<i32>,
    /// Second fd of pipe/socketpair.
    pub fd2: Option<i32>,
    /// dup source, accept's listening socket, pidfd_getfd's target fd.
    pub src_fd: Option<i32>,
    pub ret: i64,
    /// The syscall's raw flags argument (fcntl: the command).
    pub raw_flags: u64,
    pub cloexec: bool,
    pub socket: Option<SockSpec>,
    /// accept: the new socket's local address (kernel's view).
    pub local: Option<Addr>,
    /// accept: the peer (kernel's view, else the address argument).
    pub remote: Option<Addr>,
    /// open*'s filename or memfd_create's name.
    pub path: Option<String>,
    pub stack: StackRef,
    /// The entry of the syscall was not seen: arguments unknown.
    pub missed_entry: bool,
    /// Some user memory could not be read (see the loss counters).
    pub read_failed: bool,
    /// `signalfd` given an existing fd: nothing new was installed.
    pub reused_fd: bool,
    /// What the installed file's inode is (function tiers).
    pub kind_hint: Option<FdKind>,
    /// For sockets: the kernel's `struct sock *`.
    pub sk: Option<u64>,
    /// Go: the stack that started the goroutine that opened it.
    pub go_spawn: Option<StackRef>,
    /// Go: the `*http.Transport` a net/http dial goroutine dialed for.
    pub go_transport: Option<u64>,
    /// Pairing mode: an fd the kernel kept since it was opened, handed to
    /// fdtrace now (stamped with when it was opened), with what the kernel
    /// learnt of it meanwhile.
    pub adopted: Option<Adopted>,
}

/// What the kernel knew of an fd it kept (see [`Open::adopted`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Adopted {
    /// Its kind (for a dup, its source's: the ledger may not hold the
    /// source).
    pub kind: FdKind,
    /// Last TCP state the kernel reported.
    pub state: Option<TcpState>,
    /// listen() succeeded on it.
    pub listening: bool,
}

impl Open {
    /// A successful `syscall` that installed `fd`, opened at the stack map's
    /// `stack_id`, and nothing else known (tests build on it).
    #[cfg(test)]
    pub fn test(syscall: Syscall, fd: i32, stack_id: u32) -> Open {
        Open {
            syscall,
            fd: Some(fd),
            fd2: None,
            src_fd: None,
            ret: i64::from(fd),
            raw_flags: 0,
            cloexec: false,
            socket: None,
            local: None,
            remote: None,
            path: None,
            stack: StackRef { id: StackId::Id(stack_id), caller_ip: None, at_entry: false, python: None },
            missed_entry: false,
            read_failed: false,
            reused_fd: false,
            kind_hint: None,
            sk: None,
            go_spawn: None,
            go_transport: None,
            adopted: None,
        }
    }

    /// What kind of fd this syscall creates (the syscall table's
    /// [`NewFd`](fdtrace_common::syscall::NewFd)). `None` for the dup
    /// family, whose kind is that of the source fd.
    pub fn kind(&self) -> Option<FdKind> {
        use fdtrace_common::syscall::NewFd;
        match self.syscall.new_fd() {
            NewFd::Of(kind) => Some(kind),
            // Received, taken from another process, installed by io_uring:
            // the inode says.
            NewFd::FromInode { fallback } => self.kind_hint.or(fallback),
            NewFd::CopyOfSource | NewFd::None => None,
        }
    }

    /// Whether this is a dup-like call (new fd shares the source's file).
    pub fn is_dup(&self) -> bool {
        self.syscall.new_fd() == fdtrace_common::syscall::NewFd::CopyOfSource
    }
}

/// A user stack captured with an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StackRef {
    /// Id in the stack map, or why there is none.
    pub id: StackId,
    /// The return address at the user stack pointer (caller of a frameless
    /// libc wrapper), when read.
    pub caller_ip: Option<u64>,
    /// Captured at a function's entry by a uprobe: frame 0 is the probed
    /// function itself, and `caller_ip` (its return address) takes its
    /// place.
    pub at_entry: bool,
    /// CPython: the thread's Python stack at the open, read by the kernel.
    pub python: Option<PyStackId>,
}

/// A Python stack the kernel read (`fdtrace-ebpf/src/python.rs`): its key
/// in the `PY_STACKS` map, a hash of its frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PyStackId(pub std::num::NonZeroU64);

impl PyStackId {
    pub fn new(key: u64) -> Option<PyStackId> {
        std::num::NonZeroU64::new(key).map(PyStackId)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StackId {
    /// Id in the kernel's stack map.
    Id(u32),
    /// A stack the kernel sent inline (its stack-map bucket held another
    /// stack), interned by the [`StackTable`]: equal frames, equal key.
    Inline(u32),
    /// Sent inline, but the record carrying it did not arrive.
    InlineMissing,
    /// Stacks were not asked for (`--no-stacks`) or not applicable.
    NotCaptured,
    /// The kernel failed to capture it (negative errno).
    Failed(i32),
}

/// The raw frames (innermost first) of the stacks events name.
pub trait RawStacks {
    /// `None` when there are none: not captured, failed, or gone from the
    /// stack map.
    fn frames(&self, id: StackId) -> Option<std::sync::Arc<[u64]>>;

    /// A Python stack's frames as the kernel read them.
    fn python(&self, _id: PyStackId) -> Option<fdtrace_common::PyStack> {
        None
    }
}

/// socket(2) arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SockSpec {
    pub family: u16,
    pub sock_type: u16,
    pub protocol: u16,
}

impl SockSpec {
    /// "tcp", "udp6", "unix-stream", "netlink", ...
    pub fn label(&self) -> String {
        use fdtrace_common::syscall::consts::*;
        let ty = match self.sock_type {
            1 => "stream",
            2 => "dgram",
            3 => "raw",
            5 => "seqpacket",
            _ => "other",
        };
        match (self.family, self.sock_type) {
            (AF_INET, 1) => "tcp".into(),
            (AF_INET6, 1) => "tcp6".into(),
            (AF_INET, 2) => "udp".into(),
            (AF_INET6, 2) => "udp6".into(),
            (AF_INET, _) => format!("inet-{ty}"),
            (AF_INET6, _) => format!("inet6-{ty}"),
            (AF_UNIX, _) => format!("unix-{ty}"),
            (AF_NETLINK, _) => "netlink".into(),
            (f, _) => format!("af{f}-{ty}"),
        }
    }
}

/// A socket address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Addr {
    Inet(SocketAddr),
    /// Pathname (`/run/x.sock`), abstract (`@name`) or unnamed (empty).
    Unix(String),
    /// A family fdtrace does not decode.
    Other(u16),
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Inet(a) => write!(f, "{a}"),
            Addr::Unix(p) if p.is_empty() => f.write_str("unix:(unnamed)"),
            Addr::Unix(p) => write!(f, "unix:{p}"),
            Addr::Other(family) => write!(f, "af{family}"),
        }
    }
}

/// connect/bind/listen.
#[derive(Clone, Debug, PartialEq)]
pub struct SockCall {
    pub op: SockOp,
    pub fd: i32,
    pub ret: i64,
    /// The address the call carried (connect: peer; bind: local).
    pub addr: Option<Addr>,
    /// The socket's local and peer addresses after the call, as the kernel
    /// holds them (IPv4/IPv6 only).
    pub local: Option<Addr>,
    pub remote: Option<Addr>,
    pub sk: Option<u64>,
}

/// A thread's `comm`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Comm(pub [u8; 16]);

impl Comm {
    pub fn as_str(&self) -> std::borrow::Cow<'_, str> {
        let end = self.0.iter().position(|&b| b == 0).unwrap_or(self.0.len());
        String::from_utf8_lossy(&self.0[..end])
    }

    pub fn from_str_lossy(s: &str) -> Comm {
        let mut c = [0u8; 16];
        let n = s.len().min(15);
        c[..n].copy_from_slice(&s.as_bytes()[..n]);
        Comm(c)
    }
}

impl fmt::Debug for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl fmt::Display for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`: column widths (`{:<15}`) apply.
        f.pad(&self.as_str())
    }
}

/// Types written by name in fdtrace's JSON (`"socket"`, `"CLOSE_WAIT"`).
pub trait Named: Sized + Copy + 'static {
    fn name(self) -> &'static str;
    fn from_name(name: &str) -> Option<Self>;
}

impl Named for FdKind {
    fn name(self) -> &'static str {
        FdKind::name(self)
    }
    fn from_name(name: &str) -> Option<Self> {
        FdKind::from_name(name)
    }
}

impl Named for TcpState {
    fn name(self) -> &'static str {
        TcpState::name(self)
    }
    fn from_name(name: &str) -> Option<Self> {
        TcpState::from_name(name)
    }
}

/// `#[serde(with = "crate::events::named")]` for [`Named`] types (and
/// `named::option` for `Option`s of them).
pub mod named {
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    use super::Named;

    pub fn serialize<T: Named, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.name())
    }

    pub fn deserialize<'de, T: Named, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
        let name = String::deserialize(d)?;
        T::from_name(&name).ok_or_else(|| D::Error::custom(format!("unknown name `{name}`")))
    }

    pub mod option {
        use serde::{Deserialize, Deserializer, Serializer};

        use super::super::Named;

        pub fn serialize<T: Named, S: Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
            match v {
                Some(v) => s.serialize_some(v.name()),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, T: Named, D: Deserializer<'de>>(d: D) -> Result<Option<T>, D::Error> {
            match Option::<String>::deserialize(d)? {
                None => Ok(None),
                Some(name) => T::from_name(&name)
                    .map(Some)
                    .ok_or_else(|| serde::de::Error::custom(format!("unknown name `{name}`"))),
            }
        }
    }
}
