//! What the front tells the app about a request (`Stamp`): fields no client can set,
//! decided once by the front and rendered into the wire head by `request_head`.

use super::forward_headers::Client;
use bytes::Bytes;

/// What the front tells the app about a request, as fields no client can set: its
/// id (`X-Request-Id`), when the front received its head (`X-Request-Start`, read
/// by APMs for the queue time) and who the client is (REMOTE_ADDR, REMOTE_PORT,
/// `wsgi.url_scheme`). A trusted proxy's values are kept, so they follow the
/// request through the whole chain.
#[derive(Debug, Clone)]
pub struct Stamp {
    pub request_id: Bytes,
    pub request_start: RequestStart,
    /// Decided once by the front (`forward_headers::RealIp`).
    pub client: Client,
}

/// `X-Request-Start` as a trusted proxy sent it, or the moment the head arrived,
/// rendered only for a request that goes to a worker.
#[derive(Debug, Clone)]
pub enum RequestStart {
    Passed(Bytes),
    Received(std::time::SystemTime),
}

impl RequestStart {
    /// The field's value: the proxy's, or `t=` and microseconds since the epoch.
    pub(super) fn value(&self) -> Bytes {
        match self {
            RequestStart::Passed(v) => v.clone(),
            RequestStart::Received(at) => {
                let micros = at
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_micros());
                Bytes::from(format!("t={micros}"))
            }
        }
    }
}
