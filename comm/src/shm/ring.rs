//! One inbox ring: single producer (the sending place, serialised by a lock there), single
//! consumer (the receiving place, serialised by a lock here), variable-length records.
//!
//! A record is a 16-byte header followed by its payload, padded to 16 bytes:
//!
//! ```text
//! 0  stamp: u32   nonzero when the record is complete (written last, with Release)
//! 4  len: u32     payload bytes
//! 8  src: u32     the sending place (checked against the ring it came through)
//! 12 handler: u16
//! 14 kind: u8     EAGER, RENDEZVOUS or PAD
//! 15 flags: u8    reserved, zero
//! ```
//!
//! The consumer polls the stamp at its head; the header and the payload share cache lines,
//! so a small message costs one cache-line transfer. Before publishing a record, the producer
//! zeroes the stamp word where the *next* record will start (room for it is part of every
//! reservation), so the consumer never mistakes stale bytes of an earlier lap for a record.
//! A record that does not fit before the end of the ring is preceded by a PAD record that
//! fills the rest. The consumer publishes its head lazily; the producer rereads it only when
//! its cached copy says the ring is full.

use std::sync::atomic::{AtomicU32, Ordering};

use super::layout::SegmentView;

/// Bytes of a record header.
pub(crate) const HEADER: usize = 16;
/// Records start on this boundary (rkyv archives need 16 at most).
pub(crate) const RECORD_ALIGN: usize = 16;

/// A payload carried in the record itself.
pub(crate) const KIND_EAGER: u8 = 1;
/// A rendezvous descriptor: the payload waits in the sender's registered memory.
pub(crate) const KIND_RENDEZVOUS: u8 = 2;
/// Filler up to the end of the ring.
pub(crate) const KIND_PAD: u8 = 3;

/// The header fields a producer chooses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RecordHeader {
    pub(crate) len: u32,
    pub(crate) src: u32,
    pub(crate) handler: u16,
    pub(crate) kind: u8,
}

impl RecordHeader {
    fn encode(&self) -> [u8; HEADER - 4] {
        let mut bytes = [0u8; HEADER - 4];
        bytes[0..4].copy_from_slice(&self.len.to_le_bytes());
        bytes[4..8].copy_from_slice(&self.src.to_le_bytes());
        bytes[8..10].copy_from_slice(&self.handler.to_le_bytes());
        bytes[10] = self.kind;
        bytes
    }

    fn decode(bytes: [u8; HEADER - 4]) -> RecordHeader {
        let word =
            |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        RecordHeader {
            len: word(0),
            src: word(4),
            handler: u16::from_le_bytes([bytes[8], bytes[9]]),
            kind: bytes[10],
        }
    }
}

/// Bytes a record with `len` payload bytes occupies.
pub(crate) fn span(len: usize) -> usize {
    (HEADER + len).next_multiple_of(RECORD_ALIGN)
}

/// The stamp of the record at absolute position `pos` (never zero).
fn stamp_for(pos: u64) -> u32 {
    match ((pos / RECORD_ALIGN as u64) as u32).wrapping_add(1) {
        0 => 1,
        stamp => stamp,
    }
}

/// Space reserved in the ring for one record of up to `max_payload` bytes.
#[derive(Debug)]
pub(crate) struct Slot {
    pos: u64,
    payload: *mut u8,
    capacity: usize,
}

impl Slot {
    /// Where the payload goes.
    pub(crate) fn payload(&self) -> *mut u8 {
        self.payload
    }

    /// How many payload bytes fit.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }
}

/// The sending side of the ring `sender -> receiver`, living in the sender's process.
#[derive(Debug)]
pub(crate) struct Producer {
    receiver: SegmentView,
    sender: usize,
    data: *mut u8,
    size: usize,
    tail: u64,
    cached_head: u64,
}

// SAFETY: `data` points into the receiver's segment, which the provider keeps mapped for as
// long as any producer exists; the producer is only used under its lock.
unsafe impl Send for Producer {}

impl Producer {
    pub(crate) fn new(receiver: SegmentView, sender: usize) -> Producer {
        let size = receiver.layout().ring_bytes;
        Producer {
            data: receiver.ring_data(sender),
            receiver,
            sender,
            size,
            tail: 0,
            cached_head: 0,
        }
    }

