//! The UCX provider (cargo feature `ucx`, `ATOLL_PROVIDER=ucx`).
//!
//! - One UCP context and worker per place ([`context`]); endpoints to every place, this one
//!   included, from worker addresses exchanged through the bootstrap ([`endpoint`]), with
//!   peer-failure handling towards other hosts only (UCX's shared-memory transports have none).
//!   With `ATOLL_LOG=atoll_comm::ucx=debug`, one line per endpoint says which transports UCX
//!   chose for it ([`lanes`]).
//! - Registered memory: one anonymous mapping per place registered with `ucp_mem_map`
//!   ([`memory`]); regions and message buffers are carved from it by the shared
//!   [`HeapAllocator`]; the packed remote key goes to every place through the bootstrap and is
//!   unpacked on that place's endpoint.
//! - Active messages ([`am`]): the payload is serialized once into a buffer of the registered
//!   heap and sent with `ucp_am_send_nbx` (UCX picks eager or its own rendezvous); the buffer
//!   belongs to the send until UCX completes it. The receive callback only queues
//!   ([`inbox`]); handlers run after `ucp_worker_progress` returns, in each sender's order
//!   (sequence numbers restore it: UCX does not promise it across protocols and lanes).
//! - RMA ([`rma`]): `ucp_put_nbx`, `ucp_get_nbx`, `ucp_atomic_op_nbx`, waited for by the
//!   caller with progress; a put is followed by an endpoint flush, so that it has completed
//!   at the target when it returns.
//! - Progress and sleep ([`progress`]): `ucp_worker_progress`; an idle place arms the worker
//!   and polls its event descriptor; `Comm::notify` is `ucp_worker_signal`.
//!
//! # Thread safety
//! The worker runs in `UCS_THREAD_MODE_SERIALIZED`: every call on it (and on its endpoints,
//! keys and requests) happens under one mutex, `worker`; UCX's callbacks run inside
//! `ucp_worker_progress` and so under it too, and take only leaf locks (an inbox's arrivals,
//! the heap allocator). `ucp_worker_signal` is called without it (UCX allows that). A
//! destination's producer lock orders its sends (sequence numbers are taken under it) and is
//! taken before the worker lock, never after.

mod am;
mod context;
mod endpoint;
mod inbox;
mod lanes;
mod memory;
mod progress;
mod rma;
mod shared;
mod status;

use std::any::Any;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, MutexGuard};

use ucx_sys as sys;

use crate::bootstrap::{Bootstrap, FailureProbe};
use crate::config::Config;
use crate::heap::HeapAllocator;
use crate::rma::Region;
use crate::{Error, Place, Result};

use context::{Context, Worker};
use endpoint::{ErrorArg, Reach};
use memory::{Mapping, PeerMemory};
use shared::Shared;
use status::{check, Started};

/// The sending side of one destination: its next sequence number, behind its lock.
#[derive(Debug)]
pub(crate) struct Producer {
    to: usize,
    next_seq: u32,
}

/// One place as this place reaches it.
#[derive(Debug)]
struct Peer {
    ep: sys::ucp_ep_h,
    memory: Option<PeerMemory>,
}

/// Everything used under the worker lock.
///
/// Invariant: every endpoint in `peers` is live until taken out and closed (in `drop`, or
/// when its peer failed); every key was unpacked on its peer's endpoint and is destroyed
/// before that endpoint is closed.
#[derive(Debug)]
pub(crate) struct WorkerState {
    worker: Worker,
    peers: Vec<Option<Peer>>,
    /// Places UCX reported failed (through `shared`) or the launcher reported dead
    /// (`failures`): their endpoints are closed at once at teardown, not flushed (a flush
    /// towards a dead peer without peer-failure handling ends in a UCX error line).
    shared: Arc<Shared>,
    failures: FailureProbe,
}

// SAFETY: the raw endpoint and key handles are only used under the worker lock, from
// whichever thread holds it (the worker is in serialized mode).
unsafe impl Send for WorkerState {}

impl WorkerState {
    /// The endpoint to `to`, unless it was closed after a failure.
    fn endpoint(&self, to: usize) -> Result<sys::ucp_ep_h> {
        match self.peers.get(to) {
            Some(Some(peer)) => Ok(peer.ep),
            _ => Err(Error::PlaceFailed(Place::new(to))),
        }
    }

    /// The endpoint to `to` and its unpacked heap key.
    fn remote(&self, to: usize) -> Result<(sys::ucp_ep_h, &PeerMemory)> {
        match self.peers.get(to) {
            Some(Some(Peer {
                ep,
                memory: Some(memory),
            })) => Ok((*ep, memory)),
            _ => Err(Error::PlaceFailed(Place::new(to))),
        }
    }
}

