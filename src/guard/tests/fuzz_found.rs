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
