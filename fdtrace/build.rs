//! Builds the eBPF object from `fdtrace-ebpf` and puts it in OUT_DIR, where
//! `attach` embeds it (the build is `xtask/src/ebpf_build.rs`, shared with
//! `cargo xtask build-ebpf`: both make the same object in the same place).
//!
//! Without the eBPF toolchain (nightly with rust-src, bpf-linker), or with
//! `AYA_BUILD_SKIP=1`, it embeds an empty stub instead and says so in a
//! warning: `cargo check`, `cargo clippy`, `cargo doc` and `fdtrace --help`
//! work on any machine, and `fdtrace` refuses to trace with the remedy
//! (`FDTRACE_EBPF_MISSING`, read by `attach`). The build then watches where
//! the missing pieces get installed, so the next build after installing
//! them builds the real object.
//!
//! Without the `ebpf` feature (fdtrace as a library, as fdtrace-tests and
//! the xtask link it) it embeds the stub quietly and builds nothing: see
//! the feature in Cargo.toml.
use std::{env, fs, path::PathBuf, process::exit};

#[path = "../xtask/src/ebpf_build.rs"]
mod ebpf_build;

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = manifest.parent().expect("fdtrace/ is in the workspace").to_path_buf();
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo")).join("fdtrace-ebpf.o");
    if env::var_os("CARGO_FEATURE_EBPF").is_none() {
        // The stub depends on nothing else: no rerun for eBPF sources or
        // installs.
        println!("cargo:rerun-if-changed=build.rs");
        write_stub(
            &out,
            "built as a library, without the `ebpf` feature (one of fdtrace's default features)",
        );
        return;
    }
    for path in [
        "fdtrace-ebpf/src",
        "fdtrace-ebpf/Cargo.toml",
        "fdtrace-ebpf/build.rs",
        "fdtrace-common/src",
        "fdtrace-common/Cargo.toml",
    ] {
        println!("cargo:rerun-if-changed={}", workspace.join(path).display());
    }
    for var in ["FDTRACE_EBPF_TOOLCHAIN", ebpf_build::SKIP_ENV] {
        println!("cargo:rerun-if-env-changed={var}");
    }

    let missing = if ebpf_build::skip_requested() { vec![] } else { ebpf_build::check_prerequisites() };
    if ebpf_build::skip_requested() || !missing.is_empty() {
        stub(&out, &missing);
        return;
    }
    // bpf-linker is no Cargo dependency: a new one must rebuild the object.
    println!("cargo:rerun-if-changed={}", ebpf_build::bpf_linker().display());
    let mut cmd = ebpf_build::build_command(&workspace);
    match cmd.status() {
        Ok(s) if s.success() => {}
        Ok(s) => {
            eprintln!("error: building fdtrace-ebpf failed ({s}); run `cargo xtask build-ebpf` to see the full output");
            exit(1);
        }
        Err(e) => {
            eprintln!("error: running {cmd:?}: {e}");
            exit(1);
        }
    }
    let object = ebpf_build::object_path(&workspace);
    if let Err(e) = fs::copy(&object, &out) {
        eprintln!("error: copying {} to {}: {e}", object.display(), out.display());
        exit(1);
    }
}

/// An empty object, a warning with the remedy, and `FDTRACE_EBPF_MISSING`
/// for `attach` to refuse it at run time.
fn stub(out: &std::path::Path, missing: &[ebpf_build::Missing]) {
    let why = if missing.is_empty() {
        format!("{}=1 is set", ebpf_build::SKIP_ENV)
    } else {
        missing.iter().map(|m| m.to_string()).collect::<Vec<_>>().join("; ")
    };
    write_stub(out, &why);
    let warn = |line: &str| println!("cargo:warning={line}");
    warn("fdtrace is built WITHOUT its eBPF programs (an empty stub): it will refuse to trace.");
    if missing.is_empty() {
        warn(&format!("{why}: unset it and build again to embed them."));
    } else {
        for m in missing {
            warn(&format!("  missing: {m}; install: `{}`", m.remedy()));
        }
        warn("`cargo xtask build-ebpf` installs all of it and builds them; the next build embeds them.");
    }
    // Rerun once something is installed (PATH's directories, cargo's bin,
    // rustup's state), not on every build: a rerun recompiles fdtrace.
    println!("cargo:rerun-if-env-changed=PATH");
    for path in ebpf_build::install_locations() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

/// The empty object, and `FDTRACE_EBPF_MISSING` saying why.
fn write_stub(out: &std::path::Path, why: &str) {
    if let Err(e) = fs::write(out, []) {
        eprintln!("error: writing {}: {e}", out.display());
        exit(1);
    }
    println!("cargo:rustc-env=FDTRACE_EBPF_MISSING={}", why.replace(['\n', '\r'], " "));
}
