//! Running commands on other kernels: stock Debian cloud kernels booted
//! under qemu with software emulation (TCG; no KVM needed).
//!
//! - [`ensure_kernel`] downloads a kernel package with a private apt
//!   configuration (the system's apt configuration and state are neither read
//!   nor written) and keeps its `vmlinuz` under `target/vm/kernels/`: later
//!   runs need no network;
//! - [`run`] packs busybox, the requested host files and the shared libraries
//!   they load into an initramfs, boots it, runs a shell script and returns
//!   its output and exit status.
//!
//! In the VM, `/init` (PID 1) mounts proc, sysfs, devtmpfs, tracefs, debugfs,
//! bpffs and cgroup2, brings up `lo`, then runs the script on the second
//! serial port. The kernel's console is the first one and goes to a separate
//! log, so the script's output carries no kernel messages.
#![allow(dead_code)] // the rest of the API is for the kernel matrix tests

use std::{
    collections::BTreeMap,
    fmt,
    fs::{self, File},
    io::{BufRead as _, BufReader, BufWriter, Write as _},
    os::unix::fs::PermissionsExt as _,
    path::{Component, Path, PathBuf},
    process::{Child, Command, Stdio},
    str::FromStr,
    sync::{
        atomic::{AtomicU32, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{bail, Context as _, Result};

use crate::sh;

/// Host tools the VMs need: (command that proves it is installed, package).
const TOOLS: &[(&str, &str)] = &[("qemu-system-x86_64", "qemu-system-x86"), ("busybox", "busybox-static")];

const MIRROR: &str = "http://deb.debian.org/debian";
const SECURITY_MIRROR: &str = "http://deb.debian.org/debian-security";
/// Holds the bullseye, bookworm and trixie signing keys (package
/// debian-archive-keyring).
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
/// Its candidate version depends on the suite's current cloud kernel image.
const META_PACKAGE: &str = "linux-image-cloud-amd64";

/// `quiet loglevel=3`: only errors on the console; `panic=-1` with qemu's
/// `-no-reboot`: a panic ends qemu at once.
const KERNEL_CMDLINE: &str = "console=ttyS0 panic=-1 quiet loglevel=5 rdinit=/init";
/// Where the script is in the guest.
const SCRIPT_PATH: &str = "/fdtrace-vm/script.sh";
/// Lines of console output an error shows.
const TAIL_LINES: usize = 50;

/// Host paths that are symlinks on merged-/usr systems (`/lib` → `usr/lib`):
/// reproduced in the guest so that files land where the host has them.
const TOP_LEVEL_LINKS: &[&str] = &["bin", "sbin", "lib", "lib32", "lib64", "libx32"];

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
    pub console: String,
}

/// Installs qemu and busybox if missing.
pub fn ensure_tools() -> Result<()> {
    crate::setup::packages(TOOLS)
}

fn vm_dir(ws: &Path) -> PathBuf {
    ws.join("target").join("vm")
}

/// The kernel of `version`, downloaded (package lists, .deb, `vmlinuz`) into
/// `target/vm/` unless there already. To take a newer kernel, remove
/// `target/vm/kernels/<version>`.
pub fn ensure_kernel(ws: &Path, version: KernelVersion) -> Result<Kernel> {
    let dir = vm_dir(ws).join("kernels").join(version.as_str());
    if let Some(kernel) = cached_kernel(&dir, version) {
        println!("xtask: kernel {version} cached ({})", kernel.package);
        return Ok(kernel);
    }
    let apt = Apt::new(ws, version.suite())?;
    let mut fresh = false;
    if !apt.has_lists() {
        apt.update()?;
        fresh = true;
    }
    let (deb, package) = loop {
        let (name, pkg_version) = apt.resolve(version)?;
        match apt.download(&name, &pkg_version) {
            Ok(deb) => break (deb, format!("{name} {pkg_version}")),
            // Stale lists name a package the mirror no longer has.
            Err(e) if !fresh => {
                println!("xtask: {e:#}; refreshing the {} package lists", version.suite());
                apt.update()?;
                fresh = true;
            }
            Err(e) => return Err(e),
        }
    };
    extract_kernel(&deb, &package, &dir)?;
    let kernel = cached_kernel(&dir, version).with_context(|| format!("{} is incomplete", dir.display()))?;
    println!("xtask: kernel {version} ready: {} ({})", kernel.package, kernel.vmlinuz.display());
    Ok(kernel)
}

fn cached_kernel(dir: &Path, version: KernelVersion) -> Option<Kernel> {
    let read = |name: &str| fs::read_to_string(dir.join(name)).ok().map(|s| s.trim().to_string());
    let vmlinuz = dir.join("vmlinuz");
    if !vmlinuz.is_file() {
        return None;
    }
    Some(Kernel {
        version,
        release: read("release")?,
        package: read("package")?,
        vmlinuz,
        config: dir.join("config"),
    })
}

/// Takes `boot/vmlinuz-*` and `boot/config-*` out of the package into `dir`
/// (built aside, then renamed: an interrupted run leaves no half kernel).
fn extract_kernel(deb: &Path, package: &str, dir: &Path) -> Result<()> {
    let name = dir.file_name().context("kernel directory")?.to_string_lossy();
    let tmp = dir.with_file_name(format!("{name}.tmp-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let unpacked = tmp.join("deb");
    sh(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&unpacked))?;
    let boot = unpacked.join("boot");
    let vmlinuz = fs::read_dir(&boot)
        .with_context(|| format!("{} has no boot/", deb.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("vmlinuz-"))
        .with_context(|| format!("no boot/vmlinuz-* in {}", deb.display()))?;
    let release = &vmlinuz["vmlinuz-".len()..];
    fs::rename(boot.join(&vmlinuz), tmp.join("vmlinuz"))?;
    fs::rename(boot.join(format!("config-{release}")), tmp.join("config"))
        .with_context(|| format!("no boot/config-{release} in {}", deb.display()))?;
    fs::write(tmp.join("release"), format!("{release}\n"))?;
    fs::write(tmp.join("package"), format!("{package}\n"))?;
    fs::remove_dir_all(&unpacked)?;
    let _ = fs::remove_dir_all(dir);
    fs::rename(&tmp, dir).with_context(|| format!("moving {} to {}", tmp.display(), dir.display()))
}

/// apt-get and apt-cache with a private configuration, lists and cache in
/// `target/vm/apt/<suite>/`; the .debs go to `target/vm/debs/`.
struct Apt {
    suite: &'static str,
    conf: PathBuf,
    lists: PathBuf,
    debs: PathBuf,
}

impl Apt {
    fn new(ws: &Path, suite: &'static str) -> Result<Self> {
        if !Path::new(KEYRING).is_file() {
            bail!("{KEYRING} is missing: install the debian-archive-keyring package");
        }
        let dir = vm_dir(ws).join("apt").join(suite);
        let lists = dir.join("state/lists");
        let debs = vm_dir(ws).join("debs");
        for d in [lists.join("partial"), dir.join("cache/archives/partial"), dir.join("empty"), debs.clone()]
        {
            fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        }
        let status = dir.join("state/status");
        if !status.exists() {
            fs::write(&status, "")?;
        }
        let sources: String = [
            (MIRROR, suite.to_string()),
            (MIRROR, format!("{suite}-updates")),
            (SECURITY_MIRROR, format!("{suite}-security")),
        ]
        .iter()
        .map(|(mirror, s)| format!("deb [signed-by={KEYRING}] {mirror} {s} main\n"))
        .collect();
        fs::write(dir.join("sources.list"), sources)?;
        // APT_CONFIG is read before anything else: it points apt away from
        // /etc/apt (its apt.conf.d hooks included) and /var/lib/apt.
        let d = dir.display();
        let conf = format!(
            "// Written by xtask/src/vm.rs: private apt configuration for downloading kernels\n\
             // (lists kept compressed, no binary caches: about 20 MB a suite).\n\
             Dir::Etc::main \"/dev/null\";\n\
             Dir::Etc::parts \"{d}/empty\";\n\
             Dir::Etc::sourcelist \"{d}/sources.list\";\n\
             Dir::Etc::sourceparts \"{d}/empty\";\n\
             Dir::Etc::preferences \"{d}/empty/preferences\";\n\
             Dir::Etc::preferencesparts \"{d}/empty\";\n\
             Dir::Etc::trusted \"{d}/empty/trusted.gpg\";\n\
             Dir::Etc::trustedparts \"{d}/empty\";\n\
             Dir::State \"{d}/state\";\n\
             Dir::State::lists \"{d}/state/lists\";\n\
             Dir::State::status \"{d}/state/status\";\n\
             Dir::Cache \"{d}/cache\";\n\
             Dir::Log \"{d}/log\";\n\
             APT::Architecture \"amd64\";\n\
             APT::Architectures {{ \"amd64\"; }};\n\
             Acquire::Languages \"none\";\n\
             Acquire::GzipIndexes \"true\";\n\
             Dir::Cache::pkgcache \"\";\n\
             Dir::Cache::srcpkgcache \"\";\n\
             APT::Sandbox::User \"root\";\n"
        );
        let conf_path = dir.join("apt.conf");
        fs::write(&conf_path, conf)?;
        Ok(Apt { suite, conf: conf_path, lists, debs })
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("APT_CONFIG", &self.conf);
        c
    }

    fn has_lists(&self) -> bool {
        fs::read_dir(&self.lists)
            .map(|d| d.filter_map(|e| e.ok()).any(|e| e.file_name().to_string_lossy().contains("_Packages")))
            .unwrap_or(false)
    }

    fn update(&self) -> Result<()> {
        println!("xtask: downloading the {} package lists", self.suite);
        sh(self.command("apt-get").args(["update", "-qq"]))
    }

    /// The current cloud kernel image of the suite (security updates
    /// included), as (package, version), read from the meta-package's
    /// dependency rather than hard-coded: old ABIs leave the mirrors.
    fn resolve(&self, version: KernelVersion) -> Result<(String, String)> {
        let out = self
            .command("apt-cache")
            .args(["show", "--no-all-versions", META_PACKAGE])
            .output()
            .context("running apt-cache")?;
        if !out.status.success() {
            bail!("apt-cache show {META_PACKAGE} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let depends = text
            .lines()
            .find_map(|l| l.strip_prefix("Depends:"))
            .with_context(|| format!("{META_PACKAGE} in {} has no Depends", self.suite))?;
        let prefix = format!("linux-image-{version}.");
        for dep in depends.split(',') {
            // "linux-image-6.1.0-56-cloud-amd64 (= 6.1.192-2)"
            let dep = dep.trim();
            let name = dep.split_whitespace().next().unwrap_or_default();
            if !name.starts_with(&prefix) {
                continue;
            }
            let pkg_version = dep
                .split_once("(=")
                .and_then(|(_, v)| v.split_once(')'))
                .map(|(v, _)| v.trim().to_string())
                .with_context(|| format!("no exact version in `{dep}`"))?;
            return Ok((name.to_string(), pkg_version));
        }
        bail!("{META_PACKAGE} in {} does not depend on a {prefix}* image: {depends}", self.suite)
    }

    fn download(&self, name: &str, pkg_version: &str) -> Result<PathBuf> {
        let deb = self.debs.join(format!("{name}_{}_amd64.deb", pkg_version.replace(':', "%3a")));
        if deb.is_file() {
            println!("xtask: {} cached", deb.display());
            return Ok(deb);
        }
        println!("xtask: downloading {name} {pkg_version}");
        sh(self.command("apt-get").current_dir(&self.debs).args([
            "download",
            "-qq",
            &format!("{name}={pkg_version}"),
        ]))?;
        if !deb.is_file() {
            bail!("apt-get download did not leave {}", deb.display());
        }
        Ok(deb)
    }
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
    build_initramfs(&initrd, guest, &token).context("building the initramfs")?;
    boot(kernel, guest, &dir, &initrd, &token)
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

/// PID 1. Its own messages go to the console (ttyS0), the script's to ttyS1
/// (in raw mode: no \r added, no echo).
fn init_script(token: &str) -> String {
    format!(
        r#"#!/bin/sh
# PID 1 of the fdtrace test VM, written by xtask/src/vm.rs.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tracefs tracefs /sys/kernel/tracing
mount -t debugfs debugfs /sys/kernel/debug
mount -t bpf bpf /sys/fs/bpf
mount -t cgroup2 cgroup2 /sys/fs/cgroup
ip link set lo up
hostname fdtrace-vm
stty -F /dev/ttyS1 raw -echo
exec </dev/null >/dev/ttyS1 2>&1
echo {start}
cd /
sh {SCRIPT_PATH}
echo {exit}$?
poweroff -f
"#,
        start = start_marker(token),
        exit = exit_marker(token),
    )
}

/// An initramfs entry.
enum Node {
    Dir(u32),
    /// Contents read from the host when the archive is written.
    HostFile(PathBuf, u32),
    Data(Vec<u8>, u32),
    Symlink(PathBuf),
    CharDev {
        major: u32,
        minor: u32,
    },
}

/// The initramfs being built: guest paths (relative to /) with the
/// directories they need. Paths are resolved through the symlinks already
/// in the tree, as the kernel would when unpacking.
#[derive(Default)]
struct Tree {
    nodes: BTreeMap<PathBuf, Node>,
}

impl Tree {
    /// `guest` with its parent directories resolved through the tree's
    /// symlinks; relative to /.
    fn resolve(&self, guest: &Path) -> Result<PathBuf> {
        let mut todo: Vec<Component> = guest.components().rev().collect();
        let mut cur = PathBuf::new();
        let mut links = 0;
        while let Some(c) = todo.pop() {
            match c {
                Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
                Component::ParentDir => {
                    cur.pop();
                }
                Component::Normal(name) => {
                    cur.push(name);
                    if todo.is_empty() {
                        break;
                    }
                    if let Some(Node::Symlink(target)) = self.nodes.get(&cur) {
                        links += 1;
                        if links > 40 {
                            bail!("too many levels of symlinks in {}", guest.display());
                        }
                        cur.pop();
                        if target.is_absolute() {
                            cur = PathBuf::new();
                        }
                        // `todo` is a stack: the target's first component on top.
                        todo.extend(target.components().rev());
                    }
                }
            }
        }
        if cur.as_os_str().is_empty() {
            bail!("{} is not a file path", guest.display());
        }
        Ok(cur)
    }

    /// Adds (or replaces) `guest`, creating its parent directories.
    fn add(&mut self, guest: &Path, node: Node) -> Result<PathBuf> {
        let path = self.resolve(guest)?;
        for parent in path.ancestors().skip(1).filter(|p| !p.as_os_str().is_empty()) {
            match self.nodes.get(parent) {
                None => {
                    self.nodes.insert(parent.to_path_buf(), Node::Dir(0o755));
                }
                Some(Node::Dir(_)) => {}
                Some(_) => bail!(
                    "cannot put {} in the initramfs: /{} is not a directory",
                    guest.display(),
                    parent.display()
                ),
            }
        }
        if matches!(node, Node::Dir(_)) && matches!(self.nodes.get(&path), Some(Node::Dir(_))) {
            return Ok(path);
        }
        self.nodes.insert(path.clone(), node);
        Ok(path)
    }

    /// Adds a host file or directory at `guest`, with the libraries of the
    /// ELF files among them.
    fn add_host(&mut self, host: &Path, guest: &Path) -> Result<()> {
        let meta = fs::metadata(host).with_context(|| format!("reading {}", host.display()))?;
        if meta.is_dir() {
            return self.add_host_dir(host, guest);
        }
        self.add(guest, Node::HostFile(host.to_path_buf(), meta.permissions().mode() & 0o7777))?;
        for lib in shared_libraries(host)? {
            let mode = fs::metadata(&lib)
                .with_context(|| format!("reading {}", lib.display()))?
                .permissions()
                .mode();
            self.add(&lib, Node::HostFile(lib.clone(), mode & 0o7777))?;
        }
        Ok(())
    }

    fn add_host_dir(&mut self, host: &Path, guest: &Path) -> Result<()> {
        let mode = fs::metadata(host)?.permissions().mode() & 0o7777;
        self.add(guest, Node::Dir(mode))?;
        for entry in fs::read_dir(host).with_context(|| format!("reading {}", host.display()))? {
            let entry = entry?;
            let (h, g) = (entry.path(), guest.join(entry.file_name()));
            if entry.file_type()?.is_symlink() {
                self.add(&g, Node::Symlink(fs::read_link(&h)?))?;
            } else {
                self.add_host(&h, &g)?;
            }
        }
        Ok(())
    }

    /// Writes the tree as an uncompressed cpio archive (newc format, what
    /// the kernel unpacks); returns its size.
    fn write(&self, path: &Path) -> Result<u64> {
        let mut out = CpioWriter { w: BufWriter::new(File::create(path)?), ino: 0, written: 0 };
        for (p, node) in &self.nodes {
            let name = p.to_string_lossy();
            match node {
                Node::Dir(mode) => out.entry(&name, 0o040000 | mode, 2, (0, 0), &[])?,
                Node::HostFile(host, mode) => {
                    let data = fs::read(host).with_context(|| format!("reading {}", host.display()))?;
                    out.entry(&name, 0o100000 | mode, 1, (0, 0), &data)?
                }
                Node::Data(data, mode) => out.entry(&name, 0o100000 | mode, 1, (0, 0), data)?,
                Node::Symlink(target) => {
                    out.entry(&name, 0o120777, 1, (0, 0), target.as_os_str().as_encoded_bytes())?
                }
                Node::CharDev { major, minor } => out.entry(&name, 0o020600, 1, (*major, *minor), &[])?,
            }
        }
        out.entry("TRAILER!!!", 0, 1, (0, 0), &[])?;
        out.w.flush()?;
        Ok(out.written)
    }
}

struct CpioWriter {
    w: BufWriter<File>,
    ino: u32,
    written: u64,
}

impl CpioWriter {
    fn entry(&mut self, name: &str, mode: u32, nlink: u32, rdev: (u32, u32), data: &[u8]) -> Result<()> {
        self.ino += 1;
        let fields = [
            self.ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime
            u32::try_from(data.len()).with_context(|| format!("{name} is too large for cpio"))?,
            0, // dev major
            0, // dev minor
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0, // check
        ];
        let mut header = String::from("070701");
        for f in fields {
            header.push_str(&format!("{f:08X}"));
        }
        self.put(header.as_bytes())?;
        self.put(name.as_bytes())?;
        self.put(&[0])?;
        self.pad()?;
        self.put(data)?;
        self.pad()
    }

    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.w.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> Result<()> {
        let n = (4 - self.written % 4) % 4;
        self.put(&[0; 3][..n as usize])
    }
}

/// The shared libraries and loader a dynamically linked x86-64 ELF file
/// loads (as `ldd` lists them); nothing for other files.
fn shared_libraries(path: &Path) -> Result<Vec<PathBuf>> {
    let mut head = [0u8; 20];
    let is_elf = File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok_and(|()| head.starts_with(b"\x7fELF"));
    // ET_EXEC or ET_DYN, EM_X86_64 (little-endian): not objects such as
    // the eBPF programs.
    let e_type = u16::from_le_bytes([head[16], head[17]]);
    let e_machine = u16::from_le_bytes([head[18], head[19]]);
    if !is_elf || !(e_type == 2 || e_type == 3) || e_machine != 62 {
        return Ok(Vec::new());
    }
    let out = Command::new("ldd").arg(path).output().context("running ldd")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || text.contains("statically linked") {
        return Ok(Vec::new());
    }
    let mut libs = Vec::new();
    for line in text.lines() {
        // "libz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x...)",
        // "/lib64/ld-linux-x86-64.so.2 (0x...)", "linux-vdso.so.1 (0x...)"
        let line = line.trim();
        let target = match line.split_once("=>") {
            Some((lib, rest)) => {
                let rest = rest.trim();
                if rest.starts_with("not found") {
                    bail!("{} needs {}, which ldd does not find", path.display(), lib.trim());
                }
                rest
            }
            None => line,
        };
        let file = target.split_whitespace().next().unwrap_or_default();
        if file.starts_with('/') {
            libs.push(PathBuf::from(file));
        }
    }
    Ok(libs)
}

pub fn find_in_path(program: &str) -> Result<PathBuf> {
    std::env::var_os("PATH")
        .and_then(|p| std::env::split_paths(&p).map(|d| d.join(program)).find(|f| f.is_file()))
        .with_context(|| format!("{program} is not in PATH"))
}

/// /init, busybox and its applets, a few /etc files, the script, then the
/// guest's files (which win over the rest).
fn build_initramfs(path: &Path, guest: &Guest, token: &str) -> Result<u64> {
    let mut tree = Tree::default();
    for name in TOP_LEVEL_LINKS {
        if let Ok(target) = fs::read_link(Path::new("/").join(name)) {
            tree.add(&Path::new("/").join(name), Node::Symlink(target))?;
        }
    }
    for (dir, mode) in [
        ("/dev", 0o755),
        ("/proc", 0o555),
        ("/sys", 0o555),
        ("/run", 0o755),
        ("/root", 0o700),
        ("/tmp", 0o1777),
    ] {
        tree.add(Path::new(dir), Node::Dir(mode))?;
    }
    // Init's stdin/stdout: the kernel opens it before running /init.
    tree.add(Path::new("/dev/console"), Node::CharDev { major: 5, minor: 1 })?;
    let busybox = find_in_path("busybox")?;
    tree.add_host(&busybox, Path::new("/bin/busybox"))?;
    let out = Command::new(&busybox).arg("--list-full").output().context("running busybox --list-full")?;
    if !out.status.success() {
        bail!("busybox --list-full failed");
    }
    for applet in String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.is_empty()) {
        // The list has bin/busybox itself.
        let link = Path::new("/").join(applet);
        if !tree.nodes.contains_key(&tree.resolve(&link)?) {
            tree.add(&link, Node::Symlink("/bin/busybox".into()))?;
        }
    }
    let etc: [(&str, &str); 4] = [
        (
            "/etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        ),
        ("/etc/group", "root:x:0:\nnogroup:x:65534:\n"),
        ("/etc/hosts", "127.0.0.1 localhost\n::1 localhost\n"),
        ("/etc/hostname", "fdtrace-vm\n"),
    ];
    for (file, text) in etc {
        tree.add(Path::new(file), Node::Data(text.as_bytes().to_vec(), 0o644))?;
    }
    tree.add(Path::new("/init"), Node::Data(init_script(token).into_bytes(), 0o755))?;
    tree.add(Path::new(SCRIPT_PATH), Node::Data(guest.script.clone().into_bytes(), 0o755))?;
    for (host, g) in &guest.files {
        tree.add_host(host, g)?;
    }
    tree.write(path)
}

/// What the reader thread passes on: a line of ttyS1, without its newline.
type Line = (Instant, Vec<u8>);

fn boot(kernel: &Kernel, guest: &Guest, dir: &Path, initrd: &Path, token: &str) -> Result<VmOutput> {
    let console_log = dir.join("console.log");
    let stderr_log = dir.join("qemu.stderr");
    let mut cmd = Command::new("qemu-system-x86_64");
    // /dev/kvm may exist and not work (nested virtualization): always TCG.
    cmd.args([
        "-accel",
        "tcg",
        "-cpu",
        "max",
        "-no-user-config",
        "-nodefaults",
        "-display",
        "none",
        "-no-reboot",
    ])
    .arg("-m")
    .arg(guest.memory_mb.to_string())
    .arg("-smp")
    .arg(guest.cpus.to_string())
    .arg("-kernel")
    .arg(&kernel.vmlinuz)
    .arg("-initrd")
    .arg(initrd)
    .arg("-append")
    .arg(KERNEL_CMDLINE)
    // ttyS0: the kernel's console; ttyS1: the script.
    .arg("-serial")
    .arg(format!("file:{}", console_log.display()))
    .args(["-serial", "stdio"])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(File::create(&stderr_log)?);
    let start = Instant::now();
    let mut child = cmd.spawn().context("starting qemu-system-x86_64")?;
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel::<Line>();
    let reader = thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        loop {
            let mut line = Vec::new();
            match r.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if line.last() == Some(&b'\n') {
                        line.pop();
                    }
                    if tx.send((Instant::now(), line)).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let (start_marker, exit_marker) = (start_marker(token), exit_marker(token));
    let deadline = start + guest.timeout;
    let mut boot_secs = None;
    let mut output = String::new();
    let mut status = None;
    let mut timed_out = false;
    let mut locked_up = None;
    while status.is_none() {
        let wait = deadline.saturating_duration_since(Instant::now()).min(LOCKUP_POLL);
        let (at, bytes) = match rx.recv_timeout(wait) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {
                let console = fs::read(&console_log).unwrap_or_default();
                locked_up = stuck_task(&String::from_utf8_lossy(&console), LOCKUP_LIMIT_SECS);
                if locked_up.is_some() {
                    break;
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                timed_out = true;
                break;
            }
            // qemu closed its stdout: it has exited.
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let text = String::from_utf8_lossy(&bytes);
        let line = text.strip_suffix('\r').unwrap_or(&text);
        if boot_secs.is_none() {
            if line.contains(&start_marker) {
                boot_secs = Some((at - start).as_secs_f64());
            }
            continue;
        }
        match line.find(&exit_marker) {
            Some(i) => {
                // The script's last line had no newline.
                output.push_str(&line[..i]);
                if guest.echo && i > 0 {
                    println!("{}", &line[..i]);
                }
                let code = line[i + exit_marker.len()..].trim();
                status = Some(code.parse::<i32>().with_context(|| format!("bad exit status `{code}`"))?);
            }
            None => {
                output.push_str(line);
                output.push('\n');
                if guest.echo {
                    println!("{line}");
                }
            }
        }
    }
    // After the marker, /init powers off; do not wait long for it.
    let grace = if timed_out || locked_up.is_some() { Duration::ZERO } else { Duration::from_secs(10) };
    let qemu_status = wait_or_kill(&mut child, grace);
    let total_secs = start.elapsed().as_secs_f64();
    let _ = reader.join();
    let console =
        fs::read(&console_log).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    match (status, boot_secs) {
        (Some(status), Some(boot_secs)) => Ok(VmOutput { output, status, boot_secs, total_secs, console }),
        _ => {
            let why = if let Some(task) = &locked_up {
                format!(
                    "the guest kernel locked up: {task} stuck for over {LOCKUP_LIMIT_SECS} s (qemu killed)"
                )
            } else if timed_out {
                format!("the script did not finish within {} s (qemu killed)", guest.timeout.as_secs_f64())
            } else {
                format!("qemu exited ({qemu_status}) before the script finished")
            };
            let qemu_stderr = fs::read_to_string(&stderr_log).unwrap_or_default();
            let started = match boot_secs {
                Some(s) => format!("the script started {s:.1} s after qemu"),
                None => "the script never started".to_string(),
            };
            bail!(
                "{why}; {started}\n--- last {TAIL_LINES} lines of the kernel console ---\n{}\n--- last {TAIL_LINES} lines of the script's output ---\n{}\n--- qemu's stderr ---\n{}",
                tail(&console, TAIL_LINES),
                tail(&output, TAIL_LINES),
                qemu_stderr.trim()
            )
        }
    }
}

/// How often the console is checked for a lockup while the script is quiet.
const LOCKUP_POLL: Duration = Duration::from_secs(15);
/// A task reported in soft lockup for this long (guest time) will not
/// recover: the run is over.
const LOCKUP_LIMIT_SECS: f64 = 180.0;

/// The task (`comm:pid on CPU#n`) the kernel has reported stuck in soft
/// lockups for more than `limit` seconds of its uptime, if any. Under
/// emulation short lockups happen and pass; this one did not.
fn stuck_task(console: &str, limit: f64) -> Option<String> {
    // "[  152.388688] watchdog: BUG: soft lockup - CPU#1 stuck for 22s! [followed_childr:189]"
    let mut first_seen: std::collections::HashMap<String, f64> = std::collections::HashMap::new();
    for line in console.lines() {
        let Some(rest) = line.trim_start().strip_prefix('[') else { continue };
        let Some((ts, msg)) = rest.split_once(']') else { continue };
        let Ok(ts) = ts.trim().parse::<f64>() else { continue };
        let Some(i) = msg.find("soft lockup - ") else { continue };
        let msg = &msg[i + "soft lockup - ".len()..];
        let cpu = msg.split_whitespace().next().unwrap_or("?");
        let Some(task) = msg.rsplit_once('[').map(|(_, t)| t.trim_end_matches(']')) else { continue };
        let key = format!("{task} on {cpu}");
        let since = *first_seen.entry(key.clone()).or_insert(ts);
        if ts - since > limit {
            return Some(key);
        }
    }
    None
}

/// Waits up to `grace` for the child to exit, then kills it; describes how
/// it ended.
fn wait_or_kill(child: &mut Child, grace: Duration) -> String {
    let until = Instant::now() + grace;
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return s.to_string(),
            Ok(None) if Instant::now() < until => thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                return match child.wait() {
                    Ok(s) => format!("killed: {s}"),
                    Err(e) => format!("killed; wait failed: {e}"),
                };
            }
        }
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
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

#[cfg(test)]
mod tests {
    use super::stuck_task;

    #[test]
    fn a_lockup_that_lasts_is_found() {
        let line = |ts: f64, cpu: u32, task: &str| {
            format!("[{ts:>12.6}] watchdog: BUG: soft lockup - CPU#{cpu} stuck for 22s! [{task}]\n")
        };
        let mut console = String::from("[    1.000000] Linux version 5.10\n");
        // A passing lockup, and one task stuck on CPU#1 from 40 s on.
        console += &line(30.0, 0, "fdtrace:254");
        for i in 0..10 {
            console += &line(40.0 + 28.0 * f64::from(i), 1, "followed_childr:181");
        }
        console += "[  300.000000] RIP: 0010:syscall_exit_to_user_mode+0xb3/0x140\n";
        assert_eq!(stuck_task(&console, 180.0).as_deref(), Some("followed_childr:181 on CPU#1"));
        assert_eq!(stuck_task(&console, 300.0), None);
        assert_eq!(stuck_task("[    2.0] random: crng init done\n", 1.0), None);
    }
}
