//! Naming a frame: its code object's function name, file and line table,
//! read from the process's memory, and the line of the frame's position.
//!
//! A code object's name, qualified name, file, first line and line table
//! never change while it lives, so each is read once per (process,
//! address). An address can be reused by a later code object once the
//! first is freed: a cached entry is used only while the object still
//! holds the same name, file and table pointers and first line (one small
//! read); when the process has exited, the cached entry is all there is.
use std::collections::{hash_map::Entry, HashMap};

use fdtrace_common::PyFrame;

use super::{
    linetable::{self, Format},
    offsets::CodeOffsets,
    process::Memory,
    Interpreter, PyError,
};

/// A Python frame, named.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PyFrameName {
    /// The qualified name (3.11+: `Client.fetch`, `main.<locals>.inner`);
    /// in 3.10, whose code objects have no qualified name, the name
    /// (`fetch`). Module-level code is `<module>`.
    pub function: String,
    /// `co_filename`: the path the module was loaded from, `<string>` for
    /// `-c` and `exec`, `<frozen importlib._bootstrap>`...
    pub file: String,
    /// `None` when the position has no line (an instruction the compiler
    /// gave no location).
    pub line: Option<u32>,
}

/// The longest string read (a path can be 4096 bytes).
const MAX_STR: u64 = 16 << 10;
/// The largest line table read (a module's top-level code can have tens of
/// kilobytes).
const MAX_TABLE: u64 = 4 << 20;

/// The fields of a code object that identify it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Header {
    ob_type: u64,
    name: u64,
    filename: u64,
    linetable: u64,
    first_line: i32,
}

/// A code object, read.
#[derive(Clone, Debug)]
struct Code {
    header: Header,
    function: String,
    file: String,
    linetable: Vec<u8>,
}

/// Names Python frames, keeping each process's memory open and each code
/// object read once. Call [`Names::forget`] when a process exits.
#[derive(Debug, Default)]
pub struct Names {
    memories: HashMap<u32, Memory>,
    codes: HashMap<(u32, u64), Code>,
}

impl Names {
    pub fn new() -> Names {
        Names::default()
    }

    /// The frame's function, file and line; `None` if it cannot be read
    /// (the process is gone and the code object was not read before, or
    /// the address is not a code object). Failures are logged at debug
    /// level: [`Names::frame`] says why.
    pub fn name(&mut self, pid: u32, interp: &Interpreter, frame: PyFrame) -> Option<PyFrameName> {
        match self.frame(pid, interp, frame.code, frame.instr) {
            Ok(name) => Some(name),
            Err(e) => {
                log::debug!("pid {pid}: Python frame {:#x}/{:#x}: {e}", frame.code, frame.instr);
                None
            }
        }
    }

    /// The frame of code object `code` at position `instr` (as
    /// [`fdtrace_common::PyInfo::frame_instr`] holds it), named.
    pub fn frame(
        &mut self,
        pid: u32,
        interp: &Interpreter,
        code: u64,
        instr: u64,
    ) -> Result<PyFrameName, PyError> {
        let entry = self.code(pid, interp, code)?;
        let offset = byte_offset(interp, code, instr);
        let line = linetable::line(
            Format::for_minor(interp.info.minor),
            &entry.linetable,
            entry.header.first_line,
            offset,
        );
        Ok(PyFrameName { function: entry.function.clone(), file: entry.file.clone(), line })
    }

    /// Drops what was read of process `pid` (it exited: its addresses
    /// mean nothing now).
    pub fn forget(&mut self, pid: u32) {
        self.memories.remove(&pid);
        self.codes.retain(|&(p, _), _| p != pid);
    }

