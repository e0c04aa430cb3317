//! Running commands on other kernels: stock Debian cloud kernels booted
//! under qemu with software emulation (TCG; no KVM needed).
//!
//! - [`ensure_kernel`] ([`packages`]) downloads a kernel package with a
//!   private apt configuration (the system's apt configuration and state are
//!   neither read nor written) and keeps its `vmlinuz` under
//!   `target/vm/kernels/`: later runs need no network;
//! - [`run`] packs busybox, the requested host files and the shared libraries
//!   they load into an initramfs ([`initramfs`]), boots it ([`qemu`]), runs a
//!   shell script and returns its output and exit status.
//!
//! In the VM, `/init` (PID 1) mounts proc, sysfs, devtmpfs, tracefs, debugfs,
//! bpffs and cgroup2, brings up `lo`, then runs the script on the second
//! serial port. The kernel's console is the first one and goes to a separate
//! log, so the script's output carries no kernel messages.
mod initramfs;
mod packages;
mod qemu;

use std::{
    fmt, fs,
    path::{Path, PathBuf},
    str::FromStr,
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{bail, Context as _, Result};

pub use initramfs::find_in_path;
pub use packages::ensure_kernel;

/// Host tools the VMs need: (command that proves it is installed, package).
const TOOLS: &[(&str, &str)] = &[("qemu-system-x86_64", "qemu-system-x86"), ("busybox", "busybox-static")];

/// The kernels we test on: the current kernel of Debian 11, 12 and 13.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KernelVersion {
    V5_10,
    V6_1,
    V6_12,
}

impl KernelVersion {
    pub const ALL: [KernelVersion; 3] = [KernelVersion::V5_10, KernelVersion::V6_1, KernelVersion::V6_12];

    /// "6.1".
    pub fn as_str(self) -> &'static str {
        match self {
            KernelVersion::V5_10 => "5.10",
            KernelVersion::V6_1 => "6.1",
            KernelVersion::V6_12 => "6.12",
        }
    }

    /// The Debian release whose kernel this is.
    pub fn suite(self) -> &'static str {
        match self {
            KernelVersion::V5_10 => "bullseye",
            KernelVersion::V6_1 => "bookworm",
            KernelVersion::V6_12 => "trixie",
        }
    }
}

impl fmt::Display for KernelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KernelVersion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        KernelVersion::ALL.into_iter().find(|v| v.as_str() == s || v.suite() == s).ok_or_else(|| {
            let all: Vec<&str> = KernelVersion::ALL.iter().map(|v| v.as_str()).collect();
            format!("unknown kernel `{s}` (known: {})", all.join(", "))
        })
    }
}

/// A kernel ready to boot.
#[derive(Clone, Debug)]
pub struct Kernel {
    pub version: KernelVersion,
    /// What `uname -r` says in the guest, e.g. "6.1.0-56-cloud-amd64".
    pub release: String,
    /// The Debian package and its version, e.g.
    /// "linux-image-6.1.0-56-cloud-amd64 6.1.192-2".
    pub package: String,
    pub vmlinuz: PathBuf,
    /// The kernel's build configuration (`/boot/config-*`).
    #[allow(
        dead_code,
        reason = "for scripts and debugging: which CONFIG_ a kernel has; nothing reads it yet"
    )]
    pub config: PathBuf,
}

/// What to run in a VM.
#[derive(Clone, Debug)]
pub struct Guest {
    /// (host path, guest path). Directories are copied recursively (their
    /// symlinks stay symlinks); a file given directly is followed if it is a
    /// symlink. The shared libraries and loader of dynamically linked ELF
    /// files are added at their host paths.
    pub files: Vec<(PathBuf, PathBuf)>,
    /// Run by busybox `sh` as a child of PID 1, in `/`, with stdin from
    /// /dev/null and stdout and stderr on a tty.
    pub script: String,
    /// For the whole run, boot included.
    pub timeout: Duration,
    pub memory_mb: u32,
    pub cpus: u32,
    /// Print the script's output lines as they arrive (they are returned
    /// too).
    pub echo: bool,
}

impl Guest {
    /// A script with no files, 5 minutes, 2 GiB, 1 CPU.
    ///
    /// One CPU: with two, TCG (qemu 7.2) sometimes leaves a CPU looping on
    /// a stale translation of code the kernel patched from the other CPU
    /// (a static key flipped when the first tracepoint program attaches):
    /// a soft lockup at a 5-byte nop that never ends. One emulated CPU is
    /// also one host thread, so VMs run side by side without starving each
    /// other.
    pub fn new(script: impl Into<String>) -> Self {
        Guest {
            files: Vec::new(),
            script: script.into(),
            timeout: Duration::from_secs(300),
            memory_mb: 2048,
            cpus: 1,
            echo: false,
        }
    }

