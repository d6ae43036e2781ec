//! The libfabric provider (`ATOLL_PROVIDER=ofi`, cargo feature `ofi`).
//!
//! A reliable-datagram endpoint (`FI_EP_RDM`) per place, of the libfabric provider that
//! `FI_PROVIDER` names (or the first that offers what Atoll needs), with one completion queue
//! and a table address vector in which place `i` is `fi_addr_t` `i`; and, when that provider
//! is not `shm` and other places share the host, a second endpoint of libfabric's `shm`
//! provider for them ([`routes`]). Addresses and memory keys travel through the bootstrap's
//! all-gather.
//!
//! - Memory ([`memory`]): one anonymous mapping per place (`ATOLL_SHM_HEAP_MB`), registered
//!   once with each endpoint. At start it is carved into receive buffers (pre-posted) and send buffers, one eager
//!   record each; the rest serves regions, rendezvous payloads and RMA staging buffers.
//! - Active messages ([`send`], [`receive`]): a record (16-byte header, then the payload) is
//!   serialized once, straight into a registered send buffer, and sent with `fi_send`. A
//!   payload that outgrows it spills into registered memory and goes by rendezvous: the record
//!   carries a descriptor, the receiver `fi_read`s the payload and sends back a "pulled"
//!   record, which frees the sender's buffer. Order per (sender, receiver) is the provider's
//!   send-after-send order (`FI_ORDER_SAS`, required at `fi_getinfo`) plus delivery from one
//!   queue per sender, in which a rendezvous record is pulled before anything behind it runs.
//! - Completions ([`completion`]): `fi_cq_read` of each endpoint's queue in turn, under a
//!   lock that is only ever try-locked; processing a completion never runs a handler: arrived
//!   records are queued per sender and delivered by `progress` after the queue is left, so a
//!   handler may send and progress.
//! - RMA and atomics ([`rma`]): `fi_write` with `FI_DELIVERY_COMPLETE`, `fi_read`,
//!   `fi_fetch_atomic` (`FI_SUM`) and `fi_compare_atomic` (`FI_CSWAP`) on `u64`, staged through
//!   registered buffers, waited for by polling the completion queue. A provider without
//!   `u64` atomics is refused at start with an error naming it (every provider Debian ships
//!   with `FI_EP_RDM` has them: shm, tcp;ofi_rxm, sockets).
//! - Sleep: where the provider gives the completion queue a file descriptor (`FI_WAIT_FD`:
//!   tcp;ofi_rxm does), a parked waiter checks `fi_trywait` and sleeps in `ppoll` on it and on
//!   an eventfd that [`crate::Comm::notify`] writes, so an arriving message wakes it. Where it
//!   gives none (shm in libfabric 1.17), the waiter naps on a condition variable for at most
//!   100 µs (nothing from another process can wake it then); either way 8 places on 2 cores
//!   make steady progress.
//! - A buffer lent to libfabric belongs to its operation until the completion: a wait given
//!   up because the peer died leaks the buffer instead of reusing it.

mod completion;
mod fabric;
mod memory;
mod receive;
mod rma;
mod routes;
mod send;

use std::collections::VecDeque;
use std::ffi::c_void;
use std::ops::Range;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, AtomicUsize};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use atoll_ofi_sys as sys;

use crate::bootstrap::{Bootstrap, FailureProbe};
use crate::chaos::Chaos;
use crate::config::Config;
use crate::heap::{HeapAllocator, HEAP_ALIGN};
use crate::{Error, Place, Result};

use fabric::Endpoint;
use memory::Mapping;
use routes::{Routes, Via};
pub(crate) use send::Producer;

/// Bytes of a record header: payload length (u32), claimed sender (u32), handler (u16), kind
/// (u8), and padding, so that the payload starts 16-aligned.
const HEADER: usize = 16;
/// Record kinds (1 to 3 as in the shm rings, so that injected records mean the same).
const KIND_EAGER: u8 = 1;
const KIND_RENDEZVOUS: u8 = 2;
const KIND_PAD: u8 = 3;
/// "Your rendezvous buffer at this offset is pulled": payload 8 bytes, the offset.
const KIND_PULLED: u8 = 4;
/// Bytes of a rendezvous descriptor: offset and length of the payload in the sender's memory.
const DESCRIPTOR: usize = 16;
/// Concurrent RMA operations (each waits for its completion).
const RMA_OPS: usize = 64;
/// Records delivered from one sender per visit before `progress` moves on.
const INBOX_BUDGET: usize = 64;

