//! Support for fdtrace's integration tests: the harness that drives fdtrace
//! (test side) and helpers for the workload programs it traces.
pub mod fixtures;
pub mod harness;
pub mod workload;
