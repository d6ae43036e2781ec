//! The data path: posting receives, sends, RMA and atomics, reading completions, sleeping on the
//! completion queue.

use std::ffi::{c_void, CStr};
use std::ptr;
use std::time::Duration;

use atoll_ofi_sys as sys;

use super::{error, Endpoint, EAGAIN};
use crate::Error;

/// Sleeps until a completion queue of `endpoints` may have something, `extra` (an eventfd)
/// is readable, or `timeout`. Returns `false` at once, without sleeping, when one of them
/// has no wait descriptor (the caller naps instead: nothing would wake it for that one).
pub(in crate::ofi) fn wait(endpoints: &[&Endpoint], extra: i32, timeout: Duration) -> bool {
    let mut fds = Vec::with_capacity(endpoints.len() + 1);
    for endpoint in endpoints {
        let Some(fd) = endpoint.wait_fd else {
            return false;
        };
        let mut fids = [endpoint.cq.cast::<sys::fid>()];
        // SAFETY: the fabric and CQ are live; fi_trywait reads the one-element array.
        let rc = unsafe { sys::atoll_fi_trywait(endpoint.fabric, fids.as_mut_ptr(), 1) };
        if rc != 0 {
            // Completions are pending (-FI_EAGAIN): the caller polls again.
            return true;
        }
        fds.push(libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        });
    }
    fds.push(libc::pollfd {
        fd: extra,
        events: libc::POLLIN,
        revents: 0,
    });
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `fds` holds `fds.len()` valid pollfd entries and `ts` a valid timeout, both live
    // across the call; a null signal mask leaves the mask as it is.
    unsafe {
        libc::ppoll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            &ts,
            ptr::null(),
        )
    };
    true
}

impl Endpoint {
    /// Posts a receive buffer.
    ///
    /// # Safety
    /// `buf..buf + len` must be registered memory that stays untouched until the receive's
    /// completion (or the endpoint's close), and `context` a live `fi_context2` until then.
    pub(in crate::ofi) unsafe fn recv(
        &self,
        buf: *mut u8,
        len: usize,
        context: *mut c_void,
    ) -> isize {
        // SAFETY: caller's contract; the endpoint is live.
        unsafe {
            sys::atoll_fi_recv(
                self.ep,
                buf.cast(),
                len,
                self.desc,
                sys::FI_ADDR_UNSPEC_VALUE,
                context,
            )
        }
    }

    /// Sends `len` bytes at `buf` to the peer at `dest` in this endpoint's address vector.
    ///
    /// # Safety
    /// As for [`Endpoint::recv`]: the buffer is lent to libfabric until the completion.
    pub(in crate::ofi) unsafe fn send(
        &self,
        buf: *const u8,
        len: usize,
        dest: sys::fi_addr_t,
        context: *mut c_void,
    ) -> isize {
        // SAFETY: caller's contract; the endpoint is live.
        unsafe { sys::atoll_fi_send(self.ep, buf.cast(), len, self.desc, dest, context) }
    }

    /// Reads `len` bytes at remote address `addr` (key `key`) of the peer at `source` into
    /// `buf`.
    ///
    /// # Safety
    /// As for [`Endpoint::recv`].
    pub(in crate::ofi) unsafe fn read(
        &self,
        buf: *mut u8,
        len: usize,
        source: sys::fi_addr_t,
        addr: u64,
        key: u64,
        context: *mut c_void,
    ) -> isize {
        // SAFETY: caller's contract; the endpoint is live.
        unsafe {
            sys::atoll_fi_read(
                self.ep,
                buf.cast(),
                len,
                self.desc,
                source,
                addr,
                key,
                context,
            )
        }
    }

    /// Writes `len` bytes at `buf` to remote address `addr` (key `key`) of the peer at `dest`,
    /// completing once the data is visible at the target (`FI_DELIVERY_COMPLETE`).
    ///
    /// # Safety
    /// As for [`Endpoint::recv`].
    pub(in crate::ofi) unsafe fn write(
        &self,
        buf: *const u8,
        len: usize,
        dest: sys::fi_addr_t,
        addr: u64,
        key: u64,
        context: *mut c_void,
    ) -> isize {
        let iov = sys::iovec {
            iov_base: buf as *mut c_void,
            iov_len: len,
        };
        let mut desc = self.desc;
        let rma = sys::fi_rma_iov { addr, len, key };
        let msg = sys::fi_msg_rma {
            msg_iov: &iov,
            desc: &mut desc,
            iov_count: 1,
            addr: dest,
            rma_iov: &rma,
            rma_iov_count: 1,
            context,
            data: 0,
        };
        // SAFETY: caller's contract for the buffer and context; `msg` and what it points to
        // live across the call, which copies them.
        unsafe {
            sys::atoll_fi_writemsg(
                self.ep,
                &msg,
                u64::from(sys::FI_DELIVERY_COMPLETE | sys::FI_COMPLETION),
            )
        }
    }

