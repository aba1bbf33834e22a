//! The cap on a whole request head (`GuardLimits::head`), under the per-line limits.

use super::*;

fn limits(head: usize) -> GuardLimits {
    GuardLimits {
        head,
        ..GuardLimits::default()
    }
}

/// `GET / HTTP/1.1\r\n`, `n` field lines of 100 bytes, the empty line.
fn head_of(n: usize) -> String {
    let field = format!("X: {}\r\n", "v".repeat(100 - 5));
    format!("GET / HTTP/1.1\r\n{}\r\n", field.repeat(n))
}

#[test]
fn the_whole_head_is_capped_inclusively() {
    let raw = head_of(10);
    assert_eq!(check_with(raw.as_bytes(), limits(raw.len())).result, Ok(()));
    let o = check_with(raw.as_bytes(), limits(raw.len() - 1));
    assert_eq!(o.result, Err(Reject::HeaderFieldsTooLarge));
    assert!(o.out.is_empty(), "nothing of a refused head passes");
}

#[test]
fn an_unfinished_head_is_refused_once_it_passes_the_cap() {
    // 98 fields of 8 KiB: each within `field_size`, together 25 times the cap.
    let field = format!("X-F: {}\r\n", "a".repeat(8180));
    let raw = format!("GET / HTTP/1.1\r\nHost: x\r\n{}", field.repeat(98));
    let mut guard = Http1Guard::new(GuardLimits::default());
    let mut out = BytesMut::new();
    let mut fed = 0;
    let refused = raw.as_bytes().chunks(1000).find_map(|c| {
        fed += c.len();
        guard.feed(c, &mut out).err()
    });
    assert_eq!(refused, Some(Reject::HeaderFieldsTooLarge));
    assert!(
        fed <= defaults::REQUEST_HEAD + 1000,
        "refused after {fed} bytes"
    );
    assert!(guard.head.capacity() < 2 * defaults::REQUEST_HEAD);
}

#[test]
fn a_leading_empty_line_and_the_next_request_do_not_count() {
    let raw = head_of(10);
    let cap = limits(raw.len());
    let twice = format!("\r\n{raw}{raw}");
    let o = check_with(twice.as_bytes(), cap);
    assert_eq!((o.result, o.seen), (Ok(()), 2));
}

#[test]
fn the_request_line_limit_still_answers_first() {
    let line = format!("GET /{} HTTP/1.1\r\n", "a".repeat(defaults::REQUEST_LINE));
    assert_eq!(refused(line.as_bytes()), Reject::UriTooLong);
}

/// Found by the differential fuzz (guard/fuzz.rs, property (c)): a request line
/// past both its limit and the head cap got 431 in one read, 414 when cut before its
/// end; a too-long line ending in a bare LF got 400 in one read, 414 or 431 when cut.
/// The limit the bytes cross first answers, wherever the reads end.
#[test]
fn which_limit_refuses_does_not_depend_on_where_reads_end() {
    let line = format!(
        "GET /{} HTTP/1.1\r\n\r\n",
        "a".repeat(defaults::REQUEST_HEAD)
    );
    assert_eq!(refused(line.as_bytes()), Reject::UriTooLong);
    // `--limit-request-line` set above the head cap: the cap comes first.
    let long_lines = GuardLimits {
        request_line: 2 * defaults::REQUEST_HEAD,
        ..GuardLimits::default()
    };
    let o = check_with(line.as_bytes(), long_lines);
    assert_eq!(o.result, Err(Reject::HeaderFieldsTooLarge));
    let bare_lf = format!("GET /{} HTTP/1.1\n\r\n", "a".repeat(defaults::REQUEST_LINE));
    assert_eq!(refused(bare_lf.as_bytes()), Reject::UriTooLong);
    let field = "a".repeat(defaults::REQUEST_FIELD_SIZE);
    let bare_lf = format!("GET / HTTP/1.1\r\nX: {field}\n\r\n");
    assert_eq!(refused(bare_lf.as_bytes()), Reject::HeaderFieldsTooLarge);
}
