//! Records shared by fdtrace's eBPF programs (`fdtrace-ebpf`) and its loader
//! (`fdtrace`).
//!
//! Every record written to the ring buffer starts with a [`Header`], so a
//! decoder can read the [`EventKind`] first and then the body. Records are
//! `#[repr(C)]`, their sizes are pinned below with compile-time asserts, and
//! the loader decodes them field by field (never by casting), so a short or
//! corrupt record is an error, not undefined behaviour.
//!
//! Records that carry a string (a path, an exec filename, a unix socket
//! path) end with a fixed-size buffer of which only `path_len` bytes are
//! sent: the kernel side copies `size_of::<T>() - PATH_CAP + path_len` bytes
//! (rounded up to 8) into the ring, so the decoder accepts any length from
//! `T::FIXED_SIZE` up.
#![no_std]

pub mod syscall;
pub mod tracepoint;

pub use syscall::{FdKind, Syscall};

/// Ring buffer carrying every event to userspace.
pub const EVENTS_MAP: &str = "EVENTS";
/// User stack traces, keyed by the `stack_id` carried in [`FdOpen`].
pub const STACKS_MAP: &str = "STACKS";
/// Traced processes: tgid → [`target`] flags.
pub const TARGETS_MAP: &str = "TARGETS";
/// Flags decided while attaching ([`runtime_flags`]), at index 0.
pub const RUNTIME_MAP: &str = "RUNTIME";
/// Sockets of traced processes: `struct sock *` → tgid. State changes
/// happen in softirq context, where the current task is anyone.
pub const SOCKS_MAP: &str = "SOCKS";
/// Default number of sockets whose state is followed.
pub const DEFAULT_MAX_SOCKS: u32 = 1 << 17;
/// Go processes: tgid → [`GoInfo`] (offsets into the runtime's `g`).
pub const GO_PROCS_MAP: &str = "GO_PROCS";
/// Goroutine creations: [`GoKey`] → [`GoOrigin`].
pub const GO_CREATORS_MAP: &str = "GO_CREATORS";
/// net/http dial goroutines: [`GoroutineKey`] → `*http.Transport`.
pub const GO_DIALS_MAP: &str = "GO_DIALS";
/// CPython processes: tgid → [`PyInfo`].
pub const PY_PROCS_MAP: &str = "PY_PROCS";
/// Python stacks at fd opens: hash → [`PyStack`].
pub const PY_STACKS_MAP: &str = "PY_STACKS";
/// Default number of Python stacks kept.
pub const DEFAULT_MAX_PY_STACKS: u32 = 1 << 13;
/// Node: libuv TCP handles → the stack that made them ([`GoOrigin`]): the
/// JavaScript that asked for the connection, run earlier than the
/// connect itself (from the tick queue).
pub const NODE_HANDLES_MAP: &str = "NODE_HANDLES";
/// Node: thread → the connect it is making ([`NodeConnect`]).
pub const NODE_CONNECTS_MAP: &str = "NODE_CONNECTS";
/// fds opened in pairing mode and not closed yet, kept in the kernel:
/// [`FdKey`] → [`Kept`] (see [`config_flags::PAIRING`]).
pub const OPEN_FDS_MAP: &str = "OPEN_FDS";
/// Default number of fds the kernel keeps (more go through the ring).
pub const DEFAULT_MAX_KEPT: u32 = 1 << 15;
/// Opens the kernel paired with their closes, per place: [`SiteKey`] →
/// count. An entry is made at a place's first open (with
/// [`EventKind::SiteSeen`] sent, so the stacks are named while the process
/// lives) and never removed.
pub const PAIRS_MAP: &str = "PAIRS";
/// Default number of places counted (a new place past it goes through the
/// ring).
pub const DEFAULT_MAX_SITES: u32 = 1 << 14;
/// Per-CPU loss counters, indexed by [`Loss`].
pub const LOSSES_MAP: &str = "LOSSES";
/// Syscall arguments stashed at entry, keyed by tid.
pub const INFLIGHT_MAP: &str = "INFLIGHT";
/// Name of the read-only global holding the [`Config`].
pub const CONFIG_GLOBAL: &str = "CONFIG";

/// Program names (the eBPF function names), grouped by hook family.
pub mod programs {
    /// Entry programs that stash the arguments (kernels without
    /// `bpf_task_pt_regs`), for syscalls with 0..=6 arguments; index by
    /// [`Syscall::arity`](crate::Syscall::arity). The object has those of
    /// the arities the syscall table uses. `close` and `close_range` have
    /// programs of their own named like their tracepoints
    /// (`sys_enter_close`), as do the syscall exits but those sharing
    /// [`SYS_EXIT_CREATED`] (`sys_exit_socket`): see
    /// [`Entry`](crate::syscall::Entry) and [`Exit`](crate::syscall::Exit).
    pub const SYS_ENTER: [&str; 7] = [
        "sys_enter_0",
        "sys_enter_1",
        "sys_enter_2",
        "sys_enter_3",
        "sys_enter_4",
        "sys_enter_5",
        "sys_enter_6",
    ];
    /// The exit of every [`Exit::Created`](crate::syscall::Exit::Created)
    /// syscall.
    pub const SYS_EXIT_CREATED: &str = "sys_exit_created";
    /// raw tracepoint `sched_process_fork`.
    pub const PROCESS_FORK: &str = "process_fork";
    /// tracepoint `sched:sched_process_exec`.
    pub const PROCESS_EXEC: &str = "process_exec";
    /// tracepoint `sched:sched_process_exit`.
    pub const PROCESS_EXIT: &str = "process_exit";
    /// `fd_install(fd, file)`: every fd installed, whatever the path.
    pub const FENTRY_FD_INSTALL: &str = "fentry_fd_install";
    pub const KPROBE_FD_INSTALL: &str = "kprobe_fd_install";
    /// The per-fd removal function (`file_close_fd_locked(files, fd)`,
    /// `pick_file(files, fd)`): the fd is the second argument.
    pub const FENTRY_FD_REMOVE: &str = "fentry_fd_remove";
    pub const KPROBE_FD_REMOVE: &str = "kprobe_fd_remove";
    /// `close_fd(fd)` / `file_close_fd(fd)`: the fd is the first argument.
    pub const FENTRY_CLOSE_FD: &str = "fentry_close_fd";
    pub const KPROBE_CLOSE_FD: &str = "kprobe_close_fd";
    /// `tcp_connect(sk)` and `tcp_close(sk, timeout)`.
    pub const FENTRY_TCP_CONNECT: &str = "fentry_tcp_connect";
    pub const KPROBE_TCP_CONNECT: &str = "kprobe_tcp_connect";
    pub const FENTRY_TCP_CLOSE: &str = "fentry_tcp_close";
    pub const KPROBE_TCP_CLOSE: &str = "kprobe_tcp_close";
    /// tracepoint `sock:inet_sock_set_state`.
    pub const SOCK_SET_STATE: &str = "sock_set_state";
    /// uprobe on `runtime.newproc` (a `go` statement) in Go programs.
    pub const GO_NEWPROC: &str = "go_newproc";
    /// uprobe on `net/http.(*Transport).dialConnFor`.
    pub const GO_DIAL_CONN_FOR: &str = "go_dial_conn_for";
    /// uprobes on libuv's `uv_tcp_init` and `uv_tcp_connect` in Node.
    pub const NODE_TCP_INIT: &str = "node_tcp_init";
    pub const NODE_TCP_CONNECT: &str = "node_tcp_connect";
}

