//! The runtime of one place: its transport, worker pool, remote functions, pending calls and
//! finishes; start-up, the handlers of the runtime's messages, and shutdown.

use std::future::Future;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use atoll_comm::{Comm, CommBuilder, HandlerId, Message, Payload, Place};

use crate::call::PendingCalls;
use crate::error::Failure;
use crate::finish::{finish, flush_credit, CreditReturn, CreditReturns, Finishes};
use crate::remote::Registry;
use crate::scheduler::Scheduler;
use crate::wire::{CallPrefix, CreditPrefix, ReplyPrefix, PREFIX};
use crate::{Error, Result};

/// A remote call (prefix: [`CallPrefix`]).
pub(crate) const CALL: HandlerId = HandlerId::new(1);
/// The reply to a call (prefix: [`ReplyPrefix`]).
const REPLY: HandlerId = HandlerId::new(2);
/// Finish credit returned home (prefix: [`CreditPrefix`]).
const CREDIT: HandlerId = HandlerId::new(3);
/// Place 0's main has returned and its root finish is complete: exit.
const SHUTDOWN: HandlerId = HandlerId::new(4);
/// For the benchmark only: answers a raw `u64` with the same value to [`ECHO_REPLY`] at the
/// sender, straight from the handler (see [`bench_echo_round_trip`]).
const ECHO: HandlerId = HandlerId::new(5);
/// For the benchmark only: an echo came back; counted in [`ECHOES`].
const ECHO_REPLY: HandlerId = HandlerId::new(6);
/// A value on a channel, to its receiving place (prefix: `channel::wire::DataPrefix`).
pub(crate) const CHANNEL_DATA: HandlerId = HandlerId::new(7);
/// Credit back to a channel's sending place, or the news that its receiver was dropped
/// (prefix: `channel::wire::CreditPrefix`).
pub(crate) const CHANNEL_CREDIT: HandlerId = HandlerId::new(8);
/// An end of a channel went away, to its receiving place (prefix:
/// `channel::wire::ClosePrefix`).
pub(crate) const CHANNEL_CLOSE: HandlerId = HandlerId::new(9);

/// Echoes that came back to this place.
static ECHOES: AtomicU64 = AtomicU64::new(0);

/// How often idle workers look for places that died.
const FAILURE_CHECK: Duration = Duration::from_millis(5);

static RUNTIME: OnceLock<Arc<Runtime>> = OnceLock::new();

/// What place 0's main ended with: its own result, inside the root finish's.
type MainOutcome<E> = Option<Result<std::result::Result<(), E>>>;

/// The runtime of this place, or [`Error::NotInRuntime`] naming `what` was called.
pub(crate) fn runtime(what: &'static str) -> Result<Arc<Runtime>> {
    RUNTIME.get().cloned().ok_or(Error::NotInRuntime(what))
}