/// One operation context per buffer or RMA slot: libfabric may use the first bytes
/// (`FI_CONTEXT`/`FI_CONTEXT2` mode) until the completion; the completion names it.
#[repr(C)]
#[derive(Default)]
struct OpContext {
    fi: sys::fi_context2,
}

// SAFETY: Atoll never reads or writes a context's bytes; only libfabric does, between posting
// an operation and its completion, under the thread safety of the FI_THREAD_SAFE domain. The
// raw pointers inside are libfabric's scratch space, not references Rust follows.
unsafe impl Send for OpContext {}
// SAFETY: as for `Send`.
unsafe impl Sync for OpContext {}

/// A record that arrived in a receive buffer and waits for delivery.
#[derive(Debug, Clone, Copy)]
struct Arrived {
    buffer: u32,
    len: usize,
}

/// One sender's arrived records, in order, and its delivery state.
#[derive(Debug)]
struct Inbox {
    queue: spin::Mutex<VecDeque<Arrived>>,
    waiting: AtomicUsize,
    /// Held while delivering (only try-locked: a nested `progress` skips this sender).
    delivery: spin::Mutex<Delivery>,
}

#[derive(Debug)]
struct Delivery {
    chaos: Chaos,
}

/// State of an RMA slot.
const OP_FREE: u32 = 0;
const OP_PENDING: u32 = 1;
const OP_DONE: u32 = 2;
const OP_FAILED: u32 = 3;

/// The libfabric provider of one place.
///
/// Field order is drop order: the endpoints (which close every libfabric object) go before
/// the contexts and memory libfabric may still touch until they are closed.
pub(crate) struct OfiProvider {
    routes: Routes,
    contexts: Box<[OpContext]>,
    mapping: Arc<Mapping>,
    heap: Arc<HeapAllocator>,
    here: usize,
    places: usize,
    eager_max: usize,
    /// Bytes of one receive or send buffer (header + eager payload, 64-aligned).
    buffer_bytes: usize,
    recv_base: usize,
    recv_count: usize,
    /// Receive buffers below this index are posted to the network endpoint, the others to
    /// the shm endpoint.
    recv_network: usize,
    send_base: usize,
    send_count: usize,
    /// Largest single RMA transfer.
    max_transfer: usize,
    free_sends: Mutex<Vec<u32>>,
    send_dest: Box<[AtomicUsize]>,
    /// Sends posted to each place and not yet completed.
    inflight: Box<[AtomicUsize]>,
    producers: Box<[Mutex<Producer>]>,
    backlog_pending: AtomicUsize,
    /// Rendezvous buffers lent to each place, waiting for its "pulled" record.
    rendezvous: Mutex<Vec<(usize, Range<usize>)>>,
    rendezvous_to: Box<[AtomicUsize]>,
    inboxes: Box<[Inbox]>,
    next_inbox: AtomicUsize,
    /// Errors not tied to a sender's stream (a failed receive, a failed send), reported by
    /// the next `progress`.
    stray: Mutex<VecDeque<Error>>,
    /// The name of this place's libfabric shm region, when it has a shm endpoint.
    shm_region: Option<std::ffi::CString>,
    /// Receive buffers that could not be re-posted yet.
    unposted: Mutex<Vec<u32>>,
    cq: Mutex<()>,
    op_state: Box<[AtomicU32]>,
    op_error: Box<[AtomicI32]>,
    free_ops: Mutex<Vec<u32>>,
    failures: FailureProbe,
    doorbell: Mutex<u64>,
    wake: Condvar,
    /// Written by [`crate::Comm::notify`], so that a sleeper polling the completion queue's
    /// descriptor wakes.
    notifier: Notifier,
    /// Counts completions (a cheap "anything happened" for waiters).
    completions: AtomicU64,
}

impl std::fmt::Debug for OfiProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OfiProvider")
            .field("here", &self.here)
            .field("places", &self.places)
            .field("provider", &self.routes.describe())
            .finish_non_exhaustive()
    }
}

