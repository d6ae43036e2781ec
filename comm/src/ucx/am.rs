//! Active messages: the 16-byte header, sending from registered memory with
//! `ucp_am_send_nbx`, and the receive callback that queues arrivals for delivery after
//! progress returns (handlers never run inside `ucp_worker_progress`).
//!
//! Header (little-endian), sent as UCX's AM header:
//!
//! ```text
//! 0  seq: u32      the sender's sequence number towards this receiver (wrapping)
//! 4  ring: u32     the sending place (the inbox the message belongs to)
//! 8  src: u32      the place the record claims to come from (must equal `ring`)
//! 12 handler: u16
//! 14 kind: u8      1 (EAGER: the payload is the AM data, whatever protocol UCX used)
//! 15 flags: u8     zero
//! ```
//!
//! `ring` and `src` are distinct so that injected records (`Comm::inject_raw`) can claim a
//! wrong sender and be rejected as on the shm provider. Both are a peer's bytes: UCX does not
//! authenticate senders, so a hostile peer can forge either; they are validated, never trusted
//! for memory safety.

use std::ffi::c_void;
use std::ops::Range;
use std::ptr::NonNull;
use std::sync::Arc;

use rkyv::util::AlignedVec;
use ucx_sys as sys;

use super::inbox::{Arrival, Body, HeldData, Pull};
use super::shared::Shared;
use super::status::{started, Started};
use super::{Producer, UcxProvider};
use crate::payload::{serialize_framed, Payload, WriteTarget, RENDEZVOUS_HEADER};
use crate::shm::Sent;
use crate::{Error, Place, Result};

/// The UCX active-message id every Atoll message travels under.
pub(crate) const AM_ID: u32 = 0xA7;
/// Bytes of the header.
pub(crate) const HEADER: usize = 16;
/// The only record kind this provider sends.
pub(crate) const KIND_EAGER: u8 = 1;

const _: () = assert!(HEADER <= RENDEZVOUS_HEADER);

/// A message's header fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) seq: u32,
    pub(crate) ring: u32,
    pub(crate) src: u32,
    pub(crate) handler: u16,
    pub(crate) kind: u8,
}

impl Header {
    fn encode(&self) -> [u8; HEADER] {
        let mut bytes = [0u8; HEADER];
        bytes[0..4].copy_from_slice(&self.seq.to_le_bytes());
        bytes[4..8].copy_from_slice(&self.ring.to_le_bytes());
        bytes[8..12].copy_from_slice(&self.src.to_le_bytes());
        bytes[12..14].copy_from_slice(&self.handler.to_le_bytes());
        bytes[14] = self.kind;
        bytes
    }

    fn decode(bytes: &[u8]) -> Option<Header> {
        let bytes: &[u8; HEADER] = bytes.try_into().ok()?;
        let word =
            |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        Some(Header {
            seq: word(0),
            ring: word(4),
            src: word(8),
            handler: u16::from_le_bytes([bytes[12], bytes[13]]),
            kind: bytes[14],
        })
    }
}

/// What a send's completion callback frees.
struct SendDone {
    shared: *const Shared,
    to: usize,
    range: Range<usize>,
}

impl UcxProvider {
    /// Sends `value` to `to` (see [`crate::Comm::send_framed`]).
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