    /// A fetching atomic on one `u64` of the peer at `dest`: `op` (`FI_SUM`) with the operand at
    /// `operand`, the previous value written to `result`.
    ///
    /// # Safety
    /// As for [`Endpoint::recv`], for `operand` and `result` (8 bytes each).
    pub(in crate::ofi) unsafe fn fetch_atomic(
        &self,
        operand: *const u64,
        result: *mut u64,
        dest: sys::fi_addr_t,
        addr: u64,
        key: u64,
        context: *mut c_void,
    ) -> isize {
        // SAFETY: caller's contract; the endpoint is live.
        unsafe {
            sys::atoll_fi_fetch_atomic(
                self.ep,
                operand.cast(),
                1,
                self.desc,
                result.cast(),
                self.desc,
                dest,
                addr,
                key,
                sys::fi_datatype_FI_UINT64,
                sys::fi_op_FI_SUM,
                context,
            )
        }
    }

    /// Compare-and-swap on one `u64` of the peer at `dest`.
    ///
    /// # Safety
    /// As for [`Endpoint::fetch_atomic`], for `new`, `expected` and `result`.
    #[allow(clippy::too_many_arguments)]
    pub(in crate::ofi) unsafe fn compare_atomic(
        &self,
        new: *const u64,
        expected: *const u64,
        result: *mut u64,
        dest: sys::fi_addr_t,
        addr: u64,
        key: u64,
        context: *mut c_void,
    ) -> isize {
        // SAFETY: caller's contract; the endpoint is live.
        unsafe {
            sys::atoll_fi_compare_atomic(
                self.ep,
                new.cast(),
                1,
                self.desc,
                expected.cast(),
                self.desc,
                result.cast(),
                self.desc,
                dest,
                addr,
                key,
                sys::fi_datatype_FI_UINT64,
                sys::fi_op_FI_CSWAP,
                context,
            )
        }
    }

    /// Reads up to `entries.len()` completions, with their senders (`FI_ADDR_NOTAVAIL` when
    /// unknown). Returns how many, 0 when none, or the negative status (`-FI_EAVAIL`: an
    /// error completion waits for [`Endpoint::read_error`]).
    pub(in crate::ofi) fn read_completions(
        &self,
        entries: &mut [sys::fi_cq_data_entry],
        sources: &mut [sys::fi_addr_t],
    ) -> isize {
        let count = entries.len().min(sources.len());
        // SAFETY: the CQ is live and of format FI_CQ_FORMAT_DATA; both arrays hold `count`
        // writable entries.
        let rc = unsafe {
            if self.caps.source {
                sys::atoll_fi_cq_readfrom(
                    self.cq,
                    entries.as_mut_ptr().cast(),
                    count,
                    sources.as_mut_ptr(),
                )
            } else {
                sys::atoll_fi_cq_read(self.cq, entries.as_mut_ptr().cast(), count)
            }
        };
        if rc == EAGAIN {
            return 0;
        }
        if rc > 0 && !self.caps.source {
            sources[..rc as usize].fill(u64::MAX);
        }
        rc
    }

    /// Takes the error completion waiting in the queue: its operation context, and the error.
    pub(in crate::ofi) fn read_error(&self) -> Option<(*mut c_void, Error)> {
        let mut entry = sys::fi_cq_err_entry::default();
        // SAFETY: the CQ is live; `entry` is a writable error entry (err_data left null:
        // libfabric then points it at its own buffer, valid until the next call).
        let rc = unsafe { sys::atoll_fi_cq_readerr(self.cq, &mut entry, 0) };
        if rc <= 0 {
            return None;
        }
        let mut text = [0 as libc::c_char; 256];
        // SAFETY: as above; fi_cq_strerror writes at most `text.len()` bytes, NUL included,
        // and returns a NUL-terminated string (ours or the provider's).
        let detail = unsafe {
            let s = sys::atoll_fi_cq_strerror(
                self.cq,
                entry.prov_errno,
                entry.err_data,
                text.as_mut_ptr(),
                text.len(),
            );
            if s.is_null() {
                String::new()
            } else {
                CStr::from_ptr(s).to_string_lossy().into_owned()
            }
        };
        let mut err = error(entry.err.abs(), "a completion");
        if let Error::Ofi { text, .. } = &mut err {
            if !detail.is_empty() {
                text.push_str(&format!(" ({detail})"));
            }
        }
        Some((entry.op_context, err))
    }
}
