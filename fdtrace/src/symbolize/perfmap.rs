//! Perf maps: the names JIT runtimes give the code they generate.
//!
//! A runtime that writes `/tmp/perf-PID.map` (Node with `--perf-basic-prof`,
//! a JVM after `jcmd PID Compiler.perfmap`)
//! lists one `START SIZE NAME` line per piece of code, in hex. V8 writes the
//! numbers bare (`7fa296820dc0 378 JS:~fetchStatus /app.js:15:21`), HotSpot
//! with `0x` (`0x00007f5eb153bc00 0x0000000000000370 void Leaky.f(int)`);
//! both are read. A line that is neither is skipped and counted, never a
//! reason to drop the file: one bad line costs one name, not the process's
//! stacks (blazesym 0.2.7 rejects the whole file, and with it every frame
//! of the process, so fdtrace reads perf maps itself).
//!
//! The file is read through `/proc/PID/root` under the process's own pid
//! (a process in a container writes its `/tmp`, under the pid it sees), read
//! again when it has grown or changed, and the last read is kept for a
//! process that has exited.
//!
//! A V8 name carries the tier that compiled the code (`~` interpreted,
//! `^` baseline, `+` Maglev, `*` optimized): the same function compiled
//! twice is one function, so the mark is dropped and the frame is named by
//! the function and its source position.
use std::{
    collections::HashMap,
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::Arc,
};

use super::Frame;
use crate::host::procfs;

/// The module perf-map frames are given: code a runtime generated.
pub const JIT_MODULE: &str = "[jit]";

/// One perf map as read.
#[derive(Debug, Default)]
pub struct PerfMap {
    /// Sorted by start, then by line (a later line for the same code wins).
    entries: Vec<Entry>,
    /// Lines that are not `START SIZE NAME` in hex.
    pub skipped: u64,
}

#[derive(Debug)]
struct Entry {
    start: u64,
    end: u64,
    /// The line's index in the file: code moves and addresses are reused,
    /// so the latest line covering an address names it.
    line: usize,
    name: Arc<str>,
}

/// How far back a lookup looks for a longer entry covering an address.
const OVERLAP_SCAN: usize = 64;

impl PerfMap {
    /// Parses a perf map; lines that do not parse are counted in
    /// [`PerfMap::skipped`].
    pub fn parse(data: &[u8]) -> PerfMap {
        let mut map = PerfMap::default();
        for (line, text) in data.split(|&b| b == b'\n').enumerate() {
            let text = String::from_utf8_lossy(text);
            let text = text.trim_end_matches('\r');
            if text.trim().is_empty() {
                continue;
            }
            match parse_line(text) {
                Some((start, size, name)) => map.entries.push(Entry {
                    start,
                    end: start.saturating_add(size.max(1)),
                    line,
                    name: name.into(),
                }),
                None => map.skipped += 1,
            }
        }
        map.entries.sort_by_key(|e| (e.start, e.line));
        map
    }

    /// How many pieces of code the map names.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the map names nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The name of the code at `addr`: of the entries that cover it, the
    /// one written last.
    pub fn lookup(&self, addr: u64) -> Option<&str> {
        let after = self.entries.partition_point(|e| e.start <= addr);
        self.entries[..after]
            .iter()
            .rev()
            .take(OVERLAP_SCAN)
            .filter(|e| addr < e.end)
            .max_by_key(|e| e.line)
            .map(|e| &*e.name)
    }
}

/// `START SIZE NAME`: hex numbers, with or without `0x`, then the rest of
/// the line (which may hold spaces).
fn parse_line(line: &str) -> Option<(u64, u64, &str)> {
    let line = line.trim_start();
    let (start, rest) = line.split_once(char::is_whitespace)?;
    let rest = rest.trim_start();
    let (size, name) = rest.split_once(char::is_whitespace)?;
    let name = name.trim();
    if name.is_empty() {
        return None;
    }
    Some((hex(start)?, hex(size)?, name))
}

