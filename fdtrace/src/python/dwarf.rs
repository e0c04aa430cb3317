//! [`Offsets`] from an interpreter's own DWARF (pyenv builds keep it in
//! `libpython3.X.so.1.0`; distributions ship it in a `-dbg` package under
//! `/usr/lib/debug/.build-id/`).
//!
//! CPython's structs are defined in almost every compilation unit, so the
//! first definition of each name is taken. A name is a struct tag
//! (`struct _ts`) or a typedef (`PyASCIIObject`, a typedef of an anonymous
//! struct); members are found through anonymous structs and unions, and a
//! path descends into named ones (`interpreters.head`, `threads.head`).
use std::{borrow::Cow, collections::HashMap};

use gimli::{AttributeValue, EndianSlice, LittleEndian, UnitOffset};
use object::{Object, ObjectSection};

use super::offsets::{BitField, CodeOffsets, Offsets};

type Reader<'a> = EndianSlice<'a, LittleEndian>;

/// The struct names fdtrace reads, as tags or typedefs.
const NAMES: &[&str] = &[
    "_PyRuntimeState",
    "_is",
    "_ts",
    "_frame",
    "_PyInterpreterFrame",
    "_PyCFrame",
    "PyCodeObject",
    "_object",
    "PyBytesObject",
    "PyASCIIObject",
    "PyCompactUnicodeObject",
];

/// Whether the file has DWARF type information at all.
pub fn has_debug_info(obj: &object::File) -> bool {
    obj.section_by_name(".debug_info").is_some_and(|s| s.size() > 0)
}

/// The offsets CPython 3.`minor` uses, as `obj`'s DWARF has them; an error
/// names the first struct or member it lacks.
pub fn offsets(obj: &object::File, minor: u32) -> Result<Offsets, String> {
    let load = |id: gimli::SectionId| -> Result<Cow<[u8]>, gimli::Error> {
        Ok(obj
            .section_by_name(id.name())
            .and_then(|s| s.uncompressed_data().ok())
            .unwrap_or(Cow::Borrowed(&[])))
    };
    let sections = gimli::DwarfSections::load(load).map_err(|e| format!("reading DWARF: {e}"))?;
    let dwarf = sections.borrow(|s| EndianSlice::new(s, LittleEndian));
    let types = Types::index(&dwarf)?;
    read(&types, minor)
}

/// The fields of version 3.`minor`, by their names in that version.
fn read(t: &Types, minor: u32) -> Result<Offsets, String> {
    let v311 = minor >= 11;
    let frame = if v311 { "_PyInterpreterFrame" } else { "_frame" };
    let offsets = Offsets {
        runtime_interp_head: t.offset("_PyRuntimeState", &["interpreters", "head"])?,
        runtime_main_thread: t.offset("_PyRuntimeState", &["main_thread"])?,
        interp_threads: if v311 {
            t.offset("_is", &["threads", "head"])?
        } else {
            t.offset("_is", &["tstate_head"])?
        },
        tstate_next: t.offset("_ts", &["next"])?,
        tstate_thread_id: t.offset("_ts", &["thread_id"])?,
        tstate_native_thread_id: v311.then(|| t.offset("_ts", &["native_thread_id"])).transpose()?,
        tstate_frame: t.offset(
            "_ts",
            &[match minor {
                10 => "frame",
                11 | 12 => "cframe",
                _ => "current_frame",
            }],
        )?,
        cframe_current: (minor == 11 || minor == 12)
            .then(|| t.offset("_PyCFrame", &["current_frame"]))
            .transpose()?,
        frame_code: t.offset(frame, &[if minor >= 13 { "f_executable" } else { "f_code" }])?,
        frame_back: t.offset(frame, &[if v311 { "previous" } else { "f_back" }])?,
        frame_instr: t.offset(
            frame,
            &[match minor {
                10 => "f_lasti",
                11 | 12 => "prev_instr",
                _ => "instr_ptr",
            }],
        )?,
        frame_owner: v311.then(|| t.offset(frame, &["owner"])).transpose()?,
        frame_is_entry: (minor == 11).then(|| t.offset(frame, &["is_entry"])).transpose()?,
        code: CodeOffsets {
            ob_type: t.offset("_object", &["ob_type"])?,
            co_name: t.offset("PyCodeObject", &["co_name"])?,
            co_qualname: v311.then(|| t.offset("PyCodeObject", &["co_qualname"])).transpose()?,
            co_filename: t.offset("PyCodeObject", &["co_filename"])?,
            co_firstlineno: t.offset("PyCodeObject", &["co_firstlineno"])?,
            co_linetable: t.offset("PyCodeObject", &["co_linetable"])?,
            co_code_adaptive: v311.then(|| t.offset("PyCodeObject", &["co_code_adaptive"])).transpose()?,
            bytes_size: t.offset("PyBytesObject", &["ob_base", "ob_size"])?,
            bytes_data: t.offset("PyBytesObject", &["ob_sval"])?,
            str_length: t.offset("PyASCIIObject", &["length"])?,
            str_state: t.offset("PyASCIIObject", &["state"])?,
            state_kind: t.bits("PyASCIIObject", "state", "kind")?,
            state_compact: t.bits("PyASCIIObject", "state", "compact")?,
            state_ascii: t.bits("PyASCIIObject", "state", "ascii")?,
            ascii_size: t.size("PyASCIIObject")?,
            compact_size: t.size("PyCompactUnicodeObject")?,
        },
    };
    Ok(offsets)
}

