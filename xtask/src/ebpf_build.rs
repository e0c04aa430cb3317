//! Building `fdtrace-ebpf`, shared by `cargo xtask build-ebpf` and
//! `fdtrace/build.rs` (included there with `#[path]`), so both produce the
//! same object in the same place and whichever runs second costs nothing.
//!
//! The eBPF crate needs a nightly toolchain (for `-Z build-std=core`) with
//! its `rust-src` component, and `bpf-linker` built against that
//! toolchain's LLVM. `check_prerequisites` says which is missing and which
//! command installs it; the xtask installs them.
#![allow(dead_code, reason = "each includer uses a different part")]

use std::{
    env,
    ffi::OsString,
    fmt,
    path::{Path, PathBuf},
    process::Command,
};

/// The toolchain that builds the eBPF object (override: FDTRACE_EBPF_TOOLCHAIN).
pub fn toolchain() -> String {
    env::var("FDTRACE_EBPF_TOOLCHAIN").unwrap_or_else(|_| "nightly".into())
}

pub const BPF_TARGET: &str = "bpfel-unknown-none";

/// Where the eBPF build keeps its artifacts: `<workspace>/target/ebpf`.
pub fn target_dir(workspace: &Path) -> PathBuf {
    workspace.join("target").join("ebpf")
}

/// The built object.
pub fn object_path(workspace: &Path) -> PathBuf {
    target_dir(workspace).join(BPF_TARGET).join("release").join("fdtrace")
}

/// Something the eBPF build needs that this machine lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Missing {
    Rustup,
    Toolchain(String),
    RustSrc(String),
    BpfLinker(String),
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Missing::Rustup => write!(f, "rustup is not installed (https://rustup.rs)"),
            Missing::Toolchain(t) => write!(f, "the `{t}` Rust toolchain is not installed"),
            Missing::RustSrc(t) => write!(f, "the rust-src component of the `{t}` toolchain is missing"),
            Missing::BpfLinker(why) => write!(f, "bpf-linker is not usable: {why}"),
        }
    }
}

impl Missing {
    /// The command that installs it (`cargo xtask build-ebpf` installs all).
    pub fn remedy(&self) -> String {
        match self {
            Missing::Rustup => "install rustup (https://rustup.rs)".into(),
            Missing::Toolchain(t) => format!("rustup toolchain install {t} --component rust-src"),
            Missing::RustSrc(t) => format!("rustup component add rust-src --toolchain {t}"),
            // It must be built against the toolchain's LLVM: the xtask knows how.
            Missing::BpfLinker(_) => "cargo xtask build-ebpf".into(),
        }
    }
}

/// The opt-out, named as aya-build names it: `AYA_BUILD_SKIP=1` (or
/// `true`) builds fdtrace with a stub instead of its eBPF programs.
pub const SKIP_ENV: &str = "AYA_BUILD_SKIP";

/// Whether the opt-out is set.
pub fn skip_requested() -> bool {
    env::var(SKIP_ENV).is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// What to watch so that a build with a stub is redone once the missing
/// pieces are installed: the directories of PATH and `$CARGO_HOME/bin`
/// (bpf-linker), rustup's `update-hashes` (a toolchain installed) and the
/// eBPF toolchain's component list (rust-src added). Existing paths only:
/// cargo reruns a build script on every build for a path that is missing.
pub fn install_locations() -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> =
        env::var_os("PATH").map(|p| env::split_paths(&p).collect()).unwrap_or_default();
    paths.push(cargo_home().join("bin"));
    let rustup_home = env::var_os("RUSTUP_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".rustup")));
    if let Some(home) = rustup_home {
        paths.push(home.join("update-hashes"));
    }
    if let Some(sysroot) = sysroot(&toolchain()) {
        paths.push(sysroot.join("lib/rustlib/components"));
    }
    paths.retain(|p| p.is_absolute() && p.exists());
    paths.sort();
    paths.dedup();
    paths
}

fn cargo_home() -> PathBuf {
    env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"))
}

/// bpf-linker: on PATH, or in `$CARGO_HOME/bin`.
pub fn bpf_linker() -> PathBuf {
    let in_cargo_home = cargo_home().join("bin").join("bpf-linker");
    if in_cargo_home.exists() {
        return in_cargo_home;
    }
    PathBuf::from("bpf-linker")
}

fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The sysroot of the eBPF toolchain, if it is installed.
pub fn sysroot(toolchain: &str) -> Option<PathBuf> {
    output(Command::new("rustup").args(["run", toolchain, "rustc", "--print", "sysroot"])).map(PathBuf::from)
}

/// Everything the eBPF build needs that is missing, in install order.
pub fn check_prerequisites() -> Vec<Missing> {
    let tc = toolchain();
    if output(Command::new("rustup").arg("--version")).is_none() {
        return vec![Missing::Rustup];
    }
    let Some(sysroot) = sysroot(&tc) else {
        return vec![Missing::Toolchain(tc)];
    };
    let mut missing = vec![];
    if !sysroot.join("lib/rustlib/src/rust/library/core").is_dir() {
        missing.push(Missing::RustSrc(tc));
    }
    if let Err(why) = linker_works() {
        missing.push(Missing::BpfLinker(why));
    }
    missing
}

/// Runs `bpf-linker --version`: catches a missing binary and one whose
/// LLVM library moved away.
pub fn linker_works() -> Result<String, String> {
    let linker = bpf_linker();
    match Command::new(&linker).arg("--version").output() {
        Ok(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).trim().to_string()),
        Ok(o) => Err(format!(
            "`{} --version` failed: {}",
            linker.display(),
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Err(format!("{} not found ({e})", linker.display())),
    }
}

/// The command that builds the eBPF object.
pub fn build_command(workspace: &Path) -> Command {
    cargo_command(workspace, "build", &target_dir(workspace))
}

/// `cargo SUBCOMMAND` (build, clippy) for the eBPF crate with its
/// toolchain, target and flags.
pub fn cargo_command(workspace: &Path, subcommand: &str, target_dir: &Path) -> Command {
    let tc = toolchain();
    let mut cmd = Command::new("rustup");
    cmd.current_dir(workspace).args([
        "run",
        &tc,
        "cargo",
        subcommand,
        "--package",
        "fdtrace-ebpf",
        "--bins",
        "--release",
    ]);
    cmd.args(["--target", BPF_TARGET, "-Z", "build-std=core", "--target-dir"]).arg(target_dir);
    let mut flags = OsString::new();
    for (i, flag) in
        ["--cfg=bpf_target_arch=\"x86_64\"", "-Cdebuginfo=2", "-Clink-arg=--btf"].iter().enumerate()
    {
        if i > 0 {
            flags.push("\x1f");
        }
        flags.push(flag);
    }
    cmd.env("CARGO_ENCODED_RUSTFLAGS", flags);
    // Settings of an outer cargo (when run from build.rs) must not leak in.
    for var in [
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTUP_TOOLCHAIN",
    ] {
        cmd.env_remove(var);
    }
    // Make bpf-linker findable even when ~/.cargo/bin is not on PATH.
    let linker_dir = cargo_home().join("bin");
    let path = env::var_os("PATH").unwrap_or_default();
    let mut paths: Vec<PathBuf> = env::split_paths(&path).collect();
    paths.push(linker_dir);
    if let Ok(joined) = env::join_paths(paths) {
        cmd.env("PATH", joined);
    }
    cmd
}
