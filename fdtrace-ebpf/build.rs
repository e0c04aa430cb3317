//! Rebuild the eBPF object when the linker changes (it is not a Cargo
//! dependency, so Cargo would not notice on its own).
use which::which;

fn main() {
    println!("cargo:rerun-if-env-changed=PATH");
    if let Ok(linker) = which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
}
