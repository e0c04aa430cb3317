//! The traced side of the integration tests: the protocol of the workload
//! programs (`tests/src/bin/*`: `ready <pid>`, a line to go, JSON lines of
//! what they did) and their helpers. The test side reads the same types
//! (`fdtrace_tests::workload` is this crate).
use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};

/// Prints `ready <pid>` and blocks until a line arrives on stdin: the test
/// attaches fdtrace in between.
pub fn ready_then_wait() {
    println!("ready {}", std::process::id());
    std::io::stdout().flush().expect("stdout");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).expect("stdin");
}

/// Exits with a message when a syscall failed.
pub fn check(ret: i32, what: &str) -> i32 {
    if ret < 0 {
        eprintln!("{what}: {}", std::io::Error::last_os_error());
        std::process::exit(2);
    }
    ret
}

/// What a workload step did: the syscall, named as in fdtrace's event
/// lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Socket,
    Bind,
    Listen,
    Connect,
    Accept4,
    Openat,
    Dup2,
    Pipe2,
    CloseRange,
    Fork,
    Close,
}

/// One operation the workload performed, and its result: one JSON line
/// each (`scripted`), read back by the tests as this type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub op: Op,
    pub fd: Option<i32>,
    pub fd2: Option<i32>,
    pub src: Option<i32>,
    pub addr: Option<String>,
    pub path: Option<String>,
    pub child: Option<i32>,
    pub range: Option<(i32, i32)>,
}

impl Step {
    fn new(op: Op) -> Step {
        Step { op, fd: None, fd2: None, src: None, addr: None, path: None, child: None, range: None }
    }
    pub fn fd(op: Op, fd: i32) -> Step {
        Step { fd: Some(fd), ..Step::new(op) }
    }
    pub fn range(op: Op, first: i32, last: i32) -> Step {
        Step { range: Some((first, last)), ..Step::new(op) }
    }
    pub fn child(op: Op, pid: i32) -> Step {
        Step { child: Some(pid), ..Step::new(op) }
    }
    pub fn fd2(mut self, fd: i32) -> Step {
        self.fd2 = Some(fd);
        self
    }
    pub fn src(mut self, fd: i32) -> Step {
        self.src = Some(fd);
        self
    }
    pub fn addr(mut self, a: String) -> Step {
        self.addr = Some(a);
        self
    }
    pub fn path(mut self, p: &str) -> Step {
        self.path = Some(p.to_string());
        self
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a Step is plain data: it serializes")
    }
}

/// `loadgen`'s result, its last line (JSON): `ops` are loop iterations,
/// `fd_events` the fd creations and closes they made (what a tracer of
/// fds sees), in `secs` (rounded to ms), `rate` ops per second (rounded).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadResult {
    pub workload: String,
    pub ops: u64,
    pub fd_events: u64,
    pub secs: f64,
    pub rate: f64,
}

impl LoadResult {
    /// The result of `ops` iterations making `fd_events` fd events in
    /// `elapsed` seconds.
    pub fn new(workload: &str, ops: u64, fd_events: u64, elapsed: f64) -> LoadResult {
        LoadResult {
            workload: workload.to_string(),
            ops,
            fd_events,
            secs: (elapsed * 1e3).round() / 1e3,
            rate: (ops as f64 / elapsed).round(),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a LoadResult is plain data: it serializes")
    }
}

/// An fd `fdpaths` holds at the end (one JSON line each): how it came
/// (`scm_rights_socket`, `recvmmsg_file`, `pidfd_getfd`, `io_uring_accept`,
/// ...), and for received fds the kind (as fdtrace names kinds) and
/// close-on-exec it must have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    pub how: String,
    pub fd: i32,
    pub kind: Option<String>,
    pub cloexec: Option<bool>,
}

impl Held {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a Held is plain data: it serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_and_results_read_back_as_written() {
        let step = Step::fd(Op::Accept4, 5).src(3).addr("127.0.0.1:4000".into());
        assert_eq!(serde_json::from_str::<Step>(&step.to_json()).unwrap(), step);
        let range = Step::range(Op::CloseRange, 7, 8);
        assert_eq!(serde_json::from_str::<Step>(&range.to_json()).unwrap(), range);
        let result = LoadResult::new("open", 1000, 2000, 0.5004);
        assert_eq!((result.secs, result.rate), (0.5, 1998.0));
        assert_eq!(serde_json::from_str::<LoadResult>(&result.to_json()).unwrap(), result);
    }
}
