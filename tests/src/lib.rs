//! Support for fdtrace's integration tests: the harness that drives fdtrace
//! (test side), the guards that make a test that cannot run say so
//! ([`skip`]), and helpers for the workload programs it traces.
#![cfg_attr(
    test,
    allow(unused_crate_dependencies, reason = "unit tests link the integration tests' dev-dependencies")
)]
pub mod fixtures;
pub mod harness;
pub mod skip;
/// The workload protocol: its own crate, so that the workload programs
/// link none of the test side.
pub use fdtrace_workload as workload;