/// Where a Go program's runtime keeps what fdtrace reads, from its DWARF
/// (values of [`GO_PROCS_MAP`]). Offsets into `runtime.g`; 0 when absent.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GoInfo {
    /// `g.gopc`: the pc of the `go` statement that created the goroutine.
    pub gopc_off: u32,
    pub goid_off: u32,
    /// `g.parentGoid` (Go 1.21+).
    pub parent_goid_off: u32,
    pub _pad: u32,
}

/// A goroutine creation: the `go` statement's pc and the creating
/// goroutine's id (0 where the runtime does not record the parent, before
/// Go 1.21).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GoKey {
    pub tgid: u32,
    pub _pad: u32,
    pub gopc: u64,
    pub parent_goid: u64,
}

/// The creating goroutine's stack at the `go` statement.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GoOrigin {
    pub stack_id: i32,
    pub _pad: u32,
    /// The return address of `runtime.newproc`: the creator's own frame,
    /// which the frame-pointer walk from newproc's entry skips.
    pub caller: u64,
}

/// A libuv TCP handle of a Node process ([`NODE_HANDLES_MAP`] keys).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeHandle {
    pub tgid: u32,
    pub _pad: u32,
    /// The `uv_tcp_t *`.
    pub handle: u64,
}

/// A connect a Node thread is making ([`NODE_CONNECTS_MAP`] values): the
/// handle, and until when the thread's next `socket()` is that handle's
/// (`uv_tcp_connect` creates the socket synchronously, microseconds
/// later).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeConnect {
    pub handle: u64,
    pub deadline_ns: u64,
}

/// A live goroutine: its `g` and id (a `g` is reused by later goroutines).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GoroutineKey {
    pub g: u64,
    pub goid: u64,
}

/// Where a CPython interpreter keeps what fdtrace reads to name a thread's
/// Python frames (values of [`PY_PROCS_MAP`]): the address of its
/// `_PyRuntime` and the offsets of the fields on the way from there to
/// each frame's code object, from the interpreter's DWARF or from
/// `fdtrace::python`'s table per version. The walk:
///
/// `_PyRuntime` → `interpreters.head` → its thread list → the thread
/// whose `thread_id` (its `pthread_t`, the thread's fs base) is the
/// current one's → its current frame (3.10: `frame`; 3.11, 3.12:
/// `cframe->current_frame`; 3.13: `current_frame`) → each frame's code
/// object and position, then the calling frame.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PyInfo {
    /// Absolute address of `_PyRuntime` in the process.
    pub runtime: u64,
    /// The CPython minor version (3.x): 10 to 13.
    pub minor: u32,
    /// [`py_flags`] bits.
    pub flags: u32,
    /// `_PyRuntimeState.interpreters.head`.
    pub interp_head: u32,
    /// `PyInterpreterState.tstate_head` (3.10), `.threads.head` (3.11+).
    pub interp_threads: u32,
    /// `PyThreadState.next`.
    pub tstate_next: u32,
    /// `PyThreadState.thread_id` (the `pthread_t`).
    pub tstate_thread_id: u32,
    /// `PyThreadState.frame` (3.10), `.cframe` (3.11, 3.12),
    /// `.current_frame` (3.13).
    pub tstate_frame: u32,
    /// `_PyCFrame.current_frame` (3.11, 3.12, with
    /// [`py_flags::CFRAME`]).
    pub cframe_current: u32,
    /// The frame's code object: `PyFrameObject.f_code` (3.10),
    /// `_PyInterpreterFrame.f_code` (3.11, 3.12), `.f_executable` (3.13).
    pub frame_code: u32,
    /// The calling frame: `f_back` (3.10), `previous` (3.11+).
    pub frame_back: u32,
    /// The frame's position: `f_lasti` (3.10: an `int`, the instruction
    /// index), `prev_instr` (3.11, 3.12) or `instr_ptr` (3.13): pointers
    /// into the code object's bytecode.
    pub frame_instr: u32,
    /// `_PyInterpreterFrame.owner` (3.11+, a byte): frames owned by the C
    /// stack ([`PY_FRAME_OWNED_BY_CSTACK`], 3.12+) are the interpreter's
    /// entry shims, not Python code.
    pub frame_owner: u32,
    /// `_PyInterpreterFrame.is_entry` (3.11 only, a byte): the frame an
    /// evaluation loop call started with.
    pub frame_is_entry: u32,
    /// Where the kernel reads each frame's [`PyStack::marks`] byte:
    /// `frame_is_entry` (3.11), `frame_owner` (3.12+); 0 in 3.10, whose
    /// byte there is not a mark (fdtrace ignores it).
    pub frame_mark: u32,
}

