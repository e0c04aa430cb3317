//! CPython processes: finding the interpreter in a running process, and
//! naming the Python frames the kernel read at an fd's open (see
//! [`fdtrace_common::PyInfo`] for the kernel's walk).
//!
//! - [`inspect`] finds the ELF file that defines `_PyRuntime` (the python
//!   executable, statically linked as Debian's, or `libpython3.X.so` as
//!   pyenv's), its version (`Py_Version` in 3.11+, the file name or the
//!   `PY_VERSION` string in 3.10), where `_PyRuntime` is in the process,
//!   and the offsets of what the kernel reads: from the interpreter's
//!   DWARF, or without it the per-version table in `offsets.rs`. 3.13's
//!   own `_Py_DebugOffsets` are checked against them.
//! - [`Names`] names frames (function, file, line) from their code
//!   objects, read through `/proc/PID/mem` and kept per process.
//! - [`walk`] is the kernel's walk done from userspace: the reference the
//!   kernel side is tested against.
//! - [`is_library_file`] tells the standard library and installed
//!   packages from the program's own code.
//!
//! Everything here is userspace: no maps, no eBPF.
use std::{
    fmt,
    fs::File,
    io,
    path::{Path, PathBuf},
};

use fdtrace_common::{py_flags, PyInfo};
use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol};

mod code;
pub mod dwarf;
pub mod linetable;
pub mod offsets;
mod process;
#[cfg(test)]
pub(crate) mod testing;
mod walk;

pub use code::{Names, PyFrameName};
pub use offsets::{CodeOffsets, Offsets};
pub use walk::{walk, Walked};

use process::{Mapping, Memory, Segment};

/// Where an interpreter's offsets came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetsFrom {
    /// Its own DWARF (or its debug file's, under `/usr/lib/debug`).
    Dwarf,
    /// fdtrace's table for its version.
    Table,
}

impl fmt::Display for OffsetsFrom {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            OffsetsFrom::Dwarf => "DWARF",
            OffsetsFrom::Table => "table",
        })
    }
}

/// A CPython version: 3.11.7 (the patch level when the file says it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: Option<u32>,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)?;
        if let Some(patch) = self.patch {
            write!(f, ".{patch}")?;
        }
        Ok(())
    }
}

/// A CPython interpreter found in a process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interpreter {
    pub version: Version,
    /// What the kernel needs (`PY_PROCS` values).
    pub info: PyInfo,
    /// All the offsets, the code objects' among them.
    pub offsets: Offsets,
    pub offsets_from: OffsetsFrom,
    /// The file that defines `_PyRuntime`, as the process sees it.
    pub library: PathBuf,
    /// Where `PyCode_Type` is in the process: frames' code objects are
    /// checked against it (`None` if the file does not export it).
    pub code_type: Option<u64>,
}