    /// Reserves room for a record of up to `max_payload` bytes, or `None` while the ring is
    /// too full. `max_payload` must be at most a quarter of the ring.
    pub(crate) fn reserve(&mut self, max_payload: usize) -> Option<Slot> {
        let need = span(max_payload) + HEADER; // + room to clear the next record's stamp
        let offset = self.offset(self.tail);
        let to_end = self.size - offset;
        let pad = if to_end < need { to_end } else { 0 };
        if !self.has_room(pad + need) {
            return None;
        }
        if pad > 0 {
            let header = RecordHeader {
                len: (pad - HEADER) as u32,
                src: self.sender as u32,
                handler: 0,
                kind: KIND_PAD,
            };
            self.publish_at(self.tail, header, pad);
        }
        let offset = self.offset(self.tail);
        Some(Slot {
            pos: self.tail,
            // SAFETY: `offset + HEADER + max_payload <= size` (the reservation is contiguous),
            // so the pointer stays inside the ring's data area.
            payload: unsafe { self.data.add(offset + HEADER) },
            capacity: max_payload,
        })
    }

    /// Publishes the record reserved as `slot` whose payload (`header.len` bytes) is written.
    pub(crate) fn publish(&mut self, slot: Slot, header: RecordHeader) {
        debug_assert!(header.len as usize <= slot.capacity);
        debug_assert_eq!(slot.pos, self.tail);
        self.publish_at(slot.pos, header, span(header.len as usize));
    }

    /// Whether the consumer has taken everything published so far.
    pub(crate) fn is_drained(&mut self) -> bool {
        self.refresh_head();
        self.cached_head == self.tail
    }

    fn has_room(&mut self, bytes: usize) -> bool {
        if self.free() >= bytes {
            return true;
        }
        self.refresh_head();
        self.free() >= bytes
    }

    /// Rereads the consumer's head. The peer writes it: a value that is behind the cached one
    /// or ahead of the tail is corrupt and ignored (the ring then looks full rather than
    /// letting unconsumed records be overwritten).
    fn refresh_head(&mut self) {
        let head = self.receiver.ring_head(self.sender).load(Ordering::Acquire);
        if head >= self.cached_head && head <= self.tail {
            self.cached_head = head;
        }
    }

    fn free(&self) -> usize {
        self.size - (self.tail - self.cached_head) as usize
    }

    fn offset(&self, pos: u64) -> usize {
        (pos as usize) & (self.size - 1)
    }

    fn stamp_word(&self, pos: u64) -> &AtomicU32 {
        // SAFETY: offsets are 16-aligned and inside the data area; stamp words are only ever
        // accessed atomically, by both sides.
        unsafe { AtomicU32::from_ptr(self.data.add(self.offset(pos)).cast()) }
    }

    fn publish_at(&mut self, pos: u64, header: RecordHeader, span: usize) {
        let offset = self.offset(pos);
        let fields = header.encode();
        // SAFETY: the header lies in space this producer reserved (the consumer does not read
        // it before the stamp is published below); 12 bytes after the 4-byte stamp.
        unsafe {
            std::ptr::copy_nonoverlapping(fields.as_ptr(), self.data.add(offset + 4), fields.len());
        }
        let next = pos + span as u64;
        // The next record's stamp is in reserved space (or at offset 0 after a PAD).
        self.stamp_word(next).store(0, Ordering::Relaxed);
        self.stamp_word(pos)
            .store(stamp_for(pos), Ordering::Release);
        self.tail = next;
        self.receiver
            .ring_tail(self.sender)
            .store(next, Ordering::Release);
    }
}

/// Whether a record is published at position `head` of the ring from `sender` in `own`: a
/// cheap look at one stamp, for pollers that do not hold the consumer's lock (`head` may be
/// stale; a wrong answer only costs a lock attempt or one poll).
pub(crate) fn has_record_at(own: &SegmentView, sender: usize, head: u64) -> bool {
    let size = own.layout().ring_bytes;
    let offset = (head as usize) & (size - 1);
    // SAFETY: 16-aligned offset inside the ring's data area; stamps are only accessed atomically.
    let stamp = unsafe { AtomicU32::from_ptr(own.ring_data(sender).add(offset).cast()) };
    stamp.load(Ordering::Relaxed) != 0
}

