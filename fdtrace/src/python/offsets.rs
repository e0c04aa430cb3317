//! Where CPython keeps what fdtrace reads, per minor version (x86_64), for
//! interpreters without DWARF (Debian's `/usr/bin/python3.11`, most
//! distribution builds): the offsets of the fields on the way from
//! `_PyRuntime` to a thread's frames, and of the code, string and bytes
//! objects that name a frame.
//!
//! A minor version has one layout: the structs fdtrace reads (the thread
//! and frame structs, `PyCodeObject`, the string objects) are part of what
//! CPython keeps stable within a minor release, and `_PyRuntimeState`'s
//! head, which holds the field read here, does not move either. Each
//! entry was read from the DWARF of pyenv's build of that version
//! (3.10.13, 3.11.7, 3.12.1, 3.13.0) and agrees with gdb's `offsetof`
//! there; the test `the_offset_table_matches_each_pythons_dwarf` checks
//! every entry against the DWARF of each pyenv build present, and the end
//! to end tests read Debian's 3.11.2 (no DWARF) with the table. A version
//! without an entry is not read at all: a wrong offset would name the
//! wrong code.

/// A bit field in a 32-bit word (`PyASCIIObject.state`): its lowest bit
/// and width.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BitField {
    pub shift: u8,
    pub width: u8,
}

impl BitField {
    /// The field's value in `word`.
    pub fn get(self, word: u32) -> u32 {
        let mask = if self.width >= 32 { u32::MAX } else { (1u32 << self.width) - 1 };
        (word >> self.shift) & mask
    }
}

/// What names a frame: the code object's fields and the layout of the
/// string and bytes objects they point to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CodeOffsets {
    /// `PyObject.ob_type`.
    pub ob_type: u32,
    /// `PyCodeObject.co_name` (a `str`).
    pub co_name: u32,
    /// `PyCodeObject.co_qualname` (3.11+: `Client.fetch`).
    pub co_qualname: Option<u32>,
    /// `PyCodeObject.co_filename` (a `str`).
    pub co_filename: u32,
    /// `PyCodeObject.co_firstlineno` (an `int`).
    pub co_firstlineno: u32,
    /// `PyCodeObject.co_linetable` (a `bytes`): PEP 626's table in 3.10,
    /// PEP 657's location table in 3.11+.
    pub co_linetable: u32,
    /// `PyCodeObject.co_code_adaptive` (3.11+): the bytecode, inline in
    /// the code object, where frames' instruction pointers point.
    pub co_code_adaptive: Option<u32>,
    /// `PyBytesObject.ob_base.ob_size`: the length.
    pub bytes_size: u32,
    /// `PyBytesObject.ob_sval`: the bytes.
    pub bytes_data: u32,
    /// `PyASCIIObject.length`: the length in code points.
    pub str_length: u32,
    /// `PyASCIIObject.state`: the 32-bit word of bit fields below.
    pub str_state: u32,
    /// `state.kind`: 1, 2 or 4 bytes per code point.
    pub state_kind: BitField,
    /// `state.compact`: the characters follow the object.
    pub state_compact: BitField,
    /// `state.ascii`: compact and ASCII, the characters follow a
    /// `PyASCIIObject`.
    pub state_ascii: BitField,
    /// `sizeof(PyASCIIObject)`: 48 with `wstr` (3.10, 3.11), 40 after.
    pub ascii_size: u32,
    /// `sizeof(PyCompactUnicodeObject)`: where a non-ASCII compact
    /// string's characters start.
    pub compact_size: u32,
}

