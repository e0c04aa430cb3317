//! Tests against real interpreters: pyenv's 3.10–3.13 (with DWARF) and
//! Debian's 3.11 (without), each started on a script whose stack the test
//! knows from the script's text.
use std::{fs, io, process::Command};

use super::{testing::*, *};

/// Every table entry is what the DWARF of pyenv's build of that version
/// says, field by field.
#[test]
fn the_offset_table_matches_each_pythons_dwarf() {
    let mut checked = vec![];
    for py in pythons("the_offset_table_matches_each_pythons_dwarf") {
        let dwarf = dwarf_of(&py);
        let table =
            offsets::for_minor(py.minor).unwrap_or_else(|| panic!("no table entry for 3.{}", py.minor));
        let differences = table.differences(&dwarf);
        assert!(differences.is_empty(), "{}: table vs DWARF: {}", py.version, differences.join(", "));
        eprintln!("{}: the table matches DWARF: {dwarf:?}", py.version);
        checked.push(py.minor);
    }
    for minor in offsets::minors().filter(|m| !checked.contains(m)) {
        partly_skipped(
            "the_offset_table_matches_each_pythons_dwarf",
            &format!("table entry 3.{minor} unchecked: no pyenv build (pyenv install 3.{minor})"),
        );
    }
}

fn dwarf_of(py: &Pyenv) -> Offsets {
    let file = File::open(py.library()).unwrap_or_else(|e| panic!("{}: {e}", py.library().display()));
    let elf = Elf::map(&file).unwrap();
    let obj = object::File::parse(&*elf.0).unwrap();
    assert!(dwarf::has_debug_info(&obj), "{}: pyenv builds have DWARF", py.library().display());
    dwarf::offsets(&obj, py.minor).unwrap_or_else(|e| panic!("{}: {e}", py.version))
}

