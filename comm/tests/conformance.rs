//! The comm conformance suite: one program, run unchanged against every provider
//! (`ATOLL_PROVIDER`), at 2, 3 and 8 places, with and without chaos mode.
//!
//! The test binary is both the driver and the place program: run by `cargo test`, it starts
//! one job per (case, place count, chaos) through the local launcher (itself, with
//! `ATOLL_CONFORMANCE_CASE` set); each place of the job runs the case and exits non-zero on
//! any mismatch. Under an external launcher (`mpirun ... conformance` with
//! `ATOLL_CONFORMANCE_CASE=all`) the same binary runs the cases directly.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use atoll_comm::{Comm, CommBuilder, Error, HandlerId, Place, RawRecord};
use atoll_testkit::{exit_code, Suite};

const CASES: &[&str] = &[
    "all_to_all",
    "ordering",
    "sizes",
    "rma",
    "atomics",
    "barrier",
    "bad_input",
    "handler_panic",
];

const SUITE: Suite = Suite::spmd("ATOLL_CONFORMANCE_CASE").chaos_seed("7");

fn main() -> ExitCode {
    let place = |case: String| exit_code(&format!("conformance case {case}"), place_main(&case));
    SUITE.main(place, || {
        let mut trials = Vec::new();
        for places in [2, 3, 8] {
            for chaos in [false, true] {
                trials.extend(CASES.iter().map(|&case| SUITE.trial(case, places, chaos)));
            }
        }
        trials
    })
}

type CaseResult = Result<(), String>;

fn place_main(case: &str) -> CaseResult {
    let state = Arc::new(State::default());
    let comm = build(state.clone()).map_err(|e| format!("init: {e}"))?;
    let cases: Vec<&str> = if case == "all" {
        CASES.to_vec()
    } else {
        vec![case]
    };
    // The PANICKING handler's panics are expected: keep them out of the output.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let expected = info
            .payload()
            .downcast_ref::<String>()
            .is_some_and(|m| m.starts_with(EXPECTED_PANIC));
        if !expected {
            default_hook(info);
        }
    }));
    for case in cases {
        state.reset();
        // A neighbour may already send while this place waits here: a barrier delivers
        // messages, so the expected panic of `handler_panic` can surface in it.
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| comm.bootstrap_barrier())) {
            Ok(result) => result.map_err(|e| e.to_string())?,
            Err(_) => {
                state.panics.fetch_add(1, Ordering::SeqCst);
            }
        }
        match case {
            "all_to_all" => all_to_all(&comm, &state)?,
            "ordering" => ordering(&comm, &state)?,
            "sizes" => sizes(&comm, &state)?,
            "rma" => rma(&comm)?,
            "atomics" => atomics(&comm)?,
            "barrier" => barrier(&comm)?,
            "bad_input" => bad_input(&comm, &state)?,
            "handler_panic" => handler_panic(&comm, &state)?,
            other => return Err(format!("unknown case {other:?}; cases: {CASES:?}")),
        }
        comm.flush().map_err(|e| e.to_string())?;
        comm.bootstrap_barrier().map_err(|e| e.to_string())?;
        println!("{case}: ok");
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------
// Handlers and what they record

const SEQUENCED: HandlerId = HandlerId::new(1);
const BYTES: HandlerId = HandlerId::new(2);
const VALIDATING: HandlerId = HandlerId::new(3);
const PANICKING: HandlerId = HandlerId::new(4);
const EXPECTED_PANIC: &str = "handler asked to panic";

/// A message of the exchange cases: who sent it, its sequence number from that sender, and a
/// body derived from both.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug)]
struct Sequenced {
    from: u32,
    seq: u64,
    body: Vec<u64>,
}

fn body(from: u32, seq: u64) -> Vec<u64> {
    (0..(seq % 7))
        .map(|i| u64::from(from) * 1_000_003 + seq * 31 + i)
        .collect()
}

#[derive(Default)]
struct State {
    /// Next expected sequence number per sender.
    next_seq: Mutex<HashMap<u32, u64>>,
    received: AtomicUsize,
    panics: AtomicUsize,
    failures: Mutex<Vec<String>>,
    bytes_received: AtomicU64,
}