/// Why a CPython process's interpreter cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum PyError {
    /// `/proc/PID/...` could not be read.
    #[error("reading /proc/{pid}/{what}: {source} (the process exited, or fdtrace needs root to read it)")]
    Proc { pid: u32, what: &'static str, source: io::Error },
    /// The interpreter's file could not be read or parsed.
    #[error("{path}: {why}")]
    Elf { path: String, why: String },
    /// A CPython version fdtrace has no offsets for.
    #[error(
        "{path}: offsets for CPython {version} not known: fdtrace reads {covered}, so this process's \
         Python frames are not named (its native frames still are)"
    )]
    UnsupportedVersion { path: String, version: Version, covered: String },
    /// CPython, but neither `Py_Version`, the file name nor a version
    /// string says which.
    #[error(
        "{path}: a CPython interpreter of unknown version (no Py_Version symbol, no version in its file \
         name or its strings): its Python frames are not named"
    )]
    UnknownVersion { path: String },
    /// CPython without an exported `_PyRuntime`.
    #[error(
        "{path}: CPython {version} without a `_PyRuntime` symbol (its dynamic symbols stripped?): fdtrace \
         cannot find the interpreter's state, so its Python frames are not named; standard builds export it"
    )]
    NoRuntime { path: String, version: String },
    /// A python executable linked with a libpython the dynamic loader has
    /// not mapped yet (the process has just exec'd).
    #[error(
        "{path} runs CPython from a shared libpython that is not mapped yet (the process has just started): \
         inspect it again once its dynamic loader has run"
    )]
    NotLoaded { path: String },
    /// A free-threaded build (3.13t), whose objects have another layout.
    #[error(
        "{path}: free-threaded CPython {version} (built with --disable-gil): fdtrace reads the default \
         build only, so its Python frames are not named"
    )]
    FreeThreaded { path: String, version: Version },
    /// 3.13+'s `_Py_DebugOffsets` disagree with the offsets fdtrace found.
    #[error(
        "{path}: CPython {version} says (in its _Py_DebugOffsets) that {field} is at {theirs}, fdtrace read \
         {ours} (from its {from}): its Python frames are not named (please report this with `python3 -VV`)"
    )]
    DebugOffsets {
        path: String,
        version: Version,
        field: &'static str,
        theirs: u64,
        ours: u64,
        from: OffsetsFrom,
    },
    /// Reading the process's memory failed.
    #[error(
        "pid {pid}: reading the {what} at {addr:#x} failed (the process exited, or the object was freed)"
    )]
    Memory { pid: u32, what: &'static str, addr: u64 },
    /// The memory read is not the object it should be.
    #[error("pid {pid}: the {what} at {addr:#x} is not one: {detail}")]
    NotPython { pid: u32, what: &'static str, addr: u64, detail: String },
    /// `_PyRuntime` has no interpreter yet (the process is starting) or
    /// any more (it is exiting).
    #[error("pid {pid}: no interpreter in _PyRuntime (Python is starting or exiting)")]
    NotStarted { pid: u32 },
    /// No thread state has this tid.
    #[error("pid {pid}: no Python thread state for thread {tid} (it has not run Python code)")]
    NoThread { pid: u32, tid: u32 },
    /// 3.10 threads other than the main one cannot be found from userspace.
    #[error(
        "pid {pid}: CPython 3.10 does not record threads' kernel ids (native_thread_id is 3.11+): \
         a userspace walk finds the main thread, not thread {tid}"
    )]
    ThreadIdUnknown { pid: u32, tid: u32 },
}

/// The CPython interpreter in process `pid`: `Ok(None)` if it runs no
/// CPython, an error if it does and its interpreter cannot be read (the
/// message says why, and what would help).
///
/// Call it once the process's libraries are mapped (after its dynamic
/// loader ran): the interpreter's state itself need not exist yet.
pub fn inspect(pid: u32) -> Result<Option<Interpreter>, PyError> {
    let maps = process::maps(pid).map_err(|source| PyError::Proc { pid, what: "maps", source })?;
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
    let exe = exe.as_deref().and_then(Path::to_str).map(|p| p.strip_suffix(" (deleted)").unwrap_or(p));
    let mut cpython_without_runtime = None;
    let mut launcher = None;
    for mapping in candidates(&maps, exe) {
        let (file, opened) = match process::open_mapped(pid, mapping) {
            Ok(found) => found,
            Err(e) => {
                log::debug!("pid {pid}: cannot open {}: {e}", mapping.path);
                continue;
            }
        };
        let elf = Elf::map(&file).map_err(|why| PyError::Elf { path: mapping.path.clone(), why })?;
        let Ok(obj) = object::File::parse(&*elf.0) else { continue };
        let symbols = Symbols::read(&obj);
        if symbols.launcher && Some(mapping.path.as_str()) == exe {
            launcher = Some(mapping.path.clone());
        }
        if symbols.runtime.is_none() {
            if symbols.cpython {
                cpython_without_runtime
                    .get_or_insert((mapping.path.clone(), version(&obj, &symbols, &mapping.path)));
            }
            continue;
        }
        log::debug!("pid {pid}: _PyRuntime in {} (read as {})", mapping.path, opened.display());
        return interpreter(pid, &maps, mapping, &obj, &symbols).map(Some);
    }
    match cpython_without_runtime {
        None => match launcher {
            // Candidates are looked at libraries first: none had it.
            Some(path) if !maps.iter().any(|m| is_libpython(&m.path)) => Err(PyError::NotLoaded { path }),
            _ => Ok(None),
        },
        Some((path, Some(version))) if version.major == 2 || version.minor < 10 => {
            Err(PyError::UnsupportedVersion { path, version, covered: offsets::covered() })
        }
        Some((path, version)) => Err(PyError::NoRuntime {
            path,
            version: version.map_or_else(|| "(version unknown)".into(), |v| v.to_string()),
        }),
    }
}

