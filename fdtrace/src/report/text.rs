//! The report for people: fits 100 columns, the biggest group first, each
//! stack innermost user frame first (libc and syscall plumbing folded).
use std::fmt::Write as _;

use super::{Group, Report};
use crate::{events::TcpState, symbolize::Frame};

const WIDTH: usize = 100;
const MAX_FRAMES: usize = 14;

/// ANSI colours for the leak evidence (CLOSE_WAIT, growth, findings, lost
/// events, incomplete data), or none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Paint {
    pub enabled: bool,
}

impl Paint {
    const RED: &str = "1;31";
    const YELLOW: &str = "33";

    /// `s` in colour `code` (SGR parameters), when enabled.
    fn paint(self, code: &str, s: &str) -> String {
        if self.enabled {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }

    fn red(self, s: &str) -> String {
        self.paint(Self::RED, s)
    }

    fn yellow(self, s: &str) -> String {
        self.paint(Self::YELLOW, s)
    }
}

/// The report without colours.
#[cfg(test)]
pub fn render(r: &Report) -> String {
    render_with(r, Paint::default())
}

/// A process as the report names it: `8663 (leaky)`, and in another pid
/// namespace (a container) `8663 (leaky, pid 1 in its namespace)`.
pub fn process(pid: u32, comm: &str, ns_pid: Option<u32>) -> String {
    match ns_pid {
        Some(n) => format!("{pid} ({comm}, pid {n} in its namespace)"),
        None => format!("{pid} ({comm})"),
    }
}

pub fn render_with(r: &Report, p: Paint) -> String {
    let mut out = String::new();
    let what = if r.kinds == ["socket"] { "sockets" } else { "fds" };
    let who = match r.targets.as_slice() {
        [] | [_] => format!("pid {}", process(r.pid, &r.comm, r.ns_pid)),
        many => {
            let each: Vec<String> = many.iter().map(|t| process(t.pid, &t.comm, t.ns_pid)).collect();
            format!("pids {}", each.join(", "))
        }
    };
    let _ = writeln!(
        out,
        "fdtrace report: {who} · {:.1} s · {} · {} tier",
        r.elapsed_s,
        if r.is_final { "final" } else { "live" },
        r.tier
    );
    let lost = if r.stats.lost_events > 0 {
        p.red(&format!("{} LOST ({})", r.stats.lost_events, r.stats.loss_remedy()))
    } else {
        "0 lost".into()
    };
    let _ = writeln!(
        out,
        "  {} events · {} · /proc check: {} missed opens, {} missed closes · {}",
        r.stats.events,
        lost,
        r.stats.missed_open,
        r.stats.missed_close,
        if r.complete { "data complete".to_string() } else { p.red("DATA INCOMPLETE") }
    );
    if r.stats.stacks_failed > 0 {
        let _ = writeln!(out, "  {} stacks could not be captured", r.stats.stacks_failed);
    }
    if !r.stats.partial_events.is_empty() {
        let why: Vec<String> =
            r.stats.partial_events.iter().map(|(k, n)| format!("{n} {}", k.replace('_', " "))).collect();
        let _ = writeln!(out, "  events with partial data: {}", why.join(", "));
    }
    for e in &r.exited {
        let how = match e.status & 0x7f {
            0 => format!("status {}", e.status >> 8 & 0xff),
            sig => format!("signal {sig}"),
        };
        let counted = if e.unclosed > 0 {
            let mut kinds: Vec<(&String, &usize)> = e.unclosed_kinds.iter().collect();
            kinds.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
            let places = if e.places == 1 { "place" } else { "places" };
            p.yellow(&format!(": {} from {} {places}", kinds.join(", "), e.places))
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "  pid {} exited ({how}) with {} fds open{counted}",
            process(e.pid, &e.comm, e.ns_pid),
            e.open_at_exit
        );
    }
    for n in &r.notes {
        wrap(&mut out, "  note: ", "        ", n);
    }
    if r.pids.len() > 1 {
        let pids: Vec<String> = r.pids.iter().map(|p| p.to_string()).collect();
        let _ = writeln!(out, "  processes: {}", pids.join(", "));
    }
    for s in &r.suppressed {
        let _ = writeln!(
            out,
            "  suppressed: {} fds from {} {} by {:?}",
            s.fds,
            s.groups,
            if s.groups == 1 { "place" } else { "places" },
            s.rule
        );
    }
    // Once the processes have exited nothing is open: the exit lines above
    // said what they left.
    let in_all = if r.open_fds == 0 && !r.exited.is_empty() {
        String::new()
    } else {
        format!(" ({} fds open in all)", r.open_fds)
    };
    if r.groups.is_empty() {
        let _ = writeln!(out, "  no {what} open longer than {}{in_all}", age(r.min_age_s));
        return out;
    }
    let stacks = r.groups.len() + r.more_groups;
    let at_exit = if r.exited.iter().any(|e| e.unclosed > 0) { " or left open at exit" } else { "" };
    let _ = writeln!(
        out,
        "  {} {what} open longer than {}{at_exit}{in_all}, from {} {}",
        r.unclosed,
        age(r.min_age_s),
        stacks,
        if stacks == 1 { "place" } else { "places" }
    );
    for (i, g) in r.groups.iter().enumerate() {
        out.push('\n');
        group(&mut out, i + 1, g, p);
    }
    if r.more_groups > 0 {
        let _ = writeln!(out, "\n  … {} more groups (raise --top to see them)", r.more_groups);
    }
    out
}

fn group(out: &mut String, n: usize, g: &Group, p: Paint) {
    let growth = if g.growth_per_s >= 0.05 {
        format!(" · {}", p.yellow(&format!("growing {:+.1}/s", g.growth_per_s)))
    } else {
        String::new()
    };
    let counts = if g.origin == "stack" {
        format!(" · opened {} · closed {}", g.opened, g.closed)
    } else {
        String::new()
    };
    let _ = writeln!(out, "#{n}  {} open{counts} · oldest {}{growth}", g.open, age(g.oldest_age_s));
    let mut kinds: Vec<(&String, &usize)> = g.kinds.iter().collect();
    kinds.sort_by(|a, b| b.1.cmp(a.1));
    let kinds: Vec<String> = kinds.iter().map(|(k, c)| format!("{c} {k}")).collect();
    let _ = writeln!(out, "    {}", kinds.join(", "));
    for peer in g.peers.iter().take(5) {
        let state = peer.state.map(|s| format!(" {}", s.name())).unwrap_or_default();
        let idle = match peer.idle_s {
            Some(s) if s >= 1.0 && peer.state != Some(TcpState::Listen) => format!(", idle ≥ {}", age(s)),
            _ => String::new(),
        };
        let line = format!("{:>5} × {}{state}{idle}", peer.count, peer.remote);
        let _ = match peer.state {
            Some(TcpState::CloseWait) => {
                writeln!(out, "    {}", p.red(&format!("{line}  ← peer closed, this process did not")))
            }
            _ => writeln!(out, "    {line}"),
        };
    }
    if g.peers.len() > 5 {
        let _ = writeln!(out, "          … {} more peers", g.peers.len() - 5);
    }
    if g.peers.is_empty() {
        let paths: Vec<&str> = g.fds.iter().filter_map(|f| f.path.as_deref()).take(3).collect();
        if !paths.is_empty() {
            let _ = writeln!(out, "    e.g. {}", paths.join(", "));
        }
    }
    for f in &g.findings {
        wrap(out, &format!("    {} ", p.yellow("!")), "      ", &f.message);
    }
    match g.origin.as_str() {
        "stack" if !g.spawned_by.is_empty() && g.asynchronous.is_some() => {
            // Node: connected from the event loop; the stack that made the
            // socket's handle says who asked.
            stack(out, &g.stack);
            let runtime = g.asynchronous.as_ref().map_or("the runtime", |a| a.runtime.as_str());
            let _ = writeln!(out, "    (asynchronous: connected from {runtime}'s event loop) asked for by:");
            stack(out, &g.spawned_by);
        }
        "stack" if !g.spawned_by.is_empty() => {
            // A goroutine's own stack says how (net/http dialing); the
            // stack that started it says who.
            let line = format!("    opened in a goroutine: {}", goroutine_summary(&g.stack));
            let _ = writeln!(out, "{}", fit(&line, WIDTH));
            let _ = writeln!(out, "    started by:");
            stack(out, &g.spawned_by);
        }
        "stack" => {
            stack(out, &g.stack);
            if let Some(a) = &g.asynchronous {
                let entry = match a.entry.location() {
                    Some(loc) => format!("{} ({loc})", a.entry.label()),
                    None => a.entry.label(),
                };
                let text = format!(
                    "asynchronous: opened from {}'s event loop in {entry}; the program's code that asked \
                     for it ran earlier and is not on the stack",
                    a.runtime
                );
                wrap(out, "    (", "     ", &format!("{text})"));
            }
        }
        "pre-existing" => {
            let _ = writeln!(out, "    (open before fdtrace attached: where they were opened is unknown)");
            if !g.same_peers_as.is_empty() {
                let groups: Vec<String> = g.same_peers_as.iter().map(|n| format!("#{n}")).collect();
                let _ = writeln!(
                    out,
                    "    (same peers and states as {}: probably the same leak, from before)",
                    groups.join(", ")
                );
            }
        }
        "missed-open" => {
            let _ = writeln!(
                out,
                "    (found in /proc without an open event: opened on a path fdtrace does not hook)"
            );
        }
        "not-captured" => {
            let _ = writeln!(out, "    (no stack captured: --no-stacks)");
        }
        other => {
            let _ = writeln!(out, "    (stack unavailable: {})", other.trim_start_matches("failed: "));
        }
    }
}

/// Prints a stack so that the program's own code comes first: the library
/// frames above it (libc, std, the Go standard library...) fold into one
/// line, and the library frames below the last frame of the program (the
/// runtime's start-up) into a count. A stack that is library code all the
/// way (a Go dial goroutine) is printed whole.
fn stack(out: &mut String, frames: &[Frame]) {
    let first_own = frames.iter().position(|f| !f.is_library());
    let (skip, shown) = match first_own {
        Some(first) => {
            // The tail ends at the program's last frame with a source
            // location (not a generated `main` shim).
            let last =
                frames.iter().rposition(|f| !f.is_library() && f.file.is_some()).unwrap_or(first).max(first);
            (first, &frames[first..=last])
        }
        // All library code: still fold how the syscall was made.
        None => {
            let plumbing = frames.iter().take_while(|f| is_syscall_plumbing(f)).count();
            let plumbing = if plumbing == frames.len() { 0 } else { plumbing };
            (plumbing, &frames[plumbing..])
        }
    };
    if skip > 0 {
        let names: Vec<String> = frames[..skip].iter().map(Frame::label).collect();
        let line = format!("    ({skip} library frames: {})", names.join(" ← "));
        let _ = writeln!(out, "{}", fit(&line, WIDTH));
    }
    for (i, f) in shown.iter().take(MAX_FRAMES).enumerate() {
        let prefix = if i == 0 { "    at " } else { "       " };
        let label = f.label();
        let line = match f.location() {
            Some(loc) => {
                let room = WIDTH.saturating_sub(prefix.len() + label.len() + 2).max(20);
                format!("{prefix}{label}  {}", left_fit(&loc, room))
            }
            None => format!("{prefix}{label}"),
        };
        let _ = writeln!(out, "{}", fit(&line, WIDTH));
    }
    let below = frames.len() - skip - shown.len().min(MAX_FRAMES);
    if below > 0 {
        let _ = writeln!(out, "       … {below} more frames");
    }
}

/// A goroutine's stack in one line: where it opened the fd (past the
/// syscall plumbing) and the function it runs.
fn goroutine_summary(frames: &[Frame]) -> String {
    let plumbing = frames.iter().take_while(|f| is_syscall_plumbing(f)).count();
    let frames = if plumbing < frames.len() { &frames[plumbing..] } else { frames };
    let body = match frames.iter().rposition(|f| f.function.as_deref() != Some("runtime.goexit")) {
        Some(last) => &frames[..=last],
        None => frames,
    };
    match body {
        [] => "(no frames)".into(),
        [one] => one.label(),
        [first, second] => format!("{} ← {}", first.label(), second.label()),
        [first, .., last] => format!("{} ← … {} frames … ← {}", first.label(), body.len() - 2, last.label()),
    }
}

/// libc and Go's raw syscall layer: how a syscall is made, not who made it.
fn is_syscall_plumbing(f: &Frame) -> bool {
    let module = f.module.as_deref().unwrap_or_default();
    let func = f.function.as_deref().unwrap_or_default();
    module.starts_with("libc.so")
        || module.starts_with("libc-")
        || func.starts_with("syscall.")
        || func.starts_with("runtime/internal/syscall.")
        || func.starts_with("internal/runtime/syscall.")
}

/// Writes `text` in lines of at most [`WIDTH`] columns, the first after
/// `first`, the rest after `rest`.
fn wrap(out: &mut String, first: &str, rest: &str, text: &str) {
    let mut line = first.to_string();
    let mut empty = true;
    for word in text.split_whitespace() {
        if !empty && visible_len(&line) + 1 + word.chars().count() > WIDTH {
            let _ = writeln!(out, "{line}");
            line = rest.to_string();
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
    }
    let _ = writeln!(out, "{line}");
}

/// Columns a string takes on a terminal: its characters less ANSI colour
/// sequences (`ESC [ ... m`).
fn visible_len(s: &str) -> usize {
    let mut n = 0;
    let mut in_escape = false;
    for c in s.chars() {
        match (in_escape, c) {
            (false, '\x1b') => in_escape = true,
            (false, _) => n += 1,
            (true, 'm') => in_escape = false,
            (true, _) => {}
        }
    }
    n
}

/// Cuts the end of a line to `width` columns.
fn fit(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    let mut t: String = s.chars().take(width - 1).collect();
    t.push('…');
    t
}

/// Cuts the start of a path to `width` columns (the file name matters most).
fn left_fit(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n <= width {
        return s.to_string();
    }
    let t: String = s.chars().skip(n - (width - 1)).collect();
    format!("…{t}")
}

fn age(s: f64) -> String {
    if s >= 3600.0 {
        format!("{:.1} h", s / 3600.0)
    } else if s >= 120.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{s:.1} s")
    }
}
