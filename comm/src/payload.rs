//! Payloads: values serialized by rkyv straight into provider-owned memory, and read in place
//! (after validation) at the receiver.
//!
//! A send serializes exactly once. [`MessageWriter`] writes into the eager slot of the
//! transport (a ring slot for shm); if the value outgrows the slot, the writer moves what it
//! has written to a buffer of the sender's registered memory and carries on there, and the
//! message goes by rendezvous: the receiver pulls it with a one-sided get.

use std::ops::Range;
use std::ptr::NonNull;

use rkyv::api::high::{HighDeserializer, HighSerializer, HighValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::ser::{Positional, Writer};
use rkyv::{Archive, Deserialize, Portable};

use crate::heap::HeapAllocator;
use crate::{Error, Place, Result};

/// The rkyv serializer Atoll serializes payloads with.
pub type PayloadSerializer<'a> = HighSerializer<MessageWriter, ArenaHandle<'a>, rancor::BoxedError>;

/// A value that can be sent to another place: any type that derives `rkyv::Archive` and
/// `rkyv::Serialize` (and the standard types rkyv supports: integers, `String`, `Vec`, tuples,
/// options, ...).
pub trait Payload: for<'a> rkyv::Serialize<PayloadSerializer<'a>> {}

impl<T: ?Sized + for<'a> rkyv::Serialize<PayloadSerializer<'a>>> Payload for T {}

/// An archived payload that can be validated in place.
pub trait CheckedArchive:
    Portable + for<'a> CheckBytes<HighValidator<'a, rancor::BoxedError>>
{
}

impl<T: Portable + for<'a> CheckBytes<HighValidator<'a, rancor::BoxedError>>> CheckedArchive for T {}

/// Bytes that are already a payload (an rkyv archive serialized earlier, or a layer's own
/// validated format): sent as they are, with no archive around them. Made by
/// [`crate::Comm::send_bytes`]; the receiver sees exactly these bytes in
/// [`Message::bytes`].
#[derive(Debug)]
pub(crate) struct RawBytes<'a>(pub(crate) &'a [u8]);

impl Archive for RawBytes<'_> {
    // Nothing of its own is archived: `serialize` writes the bytes, and the (zero-sized)
    // root that follows them adds nothing.
    type Archived = ();
    type Resolver = ();

    fn resolve(&self, _resolver: (), _out: rkyv::Place<()>) {}
}

impl<S: rancor::Fallible + Writer<S::Error> + ?Sized> rkyv::Serialize<S> for RawBytes<'_> {
    fn serialize(&self, serializer: &mut S) -> Result<(), S::Error> {
        serializer.write(self.0)
    }
}

/// Bytes before the payload in a rendezvous buffer: a completion flag the receiver sets once it
/// has pulled the payload.
pub(crate) const RENDEZVOUS_HEADER: usize = 16;

/// Where one send's archive goes: an eager slot, then, if the value outgrows it, a rendezvous
/// buffer in the sender's registered memory.
#[derive(Debug)]
pub(crate) struct WriteTarget {
    slot: *mut u8,
    slot_capacity: usize,
    pos: usize,
    spill: Option<Range<usize>>,
    heap: *const HeapAllocator,
    heap_base: *mut u8,
    exhausted: Option<(usize, usize)>,
}

impl WriteTarget {
    /// A target of `slot_capacity` bytes at `slot`, spilling into `heap` (whose area starts at
    /// `heap_base`).
    ///
    /// # Safety
    /// `slot..slot + slot_capacity` must be writable and exclusively the caller's, and
    /// `heap_base` must be the start of the area `heap` allocates from, mapped and writable;
    /// all of it for the target's whole life.
    pub(crate) unsafe fn new(
        slot: *mut u8,
        slot_capacity: usize,
        heap: &HeapAllocator,
        heap_base: *mut u8,
    ) -> WriteTarget {
        WriteTarget {
            slot,
            slot_capacity,
            pos: 0,
            spill: None,
            heap,
            heap_base,
            exhausted: None,
        }
    }

    /// Writes the raw prefix of a framed message (before the archive).
    pub(crate) fn write_prefix(&mut self, prefix: &[u8]) -> Result<(), rancor::BoxedError> {
        if prefix.is_empty() {
            return Ok(());
        }
        self.write(prefix)
    }

    /// Bytes written.
    pub(crate) fn len(&self) -> usize {
        self.pos
    }

    /// The rendezvous buffer holding the archive, if it outgrew the slot. The archive starts
    /// `RENDEZVOUS_HEADER` bytes into it. The caller now owns the buffer.
    pub(crate) fn take_spill(&mut self) -> Option<Range<usize>> {
        self.spill.take()
    }

    /// `(requested, available)` when registered memory ran out during the write.
    pub(crate) fn exhausted(&self) -> Option<(usize, usize)> {
        self.exhausted
    }

    fn heap(&self) -> &HeapAllocator {
        // SAFETY: `heap` outlives the target (constructor contract).
        unsafe { &*self.heap }
    }

    fn current(&self) -> (*mut u8, usize) {
        match &self.spill {
            None => (self.slot, self.slot_capacity),
            Some(range) => (
                // SAFETY: the range lies inside the heap area (it came from its allocator).
                unsafe { self.heap_base.add(range.start + RENDEZVOUS_HEADER) },
                range.len() - RENDEZVOUS_HEADER,
            ),
        }
    }

