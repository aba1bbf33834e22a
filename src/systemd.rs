//! systemd: `Type=notify` and socket activation, as gunicorn supports them.
//!
//! - `notify` sends sd_notify states to `$NOTIFY_SOCKET` (a path, or `@` for the
//!   abstract namespace): READY=1 once the workers serve, RELOADING=1 and READY=1
//!   around a HUP, STOPPING=1 at TERM, and STATUS= with the worker counts. Without
//!   `$NOTIFY_SOCKET` it does nothing. It never blocks the caller (the master's
//!   runtime): a service manager that does not read its socket (a stale
//!   `$NOTIFY_SOCKET`, a wedged manager) must not freeze requests and signals.
//!   A message that only says STATUS= and cannot be sent at once is dropped (the
//!   next one says more). A state change (READY, RELOADING, STOPPING) that cannot is
//!   handed, in order, to a thread of its own that waits up to
//!   `STATE_SEND_TIMEOUT` for room, then gives up with a warning: systemd waits
//!   for READY=1, so losing it at the first full queue would fail the start.
//! - `Inherited::take` adopts the listening sockets systemd passed (`$LISTEN_FDS`
//!   from fd 3, when `$LISTEN_PID` is us), taken before any thread starts. They
//!   replace `bind`, as in gunicorn, unless `bind` names some as `fd://N`.
//! - `MASTER_ONLY_ENV` names the variables addressed to the master alone, which
//!   its children (workers, the zygote, the hooks helper) must not inherit.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Mutex;
use std::time::Duration;

/// Set in the new master by the old one on a USR2 upgrade: the pid to send TERM
/// once ready (`master::upgrade`).
pub(crate) const UPGRADE_FROM: &str = "FERRICORN_UPGRADE_FROM";
/// Which inherited fd is the admin listener on a USR2 upgrade (`master::upgrade`).
pub(crate) const ADMIN_FD: &str = "FERRICORN_ADMIN_FD";

/// What systemd (or an upgrading master) tells this process alone: a worker or an
/// app that saw them would believe it was passed our sockets (`LISTEN_*`), could
/// speak for the service (`NOTIFY_SOCKET`, `WATCHDOG_*`), or TERM a master.
pub(crate) const MASTER_ONLY_ENV: &[&str] = &[
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "LISTEN_FDS_FIRST_FD",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    UPGRADE_FROM,
    ADMIN_FD,
];

/// How long a state change waits for room in a manager's full queue.
const STATE_SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// State changes waiting behind one the manager has not taken yet.
const STATE_BACKLOG: usize = 8;

/// Sends one sd_notify message (newline-separated `KEY=VALUE`s) without blocking;
/// errors are logged, never fatal: the service manager may have gone.
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
    match addr {
        Ok(addr) => Notifier::send(addr, state),
        Err(e) => tracing::debug!(error = %e, "sd_notify: bad $NOTIFY_SOCKET"),
    }
}

/// The messages on their way: none while the manager keeps up.
static NOTIFIER: Mutex<Notifier> = Mutex::new(Notifier {
    thread: None,
    pending: 0,
});

type Message = (SocketAddr, String);

struct Notifier {
    /// The queue of the thread that waits for a slow manager, once started.
    thread: Option<SyncSender<Message>>,
    /// State changes queued and not yet sent: while there are any, every message
    /// queues behind them, so none overtakes another.
    pending: usize,
}

impl Notifier {
    fn send(addr: SocketAddr, state: &str) {
        let mut me = NOTIFIER.lock().unwrap_or_else(|e| e.into_inner());
        if me.pending == 0 {
            match send_now(&addr, state) {
                Ok(()) => return,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return tracing::debug!(error = %e, "sd_notify failed"),
            }
        }
        if !changes_state(state) {
            return tracing::debug!(
                "sd_notify: the service manager is not reading; STATUS dropped"
            );
        }
        let Some(queue) = me.thread.clone().or_else(start_thread) else {
            return;
        };
        me.thread = Some(queue.clone());
        match queue.try_send((addr, state.to_string())) {
            Ok(()) => me.pending += 1,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => tracing::warn!(
                state = first_line(state),
                "sd_notify: the service manager is not reading; state change dropped"
            ),
        }
    }
}

/// The thread that sends queued state changes in order, each waiting up to
/// `STATE_SEND_TIMEOUT`; None (said) if it cannot start.
fn start_thread() -> Option<SyncSender<Message>> {
    let (tx, rx) = sync_channel::<Message>(STATE_BACKLOG);
    let started = std::thread::Builder::new()
        .name("sd-notify".into())
        .spawn(move || {
            for (addr, state) in rx {
                if let Err(e) = send_waiting(&addr, &state) {
                    tracing::warn!(state = first_line(&state), error = %e, "sd_notify: state change not delivered");
                }
                NOTIFIER.lock().unwrap_or_else(|e| e.into_inner()).pending -= 1;
            }
        });
    match started {
        Ok(_) => Some(tx),
        Err(e) => {
            tracing::warn!(error = %e, "sd_notify: cannot start its thread; state change dropped");
            None
        }
    }
}

/// A message with more than `STATUS=`: systemd acts on it.
fn changes_state(state: &str) -> bool {
    state.lines().any(|l| !l.starts_with("STATUS="))
}

fn first_line(state: &str) -> &str {
    state.lines().next().unwrap_or_default()
}

fn send_now(addr: &SocketAddr, state: &str) -> std::io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    sock.set_nonblocking(true)?;
    sock.send_to_addr(state.as_bytes(), addr).map(|_| ())
}

/// Off the runtime only: blocks until the manager has room, up to the timeout.
fn send_waiting(addr: &SocketAddr, state: &str) -> std::io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    sock.set_write_timeout(Some(STATE_SEND_TIMEOUT))?;
    sock.send_to_addr(state.as_bytes(), addr).map(|_| ())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_status_messages_may_be_dropped() {
        assert!(!changes_state("STATUS=2 worker(s) serving"));
        assert!(changes_state("READY=1\nSTATUS=Ready: 2 worker(s)"));
        assert!(changes_state("RELOADING=1\nMONOTONIC_USEC=5"));
        assert!(changes_state("STOPPING=1"));
    }

    /// A manager that does not read: the caller never waits; the state change is
    /// delivered, after the STATUS that was dropped, once the manager reads again.
    #[test]
    fn a_full_queue_never_blocks_and_keeps_state_changes_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let manager = UnixDatagram::bind(&path).unwrap();
        let filler = UnixDatagram::unbound().unwrap();
        filler.set_nonblocking(true).unwrap();
        let mut filled = 0;
        while filler.send_to(b"X=1", &path).is_ok() {
            filled += 1;
        }
        let addr = SocketAddr::from_pathname(&path).unwrap();
        let started = std::time::Instant::now();
        Notifier::send(addr.clone(), "READY=1");
        Notifier::send(addr.clone(), "STATUS=dropped");
        Notifier::send(addr, "STOPPING=1");
        assert!(started.elapsed() < Duration::from_secs(1));
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        manager
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        for _ in 0..filled + 2 {
            let n = manager.recv(&mut buf).unwrap();
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        assert_eq!(got[filled..], ["READY=1", "STOPPING=1"]);
    }
}