impl OfiProvider {
    /// Opens the endpoint, registers this place's memory, exchanges addresses and keys with
    /// every place, and posts the receive buffers.
    pub(crate) fn new(bootstrap: &Bootstrap, config: &Config) -> Result<OfiProvider> {
        let (here, places) = (bootstrap.rank(), bootstrap.size());
        let shm_name =
            crate::shm::segment_names::segment_name(bootstrap.job_id(), &format!("ofi{here}"));
        let mapping = Arc::new(Mapping::new(config.shm_heap_bytes)?);
        let routes = Routes::establish(bootstrap, &mapping, shm_name.trim_start_matches('/'))?;
        let provider_shm_region = routes
            .uses_shm()
            .then(|| std::ffi::CString::new(shm_name.as_str()).ok())
            .flatten();

        let heap = Arc::new(HeapAllocator::new(mapping.len()));
        let buffer_bytes = (HEADER + config.eager_max).next_multiple_of(HEAP_ALIGN);
        // Receive buffers for each endpoint that some place sends to.
        let buffers_for = |peers: usize| match peers {
            0 => 0,
            _ => (32 * peers).clamp(256, 1024),
        };
        let (network_peers, shm_peers) = routes.peer_counts();
        let recv_network = buffers_for(network_peers);
        let recv_count = recv_network + buffers_for(shm_peers);
        let send_count = 256;
        let carve = |count: usize| {
            heap.alloc(count * buffer_bytes)
                .map(|range| range.start)
                .map_err(|available| Error::OutOfRegisteredMemory {
                    here: Place::new(here),
                    requested: count * buffer_bytes,
                    available,
                })
        };
        let recv_base = carve(recv_count)?;
        let send_base = carve(send_count)?;
        let contexts: Box<[OpContext]> = (0..recv_count + send_count + RMA_OPS)
            .map(|_| OpContext::default())
            .collect();
        let max_transfer = routes.max_msg_size().clamp(4096, 4 << 20);
        let provider = OfiProvider {
            routes,
            contexts,
            mapping,
            heap,
            here,
            places,
            eager_max: config.eager_max,
            buffer_bytes,
            recv_base,
            recv_count,
            recv_network,
            send_base,
            send_count,
            max_transfer,
            free_sends: Mutex::new((0..send_count as u32).rev().collect()),
            send_dest: (0..send_count).map(|_| AtomicUsize::new(0)).collect(),
            inflight: (0..places).map(|_| AtomicUsize::new(0)).collect(),
            producers: (0..places)
                .map(|to| Mutex::new(Producer::new(to)))
                .collect(),
            backlog_pending: AtomicUsize::new(0),
            rendezvous: Mutex::new(Vec::new()),
            rendezvous_to: (0..places).map(|_| AtomicUsize::new(0)).collect(),
            inboxes: (0..places)
                .map(|from| Inbox {
                    queue: spin::Mutex::new(VecDeque::new()),
                    waiting: AtomicUsize::new(0),
                    delivery: spin::Mutex::new(Delivery {
                        chaos: Chaos::new(config.chaos_seed, here, from),
                    }),
                })
                .collect(),
            next_inbox: AtomicUsize::new(0),
            stray: Mutex::new(VecDeque::new()),
            unposted: Mutex::new(Vec::new()),
            shm_region: provider_shm_region,
            cq: Mutex::new(()),
            op_state: (0..RMA_OPS).map(|_| AtomicU32::new(OP_FREE)).collect(),
            op_error: (0..RMA_OPS).map(|_| AtomicI32::new(0)).collect(),
            free_ops: Mutex::new((0..RMA_OPS as u32).rev().collect()),
            failures: bootstrap.failure_probe(),
            doorbell: Mutex::new(0),
            wake: Condvar::new(),
            notifier: Notifier::new()?,
            completions: AtomicU64::new(0),
        };
        for buffer in 0..recv_count as u32 {
            provider.post_recv(buffer)?;
        }
        // Nobody sends before every place has posted its receive buffers.
        bootstrap.barrier()?;
        tracing::debug!(
            here,
            provider = %provider.routes.describe(),
            "ofi endpoints ready"
        );
        Ok(provider)
    }

