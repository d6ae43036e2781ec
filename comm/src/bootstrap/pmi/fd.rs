//! Taking ownership of the socket a launcher handed this process in `PMI_FD`.

use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::{Error, Result};

/// Set once `PMI_FD` has been taken: a second owner of the same descriptor would close it
/// under the first.
static TAKEN: AtomicBool = AtomicBool::new(false);

/// The socket `fd` (from `PMI_FD`) as a stream this process owns from now on.
///
/// Checks that `fd` is an open socket first. Only the first call of a process succeeds.
pub(crate) fn take(fd: RawFd) -> Result<UnixStream> {
    if fd < 0 {
        return Err(Error::bootstrap(format!(
            "PMI_FD={fd} is not a file descriptor"
        )));
    }
    let mut stat = std::mem::MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: `fstat` writes at most one `struct stat` into the buffer, which is one; an
    // invalid descriptor makes it fail with EBADF, which is checked.
    let rc = unsafe { libc::fstat(fd, stat.as_mut_ptr()) };
    if rc != 0 {
        return Err(Error::io(
            format!("PMI_FD={fd} is not an open descriptor of this process (was it closed, or inherited from another job?)"),
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: `fstat` succeeded, so it initialized the struct (which was zeroed anyway).
    let mode = unsafe { stat.assume_init() }.st_mode;
    if mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(Error::bootstrap(format!(
            "PMI_FD={fd} is not a socket: the variable does not come from a PMI launcher"
        )));
    }
    if TAKEN.swap(true, Ordering::AcqRel) {
        return Err(Error::bootstrap(
            "PMI_FD was already taken by an earlier bootstrap of this process: one job per process",
        ));
    }
    // SAFETY: `fd` is an open socket (checked above). The launcher created it for this
    // process's PMI client alone, and `TAKEN` makes this the only place in the process that
    // takes ownership of it, so no other owner closes or uses it.
    let stream = unsafe { UnixStream::from_raw_fd(fd) };
    // Places and helpers this process starts must not inherit the PMI connection.
    // SAFETY: F_SETFD on a descriptor the process owns, with a flag value; no memory is passed.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
        tracing::debug!(
            "setting FD_CLOEXEC on PMI_FD failed: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(stream)
}
