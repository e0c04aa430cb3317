//! Python frames among the native ones.
//!
//! The kernel reads a CPython thread's frame chain at each open
//! (`fdtrace-ebpf/src/python.rs`); `crate::python` names each frame from
//! its code object. Here they take the place of the interpreter's
//! evaluation loop in the native stack, as `py-spy dump --native` shows
//! them: each native `_PyEval_EvalFrameDefault` frame ran the Python
//! frames from the innermost one not yet placed out to the frame that
//! call started with (its entry frame), so it is replaced by those.
//! Python frames the native walk did not reach (CPython builds without
//! frame pointers end the walk early) follow the native frames.
use fdtrace_common::{PyStack, PY_FRAME_OWNED_BY_CSTACK};

use super::Frame;
use crate::python::{Interpreter, Names};

/// `Frame::module` of a Python frame.
pub const PY_MODULE: &str = "[python]";

/// The evaluation loop's native function: where Python frames go.
fn is_eval_loop(frame: &Frame) -> bool {
    matches!(frame.function.as_deref(), Some("_PyEval_EvalFrameDefault" | "PyEval_EvalFrameEx"))
}

/// Whether a native frame is the interpreter's: libpython, a python
/// executable (statically linked, as Debian's), an extension module
/// (`_socket.cpython-311-x86_64-linux-gnu.so`).
pub fn is_interpreter_module(module: &str) -> bool {
    module.starts_with("libpython")
        || module.contains(".cpython-")
        || module == "python"
        || module.strip_prefix("python").is_some_and(|v| v.starts_with(['2', '3']))
}

/// Whether a Python frame's file is library code rather than the
/// program's own: the standard library (`.../lib/python3.X/`), installed
/// packages (`site-packages`, `dist-packages`), frozen modules
/// (`<frozen importlib._bootstrap>`); `<string>` (`-c`, `exec`) is the
/// program's. The file alone says it (the interpreter that ran it is not
/// at hand where reports decide); `crate::python::is_library_file` is the
/// same test with the interpreter's own prefix.
pub fn is_library_path(file: &str) -> bool {
    if file.starts_with("<frozen ") || file.contains("/site-packages/") || file.contains("/dist-packages/") {
        return true;
    }
    ["/lib/python", "/lib64/python"].iter().any(|dir| {
        file.match_indices(dir).any(|(at, _)| {
            // `python3.11/` (or `python2.7/`): a version directory.
            let rest = &file[at + dir.len()..];
            let version: String = rest.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
            !version.is_empty() && rest[version.len()..].starts_with('/')
        })
    })
}

/// The Python frames of a stack the kernel read, named, innermost first,
/// each with whether it is where an evaluation loop call started.
pub fn frames(pid: u32, interp: &Interpreter, stack: &PyStack, names: &mut Names) -> Vec<(Frame, bool)> {
    let minor = interp.version.minor;
    let n = (stack.nframes as usize).min(stack.frames.len());
    let mut out: Vec<(Frame, bool)> = Vec::with_capacity(n);
    for i in 0..n {
        let (frame, mark) = (stack.frames[i], stack.marks[i]);
        if frame.code == 0 {
            break;
        }
        if minor >= 12 && mark == PY_FRAME_OWNED_BY_CSTACK {
            // An entry shim: the frame before it started an evaluation
            // loop call.
            if let Some(last) = out.last_mut() {
                last.1 = true;
            }
            continue;
        }
        let entry = match minor {
            10 => true,
            11 => mark != 0,
            _ => false,
        };
        let named = match names.frame(pid, interp, frame.code, frame.instr) {
            Ok(named) => Some(named),
            // Not a code object: the kernel read the chain while the
            // interpreter was changing it; the rest of it is not a stack.
            Err(e @ crate::python::PyError::NotPython { .. }) => {
                log::debug!("pid {pid}: Python stack cut at frame {i}: {e}");
                break;
            }
            Err(e) => {
                log::debug!("pid {pid}: Python frame {:#x}/{:#x}: {e}", frame.code, frame.instr);
                None
            }
        };
        out.push((
            Frame {
                function: named.as_ref().map(|n| n.function.clone()),
                file: named.as_ref().map(|n| n.file.clone()),
                line: named.as_ref().and_then(|n| n.line),
                module: Some(PY_MODULE.into()),
                offset: None,
            },
            entry,
        ));
    }
    out
}

