//! Pictures: `--folded` and `--flamegraph` on a real leak. The folded file
//! must hold exactly the final JSON report's groups (root = the process,
//! then the stack outermost first, weighted by unclosed fds), and the SVG
//! must render in a real browser (headless Chromium) and name the leaking
//! function.
#![allow(
    unused_crate_dependencies,
    reason = "each test is a crate of its own, linked with all of fdtrace-tests' dependencies"
)]
#![allow(clippy::unwrap_used, reason = "test code: a failed unwrap fails the test")]
use std::{
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use fdtrace::{report::Group, symbolize::Frame};
use fdtrace_tests::{
    harness::{pretty, run_fdtrace_refused, Server, TempDir, Trace, Workload},
    require_ebpf, require_tool,
};

const T: Duration = Duration::from_secs(60);
const LEAKY: &str = env!("CARGO_BIN_EXE_leaky");

/// A frame's name as fdtrace labels it: the function, else module+offset.
fn label(f: &Frame) -> String {
    match (f.function.as_deref(), f.module.as_deref(), f.offset) {
        (Some(func), _, _) => func.to_string(),
        (None, Some(m), Some(off)) => format!("{m}+{off:#x}"),
        (None, Some(m), None) => m.to_string(),
        (None, None, _) => "??".into(),
    }
    .replace(';', ",")
}

/// The folded line a JSON group must have (see README: root, then the
/// "started by" stack and `[goroutine]` for Go, then the stack, outermost
/// first).
fn expected_line(comm: &str, g: &Group) -> (String, u64) {
    let mut path = vec![comm.to_string()];
    if g.origin != "stack" {
        path.push(format!("[{}]", g.origin));
    } else {
        let spawn = &g.spawned_by;
        if !spawn.is_empty() {
            path.extend(spawn.iter().rev().map(label));
            path.push("[goroutine]".into());
        }
        let stack = g.stack.iter().rev();
        path.extend(stack.skip_while(|f| f.function.as_deref() == Some("runtime.goexit")).map(label));
    }
    (path.join(";"), g.open as u64)
}

fn parse_folded(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .map(|l| {
            let (stack, n) = l.rsplit_once(' ').unwrap_or_else(|| panic!("not a folded line: {l:?}"));
            (stack.to_string(), n.parse().unwrap_or_else(|_| panic!("bad count in {l:?}")))
        })
        .collect()
}

#[test]
fn flamegraph_and_folded_show_the_leak() {
    let ebpf = require_ebpf!();
    let dir = TempDir::new("pictures");
    let (svg, folded) = (dir.join("leaks.svg"), dir.join("leaks.folded"));
    let server = Server::start(LEAKY, &["--serve"]);
    let args = ["--connect", &server.addr, "--wait", "--interval-ms", "100", "--requests", "12"];
    let mut client = Workload::spawn(LEAKY, &args);
    let pid = client.pid.to_string();
    let trace = Trace::start(
        &ebpf,
        &[
            "-p",
            &pid,
            "--format",
            "json",
            "-i",
            "100",
            "-d",
            "3.5",
            "--flamegraph",
            svg.to_str().unwrap(),
            "--folded",
            folded.to_str().unwrap(),
        ],
    );
    client.send("go");
    let report = trace.wait(T).final_report();

    // The folded file holds the report's groups, line for line.
    let text = std::fs::read_to_string(&folded).expect("--folded file written");
    let lines = parse_folded(&text);
    let comm = report.comm.as_str();
    let expected: Vec<(String, u64)> = report.groups.iter().map(|g| expected_line(comm, g)).collect();
    assert_eq!(lines, expected, "folded:\n{text}\nreport:\n{}", pretty(&report));
    let leak =
        lines.iter().find(|(l, _)| l.contains("fetch_inventory")).expect("a line through fetch_inventory");
    assert_eq!(leak.1, 6, "{text}");
    assert!(leak.0.starts_with(&format!("{comm};")), "the root is the process: {text}");
    assert!(!text.contains("fetch_price"), "fetch_price closes its connections: {text}");
    // Outermost first: main comes before the leaking function.
    let frames: Vec<&str> = leak.0.split(';').collect();
    let at = |name: &str| frames.iter().position(|f| f.ends_with(name));
    assert!(at("main") < at("fetch_inventory"), "{frames:?}");
    // No temporary files left beside them.
    let left: Vec<_> = std::fs::read_dir(&dir.0).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(left.len(), 2, "{left:?}");

    let source = std::fs::read_to_string(&svg).expect("--flamegraph file written");
    assert!(source.contains("fetch_inventory"), "{source}");
    let chromium = require_tool!("chromium");
    check_in_browser(&chromium, &svg, &dir);
}

/// Opens the SVG in headless Chromium: its script must have run (it drops
/// the fixed width to fit the window), the DOM must name the leaking
/// function, and a screenshot must show the picture, not a blank page.
fn check_in_browser(chromium: &Path, svg: &Path, dir: &TempDir) {
    let url = format!("file://{}", svg.display());
    let browser = |extra: &[&str]| {
        let out = Command::new(chromium)
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--window-size=1200,400"])
            .arg(format!("--user-data-dir={}", dir.join("profile").display()))
            .args(extra)
            .arg(&url)
            .stdin(Stdio::null())
            .output()
            .expect("running chromium");
        assert!(out.status.success(), "chromium failed:\n{}", String::from_utf8_lossy(&out.stderr));
        out
    };
    let dom = String::from_utf8_lossy(&browser(&["--dump-dom"]).stdout).into_owned();
    let root = dom.split("<svg").nth(1).and_then(|s| s.split('>').next()).unwrap_or_default();
    assert!(root.contains("xmlns"), "no <svg> element in the DOM:\n{dom}");
    assert!(
        !root.contains("width=\"1200\""),
        "the flame graph's script did not run (the SVG kept its fixed width): <svg{root}>"
    );
    assert!(dom.contains(">fetch_inventory<") || dom.contains("fetch_inventory ("), "{dom}");

    let png_path = dir.join("leaks.png");
    browser(&[&format!("--screenshot={}", png_path.display())]);
    let decoder =
        png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png_path).expect("screenshot")));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("PNG size")];
    let info = reader.next_frame(&mut buf).expect("PNG pixels");
    let bpp = info.color_type.samples();
    let pixels = buf[..info.buffer_size()].chunks(bpp).map(|p| &p[..3.min(bpp)]);
    let mut colours: Vec<&[u8]> = pixels.collect();
    let total = colours.len();
    // Frames are drawn in warm colours (red > blue); a blank page has none.
    let warm = colours.iter().filter(|p| p.len() == 3 && p[0] > 180 && p[2] < 120).count();
    colours.sort_unstable();
    colours.dedup();
    assert!(colours.len() > 20, "the screenshot is nearly uniform ({} colours)", colours.len());
    assert!(warm * 20 > total, "too few frame-coloured pixels: {warm} of {total}");
}

/// A picture that cannot be written is refused before tracing starts
/// (no root needed: nothing is loaded).
#[test]
fn unwritable_picture_is_refused_at_start_up() {
    let me = std::process::id().to_string();
    let out = run_fdtrace_refused(&["-p", &me, "--folded", "/nonexistent-dir/leaks.folded"], T);
    assert!(!out.status.success());
    let err = out.stderr_text();
    assert!(err.contains("cannot write --folded /nonexistent-dir/leaks.folded"), "{err}");
    assert!(!err.contains("tracing"), "it started tracing first:\n{err}");
}
