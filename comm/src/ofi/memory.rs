//! Registered memory: one anonymous mapping per place, registered once (`fi_mr_reg`), carved
//! into receive and send buffers at start and into regions, rendezvous payloads and RMA
//! staging buffers afterwards (by [`crate::heap::HeapAllocator`]); and what each peer told
//! about its own (address, key, size), exchanged through the bootstrap.

use crate::{Error, Place, Result};

/// An anonymous, private mapping: this place's registered memory.
///
/// Invariant: `base..base + len` is mapped readable and writable until drop.
#[derive(Debug)]
pub(super) struct Mapping {
    base: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain memory; every access to it goes through raw pointers whose
// users synchronise (regions: copies and atomics; buffers: owned by one operation at a time).
unsafe impl Send for Mapping {}
// SAFETY: as for `Send`.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` zeroed bytes (pages are only backed when touched).
    pub(super) fn new(len: usize) -> Result<Mapping> {
        let base = crate::heap::map_anonymous(len)?;
        Ok(Mapping {
            base: base.as_ptr(),
            len,
        })
    }

    pub(super) fn base(&self) -> *mut u8 {
        self.base
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping is ours and nothing uses it any more (every user holds the Arc
        // this lives in, and the endpoint that could write it closed before).
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

/// What one place's registered memory looks like to the others.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct PeerMemory {
    /// The address remote operations name offset 0 with: the mapping's virtual address
    /// under `FI_MR_VIRT_ADDR`, 0 otherwise.
    pub(super) base: u64,
    /// The registration's key.
    pub(super) key: u64,
    /// Bytes registered.
    pub(super) len: u64,
}

impl PeerMemory {
    const BYTES: usize = 24;

    /// The remote address of `offset`, which the caller has checked against `len`.
    pub(super) fn addr(&self, offset: usize) -> u64 {
        self.base.wrapping_add(offset as u64)
    }
}

/// The start-up blob of a place: its memory description, then its endpoint address.
pub(super) fn encode_blob(memory: &PeerMemory, name: &[u8]) -> Vec<u8> {
    let mut blob = Vec::with_capacity(PeerMemory::BYTES + name.len());
    blob.extend_from_slice(&memory.base.to_le_bytes());
    blob.extend_from_slice(&memory.key.to_le_bytes());
    blob.extend_from_slice(&memory.len.to_le_bytes());
    blob.extend_from_slice(name);
    blob
}

/// Parses place `place`'s blob; its address must be as long as this place's (every place runs
/// the same libfabric provider).
pub(super) fn decode_blob(
    place: usize,
    blob: &[u8],
    name_len: usize,
) -> Result<(PeerMemory, Vec<u8>)> {
    if blob.len() != PeerMemory::BYTES + name_len {
        return Err(Error::SegmentMismatch {
            place: Place::new(place),
            reason: format!(
                "its libfabric start-up record has {} bytes, this place's has {} (are all places \
                 using the same FI_PROVIDER?)",
                blob.len(),
                PeerMemory::BYTES + name_len
            ),
        });
    }
    let word = |i: usize| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&blob[i * 8..i * 8 + 8]);
        u64::from_le_bytes(bytes)
    };
    let memory = PeerMemory {
        base: word(0),
        key: word(1),
        len: word(2),
    };
    Ok((memory, blob[PeerMemory::BYTES..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_round_trip_and_reject_other_lengths() {
        let memory = PeerMemory {
            base: 0x7f00_0000_1000,
            key: 42,
            len: 256 << 20,
        };
        let blob = encode_blob(&memory, b"address");
        let (decoded, name) = decode_blob(3, &blob, 7).expect("a well-formed blob");
        assert_eq!(decoded, memory);
        assert_eq!(name, b"address");
        assert_eq!(decoded.addr(64), 0x7f00_0000_1040);
        match decode_blob(3, &blob[..blob.len() - 1], 7) {
            Err(Error::SegmentMismatch { place, .. }) => assert_eq!(place, Place::new(3)),
            other => panic!("a short blob gave {other:?}"),
        }
    }
}
