//! Receiving: draining the inbox rings (chaos mode included), pulling rendezvous payloads,
//! sleeping on the doorbell.

use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::time::Duration;

use rkyv::util::AlignedVec;

use super::ring::{self, Peek, KIND_EAGER, KIND_PAD, KIND_RENDEZVOUS};
use super::{doorbell, ConsumerState, ShmProvider, DESCRIPTOR, RING_BUDGET};
use crate::payload::RENDEZVOUS_HEADER;
use crate::{Error, Place, Result};

impl ShmProvider {
    /// Delivers arrived messages to `deliver` (sender, handler id, payload bytes, aligned).
    /// Returns how many were delivered, or the first error (the message that caused it is
    /// discarded; everything else stays for the next call).
    pub(crate) fn progress<F: FnMut(Place, u16, &[u8]) -> Result<()>>(
        &self,
        deliver: &mut F,
    ) -> Result<usize> {
        self.flush_all_backlogs();
        self.reclaim_rendezvous();
        let places = self.places();
        // Rotate the first ring looked at, for fairness; a lost update between threads only
        // repeats a starting point.
        let start = self.next_ring.load(Ordering::Relaxed) % places;
        self.next_ring.store(start + 1, Ordering::Relaxed);
        let mut delivered = 0;
        let mut from = start;
        for _ in 0..places {
            from = if from + 1 >= places { 0 } else { from + 1 };
            let slot = &self.consumers[from];
            if !ring::has_record_at(self.own(), from, slot.head_hint.load(Ordering::Relaxed)) {
                continue;
            }
            let Some(mut state) = slot.state.try_lock() else {
                continue;
            };
            let result = self.drain_ring(from, &mut state, deliver);
            slot.head_hint.store(state.ring.head(), Ordering::Relaxed);
            if state.ring.publish_head() {
                // The sender may be asleep waiting for room or for a flush.
                self.ring_doorbell(from);
            }
            delivered += result?;
        }
        Ok(delivered)
    }

    pub(super) fn drain_ring<F: FnMut(Place, u16, &[u8]) -> Result<()>>(
        &self,
        from: usize,
        state: &mut ConsumerState,
        deliver: &mut F,
    ) -> Result<usize> {
        if state.chaos.is_holding() {
            return Ok(0);
        }
        let sender = Place::new(from);
        let byte_budget = self.own().layout().ring_bytes / 4;
        let start = state.ring.head();
        let mut delivered = 0;
        while delivered < RING_BUDGET && state.ring.head() - start < byte_budget as u64 {
            let (header, payload) = match state.ring.peek() {
                Peek::Empty => break,
                Peek::Malformed(reason) => {
                    state.ring.resync();
                    return Err(Error::Malformed {
                        from: sender,
                        reason,
                    });
                }
                Peek::Record { header, payload } => (header, payload),
            };
            let len = header.len as usize;
            if header.src as usize != from {
                state.ring.advance(len);
                return Err(if header.src as usize >= self.places() {
                    Error::PlaceOutOfRange {
                        ring: sender,
                        claimed: u64::from(header.src),
                        places: self.places(),
                    }
                } else {
                    Error::Malformed {
                        from: sender,
                        reason: format!("it claims to come from place {}", header.src),
                    }
                });
            }
            let result: std::thread::Result<Result<()>> = match header.kind {
                KIND_PAD => Ok(Ok(())),
                KIND_EAGER => {
                    delivered += 1;
                    if len > self.eager_max {
                        Ok(Err(Error::Malformed {
                            from: sender,
                            reason: format!(
                                "eager record of {len} bytes exceeds ATOLL_EAGER_MAX={}",
                                self.eager_max
                            ),
                        }))
                    } else {
                        deliver_once(deliver, sender, header.handler, payload)
                    }
                }
                KIND_RENDEZVOUS => {
                    delivered += 1;
                    match self.pull(from, payload, &mut state.pulled) {
                        Ok(()) => deliver_once(deliver, sender, header.handler, &state.pulled),
                        Err(error) => Ok(Err(error)),
                    }
                }
                kind => Ok(Err(Error::Malformed {
                    from: sender,
                    reason: format!("unknown record kind {kind}"),
                })),
            };
            state.ring.advance(len);
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

    /// Copies a rendezvous payload out of the sender's registered memory and marks its buffer
    /// pulled.
    pub(super) fn pull(
        &self,
        from: usize,
        descriptor: &[u8],
        bytes: &mut AlignedVec,
    ) -> Result<()> {
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
        let (offset, len) = (le_u64(&fields, 0), le_u64(&fields, 8));
        let heap_bytes = self.heap.bytes() as u64;
        let end = offset
            .checked_add(RENDEZVOUS_HEADER as u64)
            .and_then(|start| start.checked_add(len));
        if offset % crate::heap::HEAP_ALIGN as u64 != 0 || end.is_none_or(|end| end > heap_bytes) {
            return Err(malformed(format!(
                "rendezvous buffer {offset}+{len} lies outside the sender's {heap_bytes} bytes of registered memory"
            )));
        }
        let (offset, len) = (offset as usize, len as usize);
        let base = self.views[from].heap();
        bytes.clear();
        bytes.reserve(len);
        // SAFETY: `offset + RENDEZVOUS_HEADER + len` is inside the sender's heap (checked); the
        // sender does not reuse the buffer before its flag is set below.
        let source =
            unsafe { std::slice::from_raw_parts(base.add(offset + RENDEZVOUS_HEADER), len) };
        bytes.extend_from_slice(source);
        // SAFETY: the flag is the buffer's first 8 bytes (64-aligned offset, checked), accessed
        // atomically by both sides.
        unsafe { AtomicU64::from_ptr(base.add(offset).cast()) }.store(1, Ordering::Release);
        Ok(())
    }

    /// Sleeps until a message may have arrived, a receiver has taken messages of this place
    /// (both ring the doorbell), or `timeout`; not at all if `ready()` already holds once this
    /// place is announced as sleeping.
    pub(crate) fn park(&self, timeout: Duration, ready: &mut dyn FnMut() -> bool) {
        let own = self.own();
        own.sleepers().fetch_add(1, Ordering::SeqCst);
        if self.asymmetric_fence {
            doorbell::heavy_fence();
        } else {
            fence(Ordering::SeqCst);
        }
        let ticket = own.doorbell().load(Ordering::SeqCst);
        if !self.has_incoming() && !ready() {
            doorbell::wait(own.doorbell(), ticket, timeout);
        }
        own.sleepers().fetch_sub(1, Ordering::SeqCst);
    }

    pub(super) fn has_incoming(&self) -> bool {
        self.backlog_pending.load(Ordering::Relaxed) > 0
            || self.consumers.iter().enumerate().any(|(from, slot)| {
                ring::has_record_at(self.own(), from, slot.head_hint.load(Ordering::Relaxed))
            })
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

fn le_u64(bytes: &[u8; DESCRIPTOR], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}
