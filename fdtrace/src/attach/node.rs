//! Node programs: the uprobes that join a socket to the JavaScript that
//! asked for it (see `fdtrace-ebpf/src/node.rs`).
use std::path::Path;

use aya::{
    programs::{
        uprobe::{UProbeAttachLocation, UProbeScope},
        ProgramError, UProbe,
    },
    Ebpf,
};
use fdtrace_common::programs;

use super::{function, preflight, Links};

/// libuv's functions the uprobes go on (Node links libuv in and exports
/// its symbols, for addons).
pub(super) const HOOKS: [(&str, &str); 2] =
    [(programs::NODE_TCP_INIT, "uv_tcp_init"), (programs::NODE_TCP_CONNECT, "uv_tcp_connect")];

/// Whether `exe` is Node: named `node`/`nodejs`, or a binary that exports
/// libuv's `uv_tcp_connect` alongside V8 (an embedder).
pub fn is_node(exe: &Path) -> bool {
    let name = exe.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    matches!(name, "node" | "nodejs") || name.starts_with("node-")
}

/// Attaches the uprobes in process `tgid`, running `exe`.
pub(super) fn attach_node(ebpf: &mut Ebpf, links: &mut Links, tgid: u32, exe: &Path) -> Result<(), String> {
    preflight::uprobes()?;
    let pid = std::num::NonZeroU32::new(tgid).ok_or("pid 0")?;
    for (program, symbol) in HOOKS {
        let what = |why: String| format!("uprobe on {symbol} in {}: {why}", exe.display());
        let prog: &mut UProbe = ebpf
            .program_mut(program)
            .ok_or_else(|| what("program missing from the object".into()))?
            .try_into()
            .map_err(|e: ProgramError| what(e.to_string()))?;
        if prog.fd().is_err() {
            prog.load().map_err(|e| what(function::error_chain(&e)))?;
        }
        let id = prog
            .attach(UProbeAttachLocation::Symbol(symbol), exe, UProbeScope::OneProcess(pid))
            .map_err(|e| what(function::error_chain(&e)))?;
        links.uprobes.push((program.to_string(), id));
    }
    Ok(())
}