/// Bits of [`PyInfo::flags`].
pub mod py_flags {
    /// The thread's frame is behind a `_PyCFrame` (3.11, 3.12).
    pub const CFRAME: u32 = 1;
}

const _: () = assert!(size_of::<PyInfo>() == 64);

/// `_PyInterpreterFrame.owner` of an entry shim (3.12+).
pub const PY_FRAME_OWNED_BY_CSTACK: u8 = 3;

/// Frames kept per Python stack (innermost first).
pub const PY_DEPTH: usize = 32;

/// One Python frame as the kernel read it: the code object's address and
/// the position as the frame holds it ([`PyInfo::frame_instr`]), which
/// fdtrace turns into a line with the code object's line table.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PyFrame {
    pub code: u64,
    pub instr: u64,
}

/// A thread's Python stack at an fd's open ([`PY_STACKS_MAP`] values,
/// keyed by a hash of the frames that events carry as `py_stack`): the
/// frame chain as the kernel read it, innermost first, every frame in it
/// (3.12+'s entry shims too: the kernel's loop does not branch on what it
/// reads, which keeps the verifier's work linear in the depth).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PyStack {
    pub nframes: u32,
    /// [`py_stack_flags`] bits.
    pub flags: u32,
    /// Per frame: the byte at [`PyInfo::frame_is_entry`] (3.11: the frame
    /// an evaluation loop call started with) or [`PyInfo::frame_owner`]
    /// (3.12+: [`PY_FRAME_OWNED_BY_CSTACK`] for an entry shim); 0 in 3.10,
    /// where every frame is an evaluation loop call of its own.
    pub marks: [u8; PY_DEPTH],
    pub frames: [PyFrame; PY_DEPTH],
}

/// Bits of [`PyStack::flags`].
pub mod py_stack_flags {
    /// The stack had more than [`PY_DEPTH`](crate::PY_DEPTH) frames.
    pub const TRUNCATED: u32 = 1;
}

const _: () = assert!(size_of::<PyStack>() == 8 + 17 * PY_DEPTH);
// Built in a scratch slot of the kernel side.
const _: () = assert!(size_of::<PyStack>() <= MAX_EVENT_SIZE);

/// Bits of the [`RUNTIME_MAP`] flags word, set after attaching.
pub mod runtime_flags {
    /// `fd_install` is hooked: syscall exits report only failed opens
    /// (and dup2/dup3, which replace a slot without installing).
    pub const INSTALL_HOOKED: u32 = 1;
    /// `tcp_connect` is hooked.
    pub const TCP_HOOKED: u32 = 2;
}

/// Capacity of the trailing string buffer of [`FdOpen`], [`SockAddrEvent`]
/// and [`Exec`]. Longer strings are truncated (and flagged).
pub const PATH_CAP: usize = 256;
/// Frames kept per user stack.
pub const STACK_DEPTH: usize = 64;
/// Default number of distinct user stacks the stack map holds.
pub const DEFAULT_STACK_ENTRIES: u32 = 16384;
/// Default number of processes that can be traced at once.
pub const DEFAULT_MAX_TARGETS: u32 = 4096;

/// Discriminant of every record, first field of [`Header`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A syscall installed one fd (or two, for pipe/socketpair): [`FdOpen`].
    FdOpen = 1,
    /// `close(fd)`, sent at syscall entry: [`Close`].
    Close = 2,
    /// `close_range(first, last, flags)`, sent at syscall entry: [`CloseRange`].
    CloseRange = 3,
    /// `connect`, `bind` or `listen` on a socket: [`SockAddrEvent`].
    SockAddr = 4,
    /// The close-on-exec flag of an fd changed: [`SetCloexec`].
    SetCloexec = 5,
    /// A traced process forked a new process: [`Fork`].
    Fork = 6,
    /// A traced process called execve: [`Exec`].
    Exec = 7,
    /// The last thread of a traced process exited: [`Exit`].
    Exit = 8,
    /// A user stack sent inline because its stack-map bucket was taken by
    /// another stack: [`StackRecord`]. It immediately precedes the event
    /// of the same thread whose `stack_id` is [`STACK_INLINE`].
    Stack = 9,
    /// A TCP socket changed state or was connected/closed: [`SockState`].
    SockState = 10,
    /// fds a recvmsg/recvmmsg received over `SCM_RIGHTS`, read back from
    /// its control buffers at exit (tracepoint tier): [`FdsReceived`].
    FdsReceived = 11,
    /// A place in a program opened its first fd in pairing mode: its
    /// stacks, to be named while the process lives: [`SiteSeen`].
    SiteSeen = 12,
    /// A kept fd handed to fdtrace through the ring, ahead of a change the
    /// kernel's map cannot hold (a Unix address): [`Released`].
    Released = 13,
}

impl EventKind {
    pub const ALL: [EventKind; 13] = [
        EventKind::FdOpen,
        EventKind::Close,
        EventKind::CloseRange,
        EventKind::SockAddr,
        EventKind::SetCloexec,
        EventKind::Fork,
        EventKind::Exec,
        EventKind::Exit,
        EventKind::Stack,
        EventKind::SockState,
        EventKind::FdsReceived,
        EventKind::SiteSeen,
        EventKind::Released,
    ];