/// The native frames with the Python ones in place of the evaluation
/// loop's. Where the native walk reached no evaluation loop, it went
/// astray in the interpreter (built without frame pointers) at its first
/// frame without a name: the Python frames follow the frames before it.
pub fn interleave(mut native: Vec<Frame>, python: Vec<(Frame, bool)>) -> Vec<Frame> {
    if !native.iter().any(is_eval_loop) {
        if let Some(lost) = native.iter().position(|f| f.function.is_none()) {
            native.truncate(lost);
        }
    }
    let mut out = Vec::with_capacity(native.len() + python.len());
    let mut python = python.into_iter().peekable();
    for frame in native {
        if !is_eval_loop(&frame) || python.peek().is_none() {
            out.push(frame);
            continue;
        }
        for (py, entry) in python.by_ref() {
            out.push(py);
            if entry {
                break;
            }
        }
    }
    out.extend(python.map(|(f, _)| f));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(name: &str, module: &str) -> Frame {
        Frame {
            function: Some(name.into()),
            file: None,
            line: None,
            module: Some(module.into()),
            offset: None,
        }
    }

    fn py(name: &str, entry: bool) -> (Frame, bool) {
        let f = Frame {
            function: Some(name.into()),
            file: Some("app.py".into()),
            line: Some(1),
            module: Some(PY_MODULE.into()),
            offset: None,
        };
        (f, entry)
    }

    fn names(frames: &[Frame]) -> Vec<&str> {
        frames.iter().map(|f| f.function.as_deref().unwrap_or("??")).collect()
    }

    #[test]
    fn each_evaluation_loop_frame_becomes_the_python_frames_it_ran() {
        let lib = "libpython3.11.so.1.0";
        let native = vec![
            c("__socket", "libc.so.6"),
            c("sock_initobj", lib),
            c("_PyEval_EvalFrameDefault", lib),
            c("method_vectorcall", lib),
            c("_PyEval_EvalFrameDefault", lib),
            c("Py_RunMain", lib),
        ];
        // The inner call ran connect ← fetch (entry); the outer main ←
        // <module> (entry).
        let python = vec![py("connect", false), py("fetch", true), py("main", false), py("<module>", true)];
        let got = interleave(native, python);
        assert_eq!(
            names(&got),
            [
                "__socket",
                "sock_initobj",
                "connect",
                "fetch",
                "method_vectorcall",
                "main",
                "<module>",
                "Py_RunMain"
            ]
        );
    }

    #[test]
    fn python_frames_the_native_walk_did_not_reach_follow_it() {
        let mut native = vec![c("__socket", "libc.so.6"), c("sock_initobj", "libpython3.12.so.1.0")];
        let got = interleave(native.clone(), vec![py("connect", false), py("<module>", true)]);
        assert_eq!(names(&got), ["__socket", "sock_initobj", "connect", "<module>"]);
        // The walk went astray after sock_initobj: what it found there is
        // not shown.
        native.push(Frame { function: None, module: Some("[heap]".into()), ..c("x", "") });
        native.push(c("PyObject_Call", "libpython3.12.so.1.0"));
        let got = interleave(native, vec![py("connect", true)]);
        assert_eq!(names(&got), ["__socket", "sock_initobj", "connect"]);
        // More evaluation loops than Python frames: the rest stay native.
        let lib = "libpython3.12.so.1.0";
        let native = vec![c("_PyEval_EvalFrameDefault", lib), c("_PyEval_EvalFrameDefault", lib)];
        let got = interleave(native, vec![py("f", true)]);
        assert_eq!(names(&got), ["f", "_PyEval_EvalFrameDefault"]);
    }

    #[test]
    fn library_files_are_told_from_the_programs_own() {
        for lib in [
            "/root/.pyenv/versions/3.11.7/lib/python3.11/socket.py",
            "/usr/lib/python3.11/http/client.py",
            "/usr/lib64/python3.9/socket.py",
            "/srv/venv/lib/python3.12/site-packages/requests/sessions.py",
            "/usr/lib/python3/dist-packages/urllib3/connection.py",
            "<frozen importlib._bootstrap>",
        ] {
            assert!(is_library_path(lib), "{lib}");
        }
        for own in ["/srv/app/client.py", "<string>", "/home/u/lib/pythonic/x.py", "/opt/lib/python/app.py"] {
            assert!(!is_library_path(own), "{own}");
        }
        for m in ["libpython3.11.so.1.0", "python3.11", "python3", "_socket.cpython-311-x86_64-linux-gnu.so"]
        {
            assert!(is_interpreter_module(m), "{m}");
        }
        for m in ["pythonista", "leaky", "libc.so.6"] {
            assert!(!is_interpreter_module(m), "{m}");
        }
    }
}
