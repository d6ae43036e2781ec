//! The layout of one place's segment, identical at every place of a job:
//!
//! ```text
//! 0                 header page: magic, version, sizes, doorbell (own cache line)
//! PAGE              N ring control blocks (head and tail, each on its own pair of cache lines)
//! rings_offset      N inbox rings, ring s carries the messages of place s to this place
//! heap_offset       registered memory: regions and rendezvous payloads
//! ```
//!
//! This module turns offsets into typed references; it is the only place that does pointer
//! arithmetic on a segment.

use std::sync::atomic::{AtomicU32, AtomicU64};

use super::segment::Segment;

const PAGE: usize = 4096;
/// Bytes of one ring's control block: the head (written by the receiver) and the tail (written
/// by the sender) each in their own 128-byte pair of cache lines, so that neither the lines
/// nor the adjacent-line prefetcher's pairs are shared between the two writers.
const CONTROL_STRIDE: usize = 256;
const MAGIC: u64 = u64::from_le_bytes(*b"ATOLLSHM");
const VERSION: u32 = 2;

/// Byte offsets inside a header page.
mod header {
    pub(super) const MAGIC: usize = 0;
    pub(super) const VERSION: usize = 8;
    pub(super) const PLACES: usize = 12;
    pub(super) const RING_BYTES: usize = 16;
    pub(super) const HEAP_BYTES: usize = 24;
    pub(super) const DOORBELL: usize = 64;
    pub(super) const SLEEPERS: usize = 128;
}

/// Sizes of every segment of the job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    /// Places of the job (and inbox rings per segment).
    pub(crate) places: usize,
    /// Bytes of each ring's data area (a power of two).
    pub(crate) ring_bytes: usize,
    /// Bytes of registered memory.
    pub(crate) heap_bytes: usize,
}

impl Layout {
    fn controls_offset(&self) -> usize {
        PAGE
    }

    fn rings_offset(&self) -> usize {
        (self.controls_offset() + self.places * CONTROL_STRIDE).next_multiple_of(PAGE)
    }

    pub(crate) fn heap_offset(&self) -> usize {
        self.rings_offset() + self.places * self.ring_bytes
    }

    /// Total bytes of one segment.
    pub(crate) fn segment_bytes(&self) -> usize {
        self.heap_offset() + self.heap_bytes
    }

    /// Writes the header of a freshly created (zeroed) segment.
    pub(crate) fn write_header(&self, segment: &Segment) {
        let view = SegmentView::new(segment, *self);
        // SAFETY: (every write below) the header page belongs to this layout's segment
        // (`segment_bytes` covers it), the offsets are aligned for their types, and no other
        // process reads the header before the bootstrap barrier that follows creation.
        unsafe {
            view.at::<u64>(header::MAGIC).write(MAGIC);
            view.at::<u32>(header::VERSION).write(VERSION);
            view.at::<u32>(header::PLACES).write(self.places as u32);
            view.at::<u64>(header::RING_BYTES)
                .write(self.ring_bytes as u64);
            view.at::<u64>(header::HEAP_BYTES)
                .write(self.heap_bytes as u64);
        }
    }

    /// Checks that a peer's segment was written with this layout.
    pub(crate) fn check_header(&self, segment: &Segment) -> Result<(), String> {
        let view = SegmentView::new(segment, *self);
        // SAFETY: the peer wrote its header before the bootstrap barrier that precedes this
        // call, and never writes it again; the offsets are inside the mapping and aligned.
        let (magic, version, places, ring, heap) = unsafe {
            (
                view.at::<u64>(header::MAGIC).read(),
                view.at::<u32>(header::VERSION).read(),
                view.at::<u32>(header::PLACES).read(),
                view.at::<u64>(header::RING_BYTES).read(),
                view.at::<u64>(header::HEAP_BYTES).read(),
            )
        };
        if magic != MAGIC {
            return Err("not an Atoll segment (bad magic)".into());
        }
        if version != VERSION {
            return Err(format!(
                "layout version {version}, this place has {VERSION}"
            ));
        }
        if (places as usize, ring as usize, heap as usize)
            != (self.places, self.ring_bytes, self.heap_bytes)
        {
            return Err(format!(
                "places/ring/heap = {places}/{ring}/{heap}, this place has {}/{}/{}",
                self.places, self.ring_bytes, self.heap_bytes
            ));
        }
        Ok(())
    }
}

