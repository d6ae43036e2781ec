//! Fabric, domain and endpoint set-up, and the thin typed calls the provider makes on them.
//!
//! This module and [`super::memory`] are the only ones that call libfabric. [`Endpoint`] owns
//! every libfabric object of a place and closes them in order when dropped (endpoint,
//! completion queue, address vector, memory registration, domain, fabric). Every negative
//! return code goes through [`check`], the one funnel from a libfabric status to an
//! [`Error`].

use std::ffi::{c_void, CStr};
use std::ptr;

use atoll_ofi_sys as sys;

use crate::{Error, Result};

/// The libfabric API version the provider is written against (`FI_VERSION(1, 17)`).
const API_VERSION: u32 = (1 << 16) | 17;

/// `-FI_EAGAIN` as the data-path calls return it.
pub(super) const EAGAIN: isize = -(sys::FI_EAGAIN as isize);

/// Turns a libfabric return code into a result: `Ok` for `rc >= 0`, otherwise
/// [`Error::Ofi`] with `fi_strerror`'s text. The one funnel for status codes.
pub(super) fn check(rc: isize, what: &str) -> Result<()> {
    if rc >= 0 {
        return Ok(());
    }
    Err(error(i32::try_from(-rc).unwrap_or(i32::MAX), what))
}

/// The error for the (positive) libfabric error number `code`.
pub(super) fn error(code: i32, what: &str) -> Error {
    // SAFETY: fi_strerror takes any integer and returns a pointer to a static, NUL-terminated
    // string (or a generic text for unknown codes); it is never null.
    let text = unsafe { CStr::from_ptr(sys::fi_strerror(code)) };
    Error::Ofi {
        what: what.to_owned(),
        code,
        text: text.to_string_lossy().into_owned(),
    }
}

/// What the chosen libfabric provider asks of its users, read from its `fi_info`.
#[derive(Clone, Debug)]
pub(super) struct Caps {
    /// libfabric's name of the provider (`shm`, `tcp;ofi_rxm`, ...).
    pub(super) name: String,
    /// `domain_attr->mr_mode`.
    pub(super) mr_mode: u32,
    /// `ep_attr->max_msg_size`.
    pub(super) max_msg_size: usize,
    /// Whether `fi_cq_readfrom` reports the sender (`FI_SOURCE` granted).
    pub(super) source: bool,
}

/// Every libfabric object of one place.
///
/// Invariant: every pointer is a live object returned by libfabric for this place, closed
/// only by `Drop`; `desc` is the registration's descriptor (possibly null where the provider
/// needs none).
#[derive(Debug)]
pub(super) struct Endpoint {
    ep: *mut sys::fid_ep,
    cq: *mut sys::fid_cq,
    av: *mut sys::fid_av,
    mr: *mut sys::fid_mr,
    domain: *mut sys::fid_domain,
    fabric: *mut sys::fid_fabric,
    desc: *mut c_void,
    /// The completion queue's wait file descriptor, when the provider offers one.
    wait_fd: Option<i32>,
    caps: Caps,
}

// SAFETY: the domain is opened with FI_THREAD_SAFE, so every object of it may be used from
// any thread concurrently; the pointers themselves are plain handles.
unsafe impl Send for Endpoint {}
// SAFETY: as for `Send`.
unsafe impl Sync for Endpoint {}

/// The libfabric provider name of the first entry of `info` (`?` if it has none).
fn provider_name(info: &InfoList) -> String {
    // SAFETY: a list from fi_getinfo has at least one entry whose attribute structs are
    // allocated; a non-null prov_name is a NUL-terminated string owned by the info.
    unsafe {
        let fabric_attr = &*(*info.0).fabric_attr;
        if fabric_attr.prov_name.is_null() {
            return String::from("?");
        }
        CStr::from_ptr(fabric_attr.prov_name)
            .to_string_lossy()
            .into_owned()
    }
}

/// An `fi_info` list owned by Rust (freed with `fi_freeinfo`).
struct InfoList(*mut sys::fi_info);

impl Drop for InfoList {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: the list came from fi_getinfo/fi_allocinfo and is freed once.
            unsafe { sys::fi_freeinfo(self.0) };
        }
    }
}

