//! Allocation of registered memory: one contiguous area per place (the shm segment's heap, or
//! a region mapped by a network provider), carved into regions and rendezvous buffers.

use std::ops::Range;
use std::sync::Mutex;

use range_alloc::RangeAllocator;

/// Every allocation starts and ends on this boundary (a cache line), so that regions never
/// share a line and rkyv archives in them are aligned.
pub(crate) const HEAP_ALIGN: usize = 64;

/// Offsets of free and used ranges of a registered area of `bytes` bytes.
#[derive(Debug)]
pub(crate) struct HeapAllocator {
    ranges: Mutex<RangeAllocator<usize>>,
    bytes: usize,
}

impl HeapAllocator {
    pub(crate) fn new(bytes: usize) -> HeapAllocator {
        HeapAllocator {
            ranges: Mutex::new(RangeAllocator::new(0..bytes)),
            bytes,
        }
    }

    /// The area's size.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// A range of at least `len` bytes (rounded up to [`HEAP_ALIGN`]), or the bytes still
    /// free when there is no such range.
    pub(crate) fn alloc(&self, len: usize) -> Result<Range<usize>, usize> {
        let rounded = len.max(1).next_multiple_of(HEAP_ALIGN);
        let mut ranges = self.lock();
        ranges
            .allocate_range(rounded)
            .map_err(|_| ranges.total_available())
    }

    /// [`HeapAllocator::alloc`] for place `here`, whose failure is
    /// [`crate::Error::OutOfRegisteredMemory`].
    pub(crate) fn alloc_registered(
        &self,
        here: crate::Place,
        len: usize,
    ) -> crate::Result<Range<usize>> {
        self.alloc(len)
            .map_err(|available| crate::Error::OutOfRegisteredMemory {
                here,
                requested: len,
                available,
            })
    }

    /// Returns a range obtained from [`HeapAllocator::alloc`].
    pub(crate) fn free(&self, range: Range<usize>) {
        self.lock().free_range(range);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RangeAllocator<usize>> {
        // A panic while holding this lock cannot leave the allocator half-updated in a way
        // that matters more than losing the job: keep going with the inner value.
        self.ranges
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// `len` bytes of fresh, zeroed, private anonymous memory for a network provider's registered
/// heap (pages are backed only when touched). The caller owns it and releases it with
/// `munmap(ptr, len)`.
#[cfg(any(feature = "ucx", feature = "ofi"))]
pub(crate) fn map_anonymous(len: usize) -> crate::Result<std::ptr::NonNull<u8>> {
    // SAFETY: a fresh private anonymous mapping at an address the kernel picks; it aliases no
    // Rust object. MAP_NORESERVE: pages are committed only when touched.
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
        return Err(crate::Error::io(
            format!("mapping {len} bytes of registered memory (lower ATOLL_SHM_HEAP_MB)"),
            std::io::Error::last_os_error(),
        ));
    }
    std::ptr::NonNull::new(ptr.cast::<u8>())
        .ok_or_else(|| crate::Error::io("mmap", std::io::Error::other("null mapping")))
}
