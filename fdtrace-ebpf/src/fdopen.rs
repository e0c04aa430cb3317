//! The `FdOpen` record, built the same way whether the syscall's exit
//! reports it (tracepoint tier) or `fd_install` does (function tiers), so
//! the ledger never knows which.
use aya_ebpf::{helpers::bpf_probe_read_user, programs::tracing::StackIdContext};
use fdtrace_common::{
    fd_flags, kind_hint,
    syscall::consts::{EAGAIN, O_CREAT, O_TRUNC, O_WRONLY, SOCK_TYPE_MASK},
    EventKind, FdOpen, Syscall, PATH_CAP, STACK_NOT_CAPTURED,
};

use crate::{
    emit::{
        header, read_fd_pair, read_sockaddr, read_user_str, scratch, send_scratch, track_sock, user_stack,
        Args, UserRegs,
    },
    go::goroutine_origin,
    sockets::{fd_is_cloexec, file_kind, sock_addrs, sock_of_fd, sock_of_file},
};

macro_rules! nr {
    ($($name:ident = $sc:ident),* $(,)?) => {
        $(pub const $name: u32 = Syscall::$sc.nr();)*
    };
}
nr! {
    NR_SOCKET = Socket, NR_SOCKETPAIR = Socketpair, NR_ACCEPT = Accept, NR_ACCEPT4 = Accept4,
    NR_CONNECT = Connect, NR_BIND = Bind, NR_LISTEN = Listen,
    NR_OPEN = Open, NR_OPENAT = Openat, NR_OPENAT2 = Openat2, NR_CREAT = Creat,
    NR_OPEN_BY_HANDLE_AT = OpenByHandleAt, NR_MEMFD_CREATE = MemfdCreate,
    NR_MEMFD_SECRET = MemfdSecret, NR_PIPE = Pipe, NR_PIPE2 = Pipe2,
    NR_DUP = Dup, NR_DUP2 = Dup2, NR_DUP3 = Dup3, NR_FCNTL = Fcntl, NR_IOCTL = Ioctl,
    NR_EVENTFD = Eventfd, NR_EVENTFD2 = Eventfd2, NR_EPOLL_CREATE = EpollCreate,
    NR_EPOLL_CREATE1 = EpollCreate1, NR_TIMERFD_CREATE = TimerfdCreate,
    NR_SIGNALFD = Signalfd, NR_SIGNALFD4 = Signalfd4, NR_INOTIFY_INIT = InotifyInit,
    NR_INOTIFY_INIT1 = InotifyInit1, NR_FANOTIFY_INIT = FanotifyInit,
    NR_PIDFD_OPEN = PidfdOpen, NR_PIDFD_GETFD = PidfdGetfd, NR_USERFAULTFD = Userfaultfd,
    NR_PERF_EVENT_OPEN = PerfEventOpen, NR_IO_URING_SETUP = IoUringSetup,
    NR_RECVMSG = Recvmsg, NR_RECVMMSG = Recvmmsg,
    NR_IO_URING_ENTER = IoUringEnter, NR_CLOSE_RANGE = CloseRange,
}

/// An fd being installed: `fd_install(fd, file)`; `file` 0 when the
/// record is a syscall exit's.
#[derive(Clone, Copy)]
pub struct Install {
    pub fd: i32,
    pub file: u64,
}

impl Install {
    pub const NONE: Install = Install { fd: -1, file: 0 };

    fn is_some(&self) -> bool {
        self.file != 0
    }
}