impl Drop for WorkerState {
    fn drop(&mut self) {
        let mut closing = Vec::new();
        for (place, slot) in self.peers.iter_mut().enumerate() {
            let Some(peer) = slot.take() else {
                continue;
            };
            if let Some(memory) = peer.memory {
                // SAFETY: unpacked on `peer.ep`, which is still open; destroyed once.
                unsafe { sys::ucp_rkey_destroy(memory.rkey) };
            }
            let dead = self.shared.is_failed(place) || self.failures.is_failed(Place::new(place));
            match endpoint::close(peer.ep, dead) {
                Ok(Started::Pending(request)) => closing.push(request),
                Ok(Started::Done) => {}
                Err(error) => tracing::debug!(%error, "closing a UCX endpoint"),
            }
        }
        // Flush-closing needs the peers to answer; a peer that already left makes UCX fail the
        // request, one that hangs is given up on after the deadline (the worker's destruction
        // then releases what is left).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !closing.is_empty() && std::time::Instant::now() < deadline {
            self.worker.progress();
            closing.retain(|&request| {
                // SAFETY: a live close request of this worker.
                let status = unsafe { sys::ucp_request_check_status(request) };
                if status == sys::ucs_status_t::UCS_INPROGRESS {
                    return true;
                }
                // SAFETY: completed; freed once.
                unsafe { self.worker.free_request(request) };
                false
            });
        }
    }
}

/// The UCX provider of one place.
#[derive(Debug)]
pub(crate) struct UcxProvider {
    here: usize,
    eager_max: usize,
    /// Declared first: dropped (endpoints closed, worker destroyed) before the state its
    /// callbacks reach.
    worker: Mutex<WorkerState>,
    /// For `ucp_worker_signal`, which needs no lock.
    signal_worker: sys::ucp_worker_h,
    efd: i32,
    producers: Vec<Mutex<Producer>>,
    shared: Arc<Shared>,
    mapping: Arc<Mapping>,
    next_inbox: AtomicUsize,
    /// The endpoints' error-callback arguments, alive as long as the endpoints.
    _error_args: Box<[ErrorArg]>,
    /// Places the launcher reported dead.
    failures: FailureProbe,
}

// SAFETY: `signal_worker` is only passed to `ucp_worker_signal`, which UCX allows from any
// thread; everything else is behind locks or atomics (see the module docs).
unsafe impl Send for UcxProvider {}
// SAFETY: as for `Send`.
unsafe impl Sync for UcxProvider {}

impl UcxProvider {
    /// Creates the context, worker and registered heap, and connects to every place.
    pub(crate) fn new(bootstrap: &Bootstrap, config: &Config) -> Result<UcxProvider> {
        let (here, places) = (bootstrap.rank(), bootstrap.size());
        let context = Context::new()?;
        let worker = Worker::new(&context)?;
        let mapping = Arc::new(Mapping::new(&context, config.shm_heap_bytes)?);
        let heap = Arc::new(HeapAllocator::new(mapping.len()));
        let shared = Arc::new(Shared::new(
            here,
            places,
            worker.raw(),
            heap,
            config.chaos_seed,
        ));
        let handler = sys::ucp_am_handler_param_t {
            field_mask: u64::from(
                sys::UCP_AM_HANDLER_PARAM_FIELD_ID
                    | sys::UCP_AM_HANDLER_PARAM_FIELD_FLAGS
                    | sys::UCP_AM_HANDLER_PARAM_FIELD_CB
                    | sys::UCP_AM_HANDLER_PARAM_FIELD_ARG,
            ),
            id: am::AM_ID,
            flags: sys::UCP_AM_FLAG_WHOLE_MSG | sys::UCP_AM_FLAG_PERSISTENT_DATA,
            cb: Some(am::on_message),
            arg: Arc::as_ptr(&shared).cast_mut().cast(),
        };
        // SAFETY: live worker, not yet shared with other threads; `arg` points to `Shared`,
        // which outlives the worker (field order of the provider).
        check("ucp_worker_set_am_recv_handler", unsafe {
            sys::ucp_worker_set_am_recv_handler(worker.raw(), &handler)
        })?;
        let signal_worker = worker.raw();
        let efd = worker.efd();
        let addresses = bootstrap.allgather(&worker.address()?)?;
        // A boxed slice: its elements never move, so endpoints can point at them.
        let mut error_args: Box<[ErrorArg]> = (0..places)
            .map(|place| ErrorArg {
                shared: Arc::as_ptr(&shared),
                place,
            })
            .collect();
        let failures = bootstrap.failure_probe();
        let mut state = WorkerState {
            worker,
            peers: Vec::with_capacity(places),
            shared: Arc::clone(&shared),
            failures: failures.clone(),
        };
        let host_of = bootstrap.host_of_places();
        let hosts = bootstrap.hosts();
        let host_name = |place: usize| {
            host_of
                .get(place)
                .and_then(|&h| hosts.get(h))
                .map_or("?", String::as_str)
        };
        // Other places first, this place's own endpoint last.
        let mut peer_failure = true;
        state.peers.resize_with(places, || None);
        for place in (0..places).filter(|&p| p != here).chain([here]) {
            let reach = if place == here {
                Reach::Itself
            } else if host_of.get(place).is_some() && host_of.get(place) == host_of.get(here) {
                Reach::SameHost
            } else {
                Reach::OtherHost
            };
            let arg: *mut ErrorArg = &mut error_args[place];
            let address = addresses.get(place).ok_or_else(|| {
                Error::bootstrap(format!("the address exchange lacks place {place}"))
            })?;
            let (ep, handled) =
                endpoint::create(&state.worker, place, reach, address, arg, &mut peer_failure)?;
            if tracing::enabled!(tracing::Level::DEBUG) {
                tracing::debug!(
                    place,
                    host = %host_name(place),
                    reach = ?reach,
                    peer_failure = handled,
                    lanes = %lanes::describe(ep),
                    "UCX endpoint"
                );
            }
            state.peers[place] = Some(Peer { ep, memory: None });
        }
        let blobs = bootstrap.allgather(&memory::encode(&mapping)?)?;
        for (place, blob) in blobs.iter().enumerate() {
            let ep = state.endpoint(place)?;
            let memory = memory::decode(place, blob, ep, mapping.len())?;
            if let Some(Some(peer)) = state.peers.get_mut(place) {
                peer.memory = Some(memory);
            }
        }
        Ok(UcxProvider {
            here,
            eager_max: config.eager_max,
            worker: Mutex::new(state),
            signal_worker,
            efd,
            producers: (0..places)
                .map(|to| Mutex::new(Producer { to, next_seq: 0 }))
                .collect(),
            shared,
            mapping,
            next_inbox: AtomicUsize::new(0),
            _error_args: error_args,
            failures,
        })
    }

