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
pub(crate) mod ring;
pub(crate) mod segment;
pub(crate) mod segment_names;

use std::any::Any;
use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::{compiler_fence, fence, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rkyv::util::AlignedVec;

use crate::bootstrap::Bootstrap;
use crate::config::Config;
use crate::heap::HeapAllocator;
use crate::payload::{serialize_into, Payload, WriteTarget, RENDEZVOUS_HEADER};
use crate::rma::{Region, RemoteKey};
use crate::{Error, Place, Result};

use layout::{Layout, SegmentView};
use ring::{Consumer, Peek, Producer, RecordHeader, KIND_EAGER, KIND_PAD, KIND_RENDEZVOUS};
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
    chaos: Option<fastrand::Rng>,
    held_until: Option<Instant>,
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
                    chaos: config.chaos_seed.map(|seed| {
                        fastrand::Rng::with_seed(seed ^ ((here as u64) << 32) ^ from as u64)
                    }),
                    held_until: None,
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

    // ----------------------------------------------------------------------------------------
    // Sending

    /// Tries to send `value` to handler `handler` at place `to`. With `queue_if_full`, a full
    /// ring queues the message (serialized now, sent by a later `progress`) instead of
    /// answering [`Sent::Full`].
    pub(crate) fn send<T: Payload>(
        &self,
        to: usize,
        handler: u16,
        prefix: &[u8],
        value: &T,
        queue_if_full: bool,
    ) -> Result<Sent> {
        let mut producer = self.lock_producer(to);
        let sent = self.send_locked(&mut producer, handler, prefix, value, queue_if_full);
        drop(producer);
        self.ring_doorbell(to);
        sent
    }

    /// Takes the lock of the ring to `to`, for a batch of [`ShmProvider::send_locked`] calls.
    ///
    /// A locked instruction waits until the stores of the previous message have reached the
    /// receiver's cache; taking the lock once per batch instead of once per message is what
    /// makes a flood fast.
    pub(crate) fn lock_producer(&self, to: usize) -> MutexGuard<'_, ProducerState> {
        lock(&self.producers[to])
    }

    /// [`ShmProvider::send`] with the ring's lock held by the caller (the caller rings the
    /// receiver's doorbell once it lets go).
    pub(crate) fn send_locked<T: Payload>(
        &self,
        producer: &mut ProducerState,
        handler: u16,
        prefix: &[u8],
        value: &T,
        queue_if_full: bool,
    ) -> Result<Sent> {
        if !producer.backlog.is_empty() {
            self.flush_backlog(producer);
        }
        if producer.backlog.is_empty() {
            if let Some(slot) = producer.ring.reserve(self.eager_max) {
                // SAFETY: the slot is reserved for this producer, which holds its lock until
                // the record is published; the heap area is mapped for the provider's life.
                let mut target = unsafe {
                    WriteTarget::new(
                        slot.payload(),
                        slot.capacity(),
                        &self.heap,
                        self.own().heap(),
                    )
                };
                if let Err(error) = self.serialize(prefix, value, &mut target) {
                    // Registered memory full of rendezvous payloads not yet pulled: that is
                    // back-pressure, not a failure; wait for receivers to take them.
                    if matches!(error, Error::PayloadTooLarge { .. }) && self.rendezvous_in_flight()
                    {
                        return Ok(Sent::Full);
                    }
                    return Err(error);
                }
                let header = match target.take_spill() {
                    None => self.header(handler, KIND_EAGER, target.len()),
                    Some(spill) => {
                        self.write_descriptor(slot.payload(), &spill, target.len());
                        self.track_rendezvous(spill);
                        self.header(handler, KIND_RENDEZVOUS, DESCRIPTOR)
                    }
                };
                producer.ring.publish(slot, header);
                return Ok(Sent::Done);
            }
        }
        if !queue_if_full {
            return Ok(Sent::Full);
        }
        // Queued replies are mostly small: a small buffer, spilling into registered memory
        // (and so going by rendezvous) beyond it.
        let capacity = self.eager_max.min(BACKLOG_INLINE);
        let mut bytes = AlignedVec::with_capacity(capacity);
        // SAFETY: `bytes` owns `capacity` bytes, exclusively ours while `target` lives; the
        // heap area is mapped for the provider's life.
        let mut target = unsafe {
            WriteTarget::new(bytes.as_mut_ptr(), capacity, &self.heap, self.own().heap())
        };
        self.serialize(prefix, value, &mut target)?;
        let item = match target.take_spill() {
            None => {
                // SAFETY: the serializer initialised the first `len` bytes of the capacity.
                unsafe { bytes.set_len(target.len()) };
                Backlogged::Eager { handler, bytes }
            }
            Some(spill) => Backlogged::Rendezvous {
                handler,
                spill,
                len: target.len(),
            },
        };
        producer.backlog.push_back(item);
        self.backlog_pending.fetch_add(1, Ordering::Relaxed);
        Ok(Sent::Done)
    }

    fn serialize<T: Payload>(
        &self,
        prefix: &[u8],
        value: &T,
        target: &mut WriteTarget,
    ) -> Result<()> {
        match target
            .write_prefix(prefix)
            .and_then(|()| serialize_into(value, target))
        {
            Ok(()) => Ok(()),
            Err(source) => Err(match target.exhausted() {
                Some((requested, available)) => Error::PayloadTooLarge {
                    len: requested,
                    limit: available,
                },
                None => Error::Serialize { source },
            }),
        }
    }

    fn header(&self, handler: u16, kind: u8, len: usize) -> RecordHeader {
        RecordHeader {
            len: len as u32,
            src: self.here as u32,
            handler,
            kind,
        }
    }

    fn write_descriptor(&self, slot: *mut u8, spill: &Range<usize>, len: usize) {
        let mut descriptor = [0u8; DESCRIPTOR];
        descriptor[..8].copy_from_slice(&(spill.start as u64).to_le_bytes());
        descriptor[8..].copy_from_slice(&(len as u64).to_le_bytes());
        // SAFETY: every slot holds at least `eager_max >= 64` bytes, exclusively the caller's.
        unsafe { std::ptr::copy_nonoverlapping(descriptor.as_ptr(), slot, DESCRIPTOR) };
    }

    fn track_rendezvous(&self, spill: Range<usize>) {
        lock(&self.rendezvous).push(spill);
        self.rendezvous_pending.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether rendezvous buffers are still waiting for their receivers (after reclaiming the
    /// pulled ones).
    fn rendezvous_in_flight(&self) -> bool {
        self.reclaim_rendezvous();
        self.rendezvous_pending.load(Ordering::Relaxed) > 0
    }

    /// Frees the rendezvous buffers whose receivers have pulled them.
    fn reclaim_rendezvous(&self) {
        if self.rendezvous_pending.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut outstanding = lock(&self.rendezvous);
        let heap = self.own().heap();
        outstanding.retain(|range| {
            // SAFETY: the buffer's first 8 bytes are its completion flag (8-aligned, inside the
            // heap), written atomically by the receiver.
            let flag = unsafe { AtomicU64::from_ptr(heap.add(range.start).cast()) };
            if flag.load(Ordering::Acquire) == 0 {
                return true;
            }
            self.heap.free(range.clone());
            self.rendezvous_pending.fetch_sub(1, Ordering::Relaxed);
            false
        });
    }

    /// Moves queued messages into the ring while there is room.
    /// Returns whether it published anything (the receiver's doorbell then needs ringing).
    fn flush_backlog(&self, producer: &mut ProducerState) -> bool {
        let mut published = false;
        while let Some(item) = producer.backlog.front() {
            let Some(slot) = producer.ring.reserve(self.eager_max) else {
                return published;
            };
            published = true;
            let header = match item {
                Backlogged::Eager { handler, bytes } => {
                    // SAFETY: `bytes.len() <= eager_max = slot capacity`; the slot is ours.
                    unsafe {
                        std::ptr::copy_nonoverlapping(bytes.as_ptr(), slot.payload(), bytes.len())
                    };
                    self.header(*handler, KIND_EAGER, bytes.len())
                }
                Backlogged::Rendezvous {
                    handler,
                    spill,
                    len,
                } => {
                    self.write_descriptor(slot.payload(), spill, *len);
                    self.header(*handler, KIND_RENDEZVOUS, DESCRIPTOR)
                }
            };
            producer.ring.publish(slot, header);
            if let Some(Backlogged::Rendezvous { spill, .. }) = producer.backlog.pop_front() {
                self.track_rendezvous(spill);
            }
            self.backlog_pending.fetch_sub(1, Ordering::Relaxed);
        }
        published
    }

    fn flush_all_backlogs(&self) {
        if self.backlog_pending.load(Ordering::Relaxed) == 0 {
            return;
        }
        for (to, producer) in self.producers.iter().enumerate() {
            let Ok(mut producer) = producer.try_lock() else {
                continue;
            };
            if !producer.backlog.is_empty() && self.flush_backlog(&mut producer) {
                drop(producer);
                self.ring_doorbell(to);
            }
        }
    }

    /// Wakes place `to` if it sleeps.
    pub(crate) fn ring_doorbell(&self, to: usize) {
        let view = &self.views[to];
        // Dekker with `park`: either the sleeper sees the record, or this load sees the sleeper.
        if self.asymmetric_fence {
            compiler_fence(Ordering::SeqCst); // the sleeper's membarrier is this side's fence
        } else {
            fence(Ordering::SeqCst);
        }
        if view.sleepers().load(Ordering::Relaxed) > 0 {
            view.doorbell().fetch_add(1, Ordering::SeqCst);
            doorbell::wake_all(view.doorbell());
        }
    }

    /// Writes `record` into the ring to `to` exactly as given, valid or not (fault injection:
    /// what a broken or hostile peer could send). `Full` when there is no room.
    pub(crate) fn inject(
        &self,
        to: usize,
        kind: u8,
        src: u32,
        handler: u16,
        payload: &[u8],
    ) -> Result<Sent> {
        if payload.len() > self.eager_max {
            return Err(Error::PayloadTooLarge {
                len: payload.len(),
                limit: self.eager_max,
            });
        }
        let mut producer = lock(&self.producers[to]);
        let Some(slot) = producer.ring.reserve(self.eager_max) else {
            return Ok(Sent::Full);
        };
        // SAFETY: `payload.len() <= eager_max = slot capacity`; the slot is ours.
        unsafe { std::ptr::copy_nonoverlapping(payload.as_ptr(), slot.payload(), payload.len()) };
        let header = RecordHeader {
            len: payload.len() as u32,
            src,
            handler,
            kind,
        };
        producer.ring.publish(slot, header);
        drop(producer);
        self.ring_doorbell(to);
        Ok(Sent::Done)
    }

    /// Whether everything this place sent to `to` has been consumed there (queued messages
    /// included; rendezvous payloads are pulled before their record is consumed).
    pub(crate) fn is_drained_to(&self, to: usize) -> bool {
        let mut producer = lock(&self.producers[to]);
        producer.backlog.is_empty() && producer.ring.is_drained()
    }

    // ----------------------------------------------------------------------------------------
    // Receiving

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

    fn drain_ring<F: FnMut(Place, u16, &[u8]) -> Result<()>>(
        &self,
        from: usize,
        state: &mut ConsumerState,
        deliver: &mut F,
    ) -> Result<usize> {
        if let Some(until) = state.held_until {
            if Instant::now() < until {
                return Ok(0);
            }
            state.held_until = None;
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
            if let Some(rng) = state.chaos.as_mut() {
                if rng.u8(..) < 32 {
                    state.held_until =
                        Some(Instant::now() + Duration::from_micros(rng.u64(1..400)));
                    break;
                }
            }
        }
        Ok(delivered)
    }

    /// Copies a rendezvous payload out of the sender's registered memory and marks its buffer
    /// pulled.
    fn pull(&self, from: usize, descriptor: &[u8], bytes: &mut AlignedVec) -> Result<()> {
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

    fn has_incoming(&self) -> bool {
        self.backlog_pending.load(Ordering::Relaxed) > 0
            || self.consumers.iter().enumerate().any(|(from, slot)| {
                ring::has_record_at(self.own(), from, slot.head_hint.load(Ordering::Relaxed))
            })
    }

    // ----------------------------------------------------------------------------------------
    // Registered memory and RMA

    pub(crate) fn alloc_region(&self, len: usize) -> Result<Region> {
        self.reclaim_rendezvous();
        let range = self
            .heap
            .alloc(len)
            .map_err(|available| Error::OutOfRegisteredMemory {
                here: Place::new(self.here),
                requested: len,
                available,
            })?;
        let mapping: Arc<dyn Any + Send + Sync> = self.segments[self.here].clone();
        // SAFETY: the range comes from this heap's allocator, and the heap area stays mapped
        // for as long as the region lives (it holds the segment).
        Ok(unsafe {
            Region::new(
                Place::new(self.here),
                self.own().heap(),
                range,
                len,
                self.heap.clone(),
                mapping,
            )
        })
    }

    /// The address of `key`'s bytes `offset..offset + len`, checked.
    fn locate(&self, key: &RemoteKey, offset: usize, len: usize) -> Result<*mut u8> {
        let place = key.place().index();
        if place >= self.places() {
            return Err(Error::InvalidRemoteKey {
                reason: format!(
                    "it names {}, but the job has {} places",
                    key.place(),
                    self.places()
                ),
            });
        }
        let at = key.locate(offset, len, self.heap.bytes())?;
        // SAFETY: `at + len` is inside the place's heap (checked by `locate`).
        Ok(unsafe { self.views[place].heap().add(at) })
    }

    pub(crate) fn put(&self, key: &RemoteKey, offset: usize, data: &[u8]) -> Result<()> {
        let dst = self.locate(key, offset, data.len())?;
        // SAFETY: `dst..dst + len` is registered memory of the target (checked); `data` is a
        // distinct buffer. Racing remote accesses see torn bytes, as RMA semantics allow.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), dst, data.len()) };
        Ok(())
    }

    pub(crate) fn get(&self, key: &RemoteKey, offset: usize, dst: &mut [u8]) -> Result<()> {
        let src = self.locate(key, offset, dst.len())?;
        // SAFETY: as in `put`, in the other direction.
        unsafe { std::ptr::copy_nonoverlapping(src, dst.as_mut_ptr(), dst.len()) };
        Ok(())
    }

    fn atomic(&self, key: &RemoteKey, offset: usize) -> Result<&AtomicU64> {
        if offset % 8 != 0 || key.offset() % 8 != 0 {
            return Err(Error::Misaligned { offset, align: 8 });
        }
        let at = self.locate(key, offset, 8)?;
        // SAFETY: 8 bytes of registered memory (checked), 8-aligned (checked); concurrent
        // accesses to them are atomic by the RMA contract.
        Ok(unsafe { AtomicU64::from_ptr(at.cast()) })
    }

    pub(crate) fn fetch_add(&self, key: &RemoteKey, offset: usize, value: u64) -> Result<u64> {
        Ok(self.atomic(key, offset)?.fetch_add(value, Ordering::SeqCst))
    }

    pub(crate) fn compare_swap(
        &self,
        key: &RemoteKey,
        offset: usize,
        expected: u64,
        new: u64,
    ) -> Result<u64> {
        Ok(
            match self.atomic(key, offset)?.compare_exchange(
                expected,
                new,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(old) | Err(old) => old,
            },
        )
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

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A handler that panicked while a lock was held leaves consistent ring state behind (the
    // record is either published or not): keep going.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
