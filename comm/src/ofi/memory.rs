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
    /// The remote address of `offset`, which the caller has checked against `len`.
    pub(super) fn addr(&self, offset: usize) -> u64 {
        self.base.wrapping_add(offset as u64)
    }
}

/// How one endpoint of a place is reached: its address, and its registration of the place's
/// memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct EndpointRecord {
    pub(super) memory: PeerMemory,
    /// The endpoint's address (`fi_getname`), checked by the endpoint before it is inserted.
    pub(super) name: Vec<u8>,
}

/// What a place tells every other at start: its network endpoint, and its shm endpoint for the
/// places of its host when it opened one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct StartRecord {
    pub(super) network: EndpointRecord,
    pub(super) local: Option<EndpointRecord>,
}

/// The longest endpoint address accepted from a peer.
const MAX_NAME: usize = 4096;

impl StartRecord {
    /// The record's bytes: for each endpoint (network, then shm when present) base, key and
    /// length of the registration (`u64` each, little-endian), then the address's length
    /// (`u32`) and bytes.
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut blob = Vec::new();
        for record in std::iter::once(&self.network).chain(&self.local) {
            blob.extend_from_slice(&record.memory.base.to_le_bytes());
            blob.extend_from_slice(&record.memory.key.to_le_bytes());
            blob.extend_from_slice(&record.memory.len.to_le_bytes());
            blob.extend_from_slice(&(record.name.len() as u32).to_le_bytes());
            blob.extend_from_slice(&record.name);
        }
        blob
    }

    /// Parses place `place`'s record (a peer's bytes: every length is checked).
    pub(super) fn decode(place: usize, blob: &[u8]) -> Result<StartRecord> {
        let mismatch = |reason: String| Error::SegmentMismatch {
            place: Place::new(place),
            reason: format!("its libfabric start-up record {reason}"),
        };
        let mut rest = blob;
        let mut endpoints = Vec::with_capacity(2);
        while !rest.is_empty() && endpoints.len() < 2 {
            let (fixed, tail) = rest.split_first_chunk::<28>().ok_or_else(|| {
                mismatch(format!("ends inside an endpoint ({} bytes)", blob.len()))
            })?;
            let word = |i: usize| {
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(&fixed[i * 8..i * 8 + 8]);
                u64::from_le_bytes(bytes)
            };
            let mut name_len = [0u8; 4];
            name_len.copy_from_slice(&fixed[24..28]);
            let name_len = u32::from_le_bytes(name_len) as usize;
            if name_len == 0 || name_len > MAX_NAME || name_len > tail.len() {
                return Err(mismatch(format!(
                    "gives an address of {name_len} bytes with {} left",
                    tail.len()
                )));
            }
            let (name, tail) = tail.split_at(name_len);
            endpoints.push(EndpointRecord {
                memory: PeerMemory {
                    base: word(0),
                    key: word(1),
                    len: word(2),
                },
                name: name.to_vec(),
            });
            rest = tail;
        }
        if !rest.is_empty() {
            return Err(mismatch(format!(
                "has {} bytes after its endpoints",
                rest.len()
            )));
        }
        let mut endpoints = endpoints.into_iter();
        let network = endpoints
            .next()
            .ok_or_else(|| mismatch("is empty (its provider failed to start)".to_owned()))?;
        Ok(StartRecord {
            network,
            local: endpoints.next(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_bad_bytes_are_refused() {
        let memory = PeerMemory {
            base: 0x7f00_0000_1000,
            key: 42,
            len: 256 << 20,
        };
        let network = EndpointRecord {
            memory,
            name: b"address".to_vec(),
        };
        let local = EndpointRecord {
            memory: PeerMemory { key: 7, ..memory },
            name: b"atoll-job-ofi12\0".to_vec(),
        };
        for record in [
            StartRecord {
                network: network.clone(),
                local: None,
            },
            StartRecord {
                network,
                local: Some(local),
            },
        ] {
            let blob = record.encode();
            assert_eq!(
                StartRecord::decode(3, &blob).expect("a well-formed record"),
                record
            );
            for bad in [
                &blob[..blob.len() - 1],
                &blob[..20],
                &[],
                &[blob.as_slice(), &[0]].concat(),
            ] {
                match StartRecord::decode(3, bad) {
                    Err(Error::SegmentMismatch { place, .. }) => assert_eq!(place, Place::new(3)),
                    other => panic!("{} bytes gave {other:?}", bad.len()),
                }
            }
        }
        assert_eq!(memory.addr(64), 0x7f00_0000_1040);
    }
}
