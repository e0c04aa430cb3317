//! Where results go. Each output the user asked for is one [`Sink`],
//! chosen at start-up from the command line ([`Sinks::from_args`]): event
//! lines ([`lines`], `--events`), the text or JSON report ([`reports`]),
//! the flame graph and folded stacks ([`pictures`], at the end), the
//! status line on a terminal ([`status`]). A new output (an HTTP endpoint
//! for Prometheus, pprof profiles) is one more sink: it says what it wants
//! (events, reports, progress) and gets exactly that.
//!
//! The session calls the [`Sinks`] set, never a sink directly: it skips
//! what no sink wants (no report is built when none shows it), erases the
//! status line before anything else writes to the terminal, and turns a
//! closed output (`fdtrace ... | head`) into the end of the session.
pub mod lines;
pub mod pictures;
pub mod reports;
pub mod status;

use std::{
    fmt,
    fs::File,
    io::{self, BufWriter, IsTerminal, Write},
};

use anyhow::Context as _;
use log::warn;

use crate::{
    cli::TraceArgs,
    clock::Clock,
    events::Event,
    ledger::{Effect, Ledger},
    report::Report,
};
pub use lines::Format;

/// One event, as the ledger applied it.
#[derive(Clone, Copy)]
pub struct Applied<'a> {
    pub event: &'a Event,
    /// What it changed in the ledger.
    pub effects: &'a [Effect],
    /// The ledger after it.
    pub ledger: &'a Ledger,
}

/// How the session is going, for the status line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub events: u64,
    /// fds of the reported kinds open now, of any age.
    pub open: usize,
    pub lost: u64,
}

/// Which reports a sink shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reports {
    None,
    /// Only the final one.
    Final,
    /// Every one: periodic (`-i`), on SIGUSR1, and the final one.
    Every,
}

/// An output. Every method has a default that does nothing, so a sink
/// implements what it shows.
pub trait Sink {
    /// Whether it wants every event.
    fn wants_events(&self) -> bool {
        false
    }

    /// Which reports it wants.
    fn reports(&self) -> Reports {
        Reports::None
    }

    /// Whether it wants [`Sink::progress`] about once a second.
    fn wants_status(&self) -> bool {
        false
    }

    fn event(&mut self, _: &Applied) -> io::Result<()> {
        Ok(())
    }

    /// A report with every group and fd (see [`Report::limited`]).
    fn report(&mut self, _: &Report) -> io::Result<()> {
        Ok(())
    }

    fn progress(&mut self, _: Progress) {}

    /// Something else is about to write to the terminal.
    fn yield_terminal(&mut self) {}

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    /// The session is over. An error here (a picture not written) makes
    /// fdtrace fail.
    fn finish(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}

/// The outputs of a session.
#[derive(Default)]
pub struct Sinks {
    sinks: Vec<Box<dyn Sink>>,
    /// Where events go: indexes into `sinks`.
    event_sinks: Vec<usize>,
    /// The output went away (`fdtrace ... | head`): time to stop.
    closed: bool,
}

impl Sinks {
    pub fn new(sinks: Vec<Box<dyn Sink>>) -> Sinks {
        let event_sinks =
            sinks.iter().enumerate().filter(|(_, s)| s.wants_events()).map(|(i, _)| i).collect();
        Sinks { sinks, event_sinks, closed: false }
    }

    /// The outputs the command line asks for. `launched`: a command runs
    /// under fdtrace and owns the terminal's stdout, so results go to
    /// stderr.
    pub fn from_args(args: &TraceArgs, launched: bool, clock: Clock) -> anyhow::Result<Sinks> {
        let pictures =
            pictures::Pictures { flamegraph: args.flamegraph.clone(), folded: args.folded.clone() };
        pictures.check()?;
        // Where results go is a terminal: status line and colours.
        let terminal = match &args.output {
            Some(_) => false,
            None if launched => io::stderr().is_terminal(),
            None => io::stdout().is_terminal(),
        };
        let out: BufWriter<Box<dyn Write>> = BufWriter::new(match &args.output {
            Some(path) => {
                Box::new(File::create(path).with_context(|| format!("creating {}", path.display()))?)
            }
            // The command's output is the terminal's: reports stay out of it.
            None if launched => Box::new(io::stderr()),
            None => Box::new(io::stdout()),
        });
        let mut sinks: Vec<Box<dyn Sink>> = vec![];
        if args.events {
            sinks.push(Box::new(lines::Lines::new(
                lines::Printer::new(out, args.format, clock),
                args.event_filter(),
            )));
        } else {
            let no_color = std::env::var("NO_COLOR").ok();
            let paint = crate::report::text::Paint {
                enabled: status::use_color(args.color, args.no_color, no_color.as_deref(), terminal),
            };
            let limits = crate::report::Limits { top: args.top, fds_per_group: args.fds_per_group };
            sinks.push(Box::new(reports::ReportSink::new(out, args.format, paint, limits)));
        }
        if pictures.wanted() {
            sinks.push(Box::new(pictures::PictureSink::new(pictures)));
        }
        sinks.push(Box::new(status::StatusLine::new(terminal)));
        Ok(Sinks::new(sinks))
    }

    /// Whether some sink wants events.
    pub fn wants_events(&self) -> bool {
        !self.event_sinks.is_empty()
    }

    /// Whether some sink wants reports of this kind (`Final`: the final
    /// report).
    pub fn wants(&self, reports: Reports) -> bool {
        self.sinks.iter().any(|s| s.reports() >= reports)
    }

    pub fn wants_status(&self) -> bool {
        self.sinks.iter().any(|s| s.wants_status())
    }

    /// The output went away: the session should end.
    pub fn closed(&self) -> bool {
        self.closed
    }

    pub fn event(&mut self, a: &Applied) {
        if self.event_sinks.is_empty() {
            return;
        }
        self.yield_terminal();
        for i in 0..self.event_sinks.len() {
            let r = self.sinks[self.event_sinks[i]].event(a);
            self.check(r);
        }
    }

    /// Hands a report to the sinks that want it: periodic reports to those
    /// that want every report, the final one to those that want it too.
    pub fn report(&mut self, r: &Report) {
        let wanted = if r.is_final { Reports::Final } else { Reports::Every };
        self.yield_terminal();
        for i in 0..self.sinks.len() {
            if self.sinks[i].reports() >= wanted {
                let result = self.sinks[i].report(r);
                self.check(result);
            }
        }
    }

    pub fn progress(&mut self, p: Progress) {
        for s in &mut self.sinks {
            s.progress(p);
        }
    }

    /// Prints a message on stderr, clear of the status line.
    pub fn say(&mut self, msg: fmt::Arguments) {
        self.yield_terminal();
        eprintln!("fdtrace: {msg}");
    }

    pub fn flush(&mut self) {
        for i in 0..self.sinks.len() {
            let r = self.sinks[i].flush();
            self.check(r);
        }
    }

    /// Ends every sink; the first failure is the session's.
    pub fn finish(mut self) -> anyhow::Result<()> {
        self.flush();
        self.yield_terminal();
        let mut result = Ok(());
        for s in &mut self.sinks {
            if let Err(e) = s.finish() {
                if result.is_ok() {
                    result = Err(e);
                }
            }
        }
        result
    }

    fn yield_terminal(&mut self) {
        for s in &mut self.sinks {
            s.yield_terminal();
        }
    }

    fn check(&mut self, r: io::Result<()>) {
        match r {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => self.closed = true,
            Err(e) => warn!("writing output: {e}"),
        }
    }
}
