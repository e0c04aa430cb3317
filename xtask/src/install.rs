//! `cargo xtask install [--prefix DIR]`: fdtrace (release) in PREFIX/bin,
//! its man page and bash, zsh and fish completions where those look for
//! them. The man page and completions come from the installed binary
//! (`fdtrace generate man|bash|zsh|fish`, generated from its clap
//! definitions), so they always match it.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};

/// Where each generated file goes under the prefix.
const GENERATED: &[(&str, &str)] = &[
    ("man", "share/man/man1/fdtrace.1"),
    ("bash", "share/bash-completion/completions/fdtrace"),
    ("zsh", "share/zsh/site-functions/_fdtrace"),
    ("fish", "share/fish/vendor_completions.d/fdtrace.fish"),
];

pub fn run(ws: &Path, prefix: &Path) -> Result<()> {
    crate::setup::ebpf_toolchain()?;
    crate::sh(crate::cargo().current_dir(ws).args([
        "build",
        "--release",
        "-p",
        "fdtrace",
        "--bin",
        "fdtrace",
    ]))?;
    let installed = install_files(&ws.join("target/release/fdtrace"), prefix)?;
    for path in installed {
        println!("xtask: installed {}", path.display());
    }
    Ok(())
}

/// Copies `bin` to PREFIX/bin/fdtrace and writes what it generates;
/// returns the files written.
pub fn install_files(bin: &Path, prefix: &Path) -> Result<Vec<PathBuf>> {
    let target = prefix.join("bin/fdtrace");
    let mut written = vec![target.clone()];
    fs::create_dir_all(prefix.join("bin")).with_context(|| format!("creating {}/bin", prefix.display()))?;
    // Beside it, then renamed: a running fdtrace keeps its (old) file.
    let tmp = prefix.join("bin/.fdtrace.new");
    fs::copy(bin, &tmp).with_context(|| format!("copying {} to {}", bin.display(), tmp.display()))?;
    fs::rename(&tmp, &target).with_context(|| format!("installing {}", target.display()))?;
    for (what, rel) in GENERATED {
        let out = Command::new(&target).args(["generate", what]).output()?;
        if !out.status.success() {
            bail!("{} generate {what} failed: {}", target.display(), String::from_utf8_lossy(&out.stderr));
        }
        let path = prefix.join(rel);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        fs::write(&path, &out.stdout).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Installs the debug build (`cargo xtask test` builds it first; the
    /// release build `run` makes is the same code) into a temporary prefix.
    #[test]
    fn install_writes_binary_man_page_and_completions() {
        let bin = crate::workspace().join("target/debug/fdtrace");
        assert!(bin.exists(), "{} missing: build it with `cargo build -p fdtrace`", bin.display());
        let prefix = std::env::temp_dir().join(format!("fdtrace-install-{}", std::process::id()));
        let _ = fs::remove_dir_all(&prefix);

        let written = install_files(&bin, &prefix).unwrap();

        assert_eq!(written.len(), 1 + GENERATED.len());
        let version = Command::new(prefix.join("bin/fdtrace")).arg("--version").output().unwrap();
        assert!(String::from_utf8_lossy(&version.stdout).starts_with("fdtrace "));
        // The man page renders (groff, with preconv for UTF-8) and names
        // the options.
        let man = prefix.join("share/man/man1/fdtrace.1");
        let rendered = Command::new("groff").args(["-k", "-man", "-Tutf8", "-ww"]).arg(&man).output();
        let text = match rendered {
            Ok(out) => {
                assert!(
                    out.status.success() && out.stderr.is_empty(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                String::from_utf8_lossy(&out.stdout).replace(['\u{2010}', '\u{2212}'], "-")
            }
            Err(e) => {
                let why = format!("groff missing ({e}; `cargo xtask setup` installs it)");
                assert!(std::env::var("CI").map_or(true, |v| v != "true"), "{why}");
                eprintln!("{why}: checking the roff source only");
                fs::read_to_string(&man).unwrap().replace("\\-", "-")
            }
        };
        // groff overstrikes bold; drop the backspaced characters.
        let text = strip_overstrike(&text);
        for option in ["--pid", "--events", "--flamegraph", "--folded", "--format", "--min-age", "--attach"] {
            assert!(text.contains(option), "{option} not in the man page:\n{text}");
        }
        assert!(text.contains("fdtrace check") && text.contains("EXAMPLES"), "{text}");
        for (shell, rel) in &GENERATED[1..] {
            let script = fs::read_to_string(prefix.join(rel)).unwrap();
            assert!(script.contains("pid"), "{shell} completion lacks --pid:\n{script}");
        }
        fs::remove_dir_all(&prefix).unwrap();
    }

    fn strip_overstrike(s: &str) -> String {
        let mut out: Vec<char> = vec![];
        for c in s.chars() {
            if c == '\u{8}' {
                out.pop();
            } else {
                out.push(c);
            }
        }
        out.into_iter().filter(|&c| c != '\u{8}').collect()
    }
}