/// Reports an fd-creating syscall's result (`install` is
/// [`Install::NONE`], called at syscall exit), or one fd installed by
/// `fd_install` (called inside the syscall; `ret` is the fd).
#[inline(always)]
pub fn report_open<C: StackIdContext>(
    ctx: &C,
    pid_tgid: u64,
    nr: u32,
    ret: i64,
    entry: &Args,
    regs: &UserRegs,
    install: Install,
) {
    // A non-blocking accept finding nothing is routine, not an event.
    if ret == -EAGAIN {
        return;
    }
    let syscall = match syscall_of(nr) {
        Some(s) => s,
        // fd_install from a path with no fd-creating syscall of its own.
        None if install.is_some() => Syscall::Other,
        None => return,
    };
    let Some(ev) = scratch::<FdOpen>() else {
        return;
    };
    ev.header = header(EventKind::FdOpen, pid_tgid);
    ev.syscall = syscall as u16;
    ev.family = 0;
    ev.sock_type = 0;
    ev.protocol = 0;
    ev.fd = if ret >= 0 { ret as i32 } else { -1 };
    ev.fd2 = -1;
    ev.src_fd = -1;
    ev.fd_flags = 0;
    ev.ret = ret;
    ev.flags = 0;
    ev.kind_hint = kind_hint::UNKNOWN;
    ev._pad = 0;
    ev.local = Default::default();
    ev.remote = Default::default();
    ev.sk = 0;
    ev._pad3 = 0;
    (ev.go_spawn_stack, ev.go_spawn_pc, ev.go_transport) = goroutine_origin((pid_tgid >> 32) as u32, regs);
    ev.path_len = 0;
    ev._pad2 = [0; 6];

    if !entry.known {
        ev.fd_flags |= fd_flags::MISSED_ENTRY;
    }
    let args = entry.args;
    // What each syscall's arguments tell: (raw flags, path pointer).
    let mut path_ptr = 0u64;
    match nr {
        NR_SOCKET | NR_SOCKETPAIR => {
            ev.family = args[0] as u16;
            ev.sock_type = (args[1] & SOCK_TYPE_MASK) as u16;
            ev.protocol = args[2] as u16;
            ev.flags = args[1];
            if nr == NR_SOCKETPAIR && !install.is_some() {
                ev.fd = -1;
                if ret == 0 && entry.known {
                    match read_fd_pair(args[3]) {
                        Some((a, b)) => {
                            ev.fd = a;
                            ev.fd2 = b;
                        }
                        None => ev.fd_flags |= fd_flags::READ_FAILED,
                    }
                }
            }
        }
        NR_ACCEPT | NR_ACCEPT4 => {
            ev.src_fd = if entry.known { args[0] as i32 } else { -1 };
            if nr == NR_ACCEPT4 {
                ev.flags = args[3];
            }
            // The address length is value-result: readable after the call.
            if ret >= 0 && args[1] != 0 && args[2] != 0 && !install.is_some() {
                // SAFETY: user read through the checked helper.
                let len = unsafe { bpf_probe_read_user(args[2] as *const u32) }.unwrap_or(0);
                let (n, f) = read_sockaddr(args[1], u64::from(len), &mut ev.remote, &mut ev.path);
                ev.path_len = n;
                ev.fd_flags |= f;
            }
        }
        NR_OPEN => {
            path_ptr = args[0];
            ev.flags = args[1];
        }
        NR_OPENAT => {
            path_ptr = args[1];
            ev.flags = args[2];
        }
        NR_OPENAT2 => {
            path_ptr = args[1];
            // struct open_how starts with the u64 flags.
            if args[2] != 0 {
                // SAFETY: user read through the checked helper.
                ev.flags = unsafe { bpf_probe_read_user(args[2] as *const u64) }.unwrap_or(0);
            }
        }
        NR_CREAT => {
            path_ptr = args[0];
            ev.flags = O_CREAT | O_WRONLY | O_TRUNC;
        }
        NR_OPEN_BY_HANDLE_AT => ev.flags = args[2],
        NR_MEMFD_CREATE => {
            path_ptr = args[0];
            ev.flags = args[1];
        }
        NR_PIPE | NR_PIPE2 => {
            if nr == NR_PIPE2 {
                ev.flags = args[1];
            }
            // At exit the pair is in user memory; each install is one fd.
            if !install.is_some() {
                ev.fd = -1;
            }
            if ret == 0 && entry.known && !install.is_some() {
                match read_fd_pair(args[0]) {
                    Some((a, b)) => {
                        ev.fd = a;
                        ev.fd2 = b;
                    }
                    None => ev.fd_flags |= fd_flags::READ_FAILED,
                }
            }
        }
        NR_DUP | NR_DUP2 | NR_DUP3 => {
            ev.src_fd = if entry.known { args[0] as i32 } else { -1 };
            if nr == NR_DUP3 {
                ev.flags = args[2];
            }
        }
        NR_FCNTL => {
            ev.src_fd = if entry.known { args[0] as i32 } else { -1 };
            ev.flags = args[1];
        }
        NR_SIGNALFD | NR_SIGNALFD4 => {
            ev.src_fd = if entry.known { args[0] as i32 } else { -1 };
            if nr == NR_SIGNALFD4 {
                ev.flags = args[3];
            }
            // signalfd on an existing signalfd updates it in place.
            if ev.src_fd >= 0 {
                ev.fd_flags |= fd_flags::REUSED_FD;
            }
        }
        NR_PIDFD_GETFD => {
            ev.src_fd = if entry.known { args[1] as i32 } else { -1 };
            ev.flags = args[2];
        }
        NR_EVENTFD2 | NR_TIMERFD_CREATE => ev.flags = args[1],
        NR_EPOLL_CREATE1 | NR_INOTIFY_INIT1 | NR_FANOTIFY_INIT | NR_USERFAULTFD | NR_MEMFD_SECRET
        | NR_PIDFD_OPEN => ev.flags = args[0],
        NR_PERF_EVENT_OPEN => ev.flags = args[4],
        _ => {}
    }
    if install.is_some() {
        // What the table says, whatever the path.
        if fd_is_cloexec(install.fd) {
            ev.fd_flags |= fd_flags::CLOEXEC;
        }
        ev.kind_hint = file_kind(install.file);
    } else if syscall.new_fd_cloexec(ev.flags) {
        ev.fd_flags |= fd_flags::CLOEXEC;
    }
    // Sockets: the kernel's addresses, exact even for accept without an
    // address buffer.
    let sock = if install.is_some() {
        sock_of_file(install.file)
    } else if ret >= 0 && matches!(nr, NR_SOCKET | NR_ACCEPT | NR_ACCEPT4) {
        sock_of_fd(ret as i32)
    } else {
        None
    };
    if let Some(sk) = sock {
        ev.sk = sk;
        track_sock(sk, (pid_tgid >> 32) as u32);
        // accept's address argument, if any, is replaced by the kernel's.
        sock_addrs(sk, &mut ev.local, &mut ev.remote);
    }
    if path_ptr != 0 && entry.known {
        let (n, f) = read_user_str(path_ptr, &mut ev.path);
        ev.path_len = n;
        ev.fd_flags |= f;
    }
    if ret >= 0 {
        ev.stack_id = user_stack(ctx, pid_tgid);
        ev.caller_ip = regs.caller_ip();
    } else {
        ev.stack_id = STACK_NOT_CAPTURED;
        ev.caller_ip = 0;
    }
    let path_len = ev.path_len as usize;
    send_scratch(size_of::<FdOpen>() - PATH_CAP, path_len);
}

