//! Progress, delivery, flush and sleep.

use std::ffi::c_void;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use ucx_sys as sys;

use super::inbox::HeldData;
use super::shared::Shared;
use super::status::{started, Started};
use super::UcxProvider;
use crate::{Place, Result};

/// `ucp_worker_progress` calls per `progress` at most (each handles a batch of events).
const PROGRESS_ROUNDS: usize = 8;

/// What a flush's completion records.
struct FlushDone {
    shared: *const Shared,
    to: usize,
    issued: u64,
}

impl UcxProvider {
    /// Runs UCX's progress (unless another thread is), then delivers arrived messages in each
    /// sender's order. Returns how many were delivered, or the first error (that message is
    /// discarded; everything else stays for the next call).
    ///
    /// UCX work done for peers without a message to deliver (serving their emulated puts,
    /// gets and atomics: UCX emulates RMA with active messages where a transport lacks it)
    /// counts as one delivery: it tells an idle waiter that peers are using this place, so
    /// that it keeps polling instead of sleeping between their operations.
    pub(crate) fn progress<F: FnMut(Place, u16, &[u8]) -> Result<()>>(
        &self,
        deliver: &mut F,
    ) -> Result<usize> {
        let events = self.drive();
        if let Some(error) = self.shared.pop_stray() {
            return Err(error);
        }
        let places = self.places();
        let start = self.next_inbox.load(Ordering::Relaxed) % places;
        self.next_inbox.store(start + 1, Ordering::Relaxed);
        let release = |held: HeldData| self.release(held);
        let mut delivered = 0;
        for i in 0..places {
            let from = (start + i) % places;
            delivered += self.shared.inboxes[from].drain(places, deliver, &release)?;
        }
        Ok(if delivered == 0 && events > 0 {
            1
        } else {
            delivered
        })
    }

    /// Runs `ucp_worker_progress` until it finds nothing (a few rounds at most), unless another
    /// thread holds the worker; how many events it handled.
    fn drive(&self) -> u32 {
        let mut events = 0;
        if let Ok(state) = self.worker.try_lock() {
            for _ in 0..PROGRESS_ROUNDS {
                match state.worker.progress() {
                    0 => break,
                    n => events += n,
                }
            }
        }
        events
    }

    fn release(&self, held: HeldData) {
        let state = self.lock_worker();
        // SAFETY: data UCX lent to this worker, released once (HeldData's invariant), under
        // the worker lock.
        unsafe { sys::ucp_am_data_release(state.worker.raw(), held.ptr.as_ptr().cast()) };
    }

    /// Whether everything sent to `to` has left this place's buffers and reached `to`'s
    /// worker: no send in flight, and an endpoint flush completed after the last one.
    /// Starts that flush when needed (the caller polls).
    pub(crate) fn is_drained_to(&self, to: usize) -> bool {
        let shared = &*self.shared;
        if shared.in_flight[to].load(Ordering::Acquire) > 0 {
            self.drive();
            return false;
        }
        let issued = shared.issued[to].load(Ordering::Acquire);
        if shared.flushed[to].load(Ordering::Acquire) >= issued {
            return true;
        }
        // No flush towards a place known dead: it could only fail (with an error line of UCX's
        // own where the endpoint has no peer-failure handling); the caller sees the death.
        if self.is_dead(to) {
            return false;
        }
        if shared.flushing[to].swap(true, Ordering::AcqRel) {
            self.drive();
            return false;
        }
        let done = Box::into_raw(Box::new(FlushDone {
            shared: Arc::as_ptr(&self.shared),
            to,
            issued,
        }));
        let params = sys::ucp_request_param_t {
            op_attr_mask: sys::UCP_OP_ATTR_FIELD_CALLBACK | sys::UCP_OP_ATTR_FIELD_USER_DATA,
            cb: sys::ucp_request_param_t__bindgen_ty_1 {
                send: Some(flush_done),
            },
            user_data: done.cast(),
            ..Default::default()
        };
        let state = self.lock_worker();
        let result = state.endpoint(to).and_then(|ep| {
            // SAFETY: live endpoint under the worker lock; `done` is handed to the callback.
            started("ucp_ep_flush_nbx", unsafe {
                sys::ucp_ep_flush_nbx(ep, &params)
            })
        });
        drop(state);
        match result {
            Ok(Started::Pending(_)) => {}
            Ok(Started::Done) => {
                // SAFETY: no callback will come; the box is ours again.
                drop(unsafe { Box::from_raw(done) });
                shared.flushed[to].fetch_max(issued, Ordering::AcqRel);
                shared.flushing[to].store(false, Ordering::Release);
            }
            Err(error) => {
                // SAFETY: as above.
                drop(unsafe { Box::from_raw(done) });
                tracing::debug!(%error, to, "endpoint flush failed");
                shared.mark_failed(to);
                shared.flushing[to].store(false, Ordering::Release);
            }
        }
        false
    }

    /// Sleeps until UCX has events (an arrival, a completion, `ucp_worker_signal`) or
    /// `timeout`; not at all if `ready()` holds or a message waits for delivery.
    pub(crate) fn park(&self, timeout: Duration, ready: &mut dyn FnMut() -> bool) {
        {
            let state = self.lock_worker();
            while state.worker.progress() > 0 {}
            match state.worker.arm() {
                Ok(true) => {}
                Ok(false) => return,
                Err(error) => {
                    tracing::debug!(%error, "arming the UCX worker failed");
                    drop(state);
                    std::thread::sleep(timeout.min(Duration::from_micros(100)));
                    return;
                }
            }
        }
        if self.has_incoming() || ready() {
            return;
        }
        let mut fd = libc::pollfd {
            fd: self.efd,
            events: libc::POLLIN,
            revents: 0,
        };
        let millis = timeout.as_millis().clamp(1, i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd for the duration of the call; the descriptor is the
        // worker's, open while the provider lives.
        unsafe { libc::poll(&mut fd, 1, millis) };
    }

    /// Whether some inbox has a message ready for delivery.
    fn has_incoming(&self) -> bool {
        self.shared.inboxes.iter().any(|inbox| inbox.has_ready())
    }
}

/// Completion of an endpoint flush.
unsafe extern "C" fn flush_done(
    request: *mut c_void,
    status: sys::ucs_status_t,
    user_data: *mut c_void,
) {
    // SAFETY: the `FlushDone` boxed by `is_drained_to`, given back once, here.
    let done = unsafe { Box::from_raw(user_data.cast::<FlushDone>()) };
    // SAFETY: `Shared` outlives the worker, inside whose progress this runs.
    let shared = unsafe { &*done.shared };
    if status == sys::ucs_status_t::UCS_OK {
        shared.flushed[done.to].fetch_max(done.issued, Ordering::AcqRel);
    } else {
        shared.mark_failed(done.to);
    }
    shared.flushing[done.to].store(false, Ordering::Release);
    // SAFETY: completed; freed once, here.
    unsafe { sys::ucp_request_free(request) };
}
