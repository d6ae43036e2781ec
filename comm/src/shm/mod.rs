//! The built-in shared-memory provider, the default.
//!
//! Every place creates one POSIX shared-memory segment (see [`layout`]) holding its inbox
//! rings, one per sender, and its registered memory. After a bootstrap barrier every place maps
//! every segment; after a second one each place unlinks its own, so nothing of the job remains
//! in `/dev/shm` once it runs (the launcher removes what a crash before that point leaves).
//!
//! - Active messages: the sender serializes into a slot of the receiver's ring from it
//!   ([`ring`]), or, for payloads above the eager threshold, into a buffer of its own registered
//!   memory, and sends a rendezvous descriptor; the receiver copies the payload out with a
//!   one-sided get and sets the buffer's completion flag, which the sender polls to reclaim it.
//! - RMA: loads, stores and atomics straight into the peer's mapped registered memory.
//! - Sleep: an idle place parks on the doorbell futex of its segment; a sender that sees
//!   sleepers bumps it and wakes them.
//! - Chaos (`ATOLL_CHAOS=seed`): the receiver holds back each sender's ring for random short
//!   spells, so that messages of different senders arrive reordered and delayed; each sender's
//!   own stream stays in order.

pub(crate) mod doorbell;
pub(crate) mod layout;
mod receive;
pub(crate) mod ring;
mod rma;
pub(crate) mod segment;
pub(crate) mod segment_names;
mod send;

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, MutexGuard};

use rkyv::util::AlignedVec;

use crate::bootstrap::Bootstrap;
use crate::chaos::Chaos;
use crate::config::Config;
use crate::heap::HeapAllocator;
use crate::{Error, Place, Result};

use layout::{Layout, SegmentView};
use ring::{Consumer, Producer};
use segment::Segment;

/// Bytes of a rendezvous descriptor: offset and length of the payload in the sender's heap.
const DESCRIPTOR: usize = 16;
/// Records one ring delivers per visit before `progress` moves on to the next ring.
const RING_BUDGET: usize = 64;
/// Bytes a queued (backlogged) message keeps inline before it spills to registered memory.
const BACKLOG_INLINE: usize = 512;

/// What a send attempt did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Sent {
    /// The message is in the ring (or queued behind earlier ones, from inside a handler).
    Done,
    /// The ring is full: drive progress and try again.
    Full,
}

/// A message that found its ring full while the sender was inside a handler.
#[derive(Debug)]
enum Backlogged {
    Eager {
        handler: u16,
        bytes: AlignedVec,
    },
    Rendezvous {
        handler: u16,
        spill: Range<usize>,
        len: usize,
    },
}

/// The sending side of one ring, behind its lock.
#[derive(Debug)]
pub(crate) struct ProducerState {
    ring: Producer,
    backlog: VecDeque<Backlogged>,
}

#[derive(Debug)]
struct ConsumerState {
    ring: Consumer,
    chaos: Chaos,
    /// Where rendezvous payloads from this sender are pulled to: reused, so that a stream of
    /// large messages does not fault in fresh pages for every one.
    pulled: AlignedVec,
}

#[derive(Debug)]
struct ConsumerSlot {
    /// The consumer's head, mirrored for lock-free "anything there?" checks.
    head_hint: AtomicU64,
    /// Only ever try-locked (a poller that finds it taken moves on), so a spin lock never
    /// spins; its release is a plain store, one atomic read-modify-write cheaper per delivery
    /// than a futex mutex.
    state: spin::Mutex<ConsumerState>,
}

/// The shm provider of one place.
#[derive(Debug)]
pub(crate) struct ShmProvider {
    here: usize,
    eager_max: usize,
    views: Vec<SegmentView>,
    producers: Vec<Mutex<ProducerState>>,
    consumers: Vec<ConsumerSlot>,
    heap: Arc<HeapAllocator>,
    rendezvous: Mutex<Vec<Range<usize>>>,
    rendezvous_pending: AtomicUsize,
    backlog_pending: AtomicUsize,
    next_ring: AtomicUsize,
    /// Every place registered for `membarrier`: senders skip the fence of the doorbell
    /// handshake and sleepers issue the heavy one (see [`doorbell`]).
    asymmetric_fence: bool,
    /// Keeps every mapping alive while the views above are used (regions hold a clone of
    /// their segment's).
    segments: Vec<Arc<Segment>>,
}