impl State {
    fn reset(&self) {
        lock(&self.next_seq).clear();
        self.received.store(0, Ordering::SeqCst);
        self.panics.store(0, Ordering::SeqCst);
        self.bytes_received.store(0, Ordering::SeqCst);
    }

    fn fail(&self, message: String) {
        lock(&self.failures).push(message);
    }

    fn check(&self) -> CaseResult {
        let failures = lock(&self.failures);
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures.join("; "))
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn build(state: Arc<State>) -> atoll_comm::Result<Comm> {
    let seq_state = state.clone();
    let bytes_state = state.clone();
    let validating_state = state;
    CommBuilder::new()
        .handler(SEQUENCED, move |_comm, msg| {
            let m = msg.access::<Sequenced>()?;
            let from = m.from.to_native();
            if from as usize != msg.from().index() {
                seq_state.fail(format!(
                    "message says from {from}, came from {}",
                    msg.from()
                ));
            }
            let seq = m.seq.to_native();
            let mut next = lock(&seq_state.next_seq);
            let expected = next.entry(from).or_insert(0);
            if seq != *expected {
                seq_state.fail(format!(
                    "from place {from}: got seq {seq}, expected {expected} (FIFO broken)"
                ));
            }
            *expected = seq + 1;
            let want = body(from, seq);
            if m.body.len() != want.len()
                || m.body.iter().zip(&want).any(|(a, b)| a.to_native() != *b)
            {
                seq_state.fail(format!("from place {from}: seq {seq} has a wrong body"));
            }
            seq_state.received.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .handler(BYTES, move |_comm, msg| {
            let data = msg.access::<Vec<u8>>()?;
            let len = data.len();
            let seed = msg.from().index() as u8;
            if let Some(i) = data
                .iter()
                .enumerate()
                .position(|(i, b)| *b != pattern(seed, len, i))
            {
                bytes_state.fail(format!(
                    "{len}-byte payload from {}: wrong byte at {i}",
                    msg.from()
                ));
            }
            bytes_state
                .bytes_received
                .fetch_add(len as u64, Ordering::SeqCst);
            bytes_state.received.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .handler(VALIDATING, move |_comm, msg| {
            let values = msg.access::<Vec<u64>>()?;
            if values.iter().map(|v| v.to_native()).sum::<u64>() != 42 {
                validating_state.fail("validated payload has the wrong sum".into());
            }
            validating_state.received.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .handler(PANICKING, move |_comm, msg| {
            let value = msg.deserialize::<u64>()?;
            panic!("{EXPECTED_PANIC} on {value}");
        })
        .init()
}

fn pattern(seed: u8, len: usize, i: usize) -> u8 {
    (i as u8)
        .wrapping_mul(31)
        .wrapping_add(seed)
        .wrapping_add(len as u8)
}

fn wait_for(comm: &Comm, state: &State, expected: usize) -> CaseResult {
    comm.wait_until(|| state.received.load(Ordering::SeqCst) >= expected)
        .map_err(|e| e.to_string())?;
    let received = state.received.load(Ordering::SeqCst);
    if received != expected {
        return Err(format!("received {received} messages, expected {expected}"));
    }
    state.check()
}

// ------------------------------------------------------------------------------------------
// Cases

/// Every place sends to every place (itself included); content and per-sender order checked.
fn all_to_all(comm: &Comm, state: &State) -> CaseResult {
    const PER_PAIR: u64 = 300;
    let here = comm.here().index() as u32;
    for seq in 0..PER_PAIR {
        for to in comm.places() {
            let m = Sequenced {
                from: here,
                seq,
                body: body(here, seq),
            };
            comm.send(to, SEQUENCED, &m).map_err(|e| e.to_string())?;
        }
    }
    wait_for(comm, state, PER_PAIR as usize * comm.len())
}

/// A long stream from each place to the next wraps every ring many times, in order.
fn ordering(comm: &Comm, state: &State) -> CaseResult {
    const STREAM: u64 = 30_000;
    let here = comm.here().index() as u32;
    let next = Place::new((comm.here().index() + 1) % comm.len());
    for seq in 0..STREAM {
        let m = Sequenced {
            from: here,
            seq,
            body: body(here, seq),
        };
        comm.send(next, SEQUENCED, &m).map_err(|e| e.to_string())?;
    }
    wait_for(comm, state, STREAM as usize)
}

/// Payloads from 1 B to 16 MiB, around the eager threshold and far above it.
fn sizes(comm: &Comm, state: &State) -> CaseResult {
    let eager = comm.config().eager_max;
    let sizes = [
        0,
        1,
        100,
        4096,
        eager - 64,
        eager - 8,
        eager,
        eager + 1,
        64 << 10,
        1 << 20,
        16 << 20,
    ];
    let next = Place::new((comm.here().index() + 1) % comm.len());
    let seed = comm.here().index() as u8;
    for len in sizes {
        let data: Vec<u8> = (0..len).map(|i| pattern(seed, len, i)).collect();
        comm.send(next, BYTES, &data)
            .map_err(|e| format!("{len} bytes: {e}"))?;
    }
    wait_for(comm, state, sizes.len())?;
    let total: usize = sizes.iter().sum();
    let got = state.bytes_received.load(Ordering::SeqCst) as usize;
    if got != total {
        return Err(format!("received {got} payload bytes, expected {total}"));
    }
    Ok(())
}

/// Put and get, small and large, between neighbours; bounds are checked.
fn rma(comm: &Comm) -> CaseResult {
    const CHUNK: usize = 64 << 10;
    const BIG: usize = 16 << 20;
    let n = comm.len();
    let here = comm.here().index();
    let region = comm
        .alloc_region(CHUNK * n + BIG)
        .map_err(|e| e.to_string())?;
    let keys = comm
        .allgather_keys(region.key())
        .map_err(|e| e.to_string())?;
    let next = &keys[(here + 1) % n];
    // Every place writes its chunk into its neighbour's region, plus a large block from place 0.
    let chunk: Vec<u8> = (0..CHUNK).map(|i| pattern(here as u8, CHUNK, i)).collect();
    comm.put(next, here * CHUNK, &chunk)
        .wait()
        .map_err(|e| e.to_string())?;
    if here == 0 {
        let big: Vec<u8> = (0..BIG).map(|i| pattern(7, BIG, i)).collect();
        comm.put(next, n * CHUNK, &big)
            .wait()
            .map_err(|e| e.to_string())?;
    }
    comm.bootstrap_barrier().map_err(|e| e.to_string())?;
    let prev = (here + n - 1) % n;
    let mut mine = vec![0u8; CHUNK];
    region
        .read(prev * CHUNK, &mut mine)
        .map_err(|e| e.to_string())?;
    if mine
        .iter()
        .enumerate()
        .any(|(i, b)| *b != pattern(prev as u8, CHUNK, i))
    {
        return Err(format!("chunk put by place {prev} is wrong"));
    }
    // Read back what this place wrote, with a get.
    let back = comm
        .get(next, here * CHUNK, CHUNK)
        .wait()
        .map_err(|e| e.to_string())?;
    if back != chunk {
        return Err("get returned other bytes than were put".into());
    }
    if here == 1 % n {
        let big = comm
            .get(&keys[here], n * CHUNK, BIG)
            .wait()
            .map_err(|e| e.to_string())?;
        if big
            .iter()
            .enumerate()
            .any(|(i, b)| *b != pattern(7, BIG, i))
        {
            return Err("16 MiB block is wrong".into());
        }
    }
    // Out of bounds is an error, not a write past the region.
    match comm.put(next, next.len() - 4, &[0u8; 8]).wait() {
        Err(Error::OutOfBounds { .. }) => {}
        other => return Err(format!("out-of-bounds put gave {other:?}")),
    }
    comm.bootstrap_barrier().map_err(|e| e.to_string())?;
    Ok(())
}

/// Concurrent fetch_add from all places sums exactly; compare_swap has one winner.
/// The bootstrap barrier holds every place until all have entered: in each round every place
/// adds 1 to a counter at place 0, then, past a barrier, reads it and must see every place's
/// add of the round (a barrier that lets a place through early shows a smaller count; the
/// second barrier keeps the next round's adds away from this round's reads).
fn barrier(comm: &Comm) -> CaseResult {
    const ROUNDS: u64 = 100;
    let region = comm.alloc_region(8).map_err(|e| e.to_string())?;
    let keys = comm
        .allgather_keys(region.key())
        .map_err(|e| e.to_string())?;
    let counter = &keys[0];
    let n = comm.len() as u64;
    for round in 1..=ROUNDS {
        comm.fetch_add(counter, 0, 1)
            .wait()
            .map_err(|e| e.to_string())?;
        comm.bootstrap_barrier().map_err(|e| e.to_string())?;
        let seen = comm
            .fetch_add(counter, 0, 0)
            .wait()
            .map_err(|e| e.to_string())?;
        if seen != round * n {
            return Err(format!(
                "after barrier {round} the counter is {seen}, expected {}: a place left the \
                 barrier before every place had entered it",
                round * n
            ));
        }
        comm.bootstrap_barrier().map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn atomics(comm: &Comm) -> CaseResult {
    const ADDS: u64 = 20_000;
    let region = comm.alloc_region(64).map_err(|e| e.to_string())?;
    let keys = comm
        .allgather_keys(region.key())
        .map_err(|e| e.to_string())?;
    let target = &keys[0];
    let here = comm.here().index() as u64;
    for _ in 0..ADDS {
        comm.fetch_add(target, 0, 1)
            .wait()
            .map_err(|e| e.to_string())?;
    }
    // A CAS loop increment of the second word.
    for _ in 0..ADDS / 10 {
        let mut current = comm.get(target, 8, 8).wait().map_err(|e| e.to_string())?;
        loop {
            let old = u64::from_le_bytes(current.as_slice().try_into().map_err(|_| "short get")?);
            let seen = comm
                .compare_swap(target, 8, old, old + 1)
                .wait()
                .map_err(|e| e.to_string())?;
            if seen == old {
                break;
            }
            current = seen.to_le_bytes().to_vec();
        }
    }
    // One winner takes the third word.
    let seen = comm
        .compare_swap(target, 16, 0, here + 1)
        .wait()
        .map_err(|e| e.to_string())?;
    let won = u64::from(seen == 0);
    comm.fetch_add(target, 24, won)
        .wait()
        .map_err(|e| e.to_string())?;
    match comm.fetch_add(target, 3, 1).wait() {
        Err(Error::Misaligned { .. }) => {}
        other => return Err(format!("misaligned fetch_add gave {other:?}")),
    }
    comm.bootstrap_barrier().map_err(|e| e.to_string())?;
    if comm.here().index() == 0 {
        let n = comm.len() as u64;
        let word = |i: usize| region.atomic_u64(i * 8).map(|a| a.load(Ordering::SeqCst));
        let (sum, cas_sum, winner, winners) = (word(0), word(1), word(2), word(3));
        let (sum, cas_sum, winner, winners) = (
            sum.map_err(|e| e.to_string())?,
            cas_sum.map_err(|e| e.to_string())?,
            winner.map_err(|e| e.to_string())?,
            winners.map_err(|e| e.to_string())?,
        );
        if sum != n * ADDS {
            return Err(format!("fetch_add sum {sum}, expected {}", n * ADDS));
        }
        if cas_sum != n * (ADDS / 10) {
            return Err(format!(
                "compare_swap increments {cas_sum}, expected {}",
                n * (ADDS / 10)
            ));
        }
        if winners != 1 || winner == 0 || winner > n {
            return Err(format!(
                "compare_swap race: {winners} winners, word {winner}"
            ));
        }
    }
    comm.bootstrap_barrier().map_err(|e| e.to_string())?;
    Ok(())
}

/// Garbage and truncated records injected into a place's inbox are rejected with the typed
/// error naming the cause; the messages around them are all delivered.
fn bad_input(comm: &Comm, state: &State) -> CaseResult {
    let n = comm.len();
    let here = comm.here().index();
    let victim = Place::new((here + 1) % n);
    let good =
        rkyv::to_bytes::<rkyv::rancor::BoxedError>(&vec![40u64, 2]).map_err(|e| e.to_string())?;
    let me = here as u32;
    let records: Vec<(u8, u32, u16, Vec<u8>)> = vec![
        (1, me, VALIDATING.get(), vec![0xAB; 13]), // garbage
        (1, me, VALIDATING.get(), good[..good.len() - 9].to_vec()), // truncated
        (1, me, 999, good.to_vec()),               // unknown handler
        (1, n as u32 + 5, VALIDATING.get(), good.to_vec()), // impossible sender
        (77, me, VALIDATING.get(), good.to_vec()), // unknown kind
        (2, me, VALIDATING.get(), vec![0xFF; 16]), // rendezvous outside memory
    ];
    comm.send(victim, VALIDATING, &vec![40u64, 2])
        .map_err(|e| e.to_string())?;
    for (kind, src, handler, payload) in &records {
        let record = RawRecord {
            kind: *kind,
            src: *src,
            handler: *handler,
            payload,
        };
        comm.inject_raw(victim, record).map_err(|e| e.to_string())?;
    }
    comm.send(victim, VALIDATING, &vec![40u64, 2])
        .map_err(|e| e.to_string())?;
    // Receive: two good messages around six bad ones, each bad one reported by its own error,
    // either by `progress` itself or, when a wait (such as the barrier before this case)
    // delivered it, through `take_errors`.
    let mut errors = Vec::new();
    while state.received.load(Ordering::SeqCst) < 2 || errors.len() < records.len() {
        errors.extend(comm.take_errors());
        match comm.progress() {
            Ok(_) => std::thread::yield_now(),
            Err(e) => errors.push(e),
        }
        if errors.len() > records.len() {
            return Err(format!("more errors than bad records: {errors:?}"));
        }
    }
    let kinds: Vec<&str> = errors
        .iter()
        .map(|e| match e {
            Error::InvalidPayload { .. } => "invalid",
            Error::UnknownHandler { .. } => "unknown-handler",
            Error::PlaceOutOfRange { .. } => "out-of-range",
            Error::Malformed { .. } => "malformed",
            _ => "other",
        })
        .collect();
    let expected = [
        "invalid",
        "invalid",
        "unknown-handler",
        "out-of-range",
        "malformed",
        "malformed",
    ];
    if kinds != expected {
        return Err(format!(
            "errors {kinds:?}, expected {expected:?}: {errors:?}"
        ));
    }
    for e in &errors {
        let text = e.to_string();
        if !text.contains("place") && !text.contains("handler") {
            return Err(format!("error does not name its cause: {text}"));
        }
    }
    if state.received.load(Ordering::SeqCst) != 2 {
        return Err("the good messages around the bad ones were not both delivered".into());
    }
    state.check()
}

/// A handler that panics: the panic reaches the caller of `progress`, the message is consumed
/// (never delivered again), and the messages around it are delivered exactly once.
fn handler_panic(comm: &Comm, state: &State) -> CaseResult {
    let victim = Place::new((comm.here().index() + 1) % comm.len());
    comm.send(victim, VALIDATING, &vec![40u64, 2])
        .map_err(|e| e.to_string())?;
    comm.send(victim, PANICKING, &7u64)
        .map_err(|e| e.to_string())?;
    comm.send(victim, VALIDATING, &vec![40u64, 2])
        .map_err(|e| e.to_string())?;
    let poll = || -> CaseResult {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| comm.progress())) {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("unexpected error {e}")),
            Err(_) => {
                state.panics.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        }
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while state.received.load(Ordering::SeqCst) < 2 && std::time::Instant::now() < deadline {
        poll()?;
        std::thread::yield_now();
    }
    // A redelivered panicking message would show up now.
    for _ in 0..1000 {
        poll()?;
    }
    let panics = state.panics.load(Ordering::SeqCst);
    let received = state.received.load(Ordering::SeqCst);
    if panics != 1 || received != 2 {
        return Err(format!(
            "{panics} panics and {received} deliveries; expected 1 and 2"
        ));
    }
    state.check()
}
