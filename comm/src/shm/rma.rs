//! Registered memory and one-sided operations: loads, stores and atomics straight into the
//! target's mapped heap.

use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::ShmProvider;
use crate::rma::{Region, RemoteKey};
use crate::{Error, Place, Result};

impl ShmProvider {
    pub(crate) fn alloc_region(&self, len: usize) -> Result<Region> {
        self.reclaim_rendezvous();
        let mapping: Arc<dyn Any + Send + Sync> = self.segments[self.here].clone();
        // SAFETY: this place's heap area starts at its segment's heap, which stays mapped for
        // as long as the region lives (it holds the segment).
        unsafe {
            Region::alloc(
                Place::new(self.here),
                self.own().heap(),
                len,
                &self.heap,
                mapping,
            )
        }
    }

    /// The address of `key`'s bytes `offset..offset + len`, checked.
    pub(super) fn locate(&self, key: &RemoteKey, offset: usize, len: usize) -> Result<*mut u8> {
        let place = key.place_in(self.places())?;
        let at = key.locate(offset, len, self.heap.bytes())?;
        // SAFETY: `at + len` is inside the place's heap (checked by `locate`).
        Ok(unsafe { self.views[place].heap().add(at) })
    }

    pub(crate) fn put(&self, key: &RemoteKey, offset: usize, data: &[u8]) -> Result<()> {
        let dst = self.locate(key, offset, data.len())?;
        // SAFETY: `dst..dst + len` is registered memory of the target (checked); `data` is a
        // distinct buffer. Racing remote accesses see torn bytes, as RMA semantics allow.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), dst, data.len()) };
        Ok(())
    }

    pub(crate) fn get(&self, key: &RemoteKey, offset: usize, dst: &mut [u8]) -> Result<()> {
        let src = self.locate(key, offset, dst.len())?;
        // SAFETY: as in `put`, in the other direction.
        unsafe { std::ptr::copy_nonoverlapping(src, dst.as_mut_ptr(), dst.len()) };
        Ok(())
    }

    pub(super) fn atomic(&self, key: &RemoteKey, offset: usize) -> Result<&AtomicU64> {
        if offset % 8 != 0 || key.offset() % 8 != 0 {
            return Err(Error::Misaligned { offset, align: 8 });
        }
        let at = self.locate(key, offset, 8)?;
        // SAFETY: 8 bytes of registered memory (checked), 8-aligned (checked); concurrent
        // accesses to them are atomic by the RMA contract.
        Ok(unsafe { AtomicU64::from_ptr(at.cast()) })
    }

    pub(crate) fn fetch_add(&self, key: &RemoteKey, offset: usize, value: u64) -> Result<u64> {
        Ok(self.atomic(key, offset)?.fetch_add(value, Ordering::SeqCst))
    }

    pub(crate) fn compare_swap(
        &self,
        key: &RemoteKey,
        offset: usize,
        expected: u64,
        new: u64,
    ) -> Result<u64> {
        Ok(
            match self.atomic(key, offset)?.compare_exchange(
                expected,
                new,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(old) | Err(old) => old,
            },
        )
    }
}
