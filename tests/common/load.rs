//! Load and process facts shared by the suites that watch workers come and go:
//! a plain GET, the master's children from /proc, waiting on a condition, a
//! steady load that records every answer, a metric, and one raw response.

use super::client;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

pub fn get(url: &str) -> (u16, String) {
    match client().get(url).send() {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.text().unwrap_or_default())
        }
        Err(e) => (0, e.to_string()),
    }
}

/// Child processes of `pid`, from /proc.
pub fn children(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // The command may contain spaces; fields after the last ')' are fixed.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = after.split(' ').collect();
        if fields[1].parse::<i32>() == Ok(pid) && fields[0] != "Z" {
            out.push(child);
        }
    }
    out
}

pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(25));
    }
}

/// Runs `clients` threads doing GET /pid until stopped; returns statuses and pids seen.
pub struct Load {
    stop: Arc<AtomicBool>,
    handles: Vec<thread::JoinHandle<Vec<(u16, String)>>>,
}

impl Load {
    pub fn start(url: String, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let handles = (0..clients)
            .map(|_| {
                let stop = stop.clone();
                let url = url.clone();
                thread::spawn(move || {
                    let c = client();
                    let mut seen = Vec::new();
                    while !stop.load(Ordering::Relaxed) && seen.len() < 100_000 {
                        let r = c.get(&url).send();
                        seen.push(match r {
                            Ok(r) => {
                                let s = r.status().as_u16();
                                (s, r.text().unwrap_or_default())
                            }
                            Err(e) => (0, e.to_string()),
                        });
                    }
                    seen
                })
            })
            .collect();
        Load { stop, handles }
    }

    /// Stops the load and asserts every request got 200.
    pub fn finish_without_failures(self) -> Vec<(u16, String)> {
        let results = self.finish();
        let failed: Vec<_> = results.iter().filter(|(s, _)| *s != 200).collect();
        assert!(
            failed.is_empty(),
            "{} failed, e.g. {:?}",
            failed.len(),
            failed.first()
        );
        results
    }

    pub fn finish(self) -> Vec<(u16, String)> {
        self.stop.store(true, Ordering::Relaxed);
        self.handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    }
}

pub fn libc_sig(name: &str) -> i32 {
    match name {
        "HUP" => 1,
        "QUIT" => 3,
        "TERM" => 15,
        "TTIN" => 21,
        "TTOU" => 22,
        _ => panic!("unknown signal {name}"),
    }
}

/// Sends signal `sig` (a name such as "KILL") to process `pid`.
pub fn kill(pid: i32, sig: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{sig} {pid}");
}

/// Resident memory of process `pid` in KiB (VmRSS).
pub fn rss_kib(pid: i32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// Peak resident memory of process `pid` so far, in KiB (VmHWM).
pub fn peak_rss_kib(pid: i32) -> u64 {
    status_kib(pid, "VmHWM:")
}

fn status_kib(pid: i32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} for {pid}"))
}

/// A loopback port free a moment ago, for an address the launcher cannot read from
/// the server's output (the admin port, a server that logs only errors).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The value of an unlabelled metric on the admin port.
pub fn metric(admin: &str, name: &str) -> u64 {
    let text = client()
        .get(format!("http://{admin}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

/// The value of an unlabelled metric on the admin port; None while the port does
/// not answer (a server out of file descriptors, or still starting).
pub fn try_metric(admin: &str, name: &str) -> Option<u64> {
    let text = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap()
        .get(format!("http://{admin}/metrics"))
        .send()
        .ok()?
        .text()
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
}

/// Waits until `cond` holds of the metric; Err with its last value at `timeout`.
pub fn poll_metric(
    admin: &str,
    name: &str,
    timeout: Duration,
    cond: impl Fn(u64) -> bool,
) -> Result<(), Option<u64>> {
    let deadline = Instant::now() + timeout;
    loop {
        let v = try_metric(admin, name);
        if v.is_some_and(&cond) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(v);
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Files process `pid` holds open whose path starts with `dir` (unlinked spool
/// files of a TMPDIR of the test's own).
pub fn open_files_under(pid: i32, dir: &std::path::Path) -> usize {
    let dir = dir.to_str().unwrap();
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| {
            fds.flatten()
                .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                .filter(|t| t.to_string_lossy().starts_with(dir))
                .count()
        })
        .unwrap_or(0)
}

/// Reads one HTTP/1 response with a Content-Length off `s`, leaving it open.
pub fn read_one_response(s: &mut std::net::TcpStream) -> String {
    use std::io::Read;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed early");
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            continue;
        };
        let len = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().to_string())
            })
            .and_then(|v| v.parse::<usize>().ok())
            .expect("a Content-Length");
        if body.len() >= len {
            return text.into_owned();
        }
    }
}