#[inline(always)]
pub fn syscall_of(nr: u32) -> Option<Syscall> {
    Some(match nr {
        NR_SOCKET => Syscall::Socket,
        NR_SOCKETPAIR => Syscall::Socketpair,
        NR_ACCEPT => Syscall::Accept,
        NR_ACCEPT4 => Syscall::Accept4,
        NR_OPEN => Syscall::Open,
        NR_OPENAT => Syscall::Openat,
        NR_OPENAT2 => Syscall::Openat2,
        NR_CREAT => Syscall::Creat,
        NR_OPEN_BY_HANDLE_AT => Syscall::OpenByHandleAt,
        NR_MEMFD_CREATE => Syscall::MemfdCreate,
        NR_MEMFD_SECRET => Syscall::MemfdSecret,
        NR_PIPE => Syscall::Pipe,
        NR_PIPE2 => Syscall::Pipe2,
        NR_DUP => Syscall::Dup,
        NR_DUP2 => Syscall::Dup2,
        NR_DUP3 => Syscall::Dup3,
        NR_FCNTL => Syscall::Fcntl,
        NR_EVENTFD => Syscall::Eventfd,
        NR_EVENTFD2 => Syscall::Eventfd2,
        NR_EPOLL_CREATE => Syscall::EpollCreate,
        NR_EPOLL_CREATE1 => Syscall::EpollCreate1,
        NR_TIMERFD_CREATE => Syscall::TimerfdCreate,
        NR_SIGNALFD => Syscall::Signalfd,
        NR_SIGNALFD4 => Syscall::Signalfd4,
        NR_INOTIFY_INIT => Syscall::InotifyInit,
        NR_INOTIFY_INIT1 => Syscall::InotifyInit1,
        NR_FANOTIFY_INIT => Syscall::FanotifyInit,
        NR_PIDFD_OPEN => Syscall::PidfdOpen,
        NR_PIDFD_GETFD => Syscall::PidfdGetfd,
        NR_USERFAULTFD => Syscall::Userfaultfd,
        NR_PERF_EVENT_OPEN => Syscall::PerfEventOpen,
        NR_IO_URING_SETUP => Syscall::IoUringSetup,
        NR_RECVMSG => Syscall::Recvmsg,
        NR_RECVMMSG => Syscall::Recvmmsg,
        NR_IO_URING_ENTER => Syscall::IoUringEnter,
        _ => return None,
    })
}
