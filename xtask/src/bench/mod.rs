//! `cargo xtask bench`: what tracing costs, side by side in one run.
//!
//! Each workload (`tests/src/bin/loadgen.rs`) runs untraced, under fdtrace
//! (every tier this kernel supports), under `strace -f -e
//! trace=network,close`, and under a bpftrace script that does what fdtrace
//! does (a user stack on every fd-creating syscall, closes counted). Rounds
//! alternate the order; the table shows medians as ratios to the untraced
//! median of the same run. Then: events/s without loss, loss accounting
//! with a tiny ring, fdtrace's CPU per event, attach times, peak RSS at
//! 100,000 tracked fds, report time with 1,000 stack groups, and the cost
//! to a process that is not traced.
//!
//! Results: a table on stdout and `target/bench/results.json`.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context as _, Result};
// The workloads' protocol (`ready PID`, `go`, result lines) and the reading
// of fdtrace's output are the tests'.
use fdtrace_tests::{
    harness::{Lines, Output, Report, Workload},
    workload::LoadResult,
};
use serde_json::{json, Value};

use crate::setup;

pub const WORKLOADS: [&str; 4] = ["connect", "accept", "open", "mix"];

pub struct Opts {
    pub rounds: usize,
    pub secs: f64,
    pub workloads: Vec<String>,
}

/// Who watches the workload.
#[derive(Clone, Debug, PartialEq)]
enum Tracer {
    None,
    Fdtrace {
        tier: String,
        extra: Vec<String>,
    },
    Strace,
    Bpftrace,
    /// fdtrace tracing some other process: the cost to untraced ones.
    FdtraceElsewhere,
}

impl Tracer {
    fn label(&self) -> String {
        match self {
            Tracer::None => "untraced".into(),
            Tracer::Fdtrace { tier, .. } => format!("fdtrace {tier}"),
            Tracer::Strace => "strace".into(),
            Tracer::Bpftrace => "bpftrace".into(),
            Tracer::FdtraceElsewhere => "fdtrace elsewhere".into(),
        }
    }
}

/// One run of one workload under one tracer.
#[derive(Clone, Debug, Default)]
struct Sample {
    rate: f64,
    secs: f64,
    fd_events: u64,
    /// From spawning the tracer to its "attached" signal (wall clock).
    attach_ms: Option<f64>,
    /// fdtrace's own figure for attaching ("in N ms").
    attach_self_ms: Option<f64>,
    /// fdtrace: ring records received, and lost (the kernel's count), as
    /// its final report says.
    events: Option<u64>,
    lost: Option<u64>,
    /// Tracer CPU (user+system) while the workload ran, seconds.
    cpu_s: Option<f64>,
    /// Tracer peak RSS, KiB.
    hwm_kb: Option<u64>,
}

struct Bins {
    fdtrace: PathBuf,
    loadgen: PathBuf,
    fdstress: PathBuf,
}