/// Whether running `path` starts CPython: an executable that defines
/// `_PyRuntime` or calls `Py_BytesMain`/`Py_Main` (linked with libpython),
/// a file named `python`, `python3`, `python3.X` (pyenv's shims are shell
/// scripts), or a script whose `#!` line names one (`#!/usr/bin/env
/// python3` is looked up in `PATH`). For launch mode, which must decide before the
/// command runs whether the kernel reads Python stacks; [`inspect`] finds
/// the interpreter once it runs.
pub fn runs_cpython(path: &Path) -> bool {
    runs_cpython_depth(path, 0)
}

fn runs_cpython_depth(path: &Path, depth: u32) -> bool {
    // `python3`, `python3.12`: also pyenv's shims and other wrappers, which
    // are shell scripts that end up running the interpreter.
    let named_python = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
        n.strip_prefix("python").is_some_and(|v| v.chars().all(|c| c.is_ascii_digit() || c == '.'))
    });
    if named_python && path.is_file() {
        return true;
    }
    let Ok(file) = File::open(path) else { return false };
    let Ok(elf) = Elf::map(&file) else { return false };
    if let Some(line) = elf.0.strip_prefix(b"#!") {
        if depth > 2 {
            return false;
        }
        let line = line.split(|&b| b == b'\n').next().unwrap_or_default();
        let line = String::from_utf8_lossy(line);
        let mut words = line.split_whitespace();
        let Some(interp) = words.next() else { return false };
        let interp = if Path::new(interp).file_name().is_some_and(|n| n == "env") {
            match words.find(|w| !w.starts_with('-')).and_then(in_path) {
                Some(p) => p,
                None => return false,
            }
        } else {
            PathBuf::from(interp)
        };
        return runs_cpython_depth(&interp, depth + 1);
    }
    let Ok(obj) = object::File::parse(&*elf.0) else { return false };
    let symbols = Symbols::read(&obj);
    symbols.runtime.is_some() || symbols.launcher
}

/// `name` looked up in `PATH`.
fn in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

/// The files that can hold the interpreter: the executable and the
/// libraries named libpython (`libpython3.12.so.1.0`), each by its first
/// mapping (extension modules, `_ssl.cpython-311-x86_64-linux-gnu.so`,
/// are not looked at).
fn candidates<'m>(maps: &'m [Mapping], exe: Option<&str>) -> Vec<&'m Mapping> {
    let mut out: Vec<&Mapping> = vec![];
    for m in maps {
        let wanted = Some(m.path.as_str()) == exe || is_libpython(&m.path);
        if wanted && !out.iter().any(|o| o.path == m.path && o.inode == m.inode) {
            out.push(m);
        }
    }
    // The executable last: a program that embeds libpython is read there.
    out.sort_by_key(|m| Some(m.path.as_str()) == exe);
    out
}

fn is_libpython(path: &str) -> bool {
    Path::new(path).file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("libpython"))
}

/// An ELF file, mapped.
struct Elf(memmap2::Mmap);

