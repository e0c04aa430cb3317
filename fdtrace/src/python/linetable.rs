//! Code objects' line tables: which source line a bytecode offset belongs
//! to, as CPython's `PyCode_Addr2Line` computes it.
//!
//! - 3.10 (PEP 626, `Objects/lnotab_notes.txt`): pairs of an unsigned
//!   byte (the range's length in bytes) and a signed byte (the line delta,
//!   -128 for "no line"); a delta too large for a byte is split over
//!   entries, zero-length ones among them.
//! - 3.11+ (PEP 657, `Objects/locations.md`): entries whose first byte has
//!   bit 7 set, with a 4-bit code (bits 3–6) and the range's length in code
//!   units minus one (bits 0–2); code 15 is "no location", 14 (long form)
//!   and 13 (no columns) carry the line delta as a signed varint, 10–12
//!   mean a delta of 0–2, 0–9 the same line; column bytes follow.
//!
//! Both start at `co_firstlineno`; an offset before the code (a frame not
//! started yet: 3.10's `f_lasti` of -1) is its first line, an offset past
//! the table has no line.

/// One range of bytecode, `[start, end)` in bytes, and its line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub start: u64,
    pub end: u64,
    pub line: Option<u32>,
}

/// The table formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// 3.10: PEP 626.
    Pep626,
    /// 3.11+: PEP 657's location table.
    Pep657,
}

impl Format {
    pub fn for_minor(minor: u32) -> Format {
        if minor >= 11 {
            Format::Pep657
        } else {
            Format::Pep626
        }
    }
}

/// The line of the bytecode at byte `offset`.
pub fn line(format: Format, table: &[u8], first_line: i32, offset: i64) -> Option<u32> {
    if offset < 0 {
        return u32::try_from(first_line).ok();
    }
    let offset = offset.unsigned_abs();
    ranges(format, table, first_line).find(|r| r.start <= offset && offset < r.end)?.line
}

/// The table's ranges in order, zero-length ones left out (as
/// `PyLineTable_NextAddressRange` skips them).
pub fn ranges(format: Format, table: &[u8], first_line: i32) -> impl Iterator<Item = Range> + '_ {
    let mut at = 0usize;
    let mut end = 0u64;
    let mut computed = i64::from(first_line);
    std::iter::from_fn(move || loop {
        let (length, delta, has_line) = match format {
            Format::Pep626 => pep626_entry(table, &mut at)?,
            Format::Pep657 => pep657_entry(table, &mut at)?,
        };
        computed += delta;
        let start = end;
        end += length;
        if length == 0 {
            continue;
        }
        let line = if has_line { u32::try_from(computed).ok() } else { None };
        return Some(Range { start, end, line });
    })
}

/// (length in bytes, line delta, whether the range has a line).
fn pep626_entry(table: &[u8], at: &mut usize) -> Option<(u64, i64, bool)> {
    let (&length, &delta) = (table.get(*at)?, table.get(*at + 1)?);
    *at += 2;
    let delta = i64::from(i8::from_le_bytes([delta]));
    if delta == -128 {
        return Some((u64::from(length), 0, false));
    }
    Some((u64::from(length), delta, true))
}

const NO_LOCATION: u8 = 15;
const LONG: u8 = 14;
const NO_COLUMNS: u8 = 13;
const ONE_LINE0: u8 = 10;
const ONE_LINE2: u8 = 12;
/// A code unit: an instruction or inline cache entry (2 bytes).
const CODE_UNIT: u64 = 2;

fn pep657_entry(table: &[u8], at: &mut usize) -> Option<(u64, i64, bool)> {
    let first = *table.get(*at)?;
    if first & 0x80 == 0 {
        // Not at an entry's first byte: a corrupt table.
        return None;
    }
    let code = (first >> 3) & 15;
    let length = (u64::from(first & 7) + 1) * CODE_UNIT;
    let delta = match code {
        NO_LOCATION => 0,
        LONG | NO_COLUMNS => signed_varint(table, *at + 1)?,
        ONE_LINE0..=ONE_LINE2 => i64::from(code - ONE_LINE0),
        _ => 0,
    };
    // The next entry starts at the next byte with bit 7 set.
    *at += 1;
    while table.get(*at).is_some_and(|b| b & 0x80 == 0) {
        *at += 1;
    }
    Some((length, delta, code != NO_LOCATION))
}

/// 6 bits a byte, least significant first, bit 6 set on all but the last.
fn varint(table: &[u8], mut at: usize) -> Option<u64> {
    let mut value = 0u64;
    let mut shift = 0;
    loop {
        let byte = *table.get(at)?;
        at += 1;
        value |= u64::from(byte & 63).checked_shl(shift)?;
        if byte & 64 == 0 {
            return Some(value);
        }
        shift += 6;
        if shift > 60 {
            return None;
        }
    }
}