impl Endpoint {
    /// Opens an RDM endpoint of the first libfabric provider that offers messages, RMA,
    /// atomics, the sender's address and send-after-send order (`FI_PROVIDER` narrows the
    /// choice), with a thread-safe domain, its completion queue and a table address vector.
    ///
    /// libfabric's shm provider names its shared-memory region after the endpoint's source
    /// address (by default `<pid>:<uid>:<n>`, which a process that exits without closing
    /// leaves behind in `/dev/shm`, and which a later process of the same pid then collides
    /// with): it gets `shm_name` instead, a name of the job that the launcher sweeps.
    pub(super) fn open(shm_name: &str) -> Result<Endpoint> {
        // SAFETY: fi_allocinfo returns a zeroed fi_info with its attribute structs allocated
        // (or null, checked).
        let hints = InfoList(unsafe { sys::atoll_fi_allocinfo() });
        if hints.0.is_null() {
            return Err(error(libc::ENOMEM, "fi_allocinfo"));
        }
        let with_source = Self::getinfo(&hints, true);
        let (mut info, source) = match with_source {
            Ok(info) => (info, true),
            Err(_) => (Self::getinfo(&hints, false)?, false),
        };
        if provider_name(&info) == "shm" {
            let name = std::ffi::CString::new(shm_name).map_err(|_| Error::Ofi {
                what: "naming the shm region".into(),
                code: 0,
                text: format!("{shm_name:?} contains a NUL byte"),
            })?;
            // SAFETY: the hints are ours; libfabric frees `src_addr` with free() in
            // fi_freeinfo, so it is allocated with strdup (checked for null).
            unsafe {
                let h = &mut *hints.0;
                h.addr_format = sys::FI_ADDR_STR;
                h.src_addr = libc::strdup(name.as_ptr()).cast();
                if h.src_addr.is_null() {
                    return Err(error(libc::ENOMEM, "strdup"));
                }
                h.src_addrlen = name.as_bytes_with_nul().len();
            }
            info = Self::getinfo(&hints, source)?;
        }
        // SAFETY: fi_getinfo succeeded, so the list has at least one entry, with its
        // attribute structs allocated.
        let first = unsafe { &*info.0 };
        // SAFETY: as above: the attribute pointers of a returned fi_info are valid.
        let (domain_attr, ep_attr) = unsafe { (&*first.domain_attr, &*first.ep_attr) };
        let name = provider_name(&info);
        let caps = Caps {
            name,
            mr_mode: domain_attr.mr_mode as u32,
            max_msg_size: ep_attr.max_msg_size,
            source,
        };
        if caps.mr_mode & sys::FI_MR_RAW != 0 {
            return Err(Error::Ofi {
                what: format!("libfabric provider {}", caps.name),
                code: 0,
                text: "it requires raw memory keys (FI_MR_RAW), which Atoll does not \
                       support; choose another with FI_PROVIDER"
                    .into(),
            });
        }
        let mut endpoint = Endpoint {
            ep: ptr::null_mut(),
            cq: ptr::null_mut(),
            av: ptr::null_mut(),
            mr: ptr::null_mut(),
            domain: ptr::null_mut(),
            fabric: ptr::null_mut(),
            desc: ptr::null_mut(),
            wait_fd: None,
            caps,
        };
        // SAFETY: (every call below) the info is live for the block; each out-pointer is a
        // field of `endpoint`, written once on success and closed by its Drop; a failure
        // leaves the field null, which Drop skips.
        unsafe {
            check(
                sys::fi_fabric(first.fabric_attr, &mut endpoint.fabric, ptr::null_mut()) as isize,
                "fi_fabric",
            )?;
            check(
                sys::atoll_fi_domain(
                    endpoint.fabric,
                    info.0,
                    &mut endpoint.domain,
                    ptr::null_mut(),
                ) as isize,
                "fi_domain",
            )?;
            // A completion queue with a file descriptor to sleep on, where the provider has
            // one; otherwise one without (idle places then sleep in bounded naps).
            for wait_obj in [sys::fi_wait_obj_FI_WAIT_FD, sys::fi_wait_obj_FI_WAIT_NONE] {
                let mut cq_attr = sys::fi_cq_attr {
                    size: 4096,
                    format: sys::fi_cq_format_FI_CQ_FORMAT_DATA,
                    wait_obj,
                    ..Default::default()
                };
                let rc = sys::atoll_fi_cq_open(
                    endpoint.domain,
                    &mut cq_attr,
                    &mut endpoint.cq,
                    ptr::null_mut(),
                );
                if rc == 0 && wait_obj == sys::fi_wait_obj_FI_WAIT_FD {
                    let mut fd: libc::c_int = -1;
                    let got = sys::atoll_fi_control(
                        &mut (*endpoint.cq).fid,
                        sys::FI_GETWAIT as i32,
                        (&mut fd as *mut libc::c_int).cast(),
                    );
                    endpoint.wait_fd = (got == 0 && fd >= 0).then_some(fd);
                }
                if rc == 0 || wait_obj == sys::fi_wait_obj_FI_WAIT_NONE {
                    check(rc as isize, "fi_cq_open")?;
                    break;
                }
            }
            let mut av_attr = sys::fi_av_attr {
                type_: sys::fi_av_type_FI_AV_TABLE,
                ..Default::default()
            };
            check(
                sys::atoll_fi_av_open(
                    endpoint.domain,
                    &mut av_attr,
                    &mut endpoint.av,
                    ptr::null_mut(),
                ) as isize,
                "fi_av_open",
            )?;
            check(
                sys::atoll_fi_endpoint(endpoint.domain, info.0, &mut endpoint.ep, ptr::null_mut())
                    as isize,
                "fi_endpoint",
            )?;
            check(
                sys::atoll_fi_ep_bind(
                    endpoint.ep,
                    &mut (*endpoint.cq).fid,
                    u64::from(sys::FI_TRANSMIT | sys::FI_RECV),
                ) as isize,
                "fi_ep_bind(cq)",
            )?;
            check(
                sys::atoll_fi_ep_bind(endpoint.ep, &mut (*endpoint.av).fid, 0) as isize,
                "fi_ep_bind(av)",
            )?;
            check(sys::atoll_fi_enable(endpoint.ep) as isize, "fi_enable")?;
        }
        tracing::debug!(
            provider = %endpoint.caps.name,
            wait_fd = ?endpoint.wait_fd,
            "libfabric endpoint open"
        );
        Ok(endpoint)
    }

