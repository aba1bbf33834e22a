use super::*;

fn b(s: &'static [u8]) -> Bytes {
    Bytes::from_static(s)
}

#[test]
fn the_body_comes_in_order_and_the_last_piece_says_no_more() {
    let mut i = Inbox::default();
    assert_eq!(i.take(), Received::Wait);
    i.push(b(b"a"));
    assert_eq!(i.take(), Received::Body(b(b"a"), true));
    i.push(b(b"b"));
    i.end();
    assert_eq!(i.take(), Received::Body(b(b"b"), false));
    assert_eq!(i.take(), Received::Wait, "then only a disconnect");
    i.abort();
    assert_eq!(i.take(), Received::Disconnect);
}

#[test]
fn an_empty_body_is_one_final_message() {
    let mut i = Inbox::default();
    i.push(b(b"x"));
    assert_eq!(i.take(), Received::Body(b(b"x"), true));
    i.end();
    assert_eq!(i.take(), Received::Body(Bytes::new(), false));
    assert_eq!(i.take(), Received::Wait);
}

#[test]
fn the_head_is_checked_and_framing_fields_dropped() {
    let mut r = Response::new(false);
    assert_eq!(r.start(99, vec![]), Err(SendError::Status(99)));
    assert_eq!(r.start(700, vec![]), Err(SendError::Status(700)));
    let bad = vec![(b(b"x y"), b(b"1"))];
    assert!(matches!(r.start(200, bad), Err(SendError::HeaderName(_))));
    let bad = vec![(b(b"x"), b(b"a\r\nSet-Cookie: y"))];
    assert!(matches!(r.start(200, bad), Err(SendError::HeaderValue(_))));
    for ctl in [&b"a\x01b"[..], b"a\x7fb", b"\x1b[31m"] {
        let bad = vec![(b(b"x"), Bytes::copy_from_slice(ctl))];
        assert!(matches!(r.start(200, bad), Err(SendError::HeaderValue(_))));
    }
    assert!(Response::new(false)
        .start(200, vec![(b(b"x"), b(b"a\tb \xe9"))])
        .is_ok());
    let two = vec![
        (b(b"content-length"), b(b"1")),
        (b(b"Content-Length"), b(b"2")),
    ];
    assert_eq!(r.start(200, two), Err(SendError::ConflictingLength));
    let ok = vec![
        (b(b"Transfer-Encoding"), b(b"chunked")),
        (b(b"X-A"), b(b"1")),
    ];
    r.start(201, ok).unwrap();
    assert_eq!(r.start(200, vec![]), Err(SendError::Twice));
    assert!(!r.head_sent(), "held for the body");
    let mut out = vec![];
    r.body(Bytes::new(), true, &mut out).unwrap();
    let Frame::ResponseHead(head) = &out[0] else {
        panic!("{out:?}")
    };
    assert_eq!(head.headers, vec![(b(b"x-a"), b(b"1"))]);
    assert!(r.head_sent());
}

#[test]
fn the_declared_length_is_kept_both_ways() {
    let mut out = vec![];
    let mut r = Response::new(false);
    assert_eq!(r.body(b(b"x"), true, &mut out), Err(SendError::NotStarted));
    r.start(200, vec![(b(b"content-length"), b(b"3"))]).unwrap();
    r.body(b(b"ab"), false, &mut out).unwrap();
    assert!(matches!(out.last(), Some(Frame::Abort(_))), "short: cut");
    let mut r = Response::new(false);
    r.start(200, vec![(b(b"content-length"), b(b"1"))]).unwrap();
    out.clear();
    assert_eq!(r.body(b(b"ab"), true, &mut out), Err(SendError::TooLong));
    assert!(matches!(out.last(), Some(Frame::Abort(_))));
    assert!(r.done());
}