impl Elf {
    fn map(file: &File) -> Result<Elf, String> {
        // SAFETY: a read-only private mapping of a file fdtrace only
        // reads; a concurrent truncation of the interpreter's own file
        // (while it runs) is not a case fdtrace defends against.
        unsafe { memmap2::Mmap::map(file) }.map(Elf).map_err(|e| format!("mapping the file: {e}"))
    }
}

/// The symbols [`inspect`] looks for (defined ones, file addresses).
#[derive(Debug, Default)]
struct Symbols {
    runtime: Option<u64>,
    py_version: Option<u64>,
    code_type: Option<u64>,
    /// Defines CPython's API (`Py_Initialize`, `PyEval_EvalCode`): 2.x too.
    cpython: bool,
    /// Calls `Py_BytesMain` or `Py_Main` from a library: a python
    /// executable linked with libpython (pyenv's, `--enable-shared`).
    launcher: bool,
}

impl Symbols {
    fn read(obj: &object::File) -> Symbols {
        let mut s = Symbols::default();
        let mut api = (false, false);
        for sym in obj.dynamic_symbols().chain(obj.symbols()) {
            if sym.is_undefined() {
                s.launcher |= matches!(sym.name(), Ok("Py_BytesMain" | "Py_Main"));
                continue;
            }
            match sym.name() {
                Ok("_PyRuntime") => s.runtime = s.runtime.or(Some(sym.address())),
                Ok("Py_Version") => s.py_version = s.py_version.or(Some(sym.address())),
                Ok("PyCode_Type") => s.code_type = s.code_type.or(Some(sym.address())),
                Ok("Py_Initialize") => api.0 = true,
                Ok("PyEval_EvalCode") => api.1 = true,
                _ => {}
            }
        }
        s.cpython = s.runtime.is_some() || (api.0 && api.1);
        s
    }
}

/// The interpreter in `obj`, the file behind `mapping`.
fn interpreter(
    pid: u32,
    maps: &[Mapping],
    mapping: &Mapping,
    obj: &object::File,
    symbols: &Symbols,
) -> Result<Interpreter, PyError> {
    let path = mapping.path.clone();
    let version =
        version(obj, symbols, &path).ok_or_else(|| PyError::UnknownVersion { path: path.clone() })?;
    let Some(table) = offsets::for_minor(version.minor).filter(|_| version.major == 3) else {
        return Err(PyError::UnsupportedVersion { path, version, covered: offsets::covered() });
    };
    let (offsets, from) = match dwarf_offsets(pid, obj, version.minor) {
        Some(dwarf) => {
            let differences = table.differences(&dwarf);
            if !differences.is_empty() {
                log::warn!(
                    "{path}: CPython {version}'s DWARF differs from fdtrace's table ({}); using DWARF's",
                    differences.join(", ")
                );
            }
            (dwarf, OffsetsFrom::Dwarf)
        }
        None => (table, OffsetsFrom::Table),
    };
    let segments: Vec<Segment> = obj
        .segments()
        .map(|s| {
            let (offset, file_size) = s.file_range();
            Segment { offset, vaddr: s.address(), file_size }
        })
        .collect();
    let first = maps.iter().find(|m| m.path == mapping.path && m.inode == mapping.inode).unwrap_or(mapping);
    let bias = process::load_bias(&segments, first).ok_or_else(|| PyError::Elf {
        path: path.clone(),
        why: format!("no loaded segment at its mapping's file offset {:#x}", first.offset),
    })?;
    let runtime = symbols.runtime.expect("interpreter() is called for a file defining _PyRuntime") + bias;
    let info = py_info(&offsets, runtime, version.minor);
    let interp = Interpreter {
        version,
        info,
        offsets,
        offsets_from: from,
        library: PathBuf::from(&path),
        code_type: symbols.code_type.map(|a| a + bias),
    };
    if version.minor >= 13 {
        check_debug_offsets(pid, &interp)?;
    }
    Ok(interp)
}

