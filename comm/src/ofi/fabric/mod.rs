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

mod data_path;
mod open;

pub(super) use data_path::wait;
pub(super) use open::{Want, SHM};

impl Endpoint {
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

    /// Checks that `name`, a peer's address as it sent it, has the form this endpoint's own
    /// addresses have: a NUL-terminated string for shm (`FI_ADDR_STR`), otherwise exactly
    /// `own_len` bytes. `av_insert` reads a peer's address without knowing its length, so an
    /// address is checked before it is inserted.
    pub(super) fn check_address(
        &self,
        name: &[u8],
        own_len: usize,
    ) -> std::result::Result<(), String> {
        if self.caps.name == SHM {
            match name.iter().position(|&byte| byte == 0) {
                Some(end) if end + 1 == name.len() && end > 0 => Ok(()),
                _ => Err(format!(
                    "its shm address ({} bytes) is not one NUL-terminated name",
                    name.len()
                )),
            }
        } else if name.len() == own_len {
            Ok(())
        } else {
            Err(format!(
                "its {} address has {} bytes, this place's has {own_len} (are all places using \
                 the same FI_PROVIDER?)",
                self.caps.name,
                name.len()
            ))
        }
    }

    /// Inserts the peers' addresses in order: the `i`-th becomes `fi_addr_t` `i`. `places`
    /// names the place of each, for errors.
    pub(super) fn insert_addresses(&self, names: &[&[u8]], places: &[usize]) -> Result<()> {
        for (index, (name, place)) in names.iter().zip(places).enumerate() {
            let mut addr: sys::fi_addr_t = 0;
            // SAFETY: the AV is live; `name` passed `check_address`, so the provider reads
            // no more than its bytes; `addr` receives one fi_addr_t.
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
            if rc != 1 || addr != index as u64 {
                return Err(Error::Ofi {
                    what: format!("fi_av_insert of place {place}'s address"),
                    code: rc.min(0).saturating_neg(),
                    text: format!("inserted {rc} addresses, as fi_addr {addr} (expected {index})"),
                });
            }
        }
        Ok(())
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
