//! Sending: serializing into registered send buffers, rendezvous buffers, the backlog of
//! sends that found no buffer (from handlers) or a busy transmit queue, waking this place.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::MutexGuard;

use rkyv::util::AlignedVec;

use super::{fabric, lock, OfiProvider, DESCRIPTOR, HEADER, KIND_EAGER, KIND_RENDEZVOUS};
use crate::payload::{serialize_framed, Payload, WriteTarget};
use crate::shm::Sent;
use crate::{Error, Result};

/// Bytes a queued (backlogged) message keeps inline before it spills to registered memory.
const BACKLOG_INLINE: usize = 512;
/// Records that may wait behind a full transmit queue before a send answers `Full`.
const BACKLOG_SHORT: usize = 64;

/// The sending side of one destination, behind its lock: what waits to be posted, in order.
#[derive(Debug)]
pub(crate) struct Producer {
    to: usize,
    backlog: VecDeque<Pending>,
}

impl Producer {
    pub(super) fn new(to: usize) -> Producer {
        Producer {
            to,
            backlog: VecDeque::new(),
        }
    }
}

/// A record that waits to be posted.
#[derive(Debug)]
enum Pending {
    /// Written into send buffer `slot` (`len` bytes); the transmit queue was full.
    Slot { slot: u32, len: usize },
    /// Serialized aside (header included) while no send buffer was free.
    Bytes(AlignedVec),
}

impl OfiProvider {
    pub(crate) fn send<T: Payload>(
        &self,
        to: usize,
        handler: u16,
        prefix: &[u8],
        value: &T,
        queue_if_full: bool,
    ) -> Result<Sent> {
        let mut producer = self.lock_producer(to);
        self.send_locked(&mut producer, handler, prefix, value, queue_if_full)
    }

