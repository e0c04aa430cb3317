//! For people watching a terminal: colours in the text report, and a
//! one-line status on stderr while tracing (elapsed, events, open now,
//! growth, lost), redrawn in place about once a second and erased before
//! anything else is written, so it never mixes with reports, event lines or
//! messages.
use std::{
    io::{self, IsTerminal, Write},
    time::Instant,
};

use super::{Progress, Sink};

/// `--color`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    /// Colours when the output is a terminal and NO_COLOR is not set.
    Auto,
    /// Always colours (even with NO_COLOR).
    Always,
    /// Never colours.
    Never,
}

/// Whether reports are coloured: `--color always` wins; `--no-color`,
/// `--color never` and a non-empty `NO_COLOR` (<https://no-color.org>)
/// turn colours off; else only on a terminal.
pub fn use_color(
    choice: ColorChoice,
    no_color_flag: bool,
    no_color_env: Option<&str>,
    terminal: bool,
) -> bool {
    match choice {
        _ if no_color_flag => false,
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => terminal && no_color_env.is_none_or(str::is_empty),
    }
}

/// What the status line shows.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Status {
    pub elapsed_s: f64,
    pub events: u64,
    /// fds of the reported kinds open now, of any age.
    pub open: usize,
    /// Net change of `open` per second since attaching.
    pub growth_per_s: f64,
    pub lost: u64,
}

impl Status {
    pub fn line(&self) -> String {
        format!(
            "fdtrace: {:.0} s · {} events · {} open · {:+.1}/s · {} lost",
            self.elapsed_s, self.events, self.open, self.growth_per_s, self.lost
        )
    }
}

/// ANSI: back to column 0 and clear the line.
const ERASE: &str = "\r\x1b[2K";

/// The status line on stderr, drawn only when stderr and the output are
/// terminals.
pub struct StatusLine {
    enabled: bool,
    shown: bool,
    started: Instant,
    start_open: Option<usize>,
}

impl StatusLine {
    pub fn new(output_is_terminal: bool) -> StatusLine {
        StatusLine {
            enabled: output_is_terminal && io::stderr().is_terminal(),
            shown: false,
            started: Instant::now(),
            start_open: None,
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The status after `events` events with `open` fds open.
    pub fn status(&mut self, Progress { events, open, lost }: Progress) -> Status {
        let start = *self.start_open.get_or_insert(open);
        let elapsed_s = self.started.elapsed().as_secs_f64();
        Status {
            elapsed_s,
            events,
            open,
            growth_per_s: (open as f64 - start as f64) / elapsed_s.max(1.0),
            lost,
        }
    }

    /// Replaces the line with `status`.
    pub fn draw(&mut self, status: &Status) {
        if !self.enabled {
            return;
        }
        let mut err = io::stderr().lock();
        let _ = write!(err, "{ERASE}{}", status.line());
        let _ = err.flush();
        self.shown = true;
    }

    /// Erases the line, before anything else is written to the terminal.
    pub fn clear(&mut self) {
        if self.shown {
            let mut err = io::stderr().lock();
            let _ = write!(err, "{ERASE}");
            let _ = err.flush();
            self.shown = false;
        }
    }
}

impl Sink for StatusLine {
    fn wants_status(&self) -> bool {
        self.enabled
    }

    fn progress(&mut self, p: Progress) {
        let status = self.status(p);
        self.draw(&status);
    }

    fn yield_terminal(&mut self) {
        self.clear();
    }
}

impl Drop for StatusLine {
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_follow_the_flag_then_no_color_then_the_terminal() {
        use ColorChoice::*;
        // auto: a terminal, unless NO_COLOR is set to something
        assert!(use_color(Auto, false, None, true));
        assert!(!use_color(Auto, false, None, false));
        assert!(!use_color(Auto, false, Some("1"), true));
        assert!(use_color(Auto, false, Some(""), true));
        // always wins over NO_COLOR; --no-color over everything
        assert!(use_color(Always, false, Some("1"), false));
        assert!(!use_color(Always, true, None, true));
        assert!(!use_color(Never, false, None, true));
    }

    #[test]
    fn status_line_says_how_things_go() {
        let s = Status { elapsed_s: 12.4, events: 1234, open: 56, growth_per_s: 1.25, lost: 0 };
        assert_eq!(s.line(), "fdtrace: 12 s · 1234 events · 56 open · +1.2/s · 0 lost");
    }

    #[test]
    fn status_line_is_off_without_a_terminal() {
        // Given output that is not a terminal
        let mut line = StatusLine::new(false);
        // When drawn, nothing is shown (nothing to clear either)
        line.draw(&Status::default());
        assert!(!line.enabled() && !line.shown);
    }
}
