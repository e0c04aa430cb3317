//! JIT runtimes: the frames of code a JVM or V8 compiled are named from
//! the perf map the runtime writes (`/tmp/perf-PID.map`), and the report
//! says what a runtime needs when it wrote none.
#![allow(
    unused_crate_dependencies,
    reason = "each test is a crate of its own, linked with all of fdtrace-tests' dependencies"
)]
#![allow(clippy::unwrap_used, reason = "test code: a failed unwrap fails the test")]
use std::{path::Path, process::Command, time::Duration};

use fdtrace::{
    events::TcpState,
    report::{Group, Report},
};
use fdtrace_tests::{
    fixtures,
    harness::{self, functions, outline, pretty, Ebpf, Server, Workload},
    require_ebpf, require_tool,
};

const T: Duration = Duration::from_secs(60);

/// The Go HTTP server, in a process of its own.
fn server() -> Server {
    Server::start(fixtures::go("httpserver").to_str().unwrap(), &[])
}

/// Traces `client` from its go signal until it says `done`, and the
/// last sockets older than --min-age (1 s): the final report.
fn trace_until_done(ebpf: &Ebpf, client: &mut Workload) -> Report {
    let flags = ["--format", "json", "-i", "100", "-d", "60"];
    harness::trace_until_done(ebpf, client, &flags, Duration::from_millis(1500), T).final_report()
}

/// The one group with a stack, holding every leaked socket, connected to
/// `peer`.
fn the_leak<'r>(report: &'r Report, n: usize, peer: &str) -> &'r Group {
    let stacks: Vec<&Group> = report.groups.iter().filter(|g| g.has_stack()).collect();
    assert_eq!(stacks.len(), 1, "expected one group with a stack:\n{}{}", outline(report), pretty(report));
    let g = stacks[0];
    assert_eq!((g.open, g.opened, g.closed), (n, n as u64, 0), "{}", pretty(g));
    assert_eq!(g.peers[0].remote, peer, "{}", pretty(g));
    assert_eq!((g.peers[0].count, g.peers[0].state), (n, Some(TcpState::Established)), "{}", pretty(g));
    g
}

/// The perf map a traced process wrote, removed when the test ends.
struct PerfMapFile(String);

