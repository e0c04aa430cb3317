//! User stacks → named frames, with blazesym.
//!
//! Stacks are resolved when first seen, while the process is alive (its
//! `/proc/PID/maps` is needed), and cached per (process, stack), so reports
//! keep working after the target exits. Frames are innermost first.
//!
//! The kernel walks frame pointers. A libc syscall wrapper has no frame, so
//! that walk skips the wrapper's caller; the kernel side also sends the word
//! at the user stack pointer, which for a frameless wrapper is the return
//! address into the caller. It is inserted when the bytes before it are a
//! call instruction (so a stray value on the stack is never taken for a
//! frame).
//!
//! Frames blazesym cannot name, or names without a line, in a Go binary
//! (built with `-ldflags="-s -w"`, as production Go binaries are) come from
//! the binary's own line table (`gopclntab.rs`), with their inlined calls:
//! a stripped build's stacks read as the unstripped build's DWARF does.
//!
//! CPython's Python frames (read by the kernel from the interpreter's own
//! frame chain) take the place of its evaluation loop's (`python.rs`).
//!
//! Frames in code a JIT runtime generated (anonymous memory: no file to
//! read) are named from the runtime's perf map (`perfmap.rs`), read by
//! fdtrace itself so that a map it cannot read costs only that map's names.
pub mod gopclntab;
pub mod perfmap;
pub mod python;
mod recorded;

use std::{
    collections::HashMap,
    fs,
    os::unix::fs::{FileExt, MetadataExt},
    path::Path,
    sync::Arc,
};

use blazesym::symbolize::{
    source::{Elf, Process, Source},
    Input, Symbolized, Symbolizer as Blaze,
};
use serde::{Deserialize, Serialize};

use self::{perfmap::PerfMaps, recorded::Recorded};
use crate::events::{MapEvent, RawStacks, StackId, StackRef};

/// One frame of a user stack.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Frame {
    pub function: Option<String>,
    pub file: Option<String>,
    pub line: Option<u32>,
    /// The binary or library (file name).
    pub module: Option<String>,
    /// Offset in `module` when the address has no symbol.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
}

impl Frame {
    /// `function (file:line)`, or `module+0xoffset`, or `0xaddr`.
    pub fn label(&self) -> String {
        match (&self.function, &self.module, self.offset) {
            (Some(f), _, _) => f.clone(),
            (None, Some(m), Some(off)) => format!("{m}+{off:#x}"),
            (None, Some(m), None) => m.clone(),
            (None, None, _) => "??".into(),
        }
    }

    /// Whether the frame is in a library rather than the program's own
    /// code: libc and the dynamic loader, Rust's std/core/alloc (sources
    /// under `/rustc/`), crates from a registry, Go's standard library.
    pub fn is_library(&self) -> bool {
        let module = self.module.as_deref().unwrap_or_default();
        let file = self.file.as_deref().unwrap_or_default();
        let func = self.function.as_deref().unwrap_or_default();
        if module == perfmap::JIT_MODULE {
            return perfmap::is_runtime_frame(self);
        }
        if module == python::PY_MODULE {
            return self.file.as_deref().is_none_or(python::is_library_path);
        }
        ["libc.so", "libc-", "ld-linux", "libpthread", "libstdc++", "libgcc"]
            .iter()
            .any(|m| module.starts_with(m))
            || is_runtime_module(module)
            || python::is_interpreter_module(module)
            || file.starts_with("/rustc/")
            || file.contains("/.cargo/registry/")
            || (file.ends_with(".go") || file.ends_with(".s")) && is_go_std(func)
    }

    pub fn location(&self) -> Option<String> {
        let file = self.file.as_ref()?;
        Some(match self.line {
            Some(l) => format!("{file}:{l}"),
            None => file.clone(),
        })
    }
}

/// What a stack resolved to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Resolved {
    Frames(Arc<[Frame]>),
    /// No stack: fdtrace was told not to capture them, or the fd predates
    /// the trace.
    NotCaptured,
    /// The kernel could not capture it (errno), or the stack map no longer
    /// had it.
    Failed(String),
}