    /// [`UcxProvider::send`] with the destination's producer lock held by the caller.
    pub(crate) fn send_locked<T: Payload>(
        &self,
        producer: &mut Producer,
        handler: u16,
        prefix: &[u8],
        value: &T,
        _queue_if_full: bool,
    ) -> Result<Sent> {
        let to = producer.to;
        if self.shared.is_failed(to) {
            return Err(Error::PlaceFailed(Place::new(to)));
        }
        let slot = match self.alloc(RENDEZVOUS_HEADER + self.eager_max) {
            Ok(slot) => slot,
            Err(full) => return full,
        };
        let base = self.mapping.base();
        // SAFETY: the slot is freshly allocated from the heap, exclusively this send's; the
        // heap's mapping lives as long as the provider.
        let mut target = unsafe {
            WriteTarget::new(
                base.add(slot.start + RENDEZVOUS_HEADER),
                self.eager_max,
                &self.shared.heap,
                base,
            )
        };
        if let Err(error) = serialize_framed(prefix, value, &mut target) {
            self.shared.heap.free(slot);
            // Registered memory full of messages UCX still sends: back-pressure.
            if matches!(error, Error::PayloadTooLarge { .. }) && self.shared.sends_in_flight() {
                return Ok(Sent::Full);
            }
            return Err(error);
        }
        let len = target.len();
        let range = match target.take_spill() {
            Some(spill) => {
                self.shared.heap.free(slot);
                spill
            }
            None => self.trim(slot, RENDEZVOUS_HEADER + len),
        };
        let header = Header {
            seq: producer.next_seq,
            ring: self.shared.here as u32,
            src: self.shared.here as u32,
            handler,
            kind: KIND_EAGER,
        };
        self.post(to, header, range, len)?;
        producer.next_seq = producer.next_seq.wrapping_add(1);
        Ok(Sent::Done)
    }

    /// Sends a record exactly as given (fault injection), in order with regular sends.
    pub(crate) fn inject(
        &self,
        to: usize,
        kind: u8,
        src: u32,
        handler: u16,
        payload: &[u8],
    ) -> Result<Sent> {
        let mut producer = self.lock_producer(to);
        let range = match self.alloc(RENDEZVOUS_HEADER + payload.len()) {
            Ok(range) => range,
            Err(full) => return full,
        };
        // SAFETY: the range is fresh and exclusively ours, inside the mapped heap, with room
        // for the payload after the header area.
        unsafe {
            std::ptr::copy_nonoverlapping(
                payload.as_ptr(),
                self.mapping.base().add(range.start + RENDEZVOUS_HEADER),
                payload.len(),
            );
        }
        let header = Header {
            seq: producer.next_seq,
            ring: self.shared.here as u32,
            src,
            handler,
            kind,
        };
        self.post(to, header, range, payload.len())?;
        producer.next_seq = producer.next_seq.wrapping_add(1);
        Ok(Sent::Done)
    }

    /// A heap range of `len` bytes, or the answer to give when there is none.
    fn alloc(&self, len: usize) -> std::result::Result<Range<usize>, Result<Sent>> {
        self.shared.heap.alloc(len).map_err(|available| {
            if self.shared.sends_in_flight() {
                Ok(Sent::Full)
            } else {
                Err(Error::PayloadTooLarge {
                    len,
                    limit: available,
                })
            }
        })
    }

    /// Gives back the unused tail of `range` beyond its first `used` bytes.
    fn trim(&self, range: Range<usize>, used: usize) -> Range<usize> {
        let keep = used.next_multiple_of(crate::heap::HEAP_ALIGN);
        if keep < range.len() {
            self.shared.heap.free(range.start + keep..range.end);
            range.start..range.start + keep
        } else {
            range
        }
    }

