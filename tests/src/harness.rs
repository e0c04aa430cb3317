//! The test side: running fdtrace and workloads, collecting their output.
//! Children are killed on drop; failures panic with what went wrong.
use std::{
    collections::BTreeSet,
    io::{BufRead, BufReader, Write},
    path::PathBuf,
    process::{Child, ChildStdin, Command, ExitStatus, Stdio},
    sync::mpsc::{self, Receiver},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is in the workspace").to_path_buf()
}

/// The fdtrace binary under test: `$FDTRACE_BIN`, else the workspace's
/// debug build (`cargo xtask test` builds it first).
pub fn fdtrace_bin() -> PathBuf {
    let path = std::env::var_os("FDTRACE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/debug/fdtrace"));
    assert!(
        path.exists(),
        "{} does not exist: build it with `cargo build -p fdtrace` (or run the suite with `cargo xtask test`)",
        path.display()
    );
    path
}

/// The tier the tests force with `$FDTRACE_ATTACH`, if any.
pub fn attach_tier() -> Option<String> {
    std::env::var("FDTRACE_ATTACH").ok().filter(|t| !t.is_empty() && t != "auto")
}

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Whether tests that load eBPF can run here. When they cannot, says why;
/// in CI (`CI=true`) that is a failure, not a skip.
pub fn ebpf_available(test: &str) -> bool {
    // SAFETY: no preconditions.
    let euid = unsafe { libc::geteuid() };
    if euid == 0 {
        return true;
    }
    let why = format!("{test}: needs root to load eBPF programs (running as uid {euid})");
    if in_ci() {
        panic!("{why}; CI=true, so this is a failure, not a skip");
    }
    eprintln!("SKIPPED {why}");
    false
}

/// A tool a test needs beyond fdtrace (`chromium`, `groff`...): its path
/// on `PATH`. When it is missing, says so and how to get it; in CI
/// (`CI=true`) that is a failure, not a skip.
pub fn tool_available(test: &str, tool: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file());
    if found.is_none() {
        let why = format!("{test}: needs `{tool}` (install it with `cargo xtask setup`)");
        if in_ci() {
            panic!("{why}; CI=true, so this is a failure, not a skip");
        }
        eprintln!("SKIPPED {why}");
    }
    found
}

/// A fresh empty directory for a test's files, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("fdtrace-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("creating a temporary directory");
        TempDir(dir)
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Lines read from a child's pipe on a background thread.
pub struct Lines {
    rx: Receiver<String>,
    pub seen: Vec<String>,
}

impl Lines {
    fn spawn(r: impl std::io::Read + Send + 'static) -> Lines {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(r).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines { rx, seen: Vec::new() }
    }

    /// The next line, waiting up to `timeout`.
    pub fn next(&mut self, timeout: Duration) -> Option<String> {
        let line = self.rx.recv_timeout(timeout).ok()?;
        self.seen.push(line.clone());
        Some(line)
    }

    /// Waits for a line matching `pred`; panics after `timeout`.
    pub fn wait_for(&mut self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left) {
                Some(line) if pred(&line) => return line,
                Some(_) => continue,
                None => panic!("no line {what} within {timeout:?}; saw:\n{}", self.seen.join("\n")),
            }
        }
    }

    /// Everything until the pipe closes.
    pub fn rest(&mut self) -> Vec<String> {
        while let Ok(line) = self.rx.recv() {
            self.seen.push(line);
        }
        self.seen.clone()
    }
}

/// A server in its own process, so the client's report holds only the
/// client's sockets.
pub struct Server {
    child: Child,
    pub addr: String,
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Starts `bin` and reads its `listening ADDR` line.
    pub fn start(bin: &str, args: &[&str]) -> Server {
        let mut child = Command::new(bin).args(args).stdout(Stdio::piped()).spawn().expect("start server");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).expect("server output");
        let addr = line
            .trim()
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("server said {line:?}"))
            .to_string();
        Server { child, addr }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running workload program that printed `ready <pid>`.