/// fdtrace's DWARF reader agrees with gdb's (an independent reader of the
/// same DWARF) on every offset, so the table is not checked against a
/// mistake of its own.
#[test]
fn dwarf_offsets_agree_with_gdb() {
    if Command::new("gdb").arg("--version").output().is_err() {
        return skipped("dwarf_offsets_agree_with_gdb", "needs gdb (apt-get install gdb)");
    }
    for py in pythons("dwarf_offsets_agree_with_gdb") {
        let ours = dwarf_of(&py);
        let frame = if py.minor >= 11 { "_PyInterpreterFrame" } else { "struct _frame" };
        let mut exprs: Vec<(String, Option<u32>)> = vec![
            (
                "(unsigned long)&((_PyRuntimeState*)0)->interpreters.head".into(),
                Some(ours.runtime_interp_head),
            ),
            ("(unsigned long)&((_PyRuntimeState*)0)->main_thread".into(), Some(ours.runtime_main_thread)),
            ("(unsigned long)&((PyThreadState*)0)->next".into(), Some(ours.tstate_next)),
            ("(unsigned long)&((PyThreadState*)0)->thread_id".into(), Some(ours.tstate_thread_id)),
            (
                format!(
                    "(unsigned long)&(({frame}*)0)->{}",
                    if py.minor >= 11 { "previous" } else { "f_back" }
                ),
                Some(ours.frame_back),
            ),
            ("(unsigned long)&((PyCodeObject*)0)->co_name".into(), Some(ours.code.co_name)),
            ("(unsigned long)&((PyCodeObject*)0)->co_filename".into(), Some(ours.code.co_filename)),
            ("(unsigned long)&((PyCodeObject*)0)->co_firstlineno".into(), Some(ours.code.co_firstlineno)),
            ("(unsigned long)&((PyCodeObject*)0)->co_linetable".into(), Some(ours.code.co_linetable)),
            ("(unsigned long)&((PyBytesObject*)0)->ob_sval".into(), Some(ours.code.bytes_data)),
            ("(unsigned long)&((PyBytesObject*)0)->ob_base.ob_size".into(), Some(ours.code.bytes_size)),
            ("(unsigned long)&((PyASCIIObject*)0)->length".into(), Some(ours.code.str_length)),
            ("(unsigned long)&((PyASCIIObject*)0)->state".into(), Some(ours.code.str_state)),
            ("sizeof(PyASCIIObject)".into(), Some(ours.code.ascii_size)),
            ("sizeof(PyCompactUnicodeObject)".into(), Some(ours.code.compact_size)),
            ("(unsigned long)&((PyObject*)0)->ob_type".into(), Some(ours.code.ob_type)),
        ];
        let frame_field = match py.minor {
            10 => ("frame", "f_code", "f_lasti"),
            11 | 12 => ("cframe", "f_code", "prev_instr"),
            _ => ("current_frame", "f_executable", "instr_ptr"),
        };
        exprs.push((
            format!("(unsigned long)&((PyThreadState*)0)->{}", frame_field.0),
            Some(ours.tstate_frame),
        ));
        exprs.push((format!("(unsigned long)&(({frame}*)0)->{}", frame_field.1), Some(ours.frame_code)));
        exprs.push((format!("(unsigned long)&(({frame}*)0)->{}", frame_field.2), Some(ours.frame_instr)));
        let threads = if py.minor >= 11 { "threads.head" } else { "tstate_head" };
        exprs.push((
            format!("(unsigned long)&((PyInterpreterState*)0)->{threads}"),
            Some(ours.interp_threads),
        ));
        if py.minor >= 11 {
            exprs.push((
                "(unsigned long)&((PyThreadState*)0)->native_thread_id".into(),
                ours.tstate_native_thread_id,
            ));
            exprs.push((format!("(unsigned long)&(({frame}*)0)->owner"), ours.frame_owner));
            exprs.push(("(unsigned long)&((PyCodeObject*)0)->co_qualname".into(), ours.code.co_qualname));
            exprs.push((
                "(unsigned long)&((PyCodeObject*)0)->co_code_adaptive".into(),
                ours.code.co_code_adaptive,
            ));
        }
        if py.minor == 11 {
            exprs.push((format!("(unsigned long)&(({frame}*)0)->is_entry"), ours.frame_is_entry));
        }
        if py.minor == 11 || py.minor == 12 {
            exprs.push(("(unsigned long)&((_PyCFrame*)0)->current_frame".into(), ours.cframe_current));
        }
        let mut cmd = Command::new("gdb");
        cmd.args(["-batch", "-nx"]).arg(py.library());
        for (expr, _) in &exprs {
            cmd.arg("-ex").arg(format!("print {expr}"));
        }
        let out = cmd.output().expect("running gdb");
        let text = String::from_utf8_lossy(&out.stdout);
        let values: Vec<u32> = text
            .lines()
            .filter_map(|l| l.split_once(" = "))
            .filter_map(|(_, v)| v.trim().parse().ok())
            .collect();
        assert_eq!(values.len(), exprs.len(), "{}: gdb printed {text}", py.version);
        for ((expr, ours), gdb) in exprs.iter().zip(values) {
            assert_eq!(*ours, Some(gdb), "{}: {expr}", py.version);
        }
        eprintln!("{}: {} offsets agree with gdb", py.version, exprs.len());
    }
}

/// The module the test program calls into: a non-ASCII (UCS1) function
/// name, blocking on stdin.
const HELPER: &str = "\
import sys


def bloqué(ready):
    ready()
    sys.stdin.readline()  # @block
";

/// The test program: a method, a nested function with a Cyrillic (UCS2)
/// name, a call into a second module, and a thread blocked in the
/// standard library (queue.get).
const MAIN: &str = "\
import queue
import threading

import helper


def waiter(q):
    q.get()  # @get