    /// Hands the message in `range` (header area, then `len` payload bytes) to UCX. The range
    /// belongs to the send until UCX completes it.
    fn post(&self, to: usize, header: Header, range: Range<usize>, len: usize) -> Result<()> {
        let base = self.mapping.base();
        // SAFETY: the range is this send's, inside the heap, and starts with room for the
        // header.
        let (header_ptr, data_ptr) = unsafe {
            let at = base.add(range.start);
            std::ptr::copy_nonoverlapping(header.encode().as_ptr(), at, HEADER);
            (at, at.add(RENDEZVOUS_HEADER))
        };
        let done = Box::into_raw(Box::new(SendDone {
            shared: Arc::as_ptr(&self.shared),
            to,
            range: range.clone(),
        }));
        let params = sys::ucp_request_param_t {
            op_attr_mask: sys::UCP_OP_ATTR_FIELD_CALLBACK
                | sys::UCP_OP_ATTR_FIELD_USER_DATA
                | sys::UCP_OP_ATTR_FIELD_MEMH,
            cb: sys::ucp_request_param_t__bindgen_ty_1 {
                send: Some(send_done),
            },
            user_data: done.cast(),
            memh: self.mapping.memh(),
            ..Default::default()
        };
        let worker = self.lock_worker();
        let result = match worker.endpoint(to) {
            // SAFETY: live endpoint under the worker lock; header and data stay valid and
            // untouched until completion (the range is owned by `done`, freed by the callback
            // or below); the memory handle registers the heap they lie in.
            Ok(ep) => started("ucp_am_send_nbx", unsafe {
                sys::ucp_am_send_nbx(
                    ep,
                    AM_ID,
                    header_ptr.cast(),
                    HEADER,
                    data_ptr.cast(),
                    len,
                    &params,
                )
            }),
            Err(error) => Err(error),
        };
        self.shared.issued[to].fetch_add(1, std::sync::atomic::Ordering::Release);
        drop(worker);
        match result {
            Ok(Started::Pending(_)) => {
                self.shared.send_started(to);
                Ok(())
            }
            Ok(Started::Done) | Err(_) => {
                // SAFETY: UCX will not call the callback (immediate completion or failure):
                // the box is ours again.
                drop(unsafe { Box::from_raw(done) });
                self.shared.heap.free(range);
                result.map(|_| ())
            }
        }
    }
}

/// Completion of a send that did not complete at once: frees its registered memory.
unsafe extern "C" fn send_done(
    request: *mut c_void,
    status: sys::ucs_status_t,
    user_data: *mut c_void,
) {
    // SAFETY: `user_data` is the `SendDone` boxed by `post`, handed to UCX once and given back
    // exactly once, here.
    let done = unsafe { Box::from_raw(user_data.cast::<SendDone>()) };
    // SAFETY: `Shared` outlives the worker, inside whose progress this runs.
    let shared = unsafe { &*done.shared };
    if status != sys::ucs_status_t::UCS_OK {
        tracing::debug!(
            to = done.to,
            status = status.0,
            "active message send failed"
        );
    }
    shared.heap.free(done.range.clone());
    shared.send_completed(done.to);
    // SAFETY: the request completed; it is freed once, here.
    unsafe { sys::ucp_request_free(request) };
}

/// The active-message handler UCX calls inside `ucp_worker_progress`: queues the message in
/// its sender's inbox (holding UCX's buffer when it is aligned, copying it otherwise, or
/// starting the rendezvous receive) and returns; nothing runs a user handler here.
pub(crate) unsafe extern "C" fn on_message(
    arg: *mut c_void,
    header: *const c_void,
    header_length: usize,
    data: *mut c_void,
    length: usize,
    param: *const sys::ucp_am_recv_param_t,
) -> sys::ucs_status_t {
    // SAFETY: `arg` is the provider's `Shared`, registered with the handler and alive while
    // the worker is.
    let shared = unsafe { &*arg.cast::<Shared>() };
    // SAFETY: UCX passes a valid parameter block.
    let attr = unsafe { (*param).recv_attr };
    let rendezvous = attr & u64::from(sys::UCP_AM_RECV_ATTR_FLAG_RNDV) != 0;
    let persistent = attr & u64::from(sys::UCP_AM_RECV_ATTR_FLAG_DATA) != 0;
    let header = if header.is_null() || header_length != HEADER {
        None
    } else {
        // SAFETY: UCX passes `header_length` readable header bytes.
        Header::decode(unsafe { std::slice::from_raw_parts(header.cast::<u8>(), header_length) })
    };
    let Some(header) = header.filter(|h| (h.ring as usize) < shared.places) else {
        shared.push_stray(Error::Malformed {
            from: Place::new(shared.here),
            reason: format!(
                "an active message arrived with a {header_length}-byte header that names no \
                 place of the job as its sender"
            ),
        });
        return sys::ucs_status_t::UCS_OK; // drops the data (and a rendezvous)
    };
    let (body, status) = if rendezvous {
        (
            Body::Pulling(start_pull(shared, data, length)),
            sys::ucs_status_t::UCS_OK,
        )
    } else if persistent && !data.is_null() && data as usize % 16 == 0 {
        let ptr = NonNull::new(data.cast::<u8>()).unwrap_or(NonNull::dangling());
        (
            Body::Held(HeldData { ptr, len: length }),
            sys::ucs_status_t::UCS_INPROGRESS,
        )
    } else {
        let mut bytes = AlignedVec::<16>::with_capacity(length);
        if length > 0 {
            // SAFETY: UCX passes `length` readable bytes at `data` for the callback's duration.
            bytes.extend_from_slice(unsafe {
                std::slice::from_raw_parts(data.cast::<u8>(), length)
            });
        }
        (Body::Owned(bytes), sys::ucs_status_t::UCS_OK)
    };
    let ring = header.ring as usize;
    match shared.inboxes[ring].insert(Arrival { header, body }) {
        Ok(()) => status,
        Err((_, reason)) => {
            shared.push_stray(Error::Malformed {
                from: Place::new(ring),
                reason,
            });
            // Not held after all: UCX frees held data when the callback returns UCS_OK; a
            // rendezvous already started completes into its (now dropped-by-us) buffer, which
            // the receive callback keeps alive.
            sys::ucs_status_t::UCS_OK
        }
    }
}

