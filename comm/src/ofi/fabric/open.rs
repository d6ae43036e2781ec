//! Choosing a libfabric provider and opening its fabric, domain, completion queue, address
//! vector and endpoint.

use std::ffi::{CStr, CString};
use std::ptr;

use atoll_ofi_sys as sys;

use super::{check, error, Caps, Endpoint};
use crate::{Error, Result};

/// libfabric's name of its shared-memory provider.
pub(in crate::ofi) const SHM: &str = "shm";

/// Which endpoint to open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::ofi) enum Want {
    /// The endpoint that reaches every place: the first provider `fi_getinfo` offers
    /// (`FI_PROVIDER` narrows the choice), passing over `shm` when `other_hosts` (it cannot
    /// reach them).
    Network { other_hosts: bool },
    /// An endpoint of libfabric's `shm` provider, for the places of this host.
    SharedMemory,
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

impl InfoList {
    /// The entries of the list, in libfabric's order of preference.
    fn entries(&self) -> impl Iterator<Item = *mut sys::fi_info> + '_ {
        std::iter::successors((!self.0.is_null()).then_some(self.0), |&entry| {
            // SAFETY: `entry` is the list's head or a `next` of it: every `next` of a list
            // from fi_getinfo is null (not followed) or a live entry of the list, which lives
            // as long as `self`.
            let next = unsafe { (*entry).next };
            (!next.is_null()).then_some(next)
        })
    }
}

/// The libfabric provider name of `entry` (`?` if it has none).
fn provider_name(entry: *mut sys::fi_info) -> String {
    // SAFETY: an entry of a list from fi_getinfo has its attribute structs allocated; a
    // non-null prov_name is a NUL-terminated string owned by the entry.
    unsafe {
        let fabric_attr = &*(*entry).fabric_attr;
        if fabric_attr.prov_name.is_null() {
            return String::from("?");
        }
        CStr::from_ptr(fabric_attr.prov_name)
            .to_string_lossy()
            .into_owned()
    }
}

/// Hints for a reliable-datagram endpoint with messages, RMA, atomics (and the sender's
/// address when `source`), send-after-send order and a thread-safe domain.
fn hints(source: bool) -> Result<InfoList> {
    // SAFETY: fi_allocinfo returns a zeroed fi_info with its attribute structs allocated (or
    // null, checked).
    let hints = InfoList(unsafe { sys::atoll_fi_allocinfo() });
    if hints.0.is_null() {
        return Err(error(libc::ENOMEM, "fi_allocinfo"));
    }
    // SAFETY: the hints came from fi_allocinfo, so their attribute structs are allocated and
    // ours to fill in.
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
    Ok(hints)
}

/// `strdup` of `text`, for a field of the hints that `fi_freeinfo` frees with `free()`.
fn c_string(text: &str, what: &str) -> Result<*mut libc::c_char> {
    let text = CString::new(text).map_err(|_| Error::Ofi {
        what: what.to_owned(),
        code: 0,
        text: format!("{text:?} contains a NUL byte"),
    })?;
    // SAFETY: strdup copies a NUL-terminated string into malloc'd memory (or returns null).
    let copy = unsafe { libc::strdup(text.as_ptr()) };
    if copy.is_null() {
        return Err(error(libc::ENOMEM, "strdup"));
    }
    Ok(copy)
}

/// Narrows `hints` to libfabric's shm provider, with its region named `shm_name`.
fn narrow_to_shm(hints: &InfoList, shm_name: &str) -> Result<()> {
    let provider = c_string(SHM, "naming the shm provider")?;
    let name = match c_string(shm_name, "naming the shm region") {
        Ok(name) => name,
        Err(error) => {
            // SAFETY: `provider` came from strdup and is not stored anywhere yet.
            unsafe { libc::free(provider.cast()) };
            return Err(error);
        }
    };
    // SAFETY: the hints are ours; fi_freeinfo frees `prov_name` and `src_addr` with free(),
    // and both came from strdup. Any earlier value (from a previous narrowing) is freed first.
    unsafe {
        let h = &mut *hints.0;
        let fabric_attr = &mut *h.fabric_attr;
        libc::free(fabric_attr.prov_name.cast());
        fabric_attr.prov_name = provider;
        libc::free(h.src_addr);
        h.addr_format = sys::FI_ADDR_STR;
        h.src_addr = name.cast();
        h.src_addrlen = libc::strlen(name) + 1;
    }
    Ok(())
}

