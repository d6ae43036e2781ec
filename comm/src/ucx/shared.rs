//! The state UCX's callbacks reach through their `arg` pointers: per-sender inboxes, failed
//! peers, sends in flight, flush progress, and errors found before a message could be queued.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use ucx_sys as sys;

use super::inbox::Inbox;
use crate::heap::HeapAllocator;
use crate::Error;

/// Errors kept from callbacks at most (later ones are only logged).
const MAX_STRAY: usize = 1024;

/// Shared between the provider and UCX's callbacks (which run inside `ucp_worker_progress`,
/// under the worker lock). Lives in an `Arc` that outlives the worker.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) here: usize,
    pub(crate) places: usize,
    /// The worker, for `ucp_am_recv_data_nbx` inside the receive callback.
    pub(crate) worker: sys::ucp_worker_h,
    pub(crate) inboxes: Vec<Inbox>,
    pub(crate) heap: Arc<HeapAllocator>,
    /// Peers whose endpoint reported an error.
    failed: Vec<AtomicBool>,
    /// Active messages handed to UCX per destination, and how many of them a completed
    /// endpoint flush covers.
    pub(crate) issued: Vec<AtomicU64>,
    pub(crate) flushed: Vec<AtomicU64>,
    pub(crate) flushing: Vec<AtomicBool>,
    /// Sends per destination whose request has not completed (their buffers are UCX's).
    pub(crate) in_flight: Vec<AtomicUsize>,
    in_flight_total: AtomicUsize,
    stray: Mutex<VecDeque<Error>>,
}

// SAFETY: `worker` is only used by callbacks, which run under the provider's worker lock;
// everything else is atomics and mutexes.
unsafe impl Send for Shared {}
// SAFETY: as for `Send`.
unsafe impl Sync for Shared {}

impl Shared {
    pub(crate) fn new(
        here: usize,
        places: usize,
        worker: sys::ucp_worker_h,
        heap: Arc<HeapAllocator>,
        chaos_seed: Option<u64>,
    ) -> Shared {
        let atomics = |n| (0..n).map(|_| AtomicU64::new(0)).collect::<Vec<_>>();
        Shared {
            here,
            places,
            worker,
            inboxes: (0..places)
                .map(|from| Inbox::new(here, from, chaos_seed))
                .collect(),
            heap,
            failed: (0..places).map(|_| AtomicBool::new(false)).collect(),
            issued: atomics(places),
            flushed: atomics(places),
            flushing: (0..places).map(|_| AtomicBool::new(false)).collect(),
            in_flight: (0..places).map(|_| AtomicUsize::new(0)).collect(),
            in_flight_total: AtomicUsize::new(0),
            stray: Mutex::new(VecDeque::new()),
        }
    }

    pub(crate) fn mark_failed(&self, place: usize) {
        if let Some(flag) = self.failed.get(place) {
            flag.store(true, Ordering::Release);
        }
    }

    pub(crate) fn is_failed(&self, place: usize) -> bool {
        self.failed
            .get(place)
            .is_some_and(|flag| flag.load(Ordering::Acquire))
    }

    pub(crate) fn send_started(&self, to: usize) {
        self.in_flight[to].fetch_add(1, Ordering::Relaxed);
        self.in_flight_total.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn send_completed(&self, to: usize) {
        self.in_flight[to].fetch_sub(1, Ordering::Release);
        self.in_flight_total.fetch_sub(1, Ordering::Relaxed);
    }

    /// Whether some send still holds registered memory.
    pub(crate) fn sends_in_flight(&self) -> bool {
        self.in_flight_total.load(Ordering::Relaxed) > 0
    }

    /// Keeps an error found by a callback for the next `progress`.
    pub(crate) fn push_stray(&self, error: Error) {
        tracing::debug!(%error, "discarded an active message");
        let mut stray = self.stray();
        if stray.len() < MAX_STRAY {
            stray.push_back(error);
        }
    }

    pub(crate) fn pop_stray(&self) -> Option<Error> {
        self.stray().pop_front()
    }

    fn stray(&self) -> MutexGuard<'_, VecDeque<Error>> {
        self.stray
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
