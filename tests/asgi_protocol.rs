//! The ASGI worker (`--interface asgi`) on the wire, with this test as its master
//! (the launcher is tests/common/worker.rs): the frames only an ASGI worker gets
//! (Cancel, Pause, Resume) and the one only it sends (ResponseFile), which the
//! master's side handles elsewhere. tests/asgi.rs has everything a client sees.

#[path = "common/worker.rs"]
mod launcher;

use bytes::Bytes;
use ferricorn::claims::Claims;
use ferricorn::wire::Frame;
use launcher::*;

fn asgi_worker(extra: &[&str]) -> Worker {
    let dir = apps();
    let mut args = vec![
        "--app",
        "asgi_raw:app",
        "--chdir",
        dir.to_str().unwrap(),
        "--interface",
        "asgi",
    ];
    args.extend_from_slice(extra);
    Worker::start(&args)
}

/// The loop claims each stream before its task starts: one the front took back is
/// never run, nor one it never offered.
#[test]
fn a_request_the_front_revoked_is_dropped_unanswered() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.claims");
    let claims = Claims::create(&path).unwrap();
    let mut w = asgi_worker(&["--claims", path.to_str().unwrap()]);
    let (a, b, c, d) = (w.stream(), w.stream(), w.stream(), w.stream());
    for s in [a, b, c] {
        claims.offer(s);
    }
    assert!(claims.revoke(b), "nothing has started b yet");
    // One write, so all four heads are one batch and their tasks one loop turn:
    // an answer to b or d would come with c's.
    let mut out = bytes::BytesMut::new();
    for s in [a, b, d, c] {
        let h = Frame::RequestHead(Box::new(head("GET", "/", "")));
        ferricorn::wire::encode(s, &h, &mut out);
        ferricorn::wire::encode(s, &Frame::RequestEnd, &mut out);
    }
    use std::io::Write;
    w.sock.as_mut().unwrap().write_all(&out).unwrap();
    assert_eq!(w.response(a).text(), "hello");
    assert_eq!(w.response(c).text(), "hello");
    for s in [b, d] {
        assert!(!w.stash.contains_key(&s), "{:?}", w.stash.get(&s));
    }
    assert!(
        !claims.revoke(a) && !claims.revoke(c),
        "a and c were started"
    );
}

#[test]
fn cancel_ends_the_task_and_the_stream_with_abort_cancelled() {
    let mut w = asgi_worker(&[]);
    // /stream waits for /release forever: only the cancel can end it.
    let s = w.send_request(head("GET", "/stream", ""), &[]);
    assert!(matches!(w.next_frame(s), Frame::ResponseHead(_)));
    assert!(matches!(w.next_frame(s), Frame::ResponseBody(_)));
    w.send(s, Frame::Cancel);
    assert_eq!(
        w.next_frame(s),
        Frame::Abort(Bytes::from_static(b"cancelled"))
    );
    assert_eq!(w.get("/", "").text(), "hello");
    // A Cancel for a stream that is gone is ignored.
    w.send(s, Frame::Cancel);
    assert_eq!(w.get("/", "").text(), "hello");
}

