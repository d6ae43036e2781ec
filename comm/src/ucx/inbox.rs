//! One sender's inbox at this place: arrived messages put back in the sender's order by their
//! sequence numbers (UCX does not promise order across its lanes and protocols: an eager
//! message may overtake a rendezvous one), then delivered one at a time, with chaos holds.
//!
//! Two locks, never nested the wrong way: `arrivals` is a leaf lock, taken briefly by the
//! receive callback (under the worker lock) and by the deliverer; `delivery` is only ever
//! try-locked, and held across handlers, which may take the worker lock.

use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicI8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use rkyv::util::AlignedVec;

use super::am::{Header, KIND_EAGER};
use crate::chaos::Chaos;
use crate::{Error, Place, Result};

/// How far ahead of the next expected message a sequence number may be.
const WINDOW: u32 = 1 << 24;
/// Messages one inbox delivers per visit.
pub(crate) const BUDGET: usize = 64;
/// `Pull::status` while the data is on its way.
const PULLING: i8 = 1;

/// A message's bytes.
#[derive(Debug)]
pub(crate) enum Body {
    /// UCX's receive buffer, held (the callback returned `UCS_INPROGRESS`) until the handler
    /// has run; released with `ucp_am_data_release`.
    Held(HeldData),
    /// A copy (UCX's buffer was misaligned for rkyv, or could not be held).
    Owned(AlignedVec<16>),
    /// A rendezvous payload being received into its own buffer.
    Pulling(Arc<Pull>),
}

/// Data UCX lent to this place.
///
/// Invariant: `ptr..ptr + len` stays readable until passed to `ucp_am_data_release`, which
/// happens exactly once (after delivery, or at teardown).
#[derive(Debug)]
pub(crate) struct HeldData {
    pub(crate) ptr: NonNull<u8>,
    pub(crate) len: usize,
}

// SAFETY: the data is plain bytes owned by UCX until released; releasing happens under the
// worker lock whichever thread does it.
unsafe impl Send for HeldData {}

/// The destination of a rendezvous receive.
///
/// Invariant: while `status` is `PULLING`, UCX writes `buffer`'s first `len` bytes and nothing
/// else touches them; once it is not, only the deliverer does.
#[derive(Debug)]
pub(crate) struct Pull {
    buffer: UnsafeCell<AlignedVec<16>>,
    len: usize,
    status: AtomicI8,
}

// SAFETY: access to `buffer` is handed over through `status` (Release by the completion,
// Acquire by the deliverer), as the type invariant says.
unsafe impl Sync for Pull {}
// SAFETY: as for `Sync`.
unsafe impl Send for Pull {}

impl Pull {
    pub(crate) fn new(len: usize) -> Pull {
        let mut buffer = AlignedVec::<16>::with_capacity(len.max(1));
        buffer.clear();
        Pull {
            buffer: UnsafeCell::new(buffer),
            len,
            status: AtomicI8::new(PULLING),
        }
    }

    /// Where UCX writes the payload.
    pub(crate) fn target(&self) -> *mut u8 {
        // SAFETY: only the pointer is read (no reference to the vector's bytes is made).
        unsafe { (*self.buffer.get()).as_mut_ptr() }
    }

    /// Records the receive's completion status.
    pub(crate) fn complete(&self, status: i8) {
        self.status.store(status.min(0), Ordering::Release);
    }

    fn status(&self) -> i8 {
        self.status.load(Ordering::Acquire)
    }

    /// The received bytes.
    ///
    /// # Safety
    /// Only after `status()` returned a value other than `PULLING` with `0`, and by the one
    /// thread that took this pull out of its inbox.
    unsafe fn bytes(&self) -> &[u8] {
        // SAFETY: UCX finished writing `len` bytes (completion observed with Acquire); the
        // caller is the only one touching the buffer now.
        unsafe {
            let buffer = &mut *self.buffer.get();
            buffer.set_len(self.len);
            &buffer[..]
        }
    }
}

/// A message waiting for its turn.
#[derive(Debug)]
pub(crate) struct Arrival {
    pub(crate) header: Header,
    pub(crate) body: Body,
}

impl Arrival {
    fn ready(&self) -> bool {
        match &self.body {
            Body::Pulling(pull) => pull.status() != PULLING,
            _ => true,
        }
    }
}

#[derive(Debug)]
struct Arrivals {
    /// The sequence number of `slots[0]`.
    base: u32,
    slots: VecDeque<Option<Arrival>>,
}

#[derive(Debug)]
struct Delivery {
    chaos: Chaos,
}

/// The inbox of the messages of one sender.
#[derive(Debug)]
pub(crate) struct Inbox {
    from: usize,
    arrivals: Mutex<Arrivals>,
    delivery: spin::Mutex<Delivery>,
}

impl Inbox {
    pub(crate) fn new(here: usize, from: usize, chaos_seed: Option<u64>) -> Inbox {
        Inbox {
            from,
            arrivals: Mutex::new(Arrivals {
                base: 0,
                slots: VecDeque::new(),
            }),
            delivery: spin::Mutex::new(Delivery {
                chaos: Chaos::new(chaos_seed, here, from),
            }),
        }
    }