    pub const fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            1 => EventKind::FdOpen,
            2 => EventKind::Close,
            3 => EventKind::CloseRange,
            4 => EventKind::SockAddr,
            5 => EventKind::SetCloexec,
            6 => EventKind::Fork,
            7 => EventKind::Exec,
            8 => EventKind::Exit,
            9 => EventKind::Stack,
            10 => EventKind::SockState,
            11 => EventKind::FdsReceived,
            12 => EventKind::SiteSeen,
            13 => EventKind::Released,
            _ => return None,
        })
    }

    /// Size of the record with its trailing string buffer full.
    pub const fn max_size(self) -> usize {
        match self {
            EventKind::FdOpen => size_of::<FdOpen>(),
            EventKind::Close => size_of::<Close>(),
            EventKind::CloseRange => size_of::<CloseRange>(),
            EventKind::SockAddr => size_of::<SockAddrEvent>(),
            EventKind::SetCloexec => size_of::<SetCloexec>(),
            EventKind::Fork => size_of::<Fork>(),
            EventKind::Exec => size_of::<Exec>(),
            EventKind::Exit => size_of::<Exit>(),
            EventKind::Stack => size_of::<StackRecord>(),
            EventKind::SockState => size_of::<SockState>(),
            EventKind::FdsReceived => size_of::<FdsReceived>(),
            EventKind::SiteSeen => size_of::<SiteSeen>(),
            EventKind::Released => size_of::<Released>(),
        }
    }

    /// Smallest valid record: everything but the trailing string (or
    /// frames).
    pub const fn min_size(self) -> usize {
        match self {
            EventKind::FdOpen | EventKind::SockAddr | EventKind::Exec => self.max_size() - PATH_CAP,
            EventKind::Stack => self.max_size() - STACK_DEPTH * 8,
            // At least one fd.
            EventKind::FdsReceived => self.max_size() - (MAX_RECEIVED_FDS - 1) * size_of::<ReceivedFd>(),
            EventKind::Close
            | EventKind::CloseRange
            | EventKind::SetCloexec
            | EventKind::Fork
            | EventKind::Exit
            | EventKind::SockState
            | EventKind::SiteSeen
            | EventKind::Released => self.max_size(),
        }
    }
}

/// The largest record; sizes the per-CPU scratch buffer in the kernel.
pub const MAX_EVENT_SIZE: usize = {
    let mut max = 0;
    let mut i = 0;
    while i < EventKind::ALL.len() {
        let s = EventKind::ALL[i].max_size();
        if s > max {
            max = s;
        }
        i += 1;
    }
    max
};

/// Common start of every record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// An [`EventKind`] value.
    pub kind: u32,
    /// Process id (thread group id) of the task that caused the event.
    pub tgid: u32,
    /// Thread id.
    pub tid: u32,
    pub _pad: u32,
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC nanoseconds.
    pub ts_ns: u64,
    /// `comm` of the thread, NUL-padded.
    pub comm: [u8; 16],
}

/// Bits of [`FdOpen::fd_flags`] and [`SockAddrEvent::flags`].
pub mod fd_flags {
    /// The new fd has close-on-exec set.
    pub const CLOEXEC: u32 = 1;
    /// The trailing string was longer than [`crate::PATH_CAP`] and was cut.
    pub const PATH_TRUNCATED: u32 = 2;
    /// The syscall's entry was not seen (it started before fdtrace attached,
    /// or the in-flight table was full): arguments are unknown.
    pub const MISSED_ENTRY: u32 = 4;
    /// Reading the syscall's user memory (path, address, fd array) failed.
    pub const READ_FAILED: u32 = 8;
    /// `signalfd`/`signalfd4` given an existing fd: nothing new installed.
    pub const REUSED_FD: u32 = 16;
    /// [`Kept`]: `listen()` succeeded on it.
    pub const LISTENING: u32 = 32;
}

/// A socket address as the syscall carried it. `family` is `AF_INET`,
/// `AF_INET6`, `AF_UNIX` (path in the record's trailing string) or 0 when
/// unknown.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockAddr {
    pub family: u16,
    /// Port in host byte order.
    pub port: u16,
    /// IPv6 scope id.
    pub scope_id: u32,
    /// IPv4 in the first 4 bytes, or IPv6; network byte order.
    pub addr: [u8; 16],
}

/// A syscall installed a new fd (or two).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FdOpen {
    pub header: Header,
    /// A [`Syscall`] value.
    pub syscall: u16,
    /// Socket family/type/protocol for socket, socketpair (0 otherwise).
    pub family: u16,
    /// Socket type without `SOCK_CLOEXEC`/`SOCK_NONBLOCK`.
    pub sock_type: u16,
    pub protocol: u16,
    /// The new fd; for pipe/socketpair the first of the pair. -1 on error.
    pub fd: i32,
    /// Second fd of pipe/socketpair, else -1.
    pub fd2: i32,
    /// Source fd: dup* old fd, accept's listening fd, pidfd_getfd's target
    /// fd, signalfd's ufd; else -1.
    pub src_fd: i32,
    /// [`fd_flags`] bits.
    pub fd_flags: u32,
    /// The syscall's return value (negative errno on failure).
    pub ret: i64,
    /// The syscall's raw flags argument (open flags, socket type with its
    /// flags, accept4/dup3/pipe2/... flags).
    pub flags: u64,
    /// Id in the stack map, or a negative errno when the capture failed.
    pub stack_id: i32,
    /// A [`kind_hint`] from the installed file's inode (function tiers).
    pub kind_hint: u16,
    pub _pad: u16,
    /// The return address found at the user stack pointer when the syscall
    /// was made: recovers the caller of a frameless libc wrapper. 0 if not
    /// read.
    pub caller_ip: u64,
    /// For sockets: the local address as the kernel holds it after the call.
    pub local: SockAddr,
    /// For sockets: the peer (the kernel's view, else accept's address
    /// argument).
    pub remote: SockAddr,
    /// For sockets: the `struct sock *`, which ties later state changes to
    /// this fd. 0 otherwise.
    pub sk: u64,
    /// Go: the stack that created the goroutine opening this fd (or
    /// [`STACK_NOT_CAPTURED`]), and that stack's innermost frame.
    pub go_spawn_stack: i32,
    pub _pad3: u32,
    pub go_spawn_pc: u64,
    /// Go: the `*http.Transport` dialing, in a net/http dial goroutine.
    pub go_transport: u64,
    /// CPython: the key in [`PY_STACKS_MAP`] of the thread's Python
    /// stack; 0 if none.
    pub py_stack: u64,
    /// Bytes used in `path` (open* filename, memfd name).
    pub path_len: u16,
    pub _pad2: [u8; 6],
    pub path: [u8; PATH_CAP],
}

