//! [`Comm`], the handle every layer above uses, and [`CommBuilder`], which creates it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::bootstrap::Bootstrap;
use crate::config::Config;
use crate::handler::{in_handler, Handler, HandlerScope, HandlerTable};
use crate::payload::Payload;
use crate::provider::{ProducerGuard, Provider};
use crate::rma::{Region, RemoteKey, RmaFuture};
use crate::shm::Sent;
use crate::{Error, HandlerId, Message, Place, Result};

/// How long an idle waiter sleeps at most before it looks again (for failed places and for
/// work that other threads of the place made ready).
const PARK_TIMEOUT: Duration = Duration::from_millis(1);
/// Yields an idle waiter makes after spinning and before parking.
const IDLE_YIELDS: u32 = 64;
/// Peer errors kept for [`Comm::take_errors`] at most (later ones are only logged).
const MAX_KEPT_ERRORS: usize = 1024;

/// Creates a [`Comm`]: registers the handlers, then joins the job.
///
/// ```
/// use atoll_comm::{CommBuilder, HandlerId};
///
/// const PING: HandlerId = HandlerId::new(1);
///
/// let comm = CommBuilder::new()
///     .handler(PING, |_comm, msg| {
///         let value: u64 = msg.deserialize::<u64>()?;
///         println!("{} sent {value}", msg.from());
///         Ok(())
///     })
///     .init()?;
/// # Ok::<(), atoll_comm::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct CommBuilder {
    handlers: HandlerTable,
    config: Option<Config>,
}

impl CommBuilder {
    /// A builder with no handlers, reading its configuration from the environment.
    pub fn new() -> CommBuilder {
        CommBuilder::default()
    }

    /// Registers `handler` under `id`. Every place must register the same handlers under the
    /// same ids before [`CommBuilder::init`], so that no message can arrive before its handler.
    pub fn handler<F>(mut self, id: HandlerId, handler: F) -> CommBuilder
    where
        F: Fn(&Comm, Message<'_>) -> Result<()> + Send + Sync + 'static,
    {
        self.handlers.insert(id, Box::new(handler) as Handler);
        self
    }

    /// Uses `config` instead of reading the environment.
    pub fn config(mut self, config: Config) -> CommBuilder {
        self.config = Some(config);
        self
    }

    /// Joins the job: bootstrap, then the provider's set-up (for shm: create, map and unlink the
    /// segments).
    ///
    /// When the program runs outside any launcher, this call *becomes the local launcher*: it
    /// starts `ATOLL_PLACES` copies of the program (each of which returns from `init` as one
    /// place), forwards their output tagged `[place k]`, and exits the process with the job's
    /// status; it never returns then. Call it first in `main`: what runs before it runs in
    /// the launcher too.
    pub fn init(self) -> Result<Comm> {
        crate::log::init_from_env();
        let config = match self.config {
            Some(config) => config,
            None => Config::from_env()?,
        };
        config.validate()?;
        let bootstrap = Bootstrap::join_or_launch(&config)?;
        let provider = Provider::new(&bootstrap, &config)?;
        let here = Place::new(bootstrap.rank());
        let places = bootstrap.size();
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let spin_us = config
            .spin_us
            .unwrap_or(if places > cores { 0 } else { 50 });
        tracing::debug!(%here, places, provider = provider.name(), spin_us, "comm ready");
        Ok(Comm {
            inner: Arc::new(CommInner {
                here,
                places,
                provider,
                handlers: self.handlers,
                bootstrap,
                spin: Duration::from_micros(spin_us),
                config,
                errors: std::sync::Mutex::new(Vec::new()),
            }),
        })
    }
}

/// One place's handle on the transport: cheap to clone, usable from any thread.
///
/// Every operation is non-blocking except the `wait_*` family and a send that finds its ring
/// full (which drives progress until there is room). Nothing happens in the background:
/// [`Comm::progress`] delivers arrived messages, and idle threads should call it (the runtime's
/// workers do).
///
/// # Thread safety
/// `Comm` is `Send + Sync`. Any number of threads may send and call `progress` concurrently.
/// Messages from one place to another are delivered in the order they were sent: in program
/// order from one thread, and in the order the sends took the pair's lock across threads. No
/// order is promised between different sending places.
///
/// A `send` that finds its ring full runs arrived handlers on the calling thread while it
/// waits: do not hold a lock a handler takes across a `send`. Handlers themselves never wait
/// (their sends queue instead), and must not wait for a reply from the place whose message they
/// are handling: that ring is not polled until they return.
///
/// # Resource cleanup
/// Registered memory is returned when its [`Region`] is dropped. The shared-memory segments
/// are unlinked during [`CommBuilder::init`], so nothing of the job survives its processes.
#[derive(Clone, Debug)]
pub struct Comm {
    inner: Arc<CommInner>,
}

#[derive(Debug)]
struct CommInner {
    here: Place,
    places: usize,
    provider: Provider,
    handlers: HandlerTable,
    bootstrap: Bootstrap,
    spin: Duration,
    config: Config,
    errors: std::sync::Mutex<Vec<Error>>,
}

/// A record written into a peer's inbox exactly as given: see [`Comm::inject_raw`].
#[derive(Clone, Copy, Debug)]
pub struct RawRecord<'a> {
    /// Record kind: 1 eager, 2 rendezvous, 3 padding; anything else is invalid.
    pub kind: u8,
    /// The sending place the record claims.
    pub src: u32,
    /// The handler id it names.
    pub handler: u16,
    /// Its payload bytes.
    pub payload: &'a [u8],
}

