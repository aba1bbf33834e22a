//! The codec over a whole byte stream, for tests outside the crate (the differential
//! fuzz test against hyper, `tests/`): every complete request the guard accepts,
//! decoded as the front would get it. Not part of the server's API.

use super::inbox::{Inbox, Input};
use crate::guard::{GuardLimits, Http1Guard, Reject};

/// One complete request as the codec read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedRequest {
    pub method: String,
    /// The request-target, byte for byte.
    pub target: Vec<u8>,
    /// (1, 0) or (1, 1).
    pub version: (u8, u8),
    /// Every field in order: the name as sent, the value without surrounding whitespace.
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
    /// The body, de-chunked (trailers dropped).
    pub body: Vec<u8>,
}

/// Every complete request of `bytes`, fed to the guard as one read; `Err` when the
/// guard refuses any part of the stream. A request whose head or body is unfinished
/// is left out; the stream ends, as the connection does, after a request that does
/// not keep the connection alive (HTTP/1.0 without keep-alive, `Connection: close`)
/// and after a WebSocket candidate's head.
pub fn parse_requests(bytes: &[u8], limits: GuardLimits) -> Result<Vec<ParsedRequest>, Reject> {
    parse_requests_in_reads(&[bytes], limits)
}

/// [`parse_requests`] with the stream fed as these separate reads (split points).
pub fn parse_requests_in_reads(
    reads: &[&[u8]],
    limits: GuardLimits,
) -> Result<Vec<ParsedRequest>, Reject> {
    let mut guard = Http1Guard::new(limits);
    let mut inbox = Inbox::default();
    for read in reads {
        guard.feed(read, &mut inbox)?;
    }
    let mut done = Vec::new();
    let mut open: Option<ParsedRequest> = None;
    let mut last = false;
    while let Some(input) = inbox.pop() {
        match input {
            Input::Head(head) => {
                last = !head.keep_alive() || head.is_upgrade();
                let req = ParsedRequest {
                    method: String::from_utf8_lossy(head.method()).into_owned(),
                    target: head.target().to_vec(),
                    version: if head.version() == http::Version::HTTP_10 {
                        (1, 0)
                    } else {
                        (1, 1)
                    },
                    fields: head
                        .fields()
                        .map(|(n, v)| (n.to_vec(), v.to_vec()))
                        .collect(),
                    body: Vec::new(),
                };
                match head.framing() {
                    crate::guard::Framing::None => done.push(req),
                    _ => open = Some(req),
                }
            }
            Input::End => done.extend(open.take()),
            Input::Data(d) => {
                if let Some(req) = &mut open {
                    req.body.extend_from_slice(&d);
                }
            }
        }
        if last && open.is_none() {
            break;
        }
    }
    Ok(done)
}
