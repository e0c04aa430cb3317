//! The leak report: unclosed fds grouped by the user stack that opened
//! them. Building it is pure ([`build`]: ledger + resolved stacks + socket
//! views in, [`Report`] out); [`Report::limited`] cuts it to what an output
//! shows (`--top`, `--fds-per-group`); [`text`] and JSON render it,
//! [`folded`] draws it.
//!
//! "Leaked" is not knowable for sure; the report shows evidence: fds still
//! open after `--min-age`, per stack how many are open, opened, closed, the
//! oldest, how fast the group grows, and for sockets the peers and TCP
//! states.
mod build;
pub mod folded;
mod model;
#[cfg(test)]
mod sample;
pub mod suppress;
#[cfg(test)]
mod tests;
pub mod text;

pub use build::{build, Head, Options};
pub use model::{
    ExitInfo, FdInfo, Finding, Group, KernelPairing, Limits, Peer, Report, SessionInfo, Stats, Suppressed,
    TargetInfo,
};
