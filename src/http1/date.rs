//! The `Date` field of every HTTP/1 response (RFC 9110 §6.6.1), formatted once a
//! second per front thread, as hyper does.

use std::cell::RefCell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `Sun, 06 Nov 1994 08:49:37 GMT`
pub(crate) const LEN: usize = 29;

struct Cached {
    bytes: [u8; LEN],
    /// The second (since the epoch) `bytes` says.
    second: u64,
}

thread_local! {
    static CACHED: RefCell<Cached> = const { RefCell::new(Cached { bytes: [0; LEN], second: u64::MAX }) };
}

/// Appends the current date, as a field value.
pub(crate) fn extend(dst: &mut Vec<u8>) {
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHED.with_borrow_mut(|c| {
        if c.second != second {
            let at = UNIX_EPOCH + Duration::from_secs(second);
            c.bytes
                .copy_from_slice(httpdate::fmt_http_date(at).as_bytes());
            c.second = second;
        }
        dst.extend_from_slice(&c.bytes);
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_date_is_an_imf_fixdate_of_now() {
        let mut v = Vec::new();
        super::extend(&mut v);
        let s = std::str::from_utf8(&v).unwrap();
        assert_eq!(s.len(), super::LEN);
        let parsed = httpdate::parse_http_date(s).unwrap();
        let now = std::time::SystemTime::now();
        assert!(now.duration_since(parsed).unwrap() < std::time::Duration::from_secs(2));
        assert!(s.ends_with(" GMT"));
    }
}
