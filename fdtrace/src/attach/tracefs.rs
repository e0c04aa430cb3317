//! tracefs: where it is (mounting it when it is not), and tracepoint
//! record layouts from `events/<category>/<name>/format`.
use std::{collections::HashMap, ffi::CString, fs, io, path::PathBuf};

const CANDIDATES: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

#[derive(Clone, Debug)]
pub struct Tracefs {
    pub root: PathBuf,
    /// fdtrace mounted it (it was not mounted at start).
    pub mounted_now: bool,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "tracefs is not mounted and mounting it failed ({0}); mount it with \
     `sudo mount -t tracefs tracefs /sys/kernel/tracing` and run fdtrace again"
)]
pub struct NotMounted(pub io::Error);

impl Tracefs {
    /// Finds tracefs, or mounts it at `/sys/kernel/tracing`.
    pub fn locate_or_mount() -> Result<Tracefs, NotMounted> {
        if let Some(root) = Self::locate() {
            return Ok(Tracefs { root, mounted_now: false });
        }
        mount(CANDIDATES[0]).map_err(NotMounted)?;
        match Self::locate() {
            Some(root) => Ok(Tracefs { root, mounted_now: true }),
            None => Err(NotMounted(io::Error::other("mounted, but events/ is missing"))),
        }
    }

    /// Where tracefs is mounted, if anywhere.
    pub fn locate() -> Option<PathBuf> {
        CANDIDATES.iter().map(PathBuf::from).find(|p| p.join("events").is_dir())
    }

    pub fn exists(&self, category: &str, name: &str) -> bool {
        self.root.join("events").join(category).join(name).is_dir()
    }

    /// The record layout of a tracepoint, or `None` if it does not exist.
    pub fn format(&self, category: &str, name: &str) -> Option<Format> {
        let text =
            fs::read_to_string(self.root.join("events").join(category).join(name).join("format")).ok()?;
        Some(Format::parse(&text))
    }
}

fn mount(target: &str) -> io::Result<()> {
    let c = |s: &str| CString::new(s).expect("no NUL");
    let (src, dst, fstype) = (c("tracefs"), c(target), c("tracefs"));
    // SAFETY: valid NUL-terminated strings; no data argument.
    let rc = unsafe { libc::mount(src.as_ptr(), dst.as_ptr(), fstype.as_ptr(), 0, std::ptr::null()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A field of a tracepoint record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    pub offset: u32,
    pub size: u32,
}

/// A tracepoint's record layout.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Format {
    pub fields: HashMap<String, Field>,
}

impl Format {
    /// Parses lines like
    /// `field:const char * filename;    offset:24;    size:8;    signed:0;`.
    pub fn parse(text: &str) -> Format {
        let mut fields = HashMap::new();
        for line in text.lines() {
            let mut decl = None;
            let (mut offset, mut size) = (None, None);
            for part in line.trim().split(';') {
                let part = part.trim();
                if let Some(d) = part.strip_prefix("field:") {
                    decl = Some(d);
                } else if let Some(o) = part.strip_prefix("offset:") {
                    offset = o.parse().ok();
                } else if let Some(s) = part.strip_prefix("size:") {
                    size = s.parse().ok();
                }
            }
            let (Some(decl), Some(offset), Some(size)) = (decl, offset, size) else { continue };
            // The name is the last word, without an array suffix.
            let Some(name) = decl.split_whitespace().last() else { continue };
            let name = name.split('[').next().unwrap_or(name).trim_start_matches('*');
            fields.insert(name.to_string(), Field { offset, size });
        }
        Format { fields }
    }

    pub fn get(&self, name: &str) -> Option<Field> {
        self.fields.get(name).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXIT: &str = "name: sched_process_exit\nID: 369\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:0;\n\tfield:pid_t pid;\toffset:24;\tsize:4;\tsigned:1;\n\tfield:bool group_dead;\toffset:32;\tsize:1;\tsigned:0;\n\nprint fmt: \"comm=%s\"\n";

    #[test]
    fn parses_fields_with_arrays_and_pointers() {
        let f = Format::parse(EXIT);
        assert_eq!(f.get("comm"), Some(Field { offset: 8, size: 16 }));
        assert_eq!(f.get("group_dead"), Some(Field { offset: 32, size: 1 }));
        let open = Format::parse("\tfield:const char * filename;\toffset:24;\tsize:8;\tsigned:0;\n\tfield:__data_loc char[] name;\toffset:8;\tsize:4;\tsigned:0;\n");
        assert_eq!(open.get("filename"), Some(Field { offset: 24, size: 8 }));
        assert_eq!(open.get("name"), Some(Field { offset: 8, size: 4 }));
    }

    #[test]
    fn garbage_gives_no_fields() {
        assert!(Format::parse("field:;offset:x;size:;\n\n;;;").fields.is_empty());
    }
}
