//! Static files without a precompressed sibling (what Django's collectstatic leaves)
//! compressed by the front, as nginx's `gzip on` does: once per file version, with
//! `Vary`, a strong ETag per representation, ranges on the file itself, a sibling
//! still preferred; and `--static`'s default Cache-Control. Real binary, reqwest
//! (no decompression: the bytes as sent) and curl.

mod common;
use common::*;

use reqwest::blocking::Response;
use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn h(r: &Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

fn get(s: &Server, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut b = client().get(s.url(path));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.send().unwrap()
}

fn gunzip(bytes: &[u8]) -> String {
    let mut out = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut out)
        .unwrap();
    out
}

fn unbrotli(bytes: &[u8]) -> String {
    let mut out = String::new();
    brotli::Decompressor::new(bytes, 4096)
        .read_to_string(&mut out)
        .unwrap();
    out
}

/// A directory as collectstatic leaves it: text files without siblings, plus one
/// file with a `.gz` sibling, a small one and an image.
fn collected(dir: &Path) -> String {
    let css = "body { font-family: sans-serif; color: #333; margin: 0 }\n".repeat(400);
    std::fs::create_dir_all(dir.join("admin/css")).unwrap();
    std::fs::write(dir.join("admin/css/base.css"), &css).unwrap();
    std::fs::write(dir.join("app.js"), "console.log('identity');\n".repeat(100)).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, b"console.log('the sibling');\n").unwrap();
    std::fs::write(dir.join("app.js.gz"), gz.finish().unwrap()).unwrap();
    std::fs::write(dir.join("small.css"), "a { color: red }\n").unwrap();
    std::fs::write(dir.join("logo.png"), vec![0u8; 4096]).unwrap();
    css
}

#[test]
fn text_files_without_a_sibling_are_compressed_once_per_version() {
    let tmp = tempfile::tempdir().unwrap();
    let css = collected(tmp.path());
    let s = Server::start(["--static", &format!("/static/={}", tmp.path().display())]);
    let path = "/static/admin/css/base.css";

    // Uncompressed: the file, its ETag, ranges; Vary says other encodings exist.
    let plain = get(&s, path, &[]);
    assert_eq!(plain.status(), 200);
    assert_eq!(h(&plain, "content-encoding"), "");
    assert_eq!(h(&plain, "vary"), "accept-encoding");
    assert_eq!(h(&plain, "accept-ranges"), "bytes");
    assert_eq!(h(&plain, "cache-control"), "public, max-age=3600");
    let identity_etag = h(&plain, "etag");
    assert_eq!(plain.text().unwrap(), css);

    // gzip: its own strong ETag, Vary, no ranges, the same Cache-Control.
    let gz = get(&s, path, &[("accept-encoding", "gzip")]);
    assert_eq!(gz.status(), 200);
    assert_eq!(h(&gz, "content-encoding"), "gzip");
    assert_eq!(h(&gz, "vary"), "accept-encoding");
    assert_eq!(h(&gz, "accept-ranges"), "");
    assert_eq!(h(&gz, "content-type"), "text/css; charset=utf-8");
    assert_eq!(h(&gz, "cache-control"), "public, max-age=3600");
    let gz_etag = h(&gz, "etag");
    assert!(
        gz_etag.starts_with('"') && gz_etag != identity_etag,
        "{gz_etag}"
    );
    let length: usize = h(&gz, "content-length").parse().unwrap();
    let body = gz.bytes().unwrap();
    assert_eq!(body.len(), length);
    assert!(length * 10 < css.len(), "{length} for {}", css.len());
    assert_eq!(gunzip(&body), css);

    // br preferred over gzip at equal q, as for siblings; a third ETag.
    let br = get(&s, path, &[("accept-encoding", "gzip, deflate, br")]);
    assert_eq!(h(&br, "content-encoding"), "br");
    let br_etag = h(&br, "etag");
    assert!(br_etag != gz_etag && br_etag != identity_etag);
    assert_eq!(unbrotli(&br.bytes().unwrap()), css);

    // Validators per representation: the gzip ETag revalidates the gzip answer
    // (304 with Vary); the identity one does not.
    let nm = get(
        &s,
        path,
        &[("accept-encoding", "gzip"), ("if-none-match", &gz_etag)],
    );
    assert_eq!(nm.status(), 304);
    assert_eq!(h(&nm, "etag"), gz_etag);
    assert_eq!(h(&nm, "vary"), "accept-encoding");
    let other = get(
        &s,
        path,
        &[
            ("accept-encoding", "gzip"),
            ("if-none-match", &identity_etag),
        ],
    );
    assert_eq!(other.status(), 200);
    assert_eq!(h(&other, "content-encoding"), "gzip");

    // A range is answered on the file itself (correct bytes, its own ETag).
    let part = get(
        &s,
        path,
        &[("accept-encoding", "gzip"), ("range", "bytes=0-3")],
    );
    assert_eq!(part.status(), 206);
    assert_eq!(h(&part, "content-encoding"), "");
    assert_eq!(h(&part, "etag"), identity_etag);
    assert_eq!(part.text().unwrap(), "body");

    // HEAD: the compressed length, no body.
    let head = client()
        .head(s.url(path))
        .header("accept-encoding", "gzip")
        .send()
        .unwrap();
    assert_eq!(h(&head, "content-length"), length.to_string());
    assert_eq!(h(&head, "content-encoding"), "gzip");

    // A precompressed sibling is still preferred; small files, images: as they are.
    let js = get(&s, "/static/app.js", &[("accept-encoding", "gzip")]);
    assert_eq!(h(&js, "content-encoding"), "gzip");
    assert_eq!(
        gunzip(&js.bytes().unwrap()),
        "console.log('the sibling');\n"
    );
    let small = get(&s, "/static/small.css", &[("accept-encoding", "gzip")]);
    assert_eq!(h(&small, "content-encoding"), "");
    let png = get(&s, "/static/logo.png", &[("accept-encoding", "gzip")]);
    assert_eq!(h(&png, "content-encoding"), "");

    // curl, as a browser asks, over HTTP/1.1 and HTTP/2.
    for version in ["--http1.1", "--http2-prior-knowledge"] {
        let out = Command::new("curl")
            .args([
                "-s",
                "-S",
                "--compressed",
                version,
                "-w",
                "%{size_download}",
            ])
            .args(["-o", tmp.path().join("out.css").to_str().unwrap()])
            .arg(s.url(path))
            .output()
            .unwrap();
        let size = assert_success("curl", &out);
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("out.css")).unwrap(),
            css
        );
        assert!(size.parse::<usize>().unwrap() < css.len() / 10, "{size}");
    }

    // The file changes: a new version is compressed, with a new ETag.
    let edited = css.replace("#333", "#444");
    std::fs::write(tmp.path().join("admin/css/base.css"), &edited).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let gz = get(&s, path, &[("accept-encoding", "gzip")]);
        let etag = h(&gz, "etag");
        if etag != gz_etag {
            assert!(etag.starts_with('"'), "{etag}");
            assert_eq!(gunzip(&gz.bytes().unwrap()), edited);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the edited file is still served old"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn compression_off_leaves_static_files_alone_and_cache_control_can_be_none() {
    let tmp = tempfile::tempdir().unwrap();
    collected(tmp.path());
    let conf = tmp.path().join("f.toml");
    std::fs::write(
        &conf,
        format!(
            "[compression]\nenabled = false\n\n[[static]]\nurl = \"/static/\"\ndir = {:?}\ncache_control = \"\"\n",
            tmp.path()
        ),
    )
    .unwrap();
    let s = Server::start(["-c", conf.to_str().unwrap()]);
    let r = get(
        &s,
        "/static/admin/css/base.css",
        &[("accept-encoding", "gzip")],
    );
    assert_eq!(r.status(), 200);
    assert_eq!(h(&r, "content-encoding"), "");
    assert_eq!(h(&r, "cache-control"), "");
}

