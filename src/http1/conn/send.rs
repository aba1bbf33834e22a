//! The response on the wire: its head (`encode`), then its body framed as the head
//! says (length, chunked, close-delimited), while the connection keeps feeding the
//! request body and watching the client (`Conn::poll_side`).

use super::{Conn, Reading};
use crate::http1::encode::{self, Answering, BodyLength, Encoded, Framing};
use crate::respond::BoxError;
use bytes::Bytes;
use http::{Response, StatusCode};
use std::future::poll_fn;
use std::io;
use std::pin::pin;
use std::task::Poll;
use tokio::io::{AsyncRead, AsyncWrite};

/// A response body chunk up to this size is copied behind the head (one write);
/// a larger one is written on its own.
const COPY_UP_TO: usize = 16 * 1024;

/// What answers a response whose framing fields contradict its body.
const BROKEN_RESPONSE: &[u8] =
    b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

impl<T: AsyncRead + AsyncWrite + crate::guard::client_close::PeerEnded + Unpin> Conn<T> {
    /// Writes the response: its head, then its body framed as the head says.
    pub(super) async fn respond<B>(
        &mut self,
        resp: Response<B>,
        answering: Answering<'_>,
        reading: &mut Reading,
    ) -> io::Result<(StatusCode, Encoded)>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let (mut parts, body) = resp.into_parts();
        let length = BodyLength::of(&body);
        self.out.clear();
        let encoded = encode::encode_head(
            &mut self.out,
            answering,
            parts.status,
            &mut parts.headers,
            length,
        )
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "response refused");
            self.out.clear();
            self.out.extend_from_slice(BROKEN_RESPONSE);
            Encoded {
                framing: Framing::Length(0),
                last: true,
            }
        });
        match encoded.framing {
            Framing::Length(0) => self.send_out().await?,
            framing => self.send_body(body, framing, reading).await?,
        }
        Ok((parts.status, encoded))
    }

    async fn send_out(&mut self) -> io::Result<()> {
        self.io.write_all(&self.out).await?;
        self.out.clear();
        self.io.flush().await
    }

    /// The body after the head (which waits in `out` for the first chunk, so a
    /// small answer is one write).
    async fn send_body<B>(
        &mut self,
        body: B,
        framing: Framing,
        reading: &mut Reading,
    ) -> io::Result<()>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let mut body = pin!(body);
        let mut left = match framing {
            Framing::Length(n) => n,
            _ => u64::MAX,
        };
        let mut probe = None;
        loop {
            let flush_first = !self.out.is_empty();
            let frame = poll_fn(|cx| match body.as_mut().poll_frame(cx) {
                Poll::Ready(f) => Poll::Ready(Ok(f)),
                Poll::Pending if flush_first => Poll::Ready(Err(false)),
                Poll::Pending => self.poll_side(cx, reading, &mut probe).map(|()| Err(true)),
            })
            .await;
            let frame = match frame {
                Ok(f) => f,
                Err(false) => {
                    self.send_out().await?;
                    continue;
                }
                Err(true) => return Err(io::ErrorKind::ConnectionAborted.into()),
            };
            let data = match frame {
                None => break,
                Some(Err(e)) => {
                    let e: BoxError = e.into();
                    tracing::debug!(error = %e, "response body failed");
                    return Err(io::Error::other("response body failed"));
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(d) if !d.is_empty() => d,
                    _ => continue,
                },
            };
            let mut data = data;
            if framing == Framing::Chunked {
                let mut line = [0; 18];
                self.out
                    .extend_from_slice(encode::chunk_size_line(data.len(), &mut line));
            } else if (data.len() as u64) > left {
                // More than its length said: hyper stops there too.
                data.truncate(left as usize);
            }
            left -= data.len() as u64;
            self.write_chunk(data).await?;
            if framing == Framing::Chunked {
                self.out.extend_from_slice(b"\r\n");
            }
            if left == 0 {
                break;
            }
        }
        if framing == Framing::Chunked {
            self.out.extend_from_slice(encode::LAST_CHUNK);
        }
        if matches!(framing, Framing::Length(_)) && left != 0 {
            return Err(io::Error::other("response body shorter than its length"));
        }
        self.send_out().await
    }

    /// `out` (head, chunk line) and `data`: copied together when small, else two writes.
    async fn write_chunk(&mut self, data: Bytes) -> io::Result<()> {
        if data.len() <= COPY_UP_TO {
            self.out.extend_from_slice(&data);
            return Ok(());
        }
        if !self.out.is_empty() {
            self.io.write_all(&self.out).await?;
            self.out.clear();
        }
        self.io.write_all(&data).await
    }
}
