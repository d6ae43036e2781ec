//! Receiving: delivering arrived records from each sender's inbox in order (chaos mode
//! included), pulling rendezvous payloads, sleeping.

use std::ops::Range;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{
    lock, Arrived, Delivery, OfiProvider, DESCRIPTOR, HEADER, INBOX_BUDGET, KIND_EAGER, KIND_PAD,
    KIND_PULLED, KIND_RENDEZVOUS,
};
use crate::heap::HEAP_ALIGN;
use crate::{Error, Place, Result};

/// The longest a parked waiter sleeps: nothing from another process can wake it (progress
/// is manual), so this bounds the latency an idle place adds.
const PARK_MAX: Duration = Duration::from_micros(100);

impl OfiProvider {
    /// Delivers arrived messages to `deliver` (sender, handler id, payload bytes, aligned).
    /// Returns how many were delivered, or the first error (the message that caused it is
    /// discarded; everything else stays for the next call).
    pub(crate) fn progress<F: FnMut(Place, u16, &[u8]) -> Result<()>>(
        &self,
        deliver: &mut F,
    ) -> Result<usize> {
        self.repost_unposted();
        self.flush_all_backlogs()?;
        self.poll_completions();
        if let Some(error) = lock(&self.stray).pop_front() {
            return Err(error);
        }
        let places = self.places;
        let start = self.next_inbox.load(Ordering::Relaxed) % places;
        self.next_inbox.store(start + 1, Ordering::Relaxed);
        let mut delivered = 0;
        for step in 0..places {
            let from = (start + step) % places;
            let inbox = &self.inboxes[from];
            if inbox.waiting.load(Ordering::Acquire) == 0 {
                continue;
            }
            let Some(mut state) = inbox.delivery.try_lock() else {
                continue;
            };
            delivered += self.drain_inbox(from, &mut state, deliver)?;
        }
        Ok(delivered)
    }

    fn drain_inbox<F: FnMut(Place, u16, &[u8]) -> Result<()>>(
        &self,
        from: usize,
        state: &mut Delivery,
        deliver: &mut F,
    ) -> Result<usize> {
        if state.chaos.is_holding() {
            return Ok(0);
        }
        let inbox = &self.inboxes[from];
        let mut delivered = 0;
        while delivered < INBOX_BUDGET {
            let Some(arrived) = inbox.queue.lock().pop_front() else {
                break;
            };
            inbox.waiting.fetch_sub(1, Ordering::AcqRel);
            let (count, result) = self.deliver_record(from, arrived, deliver);
            delivered += count;
            if let Err(error) = self.post_recv(arrived.buffer) {
                self.report(error);
            }
            let result = match result {
                Ok(result) => result,
                // The record is consumed: a handler that panicked never sees it again.
                Err(panic) => std::panic::resume_unwind(panic),
            };
            result?;
            if state.chaos.hold_after_delivery() {
                break;
            }
        }
        Ok(delivered)
    }

    /// Checks one record and runs its handler. Returns whether it counted as a delivered
    /// message, and the outcome (a handler's panic caught, to be resumed once the receive
    /// buffer is posted again).
    fn deliver_record<F: FnMut(Place, u16, &[u8]) -> Result<()>>(
        &self,
        from: usize,
        arrived: Arrived,
        deliver: &mut F,
    ) -> (usize, std::thread::Result<Result<()>>) {
        let sender = Place::new(from);
        let malformed = |reason: String| Error::Malformed {
            from: sender,
            reason,
        };
        if arrived.len < HEADER || arrived.len > self.buffer_bytes {
            return (
                0,
                Ok(Err(malformed(format!(
                    "a record of {} bytes (the header alone has {HEADER})",
                    arrived.len
                )))),
            );
        }
        let buffer = self.recv_buffer(arrived.buffer);
        // SAFETY: the receive completed with `arrived.len` bytes in this buffer, which is not
        // posted again before this delivery ends; nothing else writes it meanwhile.
        let record = unsafe { std::slice::from_raw_parts(buffer, arrived.len) };
        let (header, payload) = record.split_at(HEADER);
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let src = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let handler = u16::from_le_bytes([header[8], header[9]]);
        let kind = header[10];
        if len != payload.len() {
            return (
                0,
                Ok(Err(malformed(format!(
                    "its header announces {len} payload bytes, {} arrived",
                    payload.len()
                )))),
            );
        }
        if src as usize != from {
            let error = if src as usize >= self.places {
                Error::PlaceOutOfRange {
                    ring: sender,
                    claimed: u64::from(src),
                    places: self.places,
                }
            } else {
                malformed(format!("it claims to come from place {src}"))
            };
            return (0, Ok(Err(error)));
        }
        match kind {
            KIND_PAD => (0, Ok(Ok(()))),
            KIND_EAGER => (1, deliver_once(deliver, sender, handler, payload)),
            KIND_RENDEZVOUS => match self.pull(from, payload) {
                Ok((range, len)) => {
                    // SAFETY: the pulled payload lies in `range` of this place's registered
                    // memory, allocated for it and not yet freed; the read completed.
                    let bytes = unsafe { std::slice::from_raw_parts(self.at(range.start), len) };
                    let result = deliver_once(deliver, sender, handler, bytes);
                    self.heap.free(range);
                    (1, result)
                }
                Err(error) => (1, Ok(Err(error))),
            },
            KIND_PULLED => {
                let released = <[u8; 8]>::try_from(payload)
                    .map(u64::from_le_bytes)
                    .is_ok_and(|offset| self.release_rendezvous(from, offset));
                if released {
                    (0, Ok(Ok(())))
                } else {
                    (
                        0,
                        Ok(Err(malformed(
                            "it reports a rendezvous buffer pulled that this place never lent it"
                                .into(),
                        ))),
                    )
                }
            }
            kind => (0, Ok(Err(malformed(format!("unknown record kind {kind}"))))),
        }
    }