/// What the kernel reads, from `offsets`.
fn py_info(o: &Offsets, runtime: u64, minor: u32) -> PyInfo {
    PyInfo {
        runtime,
        minor,
        flags: if o.cframe_current.is_some() { py_flags::CFRAME } else { 0 },
        interp_head: o.runtime_interp_head,
        interp_threads: o.interp_threads,
        tstate_next: o.tstate_next,
        tstate_thread_id: o.tstate_thread_id,
        tstate_frame: o.tstate_frame,
        cframe_current: o.cframe_current.unwrap_or(0),
        frame_code: o.frame_code,
        frame_back: o.frame_back,
        frame_instr: o.frame_instr,
        frame_owner: o.frame_owner.unwrap_or(0),
        frame_is_entry: o.frame_is_entry.unwrap_or(0),
        // 3.11 marks entries itself; 3.12+ by the shim before them.
        frame_mark: o.frame_is_entry.or(o.frame_owner).unwrap_or(0),
    }
}

/// The offsets in the file's DWARF, or its debug file's (by build id,
/// under `/usr/lib/debug` in the process's root or fdtrace's); `None`
/// without DWARF, or with DWARF that lacks a type (logged).
fn dwarf_offsets(pid: u32, obj: &object::File, minor: u32) -> Option<Offsets> {
    let read = |obj: &object::File, what: &str| match dwarf::offsets(obj, minor) {
        Ok(offsets) => Some(offsets),
        Err(e) => {
            log::warn!("{what}: DWARF without CPython's types ({e}): using fdtrace's table");
            None
        }
    };
    if dwarf::has_debug_info(obj) {
        return read(obj, "the interpreter");
    }
    let id = obj.build_id().ok().flatten().filter(|id| id.len() > 1)?;
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let rel = format!("usr/lib/debug/.build-id/{}/{}.debug", &hex[..2], &hex[2..]);
    for root in [format!("/proc/{pid}/root/"), "/".to_string()] {
        let path = PathBuf::from(root).join(&rel);
        let Ok(file) = File::open(&path) else { continue };
        let Ok(elf) = Elf::map(&file) else { continue };
        let Ok(debug) = object::File::parse(&*elf.0) else { continue };
        if dwarf::has_debug_info(&debug) {
            return read(&debug, &path.display().to_string());
        }
    }
    None
}

/// The version: `Py_Version` (3.11+), else the file name
/// (`libpython3.10.so.1.0`, `python3.10`) with the patch level from the
/// `PY_VERSION` string; both are compared when both exist. A file named
/// otherwise (a venv's copied `python`) that defines `_PyRuntime` but not
/// `Py_Version` is 3.7–3.10: its `PY_VERSION` string says which.
fn version(obj: &object::File, symbols: &Symbols, path: &str) -> Option<Version> {
    let hex = symbols.py_version.and_then(|addr| read_u32(obj, addr)).filter(|&v| v >> 24 != 0);
    let named = name_version(path).or_else(|| {
        let unnamed = hex.is_none() && symbols.runtime.is_some();
        unnamed.then(|| {
            [10, 9, 8, 7].into_iter().find(|&m| version_string(obj, 3, m).is_some()).map(|m| (3, m))
        })?
    });
    let from_hex =
        hex.map(|v| Version { major: v >> 24, minor: (v >> 16) & 0xff, patch: Some((v >> 8) & 0xff) });
    if let (Some(h), Some((major, minor))) = (from_hex, named) {
        if (h.major, h.minor) != (major, minor) {
            log::warn!("{path}: named for Python {major}.{minor} but its Py_Version says {h}: using {h}");
        }
    }
    let (major, minor) = from_hex.map(|h| (h.major, h.minor)).or(named)?;
    let string = version_string(obj, major, minor);
    if let (Some(h), Some(s)) = (from_hex, string) {
        if h.patch != Some(s) {
            log::debug!("{path}: Py_Version says {h}, its version string {major}.{minor}.{s}");
        }
    }
    Some(from_hex.unwrap_or(Version { major, minor, patch: string }))
}