/// Starts receiving a rendezvous payload of `length` bytes into a fresh aligned buffer.
fn start_pull(shared: &Shared, descriptor: *mut c_void, length: usize) -> Arc<Pull> {
    let pull = Arc::new(Pull::new(length));
    let user_data = Arc::into_raw(pull.clone());
    let params = sys::ucp_request_param_t {
        op_attr_mask: sys::UCP_OP_ATTR_FIELD_CALLBACK | sys::UCP_OP_ATTR_FIELD_USER_DATA,
        cb: sys::ucp_request_param_t__bindgen_ty_1 {
            recv_am: Some(pull_done),
        },
        user_data: user_data.cast_mut().cast(),
        ..Default::default()
    };
    // SAFETY: inside the AM callback, under the worker lock; `descriptor` is the rendezvous
    // descriptor UCX just passed; the target holds `length` bytes and lives (in the Arc the
    // callback owns) until the receive completes.
    let started = started("ucp_am_recv_data_nbx", unsafe {
        sys::ucp_am_recv_data_nbx(
            shared.worker,
            descriptor,
            pull.target().cast(),
            length,
            &params,
        )
    });
    match started {
        Ok(Started::Pending(_)) => {}
        Ok(Started::Done) => {
            // SAFETY: no callback will come: take back the reference given to UCX.
            drop(unsafe { Arc::from_raw(user_data) });
            pull.complete(0);
        }
        Err(error) => {
            // SAFETY: as above.
            drop(unsafe { Arc::from_raw(user_data) });
            let code = match error {
                Error::Ucx { code, .. } => code,
                _ => -1,
            };
            pull.complete(code.min(-1));
        }
    }
    pull
}

/// Completion of a rendezvous receive.
unsafe extern "C" fn pull_done(
    request: *mut c_void,
    status: sys::ucs_status_t,
    _length: usize,
    user_data: *mut c_void,
) {
    // SAFETY: `user_data` is the reference `start_pull` gave UCX, given back once, here.
    let pull = unsafe { Arc::from_raw(user_data.cast::<Pull>().cast_const()) };
    pull.complete(if status == sys::ucs_status_t::UCS_OK {
        0
    } else {
        status.0.min(-1)
    });
    // SAFETY: the request completed; freed once, here.
    unsafe { sys::ucp_request_free(request) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let header = Header {
            seq: u32::MAX,
            ring: 3,
            src: 7,
            handler: 0xBEEF,
            kind: KIND_EAGER,
        };
        assert_eq!(Header::decode(&header.encode()), Some(header));
        assert_eq!(Header::decode(&[0u8; 15]), None);
    }
}