/// The runtime of this place, borrowed for the life of the process without touching its
/// reference count (for hot paths), or [`Error::NotInRuntime`] naming `what` was called.
pub(crate) fn runtime_ref(what: &'static str) -> Result<&'static Runtime> {
    RUNTIME
        .get()
        .map(|rt| &**rt)
        .ok_or(Error::NotInRuntime(what))
}

/// One place's runtime.
#[derive(Debug)]
pub(crate) struct Runtime {
    pub(crate) comm: Comm,
    pub(crate) scheduler: Arc<Scheduler>,
    registry: Registry,
    pub(crate) calls: PendingCalls,
    pub(crate) finishes: Finishes,
    pub(crate) next_call: AtomicU64,
    pub(crate) next_finish: AtomicU64,
    pub(crate) objects: crate::data::ObjectTable,
    pub(crate) credit_returns: CreditReturns,
    collectives: atoll_collectives::Engine,
    world: atoll_collectives::Team,
    pub(crate) channels: crate::channel::table::Channels,
    shutdown: AtomicBool,
    failures_seen: AtomicUsize,
    last_failure_check: Mutex<Instant>,
}

impl Runtime {
    pub(crate) fn send_reply<T: Payload>(
        &self,
        to: Place,
        prefix: ReplyPrefix,
        value: &T,
    ) -> atoll_comm::Result<()> {
        self.comm.send_framed(to, REPLY, &prefix.encode(), value)
    }

    pub(crate) fn send_credit(
        &self,
        home: Place,
        finish: u64,
        batch: &CreditReturn,
    ) -> atoll_comm::Result<()> {
        let prefix = CreditPrefix { finish };
        self.comm.send_framed(home, CREDIT, &prefix.encode(), batch)
    }

    fn on_call(self: &Arc<Self>, message: Message<'_>) -> atoll_comm::Result<()> {
        let from = message.from();
        let (raw, payload) = split(&message)?;
        let prefix = CallPrefix::decode(raw, self.comm.len())
            .map_err(|message| handler_error(from, CALL, message))?;
        match self.registry.get(prefix.function) {
            Some(entry) => {
                tracing::trace!(function = entry.name(), %from, "call");
                entry.invoke(self, from, prefix, payload);
            }
            None => self.fail_call(
                from,
                prefix,
                Failure {
                    place: self.comm.here(),
                    function: format!("<unknown remote function {:#x}>", prefix.function),
                    message: format!(
                        "{} has no remote function with id {:#x}: is every place running the same binary?",
                        self.comm.here(),
                        prefix.function
                    ),
                },
            ),
        }
        Ok(())
    }

    fn on_reply(self: &Arc<Self>, message: Message<'_>) -> atoll_comm::Result<()> {
        let (raw, payload) = split(&message)?;
        self.reply_arrived(ReplyPrefix::decode(raw), payload);
        Ok(())
    }

    fn on_credit(&self, message: Message<'_>) -> atoll_comm::Result<()> {
        let (raw, payload) = split(&message)?;
        let prefix = CreditPrefix::decode(raw);
        let batch = payload.deserialize::<CreditReturn>()?;
        self.finishes.credits_returned(prefix.finish, batch);
        Ok(())
    }

    /// What a worker does whenever it finds no task: send coalesced credit home, and look for
    /// places that died.
    fn on_idle(&self) {
        flush_credit(self);
        self.check_failures();
    }

    /// Fails what waits on places that died since the last look (rate-limited; cheap).
    fn check_failures(&self) {
        // Look at the clock only every so many idle polls, and at the failed places only every
        // FAILURE_CHECK: an idle poll must stay cheap.
        thread_local! {
            static POLLS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
        }
        if POLLS.with(|p| {
            p.set(p.get().wrapping_add(1));
            p.get() % 256 != 0
        }) {
            return;
        }
        {
            let mut last = self
                .last_failure_check
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if last.elapsed() < FAILURE_CHECK {
                return;
            }
            *last = Instant::now();
        }
        let failed = self.comm.failed_places();
        if failed.len() > self.failures_seen.swap(failed.len(), Ordering::AcqRel) {
            for place in failed {
                self.fail_calls_to(place);
                self.channels.fail_place(place);
            }
            self.finishes.wake_all();
            self.collectives.wake_all();
        }
    }
}

fn split<'a>(message: &Message<'a>) -> atoll_comm::Result<(&'a [u8], Message<'a>)> {
    message.split_prefix(PREFIX).ok_or_else(|| {
        handler_error(
            message.from(),
            message.handler(),
            "message shorter than its prefix".into(),
        )
    })
}

fn handler_error(from: Place, handler: HandlerId, message: String) -> atoll_comm::Error {
    atoll_comm::Error::Handler {
        from,
        handler: handler.get(),
        message,
    }
}

fn with_runtime(run: impl Fn(&Arc<Runtime>) -> atoll_comm::Result<()>) -> atoll_comm::Result<()> {
    match RUNTIME.get() {
        Some(rt) => run(rt),
        None => Err(atoll_comm::Error::Bootstrap {
            reason: "a runtime message arrived before the runtime started".into(),
        }),
    }
}

/// Starts the runtime of this place and runs `main` at place 0 inside a root `finish`; every
/// other place serves remote activities. Returns when place 0's main has returned and every
/// activity it started has ended, with the process's exit status (`#[atoll::main]` calls it).
///
/// Outside any launcher this process becomes the local launcher first: it starts
/// `ATOLL_PLACES` copies of the program and exits with the job's status (never returning).
pub fn run<F, Fut, E>(main: F) -> ExitCode
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    match start_and_run(main) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("atoll: {error}");
            ExitCode::FAILURE
        }
    }
}

