//! Sending: serializing into ring slots, rendezvous buffers, the backlog of handlers' sends,
//! waking receivers.

use std::ops::Range;
use std::sync::atomic::{compiler_fence, fence, AtomicU64, Ordering};
use std::sync::MutexGuard;

use rkyv::util::AlignedVec;

use super::ring::{RecordHeader, KIND_EAGER, KIND_RENDEZVOUS};
use super::{
    doorbell, lock, Backlogged, ProducerState, Sent, ShmProvider, BACKLOG_INLINE, DESCRIPTOR,
};
use crate::payload::{serialize_framed, Payload, WriteTarget};
use crate::{Error, Result};

impl ShmProvider {
    /// Tries to send `value` to handler `handler` at place `to`. With `queue_if_full`, a full
    /// ring queues the message (serialized now, sent by a later `progress`) instead of
    /// answering [`Sent::Full`].
    pub(crate) fn send<T: Payload>(
        &self,
        to: usize,
        handler: u16,
        prefix: &[u8],
        value: &T,
        queue_if_full: bool,
    ) -> Result<Sent> {
        let mut producer = self.lock_producer(to);
        let sent = self.send_locked(&mut producer, handler, prefix, value, queue_if_full);
        drop(producer);
        self.ring_doorbell(to);
        sent
    }

