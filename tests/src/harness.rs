//! The test side: running fdtrace and workloads, collecting their output.
//! Children are killed on drop; failures panic with what went wrong.
use std::{
    collections::BTreeSet,
    ffi::OsStr,
    fmt::Write as _,
    io::{BufRead, BufReader, Write},
    path::PathBuf,
    process::{Child, ChildStdin, Command, ExitStatus, Stdio},
    sync::mpsc::{self, Receiver},
    thread,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use fdtrace::symbolize::Frame;
pub use fdtrace::{report::Report, sinks::lines::EventLine};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::workload::Step;

pub use crate::skip::{in_ci, Ebpf};

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is in the workspace").to_path_buf()
}

/// The fdtrace binary under test: `$FDTRACE_BIN`, else the workspace's
/// debug build (`cargo xtask test` builds it first). Taking the [`Ebpf`]
/// token: a test that runs fdtrace on a target has checked it can.
pub fn fdtrace_bin(_: &Ebpf) -> PathBuf {
    binary()
}

fn binary() -> PathBuf {
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
    pub fn spawn(r: impl std::io::Read + Send + 'static) -> Lines {
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
        self.try_wait_for(what, timeout, pred).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Waits for a line matching `pred`; an error after `timeout` (or when
    /// the pipe closes first) shows every line seen.
    pub fn try_wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left) {
                Some(line) if pred(&line) => return Ok(line),
                Some(_) => continue,
                None => anyhow::bail!("no line {what} within {timeout:?}; saw:\n{}", self.seen.join("\n")),
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

    /// The lines that arrive within `timeout` (or until the pipe closes).
    pub fn rest_within(&mut self, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut out = vec![];
        while let Some(line) = self.next(deadline.saturating_duration_since(Instant::now())) {
            out.push(line);
        }
        out
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
        BufReader::new(child.stdout.as_mut().expect("piped")).read_line(&mut line).expect("server output");
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

/// A running workload program that printed `ready <pid>`: the protocol of
/// `tests/src/bin/*` (see [`crate::workload`]), shared by the tests and
/// `cargo xtask bench`.
pub struct Workload {
    child: Child,
    pub pid: u32,
    stdin: Option<ChildStdin>,
    pub stdout: Lines,
}

impl Workload {
    /// Starts `bin` and waits for its `ready <pid>` line; panics if it
    /// does not come.
    pub fn spawn(bin: impl AsRef<OsStr>, args: &[&str]) -> Workload {
        Workload::start(bin, args).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Starts `bin` and waits (10 s at most) for its `ready <pid>` line.
    pub fn start(bin: impl AsRef<OsStr>, args: &[&str]) -> anyhow::Result<Workload> {
        let bin = bin.as_ref();
        let mut child = Command::new(bin)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", bin.to_string_lossy()))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("the workload's stdout is not piped")?;
        // Built before the checks below: dropped on an error, it kills the child.
        let mut w = Workload { child, pid: 0, stdin, stdout: Lines::spawn(stdout) };
        let what = format!("`ready <pid>` from {}", bin.to_string_lossy());
        let ready = w.stdout.try_wait_for(&what, Duration::from_secs(10), |l| l.starts_with("ready "))?;
        w.pid = ready["ready ".len()..].trim().parse().with_context(|| format!("no pid in {ready:?}"))?;
        Ok(w)
    }

    /// The pid of the process started, as this namespace sees it: the
    /// wrapper (`unshare`, `sh`) when one started the program that said
    /// `ready <pid>`.
    pub fn child_pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a line: the go signal, or the signal to finish. Panics if the
    /// workload is gone.
    pub fn send(&mut self, line: &str) {
        self.try_send(line).unwrap_or_else(|e| panic!("{e:#}"));
    }

    /// Sends a line.
    pub fn try_send(&mut self, line: &str) -> anyhow::Result<()> {
        let stdin = self.stdin.as_mut().context("the workload's stdin is closed")?;
        writeln!(stdin, "{line}").and_then(|()| stdin.flush()).context("writing to the workload")
    }

    /// The steps the workload printed (`scripted`), up to `done`.
    pub fn steps_until_done(&mut self, timeout: Duration) -> Vec<Step> {
        self.read_until("done", timeout)
    }

    /// What the workload printed up to the line `end`: every line before
    /// it must be one `T` in JSON; panics, with the line and serde's
    /// message, on one that is not.
    pub fn read_until<T: DeserializeOwned>(&mut self, end: &str, timeout: Duration) -> Vec<T> {
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
            out.push(read_json(&line).unwrap_or_else(|e| panic!("the workload printed {e}")));
        }
    }

    /// The workload's result, its first JSON line (`loadgen`'s
    /// [`crate::workload::LoadResult`]), waiting up to `timeout`; panics
    /// if it does not come or is not a `T`.
    pub fn result<T: DeserializeOwned>(&mut self, timeout: Duration) -> T {
        self.try_result(timeout).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// The workload's result, its first JSON line, waiting up to `timeout`.
    pub fn try_result<T: DeserializeOwned>(&mut self, timeout: Duration) -> anyhow::Result<T> {
        let line = self.stdout.try_wait_for("the workload's result", timeout, |l| l.starts_with('{'))?;
        read_json(&line).map_err(|e| anyhow::anyhow!("the workload printed {e}"))
    }

    /// Closes its stdin and waits for it to exit.
    pub fn wait(&mut self) -> ExitStatus {
        self.try_wait().unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Closes its stdin and waits for it to exit.
    pub fn try_wait(&mut self) -> anyhow::Result<ExitStatus> {
        drop(self.stdin.take());
        self.child.wait().context("waiting for the workload")
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

/// Reads `line` as one `T` in JSON; the error names the type and shows
/// the line and serde's message.
fn read_json<T: DeserializeOwned>(line: &str) -> Result<T, String> {
    serde_json::from_str(line).map_err(|e| {
        let ty = std::any::type_name::<T>().rsplit("::").next().unwrap_or("value");
        format!("a line that is not a {ty} ({e}):\n  {line}")
    })
}

/// A value as pretty JSON, for messages (a report reads better so than
/// as `{:#?}`).
pub fn pretty(value: &impl Serialize) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("(not serializable: {e})"))
}

/// A value as one line of JSON, for messages.
pub fn compact(value: &impl Serialize) -> String {
    serde_json::to_string(value).unwrap_or_else(|e| format!("(not serializable: {e})"))
}

/// The named functions of `frames`, innermost first.
pub fn functions(frames: &[Frame]) -> Vec<&str> {
    frames.iter().filter_map(|f| f.function.as_deref()).collect()
}

/// One line per group of `report`: where it came from, how many are open,
/// and the functions of its stack (and of who asked for it). A failed
/// test prints this before the whole report, which a log may cut.
pub fn outline(report: &Report) -> String {
    let mut out = String::new();
    for (i, g) in report.groups.iter().enumerate() {
        let _ = write!(
            out,
            "group {}: {} open, origin {}: {}",
            i + 1,
            g.open,
            g.origin,
            functions(&g.stack).join(" <- ")
        );
        if !g.spawned_by.is_empty() {
            let _ = write!(out, "; asked for by: {}", functions(&g.spawned_by).join(" <- "));
        }
        out.push('\n');
    }
    out
}

/// One line fdtrace printed, read as what it is.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// A `--format json` report.
    Report(Box<Report>),
    /// An `--events --format json` line.
    Event(Box<EventLine>),
    /// Not JSON: text mode, fdtrace's messages, a launched command's own
    /// output.
    Text(String),
}

impl Output {
    /// Reads a line. One that looks like JSON (starts with `{`) must be a
    /// report or an event line (by its `"type"`): anything else is an
    /// error with the line and serde's message.
    pub fn read(line: &str) -> Result<Output, String> {
        #[derive(Deserialize)]
        struct Tagged {
            #[serde(rename = "type")]
            ty: String,
        }
        if !line.starts_with('{') {
            return Ok(Output::Text(line.to_string()));
        }
        let tagged: Tagged = serde_json::from_str(line).map_err(|e| {
            format!("fdtrace printed a line that looks like JSON but is not an object with a \"type\" ({e}):\n  {line}")
        })?;
        match tagged.ty.as_str() {
            "report" => read_json(line).map(|r| Output::Report(Box::new(r))),
            "event" => read_json(line).map(|e| Output::Event(Box::new(e))),
            other => Err(format!("a line of an unknown \"type\" {other:?}:\n  {line}")),
        }
        .map_err(|e| format!("fdtrace printed {e}"))
    }

    /// Reads every line; panics, failing the test, on one that looks like
    /// JSON and is not a report or an event line: never skipped.
    pub fn read_all(lines: &[String], stream: &str) -> Vec<Output> {
        lines.iter().map(|l| Output::read(l).unwrap_or_else(|e| panic!("on {stream}, {e}"))).collect()
    }

    pub fn report(&self) -> Option<&Report> {
        match self {
            Output::Report(r) => Some(r),
            _ => None,
        }
    }

    pub fn event(&self) -> Option<&EventLine> {
        match self {
            Output::Event(e) => Some(e),
            _ => None,
        }
    }
}

/// What a finished fdtrace left.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<String>,
    pub stderr: Vec<String>,
    /// stdout read line by line ([`Output::read_all`]: a line that looks
    /// like JSON and does not read fails the test).
    pub output: Vec<Output>,
}

impl Finished {
    fn new(status: ExitStatus, stdout: Vec<String>, stderr: Vec<String>) -> Finished {
        let output = Output::read_all(&stdout, "stdout");
        Finished { status, stdout, stderr, output }
    }

    /// The reports on stdout, in order.
    pub fn reports(&self) -> Vec<Report> {
        self.output.iter().filter_map(Output::report).cloned().collect()
    }

    /// The final report of a run that succeeded, checked complete: no
    /// events lost, and the ledger agreed with /proc.
    pub fn final_report(&self) -> Report {
        let report = self.final_report_unchecked();
        assert_eq!(report.stats.lost_events, 0, "{}", pretty(&report));
        assert_eq!((report.stats.missed_open, report.stats.missed_close), (0, 0), "{}", pretty(&report));
        assert!(report.complete, "{}", pretty(&report));
        report
    }

    /// The final report of a run that succeeded, whatever it says.
    pub fn final_report_unchecked(&self) -> Report {
        assert!(self.status.success(), "fdtrace failed:\n{}", self.stderr_text());
        self.reports()
            .into_iter()
            .rfind(|r| r.is_final)
            .unwrap_or_else(|| panic!("no final report in:\n{}", self.stdout.join("\n")))
    }

    /// The event lines of process `pid` on stdout.
    pub fn events_of(&self, pid: u32) -> Vec<EventLine> {
        self.output.iter().filter_map(Output::event).filter(|e| e.pid == pid).cloned().collect()
    }

    /// stderr read line by line, as [`Finished::output`] reads stdout:
    /// where launch mode writes reports and event lines (the command keeps
    /// stdout).
    pub fn stderr_output(&self) -> Vec<Output> {
        Output::read_all(&self.stderr, "stderr")
    }

    /// The final report written to stderr (launch mode's default); panics
    /// if there is none.
    pub fn stderr_final_report(&self) -> Report {
        self.stderr_output()
            .into_iter()
            .filter_map(|o| match o {
                Output::Report(r) => Some(*r),
                _ => None,
            })
            .rfind(|r| r.is_final)
            .unwrap_or_else(|| panic!("no final report on stderr:\n{}", self.stderr_text()))
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.join("\n")
    }
}

impl Trace {
    /// Starts fdtrace and waits until it reports it is attached.
    pub fn start(ebpf: &Ebpf, args: &[&str]) -> Trace {
        let mut t = Trace::spawn(ebpf, args);
        let attached = Duration::from_secs(30);
        t.stderr.wait_for("saying fdtrace attached", attached, |l| l.contains("fdtrace: tracing"));
        t
    }

    /// Starts fdtrace without waiting for anything. `$FDTRACE_ATTACH`
    /// (fentry, kprobe, tracepoint) adds `--attach`: the VM matrix runs the
    /// same tests on each tier. It goes before a launched command's `--`
    /// (after it, the command would get it).
    pub fn spawn(ebpf: &Ebpf, args: &[&str]) -> Trace {
        let mut cmd = Command::new(fdtrace_bin(ebpf));
        let split = args.iter().position(|a| *a == "--").unwrap_or(args.len());
        cmd.args(&args[..split]);
        if let Some(tier) = attach_tier() {
            cmd.args(["--attach", &tier]);
        }
        cmd.args(&args[split..]);
        Trace::spawn_cmd(ebpf, &mut cmd)
    }

    /// Starts a command that runs fdtrace (through `setpriv`, `unshare`,
    /// `script`...), its output piped.
    pub fn spawn_cmd(_: &Ebpf, cmd: &mut Command) -> Trace {
        Trace::spawn_piped(cmd)
    }

    fn spawn_piped(cmd: &mut Command) -> Trace {
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
        Finished::new(status, self.stdout.rest(), self.stderr.rest())
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
/// it go, stops fdtrace (SIGINT) `linger` after `done` (for the last fds
/// to pass `--min-age`), and returns what fdtrace printed. It must have
/// succeeded.
pub fn trace_until_done(
    ebpf: &Ebpf,
    w: &mut Workload,
    flags: &[&str],
    linger: Duration,
    timeout: Duration,
) -> Finished {
    let pid = w.pid.to_string();
    let mut args = vec!["-p", pid.as_str()];
    args.extend(flags);
    let trace = Trace::start(ebpf, &args);
    w.send("go");
    // Java's workload says how many it kept: `done 10`.
    w.stdout.wait_for("`done`", timeout, |l| l == "done" || l.starts_with("done "));
    thread::sleep(linger);
    trace.signal(libc::SIGINT);
    let out = trace.wait(timeout);
    assert!(out.status.success(), "{}", out.stderr_text());
    out
}

/// fdtrace on `pid` for a comparison with `/proc`: every kind and age of
/// fd, every group and every fd listed, JSON, and no report but the final
/// one (stop it with SIGINT).
pub fn trace_every_fd(ebpf: &Ebpf, pid: u32) -> Trace {
    trace_every_fd_with(ebpf, pid, &[])
}

/// [`trace_every_fd`] with more flags (`-v`...).
pub fn trace_every_fd_with(ebpf: &Ebpf, pid: u32, flags: &[&str]) -> Trace {
    let pid = pid.to_string();
    let mut args = vec![
        "-p",
        &pid,
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
    ];
    args.extend(flags);
    Trace::start(ebpf, &args)
}

/// The fd numbers `/proc/PID/fd` lists.
pub fn proc_fd_numbers(pid: u32) -> BTreeSet<i64> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/fd: {e}"))
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// The fd numbers a report lists for process `pid`.
pub fn report_fd_numbers(report: &Report, pid: u32) -> BTreeSet<i64> {
    report.groups.iter().flat_map(|g| &g.fds).filter(|fd| fd.pid == pid).map(|fd| i64::from(fd.fd)).collect()
}

/// Runs fdtrace to completion with a timeout.
pub fn run_fdtrace(ebpf: &Ebpf, args: &[&str], timeout: Duration) -> Finished {
    Trace::spawn(ebpf, args).wait(timeout)
}

/// Runs fdtrace on arguments it must refuse before loading anything (no
/// root needed, so no [`Ebpf`] token); panics if it started tracing all
/// the same.
pub fn run_fdtrace_refused(args: &[&str], timeout: Duration) -> Finished {
    let out = Trace::spawn_piped(Command::new(binary()).args(args)).wait(timeout);
    assert!(
        !out.stderr.iter().any(|l| l.contains("fdtrace: tracing")),
        "fdtrace {args:?} was to be refused before loading eBPF, and it started tracing:\n{}",
        out.stderr_text()
    );
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    fn golden(name: &str) -> Vec<String> {
        let path = workspace_root().join("fdtrace/src/golden").join(name);
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .lines()
            .map(String::from)
            .collect()
    }

    #[test]
    fn fdtraces_json_lines_read_as_reports_and_events_and_its_text_as_text() {
        let reports = Output::read_all(&golden("reports.jsonl"), "reports.jsonl");
        assert!(!reports.is_empty() && reports.iter().all(|o| o.report().is_some()), "{reports:#?}");
        for name in ["events.jsonl", "events-by-state.jsonl", "events-filtered.jsonl"] {
            let events = Output::read_all(&golden(name), name);
            assert!(!events.is_empty() && events.iter().all(|o| o.event().is_some()), "{name}: {events:#?}");
        }
        for name in ["reports.txt", "events.txt"] {
            let text = Output::read_all(&golden(name), name);
            assert!(text.iter().all(|o| matches!(o, Output::Text(_))), "{name}: {text:#?}");
        }
    }

    #[test]
    fn a_json_line_that_does_not_read_is_an_error_with_the_line_and_why() {
        let report = golden("reports.jsonl").remove(0);
        let without_groups = report.replacen(r#""groups":"#, r#""grupos":"#, 1);
        let err = Output::read(&without_groups).unwrap_err();
        assert!(err.contains("not a Report") && err.contains("missing field `groups`"), "{err}");
        assert!(err.contains(&without_groups), "{err}");

        let err = Output::read(r#"{"type":"summary","events":3}"#).unwrap_err();
        assert!(err.contains(r#"unknown "type" "summary""#), "{err}");
        let err = Output::read(r#"{"skipped":"io_uring"}"#).unwrap_err();
        assert!(err.contains(r#"not an object with a "type""#) && err.contains("io_uring"), "{err}");
        let err = Output::read(r#"{"type":"event","#).unwrap_err();
        assert!(err.contains("EOF"), "{err}");
    }
}
