//! Listeners: binds the configured addresses and runs one accept loop per listener,
//! serving each connection with hyper (HTTP/1.1 with keep-alive, or HTTP/2 with prior
//! knowledge) under a graceful-shutdown watcher. Every client byte stream passes the
//! `guard` (request validation) before hyper parses it.

use crate::config::BindAddr;
use crate::front::Front;
use crate::guard::{ConnTimeouts, GuardLimits, GuardedIo};
use crate::proxy::ConnInfo;
use crate::tls::Tls;
use crate::wire::Scheme;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket, UnixListener};
use tokio_util::sync::CancellationToken;

pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, std::path::PathBuf),
}

impl Listener {
    pub fn bind(addr: &BindAddr) -> std::io::Result<Self> {
        match addr {
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
                Ok(Listener::Unix(UnixListener::bind(path)?, path.clone()))
            }
        }
    }

    /// What to print in "Listening at:".
    pub fn describe(&self) -> String {
        match self {
            Listener::Tcp(l) => match l.local_addr() {
                Ok(a) => format!("http://{a}"),
                Err(_) => "http://?".into(),
            },
            Listener::Unix(_, p) => format!("unix:{}", p.display()),
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
}

/// A TLS client gets this long to finish its handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Wraps a client stream in the guard and serves it with hyper under `graceful`.
/// (A macro, not a function: the service type is unnameable.)
macro_rules! serve_guarded {
    ($builder:expr, $io:expr, $service:expr, $graceful:expr, $settings:expr, $permit:expr) => {{
        let io =
            TokioIo::new(GuardedIo::new($io, $settings.guard).with_timeouts($settings.timeouts));
        let conn = $graceful.watch($builder.serve_connection(io, $service).into_owned());
        let permit = $permit;
        tokio::spawn(async move {
            let _ = conn.await;
            drop(permit);
        });
    }};
}

fn builder(settings: &ConnSettings) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .keep_alive(true)
        // The guard ends hyper's input with EOF after a refused request; half-close
        // lets hyper still answer the valid requests pipelined before it.
        .half_close(true)
        // The guard enforces the configured field count; hyper must not refuse first.
        .max_headers(settings.guard.fields + 1)
        // Idle and slow-head timeouts live in the guard (it can answer 408).
        .header_read_timeout(None);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(settings.http2_max_streams);
    b
}

/// Accepts until `stop` is cancelled; every connection is watched by `graceful`.
pub async fn accept_loop(
    listener: Listener,
    front: Arc<Front>,
    settings: ConnSettings,
    graceful: Arc<GracefulShutdown>,
    stop: CancellationToken,
) {
    let builder = builder(&settings);
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
                // EMFILE and friends: back off instead of spinning; the kernel backlog holds clients.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        match (io, &settings.tls) {
            (Accepted::Tcp(s), Some(tls)) => {
                let info = ConnInfo {
                    scheme: Scheme::Https,
                    ..info
                };
                let service = TowerToHyperService::new(front.service(info));
                let (acceptor, builder, graceful) =
                    (tls.acceptor(), builder.clone(), graceful.clone());
                let settings = settings.clone();
                // The handshake runs in its own task so a slow client cannot stall accept.
                tokio::spawn(async move {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(s)).await {
                        Ok(Ok(tls_stream)) => {
                            serve_guarded!(builder, tls_stream, service, graceful, settings, permit)
                        }
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                });
            }
            (Accepted::Tcp(s), None) => {
                let service = TowerToHyperService::new(front.service(info));
                serve_guarded!(builder, s, service, graceful, settings, permit)
            }
            (Accepted::Unix(s), _) => {
                let service = TowerToHyperService::new(front.service(info));
                serve_guarded!(builder, s, service, graceful, settings, permit)
            }
        }
    }
    if let Listener::Unix(_, path) = &listener {
        let _ = std::fs::remove_file(path);
    }
}

enum Accepted {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn accept(listener: &Listener) -> std::io::Result<(Accepted, ConnInfo)> {
    match listener {
        Listener::Tcp(l) => {
            let (s, peer) = l.accept().await?;
            let _ = s.set_nodelay(true);
            let local = s.local_addr().ok();
            Ok((
                Accepted::Tcp(s),
                ConnInfo {
                    peer: Some(peer),
                    local,
                    scheme: Scheme::Http,
                },
            ))
        }
        Listener::Unix(l, _) => {
            let (s, _) = l.accept().await?;
            Ok((
                Accepted::Unix(s),
                ConnInfo {
                    peer: None,
                    local: None,
                    scheme: Scheme::Http,
                },
            ))
        }
    }
}