/// fds reported per recvmsg/recvmmsg call ([`FdsReceived`]); a call that
/// received more counts as `Loss::RecvTruncated`, and reconciliation
/// finds the rest.
pub const MAX_RECEIVED_FDS: usize = 16;

/// One fd of an [`FdsReceived`], with what the fd table says of it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReceivedFd {
    pub fd: i32,
    /// A [`kind_hint`] from the file's inode.
    pub kind_hint: u16,
    /// 1 when close-on-exec (`MSG_CMSG_CLOEXEC`, or the table's bit).
    pub cloexec: u8,
    pub _pad: u8,
    /// For sockets: the `struct sock *`.
    pub sk: u64,
}

/// The fds one recvmsg/recvmmsg received over `SCM_RIGHTS`: one record
/// for the call (its stack and goroutine are every fd's), of which only
/// the first `n` fds are sent.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FdsReceived {
    pub header: Header,
    /// [`Syscall::Recvmsg`] or [`Syscall::Recvmmsg`].
    pub syscall: u16,
    pub n: u16,
    /// [`fd_flags`] bits for every fd (`READ_FAILED`).
    pub fd_flags: u32,
    /// The call's flags argument.
    pub flags: u64,
    pub stack_id: i32,
    pub _pad: u32,
    pub caller_ip: u64,
    /// Go, as in [`FdOpen`].
    pub go_spawn_stack: i32,
    pub _pad2: u32,
    pub go_spawn_pc: u64,
    pub go_transport: u64,
    /// CPython, as in [`FdOpen`].
    pub py_stack: u64,
    pub fds: [ReceivedFd; MAX_RECEIVED_FDS],
}

/// The key of a kept fd ([`OPEN_FDS_MAP`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FdKey {
    pub tgid: u32,
    pub fd: i32,
}

/// A place in a program that opens fds, as the kernel tells them apart:
/// the stack at the open (id and the caller of a frameless wrapper) and,
/// in Go, the stack that started the goroutine ([`PAIRS_MAP`]'s key).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SiteKey {
    pub tgid: u32,
    pub stack_id: i32,
    pub caller_ip: u64,
    pub go_spawn_stack: i32,
    pub _pad: u32,
    /// The runtime's part of the place: in Go the `go` statement's pc
    /// ([`Kept::go_spawn_pc`], with `go_spawn_stack` >= 0), in CPython the
    /// Python stack ([`Kept::py_stack`], with `go_spawn_stack` < 0). A
    /// process is one or the other, and the kernel ORs the two: one word,
    /// not two, because this key lives on the BPF stack of the programs
    /// that pair, and 8 more bytes there cost half a second of
    /// verification at start-up (measured).
    pub origin: u64,
}

impl SiteKey {
    /// [`SiteKey::origin`] for a Go spawn pc and a Python stack (at most
    /// one of them non-zero).
    pub const fn origin_of(go_spawn_pc: u64, py_stack: u64) -> u64 {
        go_spawn_pc | py_stack
    }

    /// The Go spawn pc and the Python stack an origin stands for.
    pub const fn split_origin(go_spawn_stack: i32, origin: u64) -> (u64, u64) {
        if go_spawn_stack >= 0 {
            (origin, 0)
        } else {
            (0, origin)
        }
    }
}

/// An fd opened in pairing mode, kept in the kernel until it is closed
/// (then counted in [`PAIRS_MAP`]) or fdtrace takes it: what an
/// [`FdOpen`] would have said, but the path.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Kept {
    /// When it was installed (CLOCK_MONOTONIC ns).
    pub opened_ns: u64,
    pub tid: u32,
    /// A [`Syscall`] value.
    pub syscall: u16,
    /// A [`kind_hint`] from the file's inode, when read.
    pub kind_hint: u16,
    /// Socket family/type/protocol, when known.
    pub family: u16,
    pub sock_type: u16,
    pub protocol: u16,
    /// [`fd_flags`] bits (`CLOEXEC`, `MISSED_ENTRY`, `READ_FAILED`,
    /// `LISTENING`).
    pub fd_flags: u16,
    /// accept's listening fd, dup's source, else -1.
    pub src_fd: i32,
    /// The place ([`SiteKey`]) without the tgid.
    pub stack_id: i32,
    pub caller_ip: u64,
    pub go_spawn_stack: i32,
    /// Last TCP state the kernel reported (0: unknown).
    pub state: u32,
    pub go_spawn_pc: u64,
    pub go_transport: u64,
    /// For sockets: the `struct sock *`, and its addresses as last seen.
    pub sk: u64,
    pub local: SockAddr,
    pub remote: SockAddr,
    /// The syscall that made the file: `syscall` itself, or for a dup its
    /// source's (what kind of fd it is, with `kind_hint`).
    pub origin_syscall: u16,
    pub _pad: [u16; 3],
    pub py_stack: u64,
}

/// A place opened its first fd in pairing mode ([`EventKind::SiteSeen`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SiteSeen {
    pub header: Header,
    pub stack_id: i32,
    pub go_spawn_stack: i32,
    pub caller_ip: u64,
    /// As in [`SiteKey::origin`].
    pub origin: u64,
}

/// A kept fd handed to fdtrace ([`EventKind::Released`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Released {
    pub header: Header,
    pub fd: i32,
    pub _pad: u32,
    pub kept: Kept,
}

/// `close(fd)`, sent at syscall entry (see `fdtrace-ebpf` for why).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Close {
    pub header: Header,
    pub fd: i32,
    pub _pad: u32,
}

