//! Unit tests of the file layer: `serve` called directly with request heads, on a
//! temporary tree (files, precompressed siblings, dotfiles, symlinks in and out).

use super::*;
use std::path::Path;
use std::time::{Duration, Instant};

struct Tree {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
}

/// root/ holds the mount; outside/ sits next to it and must never be served.
fn tree() -> Tree {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let outside = tmp.path().join("outside");
    for d in [
        &root,
        &outside,
        &root.join("css"),
        &root.join("docs"),
        &root.join("empty"),
        &root.join(".git"),
    ] {
        std::fs::create_dir_all(d).unwrap();
    }
    let w = |p: &str, data: &[u8]| std::fs::write(root.join(p), data).unwrap();
    w("index.html", b"<h1>home</h1>\n");
    w("home.html", b"<h1>custom index</h1>\n");
    w("css/site.css", b"body { color: red }\n");
    w("css/site.css.gz", b"GZ-BYTES");
    w("css/site.css.br", b"BR-BYTES");
    w("app.js", b"console.log(1)\n");
    w("data.bin", &[0u8, 1, 2, 3]);
    w("docs/index.html", b"docs index\n");
    w("hello world.txt", b"spaces\n");
    w("caf\u{e9}.txt", b"accent\n");
    w(".env", b"SECRET=1\n");
    w(".git/config", b"[core]\n");
    w("digits.txt", b"0123456789");
    std::fs::write(outside.join("secret.txt"), b"outside!\n").unwrap();
    std::os::unix::fs::symlink("../outside/secret.txt", root.join("escape.txt")).unwrap();
    std::os::unix::fs::symlink("../outside", root.join("escdir")).unwrap();
    std::os::unix::fs::symlink("css/site.css", root.join("alias.css")).unwrap();
    std::os::unix::fs::symlink(".env", root.join("envlink")).unwrap();
    std::os::unix::fs::symlink(".git", root.join("gitlink")).unwrap();
    Tree {
        _tmp: tmp,
        root,
        outside,
    }
}

fn mount(dir: &Path) -> StaticMount {
    StaticMount {
        url: "/static/".into(),
        dir: dir.to_owned(),
        cache_control: Some("public, max-age=60".into()),
        index: "index.html".into(),
        precompressed: true,
        fallthrough: false,
        dotfiles: false,
        internal: false,
        immutable: None,
        headers: Vec::new(),
    }
}

fn cache_settings() -> FileCache {
    FileCache {
        max_bytes: 1 << 20,
        max_entries: 100,
        max_file_size: 1024,
        revalidate: Duration::from_secs(1),
    }
}

fn files(m: StaticMount) -> StaticFiles {
    StaticFiles::new(&[m], &cache_settings(), false).unwrap()
}