/// The server's threads that are running or waiting for a CPU (state R).
fn running_threads(pid: i32) -> usize {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("stat")).ok())
        .filter(|stat| {
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('R'))
        })
        .count()
}

/// Text that compresses, but slowly: words drawn by a small LCG.
fn prose(seed: u64, len: usize) -> String {
    let words = [
        "static",
        "files",
        "are",
        "served",
        "by",
        "ferricorn",
        "front",
        "{ }",
    ];
    let mut x = seed;
    let mut out = String::with_capacity(len + 16);
    while out.len() < len {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        out.push_str(words[(x >> 61) as usize]);
        out.push_str(&format!("{} ", (x >> 40) % 1000));
    }
    out
}

/// HOLE: a client that resets its stream (or goes) while its file is being compressed
/// used to release the "one compression per core" permit while the compression went
/// on in a blocking thread, and leave the file uncompressed for the next request: a
/// burst of HEADERS + RST_STREAM ran as many brotli compressions at once as it had
/// files, every core busy for every request.
#[test]
fn a_client_that_resets_mid_compression_does_not_unbound_the_compressions() {
    let tmp = tempfile::tempdir().unwrap();
    let files = 12;
    for i in 0..files {
        std::fs::write(tmp.path().join(format!("{i}.css")), prose(i, 512 * 1024)).unwrap();
    }
    let conf = tmp.path().join("f.toml");
    std::fs::write(
        &conf,
        format!(
            "[static_cache]\nrevalidate_ms = 600000\n\n[[static]]\nurl = \"/static/\"\ndir = {:?}\nprecompressed = false\n",
            tmp.path()
        ),
    )
    .unwrap();
    let s = Server::start(["-c", conf.to_str().unwrap()]);
    // In the open-file cache (identity answers), so a request goes straight to compressing.
    for i in 0..files {
        assert_eq!(get(&s, &format!("/static/{i}.css"), &[]).status(), 200);
    }
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let addr = s.addr;
    let url = |i: u64| s.url(&format!("/static/{i}.css"));
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut client, conn) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(conn);
        let mut streams = Vec::new();
        for i in 0..files {
            client = client.ready().await.unwrap();
            let req = http::Request::get(url(i))
                .header("accept-encoding", "br")
                .body(())
                .unwrap();
            streams.push(client.send_request(req, true).unwrap());
        }
        // Wait for the compressions to be under way, then give up on every stream.
        let started = Instant::now();
        while running_threads(s.pid()) == 0 && started.elapsed() < Duration::from_secs(20) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for (_, mut stream) in streams {
            stream.send_reset(h2::Reason::CANCEL);
        }
        // Then each file once more, to the end: the compressions are all done then.
        let mut peak = 0;
        let mut answers = Vec::new();
        for i in 0..files {
            client = client.ready().await.unwrap();
            let req = http::Request::get(url(i))
                .header("accept-encoding", "br")
                .body(())
                .unwrap();
            answers.push(client.send_request(req, true).unwrap().0);
        }
        let all = futures_util::future::join_all(answers);
        tokio::pin!(all);
        let answers = loop {
            peak = peak.max(running_threads(s.pid()));
            tokio::select! {
                a = &mut all => break a,
                _ = tokio::time::sleep(Duration::from_millis(5)) => {}
            }
        };
        for a in answers {
            let a = a.unwrap();
            assert_eq!(a.status(), 200);
            assert_eq!(a.headers()["content-encoding"], "br");
        }
        assert!(
            peak <= cores + 2,
            "{peak} threads of the server ran at once on {cores} cores"
        );
    });
}