/// `close_range(first, last, flags)`, sent at syscall entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CloseRange {
    pub header: Header,
    pub first: u32,
    pub last: u32,
    /// `CLOSE_RANGE_UNSHARE` (2), `CLOSE_RANGE_CLOEXEC` (4).
    pub flags: u32,
    pub _pad: u32,
}

/// Which socket call a [`SockAddrEvent`] reports.
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SockOp {
    Connect = 1,
    Bind = 2,
    Listen = 3,
}

impl SockOp {
    pub const fn from_u16(v: u16) -> Option<Self> {
        Some(match v {
            1 => SockOp::Connect,
            2 => SockOp::Bind,
            3 => SockOp::Listen,
            _ => return None,
        })
    }
}

/// What an installed fd's inode says it is (values of `FdOpen::kind_hint`).
pub mod kind_hint {
    pub const UNKNOWN: u16 = 0;
    pub const SOCKET: u16 = 1;
    pub const PIPE: u16 = 2;
    /// Regular file, directory, device, symlink.
    pub const FILE: u16 = 3;
    /// An anonymous inode (eventfd, epoll, timerfd...): the syscall says
    /// which.
    pub const ANON: u16 = 4;
}

/// Where a [`SockState`] comes from.
pub mod sock_source {
    /// `tcp_connect(sk)`: the SYN is about to go out.
    pub const TCP_CONNECT: u16 = 1;
    /// `tcp_close(sk)`: the last reference to the socket is gone.
    pub const TCP_CLOSE: u16 = 2;
    /// `sock:inet_sock_set_state`.
    pub const SET_STATE: u16 = 3;
}

/// A TCP socket's state and addresses, keyed by its `struct sock *`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockState {
    pub header: Header,
    /// A [`sock_source`] value.
    pub source: u16,
    pub family: u16,
    /// The fd, when the event happens in a syscall that names it
    /// (connect); else -1.
    pub fd: i32,
    /// TCP states (`include/net/tcp_states.h`); `old_state` is 0 when
    /// unknown.
    pub old_state: u32,
    pub new_state: u32,
    pub sk: u64,
    pub local: SockAddr,
    pub remote: SockAddr,
}

/// `connect`, `bind` or `listen` returned.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SockAddrEvent {
    pub header: Header,
    /// A [`SockOp`] value.
    pub op: u16,
    pub _pad: u16,
    pub fd: i32,
    /// Return value: 0, or -EINPROGRESS for a non-blocking connect, or an
    /// error.
    pub ret: i64,
    /// [`fd_flags`] bits (`PATH_TRUNCATED`, `MISSED_ENTRY`, `READ_FAILED`).
    pub flags: u32,
    pub _pad1: u32,
    /// The address the syscall carried (connect: peer, bind: local).
    pub addr: SockAddr,
    /// The socket's local address as the kernel holds it after the call
    /// (the port `bind(0)` or `connect` chose).
    pub local: SockAddr,
    /// The socket's peer as the kernel holds it after the call.
    pub remote: SockAddr,
    /// The `struct sock *`, when read from the kernel.
    pub sk: u64,
    /// Bytes used in `path`: the `AF_UNIX` socket path (a leading NUL marks
    /// an abstract address).
    pub path_len: u16,
    pub _pad2: [u8; 6],
    pub path: [u8; PATH_CAP],
}

/// The close-on-exec flag of `fd` was set or cleared (`fcntl(F_SETFD)`,
/// `ioctl(FIOCLEX/FIONCLEX)`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetCloexec {
    pub header: Header,
    pub fd: i32,
    /// 1 when set, 0 when cleared.
    pub cloexec: u32,
}

/// Bits of [`Fork::flags`].
pub mod fork_flags {
    /// The child shares the parent's fd table (`CLONE_FILES`).
    pub const SHARES_FILES: u32 = 1;
    /// The kernel side added the child to the traced set (`--follow-forks`).
    pub const FOLLOWED: u32 = 2;
}

/// A traced process created a new process (not a thread). The header's
/// tgid/tid are the parent's.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fork {
    pub header: Header,
    pub child_tgid: u32,
    /// [`fork_flags`] bits.
    pub flags: u32,
}

/// A traced process completed an execve. Close-on-exec fds are gone.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Exec {
    pub header: Header,
    /// Thread that called execve (it now has the tgid as its tid).
    pub old_tid: u32,
    pub flags: u32,
    pub path_len: u16,
    pub _pad: [u8; 6],
    pub path: [u8; PATH_CAP],
}

/// The last thread of a traced process exited; its fd table is gone.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Exit {
    pub header: Header,
    /// `task->exit_code` (status in wait(2) encoding) when known, else 0.
    pub exit_code: u32,
    pub _pad: u32,
}

const _: () = assert!(size_of::<Header>() == 40);
const _: () = assert!(size_of::<SockAddr>() == 24);
const _: () = assert!(size_of::<FdOpen>() == 192 + PATH_CAP);
const _: () = assert!(size_of::<GoKey>() == 24 && size_of::<GoOrigin>() == 16);
const _: () = assert!(size_of::<Close>() == 48);
const _: () = assert!(size_of::<CloseRange>() == 56);
const _: () = assert!(size_of::<SockAddrEvent>() == 152 + PATH_CAP);
const _: () = assert!(size_of::<SockState>() == 112);
const _: () = assert!(size_of::<SetCloexec>() == 48);
const _: () = assert!(size_of::<Fork>() == 48);
const _: () = assert!(size_of::<Exec>() == 56 + PATH_CAP);
const _: () = assert!(size_of::<Exit>() == 48);
const _: () = assert!(size_of::<ReceivedFd>() == 16);
const _: () = assert!(size_of::<FdKey>() == 8 && size_of::<SiteKey>() == 32);
const _: () = assert!(size_of::<Kept>() == 136);
const _: () = assert!(size_of::<SiteSeen>() == 64);
const _: () = assert!(size_of::<Released>() == 184);
const _: () = assert!(size_of::<FdsReceived>() == 104 + 16 * MAX_RECEIVED_FDS);
const _: () = assert!(MAX_EVENT_SIZE == size_of::<StackRecord>());
// The kernel side rounds the used part of a string up to 8 bytes.
const _: () = assert!(EventKind::FdOpen.min_size().is_multiple_of(8));
const _: () = assert!(EventKind::SockAddr.min_size().is_multiple_of(8));
const _: () = assert!(EventKind::Exec.min_size().is_multiple_of(8));

