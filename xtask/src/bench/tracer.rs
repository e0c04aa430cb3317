//! Who watches a workload, and one run of a workload under one of them:
//! start the tracer, wait for it to say it is attached, run, stop it with
//! SIGINT (timing the stop), read what it counted.
use std::{
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context as _, Result};
use fdtrace_tests::{
    harness::{Lines, Output, Report, Workload},
    workload::LoadResult,
};
use serde::Serialize;

use super::floor;

pub struct Bins {
    pub fdtrace: PathBuf,
    pub loadgen: PathBuf,
    pub fdstress: PathBuf,
}

/// Who watches the workload.
#[derive(Clone, Debug, PartialEq)]
pub enum Tracer {
    None,
    /// fdtrace on one tier, with more arguments (`--no-stacks`, a ring
    /// size, `--events`...).
    Fdtrace {
        tier: String,
        extra: Vec<String>,
    },
    /// Empty bpftrace programs, filtered by pid, on the hooks fdtrace
    /// attaches on `tier` ([`floor`]).
    Floor {
        tier: String,
        probes: Vec<String>,
    },
    Strace,
    /// bpftrace doing fdtrace's work: a user stack on every fd-creating
    /// syscall, closes counted.
    Bpftrace,
    /// fdtrace on `tier` tracing some other, idle process: the cost to
    /// processes it does not trace.
    FdtraceElsewhere {
        tier: String,
    },
}

impl Tracer {
    pub fn fdtrace(tier: &str, extra: &[&str]) -> Tracer {
        Tracer::Fdtrace { tier: tier.into(), extra: extra.iter().map(|s| s.to_string()).collect() }
    }

    pub fn label(&self) -> String {
        match self {
            Tracer::None => "untraced".into(),
            Tracer::Fdtrace { tier, extra } => {
                format!("fdtrace {tier}{}", extra.iter().map(|a| format!(" {a}")).collect::<String>())
            }
            Tracer::Floor { tier, .. } => format!("floor {tier}"),
            Tracer::Strace => "strace".into(),
            Tracer::Bpftrace => "bpftrace".into(),
            Tracer::FdtraceElsewhere { tier } => format!("fdtrace {tier} elsewhere"),
        }
    }

    /// fdtrace printing every event (`--events`): no reports, so its
    /// counts come from its last stderr line.
    fn streams_events(&self) -> bool {
        matches!(self, Tracer::Fdtrace { extra, .. } if extra.iter().any(|a| a == "--events" || a == "-e"))
    }
}

/// One run of one workload under one tracer.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Sample {
    pub rate: f64,
    pub secs: f64,
    pub fd_events: u64,
    /// From spawning the tracer to its "attached" signal (wall clock).
    pub attach_ms: Option<f64>,
    /// fdtrace's own figure for attaching ("in N ms").
    pub attach_self_ms: Option<f64>,
    /// fdtrace: the tracepoints it says it attached ("via N hooks").
    pub hooks: Option<usize>,
    /// fdtrace: the events it counted and those the kernel side lost, as
    /// its final report says (`stats.events`, kernel-paired events
    /// included), or its last line with `--events`.
    pub events: Option<u64>,
    pub lost: Option<u64>,
    /// Tracer CPU (user+system) while the workload ran, seconds.
    pub cpu_s: Option<f64>,
    /// Tracer resident and peak resident memory just before the stop, KiB.
    pub rss_kb: Option<u64>,
    pub hwm_kb: Option<u64>,
    /// SIGINT to the tracer's exit, and SIGINT to its final report (fdtrace
    /// with `--format json`), ms.
    pub stop_ms: Option<f64>,
    pub final_report_ms: Option<f64>,
}

impl Sample {
    /// fdtrace's CPU per event, µs.
    pub fn cpu_us_per_event(&self) -> Option<f64> {
        Some(self.cpu_s? * 1e6 / self.events.filter(|&e| e > 0)? as f64)
    }
}

/// A running tracer and what it printed so far.
pub struct Attached {
    label: String,
    child: Child,
    pub stderr: Lines,
    stdout: Option<Lines>,
    /// fdtrace with `--format json`: its reports are on stdout.
    json_reports: bool,
    /// fdtrace with `--events`: its counts are on its last stderr line.
    streams_events: bool,
    pub attach_ms: f64,
    pub attach_self_ms: Option<f64>,
    pub hooks: Option<usize>,
}

