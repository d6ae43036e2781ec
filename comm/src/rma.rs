//! Registered memory and one-sided operations: regions, remote keys, completions.

use std::any::Any;
use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::heap::HeapAllocator;
use crate::{Error, Place, Result};

/// Names registered memory at some place, so that other places can `put`, `get` and apply
/// atomics to it. Obtained from [`Region::key`]; plain data, sent to other places inside
/// messages (it is an rkyv type).
///
/// A key received from a peer is untrusted: every operation checks it against the registered
/// memory of its place, so that no access leaves that memory. A key kept after its [`Region`]
/// was dropped still passes that check and reaches whatever reuses the memory: as with
/// `MPI_Win_free`, free a region only once no place will use its key again.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[rkyv(derive(Debug))]
pub struct RemoteKey {
    place: Place,
    offset: u64,
    len: u64,
}

impl RemoteKey {
    /// The place whose memory this key names.
    pub fn place(&self) -> Place {
        self.place
    }

    /// The region's length in bytes.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the region is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The provider-defined offset of the region in its place's registered memory.
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// The index of the key's place, if a job of `places` places has it (a peer's key may name
    /// any place).
    pub(crate) fn place_in(&self, places: usize) -> Result<usize> {
        let place = self.place.index();
        if place >= places {
            return Err(Error::InvalidRemoteKey {
                reason: format!("it names {}, but the job has {places} places", self.place),
            });
        }
        Ok(place)
    }

    /// The bytes `offset..offset + len` of the region, as an offset into its place's registered
    /// memory of `registered` bytes, if they are inside both the key's region and that memory.
    pub(crate) fn locate(&self, offset: usize, len: usize, registered: usize) -> Result<usize> {
        let out_of_bounds = || Error::OutOfBounds {
            offset,
            len,
            region_len: self.len as usize,
        };
        let end = offset.checked_add(len).ok_or_else(out_of_bounds)?;
        if end as u64 > self.len {
            return Err(out_of_bounds());
        }
        let region_end = self.offset.checked_add(self.len);
        if region_end.is_none_or(|end| end > registered as u64) {
            return Err(Error::InvalidRemoteKey {
                reason: format!(
                    "{} registered {registered} bytes; the key claims {}..{}",
                    self.place,
                    self.offset,
                    self.offset.saturating_add(self.len)
                ),
            });
        }
        Ok(self.offset as usize + offset)
    }
}

impl From<&ArchivedRemoteKey> for RemoteKey {
    fn from(archived: &ArchivedRemoteKey) -> RemoteKey {
        RemoteKey {
            place: archived.place.to_place(),
            offset: archived.offset.to_native(),
            len: archived.len.to_native(),
        }
    }
}

/// Memory registered at this place, readable and writable by every place through its
/// [`RemoteKey`]. Zero-filled when allocated; returned to the place's registered memory when
/// dropped.
///
/// Other places may write it at any time: local access goes through copies
/// ([`Region::read`], [`Region::write`]) and atomics ([`Region::atomic_u64`]), never through a
/// long-lived `&[u8]`.
#[derive(Debug)]
pub struct Region {
    key: RemoteKey,
    ptr: *mut u8,
    range: Range<usize>,
    heap: Arc<HeapAllocator>,
    /// Keeps the mapping of the registered memory alive while the region lives.
    _mapping: Arc<dyn Any + Send + Sync>,
}

// SAFETY: a region is registered memory that every place may access concurrently; `Region`
// only exposes copies and atomics, which are sound from any thread.
unsafe impl Send for Region {}
// SAFETY: as for `Send`.
unsafe impl Sync for Region {}