impl Comm {
    /// This place.
    pub fn here(&self) -> Place {
        self.inner.here
    }

    /// The number of places of the job (`N`; places are `0..N`).
    #[allow(clippy::len_without_is_empty)] // a job always has at least one place
    pub fn len(&self) -> usize {
        self.inner.places
    }

    /// This place's index among the places on its node, and how many places share the node
    /// (for splitting the node's cores between them).
    pub fn local_rank(&self) -> (usize, usize) {
        self.inner.bootstrap.local_rank()
    }

    /// Every place of the job, in order.
    pub fn places(&self) -> impl Iterator<Item = Place> + 'static {
        (0..self.inner.places).map(Place::new)
    }

    /// The configuration this place runs with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The job's id (letters, digits and `-`): the same at every place, different for every
    /// job; it names the job's shared-memory segments (`/dev/shm/atoll-<id>-*`, which the local
    /// launcher removes after a crash).
    pub fn job_id(&self) -> &str {
        self.inner.bootstrap.job_id()
    }

    /// Which bootstrap this place joined through: `local`, `pmix`, `pmi` or `env`.
    pub fn bootstrap_kind(&self) -> &'static str {
        self.inner.bootstrap.kind()
    }

    /// The names of the hosts the job's places run on, one per host.
    pub fn hosts(&self) -> Vec<String> {
        self.inner.bootstrap.hosts()
    }

    /// For each place, the index in [`Comm::hosts`] of the host it runs on.
    pub fn host_of_places(&self) -> Vec<usize> {
        self.inner.bootstrap.host_of_places()
    }

    /// The name of the transport in use (`shm`, `ucx`, `ofi`).
    pub fn provider_name(&self) -> &'static str {
        self.inner.provider.name()
    }

    /// Sends `value` to handler `handler` at place `to`.
    ///
    /// The value is serialized once, straight into the transport's memory; above the eager
    /// threshold it goes by rendezvous. If the ring to `to` is full, the call drives
    /// [`Comm::progress`] until there is room; inside a handler it queues the message instead
    /// (a handler never waits).
    pub fn send<T: Payload>(&self, to: Place, handler: HandlerId, value: &T) -> Result<()> {
        self.send_framed(to, handler, &[], value)
    }

    /// Sends `prefix` (raw bytes, a multiple of 16 long) followed by `value` (an archive) in
    /// one message, serialized once: for layers that route messages by a fixed header before
    /// they know the payload's type. The handler splits them with [`Message::split_prefix`].
    pub fn send_framed<T: Payload>(
        &self,
        to: Place,
        handler: HandlerId,
        prefix: &[u8],
        value: &T,
    ) -> Result<()> {
        if prefix.len() % 16 != 0 {
            return Err(Error::Misaligned {
                offset: prefix.len(),
                align: 16,
            });
        }
        let index = self.check_place(to)?;
        let queue_if_full = in_handler();
        let mut idle = Idle::default();
        loop {
            match self
                .inner
                .provider
                .send(index, handler.get(), prefix, value, queue_if_full)?
            {
                Sent::Done => return Ok(()),
                Sent::Full => {
                    if self.is_failed(to) {
                        return Err(Error::PlaceFailed(to));
                    }
                    idle.step(self, &mut || false);
                }
            }
        }
    }

    /// Sends `bytes` as they are (after the raw `prefix`, a multiple of 16 long) in one
    /// message: for a payload serialized once and sent to several places (a collective's
    /// relay), or a layer's own format. They are copied once into the transport's memory
    /// (by rendezvous above the eager threshold); the handler sees exactly them in
    /// [`Message::bytes`], 16-byte aligned, and must validate them as any peer's bytes.
    pub fn send_bytes(
        &self,
        to: Place,
        handler: HandlerId,
        prefix: &[u8],
        bytes: &[u8],
    ) -> Result<()> {
        self.send_framed(to, handler, prefix, &crate::payload::RawBytes(bytes))
    }

    /// A batch of sends to `to`: the pair's lock is taken once for the whole batch instead of
    /// once per message, which is what a flood of small messages needs (each lock is an atomic
    /// read-modify-write, and such an instruction waits for the previous message's stores to
    /// reach the receiver). Messages are visible to the receiver as each `send` returns; the
    /// receiver's doorbell rings when the batch ends.
    ///
    /// Other threads' sends to `to` wait while the batch lives: keep batches short, and do not
    /// call [`Comm::progress`] while one is open (a handler sending to `to` would wait for it).
    ///
    /// ```
    /// # use atoll_comm::{CommBuilder, HandlerId, Place};
    /// # const COUNT: HandlerId = HandlerId::new(1);
    /// # let comm = CommBuilder::new().handler(COUNT, |_, _| Ok(())).init()?;
    /// let to = Place::new((comm.here().index() + 1) % comm.len());
    /// let mut batch = comm.batch(to)?;
    /// for i in 0..1000u64 {
    ///     batch.send(COUNT, &i)?;
    /// }
    /// drop(batch);
    /// comm.flush()?;
    /// # comm.bootstrap_barrier()?;
    /// # Ok::<(), atoll_comm::Error>(())
    /// ```
    pub fn batch(&self, to: Place) -> Result<SendBatch<'_>> {
        self.check_place(to)?;
        Ok(SendBatch {
            comm: self,
            to,
            guard: Some(self.inner.provider.lock_producer(to.index())),
        })
    }

    /// Delivers the messages that have arrived, running their handlers on this thread.
    /// Returns how many were delivered.
    ///
    /// A message that is malformed, names an unregistered handler, claims an impossible
    /// sender, or fails its handler's validation is discarded and reported as the error; call
    /// again to go on (nothing else is lost).
    pub fn progress(&self) -> Result<usize> {
        let inner = &*self.inner;
        let delivered = inner.provider.progress(&mut |from, handler, bytes| {
            let Some(run) = inner.handlers.get(handler) else {
                return Err(Error::UnknownHandler {
                    from,
                    here: inner.here,
                    handler,
                });
            };
            let _scope = HandlerScope::enter();
            run(self, Message::new(from, handler, bytes))
        })?;
        Ok(delivered)
    }

    /// Drives progress until `done()` holds: spins for `ATOLL_SPIN_US`, then yields, then
    /// sleeps until a sender rings this place's doorbell (or a millisecond passes).
    ///
    /// Errors caused by peers' messages meanwhile do not end the wait: they are kept for
    /// [`Comm::take_errors`] (and logged through `tracing`).
    pub fn wait_until(&self, mut done: impl FnMut() -> bool) -> Result<()> {
        let mut idle = Idle::default();
        while !done() {
            idle.step(self, &mut done);
        }
        Ok(())
    }

    /// Waits until every message this place has sent has been taken by its receiver (queued
    /// ones included), driving progress meanwhile. Fails with [`Error::PlaceFailed`] if a
    /// receiver that has not taken everything died.
    pub fn flush(&self) -> Result<()> {
        for place in self.places() {
            let index = place.index();
            let mut failed = false;
            self.wait_until(|| {
                if self.inner.provider.is_drained_to(index) {
                    return true;
                }
                failed = self.is_failed(place);
                failed
            })?;
            if failed {
                return Err(Error::PlaceFailed(place));
            }
        }
        Ok(())
    }

    /// Wakes this place's threads that sleep in [`Comm::wait_until`] (or a send waiting for
    /// room), so that they look at their condition again: for work made ready by a local
    /// thread rather than by a message. Cheap when nobody sleeps.
    pub fn notify(&self) {
        self.inner.provider.ring_doorbell(self.inner.here.index());
    }

    /// Errors caused by peers' messages that arrived while this place waited (in
    /// [`Comm::wait_until`], [`Comm::flush`], or a [`Comm::send`] that found its ring full),
    /// oldest first. Each offending message was discarded; nothing else was lost.
    pub fn take_errors(&self) -> Vec<Error> {
        std::mem::take(&mut *self.errors())
    }

    fn errors(&self) -> std::sync::MutexGuard<'_, Vec<Error>> {
        self.inner
            .errors
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// [`Comm::progress`] for code that cannot stop for a peer's bad message (a scheduler
    /// between two tasks, a waiter): the errors go to [`Comm::take_errors`] (and the log)
    /// instead. Returns how many messages were delivered (an error counts as one).
    pub fn poll(&self) -> usize {
        match self.progress() {
            Ok(delivered) => delivered,
            Err(error) => {
                tracing::warn!(%error, "discarded a bad message");
                let mut errors = self.errors();
                if errors.len() < MAX_KEPT_ERRORS {
                    errors.push(error);
                }
                1
            }
        }
    }

    /// Allocates `len` bytes of registered memory at this place, zero-filled.
    pub fn alloc_region(&self, len: usize) -> Result<Region> {
        self.inner.provider.alloc_region(len)
    }

    /// Writes `data` into the region of `key` at `offset`. `data` is free again when this
    /// returns; the future completes when the bytes are in place at the target.
    pub fn put(&self, key: &RemoteKey, offset: usize, data: &[u8]) -> RmaFuture<()> {
        RmaFuture::ready(
            self.live(key)
                .and_then(|()| self.inner.provider.put(key, offset, data)),
        )
    }

    /// Reads `len` bytes at `offset` of the region of `key`.
    pub fn get(&self, key: &RemoteKey, offset: usize, len: usize) -> RmaFuture<Vec<u8>> {
        let result = self.live(key).and_then(|()| {
            let mut bytes = vec![0u8; len];
            self.inner.provider.get(key, offset, &mut bytes)?;
            Ok(bytes)
        });
        RmaFuture::ready(result)
    }

    /// Reads `dst.len()` bytes at `offset` of the region of `key` into `dst`.
    pub fn get_into(&self, key: &RemoteKey, offset: usize, dst: &mut [u8]) -> Result<()> {
        self.live(key)?;
        self.inner.provider.get(key, offset, dst)
    }

    /// Atomically adds `value` to the `u64` at `offset` (8-aligned) of `key`'s region; yields
    /// the previous value.
    pub fn fetch_add(&self, key: &RemoteKey, offset: usize, value: u64) -> RmaFuture<u64> {
        RmaFuture::ready(
            self.live(key)
                .and_then(|()| self.inner.provider.fetch_add(key, offset, value)),
        )
    }

    /// Atomically replaces the `u64` at `offset` (8-aligned) of `key`'s region with `new` if it
    /// equals `expected`; yields the previous value (equal to `expected` on success).
    pub fn compare_swap(
        &self,
        key: &RemoteKey,
        offset: usize,
        expected: u64,
        new: u64,
    ) -> RmaFuture<u64> {
        RmaFuture::ready(
            self.live(key)
                .and_then(|()| self.inner.provider.compare_swap(key, offset, expected, new)),
        )
    }

    /// Every place contributes `blob`; every place gets all blobs, indexed by place. Collective
    /// and slow (it goes through the launcher; arrived messages are delivered meanwhile): meant
    /// for start-up exchanges such as remote keys, not for data.
    pub fn bootstrap_allgather(&self, blob: &[u8]) -> Result<Vec<Vec<u8>>> {
        self.progressing(|| self.inner.bootstrap.allgather(blob))
    }

    /// Every place contributes the key of one of its regions; every place gets all keys,
    /// indexed by place. Collective, through the bootstrap: the start-up exchange of
    /// `MPI_Win_create` or a GASNet segment attach.
    pub fn allgather_keys(&self, key: RemoteKey) -> Result<Vec<RemoteKey>> {
        let bytes = rkyv::to_bytes::<rkyv::rancor::BoxedError>(&key)
            .map_err(|source| Error::Serialize { source })?;
        let blobs = self.progressing(|| self.inner.bootstrap.allgather(&bytes))?;
        blobs
            .iter()
            .enumerate()
            .map(|(place, blob)| {
                let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(blob.len());
                aligned.extend_from_slice(blob);
                rkyv::from_bytes::<RemoteKey, rkyv::rancor::BoxedError>(&aligned).map_err(
                    |source| Error::InvalidPayload {
                        from: Place::new(place),
                        handler: 0,
                        source,
                    },
                )
            })
            .collect()
    }

    /// Returns when every place has called it; delivers arrived messages meanwhile. Collective,
    /// through the bootstrap: meant for
    /// start-up and tests; the collectives crate has the fast barrier.
    pub fn bootstrap_barrier(&self) -> Result<()> {
        self.progressing(|| self.inner.bootstrap.barrier())
    }

    /// Leaves the job's bootstrap: under an external launcher, tells it that this place ends
    /// normally (PMIx or PMI finalize), which it expects before the process exits. Call it
    /// once, after the last bootstrap collective and after every place stopped sending
    /// (a shutdown barrier); dropping the last `Comm` does it too.
    ///
    /// It also removes the names of the shared-memory objects the transport made for this
    /// place (libfabric's shm regions: peers find them by name until then), so that none
    /// outlives the job even where this `Comm` is never dropped.
    pub fn finalize_bootstrap(&self) -> Result<()> {
        self.inner.provider.remove_shared_names();
        self.inner.bootstrap.finalize()
    }

    /// Runs a blocking bootstrap exchange on a helper thread while this thread keeps
    /// delivering messages: a place that waits in a bootstrap barrier must still take the
    /// messages other places wait to see taken (their `flush`).
    fn progressing<R: Send>(&self, exchange: impl FnOnce() -> R + Send) -> R {
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            let helper = scope.spawn(|| {
                let result = exchange();
                done.store(true, std::sync::atomic::Ordering::Release);
                result
            });
            // Cannot fail: peer errors go to `take_errors`.
            let _ = self.wait_until(|| done.load(std::sync::atomic::Ordering::Acquire));
            match helper.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// Places known to have died.
    pub fn failed_places(&self) -> Vec<Place> {
        self.inner.bootstrap.failed_places()
    }

    /// Whether `place` is known to have died.
    pub fn is_failed(&self, place: Place) -> bool {
        self.inner.bootstrap.is_failed(place) || self.inner.provider.is_failed(place.index())
    }

    /// Writes a record into `to`'s inbox exactly as given, valid or not: what a broken or
    /// hostile peer could send. For testing that receivers reject bad input; never needed
    /// otherwise.
    pub fn inject_raw(&self, to: Place, record: RawRecord<'_>) -> Result<()> {
        let index = self.check_place(to)?;
        let mut idle = Idle::default();
        while self.inner.provider.inject(
            index,
            record.kind,
            record.src,
            record.handler,
            record.payload,
        )? == Sent::Full
        {
            idle.step(self, &mut || false);
        }
        Ok(())
    }

    fn check_place(&self, place: Place) -> Result<usize> {
        if place.index() < self.inner.places {
            Ok(place.index())
        } else {
            Err(Error::NoSuchPlace {
                place,
                places: self.inner.places,
            })
        }
    }

    fn live(&self, key: &RemoteKey) -> Result<()> {
        self.check_place(key.place())?;
        if self.is_failed(key.place()) {
            return Err(Error::PlaceFailed(key.place()));
        }
        Ok(())
    }
}

