//! Micro-benchmarks of the per-request parts ferricorn owns on the hello and static
//! paths (issue 7, item 2). One command:
//!
//! ```sh
//! bash benches/micro/run.sh            # = cargo bench --bench hot_path
//! ```
//!
//! Settings are in code (1 s warm-up, 2 s measurement, 50 samples) so a full run takes
//! about a minute after the build. Inputs are what a browser-ish client sends to the
//! hello app: a GET with 10 header fields, a 13-byte "Hello, World!" answer.

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use ferricorn::config::{FileCache, StaticMount};
use ferricorn::dispatcher::{pick, Load, Pick};
use ferricorn::guard::{GuardLimits, Http1Guard};
use ferricorn::net::ConnInfo;
use ferricorn::normal_path::NormalPath;
use ferricorn::proxy::forward_headers::{Client, RealIp};
use ferricorn::proxy::{build_response, request_head, RequestStart, Stamp};
use ferricorn::static_files::StaticFiles;
use ferricorn::wire::{self, Frame, RequestHead, ResponseHead, Scheme};
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Duration;

/// The 10 header fields of a typical browser-ish GET (host first, as sent).
const HEADERS: [(&str, &str); 10] = [
    ("host", "127.0.0.1:8101"),
    (
        "user-agent",
        "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    ),
    (
        "accept",
        "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    ),
    ("accept-language", "en-US,en;q=0.5"),
    ("accept-encoding", "gzip, deflate, br"),
    ("connection", "keep-alive"),
    ("cookie", "sessionid=8f1c2a9e0b7d4c3f; csrftoken=Zq3X9aB7"),
    ("upgrade-insecure-requests", "1"),
    ("cache-control", "max-age=0"),
    ("x-forwarded-for", "203.0.113.7"),
];

fn parts(uri: &str) -> http::request::Parts {
    let mut b = http::Request::builder().method("GET").uri(uri);
    for (n, v) in HEADERS {
        b = b.header(n, v);
    }
    b.body(()).unwrap().into_parts().0
}

fn conn_info() -> ConnInfo {
    ConnInfo {
        peer: Some("127.0.0.1:51234".parse::<SocketAddr>().unwrap()),
        local: Some("127.0.0.1:8101".parse::<SocketAddr>().unwrap()),
        scheme: Scheme::Http,
    }
}

/// A RequestHead as the front builds it for `GET /hello?name=x` (connection dropped).
fn typical_request_head() -> RequestHead {
    let p = parts("/hello?name=x");
    let conn = conn_info();
    let client = RealIp::default().resolve(&p.headers, &conn).unwrap();
    request_head(&p, &conn, None, &stamp(client))
}

/// A request id, start time and client as the front makes them.
fn stamp(client: Client) -> Stamp {
    Stamp {
        request_id: Bytes::from_static(b"01JDX4T7Q2W5N8ZC3M6V9B0KFH"),
        request_start: RequestStart::Received(std::time::SystemTime::now()),
        client,
    }
}

fn hello_response_head() -> ResponseHead {
    ResponseHead {
        status: 200,
        headers: vec![
            (
                Bytes::from_static(b"Content-Type"),
                Bytes::from_static(b"text/plain"),
            ),
            (
                Bytes::from_static(b"Content-Length"),
                Bytes::from_static(b"13"),
            ),
        ],
    }
}

fn bench_wire(c: &mut Criterion) {
    let head = typical_request_head();
    let req = Frame::RequestHead(Box::new(head.clone()));
    let mut g = c.benchmark_group("wire");
    let mut out = BytesMut::with_capacity(4096);
    g.bench_function("encode_request_head", |b| {
        b.iter(|| {
            out.clear();
            wire::encode(7, black_box(&req), &mut out);
            black_box(out.len())
        })
    });
    out.clear();
    wire::encode(7, &req, &mut out);
    wire::encode(7, &Frame::RequestEnd, &mut out);
    let req_bytes = out.split().freeze();
    eprintln!(
        "[wire] request head {} headers, head+end frames = {} bytes",
        head.headers.len(),
        req_bytes.len()
    );
    g.bench_function("decode_request_head_and_end", |b| {
        b.iter_batched_ref(
            || BytesMut::from(&req_bytes[..]),
            |buf| {
                let a = wire::decode(buf).unwrap().unwrap();
                let e = wire::decode(buf).unwrap().unwrap();
                black_box((a, e))
            },
            BatchSize::SmallInput,
        )
    });

    let resp = [
        Frame::ResponseHead(Box::new(hello_response_head())),
        Frame::ResponseBody(Bytes::from_static(b"Hello, World!")),
        Frame::ResponseEnd,
    ];
    let mut out = BytesMut::with_capacity(4096);
    g.bench_function("encode_response_head_body13_end", |b| {
        b.iter(|| {
            out.clear();
            for f in black_box(&resp) {
                wire::encode(7, f, &mut out);
            }
            black_box(out.len())
        })
    });
    out.clear();
    for f in &resp {
        wire::encode(7, f, &mut out);
    }
    let resp_bytes = out.split().freeze();
    g.bench_function("decode_response_head_body13_end", |b| {
        b.iter_batched_ref(
            || BytesMut::from(&resp_bytes[..]),
            |buf| {
                let h = wire::decode(buf).unwrap().unwrap();
                let d = wire::decode(buf).unwrap().unwrap();
                let e = wire::decode(buf).unwrap().unwrap();
                black_box((h, d, e))
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn bench_headers(c: &mut Criterion) {
    let p = parts("/hello?name=x");
    let conn = conn_info();
    let real_ip = RealIp::default();
    let mut g = c.benchmark_group("proxy");
    g.bench_function("forward_headers_resolve", |b| {
        b.iter(|| real_ip.resolve(black_box(&p.headers), &conn).unwrap())
    });
    let stamp = stamp(real_ip.resolve(&p.headers, &conn).unwrap());
    g.bench_function("request_head_10_headers", |b| {
        b.iter(|| request_head(black_box(&p), &conn, None, &stamp))
    });
    let head = hello_response_head();
    g.bench_function("build_response_2_headers", |b| {
        b.iter_batched(
            || head.clone(),
            |h| build_response(h).ok().unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn bench_static(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("1k.bin"), vec![b'x'; 1024]).unwrap();
    let mount = StaticMount {
        url: "/static/".into(),
        dir: dir.path().to_owned(),
        cache_control: Some("public, max-age=60".into()),
        index: "index.html".into(),
        precompressed: false,
        fallthrough: false,
        dotfiles: false,
        internal: false,
        immutable: None,
        headers: Vec::new(),
    };
    // The defaults of [static_cache].
    let cache = FileCache {
        max_bytes: 64 * 1024 * 1024,
        max_entries: 10_000,
        max_file_size: 1024 * 1024,
        revalidate: Duration::from_millis(1000),
    };
    let sf = StaticFiles::new(&[mount], &cache, false).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let req = parts("/static/1k.bin");
    let path = NormalPath::parse(req.uri.path().as_bytes()).unwrap();
    let id = sf.route(&path).unwrap();
    // First request fills the cache through ServeDir.
    let first = rt.block_on(sf.serve(id, &path, &req));
    assert_eq!(first.status(), 200);
    let (hits0, _) = sf.cache_stats();
    let mut g = c.benchmark_group("static");
    g.bench_function("route", |b| {
        b.iter(|| {
            let path = NormalPath::parse(black_box(b"/static/1k.bin")).unwrap();
            sf.route(&path)
        })
    });
    g.bench_function("serve_cached_1k", |b| {
        b.iter(|| rt.block_on(sf.serve(id, &path, black_box(&req))))
    });
    g.finish();
    let (hits, misses) = sf.cache_stats();
    eprintln!(
        "[static] cache hits during bench {} (misses {misses})",
        hits - hits0
    );
}

fn bench_dispatch(c: &mut Criterion) {
    let mut g = c.benchmark_group("dispatcher");
    let load = |(in_flight, room): (usize, usize)| Load {
        in_flight,
        room,
        threads: room,
        local: in_flight % 2 == 0,
    };
    let two: Vec<Load> = [(3, 4), (1, 4)].into_iter().map(load).collect();
    g.bench_function("pick_2_workers", |b| {
        b.iter(|| pick(black_box(&two).iter().copied(), 0, 2048))
    });
    let eight: Vec<Load> = (0..8).map(|i| load(((i * 5) % 8, 8))).collect();
    g.bench_function("pick_8_workers", |b| {
        b.iter(|| pick(black_box(&eight).iter().copied(), 0, 2048))
    });
    let full: Vec<Load> = [(4, 4), (4, 4)].into_iter().map(load).collect();
    assert_eq!(pick(full.iter().copied(), 0, 2048), Pick::Wait);
    g.bench_function("pick_2_workers_full", |b| {
        b.iter(|| pick(black_box(&full).iter().copied(), 3, 2048))
    });
    g.finish();
}

fn bench_guard(c: &mut Criterion) {
    let mut head = String::from("GET /hello?name=x HTTP/1.1\r\n");
    for (n, v) in HEADERS.iter().take(6) {
        // 302 bytes in all
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let head = head.into_bytes();
    let mut g = c.benchmark_group("guard");
    let mut guard = Http1Guard::new(GuardLimits::default());
    let mut out = BytesMut::with_capacity(4096);
    // Keep-alive: one guard sees the same head again and again.
    guard.feed(&head, &mut out).unwrap();
    assert_eq!(&out[..], &head[..]);
    let name = format!("feed_get_head_{}_bytes", head.len());
    g.bench_function(&name, |b| {
        b.iter(|| {
            out.clear();
            guard.feed(black_box(&head), &mut out).unwrap();
            black_box(out.len())
        })
    });
    // The same head split over two reads (the second read completes it).
    let split = head.len() / 2;
    g.bench_function("feed_get_head_in_2_reads", |b| {
        b.iter(|| {
            out.clear();
            guard.feed(black_box(&head[..split]), &mut out).unwrap();
            guard.feed(black_box(&head[split..]), &mut out).unwrap();
            black_box(out.len())
        })
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_wire, bench_headers, bench_static, bench_dispatch, bench_guard
}
criterion_main!(benches);
