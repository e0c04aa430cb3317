//! Go programs: the uprobes that follow goroutines back to the code that
//! started them (see `fdtrace-ebpf/src/go.rs`).
use aya::{
    programs::{
        uprobe::{UProbeAttachLocation, UProbeScope},
        ProgramError, UProbe,
    },
    Ebpf,
};
use fdtrace_common::{programs, GoInfo, GO_PROCS_MAP};

use super::{function, preflight, Links};
use crate::golang::Hook;

/// Follows a Go program's goroutines back to the code that started them:
/// registers its `runtime.g` offsets and attaches the uprobes (on
/// `/proc/PID/exe`, which also finds a binary deleted since it started), by
/// symbol or, in a stripped binary, at the entries its Go line table gives.
pub(super) fn attach_go(
    ebpf: &mut Ebpf,
    links: &mut Links,
    tgid: u32,
    exe: &std::path::Path,
    go: &crate::golang::GoBinary,
) -> Result<(), GoError> {
    if let Some(why) = go.limitation() {
        return Err(GoError::Unsupported(why));
    }
    preflight::uprobes().map_err(GoError::Unsupported)?;
    let (Some((info, _)), Some(newproc)) = (go.offsets, go.newproc.as_ref()) else {
        return Err(GoError::Unsupported("checked by limitation()".into()));
    };
    {
        let map = ebpf.map_mut(GO_PROCS_MAP).ok_or(GoError::Unsupported("object lacks GO_PROCS".into()))?;
        let mut map: aya::maps::HashMap<_, u32, GoInfo> =
            aya::maps::HashMap::try_from(map).map_err(|e| GoError::Unsupported(e.to_string()))?;
        map.insert(tgid, info, 0).map_err(|e| GoError::Unsupported(e.to_string()))?;
    }
    let pid = std::num::NonZeroU32::new(tgid).ok_or(GoError::Unsupported("pid 0".into()))?;
    let [(newproc_prog, newproc_fn), (dial_prog, dial_fn)] = GO_HOOKS;
    let mut hooks = vec![(newproc_prog, newproc_fn, newproc)];
    if let Some(dial) = go.dial_conn_for.as_ref() {
        hooks.push((dial_prog, dial_fn, dial));
    }
    for (program, function, hook) in hooks {
        let attach = |why: String| GoError::Attach { function, why };
        let prog: &mut UProbe = ebpf
            .program_mut(program)
            .ok_or_else(|| attach("program missing from the object".into()))?
            .try_into()
            .map_err(|e: ProgramError| attach(e.to_string()))?;
        if prog.fd().is_err() {
            prog.load().map_err(|e| attach(function::error_chain(&e)))?;
        }
        let id = prog
            .attach(location(hook), exe, UProbeScope::OneProcess(pid))
            .map_err(|e| attach(function::error_chain(&e)))?;
        links.uprobes.push((program.to_string(), id));
    }
    Ok(())
}

fn location(hook: &Hook) -> UProbeAttachLocation<'_> {
    match hook {
        Hook::Symbol(name) => UProbeAttachLocation::Symbol(name),
        Hook::FileOffset(offset) => UProbeAttachLocation::AbsoluteOffset(*offset),
    }
}

/// The uprobes in Go programs: (program, function).
pub(super) const GO_HOOKS: [(&str, &str); 2] = [
    (programs::GO_NEWPROC, crate::golang::NEWPROC),
    (programs::GO_DIAL_CONN_FOR, crate::golang::DIAL_CONN_FOR),
];

/// What following a Go program's goroutines needs, and whether it worked.
#[derive(Clone, Debug, thiserror::Error)]
pub enum GoError {
    #[error("{0}")]
    Unsupported(String),
    #[error("attaching to {function}: {why}")]
    Attach { function: &'static str, why: String },
}