/// Resolves and caches stacks, per (process, stack). After an exec the
/// same stack id in the same process would reuse the old resolution; a
/// stack id stands for identical addresses, so that only matters when a
/// new image puts different code at exactly the same addresses.
pub struct Stacks {
    blaze: Blaze,
    resolved: HashMap<(u32, StackRef), Resolved>,
    /// Raw frames by stack id (ids are global to the stack map).
    raw: HashMap<StackId, Arc<[u64]>>,
    /// Each process's mappings as last read: a process that exited before
    /// its stacks were resolved is symbolized from the files they name.
    maps: HashMap<u32, Arc<Maps>>,
    /// Each process's mappings as the kernel recorded them
    /// ([`Stacks::mapped`]): a process that exited before its stacks were
    /// first seen (a short command in launch mode) is symbolized from the
    /// files it had mapped when the stack was captured.
    recorded: Recorded,
    /// Go binaries' own line tables, for frames blazesym cannot name or
    /// place (stripped binaries: `-ldflags="-s -w"`).
    go: GoTables,
    /// JIT runtimes' perf maps, by process.
    jit: PerfMaps,
    /// Per process: what its JIT frames needed that was missing.
    jit_misses: HashMap<u32, JitMisses>,
    /// CPython processes' interpreters, and their frames' names.
    python: HashMap<u32, Arc<crate::python::Interpreter>>,
    py_names: crate::python::Names,
    /// Per process: Python stacks the kernel read that were gone from its
    /// map, and Python frames that could not be named.
    py_misses: HashMap<u32, (u64, u64)>,
    pub symbolize_errors: u64,
}

/// Frames of one process in memory no file backs (JIT code) that no perf
/// map named, for the report's notes.
#[derive(Clone, Debug, Default)]
struct JitMisses {
    /// How many such frames.
    unnamed: u64,
    /// Whether the process had a perf map (it did not cover them).
    had_map: bool,
    /// The pid the process sees itself as (the map's name).
    ns_pid: u32,
    runtime: Option<Runtime>,
}

/// A JIT runtime, told by the process's executable and libraries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Runtime {
    Node,
    Java,
}

impl Runtime {
    /// From the paths a process has mapped (its executable among them).
    fn detect(maps: &Maps) -> Option<Runtime> {
        maps.0.iter().find_map(|(_, _, _, path)| {
            let name = basename(path);
            if name == "libjvm.so" {
                Some(Runtime::Java)
            } else if name == "node" || name == "nodejs" || name.starts_with("libnode.so") {
                Some(Runtime::Node)
            } else {
                None
            }
        })
    }
}

impl Default for Stacks {
    fn default() -> Self {
        Stacks::new()
    }
}

impl Stacks {
    pub fn new() -> Stacks {
        Stacks {
            blaze: Blaze::new(),
            resolved: HashMap::new(),
            raw: HashMap::new(),
            maps: HashMap::new(),
            recorded: Recorded::default(),
            go: GoTables::default(),
            jit: PerfMaps::default(),
            jit_misses: HashMap::new(),
            python: HashMap::new(),
            py_names: crate::python::Names::new(),
            py_misses: HashMap::new(),
            symbolize_errors: 0,
        }
    }

    /// How many (process, stack) pairs are resolved.
    pub fn resolved(&self) -> usize {
        self.resolved.len()
    }

    /// Whether this (process, stack) is resolved already.
    pub fn known(&self, tgid: u32, stack: StackRef) -> bool {
        self.resolved.contains_key(&(tgid, stack))
    }

    pub fn get(&self, tgid: u32, stack: StackRef) -> Option<&Resolved> {
        self.resolved.get(&(tgid, stack))
    }

    /// Process `tgid` runs this CPython interpreter: its stacks' Python
    /// frames are named.
    pub fn add_python(&mut self, tgid: u32, interp: crate::python::Interpreter) {
        self.python.insert(tgid, Arc::new(interp));
    }

