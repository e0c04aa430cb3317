//! Booting: qemu with TCG, the kernel's console on the first serial port
//! (a log file), the script on the second (qemu's stdout), a deadline for
//! the whole run and a watch for guest kernels that locked up.
use std::{
    fs::{self, File},
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

use super::{exit_marker, start_marker, Guest, Kernel, VmOutput};

/// `quiet loglevel=3`: only errors on the console; `panic=-1` with qemu's
/// `-no-reboot`: a panic ends qemu at once.
const KERNEL_CMDLINE: &str = "console=ttyS0 panic=-1 quiet loglevel=5 rdinit=/init";
/// Lines of console output an error shows.
const TAIL_LINES: usize = 50;

/// What the reader thread passes on: a line of ttyS1, without its newline.
type Line = (Instant, Vec<u8>);

pub(super) fn boot(
    kernel: &Kernel,
    guest: &Guest,
    dir: &Path,
    initrd: &Path,
    token: &str,
) -> Result<VmOutput> {
    let console_log = dir.join("console.log");
    let stderr_log = dir.join("qemu.stderr");
    let mut cmd = Command::new("qemu-system-x86_64");
    // /dev/kvm may exist and not work (nested virtualization): always TCG.
    cmd.args([
        "-accel",
        "tcg",
        "-cpu",
        "max",
        "-no-user-config",
        "-nodefaults",
        "-display",
        "none",
        "-no-reboot",
    ])
    .arg("-m")
    .arg(guest.memory_mb.to_string())
    .arg("-smp")
    .arg(guest.cpus.to_string())
    .arg("-kernel")
    .arg(&kernel.vmlinuz)
    .arg("-initrd")
    .arg(initrd)
    .arg("-append")
    .arg(KERNEL_CMDLINE)
    // ttyS0: the kernel's console; ttyS1: the script.
    .arg("-serial")
    .arg(format!("file:{}", console_log.display()))
    .args(["-serial", "stdio"])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(File::create(&stderr_log)?);
    let start = Instant::now();
    let mut child = cmd.spawn().context("starting qemu-system-x86_64")?;
    let stdout = child.stdout.take().context("qemu's stdout is not piped")?;
    let (tx, rx) = mpsc::channel::<Line>();
    let reader = thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        loop {
            let mut line = Vec::new();
            match r.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if line.last() == Some(&b'\n') {
                        line.pop();
                    }
                    if tx.send((Instant::now(), line)).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let (start_marker, exit_marker) = (start_marker(token), exit_marker(token));
    let deadline = start + guest.timeout;
    let mut boot_secs = None;
    let mut output = String::new();
    let mut status = None;
    let mut timed_out = false;
    let mut locked_up = None;
    while status.is_none() {
        let wait = deadline.saturating_duration_since(Instant::now()).min(LOCKUP_POLL);
        let (at, bytes) = match rx.recv_timeout(wait) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {
                let console = fs::read(&console_log).unwrap_or_default();
                locked_up = stuck_task(&String::from_utf8_lossy(&console), LOCKUP_LIMIT_SECS);
                if locked_up.is_some() {
                    break;
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                timed_out = true;
                break;
            }
            // qemu closed its stdout: it has exited.
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let text = String::from_utf8_lossy(&bytes);
        let line = text.strip_suffix('\r').unwrap_or(&text);
        if boot_secs.is_none() {
            if line.contains(&start_marker) {
                boot_secs = Some((at - start).as_secs_f64());
            }
            continue;
        }
        match line.find(&exit_marker) {
            Some(i) => {
                // The script's last line had no newline.
                output.push_str(&line[..i]);
                if guest.echo && i > 0 {
                    println!("{}", &line[..i]);
                }
                let code = line[i + exit_marker.len()..].trim();
                status = Some(code.parse::<i32>().with_context(|| format!("bad exit status `{code}`"))?);
            }
            None => {
                output.push_str(line);
                output.push('\n');
                if guest.echo {
                    println!("{line}");
                }
            }
        }
    }
    // After the marker, /init powers off; do not wait long for it.
    let grace = if timed_out || locked_up.is_some() { Duration::ZERO } else { Duration::from_secs(10) };
    let qemu_status = wait_or_kill(&mut child, grace);
    let total_secs = start.elapsed().as_secs_f64();
    let _ = reader.join();
    let console =
        fs::read(&console_log).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    match (status, boot_secs) {
        (Some(status), Some(boot_secs)) => Ok(VmOutput { output, status, boot_secs, total_secs, console }),
        _ => {
            let why = if let Some(task) = &locked_up {
                format!(
                    "the guest kernel locked up: {task} stuck for over {LOCKUP_LIMIT_SECS} s (qemu killed)"
                )
            } else if timed_out {
                format!("the script did not finish within {} s (qemu killed)", guest.timeout.as_secs_f64())
            } else {
                format!("qemu exited ({qemu_status}) before the script finished")
            };
            let qemu_stderr = fs::read_to_string(&stderr_log).unwrap_or_default();
            let started = match boot_secs {
                Some(s) => format!("the script started {s:.1} s after qemu"),
                None => "the script never started".to_string(),
            };
            bail!(
                "{why}; {started}\n--- last {TAIL_LINES} lines of the kernel console ---\n{}\n--- last {TAIL_LINES} lines of the script's output ---\n{}\n--- qemu's stderr ---\n{}",
                tail(&console, TAIL_LINES),
                tail(&output, TAIL_LINES),
                qemu_stderr.trim()
            )
        }
    }
}

/// How often the console is checked for a lockup while the script is quiet.
const LOCKUP_POLL: Duration = Duration::from_secs(15);
/// A task reported in soft lockup for this long (guest time) will not
/// recover: the run is over.
const LOCKUP_LIMIT_SECS: f64 = 180.0;

/// The task (`comm:pid on CPU#n`) the kernel has reported stuck in soft
/// lockups for more than `limit` seconds of its uptime, if any. Under
/// emulation short lockups happen and pass; this one did not.
fn stuck_task(console: &str, limit: f64) -> Option<String> {
    // "[  152.388688] watchdog: BUG: soft lockup - CPU#1 stuck for 22s! [followed_childr:189]"
    let mut first_seen: std::collections::HashMap<String, f64> = std::collections::HashMap::new();
    for line in console.lines() {
        let Some(rest) = line.trim_start().strip_prefix('[') else { continue };
        let Some((ts, msg)) = rest.split_once(']') else { continue };
        let Ok(ts) = ts.trim().parse::<f64>() else { continue };
        let Some(i) = msg.find("soft lockup - ") else { continue };
        let msg = &msg[i + "soft lockup - ".len()..];
        let cpu = msg.split_whitespace().next().unwrap_or("?");
        let Some(task) = msg.rsplit_once('[').map(|(_, t)| t.trim_end_matches(']')) else { continue };
        let key = format!("{task} on {cpu}");
        let since = *first_seen.entry(key.clone()).or_insert(ts);
        if ts - since > limit {
            return Some(key);
        }
    }
    None
}

/// Waits up to `grace` for the child to exit, then kills it; describes how
/// it ended.
fn wait_or_kill(child: &mut Child, grace: Duration) -> String {
    let until = Instant::now() + grace;
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return s.to_string(),
            Ok(None) if Instant::now() < until => thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                return match child.wait() {
                    Ok(s) => format!("killed: {s}"),
                    Err(e) => format!("killed; wait failed: {e}"),
                };
            }
        }
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::stuck_task;

    #[test]
    fn a_lockup_that_lasts_is_found() {
        let line = |ts: f64, cpu: u32, task: &str| {
            format!("[{ts:>12.6}] watchdog: BUG: soft lockup - CPU#{cpu} stuck for 22s! [{task}]\n")
        };
        let mut console = String::from("[    1.000000] Linux version 5.10\n");
        // A passing lockup, and one task stuck on CPU#1 from 40 s on.
        console += &line(30.0, 0, "fdtrace:254");
        for i in 0..10 {
            console += &line(40.0 + 28.0 * f64::from(i), 1, "followed_childr:181");
        }
        console += "[  300.000000] RIP: 0010:syscall_exit_to_user_mode+0xb3/0x140\n";
        assert_eq!(stuck_task(&console, 180.0).as_deref(), Some("followed_childr:181 on CPU#1"));
        assert_eq!(stuck_task(&console, 300.0), None);
        assert_eq!(stuck_task("[    2.0] random: crng init done\n", 1.0), None);
    }
}