    fn places(&self) -> usize {
        self.shared.places
    }

    fn lock_worker(&self) -> MutexGuard<'_, WorkerState> {
        // A panic under this lock happens in Atoll's own code between UCX calls, each of which
        // leaves the worker consistent: keep going.
        self.worker
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes the producer lock of `to`, for a batch of sends.
    pub(crate) fn lock_producer(&self, to: usize) -> MutexGuard<'_, Producer> {
        self.producers[to]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Wakes this place's sleepers when `to` is this place (`Comm::notify`); a message to
    /// another place wakes it by itself (its armed worker sees the arrival).
    pub(crate) fn ring_doorbell(&self, to: usize) {
        if to == self.here {
            // SAFETY: `signal_worker` is the live worker (destroyed only when the provider
            // is); `ucp_worker_signal` is documented as safe from any thread.
            let status = unsafe { sys::ucp_worker_signal(self.signal_worker) };
            if status != sys::ucs_status_t::UCS_OK {
                tracing::debug!(code = status.0, "ucp_worker_signal failed");
            }
        }
    }

    /// Whether the endpoint to `place` reported its peer failed.
    pub(crate) fn is_failed(&self, place: usize) -> bool {
        self.shared.is_failed(place)
    }

    /// Whether `place` is known dead, by UCX or by the launcher.
    fn is_dead(&self, place: usize) -> bool {
        self.shared.is_failed(place) || self.failures.is_failed(Place::new(place))
    }

    /// Allocates `len` zeroed bytes of the registered heap.
    pub(crate) fn alloc_region(&self, len: usize) -> Result<Region> {
        let mapping: Arc<dyn Any + Send + Sync> = self.mapping.clone();
        // SAFETY: this heap's area starts at the mapping's base; the region keeps the mapping
        // alive.
        unsafe {
            Region::alloc(
                Place::new(self.here),
                self.mapping.base(),
                len,
                &self.shared.heap,
                mapping,
            )
        }
    }
}

impl Drop for UcxProvider {
    fn drop(&mut self) {
        // Give back the data UCX lent to messages never delivered, while the worker lives.
        let worker = self.lock_worker();
        for inbox in &self.shared.inboxes {
            for arrival in inbox.take_all() {
                if let inbox::Body::Held(held) = arrival.body {
                    // SAFETY: data UCX lent to this worker and not yet released (HeldData's
                    // invariant); under the worker lock.
                    unsafe {
                        sys::ucp_am_data_release(worker.worker.raw(), held.ptr.as_ptr().cast())
                    };
                }
            }
        }
    }
}