impl Attached {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

const ATTACH_TIMEOUT: Duration = Duration::from_secs(60);

fn bpftrace_script(pid: u32) -> String {
    let opens = [
        "socket",
        "socketpair",
        "accept",
        "accept4",
        "open",
        "openat",
        "pipe2",
        "dup",
        "dup2",
        "dup3",
        "eventfd2",
    ]
    .map(|s| format!("tracepoint:syscalls:sys_exit_{s}"))
    .join(",\n");
    format!(
        "BEGIN {{ printf(\"attached\\n\"); }}\n\
         {opens}\n/pid == {pid} && args->ret >= 0/ {{ @opens[ustack] = count(); }}\n\
         tracepoint:syscalls:sys_enter_close /pid == {pid}/ {{ @closes = count(); }}\n"
    )
}

/// fdtrace's start-up line: "fdtrace: tracing 42 (loadgen) via 43 hooks
/// (tracepoint tier) in 221 ms; Ctrl-C to stop" → (43, 221).
pub fn parse_tracing_line(line: &str) -> (Option<usize>, Option<f64>) {
    let hooks = line.split(" via ").nth(1).and_then(|r| r.split(' ').next()?.parse().ok());
    let ms = line.rsplit(" in ").next().and_then(|r| r.split(' ').next()?.parse().ok());
    (hooks, ms)
}

/// fdtrace's last stderr line: "fdtrace: 842212 events, 23709 lost (ring
/// buffer full: raise --ringbuf-size)" → (842212, 23709).
pub fn parse_summary_line(line: &str) -> Option<(u64, u64)> {
    let rest = line.strip_prefix("fdtrace: ")?;
    let (events, rest) = rest.split_once(" events, ")?;
    let lost = rest.split(' ').next()?;
    Some((events.parse().ok()?, lost.parse().ok()?))
}

/// Starts `tracer` on `pid` and waits until it says it is attached.
/// `elsewhere`: the process [`Tracer::FdtraceElsewhere`] traces.
pub fn attach(bins: &Bins, tracer: &Tracer, pid: u32, elsewhere: Option<u32>) -> Result<Option<Attached>> {
    let started = Instant::now();
    let mut cmd = match tracer {
        Tracer::None => return Ok(None),
        Tracer::Fdtrace { tier, extra } => {
            let mut c = Command::new(&bins.fdtrace);
            c.args(["-p", &pid.to_string(), "--attach", tier, "--format", "json"]).args(extra);
            if !extra.iter().any(|a| a == "-i") {
                c.args(["-i", "3600"]);
            }
            c
        }
        Tracer::FdtraceElsewhere { tier } => {
            let mut c = Command::new(&bins.fdtrace);
            let target = elsewhere.context("fdtrace elsewhere needs a process to trace")?;
            c.args(["-p", &target.to_string(), "--attach", tier, "-i", "3600"]);
            c
        }
        Tracer::Strace => {
            let mut c = Command::new("strace");
            c.args(["-f", "-e", "trace=network,close", "-o", "/dev/null", "-p", &pid.to_string()]);
            c
        }
        Tracer::Bpftrace => {
            let mut c = Command::new("bpftrace");
            c.args(["-e", &bpftrace_script(pid)]);
            c
        }
        Tracer::Floor { probes, .. } => {
            let mut c = Command::new("bpftrace");
            c.args(["-e", &floor::script(probes, pid)]);
            c
        }
    };
    let stdout_piped = matches!(tracer, Tracer::Fdtrace { .. } | Tracer::Bpftrace | Tracer::Floor { .. });
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(if stdout_piped { Stdio::piped() } else { Stdio::null() })
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", tracer.label()))?;
    let mut stderr = Lines::spawn(child.stderr.take().context("the tracer's stderr is not piped")?);
    let mut stdout = child.stdout.take().map(Lines::spawn);
    let (mut hooks, mut attach_self_ms) = (None, None);
    match tracer {
        Tracer::Fdtrace { .. } | Tracer::FdtraceElsewhere { .. } => {
            let line = stderr
                .try_wait_for("fdtrace's tracing line", ATTACH_TIMEOUT, |l| l.contains(" ms; Ctrl-C"))?;
            (hooks, attach_self_ms) = parse_tracing_line(&line);
        }
        Tracer::Strace => {
            stderr.try_wait_for("strace's attached line", ATTACH_TIMEOUT, |l| l.contains("attached"))?;
        }
        Tracer::Bpftrace | Tracer::Floor { .. } => {
            let out = stdout.as_mut().context("bpftrace's stdout is not piped")?;
            out.try_wait_for("bpftrace's BEGIN", ATTACH_TIMEOUT, |l| l == "attached").map_err(|e| {
                anyhow!(
                    "{e:#}\nbpftrace's stderr:\n{}",
                    stderr.rest_within(Duration::from_millis(500)).join("\n")
                )
            })?;
        }
        Tracer::None => unreachable!("returned above"),
    }
    Ok(Some(Attached {
        label: tracer.label(),
        child,
        stderr,
        stdout,
        json_reports: matches!(tracer, Tracer::Fdtrace { .. }) && !tracer.streams_events(),
        streams_events: tracer.streams_events(),
        attach_ms: started.elapsed().as_secs_f64() * 1e3,
        attach_self_ms,
        hooks,
    }))
}

/// utime + stime of a process, seconds.
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks / hz)
}