/// A struct's definition: its unit and entry.
#[derive(Clone, Copy)]
struct Def {
    unit: usize,
    offset: UnitOffset,
}

/// A member as found: its offset from the start of the outer struct, and
/// the entry of its type (in the same unit).
struct Member {
    offset: u64,
    unit: usize,
    entry: UnitOffset,
}

/// The definitions of [`NAMES`] in a file's DWARF.
struct Types<'a> {
    dwarf: &'a gimli::Dwarf<Reader<'a>>,
    units: Vec<gimli::Unit<Reader<'a>>>,
    /// Struct tag or typedef name → the struct's definition.
    defs: HashMap<String, Def>,
}

impl<'a> Types<'a> {
    /// Reads the units' top-level types until every name of [`NAMES`] has a
    /// definition.
    fn index(dwarf: &'a gimli::Dwarf<Reader<'a>>) -> Result<Types<'a>, String> {
        let mut types = Types { dwarf, units: vec![], defs: HashMap::new() };
        let mut headers = dwarf.units();
        while let Some(header) = headers.next().map_err(|e| format!("reading DWARF units: {e}"))? {
            let Ok(unit) = dwarf.unit(header) else { continue };
            types.units.push(unit);
            types.index_unit(types.units.len() - 1);
            if NAMES.iter().all(|n| types.defs.contains_key(*n)) {
                break;
            }
        }
        Ok(types)
    }

    fn index_unit(&mut self, u: usize) {
        let unit = &self.units[u];
        let Ok(mut tree) = unit.entries_tree(None) else { return };
        let Ok(root) = tree.root() else { return };
        let mut children = root.children();
        let mut found = vec![];
        while let Ok(Some(child)) = children.next() {
            let entry = child.entry();
            let tag = entry.tag();
            if tag != gimli::DW_TAG_structure_type && tag != gimli::DW_TAG_typedef {
                continue;
            }
            let Some(name) = self.name(unit, entry) else { continue };
            if !NAMES.contains(&name.as_str()) || self.defs.contains_key(&name) {
                continue;
            }
            let target = if tag == gimli::DW_TAG_typedef {
                self.strip(u, type_of(entry))
            } else {
                Some(entry.offset())
            };
            if let Some(offset) = target.filter(|&o| self.is_definition(u, o)) {
                found.push((name, Def { unit: u, offset }));
            }
        }
        for (name, def) in found {
            self.defs.entry(name).or_insert(def);
        }
    }

    fn name(
        &self,
        unit: &gimli::Unit<Reader<'a>>,
        entry: &gimli::DebuggingInformationEntry<Reader<'a>>,
    ) -> Option<String> {
        let value = entry.attr_value(gimli::DW_AT_name)?;
        let s = self.dwarf.attr_string(unit, value).ok()?;
        Some(s.to_string_lossy().into_owned())
    }

    fn entry(&self, u: usize, offset: UnitOffset) -> Option<gimli::DebuggingInformationEntry<Reader<'a>>> {
        self.units[u].entry(offset).ok()
    }

    /// A struct or union with members (not a declaration).
    fn is_definition(&self, u: usize, offset: UnitOffset) -> bool {
        self.entry(u, offset).is_some_and(|e| {
            matches!(e.tag(), gimli::DW_TAG_structure_type | gimli::DW_TAG_union_type)
                && e.attr(gimli::DW_AT_declaration).is_none()
                && e.attr(gimli::DW_AT_byte_size).is_some()
        })
    }

    /// Follows typedefs and qualifiers to the type itself.
    fn strip(&self, u: usize, mut offset: Option<UnitOffset>) -> Option<UnitOffset> {
        for _ in 0..16 {
            let entry = self.entry(u, offset?)?;
            match entry.tag() {
                gimli::DW_TAG_typedef | gimli::DW_TAG_const_type | gimli::DW_TAG_volatile_type => {
                    offset = type_of(&entry)
                }
                _ => return offset,
            }
        }
        None
    }

    /// The definition of a struct type found in unit `u`: itself, or for a
    /// declaration the definition of its name elsewhere.
    fn resolve(&self, u: usize, offset: UnitOffset) -> Option<Def> {
        if self.is_definition(u, offset) {
            return Some(Def { unit: u, offset });
        }
        let entry = self.entry(u, offset)?;
        let name = self.name(&self.units[u], &entry)?;
        self.defs.get(&name).copied()
    }

    fn def(&self, name: &str) -> Result<Def, String> {
        self.defs.get(name).copied().ok_or_else(|| format!("no definition of {name}"))
    }

    /// `member` of the struct `def`, looked for through anonymous members.
    fn member(&self, def: Def, member: &str) -> Option<Member> {
        let unit = &self.units[def.unit];
        let mut tree = unit.entries_tree(Some(def.offset)).ok()?;
        let root = tree.root().ok()?;
        let mut children = root.children();
        while let Ok(Some(child)) = children.next() {
            let entry = child.entry();
            if entry.tag() != gimli::DW_TAG_member {
                continue;
            }
            let at = member_location(entry).unwrap_or(0);
            match self.name(unit, entry) {
                Some(name) if name == member => {
                    let ty = type_of(entry)?;
                    return Some(Member { offset: at, unit: def.unit, entry: ty });
                }
                Some(_) => {}
                None => {
                    let inner = self.strip(def.unit, type_of(entry)).and_then(|t| self.resolve(def.unit, t));
                    if let Some(found) = inner.and_then(|inner| self.member(inner, member)) {
                        return Some(Member { offset: at + found.offset, ..found });
                    }
                }
            }
        }
        None
    }

    /// The offset of `path` (members, each inside the previous one) in
    /// struct `name`.
    fn offset(&self, name: &str, path: &[&str]) -> Result<u32, String> {
        let mut def = self.def(name)?;
        let mut total = 0u64;
        for (i, part) in path.iter().enumerate() {
            let member = self
                .member(def, part)
                .ok_or_else(|| format!("no member {}", path[..=i].join(".")))
                .map_err(|e| format!("{name}: {e}"))?;
            total += member.offset;
            if i + 1 < path.len() {
                def = self
                    .strip(member.unit, Some(member.entry))
                    .and_then(|t| self.resolve(member.unit, t))
                    .ok_or_else(|| format!("{name}.{}: not a struct", path[..=i].join(".")))?;
            }
        }
        u32::try_from(total).map_err(|_| format!("{name}.{}: offset {total} too large", path.join(".")))
    }

    /// `struct name`'s size.
    fn size(&self, name: &str) -> Result<u32, String> {
        let def = self.def(name)?;
        self.entry(def.unit, def.offset)
            .and_then(|e| e.attr_value(gimli::DW_AT_byte_size)?.udata_value())
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| format!("{name}: no size"))
    }

    /// The bit field `field` of the member `word` (a struct of bit fields
    /// in a 32-bit word) of struct `name`, from the word's first bit.
    fn bits(&self, name: &str, word: &str, field: &str) -> Result<BitField, String> {
        let outer = self.def(name)?;
        let word_member = self.member(outer, word).ok_or_else(|| format!("{name}: no member {word}"))?;
        let inner = self
            .strip(word_member.unit, Some(word_member.entry))
            .and_then(|t| self.resolve(word_member.unit, t))
            .ok_or_else(|| format!("{name}.{word}: not a struct"))?;
        let unit = &self.units[inner.unit];
        let mut tree = unit.entries_tree(Some(inner.offset)).map_err(|e| e.to_string())?;
        let root = tree.root().map_err(|e| e.to_string())?;
        let mut children = root.children();
        while let Ok(Some(child)) = children.next() {
            let entry = child.entry();
            if entry.tag() != gimli::DW_TAG_member || self.name(unit, entry).as_deref() != Some(field) {
                continue;
            }
            return bit_field(entry).ok_or_else(|| format!("{name}.{word}.{field}: not a bit field"));
        }
        Err(format!("{name}.{word}: no bit field {field}"))
    }
}

