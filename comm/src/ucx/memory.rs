//! Registered memory: one anonymous mapping per place, registered with `ucp_mem_map`, its
//! packed remote key, and the peers' keys unpacked on their endpoints.

use std::ffi::c_void;
use std::ptr::NonNull;
use std::sync::Arc;

use ucx_sys as sys;

use super::context::Context;
use super::status::check;
use crate::{Error, Place, Result};

/// This place's registered heap: `len` bytes of anonymous memory registered with UCX.
///
/// Invariant: `base..base + len` is a private read/write mapping owned by this value, and
/// `memh` its registration with `context`; both are released on drop, the registration
/// first. Other places write it through RMA at any time: it is only accessed through raw
/// pointers, copies and atomics.
#[derive(Debug)]
pub(crate) struct Mapping {
    base: NonNull<u8>,
    len: usize,
    memh: sys::ucp_mem_h,
    context: Arc<Context>,
}

// SAFETY: the mapping is plain memory accessed through raw pointers and atomics only; the
// handle is only used at set-up and in `drop`.
unsafe impl Send for Mapping {}
// SAFETY: as for `Send`.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes and registers them for remote read, write and atomics.
    pub(crate) fn new(context: &Arc<Context>, len: usize) -> Result<Mapping> {
        // SAFETY: a fresh private anonymous mapping at an address the kernel picks; it aliases
        // no Rust object. MAP_NORESERVE: pages are committed only when touched.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(Error::io(
                format!("mmap of {len} bytes of registered memory (lower ATOLL_SHM_HEAP_MB)"),
                std::io::Error::last_os_error(),
            ));
        }
        let base = NonNull::new(ptr.cast::<u8>())
            .ok_or_else(|| Error::io("mmap", std::io::Error::other("null mapping")))?;
        let params = sys::ucp_mem_map_params_t {
            field_mask: u64::from(
                sys::UCP_MEM_MAP_PARAM_FIELD_ADDRESS | sys::UCP_MEM_MAP_PARAM_FIELD_LENGTH,
            ),
            address: ptr,
            length: len,
            ..Default::default()
        };
        let mut memh: sys::ucp_mem_h = std::ptr::null_mut();
        // SAFETY: live context; `ptr..ptr+len` is our mapping; valid out-pointer.
        let status = unsafe { sys::ucp_mem_map(context.raw(), &params, &mut memh) };
        if let Err(error) = check("ucp_mem_map", status) {
            // SAFETY: unmapping the mapping created above, used by nothing yet.
            unsafe { libc::munmap(ptr, len) };
            return Err(error);
        }
        Ok(Mapping {
            base,
            len,
            memh,
            context: context.clone(),
        })
    }

    pub(crate) fn base(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The registration, for operations whose local buffer lies in the heap.
    pub(crate) fn memh(&self) -> sys::ucp_mem_h {
        self.memh
    }

    /// The packed remote key of the whole heap, for the bootstrap exchange.
    pub(crate) fn packed_key(&self) -> Result<Vec<u8>> {
        let mut buffer: *mut c_void = std::ptr::null_mut();
        let mut size = 0usize;
        // SAFETY: live context and handle; valid out-pointers.
        check("ucp_rkey_pack", unsafe {
            sys::ucp_rkey_pack(self.context.raw(), self.memh, &mut buffer, &mut size)
        })?;
        // SAFETY: UCX returned `size` readable bytes at `buffer`, released right after.
        let bytes = unsafe { std::slice::from_raw_parts(buffer.cast::<u8>(), size) }.to_vec();
        // SAFETY: `buffer` came from `ucp_rkey_pack`, released once.
        unsafe { sys::ucp_rkey_buffer_release(buffer) };
        Ok(bytes)
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the registration and the mapping are this value's (type invariant); the
        // worker, whose operations could target the memory, is destroyed before the provider
        // lets go of its `Arc<Mapping>`, and regions only reach it by local copies.
        unsafe {
            sys::ucp_mem_unmap(self.context.raw(), self.memh);
            libc::munmap(self.base.as_ptr().cast(), self.len);
        }
    }
}

/// A peer's heap as this place reaches it: base address and unpacked remote key.
///
/// Invariant: `rkey` was unpacked on the endpoint the provider keeps for this peer and is
/// destroyed (by the provider, under the worker lock) before that endpoint is closed.
#[derive(Debug)]
pub(crate) struct PeerMemory {
    pub(crate) base: u64,
    pub(crate) rkey: sys::ucp_rkey_h,
}

/// The bootstrap blob of a place's heap: base (8 bytes LE), length (8), packed key.
pub(crate) fn encode(mapping: &Mapping) -> Result<Vec<u8>> {
    let key = mapping.packed_key()?;
    let mut blob = Vec::with_capacity(16 + key.len());
    blob.extend_from_slice(&(mapping.base() as u64).to_le_bytes());
    blob.extend_from_slice(&(mapping.len() as u64).to_le_bytes());
    blob.extend_from_slice(&key);
    Ok(blob)
}

/// Unpacks `place`'s heap blob on `ep`; its heap must be `expected_len` bytes like ours.
pub(crate) fn decode(
    place: usize,
    blob: &[u8],
    ep: sys::ucp_ep_h,
    expected_len: usize,
) -> Result<PeerMemory> {
    let mismatch = |reason: String| Error::SegmentMismatch {
        place: Place::new(place),
        reason,
    };
    if blob.len() <= 16 {
        return Err(mismatch(format!(
            "its registered-memory descriptor has {} bytes",
            blob.len()
        )));
    }
    let word = |at: usize| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&blob[at..at + 8]);
        u64::from_le_bytes(bytes)
    };
    let (base, len) = (word(0), word(8));
    if len != expected_len as u64 {
        return Err(mismatch(format!(
            "it registered {len} bytes, this place {expected_len} (same ATOLL_SHM_HEAP_MB everywhere?)"
        )));
    }
    let mut rkey: sys::ucp_rkey_h = std::ptr::null_mut();
    // SAFETY: `ep` is a live endpoint (the caller's); the key bytes are a readable buffer for
    // the call; UCX validates the packed key's contents.
    check("ucp_ep_rkey_unpack", unsafe {
        sys::ucp_ep_rkey_unpack(ep, blob[16..].as_ptr().cast(), &mut rkey)
    })?;
    Ok(PeerMemory { base, rkey })
}
