//! TCP sockets from the kernel's sock_diag netlink interface: state, queues
//! and, from `tcp_info`, how long since each socket last sent or received
//! data. `/proc/net/tcp` has no such times.
//!
//! Only sockets of fdtrace's own network namespace are visible; for a
//! target in another namespace the caller falls back to `/proc/PID/net`.
use std::{
    collections::HashMap,
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use super::SocketView;
use crate::events::{Addr, SockSpec, TcpState};

const NETLINK_SOCK_DIAG: i32 = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const INET_DIAG_INFO: u16 = 2;
const IPPROTO_TCP: u8 = 6;
const NLMSG_HDR: usize = 16;
const DIAG_MSG: usize = 72;

/// Every TCP socket of this network namespace, by inode.
pub fn tcp_sockets() -> io::Result<HashMap<u64, SocketView>> {
    // SAFETY: plain socket(2); the fd is owned right away.
    let raw =
        unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, NETLINK_SOCK_DIAG) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd we own.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut out = HashMap::new();
    for family in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
        send_request(&sock, family)?;
        let mut buf = vec![0u8; 64 << 10];
        'recv: loop {
            // SAFETY: reading into our buffer.
            let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            match parse_messages(&buf[..n as usize], &mut out) {
                Parsed::More => continue,
                Parsed::Done => break 'recv,
                Parsed::Error(errno) => return Err(io::Error::from_raw_os_error(errno)),
            }
        }
    }
    Ok(out)
}