    /// What the kernel recorded about a process's mappings.
    pub fn mapped(&mut self, ev: &MapEvent) {
        self.recorded.apply(ev);
    }

    /// Records the mappings `/proc` shows for a live process now (at
    /// attach, before the kernel's records start).
    pub fn seed_maps(&mut self, tgid: u32, now_ns: u64) {
        self.recorded.seed(tgid, &Maps::read(tgid), now_ns);
    }

    /// Resolves a stack captured at `at_ns` (CLOCK_MONOTONIC) in process
    /// `tgid`, its frames from `raw`: from the process while it lives,
    /// else from the files it had mapped then.
    pub fn resolve(&mut self, tgid: u32, stack: StackRef, raw: &dyn RawStacks, at_ns: u64) {
        if self.known(tgid, stack) {
            return;
        }
        let resolved = match stack.id {
            StackId::NotCaptured => Resolved::NotCaptured,
            StackId::Failed(errno) => Resolved::Failed(stack_errno(errno)),
            StackId::InlineMissing => Resolved::Failed("inline stack record missing".into()),
            StackId::Inline(_) | StackId::Id(_) => {
                match self.raw_frames(stack.id, raw) {
                    None => Resolved::Failed("stack no longer in the stack map".into()),
                    Some(ips) => {
                        let mut ips = ips.to_vec();
                        match stack.caller_ip {
                            // The probed function's entry is not a return
                            // address; its caller is.
                            Some(caller) if stack.at_entry && !ips.is_empty() => ips[0] = caller,
                            None if stack.at_entry && !ips.is_empty() => {
                                ips.remove(0);
                            }
                            Some(caller)
                                if ips.get(1) != Some(&caller)
                                    && self.is_return_address(tgid, caller, at_ns) =>
                            {
                                ips.insert(1.min(ips.len()), caller);
                            }
                            _ => {}
                        }
                        let native = self.symbolize(tgid, &ips, at_ns);
                        Resolved::Frames(self.with_python(tgid, stack, raw, native).into())
                    }
                }
            }
        };
        self.resolved.insert((tgid, stack), resolved);
    }

    /// A stack's native frames with its Python frames in place, if the
    /// kernel read any.
    fn with_python(
        &mut self,
        tgid: u32,
        stack: StackRef,
        raw: &dyn RawStacks,
        native: Vec<Frame>,
    ) -> Vec<Frame> {
        let Some(id) = stack.python else { return native };
        let Some(interp) = self.python.get(&tgid).cloned() else { return native };
        let Some(py) = raw.python(id) else {
            self.py_misses.entry(tgid).or_default().0 += 1;
            return native;
        };
        let frames = python::frames(tgid, &interp, &py, &mut self.py_names);
        if frames.is_empty() {
            return native;
        }
        let unnamed = frames.iter().filter(|(f, _)| f.function.is_none()).count() as u64;
        if unnamed > 0 {
            self.py_misses.entry(tgid).or_default().1 += unnamed;
        }
        python::interleave(native, frames)
    }

    /// Records a resolution directly (tests).
    #[cfg(test)]
    pub fn insert(&mut self, tgid: u32, stack: StackRef, resolved: Resolved) {
        self.resolved.insert((tgid, stack), resolved);
    }

    fn raw_frames(&mut self, id: StackId, raw: &dyn RawStacks) -> Option<Arc<[u64]>> {
        if let Some(r) = self.raw.get(&id) {
            return Some(Arc::clone(r));
        }
        let r = raw.frames(id)?;
        self.raw.insert(id, Arc::clone(&r));
        Some(r)
    }

