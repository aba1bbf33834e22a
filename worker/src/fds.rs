//! One read of the master's socket with the fds it passes (SCM_RIGHTS): the master
//! sends a WebSocket handshake's socket on the first byte of its head, and a plain
//! `recv` would close it unseen. Used by the WSGI threads (`worker::server`) and
//! the ASGI loop (`python::asgi::conn`) alike.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

/// Room for this many fds per read. A head carries one, and Linux ends a
/// unix-stream `recvmsg` right after a segment with fds, so more never come at
/// once; the spare room only keeps a misbehaving master from having fds dropped.
const FDS_PER_READ: usize = 8;

/// One `recvmsg` that does not wait (MSG_DONTWAIT: the WSGI threads keep the
/// descriptor itself blocking, as they write to it). Passed fds go to `passed`
/// before the bytes are returned, closed at exec like every fd Python makes. Fds
/// cut for lack of room (MSG_CTRUNC) are `InvalidData`: the fds and heads are out
/// of step.
pub(crate) fn recv_nowait(
    sock: &UnixStream,
    tmp: &mut [u8],
    passed: impl FnOnce(Vec<OwnedFd>),
) -> std::io::Result<usize> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    // CMSG_SPACE on the stack (what `nix::cmsg_space!` computes before it
    // allocates a Vec).
    let mut space = [0u8; nix::sys::socket::cmsg_space::<[RawFd; FDS_PER_READ]>()];
    let mut iov = [std::io::IoSliceMut::new(tmp)];
    let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC;
    let msg = recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut space), flags)?;
    let n = msg.bytes;
    let cmsgs = msg
        .cmsgs()
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidData))?;
    let mut fds = Vec::new();
    for cmsg in cmsgs {
        if let ControlMessageOwned::ScmRights(got) = cmsg {
            fds.extend(got.into_iter().map(own));
        }
    }
    if !fds.is_empty() {
        passed(fds);
    }
    Ok(n)
}

/// An fd the kernel just installed for us from SCM_RIGHTS.
#[allow(unsafe_code)]
fn own(fd: RawFd) -> OwnedFd {
    // SAFETY: the fd was created in our table by this `recvmsg` and is referred to
    // nowhere else: we are its only owner.
    unsafe { OwnedFd::from_raw_fd(fd) }
}