/// Sends to one place under one lock: see [`Comm::batch`].
#[derive(Debug)]
pub struct SendBatch<'c> {
    comm: &'c Comm,
    to: Place,
    guard: Option<ProducerGuard<'c>>,
}

impl SendBatch<'_> {
    /// Sends `value` to handler `handler` at the batch's place, as [`Comm::send`] does.
    pub fn send<T: Payload>(&mut self, handler: HandlerId, value: &T) -> Result<()> {
        let provider = &self.comm.inner.provider;
        let queue_if_full = in_handler();
        let mut idle = Idle::default();
        loop {
            let guard = match self.guard.as_mut() {
                Some(guard) => guard,
                None => self.guard.insert(provider.lock_producer(self.to.index())),
            };
            match provider.send_locked(guard, handler.get(), &[], value, queue_if_full)? {
                Sent::Done => return Ok(()),
                Sent::Full => {
                    // Let go of the ring while waiting: handlers run meanwhile may send to it.
                    self.guard = None;
                    provider.ring_doorbell(self.to.index());
                    if self.comm.is_failed(self.to) {
                        return Err(Error::PlaceFailed(self.to));
                    }
                    idle.step(self.comm, &mut || false);
                }
            }
        }
    }
}

impl Drop for SendBatch<'_> {
    fn drop(&mut self) {
        if self.guard.take().is_some() {
            self.comm.inner.provider.ring_doorbell(self.to.index());
        }
    }
}

/// The back-off of one waiter: poll, then spin for `ATOLL_SPIN_US`, then yield, then park.
#[derive(Default)]
struct Idle {
    since: Option<Instant>,
    spins: u32,
    yields: u32,
}

impl Idle {
    fn step(&mut self, comm: &Comm, ready: &mut dyn FnMut() -> bool) {
        if comm.poll() > 0 {
            *self = Idle::default();
            return;
        }
        // Reading the clock costs as much as a poll: look at it every few spins only.
        self.spins = self.spins.wrapping_add(1);
        let since = *self.since.get_or_insert_with(Instant::now);
        let spin = comm.inner.spin;
        if !spin.is_zero() && (self.spins % 16 != 0 || since.elapsed() < spin) {
            std::hint::spin_loop();
        } else if self.yields < IDLE_YIELDS {
            self.yields += 1;
            std::thread::yield_now();
        } else {
            comm.inner.provider.park(PARK_TIMEOUT, ready);
        }
    }
}