    fn symbolize(&mut self, tgid: u32, ips: &[u64], at_ns: u64) -> Vec<Frame> {
        // Return addresses point after the call: look up the call itself.
        let lookups: Vec<u64> = ips.iter().map(|ip| ip.saturating_sub(1)).collect();
        let live = Maps::read(tgid);
        // Exited (a zombie's maps are empty), or running another program
        // since the stack was captured: the mappings it had then say.
        let gone = live.0.is_empty() || self.recorded.exec_after(tgid, at_ns);
        let maps = if gone {
            match self.recorded.maps_at(tgid, at_ns) {
                Some(recorded) => Arc::new(recorded),
                None => self.maps.get(&tgid).cloned().unwrap_or_default(),
            }
        } else {
            let live = Arc::new(live);
            self.maps.insert(tgid, Arc::clone(&live));
            live
        };
        let syms = if gone {
            self.symbolize_files(&maps, &lookups)
        } else {
            let mut process = Process::new(tgid.into());
            // Perf maps are read by fdtrace (`perfmap.rs`): blazesym fails
            // the whole process on one line it cannot parse.
            process.perf_map = false;
            let src = Source::Process(process.clone());
            match self.blaze.symbolize(&src, Input::AbsAddr(&lookups)) {
                Ok(s) => s,
                Err(e) => {
                    // Corrupt debug info fails the lookup as a whole: the
                    // symbol tables alone still give function names.
                    log::debug!("symbolizing stack of {tgid}: {e}; retrying without debug info");
                    let mut plain = process;
                    plain.debug_syms = false;
                    match self.blaze.symbolize(&Source::Process(plain), Input::AbsAddr(&lookups)) {
                        Ok(s) => s,
                        // The process exited since its maps were read (its
                        // /proc/PID/map_files went with it): the files
                        // those maps name still say.
                        Err(e) => {
                            log::debug!(
                                "symbolizing stack of {tgid} from symbol tables: {e}; from its files"
                            );
                            self.symbolize_files(&maps, &lookups)
                        }
                    }
                }
            }
        };
        let mut frames = Vec::with_capacity(ips.len());
        for (i, &ip) in lookups.iter().enumerate() {
            // DWARF (file, line, inlined calls) first; where blazesym has
            // no symbol, or a name without a line (a Go binary built with
            // -s or -w), a Go binary's own table has all of it.
            let placed = matches!(syms.get(i), Some(Symbolized::Sym(sym)) if sym.code_info.is_some());
            if !placed {
                if let Some(go) = self.go.frames(&maps, ip) {
                    frames.extend(go);
                    continue;
                }
            }
            match syms.get(i) {
                Some(Symbolized::Sym(sym)) => {
                    let module = sym
                        .module
                        .as_ref()
                        .map(|m| basename(&m.to_string_lossy()))
                        .or_else(|| maps.locate(ip).map(|(m, _)| m));
                    frames.extend(frames_of(sym).into_iter().map(|f| Frame { module: module.clone(), ..f }));
                }
                _ => match maps.locate(ip) {
                    Some((module, offset)) => frames.push(Frame {
                        function: None,
                        file: None,
                        line: None,
                        module: Some(module),
                        offset: Some(offset),
                    }),
                    // No file: code a runtime generated, named by its perf map.
                    None => frames.push(jit_frame(&mut self.jit, &mut self.jit_misses, tgid, &maps, ip)),
                },
            }
        }
        if Runtime::detect(&maps) == Some(Runtime::Node) {
            frames.retain(|f| !perfmap::is_v8_plumbing(f));
        }
        frames
    }