fn send_request(sock: &OwnedFd, family: u8) -> io::Result<()> {
    let mut req = Vec::with_capacity(NLMSG_HDR + 56);
    req.extend(((NLMSG_HDR + 56) as u32).to_ne_bytes());
    req.extend(SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req.extend((NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req.extend(1u32.to_ne_bytes()); // seq
    req.extend(0u32.to_ne_bytes()); // pid
                                    // struct inet_diag_req_v2
    req.extend([family, IPPROTO_TCP, 1 << (INET_DIAG_INFO - 1), 0]);
    req.extend(u32::MAX.to_ne_bytes()); // every state
    req.extend([0u8; 48]); // inet_diag_sockid: any
                           // SAFETY: sending our buffer.
    let n = unsafe { libc::send(sock.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    More,
    Done,
    Error(i32),
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(off..off + 2)?.try_into().ok()?))
}

/// Parses one datagram of netlink messages into `out`. Malformed input
/// ends the parse, never panics.
fn parse_messages(mut buf: &[u8], out: &mut HashMap<u64, SocketView>) -> Parsed {
    while buf.len() >= NLMSG_HDR {
        let (Some(len), Some(ty)) = (u32_at(buf, 0), u16_at(buf, 4)) else { return Parsed::Done };
        let len = len as usize;
        if len < NLMSG_HDR || len > buf.len() {
            return Parsed::Done;
        }
        let msg = &buf[NLMSG_HDR..len];
        match ty {
            NLMSG_DONE => return Parsed::Done,
            NLMSG_ERROR => {
                let errno = u32_at(msg, 0).map_or(0, |e| -(e as i32));
                return if errno == 0 { Parsed::Done } else { Parsed::Error(errno) };
            }
            SOCK_DIAG_BY_FAMILY => {
                if let Some(s) = parse_diag(msg) {
                    out.insert(s.inode, s);
                }
            }
            _ => {}
        }
        buf = &buf[(len + 3) & !3..];
    }
    Parsed::More
}

/// `struct inet_diag_msg` and its attributes.
fn parse_diag(msg: &[u8]) -> Option<SocketView> {
    if msg.len() < DIAG_MSG {
        return None;
    }
    let family = msg[0];
    let state = TcpState::from_u8(msg[1]);
    let sport = u16::from_be_bytes([msg[4], msg[5]]);
    let dport = u16::from_be_bytes([msg[6], msg[7]]);
    let ip = |at: usize| -> IpAddr {
        if i32::from(family) == libc::AF_INET {
            IpAddr::V4(Ipv4Addr::new(msg[at], msg[at + 1], msg[at + 2], msg[at + 3]))
        } else {
            let mut b = [0u8; 16];
            b.copy_from_slice(&msg[at..at + 16]);
            let v6 = Ipv6Addr::from(b);
            v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
        }
    };
    let (src, dst) = (ip(8), ip(24));
    let recv_queue = u32_at(msg, 60)?;
    let send_queue = u32_at(msg, 64)?;
    let inode = u64::from(u32_at(msg, 68)?);
    let mut idle_ms = None;
    let mut attrs = &msg[DIAG_MSG..];
    while attrs.len() >= 4 {
        let (len, ty) = (usize::from(u16_at(attrs, 0)?), u16_at(attrs, 2)?);
        if len < 4 || len > attrs.len() {
            break;
        }
        if ty == INET_DIAG_INFO {
            // struct tcp_info: tcpi_last_data_sent at 44, _recv at 52.
            let info = &attrs[4..len];
            if let (Some(sent), Some(recv)) = (u32_at(info, 44), u32_at(info, 52)) {
                idle_ms = Some(sent.min(recv));
            }
        }
        attrs = attrs.get((len + 3) & !3..).unwrap_or_default();
    }
    let remote = (dport != 0 || !dst.is_unspecified()).then_some(Addr::Inet(SocketAddr::new(dst, dport)));
    let family = if i32::from(family) == libc::AF_INET { libc::AF_INET } else { libc::AF_INET6 } as u16;
    Some(SocketView {
        inode,
        spec: Some(SockSpec {
            family,
            sock_type: libc::SOCK_STREAM as u16,
            protocol: u16::from(IPPROTO_TCP),
        }),
        state,
        local: Some(Addr::Inet(SocketAddr::new(src, sport))),
        remote,
        idle_ms,
        queues: Some((recv_queue, send_queue)),
    })
}

/// Whether `pid` is in fdtrace's network namespace (sock_diag sees its
/// sockets).
pub fn same_netns(pid: u32) -> bool {
    let ns = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/net")).ok();
    matches!((ns("self"), ns(&pid.to_string())), (Some(a), Some(b)) if a == b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A SOCK_DIAG_BY_FAMILY message for 127.0.0.1:port → 127.0.0.1:9901.
    fn message(state: u8, port: u16, inode: u32, info: Option<(u32, u32)>) -> Vec<u8> {
        let mut diag = vec![0u8; DIAG_MSG];
        diag[0] = libc::AF_INET as u8;
        diag[1] = state;
        diag[4..6].copy_from_slice(&port.to_be_bytes());
        diag[6..8].copy_from_slice(&9901u16.to_be_bytes());
        diag[8..12].copy_from_slice(&[127, 0, 0, 1]);
        diag[24..28].copy_from_slice(&[127, 0, 0, 1]);
        diag[60..64].copy_from_slice(&5u32.to_ne_bytes());
        diag[68..72].copy_from_slice(&inode.to_ne_bytes());
        if let Some((sent, recv)) = info {
            let mut tcp_info = vec![0u8; 104];
            tcp_info[44..48].copy_from_slice(&sent.to_ne_bytes());
            tcp_info[52..56].copy_from_slice(&recv.to_ne_bytes());
            diag.extend(((4 + tcp_info.len()) as u16).to_ne_bytes());
            diag.extend(INET_DIAG_INFO.to_ne_bytes());
            diag.extend(tcp_info);
        }
        let mut m = vec![];
        m.extend(((NLMSG_HDR + diag.len()) as u32).to_ne_bytes());
        m.extend(SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        m.extend([0u8; 10]);
        m.extend(diag);
        m
    }

    #[test]
    fn parses_sockets_and_idle_times() {
        let mut buf = message(1, 40000, 77, Some((12_000, 3_000)));
        buf.extend(message(8, 40001, 78, None));
        let mut out = HashMap::new();
        assert_eq!(parse_messages(&buf, &mut out), Parsed::More);
        let s = &out[&77];
        assert_eq!((s.state, s.idle_ms, s.queues), (Some(TcpState::Established), Some(3_000), Some((5, 0))));
        assert_eq!(s.local, Some(Addr::Inet("127.0.0.1:40000".parse().unwrap())));
        assert_eq!(s.remote, Some(Addr::Inet("127.0.0.1:9901".parse().unwrap())));
        assert_eq!((out[&78].state, out[&78].idle_ms), (Some(TcpState::CloseWait), None));
    }

    #[test]
    fn done_error_and_garbage() {
        let mut out = HashMap::new();
        let mut done = vec![];
        done.extend(20u32.to_ne_bytes());
        done.extend(NLMSG_DONE.to_ne_bytes());
        done.extend([0u8; 14]);
        assert_eq!(parse_messages(&done, &mut out), Parsed::Done);
        let mut err = done.clone();
        err[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        err[16..20].copy_from_slice(&(-13i32).to_ne_bytes());
        assert_eq!(parse_messages(&err, &mut out), Parsed::Error(13));
        for len in 0..200 {
            let m = message(1, 1, 1, Some((1, 1)));
            let _ = parse_messages(&m[..len.min(m.len())], &mut out);
            let _ = parse_diag(&m[NLMSG_HDR.min(m.len())..len.min(m.len()).max(NLMSG_HDR)]);
        }
    }

    #[test]
    fn reads_this_machines_sockets() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let Ok(all) = tcp_sockets() else {
            eprintln!("skipped: no sock_diag here");
            return;
        };
        let port = listener.local_addr().unwrap().port();
        assert!(
            all.values().any(|s| s.state == Some(TcpState::Listen)
                && matches!(&s.local, Some(Addr::Inet(a)) if a.port() == port)),
            "our listener on {port} is missing"
        );
    }
}
