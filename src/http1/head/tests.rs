//! The head the codec builds from the guard's offsets: gunicorn's corpus read as
//! gunicorn read it, whatever the read boundaries, and the facts hyper derives.

use super::*;
use crate::guard::{GuardLimits, Http1Guard};
use crate::http1::inbox::{Inbox, Input};
use crate::http1::testing::{parse_requests, parse_requests_in_reads, ParsedRequest};

const CORPUS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/conformance/gunicorn-requests"
);

fn latin1(s: &str) -> Vec<u8> {
    s.chars().map(|c| c as u32 as u8).collect()
}

fn cases() -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(format!("{CORPUS}/cases.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["config_dependent"] != true && c["superseded"].is_null())
        .cloned()
        .collect()
}

/// What gunicorn read (field names upper-cased by it).
fn expected(r: &serde_json::Value) -> ParsedRequest {
    use base64::Engine;
    let fields = r["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                latin1(h[0].as_str().unwrap()),
                latin1(h[1].as_str().unwrap()),
            )
        })
        .collect();
    let body = base64::engine::general_purpose::STANDARD
        .decode(r["body_b64"].as_str().unwrap())
        .unwrap();
    let version = match r["version"].as_str().unwrap() {
        "HTTP/1.0" => (1, 0),
        _ => (1, 1),
    };
    ParsedRequest {
        method: r["method"].as_str().unwrap().into(),
        target: latin1(r["uri"].as_str().unwrap()),
        version,
        fields,
        body,
    }
}

/// Every split of the stream into reads gives the same requests.
fn parse_every_way(raw: &[u8]) -> Vec<ParsedRequest> {
    let whole = parse_requests(raw, GuardLimits::default()).expect("accepted");
    let bytewise: Vec<&[u8]> = raw.chunks(1).collect();
    assert_eq!(
        parse_requests_in_reads(&bytewise, GuardLimits::default()).unwrap(),
        whole
    );
    for n in [2, 3, 7, 64] {
        let pieces: Vec<&[u8]> = raw.chunks(n).collect();
        assert_eq!(
            parse_requests_in_reads(&pieces, GuardLimits::default()).unwrap(),
            whole
        );
    }
    whole
}

#[test]
fn corpus_valid_cases_read_as_gunicorn_read_them() {
    let mut count = 0;
    for case in cases().iter().filter(|c| c["kind"] == "valid") {
        let id = case["id"].as_str().unwrap();
        let raw = std::fs::read(format!("{CORPUS}/{}", case["raw"].as_str().unwrap())).unwrap();
        let got = parse_every_way(&raw);
        let want = case["requests"].as_array().unwrap();
        // A truncated last body is no complete request (gunicorn reads what came).
        let complete = want.len() - usize::from(case["truncated_body"].is_object());
        assert_eq!(got.len(), complete, "{id}: requests");
        for (g, w) in got.iter().zip(want) {
            let want = expected(w);
            assert_eq!(g.method, want.method, "{id}");
            assert_eq!(g.target, want.target, "{id}");
            assert_eq!(g.version, want.version, "{id}");
            // gunicorn drops names with `_` (the front does too, after the codec).
            let upper: Vec<_> = g
                .fields
                .iter()
                .filter(|(n, _)| !n.contains(&b'_'))
                .map(|(n, v)| (n.to_ascii_uppercase(), v.clone()))
                .collect();
            assert_eq!(upper, want.fields, "{id}: fields");
            assert_eq!(g.body, want.body, "{id}: body");
        }
        count += 1;
    }
    assert_eq!(count, 50);
}

#[test]
fn corpus_invalid_cases_are_refused_or_incomplete() {
    for case in cases().iter().filter(|c| c["kind"] == "invalid") {
        let id = case["id"].as_str().unwrap();
        if id.starts_with("invalid/pp_") {
            continue;
        }
        let raw = std::fs::read(format!("{CORPUS}/{}", case["raw"].as_str().unwrap())).unwrap();
        match parse_requests(&raw, GuardLimits::default()) {
            Err(_) => {}
            Ok(reqs) => assert!(reqs.is_empty(), "{id}: {reqs:?}"),
        }
    }
}

/// The one head of `raw`, as the codec's inbox gets it.
fn head_of(raw: &str) -> RequestHead {
    let mut guard = Http1Guard::new(GuardLimits::default());
    let mut inbox = Inbox::default();
    guard.feed(raw.as_bytes(), &mut inbox).unwrap();
    match inbox.pop() {
        Some(Input::Head(h)) => h,
        other => panic!("{other:?}"),
    }
}