    /// What the reports should say about JIT frames: the perf-map lines
    /// that could not be read, the frames no perf map named and what the
    /// runtime needs for them to be.
    pub fn notes(&self) -> Vec<String> {
        // In a CPython process they are the native walk gone astray (no
        // frame pointers in the interpreter): its Python frames are read
        // from the interpreter instead.
        let mut pids: Vec<u32> =
            self.jit_misses.keys().copied().filter(|pid| !self.python.contains_key(pid)).collect();
        pids.sort_unstable();
        let mut notes = vec![];
        let mut py: Vec<(&u32, &(u64, u64))> = self.py_misses.iter().collect();
        py.sort_unstable();
        for (pid, &(gone, unnamed)) in py {
            if gone > 0 {
                notes.push(format!(
                    "pid {pid}: {gone} Python stacks no longer in the kernel's map: their Python frames are missing"
                ));
            }
            if unnamed > 0 {
                notes.push(format!(
                    "pid {pid}: {unnamed} Python frames unnamed: their code objects could not be read \
                     (freed, or the process exited first); -v says why"
                ));
            }
        }
        for pid in pids {
            let m = &self.jit_misses[&pid];
            let map = format!("/tmp/perf-{}.map", m.ns_pid);
            let frames = if m.unnamed == 1 { "frame" } else { "frames" };
            let what = format!("pid {pid}: {} {frames} in JIT-compiled code unnamed", m.unnamed);
            notes.push(match (m.had_map, m.runtime) {
                (false, Some(Runtime::Node)) => format!(
                    "{what}: no perf map ({map}); start node with --perf-basic-prof \
                     (--interpreted-frames-native-stack names interpreted functions too)"
                ),
                (false, Some(Runtime::Java)) => format!(
                    "{what}: no perf map ({map}); start the JVM with -XX:+PreserveFramePointer \
                     and write the map with `jcmd {pid} Compiler.perfmap` after warm-up"
                ),
                (false, None) => {
                    format!("{what}: no perf map ({map}); a JIT runtime names its code there for profilers")
                }
                (true, Some(Runtime::Java)) => format!(
                    "{what}: not in {map} (compiled after it was written: run \
                     `jcmd {pid} Compiler.perfmap` again)"
                ),
                (true, _) => format!("{what}: not in {map}"),
            });
        }
        let mut skipped: Vec<(u32, u64)> =
            self.jit.loaded().filter(|(_, m)| m.skipped > 0).map(|(pid, m)| (pid, m.skipped)).collect();
        skipped.sort_unstable();
        for (pid, n) in skipped {
            notes.push(format!(
                "pid {pid}: {n} lines of its perf map are not `START SIZE NAME` in hex and were skipped \
                 (the code they name is unnamed; the rest of the map is used)"
            ));
        }
        notes
    }
}

impl Stacks {
    /// Symbolizes addresses of a process that is gone from the files its
    /// last known mappings name (file offsets, one file at a time).
    fn symbolize_files(&mut self, maps: &Maps, addrs: &[u64]) -> Vec<Symbolized<'static>> {
        let mut out: Vec<Option<Symbolized>> = vec![None; addrs.len()];
        let mut by_file: HashMap<&str, Vec<(usize, u64)>> = HashMap::new();
        for (i, &addr) in addrs.iter().enumerate() {
            if let Some((path, off)) = maps.file_offset(addr) {
                by_file.entry(path).or_default().push((i, off));
            }
        }
        for (path, wanted) in by_file {
            let offsets: Vec<u64> = wanted.iter().map(|(_, off)| *off).collect();
            let src = Source::Elf(Elf::new(path));
            match self.blaze.symbolize(&src, Input::FileOffset(&offsets)) {
                Ok(syms) => {
                    for ((i, _), sym) in wanted.iter().zip(syms) {
                        out[*i] = Some(match sym {
                            Symbolized::Sym(sym) => Symbolized::Sym(sym.into_owned()),
                            Symbolized::Unknown(why) => Symbolized::Unknown(why),
                        });
                    }
                }
                Err(e) => {
                    self.symbolize_errors += 1;
                    log::debug!("symbolizing {path}: {e}");
                }
            }
        }
        out.into_iter()
            .map(|s| s.unwrap_or(Symbolized::Unknown(blazesym::symbolize::Reason::UnknownAddr)))
            .collect()
    }
}

/// Go line tables by binary (`None`: not a Go binary, or unreadable),
/// loaded when a frame in the binary first needs one. Keyed by path and
/// the file's identity, so a binary replaced at the same path (a deploy) is
/// read anew.
#[derive(Default)]
struct GoTables(HashMap<BinaryKey, Option<Arc<GoTable>>>);

