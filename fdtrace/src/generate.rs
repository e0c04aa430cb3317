//! `fdtrace generate man|bash|zsh|fish` (hidden): the man page and shell
//! completions, generated from the command line's clap definitions, so
//! they never drift from `--help`. `cargo xtask install` runs the binary it
//! installs to write them: no second copy of the definitions, and no
//! library target just for them.
use std::io::{self, Write};

use clap::{CommandFactory, ValueEnum};
use clap_complete::Shell;

use crate::cli::Cli;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Generated {
    /// The man page (roff), for `man1/fdtrace.1`.
    Man,
    Bash,
    Zsh,
    Fish,
}

pub fn write(what: Generated, out: &mut dyn Write) -> io::Result<()> {
    let mut cmd = Cli::command();
    let shell = match what {
        Generated::Man => return man(cmd, out),
        Generated::Bash => Shell::Bash,
        Generated::Zsh => Shell::Zsh,
        Generated::Fish => Shell::Fish,
    };
    clap_complete::generate(shell, &mut cmd, "fdtrace", out);
    Ok(())
}

/// clap_mangen's sections, with the examples unfilled (as `--help` shows
/// them), the `check` command in place of pointers to man pages that do not
/// exist, and what `--help` does not say: signals and environment.
fn man(cmd: clap::Command, out: &mut dyn Write) -> io::Result<()> {
    let check = cmd.find_subcommand("check").and_then(|c| c.get_about()).map(|a| a.to_string());
    let man = clap_mangen::Man::new(cmd);
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    writeln!(out, ".SH COMMANDS\n.TP\n\\fBfdtrace check\\fR\n{}", roff(&check.unwrap_or_default()))?;
    let examples = crate::cli::EXAMPLES.trim_start_matches("Examples:\n");
    writeln!(out, ".SH EXAMPLES\n.nf\n{}\n.fi", roff(examples))?;
    writeln!(out, ".SH SIGNALS\n{}", roff(SIGNALS))?;
    writeln!(out, ".SH ENVIRONMENT\n{}", roff(ENVIRONMENT))?;
    man.render_version_section(out)
}

const SIGNALS: &str = "\
SIGINT, SIGTERM: print the final report (and write --flamegraph, --folded), detach, exit 0.
.br
SIGUSR1: print a report now; tracing goes on.";

const ENVIRONMENT: &str = "\
NO_COLOR: when set (and not empty), no colours, as --color never.
.br
FDTRACE_LOG: log filter (e.g. debug), as for env_logger.
.br
FDTRACE_BTF: a BTF file to use instead of /sys/kernel/btf/vmlinux.";

/// Text as roff: backslashes and dashes escaped, and no line starting with
/// a control character (except the `.br` breaks written on purpose).
fn roff(text: &str) -> String {
    text.lines()
        .map(|l| {
            if l == ".br" {
                return l.to_string();
            }
            let l = l.replace('\\', "\\e").replace('-', "\\-");
            if l.starts_with('.') || l.starts_with('\'') {
                format!("\\&{l}")
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generated(what: Generated) -> String {
        let mut out = vec![];
        write(what, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn man_page_names_every_option() {
        let man = generated(Generated::Man);
        assert!(man.starts_with(".ie") || man.contains(".TH fdtrace 1"), "{man}");
        for arg in Cli::command().get_arguments().filter(|a| !a.is_hide_set()) {
            if let Some(long) = arg.get_long() {
                // roff escapes the dashes: \-\-pid
                assert!(man.contains(&format!("\\-\\-{}", long.replace('-', "\\-"))), "--{long} missing");
            }
        }
        assert!(man.contains("fdtrace check"), "the check command is missing");
        assert!(man.contains(".SH EXAMPLES") && man.contains("\\-\\-flamegraph leaks.svg"), "{man}");
        assert!(!man.contains("generate"), "the hidden command is listed");
    }

    #[test]
    fn completions_know_the_options() {
        for shell in [Generated::Bash, Generated::Zsh, Generated::Fish] {
            let text = generated(shell);
            assert!(text.contains("pid"), "{shell:?}: {text}");
            assert!(text.contains("flamegraph"), "{shell:?}");
        }
        assert!(generated(Generated::Bash).contains("--pid"));
    }
}
