//! A thin, safe wrapper over `poll(2)` for the launcher's single-threaded event loop.

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

/// Readiness of one registered descriptor.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Ready {
    /// Data, end of file, or an error is waiting: a read will not block.
    pub(crate) readable: bool,
    /// A write will not block.
    pub(crate) writable: bool,
}

/// What to watch a descriptor for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Interest {
    Read,
    Write,
    ReadWrite,
}

/// The descriptors of one `poll` call, each with the token it reports readiness under.
///
/// Rebuilt before every call; the descriptors must stay open until [`PollSet::ready`] has
/// been consumed (the owner of the set also owns every object registered in it).
#[derive(Debug)]
pub(crate) struct PollSet<T> {
    fds: Vec<libc::pollfd>,
    tokens: Vec<T>,
}

impl<T: Copy> PollSet<T> {
    pub(crate) fn new() -> PollSet<T> {
        PollSet {
            fds: Vec::new(),
            tokens: Vec::new(),
        }
    }

    pub(crate) fn clear(&mut self) {
        self.fds.clear();
        self.tokens.clear();
    }

    /// Watches `fd`. End of file and errors are always reported, as readable.
    pub(crate) fn add(&mut self, fd: &impl AsFd, token: T, interest: Interest) {
        let events = match interest {
            Interest::Read => libc::POLLIN,
            Interest::Write => libc::POLLOUT,
            Interest::ReadWrite => libc::POLLIN | libc::POLLOUT,
        };
        self.fds.push(libc::pollfd {
            fd: fd.as_fd().as_raw_fd(),
            events,
            revents: 0,
        });
        self.tokens.push(token);
    }

    /// Waits until a descriptor is ready or `timeout` passes (`None`: no limit). A signal
    /// interrupting the wait is not an error: it returns with nothing ready.
    pub(crate) fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let timeout_ms = match timeout {
            None => -1,
            // Rounded up, so that a deadline is never polled for just before it passes.
            Some(t) => i32::try_from(t.as_micros().div_ceil(1000)).unwrap_or(i32::MAX),
        };
        for fd in &mut self.fds {
            fd.revents = 0;
        }
        // SAFETY: `fds` points to `fds.len()` initialized `pollfd`s that stay borrowed
        // mutably for the call; the kernel writes only their `revents` fields. The
        // descriptors are open: their owners outlive this set's use (see the type's docs),
        // and a closed one would only be reported as POLLNVAL.
        let rc = unsafe {
            libc::poll(
                self.fds.as_mut_ptr(),
                self.fds.len() as libc::nfds_t,
                timeout_ms,
            )
        };
        if rc < 0 {
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
        Ok(())
    }

    /// The tokens of the descriptors the last [`PollSet::wait`] found ready.
    pub(crate) fn ready(&self) -> impl Iterator<Item = (T, Ready)> + '_ {
        self.fds
            .iter()
            .zip(&self.tokens)
            .filter_map(|(fd, &token)| {
                let ready = Ready {
                    readable: fd.revents
                        & (libc::POLLIN | libc::POLLHUP | libc::POLLERR | libc::POLLNVAL)
                        != 0,
                    writable: fd.revents & libc::POLLOUT != 0,
                };
                (ready.readable || ready.writable).then_some((token, ready))
            })
    }
}