/// A binary: its path, device, inode and modification time.
type BinaryKey = (String, u64, u64, i64);
type GoTable = gopclntab::Pclntab<memmap2::Mmap>;

impl GoTables {
    /// The frames at `ip`, innermost first, from the line table of the Go
    /// binary mapped there.
    fn frames(&mut self, maps: &Maps, ip: u64) -> Option<Vec<Frame>> {
        let (path, offset) = maps.file_offset(ip)?;
        let meta = fs::metadata(path).ok()?;
        let key = (path.to_string(), meta.dev(), meta.ino(), meta.mtime());
        let table = self.0.entry(key).or_insert_with(|| load_go_table(path)).as_ref()?;
        let pc = table.vaddr_of_file_offset(offset)?;
        let module = basename(path);
        let frames = table.frames(pc)?;
        Some(
            frames
                .into_iter()
                .map(|f| Frame {
                    function: Some(f.function),
                    file: f.file,
                    line: f.line,
                    module: Some(module.clone()),
                    offset: None,
                })
                .collect(),
        )
    }
}

fn load_go_table(path: &str) -> Option<Arc<GoTable>> {
    let file = fs::File::open(path).ok()?;
    // SAFETY: a read-only mapping of an executable that is mapped into a
    // running process (which the kernel keeps from being written: ETXTBSY);
    // fdtrace only reads it, every read bounds-checked.
    let map = unsafe { memmap2::Mmap::map(&file) }.ok()?;
    match gopclntab::Pclntab::parse(map) {
        Ok(table) => Some(Arc::new(table)),
        Err(gopclntab::PclntabError::NotFound | gopclntab::PclntabError::NotElf) => None,
        Err(e) => {
            log::debug!("{path}: {e}");
            None
        }
    }
}

/// A symbol's frames, innermost first: its inlined calls, then the
/// function that contains them (no module).
fn frames_of(sym: &blazesym::symbolize::Sym) -> Vec<Frame> {
    let frame = |name: &str, code: Option<&blazesym::symbolize::CodeInfo>| Frame {
        function: Some(name.to_string()),
        file: code.map(|c| source_path(&c.to_path())),
        line: code.and_then(|c| c.line),
        module: None,
        offset: None,
    };
    let mut frames: Vec<Frame> =
        sym.inlined.iter().rev().map(|inl| frame(&inl.name, inl.code_info.as_ref())).collect();
    frames.push(frame(&sym.name, sym.code_info.as_deref()));
    frames
}

/// A source file as shown: a relative path without the `./` that joining
/// DWARF's compilation directory "." adds (Go with `-trimpath`, and Go's
/// generated code, `<autogenerated>`), so the same code is named the same
/// from DWARF as from Go's own line table.
fn source_path(path: &Path) -> String {
    let shown = path.strip_prefix(".").unwrap_or(path);
    shown.display().to_string()
}

/// A frame at `ip` in memory no file backs: named from the process's
/// perf map, else unnamed and counted for the notes.
fn jit_frame(
    jit: &mut PerfMaps,
    misses: &mut HashMap<u32, JitMisses>,
    tgid: u32,
    maps: &Maps,
    ip: u64,
) -> Frame {
    let map = jit.get(tgid);
    if let Some(name) = map.as_ref().and_then(|m| m.lookup(ip)) {
        return perfmap::frame(name);
    }
    let miss = misses.entry(tgid).or_insert_with(|| JitMisses {
        ns_pid: crate::host::procfs::ns_pid(tgid).unwrap_or(tgid),
        ..JitMisses::default()
    });
    miss.unnamed += 1;
    miss.had_map |= map.is_some();
    miss.runtime = miss.runtime.or_else(|| Runtime::detect(maps));
    Frame { function: None, file: None, line: None, module: None, offset: None }
}

