//! Where the runtime keeps a goroutine's id, its creator's id and the pc
//! of the `go` statement that created it: the offsets of `goid`,
//! `parentGoid` and `gopc` in `runtime.g`, per Go version, for binaries
//! built without DWARF (`-ldflags="-s -w"`), where the type cannot be read.
//!
//! The fields move between minor versions (1.23 added `syscallbp` before
//! `goid`; 1.25 shrank `gobuf` by a word; 1.24 and 1.26 added flags before
//! `parentGoid`) and not within one: a minor version has one layout.
//! Each entry was read from the DWARF of a build by that version (amd64),
//! and the test suite builds a program with every version listed here
//! (`tests/go/toolchains`, installed by `cargo xtask setup`) and checks its
//! entry against that build's DWARF. Versions without an entry (1.17, 1.18
//! and 1.20, which neither Debian nor PyPI ship for this machine; and any
//! version newer than the table) get no goroutine origins without DWARF,
//! and the report says so: a wrong offset would name the wrong code.
use fdtrace_common::GoInfo;

/// `(minor, goid, gopc, parentGoid)`: Go 1.`minor` on amd64; parentGoid 0
/// before Go 1.21 (the runtime did not record it).
const TABLE: &[(u32, u32, u32, u32)] = &[
    (19, 152, 296, 0),
    (21, 152, 280, 272),
    (22, 152, 280, 272),
    (23, 160, 288, 280),
    (24, 160, 288, 280),
    (25, 152, 280, 272),
    (26, 152, 288, 280),
    (27, 152, 288, 280),
];

/// The `runtime.g` offsets of Go 1.`minor`, if the table has them.
pub fn for_minor(minor: u32) -> Option<GoInfo> {
    TABLE.iter().find(|e| e.0 == minor).map(|&(_, goid_off, gopc_off, parent_goid_off)| GoInfo {
        gopc_off,
        goid_off,
        parent_goid_off,
        _pad: 0,
    })
}

/// The versions the table covers, for messages: "1.19, 1.21–1.27".
pub fn covered() -> String {
    let mut runs: Vec<(u32, u32)> = vec![];
    for &(minor, ..) in TABLE {
        match runs.last_mut() {
            Some(run) if run.1 + 1 == minor => run.1 = minor,
            _ => runs.push((minor, minor)),
        }
    }
    runs.iter()
        .map(|&(a, b)| if a == b { format!("1.{a}") } else { format!("1.{a}–1.{b}") })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The minor versions in the table, oldest first.
pub fn minors() -> impl Iterator<Item = u32> {
    TABLE.iter().map(|e| e.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups() {
        assert_eq!(for_minor(21).map(|i| (i.goid_off, i.gopc_off, i.parent_goid_off)), Some((152, 280, 272)));
        assert_eq!(for_minor(20), None, "no build to check it against");
        assert_eq!(for_minor(99), None);
        assert_eq!(covered(), "1.19, 1.21–1.27");
        let minors: Vec<u32> = minors().collect();
        assert!(minors.windows(2).all(|w| w[0] < w[1]), "sorted, no duplicates");
    }
}