/// Everything fdtrace reads in one CPython version: the walk from
/// `_PyRuntime` to the frames (what [`fdtrace_common::PyInfo`] carries,
/// and two fields only userspace uses to find a thread) and [`CodeOffsets`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offsets {
    /// `_PyRuntimeState.interpreters.head`.
    pub runtime_interp_head: u32,
    /// `_PyRuntimeState.main_thread`: the main thread's `pthread_t`
    /// (userspace finds a 3.10 main thread with it).
    pub runtime_main_thread: u32,
    /// `PyInterpreterState.tstate_head` (3.10), `.threads.head` (3.11+).
    pub interp_threads: u32,
    /// `PyThreadState.next`.
    pub tstate_next: u32,
    /// `PyThreadState.thread_id` (the `pthread_t`).
    pub tstate_thread_id: u32,
    /// `PyThreadState.native_thread_id` (3.11+: the kernel's tid).
    pub tstate_native_thread_id: Option<u32>,
    /// `PyThreadState.frame` (3.10), `.cframe` (3.11, 3.12),
    /// `.current_frame` (3.13).
    pub tstate_frame: u32,
    /// `_PyCFrame.current_frame` (3.11, 3.12).
    pub cframe_current: Option<u32>,
    /// `PyFrameObject.f_code` (3.10), `_PyInterpreterFrame.f_code` (3.11,
    /// 3.12), `.f_executable` (3.13).
    pub frame_code: u32,
    /// `f_back` (3.10), `previous` (3.11+).
    pub frame_back: u32,
    /// `f_lasti` (3.10), `prev_instr` (3.11, 3.12), `instr_ptr` (3.13).
    pub frame_instr: u32,
    /// `_PyInterpreterFrame.owner` (3.11+).
    pub frame_owner: Option<u32>,
    /// `_PyInterpreterFrame.is_entry` (3.11).
    pub frame_is_entry: Option<u32>,
    pub code: CodeOffsets,
}

impl Offsets {
    /// Every field by name, for comparing two sets and saying which
    /// differ; bit fields as their shift and width.
    pub fn fields(&self) -> Vec<(&'static str, Option<u32>)> {
        let c = &self.code;
        let bits = |b: BitField| (Some(u32::from(b.shift)), Some(u32::from(b.width)));
        let (kind_shift, kind_width) = bits(c.state_kind);
        let (compact_shift, compact_width) = bits(c.state_compact);
        let (ascii_shift, ascii_width) = bits(c.state_ascii);
        vec![
            ("_PyRuntimeState.interpreters.head", Some(self.runtime_interp_head)),
            ("_PyRuntimeState.main_thread", Some(self.runtime_main_thread)),
            ("PyInterpreterState threads", Some(self.interp_threads)),
            ("PyThreadState.next", Some(self.tstate_next)),
            ("PyThreadState.thread_id", Some(self.tstate_thread_id)),
            ("PyThreadState.native_thread_id", self.tstate_native_thread_id),
            ("PyThreadState frame", Some(self.tstate_frame)),
            ("_PyCFrame.current_frame", self.cframe_current),
            ("frame code", Some(self.frame_code)),
            ("frame back", Some(self.frame_back)),
            ("frame instr", Some(self.frame_instr)),
            ("_PyInterpreterFrame.owner", self.frame_owner),
            ("_PyInterpreterFrame.is_entry", self.frame_is_entry),
            ("PyObject.ob_type", Some(c.ob_type)),
            ("PyCodeObject.co_name", Some(c.co_name)),
            ("PyCodeObject.co_qualname", c.co_qualname),
            ("PyCodeObject.co_filename", Some(c.co_filename)),
            ("PyCodeObject.co_firstlineno", Some(c.co_firstlineno)),
            ("PyCodeObject.co_linetable", Some(c.co_linetable)),
            ("PyCodeObject.co_code_adaptive", c.co_code_adaptive),
            ("PyBytesObject.ob_size", Some(c.bytes_size)),
            ("PyBytesObject.ob_sval", Some(c.bytes_data)),
            ("PyASCIIObject.length", Some(c.str_length)),
            ("PyASCIIObject.state", Some(c.str_state)),
            ("state.kind shift", kind_shift),
            ("state.kind width", kind_width),
            ("state.compact shift", compact_shift),
            ("state.compact width", compact_width),
            ("state.ascii shift", ascii_shift),
            ("state.ascii width", ascii_width),
            ("sizeof(PyASCIIObject)", Some(c.ascii_size)),
            ("sizeof(PyCompactUnicodeObject)", Some(c.compact_size)),
        ]
    }

