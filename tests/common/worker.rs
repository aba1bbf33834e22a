//! The worker process as tests/worker_protocol.rs and tests/worker_socket.rs drive
//! it: the test venv's interpreter running `python -m ferricorn.worker` (the module
//! tests/run-all.sh installed from the wheel) against a Unix listener bound here,
//! spoken to with `ferricorn::wire` frames. Included with `#[path]` by those suites
//! only (it is not part of `common`, which every suite compiles).

#![allow(dead_code)]

use bytes::{Bytes, BytesMut};
use ferricorn::wire::{self, Frame, RequestHead, Scheme};
use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub const DEADLINE: Duration = Duration::from_secs(30);

pub fn apps() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/apps")
}

/// The test venv's interpreter, which has the worker module.
pub fn python() -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-venv");
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `bash tests/run-all.sh` (it creates it)",
        python.display()
    );
    python
}

pub type Log = Arc<(Mutex<(String, bool)>, Condvar)>;

/// A worker process plus the master's side of its socket.
pub struct Worker {
    pub child: Child,
    pub _dir: tempfile::TempDir,
    pub listener: UnixListener,
    pub sock: Option<UnixStream>,
    pub buf: BytesMut,
    pub stash: HashMap<u32, VecDeque<Frame>>,
    pub log: Log,
    pub next_stream: u32,
    pub args: Vec<String>,
}

#[derive(Debug, PartialEq)]
pub enum End {
    Complete,
    Aborted(String),
}

#[derive(Debug)]
pub struct Resp {
    pub status: Option<u16>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub end: End,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }
}

pub fn head(method: &str, path: &str, query: &str) -> RequestHead {
    RequestHead {
        method: Bytes::copy_from_slice(method.as_bytes()),
        path: Bytes::copy_from_slice(path.as_bytes()),
        query: Bytes::copy_from_slice(query.as_bytes()),
        version: 11,
        scheme: Scheme::Http,
        remote_addr: Bytes::from_static(b"10.1.2.3"),
        remote_port: 40000,
        server_name: Bytes::from_static(b"example.test"),
        server_port: 8080,
        request_id: Bytes::from_static(b"req-1"),
        content_length: Some(0),
        headers: vec![],
        upgrade: false,
    }
}

pub fn spawn_worker(
    python: &Path,
    extra: &[&str],
    cwd: Option<&Path>,
) -> (Child, tempfile::TempDir, UnixListener, Log, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let mut args: Vec<String> = vec![
        "-m".into(),
        "ferricorn.worker".into(),
        "--socket".into(),
        path.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut cmd = Command::new(python);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("LANG", "C.UTF-8")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped());
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    let mut child = cmd.spawn().expect("spawn worker");
    let log: Log = Arc::new((Mutex::new((String::new(), false)), Condvar::new()));
    let mut stderr = child.stderr.take().unwrap();
    let l = log.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            let n = stderr.read(&mut buf).unwrap_or(0);
            let (m, cv) = &*l;
            let mut g = m.lock().unwrap();
            if n == 0 {
                g.1 = true;
                cv.notify_all();
                return;
            }
            g.0.push_str(&String::from_utf8_lossy(&buf[..n]));
            cv.notify_all();
        }
    });
    (child, dir, listener, log, args)
}

impl Worker {
    pub fn start(extra: &[&str]) -> Worker {
        Self::start_in(extra, None)
    }

    pub fn start_in(extra: &[&str], cwd: Option<&Path>) -> Worker {
        Self::start_on(&python(), extra, cwd)
    }

    pub fn start_on(python: &Path, extra: &[&str], cwd: Option<&Path>) -> Worker {
        let (child, dir, listener, log, args) = spawn_worker(python, extra, cwd);
        let mut w = Worker {
            child,
            _dir: dir,
            listener,
            sock: None,
            buf: BytesMut::new(),
            stash: HashMap::new(),
            log,
            next_stream: 1,
            args,
        };
        w.accept();
        match w.recv() {
            (0, Frame::Ready(ready)) => {
                assert_eq!(ready.pid, w.child.id());
                assert_eq!(ready.protocol, ferricorn_wire::PROTOCOL);
                assert_eq!(ready.interpreter.implementation, "cpython");
            }
            other => w.fail(&format!("expected Ready, got {other:?}")),
        }
        w
    }

