//! Command line.
use std::{path::PathBuf, time::Duration};

use clap::Parser;

use crate::{
    attach::AttachMode,
    events::{FdKind, TcpState},
    filter::{self, Cidr, Filter},
    sinks::status::ColorChoice,
    sinks::Format,
};

pub const EXAMPLES: &str = "\
Examples:
  sudo fdtrace -- ./server --port 8080
                                       run ./server (as you, not root), traced from its first
                                       instruction; the final report when it exits
  sudo fdtrace -p 4242                 report unclosed sockets of pid 4242 every 5 s
  sudo fdtrace -p 4242 -d 30 -a        one report after 30 s, every kind of fd
  sudo fdtrace --comm nginx --state CLOSE_WAIT
                                       every nginx process, running or started later;
                                       only sockets the peer closed and nginx did not
  sudo fdtrace -p 4242 --events --port 5432
                                       every open/close of sockets to or from port 5432, live
  sudo fdtrace -p 4242 -d 60 --flamegraph leaks.svg
                                       a flame graph of what is still open after a minute

Launch mode (-- CMD ARGS...): CMD keeps the terminal's stdin, stdout and stderr; reports go to
stderr (or -o FILE) and fdtrace exits with CMD's exit code (128+N when a signal N killed it).
Under sudo, CMD runs as the user who ran sudo, with that user's HOME, USER and LOGNAME.
Ctrl-C reaches CMD (it is in the terminal's process group); SIGINT or SIGTERM sent to fdtrace
alone is passed on to CMD. fdtrace keeps tracing until CMD exits, then prints the final report.";

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
    /// Repeat it, or separate pids with commas, to trace several in one session.
    #[arg(short, long = "pid", value_name = "PID", required = false, value_delimiter = ',')]
    pub pids: Vec<u32>,

    /// Trace every process named NAME (its comm, as `ps -o comm` shows it):
    /// those running now, and those that start (exec) or fork later.
    #[arg(long, value_name = "NAME")]
    pub comm: Option<String>,

    /// Start this command and trace it from its first instruction (after `--`).
    #[arg(last = true, value_name = "CMD", conflicts_with_all = ["pids", "comm"])]
    pub command: Vec<String>,

    /// Write reports or event lines to FILE (default: stdout; stderr in launch mode).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Print one line per fd/socket event as it happens (instead of reports).
    #[arg(short, long)]
    pub events: bool,

    /// Seconds between reports (a final report is printed at the end).
    #[arg(short, long, value_name = "SECS", default_value = "5", value_parser = parse_secs)]
    pub interval: Duration,

    /// Exit with this code when the final report holds unclosed fds (else the launched
    /// command's code, or 0): for CI, as valgrind's --error-exitcode.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..))]
    pub error_exitcode: Option<u8>,

    /// Stacks whose fds never count as unclosed, one glob per line (FUNCTION, fun:GLOB,
    /// file:GLOB[:LINE], module:GLOB; '#' comments). Repeatable. Suppressed groups are counted
    /// in the report's header.
    #[arg(long, value_name = "FILE")]
    pub suppress: Vec<PathBuf>,

    /// Only fds open at least this long count as unclosed (fds a process left open when it
    /// exited always count).
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = parse_secs_or_zero)]
    pub min_age: Duration,

    /// Report every kind of fd (files, pipes, ...), not only sockets.
    #[arg(short, long, conflicts_with = "kinds")]
    pub all_fds: bool,

    /// Only fds of this kind: socket, file, pipe, eventfd, epoll, memfd, timerfd,
    /// signalfd, inotify, pidfd, ... Repeatable. Reports default to sockets, events to all.
    #[arg(long = "kind", value_name = "KIND", value_parser = filter::parse_kind)]
    pub kinds: Vec<FdKind>,

    /// Only sockets with this local or remote port. Repeatable.
    #[arg(long = "port", value_name = "N")]
    pub ports: Vec<u16>,

    /// Only sockets whose peer is in ADDR[/PREFIX] (IPv4 or IPv6). Repeatable.
    #[arg(long = "remote", value_name = "ADDR[/PREFIX]", value_parser = Cidr::parse)]
    pub remotes: Vec<Cidr>,

    /// Only sockets in this TCP state (ESTABLISHED, CLOSE_WAIT, LISTEN, ...). Repeatable.
    #[arg(long = "state", value_name = "STATE", value_parser = filter::parse_state)]
    pub states: Vec<TcpState>,

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
    /// Default: 4M for reports (the kernel pairs most fds itself), 16M when every event goes
    /// through it (--events, --no-kernel-pairing).
    #[arg(long, value_name = "SIZE", value_parser = parse_ringbuf_size)]
    pub ringbuf_size: Option<u32>,

    /// Do not capture user stacks (cheaper; reports cannot say where fds were opened).
    #[arg(long)]
    pub no_stacks: bool,

    /// Send every open and close to fdtrace instead of letting the kernel pair the short-lived
    /// ones itself (costlier under churn; the reports are the same). --events and -f always do.
    #[arg(long)]
    pub no_kernel_pairing: bool,

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