    /// The fields where `self` and `other` differ: "name: 40 vs 48".
    pub fn differences(&self, other: &Offsets) -> Vec<String> {
        let show = |v: Option<u32>| v.map_or_else(|| "none".to_string(), |v| v.to_string());
        self.fields()
            .into_iter()
            .zip(other.fields())
            .filter(|(a, b)| a.1 != b.1)
            .map(|(a, b)| format!("{}: {} vs {}", a.0, show(a.1), show(b.1)))
            .collect()
    }
}

/// `state`'s bit fields, the same in 3.10–3.13: `interned:2, kind:3,
/// compact:1, ascii:1` from bit 0 (then `ready:1` before 3.12).
const KIND: BitField = BitField { shift: 2, width: 3 };
const COMPACT: BitField = BitField { shift: 5, width: 1 };
const ASCII: BitField = BitField { shift: 6, width: 1 };

/// 3.10 (read from 3.10.13).
const V3_10: Offsets = Offsets {
    runtime_interp_head: 32,
    runtime_main_thread: 72,
    interp_threads: 8,
    tstate_next: 8,
    tstate_thread_id: 176,
    tstate_native_thread_id: None,
    tstate_frame: 24,
    cframe_current: None,
    frame_code: 32,
    frame_back: 24,
    frame_instr: 96,
    frame_owner: None,
    frame_is_entry: None,
    code: CodeOffsets {
        ob_type: 8,
        co_name: 112,
        co_qualname: None,
        co_filename: 104,
        co_firstlineno: 40,
        co_linetable: 120,
        co_code_adaptive: None,
        bytes_size: 16,
        bytes_data: 32,
        str_length: 16,
        str_state: 32,
        state_kind: KIND,
        state_compact: COMPACT,
        state_ascii: ASCII,
        ascii_size: 48,
        compact_size: 72,
    },
};

/// 3.11 (read from 3.11.7; Debian's 3.11.2 is read with it).
const V3_11: Offsets = Offsets {
    runtime_interp_head: 40,
    runtime_main_thread: 80,
    interp_threads: 16,
    tstate_next: 8,
    tstate_thread_id: 152,
    tstate_native_thread_id: Some(160),
    tstate_frame: 56,
    cframe_current: Some(8),
    frame_code: 32,
    frame_back: 48,
    frame_instr: 56,
    frame_owner: Some(69),
    frame_is_entry: Some(68),
    code: CodeOffsets {
        ob_type: 8,
        co_name: 120,
        co_qualname: Some(128),
        co_filename: 112,
        co_firstlineno: 72,
        co_linetable: 136,
        co_code_adaptive: Some(184),
        bytes_size: 16,
        bytes_data: 32,
        str_length: 16,
        str_state: 32,
        state_kind: KIND,
        state_compact: COMPACT,
        state_ascii: ASCII,
        ascii_size: 48,
        compact_size: 72,
    },
};

/// 3.12 (read from 3.12.1).
const V3_12: Offsets = Offsets {
    runtime_interp_head: 40,
    runtime_main_thread: 64,
    interp_threads: 72,
    tstate_next: 8,
    tstate_thread_id: 136,
    tstate_native_thread_id: Some(144),
    tstate_frame: 56,
    cframe_current: Some(0),
    frame_code: 0,
    frame_back: 8,
    frame_instr: 56,
    frame_owner: Some(70),
    frame_is_entry: None,
    code: CodeOffsets {
        ob_type: 8,
        co_name: 120,
        co_qualname: Some(128),
        co_filename: 112,
        co_firstlineno: 68,
        co_linetable: 136,
        co_code_adaptive: Some(192),
        bytes_size: 16,
        bytes_data: 32,
        str_length: 16,
        str_state: 32,
        state_kind: KIND,
        state_compact: COMPACT,
        state_ascii: ASCII,
        ascii_size: 40,
        compact_size: 56,
    },
};

