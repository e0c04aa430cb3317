//! `--flamegraph FILE.svg` and `--folded FILE`: pictures of the final
//! report (every group, not only `--top`), written atomically (a temporary
//! file beside the target, then rename), so a reader never sees half a
//! file. Where they go is checked at start-up, before tracing.
use std::{
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
};

use anyhow::Context as _;

use super::{Reports, Sink};
use crate::report::{folded, Report};

/// The files to write at the final report.
#[derive(Clone, Debug, Default)]
pub struct Pictures {
    pub flamegraph: Option<PathBuf>,
    pub folded: Option<PathBuf>,
}

impl Pictures {
    pub fn wanted(&self) -> bool {
        self.flamegraph.is_some() || self.folded.is_some()
    }

    /// Fails, with the option and the reason, if a file could not be
    /// written: its directory is missing or not writable, or it is a
    /// directory.
    pub fn check(&self) -> anyhow::Result<()> {
        for (flag, path) in self.files() {
            writable(path).with_context(|| format!("cannot write {flag} {}", path.display()))?;
        }
        Ok(())
    }

    /// Writes the pictures of `r` (a report of every group).
    pub fn write(&self, r: &Report) -> anyhow::Result<()> {
        let lines = folded::lines(r);
        if let Some(path) = &self.folded {
            write_atomic(path, folded::text(&lines).as_bytes())
                .with_context(|| format!("writing --folded {}", path.display()))?;
        }
        if let Some(path) = &self.flamegraph {
            let svg = folded::flamegraph(r, &lines).context("drawing the flame graph")?;
            write_atomic(path, &svg).with_context(|| format!("writing --flamegraph {}", path.display()))?;
        }
        Ok(())
    }

    fn files(&self) -> impl Iterator<Item = (&'static str, &PathBuf)> {
        [("--flamegraph", &self.flamegraph), ("--folded", &self.folded)]
            .into_iter()
            .filter_map(|(flag, p)| Some((flag, p.as_ref()?)))
    }
}

/// The picture sink: draws the final report; a picture it could not write
/// fails fdtrace at the end.
pub struct PictureSink {
    pictures: Pictures,
    failed: Option<anyhow::Error>,
}

impl PictureSink {
    pub fn new(pictures: Pictures) -> PictureSink {
        PictureSink { pictures, failed: None }
    }
}

impl Sink for PictureSink {
    fn reports(&self) -> Reports {
        Reports::Final
    }

    fn report(&mut self, r: &Report) -> io::Result<()> {
        if r.is_final {
            self.failed = self.pictures.write(r).err();
        }
        Ok(())
    }

    fn finish(&mut self) -> anyhow::Result<()> {
        self.failed.take().map_or(Ok(()), Err)
    }
}

/// The temporary file `path` is written to before the rename.
fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.fdtrace-{}.tmp", std::process::id()))
}

fn writable(path: &Path) -> io::Result<()> {
    if path.is_dir() {
        return Err(io::Error::new(io::ErrorKind::IsADirectory, "it is a directory"));
    }
    if path.file_name().is_none() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "no file name"));
    }
    // Creating the temporary file proves the directory exists and is
    // writable (also for root on a read-only file system).
    let tmp = temp_path(path);
    fs::File::create(&tmp)?;
    fs::remove_file(&tmp)
}

fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let tmp = temp_path(path);
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwritable_places_are_refused_and_files_replaced_whole() {
        let dir = std::env::temp_dir().join(format!("fdtrace-pictures-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        // Given a missing directory and a directory in place of the file
        let missing = Pictures { folded: Some(dir.join("no/such/dir/x.folded")), ..Default::default() };
        let is_dir = Pictures { flamegraph: Some(dir.clone()), ..Default::default() };
        // Then both are refused, naming the option
        let e = format!("{:#}", missing.check().unwrap_err());
        assert!(e.contains("--folded") && e.contains("No such file"), "{e}");
        let e = format!("{:#}", is_dir.check().unwrap_err());
        assert!(e.contains("--flamegraph") && e.contains("directory"), "{e}");

        // Given an existing file, when written atomically, it is replaced
        let file = dir.join("out.folded");
        fs::write(&file, "old").unwrap();
        write_atomic(&file, b"new").unwrap();
        assert_eq!(fs::read_to_string(&file).unwrap(), "new");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1, "temporary file left behind");
        fs::remove_dir_all(&dir).unwrap();
    }
}