pub fn run(ws: &Path, opts: &Opts) -> Result<()> {
    let start = Instant::now();
    setup::ebpf_toolchain()?;
    setup::packages(&[("strace", "strace"), ("bpftrace", "bpftrace")])?;
    crate::build_release(ws, &["loadgen", "fdstress"])?;
    let bins = Bins {
        fdtrace: ws.join("target/release/fdtrace"),
        loadgen: ws.join("target/release/loadgen"),
        fdstress: ws.join("target/release/fdstress"),
    };
    let tiers = supported_tiers(&bins.fdtrace)?;
    println!("bench: fdtrace tiers on this kernel: {}", tiers.join(", "));
    let mut tracers = vec![Tracer::None];
    tracers.extend(tiers.iter().map(|t| Tracer::Fdtrace { tier: t.clone(), extra: vec![] }));
    tracers.extend([Tracer::Strace, Tracer::Bpftrace]);

    let mut results: BTreeMap<String, BTreeMap<String, Vec<Sample>>> = BTreeMap::new();
    for workload in &opts.workloads {
        for round in 0..opts.rounds {
            // Rotate the order each round: no tracer always runs first.
            let n = tracers.len();
            for i in 0..n {
                let tracer = &tracers[(i + round) % n];
                let s = run_once(&bins, workload, opts.secs, tracer)
                    .with_context(|| format!("{workload} under {}", tracer.label()))?;
                eprintln!(
                    "bench: {workload:8} round {} {:18} {:>10.0}/s{}",
                    round + 1,
                    tracer.label(),
                    s.rate,
                    s.lost
                        .map(|l| format!(" ({} events, {l} lost)", s.events.unwrap_or(0)))
                        .unwrap_or_default()
                );
                results.entry(workload.clone()).or_default().entry(tracer.label()).or_default().push(s);
            }
        }
    }

    let tier = tiers[0].clone();
    let extras = extras(&bins, opts, &tier)?;
    let table = render(&results, &tracers, &extras);
    println!("{table}");
    let out_dir = ws.join("target/bench");
    std::fs::create_dir_all(&out_dir)?;
    let json = json!({
        "kernel": kernel_release(),
        "cpus": thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "rounds": opts.rounds,
        "secs": opts.secs,
        "workloads": results.iter().map(|(w, by)| (w.clone(), by.iter().map(|(t, ss)| (t.clone(), json!({
            "median_rate": median(ss.iter().map(|s| s.rate)),
            "samples": ss.iter().map(sample_json).collect::<Vec<_>>(),
        }))).collect::<BTreeMap<_, _>>())).collect::<BTreeMap<_, _>>(),
        "extras": extras,
    });
    let path = out_dir.join("results.json");
    std::fs::write(&path, serde_json::to_string_pretty(&json)?)?;
    println!("bench: {:.0} s in all; results in {}", start.elapsed().as_secs_f64(), path.display());
    Ok(())
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string()
}

fn sample_json(s: &Sample) -> Value {
    json!({
        "rate": s.rate, "secs": s.secs, "fd_events": s.fd_events, "attach_ms": s.attach_ms,
        "attach_self_ms": s.attach_self_ms, "events": s.events, "lost": s.lost, "cpu_s": s.cpu_s,
        "hwm_kb": s.hwm_kb,
    })
}

/// The tiers `fdtrace check` says can hook fd installs here, best first;
/// the tracepoint tier always.
fn supported_tiers(fdtrace: &Path) -> Result<Vec<String>> {
    let out = Command::new(fdtrace).arg("check").output().context("running fdtrace check")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut tiers: Vec<String> = ["fentry", "kprobe"]
        .into_iter()
        .filter(|t| crate::vmtest::tier_unsupported(&text, t).is_none() && text.contains(&format!("{t} ")))
        .map(String::from)
        .collect();
    tiers.push("tracepoint".into());
    Ok(tiers)
}