fn hex(s: &str) -> Option<u64> {
    let digits = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

/// A perf-map name as a frame: V8's `JS:*f /app.js:12:3` is function `f`
/// in `/app.js` line 12 (the tier mark dropped); HotSpot's
/// `void pkg.Class.method(int, java.lang.String)` is `pkg.Class.method`
/// (the return type and parameters dropped, as Java stack traces show it);
/// any other name (a stub: `Interpreter`, `Builtin:ArgumentsAdaptor`) is
/// kept whole.
pub fn frame(name: &str) -> Frame {
    let (function, file, line) = v8(name).or_else(|| hotspot(name)).unwrap_or((name.to_string(), None, None));
    Frame { function: Some(function), file, line, module: Some(JIT_MODULE.into()), offset: None }
}

/// V8's code kinds that name a JavaScript function, old and new.
const V8_FUNCTION_TAGS: &[&str] = &["JS", "LazyCompile", "Function", "Script", "Eval"];

/// `TAG:[MARK]NAME [FILE:LINE:COL]`.
fn v8(name: &str) -> Option<(String, Option<String>, Option<u32>)> {
    let (tag, rest) = name.split_once(':')?;
    if !V8_FUNCTION_TAGS.contains(&tag) {
        return None;
    }
    let rest = rest.strip_prefix(['~', '^', '+', '*']).unwrap_or(rest);
    // The position is the last word, `FILE:LINE:COL` (FILE itself may be
    // `node:net`); an anonymous function has an empty name before it.
    let (func, position) = match rest.rsplit_once(' ') {
        Some((func, pos)) => (func.trim(), Some(pos)),
        None if rest.contains(':') => ("", Some(rest)),
        None => (rest, None),
    };
    let placed = position.and_then(|pos| {
        let mut parts = pos.rsplitn(3, ':');
        let (col, line, file) = (parts.next()?, parts.next()?, parts.next()?);
        col.parse::<u32>().ok()?;
        Some((file.to_string(), line.parse::<u32>().ok()?))
    });
    let func = if func.is_empty() { "(anonymous)" } else { func };
    Some(match (placed, position) {
        (Some((file, line)), _) => (func.to_string(), Some(file), Some(line)),
        // A last word that is no position is part of the name.
        (None, Some(_)) => (rest.trim().to_string(), None, None),
        (None, None) => (func.to_string(), None, None),
    })
}

/// `RET pkg.Class.method(PARAMS)`.
fn hotspot(name: &str) -> Option<(String, Option<String>, Option<u32>)> {
    let open = name.find('(')?;
    if !name.ends_with(')') {
        return None;
    }
    let head = &name[..open];
    let method = head.rsplit(' ').next()?;
    // A Java method is qualified by its class; a stub (`Interpreter`) is not.
    if method.is_empty() || !method.contains('.') || method.contains(['<', '>']) && !method.ends_with('>') {
        return None;
    }
    Some((method.to_string(), None, None))
}

/// Whether a perf-map frame is the runtime's or the standard library's
/// code, not the program's: Node's own modules (`node:net`), the JDK's
/// packages, the runtimes' stubs.
pub fn is_runtime_frame(f: &Frame) -> bool {
    let func = f.function.as_deref().unwrap_or_default();
    let file = f.file.as_deref().unwrap_or_default();
    if file.starts_with("node:") || file.starts_with("internal/") {
        return true;
    }
    if f.file.is_some() {
        return false;
    }
    const JDK: &[&str] = &["java.", "javax.", "jdk.", "sun.", "com.sun."];
    // Stubs have no class (`Interpreter`, `StubRoutines (1)`, V8 builtins).
    JDK.iter().any(|p| func.starts_with(p)) || !func.contains('.')
}

/// Whether a frame in Node's own binary is V8's plumbing between
/// JavaScript frames (`Builtins_ConstructHandler`,
/// `Builtins_InterpreterEntryTrampoline`,
/// `construct_stub_create_deopt_addr`): which of them a call goes
/// through depends on the tier that compiled its caller, so keeping them
/// would split one leak into a group per tier.
pub fn is_v8_plumbing(f: &Frame) -> bool {
    let func = f.function.as_deref().unwrap_or_default();
    let module = f.module.as_deref().unwrap_or_default();
    matches!(module, "node" | "nodejs") && (func.starts_with("Builtins_") || func.ends_with("_deopt_addr"))
}

/// The perf maps of the traced processes, as last read.
#[derive(Default)]
pub struct PerfMaps {
    procs: HashMap<u32, Loaded>,
}

struct Loaded {
    path: PathBuf,
    /// The file's size and modification time when read.
    stamp: (u64, i64),
    map: Arc<PerfMap>,
}

/// How many processes' maps are kept before those of exited processes are
/// dropped.
const KEEP: usize = 256;

impl PerfMaps {
    /// The perf map of `pid`: read when first needed, again when the file
    /// has changed since; the last read when it can no longer be read (the
    /// process exited). `None`: the process never had one.
    pub fn get(&mut self, pid: u32) -> Option<Arc<PerfMap>> {
        let path = match self.procs.get(&pid) {
            Some(l) => l.path.clone(),
            None => path_of(pid)?,
        };
        let stamp = fs::metadata(&path).ok().map(|m| (m.len(), m.mtime()));
        match (stamp, self.procs.get(&pid)) {
            (Some(now), Some(l)) if l.stamp == now => return Some(Arc::clone(&l.map)),
            (None, Some(l)) => return Some(Arc::clone(&l.map)),
            (None, None) => return None,
            _ => {}
        }
        let data = match fs::read(&path) {
            Ok(data) => data,
            Err(e) => {
                log::debug!("reading {}: {e}", path.display());
                return self.procs.get(&pid).map(|l| Arc::clone(&l.map));
            }
        };
        let map = Arc::new(PerfMap::parse(&data));
        if map.skipped > 0 {
            log::debug!("{}: {} lines skipped", path.display(), map.skipped);
        }
        self.forget_exited();
        let stamp = stamp.unwrap_or_default();
        self.procs.insert(pid, Loaded { path, stamp, map: Arc::clone(&map) });
        Some(map)
    }

    /// Every process's perf map as last read.
    pub fn loaded(&self) -> impl Iterator<Item = (u32, &PerfMap)> + '_ {
        self.procs.iter().map(|(pid, l)| (*pid, &*l.map))
    }

    fn forget_exited(&mut self) {
        if self.procs.len() >= KEEP {
            self.procs.retain(|pid, _| Path::new(&format!("/proc/{pid}")).exists());
        }
    }
}

