//! Registered memory: one heap per place, allocated by UCX itself where it can (so that a
//! shared-memory transport can map it into its peers and serve puts, gets and atomics with
//! loads and stores), else an anonymous mapping registered with `ucp_mem_map`; its packed
//! remote key, and the peers' keys unpacked on their endpoints.
//!
//! Why UCX allocates: memory Atoll maps itself is registered memory to UCX's shared-memory
//! transports only through `process_vm_writev` (cma), which has no atomics; a context asked
//! for 64-bit atomics then emulates every RMA operation on that memory with active messages
//! (so that puts and atomics stay coherent), which costs the target's attention and most of
//! the bandwidth. Memory UCX allocates through its `posix`/`sysv` memory domains is mapped
//! by the peers instead: puts are `memcpy`s and atomics CPU atomics.

use std::ffi::c_void;
use std::ptr::NonNull;
use std::sync::Arc;

use ucx_sys as sys;

use super::context::Context;
use super::status::check;
use crate::{Error, Place, Result};

/// This place's registered heap: `len` bytes registered with UCX.
///
/// Invariant: `base..base + len` is read/write memory owned by this value, and `memh` its
/// registration with `context`: allocated by UCX (`ucp_mem_map` with `UCP_MEM_MAP_ALLOCATE`;
/// `ucp_mem_unmap` frees it) or mapped here (`mmapped`; unmapped after `ucp_mem_unmap`). Other places write it through RMA at any time: it is only accessed through raw
/// pointers, copies and atomics.
#[derive(Debug)]
pub(crate) struct Mapping {
    base: NonNull<u8>,
    len: usize,
    memh: sys::ucp_mem_h,
    /// The memory is this value's own `mmap` (UCX could not allocate it).
    mmapped: bool,
    context: Arc<Context>,
}

// SAFETY: the mapping is plain memory accessed through raw pointers and atomics only; the
// handle is only used at set-up and in `drop`.
unsafe impl Send for Mapping {}
// SAFETY: as for `Send`.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// `len` bytes registered for remote read, write and atomics: allocated by UCX where it
    /// can, else mapped here and registered.
    pub(crate) fn new(context: &Arc<Context>, len: usize) -> Result<Mapping> {
        match Mapping::allocated_by_ucx(context, len) {
            Ok(mapping) => Ok(mapping),
            Err(error) => {
                tracing::debug!(%error, "UCX could not allocate the heap; registering an mmap");
                Mapping::mmapped(context, len)
            }
        }
    }

    fn allocated_by_ucx(context: &Arc<Context>, len: usize) -> Result<Mapping> {
        let params = sys::ucp_mem_map_params_t {
            field_mask: u64::from(
                sys::UCP_MEM_MAP_PARAM_FIELD_ADDRESS
                    | sys::UCP_MEM_MAP_PARAM_FIELD_LENGTH
                    | sys::UCP_MEM_MAP_PARAM_FIELD_FLAGS,
            ),
            address: std::ptr::null_mut(),
            length: len,
            flags: sys::UCP_MEM_MAP_ALLOCATE as _,
            ..Default::default()
        };
        let mut memh: sys::ucp_mem_h = std::ptr::null_mut();
        // SAFETY: live context; a null address with ALLOCATE asks UCX for fresh memory; valid
        // out-pointer.
        check("ucp_mem_map(ALLOCATE)", unsafe {
            sys::ucp_mem_map(context.raw(), &params, &mut memh)
        })?;
        let mut attr = sys::ucp_mem_attr_t {
            field_mask: u64::from(sys::UCP_MEM_ATTR_FIELD_ADDRESS | sys::UCP_MEM_ATTR_FIELD_LENGTH),
            ..Default::default()
        };
        // SAFETY: `memh` was just returned by `ucp_mem_map`; valid out-pointer.
        let queried = check("ucp_mem_query", unsafe {
            sys::ucp_mem_query(memh, &mut attr)
        });
        let base = NonNull::new(attr.address.cast::<u8>());
        match (queried, base) {
            (Ok(()), Some(base)) if attr.length >= len => Ok(Mapping {
                base,
                len,
                memh,
                mmapped: false,
                context: context.clone(),
            }),
            (result, _) => {
                // SAFETY: the registration made above, used by nothing yet; frees its memory.
                unsafe { sys::ucp_mem_unmap(context.raw(), memh) };
                result?;
                Err(Error::io(
                    "ucp_mem_map(ALLOCATE)",
                    std::io::Error::other(format!(
                        "UCX gave {} bytes at {:p} for {len} asked",
                        attr.length, attr.address
                    )),
                ))
            }
        }
    }

    fn mmapped(context: &Arc<Context>, len: usize) -> Result<Mapping> {
        let base = crate::heap::map_anonymous(len)?;
        let ptr = base.as_ptr().cast::<c_void>();
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
            mmapped: true,
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
        unsafe { sys::ucp_mem_unmap(self.context.raw(), self.memh) };
        if self.mmapped {
            // SAFETY: our own mapping (invariant), no longer registered.
            unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
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
