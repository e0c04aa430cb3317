//! Which fds reports and event lines show: `--kind`/`--all-fds`, `--port`,
//! `--remote ADDR[/PREFIX]`, `--state`. Pure: matched on typed facts about
//! an fd (its kind, addresses, TCP state), before anything is rendered.
//!
//! Within one option the values are alternatives (`--port 80 --port 443`:
//! either); different options must all match. `--port`, `--remote` and
//! `--state` only match sockets.
use std::net::IpAddr;

use crate::events::{Addr, FdKind, TcpState};

/// A peer address prefix: `10.0.0.0/8`, `::1`, `127.0.0.1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (s, None),
        };
        let ip = ip.trim_start_matches('[').trim_end_matches(']');
        let addr: IpAddr = ip.parse().map_err(|_| format!("`{s}` is not an IP address or ADDR/PREFIX"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{s}`: the prefix length must be 0 to {max}"))?,
        };
        Ok(Cidr { addr: canonical(addr), prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = |ip: IpAddr| -> (u128, u8) {
            match ip {
                IpAddr::V4(v4) => (u128::from(u32::from(v4)) << 96, 32),
                IpAddr::V6(v6) => (u128::from(v6), 128),
            }
        };
        let (want, wlen) = bits(self.addr);
        let (have, hlen) = bits(canonical(ip));
        if wlen != hlen {
            return false;
        }
        let mask = if self.prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(self.prefix)) };
        want & mask == have & mask
    }
}

/// IPv4-mapped IPv6 (`::ffff:1.2.3.4`, how dual-stack sockets show IPv4
/// peers) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Parses a TCP state name as `ss` and fdtrace print them
/// (`ESTABLISHED`, `close-wait`, `CLOSE_WAIT`, `listen`).
pub fn parse_state(s: &str) -> Result<TcpState, String> {
    let want = s.trim().to_ascii_uppercase().replace('-', "_");
    TcpState::from_name(&want).ok_or_else(|| {
        format!("`{s}` is not a TCP state (ESTABLISHED, CLOSE_WAIT, LISTEN, TIME_WAIT, SYN_SENT, ...)")
    })
}

/// Parses an fd kind name (`socket`, `file`, `pipe`, `eventfd`, ...).
pub fn parse_kind(s: &str) -> Result<FdKind, String> {
    let want = s.trim().to_ascii_lowercase();
    let want = want.strip_suffix('s').filter(|w| FdKind::from_name(w).is_some()).unwrap_or(&want);
    FdKind::from_name(want).ok_or_else(|| {
        let all: Vec<&str> = FdKind::ALL.iter().map(|k| k.name()).collect();
        format!("`{s}` is not a kind of fd (one of: {})", all.join(", "))
    })
}

/// What the filter looks at: what is known of an fd.
#[derive(Clone, Copy, Debug, Default)]
pub struct Facts<'a> {
    /// `None` for lines that are not about an fd.
    pub kind: Option<FdKind>,
    pub local: Option<&'a Addr>,
    pub remote: Option<&'a Addr>,
    pub state: Option<TcpState>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filter {
    /// `None`: every kind.
    pub kinds: Option<Vec<FdKind>>,
    pub ports: Vec<u16>,
    pub remotes: Vec<Cidr>,
    pub states: Vec<TcpState>,
}

impl Filter {
    /// Whether anything beyond kinds is asked for.
    pub fn restricts_sockets(&self) -> bool {
        !(self.ports.is_empty() && self.remotes.is_empty() && self.states.is_empty())
    }

    /// The kinds shown, for the report (`["all"]` for every kind).
    pub fn kind_names(&self) -> Vec<&'static str> {
        match &self.kinds {
            None => vec!["all"],
            Some(k) => k.iter().map(|k| k.name()).collect(),
        }
    }

    pub fn matches(&self, f: &Facts) -> bool {
        let Some(kind) = f.kind else {
            return false;
        };
        if let Some(kinds) = &self.kinds {
            if !kinds.contains(&kind) {
                return false;
            }
        }
        if !self.restricts_sockets() {
            return true;
        }
        if kind != FdKind::Socket {
            return false;
        }
        let inet = |a: Option<&Addr>| match a {
            Some(Addr::Inet(a)) => Some(*a),
            _ => None,
        };
        let (local, remote) = (inet(f.local), inet(f.remote));
        if !self.ports.is_empty()
            && ![local, remote].iter().flatten().any(|a| a.port() != 0 && self.ports.contains(&a.port()))
        {
            return false;
        }
        if !self.remotes.is_empty()
            && !remote.is_some_and(|r| self.remotes.iter().any(|c| c.contains(r.ip())))
        {
            return false;
        }
        if !self.states.is_empty() && !f.state.is_some_and(|s| self.states.contains(&s)) {
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Facts about a socket (the addresses are leaked: tests only).
    fn sock(local: &str, remote: Option<&str>, state: &str) -> Facts<'static> {
        let addr = |s: &str| -> &'static Addr { Box::leak(Box::new(Addr::Inet(s.parse().unwrap()))) };
        Facts {
            kind: Some(FdKind::Socket),
            local: Some(addr(local)),
            remote: remote.map(addr),
            state: Some(parse_state(state).unwrap()),
        }
    }

    #[test]
    fn prefixes_match_ipv4_ipv6_and_mapped_addresses() {
        let net = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.0.9".parse().unwrap()), "dual-stack sockets show IPv4 mapped");
        let one = Cidr::parse("127.0.0.1").unwrap();
        assert_eq!(one.prefix, 32);
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        let v6 = Cidr::parse("[fd00::]/8").unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("example.com").is_err());
    }

    #[test]
    fn states_and_kinds_parse_loosely() {
        assert_eq!(parse_state("close-wait"), Ok(TcpState::CloseWait));
        assert_eq!(parse_state("LISTEN"), Ok(TcpState::Listen));
        assert!(parse_state("OPEN").is_err());
        assert_eq!(parse_kind("Sockets"), Ok(FdKind::Socket));
        assert_eq!(parse_kind("pipe"), Ok(FdKind::Pipe));
        assert!(parse_kind("door").unwrap_err().contains("eventfd"));
    }

    #[test]
    fn port_matches_either_end() {
        // Given a filter on port 443
        let f = Filter { ports: vec![443], ..Filter::default() };
        // then a client socket to :443 and a server's accepted socket on
        // :443 match, other ports and other kinds do not.
        assert!(f.matches(&sock("10.0.0.2:51000", Some("1.2.3.4:443"), "ESTABLISHED")));
        assert!(f.matches(&sock("0.0.0.0:443", None, "LISTEN")));
        assert!(!f.matches(&sock("10.0.0.2:51000", Some("1.2.3.4:80"), "ESTABLISHED")));
        assert!(!f.matches(&Facts { kind: Some(FdKind::File), ..Facts::default() }));
        assert!(!f.matches(&Facts { kind: Some(FdKind::Socket), ..Facts::default() }), "address unknown");
    }

    #[test]
    fn options_combine_with_and_values_with_or() {
        let f = Filter {
            kinds: Some(vec![FdKind::Socket]),
            remotes: vec![Cidr::parse("127.0.0.0/8").unwrap()],
            states: vec![TcpState::CloseWait, TcpState::Established],
            ..Filter::default()
        };
        assert!(f.matches(&sock("127.0.0.1:5", Some("127.0.0.1:80"), "CLOSE_WAIT")));
        assert!(f.matches(&sock("127.0.0.1:5", Some("127.0.0.1:80"), "ESTABLISHED")));
        assert!(!f.matches(&sock("127.0.0.1:5", Some("127.0.0.1:80"), "TIME_WAIT")));
        assert!(!f.matches(&sock("10.0.0.1:5", Some("10.0.0.9:80"), "ESTABLISHED")));
        assert!(!f.matches(&sock("127.0.0.1:80", None, "LISTEN")), "a listener has no peer");
    }

    #[test]
    fn kinds_alone_select_kinds() {
        let all = Filter::default();
        assert!(all.matches(&Facts { kind: Some(FdKind::Pipe), ..Facts::default() }));
        assert!(!all.matches(&Facts::default()), "not an fd");
        assert_eq!(all.kind_names(), ["all"]);
        let f = Filter { kinds: Some(vec![FdKind::Pipe, FdKind::File]), ..Filter::default() };
        assert!(f.matches(&Facts { kind: Some(FdKind::File), ..Facts::default() }));
        assert!(!f.matches(&sock("1.2.3.4:5", None, "LISTEN")));
        assert_eq!(f.kind_names(), ["pipe", "file"]);
    }
}
