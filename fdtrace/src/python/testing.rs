//! Pythons for the unit tests: pyenv's builds (`pyenv root`/versions,
//! which have DWARF) and Debian's `/usr/bin/python3.11` (none), and a
//! Python program started for a test, killed when the test ends.
use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    time::{Duration, Instant},
};

/// The minor versions fdtrace reads, each looked for in pyenv.
pub const MINORS: [u32; 4] = [10, 11, 12, 13];

/// `pyenv root` (or `$PYENV_ROOT`, or `~/.pyenv`).
pub fn pyenv_root() -> Option<PathBuf> {
    if let Ok(out) = Command::new("pyenv").arg("root").output() {
        let root = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && !root.is_empty() {
            return Some(PathBuf::from(root));
        }
    }
    std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".pyenv")))
        .filter(|p| p.is_dir())
}

/// A pyenv build: versions/`major.minor.*` (the newest patch level).
#[derive(Clone, Debug)]
pub struct Pyenv {
    /// "3.11.7", from its directory's name.
    pub version: String,
    pub dir: PathBuf,
    pub major: u32,
    pub minor: u32,
}

impl Pyenv {
    pub fn python(&self) -> PathBuf {
        self.dir.join(format!("bin/python{}.{}", self.major, self.minor))
    }

    /// `lib/libpython3.X.so.1.0` (pyenv builds are shared).
    pub fn library(&self) -> PathBuf {
        self.dir.join(format!("lib/libpython{}.{}.so.1.0", self.major, self.minor))
    }

    pub fn patch(&self) -> u32 {
        self.version.rsplit('.').next().and_then(|p| p.parse().ok()).expect("versions/X.Y.Z")
    }
}

/// The pyenv build of `major.minor`, if installed.
pub fn pyenv(major: u32, minor: u32) -> Option<Pyenv> {
    let versions = pyenv_root()?.join("versions");
    let prefix = format!("{major}.{minor}.");
    let mut found: Vec<(u32, String)> = std::fs::read_dir(&versions)
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|name| {
            let patch = name.strip_prefix(&prefix)?.parse::<u32>().ok()?;
            Some((patch, name))
        })
        .collect();
    found.sort();
    let (_, version) = found.pop()?;
    Some(Pyenv { dir: versions.join(&version), version, major, minor })
}

/// The pyenv builds of 3.10–3.13 present; each missing one is a skip
/// said, and none at all a skip that fails in CI.
pub fn pythons(test: &str) -> Vec<Pyenv> {
    let found: Vec<Pyenv> = MINORS
        .iter()
        .filter_map(|&minor| {
            let p = pyenv(3, minor).filter(|p| p.python().exists());
            if p.is_none() {
                partly_skipped(test, &format!("no pyenv build of 3.{minor} (pyenv install 3.{minor})"));
            }
            p
        })
        .collect();
    if found.is_empty() {
        skipped(test, "no pyenv Python 3.10–3.13 (pyenv install 3.12)");
    }
    found
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A test that cannot run here: said on the terminal and in
/// `$FDTRACE_SKIP_LOG` (as `tests/src/skip.rs` does); with `CI=true`, a
/// failure.
pub fn skipped(test: &str, why: &str) {
    assert!(!in_ci(), "{test}: {why}; CI=true, so this is a failure, not a skip");
    partly_skipped(test, why);
}

/// A part of a test that cannot run here (one Python version of several):
/// said, and logged, but not a failure in CI.
pub fn partly_skipped(test: &str, why: &str) {
    use std::io::Write as _;
    // Straight to the terminal: eprintln! output is captured in tests.
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
    if let Some(log) = std::env::var_os("FDTRACE_SKIP_LOG") {
        let line = format!("{test}\t{why}\n");
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&log);
        if let Err(e) = file.and_then(|mut f| f.write_all(line.as_bytes())) {
            panic!("{test}: cannot record its skip in $FDTRACE_SKIP_LOG: {e}");
        }
    }
}

/// A temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("fdtrace-py-{}-{n}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("creating a temporary directory");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A Python program run for a test: killed and reaped on drop.
pub struct Running {
    pub child: Child,
    /// Its stdin and stdout, kept open: the program can block reading
    /// one and write to the other.
    _pipes: (Option<ChildStdin>, BufReader<ChildStdout>),
}

impl Running {
    /// Runs `python script`, and waits for it to print "ready".
    pub fn start(python: &Path, script: &Path) -> Running {
        let mut child = Command::new(python)
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .env_remove("PYTHONPATH")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", python.display()));
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let mut line = String::new();
        let read = stdout.read_line(&mut line);
        let running = Running { child, _pipes: (stdin, stdout) };
        read.expect("reading the program's stdout");
        assert_eq!(line.trim(), "ready", "{} {}: did not start", python.display(), script.display());
        running
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until thread `tid` is blocked in syscall `nr` with these
    /// first arguments (`/proc/PID/task/TID/syscall`: "nr arg0 arg1...",
    /// hex; `None` matches any).
    pub fn wait_in_syscall(&self, tid: u32, nr: u32, args: &[Option<u64>]) {
        let path = format!("/proc/{}/task/{tid}/syscall", self.pid());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let fields: Vec<&str> = text.split_whitespace().collect();
            let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok();
            let matches = fields.first() == Some(&nr.to_string().as_str())
                && args
                    .iter()
                    .enumerate()
                    .all(|(i, want)| want.is_none() || fields.get(i + 1).and_then(|f| hex(f)) == *want);
            if matches {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "thread {tid} never blocked in syscall {nr} {args:?}: {text:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The process's threads other than the main one.
    pub fn other_threads(&self) -> Vec<u32> {
        let pid = self.pid();
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("reading /proc/PID/task");
        tasks.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).filter(|&t| t != pid).collect()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