/// The 4 bytes at file address `addr` (a symbol's value).
fn read_u32(obj: &object::File, addr: u64) -> Option<u32> {
    obj.sections().find_map(|s| {
        let start = addr.checked_sub(s.address())?;
        if start + 4 > s.size() {
            return None;
        }
        let data = s.data().ok()?;
        let start = usize::try_from(start).ok()?;
        Some(u32::from_le_bytes(data.get(start..start + 4)?.try_into().ok()?))
    })
}

/// `python3.10`, `libpython3.10.so.1.0`, `libpython3.6m.so`,
/// `python2.7` → (major, minor).
fn name_version(path: &str) -> Option<(u32, u32)> {
    let name = Path::new(path).file_name()?.to_str()?;
    let rest = &name[name.find("python")? + "python".len()..];
    let (major, rest) = rest.split_once('.')?;
    let minor: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// The patch level in the `PY_VERSION` string ("3.10.13", "3.13.0rc1",
/// "3.11.2+"): a NUL-terminated string in `.rodata`, which the linker may
/// have merged into the tail of another ("/Python-3.10.13"), so it is
/// found after any character but a digit or a dot. It only names the
/// version: offsets are per minor version.
fn version_string(obj: &object::File, major: u32, minor: u32) -> Option<u32> {
    let data = obj.section_by_name(".rodata")?.data().ok()?;
    find_version_string(data, major, minor)
}

fn find_version_string(data: &[u8], major: u32, minor: u32) -> Option<u32> {
    let needle = format!("{major}.{minor}.");
    let needle = needle.as_bytes();
    let mut from = 0;
    while let Some(i) = data[from..].windows(needle.len()).position(|w| w == needle) {
        let start = from + i;
        let at = start + needle.len();
        from = at;
        if start > 0 && (data[start - 1].is_ascii_digit() || data[start - 1] == b'.') {
            continue;
        }
        let digits = data[at..].iter().take_while(|b| b.is_ascii_digit()).count();
        let rest = &data[at + digits..];
        let Some(end) = rest.iter().take(8).position(|&b| b == 0) else { continue };
        if (1..=3).contains(&digits) && is_release_suffix(&rest[..end]) {
            return std::str::from_utf8(&data[at..at + digits]).ok()?.parse().ok();
        }
    }
    None
}

/// What may follow "3.X.Y" in `PY_VERSION`: nothing, a pre-release
/// ("a1", "b2", "rc1"), and a "+" (a build from a branch).
fn is_release_suffix(s: &[u8]) -> bool {
    let s = s.strip_suffix(b"+").unwrap_or(s);
    let digits = [&b"a"[..], b"b", b"rc"].iter().find_map(|p| s.strip_prefix(*p));
    s.is_empty() || digits.is_some_and(|d| !d.is_empty() && d.iter().all(u8::is_ascii_digit))
}

/// 3.13's `_Py_DebugOffsets` (at the start of `_PyRuntime`, cookie
/// "xdebugpy"): CPython's own statement of its offsets, compared with
/// fdtrace's field by field.
fn check_debug_offsets(pid: u32, interp: &Interpreter) -> Result<(), PyError> {
    const WORDS: usize = 3 + 3 + 13 + 9 + 6 + 10;
    let mem = Memory::open(pid).map_err(|source| PyError::Proc { pid, what: "mem", source })?;
    let runtime = interp.info.runtime;
    let raw = mem.bytes(runtime, WORDS * 8).map_err(|_| PyError::Memory {
        pid,
        what: "_PyRuntime",
        addr: runtime,
    })?;
    let word = |i: usize| u64::from_le_bytes(raw[i * 8..i * 8 + 8].try_into().expect("inside the read"));
    let path = interp.library.display().to_string();
    if &raw[..8] != b"xdebugpy" {
        log::warn!("{path}: no _Py_DebugOffsets cookie at _PyRuntime: not checked");
        return Ok(());
    }
    if word(2) != 0 {
        return Err(PyError::FreeThreaded { path, version: interp.version });
    }
    // Word indexes: cookie, version, free_threaded; then each section
    // starts with its struct's size.
    let (runtime_state, interp_state, thread_state, frame, code) = (3, 6, 19, 28, 34);
    let o = &interp.offsets;
    let c = &o.code;
    let checks: [(&'static str, usize, Option<u32>); 13] = [
        ("_PyRuntimeState.interpreters.head", runtime_state + 2, Some(o.runtime_interp_head)),
        ("PyInterpreterState.threads.head", interp_state + 3, Some(o.interp_threads)),
        ("PyThreadState.next", thread_state + 2, Some(o.tstate_next)),
        ("PyThreadState.current_frame", thread_state + 4, Some(o.tstate_frame)),
        ("PyThreadState.thread_id", thread_state + 5, Some(o.tstate_thread_id)),
        ("PyThreadState.native_thread_id", thread_state + 6, o.tstate_native_thread_id),
        ("_PyInterpreterFrame.previous", frame + 1, Some(o.frame_back)),
        ("_PyInterpreterFrame.f_executable", frame + 2, Some(o.frame_code)),
        ("_PyInterpreterFrame.instr_ptr", frame + 3, Some(o.frame_instr)),
        ("_PyInterpreterFrame.owner", frame + 5, o.frame_owner),
        ("PyCodeObject.co_filename", code + 1, Some(c.co_filename)),
        ("PyCodeObject.co_qualname", code + 3, c.co_qualname),
        ("PyCodeObject.co_code_adaptive", code + 9, c.co_code_adaptive),
    ];
    let more = [
        ("PyCodeObject.co_name", code + 2, Some(c.co_name)),
        ("PyCodeObject.co_linetable", code + 4, Some(c.co_linetable)),
        ("PyCodeObject.co_firstlineno", code + 5, Some(c.co_firstlineno)),
    ];
    for (field, index, ours) in checks.into_iter().chain(more) {
        let ours = u64::from(ours.unwrap_or(u32::MAX));
        let theirs = word(index);
        if theirs != ours {
            return Err(PyError::DebugOffsets {
                path,
                version: interp.version,
                field,
                theirs,
                ours,
                from: interp.offsets_from,
            });
        }
    }
    Ok(())
}

/// Whether `file` (a frame's `co_filename`) is library code rather than
/// the program's own: the standard library (this interpreter's
/// `<prefix>/lib/python3.X/`, the system's `/usr/lib/python3.X/`), installed
/// packages (`site-packages`, `dist-packages`), and frozen modules
/// (`<frozen importlib._bootstrap>`). `<string>` (`-c`, `exec`) is the
/// program's.
pub fn is_library_file(file: &str, interp: &Interpreter) -> bool {
    if file.starts_with("<frozen ") {
        return true;
    }
    if file.contains("/site-packages/") || file.contains("/dist-packages/") {
        return true;
    }
    let stdlib = format!("python{}.{}", interp.version.major, interp.version.minor);
    let mut dirs: Vec<PathBuf> =
        ["/usr/lib", "/usr/lib64", "/usr/local/lib"].iter().map(PathBuf::from).collect();
    dirs.extend(prefix(&interp.library).map(|p| p.join("lib")));
    let path = Path::new(file);
    dirs.iter().any(|lib| path.starts_with(lib.join(&stdlib)))
}

/// The installation prefix of an interpreter file: `/usr` for
/// `/usr/bin/python3.11` and `/usr/lib/x86_64-linux-gnu/libpython3.11.so`,
/// `~/.pyenv/versions/3.12.1` for its `lib/libpython3.12.so.1.0`.
fn prefix(library: &Path) -> Option<&Path> {
    let dir = library.parent()?;
    let name = dir.file_name()?.to_str()?;
    match name {
        "bin" | "lib" | "lib64" => dir.parent(),
        _ if name.contains("-linux-") => dir.parent()?.parent(),
        _ => Some(dir),
    }
}

#[cfg(test)]
mod tests;
