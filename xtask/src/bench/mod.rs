//! `cargo xtask bench`: what tracing costs, side by side in one run, with
//! the targets of issue 11 printed beside each figure.
//!
//! Each workload (`tests/src/bin/loadgen.rs`) runs untraced; under fdtrace
//! on every tier this kernel supports (or those given with `--tier`), with
//! stacks and with `--no-stacks`; under the floor of that tier (empty
//! bpftrace programs, filtered by pid, on the hooks fdtrace attaches: see
//! [`floor`]); under `strace -f -e trace=network,close`; and under a
//! bpftrace script that does what fdtrace does (a user stack on every
//! fd-creating syscall, closes counted). Rounds are interleaved and the
//! order rotates each round; the table shows medians as ratios to the
//! untraced median of the same run, and fdtrace's lost events. Then:
//! events/s without loss and fdtrace's CPU per event, loss accounting with
//! a tiny ring (`--events`), start and stop times, idle RSS and peak RSS at
//! 100,000 tracked fds, report time with 1,000 stack groups, and the cost
//! to a process that is not traced.
//!
//! Results: the table on stdout and `target/bench/results.json` (every
//! sample).
mod floor;
mod table;
mod targets;
mod tracer;

use std::{
    collections::BTreeMap,
    path::Path,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use fdtrace_tests::harness::Workload;
use serde::Serialize;

use self::{
    floor::{CheckFacts, Floor},
    tracer::{attach, run_once, stop, Bins, Sample, Tracer},
};
use crate::setup;

pub const WORKLOADS: [&str; 4] = ["connect", "accept", "open", "mix"];
pub const TIERS: [&str; 3] = ["fentry", "kprobe", "tracepoint"];

pub struct Opts {
    pub rounds: usize,
    pub secs: f64,
    pub workloads: Vec<String>,
    /// Empty: every tier this kernel supports.
    pub tiers: Vec<String>,
}

/// Everything one run measured.
#[derive(Serialize)]
pub struct Run {
    pub kernel: String,
    pub cpus: usize,
    /// `/proc/loadavg` (1 min) when the measuring started and ended.
    pub load_start: f64,
    pub load_end: f64,
    /// The share of the machine's CPU time (all CPUs) that processes other
    /// than the bench's used while it measured: how busy the machine was
    /// with other work.
    pub others_cpu: f64,
    pub rounds: usize,
    pub secs: f64,
    pub tiers: Vec<String>,
    /// The rows, in order (labels of [`Tracer`]).
    pub rows: Vec<String>,
    /// workload → row → every sample.
    pub workloads: BTreeMap<String, BTreeMap<String, Vec<Sample>>>,
    #[serde(skip)]
    pub workload_order: Vec<String>,
    #[serde(skip)]
    pub tracers: Vec<Tracer>,
    pub floors: Vec<Floor>,
    pub extras: Extras,
}

/// The measurements beyond the table, each with its samples.
#[derive(Default, Serialize)]
pub struct Extras {
    /// The tier they were measured on (the first of the run's).
    pub tier: String,
    pub sustained: Sustained,
    pub tiny_ring: TinyRing,
    pub start: StartTimes,
    pub stop: StopTimes,
    pub rss_100k_fds: PeakRss,
    pub report_1000_groups: ReportTime,
    pub untraced_cost: UntracedCost,
}

/// The open+close loop at full speed with the default ring.
#[derive(Default, Serialize)]
pub struct Sustained {
    pub workload: String,
    pub samples: Vec<Sample>,
    /// fdtrace's events per second in the fastest round.
    pub events_per_s: f64,
    pub lost: u64,
    pub cpu_us_per_event: f64,
}

/// A ring too small, every event through it (`--events`): what the
/// kernel counted as lost plus what arrived must be what the workload did.
#[derive(Default, Serialize)]
pub struct TinyRing {
    pub ringbuf: String,
    pub sample: Sample,
    pub received: u64,
    pub lost: u64,
    /// received + lost − the workload's fd events (the process's exit
    /// record is one).
    pub unaccounted: i64,
}

/// Spawn to the "tracing" line (`attach_ms`; fdtrace's own figure is
/// `attach_self_ms`), fdtrace and bpftrace on the same workload, each
/// stopped at once (`stop_ms`).
#[derive(Default, Serialize)]
pub struct StartTimes {
    pub fdtrace: Vec<Sample>,
    pub bpftrace: Vec<Sample>,
}

/// SIGINT to exit, and to the final report, tracing an idle process and
/// one holding many fds (opened before fdtrace started, as when it is
/// pointed at a busy server). The idle runs also give the idle RSS.
#[derive(Default, Serialize)]
pub struct StopTimes {
    pub idle: Vec<Sample>,
    pub many_fds: u64,
    pub many: Vec<Sample>,
    /// One more run with many fds, with `-v`: where the time goes.
    pub verbose: Sample,
    pub verbose_stderr: Vec<String>,
    /// From that run's log: the final report built and written, detaching.
    pub report_ms: Option<f64>,
    pub detach_ms: Option<f64>,
}

#[derive(Default, Serialize)]
pub struct PeakRss {
    pub fds: u64,
    pub processes: u64,
    pub workload: String,
    pub sample: Sample,
}

#[derive(Default, Serialize)]
pub struct ReportTime {
    pub groups: u64,
    /// Each report's build-and-write time with every group in, ms.
    pub times_ms: Vec<f64>,
}

/// The open loop alone and while fdtrace traces another (idle) process.
#[derive(Default, Serialize)]
pub struct UntracedCost {
    pub workload: String,
    pub alone: Vec<Sample>,
    pub elsewhere: Vec<Sample>,
    pub ratio: f64,
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
    // From here on the bench's children are its workloads and tracers.
    let load_start = loadavg();
    let usage = CpuUsage::now();
    let check = Command::new(&bins.fdtrace).arg("check").output().context("running fdtrace check")?;
    let check = String::from_utf8_lossy(&check.stdout).into_owned();
    let tiers = tiers(&check, &opts.tiers)?;
    println!("bench: fdtrace tiers: {}", tiers.join(", "));
    let facts = CheckFacts::parse(&check);
    let floors: Vec<Floor> = tiers.iter().map(|t| floor::floor(t, &facts, floor::tracefs_has)).collect();

    let mut tracers = vec![Tracer::None];
    for f in &floors {
        tracers.push(Tracer::fdtrace(&f.tier, &[]));
        tracers.push(Tracer::fdtrace(&f.tier, &["--no-stacks"]));
        // Every event through the ring to fdtrace: what pairing in the
        // kernel saves.
        tracers.push(Tracer::fdtrace(&f.tier, &["--no-kernel-pairing"]));
        tracers.push(Tracer::Floor { tier: f.tier.clone(), probes: f.probes.clone() });
    }
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
                    "bench: {workload:8} round {} {:30} {:>10.0}/s{}",
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

    let extras = extras(&bins, opts, &tiers[0])?;
    let run = Run {
        kernel: kernel_release(),
        cpus: thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        load_start,
        load_end: loadavg(),
        others_cpu: usage.others_since(),
        rounds: opts.rounds,
        secs: opts.secs,
        tiers,
        rows: tracers.iter().map(Tracer::label).collect(),
        workloads: results,
        workload_order: opts.workloads.clone(),
        tracers,
        floors,
        extras,
    };
    let (text, verdicts) = table::render(&run);
    println!("{text}");
    let out_dir = ws.join("target/bench");
    std::fs::create_dir_all(&out_dir)?;
    let mut json = serde_json::to_value(&run)?;
    json["targets"] = serde_json::to_value(&verdicts)?;
    let path = out_dir.join("results.json");
    std::fs::write(&path, serde_json::to_string_pretty(&json)?)?;
    println!("bench: {:.0} s in all; results in {}", start.elapsed().as_secs_f64(), path.display());
    Ok(())
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string()
}

/// CPU time: the machine's busy and total, and the bench's own (itself
/// and its reaped children: the workloads and tracers), in seconds.
struct CpuUsage {
    busy: f64,
    total: f64,
    ours: f64,
}

impl CpuUsage {
    fn now() -> CpuUsage {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        // cpu user nice system idle iowait irq softirq steal ...
        let ticks: Vec<f64> = stat
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .filter_map(|t| t.parse().ok())
            .collect();
        let at = |i: usize| ticks.get(i).copied().unwrap_or(f64::NAN) / hz;
        let busy = at(0) + at(1) + at(2) + at(5) + at(6) + at(7);
        let ours = [libc::RUSAGE_SELF, libc::RUSAGE_CHILDREN]
            .into_iter()
            .map(|who| {
                // SAFETY: an all-zero rusage is valid; getrusage fills it.
                let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
                // SAFETY: a valid `who` and a pointer to our rusage.
                unsafe { libc::getrusage(who, &mut ru) };
                let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
                secs(ru.ru_utime) + secs(ru.ru_stime)
            })
            .sum();
        CpuUsage { busy, total: busy + at(3) + at(4), ours }
    }

    /// Since `self`: the share of all CPU time that others used.
    fn others_since(&self) -> f64 {
        let now = CpuUsage::now();
        let others = (now.busy - self.busy) - (now.ours - self.ours);
        (others / (now.total - self.total)).max(0.0)
    }
}

/// The 1-minute load average.
fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// The tiers to measure: those asked for, each of which this kernel must
/// support, or every tier it supports (best first; the tracepoint tier
/// always). `check`: `fdtrace check`'s output.
fn tiers(check: &str, asked: &[String]) -> Result<Vec<String>> {
    let supported: Vec<String> = TIERS
        .into_iter()
        .filter(|t| crate::vmtest::tier_unsupported(check, t).is_none())
        .map(String::from)
        .collect();
    if asked.is_empty() {
        return Ok(supported);
    }
    let mut out = vec![];
    for t in asked {
        if let Some(why) = crate::vmtest::tier_unsupported(check, t) {
            bail!(
                "the {t} tier cannot run on this kernel ({why}): run `cargo xtask bench --tier {t}` on a \
                 machine whose kernel allows it (`fdtrace check` says); the VM matrix's TCG guests run \
                 the function tiers, but far too slowly to measure"
            );
        }
        if !out.contains(t) {
            out.push(t.clone());
        }
    }
    Ok(out)
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

/// The measurements beyond throughput, on `tier`.
fn extras(bins: &Bins, opts: &Opts, tier: &str) -> Result<Extras> {
    let fdtrace = Tracer::fdtrace(tier, &[]);
    let mut out = Extras { tier: tier.into(), ..Extras::default() };

    // Sustained events/s: the open+close loop at full speed, default ring.
    // Events are what fdtrace's final report counts (kernel-paired ones
    // included), CPU its user + system time while the workload ran.
    let mut s = Sustained { workload: "open".into(), ..Sustained::default() };
    for _ in 0..opts.rounds.min(3) {
        s.samples.push(run_once(bins, "open", opts.secs, &fdtrace).context("sustained: open under fdtrace")?);
    }
    let best = s.samples.iter().max_by(|a, b| a.rate.total_cmp(&b.rate)).context("no sustained round ran")?;
    s.events_per_s = best.events.unwrap_or(0) as f64 / best.secs.max(1e-9);
    s.lost = s.samples.iter().map(|x| x.lost.unwrap_or(0)).sum();
    s.cpu_us_per_event = median(s.samples.iter().filter_map(Sample::cpu_us_per_event));
    out.sustained = s;

    // A ring too small, every event through it: what the kernel counted as
    // lost plus what arrived must be what the workload did.
    let tiny = Tracer::fdtrace(tier, &["--events", "-o", "/dev/null", "--ringbuf-size", "16K"]);
    let sample = run_once(bins, "open", opts.secs, &tiny).context("open under fdtrace with a 16K ring")?;
    let (received, lost) = (sample.events.unwrap_or(0), sample.lost.unwrap_or(0));
    out.tiny_ring = TinyRing {
        ringbuf: "16K".into(),
        received,
        lost,
        unaccounted: received as i64 + lost as i64 - sample.fd_events as i64,
        sample,
    };

    // Start: fdtrace (wall and its own figure) and bpftrace.
    for _ in 0..opts.rounds.max(3) {
        let w = Workload::start(&bins.loadgen, &["open", "--secs", "0.1"])?;
        for (tracer, samples) in
            [(&fdtrace, &mut out.start.fdtrace), (&Tracer::Bpftrace, &mut out.start.bpftrace)]
        {
            let a = attach(bins, tracer, w.pid, None)?
                .with_context(|| format!("{} did not start", tracer.label()))?;
            let mut s = Sample {
                attach_ms: Some(a.attach_ms),
                attach_self_ms: a.attach_self_ms,
                hooks: a.hooks,
                ..Sample::default()
            };
            stop(a, &mut s, None)?;
            samples.push(s);
        }
    }

    out.stop = stop_times(bins, tier, opts.rounds.clamp(3, 5))?;
    out.rss_100k_fds = rss_at_fds(bins, tier, 100_000)?;
    out.report_1000_groups = report_time(bins, tier, 1000)?;

    // Cost to a process fdtrace does not trace.
    let mut u = UntracedCost { workload: "open".into(), ..UntracedCost::default() };
    let elsewhere = Tracer::FdtraceElsewhere { tier: tier.into() };
    for _ in 0..opts.rounds {
        u.alone.push(run_once(bins, "open", opts.secs, &Tracer::None)?);
        u.elsewhere.push(run_once(bins, "open", opts.secs, &elsewhere)?);
    }
    u.ratio = median(u.elsewhere.iter().map(|s| s.rate)) / median(u.alone.iter().map(|s| s.rate));
    out.untraced_cost = u;
    Ok(out)
}

/// The hard RLIMIT_NOFILE: what one process may hold (raising it takes
/// CAP_SYS_RESOURCE).
fn nofile_hard() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we pass, valid for the call.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    lim.rlim_max
}

/// Stop times, tracing an idle process and one holding many fds (19,000,
/// or what one process may hold), and the idle RSS.
fn stop_times(bins: &Bins, tier: &str, rounds: usize) -> Result<StopTimes> {
    let fdtrace = Tracer::fdtrace(tier, &[]);
    let mut out = StopTimes::default();
    for _ in 0..rounds {
        let mut idle = Command::new("sleep").arg("3600").spawn().context("starting sleep")?;
        let a = attach(bins, &fdtrace, idle.id(), None)?.context("fdtrace did not start")?;
        let mut s = Sample { attach_ms: Some(a.attach_ms), ..Sample::default() };
        // Settled: past start-up, nothing to do.
        thread::sleep(Duration::from_secs(1));
        stop(a, &mut s, None)?;
        out.idle.push(s);
        let _ = idle.kill();
        let _ = idle.wait();
    }
    out.many_fds = 19_000.min(nofile_hard().saturating_sub(100));
    let mut w = Workload::start(&bins.fdstress, &["--fds", &out.many_fds.to_string()])?;
    w.try_send("go")?;
    w.stdout.try_wait_for("opened", Duration::from_secs(60), |l| l.starts_with("opened"))?;
    for verbose in (0..=rounds).map(|i| i == rounds) {
        let tracer = if verbose { Tracer::fdtrace(tier, &["-v"]) } else { fdtrace.clone() };
        let a = attach(bins, &tracer, w.pid, None)?.context("fdtrace did not start")?;
        let mut s = Sample { attach_ms: Some(a.attach_ms), ..Sample::default() };
        thread::sleep(Duration::from_secs(1));
        let lines = stop(a, &mut s, None)?;
        if verbose {
            let after =
                |l: &str, key: &str| -> Option<f64> { l.split(key).nth(1)?.split(' ').next()?.parse().ok() };
            out.report_ms = lines.iter().rev().find_map(|l| after(l, "built and written in "));
            out.detach_ms = lines.iter().find_map(|l| after(l, "detached in "));
            out.verbose_stderr = lines;
            out.verbose = s;
        } else {
            out.many.push(s);
        }
    }
    let _ = w.try_send("exit");
    Ok(out)
}

/// Peak RSS with `n` fds tracked. One process may hold at most its hard
/// RLIMIT_NOFILE: the fds are spread over enough processes, followed with
/// -f.
fn rss_at_fds(bins: &Bins, tier: &str, n: u64) -> Result<PeakRss> {
    let procs = n.div_ceil(nofile_hard().saturating_sub(100).max(1000)).max(1);
    let mut w = Workload::start(&bins.fdstress, &["--fds", &n.to_string(), "--procs", &procs.to_string()])?;
    let a = attach(bins, &Tracer::fdtrace(tier, &["-f", "-i", "2"]), w.pid, None)?
        .context("fdtrace did not start")?;
    w.try_send("go")?;
    let opened = w.stdout.try_wait_for("opened", Duration::from_secs(120), |l| l.starts_with("opened"))?;
    // Two report intervals: the fds are in the ledger and reconciled.
    thread::sleep(Duration::from_secs(5));
    let mut sample = Sample { attach_ms: Some(a.attach_ms), ..Sample::default() };
    stop(a, &mut sample, None)?;
    let _ = w.try_send("exit");
    Ok(PeakRss { fds: n, processes: procs, workload: opened, sample })
}

fn report_time(bins: &Bins, tier: &str, groups: u64) -> Result<ReportTime> {
    let mut w = Workload::start(&bins.fdstress, &["--stacks", &groups.to_string()])?;
    let tracer = Tracer::fdtrace(tier, &["-v", "-i", "1", "-t", "100000", "--min-age", "0"]);
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
    stop(a, &mut Sample::default(), None)?;
    let _ = w.try_send("exit");
    Ok(ReportTime { groups, times_ms: times })
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

    const CHECK: &str = "\
hook families (function tiers; the tracepoint tier covers any family they cannot):
  fd install (replaces syscall exits of fd-creating calls (kept for failures)):
    fentry no: the kernel refuses fentry programs (EPERM: no BPF trampolines, or lockdown) (fd_install)
    kprobe   yes (fd_install)
  fd close (replaces sys_enter_close (and sys_enter_close_range)):
";

    #[test]
    fn tiers_are_those_the_kernel_supports_or_those_asked_for() {
        assert_eq!(tiers(CHECK, &[]).unwrap(), ["kprobe", "tracepoint"]);
        let asked = ["tracepoint".to_string(), "kprobe".into(), "tracepoint".into()];
        assert_eq!(tiers(CHECK, &asked).unwrap(), ["tracepoint", "kprobe"]);
        let err = tiers(CHECK, &["fentry".to_string()]).unwrap_err().to_string();
        assert!(
            err.contains("the fentry tier cannot run on this kernel (the kernel refuses fentry"),
            "{err}"
        );
        assert!(err.contains("cargo xtask bench --tier fentry"), "{err}");
    }
}
