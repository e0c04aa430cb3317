//! Reading the kernel's fd table and sockets, for the current task:
//! `task->files->fdt->fd[fd]` is the `struct file`; for a socket,
//! `file->private_data` is the `struct socket`, whose `sk` starts with
//! `struct sock_common`. The kernel's view is exact where syscall
//! arguments are not (accept with a NULL address, the port bind(0) or
//! connect chose). Offsets come from BTF via `CONFIG`.
use aya_ebpf::helpers::bpf_get_current_task;
use fdtrace_common::{
    kind_hint,
    syscall::consts::{AF_INET, AF_INET6, S_IFIFO, S_IFMT, S_IFSOCK},
    SockAddr,
};

use crate::{maps::config, mem::kernel as read};

/// The current task's `struct fdtable *`.
#[inline(always)]
fn fdtable() -> Option<u64> {
    if config!(files_fdt_off) == 0 && config!(fdtable_fd_off) == 0 {
        return None;
    }
    // SAFETY: no preconditions.
    let task = unsafe { bpf_get_current_task() };
    let files: u64 = read(task, config!(task_files_off))?;
    read(files, config!(files_fdt_off))
}

/// The `struct file *` behind `fd` of the current task.
#[inline(always)]
pub fn file_of_fd(fd: i32) -> Option<u64> {
    if fd < 0 {
        return None;
    }
    let fdt = fdtable()?;
    let max_fds: u32 = read(fdt, config!(fdtable_max_fds_off))?;
    if fd as u32 >= max_fds {
        return None;
    }
    let array: u64 = read(fdt, config!(fdtable_fd_off))?;
    read(array, fd as u32 * 8)
}

#[inline(always)]
fn inode_mode(file: u64) -> Option<u16> {
    let inode: u64 = read(file, config!(file_inode_off))?;
    read(inode, config!(inode_mode_off))
}

/// What the file's inode says it is.
#[inline(always)]
pub fn file_kind(file: u64) -> u16 {
    match inode_mode(file) {
        None => kind_hint::UNKNOWN,
        Some(mode) => match mode & S_IFMT {
            S_IFSOCK => kind_hint::SOCKET,
            S_IFIFO => kind_hint::PIPE,
            // Anonymous inodes (eventfd, epoll...) have no type bits.
            0 => kind_hint::ANON,
            _ => kind_hint::FILE,
        },
    }
}

/// The `struct sock *` of a socket file.
#[inline(always)]
pub fn sock_of_file(file: u64) -> Option<u64> {
    if config!(socket_sk_off) == 0 || inode_mode(file)? & S_IFMT != S_IFSOCK {
        return None;
    }
    let socket: u64 = read(file, config!(file_private_data_off))?;
    read(socket, config!(socket_sk_off))
}

/// The `struct sock *` behind `fd` of the current task, if a socket.
#[inline(always)]
pub fn sock_of_fd(fd: i32) -> Option<u64> {
    sock_of_file(file_of_fd(fd)?)
}

/// The address family of a socket (`sk->__sk_common.skc_family`), if the
/// loader found the field.
#[inline(always)]
pub fn sock_family(sk: u64) -> Option<u16> {
    match config!(skc_family_off) {
        0 => None,
        off => read(sk, off),
    }
}

/// Whether `fd` has close-on-exec set in the current task's table.
#[inline(always)]
pub fn fd_is_cloexec(fd: i32) -> bool {
    if fd < 0 || config!(fdtable_close_on_exec_off) == 0 {
        return false;
    }
    let Some(fdt) = fdtable() else { return false };
    let Some(bits) = read::<u64>(fdt, config!(fdtable_close_on_exec_off)) else { return false };
    let word: u64 = read(bits, (fd as u32 / 64) * 8).unwrap_or(0);
    word >> (fd as u32 % 64) & 1 == 1
}

/// Writes the local and remote addresses of a socket (IPv4/IPv6) into
/// `local`/`remote`, which are left zeroed otherwise. In place: these run
/// inside programs whose stack is nearly full.
#[inline(always)]
pub fn sock_addrs(sk: u64, local: &mut SockAddr, remote: &mut SockAddr) {
    *local = SockAddr::default();
    *remote = SockAddr::default();
    let family: u16 = read(sk, config!(skc_family_off)).unwrap_or(0);
    match family {
        AF_INET => {
            let saddr: [u8; 4] = read(sk, config!(skc_rcv_saddr_off)).unwrap_or([0; 4]);
            let daddr: [u8; 4] = read(sk, config!(skc_daddr_off)).unwrap_or([0; 4]);
            local.addr[..4].copy_from_slice(&saddr);
            remote.addr[..4].copy_from_slice(&daddr);
        }
        AF_INET6 => {
            let (s_off, d_off) = (config!(skc_v6_rcv_saddr_off), config!(skc_v6_daddr_off));
            if s_off == 0 || d_off == 0 {
                return;
            }
            let _ = crate::mem::kernel_buf(sk, s_off, &mut local.addr);
            let _ = crate::mem::kernel_buf(sk, d_off, &mut remote.addr);
        }
        _ => return,
    }
    local.family = family;
    local.port = read(sk, config!(skc_num_off)).unwrap_or(0);
    // A socket with no peer yet (listening, or before connect) has port 0.
    let dport: u16 = read(sk, config!(skc_dport_off)).unwrap_or(0);
    if dport != 0 {
        remote.family = family;
        remote.port = u16::from_be(dport);
    }
}

/// The TCP state of a socket (`sk->__sk_common.skc_state`).
#[inline(always)]
pub fn sock_state(sk: u64) -> u32 {
    u32::from(read::<u8>(sk, config!(skc_state_off)).unwrap_or(0))
}

/// A socket's family, type and protocol as the kernel holds them
/// (`sk_type`, `sk_protocol`: u16 since Linux 5.6), for sockets that did
/// not come from socket(2) (accepted, received, installed by io_uring).
/// Zeros for what the loader found no offset for.
#[inline(always)]
pub fn sock_spec(sk: u64) -> (u16, u16, u16) {
    let family = sock_family(sk).unwrap_or(0);
    let (type_off, proto_off) = (config!(sk_type_off), config!(sk_protocol_off));
    if type_off == 0 || proto_off == 0 {
        return (family, 0, 0);
    }
    (family, read::<u16>(sk, type_off).unwrap_or(0), read::<u16>(sk, proto_off).unwrap_or(0))
}