impl ShmProvider {
    /// Creates this place's segment, maps every place's, and unlinks its own.
    pub(crate) fn new(bootstrap: &Bootstrap, config: &Config) -> Result<ShmProvider> {
        let hosts = bootstrap.hosts();
        if hosts.len() > 1 {
            return Err(Error::ShmAcrossHosts {
                hosts: hosts.len(),
                names: hosts.iter().take(4).cloned().collect::<Vec<_>>().join(", "),
            });
        }
        let (here, places) = (bootstrap.rank(), bootstrap.size());
        let layout = Layout {
            places,
            ring_bytes: config.shm_ring_bytes,
            heap_bytes: config.shm_heap_bytes,
        };
        let name = |rank: usize| segment_names::segment_name(bootstrap.job_id(), &rank.to_string());
        let registered = doorbell::register_asymmetric_fence();
        let own = Segment::create(&name(here), layout.segment_bytes())?;
        layout.write_header(&own);
        // The first exchange doubles as the "all segments created" barrier, and makes the
        // fence choice job-wide: the asymmetric fence is sound only if every place registered.
        let created = bootstrap.allgather(&[u8::from(registered)]);
        let asymmetric_fence = matches!(&created, Ok(flags) if flags.iter().all(|f| f == &[1]));
        let mapped = created.and_then(|_| {
            let mut segments = Vec::with_capacity(places);
            for rank in 0..places {
                if rank == here {
                    continue;
                }
                let segment = Segment::open(&name(rank), layout.segment_bytes())?;
                layout
                    .check_header(&segment)
                    .map_err(|reason| Error::SegmentMismatch {
                        place: Place::new(rank),
                        reason,
                    })?;
                segments.push((rank, segment));
            }
            bootstrap.barrier()?;
            Ok(segments)
        });
        segment::unlink(&name(here));
        let mut peers = mapped?;
        let mut segments: Vec<Arc<Segment>> = Vec::with_capacity(places);
        let mut own = Some(own);
        for rank in 0..places {
            if rank == here {
                segments.extend(own.take().map(Arc::new));
            } else {
                let index = peers.iter().position(|(r, _)| *r == rank);
                segments.extend(index.map(|i| Arc::new(peers.swap_remove(i).1)));
            }
        }
        let views: Vec<SegmentView> = segments
            .iter()
            .map(|s| SegmentView::new(s, layout))
            .collect();
        let producers = (0..places)
            .map(|to| {
                Mutex::new(ProducerState {
                    ring: Producer::new(views[to], here),
                    backlog: VecDeque::new(),
                })
            })
            .collect();
        let consumers = (0..places)
            .map(|from| ConsumerSlot {
                head_hint: AtomicU64::new(0),
                state: spin::Mutex::new(ConsumerState {
                    ring: Consumer::new(views[here], from),
                    chaos: Chaos::new(config.chaos_seed, here, from),
                    pulled: AlignedVec::new(),
                }),
            })
            .collect();
        Ok(ShmProvider {
            here,
            eager_max: config.eager_max,
            views,
            producers,
            consumers,
            heap: Arc::new(HeapAllocator::new(layout.heap_bytes)),
            rendezvous: Mutex::new(Vec::new()),
            rendezvous_pending: AtomicUsize::new(0),
            backlog_pending: AtomicUsize::new(0),
            next_ring: AtomicUsize::new(0),
            asymmetric_fence,
            segments,
        })
    }

    fn places(&self) -> usize {
        self.views.len()
    }

    fn own(&self) -> &SegmentView {
        &self.views[self.here]
    }
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A handler that panicked while a lock was held leaves consistent ring state behind (the
    // record is either published or not): keep going.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
