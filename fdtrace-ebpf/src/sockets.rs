//! Reading a socket's addresses from the kernel, given an fd of the current
//! task: `task->files->fdt->fd[fd]->private_data` is the `struct socket`,
//! whose `sk` starts with `struct sock_common`. The kernel's view is exact
//! where the syscall's arguments are not (accept with a NULL address, the
//! port bind(0) or connect chose). Offsets come from BTF via `CONFIG`.
use aya_ebpf::helpers::{bpf_get_current_task, bpf_probe_read_kernel, bpf_probe_read_kernel_buf};
use fdtrace_common::{
    syscall::consts::{AF_INET, AF_INET6},
    SockAddr,
};

use crate::maps::config;

const S_IFMT: u16 = 0o170000;
const S_IFSOCK: u16 = 0o140000;

#[inline(always)]
fn read<T>(base: u64, off: u32) -> Option<T> {
    if base == 0 {
        return None;
    }
    // SAFETY: checked kernel read.
    unsafe { bpf_probe_read_kernel((base + u64::from(off)) as *const T) }.ok()
}

/// The `struct sock *` behind `fd` of the current task, if it is a socket.
#[inline(always)]
fn sock_of_fd(fd: i32) -> Option<u64> {
    if fd < 0 || config!(socket_sk_off) == 0 {
        return None;
    }
    // SAFETY: no preconditions.
    let task = unsafe { bpf_get_current_task() };
    let files: u64 = read(task, config!(task_files_off))?;
    let fdt: u64 = read(files, config!(files_fdt_off))?;
    let max_fds: u32 = read(fdt, config!(fdtable_max_fds_off))?;
    if fd as u32 >= max_fds {
        return None;
    }
    let array: u64 = read(fdt, config!(fdtable_fd_off))?;
    let file: u64 = read(array, fd as u32 * 8)?;
    let inode: u64 = read(file, config!(file_inode_off))?;
    let mode: u16 = read(inode, config!(inode_mode_off))?;
    if mode & S_IFMT != S_IFSOCK {
        return None;
    }
    let socket: u64 = read(file, config!(file_private_data_off))?;
    read(socket, config!(socket_sk_off))
}

/// (local, remote) of the socket `fd`, for IPv4/IPv6 sockets; zeroed
/// addresses otherwise.
#[inline(always)]
pub fn socket_addrs(fd: i32) -> (SockAddr, SockAddr) {
    let (mut local, mut remote) = (SockAddr::default(), SockAddr::default());
    let Some(sk) = sock_of_fd(fd) else {
        return (local, remote);
    };
    let family: u16 = read(sk, config!(skc_family_off)).unwrap_or(0);
    let num: u16 = read(sk, config!(skc_num_off)).unwrap_or(0);
    let dport: u16 = read(sk, config!(skc_dport_off)).unwrap_or(0);
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
                return (local, remote);
            }
            // SAFETY: checked kernel reads into our buffers.
            unsafe {
                let _ = bpf_probe_read_kernel_buf((sk + u64::from(s_off)) as *const u8, &mut local.addr);
                let _ = bpf_probe_read_kernel_buf((sk + u64::from(d_off)) as *const u8, &mut remote.addr);
            }
        }
        _ => return (local, remote),
    }
    local.family = family;
    local.port = num;
    // A socket with no peer yet (listening, or before connect) has port 0.
    if dport != 0 {
        remote.family = family;
        remote.port = u16::from_be(dport);
    }
    (local, remote)
}