/// 3.13 (read from 3.13.0, the default build: not free-threaded).
const V3_13: Offsets = Offsets {
    runtime_interp_head: 632,
    runtime_main_thread: 656,
    interp_threads: 7344,
    tstate_next: 8,
    tstate_thread_id: 152,
    tstate_native_thread_id: Some(160),
    tstate_frame: 72,
    cframe_current: None,
    frame_code: 0,
    frame_back: 8,
    frame_instr: 56,
    frame_owner: Some(70),
    frame_is_entry: None,
    code: CodeOffsets {
        ob_type: 8,
        co_name: 120,
        co_qualname: Some(128),
        co_filename: 112,
        co_firstlineno: 68,
        co_linetable: 136,
        co_code_adaptive: Some(200),
        bytes_size: 16,
        bytes_data: 32,
        str_length: 16,
        str_state: 32,
        state_kind: KIND,
        state_compact: COMPACT,
        state_ascii: ASCII,
        ascii_size: 40,
        compact_size: 56,
    },
};

const TABLE: &[(u32, Offsets)] = &[(10, V3_10), (11, V3_11), (12, V3_12), (13, V3_13)];

/// The offsets of CPython 3.`minor`, if the table has them.
pub fn for_minor(minor: u32) -> Option<Offsets> {
    TABLE.iter().find(|e| e.0 == minor).map(|e| e.1)
}

/// The minor versions in the table, oldest first.
pub fn minors() -> impl Iterator<Item = u32> {
    TABLE.iter().map(|e| e.0)
}

/// The versions the table covers, for messages: "3.10–3.13".
pub fn covered() -> String {
    let mut runs: Vec<(u32, u32)> = vec![];
    for &(minor, _) in TABLE {
        match runs.last_mut() {
            Some(run) if run.1 + 1 == minor => run.1 = minor,
            _ => runs.push((minor, minor)),
        }
    }
    runs.iter()
        .map(|&(a, b)| if a == b { format!("3.{a}") } else { format!("3.{a}–3.{b}") })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups() {
        assert_eq!(for_minor(11).map(|o| o.code.co_qualname), Some(Some(128)));
        assert_eq!(for_minor(9), None, "3.9 is not read");
        assert_eq!(for_minor(14), None, "3.14 is not read");
        assert_eq!(covered(), "3.10–3.13");
        let minors: Vec<u32> = minors().collect();
        assert!(minors.windows(2).all(|w| w[0] < w[1]), "sorted, no duplicates");
    }

    #[test]
    fn each_version_has_the_fields_of_its_layout() {
        for (minor, o) in TABLE {
            let minor = *minor;
            assert_eq!(o.tstate_native_thread_id.is_some(), minor >= 11, "3.{minor}");
            assert_eq!(o.cframe_current.is_some(), minor == 11 || minor == 12, "3.{minor}");
            assert_eq!(o.frame_owner.is_some(), minor >= 11, "3.{minor}");
            assert_eq!(o.frame_is_entry.is_some(), minor == 11, "3.{minor}");
            assert_eq!(o.code.co_qualname.is_some(), minor >= 11, "3.{minor}");
            assert_eq!(o.code.co_code_adaptive.is_some(), minor >= 11, "3.{minor}");
        }
    }

    #[test]
    fn differences_name_the_fields() {
        let a = V3_12;
        let mut b = a;
        b.code.ascii_size = 48;
        b.frame_is_entry = Some(68);
        assert_eq!(
            a.differences(&b),
            vec!["_PyInterpreterFrame.is_entry: none vs 68", "sizeof(PyASCIIObject): 40 vs 48"]
        );
        assert!(a.differences(&a).is_empty());
    }

    #[test]
    fn bit_fields() {
        // interned=1, kind=4, compact=1, ascii=0, ready=1
        let state = 1 | (4 << 2) | (1 << 5) | (1 << 7);
        assert_eq!(KIND.get(state), 4);
        assert_eq!(COMPACT.get(state), 1);
        assert_eq!(ASCII.get(state), 0);
    }
}