    /// Queues an arrived message in its sender's order; gives it back with the reason when its
    /// sequence number is impossible (a duplicate, or far ahead of the stream).
    pub(crate) fn insert(&self, arrival: Arrival) -> std::result::Result<(), (Arrival, String)> {
        let mut arrivals = self.lock();
        let ahead = arrival.header.seq.wrapping_sub(arrivals.base);
        if ahead >= WINDOW {
            let reason = format!(
                "sequence number {} is outside the window after {}",
                arrival.header.seq, arrivals.base
            );
            return Err((arrival, reason));
        }
        let index = ahead as usize;
        if arrivals.slots.len() <= index {
            arrivals.slots.resize_with(index + 1, || None);
        }
        if arrivals.slots[index].is_some() {
            let reason = format!("sequence number {} arrived twice", arrival.header.seq);
            return Err((arrival, reason));
        }
        arrivals.slots[index] = Some(arrival);
        Ok(())
    }

    /// Whether the next message in order is ready for delivery.
    pub(crate) fn has_ready(&self) -> bool {
        matches!(self.lock().slots.front(), Some(Some(arrival)) if arrival.ready())
    }

    /// Takes every queued message out (teardown).
    pub(crate) fn take_all(&self) -> Vec<Arrival> {
        self.lock().slots.drain(..).flatten().collect()
    }

    fn pop_ready(&self) -> Option<Arrival> {
        let mut arrivals = self.lock();
        if !matches!(arrivals.slots.front(), Some(Some(arrival)) if arrival.ready()) {
            return None;
        }
        arrivals.base = arrivals.base.wrapping_add(1);
        arrivals.slots.pop_front().flatten()
    }

    fn lock(&self) -> MutexGuard<'_, Arrivals> {
        // Arrivals are consistent at every unlock (no user code runs under this lock).
        self.arrivals
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Delivers this sender's ready messages in order, unless another thread is delivering
    /// them already: `deliver` runs the handler; `release` gives held UCX data back. Returns
    /// how many were delivered, or the first error (that message is discarded).
    pub(crate) fn drain<F, R>(&self, places: usize, deliver: &mut F, release: &R) -> Result<usize>
    where
        F: FnMut(Place, u16, &[u8]) -> Result<()>,
        R: Fn(HeldData),
    {
        let Some(mut delivery) = self.delivery.try_lock() else {
            return Ok(0);
        };
        if delivery.chaos.is_holding() {
            return Ok(0);
        }
        let mut delivered = 0;
        while delivered < BUDGET {
            let Some(arrival) = self.pop_ready() else {
                break;
            };
            delivered += 1;
            let result = self.deliver_one(places, arrival, deliver, release);
            let result = match result {
                Ok(result) => result,
                // The message is consumed: a handler that panicked never sees it again.
                Err(panic) => std::panic::resume_unwind(panic),
            };
            result?;
            if delivery.chaos.hold_after_delivery() {
                break;
            }
        }
        Ok(delivered)
    }

    fn deliver_one<F, R>(
        &self,
        places: usize,
        arrival: Arrival,
        deliver: &mut F,
        release: &R,
    ) -> std::thread::Result<Result<()>>
    where
        F: FnMut(Place, u16, &[u8]) -> Result<()>,
        R: Fn(HeldData),
    {
        let sender = Place::new(self.from);
        let Arrival { header, body } = arrival;
        let checked = self.check(places, &header);
        let outcome = match (&checked, &body) {
            (Err(_), _) => Ok(Ok(())),
            (Ok(()), Body::Held(held)) => {
                // SAFETY: UCX keeps held data readable until released below (HeldData's
                // invariant).
                let bytes = unsafe { std::slice::from_raw_parts(held.ptr.as_ptr(), held.len) };
                run(deliver, sender, header.handler, bytes)
            }
            (Ok(()), Body::Owned(bytes)) => run(deliver, sender, header.handler, bytes),
            (Ok(()), Body::Pulling(pull)) => match pull.status() {
                0 => {
                    // SAFETY: the pull completed (status 0, read with Acquire) and this thread
                    // took it out of the inbox: nothing else touches its buffer.
                    let bytes = unsafe { pull.bytes() };
                    run(deliver, sender, header.handler, bytes)
                }
                status => Ok(Err(super::status::error(
                    "ucp_am_recv_data_nbx",
                    ucx_sys::ucs_status_t(status),
                ))),
            },
        };
        if let Body::Held(held) = body {
            release(held);
        }
        match checked {
            Err(error) => Ok(Err(error)),
            Ok(()) => outcome,
        }
    }

    /// The checks the header of a message from this sender must pass.
    fn check(&self, places: usize, header: &Header) -> Result<()> {
        let sender = Place::new(self.from);
        if header.src as usize != self.from {
            return Err(if header.src as usize >= places {
                Error::PlaceOutOfRange {
                    ring: sender,
                    claimed: u64::from(header.src),
                    places,
                }
            } else {
                Error::Malformed {
                    from: sender,
                    reason: format!("it claims to come from place {}", header.src),
                }
            });
        }
        if header.kind != KIND_EAGER {
            return Err(Error::Malformed {
                from: sender,
                reason: format!(
                    "unknown record kind {} (the UCX provider sends every message as kind \
                     {KIND_EAGER}; UCX runs its own rendezvous)",
                    header.kind
                ),
            });
        }
        Ok(())
    }
}

/// Runs a handler, catching a panic so that the caller can consume the message first.
fn run<F: FnMut(Place, u16, &[u8]) -> Result<()>>(
    deliver: &mut F,
    from: Place,
    handler: u16,
    bytes: &[u8],
) -> std::thread::Result<Result<()>> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        deliver(from, handler, bytes)
    }))
}