impl Region {
    /// A fresh, zeroed region of `len` bytes, allocated from `heap`, the registered memory of
    /// `place`; [`Error::OutOfRegisteredMemory`] when the heap has no room.
    ///
    /// # Safety
    /// `base` must be the mapped start of the area `heap` allocates from, a mapping that
    /// `mapping` keeps alive.
    pub(crate) unsafe fn alloc(
        place: Place,
        base: *mut u8,
        len: usize,
        heap: &Arc<HeapAllocator>,
        mapping: Arc<dyn Any + Send + Sync>,
    ) -> Result<Region> {
        let range = heap.alloc_registered(place, len)?;
        let heap = heap.clone();
        // SAFETY: the range comes from `heap`, so it lies in the area `base` starts (caller's
        // contract).
        let ptr = unsafe { base.add(range.start) };
        // SAFETY: the range is freshly allocated and inside the mapping; only a key of a region
        // freed earlier could reach it, which `RemoteKey`'s contract rules out, and would be a
        // racing store to shared memory, not a Rust reference.
        unsafe { std::ptr::write_bytes(ptr, 0, range.len()) };
        Ok(Region {
            key: RemoteKey {
                place,
                offset: range.start as u64,
                len: len as u64,
            },
            ptr,
            range,
            heap,
            _mapping: mapping,
        })
    }

    /// The key other places use to reach this region.
    pub fn key(&self) -> RemoteKey {
        self.key
    }

    /// The region's length in bytes.
    pub fn len(&self) -> usize {
        self.key.len()
    }

    /// Whether the region is empty.
    pub fn is_empty(&self) -> bool {
        self.key.is_empty()
    }

    /// Copies `dst.len()` bytes at `offset` out of the region.
    pub fn read(&self, offset: usize, dst: &mut [u8]) -> Result<()> {
        self.check(offset, dst.len())?;
        // SAFETY: in bounds (checked); `dst` is a distinct Rust buffer. Concurrent remote
        // writes may tear the bytes read, as with any one-sided memory.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.add(offset), dst.as_mut_ptr(), dst.len()) };
        Ok(())
    }

    /// Copies `src` into the region at `offset`.
    pub fn write(&self, offset: usize, src: &[u8]) -> Result<()> {
        self.check(offset, src.len())?;
        // SAFETY: in bounds (checked); `src` is a distinct Rust buffer.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.add(offset), src.len()) };
        Ok(())
    }

    /// The 8 bytes at `offset` (8-aligned) as an atomic, shared with remote atomics.
    pub fn atomic_u64(&self, offset: usize) -> Result<&AtomicU64> {
        self.check(offset, 8)?;
        if offset % 8 != 0 {
            return Err(Error::Misaligned { offset, align: 8 });
        }
        // SAFETY: in bounds, 8-aligned (regions start on 64-byte boundaries), and every access
        // to these bytes that races with this one is atomic (remote atomics) by contract.
        Ok(unsafe { AtomicU64::from_ptr(self.ptr.add(offset).cast()) })
    }

    /// The region's first byte, for code that synchronises on its own (e.g. a benchmark's
    /// floor probe or a collective's flags).
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr
    }

    fn check(&self, offset: usize, len: usize) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len() => Ok(()),
            _ => Err(Error::OutOfBounds {
                offset,
                len,
                region_len: self.len(),
            }),
        }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        self.heap.free(self.range.clone());
    }
}

/// The completion of a one-sided operation: a future, and a handle that can be polled
/// ([`RmaFuture::is_complete`]) or waited on ([`RmaFuture::wait`]) outside async code.
///
/// The source buffer of a `put` is free as soon as the call returns: a provider that cannot
/// complete it at once copies it into registered memory it owns, so dropping the future never
/// leaves the transport reading freed memory.
#[derive(Debug)]
#[must_use = "an RMA completion reports errors only when awaited or waited on"]
pub struct RmaFuture<T> {
    result: Option<Result<T>>,
}

impl<T> RmaFuture<T> {
    pub(crate) fn ready(result: Result<T>) -> RmaFuture<T> {
        RmaFuture {
            result: Some(result),
        }
    }

    /// Whether the operation has completed (awaiting it would not wait).
    pub fn is_complete(&self) -> bool {
        self.result.is_some()
    }

    /// Waits for completion and returns the result.
    pub fn wait(mut self) -> Result<T> {
        match self.result.take() {
            Some(result) => result,
            None => panic!("RmaFuture waited on after it completed"),
        }
    }
}

impl<T> Unpin for RmaFuture<T> {}

impl<T> Future for RmaFuture<T> {
    type Output = Result<T>;

    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<T>> {
        match self.result.take() {
            Some(result) => Poll::Ready(result),
            None => panic!("RmaFuture polled after it completed"),
        }
    }
}
