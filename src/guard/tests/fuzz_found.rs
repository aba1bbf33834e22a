//! Requests the differential fuzz (guard/fuzz.rs) found the guard accepting while
//! hyper refuses them: harmless while hyper read every request after the guard (its
//! 400), a hole once our own codec reads what the guard accepts.

use super::*;

/// `http::Uri` (so hyper) and nginx refuse a percent-encoded host in the target:
/// the guard let it through to hyper's 400; a codec trusting the guard would have
/// served a host no other reader spells the same.
#[test]
fn a_percent_encoded_host_in_the_target_is_refused() {
    for raw in [
        "GET http://ex%41mple/ HTTP/1.1\r\n\r\n",
        "GET https://u:p@ex%41mple:8080/x HTTP/1.1\r\n\r\n",
        "CONNECT ex%41mple:443 HTTP/1.1\r\n\r\n",
    ] {
        assert_eq!(refused(raw.as_bytes()), Reject::BadRequest, "{raw}");
    }
    // Where `http::Uri` takes percent-encoding, so does the guard; a Host field is
    // not a target (hyper never parsed it).
    let target = "http://u%41:p@a.example/%41?%41";
    assert!(http::Uri::try_from(target).is_ok());
    passes(format!("GET {target} HTTP/1.1\r\nHost: ex%41mple\r\n\r\n").as_bytes());
}

/// hyper reads the last element of the last Transfer-Encoding line, so an empty one
/// (`chunked, `, or an empty second line) and a value that is not ASCII were its
/// 400 (nginx takes `chunked` alone); the guard read them as chunked.
#[test]
fn transfer_encoding_hyper_could_not_read_is_refused() {
    for te in [
        "Transfer-Encoding: chunked, ",
        "Transfer-Encoding: chunked,",
        "Transfer-Encoding: gzip, chunked ,\t",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: ",
        "Transfer-Encoding: id;en\u{d7}tity, chunked",
        "Transfer-Encoding: gzip;q=\"\u{e9}\", chunked",
    ] {
        let raw = format!("POST / HTTP/1.1\r\n{te}\r\n\r\n0\r\n\r\n");
        assert_eq!(refused(&latin1(&raw)), Reject::BadRequest, "{te:?}");
    }
    for te in [
        "Transfer-Encoding: , chunked",
        "Transfer-Encoding: gzip,,chunked",
    ] {
        passes(format!("POST / HTTP/1.1\r\n{te}\r\n\r\n0\r\n\r\n").as_bytes());
    }
}