fn start_and_run<F, Fut, E>(main: F) -> Result<ExitCode>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let registry = Registry::collect()
        .map_err(|reason| Error::Comm(atoll_comm::Error::Bootstrap { reason }))?;
    let collectives = atoll_collectives::Engine::new();
    let comm = collectives
        .register(CommBuilder::new())
        .handler(CALL, |_, message| with_runtime(|rt| rt.on_call(message)))
        .handler(REPLY, |_, message| with_runtime(|rt| rt.on_reply(message)))
        .handler(CREDIT, |_, message| {
            with_runtime(|rt| rt.on_credit(message))
        })
        .handler(CHANNEL_DATA, |_, message| {
            with_runtime(|rt| rt.channels.on_data(rt, message))
        })
        .handler(CHANNEL_CREDIT, |_, message| {
            with_runtime(|rt| rt.channels.on_credit(rt, message))
        })
        .handler(CHANNEL_CLOSE, |_, message| {
            with_runtime(|rt| rt.channels.on_close(rt, message))
        })
        .handler(ECHO, |comm, message| {
            let value = message.access::<u64>()?.to_native();
            comm.send(message.from(), ECHO_REPLY, &value)
        })
        .handler(ECHO_REPLY, |_, _| {
            ECHOES.fetch_add(1, Ordering::Release);
            Ok(())
        })
        .handler(SHUTDOWN, |_, _| {
            with_runtime(|rt| {
                rt.shutdown.store(true, Ordering::Release);
                rt.scheduler.stop();
                Ok(())
            })
        })
        .init()?;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let workers = comm
        .config()
        .workers
        .unwrap_or_else(|| (cores / comm.len()).max(1));
    let (local_rank, local_size) = comm.local_rank();
    let placement = if comm.config().pin {
        crate::affinity::plan(
            &crate::affinity::allowed_cpus(),
            local_rank,
            local_size,
            workers,
        )
    } else {
        vec![None; workers]
    };
    let (scheduler, mut deques) = Scheduler::new(comm.clone(), placement);
    let rt = Arc::new(Runtime {
        comm: comm.clone(),
        scheduler: scheduler.clone(),
        registry,
        calls: PendingCalls::default(),
        finishes: Finishes::default(),
        next_call: AtomicU64::new(1),
        next_finish: AtomicU64::new(0),
        objects: crate::data::ObjectTable::default(),
        credit_returns: CreditReturns::default(),
        world: collectives.world(&comm),
        collectives,
        channels: Default::default(),
        shutdown: AtomicBool::new(false),
        failures_seen: AtomicUsize::new(0),
        last_failure_check: Mutex::new(Instant::now()),
    });
    if RUNTIME.set(rt.clone()).is_err() {
        return Err(Error::Comm(atoll_comm::Error::Bootstrap {
            reason: "the runtime was started twice in one process".into(),
        }));
    }
    let main_deque = deques.remove(0);
    let threads: Vec<_> = deques
        .into_iter()
        .enumerate()
        .map(|(i, deque)| {
            let (scheduler, rt) = (scheduler.clone(), rt.clone());
            std::thread::Builder::new()
                .name(format!("atoll-worker-{}", i + 1))
                .spawn(move || scheduler.work(i + 1, deque, || false, || rt.on_idle()))
        })
        .collect::<std::io::Result<_>>()
        .map_err(|source| atoll_comm::Error::Io {
            what: "starting worker threads".into(),
            source,
        })?;
    let code = if comm.here().index() == 0 {
        let outcome: Arc<Mutex<MainOutcome<E>>> = Arc::new(Mutex::new(None));
        let slot = outcome.clone();
        let done = Arc::new(AtomicBool::new(false));
        let finished = done.clone();
        let notifier = comm.clone();
        scheduler.spawn(async move {
            let result = finish(main()).await;
            *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(result);
            finished.store(true, Ordering::Release);
            notifier.notify();
        });
        scheduler.work(
            0,
            main_deque,
            || done.load(Ordering::Acquire),
            || rt.on_idle(),
        );
        for place in comm.places().skip(1) {
            if !comm.is_failed(place) {
                comm.send(place, SHUTDOWN, &())?;
            }
        }
        let result = outcome.lock().unwrap_or_else(|p| p.into_inner()).take();
        match result {
            Some(Ok(Ok(()))) => ExitCode::SUCCESS,
            Some(Ok(Err(error))) => {
                eprintln!("atoll: main returned an error: {error}");
                ExitCode::FAILURE
            }
            Some(Err(error)) => {
                eprintln!("atoll: {error}");
                ExitCode::FAILURE
            }
            None => ExitCode::FAILURE,
        }
    } else {
        scheduler.work(
            0,
            main_deque,
            || rt.shutdown.load(Ordering::Acquire),
            || rt.on_idle(),
        );
        ExitCode::SUCCESS
    };
    // Everything this place sent is taken before it exits; then the workers stop.
    let flushed = comm.flush();
    // Channel values are not part of any finish: a value sent to a place that has nothing left
    // to flush would stay in its inbox, and its sender's flush would wait for a place that
    // exited. So every place goes on taking messages until all have flushed. (It fails at once
    // if a place died; the flush above has reported that.)
    if let Err(error) = comm.bootstrap_barrier() {
        tracing::debug!(%error, "the shutdown barrier failed");
    }
    // The runtime lives in a static, so its `Comm` is never dropped: leave the job here (an
    // external launcher takes a place that exits without PMI finalize for a failed one).
    if let Err(error) = comm.finalize_bootstrap() {
        tracing::debug!(%error, "leaving the bootstrap failed");
    }
    scheduler.stop();
    for thread in threads {
        let _ = thread.join();
    }
    flushed?;
    Ok(code)
}