/// Typed access to the parts of one mapped segment.
///
/// Invariant: `base` is the start of a live mapping of `layout.segment_bytes()` bytes (the
/// `Segment` it was made from outlives it, which the provider guarantees by owning both).
#[derive(Clone, Copy, Debug)]
pub(crate) struct SegmentView {
    base: *mut u8,
    layout: Layout,
}

// SAFETY: a view is a pointer into shared memory whose every access is synchronised by the
// ring and heap protocols (atomics); moving it between threads changes nothing.
unsafe impl Send for SegmentView {}
// SAFETY: as for `Send`.
unsafe impl Sync for SegmentView {}

impl SegmentView {
    pub(crate) fn new(segment: &Segment, layout: Layout) -> SegmentView {
        debug_assert!(segment.len() >= layout.segment_bytes());
        SegmentView {
            base: segment.base(),
            layout,
        }
    }

    /// A pointer to a `T` at `offset`.
    ///
    /// # Safety
    /// `offset + size_of::<T>()` must be inside the segment and `offset` aligned for `T`.
    unsafe fn at<T>(&self, offset: usize) -> *mut T {
        debug_assert!(offset + size_of::<T>() <= self.layout.segment_bytes());
        debug_assert!(offset % align_of::<T>() == 0);
        // SAFETY: in bounds of the mapping by the caller's contract.
        unsafe { self.base.add(offset).cast() }
    }

    /// The doorbell word senders bump (and futex-wake) when this place sleeps.
    pub(crate) fn doorbell(&self) -> &AtomicU32 {
        // SAFETY: the header page is inside the mapping, the offset is 64-aligned, and the word
        // is only ever accessed atomically by every process.
        unsafe { AtomicU32::from_ptr(self.at(header::DOORBELL)) }
    }

    /// How many threads of this place are asleep on the doorbell.
    pub(crate) fn sleepers(&self) -> &AtomicU32 {
        // SAFETY: as for `doorbell`.
        unsafe { AtomicU32::from_ptr(self.at(header::SLEEPERS)) }
    }

    /// The position up to which this place has consumed the ring from `sender`.
    pub(crate) fn ring_head(&self, sender: usize) -> &AtomicU64 {
        assert!(sender < self.layout.places);
        let offset = self.layout.controls_offset() + sender * CONTROL_STRIDE;
        // SAFETY: inside the control area (sender < places), 256-aligned, atomic-only access.
        unsafe { AtomicU64::from_ptr(self.at(offset)) }
    }

    /// The position up to which `sender` has published records (read only to resynchronise
    /// after a malformed record).
    pub(crate) fn ring_tail(&self, sender: usize) -> &AtomicU64 {
        assert!(sender < self.layout.places);
        let offset = self.layout.controls_offset() + sender * CONTROL_STRIDE + CONTROL_STRIDE / 2;
        // SAFETY: as for `ring_head`, half a control block further (128-aligned).
        unsafe { AtomicU64::from_ptr(self.at(offset)) }
    }

    /// The data area of the ring from `sender`: `layout.ring_bytes` bytes.
    pub(crate) fn ring_data(&self, sender: usize) -> *mut u8 {
        assert!(sender < self.layout.places);
        let offset = self.layout.rings_offset() + sender * self.layout.ring_bytes;
        // SAFETY: the ring lies inside the mapping (sender < places); u8 needs no alignment.
        unsafe { self.at(offset) }
    }

    /// The registered-memory area: `layout.heap_bytes` bytes.
    pub(crate) fn heap(&self) -> *mut u8 {
        // SAFETY: the heap is the last part of the mapping.
        unsafe { self.at(self.layout.heap_offset()) }
    }

    pub(crate) fn layout(&self) -> Layout {
        self.layout
    }
}
