//! Go programs: recognizing them, and what fdtrace needs to follow a
//! goroutine back to the code that started it (see `fdtrace-ebpf/src/go.rs`):
//! the `runtime.newproc` and `net/http.(*Transport).dialConnFor` symbols for
//! uprobes, and the offsets of `gopc`, `goid` and `parentGoid` in the
//! runtime's `g`, from the binary's DWARF.
use std::{borrow::Cow, fs::File, path::Path};

use fdtrace_common::GoInfo;
use object::{Object, ObjectSection, ObjectSymbol};

use crate::symbolize::gopclntab::Pclntab;

pub const NEWPROC: &str = "runtime.newproc";
pub const DIAL_CONN_FOR: &str = "net/http.(*Transport).dialConnFor";

/// What fdtrace found in a Go binary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GoBinary {
    /// "go1.19.8", from the build info.
    pub version: Option<String>,
    pub has_newproc: bool,
    pub has_dial_conn_for: bool,
    /// `runtime.g` offsets; `None` without DWARF.
    pub offsets: Option<GoInfo>,
    /// Whether its Go line table (`.gopclntab`, Go 1.16+) is readable:
    /// stacks are then named, placed and their inlined calls shown even
    /// without symbols or DWARF (`symbolize/gopclntab.rs`).
    pub line_table: bool,
}

impl GoBinary {
    /// Why goroutine origins are not available, if they are not.
    pub fn limitation(&self) -> Option<String> {
        let version = self.version.as_deref().unwrap_or("unknown Go version");
        if let Some(minor) = self.version.as_deref().and_then(go_minor) {
            if minor < 17 {
                return Some(format!(
                    "{version} predates the register ABI (Go 1.17): goroutine origins are not followed"
                ));
            }
        }
        if !self.has_newproc {
            let stacks = if self.line_table {
                "stacks are named from its Go line table (.gopclntab)"
            } else {
                "stacks are shown as they are"
            };
            return Some(format!(
                "Go binary ({version}) without symbols: {stacks}, goroutine origins are not followed"
            ));
        }
        if self.offsets.is_none() {
            return Some(format!(
                "Go binary ({version}) without DWARF (built with -w?): goroutine origins are not followed"
            ));
        }
        None
    }

    /// How goroutine origins can be wrong, when they can.
    pub fn imprecision(&self) -> Option<String> {
        let info = self.offsets?;
        (info.parent_goid_off == 0).then(|| {
            format!(
                "{}: the runtime does not record a goroutine's parent (Go 1.21+ does); a goroutine is \
                 attributed to the latest caller of the `go` statement that started it",
                self.version.as_deref().unwrap_or("this Go version")
            )
        })
    }
}