fn type_of(entry: &gimli::DebuggingInformationEntry<Reader>) -> Option<UnitOffset> {
    match entry.attr_value(gimli::DW_AT_type)? {
        AttributeValue::UnitRef(offset) => Some(offset),
        _ => None,
    }
}

fn member_location(entry: &gimli::DebuggingInformationEntry<Reader>) -> Option<u64> {
    entry.attr_value(gimli::DW_AT_data_member_location)?.udata_value()
}

/// A member's bit position, little-endian: DWARF 4+'s
/// `DW_AT_data_bit_offset`, or DWARF 2's `DW_AT_bit_offset` (counted from
/// the storage unit's most significant bit).
fn bit_field(entry: &gimli::DebuggingInformationEntry<Reader>) -> Option<BitField> {
    let width = entry.attr_value(gimli::DW_AT_bit_size)?.udata_value()?;
    let shift = match entry.attr_value(gimli::DW_AT_data_bit_offset).and_then(|v| v.udata_value()) {
        Some(bit) => bit,
        None => {
            let from_msb = entry.attr_value(gimli::DW_AT_bit_offset)?.udata_value()?;
            let unit_bytes = entry.attr_value(gimli::DW_AT_byte_size)?.udata_value()?;
            let base = member_location(entry).unwrap_or(0) * 8;
            (base + unit_bytes * 8).checked_sub(from_msb + width)?
        }
    };
    Some(BitField { shift: u8::try_from(shift).ok()?, width: u8::try_from(width).ok()? })
}
