//! The initramfs: busybox and its applets, `/init`, the script, the host
//! files a run asks for and the shared libraries they load (as `ldd` lists
//! them), written as an uncompressed cpio archive in the newc format the
//! kernel unpacks.
use std::{
    collections::BTreeMap,
    fs::{self, File},
    io::{BufWriter, Write},
    os::unix::fs::PermissionsExt as _,
    path::{Component, Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};

use super::{exit_marker, start_marker, Guest};

/// Where the script is in the guest.
const SCRIPT_PATH: &str = "/fdtrace-vm/script.sh";

/// Host paths that are symlinks on merged-/usr systems (`/lib` → `usr/lib`):
/// reproduced in the guest so that files land where the host has them.
const TOP_LEVEL_LINKS: &[&str] = &["bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// PID 1. Its own messages go to the console (ttyS0), the script's to ttyS1
/// (in raw mode: no \r added, no echo).
fn init_script(token: &str) -> String {
    format!(
        r#"#!/bin/sh
# PID 1 of the fdtrace test VM, written by xtask/src/vm.rs.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tracefs tracefs /sys/kernel/tracing
mount -t debugfs debugfs /sys/kernel/debug
mount -t bpf bpf /sys/fs/bpf
mount -t cgroup2 cgroup2 /sys/fs/cgroup
ip link set lo up
hostname fdtrace-vm
stty -F /dev/ttyS1 raw -echo
exec </dev/null >/dev/ttyS1 2>&1
echo {start}
cd /
sh {SCRIPT_PATH}
echo {exit}$?
poweroff -f
"#,
        start = start_marker(token),
        exit = exit_marker(token),
    )
}

/// An initramfs entry.
enum Node {
    Dir(u32),
    /// Contents read from the host when the archive is written.
    HostFile(PathBuf, u32),
    Data(Vec<u8>, u32),
    Symlink(PathBuf),
    CharDev {
        major: u32,
        minor: u32,
    },
}

/// The initramfs being built: guest paths (relative to /) with the
/// directories they need. Paths are resolved through the symlinks already
/// in the tree, as the kernel would when unpacking.
#[derive(Default)]
struct Tree {
    nodes: BTreeMap<PathBuf, Node>,
}

impl Tree {
    /// `guest` with its parent directories resolved through the tree's
    /// symlinks; relative to /.
    fn resolve(&self, guest: &Path) -> Result<PathBuf> {
        let mut todo: Vec<Component> = guest.components().rev().collect();
        let mut cur = PathBuf::new();
        let mut links = 0;
        while let Some(c) = todo.pop() {
            match c {
                Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
                Component::ParentDir => {
                    cur.pop();
                }
                Component::Normal(name) => {
                    cur.push(name);
                    if todo.is_empty() {
                        break;
                    }
                    if let Some(Node::Symlink(target)) = self.nodes.get(&cur) {
                        links += 1;
                        if links > 40 {
                            bail!("too many levels of symlinks in {}", guest.display());
                        }
                        cur.pop();
                        if target.is_absolute() {
                            cur = PathBuf::new();
                        }
                        // `todo` is a stack: the target's first component on top.
                        todo.extend(target.components().rev());
                    }
                }
            }
        }
        if cur.as_os_str().is_empty() {
            bail!("{} is not a file path", guest.display());
        }
        Ok(cur)
    }

    /// Adds (or replaces) `guest`, creating its parent directories.
    fn add(&mut self, guest: &Path, node: Node) -> Result<PathBuf> {
        let path = self.resolve(guest)?;
        for parent in path.ancestors().skip(1).filter(|p| !p.as_os_str().is_empty()) {
            match self.nodes.get(parent) {
                None => {
                    self.nodes.insert(parent.to_path_buf(), Node::Dir(0o755));
                }
                Some(Node::Dir(_)) => {}
                Some(_) => bail!(
                    "cannot put {} in the initramfs: /{} is not a directory",
                    guest.display(),
                    parent.display()
                ),
            }
        }
        if matches!(node, Node::Dir(_)) && matches!(self.nodes.get(&path), Some(Node::Dir(_))) {
            return Ok(path);
        }
        self.nodes.insert(path.clone(), node);
        Ok(path)
    }

    /// Adds a host file or directory at `guest`, with the libraries of the
    /// ELF files among them.
    fn add_host(&mut self, host: &Path, guest: &Path) -> Result<()> {
        let meta = fs::metadata(host).with_context(|| format!("reading {}", host.display()))?;
        if meta.is_dir() {
            return self.add_host_dir(host, guest);
        }
        self.add(guest, Node::HostFile(host.to_path_buf(), meta.permissions().mode() & 0o7777))?;
        for lib in shared_libraries(host)? {
            let mode = fs::metadata(&lib)
                .with_context(|| format!("reading {}", lib.display()))?
                .permissions()
                .mode();
            self.add(&lib, Node::HostFile(lib.clone(), mode & 0o7777))?;
        }
        Ok(())
    }

    fn add_host_dir(&mut self, host: &Path, guest: &Path) -> Result<()> {
        let mode = fs::metadata(host)?.permissions().mode() & 0o7777;
        self.add(guest, Node::Dir(mode))?;
        for entry in fs::read_dir(host).with_context(|| format!("reading {}", host.display()))? {
            let entry = entry?;
            let (h, g) = (entry.path(), guest.join(entry.file_name()));
            if entry.file_type()?.is_symlink() {
                self.add(&g, Node::Symlink(fs::read_link(&h)?))?;
            } else {
                self.add_host(&h, &g)?;
            }
        }
        Ok(())
    }

    /// Writes the tree as an uncompressed cpio archive (newc format, what
    /// the kernel unpacks); returns its size.
    fn write(&self, path: &Path) -> Result<u64> {
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        self.write_to(BufWriter::new(file))
    }

    /// Writes the archive to `w`; returns its size.
    fn write_to(&self, w: impl Write) -> Result<u64> {
        let mut out = CpioWriter { w, ino: 0, written: 0 };
        for (p, node) in &self.nodes {
            let name = p.to_string_lossy();
            match node {
                Node::Dir(mode) => out.entry(&name, 0o040000 | mode, 2, (0, 0), &[])?,
                Node::HostFile(host, mode) => {
                    let data = fs::read(host).with_context(|| format!("reading {}", host.display()))?;
                    out.entry(&name, 0o100000 | mode, 1, (0, 0), &data)?
                }
                Node::Data(data, mode) => out.entry(&name, 0o100000 | mode, 1, (0, 0), data)?,
                Node::Symlink(target) => {
                    out.entry(&name, 0o120777, 1, (0, 0), target.as_os_str().as_encoded_bytes())?
                }
                Node::CharDev { major, minor } => out.entry(&name, 0o020600, 1, (*major, *minor), &[])?,
            }
        }
        out.entry("TRAILER!!!", 0, 1, (0, 0), &[])?;
        out.w.flush()?;
        Ok(out.written)
    }
}

/// The newc ("new ASCII") cpio format: per entry a 110-byte header of
/// `070701` and 13 eight-digit hex fields, the NUL-terminated name, padding
/// to 4 bytes, the data, padding to 4 bytes; a `TRAILER!!!` entry ends the
/// archive (the kernel's Documentation/driver-api/early-userspace/buffer-format.rst).
struct CpioWriter<W: Write> {
    w: W,
    ino: u32,
    written: u64,
}

impl<W: Write> CpioWriter<W> {
    fn entry(&mut self, name: &str, mode: u32, nlink: u32, rdev: (u32, u32), data: &[u8]) -> Result<()> {
        self.ino += 1;
        let fields = [
            self.ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime
            u32::try_from(data.len()).with_context(|| format!("{name} is too large for cpio"))?,
            0, // dev major
            0, // dev minor
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0, // check
        ];
        let mut header = String::from("070701");
        for f in fields {
            header.push_str(&format!("{f:08X}"));
        }
        self.put(header.as_bytes())?;
        self.put(name.as_bytes())?;
        self.put(&[0])?;
        self.pad()?;
        self.put(data)?;
        self.pad()
    }

    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.w.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> Result<()> {
        let n = (4 - self.written % 4) % 4;
        self.put(&[0; 3][..n as usize])
    }
}

/// The shared libraries and loader a dynamically linked x86-64 ELF file
/// loads (as `ldd` lists them); nothing for other files.
fn shared_libraries(path: &Path) -> Result<Vec<PathBuf>> {
    let mut head = [0u8; 20];
    let is_elf = File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok_and(|()| head.starts_with(b"\x7fELF"));
    // ET_EXEC or ET_DYN, EM_X86_64 (little-endian): not objects such as
    // the eBPF programs.
    let e_type = u16::from_le_bytes([head[16], head[17]]);
    let e_machine = u16::from_le_bytes([head[18], head[19]]);
    if !is_elf || !(e_type == 2 || e_type == 3) || e_machine != 62 {
        return Ok(Vec::new());
    }
    let out = Command::new("ldd").arg(path).output().context("running ldd")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || text.contains("statically linked") {
        return Ok(Vec::new());
    }
    let mut libs = Vec::new();
    for line in text.lines() {
        // "libz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x...)",
        // "/lib64/ld-linux-x86-64.so.2 (0x...)", "linux-vdso.so.1 (0x...)"
        let line = line.trim();
        let target = match line.split_once("=>") {
            Some((lib, rest)) => {
                let rest = rest.trim();
                if rest.starts_with("not found") {
                    bail!("{} needs {}, which ldd does not find", path.display(), lib.trim());
                }
                rest
            }
            None => line,
        };
        let file = target.split_whitespace().next().unwrap_or_default();
        if file.starts_with('/') {
            libs.push(PathBuf::from(file));
        }
    }
    Ok(libs)
}

pub fn find_in_path(program: &str) -> Result<PathBuf> {
    std::env::var_os("PATH")
        .and_then(|p| std::env::split_paths(&p).map(|d| d.join(program)).find(|f| f.is_file()))
        .with_context(|| format!("{program} is not in PATH"))
}

/// /init, busybox and its applets, a few /etc files, the script, then the
/// guest's files (which win over the rest).
pub(super) fn build(path: &Path, guest: &Guest, token: &str) -> Result<u64> {
    let mut tree = Tree::default();
    for name in TOP_LEVEL_LINKS {
        if let Ok(target) = fs::read_link(Path::new("/").join(name)) {
            tree.add(&Path::new("/").join(name), Node::Symlink(target))?;
        }
    }
    for (dir, mode) in [
        ("/dev", 0o755),
        ("/proc", 0o555),
        ("/sys", 0o555),
        ("/run", 0o755),
        ("/root", 0o700),
        ("/tmp", 0o1777),
    ] {
        tree.add(Path::new(dir), Node::Dir(mode))?;
    }
    // Init's stdin/stdout: the kernel opens it before running /init.
    tree.add(Path::new("/dev/console"), Node::CharDev { major: 5, minor: 1 })?;
    let busybox = find_in_path("busybox")?;
    tree.add_host(&busybox, Path::new("/bin/busybox"))?;
    let out = Command::new(&busybox).arg("--list-full").output().context("running busybox --list-full")?;
    if !out.status.success() {
        bail!("busybox --list-full failed");
    }
    for applet in String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.is_empty()) {
        // The list has bin/busybox itself.
        let link = Path::new("/").join(applet);
        if !tree.nodes.contains_key(&tree.resolve(&link)?) {
            tree.add(&link, Node::Symlink("/bin/busybox".into()))?;
        }
    }
    let etc: [(&str, &str); 4] = [
        (
            "/etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        ),
        ("/etc/group", "root:x:0:\nnogroup:x:65534:\n"),
        ("/etc/hosts", "127.0.0.1 localhost\n::1 localhost\n"),
        ("/etc/hostname", "fdtrace-vm\n"),
    ];
    for (file, text) in etc {
        tree.add(Path::new(file), Node::Data(text.as_bytes().to_vec(), 0o644))?;
    }
    tree.add(Path::new("/init"), Node::Data(init_script(token).into_bytes(), 0o755))?;
    tree.add(Path::new(SCRIPT_PATH), Node::Data(guest.script.clone().into_bytes(), 0o755))?;
    for (host, g) in &guest.files {
        tree.add_host(host, g)?;
    }
    tree.write(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(tree: &Tree) -> Vec<u8> {
        let mut bytes = vec![];
        let size = tree.write_to(&mut bytes).expect("writing to memory");
        assert_eq!(size, bytes.len() as u64, "the size returned is the size written");
        bytes
    }

    /// The 13 header fields of each entry, its name and its data, read at
    /// the offsets the newc format fixes.
    fn entries(mut bytes: &[u8]) -> Vec<([u32; 13], String, Vec<u8>)> {
        let pad = |n: usize| n.div_ceil(4) * 4;
        let mut out = vec![];
        loop {
            assert_eq!(&bytes[..6], b"070701", "magic");
            let mut fields = [0; 13];
            for (i, f) in fields.iter_mut().enumerate() {
                let hex = std::str::from_utf8(&bytes[6 + 8 * i..14 + 8 * i]).expect("ASCII");
                *f = u32::from_str_radix(hex, 16).expect("hex");
            }
            let (namesize, filesize) = (fields[11] as usize, fields[6] as usize);
            assert_eq!(bytes[110 + namesize - 1], 0, "the name is NUL-terminated");
            let name = String::from_utf8(bytes[110..110 + namesize - 1].to_vec()).expect("UTF-8 name");
            let data_at = pad(110 + namesize);
            let data = bytes[data_at..data_at + filesize].to_vec();
            bytes = &bytes[pad(data_at + filesize)..];
            let last = name == "TRAILER!!!";
            out.push((fields, name, data));
            if last {
                assert!(bytes.is_empty(), "{} bytes after the trailer", bytes.len());
                return out;
            }
        }
    }

    #[test]
    fn a_file_is_written_byte_exact_in_the_newc_format() {
        let mut tree = Tree::default();
        tree.add(Path::new("/a"), Node::Data(b"hi".to_vec(), 0o644)).expect("add");
        let want = [
            "070701",   // magic
            "00000001", // ino
            "000081A4", // mode: a regular file, 0644
            "00000000", // uid
            "00000000", // gid
            "00000001", // nlink
            "00000000", // mtime
            "00000002", // filesize
            "00000000", // dev major
            "00000000", // dev minor
            "00000000", // rdev major
            "00000000", // rdev minor
            "00000002", // namesize: "a\0"
            "00000000", // check
            "a\0",      // 110 + 2 = 112 bytes: aligned, no padding
            "hi\0\0",   // the data, padded to 116
            // The trailer: ino 2, mode 0, nlink 1, namesize 11.
            "070701",
            "00000002",
            "00000000",
            "00000000",
            "00000000",
            "00000001",
            "00000000",
            "00000000",
            "00000000",
            "00000000",
            "00000000",
            "00000000",
            "0000000B",
            "00000000",
            "TRAILER!!!\0\0\0\0", // 226 + 11 = 237 bytes, padded to 240
        ]
        .concat();
        let got = archive(&tree);
        assert_eq!(String::from_utf8_lossy(&got), want);
        assert_eq!(got.len(), 240);
    }

    #[test]
    fn directories_symlinks_and_devices_have_their_modes_links_and_numbers() {
        let mut tree = Tree::default();
        tree.add(Path::new("/dev"), Node::Dir(0o755)).expect("dir");
        tree.add(Path::new("/dev/console"), Node::CharDev { major: 5, minor: 1 }).expect("device");
        tree.add(Path::new("/lib"), Node::Symlink("usr/lib".into())).expect("symlink");
        // Through the symlink, as the kernel would resolve it; parents made.
        tree.add(Path::new("/lib/libz.so.1"), Node::Data(vec![7; 5], 0o644)).expect("file");
        let got = entries(&archive(&tree));
        let names: Vec<&str> = got.iter().map(|(_, n, _)| n.as_str()).collect();
        assert_eq!(names, ["dev", "dev/console", "lib", "usr", "usr/lib", "usr/lib/libz.so.1", "TRAILER!!!"]);
        let mode = |i: usize| got[i].0[1];
        let nlink = |i: usize| got[i].0[4];
        let rdev = |i: usize| (got[i].0[9], got[i].0[10]);
        assert_eq!((mode(0), nlink(0)), (0o040755, 2));
        assert_eq!((mode(1), rdev(1)), (0o020600, (5, 1)));
        assert_eq!((mode(2), got[2].2.as_slice()), (0o120777, b"usr/lib".as_slice()));
        assert_eq!((mode(3), mode(4)), (0o040755, 0o040755), "parents made as 0755 directories");
        assert_eq!((mode(5), got[5].2.as_slice()), (0o100644, [7; 5].as_slice()));
        // Inode numbers are distinct; uid, gid and mtime are 0.
        let inos: BTreeMap<u32, ()> = got.iter().map(|e| (e.0[0], ())).collect();
        assert_eq!(inos.len(), got.len());
        assert!(got.iter().all(|e| e.0[2] == 0 && e.0[3] == 0 && e.0[5] == 0));
    }

    #[test]
    fn paths_go_through_the_trees_symlinks_and_not_through_files() {
        let mut tree = Tree::default();
        tree.add(Path::new("/lib"), Node::Symlink("usr/lib".into())).expect("symlink");
        tree.add(Path::new("/lib64"), Node::Symlink("/lib/x86_64".into())).expect("absolute symlink");
        let at = |tree: &Tree, p: &str| tree.resolve(Path::new(p)).expect("resolve");
        assert_eq!(at(&tree, "/lib/libc.so.6"), Path::new("usr/lib/libc.so.6"));
        assert_eq!(at(&tree, "/lib64/ld.so"), Path::new("usr/lib/x86_64/ld.so"));
        assert_eq!(at(&tree, "/usr/../lib/a"), Path::new("usr/lib/a"));
        // The last component is the entry itself: a symlink is not followed.
        assert_eq!(at(&tree, "/lib"), Path::new("lib"));
        tree.add(Path::new("/etc/hosts"), Node::Data(vec![], 0o644)).expect("file");
        let e = tree.add(Path::new("/etc/hosts/x"), Node::Data(vec![], 0o644)).expect_err("under a file");
        assert!(e.to_string().contains("/etc/hosts is not a directory"), "{e}");
        tree.add(Path::new("/loop"), Node::Symlink("loop".into())).expect("a loop");
        assert!(tree.resolve(Path::new("/loop/x")).is_err(), "a symlink loop ends");
    }

    #[test]
    fn the_real_cpio_extracts_the_archive() {
        let cpio = fdtrace_tests::require_tool!("cpio");
        let dir = std::env::temp_dir().join(format!("fdtrace-xtask-cpio-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("out")).expect("temporary directory");
        let host_file = dir.join("tool");
        fs::write(&host_file, "#!/bin/sh\necho hi\n").expect("host file");
        fs::set_permissions(&host_file, fs::Permissions::from_mode(0o751)).expect("chmod");

        let mut tree = Tree::default();
        tree.add(Path::new("/lib"), Node::Symlink("usr/lib".into())).expect("symlink");
        tree.add(Path::new("/lib/libx.so"), Node::Data(vec![0, 1, 2, 255], 0o644)).expect("library");
        tree.add(Path::new("/etc/hostname"), Node::Data(b"fdtrace-vm\n".to_vec(), 0o600)).expect("etc");
        tree.add(Path::new("/tmp"), Node::Dir(0o1777)).expect("tmp");
        tree.add_host(&host_file, Path::new("/bin/tool")).expect("host file");
        let archive_path = dir.join("initrd.cpio");
        tree.write(&archive_path).expect("write");

        let status = Command::new(cpio)
            .args(["-idm", "--quiet"])
            .current_dir(dir.join("out"))
            .stdin(File::open(&archive_path).expect("archive"))
            .status()
            .expect("running cpio");
        assert!(status.success(), "cpio -idm failed: {status}");
        let out = dir.join("out");
        let mode = |p: &str| fs::symlink_metadata(out.join(p)).expect(p).permissions().mode() & 0o7777;
        assert_eq!(fs::read_link(out.join("lib")).expect("lib is a symlink"), Path::new("usr/lib"));
        assert_eq!(fs::read(out.join("lib/libx.so")).expect("through the symlink"), [0, 1, 2, 255]);
        assert_eq!(fs::read_to_string(out.join("etc/hostname")).expect("hostname"), "fdtrace-vm\n");
        assert_eq!(fs::read_to_string(out.join("bin/tool")).expect("tool"), "#!/bin/sh\necho hi\n");
        assert_eq!((mode("etc/hostname"), mode("bin/tool"), mode("usr/lib/libx.so")), (0o600, 0o751, 0o644));
        assert!(fs::metadata(out.join("tmp")).expect("tmp").is_dir());
        // cpio applies the umask to directories; the sticky bit survives.
        assert_eq!(mode("tmp") & 0o1000, 0o1000);
        let _ = fs::remove_dir_all(&dir);
    }
}