/// "go1.19.8" → 19.
fn go_minor(version: &str) -> Option<u32> {
    version.strip_prefix("go1.")?.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// Inspects an executable; `None` if it is not a Go program (or cannot be
/// read).
pub fn inspect(path: &Path) -> Option<GoBinary> {
    let file = File::open(path).ok()?;
    // SAFETY: a read-only mapping of an executable; fdtrace only reads it.
    let map = unsafe { memmap2::Mmap::map(&file) }.ok()?;
    let obj = object::File::parse(&*map).ok()?;
    let buildinfo = obj.section_by_name(".go.buildinfo");
    let line_table = Pclntab::parse(&*map).is_ok();
    let is_go = buildinfo.is_some() || line_table || obj.symbols().any(|s| s.name() == Ok("runtime.goexit"));
    if !is_go {
        return None;
    }
    let version = buildinfo.and_then(|s| s.data().ok()).and_then(buildinfo_version);
    let mut has_newproc = false;
    let mut has_dial_conn_for = false;
    for sym in obj.symbols() {
        match sym.name() {
            Ok(NEWPROC) => has_newproc = true,
            Ok(DIAL_CONN_FOR) => has_dial_conn_for = true,
            _ => {}
        }
    }
    Some(GoBinary { version, has_newproc, has_dial_conn_for, offsets: g_offsets(&obj), line_table })
}

/// The Go version in `.go.buildinfo`: a 32-byte header (magic
/// "\xff Go buildinf:", pointer size, flags); with flag 2 (Go 1.18+) the
/// version follows as a varint-prefixed string.
pub fn buildinfo_version(data: &[u8]) -> Option<String> {
    if data.len() < 33 || !data.starts_with(b"\xff Go buildinf:") || data[15] & 2 == 0 {
        return None;
    }
    let (len, n) = varint(&data[32..])?;
    let start = 32 + n;
    let bytes = data.get(start..start.checked_add(len)?)?;
    Some(String::from_utf8_lossy(bytes).into_owned())
}

fn varint(b: &[u8]) -> Option<(usize, usize)> {
    let mut v = 0usize;
    for (i, byte) in b.iter().enumerate().take(9) {
        v |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// `gopc`, `goid` and `parentGoid` offsets in the DWARF type `runtime.g`.
fn g_offsets(obj: &object::File) -> Option<GoInfo> {
    let load = |id: gimli::SectionId| -> Result<Cow<[u8]>, gimli::Error> {
        Ok(obj
            .section_by_name(id.name())
            .and_then(|s| s.uncompressed_data().ok())
            .unwrap_or(Cow::Borrowed(&[])))
    };
    let sections = gimli::DwarfSections::load(load).ok()?;
    let dwarf = sections.borrow(|s| gimli::EndianSlice::new(s, gimli::LittleEndian));
    let mut units = dwarf.units();
    while let Ok(Some(header)) = units.next() {
        let Ok(unit) = dwarf.unit(header) else { continue };
        let mut entries = unit.entries();
        while let Ok(Some(entry)) = entries.next_dfs() {
            if entry.tag() != gimli::DW_TAG_structure_type
                || name(&dwarf, &unit, entry).as_deref() != Some("runtime.g")
            {
                continue;
            }
            let mut info = GoInfo::default();
            let mut tree = unit.entries_tree(Some(entry.offset())).ok()?;
            let root = tree.root().ok()?;
            let mut children = root.children();
            while let Ok(Some(child)) = children.next() {
                let member = child.entry();
                let Some(off) =
                    member.attr_value(gimli::DW_AT_data_member_location).and_then(|v| v.udata_value())
                else {
                    continue;
                };
                match name(&dwarf, &unit, member).as_deref() {
                    Some("gopc") => info.gopc_off = off as u32,
                    Some("goid") => info.goid_off = off as u32,
                    Some("parentGoid") => info.parent_goid_off = off as u32,
                    _ => {}
                }
            }
            return (info.gopc_off != 0 && info.goid_off != 0).then_some(info);
        }
    }
    None
}

type Reader<'a> = gimli::EndianSlice<'a, gimli::LittleEndian>;

fn name(
    dwarf: &gimli::Dwarf<Reader>,
    unit: &gimli::Unit<Reader>,
    entry: &gimli::DebuggingInformationEntry<Reader>,
) -> Option<String> {
    let value = entry.attr_value(gimli::DW_AT_name)?;
    let s = dwarf.attr_string(unit, value).ok()?;
    Some(s.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buildinfo_versions() {
        let mut data = b"\xff Go buildinf:".to_vec();
        data.extend([8u8, 2]);
        data.resize(32, 0);
        data.push(8);
        data.extend(b"go1.19.8");
        assert_eq!(buildinfo_version(&data).as_deref(), Some("go1.19.8"));
        data[15] = 0;
        assert_eq!(buildinfo_version(&data), None, "pre-1.18 layout");
        assert_eq!(buildinfo_version(b"garbage"), None);
        assert_eq!(go_minor("go1.21.3"), Some(21));
    }

    #[test]
    fn limitations_are_explained() {
        let ok = GoBinary {
            version: Some("go1.19.8".into()),
            has_newproc: true,
            has_dial_conn_for: true,
            offsets: Some(GoInfo { gopc_off: 288, goid_off: 152, parent_goid_off: 0, _pad: 0 }),
            line_table: true,
        };
        assert_eq!(ok.limitation(), None);
        let stripped = GoBinary { has_newproc: false, ..ok.clone() }.limitation().unwrap();
        assert!(stripped.contains("without symbols") && stripped.contains("named from its Go line table"));
        let no_table = GoBinary { has_newproc: false, line_table: false, ..ok.clone() }.limitation().unwrap();
        assert!(no_table.contains("shown as they are"), "{no_table}");
        assert!(GoBinary { offsets: None, ..ok.clone() }.limitation().unwrap().contains("without DWARF"));
        assert!(GoBinary { version: Some("go1.16.5".into()), ..ok }
            .limitation()
            .unwrap()
            .contains("register ABI"));
    }

    #[test]
    fn not_go_is_none() {
        assert_eq!(inspect(Path::new("/bin/sh")), None);
    }
}
