//! Listeners: binds the configured addresses and runs one accept loop per listener,
//! handing each connection to a front thread (`crate::shards`) that serves it with
//! our HTTP/1 codec (`http1::conn`: every byte read once, by the guard), or, when
//! its first bytes are HTTP/2's preface, with hyper's HTTP/2 server under
//! `conn_watch` (the graceful stop, HTTP/2's timeouts). On a TCP listener a
//! connection may first give its PROXY header (`proxy_protocol`, see
//! `crate::proxy_protocol`) and then do the TLS handshake; both run in the
//! connection's own task, so a slow client never stalls the accept loop.

use crate::conn_watch::{self, Activity, Drain, H2Io, H2Timeouts};
use crate::front::Front;
use crate::guard::client_close::PeerEnded;
use crate::guard::{self, ConnTimeouts, GuardLimits};
use crate::http1::{self, body::ClientBody};
use crate::net::BindAddr;
use crate::net::ConnInfo;
use crate::proxy_protocol::{self, Prefixed, ProxyHeader};
use crate::shards::{Host, Shards};
use crate::tls::Tls;
use crate::wire::Scheme;
use bytes::Bytes;
use hyper::server::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket, TcpStream, UnixListener};
use tokio_util::sync::CancellationToken;

/// Set while a new master (binary upgrade, USR2) listens on our sockets too: a Unix
/// socket's path must then stay when this master stops.
static HANDED_OVER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub fn set_handed_over(yes: bool) {
    HANDED_OVER.store(yes, std::sync::atomic::Ordering::Relaxed);
}

pub enum Listener {
    Tcp(TcpListener),
    /// The path is removed at exit when `ours` (not for a socket systemd passed).
    Unix {
        listener: UnixListener,
        path: std::path::PathBuf,
        ours: bool,
    },
}

impl Listener {
    /// Binds `addr`; a `unix:` socket gets mode `0o777 & !umask` when a umask is set
    /// (`--umask`), so a proxy in another user's group can connect.
    pub fn bind(addr: &BindAddr, umask: Option<u32>) -> std::io::Result<Self> {
        match addr {
            BindAddr::Fd(n) => Err(std::io::Error::other(format!(
                "fd://{n} is not a listening socket systemd passed ($LISTEN_FDS)"
            ))),
            BindAddr::Tcp(sa) => {
                let socket = if sa.is_ipv4() {
                    TcpSocket::new_v4()?
                } else {
                    TcpSocket::new_v6()?
                };
                socket.set_reuseaddr(true)?;
                socket.bind(*sa)?;
                Ok(Listener::Tcp(socket.listen(4096)?))
            }
            BindAddr::Unix(path) => {
                // A socket file left by a previous run would make bind fail.
                if std::fs::symlink_metadata(path)
                    .map(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
                    .unwrap_or(false)
                {
                    std::fs::remove_file(path)?;
                }
                let l = UnixListener::bind(path)?;
                if let Some(mask) = umask {
                    use std::os::unix::fs::PermissionsExt;
                    let mode = 0o777 & !mask;
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
                }
                Ok(Listener::Unix {
                    listener: l,
                    path: path.clone(),
                    ours: true,
                })
            }
        }
    }

    /// A listening socket systemd passed (socket activation).
    pub fn inherited(socket: crate::systemd::InheritedSocket) -> std::io::Result<Self> {
        use crate::systemd::InheritedSocket;
        match socket {
            InheritedSocket::Tcp(l) => {
                l.set_nonblocking(true)?;
                Ok(Listener::Tcp(TcpListener::from_std(l)?))
            }
            InheritedSocket::Unix(l) => {
                l.set_nonblocking(true)?;
                let path = l
                    .local_addr()?
                    .as_pathname()
                    .map(|p| p.to_path_buf())
                    .unwrap_or_default();
                Ok(Listener::Unix {
                    listener: UnixListener::from_std(l)?,
                    path,
                    ours: false,
                })
            }
        }
    }

    /// The listening socket's fd, for a binary upgrade's new master.
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        match self {
            Listener::Tcp(l) => l.as_raw_fd(),
            Listener::Unix { listener, .. } => listener.as_raw_fd(),
        }
    }

    /// What to print in "Listening at:".
    pub fn describe(&self) -> String {
        match self {
            Listener::Tcp(l) => match l.local_addr() {
                Ok(a) => format!("http://{a}"),
                Err(_) => "http://?".into(),
            },
            Listener::Unix { path, .. } => format!("unix:{}", path.display()),
        }
    }
}

/// Connection settings shared by every listener.
#[derive(Clone)]
pub struct ConnSettings {
    pub timeouts: ConnTimeouts,
    /// One permit per connection served (`max_connections`), shared by all listeners:
    /// when none is left we stop accepting and new clients wait in the kernel backlog.
    pub connections: Arc<tokio::sync::Semaphore>,
    pub http2_max_streams: u32,
    pub guard: GuardLimits,
    /// TLS on TCP binds when configured.
    pub tls: Option<Arc<Tls>>,
    /// TCP connections start with a PROXY protocol header. [default: false]
    pub proxy_protocol: bool,
    /// The front threads connections are handed to.
    pub shards: Shards,
}

