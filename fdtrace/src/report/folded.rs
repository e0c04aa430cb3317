//! Pictures of a report: folded stacks (`frame;frame;frame count`, the
//! input of flame graph tools) and a flame graph SVG drawn from them with
//! inferno.
//!
//! One line per group, weighted by its unclosed fds (`open`): the root is
//! the process (`comm`), then the stack outermost → innermost, the leaf
//! the frame that opened the fds. A Go group whose goroutine was followed
//! to its creator starts with the stack that ran the `go` statement
//! (outermost first, down to the function with the `go` statement), then a
//! `[goroutine]` frame, then the goroutine's own stack (without
//! `runtime.goexit`), as Go's tracebacks say "created by": the program's
//! own code sits near the root, and a flame graph shows who started the
//! dials above how they were made. Groups without a stack are one frame
//! under the root, their origin in brackets (`[pre-existing]`...).
use std::io;

use super::{Group, Report};
use crate::symbolize::Frame;

/// The frame between the stack that started a goroutine and its own.
pub const GOROUTINE: &str = "[goroutine]";

/// The folded lines of a report: (frames joined with `;`, count), in
/// group order; groups whose lines come out the same are merged.
pub fn lines(r: &Report) -> Vec<(String, usize)> {
    let mut out: Vec<(String, usize)> = vec![];
    for g in r.groups.iter().filter(|g| g.open > 0) {
        let line = path(&r.comm, g).join(";");
        match out.iter_mut().find(|(l, _)| *l == line) {
            Some((_, n)) => *n += g.open,
            None => out.push((line, g.open)),
        }
    }
    out
}

/// The frames of a group's line, root first.
fn path(comm: &str, g: &Group) -> Vec<String> {
    let mut path = vec![name(comm)];
    if g.origin != "stack" {
        path.push(name(&format!("[{}]", g.origin)));
        return path;
    }
    if !g.spawned_by.is_empty() {
        path.extend(g.spawned_by.iter().rev().map(label));
        path.push(GOROUTINE.into());
        let own = g.stack.iter().rev().skip_while(|f| f.function.as_deref() == Some("runtime.goexit"));
        path.extend(own.map(label));
    } else {
        path.extend(g.stack.iter().rev().map(label));
    }
    path
}

fn label(f: &Frame) -> String {
    name(&f.label())
}

/// A frame name that cannot break the format: `;` separates frames and a
/// line ends at the newline (`[u8; 4]` in a Rust name becomes `[u8, 4]`).
fn name(s: &str) -> String {
    let s = s.replace(';', ",").replace(['\n', '\r'], " ");
    if s.trim().is_empty() {
        "??".into()
    } else {
        s
    }
}

/// The folded-stacks text.
pub fn text(lines: &[(String, usize)]) -> String {
    lines.iter().map(|(l, n)| format!("{l} {n}\n")).collect()
}

/// A flame graph of the folded lines, as SVG.
pub fn flamegraph(r: &Report, lines: &[(String, usize)]) -> io::Result<Vec<u8>> {
    let what = if r.kinds == ["socket"] { "sockets" } else { "fds" };
    let who = super::text::process(r.pid, &r.comm, r.ns_pid);
    let title = format!("fdtrace: {what} open longer than {:.1} s in pid {who}", r.min_age_s);
    let subtitle = format!(
        "{} unclosed of {} fds open · {:.1} s traced · {} events · {} lost{}",
        r.unclosed,
        r.open_fds,
        r.elapsed_s,
        r.stats.events,
        r.stats.lost_events,
        if r.complete { "" } else { " · DATA INCOMPLETE" }
    );
    let mut svg = vec![];
    if lines.is_empty() {
        // inferno draws an error for an empty input: say what it means.
        svg = format!(
            "<?xml version=\"1.0\" standalone=\"no\"?>\n\
             <svg version=\"1.1\" width=\"1200\" height=\"80\" xmlns=\"http://www.w3.org/2000/svg\">\n\
             <text x=\"600\" y=\"30\" text-anchor=\"middle\" font-family=\"Verdana\" font-size=\"17\">{}</text>\n\
             <text x=\"600\" y=\"60\" text-anchor=\"middle\" font-family=\"Verdana\" font-size=\"12\">no {what} \
             open longer than {:.1} s · {}</text>\n</svg>\n",
            xml_escape(&title),
            r.min_age_s,
            xml_escape(&subtitle)
        )
        .into_bytes();
        return Ok(svg);
    }
    let mut opts = inferno::flamegraph::Options::default();
    opts.title = title;
    opts.subtitle = Some(subtitle);
    opts.count_name = what.into();
    opts.name_type = "Frame:".into();
    // The same function gets the same colour in every picture.
    opts.hash = true;
    let folded: Vec<String> = lines.iter().map(|(l, n)| format!("{l} {n}")).collect();
    inferno::flamegraph::from_lines(&mut opts, folded.iter().map(String::as_str), &mut svg)?;
    Ok(svg)
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::{super::sample::*, *};

    #[test]
    fn stacks_fold_root_first_and_leaf_last() {
        // Given a C-like group (innermost first) and a pre-existing group
        let r = report(vec![
            group(&["socket", "dial", "open_session", "main"], &[], "stack", 6),
            group(&[], &[], "pre-existing", 2),
        ]);
        // When folded
        let l = lines(&r);
        // Then the process is the root and the opening frame the leaf
        assert_eq!(text(&l), "app;main;open_session;dial;socket 6\napp;[pre-existing] 2\n",);
    }

    #[test]
    fn goroutines_hang_under_the_stack_that_started_them() {
        // Given a Go dial goroutine followed to the `go` statement's stack
        let g = group(
            &["net.socket", "net/http.(*Transport).dialConnFor", "runtime.goexit"],
            &["net/http.(*Transport).queueForDial", "main.fetchStatus", "main.main"],
            "stack",
            3,
        );
        // When folded
        let l = lines(&report(vec![g]));
        // Then the starter's stack comes first, then the goroutine's own
        assert_eq!(
            l,
            vec![(
                "app;main.main;main.fetchStatus;net/http.(*Transport).queueForDial;[goroutine];\
                 net/http.(*Transport).dialConnFor;net.socket"
                    .to_string(),
                3
            )]
        );
    }

    #[test]
    fn separators_in_names_are_replaced_and_equal_lines_merge() {
        let r =
            report(vec![group(&["f<[u8; 4]>"], &[], "stack", 1), group(&["f<[u8, 4]>"], &[], "stack", 2)]);
        assert_eq!(lines(&r), vec![("app;f<[u8, 4]>".to_string(), 3)]);
    }

    #[test]
    fn flamegraph_is_an_svg_naming_the_frames() {
        let r = report(vec![group(&["socket", "fetch_inventory", "main"], &[], "stack", 6)]);
        let svg = String::from_utf8(flamegraph(&r, &lines(&r)).unwrap()).unwrap();
        assert!(svg.contains("<svg") && svg.contains("fetch_inventory"), "{svg}");
        let empty = report(vec![]);
        let svg = String::from_utf8(flamegraph(&empty, &lines(&empty)).unwrap()).unwrap();
        assert!(svg.contains("no sockets open longer than 1.0 s"), "{svg}");
    }
}
