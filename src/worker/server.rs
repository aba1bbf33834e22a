//! The worker's two I/O threads on the master's Unix socket. The reader reads big
//! buffers, splits them into frames and routes each one (heads to the job queue,
//! body/end/abort to that stream's `Body`); the writer takes everything the Python
//! threads queued since its last write and sends it with one `write_all`.

use super::log::wlog;
use super::stream::{Conn, Exit};
use crate::wire::{self, Frame};
use bytes::BytesMut;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;

const READ_BUF: usize = 256 * 1024;

pub fn spawn_reader(conn: Arc<Conn>, sock: UnixStream) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("reader".into())
        .spawn(move || match read_loop(&conn, sock) {
            Some(why) => conn.exit(why),
            None => conn.input_ended(),
        })
        .map(|_| ())
}

pub fn spawn_writer(
    conn: Arc<Conn>,
    sock: UnixStream,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("writer".into())
        .spawn(move || {
            let mut sock = sock;
            let mut batch = BytesMut::with_capacity(64 * 1024);
            while conn.outbox.next_batch(&mut batch) {
                if let Err(e) = sock.write_all(&batch) {
                    wlog!("writing to the master failed: {e}");
                    conn.exit(Exit::MasterGone);
                    return;
                }
                batch.clear();
            }
        })
}

/// Routes frames until the input ends (`None`) or must be abandoned.
fn read_loop(conn: &Conn, mut sock: UnixStream) -> Option<Exit> {
    let mut buf = BytesMut::with_capacity(READ_BUF);
    let mut tmp = vec![0u8; READ_BUF];
    loop {
        let n = match sock.read(&mut tmp) {
            Ok(0) => return None,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                wlog!("reading from the master failed: {e}");
                return Some(Exit::MasterGone);
            }
        };
        buf.extend_from_slice(&tmp[..n]);
        loop {
            match wire::decode(&mut buf) {
                Ok(Some((stream, frame))) => {
                    if let Err(e) = route(conn, stream, frame) {
                        return Some(Exit::Fatal(e));
                    }
                }
                Ok(None) => break,
                Err(e) => return Some(Exit::Fatal(format!("bad frame from the master: {e}"))),
            }
        }
    }
}

fn route(conn: &Conn, stream: u32, frame: Frame) -> Result<(), String> {
    match frame {
        Frame::RequestHead(head) => conn.start_request(stream, head),
        Frame::RequestBody(data) => {
            if let Some(body) = conn.body(stream) {
                body.push(data);
            }
            Ok(())
        }
        Frame::RequestEnd => {
            if let Some(body) = conn.body(stream) {
                body.end();
            }
            Ok(())
        }
        Frame::Abort(_) => {
            if let Some(body) = conn.body(stream) {
                body.abort();
            }
            Ok(())
        }
        other => Err(format!("unexpected frame from the master: {other:?}")),
    }
}