/// For the benchmark: the bare active-message round trip under the runtime, through the very
/// `Comm` the runtime of this place uses. Sends `rounds` 8-byte messages to `to`, one at a
/// time; the handler at `to` answers each from the handler itself (no activity, no task), and
/// the answer's handler here counts it. Returns the time all rounds took.
///
/// Blocks the calling thread, which delivers this place's messages while it waits (as
/// `Comm::wait_until` does): call it from one activity at a time, with nothing else in flight.
/// Fails with [`Error::PlaceFailed`] if `to` dies meanwhile.
pub fn bench_echo_round_trip(to: Place, rounds: u64) -> Result<Duration> {
    let rt = runtime("__bench_echo_round_trip")?;
    let start = Instant::now();
    for round in 0..rounds {
        let answered = ECHOES.load(Ordering::Acquire) + 1;
        rt.comm.send(to, ECHO, &round)?;
        let (mut polls, mut failed) = (0u32, false);
        rt.comm.wait_until(|| {
            if ECHOES.load(Ordering::Acquire) >= answered {
                return true;
            }
            // Looking for failed places takes a lock: only every few thousand polls.
            polls = polls.wrapping_add(1);
            failed = polls % 4096 == 0 && rt.comm.is_failed(to);
            failed
        })?;
        if failed {
            return Err(Error::PlaceFailed(to));
        }
    }
    Ok(start.elapsed())
}

/// This place.
///
/// # Panics
/// Outside the runtime.
pub fn here() -> Place {
    match runtime("here()") {
        Ok(rt) => rt.comm.here(),
        Err(error) => panic!("{error}"),
    }
}

/// The number of places of the job.
///
/// # Panics
/// Outside the runtime.
pub fn num_places() -> usize {
    match runtime("num_places()") {
        Ok(rt) => rt.comm.len(),
        Err(error) => panic!("{error}"),
    }
}

/// The team of every place of the job, for collectives (`use atoll::prelude::*` brings
/// [`Collectives`](atoll_collectives::Collectives) into scope). Every place calls a team's
/// collectives in the same order: typically from one activity per place, started on every
/// place with `async_at!` inside a `finish`.
///
/// ```
/// use atoll::prelude::*;
///
/// #[atoll::remote]
/// async fn step(round: u64) {
///     let world = world();
///     let mine = here().index() as u64 + round;
///     // A failed collective panics here, and the `finish` below reports it.
///     let total = world.allreduce(mine, op::Sum).await.expect("allreduce");
///     let n = num_places() as u64;
///     assert_eq!(total, n * (n - 1) / 2 + n * round);
///     world.barrier().await.expect("barrier");
/// }
///
/// #[atoll::main]
/// async fn main() -> atoll::Result<()> {
///     finish(async {
///         for place in places() {
///             async_at!(place, step(1));
///         }
///     })
///     .await
/// }
/// ```
///
/// # Panics
/// Outside the runtime.
pub fn world() -> atoll_collectives::Team {
    match runtime("world()") {
        Ok(rt) => rt.world.clone(),
        Err(error) => panic!("{error}"),
    }
}

/// Every place of the job, in order.
///
/// # Panics
/// Outside the runtime.
pub fn places() -> impl Iterator<Item = Place> {
    (0..num_places()).map(Place::new)
}