#[test]
fn pause_holds_the_apps_body_sends_until_resume() {
    let mut w = asgi_worker(&[]);
    let s = w.send_request(head("GET", "/chunks", ""), &[]);
    assert!(matches!(w.next_frame(s), Frame::ResponseHead(_)));
    assert!(matches!(w.next_frame(s), Frame::ResponseBody(_)));
    w.send(s, Frame::Pause);
    // Frames are handled in order: once /chunks-sent answers, the Pause was seen,
    // and the app's next send() waits.
    let first: u32 = w.get("/chunks-sent", "").text().parse().unwrap();
    let again: u32 = w.get("/chunks-sent", "").text().parse().unwrap();
    assert!(first < 10_000, "not paused: {first}");
    assert_eq!(first, again, "paused, yet it went on");
    w.send(s, Frame::Resume);
    let mut got = 1;
    loop {
        match w.next_frame(s) {
            Frame::ResponseBody(b) => got += usize::from(!b.is_empty()),
            Frame::ResponseEnd => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(got, 10_000);
    assert_eq!(w.get("/chunks-sent", "").text(), "10000");
}

/// A master that does not read: the worker's out buffer fills, and past 1 MiB
/// the app's send() waits (it gets a pending future) instead of the buffer
/// growing; once the master reads again, the whole response comes.
#[test]
fn send_waits_while_the_master_does_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let progress = dir.path().join("progress");
    let mut w = asgi_worker(&[]);
    let query = format!("progress={}", progress.display());
    let s = w.send_request(head("GET", "/flood", &query), &[]);
    let deadline = std::time::Instant::now() + DEADLINE;
    let note = loop {
        if let Ok(note) = std::fs::read_to_string(&progress) {
            break note;
        }
        assert!(std::time::Instant::now() < deadline, "send() never waited");
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let k: usize = note.trim_start_matches("waited at ").parse().unwrap();
    // 1 MiB queued plus what the kernel's socket buffers hold.
    assert!(k * 65536 < 8 * 1024 * 1024, "{note}");
    let r = w.response(s);
    assert_eq!((r.body.len(), r.end), (200 * 65536, End::Complete));
}

#[test]
fn pathsend_names_the_file_the_front_sends() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.bin");
    std::fs::write(&path, vec![1u8; 12345]).unwrap();
    let mut w = asgi_worker(&[]);
    let s = w.send_request(
        head("GET", &format!("/pathsend{}", path.display()), ""),
        &[],
    );
    assert!(matches!(w.next_frame(s), Frame::ResponseHead(h) if h.status == 200));
    let Frame::ResponseFile(f) = w.next_frame(s) else {
        panic!("no ResponseFile")
    };
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(&f.path[..], path.to_str().unwrap().as_bytes());
    assert_eq!((f.dev, f.ino, f.size), (meta.dev(), meta.ino(), 12345));
    assert_eq!(w.get("/", "").text(), "hello");
}

#[test]
fn the_masters_eof_ends_the_worker() {
    let mut w = asgi_worker(&[]);
    assert_eq!(w.get("/", "").text(), "hello");
    w.sock = None;
    let status = w.wait_exit();
    assert!(status.success(), "{status:?}");
}

fn kill(w: &Worker, sig: &str) {
    let ok = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(w.child.id().to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

#[test]
fn sigint_stops_the_loop_at_once_even_with_a_request_in_flight() {
    let mut w = asgi_worker(&[]);
    let s = w.send_request(head("GET", "/stream", ""), &[]);
    assert!(matches!(w.next_frame(s), Frame::ResponseHead(_)));
    kill(&w, "INT");
    assert!(w.wait_exit().success());
    assert!(!w.log().contains("lifespan shutdown"), "{}", w.log());
}

/// SIGTERM: what is in flight finishes (a request the master wrote after the
/// signal, too), then the worker stops reading, runs the lifespan shutdown at the
/// end of its input and exits 0.
#[test]
fn sigterm_drains_the_streams_in_flight_then_exits_0() {
    let mut w = asgi_worker(&[]);
    let s = w.send_request(head("GET", "/stream", ""), &[]);
    assert!(matches!(w.next_frame(s), Frame::ResponseHead(_)));
    kill(&w, "TERM");
    w.wait_log("SIGTERM: draining, 1 request(s) in flight");
    // Head and end in one write, as the master writes them: once the last stream
    // is answered the draining worker shuts its reading side, and a later write
    // of this request's end would fail (EPIPE, which the master expects).
    let mut out = bytes::BytesMut::new();
    let release = Frame::RequestHead(Box::new(head("GET", "/release", "")));
    ferricorn::wire::encode(99, &release, &mut out);
    ferricorn::wire::encode(99, &Frame::RequestEnd, &mut out);
    use std::io::Write;
    if let Err(e) = w.sock.as_mut().unwrap().write_all(&out) {
        w.fail(&format!("write: {e}"));
    }
    assert_eq!(w.response(99).text(), "released");
    let mut body = Vec::new();
    loop {
        match w.next_frame(s) {
            Frame::ResponseBody(b) => body.extend_from_slice(&b),
            Frame::ResponseEnd => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(body, b"first\nlast\n");
    drop(w.sock.take()); // the master's side of the drain: no more frames
    let status = w.wait_exit();
    assert!(status.success(), "{status:?}");
    w.wait_log("ASGI lifespan shutdown done");
}

/// Worker CPU per ASGI hello-world request (utime + stime from /proc), with
/// `window` requests in flight. Run with a release worker module:
/// `cargo test --test asgi_protocol bench -- --ignored --nocapture`.
#[test]
#[ignore]
fn bench_hello_cpu_per_request() {
    for (lp, window) in [("asyncio", 1usize), ("uvloop", 1), ("uvloop", 16)] {
        let mut w = asgi_worker(&["--asgi-loop", lp]);
        let cpu = |pid: u32| -> f64 {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
            let f: Vec<&str> = stat
                .rsplit(')')
                .next()
                .unwrap()
                .split_whitespace()
                .collect();
            (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / 100.0
        };
        for _ in 0..500 {
            w.get("/", "");
        }
        let n = 20_000;
        let (c0, t0) = (cpu(w.child.id()), std::time::Instant::now());
        let mut inflight = std::collections::VecDeque::new();
        for _ in 0..n {
            if inflight.len() == window {
                let s = inflight.pop_front().unwrap();
                assert_eq!(w.response(s).body.len(), 5);
            }
            inflight.push_back(w.send_request(head("GET", "/", ""), &[]));
        }
        for s in inflight {
            w.response(s);
        }
        let (c1, t1) = (cpu(w.child.id()), t0.elapsed());
        println!(
            "{lp}, window {window}: {:.1} µs worker CPU/request, {:.0} req/s",
            (c1 - c0) * 1e6 / n as f64,
            n as f64 / t1.as_secs_f64()
        );
    }
}

/// The worker's memory per idle stream: 2,000 requests whose task waits (a
/// streamed response after its first chunk), RSS before and after. Run:
/// `cargo test --test asgi_protocol idle -- --ignored --nocapture`.
#[test]
#[ignore]
fn bench_memory_per_idle_stream() {
    let mut w = asgi_worker(&[]);
    let rss = |pid: u32| -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    for _ in 0..200 {
        w.get("/", "");
    }
    let before = rss(w.child.id());
    let n = 2_000;
    let streams: Vec<u32> = (0..n)
        .map(|_| w.send_request(head("GET", "/stream", ""), &[]))
        .collect();
    for &s in &streams {
        assert!(matches!(w.next_frame(s), Frame::ResponseHead(_)));
        assert!(matches!(w.next_frame(s), Frame::ResponseBody(_)));
    }
    let after = rss(w.child.id());
    println!(
        "{n} idle streams: worker RSS {before} kB -> {after} kB, {:.1} kB per stream",
        (after - before) as f64 / n as f64
    );
}