pub fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// A running tracer and what it printed so far.
struct Attached {
    label: String,
    child: Child,
    stderr: Lines,
    stdout: Option<Lines>,
    /// fdtrace with `--format json`: its reports are on stdout.
    json_reports: bool,
    attach_ms: f64,
    attach_self_ms: Option<f64>,
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

fn attach(bins: &Bins, tracer: &Tracer, pid: u32, extra_target: Option<u32>) -> Result<Option<Attached>> {
    let started = Instant::now();
    let (mut cmd, stdout_signal) = match tracer {
        Tracer::None => return Ok(None),
        Tracer::Fdtrace { tier, extra } => {
            let mut c = Command::new(&bins.fdtrace);
            c.args(["-p", &pid.to_string(), "--attach", tier, "--format", "json"]).args(extra);
            if !extra.iter().any(|a| a == "-i") {
                c.args(["-i", "3600"]);
            }
            (c, false)
        }
        Tracer::FdtraceElsewhere => {
            let mut c = Command::new(&bins.fdtrace);
            let target = extra_target.context("fdtrace elsewhere needs a process to trace")?;
            c.args(["-p", &target.to_string(), "-i", "3600"]);
            (c, false)
        }
        Tracer::Strace => {
            let mut c = Command::new("strace");
            c.args(["-f", "-e", "trace=network,close", "-o", "/dev/null", "-p", &pid.to_string()]);
            (c, false)
        }
        Tracer::Bpftrace => {
            let mut c = Command::new("bpftrace");
            c.args(["-e", &bpftrace_script(pid)]);
            (c, true)
        }
    };
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(if stdout_signal || matches!(tracer, Tracer::Fdtrace { .. }) {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", tracer.label()))?;
    let mut stderr = Lines::spawn(child.stderr.take().context("the tracer's stderr is not piped")?);
    let mut stdout = child.stdout.take().map(Lines::spawn);
    let mut attach_self_ms = None;
    match tracer {
        Tracer::Fdtrace { .. } | Tracer::FdtraceElsewhere => {
            let line = stderr
                .try_wait_for("fdtrace's tracing line", ATTACH_TIMEOUT, |l| l.contains(" ms; Ctrl-C"))?;
            attach_self_ms = line.split(" in ").last().and_then(|r| r.split(' ').next()?.parse().ok());
        }
        Tracer::Strace => {
            stderr.try_wait_for("strace's attached line", ATTACH_TIMEOUT, |l| l.contains("attached"))?;
        }
        Tracer::Bpftrace => {
            stdout.as_mut().context("bpftrace's stdout is not piped")?.try_wait_for(
                "bpftrace's BEGIN",
                ATTACH_TIMEOUT,
                |l| l == "attached",
            )?;
        }
        Tracer::None => unreachable!(),
    }
    let attach_ms = started.elapsed().as_secs_f64() * 1e3;
    let json_reports = matches!(tracer, Tracer::Fdtrace { .. });
    Ok(Some(Attached {
        label: tracer.label(),
        child,
        stderr,
        stdout,
        json_reports,
        attach_ms,
        attach_self_ms,
    }))
}

/// utime + stime of a process, seconds.
fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // SAFETY: no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks / hz)
}

fn hwm_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmHWM:")?.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Stops a tracer with SIGINT and returns its CPU, peak RSS and, for
/// fdtrace with `--format json`, the events it received and lost (from its
/// final report).
fn stop(mut a: Attached, sample: &mut Sample, cpu_before: Option<f64>) -> Result<Vec<String>> {
    let pid = a.child.id();
    sample.cpu_s = cpu_secs(pid).zip(cpu_before).map(|(after, before)| after - before);
    sample.hwm_kb = hwm_kb(pid);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid as i32, libc::SIGINT) };
    let sent = Instant::now();
    let mut resent = sent;
    loop {
        if a.child.try_wait()?.is_some() {
            break;
        }
        if sent.elapsed() > Duration::from_secs(60) {
            let _ = a.child.kill();
            bail!("{} (pid {pid}) did not stop within 60 s of SIGINT", a.label);
        }
        // bpftrace 0.17 sometimes loses a SIGINT that arrives soon after
        // its BEGIN probe ran (it then waits in epoll_wait for good); a
        // second one stops it.
        if resent.elapsed() > Duration::from_secs(5) {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(pid as i32, libc::SIGINT) };
            resent = Instant::now();
        }
        thread::sleep(Duration::from_millis(20));
    }
    // Drained so that a tracer printing a lot at exit is not blocked; it
    // has exited: the pipe ends with what it printed.
    let stdout = a.stdout.as_mut().map(|out| out.rest_within(Duration::from_secs(10))).unwrap_or_default();
    let lines = a.stderr.rest_within(Duration::from_millis(500));
    if a.json_reports {
        let report = final_report(&stdout)
            .with_context(|| format!("{} (pid {pid}); its stderr:\n{}", a.label, lines.join("\n")))?;
        sample.events = Some(report.stats.events);
        sample.lost = Some(report.stats.lost_events);
    }
    Ok(lines)
}

/// fdtrace's final report among the lines it printed (`--format json`).
fn final_report(stdout: &[String]) -> Result<Report> {
    let mut last = None;
    for line in stdout {
        if let Output::Report(r) = Output::read(line).map_err(|e| anyhow!(e))? {
            if r.is_final {
                last = Some(*r);
            }
        }
    }
    last.context("fdtrace printed no final report")
}