    fn code(&mut self, pid: u32, interp: &Interpreter, addr: u64) -> Result<&Code, PyError> {
        let mem = match self.memories.entry(pid) {
            Entry::Occupied(e) => Some(&*e.into_mut()),
            Entry::Vacant(v) => Memory::open(pid).ok().map(|m| &*v.insert(m)),
        };
        let key = (pid, addr);
        let cached = self.codes.get(&key).map(|c| c.header);
        match (mem, mem.map(|m| read_header(m, &interp.offsets.code, addr))) {
            (Some(mem), Some(Ok(header))) => {
                if cached != Some(header) {
                    let code = read_code(mem, interp, addr, header).map_err(|e| e.at(pid))?;
                    self.codes.insert(key, code);
                }
            }
            // Gone, or unreadable now: what was read while it lived.
            _ if cached.is_some() => {}
            (_, Some(Err(e))) => return Err(e.at(pid)),
            _ => return Err(PyError::Memory { pid, what: "process (/proc/PID/mem)", addr }),
        }
        self.codes.get(&key).ok_or(PyError::Memory { pid, what: "code object", addr })
    }
}

/// The frame's position as a byte offset into the code's bytecode: 3.10's
/// `f_lasti` is an instruction index (its low 32 bits, signed: -1 before
/// the first instruction); 3.11+'s `prev_instr` and `instr_ptr` point into
/// the bytecode inline in the code object.
fn byte_offset(interp: &Interpreter, code: u64, instr: u64) -> i64 {
    match interp.offsets.code.co_code_adaptive {
        None => 2 * i64::from(instr as u32 as i32),
        Some(start) => (instr.wrapping_sub(code.wrapping_add(u64::from(start)))) as i64,
    }
}

/// A read that failed, before the process is known.
#[derive(Debug)]
pub(super) struct ReadError {
    what: &'static str,
    addr: u64,
    detail: Option<String>,
}

impl ReadError {
    fn new(what: &'static str, addr: u64) -> ReadError {
        ReadError { what, addr, detail: None }
    }

    pub(super) fn at(self, pid: u32) -> PyError {
        match self.detail {
            None => PyError::Memory { pid, what: self.what, addr: self.addr },
            Some(detail) => PyError::NotPython { pid, what: self.what, addr: self.addr, detail },
        }
    }
}

fn read_header(mem: &Memory, o: &CodeOffsets, addr: u64) -> Result<Header, ReadError> {
    let end =
        [o.ob_type, o.co_name, o.co_filename, o.co_linetable, o.co_firstlineno, o.co_qualname.unwrap_or(0)]
            .into_iter()
            .max()
            .unwrap_or(0)
            + 8;
    let buf = mem.bytes(addr, end as usize).map_err(|_| ReadError::new("code object", addr))?;
    let word = |off: u32| {
        let off = off as usize;
        u64::from_le_bytes(buf[off..off + 8].try_into().expect("8 bytes inside the header read"))
    };
    let first = o.co_firstlineno as usize;
    let first_line = i32::from_le_bytes(buf[first..first + 4].try_into().expect("inside the header read"));
    Ok(Header {
        ob_type: word(o.ob_type),
        name: word(o.co_qualname.unwrap_or(o.co_name)),
        filename: word(o.co_filename),
        linetable: word(o.co_linetable),
        first_line,
    })
}

fn read_code(mem: &Memory, interp: &Interpreter, addr: u64, header: Header) -> Result<Code, ReadError> {
    if interp.code_type.is_some_and(|t| t != header.ob_type) {
        return Err(ReadError {
            detail: Some(format!(
                "its type is {:#x}, code objects' is {:#x}",
                header.ob_type,
                interp.code_type.unwrap_or(0)
            )),
            ..ReadError::new("code object", addr)
        });
    }
    let o = &interp.offsets.code;
    Ok(Code {
        header,
        function: read_str(mem, o, header.name)?,
        file: read_str(mem, o, header.filename)?,
        linetable: read_bytes(mem, o, header.linetable)?,
    })
}

