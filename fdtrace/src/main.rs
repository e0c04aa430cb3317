//! The fdtrace command: parse the command line, then hand over to the
//! library (see `lib.rs` for how the parts fit together).
#![allow(unused_crate_dependencies, reason = "the library uses them: the binary is its thin front")]
use std::process::ExitCode;

use clap::Parser;
use fdtrace::{
    attach, check, cli, generate,
    session::{self, launch},
};

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    fdtrace::init_logging(cli.trace.verbose);

    if let Some(cli::Command::Generate { what }) = cli.command {
        return match generate::write(what, &mut std::io::stdout().lock()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("fdtrace: error: writing {what:?}: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(cli::Command::Check) = cli.command {
        let check = attach::Tracer::check();
        print!("{}", check::render(&check));
        return if check::usable(&check) { ExitCode::SUCCESS } else { ExitCode::FAILURE };
    }
    // Launch mode: fork the command now, while fdtrace is single-threaded;
    // it waits before exec until the session has attached.
    let launched = if cli.trace.launches() {
        // SAFETY: no preconditions.
        let euid = unsafe { libc::geteuid() };
        let run_as = launch::RunAs::from_sudo(euid, |k| std::env::var(k).ok());
        match launch::Command::new(&cli.trace.command, run_as).and_then(|c| c.spawn_blocked()) {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!("fdtrace: {e}");
                return ExitCode::from(e.exit_code());
            }
        }
    } else {
        None
    };
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(session::run(&cli.trace, launched)));
    match result {
        Ok(outcome) => ExitCode::from(outcome.code(cli.trace.error_exitcode)),
        Err(e) => {
            eprintln!("fdtrace: error: {e:#}");
            match e.downcast_ref::<launch::LaunchError>() {
                Some(launch) => ExitCode::from(launch.exit_code()),
                None => ExitCode::FAILURE,
            }
        }
    }
}