fn run_once(bins: &Bins, workload: &str, secs: f64, tracer: &Tracer) -> Result<Sample> {
    let secs_arg = secs.to_string();
    let mut w = Workload::start(&bins.loadgen, &[workload, "--secs", &secs_arg])?;
    // For the cost to untraced processes: fdtrace watches an idle process.
    let mut idle = None;
    let idle_pid = if *tracer == Tracer::FdtraceElsewhere {
        let c = Command::new("sleep").arg("3600").spawn()?;
        let pid = c.id();
        idle = Some(c);
        Some(pid)
    } else {
        None
    };
    let attached = attach(bins, tracer, w.pid, idle_pid)?;
    let cpu_before = attached.as_ref().and_then(|a| cpu_secs(a.child.id()));
    w.try_send("go")?;
    let result: LoadResult = w.try_result(Duration::from_secs_f64(secs + 60.0))?;
    // It exits after its result line.
    let _ = w.try_wait();
    let mut sample =
        Sample { rate: result.rate, secs: result.secs, fd_events: result.fd_events, ..Sample::default() };
    if let Some(a) = attached {
        sample.attach_ms = Some(a.attach_ms);
        sample.attach_self_ms = a.attach_self_ms;
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

/// The measurements beyond throughput.
fn extras(bins: &Bins, opts: &Opts, tier: &str) -> Result<Value> {
    let fdtrace = Tracer::Fdtrace { tier: tier.into(), extra: vec![] };
    let mut out = serde_json::Map::new();

    // Sustained events/s: the open+close loop at full speed, default ring.
    let mut sustained = vec![];
    for _ in 0..opts.rounds.min(3) {
        sustained.push(run_once(bins, "open", opts.secs, &fdtrace)?);
    }
    let best = sustained.iter().max_by(|a, b| a.rate.total_cmp(&b.rate)).context("no sustained round ran")?;
    let events_per_s = best.events.unwrap_or(0) as f64 / best.secs.max(1e-9);
    let cpu_per_event_us =
        median(sustained.iter().filter_map(|s| Some(s.cpu_s? * 1e6 / s.events.filter(|&e| e > 0)? as f64)));
    out.insert(
        "sustained".into(),
        json!({
            "events_per_s": events_per_s,
            "lost": sustained.iter().map(|s| s.lost.unwrap_or(0)).sum::<u64>(),
            "cpu_us_per_event": cpu_per_event_us,
        }),
    );

    // A ring too small: what the kernel counted as lost plus what arrived
    // must be what the workload did.
    let tiny = Tracer::Fdtrace { tier: tier.into(), extra: vec!["--ringbuf-size".into(), "16K".into()] };
    let s = run_once(bins, "open", opts.secs, &tiny)?;
    let (received, lost) = (s.events.unwrap_or(0), s.lost.unwrap_or(0));
    out.insert(
        "tiny_ring".into(),
        json!({
            "ringbuf": "16K",
            "workload_fd_events": s.fd_events,
            "received": received,
            "lost": lost,
            "unaccounted": received as i64 + lost as i64 - s.fd_events as i64,
        }),
    );

    // Attach time: fdtrace (wall and its own figure) and bpftrace.
    let mut fd_attach = vec![];
    let mut fd_self = vec![];
    let mut bt_attach = vec![];
    for _ in 0..opts.rounds.max(3) {
        let w = Workload::start(&bins.loadgen, &["open", "--secs", "0.1"])?;
        for (tracer, wall, own) in
            [(&fdtrace, &mut fd_attach, Some(&mut fd_self)), (&Tracer::Bpftrace, &mut bt_attach, None)]
        {
            let a = attach(bins, tracer, w.pid, None)?.context("the tracer did not start")?;
            wall.push(a.attach_ms);
            if let (Some(own), Some(ms)) = (own, a.attach_self_ms) {
                own.push(ms);
            }
            stop(a, &mut Sample::default(), None)?;
        }
    }
    out.insert(
        "attach_ms".into(),
        json!({
            "fdtrace_wall": median(fd_attach.into_iter()),
            "fdtrace_self": median(fd_self.into_iter()),
            "bpftrace_wall": median(bt_attach.into_iter()),
        }),
    );

    // Peak RSS with 100,000 fds tracked.
    out.insert("rss_100k_fds".into(), rss_at_fds(bins, 100_000)?);
    // Report time with 1,000 stack groups.
    out.insert("report_1000_groups".into(), report_time(bins, 1000)?);

    // Cost to a process fdtrace does not trace.
    let mut plain = vec![];
    let mut elsewhere = vec![];
    for _ in 0..opts.rounds {
        plain.push(run_once(bins, "open", opts.secs, &Tracer::None)?.rate);
        elsewhere.push(run_once(bins, "open", opts.secs, &Tracer::FdtraceElsewhere)?.rate);
    }
    let (p, e) = (median(plain.into_iter()), median(elsewhere.into_iter()));
    out.insert(
        "untraced_cost".into(),
        json!({"workload": "open", "alone": p, "fdtrace_elsewhere": e, "ratio": e / p}),
    );
    Ok(Value::Object(out))
}

/// One process may hold at most its hard RLIMIT_NOFILE (raising it takes
/// CAP_SYS_RESOURCE): the fds are spread over enough processes, followed
/// with -f.
fn rss_at_fds(bins: &Bins, n: u64) -> Result<Value> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: valid pointer.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    let procs = n.div_ceil(lim.rlim_max.saturating_sub(100).max(1000)).max(1);
    let mut w = Workload::start(&bins.fdstress, &["--fds", &n.to_string(), "--procs", &procs.to_string()])?;
    let extra = ["-f", "-i", "2"].map(String::from).to_vec();
    let a = attach(bins, &Tracer::Fdtrace { tier: "tracepoint".into(), extra }, w.pid, None)?
        .context("fdtrace did not start")?;
    w.try_send("go")?;
    let opened = w.stdout.try_wait_for("opened", Duration::from_secs(120), |l| l.starts_with("opened"))?;
    // Two report intervals: the fds are in the ledger and reconciled.
    thread::sleep(Duration::from_secs(5));
    let mut s = Sample::default();
    stop(a, &mut s, None)?;
    let _ = w.try_send("exit");
    Ok(json!({"fds": n, "processes": procs, "workload": opened, "fdtrace_hwm_kb": s.hwm_kb}))
}

fn report_time(bins: &Bins, groups: u64) -> Result<Value> {
    let mut w = Workload::start(&bins.fdstress, &["--stacks", &groups.to_string()])?;
    let tracer = Tracer::Fdtrace {
        tier: "tracepoint".into(),
        extra: vec![
            "-v".into(),
            "-i".into(),
            "1".into(),
            "-t".into(),
            "100000".into(),
            "--min-age".into(),
            "0".into(),
        ],
    };
    let mut a = attach(bins, &tracer, w.pid, None)?.context("fdtrace did not start")?;
    w.try_send("go")?;
    w.stdout.try_wait_for("opened", Duration::from_secs(60), |l| l.starts_with("opened"))?;
    // "report: 1000 groups, ... built and written in 12.3 ms"
    let mut times = vec![];
    let end = Instant::now() + Duration::from_secs(30);
    while times.len() < 3 && Instant::now() < end {
        let l = a.stderr.try_wait_for("a report", Duration::from_secs(10), |l| {
            l.contains("report: ") && l.contains(" groups")
        })?;
        let groups_seen: u64 =
            l.split("report: ").nth(1).and_then(|r| r.split(' ').next()?.parse().ok()).unwrap_or(0);
        let ms: f64 =
            l.split(" in ").last().and_then(|r| r.split(' ').next()?.parse().ok()).unwrap_or(f64::NAN);
        if groups_seen >= groups {
            times.push(ms);
        }
    }
    let mut s = Sample::default();
    stop(a, &mut s, None)?;
    let _ = w.try_send("exit");
    Ok(
        json!({"groups": groups, "first_ms": times.first(), "cached_ms": times.get(1..).map(|t| median(t.iter().copied()))}),
    )
}

fn render(
    results: &BTreeMap<String, BTreeMap<String, Vec<Sample>>>,
    tracers: &[Tracer],
    extras: &Value,
) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let labels: Vec<String> = tracers.iter().map(Tracer::label).collect();
    let _ = write!(s, "\n{:<10}", "workload");
    for l in &labels {
        let _ = write!(s, "{l:>20}");
    }
    s.push('\n');
    for (workload, by) in results {
        let base = median(by.get("untraced").into_iter().flatten().map(|x| x.rate));
        let _ = write!(s, "{workload:<10}");
        for l in &labels {
            let m = median(by.get(l).into_iter().flatten().map(|x| x.rate));
            let cell = if l == "untraced" {
                format!("{m:.0}/s")
            } else {
                let lost: u64 = by.get(l).into_iter().flatten().filter_map(|x| x.lost).sum();
                let lost = if l.starts_with("fdtrace") { format!(" ({lost} lost)") } else { String::new() };
                format!("{:.2}×{lost}", m / base)
            };
            let _ = write!(s, "{cell:>20}");
        }
        s.push('\n');
    }
    let e = extras;
    let _ = writeln!(
        s,
        "\nsustained: {:.0} events/s with {} lost (open loop, default ring); fdtrace CPU {:.2} µs/event",
        e["sustained"]["events_per_s"].as_f64().unwrap_or(f64::NAN),
        e["sustained"]["lost"],
        e["sustained"]["cpu_us_per_event"].as_f64().unwrap_or(f64::NAN),
    );
    let t = &e["tiny_ring"];
    let _ = writeln!(
        s,
        "16K ring: {} received + {} lost (kernel count) vs {} fd events done: {} unaccounted",
        t["received"], t["lost"], t["workload_fd_events"], t["unaccounted"]
    );
    let a = &e["attach_ms"];
    let _ = writeln!(
        s,
        "attach: fdtrace {:.0} ms (wall; {:.0} ms by its own clock), bpftrace {:.0} ms",
        a["fdtrace_wall"].as_f64().unwrap_or(f64::NAN),
        a["fdtrace_self"].as_f64().unwrap_or(f64::NAN),
        a["bpftrace_wall"].as_f64().unwrap_or(f64::NAN)
    );
    let r = &e["rss_100k_fds"];
    let _ = writeln!(
        s,
        "peak RSS with {} fds tracked: {:.1} MiB",
        r["fds"],
        r["fdtrace_hwm_kb"].as_f64().unwrap_or(f64::NAN) / 1024.0
    );
    let g = &e["report_1000_groups"];
    let _ = writeln!(
        s,
        "report with {} groups: {:.0} ms the first, {:.0} ms the next ones (stacks are symbolized as events arrive)",
        g["groups"],
        g["first_ms"].as_f64().unwrap_or(f64::NAN),
        g["cached_ms"].as_f64().unwrap_or(f64::NAN)
    );
    let u = &e["untraced_cost"];
    let _ = writeln!(
        s,
        "untraced process while fdtrace traces another: {:.2}× ({:.0}/s vs {:.0}/s alone)",
        u["ratio"].as_f64().unwrap_or(f64::NAN),
        u["fdtrace_elsewhere"].as_f64().unwrap_or(f64::NAN),
        u["alone"].as_f64().unwrap_or(f64::NAN)
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median([3.0, 1.0, 2.0].into_iter()), 2.0);
        assert_eq!(median([4.0, 1.0, 2.0, 3.0].into_iter()), 2.5);
        assert!(median(std::iter::empty()).is_nan());
        assert_eq!(median([f64::NAN, 5.0].into_iter()), 5.0);
    }

    #[test]
    fn the_bpftrace_script_filters_by_pid_and_takes_stacks() {
        let s = bpftrace_script(42);
        assert!(s.contains("/pid == 42 && args->ret >= 0/ { @opens[ustack] = count(); }"));
        assert!(s.contains("tracepoint:syscalls:sys_exit_accept4"));
        assert!(s.contains("sys_enter_close /pid == 42/"));
    }
}
