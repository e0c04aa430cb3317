//! Builds the eBPF object from `fdtrace-ebpf` and puts it in OUT_DIR, where
//! `attach` embeds it. Missing prerequisites stop the build with the command
//! that installs them.
use std::{env, fs, path::PathBuf, process::exit};

#[path = "../xtask/src/ebpf_build.rs"]
mod ebpf_build;

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = manifest.parent().expect("fdtrace/ is in the workspace").to_path_buf();
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo")).join("fdtrace-ebpf.o");
    for path in [
        "fdtrace-ebpf/src",
        "fdtrace-ebpf/Cargo.toml",
        "fdtrace-ebpf/build.rs",
        "fdtrace-common/src",
        "fdtrace-common/Cargo.toml",
    ] {
        println!("cargo:rerun-if-changed={}", workspace.join(path).display());
    }
    println!("cargo:rerun-if-env-changed=FDTRACE_EBPF_TOOLCHAIN");

    let missing = ebpf_build::check_prerequisites();
    if !missing.is_empty() {
        eprintln!("error: cannot build fdtrace's eBPF programs:");
        for m in &missing {
            eprintln!("  - {m}");
        }
        eprintln!("run `cargo xtask build-ebpf` once: it installs what is missing; then build again.");
        exit(1);
    }
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