/// What the consumer finds at its head.
#[derive(Debug)]
pub(crate) enum Peek<'a> {
    /// Nothing published.
    Empty,
    /// A complete record.
    Record {
        header: RecordHeader,
        payload: &'a [u8],
    },
    /// The bytes at the head are not a record this ring's producer could have written.
    Malformed(String),
}

/// The receiving side of the ring `sender -> here`.
#[derive(Debug)]
pub(crate) struct Consumer {
    own: SegmentView,
    sender: usize,
    data: *mut u8,
    size: usize,
    head: u64,
    published_head: u64,
}

// SAFETY: `data` points into this place's own segment, mapped for the provider's lifetime;
// a consumer is only used under its lock.
unsafe impl Send for Consumer {}

impl Consumer {
    pub(crate) fn new(own: SegmentView, sender: usize) -> Consumer {
        let size = own.layout().ring_bytes;
        Consumer {
            data: own.ring_data(sender),
            own,
            sender,
            size,
            head: 0,
            published_head: 0,
        }
    }

    /// The consumer's position (for [`has_record_at`]).
    pub(crate) fn head(&self) -> u64 {
        self.head
    }

    /// The record at the head, if any. Its payload stays valid until [`Consumer::advance`].
    pub(crate) fn peek(&self) -> Peek<'_> {
        let offset = self.offset(self.head);
        let stamp = self.stamp_word(self.head).load(Ordering::Acquire);
        if stamp == 0 {
            return Peek::Empty;
        }
        if stamp != stamp_for(self.head) {
            return Peek::Malformed(format!(
                "record stamp {stamp:#x} at ring position {} does not match {:#x}",
                self.head,
                stamp_for(self.head)
            ));
        }
        let mut fields = [0u8; HEADER - 4];
        // SAFETY: the stamp was published with Release after the header was written and the
        // producer does not touch the record until the head moves past it; in bounds.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.data.add(offset + 4),
                fields.as_mut_ptr(),
                fields.len(),
            );
        }
        let header = RecordHeader::decode(fields);
        let len = header.len as usize;
        if len > self.size - offset - HEADER {
            return Peek::Malformed(format!(
                "record of {len} bytes at ring offset {offset} runs past the end of the {}-byte ring",
                self.size
            ));
        }
        // SAFETY: `offset + HEADER + len <= size` (checked above), the bytes are published
        // (Acquire on the stamp) and stay untouched until the head advances past them.
        let payload = unsafe { std::slice::from_raw_parts(self.data.add(offset + HEADER), len) };
        Peek::Record { header, payload }
    }

    /// Consumes the record at the head (of `len` payload bytes).
    pub(crate) fn advance(&mut self, len: usize) {
        self.head += span(len) as u64;
        if self.head - self.published_head >= (self.size / 8) as u64 {
            self.publish_head();
        }
    }

    /// Skips everything the producer has published so far (after a malformed record, whose
    /// length cannot be trusted).
    pub(crate) fn resync(&mut self) {
        let tail = self.own.ring_tail(self.sender).load(Ordering::Acquire);
        // A sane tail is ahead of the head by at most one ring and on a record boundary.
        if tail > self.head
            && tail - self.head <= self.size as u64
            && tail % RECORD_ALIGN as u64 == 0
        {
            self.head = tail;
        }
        self.publish_head();
    }

    /// Tells the producer how far this consumer has read; whether there was news.
    pub(crate) fn publish_head(&mut self) -> bool {
        if self.published_head == self.head {
            return false;
        }
        self.own
            .ring_head(self.sender)
            .store(self.head, Ordering::Release);
        self.published_head = self.head;
        true
    }

    fn offset(&self, pos: u64) -> usize {
        (pos as usize) & (self.size - 1)
    }

    fn stamp_word(&self, pos: u64) -> &AtomicU32 {
        // SAFETY: 16-aligned offset inside the data area; stamps are only accessed atomically.
        unsafe { AtomicU32::from_ptr(self.data.add(self.offset(pos)).cast()) }
    }
}