#[test]
fn keep_alive_follows_hypers_reading_of_version_and_connection() {
    let cases = [
        ("GET / HTTP/1.1\r\n\r\n", true),
        ("GET / HTTP/1.1\r\nConnection: close\r\n\r\n", false),
        (
            "GET / HTTP/1.1\r\nConnection: Keep-Alive, CLOSE\r\n\r\n",
            false,
        ),
        (
            "GET / HTTP/1.1\r\nConnection: close\r\nConnection: keep-alive\r\n\r\n",
            false,
        ),
        ("GET / HTTP/1.1\r\nConnection: closed\r\n\r\n", true),
        ("GET / HTTP/1.0\r\n\r\n", false),
        ("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true),
        (
            "GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n",
            false,
        ),
        (
            "GET / HTTP/1.0\r\nconnection: x, \t keep-alive\r\n\r\n",
            true,
        ),
    ];
    for (raw, keep) in cases {
        assert_eq!(head_of(raw).keep_alive(), keep, "{raw:?}");
    }
}

#[test]
fn facts_of_a_head() {
    let h = head_of("POST /u?a=1 HTTP/1.1\r\nHost: a.example:8080\r\nExpect: 100-Continue\r\nContent-Length: 12\r\n\r\n");
    assert_eq!(h.method(), b"POST");
    assert_eq!(h.target(), b"/u?a=1");
    assert_eq!(h.host(), Some(&b"a.example:8080"[..]));
    assert!(h.expect_continue());
    assert_eq!(h.framing(), Framing::Length(12));
    let h = head_of("POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n");
    assert!(!h.expect_continue(), "no interim response in HTTP/1.0");
    assert_eq!(h.framing(), Framing::None);
    assert_eq!(h.host(), None);
    let h = head_of("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
    assert_eq!(h.framing(), Framing::Chunked);
    let ws = "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nContent-Length: 3\r\n\r\n";
    let h = head_of(ws);
    assert!(h.is_upgrade());
    assert_eq!(
        h.framing(),
        Framing::None,
        "nothing after a candidate is HTTP"
    );
}

#[test]
fn the_request_shares_the_heads_bytes_and_keeps_the_clients_target() {
    let h = head_of("GET /a%20b?q=\"x\"&<y> HTTP/1.1\r\nX-A:  one \r\nx-a: two\r\nHost: h\r\n\r\n");
    let req = h.to_request(()).unwrap();
    assert_eq!(req.method(), Method::GET);
    assert_eq!(req.uri(), "/a%20b?q=%22x%22&%3Cy%3E");
    let raw = req.extensions().get::<RawTarget>().unwrap();
    assert_eq!(&raw.0[..], b"/a%20b?q=\"x\"&<y>");
    let all: Vec<_> = req.headers().get_all("x-a").iter().collect();
    assert_eq!(all, ["one", "two"]);
    assert_eq!(req.headers()["host"], "h");
    let h = head_of("CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\r\n");
    let req = h.to_request(()).unwrap();
    assert_eq!(req.method(), Method::CONNECT);
    assert_eq!(req.uri().authority().unwrap().as_str(), "[::1]:443");
    assert!(req.extensions().get::<RawTarget>().is_some());
    let h = head_of("OPTIONS * HTTP/1.0\r\n\r\n");
    let req = h.to_request(()).unwrap();
    assert_eq!(
        (req.uri().to_string().as_str(), req.version()),
        ("*", Version::HTTP_10)
    );
    assert!(req.extensions().get::<RawTarget>().is_none());
}

#[test]
fn pipelined_heads_and_bodies_come_in_order_and_the_field_list_is_reused() {
    let raw = "POST /1 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc\
               POST /2 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nde\r\n1;x=y\r\nf\r\n0\r\nT: 1\r\n\r\n\
               GET /3 HTTP/1.1\r\n\r\n";
    let got = parse_every_way(raw.as_bytes());
    let summary: Vec<_> = got
        .iter()
        .map(|r| (r.target.clone(), r.body.clone()))
        .collect();
    assert_eq!(
        summary,
        [
            (b"/1".to_vec(), b"abc".to_vec()),
            (b"/2".to_vec(), b"def".to_vec()),
            (b"/3".to_vec(), vec![])
        ]
    );
    let mut guard = Http1Guard::new(GuardLimits::default());
    let mut inbox = Inbox::default();
    guard
        .feed(b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\n\r\n", &mut inbox)
        .unwrap();
    let Some(Input::Head(h)) = inbox.pop() else {
        panic!()
    };
    let fields = h.into_fields();
    let ptr = fields.as_ptr();
    guard.recycle_fields(fields);
    guard
        .feed(b"GET / HTTP/1.1\r\nC: 3\r\n\r\n", &mut inbox)
        .unwrap();
    let Some(Input::Head(h)) = inbox.pop() else {
        panic!()
    };
    assert_eq!(h.fields().collect::<Vec<_>>(), [(&b"C"[..], &b"3"[..])]);
    let fields = h.into_fields();
    assert_eq!(fields.as_ptr(), ptr, "the list was reused");
}

#[test]
fn every_visible_byte_of_a_path_or_query_reaches_the_front_as_sent() {
    // The `Uri` must parse (the front routes on it); when it is not the client's
    // target byte for byte, `RawTarget` is (the app's RAW_URI, PATH_INFO).
    for b in (0x21u8..=0x7e).filter(|&b| b != b'#') {
        let c = char::from(b);
        let targets = [
            format!("/p{c}x?q{c}y"),
            format!("http://h/p{c}x?q{c}y"),
            format!("/p?\"#{c}"),
        ];
        for target in targets {
            let raw = format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n");
            let req = head_of(&raw)
                .to_request(())
                .unwrap_or_else(|e| panic!("{target}: {e}"));
            match req.extensions().get::<RawTarget>() {
                Some(RawTarget(t)) => assert_eq!(&t[..], target.as_bytes()),
                None => assert_eq!(req.uri().to_string(), target),
            }
        }
    }
}