/// A `/proc/PID/status` figure in kB (`VmRSS`, `VmHWM`).
pub fn status_kb(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        l.strip_prefix(key)?.strip_prefix(':')?.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill has no memory preconditions; the pid is our own child,
    // not yet reaped (the caller checks).
    unsafe { libc::kill(pid as i32, sig) };
}

/// Stops a tracer with SIGINT and fills in `sample`: its CPU since
/// `cpu_before`, memory, how long it took to stop (and to print its final
/// report), and for fdtrace the events it counted and lost. Returns its
/// stderr lines.
pub fn stop(a: Attached, sample: &mut Sample, cpu_before: Option<f64>) -> Result<Vec<String>> {
    let Attached { label, mut child, mut stderr, mut stdout, json_reports, streams_events, .. } = a;
    let pid = child.id();
    sample.cpu_s = cpu_secs(pid).zip(cpu_before).map(|(after, before)| after - before);
    sample.rss_kb = status_kb(pid, "VmRSS");
    sample.hwm_kb = status_kb(pid, "VmHWM");
    // The exit is timed by a thread waiting for it; the final report by
    // when its line arrives here.
    signal(pid, libc::SIGINT);
    let sent = Instant::now();
    let waiter = thread::spawn(move || -> (Instant, std::io::Result<ExitStatus>) {
        let status = child.wait();
        (Instant::now(), status)
    });
    let mut stamped: Vec<(Instant, String)> = vec![];
    let mut resent = sent;
    while !waiter.is_finished() {
        match stdout.as_mut() {
            Some(out) => {
                if let Some(line) = out.next(Duration::from_millis(2)) {
                    stamped.push((Instant::now(), line));
                }
            }
            None => thread::sleep(Duration::from_millis(2)),
        }
        if sent.elapsed() > Duration::from_secs(60) && !waiter.is_finished() {
            signal(pid, libc::SIGKILL);
            let _ = waiter.join();
            bail!("{label} (pid {pid}) did not stop within 60 s of SIGINT");
        }
        // bpftrace 0.17 sometimes loses a SIGINT that arrives soon after
        // its BEGIN probe ran (it then waits in epoll_wait for good); a
        // second one stops it.
        if resent.elapsed() > Duration::from_secs(5) && !waiter.is_finished() {
            signal(pid, libc::SIGINT);
            resent = Instant::now();
        }
    }
    let (exited, status) = waiter.join().map_err(|_| anyhow!("the thread waiting for {label} panicked"))?;
    status.with_context(|| format!("waiting for {label}"))?;
    sample.stop_ms = Some(exited.duration_since(sent).as_secs_f64() * 1e3);
    // It has exited: the pipes end with what it printed.
    if let Some(out) = stdout.as_mut() {
        let now = Instant::now();
        stamped.extend(out.rest_within(Duration::from_secs(10)).into_iter().map(|l| (now, l)));
    }
    let lines = stderr.rest_within(Duration::from_millis(500));
    if json_reports {
        let (at, report) = final_report(&stamped)
            .with_context(|| format!("{label} (pid {pid}); its stderr:\n{}", lines.join("\n")))?;
        sample.final_report_ms = Some(at.saturating_duration_since(sent).as_secs_f64() * 1e3);
        sample.events = Some(report.stats.events);
        sample.lost = Some(report.stats.lost_events);
    }
    if streams_events {
        let (events, lost) = lines.iter().rev().find_map(|l| parse_summary_line(l)).with_context(|| {
            format!("{label} (pid {pid}) printed no `fdtrace: N events, M lost` line:\n{}", lines.join("\n"))
        })?;
        sample.events = Some(events);
        sample.lost = Some(lost);
    }
    Ok(lines)
}

