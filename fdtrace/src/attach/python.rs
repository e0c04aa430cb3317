//! CPython programs: registering an interpreter's offsets, so that the
//! kernel reads each open's Python stack (see `fdtrace-ebpf/src/python.rs`).
use aya::Ebpf;
use fdtrace_common::{PyInfo, PY_PROCS_MAP};

/// Tells the kernel where process `tgid`'s interpreter keeps its frames.
pub(super) fn register(ebpf: &mut Ebpf, tgid: u32, info: &PyInfo) -> Result<(), String> {
    let map = ebpf.map_mut(PY_PROCS_MAP).ok_or("the eBPF object has no PY_PROCS map")?;
    let mut map: aya::maps::HashMap<_, u32, PyInfo> =
        aya::maps::HashMap::try_from(map).map_err(|e| e.to_string())?;
    map.insert(tgid, info, 0).map_err(|e| format!("registering pid {tgid}'s interpreter: {e}"))
}