    fn getinfo(hints: &InfoList, source: bool) -> Result<InfoList> {
        // SAFETY: `hints` came from fi_allocinfo, so its attribute structs are allocated and
        // ours to fill in; fi_getinfo only reads it.
        unsafe {
            let h = &mut *hints.0;
            h.caps = u64::from(sys::FI_MSG | sys::FI_RMA | sys::FI_ATOMIC)
                | if source { sys::FI_SOURCE } else { 0 };
            h.mode = sys::FI_CONTEXT | sys::FI_CONTEXT2;
            (*h.ep_attr).type_ = sys::fi_ep_type_FI_EP_RDM;
            let domain = &mut *h.domain_attr;
            domain.threading = sys::fi_threading_FI_THREAD_SAFE;
            domain.mr_mode = (sys::FI_MR_LOCAL
                | sys::FI_MR_VIRT_ADDR
                | sys::FI_MR_ALLOCATED
                | sys::FI_MR_PROV_KEY
                | sys::FI_MR_ENDPOINT) as i32;
            (*h.tx_attr).msg_order = u64::from(sys::FI_ORDER_SAS);
            (*h.rx_attr).msg_order = u64::from(sys::FI_ORDER_SAS);
        }
        let mut info = ptr::null_mut();
        // SAFETY: hints is a valid fi_info; `info` receives a list we free (InfoList).
        let rc = unsafe {
            sys::fi_getinfo(API_VERSION, ptr::null(), ptr::null(), 0, hints.0, &mut info)
        };
        let list = InfoList(info);
        check(
            rc as isize,
            "fi_getinfo (looking for reliable datagram endpoints with messages, RMA, atomics and \
             send-after-send order)",
        )?;
        if list.0.is_null() {
            return Err(error(sys::FI_ENODATA as i32, "fi_getinfo"));
        }
        Ok(list)
    }

