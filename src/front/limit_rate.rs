//! The app's `X-Accel-Limit-Rate: BYTES`: its response (or the file it names) goes
//! out at that many bytes a second, as nginx's `limit_rate` paces one request:
//! nginx lets `rate * (seconds since the start + 1)` bytes out by each moment (a
//! second's worth at once, then the rate), and so does this body. Body frames are
//! cut to what may go now; the wait is a timer, never a blocked thread.

use crate::respond::{Body, BoxError, Polled};
use bytes::Bytes;
use http::Response;
use std::future::Future;
use std::num::NonZeroU64;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// `resp` with its body paced at `rate` bytes a second.
pub(crate) fn limit(resp: Response<Body>, rate: NonZeroU64) -> Response<Body> {
    resp.map(|inner| {
        Body::new(Paced {
            inner,
            rate: rate.get(),
            start: Instant::now(),
            sent: 0,
            held: Bytes::new(),
            wait: None,
        })
    })
}

struct Paced {
    inner: Body,
    rate: u64,
    start: Instant,
    sent: u64,
    /// Body bytes taken from `inner` and not sent yet.
    held: Bytes,
    wait: Option<Pin<Box<Sleep>>>,
}

/// The smallest piece sent (unless it ends the body): about an eighth of a second's
/// worth, so a slow rate wakes a few times a second, not for every byte.
fn step(rate: u64) -> u64 {
    (rate / 8).clamp(1, 64 * 1024)
}

/// How many bytes may go `elapsed` after the start when `sent` went already, if at
/// least `want`; else how long after the start `want` more may go.
fn allowance(rate: u64, elapsed: Duration, sent: u64, want: u64) -> Result<u64, Duration> {
    let rate = u128::from(rate);
    let earned = rate * (elapsed.as_millis() + 1000) / 1000;
    let ready = u64::try_from(earned)
        .unwrap_or(u64::MAX)
        .saturating_sub(sent);
    if ready >= want {
        return Ok(ready);
    }
    let millis = ((u128::from(sent) + u128::from(want)) * 1000).div_ceil(rate);
    Err(Duration::from_millis(
        u64::try_from(millis.saturating_sub(1000)).unwrap_or(u64::MAX),
    ))
}

impl http_body::Body for Paced {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Polled {
        let this = &mut *self;
        loop {
            if let Some(wait) = &mut this.wait {
                if wait.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.wait = None;
            }
            if !this.held.is_empty() {
                let want = step(this.rate).min(this.held.len() as u64);
                match allowance(this.rate, this.start.elapsed(), this.sent, want) {
                    Ok(n) => {
                        let n = n.min(this.held.len() as u64);
                        this.sent += n;
                        let part = this.held.split_to(n as usize);
                        return Poll::Ready(Some(Ok(http_body::Frame::data(part))));
                    }
                    Err(at) => {
                        let far = Instant::now() + Duration::from_secs(86_400);
                        let until = this.start.checked_add(at).unwrap_or(far);
                        this.wait = Some(Box::pin(tokio::time::sleep_until(until)));
                        continue;
                    }
                }
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => this.held = data,
                    Err(trailers) => return Poll::Ready(Some(Ok(trailers))),
                },
                other => return other,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.held.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let mut hint = self.inner.size_hint();
        let held = self.held.len() as u64;
        hint.set_lower(hint.lower() + held);
        if let Some(upper) = hint.upper() {
            hint.set_upper(upper + held);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn a_seconds_worth_goes_at_once_then_the_rate() {
        let ms = Duration::from_millis;
        assert_eq!(allowance(1000, ms(0), 0, 125), Ok(1000));
        assert_eq!(allowance(1000, ms(0), 1000, 125), Err(ms(125)));
        assert_eq!(allowance(1000, ms(125), 1000, 125), Ok(125));
        assert_eq!(allowance(1000, ms(500), 1000, 125), Ok(500));
        assert_eq!(allowance(10, ms(0), 25, 1), Err(ms(1600)));
        assert_eq!(allowance(u64::MAX, ms(0), 0, 1), Ok(u64::MAX));
        assert_eq!(
            allowance(1, ms(0), u64::MAX, 1).map_err(|d| d > ms(1 << 40)),
            Err(true)
        );
        assert_eq!((step(1), step(1000), step(u64::MAX)), (1, 125, 64 * 1024));
    }

    #[tokio::test]
    async fn the_body_is_paced_and_whole() {
        let body = crate::respond::full(vec![b'x'; 3000]);
        let rate = NonZeroU64::new(2000).unwrap();
        let started = Instant::now();
        let resp = limit(Response::new(body), rate);
        let got = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(got.len(), 3000);
        // 2000 bytes at once, the last 1000 half a second later.
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(490), "{took:?}");
    }
}
