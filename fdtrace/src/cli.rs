//! Command line.
use std::{path::PathBuf, time::Duration};

use clap::Parser;

use crate::{attach::AttachMode, live::ColorChoice, stream::Format};

pub const EXAMPLES: &str = "\
Examples:
  sudo fdtrace -p 4242                 report unclosed sockets of pid 4242 every 5 s
  sudo fdtrace -p 4242 -d 30 -a        one report after 30 s, every kind of fd
  sudo fdtrace -p 4242 --events        print every fd/socket open and close as it happens
  sudo fdtrace -p 4242 --events --format json -d 10
                                       ten seconds of events as JSON lines
  sudo fdtrace -p 4242 -f --min-age 10 also trace its children; only fds older than 10 s
  sudo fdtrace -p 4242 -d 60 --flamegraph leaks.svg
                                       a flame graph of what is still open after a minute";

#[derive(Parser, Debug)]
#[command(
    name = "fdtrace",
    version,
    about = "Find the sockets and other file descriptors a process opens and never closes, and where in the program it opened them.",
    after_help = EXAMPLES,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub trace: TraceArgs,
}

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Check what this kernel supports and which hooks fdtrace would use, then exit.
    Check,
    /// Print the man page or a shell's completions (for packagers and `cargo xtask install`).
    #[command(hide = true)]
    Generate {
        #[arg(value_enum)]
        what: crate::generate::Generated,
    },
}

#[derive(clap::Args, Debug, Clone)]
pub struct TraceArgs {
    /// Process to trace, with all its threads. A thread id traces its process.
    #[arg(short, long = "pid", value_name = "PID", required = false)]
    pub pids: Vec<u32>,

    /// Print one line per fd/socket event as it happens (instead of reports).
    #[arg(short, long)]
    pub events: bool,

    /// Seconds between reports (a final report is printed at the end).
    #[arg(short, long, value_name = "SECS", default_value = "5", value_parser = parse_secs)]
    pub interval: Duration,

    /// Only fds open at least this long count as unclosed.
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = parse_secs_or_zero)]
    pub min_age: Duration,

    /// Report every kind of fd (files, pipes, ...), not only sockets.
    #[arg(short, long)]
    pub all_fds: bool,

    /// Show at most this many groups (stacks) per report.
    #[arg(short, long, value_name = "N", default_value_t = 10)]
    pub top: usize,

    /// List at most this many fds per group in JSON reports (oldest first).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub fds_per_group: usize,

    /// Output format: text for people, json for machines (one object per line).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,

    /// Stop after this many seconds.
    #[arg(short, long, value_name = "SECS", value_parser = parse_secs)]
    pub duration: Option<Duration>,

    /// Also trace the processes the target forks (they start with a copy of its fds).
    #[arg(short, long)]
    pub follow_forks: bool,

    /// How to hook the kernel.
    #[arg(long, value_enum, default_value_t = AttachMode::Auto)]
    pub attach: AttachMode,

    /// Size of the kernel→fdtrace ring buffer (e.g. 8M, 64M). Raise it if events are lost.
    #[arg(long, value_name = "SIZE", default_value = "16M", value_parser = parse_ringbuf_size)]
    pub ringbuf_size: u32,

    /// Do not capture user stacks (cheaper; reports cannot say where fds were opened).
    #[arg(long)]
    pub no_stacks: bool,

    /// At the final report, write a flame graph (SVG) of the unclosed fds by the stack that opened
    /// them (every group, not only --top).
    #[arg(long, value_name = "FILE.svg")]
    pub flamegraph: Option<PathBuf>,

    /// At the final report, write the unclosed fds as folded stacks (`frame;frame;... count`), the
    /// input of flame graph tools.
    #[arg(long, value_name = "FILE")]
    pub folded: Option<PathBuf>,

    /// Colours in text reports (CLOSE_WAIT, growth, lost events): auto = on a terminal, unless
    /// NO_COLOR is set.
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,

    /// No colours (as --color never).
    #[arg(long)]
    pub no_color: bool,

    /// Print debug logs to stderr.
    #[arg(short, long)]
    pub verbose: bool,
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    let v: f64 = s.parse().map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !(v > 0.0 && v.is_finite()) {
        return Err("must be a positive number of seconds".into());
    }
    Ok(Duration::from_secs_f64(v))
}

fn parse_secs_or_zero(s: &str) -> Result<Duration, String> {
    if s.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    parse_secs(s)
}

/// "16M", "512K", "1G" or bytes; a power of two, at least one page.
fn parse_ringbuf_size(s: &str) -> Result<u32, String> {
    let (num, mult) = match s.trim().to_ascii_uppercase() {
        t if t.ends_with('K') => (t.trim_end_matches('K').to_string(), 1u64 << 10),
        t if t.ends_with('M') => (t.trim_end_matches('M').to_string(), 1 << 20),
        t if t.ends_with('G') => (t.trim_end_matches('G').to_string(), 1 << 30),
        t => (t, 1),
    };
    let n: u64 = num.parse().map_err(|_| format!("`{s}` is not a size like 16M"))?;
    let bytes = n * mult;
    if bytes < 4096 || !bytes.is_power_of_two() || bytes > 1 << 30 {
        return Err(format!("{s} must be a power of two between 4K and 1G"));
    }
    Ok(bytes as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn sizes_and_durations_parse() {
        assert_eq!(parse_ringbuf_size("16M"), Ok(16 << 20));
        assert_eq!(parse_ringbuf_size("4096"), Ok(4096));
        assert!(parse_ringbuf_size("3M").is_err());
        assert!(parse_ringbuf_size("lots").is_err());
        assert_eq!(parse_secs("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("nan").is_err());
    }

    #[test]
    fn pid_and_events_flags() {
        let cli =
            Cli::try_parse_from(["fdtrace", "-p", "42", "--events", "--format", "json", "-d", "3"]).unwrap();
        assert_eq!(cli.trace.pids, vec![42]);
        assert!(cli.trace.events);
        assert_eq!(cli.trace.format, Format::Json);
        assert_eq!(cli.trace.duration, Some(Duration::from_secs(3)));
    }
}
