//! A worker's name outside the master: 128 random bits drawn when its connection is
//! made, and what a sticky route's cookie carries (`proxy::sticky`). Random rather
//! than derived from the pid, so a token tells a client nothing about the machine
//! and can name nothing but a worker serving now: a forged, stale or foreign one
//! matches no worker and means "no preference". Any client may learn a live
//! worker's token by asking the route (that is the point of the cookie), so the
//! token is no secret and is compared plainly.

use std::fmt;

/// Hex digits in a token.
pub(crate) const TOKEN_LEN: usize = 32;

/// One worker connection's random name: a new worker (a restart, a reload) gets a
/// new one, so cookies naming the old one no longer match.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct WorkerId(u128);

impl WorkerId {
    /// A fresh name from the system's random source (the one rustls draws its
    /// keys from).
    pub(crate) fn random() -> Self {
        let mut bytes = [0u8; 16];
        let rng = rustls::crypto::ring::default_provider().secure_random;
        if rng.fill(&mut bytes).is_err() {
            // The kernel's source does not fail once the system has booted; a name
            // from the clock is still unique per worker, only guessable, which
            // lets a client pin itself to a worker it could reach anyway.
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            bytes = now.to_le_bytes();
        }
        WorkerId(u128::from_le_bytes(bytes))
    }

    /// The cookie value: 32 lowercase hex digits.
    pub(crate) fn token(self) -> String {
        format!("{:032x}", self.0)
    }

    /// A cookie value back into a name: exactly 32 lowercase hex digits, the one
    /// spelling `token` writes; anything else is no name.
    pub(crate) fn from_token(token: &[u8]) -> Option<Self> {
        let well_formed = token.len() == TOKEN_LEN
            && token
                .iter()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b));
        if !well_formed {
            return None;
        }
        let text = std::str::from_utf8(token).ok()?;
        u128::from_str_radix(text, 16).ok().map(WorkerId)
    }
}

/// Short, for logs: the first 8 hex digits.
impl fmt::Debug for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WorkerId({:08x}…)", self.0 >> 96)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_reads_back_as_the_same_worker() {
        let id = WorkerId::random();
        let token = id.token();
        assert_eq!(token.len(), TOKEN_LEN);
        assert_eq!(WorkerId::from_token(token.as_bytes()), Some(id));
        assert_ne!(WorkerId::random(), id, "each worker its own name");
        let zero = WorkerId(0).token();
        assert_eq!(zero, "0".repeat(32), "leading zeros kept");
        assert_eq!(WorkerId::from_token(zero.as_bytes()), Some(WorkerId(0)));
    }

    #[test]
    fn only_the_one_spelling_is_a_token() {
        let token = WorkerId(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef).token();
        let respelled = [
            token.to_uppercase(),
            format!("+{}", &token[1..]),
            format!("{token}0"),
            token[1..].to_string(),
            format!(" {}", &token[1..]),
            format!("\"{}\"", &token[2..]),
            format!("0x{}", &token[2..]),
            format!("{}g", &token[1..]),
            String::new(),
        ];
        for bad in respelled {
            assert_eq!(WorkerId::from_token(bad.as_bytes()), None, "{bad:?}");
        }
        assert_eq!(WorkerId::from_token(&[0xff; TOKEN_LEN]), None);
    }
}