    /// The address of `offset` in this place's registered memory.
    fn at(&self, offset: usize) -> *mut u8 {
        debug_assert!(offset <= self.mapping.len());
        // SAFETY: callers pass offsets inside the mapping (heap ranges, buffer offsets).
        unsafe { self.mapping.base().add(offset) }
    }

    fn context(&self, id: usize) -> *mut c_void {
        std::ptr::from_ref(&self.contexts[id]).cast_mut().cast()
    }

    /// The id of the operation context `ptr` points at, if it is one of ours.
    fn context_id(&self, ptr: *mut c_void) -> Option<usize> {
        let base = self.contexts.as_ptr() as usize;
        let offset = (ptr as usize).checked_sub(base)?;
        let size = size_of::<OpContext>();
        (offset % size == 0 && offset / size < self.contexts.len()).then_some(offset / size)
    }

    fn recv_buffer(&self, buffer: u32) -> *mut u8 {
        self.at(self.recv_base + buffer as usize * self.buffer_bytes)
    }

    fn send_buffer(&self, slot: u32) -> *mut u8 {
        self.at(self.send_base + slot as usize * self.buffer_bytes)
    }

    /// The endpoint receive buffer `buffer` is posted to.
    fn receiving_endpoint(&self, buffer: u32) -> &Endpoint {
        self.routes
            .endpoint(if (buffer as usize) < self.recv_network {
                Via::Network
            } else {
                Via::SharedMemory
            })
    }

    fn post_recv(&self, buffer: u32) -> Result<()> {
        let context = self.context(buffer as usize);
        // SAFETY: the buffer is registered memory reserved for receive buffer `buffer`, not
        // in use (it was just delivered or never posted); its context is ours alone, both live
        // until the endpoint closes.
        let rc = unsafe {
            self.receiving_endpoint(buffer).recv(
                self.recv_buffer(buffer),
                self.buffer_bytes,
                context,
            )
        };
        if rc == fabric::EAGAIN {
            lock(&self.unposted).push(buffer);
            return Ok(());
        }
        fabric::check(rc, "fi_recv")
    }

    fn repost_unposted(&self) {
        let pending = std::mem::take(&mut *lock(&self.unposted));
        for buffer in pending {
            if let Err(error) = self.post_recv(buffer) {
                self.report(error);
            }
        }
    }

    /// Unlinks this place's libfabric shm region, which libfabric removes only when its
    /// endpoint closes (never, where the runtime's `Comm` lives until the process exits).
    /// Peers that mapped it keep their mapping; peers find it by name only until the job's
    /// last message, so the caller runs this after the shutdown barrier.
    pub(crate) fn remove_shared_names(&self) {
        if let Some(name) = &self.shm_region {
            // SAFETY: `name` is a NUL-terminated string; shm_unlink only reads it.
            let rc = unsafe { libc::shm_unlink(name.as_ptr()) };
            if rc != 0 {
                tracing::debug!(
                    name = ?name,
                    error = %std::io::Error::last_os_error(),
                    "unlinking the libfabric shm region"
                );
            }
        }
    }

    fn report(&self, error: Error) {
        lock(&self.stray).push_back(error);
    }
}

/// An eventfd that [`crate::Comm::notify`] makes readable.
///
/// Invariant: `fd` is an open, non-blocking eventfd owned by this value.
#[derive(Debug)]
struct Notifier {
    fd: i32,
}

impl Notifier {
    fn new() -> Result<Notifier> {
        // SAFETY: eventfd takes plain integers and returns a new descriptor or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(Error::io("eventfd", std::io::Error::last_os_error()));
        }
        Ok(Notifier { fd })
    }

    fn notify(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live buffer to our eventfd (non-blocking; a full
        // counter only means it is readable already).
        unsafe { libc::write(self.fd, one.as_ptr().cast(), one.len()) };
    }

    /// Clears the readable state.
    fn drain(&self) {
        let mut value = [0u8; 8];
        // SAFETY: reads at most 8 bytes into a live buffer from our non-blocking eventfd.
        unsafe { libc::read(self.fd, value.as_mut_ptr().cast(), value.len()) };
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        // SAFETY: the descriptor is ours and closed once.
        unsafe { libc::close(self.fd) };
    }
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A handler that panicked while a lock was held leaves consistent state behind (every
    // critical section is a few plain updates): keep going.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