pub struct Workload {
    child: Child,
    pub pid: u32,
    stdin: Option<ChildStdin>,
    pub stdout: Lines,
}

impl Workload {
    pub fn spawn(bin: &str, args: &[&str]) -> Workload {
        let mut child = Command::new(bin)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {bin}: {e}"));
        let stdin = child.stdin.take();
        let mut stdout = Lines::spawn(child.stdout.take().expect("piped"));
        let ready = stdout.wait_for("`ready <pid>`", Duration::from_secs(10), |l| l.starts_with("ready "));
        let pid = ready["ready ".len()..].trim().parse().expect("pid after `ready`");
        Workload { child, pid, stdin, stdout }
    }

    /// Sends a line: the go signal, or the signal to finish.
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("write to workload");
        stdin.flush().expect("flush");
    }

    /// The JSON lines the workload printed, up to `done`.
    pub fn json_until_done(&mut self, timeout: Duration) -> Vec<Value> {
        self.json_until("done", timeout)
    }

    /// The JSON lines the workload printed, up to the line `end`.
    pub fn json_until(&mut self, end: &str, timeout: Duration) -> Vec<Value> {
        let mut out = vec![];
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .stdout
                .next(left)
                .unwrap_or_else(|| panic!("workload did not finish; saw {:?}", self.stdout.seen));
            if line == end {
                return out;
            }
            if let Ok(v) = serde_json::from_str(&line) {
                out.push(v);
            }
        }
    }

    pub fn wait(&mut self) -> ExitStatus {
        drop(self.stdin.take());
        self.child.wait().expect("wait for workload")
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running fdtrace.
pub struct Trace {
    child: Child,
    pub stdout: Lines,
    pub stderr: Lines,
}

/// What a finished fdtrace left.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<String>,
    pub stderr: Vec<String>,
}

impl Finished {
    /// stdout lines that parse as JSON.
    pub fn json(&self) -> Vec<Value> {
        self.stdout.iter().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    /// The final report of a run that succeeded, checked complete: no
    /// events lost, and the ledger agreed with /proc.
    pub fn final_report(&self) -> Value {
        let report = self.final_report_unchecked();
        assert_eq!(report["lost_events"], 0, "{report:#}");
        assert_eq!(
            (report["missed_open"].as_u64(), report["missed_close"].as_u64()),
            (Some(0), Some(0)),
            "{report:#}"
        );
        assert_eq!(report["complete"], true);
        report
    }

    /// The final report of a run that succeeded, whatever it says.
    pub fn final_report_unchecked(&self) -> Value {
        assert!(self.status.success(), "fdtrace failed:\n{}", self.stderr_text());
        self.json()
            .into_iter()
            .rfind(|v| v["type"] == "report" && v["final"] == true)
            .unwrap_or_else(|| panic!("no final report in:\n{}", self.stdout.join("\n")))
    }

    /// `"type":"event"` objects of process `pid`.
    pub fn events_of(&self, pid: u32) -> Vec<Value> {
        self.json().into_iter().filter(|v| v["type"] == "event" && v["pid"] == pid).collect()
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.join("\n")
    }
}

impl Trace {
    /// Starts fdtrace and waits until it reports it is attached.
    pub fn start(args: &[&str]) -> Trace {
        let mut t = Trace::spawn(args);
        let attached = Duration::from_secs(30);
        t.stderr.wait_for("saying fdtrace attached", attached, |l| l.contains("fdtrace: tracing"));
        t
    }

    /// Starts fdtrace without waiting for anything. `$FDTRACE_ATTACH`
    /// (fentry, kprobe, tracepoint) adds `--attach`: the VM matrix runs the
    /// same tests on each tier.
    pub fn spawn(args: &[&str]) -> Trace {
        let mut cmd = Command::new(fdtrace_bin());
        cmd.args(args);
        if let Some(tier) = attach_tier() {
            cmd.args(["--attach", &tier]);
        }
        Trace::spawn_cmd(&mut cmd)
    }