impl TraceArgs {
    /// What reports count: sockets unless `--kind` or `--all-fds` say otherwise.
    pub fn report_filter(&self) -> Filter {
        let kinds = match (self.all_fds, self.kinds.is_empty()) {
            (true, _) => None,
            (false, true) => Some(vec![FdKind::Socket]),
            (false, false) => Some(self.kinds.clone()),
        };
        Filter { kinds, ..self.event_filter() }
    }

    /// What `--events` shows: every kind unless `--kind` says otherwise;
    /// `None` when nothing is filtered.
    pub fn event_filter(&self) -> Filter {
        Filter {
            kinds: (!self.kinds.is_empty()).then(|| self.kinds.clone()),
            ports: self.ports.clone(),
            remotes: self.remotes.clone(),
            states: self.states.clone(),
        }
    }

    /// Launch mode: a command after `--`.
    pub fn launches(&self) -> bool {
        !self.command.is_empty()
    }
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
/// The ring's size when `--ringbuf-size` does not say: what a report
/// session sends through it (barriers, first sites, survivors; every open
/// only when the kernel's tables are full) fits a smaller ring than every
/// event does, and the ring is mapped twice (its size counts twice in RSS).
pub fn default_ringbuf_size(every_event: bool) -> u32 {
    if every_event {
        16 << 20
    } else {
        4 << 20
    }
}

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

    #[test]
    fn help_shows_the_common_uses_within_100_columns() {
        let help = Cli::command().render_long_help().to_string();
        let examples = help.split("Examples:").nth(1).expect("examples in --help");
        for use_ in ["sudo fdtrace -- ", "sudo fdtrace -p 4242 ", "--comm ", "--events ", "--state "] {
            assert!(examples.contains(use_), "no example of {use_:?}:\n{examples}");
        }
        assert!(help.lines().all(|l| l.chars().count() <= 100), "{help}");
    }

    #[test]
    fn several_pids_repeated_or_comma_separated() {
        let cli = Cli::try_parse_from(["fdtrace", "-p", "1,2", "-p", "3"]).unwrap();
        assert_eq!(cli.trace.pids, vec![1, 2, 3]);
    }

    #[test]
    fn a_command_after_the_double_dash_is_launched() {
        let cli = Cli::try_parse_from(["fdtrace", "-f", "--", "ls", "-l", "--all"]).unwrap();
        assert_eq!(cli.trace.command, ["ls", "-l", "--all"]);
        assert!(cli.trace.follow_forks && cli.trace.launches());
        let err = Cli::try_parse_from(["fdtrace", "-p", "1", "--", "ls"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
    }

    #[test]
    fn filters_parse_and_default_to_sockets_in_reports_only() {
        let cli = Cli::try_parse_from(["fdtrace", "-p", "1"]).unwrap();
        assert_eq!(cli.trace.report_filter().kind_names(), ["socket"]);
        assert_eq!(cli.trace.event_filter(), Filter::default());
        let cli = Cli::try_parse_from([
            "fdtrace",
            "-p",
            "1",
            "--kind",
            "pipe",
            "--kind",
            "file",
            "--port",
            "80",
            "--remote",
            "10.0.0.0/8",
            "--state",
            "close-wait",
        ])
        .unwrap();
        let f = cli.trace.report_filter();
        assert_eq!(f.kind_names(), ["pipe", "file"]);
        assert_eq!((f.ports.as_slice(), f.states.as_slice()), (&[80u16][..], &[TcpState::CloseWait][..]));
        assert_eq!(f.remotes, [Cidr::parse("10.0.0.0/8").unwrap()]);
        assert_eq!(
            Cli::try_parse_from(["fdtrace", "-p", "1", "-a"]).unwrap().trace.report_filter().kinds,
            None
        );
        assert!(Cli::try_parse_from(["fdtrace", "-p", "1", "-a", "--kind", "pipe"]).is_err());
        assert!(Cli::try_parse_from(["fdtrace", "-p", "1", "--state", "open"]).is_err());
    }
}
