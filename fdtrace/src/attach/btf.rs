//! A small reader for the kernel's BTF (`/sys/kernel/btf/vmlinux`): struct
//! member offsets and function names. Rust eBPF has no CO-RE field
//! relocations, so the loader computes the offsets the kernel programs need
//! and hands them over in `Config`.
//!
//! Format: `include/uapi/linux/btf.h` — a header, then type records (ids
//! from 1), then a string table.
use std::{collections::HashMap, fmt};

const MAGIC: u16 = 0xeb9f;

const KIND_INT: u32 = 1;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

#[derive(Debug, PartialEq, Eq)]
pub struct BtfError(String);

impl fmt::Display for BtfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BtfError {}

#[derive(Clone, Debug)]
struct Member {
    name: String,
    type_id: u32,
    bit_offset: u32,
    /// Non-zero for a bitfield.
    bitfield_size: u32,
}

#[derive(Clone, Debug)]
enum Type {
    Composite {
        members: Vec<Member>,
    },
    /// typedef/const/volatile/restrict/type_tag: points at another type.
    Alias(u32),
    Func,
    Other,
}

/// The parts of BTF fdtrace reads.
pub struct Btf {
    types: Vec<Type>,
    /// name → ids of structs/unions with that name.
    composites: HashMap<String, Vec<u32>>,
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn u32(&mut self) -> Result<u32, BtfError> {
        let bytes = self
            .data
            .get(self.pos..self.pos + 4)
            .ok_or_else(|| BtfError(format!("BTF truncated at byte {}", self.pos)))?;
        self.pos += 4;
        Ok(u32::from_le_bytes(bytes.try_into().expect("4 bytes")))
    }

    fn skip(&mut self, n: usize) -> Result<(), BtfError> {
        if self.pos + n > self.data.len() {
            return Err(BtfError(format!("BTF truncated at byte {}", self.pos)));
        }
        self.pos += n;
        Ok(())
    }
}

impl Btf {
    /// The running kernel's BTF: `$FDTRACE_BTF` if set (for kernels that
    /// ship BTF as a separate file), else `/sys/kernel/btf/vmlinux`.
    pub fn from_sys_fs() -> Result<Btf, BtfError> {
        let path = std::env::var_os("FDTRACE_BTF").unwrap_or_else(|| "/sys/kernel/btf/vmlinux".into());
        let data = std::fs::read(&path).map_err(|e| BtfError(format!("reading {}: {e}", path.display())))?;
        Btf::parse(&data)
    }