/// `/proc/PID/root/tmp/perf-NSPID.map`, where NSPID is the pid the process
/// sees itself as.
pub fn path_of(pid: u32) -> Option<PathBuf> {
    let ns = procfs::ns_pid(pid).unwrap_or(pid);
    let path = PathBuf::from(format!("/proc/{pid}/root/tmp/perf-{ns}.map"));
    path.exists().then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines as Node 20 (`--perf-basic-prof`) writes them.
    const V8: &str = "\
7fa296817e00 378 JS:~processTicksAndRejections node:internal/process/task_queues:67:35
68751d5631e 140 JS:~processTicksAndRejections node:internal/process/task_queues:67:35
7fa296820dc0 378 JS:~fetchStatus /work/app/agentleak.js:15:21
7fa296850f80 968 JS:^processTicksAndRejections node:internal/process/task_queues:67:35
7fa296860380 2a8 JS:*fetchStatus /work/app/agentleak.js:15:21
7fa296861000 100 JS:^ node:net:1326:73
7fa296862000 40 Builtin:ArgumentsAdaptorTrampoline
";

    /// Lines as OpenJDK 17 writes them (`jcmd PID Compiler.perfmap`).
    const HOTSPOT: &str = "\
0x00007f5eb1400080 0x0000000000000040 flush_icache_stub
0x00007f5eb1400c00 0x0000000000007530 StubRoutines (1)
0x00007f5eb153b8a0 0x00000000000000c0 void Leaky.handleRequest(java.net.InetSocketAddress, int, boolean)
0x00007f5eb153bc00 0x0000000000000370 void Leaky.fetchInventory(java.net.InetSocketAddress, int, boolean)
0x00007f5eb153c000 0x0000000000000100 int sun.nio.ch.Net.socket0(boolean, boolean, boolean, boolean)
0x00007f5eb153d000 0x0000000000000100 void java.util.HashMap.<init>()
";

    #[test]
    fn reads_v8_lines() {
        let map = PerfMap::parse(V8.as_bytes());
        assert_eq!((map.len(), map.skipped), (7, 0));
        assert_eq!(map.lookup(0x7fa296820dc0 + 0x10), Some("JS:~fetchStatus /work/app/agentleak.js:15:21"));
        assert_eq!(map.lookup(0x7fa296820dc0 + 0x378), None, "past the end");
        assert_eq!(
            map.lookup(0x68751d5631e),
            Some("JS:~processTicksAndRejections node:internal/process/task_queues:67:35")
        );
        assert_eq!(map.lookup(0x1000), None);
    }

    #[test]
    fn reads_hotspot_lines_with_0x() {
        let map = PerfMap::parse(HOTSPOT.as_bytes());
        assert_eq!((map.len(), map.skipped), (6, 0));
        let name = map.lookup(0x7f5eb153bc00 + 0x36f).unwrap();
        assert_eq!(frame(name).function.as_deref(), Some("Leaky.fetchInventory"));
        assert_eq!(map.lookup(0x7f5eb1400c00 + 0x10), Some("StubRoutines (1)"));
    }

    #[test]
    fn bad_lines_are_skipped_and_counted() {
        let text = format!("{HOTSPOT}garbage\n0xZZ 0x10 f\n7f00 \n\n7f00 10\r\n{V8}");
        let map = PerfMap::parse(text.as_bytes());
        assert_eq!(
            map.skipped, 4,
            "garbage, a bad number, a line without a size, one without a name (the empty one is no line)"
        );
        assert_eq!(map.len(), 13);
        assert!(map.lookup(0x7fa296860380).is_some() && map.lookup(0x7f5eb153b8a0).is_some());
        // Not UTF-8: that line's name is lossy, the others are intact.
        let map = PerfMap::parse(b"10 10 caf\xe9\n20 10 ok\n");
        assert_eq!((map.len(), map.skipped, map.lookup(0x20)), (2, 0, Some("ok")));
    }

    #[test]
    fn the_latest_line_for_reused_code_wins() {
        let map = PerfMap::parse(
            b"1000 100 JS:~old /a.js:1:1\n1000 100 JS:*new /a.js:9:1\n1080 10 JS:~inner /a.js:5:1\n",
        );
        assert_eq!(frame(map.lookup(0x1010).unwrap()).function.as_deref(), Some("new"));
        assert_eq!(frame(map.lookup(0x1085).unwrap()).function.as_deref(), Some("inner"));
        assert_eq!(frame(map.lookup(0x10f0).unwrap()).function.as_deref(), Some("new"));
    }

    #[test]
    fn one_v8_function_is_one_frame_whatever_its_tier() {
        let names = [
            "JS:~fetchStatus /work/app/agentleak.js:15:21",
            "JS:^fetchStatus /work/app/agentleak.js:15:21",
            "JS:+fetchStatus /work/app/agentleak.js:15:21",
            "JS:*fetchStatus /work/app/agentleak.js:15:21",
            "LazyCompile:*fetchStatus /work/app/agentleak.js:15:21",
        ];
        let frames: Vec<Frame> = names.iter().map(|n| frame(n)).collect();
        for f in &frames {
            assert_eq!(f, &frames[0]);
        }
        let f = &frames[0];
        assert_eq!(
            (f.function.as_deref(), f.file.as_deref(), f.line, f.module.as_deref()),
            (Some("fetchStatus"), Some("/work/app/agentleak.js"), Some(15), Some(JIT_MODULE))
        );
        assert!(!is_runtime_frame(f));
    }

    #[test]
    fn v8_names_without_a_name_or_a_position() {
        let f = frame("JS:^ node:net:1326:73");
        assert_eq!(
            (f.function.as_deref(), f.file.as_deref(), f.line),
            (Some("(anonymous)"), Some("node:net"), Some(1326))
        );
        assert!(is_runtime_frame(&f));
        let f = frame("JS:*fetch");
        assert_eq!((f.function.as_deref(), f.file), (Some("fetch"), None));
        let f = frame("JS:*get value /x/a.js:3:7");
        assert_eq!(
            (f.function.as_deref(), f.file.as_deref(), f.line),
            (Some("get value"), Some("/x/a.js"), Some(3))
        );
        let f = frame("Builtin:ArgumentsAdaptorTrampoline");
        assert_eq!(f.function.as_deref(), Some("Builtin:ArgumentsAdaptorTrampoline"));
        assert!(is_runtime_frame(&f));
    }

    #[test]
    fn hotspot_names() {
        let f = frame("void Leaky.fetchInventory(java.net.InetSocketAddress, int, boolean)");
        assert_eq!(f.function.as_deref(), Some("Leaky.fetchInventory"));
        assert!(!is_runtime_frame(&f));
        let f = frame("int sun.nio.ch.Net.socket0(boolean, boolean, boolean, boolean)");
        assert_eq!(f.function.as_deref(), Some("sun.nio.ch.Net.socket0"));
        assert!(is_runtime_frame(&f));
        let f = frame("void java.util.HashMap.<init>()");
        assert_eq!(f.function.as_deref(), Some("java.util.HashMap.<init>"));
        let f = frame("StubRoutines (1)");
        assert_eq!(f.function.as_deref(), Some("StubRoutines (1)"));
        assert!(is_runtime_frame(&f));
        let f = frame("Interpreter");
        assert!(is_runtime_frame(&f));
    }

    #[test]
    fn maps_are_read_again_when_they_grow_and_kept_when_gone() {
        let dir = std::env::temp_dir().join(format!("fdtrace-perfmap-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("perf-1.map");
        fs::write(&path, "1000 10 JS:~a /a.js:1:1\n").unwrap();
        let mut maps = PerfMaps::default();
        let pid = 4_000_000; // No such process: the path is given.
        let stamp = |p: &Path| fs::metadata(p).map(|m| (m.len(), m.mtime())).unwrap();
        maps.procs.insert(pid, Loaded { path: path.clone(), stamp: (0, 0), map: Arc::default() });
        assert!(maps.get(pid).unwrap().lookup(0x1000).is_some(), "read: the stamp differs");
        fs::write(&path, "1000 10 JS:~a /a.js:1:1\n2000 10 JS:~b /a.js:2:1\n").unwrap();
        assert_ne!(maps.procs[&pid].stamp, stamp(&path));
        assert!(maps.get(pid).unwrap().lookup(0x2000).is_some(), "grown: read again");
        fs::remove_file(&path).unwrap();
        assert!(maps.get(pid).unwrap().lookup(0x2000).is_some(), "gone: the last read");
        let _ = fs::remove_dir_all(&dir);
    }
}
