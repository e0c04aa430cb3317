//! Launch mode: `fdtrace [options] -- CMD ARGS…` starts CMD and traces it
//! from its first instruction.
//!
//! fdtrace forks a child that blocks on a pipe before `execve`; the session
//! puts the child's pid in the kernel's traced set and takes the baseline,
//! then [`Launched::release`] lets it exec. Everything from the exec on —
//! the dynamic loader's opens, `main`'s first socket — is traced.
//!
//! Run through sudo (`SUDO_UID`/`SUDO_GID` set, fdtrace running as root),
//! CMD runs as the invoking user: supplementary groups, gid and uid are
//! dropped in the child before exec, and `HOME`, `USER` and `LOGNAME` are
//! set to that user's (from the passwd database); the rest of the
//! environment is what sudo passed.
use std::{
    ffi::{CStr, CString, OsStr},
    io,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
    path::{Path, PathBuf},
};

/// Why CMD could not be started. The exit code follows the shell's: 127
/// for a command that does not exist, 126 for one that cannot run.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// Not found on `$PATH` (or the path does not exist).
    #[error("{0}: command not found")]
    NotFound(String),
    /// execve failed (not executable, bad format, ...).
    #[error("{cmd}: cannot execute: {err}")]
    Exec { cmd: String, err: io::Error },
    /// Dropping to the sudo user failed in the child.
    #[error("{cmd}: cannot run as uid {uid}: {err}")]
    RunAs { cmd: String, uid: u32, err: io::Error },
    /// An argument holds a NUL byte.
    #[error("{0:?}: arguments cannot contain NUL bytes")]
    Nul(String),
    /// pipe/fork failed.
    #[error("starting {cmd}: {err}")]
    Spawn { cmd: String, err: io::Error },
}

impl LaunchError {
    /// The exit status a shell would give.
    pub fn exit_code(&self) -> u8 {
        match self {
            LaunchError::NotFound(_) => 127,
            LaunchError::Exec { err, .. } if err.raw_os_error() == Some(libc::ENOENT) => 127,
            _ => 126,
        }
    }
}

/// Who CMD runs as when fdtrace itself runs through sudo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
    /// From the passwd database, when the uid has an entry.
    pub name: Option<String>,
    pub home: Option<String>,
}

impl RunAs {
    /// `SUDO_UID`/`SUDO_GID` when fdtrace runs as root for another user.
    pub fn from_sudo(euid: u32, var: impl Fn(&str) -> Option<String>) -> Option<RunAs> {
        let uid: u32 = var("SUDO_UID")?.parse().ok()?;
        let gid: u32 = var("SUDO_GID")?.parse().ok()?;
        if euid != 0 || uid == 0 {
            return None;
        }
        let (name, home) = passwd(uid);
        Some(RunAs { uid, gid, name, home })
    }
}

/// The name and home directory of `uid`, if the passwd database has it.
fn passwd(uid: u32) -> (Option<String>, Option<String>) {
    let mut buf = vec![0u8; 16384];
    // SAFETY: zeroed passwd is a valid out-parameter.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: buffers are valid for their lengths; result points into pw.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr().cast(), buf.len(), &mut result) };
    if rc != 0 || result.is_null() {
        return (None, None);
    }
    // SAFETY: on success the fields are NUL-terminated strings in buf.
    let s = |p: *const libc::c_char| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
    (Some(s(pw.pw_name)), Some(s(pw.pw_dir)))
}

/// A command ready to start: resolved path, argv and envp as C strings,
/// built before forking so the child only makes syscalls.
#[derive(Debug)]
pub struct Command {
    /// As the user typed it (for messages).
    pub name: String,
    pub path: PathBuf,
    argv: Vec<CString>,
    envp: Vec<CString>,
    pub run_as: Option<RunAs>,
}