    /// Sleeps until the completion queue may have something, `extra` (an eventfd) is
    /// readable, or `timeout`. Returns `false` at once, without sleeping, when the provider
    /// gave no wait descriptor (the caller naps instead).
    pub(super) fn wait(&self, extra: i32, timeout: std::time::Duration) -> bool {
        let Some(fd) = self.wait_fd else {
            return false;
        };
        let mut fids = [self.cq.cast::<sys::fid>()];
        // SAFETY: the fabric and CQ are live; fi_trywait reads the one-element array.
        let rc = unsafe { sys::atoll_fi_trywait(self.fabric, fids.as_mut_ptr(), 1) };
        if rc != 0 {
            // Completions are pending (-FI_EAGAIN): the caller polls again.
            return true;
        }
        let mut fds = [
            libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: extra,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let ts = libc::timespec {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: `fds` holds two valid pollfd entries and `ts` a valid timeout, both live
        // across the call; a null signal mask leaves the mask as it is.
        unsafe { libc::ppoll(fds.as_mut_ptr(), 2, &ts, ptr::null()) };
        true
    }

    /// The provider's requirements.
    pub(super) fn caps(&self) -> &Caps {
        &self.caps
    }

    /// Registers `len` bytes at `base` for local use and remote read, write and atomics, and
    /// binds the registration to the endpoint where the provider wants that. Returns the key
    /// peers use.
    ///
    /// # Safety
    /// `base..base + len` must stay mapped until this endpoint is dropped.
    pub(super) unsafe fn register(&mut self, base: *mut u8, len: usize) -> Result<u64> {
        let access = u64::from(
            sys::FI_READ
                | sys::FI_WRITE
                | sys::FI_REMOTE_READ
                | sys::FI_REMOTE_WRITE
                | sys::FI_SEND
                | sys::FI_RECV,
        );
        // SAFETY: the domain is live; the memory stays mapped (caller); `self.mr` is written
        // once and closed by Drop. Requested key 1: the only registration of this domain
        // (ignored under FI_MR_PROV_KEY).
        unsafe {
            check(
                sys::atoll_fi_mr_reg(
                    self.domain,
                    base.cast(),
                    len,
                    access,
                    0,
                    1,
                    0,
                    &mut self.mr,
                    ptr::null_mut(),
                ) as isize,
                "fi_mr_reg",
            )?;
            if self.caps.mr_mode & sys::FI_MR_ENDPOINT != 0 {
                check(
                    sys::atoll_fi_mr_bind(self.mr, &mut (*self.ep).fid, 0) as isize,
                    "fi_mr_bind",
                )?;
                check(sys::atoll_fi_mr_enable(self.mr) as isize, "fi_mr_enable")?;
            }
            self.desc = sys::atoll_fi_mr_desc(self.mr);
            Ok(sys::atoll_fi_mr_key(self.mr))
        }
    }

    /// This endpoint's address, to be inserted into every peer's address vector.
    pub(super) fn name(&self) -> Result<Vec<u8>> {
        let mut name = vec![0u8; 256];
        let mut len = name.len();
        // SAFETY: the endpoint is live; `name` has `len` writable bytes, and libfabric writes
        // at most `len` (reporting the size it needs when that is too little).
        let mut rc = unsafe {
            sys::atoll_fi_getname(&mut (*self.ep).fid, name.as_mut_ptr().cast(), &mut len)
        };
        if rc == -(sys::FI_ETOOSMALL as i32) {
            name.resize(len, 0);
            // SAFETY: as above, with the size libfabric asked for.
            rc = unsafe {
                sys::atoll_fi_getname(&mut (*self.ep).fid, name.as_mut_ptr().cast(), &mut len)
            };
        }
        check(rc as isize, "fi_getname")?;
        name.truncate(len);
        Ok(name)
    }

    /// Inserts every place's address, in place order: place `i` becomes `fi_addr_t` `i`.
    pub(super) fn insert_addresses(&self, names: &[Vec<u8>]) -> Result<()> {
        for (place, name) in names.iter().enumerate() {
            let mut addr: sys::fi_addr_t = 0;
            // SAFETY: the AV is live; `name` is one address of the length the provider's
            // fi_getname produced (all places run the same provider, checked by length at
            // the caller); `addr` receives one fi_addr_t.
            let rc = unsafe {
                sys::atoll_fi_av_insert(
                    self.av,
                    name.as_ptr().cast(),
                    1,
                    &mut addr,
                    0,
                    ptr::null_mut(),
                )
            };
            if rc != 1 || addr != place as u64 {
                return Err(Error::Ofi {
                    what: format!("fi_av_insert of place {place}'s address"),
                    code: rc.min(0).saturating_neg(),
                    text: format!("inserted {rc} addresses, as fi_addr {addr}"),
                });
            }
        }
        Ok(())
    }

    /// Posts a receive buffer.
    ///
    /// # Safety
    /// `buf..buf + len` must be registered memory that stays untouched until the receive's
    /// completion (or the endpoint's close), and `context` a live `fi_context2` until then.
    pub(super) unsafe fn recv(&self, buf: *mut u8, len: usize, context: *mut c_void) -> isize {
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

    /// Sends `len` bytes at `buf` to place `to`.
    ///
    /// # Safety
    /// As for [`Endpoint::recv`]: the buffer is lent to libfabric until the completion.
    pub(super) unsafe fn send(
        &self,
        buf: *const u8,
        len: usize,
        to: usize,
        context: *mut c_void,
    ) -> isize {
        // SAFETY: caller's contract; the endpoint is live.
        unsafe { sys::atoll_fi_send(self.ep, buf.cast(), len, self.desc, to as u64, context) }
    }

    /// Reads `len` bytes at remote address `addr` (key `key`) of place `from` into `buf`.
    ///
    /// # Safety
    /// As for [`Endpoint::recv`].
    pub(super) unsafe fn read(
        &self,
        buf: *mut u8,
        len: usize,
        from: usize,
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
                from as u64,
                addr,
                key,
                context,
            )
        }
    }

    /// Writes `len` bytes at `buf` to remote address `addr` (key `key`) of place `to`,
    /// completing once the data is visible at the target (`FI_DELIVERY_COMPLETE`).
    ///
    /// # Safety
    /// As for [`Endpoint::recv`].
    pub(super) unsafe fn write(
        &self,
        buf: *const u8,
        len: usize,
        to: usize,
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
            addr: to as u64,
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

    /// Whether the provider offers fetching `u64` sums and compare-and-swap.
    pub(super) fn has_u64_atomics(&self) -> bool {
        let (mut fetch, mut compare) = (0usize, 0usize);
        // SAFETY: the endpoint is live; the call only writes `fetch`.
        let fetch_rc = unsafe {
            sys::atoll_fi_fetch_atomicvalid(
                self.ep,
                sys::fi_datatype_FI_UINT64,
                sys::fi_op_FI_SUM,
                &mut fetch,
            )
        };
        // SAFETY: as above, for `compare`.
        let compare_rc = unsafe {
            sys::atoll_fi_compare_atomicvalid(
                self.ep,
                sys::fi_datatype_FI_UINT64,
                sys::fi_op_FI_CSWAP,
                &mut compare,
            )
        };
        fetch_rc == 0 && fetch >= 1 && compare_rc == 0 && compare >= 1
    }

    /// A fetching atomic on one `u64` of place `to`: `op` (`FI_SUM`) with the operand at
    /// `operand`, the previous value written to `result`.
    ///
    /// # Safety
    /// As for [`Endpoint::recv`], for `operand` and `result` (8 bytes each).
    pub(super) unsafe fn fetch_atomic(
        &self,
        operand: *const u64,
        result: *mut u64,
        to: usize,
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
                to as u64,
                addr,
                key,
                sys::fi_datatype_FI_UINT64,
                sys::fi_op_FI_SUM,
                context,
            )
        }
    }