    /// Reads a rendezvous payload out of `from`'s registered memory into a buffer of this
    /// place's, then tells `from` its buffer is free. Returns the buffer and the length.
    fn pull(&self, from: usize, descriptor: &[u8]) -> Result<(Range<usize>, usize)> {
        let malformed = |reason: String| Error::Malformed {
            from: Place::new(from),
            reason,
        };
        let fields: [u8; DESCRIPTOR] = descriptor.try_into().map_err(|_| {
            malformed(format!(
                "rendezvous descriptor of {} bytes",
                descriptor.len()
            ))
        })?;
        let word = |at: usize| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&fields[at..at + 8]);
            u64::from_le_bytes(bytes)
        };
        let (offset, len) = (word(0), word(8));
        let registered = self.routes.to(from).memory.len;
        let end = offset
            .checked_add(crate::payload::RENDEZVOUS_HEADER as u64)
            .and_then(|start| start.checked_add(len));
        if offset % HEAP_ALIGN as u64 != 0 || end.is_none_or(|end| end > registered) {
            return Err(malformed(format!(
                "rendezvous buffer {offset}+{len} lies outside the sender's {registered} bytes of registered memory"
            )));
        }
        let (offset, len) = (offset as usize, len as usize);
        let range = self.stage(len)?;
        let source = offset + crate::payload::RENDEZVOUS_HEADER;
        if let Err(error) = self.read_into(from, source, range.start, len) {
            if !matches!(error, Error::PlaceFailed(_)) {
                self.heap.free(range);
            }
            return Err(error);
        }
        self.send_control(from, KIND_PULLED, &(offset as u64).to_le_bytes())?;
        Ok((range, len))
    }

    /// Sleeps until a completion may be there (where the provider gives the completion queue
    /// a file descriptor), [`crate::Comm::notify`], or `timeout` (at most [`PARK_MAX`] without
    /// a descriptor); not at all if something arrived or `ready()` holds.
    pub(crate) fn park(&self, timeout: Duration, ready: &mut dyn FnMut() -> bool) {
        self.notifier.drain();
        self.poll_completions();
        let ticket = *lock(&self.doorbell);
        if self.has_incoming() || ready() {
            return;
        }
        if self.routes.wait(self.notifier.fd, timeout) {
            return;
        }
        let doorbell = lock(&self.doorbell);
        if *doorbell != ticket {
            return;
        }
        let _woken = self
            .wake
            .wait_timeout(doorbell, timeout.min(PARK_MAX))
            .unwrap_or_else(|poisoned| poisoned.into_inner());
    }

    fn has_incoming(&self) -> bool {
        self.backlog_pending.load(Ordering::Relaxed) > 0
            || self
                .inboxes
                .iter()
                .any(|inbox| inbox.waiting.load(Ordering::Acquire) > 0)
            || !lock(&self.stray).is_empty()
    }
}

/// Runs a handler, catching a panic so that the caller can consume the record first.
fn deliver_once<F: FnMut(Place, u16, &[u8]) -> Result<()>>(
    deliver: &mut F,
    from: Place,
    handler: u16,
    payload: &[u8],
) -> std::thread::Result<Result<()>> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        deliver(from, handler, payload)
    }))
}