/// `stack_id` of an event whose stack follows the [`StackRecord`] sent
/// just before it by the same thread.
pub const STACK_INLINE: i32 = i32::MIN + 1;
/// `stack_id` of an event whose stack was not asked for.
pub const STACK_NOT_CAPTURED: i32 = i32::MIN;

/// A user stack sent inline (see [`EventKind::Stack`]); only `nframes`
/// frames are sent.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct StackRecord {
    pub header: Header,
    pub nframes: u32,
    pub _pad: u32,
    pub frames: [u64; STACK_DEPTH],
}

const _: () = assert!(size_of::<StackRecord>() == 48 + 8 * STACK_DEPTH);

/// Indices into the per-CPU loss counters. Each counts something the kernel
/// side could not deliver in full.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    /// An event was dropped because the ring buffer was full.
    RingbufFull = 0,
    /// A user stack could not be captured (the event was sent without it;
    /// or, at a Go `go` statement, the creator's stack was not recorded).
    StackFailed = 1,
    /// A syscall's arguments could not be stashed at entry.
    InflightFull = 2,
    /// A syscall returned whose entry was not seen (sent with partial data).
    MissedEntry = 3,
    /// Reading user memory (a path, an address, an fd pair) failed.
    ReadFailed = 4,
    /// A forked child could not be added to the traced set.
    TargetsFull = 5,
    /// Not a loss: stacks whose map bucket was taken, sent inline instead.
    StackInline = 6,
    /// An event was dropped because this CPU's scratch memory was in use
    /// by another program (an fentry program preempted mid-way, possible
    /// from Linux 5.11; see `fdtrace-ebpf/src/emit.rs`).
    ScratchBusy = 7,
    /// A recvmsg/recvmmsg received more fds (or control messages, or
    /// messages) than the syscall exit walks: the rest are found by
    /// reconciliation, without a stack.
    RecvTruncated = 8,
    /// Not a loss: fds opened in pairing mode kept in the kernel (events
    /// that never went through the ring).
    Kept = 9,
    /// Not a loss: closes of kept fds the kernel paired with their opens.
    Paired = 10,
    /// Not a loss: opens that went through the ring in pairing mode
    /// because the kernel could not keep them (an inline stack, a dup of
    /// an fd it does not hold, a pipe whose fds were not read...).
    NotKept = 11,
    /// Not a loss: opens that went through the ring in pairing mode
    /// because the kernel's table of kept fds ([`OPEN_FDS_MAP`]) or of
    /// places ([`PAIRS_MAP`]) was full.
    KeptFull = 12,
    /// A kept fd whose number was installed again without a close the
    /// kernel saw (io_uring's close on the tracepoint tier): counted as
    /// closed there, and as a missed close.
    KeptOverwritten = 13,
    /// A Python stack could not be read or kept (interpreter memory
    /// unreadable, or [`PY_STACKS_MAP`] full): the event was sent with its
    /// native stack only.
    PyStackFailed = 14,
}

impl Loss {
    pub const COUNT: usize = 15;
    pub const ALL: [Loss; Loss::COUNT] = [
        Loss::RingbufFull,
        Loss::StackFailed,
        Loss::InflightFull,
        Loss::MissedEntry,
        Loss::ReadFailed,
        Loss::TargetsFull,
        Loss::StackInline,
        Loss::ScratchBusy,
        Loss::RecvTruncated,
        Loss::Kept,
        Loss::Paired,
        Loss::NotKept,
        Loss::KeptFull,
        Loss::KeptOverwritten,
        Loss::PyStackFailed,
    ];
}

// The counters are indexed by discriminant: `ALL` lists them in order.
const _: () = {
    let mut i = 0;
    while i < Loss::COUNT {
        assert!(Loss::ALL[i] as usize == i);
        i += 1;
    }
};

/// Bits of [`Config::flags`].
pub mod config_flags {
    /// Add processes forked by a traced process to the traced set.
    pub const FOLLOW_FORKS: u32 = 1;
    /// Capture a user stack on every fd-creating event.
    pub const CAPTURE_STACKS: u32 = 2;
    /// `bpf_task_pt_regs` exists (Linux 5.15+): syscall arguments are read
    /// from the user registers at exit (no entry hooks needed), and so is
    /// the return address at the user stack pointer.
    pub const HAVE_TASK_PT_REGS: u32 = 4;
    /// `--comm`: add processes that exec (or fork) with the name in
    /// [`Config::comm`](super::Config::comm) to the traced set.
    pub const MATCH_COMM: u32 = 8;
    /// Pairing mode (reports, not `--events`): an fd opened is kept in the
    /// kernel ([`OPEN_FDS_MAP`]) instead of sent, and its close, when the
    /// kernel holds it, is paired there ([`PAIRS_MAP`]); fdtrace takes the
    /// fds still open when it needs them (a report, a fork, exec, exit).
    pub const PAIRING: u32 = 16;
    /// Records carry the thread's name (`--events` shows it); else only
    /// the records that name processes (fork, exec, exit) do.
    pub const COMM: u32 = 32;
    /// Read Python stacks in the CPython processes of [`PY_PROCS_MAP`]:
    /// set only when a traced program is CPython, so that the programs of
    /// other sessions are verified without the walk (the verifier skips
    /// what a frozen flag rules out).
    pub const PYTHON: u32 = 64;
    /// Join Node sockets to the JavaScript that asked for them
    /// (`fdtrace-ebpf/src/node.rs`): set only when a traced program is
    /// Node.
    pub const NODE: u32 = 128;
}

