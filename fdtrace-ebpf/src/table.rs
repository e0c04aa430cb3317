//! What the build script generates from the syscall table in
//! `fdtrace-common` (see `fdtrace-ebpf/build.rs`): the `NR_*` constants,
//! `syscall_of`, the stashing entry programs `sys_enter_<arity>` and the
//! exit programs `sys_exit_<name>`.
#![allow(dead_code, reason = "every syscall's number is generated, whether a program matches on it or not")]

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use fdtrace_common::Syscall;

use crate::emit::finish;

include!(concat!(env!("OUT_DIR"), "/syscall_table.rs"));
