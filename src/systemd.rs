//! systemd: `Type=notify` and socket activation, as gunicorn supports them.
//!
//! - `notify` sends sd_notify states to `$NOTIFY_SOCKET` (a path, or `@` for the
//!   abstract namespace): READY=1 once the workers serve, RELOADING=1 and READY=1
//!   around a HUP, STOPPING=1 at TERM, and STATUS= with the worker counts. Without
//!   `$NOTIFY_SOCKET` it does nothing.
//! - `Inherited::take` adopts the listening sockets systemd passed (`$LISTEN_FDS`
//!   from fd 3, when `$LISTEN_PID` is us), taken before any thread starts. They
//!   replace `bind`, as in gunicorn, unless `bind` names some as `fd://N`.

use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Sends one sd_notify message (newline-separated `KEY=VALUE`s); errors are logged
/// at debug level, never fatal: the service manager may have gone.
pub fn notify(state: &str) {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let bytes = target.as_encoded_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name)
        }
        None => SocketAddr::from_pathname(&target),
    };
    let sent = addr.and_then(|a| UnixDatagram::unbound()?.send_to_addr(state.as_bytes(), &a));
    if let Err(e) = sent {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

/// `RELOADING=1` with the monotonic time `Type=notify-reload` asks for.
pub fn notify_reloading() {
    let usec = crate::claims::monotonic_ns() / 1000;
    notify(&format!("RELOADING=1\nMONOTONIC_USEC={usec}"));
}

/// The sockets systemd passed, not yet used.
pub struct Inherited(listenfd::ListenFd);

/// The first fd systemd passes.
pub const FIRST_FD: i32 = 3;

impl Inherited {
    /// Takes `$LISTEN_FDS`/`$LISTEN_PID` (and removes them, so that the workers do
    /// not believe they were passed sockets too). Call before any thread starts.
    pub fn take() -> Inherited {
        Inherited(listenfd::ListenFd::from_env())
    }

    pub fn is_empty(&self) -> bool {
        self.0.len() == 0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The socket at fd `fd` (3 for the first), TCP or Unix; `None` if systemd did
    /// not pass it, or it was taken already.
    pub fn take_fd(&mut self, fd: i32) -> std::io::Result<Option<InheritedSocket>> {
        let Some(idx) = fd
            .checked_sub(FIRST_FD)
            .and_then(|i| usize::try_from(i).ok())
        else {
            return Ok(None);
        };
        if let Ok(Some(l)) = self.0.take_tcp_listener(idx) {
            return Ok(Some(InheritedSocket::Tcp(l)));
        }
        Ok(self.0.take_unix_listener(idx)?.map(InheritedSocket::Unix))
    }
}

pub enum InheritedSocket {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener),
}
