//! A process as fdtrace reads it from userspace: its mappings
//! (`/proc/PID/maps`), the files behind them (through
//! `/proc/PID/map_files`, or `/proc/PID/root` + path: the process may live
//! in another mount namespace), and its memory (`/proc/PID/mem`).
use std::{
    fs::File,
    io,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
};

/// One file-backed line of `/proc/PID/maps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    /// Offset in the file of the mapping's first byte.
    pub offset: u64,
    pub inode: u64,
    /// The path in the process's mount namespace.
    pub path: String,
}

/// The file-backed mappings in `/proc/PID/maps`' text, in address order
/// (anonymous and pseudo mappings such as `[heap]` left out).
pub fn parse_maps(text: &str) -> Vec<Mapping> {
    text.lines().filter_map(parse_maps_line).collect()
}

fn parse_maps_line(line: &str) -> Option<Mapping> {
    // start-end perms offset dev inode path (the path may hold spaces)
    let mut fields = line.splitn(6, ' ');
    let (start, end) = fields.next()?.split_once('-')?;
    let _perms = fields.next()?;
    let offset = fields.next()?;
    let _dev = fields.next()?;
    let inode: u64 = fields.next()?.parse().ok()?;
    let path = fields.next()?.trim_start();
    if inode == 0 || !path.starts_with('/') {
        return None;
    }
    Some(Mapping {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        offset: u64::from_str_radix(offset, 16).ok()?,
        inode,
        path: path.strip_suffix(" (deleted)").unwrap_or(path).to_string(),
    })
}

/// The file-backed mappings of process `pid`.
pub fn maps(pid: u32) -> io::Result<Vec<Mapping>> {
    Ok(parse_maps(&std::fs::read_to_string(format!("/proc/{pid}/maps"))?))
}

/// Opens the file behind `mapping` of process `pid`: the mapping itself
/// (`/proc/PID/map_files/START-END`, which works across mount namespaces
/// and for deleted files), else the path under the process's root.
pub fn open_mapped(pid: u32, mapping: &Mapping) -> io::Result<(File, PathBuf)> {
    let direct = PathBuf::from(format!("/proc/{pid}/map_files/{:x}-{:x}", mapping.start, mapping.end));
    match File::open(&direct) {
        Ok(file) => Ok((file, direct)),
        Err(_) => {
            let rooted = Path::new(&format!("/proc/{pid}/root")).join(mapping.path.trim_start_matches('/'));
            File::open(&rooted).map(|f| (f, rooted))
        }
    }
}

/// The load bias of an ELF file mapped at `first` (its mapping with the
/// lowest address): what is added to the file's virtual addresses
/// (symbol values) to get addresses in the process. 0 for a non-PIE
/// executable; for PIE executables and shared libraries, where the file's
/// first loaded byte landed.
pub fn load_bias(segments: &[Segment], first: &Mapping) -> Option<u64> {
    let segment = segments.iter().find(|s| {
        let page_start = s.offset & !(PAGE - 1);
        first.offset >= page_start && first.offset < s.offset + s.file_size.max(1)
    })?;
    // The mapping's first byte is file offset `first.offset`, which the
    // segment puts at vaddr + (first.offset - offset) (wrapping: the
    // mapping starts on the page boundary at or before the segment).
    let vaddr = segment.vaddr.wrapping_add(first.offset).wrapping_sub(segment.offset);
    Some(first.start.wrapping_sub(vaddr))
}

const PAGE: u64 = 4096;

/// A `PT_LOAD` program header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub offset: u64,
    pub vaddr: u64,
    pub file_size: u64,
}

/// A process's memory, read with `pread` on `/proc/PID/mem` (the reader
/// needs ptrace access: root, or the same user with ptrace allowed).
#[derive(Debug)]
pub struct Memory {
    file: File,
}

impl Memory {
    pub fn open(pid: u32) -> io::Result<Memory> {
        Ok(Memory { file: File::open(format!("/proc/{pid}/mem"))? })
    }

    /// Fills `buf` from address `addr`.
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> io::Result<()> {
        if addr == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "NULL pointer"));
        }
        self.file.read_exact_at(buf, addr)
    }

    pub fn bytes(&self, addr: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0; len];
        self.read(addr, &mut buf)?;
        Ok(buf)
    }

    pub fn u64(&self, addr: u64) -> io::Result<u64> {
        let mut b = [0; 8];
        self.read(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    pub fn u32(&self, addr: u64) -> io::Result<u32> {
        let mut b = [0; 4];
        self.read(addr, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    pub fn u8(&self, addr: u64) -> io::Result<u8> {
        let mut b = [0; 1];
        self.read(addr, &mut b)?;
        Ok(b[0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines_are_parsed() {
        let text = "\
55d0c0a00000-55d0c0a01000 r--p 00000000 08:01 1234 /usr/bin/python3.11
7f1e2c000000-7f1e2c021000 rw-p 00000000 00:00 0 
7f1e2d000000-7f1e2d100000 r-xp 00034000 fd:00 99 /root/.pyenv/versions/3.12.1/lib/libpython3.12.so.1.0
7ffd1000-7ffd2000 rw-p 00000000 00:00 0                          [stack]
7f00-7f10 r--p 00001000 08:01 77 /tmp/a dir/lib x.so (deleted)
";
        let maps = parse_maps(text);
        assert_eq!(maps.len(), 3, "{maps:?}");
        assert_eq!(maps[0].path, "/usr/bin/python3.11");
        assert_eq!((maps[0].start, maps[0].end, maps[0].offset), (0x55d0c0a00000, 0x55d0c0a01000, 0));
        assert_eq!(maps[1].offset, 0x34000);
        assert_eq!(maps[1].inode, 99);
        assert_eq!(maps[2].path, "/tmp/a dir/lib x.so", "spaces kept, (deleted) dropped");
    }

    #[test]
    fn load_bias_for_pie_and_non_pie() {
        // A non-PIE executable: vaddr 0x400000 at file offset 0, mapped there.
        let exec = [Segment { offset: 0, vaddr: 0x400000, file_size: 0x1000 }];
        let at = |start, offset| Mapping { start, end: start + 0x1000, offset, inode: 1, path: "/x".into() };
        assert_eq!(load_bias(&exec, &at(0x400000, 0)), Some(0));
        // A shared library: vaddr 0 at offset 0, mapped at 0x7f0000000000.
        let lib = [
            Segment { offset: 0, vaddr: 0, file_size: 0x5000 },
            Segment { offset: 0x5123, vaddr: 0x6123, file_size: 0x800 },
        ];
        assert_eq!(load_bias(&lib, &at(0x7f0000000000, 0)), Some(0x7f0000000000));
        // Only a later segment mapped first (the first is not readable):
        // its page at offset 0x5000 holds vaddr 0x6000.
        assert_eq!(load_bias(&lib, &at(0x7f0000006000, 0x5000)), Some(0x7f0000000000));
        assert_eq!(load_bias(&lib, &at(0x7f0000006000, 0x9000)), None, "no segment there");
    }
}