/// A varint holding the magnitude shifted left once and the sign in bit 0.
fn signed_varint(table: &[u8], at: usize) -> Option<i64> {
    let v = varint(table, at)?;
    let magnitude = i64::try_from(v >> 1).ok()?;
    Some(if v & 1 == 1 { -magnitude } else { magnitude })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A 3.11+ entry: `code`, `units` code units, then its extra bytes.
    fn entry(code: u8, units: u8, extra: &[u8]) -> Vec<u8> {
        let mut v = vec![0x80 | (code << 3) | (units - 1)];
        v.extend(extra);
        v
    }

    /// A signed varint's bytes.
    pub(crate) fn svarint(delta: i64) -> Vec<u8> {
        let mut v = if delta < 0 { (delta.unsigned_abs() << 1) | 1 } else { (delta as u64) << 1 };
        let mut out = vec![];
        loop {
            let low = (v & 63) as u8;
            v >>= 6;
            if v == 0 {
                out.push(low);
                return out;
            }
            out.push(low | 64);
        }
    }

    #[test]
    fn pep626_lines_go_forward_backward_and_missing() {
        // Given 3.10 entries: 6 bytes on line 10 (first line), 4 on 12,
        // 2 with no line, 4 back on 11 (-128 does not move the line).
        let table = [6, 0, 4, 2, 2, 0x80, 4, 0xff];
        let ranges: Vec<Range> = ranges(Format::Pep626, &table, 10).collect();
        assert_eq!(
            ranges,
            vec![
                Range { start: 0, end: 6, line: Some(10) },
                Range { start: 6, end: 10, line: Some(12) },
                Range { start: 10, end: 12, line: None },
                Range { start: 12, end: 16, line: Some(11) },
            ]
        );
        assert_eq!(line(Format::Pep626, &table, 10, 0), Some(10));
        assert_eq!(line(Format::Pep626, &table, 10, 8), Some(12));
        assert_eq!(line(Format::Pep626, &table, 10, 10), None, "no line");
        assert_eq!(line(Format::Pep626, &table, 10, 14), Some(11), "backwards");
        assert_eq!(line(Format::Pep626, &table, 10, 16), None, "past the end");
        assert_eq!(line(Format::Pep626, &table, 10, -2), Some(10), "f_lasti -1: not started");
    }

    #[test]
    fn pep626_long_jumps_are_split_over_entries() {
        // Given a jump of 300 lines (127 + 127 + 46 over zero-length
        // entries) and a range of 300 bytes (254 + 46, the first on the
        // same line).
        let table = [0, 127, 0, 127, 2, 46, 254, 0, 46, 0];
        let ranges: Vec<Range> = ranges(Format::Pep626, &table, 1).collect();
        assert_eq!(ranges[0], Range { start: 0, end: 2, line: Some(301) });
        assert_eq!(line(Format::Pep626, &table, 1, 200), Some(301));
        assert_eq!(line(Format::Pep626, &table, 1, 301), Some(301));
        assert_eq!(line(Format::Pep626, &table, 1, 302), None);
        // Back 129 lines: -127 then -2 (-128 would be "no line").
        let table = [0, 0x81, 4, 0xfe];
        assert_eq!(line(Format::Pep626, &table, 200, 0), Some(71));
    }

    #[test]
    fn pep657_forms() {
        // Given, from line 5: a short form (same line, 1 unit), one-line
        // forms +1 and +2 (2 and 3 units), no columns -3 (1 unit), no
        // location (2 units), a long form +1000 (8 units), short (1).
        let mut table = entry(0, 1, &[0x12]);
        table.extend(entry(11, 2, &[4, 9]));
        table.extend(entry(12, 3, &[0, 7]));
        table.extend(entry(13, 1, &svarint(-3)));
        table.extend(entry(15, 2, &[]));
        let mut long = svarint(1000);
        long.extend([0, 5, 9]); // end line delta, start and end columns + 1
        table.extend(entry(14, 8, &long));
        table.extend(entry(5, 1, &[3]));
        let got: Vec<(u64, u64, Option<u32>)> =
            ranges(Format::Pep657, &table, 5).map(|r| (r.start, r.end, r.line)).collect();
        assert_eq!(
            got,
            vec![
                (0, 2, Some(5)),
                (2, 6, Some(6)),
                (6, 12, Some(8)),
                (12, 14, Some(5)),
                (14, 18, None),
                (18, 34, Some(1005)),
                (34, 36, Some(1005)),
            ]
        );
        assert_eq!(line(Format::Pep657, &table, 5, 10), Some(8));
        assert_eq!(line(Format::Pep657, &table, 5, 16), None, "no location");
        assert_eq!(line(Format::Pep657, &table, 5, 33), Some(1005));
        assert_eq!(line(Format::Pep657, &table, 5, 36), None, "past the end");
        assert_eq!(line(Format::Pep657, &table, 5, -2), Some(5), "before the first instruction");
    }

    #[test]
    fn varints() {
        for v in [0i64, 1, -1, 31, 32, -32, 63, 64, 1000, -1000, 1 << 20, -(1 << 30)] {
            assert_eq!(signed_varint(&svarint(v), 0), Some(v), "{v}");
        }
        assert_eq!(varint(&[64 | 1, 2], 0), Some(1 | (2 << 6)));
        assert_eq!(varint(&[64], 0), None, "truncated");
    }

    #[test]
    fn corrupt_tables_end_the_ranges() {
        // A table that does not start at an entry, and one cut in a
        // varint: no ranges past the damage, no panic.
        assert_eq!(ranges(Format::Pep657, &[0x12, 0x80], 1).count(), 0);
        let table = entry(13, 1, &[64]);
        assert_eq!(ranges(Format::Pep657, &table, 1).count(), 0);
        assert_eq!(ranges(Format::Pep626, &[4], 1).count(), 0, "odd length");
        let fuzz = {
            let mut next = crate::fuzz::xorshift(0x9e3779b97f4a7c15);
            (0..4096).map(|_| next() as u8).collect::<Vec<u8>>()
        };
        for format in [Format::Pep626, Format::Pep657] {
            for start in 0..64 {
                let _ = ranges(format, &fuzz[start..], 1).count();
                let _ = line(format, &fuzz[start..], 1, 1 << 40);
            }
        }
    }
}
