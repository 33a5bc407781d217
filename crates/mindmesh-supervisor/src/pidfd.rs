//! Waiting for the exit of a process that is not our child (adopted after a node restart):
//! a pidfd becomes readable when the process exits, so this is event-driven, not polling.

use std::os::fd::{FromRawFd, OwnedFd};

use tokio::io::unix::AsyncFd;

/// Open a pidfd for `pid`; `None` where the kernel lacks `pidfd_open` (before Linux 5.3).
pub fn open(pid: u32) -> Option<AsyncFd<OwnedFd>> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the fd was just returned to us and is owned by nobody else.
    let owned = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // SAFETY: we own the fd exclusively and it stays open for as long as the AsyncFd lives.
    unsafe { AsyncFd::register_with_interest(owned, tokio::io::Interest::READABLE) }.ok()
}

/// Resolves when the process behind the pidfd has exited.
pub async fn exited(fd: AsyncFd<OwnedFd>) {
    // readable == exited; the guard is not cleared, so one wake-up suffices
    let _ = fd.readable().await;
}