class Client:
    def fetch(self):
        def внутренний():
            helper.bloqué(lambda: print(\"ready\", flush=True))  # @inner
        внутренний()  # @fetch


def main():
    threading.Thread(target=waiter, args=(queue.Queue(),), daemon=True).start()
    Client().fetch()  # @main


main()  # @module
";

/// The line of `text` that ends with `# @marker`.
fn line_of(text: &str, marker: &str) -> u32 {
    let tag = format!("# @{marker}");
    let i = text.lines().position(|l| l.ends_with(&tag)).unwrap_or_else(|| panic!("no {tag}"));
    i as u32 + 1
}

/// Runs [`MAIN`] with `python` (in a directory whose name has a character
/// past U+FFFF, so file names are UCS4) and checks every frame of its two
/// threads.
fn names_every_frame(python: &Path, version: Version, from: OffsetsFrom, library: &Path) {
    let dir = TempDir::new("🐍");
    let (main_py, helper_py) = (dir.0.join("main.py"), dir.0.join("helper.py"));
    fs::write(&main_py, MAIN).unwrap();
    fs::write(&helper_py, HELPER).unwrap();
    let program = Running::start(python, &main_py);
    let pid = program.pid();
    program.wait_in_syscall(pid, libc::SYS_read as u32, &[Some(0)]);

    let started = std::time::Instant::now();
    let interp = inspect(pid).unwrap_or_else(|e| panic!("{version}: {e}")).expect("a CPython process");
    eprintln!("{version}: inspect took {:?} ({})", started.elapsed(), interp.offsets_from);
    assert_eq!(interp.version, version);
    assert_eq!(interp.offsets_from, from, "{version}");
    assert_eq!(interp.library, library, "{version}");
    assert_eq!(interp.info.minor, version.minor);

    // The main thread, blocked in helper.bloqué.
    let frames = walk(pid, pid, &interp).unwrap_or_else(|e| panic!("{version}: {e}"));
    let mut names = Names::new();
    let named: Vec<PyFrameName> = frames
        .iter()
        .map(|w| {
            names
                .frame(pid, &interp, w.frame.code, w.frame.instr)
                .unwrap_or_else(|e| panic!("{version}: {e}"))
        })
        .collect();
    let qualified = version.minor >= 11;
    let expect = |function: &str, plain: &str, file: &Path, text: &str, marker: &str| PyFrameName {
        function: if qualified { function } else { plain }.to_string(),
        file: file.display().to_string(),
        line: Some(line_of(text, marker)),
    };
    let expected = vec![
        expect("bloqué", "bloqué", &helper_py, HELPER, "block"),
        expect("Client.fetch.<locals>.внутренний", "внутренний", &main_py, MAIN, "inner"),
        expect("Client.fetch", "fetch", &main_py, MAIN, "fetch"),
        expect("main", "main", &main_py, MAIN, "main"),
        expect("<module>", "<module>", &main_py, MAIN, "module"),
    ];
    assert_eq!(named, expected, "{version}: the main thread's frames");
    let entries: Vec<bool> = frames.iter().map(|w| w.is_entry).collect();
    // 3.10 runs each Python call in its own evaluation loop call; 3.11+
    // runs Python-to-Python calls in the caller's: only <module> starts one.
    let expected_entries = if qualified { vec![false, false, false, false, true] } else { vec![true; 5] };
    assert_eq!(entries, expected_entries, "{version}: entry frames");
    assert!(named.iter().all(|n| !is_library_file(&n.file, &interp)), "{version}: the program's own files");

    // The second thread, blocked in queue.get (a futex wait without timeout).
    let threads = program.other_threads();
    assert_eq!(threads.len(), 1, "{version}: one thread besides the main one: {threads:?}");
    let tid = threads[0];
    program.wait_in_syscall(tid, libc::SYS_futex as u32, &[None, None, None, Some(0)]);
    match walk(pid, tid, &interp) {
        Err(PyError::ThreadIdUnknown { .. }) if version.minor == 10 => {}
        Err(e) => panic!("{version}: thread {tid}: {e}"),
        Ok(frames) => waiter_frames(version, pid, &interp, &mut names, &frames, &main_py),
    }

    // Once the process is gone, what was read is still named; forgotten,
    // it is not.
    drop(program);
    let first = frames[0].frame;
    assert_eq!(names.name(pid, &interp, first).as_ref(), Some(&expected[0]), "{version}: from the cache");
    names.forget(pid);
    assert_eq!(names.name(pid, &interp, first), None, "{version}: forgotten");
}

/// The waiter thread: library frames (threading's Condition.wait, queue's
/// Queue.get), the program's `waiter` at `q.get()`, library frames (the
/// thread's bootstrap); each library frame's line is the one in its file
/// that makes the call.
fn waiter_frames(
    version: Version,
    pid: u32,
    interp: &Interpreter,
    names: &mut Names,
    frames: &[Walked],
    main_py: &Path,
) {
    let named: Vec<PyFrameName> = frames.iter().filter_map(|w| names.name(pid, interp, w.frame)).collect();
    assert_eq!(named.len(), frames.len(), "{version}: every frame named: {named:?}");
    let own: Vec<usize> = (0..named.len()).filter(|&i| !is_library_file(&named[i].file, interp)).collect();
    assert_eq!(own.len(), 1, "{version}: one frame of the program's own: {named:#?}");
    let at = own[0];
    assert_eq!(at, 2, "{version}: under Condition.wait and Queue.get: {named:#?}");
    assert_eq!(
        named[at],
        PyFrameName {
            function: "waiter".into(),
            file: main_py.display().to_string(),
            line: Some(line_of(MAIN, "get"))
        },
        "{version}"
    );
    let source_line = |n: &PyFrameName| {
        let text = fs::read_to_string(&n.file).unwrap_or_else(|e| panic!("{}: {e}", n.file));
        let line = n.line.unwrap_or_else(|| panic!("{version}: {n:?} has no line"));
        text.lines().nth(line as usize - 1).unwrap_or_default().to_string()
    };
    assert_eq!(named[0].function, "Condition.wait", "{version}");
    assert!(named[0].file.ends_with("/threading.py"), "{version}: {:?}", named[0]);
    assert!(source_line(&named[0]).contains(".acquire("), "{version}: {:?}", source_line(&named[0]));
    assert_eq!(named[1].function, "Queue.get", "{version}");
    assert!(named[1].file.ends_with("/queue.py"), "{version}: {:?}", named[1]);
    assert!(source_line(&named[1]).contains(".wait("), "{version}: {:?}", source_line(&named[1]));
    let bootstrap: Vec<&str> = named[at + 1..].iter().map(|n| n.function.as_str()).collect();
    assert_eq!(bootstrap, ["Thread.run", "Thread._bootstrap_inner", "Thread._bootstrap"], "{version}");
    assert!(source_line(&named[at + 1]).contains("self._target("), "{version}");
}

#[test]
fn names_every_frame_of_each_pyenv_python() {
    for py in pythons("names_every_frame_of_each_pyenv_python") {
        let version = Version { major: 3, minor: py.minor, patch: Some(py.patch()) };
        names_every_frame(&py.python(), version, OffsetsFrom::Dwarf, &py.library());
        eprintln!("{}: every frame named (DWARF)", py.version);
    }
}

/// Debian's python3.11: statically linked, non-PIE, no DWARF: read with
/// the table.
#[test]
fn names_every_frame_of_debians_python() {
    let python = Path::new("/usr/bin/python3.11");
    if !python.exists() {
        return partly_skipped(
            "names_every_frame_of_debians_python",
            "no /usr/bin/python3.11 (Debian 12: apt-get install python3.11)",
        );
    }
    let out = Command::new(python).args(["-c", "import sys; print(*sys.version_info[:3])"]).output().unwrap();
    let v: Vec<u32> =
        String::from_utf8_lossy(&out.stdout).split_whitespace().map(|s| s.parse().unwrap()).collect();
    let version = Version { major: v[0], minor: v[1], patch: Some(v[2]) };
    names_every_frame(python, version, OffsetsFrom::Table, python);
    eprintln!("Debian's {version}: every frame named (table)");
}

#[test]
fn a_process_without_python_is_none() {
    let mut sleep = Command::new("sleep").arg("30").spawn().expect("sleep");
    let pid = sleep.id();
    // Wait for the exec: /proc/PID/exe is sleep's.
    for _ in 0..500 {
        let exe = fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
        if exe.file_name().is_some_and(|n| n == "sleep") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let found = inspect(pid);
    let _ = sleep.kill();
    let _ = sleep.wait();
    assert!(matches!(found, Ok(None)), "{found:?}");
    assert!(matches!(inspect(u32::MAX), Err(PyError::Proc { .. })), "no such process");
}

/// CPython versions fdtrace has no offsets for are refused, by name.
#[test]
fn older_pythons_are_refused_by_version() {
    const WAIT: &str = "import sys\nsys.stdout.write('ready\\n')\nsys.stdout.flush()\nsys.stdin.readline()\n";
    let mut ran = 0;
    for (major, minor) in [(3, 9), (2, 7)] {
        let Some(py) = pyenv(major, minor).filter(|p| p.python().exists()) else {
            partly_skipped(
                "older_pythons_are_refused_by_version",
                &format!("no pyenv build of {major}.{minor} (pyenv install {major}.{minor})"),
            );
            continue;
        };
        let dir = TempDir::new("old");
        let script = dir.0.join("wait.py");
        fs::write(&script, WAIT).unwrap();
        let program = Running::start(&py.python(), &script);
        let err = inspect(program.pid()).map(|found| found.map(|i| i.version));
        let Err(err @ PyError::UnsupportedVersion { .. }) = err else { panic!("{}: {err:?}", py.version) };
        let message = err.to_string();
        let named = format!("CPython {major}.{minor}");
        assert!(message.contains(&named) && message.contains("3.10–3.13"), "{message}");
        eprintln!("{}: {message}", py.version);
        ran += 1;
    }
    if ran == 0 {
        skipped("older_pythons_are_refused_by_version", "no pyenv 3.9 or 2.7 (pyenv install 3.9)");
    }
}

/// The line tables of real code objects (compiled by each Python) decode
/// to the lines CPython's own `co_lines()` gives, at every offset;
/// the source has lines going backwards, jumps of hundreds of lines, long
/// ranges on one line and instructions without a line.
#[test]
fn line_tables_decode_as_cpython_does() {
    let blank = "\n".repeat(300);
    let args = vec!["a"; 300].join(", ");
    let source = format!(
        "def backwards(x):\n    for i in range(x):\n        x = (x +\n             i)\n    return x\n\n\
         def long_jump():\n    a = 1\n{blank}    b = 2\n    return a + b\n\n\
         def long_range(f, a):\n    return f({args})\n\n\
         def no_lines(p):\n    try:\n        pass\n    finally:\n        pass\n    with open(p) as f:\n        return f\n\n\
         class C:\n    def m(self):\n        return [y for y in range(3) if y]\n\n\
         async def coroutine(x):\n    await x\n\n\
         g = lambda: (yield)\n"
    );
    let dumper = "\
import json, sys
def walk(co):
    yield co
    for c in co.co_consts:
        if hasattr(c, 'co_code'):
            yield from walk(c)
src = open(sys.argv[1]).read()
out = []
for co in walk(compile(src, 't.py', 'exec')):
    out.append({'first': co.co_firstlineno, 'table': co.co_linetable.hex(), 'size': len(co.co_code),
                'lines': [list(r) for r in co.co_lines()]})
print(json.dumps(out))
";
    let dir = TempDir::new("lines");
    let (src_py, dump_py) = (dir.0.join("t.py"), dir.0.join("dump.py"));
    fs::write(&src_py, &source).unwrap();
    fs::write(&dump_py, dumper).unwrap();
    for py in pythons("line_tables_decode_as_cpython_does") {
        let out = Command::new(py.python()).arg(&dump_py).arg(&src_py).output().unwrap();
        assert!(out.status.success(), "{}: {}", py.version, String::from_utf8_lossy(&out.stderr));
        let codes: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        let format = linetable::Format::for_minor(py.minor);
        let (mut offsets, mut backwards, mut none, mut max_len) = (0, false, false, 0);
        for code in &codes {
            let first = code["first"].as_i64().unwrap() as i32;
            let hex = code["table"].as_str().unwrap();
            let table: Vec<u8> =
                (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
            let (mut previous, mut run) = (None, (0, None));
            for r in code["lines"].as_array().unwrap() {
                let (start, end) = (r[0].as_i64().unwrap(), r[1].as_i64().unwrap());
                let line = r[2].as_u64().map(|l| l as u32);
                backwards |= line.is_some() && previous.is_some() && line < previous;
                none |= line.is_none();
                previous = line.or(previous);
                // The longest run of one line (3.10 splits it in ranges
                // of at most 254 bytes).
                if run.1 != line || line.is_none() {
                    run = (start, line);
                }
                max_len = max_len.max(end - run.0);
                for off in (start..end).step_by(2) {
                    assert_eq!(
                        linetable::line(format, &table, first, off),
                        line,
                        "{}: offset {off} of {code}",
                        py.version
                    );
                    offsets += 1;
                }
            }
            let size = code["size"].as_i64().unwrap();
            assert_eq!(linetable::line(format, &table, first, size), None, "{}: past the end", py.version);
            assert_eq!(linetable::line(format, &table, first, -2), Some(first as u32), "{}", py.version);
        }
        assert!(
            backwards && none && max_len > 254,
            "{}: the source covers the edge cases: backwards {backwards}, no line {none}, longest range {max_len}",
            py.version
        );
        eprintln!("{}: {} code objects, {offsets} offsets decode as co_lines()", py.version, codes.len());
    }
}

#[test]
fn library_files() {
    let interp = |library: &str, minor: u32| Interpreter {
        version: Version { major: 3, minor, patch: None },
        info: PyInfo::default(),
        offsets: Offsets::default(),
        offsets_from: OffsetsFrom::Table,
        library: PathBuf::from(library),
        code_type: None,
    };
    let pyenv = interp("/root/.pyenv/versions/3.12.1/lib/libpython3.12.so.1.0", 12);
    let debian = interp("/usr/bin/python3.11", 11);
    let multiarch = interp("/opt/py/lib/x86_64-linux-gnu/libpython3.11.so.1.0", 11);
    for (file, interp, library) in [
        ("/root/.pyenv/versions/3.12.1/lib/python3.12/socket.py", &pyenv, true),
        ("/root/.pyenv/versions/3.12.1/lib/python3.12/http/client.py", &pyenv, true),
        ("/root/.pyenv/versions/3.11.7/lib/python3.11/socket.py", &pyenv, false),
        ("/usr/lib/python3.12/socket.py", &pyenv, true),
        ("/usr/lib/python3.11/socket.py", &debian, true),
        ("/usr/lib/python3.11/http/client.py", &debian, true),
        ("/opt/py/lib/python3.11/ssl.py", &multiarch, true),
        ("/home/me/venv/lib/python3.11/site-packages/requests/api.py", &debian, true),
        ("/usr/lib/python3/dist-packages/urllib3/connection.py", &debian, true),
        ("<frozen importlib._bootstrap>", &debian, true),
        ("<string>", &debian, false),
        ("/home/me/app/client.py", &debian, false),
        ("/home/me/lib/python3.11x/thing.py", &debian, false),
        ("app.py", &debian, false),
    ] {
        assert_eq!(is_library_file(file, interp), library, "{file} with {}", interp.library.display());
    }
}

#[test]
fn versions_from_names_and_strings() {
    assert_eq!(name_version("/usr/bin/python3.11"), Some((3, 11)));
    assert_eq!(name_version("/x/lib/libpython3.10.so.1.0"), Some((3, 10)));
    assert_eq!(name_version("/x/lib/libpython3.6m.so.1.0"), Some((3, 6)));
    assert_eq!(name_version("/x/bin/python2.7"), Some((2, 7)));
    assert_eq!(name_version("/usr/bin/python3"), None);
    assert_eq!(name_version("/usr/bin/uwsgi"), None);
    let rodata = b"x\x003.10.1x\x00%.80s (%.80s)\x003.10.13\x00other";
    assert_eq!(find_version_string(rodata, 3, 10), Some(13), "3.10.1x is not a version");
    assert_eq!(find_version_string(b"\x003.13.0rc1\x00", 3, 13), Some(0));
    assert_eq!(find_version_string(b"\x003.11.2+\x00", 3, 11), Some(2));
    assert_eq!(find_version_string(b"\x003.11.\x00", 3, 11), None);
    assert_eq!(find_version_string(b"/src/Python-3.10.13\x00", 3, 10), Some(13), "tail-merged");
    assert_eq!(find_version_string(b"13.10.4\x00 23.10.5\x00", 3, 10), None);
    assert_eq!(Version { major: 3, minor: 10, patch: None }.to_string(), "3.10");
}

/// Each pyenv library's version, from its own name and under another
/// name (a copied interpreter): Py_Version in 3.11+, the PY_VERSION
/// string in 3.10.
#[test]
fn versions_of_each_pyenv_library() {
    for py in pythons("versions_of_each_pyenv_library") {
        let file = File::open(py.library()).unwrap();
        let elf = Elf::map(&file).unwrap();
        let obj = object::File::parse(&*elf.0).unwrap();
        let symbols = Symbols::read(&obj);
        assert!(symbols.runtime.is_some() && symbols.code_type.is_some() && symbols.cpython, "{symbols:?}");
        assert_eq!(symbols.py_version.is_some(), py.minor >= 11, "{}: Py_Version is 3.11+", py.version);
        let expected = Version { major: 3, minor: py.minor, patch: Some(py.patch()) };
        let path = py.library().display().to_string();
        assert_eq!(version(&obj, &symbols, &path), Some(expected), "{}", py.version);
        assert_eq!(version(&obj, &symbols, "/opt/app/bin/python"), Some(expected), "{}: renamed", py.version);
    }
}

/// 3.13's own _Py_DebugOffsets catch an offset fdtrace got wrong, and
/// name it.
#[test]
fn debug_offsets_catch_a_wrong_offset() {
    let Some(py) = pyenv(3, 13).filter(|p| p.python().exists()) else {
        return skipped("debug_offsets_catch_a_wrong_offset", "no pyenv 3.13 (pyenv install 3.13)");
    };
    let dir = TempDir::new("debug");
    let script = dir.0.join("wait.py");
    fs::write(&script, "import sys\nprint('ready', flush=True)\nsys.stdin.readline()\n").unwrap();
    let program = Running::start(&py.python(), &script);
    let mut interp = inspect(program.pid()).unwrap().unwrap();
    interp.offsets.frame_instr += 8;
    let err = check_debug_offsets(program.pid(), &interp).unwrap_err();
    assert!(
        matches!(
            err,
            PyError::DebugOffsets { field: "_PyInterpreterFrame.instr_ptr", theirs: 56, ours: 64, .. }
        ),
        "{err}"
    );
    eprintln!("{err}");
}

/// A pyenv python stopped at its exec, before the dynamic loader mapped
/// libpython: "not loaded yet", not "not Python".
#[test]
fn a_python_before_its_libpython_is_mapped_is_not_loaded_yet() {
    use std::os::unix::process::CommandExt as _;
    let Some(py) = MINORS.iter().rev().find_map(|&m| pyenv(3, m)).filter(|p| p.python().exists()) else {
        return skipped("a_python_before_its_libpython_is_mapped_is_not_loaded_yet", "no pyenv 3.10–3.13");
    };
    let mut cmd = Command::new(py.python());
    cmd.arg("-c").arg("pass");
    // SAFETY: between fork and exec the child only makes the ptrace
    // syscall, which is async-signal-safe; it stops at its exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        })
    };
    let mut child = cmd.spawn().unwrap();
    let pid = child.id();
    let mut status = 0;
    // SAFETY: waits for our own child; status is a valid out pointer.
    let waited = unsafe { libc::waitpid(pid as i32, &mut status, 0) };
    let found = inspect(pid);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(waited, pid as i32);
    assert!(libc::WIFSTOPPED(status), "stopped at its exec: {status:#x}");
    let Err(err @ PyError::NotLoaded { .. }) = found else { panic!("{}: {found:?}", py.version) };
    assert!(err.to_string().contains("not mapped yet"), "{err}");
}

#[test]
fn a_command_that_runs_cpython_is_told_before_it_runs() {
    let dir = std::env::temp_dir().join(format!("fdtrace-runs-cpython-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let script = |name: &str, text: &str| {
        let p = dir.join(name);
        fs::write(&p, text).unwrap();
        p
    };
    let env_python = script("app.py", "#!/usr/bin/env -S python3 -u\nprint(1)\n");
    let shell = script("app.sh", "#!/bin/sh\necho 1\n");
    let python3 = in_path("python3").expect("python3 in PATH");
    assert!(runs_cpython(&python3), "{}", python3.display());
    assert!(runs_cpython(&env_python), "#!/usr/bin/env python3");
    assert!(!runs_cpython(&shell), "a shell script");
    assert!(!runs_cpython(Path::new("/bin/sleep")), "sleep");
    assert!(!runs_cpython(&dir.join("missing")), "a missing file");
    for py in pythons("a_command_that_runs_cpython_is_told_before_it_runs") {
        // pyenv's executable calls Py_BytesMain in its libpython.
        assert!(runs_cpython(&py.python()), "{}", py.python().display());
    }
    let _ = fs::remove_dir_all(&dir);
}