    /// Takes the lock of the ring to `to`, for a batch of [`ShmProvider::send_locked`] calls.
    ///
    /// A locked instruction waits until the stores of the previous message have reached the
    /// receiver's cache; taking the lock once per batch instead of once per message is what
    /// makes a flood fast.
    pub(crate) fn lock_producer(&self, to: usize) -> MutexGuard<'_, ProducerState> {
        lock(&self.producers[to])
    }

    /// [`ShmProvider::send`] with the ring's lock held by the caller (the caller rings the
    /// receiver's doorbell once it lets go).
    pub(crate) fn send_locked<T: Payload>(
        &self,
        producer: &mut ProducerState,
        handler: u16,
        prefix: &[u8],
        value: &T,
        queue_if_full: bool,
    ) -> Result<Sent> {
        if !producer.backlog.is_empty() {
            self.flush_backlog(producer);
        }
        if producer.backlog.is_empty() {
            if let Some(slot) = producer.ring.reserve(self.eager_max) {
                // SAFETY: the slot is reserved for this producer, which holds its lock until
                // the record is published; the heap area is mapped for the provider's life.
                let mut target = unsafe {
                    WriteTarget::new(
                        slot.payload(),
                        slot.capacity(),
                        &self.heap,
                        self.own().heap(),
                    )
                };
                if let Err(error) = serialize_framed(prefix, value, &mut target) {
                    // Registered memory full of rendezvous payloads not yet pulled: that is
                    // back-pressure, not a failure; wait for receivers to take them.
                    if matches!(error, Error::PayloadTooLarge { .. }) && self.rendezvous_in_flight()
                    {
                        return Ok(Sent::Full);
                    }
                    return Err(error);
                }
                let header = match target.take_spill() {
                    None => self.header(handler, KIND_EAGER, target.len()),
                    Some(spill) => {
                        self.write_descriptor(slot.payload(), &spill, target.len());
                        self.track_rendezvous(spill);
                        self.header(handler, KIND_RENDEZVOUS, DESCRIPTOR)
                    }
                };
                producer.ring.publish(slot, header);
                return Ok(Sent::Done);
            }
        }
        if !queue_if_full {
            return Ok(Sent::Full);
        }
        // Queued replies are mostly small: a small buffer, spilling into registered memory
        // (and so going by rendezvous) beyond it.
        let capacity = self.eager_max.min(BACKLOG_INLINE);
        let mut bytes = AlignedVec::with_capacity(capacity);
        // SAFETY: `bytes` owns `capacity` bytes, exclusively ours while `target` lives; the
        // heap area is mapped for the provider's life.
        let mut target = unsafe {
            WriteTarget::new(bytes.as_mut_ptr(), capacity, &self.heap, self.own().heap())
        };
        serialize_framed(prefix, value, &mut target)?;
        let item = match target.take_spill() {
            None => {
                // SAFETY: the serializer initialised the first `len` bytes of the capacity.
                unsafe { bytes.set_len(target.len()) };
                Backlogged::Eager { handler, bytes }
            }
            Some(spill) => Backlogged::Rendezvous {
                handler,
                spill,
                len: target.len(),
            },
        };
        producer.backlog.push_back(item);
        self.backlog_pending.fetch_add(1, Ordering::Relaxed);
        Ok(Sent::Done)
    }

    pub(super) fn header(&self, handler: u16, kind: u8, len: usize) -> RecordHeader {
        RecordHeader {
            len: len as u32,
            src: self.here as u32,
            handler,
            kind,
        }
    }

    pub(super) fn write_descriptor(&self, slot: *mut u8, spill: &Range<usize>, len: usize) {
        let mut descriptor = [0u8; DESCRIPTOR];
        descriptor[..8].copy_from_slice(&(spill.start as u64).to_le_bytes());
        descriptor[8..].copy_from_slice(&(len as u64).to_le_bytes());
        // SAFETY: every slot holds at least `eager_max >= 64` bytes, exclusively the caller's.
        unsafe { std::ptr::copy_nonoverlapping(descriptor.as_ptr(), slot, DESCRIPTOR) };
    }

    pub(super) fn track_rendezvous(&self, spill: Range<usize>) {
        lock(&self.rendezvous).push(spill);
        self.rendezvous_pending.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether rendezvous buffers are still waiting for their receivers (after reclaiming the
    /// pulled ones).
    pub(super) fn rendezvous_in_flight(&self) -> bool {
        self.reclaim_rendezvous();
        self.rendezvous_pending.load(Ordering::Relaxed) > 0
    }

    /// Frees the rendezvous buffers whose receivers have pulled them.
    pub(super) fn reclaim_rendezvous(&self) {
        if self.rendezvous_pending.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut outstanding = lock(&self.rendezvous);
        let heap = self.own().heap();
        outstanding.retain(|range| {
            // SAFETY: the buffer's first 8 bytes are its completion flag (8-aligned, inside the
            // heap), written atomically by the receiver.
            let flag = unsafe { AtomicU64::from_ptr(heap.add(range.start).cast()) };
            if flag.load(Ordering::Acquire) == 0 {
                return true;
            }
            self.heap.free(range.clone());
            self.rendezvous_pending.fetch_sub(1, Ordering::Relaxed);
            false
        });
    }

    /// Moves queued messages into the ring while there is room.
    /// Returns whether it published anything (the receiver's doorbell then needs ringing).
    pub(super) fn flush_backlog(&self, producer: &mut ProducerState) -> bool {
        let mut published = false;
        while let Some(item) = producer.backlog.front() {
            let Some(slot) = producer.ring.reserve(self.eager_max) else {
                return published;
            };
            published = true;
            let header = match item {
                Backlogged::Eager { handler, bytes } => {
                    // SAFETY: `bytes.len() <= eager_max = slot capacity`; the slot is ours.
                    unsafe {
                        std::ptr::copy_nonoverlapping(bytes.as_ptr(), slot.payload(), bytes.len())
                    };
                    self.header(*handler, KIND_EAGER, bytes.len())
                }
                Backlogged::Rendezvous {
                    handler,
                    spill,
                    len,
                } => {
                    self.write_descriptor(slot.payload(), spill, *len);
                    self.header(*handler, KIND_RENDEZVOUS, DESCRIPTOR)
                }
            };
            producer.ring.publish(slot, header);
            if let Some(Backlogged::Rendezvous { spill, .. }) = producer.backlog.pop_front() {
                self.track_rendezvous(spill);
            }
            self.backlog_pending.fetch_sub(1, Ordering::Relaxed);
        }
        published
    }

    pub(super) fn flush_all_backlogs(&self) {
        if self.backlog_pending.load(Ordering::Relaxed) == 0 {
            return;
        }
        for (to, producer) in self.producers.iter().enumerate() {
            let Ok(mut producer) = producer.try_lock() else {
                continue;
            };
            if !producer.backlog.is_empty() && self.flush_backlog(&mut producer) {
                drop(producer);
                self.ring_doorbell(to);
            }
        }
    }

    /// Wakes place `to` if it sleeps.
    pub(crate) fn ring_doorbell(&self, to: usize) {
        let view = &self.views[to];
        // Dekker with `park`: either the sleeper sees the record, or this load sees the sleeper.
        if self.asymmetric_fence {
            compiler_fence(Ordering::SeqCst); // the sleeper's membarrier is this side's fence
        } else {
            fence(Ordering::SeqCst);
        }
        if view.sleepers().load(Ordering::Relaxed) > 0 {
            view.doorbell().fetch_add(1, Ordering::SeqCst);
            doorbell::wake_all(view.doorbell());
        }
    }

    /// Writes `record` into the ring to `to` exactly as given, valid or not (fault injection:
    /// what a broken or hostile peer could send). `Full` when there is no room.
    pub(crate) fn inject(
        &self,
        to: usize,
        kind: u8,
        src: u32,
        handler: u16,
        payload: &[u8],
    ) -> Result<Sent> {
        if payload.len() > self.eager_max {
            return Err(Error::PayloadTooLarge {
                len: payload.len(),
                limit: self.eager_max,
            });
        }
        let mut producer = lock(&self.producers[to]);
        let Some(slot) = producer.ring.reserve(self.eager_max) else {
            return Ok(Sent::Full);
        };
        // SAFETY: `payload.len() <= eager_max = slot capacity`; the slot is ours.
        unsafe { std::ptr::copy_nonoverlapping(payload.as_ptr(), slot.payload(), payload.len()) };
        let header = RecordHeader {
            len: payload.len() as u32,
            src,
            handler,
            kind,
        };
        producer.ring.publish(slot, header);
        drop(producer);
        self.ring_doorbell(to);
        Ok(Sent::Done)
    }

    /// Whether everything this place sent to `to` has been consumed there (queued messages
    /// included; rendezvous payloads are pulled before their record is consumed).
    pub(crate) fn is_drained_to(&self, to: usize) -> bool {
        let mut producer = lock(&self.producers[to]);
        producer.backlog.is_empty() && producer.ring.is_drained()
    }
}