    /// Moves the bytes written so far into a heap buffer with room for `needed` bytes.
    fn grow(&mut self, needed: usize) -> Result<(), rancor::BoxedError> {
        let (old, old_capacity) = self.current();
        let capacity = needed.max(old_capacity.saturating_mul(2)).max(64 * 1024);
        let range = match self.heap().alloc(capacity + RENDEZVOUS_HEADER) {
            Ok(range) => range,
            Err(available) => {
                self.exhausted = Some((capacity + RENDEZVOUS_HEADER, available));
                return Err(<rancor::BoxedError as rancor::Source>::new(
                    Error::PayloadTooLarge {
                        len: needed,
                        limit: available,
                    },
                ));
            }
        };
        // SAFETY: the new range is fresh, inside the heap area and exclusively ours; `old`
        // holds `pos` written bytes; the two do not overlap (the old spill is still allocated).
        unsafe {
            let new = self.heap_base.add(range.start);
            new.cast::<u64>().write(0); // completion flag: not yet pulled
            std::ptr::copy_nonoverlapping(old, new.add(RENDEZVOUS_HEADER), self.pos);
        }
        if let Some(old_spill) = self.spill.replace(range) {
            self.heap().free(old_spill);
        }
        Ok(())
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), rancor::BoxedError> {
        let end = self.pos + bytes.len();
        if end > self.current().1 {
            self.grow(end)?;
        }
        let (target, _) = self.current();
        // SAFETY: `pos + len <= capacity` of the current target, which is exclusively ours.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), target.add(self.pos), bytes.len());
        }
        self.pos = end;
        Ok(())
    }
}

impl Drop for WriteTarget {
    fn drop(&mut self) {
        if let Some(range) = self.spill.take() {
            self.heap().free(range);
        }
    }
}

/// The rkyv writer of a send: it writes into the eager slot, then spills into registered memory.
///
/// Created by the transport for one send; not constructible outside this crate.
#[derive(Debug)]
pub struct MessageWriter {
    target: NonNull<WriteTarget>,
}

impl MessageWriter {
    fn target(&self) -> &WriteTarget {
        // SAFETY: `serialize_into` creates the writer from a live `&mut WriteTarget` and the
        // writer is gone before that borrow ends; nothing else touches the target meanwhile.
        unsafe { self.target.as_ref() }
    }
}

impl Positional for MessageWriter {
    fn pos(&self) -> usize {
        self.target().pos
    }
}

impl Writer<rancor::BoxedError> for MessageWriter {
    fn write(&mut self, bytes: &[u8]) -> Result<(), rancor::BoxedError> {
        // SAFETY: as in `target`; `&mut self` makes this the only access.
        unsafe { self.target.as_mut() }.write(bytes)
    }
}

/// Writes `prefix`, then `value` serialized, into `target`: what every provider's send does
/// with a message. A value that does not fit the memory `target` may use is
/// [`crate::Error::PayloadTooLarge`]; one rkyv cannot serialize, [`crate::Error::Serialize`].
pub(crate) fn serialize_framed<T: Payload>(
    prefix: &[u8],
    value: &T,
    target: &mut WriteTarget,
) -> crate::Result<()> {
    match target
        .write_prefix(prefix)
        .and_then(|()| serialize_into(value, target))
    {
        Ok(()) => Ok(()),
        Err(source) => Err(match target.exhausted() {
            Some((requested, available)) => crate::Error::PayloadTooLarge {
                len: requested,
                limit: available,
            },
            None => crate::Error::Serialize { source },
        }),
    }
}

/// Serializes `value` into `target`.
pub(crate) fn serialize_into<T: Payload>(
    value: &T,
    target: &mut WriteTarget,
) -> Result<(), rancor::BoxedError> {
    let writer = MessageWriter {
        target: NonNull::from(target),
    };
    rkyv::api::high::to_bytes_in::<_, rancor::BoxedError>(value, writer).map(|_| ())
}

/// A message as its handler sees it: the sender and the payload's bytes, in place and aligned.
///
/// The bytes come from another process: [`Message::access`] and [`Message::deserialize`]
/// validate them before use.
#[derive(Clone, Copy, Debug)]
pub struct Message<'a> {
    from: Place,
    handler: u16,
    bytes: &'a [u8],
}

impl<'a> Message<'a> {
    pub(crate) fn new(from: Place, handler: u16, bytes: &'a [u8]) -> Message<'a> {
        Message {
            from,
            handler,
            bytes,
        }
    }

    /// The sending place.
    pub fn from(&self) -> Place {
        self.from
    }

    /// The handler the message was sent to.
    pub fn handler(&self) -> crate::HandlerId {
        crate::HandlerId::new(self.handler)
    }

    /// The payload's raw bytes (an rkyv archive, not yet validated).
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The archived `T`, validated in place (no copy).
    pub fn access<T: Archive>(&self) -> Result<&'a T::Archived>
    where
        T::Archived: CheckedArchive,
    {
        rkyv::access::<T::Archived, rancor::BoxedError>(self.bytes).map_err(|source| {
            Error::InvalidPayload {
                from: self.from,
                handler: self.handler,
                source,
            }
        })
    }

    /// Splits off the first `len` bytes of a message sent with [`crate::Comm::send_framed`]:
    /// the raw prefix, and the message whose payload is the archive after it. `None` if the
    /// message is shorter than `len`.
    pub fn split_prefix(&self, len: usize) -> Option<(&'a [u8], Message<'a>)> {
        (self.bytes.len() >= len).then(|| {
            let (prefix, rest) = self.bytes.split_at(len);
            (prefix, Message::new(self.from, self.handler, rest))
        })
    }

    /// The payload validated and deserialized into a `T`.
    pub fn deserialize<T: Archive>(&self) -> Result<T>
    where
        T::Archived: CheckedArchive + Deserialize<T, HighDeserializer<rancor::BoxedError>>,
    {
        let archived = self.access::<T>()?;
        rkyv::deserialize::<T, rancor::BoxedError>(archived).map_err(|source| {
            Error::InvalidPayload {
                from: self.from,
                handler: self.handler,
                source,
            }
        })
    }
}