/// The native code of the JIT runtimes fdtrace names: Node's executable
/// and library, the JVM's libraries (`libjvm.so`, `libnio.so`, ...).
fn is_runtime_module(module: &str) -> bool {
    let jdk = ["libjvm.so", "libjli.so", "libjava.so", "libnio.so", "libnet.so", "libzip.so", "libjimage.so"];
    module == "node" || module == "nodejs" || module.starts_with("libnode.so") || jdk.contains(&module)
}

/// Whether a Go function belongs to the standard library: its package path
/// has no dot in the first element (`net/http`, `runtime`), and it is not
/// `main`. (`github.com/x/y.F` and `main.f` are the program's.)
fn is_go_std(func: &str) -> bool {
    let path_end = func.rfind('/').map_or(0, |i| i + 1);
    let pkg_end = func[path_end..].find('.').map_or(func.len(), |i| path_end + i);
    let package = &func[..pkg_end];
    let first = package.split('/').next().unwrap_or_default();
    !package.is_empty() && package != "main" && !first.contains('.')
}

fn stack_errno(errno: i32) -> String {
    use fdtrace_common::syscall::consts::{EEXIST, EFAULT, ENOMEM};
    match -i64::from(errno) {
        EFAULT => "stack capture failed: EFAULT (unwalkable user stack)".into(),
        EEXIST => "stack map bucket taken by another stack (EEXIST)".into(),
        ENOMEM => "stack map full (ENOMEM)".into(),
        e => format!("stack capture failed: errno {e}"),
    }
}

fn basename(path: &str) -> String {
    Path::new(path).file_name().map_or_else(|| path.to_string(), |n| n.to_string_lossy().into_owned())
}

impl Stacks {
    /// Whether the instruction before `addr` in process `pid` is a call,
    /// i.e. `addr` is a return address. Read from the process, or from the
    /// file mapped there when the process is gone.
    fn is_return_address(&self, pid: u32, addr: u64, at_ns: u64) -> bool {
        let Some(start) = addr.checked_sub(7) else { return false };
        let mut b = [0u8; 7];
        let from_memory = !self.recorded.exec_after(pid, at_ns)
            && fs::File::open(format!("/proc/{pid}/mem"))
                .and_then(|mem| mem.read_exact_at(&mut b, start))
                .is_ok();
        let mut from_file = || {
            let recorded = self.recorded.maps_at(pid, at_ns);
            let maps = recorded.as_ref().or(self.maps.get(&pid).map(|m| &**m))?;
            let (path, off) = maps.file_offset(start)?;
            fs::File::open(path).and_then(|f| f.read_exact_at(&mut b, off)).ok()
        };
        (from_memory || from_file().is_some()) && ends_with_call(&b)
    }
}

/// x86-64 call encodings that end right before a return address.
fn ends_with_call(b: &[u8; 7]) -> bool {
    let at = |back: usize| b[7 - back];
    at(5) == 0xe8 // call rel32
        || (at(2) == 0xff && at(1) & 0xf8 == 0xd0) // call *%reg
        || (at(3) & 0xf0 == 0x40 && at(2) == 0xff && at(1) & 0xf8 == 0xd0) // call *%r8-15
        || (at(6) == 0xff && at(5) == 0x15) // call *disp32(%rip)
        || (at(3) == 0xff && at(2) & 0xf8 == 0x50) // call *disp8(%reg)
        || (at(6) == 0xff && at(5) & 0xf8 == 0x90) // call *disp32(%reg)
        || (at(4) == 0xff && at(3) == 0x54) // call *disp8(%reg,%reg)
}

/// `/proc/PID/maps`, for naming unsymbolized addresses module+offset.
#[derive(Default)]
struct Maps(Vec<(u64, u64, u64, String)>);

impl Maps {
    fn read(pid: u32) -> Maps {
        let text = fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
        Maps(parse_maps(&text))
    }

    fn locate(&self, addr: u64) -> Option<(String, u64)> {
        self.file_offset(addr).map(|(path, off)| (basename(path), off))
    }