struct Got {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Got {
    fn h(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }
}

async fn req(sf: &StaticFiles, method: &str, uri: &str, hs: &[(&str, &str)]) -> Got {
    let mut b = Request::builder().method(method).uri(uri);
    for (k, v) in hs {
        b = b.header(*k, *v);
    }
    let (parts, ()) = b.body(()).unwrap().into_parts();
    let path = normal(parts.uri.path());
    let id = sf.route(&path).expect("routed");
    let resp = sf.serve(id, &path, &parts).await;
    let (p, body) = resp.into_parts();
    Got {
        status: p.status,
        headers: p.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

fn normal(path: &str) -> NormalPath {
    NormalPath::parse(path.as_bytes()).unwrap()
}

async fn get(sf: &StaticFiles, uri: &str) -> Got {
    req(sf, "GET", uri, &[]).await
}

#[test]
fn route_longest_prefix_and_bare_prefix() {
    let t = tree();
    let mut a = mount(&t.root);
    a.url = "/static/".into();
    let mut b = mount(&t.root.join("docs"));
    b.url = "/static/docs/".into();
    b.fallthrough = true;
    let sf = StaticFiles::new(&[a, b], &cache_settings(), false).unwrap();
    let route = |path: &str| sf.route(&normal(path));
    let docs = route("/static/docs/x").unwrap();
    assert!(sf.falls_through(docs));
    let top = route("/static/x").unwrap();
    assert!(!sf.falls_through(top));
    assert_eq!(route("/static"), Some(top));
    assert_eq!(route("/static/docs"), Some(docs));
    assert_eq!(route("/static//docs/x"), Some(docs));
    assert_eq!(route("/static/%64ocs"), Some(docs));
    assert_eq!(route("/static/docs/../x"), Some(top));
    assert_eq!(route("/staticx"), None);
    assert_eq!(route("/"), None);
}

#[tokio::test]
async fn file_headers_and_fast_path_agree_with_servedir() {
    let t = tree();
    let sf = files(mount(&t.root));
    for (uri, ae, ctype) in [
        ("/static/css/site.css", "", "text/css; charset=utf-8"),
        ("/static/css/site.css", "gzip", "text/css; charset=utf-8"),
        (
            "/static/css/site.css",
            "br, gzip",
            "text/css; charset=utf-8",
        ),
        ("/static/app.js", "br", "text/javascript; charset=utf-8"),
        ("/static/data.bin", "", "application/octet-stream"),
        ("/static/", "", "text/html; charset=utf-8"),
    ] {
        let hs: &[(&str, &str)] = if ae.is_empty() {
            &[]
        } else {
            &[("accept-encoding", ae)]
        };
        let (hits0, _) = sf.cache_stats();
        let first = req(&sf, "GET", uri, hs).await; // fills the cache via ServeDir
        let second = req(&sf, "GET", uri, hs).await;
        let (hits1, _) = sf.cache_stats();
        assert!(hits1 > hits0, "{uri}: second request served from the cache");
        assert_eq!(first.status, StatusCode::OK, "{uri}");
        let ctype_seen = first.h("content-type");
        assert!(
            ctype_seen == ctype || (uri.ends_with(".js") && ctype_seen.ends_with("charset=utf-8")),
            "{uri}: {ctype_seen}"
        );
        for name in [
            "content-type",
            "content-length",
            "etag",
            "last-modified",
            "content-encoding",
            "vary",
            "accept-ranges",
            "cache-control",
        ] {
            assert_eq!(first.h(name), second.h(name), "{uri} {ae}: header {name}");
        }
        assert_eq!(first.body, second.body);
        assert_eq!(first.h("cache-control"), "public, max-age=60");
        assert_eq!(first.h("vary"), "accept-encoding");
        assert!(first.h("etag").starts_with('"'));
    }
}

#[tokio::test]
async fn head_has_headers_and_no_body() {
    let t = tree();
    let sf = files(mount(&t.root));
    for _ in 0..2 {
        let r = req(&sf, "HEAD", "/static/css/site.css", &[]).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.h("content-length"), "20");
        assert!(r.body.is_empty());
    }
}

#[tokio::test]
async fn conditional_requests_get_304_with_cache_control() {
    let t = tree();
    let sf = files(mount(&t.root));
    let first = get(&sf, "/static/css/site.css").await;
    let etag = first.h("etag").to_string();
    let lm = first.h("last-modified").to_string();
    for _ in 0..2 {
        // once through ServeDir, once through the fast path
        let r = req(
            &sf,
            "GET",
            "/static/css/site.css",
            &[("if-none-match", &etag)],
        )
        .await;
        assert_eq!(r.status, StatusCode::NOT_MODIFIED);
        assert_eq!(r.h("etag"), etag);
        assert_eq!(r.h("cache-control"), "public, max-age=60");
        assert!(r.body.is_empty());
        let r = req(
            &sf,
            "GET",
            "/static/css/site.css",
            &[("if-modified-since", &lm)],
        )
        .await;
        assert_eq!(r.status, StatusCode::NOT_MODIFIED);
        let r = req(
            &sf,
            "GET",
            "/static/css/site.css",
            &[("if-none-match", "\"nope\"")],
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
    }
    let r = req(
        &sf,
        "GET",
        "/static/css/site.css",
        &[("if-match", "\"nope\"")],
    )
    .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(r.h("cache-control"), "");
}

#[tokio::test]
async fn ranges_and_if_range() {
    let t = tree();
    let sf = files(mount(&t.root));
    let full = get(&sf, "/static/digits.txt").await;
    let etag = full.h("etag").to_string();
    let lm = full.h("last-modified").to_string();

    let r = req(&sf, "GET", "/static/digits.txt", &[("range", "bytes=2-4")]).await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.h("content-range"), "bytes 2-4/10");
    assert_eq!(r.h("content-length"), "3");
    assert_eq!(&r.body[..], b"234");
    assert_eq!(r.h("cache-control"), "public, max-age=60");

    let r = req(&sf, "GET", "/static/digits.txt", &[("range", "bytes=-2")]).await;
    assert_eq!(&r.body[..], b"89");

    let r = req(
        &sf,
        "GET",
        "/static/digits.txt",
        &[("range", "bytes=50-60")],
    )
    .await;
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.h("content-range"), "bytes */10");
    assert_eq!(r.h("cache-control"), "");

    // Multi-range: the whole file, 200.
    let r = req(
        &sf,
        "GET",
        "/static/digits.txt",
        &[("range", "bytes=0-1, 4-5")],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(&r.body[..], b"0123456789");

    let ranged = |if_range: String| {
        let sf = &sf;
        async move {
            req(
                sf,
                "GET",
                "/static/digits.txt",
                &[("range", "bytes=0-1"), ("if-range", &if_range)],
            )
            .await
        }
    };
    let r = ranged(etag.clone()).await;
    assert_eq!(
        (r.status, &r.body[..]),
        (StatusCode::PARTIAL_CONTENT, &b"01"[..])
    );
    let r = ranged(lm.clone()).await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    let r = ranged("\"stale\"".into()).await;
    assert_eq!(
        (r.status, &r.body[..]),
        (StatusCode::OK, &b"0123456789"[..])
    );
    let r = ranged(format!("W/{etag}")).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "a weak validator never matches If-Range"
    );
    let r = ranged("Mon, 01 Jan 2001 00:00:00 GMT".into()).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn precompressed_siblings_by_q_value() {
    let t = tree();
    let sf = files(mount(&t.root));
    for _ in 0..2 {
        let r = req(
            &sf,
            "GET",
            "/static/css/site.css",
            &[("accept-encoding", "gzip, br")],
        )
        .await;
        assert_eq!(
            (r.h("content-encoding"), &r.body[..]),
            ("br", &b"BR-BYTES"[..])
        );
        let r = req(
            &sf,
            "GET",
            "/static/css/site.css",
            &[("accept-encoding", "gzip;q=1, br;q=0.5")],
        )
        .await;
        assert_eq!(
            (r.h("content-encoding"), &r.body[..]),
            ("gzip", &b"GZ-BYTES"[..])
        );
        let r = req(
            &sf,
            "GET",
            "/static/css/site.css",
            &[("accept-encoding", "br;q=0, gzip;q=0")],
        )
        .await;
        assert_eq!(
            (r.h("content-encoding"), &r.body[..]),
            ("", &b"body { color: red }\n"[..])
        );
        assert_eq!(r.h("vary"), "accept-encoding");
        // No sibling: the plain file, with Vary still.
        let r = req(
            &sf,
            "GET",
            "/static/app.js",
            &[("accept-encoding", "br, gzip")],
        )
        .await;
        assert_eq!(
            (r.h("content-encoding"), r.h("vary")),
            ("", "accept-encoding")
        );
    }
    let mut m = mount(&t.root);
    m.precompressed = false;
    let sf = files(m);
    for _ in 0..2 {
        let r = req(
            &sf,
            "GET",
            "/static/css/site.css",
            &[("accept-encoding", "gzip, br")],
        )
        .await;
        assert_eq!((r.h("content-encoding"), r.h("vary")), ("", ""));
        assert_eq!(&r.body[..], b"body { color: red }\n");
    }
}

#[tokio::test]
async fn directories_index_and_redirects() {
    let t = tree();
    let sf = files(mount(&t.root));
    for _ in 0..2 {
        let r = get(&sf, "/static/").await;
        assert_eq!(&r.body[..], b"<h1>home</h1>\n");
        let r = get(&sf, "/static/docs/").await;
        assert_eq!(&r.body[..], b"docs index\n");
        let r = get(&sf, "/static/docs?x=1").await;
        assert_eq!(r.status, StatusCode::TEMPORARY_REDIRECT);
        assert_eq!(r.h("location"), "/static/docs/?x=1");
        let r = get(&sf, "/static?a=b").await;
        assert_eq!(r.status, StatusCode::MOVED_PERMANENTLY);
        assert_eq!(r.h("location"), "/static/?a=b");
        let r = get(&sf, "/static/empty/").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "no listings");
        assert_eq!(&r.body[..], b"404 Not Found\n");
        assert_eq!(r.h("cache-control"), "");
        let r = get(&sf, "/static/css/site.css/").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    }
    let mut m = mount(&t.root);
    m.index = "home.html".into();
    let sf = files(m);
    let r = get(&sf, "/static/").await;
    assert_eq!(&r.body[..], b"<h1>custom index</h1>\n");
    assert_eq!(
        get(&sf, "/static/docs/").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn odd_names() {
    let t = tree();
    let sf = files(mount(&t.root));
    assert_eq!(
        &get(&sf, "/static/hello%20world.txt").await.body[..],
        b"spaces\n"
    );
    assert_eq!(
        &get(&sf, "/static/caf%C3%A9.txt").await.body[..],
        b"accent\n"
    );
    assert_eq!(
        get(&sf, "/static/caf%E9.txt").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        &get(&sf, "/static//css//site.css").await.body[..],
        b"body { color: red }\n"
    );
}

#[tokio::test]
async fn nothing_outside_the_root_and_no_dotfiles() {
    let t = tree();
    let sf = files(mount(&t.root));
    // A `..` leaves the mount before any lookup: the normal path is elsewhere.
    for uri in [
        "/static/../outside/secret.txt",
        "/static/css/../../outside/secret.txt",
        "/static/%2e%2e/outside/secret.txt",
        "/static/%2E%2E/outside/secret.txt",
        "/static/.%2e/outside/secret.txt",
        "/static/..%2foutside%2fsecret.txt",
        "/static/..%2Foutside/secret.txt",
    ] {
        assert_eq!(sf.route(&normal(uri)), None, "{uri}");
    }
    let refused = [
        "/static/..%5coutside%5csecret.txt",
        "/static/css%5csite.css",
        "/static/%252e%252e/outside/secret.txt",
        "/static/escape.txt",
        "/static/escdir/secret.txt",
        "/static/.env",
        "/static/.git/config",
        "/static/%2egit/config",
        // Plain names resolving to a dotfile: the rule holds for what is opened.
        "/static/envlink",
        "/static/gitlink/config",
        "/static/css/site.css%2f",
    ];
    for uri in refused {
        for _ in 0..2 {
            let r = get(&sf, uri).await;
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{uri}");
            assert_eq!(&r.body[..], b"404 Not Found\n", "{uri}");
        }
    }
    // `.` and `%2F` are what they are to the router: the file is served.
    for uri in ["/static/./css/site.css", "/static/css%2Fsite.css"] {
        assert_eq!(get(&sf, uri).await.body, "body { color: red }\n", "{uri}");
    }
    // A symlink inside the root pointing inside it is fine.
    assert_eq!(
        &get(&sf, "/static/alias.css").await.body[..],
        b"body { color: red }\n"
    );
    assert!(t.outside.join("secret.txt").exists());

    let mut m = mount(&t.root);
    m.dotfiles = true;
    let sf = files(m);
    assert_eq!(&get(&sf, "/static/.env").await.body[..], b"SECRET=1\n");
    assert_eq!(get(&sf, "/static/.git/config").await.status, StatusCode::OK);
    assert_eq!(&get(&sf, "/static/envlink").await.body[..], b"SECRET=1\n");
    assert_eq!(sf.route(&normal("/static/%2e%2e/outside/secret.txt")), None);
    assert_eq!(
        get(&sf, "/static/escape.txt").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn fifo_is_not_served() {
    let t = tree();
    nix::unistd::mkfifo(&t.root.join("pipe"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    let sf = files(mount(&t.root));
    assert_eq!(get(&sf, "/static/pipe").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn other_methods_get_405() {
    let t = tree();
    let sf = files(mount(&t.root));
    for m in ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"] {
        let r = req(&sf, m, "/static/css/site.css", &[]).await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{m}");
        assert_eq!(r.h("allow"), "GET, HEAD");
        assert_eq!(&r.body[..], b"405 Method Not Allowed\n");
    }
}

#[tokio::test]
async fn large_files_stream_and_stay_out_of_memory() {
    let t = tree();
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(t.root.join("big.bin"), &big).unwrap();
    let sf = files(mount(&t.root));
    for _ in 0..2 {
        let r = get(&sf, "/static/big.bin").await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.h("content-length"), "200000");
        assert_eq!(&r.body[..], &big[..]);
    }
    let r = req(
        &sf,
        "GET",
        "/static/big.bin",
        &[("range", "bytes=150000-150009")],
    )
    .await;
    assert_eq!(&r.body[..], &big[150_000..150_010]);
    assert_eq!(sf.cache.len().1, 0, "no bytes of a large file cached");
}

/// Polls until the file served at `uri` has `want` as its body, for at most 2 s.
async fn wait_for_body(sf: &StaticFiles, uri: &str, want: &[u8]) -> Got {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let r = get(sf, uri).await;
        if &r.body[..] == want {
            return r;
        }
        assert!(Instant::now() < deadline, "{uri} still serves {:?}", r.body);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn changed_file_is_served_fresh_within_a_second() {
    let t = tree();
    let sf = files(mount(&t.root));
    let before = get(&sf, "/static/app.js").await;
    let started = Instant::now();
    std::fs::write(t.root.join("app.js"), b"console.log('changed!')\n").unwrap();
    let after = wait_for_body(&sf, "/static/app.js", b"console.log('changed!')\n").await;
    assert!(started.elapsed() < Duration::from_millis(1500));
    assert_ne!(before.h("etag"), after.h("etag"));
    // An old validator no longer gives 304.
    let r = req(
        &sf,
        "GET",
        "/static/app.js",
        &[("if-none-match", before.h("etag"))],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    // A file that appears after a cached 404 is found too.
    assert_eq!(
        get(&sf, "/static/new.txt").await.status,
        StatusCode::NOT_FOUND
    );
    std::fs::write(t.root.join("new.txt"), b"new\n").unwrap();
    wait_for_body(&sf, "/static/new.txt", b"new\n").await;
}

#[tokio::test]
async fn dev_mode_revalidates_every_request_and_says_no_cache() {
    let t = tree();
    let sf = StaticFiles::new(&[mount(&t.root)], &cache_settings(), true).unwrap();
    let r = get(&sf, "/static/app.js").await;
    assert_eq!(r.h("cache-control"), "no-cache");
    std::fs::write(t.root.join("app.js"), b"v2 with another length\n").unwrap();
    let r = get(&sf, "/static/app.js").await;
    assert_eq!(&r.body[..], b"v2 with another length\n");
}

#[tokio::test]
async fn cache_counts_hits_and_misses() {
    let t = tree();
    let sf = files(mount(&t.root));
    get(&sf, "/static/css/site.css").await;
    let (_, misses) = sf.cache_stats();
    assert!(misses >= 1);
    for _ in 0..10 {
        get(&sf, "/static/css/site.css").await;
    }
    let (hits, misses_after) = sf.cache_stats();
    assert_eq!(misses, misses_after, "no disk access once cached");
    assert!(hits >= 10);
}

#[test]
fn decide_refuses_before_touching_disk() {
    let t = tree();
    let sf = files(mount(&t.root));
    let m = &sf.mounts[0];
    let decide = |uri: &str| {
        let (parts, ()) = Request::builder().uri(uri).body(()).unwrap().into_parts();
        m.decide(&normal(parts.uri.path()), &parts)
    };
    let Decision::Serve(target) = decide("/static/a%2fb%3F%23%25c?q=1") else {
        panic!("served")
    };
    assert_eq!(target.fs_path, m.root.join("a/b?#%c"));
    assert_eq!(
        target.uri, "/a/b%3F%23%25c?q=1",
        "encoded again for ServeDir"
    );
    assert_eq!(
        decide("/static/a%5Cb"),
        Decision::Refused(PathRefusal::Backslash)
    );
    assert_eq!(
        decide("/static/.env"),
        Decision::Refused(PathRefusal::Dotfile)
    );
    assert_eq!(
        decide("/static/%ff"),
        Decision::Refused(PathRefusal::NotUtf8)
    );
    assert_eq!(decide("/static"), Decision::AddSlash("/static/".into()));
}

#[tokio::test]
async fn second_request_takes_the_fast_path() {
    let t = tree();
    let sf = files(mount(&t.root));
    let m = &sf.mounts[0];
    for (uri, ae) in [
        ("/static/css/site.css", "br"),
        ("/static/css/site.css", "gzip"),
        ("/static/css/site.css", ""),
        ("/static/app.js", "br, gzip"),
        ("/static/docs/", ""),
        ("/static/missing.txt", "gzip"),
    ] {
        let mut b = Request::builder().uri(uri);
        if !ae.is_empty() {
            b = b.header("accept-encoding", ae);
        }
        let (parts, ()) = b.body(()).unwrap().into_parts();
        let path = normal(parts.uri.path());
        let Decision::Serve(target) = m.decide(&path, &parts) else {
            panic!("{uri}")
        };
        if uri == "/static/app.js" {
            assert!(
                sf.fast_path(m, &target, &parts).is_none(),
                "{uri}: cold cache"
            );
        }
        sf.serve(MountId(0), &path, &parts).await;
        assert!(
            sf.fast_path(m, &target, &parts).is_some(),
            "{uri} {ae}: warm cache"
        );
    }
}