    /// Parses little-endian BTF (the only kind on x86_64).
    pub fn parse(data: &[u8]) -> Result<Btf, BtfError> {
        if data.len() < 24 || u16::from_le_bytes([data[0], data[1]]) != MAGIC {
            return Err(BtfError("not BTF data (bad magic)".into()));
        }
        let word = |i: usize| u32::from_le_bytes(data[i..i + 4].try_into().expect("4 bytes")) as usize;
        let (hdr_len, type_off, type_len, str_off, str_len) =
            (word(4), word(8), word(12), word(16), word(20));
        let types_start = hdr_len + type_off;
        let strs_start = hdr_len + str_off;
        if types_start + type_len > data.len() || strs_start + str_len > data.len() {
            return Err(BtfError("BTF sections run past the end of the data".into()));
        }
        let strings = &data[strs_start..strs_start + str_len];
        let name = |off: u32| -> String {
            let s = strings.get(off as usize..).unwrap_or_default();
            let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
            String::from_utf8_lossy(&s[..end]).into_owned()
        };

        let mut r = Reader { data: &data[types_start..types_start + type_len], pos: 0 };
        // Type id 0 is void.
        let mut types = vec![Type::Other];
        let mut composites: HashMap<String, Vec<u32>> = HashMap::new();
        while r.pos < r.data.len() {
            let id = types.len() as u32;
            let name_off = r.u32()?;
            let info = r.u32()?;
            let size_or_type = r.u32()?;
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let kind_flag = info >> 31 == 1;
            let ty = match kind {
                KIND_STRUCT | KIND_UNION => {
                    let mut members = Vec::with_capacity(vlen);
                    for _ in 0..vlen {
                        let m_name = r.u32()?;
                        let type_id = r.u32()?;
                        let offset = r.u32()?;
                        // With kind_flag, the top 8 bits are a bitfield size.
                        let (bit_offset, bitfield_size) =
                            if kind_flag { (offset & 0x00ff_ffff, offset >> 24) } else { (offset, 0) };
                        members.push(Member { name: name(m_name), type_id, bit_offset, bitfield_size });
                    }
                    let n = name(name_off);
                    if !n.is_empty() {
                        composites.entry(n).or_default().push(id);
                    }
                    Type::Composite { members }
                }
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    Type::Alias(size_or_type)
                }
                KIND_FUNC => Type::Func,
                KIND_INT | KIND_VAR | KIND_DECL_TAG => {
                    r.skip(4)?;
                    Type::Other
                }
                KIND_ARRAY => {
                    r.skip(12)?;
                    Type::Other
                }
                KIND_ENUM | KIND_FUNC_PROTO => {
                    r.skip(8 * vlen)?;
                    Type::Other
                }
                KIND_DATASEC | KIND_ENUM64 => {
                    r.skip(12 * vlen)?;
                    Type::Other
                }
                // PTR, FWD, FLOAT: no extra data.
                2 | 7 | 16 => Type::Other,
                other => return Err(BtfError(format!("unknown BTF kind {other} at type {id}"))),
            };
            types.push(ty);
        }
        Ok(Btf { types, composites })
    }

    /// Byte offset of `member` in `struct name`, looking into anonymous
    /// struct/union members.
    pub fn member_offset(&self, name: &str, member: &str) -> Option<u32> {
        self.find(name, member).map(|(bits, _)| bits / 8)
    }

    /// Like [`Btf::member_offset`], but `None` for a bitfield (`sock.sk_type`
    /// was one before Linux 5.6): a program cannot read it as a whole.
    pub fn plain_member_offset(&self, name: &str, member: &str) -> Option<u32> {
        match self.find(name, member)? {
            (bits, 0) if bits % 8 == 0 => Some(bits / 8),
            _ => None,
        }
    }

    /// (bit offset, bitfield size) of a member.
    fn find(&self, name: &str, member: &str) -> Option<(u32, u32)> {
        self.composites.get(name)?.iter().find_map(|&id| self.find_member(id, member, 0))
    }

    fn find_member(&self, id: u32, member: &str, base_bits: u32) -> Option<(u32, u32)> {
        let Type::Composite { members } = self.types.get(id as usize)? else { return None };
        for m in members {
            if m.name == member {
                return Some((base_bits + m.bit_offset, m.bitfield_size));
            }
        }
        // Anonymous members: search inside.
        members
            .iter()
            .filter(|m| m.name.is_empty())
            .find_map(|m| self.find_member(self.resolve(m.type_id), member, base_bits + m.bit_offset))
    }

    fn resolve(&self, mut id: u32) -> u32 {
        for _ in 0..32 {
            match self.types.get(id as usize) {
                Some(Type::Alias(next)) => id = *next,
                _ => break,
            }
        }
        id
    }

    pub fn has_struct(&self, name: &str) -> bool {
        self.composites.contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds BTF with: 1 int, 2 struct inner { int b@0 }, 3 struct outer
    /// { int a@0; <anon inner>@64 }, 4 typedef, 5 func "do_close".
    fn sample() -> Vec<u8> {
        let mut strings = vec![0u8];
        let mut s = |name: &str| {
            let off = strings.len() as u32;
            strings.extend(name.as_bytes());
            strings.push(0);
            off
        };
        let (int, inner, b, outer, a, do_close) =
            (s("int"), s("inner"), s("b"), s("outer"), s("a"), s("do_close"));
        let mut types: Vec<u32> = vec![];
        // int
        types.extend([int, KIND_INT << 24, 4, 32]);
        // struct inner, 1 member
        types.extend([inner, KIND_STRUCT << 24 | 1, 4, b, 1, 0]);
        // struct outer, 2 members: a, anonymous inner at bit 64
        types.extend([outer, KIND_STRUCT << 24 | 2, 16, a, 1, 0, 0, 4, 64]);
        // typedef -> inner (unnamed typedef is fine for the test)
        types.extend([0, KIND_TYPEDEF << 24, 2]);
        // func do_close
        types.extend([do_close, KIND_FUNC << 24, 0]);
        let type_bytes: Vec<u8> = types.iter().flat_map(|w| w.to_le_bytes()).collect();
        let mut out = vec![];
        out.extend(MAGIC.to_le_bytes());
        out.extend([1u8, 0]);
        for w in [24u32, 0, type_bytes.len() as u32, type_bytes.len() as u32, strings.len() as u32] {
            out.extend(w.to_le_bytes());
        }
        out.extend(type_bytes);
        out.extend(&strings);
        out
    }

    #[test]
    fn finds_members_directly_and_through_anonymous_members() {
        let btf = Btf::parse(&sample()).unwrap();
        assert_eq!(btf.member_offset("outer", "a"), Some(0));
        assert_eq!(btf.member_offset("outer", "b"), Some(8));
        assert_eq!(btf.member_offset("outer", "zz"), None);
        assert_eq!(btf.member_offset("nope", "a"), None);
    }

    #[test]
    fn truncated_or_foreign_data_is_an_error_not_a_panic() {
        let full = sample();
        for len in 0..full.len() {
            let _ = Btf::parse(&full[..len]);
        }
        assert!(Btf::parse(b"\x7fELF not btf at all, definitely").is_err());
    }

    #[test]
    fn reads_the_running_kernels_task_struct() {
        let Ok(btf) = Btf::from_sys_fs() else {
            eprintln!("skipped: this kernel has no /sys/kernel/btf/vmlinux");
            return;
        };
        let tgid = btf.member_offset("task_struct", "tgid").expect("task_struct.tgid");
        let pid = btf.member_offset("task_struct", "pid").expect("task_struct.pid");
        assert_eq!(tgid, pid + 4, "tgid follows pid in every kernel");
        assert!(btf.member_offset("signal_struct", "live").is_some());
    }
}
