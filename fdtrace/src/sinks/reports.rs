//! Reports as text for people or JSON for machines (one object per line),
//! cut to `--top` groups and `--fds-per-group` fds.
use std::io::{self, Write};

use super::{Format, Reports, Sink};
use crate::report::{text::Paint, Limits, Report};

pub struct ReportSink<W: Write> {
    out: W,
    format: Format,
    paint: Paint,
    limits: Limits,
}

impl<W: Write> ReportSink<W> {
    pub fn new(out: W, format: Format, paint: Paint, limits: Limits) -> Self {
        ReportSink { out, format, paint, limits }
    }
}

impl<W: Write> Sink for ReportSink<W> {
    fn reports(&self) -> Reports {
        Reports::Every
    }

    fn report(&mut self, full: &Report) -> io::Result<()> {
        let r = full.limited(self.limits);
        match self.format {
            Format::Text => writeln!(self.out, "{}", crate::report::text::render_with(&r, self.paint))?,
            Format::Json => {
                serde_json::to_writer(&mut self.out, &r)?;
                writeln!(self.out)?;
            }
        }
        self.out.flush()
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