/// How long an accept loop waits after a failed accept.
const ACCEPT_BACK_OFF: Duration = Duration::from_millis(50);

/// What hyper queues per HTTP/2 stream ahead of the client (its default is 400 KiB):
/// an RFC 8441 WebSocket whose client opens its windows but stops reading TCP holds
/// this much in the master until its idle timeout (measured: ~225 KiB a tunnel in
/// all, against ~505 KiB with the default); downloads over HTTP/2 kept their speed.
const HTTP2_SEND_BUFFER: usize = 128 * 1024;

/// A TLS client gets this long to finish its handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How hyper serves an HTTP/2 connection (HTTP/1 is ours: `http1::conn`).
struct Builders {
    h2: http2::Builder<TokioExecutor>,
}

fn builders(settings: &ConnSettings) -> Builders {
    let mut h2 = http2::Builder::new(TokioExecutor::new());
    h2.timer(TokioTimer::new())
        .max_concurrent_streams(settings.http2_max_streams)
        // Room for the heads the guard's limits allow (the front applies them to the
        // decoded request), up to a bound on HPACK's amplification; h2's 431 past it.
        .max_header_list_size(guard::http2::max_header_list_size(&settings.guard))
        // RFC 8441: WebSockets over HTTP/2 (a CONNECT with `:protocol`, `front::websocket`).
        .enable_connect_protocol()
        .max_send_buf_size(HTTP2_SEND_BUFFER);
    Builders { h2 }
}