fn getinfo(hints: &InfoList) -> Result<InfoList> {
    let mut info = ptr::null_mut();
    // SAFETY: hints is a valid fi_info; `info` receives a list we free (InfoList).
    let rc = unsafe {
        sys::fi_getinfo(
            super::API_VERSION,
            ptr::null(),
            ptr::null(),
            0,
            hints.0,
            &mut info,
        )
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

/// `fi_getinfo` with the sender's address asked for where a provider grants it, without
/// otherwise. Returns the list and whether `FI_SOURCE` was granted.
fn getinfo_with_source(shm_name: Option<&str>) -> Result<(InfoList, bool)> {
    let mut first_error = None;
    for source in [true, false] {
        let hints = hints(source)?;
        if let Some(name) = shm_name {
            narrow_to_shm(&hints, name)?;
        }
        match getinfo(&hints) {
            Ok(list) => return Ok((list, source)),
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
    }
    Err(first_error.unwrap_or_else(|| error(sys::FI_ENODATA as i32, "fi_getinfo")))
}

impl Endpoint {
    /// Opens the endpoint `want` asks for: an RDM endpoint with messages, RMA, atomics, the
    /// sender's address (where granted) and send-after-send order, a thread-safe domain, its
    /// completion queue and a table address vector.
    ///
    /// libfabric's shm provider names its shared-memory region after the endpoint's source
    /// address (by default `<pid>:<uid>:<n>`, which a process that exits without closing
    /// leaves behind in `/dev/shm`, and which a later process of the same pid then collides
    /// with): it gets `shm_name` instead, a name of the job that the launcher sweeps.
    pub(in crate::ofi) fn open(want: Want, shm_name: &str) -> Result<Endpoint> {
        // shm cannot reach another host: the network endpoint of a job on several hosts
        // passes over it.
        let usable = |entry: *mut sys::fi_info| {
            want != (Want::Network { other_hosts: true }) || provider_name(entry) != SHM
        };
        let (info, source) = match want {
            Want::SharedMemory => getinfo_with_source(Some(shm_name))?,
            Want::Network { other_hosts } => {
                let (info, source) = getinfo_with_source(None)?;
                let chosen = info
                    .entries()
                    .find(|&entry| usable(entry))
                    .map(provider_name);
                match chosen.as_deref() {
                    None if other_hosts => {
                        return Err(Error::Ofi {
                            what: "choosing a libfabric provider".into(),
                            code: sys::FI_ENODATA as i32,
                            text: "the places run on more than one host, and the only provider \
                                   FI_PROVIDER allows is shm, which cannot reach another host; \
                                   name a network provider too, e.g. FI_PROVIDER='shm,tcp;ofi_rxm'"
                                .into(),
                        })
                    }
                    // Named after the job, as above.
                    Some(SHM) => getinfo_with_source(Some(shm_name))?,
                    _ => (info, source),
                }
            }
        };
        let entry = info
            .entries()
            .find(|&entry| usable(entry))
            .ok_or_else(|| error(sys::FI_ENODATA as i32, "fi_getinfo"))?;
        // SAFETY: an entry of a list from fi_getinfo has its attribute structs allocated.
        let (domain_attr, ep_attr) = unsafe { (&*(*entry).domain_attr, &*(*entry).ep_attr) };
        let caps = Caps {
            name: provider_name(entry),
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
        // SAFETY: (every call below) the entry is live for the block (its list is); each
        // out-pointer is a field of `endpoint`, written once on success and closed by its
        // Drop; a failure leaves the field null, which Drop skips.
        unsafe {
            check(
                sys::fi_fabric((*entry).fabric_attr, &mut endpoint.fabric, ptr::null_mut())
                    as isize,
                "fi_fabric",
            )?;
            check(
                sys::atoll_fi_domain(
                    endpoint.fabric,
                    entry,
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
                sys::atoll_fi_endpoint(endpoint.domain, entry, &mut endpoint.ep, ptr::null_mut())
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
}