    pub fn accept(&mut self) {
        self.listener.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + DEADLINE;
        loop {
            match self.listener.accept() {
                Ok((s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(DEADLINE)).unwrap();
                    self.sock = Some(s);
                    return;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("accept: {e}"),
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                self.fail(&format!("worker exited before connecting: {status}"));
            }
            if Instant::now() > deadline {
                self.fail("worker did not connect");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn log(&self) -> String {
        self.log.0.lock().unwrap().0.clone()
    }

    pub fn fail(&mut self, why: &str) -> ! {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (m, cv) = &*self.log;
        let mut g = m.lock().unwrap();
        // The child is dead: its stderr closes promptly; wait for the reader to see it.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !g.1 && Instant::now() < deadline {
            g = cv.wait_timeout(g, Duration::from_millis(100)).unwrap().0;
        }
        panic!(
            "{why}\n--- python {}\n--- stderr:\n{}",
            self.args.join(" "),
            g.0
        );
    }

    pub fn wait_log(&mut self, needle: &str) {
        let deadline = Instant::now() + DEADLINE;
        let (m, cv) = &*self.log.clone();
        let mut g = m.lock().unwrap();
        while !g.0.contains(needle) {
            let now = Instant::now();
            if now >= deadline || g.1 {
                drop(g);
                self.fail(&format!("no log containing {needle:?}"));
            }
            g = cv.wait_timeout(g, deadline - now).unwrap().0;
        }
    }

    pub fn send(&mut self, stream: u32, frame: Frame) {
        let mut out = BytesMut::new();
        wire::encode(stream, &frame, &mut out);
        self.sock.as_mut().unwrap().write_all(&out).unwrap();
    }

    pub fn recv(&mut self) -> (u32, Frame) {
        loop {
            if let Some(f) = wire::decode(&mut self.buf).unwrap() {
                return f;
            }
            let mut tmp = [0u8; 65536];
            let n = match self.sock.as_mut().unwrap().read(&mut tmp) {
                Ok(n) => n,
                Err(e) => self.fail(&format!("read: {e}")),
            };
            if n == 0 {
                self.fail("worker closed the connection");
            }
            self.buf.extend_from_slice(&tmp[..n]);
        }
    }

    pub fn next_frame(&mut self, stream: u32) -> Frame {
        if let Some(f) = self.stash.get_mut(&stream).and_then(VecDeque::pop_front) {
            return f;
        }
        loop {
            let (s, f) = self.recv();
            if s == stream {
                return f;
            }
            self.stash.entry(s).or_default().push_back(f);
        }
    }

    /// Collects one stream's response up to ResponseEnd or Abort.
    pub fn response(&mut self, stream: u32) -> Resp {
        let mut r = Resp {
            status: None,
            headers: vec![],
            body: vec![],
            end: End::Complete,
        };
        loop {
            match self.next_frame(stream) {
                Frame::ResponseHead(h) => {
                    assert!(r.status.is_none(), "two heads");
                    r.status = Some(h.status);
                    r.headers = h
                        .headers
                        .iter()
                        .map(|(n, v)| {
                            (
                                String::from_utf8_lossy(n).into_owned(),
                                String::from_utf8_lossy(v).into_owned(),
                            )
                        })
                        .collect();
                }
                Frame::ResponseBody(b) => {
                    assert!(r.status.is_some(), "body before head");
                    assert!(b.len() <= wire::CHUNK);
                    r.body.extend_from_slice(&b);
                }
                Frame::ResponseEnd => return r,
                Frame::Abort(why) => {
                    r.end = End::Aborted(String::from_utf8_lossy(&why).into_owned());
                    return r;
                }
                other => self.fail(&format!("unexpected {other:?}")),
            }
        }
    }

    pub fn stream(&mut self) -> u32 {
        self.next_stream += 1;
        self.next_stream
    }

    /// Sends a whole request (head, body frames, end) and returns its stream id.
    pub fn send_request(&mut self, mut h: RequestHead, body: &[&[u8]]) -> u32 {
        let s = self.stream();
        if h.content_length == Some(0) {
            h.content_length = Some(body.iter().map(|b| b.len() as u64).sum());
        }
        self.send(s, Frame::RequestHead(Box::new(h)));
        for b in body {
            self.send(s, Frame::RequestBody(Bytes::copy_from_slice(b)));
        }
        self.send(s, Frame::RequestEnd);
        s
    }

    pub fn request(&mut self, h: RequestHead, body: &[&[u8]]) -> Resp {
        let s = self.send_request(h, body);
        self.response(s)
    }

    pub fn get(&mut self, path: &str, query: &str) -> Resp {
        self.request(head("GET", path, query), &[])
    }

    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            if Instant::now() > deadline {
                self.fail("worker did not exit");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn probe(extra: &[&str]) -> Worker {
    let dir = apps();
    let mut args = vec!["--app", "probe:app", "--chdir", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    Worker::start(&args)
}