    pub(crate) fn lock_producer(&self, to: usize) -> MutexGuard<'_, Producer> {
        lock(&self.producers[to])
    }

    /// [`OfiProvider::send`] with the destination's lock held by the caller.
    pub(crate) fn send_locked<T: Payload>(
        &self,
        producer: &mut Producer,
        handler: u16,
        prefix: &[u8],
        value: &T,
        queue_if_full: bool,
    ) -> Result<Sent> {
        if !producer.backlog.is_empty() {
            self.flush_backlog(producer)?;
        }
        // Behind a short backlog (a transmit queue that was briefly full) a send queues
        // rather than answering `Full`, which would make the caller run handlers.
        let may_queue = queue_if_full || producer.backlog.len() < BACKLOG_SHORT;
        if producer.backlog.is_empty() || may_queue {
            if let Some(slot) = self.take_slot() {
                let buffer = self.send_buffer(slot);
                // SAFETY: the send buffer is free (taken from the free list) and ours until it
                // is posted; registered memory is mapped for the provider's life.
                let mut target = unsafe {
                    WriteTarget::new(
                        buffer.add(HEADER),
                        self.eager_max,
                        &self.heap,
                        self.mapping.base(),
                    )
                };
                if let Err(error) = serialize_framed(prefix, value, &mut target) {
                    lock(&self.free_sends).push(slot);
                    // Registered memory full of rendezvous payloads not yet pulled: that is
                    // back-pressure; wait for receivers to take them.
                    if matches!(error, Error::PayloadTooLarge { .. }) && self.rendezvous_in_flight()
                    {
                        return Ok(Sent::Full);
                    }
                    return Err(error);
                }
                let len = match target.take_spill() {
                    None => {
                        write_header(buffer, target.len(), self.here, handler, KIND_EAGER);
                        target.len()
                    }
                    Some(spill) => {
                        write_descriptor(buffer, &spill, target.len());
                        write_header(buffer, DESCRIPTOR, self.here, handler, KIND_RENDEZVOUS);
                        self.track_rendezvous(producer.to, spill);
                        DESCRIPTOR
                    }
                };
                self.post_or_queue(producer, slot, HEADER + len)?;
                return Ok(Sent::Done);
            }
        }
        if !may_queue {
            return Ok(Sent::Full);
        }
        let capacity = HEADER + self.eager_max.min(BACKLOG_INLINE);
        let mut bytes = AlignedVec::with_capacity(capacity);
        // SAFETY: `bytes` owns `capacity` bytes, exclusively ours while `target` lives;
        // registered memory is mapped for the provider's life.
        let mut target = unsafe {
            WriteTarget::new(
                bytes.as_mut_ptr().add(HEADER),
                capacity - HEADER,
                &self.heap,
                self.mapping.base(),
            )
        };
        serialize_framed(prefix, value, &mut target)?;
        let len = match target.take_spill() {
            None => {
                write_header(
                    bytes.as_mut_ptr(),
                    target.len(),
                    self.here,
                    handler,
                    KIND_EAGER,
                );
                target.len()
            }
            Some(spill) => {
                write_descriptor(bytes.as_mut_ptr(), &spill, target.len());
                write_header(
                    bytes.as_mut_ptr(),
                    DESCRIPTOR,
                    self.here,
                    handler,
                    KIND_RENDEZVOUS,
                );
                self.track_rendezvous(producer.to, spill);
                DESCRIPTOR
            }
        };
        // SAFETY: the header and the serializer initialised the first HEADER + len bytes.
        unsafe { bytes.set_len(HEADER + len) };
        producer.backlog.push_back(Pending::Bytes(bytes));
        self.backlog_pending.fetch_add(1, Ordering::Relaxed);
        Ok(Sent::Done)
    }

    fn take_slot(&self) -> Option<u32> {
        lock(&self.free_sends).pop()
    }

    /// Posts send buffer `slot` (`len` bytes) to the producer's place; `false` when the
    /// transmit queue is full (nothing changed then).
    fn try_post(&self, to: usize, slot: u32, len: usize) -> Result<bool> {
        self.send_dest[slot as usize].store(to, Ordering::Relaxed);
        self.inflight[to].fetch_add(1, Ordering::AcqRel);
        let context = self.context(self.recv_count + slot as usize);
        let path = self.routes.to(to);
        // SAFETY: the buffer holds `len <= buffer_bytes` bytes of a record and belongs to this
        // send until its completion returns it to the free list; its context likewise.
        let rc = unsafe {
            path.endpoint
                .send(self.send_buffer(slot), len, path.addr, context)
        };
        if rc >= 0 {
            return Ok(true);
        }
        self.inflight[to].fetch_sub(1, Ordering::AcqRel);
        if rc == fabric::EAGAIN {
            return Ok(false);
        }
        lock(&self.free_sends).push(slot);
        fabric::check(rc, "fi_send").map(|()| false)
    }

    /// Posts a written send buffer, or queues it behind the records already waiting (or when
    /// the transmit queue is full).
    fn post_or_queue(&self, producer: &mut Producer, slot: u32, len: usize) -> Result<()> {
        if !producer.backlog.is_empty() || !self.try_post(producer.to, slot, len)? {
            producer.backlog.push_back(Pending::Slot { slot, len });
            self.backlog_pending.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Posts queued records while send buffers and the transmit queue allow.
    fn flush_backlog(&self, producer: &mut Producer) -> Result<()> {
        while let Some(front) = producer.backlog.front() {
            let (slot, len) = match front {
                Pending::Slot { slot, len } => (*slot, *len),
                Pending::Bytes(bytes) => {
                    let Some(slot) = self.take_slot() else {
                        return Ok(());
                    };
                    // SAFETY: the record is at most HEADER + eager_max <= buffer_bytes long
                    // (backlogged records spill beyond the inline size, which is smaller);
                    // the free buffer is ours.
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            bytes.as_ptr(),
                            self.send_buffer(slot),
                            bytes.len(),
                        )
                    };
                    let len = bytes.len();
                    if let Some(front) = producer.backlog.front_mut() {
                        *front = Pending::Slot { slot, len };
                    }
                    (slot, len)
                }
            };
            if !self.try_post(producer.to, slot, len)? {
                return Ok(());
            }
            producer.backlog.pop_front();
            self.backlog_pending.fetch_sub(1, Ordering::Relaxed);
        }
        Ok(())
    }

    pub(super) fn flush_all_backlogs(&self) -> Result<()> {
        if self.backlog_pending.load(Ordering::Relaxed) == 0 {
            return Ok(());
        }
        for producer in self.producers.iter() {
            let Ok(mut producer) = producer.try_lock() else {
                continue;
            };
            if !producer.backlog.is_empty() {
                self.flush_backlog(&mut producer)?;
            }
        }
        Ok(())
    }

    fn track_rendezvous(&self, to: usize, spill: Range<usize>) {
        lock(&self.rendezvous).push((to, spill));
        self.rendezvous_to[to].fetch_add(1, Ordering::AcqRel);
    }

    fn rendezvous_in_flight(&self) -> bool {
        !lock(&self.rendezvous).is_empty()
    }

    /// Frees the rendezvous buffer at `offset` that `from` reports pulled; `false` if `from`
    /// was lent no such buffer.
    pub(super) fn release_rendezvous(&self, from: usize, offset: u64) -> bool {
        let mut lent = lock(&self.rendezvous);
        let Some(index) = lent
            .iter()
            .position(|(to, range)| *to == from && range.start as u64 == offset)
        else {
            return false;
        };
        let (_, range) = lent.swap_remove(index);
        drop(lent);
        self.heap.free(range);
        self.rendezvous_to[from].fetch_sub(1, Ordering::AcqRel);
        true
    }

    /// Sends a record of the provider's own (`kind`, `payload`) to `to`, queueing it if no
    /// buffer is free: never waits, never fails for lack of room.
    pub(super) fn send_control(&self, to: usize, kind: u8, payload: &[u8]) -> Result<()> {
        let mut producer = self.lock_producer(to);
        self.flush_backlog(&mut producer)?;
        {
            if let Some(slot) = self.take_slot() {
                let buffer = self.send_buffer(slot);
                // SAFETY: the free buffer is ours; the payload is a few bytes (< eager_max).
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        payload.as_ptr(),
                        buffer.add(HEADER),
                        payload.len(),
                    )
                };
                write_header(buffer, payload.len(), self.here, 0, kind);
                return self.post_or_queue(&mut producer, slot, HEADER + payload.len());
            }
        }
        let mut bytes = AlignedVec::with_capacity(HEADER + payload.len());
        bytes.extend_from_slice(&[0u8; HEADER]);
        bytes.extend_from_slice(payload);
        write_header(bytes.as_mut_ptr(), payload.len(), self.here, 0, kind);
        producer.backlog.push_back(Pending::Bytes(bytes));
        self.backlog_pending.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Wakes this place's sleepers when `to` is this place (a sleeper elsewhere wakes by
    /// itself within its bounded park).
    pub(crate) fn ring_doorbell(&self, to: usize) {
        if to == self.here {
            *lock(&self.doorbell) += 1;
            self.wake.notify_all();
            self.notifier.notify();
        }
    }

    /// Sends `payload` to `to` as a record with exactly this header, valid or not (fault
    /// injection). `Full` when no buffer is free.
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
        let mut producer = self.lock_producer(to);
        self.flush_backlog(&mut producer)?;
        if producer.backlog.len() >= BACKLOG_SHORT {
            return Ok(Sent::Full);
        }
        let Some(slot) = self.take_slot() else {
            return Ok(Sent::Full);
        };
        let buffer = self.send_buffer(slot);
        // SAFETY: the free buffer is ours; `payload.len() <= eager_max` fits after the header.
        unsafe {
            std::ptr::copy_nonoverlapping(payload.as_ptr(), buffer.add(HEADER), payload.len())
        };
        write_header(buffer, payload.len(), src, handler, kind);
        self.post_or_queue(&mut producer, slot, HEADER + payload.len())?;
        Ok(Sent::Done)
    }

    /// Whether everything this place sent to `to` has completed there (queued records
    /// included; rendezvous payloads once pulled).
    pub(crate) fn is_drained_to(&self, to: usize) -> bool {
        self.lock_producer(to).backlog.is_empty()
            && self.inflight[to].load(Ordering::Acquire) == 0
            && self.rendezvous_to[to].load(Ordering::Acquire) == 0
    }
}