    /// Adds a host file or directory at the same absolute path in the guest
    /// (so paths compiled into test binaries still hold).
    pub fn file(mut self, host: impl AsRef<Path>) -> Result<Self> {
        let host = absolute(host.as_ref())?;
        self.files.push((host.clone(), host));
        Ok(self)
    }

    /// Adds a host file or directory at an absolute guest path.
    pub fn file_at(mut self, host: impl AsRef<Path>, guest: impl AsRef<Path>) -> Result<Self> {
        let guest = guest.as_ref();
        if !guest.is_absolute() {
            bail!("guest path {} is not absolute", guest.display());
        }
        self.files.push((absolute(host.as_ref())?, guest.to_path_buf()));
        Ok(self)
    }
}

/// What a VM run gave.
#[derive(Clone, Debug)]
pub struct VmOutput {
    /// The script's stdout and stderr, interleaved as written.
    pub output: String,
    /// The script's exit status (128 + n when killed by signal n).
    pub status: i32,
    /// From starting qemu to starting the script.
    pub boot_secs: f64,
    /// From starting qemu to its exit.
    pub total_secs: f64,
    /// The kernel's console (messages of level error and worse, and those of
    /// `/init` before the script).
    #[allow(dead_code, reason = "errors carry its tail already; kept for callers that want all of it")]
    pub console: String,
}

/// Installs qemu and busybox if missing.
pub fn ensure_tools() -> Result<()> {
    crate::setup::packages(TOOLS)
}

fn vm_dir(ws: &Path) -> PathBuf {
    ws.join("target").join("vm")
}

fn absolute(path: &Path) -> Result<PathBuf> {
    if path.is_absolute() {
        Ok(path.to_path_buf())
    } else {
        Ok(std::env::current_dir()?.join(path))
    }
}

/// Runs `guest` on `kernel`. Each run has its own directory
/// `target/vm/run-<pid>-<n>/` (initramfs, console log), removed afterwards
/// unless FDTRACE_VM_KEEP is set: runs can go in parallel.
pub fn run(ws: &Path, kernel: &Kernel, guest: &Guest) -> Result<VmOutput> {
    static RUNS: AtomicU32 = AtomicU32::new(0);
    let n = RUNS.fetch_add(1, Ordering::Relaxed);
    let dir = vm_dir(ws).join(format!("run-{}-{n}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let _cleanup = RemoveOnDrop(dir.clone());
    // In the markers, so that no output of the script can be taken for them.
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let token = format!("{:x}{n:x}{nanos:x}", std::process::id());
    let initrd = dir.join("initrd.cpio");
    initramfs::build(&initrd, guest, &token).context("building the initramfs")?;
    qemu::boot(kernel, guest, &dir, &initrd, &token)
        .with_context(|| format!("running the script on kernel {} ({})", kernel.version, kernel.release))
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if std::env::var_os("FDTRACE_VM_KEEP").is_none() {
            let _ = fs::remove_dir_all(&self.0);
        } else {
            eprintln!("xtask: FDTRACE_VM_KEEP: keeping {}", self.0.display());
        }
    }
}

fn start_marker(token: &str) -> String {
    format!("FDTRACE_VM_START_{token}")
}

fn exit_marker(token: &str) -> String {
    format!("FDTRACE_VM_EXIT_{token}=")
}

/// `cargo xtask vm-run`: boots the kernel, runs `script` with `files`
/// (`HOST[:GUEST]`), prints its output as it comes; returns its exit status.
pub fn vm_run(
    ws: &Path,
    version: KernelVersion,
    files: &[String],
    script: &str,
    timeout: Duration,
    memory_mb: u32,
) -> Result<i32> {
    ensure_tools()?;
    let kernel = ensure_kernel(ws, version)?;
    let mut guest = Guest::new(script);
    guest.timeout = timeout;
    guest.memory_mb = memory_mb;
    guest.echo = true;
    for f in files {
        guest = match f.split_once(':') {
            Some((host, g)) => guest.file_at(host, g)?,
            None => guest.file(f)?,
        };
    }
    let out = run(ws, &kernel, &guest)?;
    eprintln!(
        "xtask: kernel {version} ({}): script started {:.1} s after qemu, exited with status {}; {:.1} s in all",
        kernel.release, out.boot_secs, out.status, out.total_secs
    );
    Ok(out.status)
}