    /// The file an address is mapped from, and its offset in the file.
    fn file_offset(&self, addr: u64) -> Option<(&str, u64)> {
        self.0
            .iter()
            .find(|(start, end, _, _)| (*start..*end).contains(&addr))
            .map(|(start, _, off, path)| (path.as_str(), addr - start + off))
    }
}

/// (start, end, file offset, path) of file-backed mappings.
fn parse_maps(text: &str) -> Vec<(u64, u64, u64, String)> {
    text.lines()
        .filter_map(|l| {
            let mut cols = l.split_whitespace();
            let (range, _perms, off) = (cols.next()?, cols.next()?, cols.next()?);
            let path = cols.nth(2)?;
            let (start, end) = range.split_once('-')?;
            Some((
                u64::from_str_radix(start, 16).ok()?,
                u64::from_str_radix(end, 16).ok()?,
                u64::from_str_radix(off, 16).ok()?,
                path.to_string(),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(function: &str, file: &str, module: &str) -> Frame {
        Frame {
            function: Some(function.into()),
            file: Some(file.into()),
            line: Some(1),
            module: Some(module.into()),
            offset: None,
        }
    }

    #[test]
    fn library_frames() {
        assert!(frame("__GI_socket", "socket.c", "libc.so.6").is_library());
        assert!(frame("std::net::TcpStream::connect", "/rustc/abc/library/std/src/net/tcp.rs", "app")
            .is_library());
        assert!(frame("hyper::client::connect", "/root/.cargo/registry/src/x/hyper/src/lib.rs", "app")
            .is_library());
        assert!(frame("net/http.(*Transport).dialConn", "/usr/lib/go/src/net/http/transport.go", "app")
            .is_library());
        assert!(frame("runtime.goexit", "/usr/lib/go/src/runtime/asm_amd64.s", "app").is_library());
        assert!(!frame("main.fetchStatus", "/src/app/main.go", "app").is_library());
        assert!(!frame("github.com/acme/api.(*Client).Do", "/src/api/client.go", "app").is_library());
        assert!(!frame("leaky::fetch_inventory", "/src/leaky.rs", "leaky").is_library());
        assert!(!frame("dial", "leaky.c", "leaky-c").is_library());
    }

    #[test]
    fn call_encodings() {
        assert!(ends_with_call(&[0, 0, 0xe8, 1, 2, 3, 4]));
        assert!(ends_with_call(&[0, 0, 0, 0, 0, 0xff, 0xd0]));
        assert!(ends_with_call(&[0, 0, 0, 0, 0x41, 0xff, 0xd3]));
        assert!(ends_with_call(&[0, 0xff, 0x15, 1, 2, 3, 4]));
        assert!(!ends_with_call(&[0x90; 7]));
        assert!(!ends_with_call(&[0; 7]));
    }

    #[test]
    fn maps_name_modules_and_offsets() {
        let text = "55d0a0000000-55d0a0001000 r--p 00000000 08:01 123 /usr/bin/app\n55d0a0001000-55d0a0005000 r-xp 00001000 08:01 123 /usr/bin/app\n7ffd0000-7ffd1000 rw-p 00000000 00:00 0 [stack]\n7f0000000000-7f0000001000 rw-p 00000000 00:00 0\n";
        let maps = Maps(parse_maps(text));
        assert_eq!(maps.locate(0x55d0a0001234), Some(("app".into(), 0x1234)));
        assert_eq!(maps.locate(0x1), None);
    }

    #[test]
    fn symbolizes_this_process() {
        let mut stacks = Stacks::new();
        let here = symbolizes_this_process as *const () as u64;
        let frames = stacks.symbolize(std::process::id(), &[here + 1], crate::clock::monotonic_ns());
        let f = frames[0].function.as_deref().unwrap_or_default();
        assert!(f.contains("symbolizes_this_process"), "got {frames:?}");
    }
}