#[test]
fn big_bodies_go_in_chunks_and_head_requests_get_none() {
    let mut out = vec![];
    let mut r = Response::new(false);
    r.start(200, vec![]).unwrap();
    r.body(Bytes::from(vec![7; CHUNK * 2 + 1]), false, &mut out)
        .unwrap();
    assert_eq!(out.len(), 5, "head, three chunks, end");
    assert_eq!(out[4], Frame::ResponseEnd);
    let mut out = vec![];
    let mut r = Response::new(true);
    r.start(200, vec![(b(b"content-length"), b(b"5"))]).unwrap();
    r.body(b(b"hello"), false, &mut out).unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(out[1], Frame::ResponseEnd);
}

#[test]
fn the_path_is_decoded_after_the_root_path() {
    assert_eq!(scope_path("", b"/a%20b"), "/a b");
    assert_eq!(scope_path("/app", b"/caf%C3%A9"), "/app/caf\u{e9}");
    assert_eq!(scope_path("", b"/%FF"), "/\u{fffd}");
}

#[test]
fn a_head_past_the_wire_limit_is_refused() {
    let mut r = Response::new(false);
    let big = Bytes::from(vec![b'a'; 64 * 1024]);
    let fields = (0..20).map(|_| (b(b"x-big"), big.clone())).collect();
    assert_eq!(r.start(200, fields), Err(SendError::HeadTooLarge));
    assert!(
        !r.started(),
        "a refused head starts nothing: the app may still send a 500"
    );
}

#[test]
fn buffered_chunks_go_together_up_to_a_megabyte() {
    let mut i = Inbox::default();
    for _ in 0..20 {
        i.push(Bytes::from(vec![1; CHUNK]));
    }
    i.end();
    let Received::Body(first, true) = i.take() else {
        panic!()
    };
    assert_eq!(first.len(), MESSAGE_MAX);
    let Received::Body(rest, false) = i.take() else {
        panic!()
    };
    assert_eq!(rest.len(), 20 * CHUNK - MESSAGE_MAX);
}

#[test]
fn the_body_taken_is_credited_in_batches_of_half_the_window() {
    let mut i = Inbox::default();
    let chunk = Bytes::from(vec![0u8; wire::CHUNK]);
    assert_eq!(i.credit_due(), None);
    i.push(chunk.clone());
    assert!(matches!(i.take(), Received::Body(_, true)));
    assert_eq!(i.credit_due(), None, "64 KiB: below the batch");
    i.push(chunk.clone());
    assert!(matches!(i.take(), Received::Body(_, true)));
    assert_eq!(i.credit_due(), Some(CREDIT_BATCH as u32));
    assert_eq!(i.credit_due(), None, "credited once");
    // Buffered but not taken: nothing credited (the master holds the rest).
    for _ in 0..4 {
        i.push(chunk.clone());
    }
    assert_eq!(i.credit_due(), None);
    // Taken together (one message): credited together.
    assert!(matches!(i.take(), Received::Body(b, true) if b.len() == 4 * wire::CHUNK));
    assert_eq!(i.credit_due(), Some(4 * wire::CHUNK as u32));
    // Once the body is whole, the master sends no more: no credit.
    i.push(chunk.clone());
    i.push(chunk);
    i.end();
    assert!(matches!(i.take(), Received::Body(_, false)));
    assert_eq!(i.credit_due(), None);
}

#[test]
fn a_pathsend_file_must_have_the_declared_length() {
    let file = |size| {
        Frame::ResponseFile(Box::new(wire::ResponseFile {
            path: b(b"/srv/a"),
            dev: 1,
            ino: 2,
            size,
        }))
    };
    let mut r = Response::new(false);
    r.start(200, vec![(b(b"content-length"), b(b"10"))])
        .unwrap();
    let mut out = Vec::new();
    assert_eq!(
        r.file(file(11), &mut out),
        Err(SendError::FileLength {
            declared: 10,
            size: 11
        })
    );
    assert!(
        out.is_empty(),
        "nothing went out: the app's 500 can still follow"
    );
    r.file(file(10), &mut out).unwrap();
    assert_eq!(out.len(), 2, "the head, then the file");
    let mut r = Response::new(false);
    r.start(200, vec![]).unwrap();
    r.file(file(7), &mut Vec::new()).unwrap();
}