impl Command {
    /// Resolves `args[0]` like a shell does (a name with a `/` is a path,
    /// else the first executable file of that name on `$PATH`).
    pub fn new(args: &[String], run_as: Option<RunAs>) -> Result<Command, LaunchError> {
        let name = args.first().cloned().unwrap_or_default();
        let path = resolve(&name, std::env::var_os("PATH").as_deref())
            .ok_or_else(|| LaunchError::NotFound(name.clone()))?;
        let cstr =
            |s: &[u8]| CString::new(s).map_err(|_| LaunchError::Nul(String::from_utf8_lossy(s).into()));
        let argv = args.iter().map(|a| cstr(a.as_bytes())).collect::<Result<Vec<_>, _>>()?;
        let mut env: Vec<(Vec<u8>, Vec<u8>)> =
            std::env::vars_os().map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec())).collect();
        if let Some(r) = &run_as {
            let mut set = |k: &str, v: &str| {
                env.retain(|(key, _)| key != k.as_bytes());
                env.push((k.as_bytes().to_vec(), v.as_bytes().to_vec()));
            };
            if let Some(home) = &r.home {
                set("HOME", home);
            }
            if let Some(name) = &r.name {
                set("USER", name);
                set("LOGNAME", name);
            }
        }
        let envp = env
            .iter()
            .map(|(k, v)| cstr(&[k.as_slice(), b"=", v.as_slice()].concat()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Command { name, path, argv, envp, run_as })
    }

    /// The name the process will have (`comm`): the file name, at most 15
    /// bytes.
    pub fn comm(&self) -> String {
        let base = self.path.file_name().unwrap_or(OsStr::new(&self.name)).as_bytes();
        String::from_utf8_lossy(&base[..base.len().min(15)]).into_owned()
    }

    /// Forks the child, blocked before exec until [`Launched::release`].
    /// Call while fdtrace is single-threaded (before the runtime starts).
    pub fn spawn_blocked(&self) -> Result<Launched, LaunchError> {
        let spawn_err = |err| LaunchError::Spawn { cmd: self.name.clone(), err };
        let (go_r, go_w) = pipe().map_err(spawn_err)?;
        let (err_r, err_w) = pipe().map_err(spawn_err)?;
        let path = CString::new(self.path.as_os_str().as_bytes())
            .map_err(|_| LaunchError::Nul(self.path.display().to_string()))?;
        let mut argv: Vec<*const libc::c_char> = self.argv.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        let mut envp: Vec<*const libc::c_char> = self.envp.iter().map(|a| a.as_ptr()).collect();
        envp.push(std::ptr::null());
        let groups: Vec<libc::gid_t> = match &self.run_as {
            Some(r) => supplementary_groups(r),
            None => vec![],
        };
        // SAFETY: fork in a single-threaded process; the child below only
        // makes syscalls on memory prepared before the fork, then execs or
        // _exits.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(spawn_err(io::Error::last_os_error()));
        }
        if pid == 0 {
            let args = ChildArgs {
                go_r: go_r.as_raw_fd(),
                go_w: go_w.as_raw_fd(),
                err_r: err_r.as_raw_fd(),
                err_w: err_w.as_raw_fd(),
                path: &path,
                argv: &argv,
                envp: &envp,
                run_as: self.run_as.as_ref(),
                groups: &groups,
            };
            // SAFETY: the child of a fork of this single-threaded process;
            // everything it uses was built before the fork.
            unsafe { child(&args) }
        }
        drop(go_r);
        drop(err_w);
        Ok(Launched {
            pid: pid as u32,
            name: self.name.clone(),
            path: self.path.clone(),
            comm: self.comm(),
            uid: self.run_as.as_ref().map(|r| r.uid),
            go: Some(go_w),
            exec_err: Some(err_r),
            reaped: false,
        })
    }
}

/// The groups of the sudo user (for `setgroups`): all of theirs when the
/// passwd database names them, else only their primary group.
fn supplementary_groups(r: &RunAs) -> Vec<libc::gid_t> {
    let Some(name) = r.name.as_deref().and_then(|n| CString::new(n).ok()) else {
        return vec![r.gid];
    };
    let mut n: libc::c_int = 64;
    loop {
        let mut groups: Vec<libc::gid_t> = vec![0; n as usize];
        let mut got = n;
        // SAFETY: groups holds `got` entries.
        let rc = unsafe { libc::getgrouplist(name.as_ptr(), r.gid, groups.as_mut_ptr(), &mut got) };
        if rc >= 0 {
            groups.truncate(got as usize);
            return groups;
        }
        if got <= n || n > 65536 {
            return vec![r.gid];
        }
        n = got;
    }
}

/// What the forked child needs, all prepared before the fork.
struct ChildArgs<'a> {
    /// The go signal's pipe (read end, and the parent's write end to close).
    go_r: i32,
    go_w: i32,
    /// The exec error pipe (the parent's read end to close, and ours).
    err_r: i32,
    err_w: i32,
    path: &'a CStr,
    /// NULL-terminated.
    argv: &'a [*const libc::c_char],
    envp: &'a [*const libc::c_char],
    run_as: Option<&'a RunAs>,
    groups: &'a [libc::gid_t],
}