/// Read-only settings the loader writes before load ([`CONFIG_GLOBAL`]).
/// Offsets come from the running kernel's BTF; 0 means "not available".
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// [`config_flags`] bits.
    pub flags: u32,
    /// `offsetof(struct task_struct, tgid)`.
    pub task_tgid_off: u32,
    /// `offsetof(struct task_struct, files)`.
    pub task_files_off: u32,
    /// `offsetof(struct task_struct, exit_code)`.
    pub task_exit_code_off: u32,
    /// `offsetof(struct task_struct, signal)`.
    pub task_signal_off: u32,
    /// `offsetof(struct signal_struct, live)`.
    pub signal_live_off: u32,
    /// Offset of `group_dead` in the `sched_process_exit` tracepoint record
    /// (newer kernels), else 0.
    pub exit_group_dead_off: u32,
    /// Offset of `filename`'s `__data_loc` in `sched_process_exec`.
    pub exec_filename_loc_off: u32,
    /// Offset of `old_pid` in `sched_process_exec`.
    pub exec_old_pid_off: u32,
    /// fd → socket walk: `files_struct.fdt`, `fdtable.max_fds`,
    /// `fdtable.fd`, `file.private_data`, `file.f_inode`, `inode.i_mode`,
    /// `socket.sk`.
    pub files_fdt_off: u32,
    pub fdtable_max_fds_off: u32,
    pub fdtable_fd_off: u32,
    pub file_private_data_off: u32,
    pub file_inode_off: u32,
    pub inode_mode_off: u32,
    pub socket_sk_off: u32,
    /// `struct sock_common` fields (at the start of `struct sock`).
    pub skc_family_off: u32,
    pub skc_num_off: u32,
    pub skc_dport_off: u32,
    pub skc_rcv_saddr_off: u32,
    pub skc_daddr_off: u32,
    /// 0 on kernels without IPv6.
    pub skc_v6_rcv_saddr_off: u32,
    pub skc_v6_daddr_off: u32,
    pub skc_state_off: u32,
    /// `fdtable.close_on_exec` (a bitmap pointer).
    pub fdtable_close_on_exec_off: u32,
    /// `sock.sk_type` and `sock.sk_protocol` (u16 each since Linux 5.6).
    pub sk_type_off: u32,
    pub sk_protocol_off: u32,
    /// Where there is no `bpf_task_pt_regs` (before 5.15), the user
    /// registers are found as x86_64's `task_pt_regs()` does: at the top of
    /// the task's kernel stack, `task->stack + THREAD_SIZE - sizeof(pt_regs)`.
    /// 0 disables it.
    pub task_stack_off: u32,
    pub thread_size: u32,
    /// `offsetof(struct task_struct, thread.fsbase)` (x86_64): a thread's
    /// TLS base, which is glibc's `pthread_self()`, how a CPython thread
    /// state is matched to its thread. 0: Python stacks are not read.
    pub task_fsbase_off: u32,
    pub _pad: u32,
    /// Records are submitted without waking fdtrace (a wakeup is an
    /// interrupt, costly in VMs) until this many bytes wait in the ring;
    /// fdtrace also drains on a short timer. 0: wake on every record.
    pub wakeup_bytes: u32,
    /// With [`config_flags::MATCH_COMM`]: the comm to trace, NUL-padded
    /// (at most 15 bytes, as the kernel keeps it).
    pub comm: [u8; 16],
}

const _: () = assert!(size_of::<Config>() == 144);

/// Flags the kernel side keeps per traced tgid (values of [`TARGETS_MAP`]).
pub mod target {
    /// Traced because the user named it.
    pub const ROOT: u32 = 1;
    /// Traced because a traced process forked it.
    pub const CHILD: u32 = 2;
    /// Traced because its name matched `--comm` when it exec'd.
    pub const COMM: u32 = 4;
    /// Byte 1: never paired in the kernel again: it shares its fd table
    /// with another process (`CLONE_FILES` without `CLONE_THREAD`), whose
    /// closes the kernel could not match with its opens. Set by the kernel
    /// at the fork (a byte store, so a concurrent store to another byte is
    /// not lost) and by fdtrace when it reads that fork.
    pub const NO_PAIRING: u32 = 1 << 8;
    /// Byte 2: fdtrace must take this process's kept fds before the kernel
    /// pairs any more of them: set by the kernel at a fork it follows, an
    /// exec and a close_range (after which the kept entries no longer say
    /// what the fd table holds), and by fdtrace while it compares the
    /// ledger with `/proc`; fdtrace clears it once it took them. While it
    /// is set every open, close and change goes through the ring.
    pub const HELD: u32 = 1 << 16;
    /// The byte of a flag in the value's memory (little-endian), for the
    /// kernel's single-byte stores.
    pub const NO_PAIRING_BYTE: usize = 1;
    pub const HELD_BYTE: usize = 2;
}

/// Who a socket belongs to ([`SOCKS_MAP`] values): the process, and the fd
/// it was seen as (-1 if unknown).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockOwner {
    pub tgid: u32,
    pub fd: i32,
}

/// Syscall arguments stashed at entry (values of [`INFLIGHT_MAP`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Inflight {
    /// Architecture syscall number.
    pub nr: u32,
    pub _pad: u32,
    pub args: [u64; 6],
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain-old-data: #[repr(C)], integer fields only, explicit
    // padding.
    unsafe impl aya::Pod for super::GoInfo {}
    // SAFETY: plain-old-data: #[repr(C)], integer fields only, no padding
    // that is not an explicit field.
    unsafe impl aya::Pod for super::Config {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Inflight {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FdKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::SiteKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Kept {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::PyInfo {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::PyStack {}
}