impl Drop for PerfMapFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// OpenJDK with frame pointers, its map written by `jcmd PID
/// Compiler.perfmap` after warm-up: the leaking method is named, and so
/// are libc's and the JDK's native frames beside it.
#[test]
fn java_leak_is_named_from_the_jvm_perf_map() {
    let ebpf = require_ebpf!();
    let java = require_tool!("java");
    let jcmd = require_tool!("jcmd");
    let server = server();
    let classes = fixtures::java_leaky();
    let (requests, conns) = (5, 2);
    let args = [
        "-XX:+PreserveFramePointer",
        // C1 compiles after a few hundred calls, in the calling thread.
        "-XX:TieredStopAtLevel=1",
        "-Xbatch",
        "-cp",
        classes.to_str().unwrap(),
        "Leaky",
        &server.addr,
        &requests.to_string(),
        &conns.to_string(),
    ];
    let mut client = Workload::spawn(&java, &args);
    let _map = PerfMapFile(format!("/tmp/perf-{}.map", client.pid));
    let out = Command::new(&jcmd).args([&client.pid.to_string(), "Compiler.perfmap"]).output().unwrap();
    assert!(
        out.status.success(),
        "jcmd: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(Path::new(&_map.0).exists(), "jcmd wrote no {}", _map.0);

    let report = trace_until_done(&ebpf, &mut client);
    let g = the_leak(&report, requests * conns, &server.addr);
    let funcs = functions(&g.stack);
    let leak = funcs.iter().position(|&f| f == "Leaky.fetchInventory");
    let caller = funcs.iter().position(|&f| f == "Leaky.handleRequest");
    assert!(leak.is_some() && leak < caller, "Leaky.fetchInventory <- Leaky.handleRequest not in {funcs:#?}");
    // The frames around the JIT code keep their names.
    let named =
        |module: &str| g.stack.iter().any(|f| f.module.as_deref() == Some(module) && f.function.is_some());
    assert!(named("libc.so.6") && named("libnio.so") && named("libjvm.so"), "{}", pretty(&g.stack));
    assert!(funcs.contains(&"java.net.Socket.connect"), "{funcs:#?}");
}

/// Node with `--perf-basic-prof`: an `http.Agent` per request, never
/// destroyed. The connect runs from the tick queue, so no frame of the
/// script is on the stack: the group says its origin is asynchronous, and
/// names the function that asked for the socket (where its handle was
/// made, `new TCP()` in `net.Socket.connect`), with its callers. Whatever
/// tier compiled each function, the leak is one group.
#[test]
fn node_agent_leak_is_one_group_from_the_tick_queue() {
    let ebpf = require_ebpf!();
    let node = require_tool!("node");
    let server = server();
    let requests = 17;
    let report = trace_agentleak(&ebpf, &server, requests, &[node.to_str().unwrap()]);
    let g = the_leak(&report, requests, &server.addr);
    let funcs = functions(&g.stack);
    assert!(funcs.contains(&"internalConnect"), "{funcs:#?}");
    assert!(!funcs.iter().any(|f| f.starts_with("JS:")), "tier marks left in names: {funcs:#?}");
    let connect = g.stack.iter().find(|f| f.function.as_deref() == Some("internalConnect")).unwrap();
    assert_eq!(connect.file.as_deref(), Some("node:net"), "{}", pretty(connect));
    assert!(connect.line.is_some());
    let a = g.asynchronous.as_ref().unwrap_or_else(|| panic!("not marked asynchronous:\n{}", pretty(g)));
    assert_eq!(
        (a.runtime.as_str(), a.entry.function.as_deref()),
        ("node", Some("processTicksAndRejections"))
    );
    assert_asked_by_fetch_status(g);
}

/// The same leak, every `socket()` of the process held back 20 ms at its
/// entry (by strace, as a loaded machine can hold a thread back between
/// `uv_tcp_connect` and the `socket()` it makes): the join to the code
/// that asked holds, and the leak is still one group.
#[test]
fn node_connect_held_back_before_its_socket_keeps_who_asked() {
    let ebpf = require_ebpf!();
    let node = require_tool!("node");
    let strace = require_tool!("strace");
    let server = server();
    let requests = 5;
    let wrapped = [
        strace.to_str().unwrap(),
        "-f",
        "-qq",
        "--seccomp-bpf",
        "-o",
        "/dev/null",
        "-e",
        "trace=socket",
        "-e",
        "inject=socket:delay_enter=20000",
        node.to_str().unwrap(),
    ];
    let report = trace_agentleak(&ebpf, &server, requests, &wrapped);
    let g = the_leak(&report, requests, &server.addr);
    assert_asked_by_fetch_status(g);
}

/// Runs agentleak.js (`requests` requests to `server`) with the perf map
/// on, by `command` (node, or a wrapper and node), and traces it.
fn trace_agentleak(ebpf: &Ebpf, server: &Server, requests: usize, command: &[&str]) -> Report {
    let script = fixtures::node_script("agentleak.js");
    // --perf-basic-prof turns V8's code log on: into a file of the test's,
    // not isolate-*.log in the working directory.
    let v8_log = std::env::temp_dir().join(format!("fdtrace-test-{}-{requests}-v8.log", std::process::id()));
    let logfile = format!("--logfile={}", v8_log.display());
    let mut args = command[1..].to_vec();
    let requests = requests.to_string();
    args.extend([
        "--perf-basic-prof",
        "--interpreted-frames-native-stack",
        "--no-logfile-per-isolate",
        &logfile,
        script.to_str().unwrap(),
        &server.addr,
        &requests,
    ]);
    let mut client = Workload::spawn(command[0], &args);
    let _map = PerfMapFile(format!("/tmp/perf-{}.map", client.pid));
    let report = trace_until_done(ebpf, &mut client);
    let _ = std::fs::remove_file(&v8_log);
    report
}

/// Who asked for `g`'s sockets: the script's fetchStatus, through
/// http.get and the Agent, called by run.
fn assert_asked_by_fetch_status(g: &Group) {
    let asked = functions(&g.spawned_by);
    let own = g.spawned_by.iter().find(|f| !f.is_library());
    let own = own.unwrap_or_else(|| panic!("no frame of the script in spawned_by: {asked:#?}"));
    let source = std::fs::read_to_string(fixtures::node_script("agentleak.js")).unwrap();
    // V8's map places a function where it is defined, not at a call.
    let line = source.lines().position(|l| l.contains("function fetchStatus(")).unwrap() as u32 + 1;
    assert_eq!((own.function.as_deref(), own.line), (Some("fetchStatus"), Some(line)), "{asked:#?}");
    assert!(own.file.as_deref().is_some_and(|f| f.ends_with("agentleak.js")), "{}", pretty(own));
    let at = |name: &str| asked.iter().position(|&f| f == name);
    assert!(at("Socket.connect") < at("fetchStatus") && at("fetchStatus") < at("run"), "{asked:#?}");
    assert!(at("Socket.connect").is_some(), "{asked:#?}");
}

/// Node without `--perf-basic-prof`: the JavaScript frames cannot be
/// named, and the report says which flag would name them.
#[test]
fn node_without_a_perf_map_is_told_the_flag() {
    let ebpf = require_ebpf!();
    let node = require_tool!("node");
    let server = server();
    let script = fixtures::node_script("agentleak.js");
    let mut client = Workload::spawn(&node, &[script.to_str().unwrap(), &server.addr, "3"]);
    let report = trace_until_done(&ebpf, &mut client);
    let pid = client.pid;
    let note = report.notes.iter().find(|n| n.starts_with(&format!("pid {pid}: ")));
    let note = note.unwrap_or_else(|| panic!("no note on pid {pid}:\n{}", pretty(&report.notes)));
    assert!(note.contains("--perf-basic-prof") && note.contains("no perf map"), "{note}");
}