/// In the forked child: wait for the go, drop privileges, exec. Never
/// returns. Reports an exec failure's errno on `err_w` (close-on-exec, so
/// a successful exec closes it with nothing written).
///
/// # Safety
/// Call only in the child of a `fork` of a single-threaded process: it
/// makes only async-signal-safe calls, on memory prepared before the fork.
unsafe fn child(a: &ChildArgs) -> ! {
    // In the SAFETY comments below, "as above": plain syscalls on our own
    // fds and on memory that is valid in the child (copied with the
    // address space at fork).
    let errno = || {
        // SAFETY: errno is this thread's.
        unsafe { *libc::__errno_location() }
    };
    let report = |value: i32, code: i32| -> ! {
        // SAFETY: as above; `value` lives on this stack.
        unsafe {
            libc::write(a.err_w, (&value as *const i32).cast(), 4);
            libc::_exit(code)
        }
    };
    // SAFETY: as above.
    unsafe {
        libc::close(a.go_w);
        libc::close(a.err_r);
    }
    let mut b = 0u8;
    loop {
        // SAFETY: as above; one byte into `b`.
        let n = unsafe { libc::read(a.go_r, (&mut b as *mut u8).cast(), 1) };
        if n == 1 {
            break;
        }
        // fdtrace went away (or gave up): do not run untraced.
        if n == 0 || errno() != libc::EINTR {
            // SAFETY: as above.
            unsafe { libc::_exit(127) };
        }
    }
    // Rust ignores SIGPIPE; the command gets the default dispositions and
    // an empty signal mask, as a shell would give it.
    for sig in [libc::SIGPIPE, libc::SIGINT, libc::SIGTERM, libc::SIGQUIT] {
        // SAFETY: as above.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    // SAFETY: a zeroed sigset_t is a valid value to initialize.
    let mut empty: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above; `empty` is ours.
    unsafe {
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    }
    if let Some(r) = a.run_as {
        // SAFETY: as above; `groups` holds `len` entries.
        let dropped = unsafe {
            libc::setgroups(a.groups.len(), a.groups.as_ptr()) == 0
                && libc::setgid(r.gid) == 0
                && libc::setuid(r.uid) == 0
        };
        if !dropped {
            // Negative, so the parent can tell it from an exec failure.
            report(-errno(), 126);
        }
    }
    // SAFETY: as above; path, argv and envp are NUL-terminated C strings
    // and NULL-terminated arrays of them.
    unsafe { libc::execve(a.path.as_ptr(), a.argv.as_ptr(), a.envp.as_ptr()) };
    report(errno(), 127)
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for two.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh fds we own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The first executable file named `name`: `name` itself when it holds a
/// `/`, else searched on `path` (`$PATH`).
pub fn resolve(name: &str, path: Option<&OsStr>) -> Option<PathBuf> {
    if name.is_empty() {
        return None;
    }
    if name.contains('/') {
        return Path::new(name).exists().then(|| PathBuf::from(name));
    }
    let path = path.unwrap_or(OsStr::new("/usr/local/bin:/usr/bin:/bin"));
    std::env::split_paths(path).map(|dir| dir.join(name)).find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A started command. Until released it waits before exec; dropping it
/// unreleased kills it.
#[derive(Debug)]
pub struct Launched {
    pub pid: u32,
    pub name: String,
    /// The executable it runs.
    pub path: PathBuf,
    /// Its name once it has exec'd.
    pub comm: String,
    uid: Option<u32>,
    go: Option<OwnedFd>,
    exec_err: Option<OwnedFd>,
    reaped: bool,
}

impl Launched {
    /// Lets the child exec; returns once it has (or says why it could not).
    pub fn release(&mut self) -> Result<(), LaunchError> {
        let Some(go) = self.go.take() else { return Ok(()) };
        // SAFETY: writing one byte from a local.
        let n = unsafe { libc::write(go.as_raw_fd(), b"g".as_ptr().cast(), 1) };
        if n != 1 {
            return Err(LaunchError::Spawn { cmd: self.name.clone(), err: io::Error::last_os_error() });
        }
        drop(go);
        let Some(err_r) = self.exec_err.take() else { return Ok(()) };
        let mut errno = 0i32;
        let n = loop {
            // SAFETY: reading at most 4 bytes into an i32.
            let n = unsafe { libc::read(err_r.as_raw_fd(), (&mut errno as *mut i32).cast(), 4) };
            if n >= 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                break n;
            }
        };
        if n != 4 {
            return Ok(()); // closed by a successful exec
        }
        self.wait_exit();
        Err(if errno < 0 {
            LaunchError::RunAs {
                cmd: self.name.clone(),
                uid: self.uid.unwrap_or(0),
                err: io::Error::from_raw_os_error(-errno),
            }
        } else {
            LaunchError::Exec { cmd: self.name.clone(), err: io::Error::from_raw_os_error(errno) }
        })
    }

    /// Sends `sig` to the command.
    pub fn signal(&self, sig: i32) {
        if !self.reaped {
            // SAFETY: signalling our own (unreaped) child.
            unsafe { libc::kill(self.pid as i32, sig) };
        }
    }

    /// Waits for the command to exit; returns its exit code as a shell
    /// reports it (128 + signal when killed).
    pub fn wait_exit(&mut self) -> u8 {
        let mut status = 0;
        loop {
            // SAFETY: waiting for our own child.
            let r = unsafe { libc::waitpid(self.pid as i32, &mut status, 0) };
            if r >= 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                break;
            }
        }
        self.reaped = true;
        exit_code(status)
    }
}

impl Drop for Launched {
    fn drop(&mut self) {
        if self.go.is_some() {
            // Never released: it must not run untraced.
            self.signal(libc::SIGKILL);
            self.wait_exit();
        }
    }
}

/// A wait(2) status as a shell's `$?`.
pub fn exit_code(status: i32) -> u8 {
    if libc::WIFSIGNALED(status) {
        128u8.wrapping_add(libc::WTERMSIG(status) as u8)
    } else {
        libc::WEXITSTATUS(status) as u8
    }
}

/// Whether a SIGINT fdtrace got came from the terminal's Ctrl-C, which
/// the command (in fdtrace's foreground process group) got too.
pub fn interrupt_reached_command() -> bool {
    // SAFETY: plain queries.
    let pgrp = unsafe { libc::getpgrp() };
    [0, 1, 2].into_iter().any(|fd| {
        // SAFETY: plain query on a standard fd.
        unsafe { libc::isatty(fd) == 1 && libc::tcgetpgrp(fd) == pgrp }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_resolve_like_a_shell() {
        // Given a PATH with /bin, when resolving names and paths
        let path = OsStr::new("/nonexistent:/usr/bin:/bin");
        // then a name is found on PATH, a path is taken as is, and a
        // missing command is not found.
        assert!(resolve("sh", Some(path)).is_some_and(|p| p.ends_with("sh")));
        assert_eq!(resolve("/bin/sh", Some(path)), Some(PathBuf::from("/bin/sh")));
        assert_eq!(resolve("no-such-command-fdtrace", Some(path)), None);
        assert_eq!(resolve("./no/such", Some(path)), None);
        assert_eq!(resolve("", Some(path)), None);
    }

    #[test]
    fn exit_codes_follow_the_shell() {
        // exited 3 → 3; killed by SIGINT (2) → 130; SIGKILL → 137.
        assert_eq!(exit_code(3 << 8), 3);
        assert_eq!(exit_code(libc::SIGINT), 130);
        assert_eq!(exit_code(libc::SIGKILL), 137);
        assert_eq!(LaunchError::NotFound("x".into()).exit_code(), 127);
        let eacces = LaunchError::Exec { cmd: "x".into(), err: io::Error::from_raw_os_error(libc::EACCES) };
        assert_eq!(eacces.exit_code(), 126);
    }

    #[test]
    fn sudo_user_is_taken_from_the_environment_only_as_root() {
        let env = |k: &str| match k {
            "SUDO_UID" => Some("65534".to_string()),
            "SUDO_GID" => Some("65534".to_string()),
            _ => None,
        };
        let r = RunAs::from_sudo(0, env).expect("root with SUDO_UID");
        assert_eq!((r.uid, r.gid), (65534, 65534));
        assert_eq!(RunAs::from_sudo(1000, env), None, "not root: nothing to drop");
        assert_eq!(RunAs::from_sudo(0, |_| None), None, "not through sudo");
        let root = |k: &str| (k.starts_with("SUDO_")).then(|| "0".to_string());
        assert_eq!(RunAs::from_sudo(0, root), None, "sudo from root: stay root");
    }
}