    pub fn spawn_cmd(cmd: &mut Command) -> Trace {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting fdtrace");
        let stdout = Lines::spawn(child.stdout.take().expect("piped"));
        let stderr = Lines::spawn(child.stderr.take().expect("piped"));
        Trace { child, stdout, stderr }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Waits for fdtrace to exit on its own (within `timeout`).
    pub fn wait(mut self, timeout: Duration) -> Finished {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("fdtrace did not exit within {timeout:?}; stderr:\n{}", self.stderr.rest().join("\n"));
            }
            thread::sleep(Duration::from_millis(20));
        };
        Finished { status, stdout: self.stdout.rest(), stderr: self.stderr.rest() }
    }
}

impl Drop for Trace {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Traces a workload that waits for `go` and prints `done` when it has
/// done its work: starts fdtrace on it with `flags` (after `-p PID`), lets
/// it go, stops fdtrace (SIGINT) a moment after `done`, and returns what
/// fdtrace printed. It must have succeeded.
pub fn trace_until_done(w: &mut Workload, flags: &[&str], timeout: Duration) -> Finished {
    let pid = w.pid.to_string();
    let mut args = vec!["-p", pid.as_str()];
    args.extend(flags);
    let trace = Trace::start(&args);
    w.send("go");
    w.stdout.wait_for("`done`", timeout, |l| l == "done");
    thread::sleep(Duration::from_millis(800));
    trace.signal(libc::SIGINT);
    let out = trace.wait(timeout);
    assert!(out.status.success(), "{}", out.stderr_text());
    out
}

/// fdtrace on `pid` for a comparison with `/proc`: every kind and age of
/// fd, every group and every fd listed, JSON, and no report but the final
/// one (stop it with SIGINT).
pub fn trace_every_fd(pid: u32) -> Trace {
    Trace::start(&[
        "-p",
        &pid.to_string(),
        "--all-fds",
        "--min-age",
        "0",
        "-t",
        "100000",
        "--fds-per-group",
        "100000",
        "--format",
        "json",
        "-i",
        "3600",
    ])
}

/// The fd numbers `/proc/PID/fd` lists.
pub fn proc_fd_numbers(pid: u32) -> BTreeSet<i64> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/fd: {e}"))
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// The fd numbers a JSON report lists for process `pid`.
pub fn report_fd_numbers(report: &Value, pid: u32) -> BTreeSet<i64> {
    report["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["fds"].as_array().expect("fds"))
        .filter(|fd| fd["pid"] == pid)
        .map(|fd| fd["fd"].as_i64().expect("fd number"))
        .collect()
}

/// Runs fdtrace to completion with a timeout.
pub fn run_fdtrace(args: &[&str], timeout: Duration) -> Finished {
    Trace::spawn(args).wait(timeout)
}

/// The eBPF program and link ids a process holds fds to (from
/// `/proc/PID/fdinfo`): what it attached.
pub fn bpf_objects_of(pid: u32) -> (Vec<u32>, Vec<u32>) {
    let (mut progs, mut links) = (vec![], vec![]);
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else { return (progs, links) };
    for entry in dir.flatten() {
        let Ok(info) = std::fs::read_to_string(entry.path()) else { continue };
        for line in info.lines() {
            if let Some(id) = line.strip_prefix("prog_id:") {
                progs.extend(id.trim().parse::<u32>().ok());
            } else if let Some(id) = line.strip_prefix("link_id:") {
                links.extend(id.trim().parse::<u32>().ok());
            }
        }
    }
    progs.sort_unstable();
    progs.dedup();
    links.sort_unstable();
    links.dedup();
    (progs, links)
}

/// Whether a BPF program / link with this id still exists.
pub fn bpf_exists(kind: &str, id: u32) -> bool {
    Command::new("bpftool")
        .args([kind, "show", "id", &id.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("bpftool (install it: apt-get install bpftool, or run `cargo xtask setup`)")
        .success()
}