/// A `str` object's text: compact ASCII (the bytes follow the
/// `PyASCIIObject`) or compact UCS1/2/4 (after the
/// `PyCompactUnicodeObject`), which every interned string (names, file
/// names) is.
pub(super) fn read_str(mem: &Memory, o: &CodeOffsets, addr: u64) -> Result<String, ReadError> {
    let head = mem.bytes(addr, o.ascii_size as usize).map_err(|_| ReadError::new("str object", addr))?;
    let length =
        u64::from_le_bytes(head[o.str_length as usize..][..8].try_into().expect("inside PyASCIIObject"));
    let state =
        u32::from_le_bytes(head[o.str_state as usize..][..4].try_into().expect("inside PyASCIIObject"));
    let bad = |detail: String| ReadError { detail: Some(detail), ..ReadError::new("str object", addr) };
    let kind = o.state_kind.get(state);
    if o.state_compact.get(state) == 0 {
        return Err(bad(format!("not a compact string (state {state:#x})")));
    }
    if length > MAX_STR {
        return Err(bad(format!("{length} characters")));
    }
    let ascii = o.state_ascii.get(state) == 1;
    let data = addr + u64::from(if ascii { o.ascii_size } else { o.compact_size });
    let width = match (ascii, kind) {
        (true, 1) => 1,
        (false, 1 | 2 | 4) => kind,
        _ => return Err(bad(format!("string kind {kind} (ascii {ascii})"))),
    };
    let raw = mem
        .bytes(data, (length * u64::from(width)) as usize)
        .map_err(|_| ReadError::new("str data", data))?;
    decode(&raw, width).ok_or_else(|| bad("a code point past U+10FFFF".into()))
}

/// UCS1 (Latin-1), UCS2 or UCS4 code units, little-endian. A lone
/// surrogate (Python strings may hold them: a file name's undecodable
/// bytes, escaped) becomes U+FFFD.
pub(super) fn decode(raw: &[u8], width: u32) -> Option<String> {
    let point = |c: u32| match c {
        0xd800..=0xdfff => Some(char::REPLACEMENT_CHARACTER),
        _ => char::from_u32(c),
    };
    match width {
        1 => Some(raw.iter().map(|&b| char::from(b)).collect()),
        2 => raw.chunks_exact(2).map(|c| point(u32::from(u16::from_le_bytes([c[0], c[1]])))).collect(),
        4 => raw.chunks_exact(4).map(|c| point(u32::from_le_bytes([c[0], c[1], c[2], c[3]]))).collect(),
        _ => None,
    }
}

/// A `bytes` object's contents.
fn read_bytes(mem: &Memory, o: &CodeOffsets, addr: u64) -> Result<Vec<u8>, ReadError> {
    let size = mem.u64(addr + u64::from(o.bytes_size)).map_err(|_| ReadError::new("bytes object", addr))?;
    if size > MAX_TABLE {
        return Err(ReadError {
            detail: Some(format!("{size} bytes")),
            ..ReadError::new("bytes object", addr)
        });
    }
    let data = addr + u64::from(o.bytes_data);
    mem.bytes(data, size as usize).map_err(|_| ReadError::new("bytes data", data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_units_decode() {
        assert_eq!(decode(b"caf\xe9", 1).as_deref(), Some("café"), "UCS1 is Latin-1");
        let ucs2: Vec<u8> = "Ωμέγα".encode_utf16().flat_map(u16::to_le_bytes).collect();
        assert_eq!(decode(&ucs2, 2).as_deref(), Some("Ωμέγα"));
        let ucs4: Vec<u8> = "f🐍x".chars().flat_map(|c| (c as u32).to_le_bytes()).collect();
        assert_eq!(decode(&ucs4, 4).as_deref(), Some("f🐍x"));
        assert_eq!(decode(&0x110000u32.to_le_bytes(), 4), None);
        assert_eq!(decode(&[0x80, 0xdc, b'a', 0], 2).as_deref(), Some("\u{fffd}a"), "surrogateescape");
        assert_eq!(decode(b"ab", 3), None);
    }
}