/// fdtrace's final report among the lines it printed (`--format json`),
/// with when its line arrived.
fn final_report(stdout: &[(Instant, String)]) -> Result<(Instant, Report)> {
    let mut last = None;
    for (at, line) in stdout {
        if let Output::Report(r) = Output::read(line).map_err(|e| anyhow!(e))? {
            if r.is_final {
                last = Some((*at, *r));
            }
        }
    }
    last.context("fdtrace printed no final report")
}

/// One run of `workload` (loadgen) for `secs` under `tracer`.
pub fn run_once(bins: &Bins, workload: &str, secs: f64, tracer: &Tracer) -> Result<Sample> {
    let secs_arg = secs.to_string();
    let mut w = Workload::start(&bins.loadgen, &[workload, "--secs", &secs_arg])?;
    // For the cost to untraced processes: fdtrace watches an idle process.
    let mut idle = None;
    if let Tracer::FdtraceElsewhere { .. } = tracer {
        idle = Some(Command::new("sleep").arg("3600").spawn().context("starting sleep")?);
    }
    let attached = attach(bins, tracer, w.pid, idle.as_ref().map(Child::id))?;
    let cpu_before = attached.as_ref().and_then(|a| cpu_secs(a.pid()));
    w.try_send("go")?;
    let result: LoadResult = w.try_result(Duration::from_secs_f64(secs + 60.0))?;
    // It exits after its result line.
    let _ = w.try_wait();
    let mut sample =
        Sample { rate: result.rate, secs: result.secs, fd_events: result.fd_events, ..Sample::default() };
    if let Some(a) = attached {
        sample.attach_ms = Some(a.attach_ms);
        sample.attach_self_ms = a.attach_self_ms;
        sample.hooks = a.hooks;
        // Let the tracer drain what the workload's last moments produced.
        thread::sleep(Duration::from_millis(300));
        stop(a, &mut sample, cpu_before)?;
    }
    if let Some(mut c) = idle {
        let _ = c.kill();
        let _ = c.wait();
    }
    Ok(sample)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bpftrace_script_filters_by_pid_and_takes_stacks() {
        let s = bpftrace_script(42);
        assert!(s.contains("/pid == 42 && args->ret >= 0/ { @opens[ustack] = count(); }"));
        assert!(s.contains("tracepoint:syscalls:sys_exit_accept4"));
        assert!(s.contains("sys_enter_close /pid == 42/"));
    }

    #[test]
    fn fdtraces_lines_are_read() {
        let l = "fdtrace: tracing 42 (loadgen) via 43 hooks (tracepoint tier) in 221 ms; Ctrl-C to stop";
        assert_eq!(parse_tracing_line(l), (Some(43), Some(221.0)));
        let l = "fdtrace: tracing 1 (a b), 2 (c) via 7 hooks (kprobe (fd install) + tracepoint tier) in 9 ms; Ctrl-C to stop";
        assert_eq!(parse_tracing_line(l), (Some(7), Some(9.0)));
        let s = "fdtrace: 842212 events, 23709 lost (ring buffer full: raise --ringbuf-size)";
        assert_eq!(parse_summary_line(s), Some((842212, 23709)));
        assert_eq!(parse_summary_line("fdtrace: 10 events, 0 lost"), Some((10, 0)));
        assert_eq!(parse_summary_line("fdtrace: tracing 42"), None);
    }

    #[test]
    fn labels() {
        assert_eq!(Tracer::fdtrace("tracepoint", &["--no-stacks"]).label(), "fdtrace tracepoint --no-stacks");
        assert_eq!(Tracer::Floor { tier: "kprobe".into(), probes: vec![] }.label(), "floor kprobe");
    }
}