/// Writes a record header at `record`.
fn write_header(record: *mut u8, len: usize, src: impl TryInto<u32>, handler: u16, kind: u8) {
    let mut header = [0u8; HEADER];
    header[..4].copy_from_slice(&(len as u32).to_le_bytes());
    header[4..8].copy_from_slice(&src.try_into().unwrap_or(u32::MAX).to_le_bytes());
    header[8..10].copy_from_slice(&handler.to_le_bytes());
    header[10] = kind;
    // SAFETY: every caller passes the start of a buffer of at least HEADER bytes that it
    // owns exclusively.
    unsafe { std::ptr::copy_nonoverlapping(header.as_ptr(), record, HEADER) };
}

/// Writes a rendezvous descriptor (the payload's offset and length) after the header.
fn write_descriptor(record: *mut u8, spill: &Range<usize>, len: usize) {
    let mut descriptor = [0u8; DESCRIPTOR];
    descriptor[..8].copy_from_slice(&(spill.start as u64).to_le_bytes());
    descriptor[8..].copy_from_slice(&(len as u64).to_le_bytes());
    // SAFETY: every record buffer holds HEADER + at least 64 bytes, exclusively the caller's.
    unsafe { std::ptr::copy_nonoverlapping(descriptor.as_ptr(), record.add(HEADER), DESCRIPTOR) };
}