    /// Compare-and-swap on one `u64` of place `to`.
    ///
    /// # Safety
    /// As for [`Endpoint::fetch_atomic`], for `new`, `expected` and `result`.
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn compare_atomic(
        &self,
        new: *const u64,
        expected: *const u64,
        result: *mut u64,
        to: usize,
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
                to as u64,
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
    pub(super) fn read_completions(
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
    pub(super) fn read_error(&self) -> Option<(*mut c_void, Error)> {
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

impl Drop for Endpoint {
    fn drop(&mut self) {
        // Close in dependency order: endpoint, completion queue, address vector, memory
        // registration, domain, fabric.
        let fids: [*mut sys::fid; 6] = [
            self.ep.cast(),
            self.cq.cast(),
            self.av.cast(),
            self.mr.cast(),
            self.domain.cast(),
            self.fabric.cast(),
        ];
        for fid in fids {
            if !fid.is_null() {
                // SAFETY: each object is live (type invariant) and closed exactly once; every
                // fid_* struct begins with its `struct fid`, so the cast is the C idiom
                // `&obj->fid`.
                let rc = unsafe { sys::atoll_fi_close(fid) };
                if rc != 0 {
                    tracing::debug!(rc, "fi_close failed during teardown");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_codes_become_errors_with_libfabric_text() {
        assert!(check(0, "fi_send").is_ok());
        assert!(check(5, "fi_cq_read").is_ok());
        match check(EAGAIN, "fi_send") {
            Err(Error::Ofi { what, code, text }) => {
                assert_eq!(what, "fi_send");
                assert_eq!(code, sys::FI_EAGAIN as i32);
                assert!(!text.is_empty());
            }
            other => panic!("-FI_EAGAIN gave {other:?}"),
        }
        let message = error(sys::FI_ENODATA as i32, "fi_getinfo").to_string();
        assert!(message.contains("fi_getinfo") && message.contains("FI_PROVIDER"));
    }
}
