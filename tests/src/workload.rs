//! Helpers for workload programs (the traced side).
use std::io::{BufRead, Write};

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

/// One operation the workload performed, and its result.
#[derive(Debug, Default, Clone)]
pub struct Step {
    pub op: &'static str,
    pub fd: Option<i32>,
    pub fd2: Option<i32>,
    pub src: Option<i32>,
    pub addr: Option<String>,
    pub path: Option<String>,
    pub child: Option<i32>,
    pub range: Option<(i32, i32)>,
}

impl Step {
    pub fn fd(op: &'static str, fd: i32) -> Step {
        Step { op, fd: Some(fd), ..Step::default() }
    }
    pub fn range(op: &'static str, first: i32, last: i32) -> Step {
        Step { op, range: Some((first, last)), ..Step::default() }
    }
    pub fn child(op: &'static str, pid: i32) -> Step {
        Step { op, child: Some(pid), ..Step::default() }
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
        serde_json::json!({
            "op": self.op, "fd": self.fd, "fd2": self.fd2, "src": self.src, "addr": self.addr,
            "path": self.path, "child": self.child, "range": self.range,
        })
        .to_string()
    }
}
