//! Developer commands: `cargo xtask <command>`.
//!
//! - `run`: build fdtrace and run it (on a bundled leaky example when no pid
//!   is given);
//! - `test`: lint, install what the tests need, build, run every test;
//! - `lint`: `cargo fmt --check` and clippy with the workspace's lints
//!   (warnings fail the crates `lint::DENY_WARNINGS` lists);
//! - `setup`: only the installation part of `test`;
//! - `install`: fdtrace (release), its man page and shell completions
//!   under a prefix;
//! - `build-ebpf`: install the eBPF toolchain if needed and build the object;
//! - `vm-run`: boot a Debian cloud kernel under qemu and run a script in it;
//! - `bench`: what tracing costs, fdtrace beside strace and bpftrace;
//! - `vm-test`: the kernel matrix: the integration tests on each tier of
//!   each kernel (part of `test`).
//!
//! Everything installs idempotently: a second run finds it present and
//! costs nothing.
mod bench;
mod ebpf_build;
mod install;
mod lint;
mod setup;
mod vm;
mod vmtest;

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand};
use fdtrace_tests::skip;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "fdtrace developer commands")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install the eBPF toolchain if needed and build the eBPF object.
    BuildEbpf,
    /// `cargo fmt --all --check`, then clippy on every crate with the
    /// workspace's lints: warnings fail the crates listed in
    /// xtask/src/lint.rs (DENY_WARNINGS), and are counted for the others.
    Lint,
    /// Install everything the build and the tests need (idempotent).
    Setup,
    /// Build fdtrace (release) and install it: PREFIX/bin/fdtrace, the man page
    /// (PREFIX/share/man/man1/fdtrace.1) and bash, zsh and fish completions.
    Install {
        /// Where to install.
        #[arg(long, default_value = "/usr/local")]
        prefix: PathBuf,
    },
    /// Build fdtrace (release) and run it. Without -p/--pid, runs it on a
    /// bundled example that leaks sockets.
    Run {
        /// Arguments for fdtrace.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Lint (`cargo xtask lint`), install what is needed, build, and run all
    /// tests: the host suite, then the kernel matrix (`vm-test`).
    Test {
        /// Only the host suite (no VMs): for quick iterations.
        #[arg(long)]
        host_only: bool,
        /// Skip the lint step.
        #[arg(long)]
        no_lint: bool,
        /// Extra arguments for `cargo test` (e.g. a test name filter); they
        /// imply --host-only.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run the integration tests on Debian cloud kernels 5.10, 6.1 and 6.12
    /// under qemu, once per tier (fentry, kprobe, tracepoint); print the table.
    VmTest {
        /// Kernels (default: all).
        #[arg(long = "kernel")]
        kernels: Vec<vm::KernelVersion>,
        /// Tiers (default: all).
        #[arg(long = "tier")]
        tiers: Vec<String>,
        /// VMs at a time, one per kernel × tier cell (default: one per
        /// host CPU: a VM's one emulated CPU takes a host CPU, and
        /// starved of it the guest kernel stalls; 6.12's three cells, 2 at
        /// a time on 2 CPUs: 6.4 min, where one VM running the three took
        /// about 10).
        #[arg(long)]
        jobs: Option<usize>,
    },
    /// Measure what tracing costs: throughput of fd-heavy workloads untraced,
    /// under fdtrace, strace and bpftrace (medians of alternating rounds),
    /// events/s without loss, loss accounting, attach time, RSS, report time.
    Bench {
        /// Rounds per workload and tracer.
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Seconds per run.
        #[arg(long, default_value_t = 2.0)]
        secs: f64,
        /// Workloads (default: connect, accept, open, mix).
        #[arg(long = "workload")]
        workloads: Vec<String>,
        /// fdtrace tiers to measure, repeatable (default: every tier this
        /// kernel supports). The function tiers need a real machine whose
        /// kernel allows them: TCG VMs are far too slow to measure.
        #[arg(long = "tier", value_parser = bench::TIERS)]
        tiers: Vec<String>,
    },
    /// Boot a Debian cloud kernel under qemu (TCG), run a shell script in it,
    /// print its output and exit with its status.
    VmRun {
        /// Kernel: 5.10 (bullseye), 6.1 (bookworm) or 6.12 (trixie).
        #[arg(long, default_value = "6.1")]
        kernel: vm::KernelVersion,
        /// A host file or directory to put in the VM, at GUEST or else at the
        /// same path; dynamically linked programs bring their libraries.
        #[arg(long = "file", value_name = "HOST[:GUEST]")]
        files: Vec<String>,
        /// Seconds for the whole run, boot included.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
        /// Guest memory in MiB.
        #[arg(long, default_value_t = 2048)]
        memory: u32,
        /// The script (busybox sh); several words are joined with spaces.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        script: Vec<String>,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask/ is in the workspace").to_path_buf()
}

fn run(cli: Cli) -> Result<()> {
    let ws = workspace();
    match cli.command {
        Cmd::BuildEbpf => build_ebpf(&ws),
        Cmd::Lint => lint::run(&ws),
        Cmd::Setup => setup::all(&ws),
        Cmd::Install { prefix } => install::run(&ws, &prefix),
        Cmd::Run { args } => run_fdtrace(&ws, args),
        Cmd::Test { host_only, no_lint, args } => test(&ws, host_only, no_lint, args),
        Cmd::VmTest { kernels, tiers, jobs } => vm_test(&ws, kernels, tiers, jobs),
        Cmd::Bench { rounds, secs, workloads, tiers } => {
            let workloads =
                if workloads.is_empty() { bench::WORKLOADS.map(String::from).to_vec() } else { workloads };
            if let Some(w) = workloads.iter().find(|w| !bench::WORKLOADS.contains(&w.as_str())) {
                bail!("unknown workload {w}: choose from {}", bench::WORKLOADS.join(", "));
            }
            bench::run(&ws, &bench::Opts { rounds: rounds.max(1), secs, workloads, tiers })
        }
        Cmd::VmRun { kernel, files, timeout, memory, script } => {
            let status =
                vm::vm_run(&ws, kernel, &files, &script.join(" "), Duration::from_secs(timeout), memory)?;
            if status != 0 {
                std::process::exit(status);
            }
            Ok(())
        }
    }
}

fn build_ebpf(ws: &Path) -> Result<()> {
    setup::ebpf_toolchain()?;
    let start = Instant::now();
    let status = ebpf_build::build_command(ws).status().context("running cargo for fdtrace-ebpf")?;
    if !status.success() {
        bail!("building fdtrace-ebpf failed ({status})");
    }
    let object = ebpf_build::object_path(ws);
    let size = std::fs::metadata(&object).map(|m| m.len()).unwrap_or(0);
    println!(
        "eBPF object: {} ({} KiB, built in {:.1} s)",
        object.display(),
        size / 1024,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Runs a command, failing with its description.
pub fn sh(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn is_root() -> bool {
    // SAFETY: no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A command that runs as root: directly when we are root, through sudo
/// otherwise.
pub fn as_root(program: impl AsRef<std::ffi::OsStr>) -> Command {
    if is_root() {
        Command::new(program)
    } else {
        let mut c = Command::new("sudo");
        c.arg(program);
        c
    }
}

/// Builds fdtrace and the named programs of `tests/src/bin`, release.
pub fn build_release(ws: &Path, workloads: &[&str]) -> Result<()> {
    let mut cmd = cargo();
    cmd.current_dir(ws).args([
        "build",
        "--release",
        "-p",
        "fdtrace",
        "-p",
        "fdtrace-tests",
        "--bin",
        "fdtrace",
    ]);
    for w in workloads {
        cmd.args(["--bin", w]);
    }
    sh(&mut cmd)
}

fn run_fdtrace(ws: &Path, mut args: Vec<String>) -> Result<()> {
    setup::ebpf_toolchain()?;
    build_release(ws, &["leaky"])?;
    let fdtrace = ws.join("target/release/fdtrace");
    // A pid, a --comm name or a command to launch (`-- CMD`): no example.
    let has_target = args.iter().any(|a| {
        a == "-p"
            || a == "--"
            || a.starts_with("--pid")
            || a.starts_with("--comm")
            || (a.starts_with("-p") && a.len() > 2)
    });
    let mut example = None;
    if !has_target {
        let leaky = ws.join("target/release/leaky");
        let child = Command::new(&leaky).spawn().with_context(|| format!("starting {}", leaky.display()))?;
        println!(
            "xtask: started the bundled example `leaky` (pid {}): it opens a connection to a local server every 200 ms and forgets to close one in three",
            child.id()
        );
        args.splice(0..0, ["-p".to_string(), child.id().to_string()]);
        if !args.iter().any(|a| a == "-d" || a.starts_with("--duration")) {
            args.extend(["-d".to_string(), "12".to_string()]);
        }
        example = Some(child);
    }
    let status = as_root(&fdtrace).args(&args).status().context("running fdtrace")?;
    if let Some(mut child) = example {
        let _ = child.kill();
        let _ = child.wait();
    }
    if !status.success() {
        bail!("fdtrace exited with {status}");
    }
    Ok(())
}

fn vm_test(
    ws: &Path,
    kernels: Vec<vm::KernelVersion>,
    tiers: Vec<String>,
    jobs: Option<usize>,
) -> Result<()> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    // A VM is one vCPU, one busy host thread: one per CPU.
    let jobs = jobs.unwrap_or(cpus.max(1));
    let kernels = if kernels.is_empty() { vm::KernelVersion::ALL.to_vec() } else { kernels };
    let tiers = if tiers.is_empty() { vmtest::TIERS.iter().map(|t| t.to_string()).collect() } else { tiers };
    if let Some(bad) = tiers.iter().find(|t| !vmtest::TIERS.contains(&t.as_str())) {
        bail!("unknown tier {bad}: use fentry, kprobe or tracepoint");
    }
    vmtest::run(ws, &kernels, &tiers, jobs)
}

fn test(ws: &Path, host_only: bool, no_lint: bool, extra: Vec<String>) -> Result<()> {
    if !no_lint {
        lint::run(ws)?;
    }
    setup::all(ws)?;
    let start = Instant::now();
    // The integration tests run the fdtrace binary: build it first.
    sh(cargo().current_dir(ws).args(["build", "-p", "fdtrace", "-p", "fdtrace-tests", "--bins"]))?;
    let mut cmd = cargo();
    cmd.current_dir(ws).args(["test", "--workspace", "--exclude", "fdtrace-ebpf"]).args(&extra);
    if !is_root() {
        // Build as this user, run the test binaries as root: loading eBPF
        // needs it.
        println!("xtask: not root: test binaries will run through sudo");
        cmd.env("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER", "sudo -E");
    }
    // Tests that cannot run here (not root, a tool missing) append to this
    // file; the list is printed whether the tests passed or not.
    let skip_log = ws.join("target/test-skips.txt");
    match std::fs::remove_file(&skip_log) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("removing {}", skip_log.display()));
        }
        _ => {}
    }
    cmd.env(skip::SKIP_LOG_ENV, &skip_log);
    let status = cmd.status().context("running cargo test")?;
    let skips = skip::read_log(&skip_log).with_context(|| format!("reading {}", skip_log.display()))?;
    println!("xtask: {}", skip::summary(&skips));
    if !status.success() {
        bail!("tests failed ({status})");
    }
    let host = start.elapsed();
    if host_only || !extra.is_empty() {
        println!("xtask: host tests passed in {:.0} s (kernel matrix not run)", host.as_secs_f64());
        return Ok(());
    }
    println!(
        "xtask: host tests passed in {:.0} s; now the kernel matrix (cargo xtask vm-test)",
        host.as_secs_f64()
    );
    vm_test(ws, vec![], vec![], None)?;
    println!("xtask: all tests passed in {:.0} s", start.elapsed().as_secs_f64());
    Ok(())
}
