//! fdtrace: find the file descriptors a process opens and never closes.
//!
//! The data flows kernel → ring buffer → decoded events → ledger →
//! report/stream:
//! - [`attach`]: capability checks, tiers, loading and attaching;
//! - [`events`]: ring-buffer records decoded into Rust types;
//! - [`ledger`]: pairing opens with closes (pure);
//! - [`procfs`]: `/proc` baseline and socket details;
//! - [`symbolize`]: user stacks → function, file:line;
//! - [`report`]: unclosed fds grouped by stack (text, JSON);
//! - [`stream`]: live event lines;
//! - [`session`]: the loop that ties them together.
mod attach;
mod check;
mod cli;
mod clock;
mod events;
mod generate;
mod golang;
mod ledger;
mod live;
mod pictures;
mod procfs;
mod report;
mod session;
mod sockdiag;
mod stream;
mod symbolize;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    env_logger::Builder::new()
        .filter_level(if cli.trace.verbose { log::LevelFilter::Debug } else { log::LevelFilter::Warn })
        .format_timestamp(None)
        .format_target(false)
        .parse_env("FDTRACE_LOG")
        .init();

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
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(session::run(&cli.trace)));
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fdtrace: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