/// Accepts until `stop` is cancelled; every connection is watched by `graceful`.
pub async fn accept_loop(
    listener: Listener,
    front: Arc<Front>,
    settings: ConnSettings,
    drain: Arc<Drain>,
    stop: CancellationToken,
) {
    let builders = Arc::new(builders(&settings));
    loop {
        let permit = tokio::select! {
            _ = stop.cancelled() => break,
            p = settings.connections.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            a = accept(&listener) => a,
        };
        let (io, info) = match accepted {
            Ok(x) => x,
            Err(e) => {
                back_off_after_accept_error(&e).await;
                continue;
            }
        };
        let conn = Conn {
            builders: builders.clone(),
            front: front.clone(),
            guard: settings.guard,
            timeouts: settings.timeouts,
            drain: drain.clone(),
            _permit: permit,
        };
        let (proxy_protocol, tls) = (settings.proxy_protocol, settings.tls.clone());
        // Tracked from the accept on: a stop that comes before the connection's task
        // first runs on its front thread still waits for it.
        let drain = drain.clone();
        settings.shards.host_client().spawn(move |host| {
            drain.track(conn.serve_accepted(host, io, info, proxy_protocol, tls))
        });
    }
    if let Listener::Unix {
        path, ours: true, ..
    } = &listener
    {
        if !HANDED_OVER.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// After a failed accept (EMFILE and friends), for every accept loop (the admin
/// port's too): backs off instead of spinning; the kernel backlog holds clients.
pub(crate) async fn back_off_after_accept_error(e: &std::io::Error) {
    tracing::warn!(error = %e, "accept failed");
    tokio::time::sleep(ACCEPT_BACK_OFF).await;
}

/// What serving one connection needs from its listener.
struct Conn {
    builders: Arc<Builders>,
    front: Arc<Front>,
    guard: GuardLimits,
    timeouts: ConnTimeouts,
    drain: Arc<Drain>,
    /// Held for the connection's whole life (`max_connections`).
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Conn {
    /// Serves a connection on the front thread `host` (which it is counted on while
    /// it lasts), after registering its socket with that thread's runtime.
    async fn serve_accepted(
        self,
        host: Host,
        io: Accepted,
        info: ConnInfo,
        proxy_protocol: bool,
        tls: Option<Arc<Tls>>,
    ) {
        let _host = host;
        // Each way of serving is boxed: the task then holds only the one it runs
        // (a plain TCP connection's state is a third of a TLS one's, and this is most
        // of what an idle keep-alive connection costs).
        let refused = match io {
            Accepted::Tcp(s) => match TcpStream::from_std(s) {
                Ok(s) if proxy_protocol || tls.is_some() => {
                    return Box::pin(self.serve_tcp(s, info, proxy_protocol, tls)).await
                }
                Ok(s) => return Box::pin(self.serve(s, info)).await,
                Err(e) => e,
            },
            Accepted::Unix(s) => match tokio::net::UnixStream::from_std(s) {
                Ok(s) => return Box::pin(self.serve(s, info)).await,
                Err(e) => e,
            },
        };
        tracing::warn!(error = %refused, "cannot register an accepted connection");
    }

    /// Serves the stream with our HTTP/1 codec (`http1::conn`), or with hyper's
    /// HTTP/2 server when its first bytes are the HTTP/2 preface; returns the
    /// serving future (which the accept loop registered with the drain when it
    /// accepted the connection).
    fn serve<IO>(self, io: IO, info: ConnInfo) -> impl std::future::Future<Output = ()> + Send
    where
        IO: AsyncRead + AsyncWrite + PeerEnded + Unpin + Send + 'static,
    {
        let activity = Activity::new(self.drain.stop_token());
        let front = self.front.service(info, activity.clone());
        let (limits, t) = (self.guard, self.timeouts);
        let builders = self.builders;
        let permit = self._permit;
        async move {
            let ended = http1::conn::serve(io, limits, t, front.clone(), activity.clone()).await;
            if let http1::conn::Ended::Http2(io, read) = ended {
                // The bytes read while telling the versions apart come first.
                let io = H2Io::new(Prefixed::new(read, io), t.write);
                let to_front = tower::ServiceExt::map_request(front, hyper_body as fn(_) -> _);
                let service = TowerToHyperService::new(to_front);
                let conn = builders.h2.serve_connection(TokioIo::new(io), service);
                let shutdown = |c: Pin<&mut _>| http2::Connection::graceful_shutdown(c);
                let timeouts = Some(H2Timeouts {
                    head: t.head,
                    idle: t.idle,
                    write: t.write,
                });
                Box::pin(conn_watch::watch(conn, shutdown, activity, timeouts)).await
            }
            drop(permit);
        }
    }

    /// The TCP steps before HTTP, in wire order: the PROXY header (when configured),
    /// then the TLS handshake (when configured). A failed step closes the connection.
    async fn serve_tcp(
        self,
        mut s: TcpStream,
        mut info: ConnInfo,
        proxy_protocol: bool,
        tls: Option<Arc<Tls>>,
    ) {
        let mut rest = Bytes::new();
        if proxy_protocol {
            match proxy_header(&mut s, &mut info).await {
                Some(after) => rest = after,
                None => return,
            }
        }
        let Some(tls) = tls else {
            return self.serve(Prefixed::new(rest, s), info).await;
        };
        // The handshake's time counts from here: the wait for the first byte is in it,
        // or a client sending its first byte late would get the timeout twice.
        let deadline = tokio::time::Instant::now() + TLS_HANDSHAKE_TIMEOUT;
        // Plain HTTP sent to the TLS port gets nginx's 400, not a TLS alert. Boxed:
        // its read buffers (4 KiB) would otherwise stay in this future for the
        // connection's whole life (tests/memory.rs: 15.8 KiB per parked TLS one).
        let Some(io) = Box::pin(crate::tls::past_plain_http(rest, s)).await else {
            return;
        };
        // The handshake and the stream boxed: rustls's state (about 3.5 KiB) then
        // lives once, not also in room kept for it in each future that moves it.
        let handshake = Box::pin(tls.acceptor().accept(io));
        match tokio::time::timeout_at(deadline, handshake).await {
            Ok(Ok(tls_stream)) => {
                info.scheme = Scheme::Https;
                self.serve(Box::new(tls_stream), info).await
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!("TLS handshake timed out"),
        }
    }
}

/// An HTTP/2 request as hyper parsed it, for the front. The field that carried
/// HTTP/1 stand-ins' request lines (issue 26) is removed, as it always was: nothing
/// after the front (nor the app) ever sees it.
fn hyper_body(mut req: http::Request<hyper::body::Incoming>) -> http::Request<ClientBody> {
    req.headers_mut().remove(guard::RESERVED_FIELD);
    req.map(ClientBody::Http2)
}

/// Reads the PROXY header and makes its client the connection's peer; returns the
/// bytes read past it, or `None` when the connection must be closed.
async fn proxy_header(s: &mut TcpStream, info: &mut ConnInfo) -> Option<Bytes> {
    let read = proxy_protocol::read_header(s);
    let (header, rest) = match tokio::time::timeout(proxy_protocol::HEADER_TIMEOUT, read).await {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => {
            // warn: on a PROXY listener this is almost always a balancer not configured to send it.
            tracing::warn!(peer = ?info.peer, error = %e, "closing the connection");
            return None;
        }
        Err(_) => {
            tracing::warn!(peer = ?info.peer, "no PROXY protocol header in time; closing");
            return None;
        }
    };
    if let ProxyHeader::Proxied { src, .. } = header {
        info.peer = Some(src);
    }
    Some(rest)
}

/// An accepted connection, taken off the accepting runtime to be registered with
/// the front thread that serves it.
enum Accepted {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

async fn accept(listener: &Listener) -> std::io::Result<(Accepted, ConnInfo)> {
    match listener {
        Listener::Tcp(l) => {
            let (s, peer) = l.accept().await?;
            let _ = s.set_nodelay(true);
            let local = s.local_addr().ok();
            Ok((
                Accepted::Tcp(s.into_std()?),
                ConnInfo {
                    peer: Some(peer),
                    local,
                    scheme: Scheme::Http,
                },
            ))
        }
        Listener::Unix { listener: l, .. } => {
            let (s, _) = l.accept().await?;
            Ok((
                Accepted::Unix(s.into_std()?),
                ConnInfo {
                    peer: None,
                    local: None,
                    scheme: Scheme::Http,
                },
            ))
        }
    }
}
