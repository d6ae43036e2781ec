//! Channels through real processes: FIFO order of 10^5 values (eager and rendezvous mixed;
//! 2x10^4 under chaos), `select!` over receivers from 3 places, a slow receiver holding its
//! sender at the window, drop semantics, ends that travel inside `at!` arguments and inside
//! channel values, blocking forms, killed peers; the main cases also under chaos.
//!
//! The test binary is both the driver (run by `cargo test`: one job per case through the local
//! launcher) and the place program (with `ATOLL_CH_CASE` set).

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use atoll::channel::{channel, channel_with_capacity, Receiver, Sender, TryRecvError};
use atoll::prelude::*;
use atoll::Error;
use atoll_testkit::{runtime_place, Suite};
use futures::{SinkExt, StreamExt, TryStreamExt};

const SUITE: Suite = Suite::runtime("ATOLL_CH_CASE").chaos_seed("23");

fn main() -> ExitCode {
    let place = runtime_place!(fifo, select, window, drops, pairs, blocking, killed);
    SUITE.main(place, || {
        let dead = &[
            "place 1 was killed by signal 9",
            "place 2 was killed by signal 9",
        ];
        let mut trials = vec![SUITE.failure_trial("killed", 3, 1, dead)];
        for (case, places) in [
            ("fifo", 2),
            ("select", 4),
            ("window", 2),
            ("drops", 3),
            ("pairs", 3),
        ] {
            trials.extend([false, true].map(|chaos| SUITE.trial(case, places, chaos)));
        }
        trials.push(SUITE.trial("blocking", 2, false));
        trials
    })
}

/// The error as text (the cases report failures as strings).
fn s(error: Error) -> String {
    error.to_string()
}

/// `result`'s value; a failure in a remote function panics, which its finish reports.
fn must<T>(result: atoll::Result<T>, what: &str) -> T {
    match result {
        Ok(value) => value,
        Err(error) => panic!("{what} at {}: {error}", here()),
    }
}

/// Gives the other tasks of this place (and its transport) a turn.
async fn yield_now() {
    let mut yielded = false;
    futures::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await
}

// ------------------------------------------------------------------------------------------
// FIFO: 10^5 values, a few of them above the eager threshold (rendezvous) among small ones

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, PartialEq)]
struct Item {
    seq: u64,
    pad: Vec<u8>,
}

fn item(seq: u64) -> Item {
    let len = if seq % 1000 == 7 { 20_000 } else { seq % 48 };
    Item {
        seq,
        pad: (0..len).map(|i| ((seq + i) % 251) as u8).collect(),
    }
}

/// Sends `item(0..n)` on named channel `id` to `to`, with a window of `capacity`.
#[atoll::remote]
async fn send_items(to: Place, id: u64, n: u64, capacity: u64) {
    let mut tx = must(
        Sender::<Item>::with_capacity(to, id, capacity as usize),
        "Sender::with_capacity",
    );
    for seq in 0..n {
        must(tx.send(item(seq)).await, "send");
    }
}

/// Values of the FIFO case: 10^5; 2x10^4 under chaos, whose held rings slow every credit's
/// return (so that a loaded machine stays well within the job's time limit).
fn fifo_values() -> u64 {
    if std::env::var_os("ATOLL_CHAOS").is_some() {
        20_000
    } else {
        100_000
    }
}

async fn fifo() -> Result<(), String> {
    let fifo_values = fifo_values();
    let mut rx = Receiver::<Item>::new(Place::new(1), 1).map_err(s)?;
    async_at!(Place::new(1), send_items(here(), 1, fifo_values, 64));
    let mut expected = 0;
    while let Some(got) = rx.recv().await.map_err(s)? {
        if got != item(expected) {
            return Err(format!("value #{expected} came as #{}", got.seq));
        }
        expected += 1;
    }
    if expected != fifo_values {
        return Err(format!("{expected} values arrived of {fifo_values}"));
    }
    // The same over a small window: the credit path on every other value.
    let mut rx = Receiver::<Item>::new(Place::new(1), 1).map_err(s)?;
    async_at!(Place::new(1), send_items(here(), 1, 5_000, 2));
    let values: Vec<Item> = (&mut rx).try_collect().await.map_err(s)?;
    if values.len() != 5_000 || values.iter().enumerate().any(|(i, v)| *v != item(i as u64)) {
        return Err("the second opening of channel 1 lost or reordered values".into());
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------
// select! over receivers from 3 places

/// Sends `(here, 0..n)` on named channel `id` to `to`.
#[atoll::remote]
async fn send_tagged(to: Place, id: u64, n: u64) {
    let mut tx = must(Sender::<(u32, u64)>::new(to, id), "Sender::new");
    let me = here().index() as u32;
    for i in 0..n {
        must(tx.send((me, i)).await, "send");
    }
}

async fn select() -> Result<(), String> {
    const EACH: u64 = 3_000;
    let mut rx1 = Receiver::<(u32, u64)>::new(Place::new(1), 5).map_err(s)?;
    let mut rx2 = Receiver::<(u32, u64)>::new(Place::new(2), 5).map_err(s)?;
    let mut rx3 = Receiver::<(u32, u64)>::new(Place::new(3), 5).map_err(s)?;
    for p in 1..=3 {
        async_at!(Place::new(p), send_tagged(here(), 5, EACH));
    }
    let mut next = [0u64; 4];
    let mut interleavings = 0u64;
    let mut last = 0;
    loop {
        let got = futures::select! {
            v = rx1.next() => (1, v),
            v = rx2.next() => (2, v),
            v = rx3.next() => (3, v),
            complete => break,
        };
        let (channel, value) = match got {
            (_, None) => continue,
            (channel, Some(value)) => (channel, value.map_err(s)?),
        };
        let (from, i) = value;
        if from != channel || i != next[channel as usize] {
            return Err(format!(
                "channel from place {channel} gave {value:?}, expected ({channel}, {})",
                next[channel as usize]
            ));
        }
        next[channel as usize] += 1;
        if channel != last {
            interleavings += 1;
            last = channel;
        }
    }
    if next[1..] != [EACH; 3] {
        return Err(format!("values per channel: {:?}", &next[1..]));
    }
    println!("select: {interleavings} switches between channels");
    Ok(())
}

// ------------------------------------------------------------------------------------------
// A slow receiver holds its sender at the window

/// Values the flood has sent, and the most it ever had in flight.
static FLOOD_SENT: AtomicU64 = AtomicU64::new(0);
static FLOOD_MAX_IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

#[atoll::remote]
async fn flood(to: Place, id: u64, n: u64, capacity: u64) {
    let mut tx = must(
        Sender::<u64>::with_capacity(to, id, capacity as usize),
        "Sender::with_capacity",
    );
    for i in 0..n {
        must(tx.send(i).await, "send");
        FLOOD_SENT.fetch_add(1, Ordering::SeqCst);
        FLOOD_MAX_IN_FLIGHT.fetch_max(tx.in_flight(), Ordering::SeqCst);
    }
}

#[atoll::remote]
async fn flood_state() -> (u64, u64) {
    (
        FLOOD_SENT.load(Ordering::SeqCst),
        FLOOD_MAX_IN_FLIGHT.load(Ordering::SeqCst) as u64,
    )
}

async fn window() -> Result<(), String> {
    const CAP: usize = 8;
    const N: u64 = 2_000;
    let sender = Place::new(1);
    let mut rx = Receiver::<u64>::new(sender, 3).map_err(s)?;
    async_at!(sender, flood(here(), 3, N, CAP as u64));
    // Take nothing until the window is full...
    while rx.queued() < CAP {
        yield_now().await;
    }
    // ...and give the sender every chance to overrun it (a pause, not a timed assertion).
    std::thread::sleep(Duration::from_millis(50));
    for _ in 0..100 {
        yield_now().await;
    }
    let (sent, _) = at!(sender, flood_state()).await.map_err(s)?;
    if sent > CAP as u64 || rx.queued() != CAP {
        return Err(format!(
            "the sender got past its window of {CAP}: {sent} sent, {} buffered here",
            rx.queued()
        ));
    }
    // Then take slowly: what waits here never exceeds the window.
    let mut most = 0;
    for expected in 0..N {
        most = most.max(rx.queued());
        if rx.queued() > CAP {
            return Err(format!("{} values buffered, window {CAP}", rx.queued()));
        }
        match rx.recv().await.map_err(s)? {
            Some(value) if value == expected => {}
            other => return Err(format!("value #{expected} came as {other:?}")),
        }
        if expected % 16 == 0 {
            yield_now().await;
        }
    }
    if rx.recv().await.map_err(s)?.is_some() {
        return Err("a value after the last".into());
    }
    let (sent, max_in_flight) = at!(sender, flood_state()).await.map_err(s)?;
    if sent != N || max_in_flight > CAP as u64 || most > CAP {
        return Err(format!(
            "{sent} sent, {max_in_flight} in flight at most at the sender, {most} buffered at \
             most here (window {CAP})"
        ));
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------
// Drop semantics

/// Opens the receiving end of named channel `id` from `from` and drops it unread.
#[atoll::remote]
async fn open_and_drop(from: Place, id: u64) {
    drop(must(Receiver::<u64>::new(from, id), "Receiver::new"));
}

/// Sends `0..n` on named channel `id` to `to` (window `capacity`) and closes it.
#[atoll::remote]
async fn send_range(to: Place, id: u64, n: u64, capacity: u64) {
    let mut tx = must(
        Sender::<u64>::with_capacity(to, id, capacity as usize),
        "Sender::with_capacity",
    );
    for i in 0..n {
        must(tx.send(i).await, "send");
    }
    must(tx.close().await, "close");
}

async fn expect_range(rx: &mut Receiver<u64>, n: u64, what: &str) -> Result<(), String> {
    for i in 0..n {
        match rx.recv().await.map_err(s)? {
            Some(v) if v == i => {}
            other => return Err(format!("{what}: value #{i} came as {other:?}")),
        }
    }
    match rx.recv().await.map_err(s)? {
        None => Ok(()),
        Some(v) => Err(format!("{what}: {v} after the last value")),
    }
}

async fn drops() -> Result<(), String> {
    let (p1, p2) = (Place::new(1), Place::new(2));

    // A Sender dropped unused (away from its place): the receiver ends at once, and stays
    // ended.
    let (tx, mut rx) = channel::<u64>(p1, here()).map_err(s)?;
    drop(tx);
    if rx.recv().await.map_err(s)?.is_some() || rx.recv().await.map_err(s)?.is_some() {
        return Err("a channel whose sender was dropped unused gave a value".into());
    }
    if !futures::stream::FusedStream::is_terminated(&rx) {
        return Err("an ended receiver is not terminated".into());
    }

    // A Receiver dropped: the sender's sends fail, and do not hang at the window.
    let mut tx = Sender::<u64>::with_capacity(p1, 10, 4).map_err(s)?;
    at!(p1, open_and_drop(here(), 10)).await.map_err(s)?;
    let mut refused = None;
    for i in 0..100 {
        if let Err(error) = tx.send(i).await {
            refused = Some((i, error));
            break;
        }
    }
    match refused {
        Some((_, Error::ReceiverDropped(_))) => {}
        other => return Err(format!("sending to a dropped receiver gave {other:?}")),
    }
    drop(tx);

    // Values sent before the receiver exists are kept, in order, with the close.
    at!(p2, send_range(here(), 11, 5, 8)).await.map_err(s)?;
    let mut rx = Receiver::<u64>::new(p2, 11).map_err(s)?;
    expect_range(&mut rx, 5, "sent before the receiver existed").await?;

    // More than a window before the receiver exists: the sender waits for it.
    async_at!(p2, send_range(here(), 12, 50, 8));
    at!(p2, flood_state()).await.map_err(s)?;
    let mut rx = Receiver::<u64>::new(p2, 12).map_err(s)?;
    expect_range(
        &mut rx,
        50,
        "sent over a window before the receiver existed",
    )
    .await?;

    // The id can be used again: the next opening at each side pairs up.
    async_at!(p2, send_range(here(), 12, 3, 8));
    let mut rx = Receiver::<u64>::new(p2, 12).map_err(s)?;
    expect_range(&mut rx, 3, "the second opening of an id").await?;

    // A Receiver dropped with values waiting, its sender closing later: nothing breaks.
    let rx = Receiver::<u64>::new(p1, 13).map_err(s)?;
    async_at!(p1, send_range(here(), 13, 3, 8));
    while rx.queued() == 0 {
        yield_now().await;
    }
    drop(rx);
    Ok(())
}

// ------------------------------------------------------------------------------------------
// Ends that travel, misuse, loopback, try_recv, Stream/Sink combinators

/// Receives every value of `rx` here; returns (count, sum), or the error.
#[atoll::remote]
async fn collect(mut rx: Receiver<u64>) -> Result<(u64, u64), String> {
    let mut count = 0;
    let mut sum = 0;
    while let Some(v) = rx.recv().await.map_err(s)? {
        if v != count {
            return Err(format!("value #{count} came as {v}"));
        }
        count += 1;
        sum += v;
    }
    Ok((count, sum))
}

/// Sends `0..n` on `tx`, from here, with `SinkExt::send_all`.
#[atoll::remote]
async fn feed(mut tx: Sender<u64>, n: u64) -> Result<(), String> {
    let mut values = futures::stream::iter(0..n).map(Ok);
    tx.send_all(&mut values).await.map_err(s)
}

/// One pipeline stage: doubles what comes from `rx` into `tx`.
#[atoll::remote]
async fn double(rx: Receiver<u64>, tx: Sender<u64>) -> Result<(), String> {
    rx.map_ok(|v| v * 2).forward(tx).await.map_err(s)
}

/// Takes one channel end from `ends` and answers 42 on it.
#[atoll::remote]
async fn answer_on(mut ends: Receiver<Sender<u64>>) -> Result<(), String> {
    let mut reply = ends.recv().await.map_err(s)?.ok_or("no channel end came")?;
    reply.send(42).await.map_err(s)
}

async fn pairs() -> Result<(), String> {
    let (p1, p2) = (Place::new(1), Place::new(2));

    // Both halves made here, each sent to its place.
    let (tx, rx) = channel::<u64>(p1, p2).map_err(s)?;
    let (got, fed) = futures::join!(at!(p2, collect(rx)), at!(p1, feed(tx, 1000)));
    fed.map_err(s)??;
    if got.map_err(s)?? != (1000, 999 * 1000 / 2) {
        return Err("values lost between places 1 and 2".into());
    }

    // A stage between two travelling channels: here -> 1 -> here.
    let (to_stage, stage_in) = channel_with_capacity::<u64>(here(), p1, 16).map_err(s)?;
    let (stage_out, mut from_stage) = channel::<u64>(p1, here()).map_err(s)?;
    let stage = at!(p1, double(stage_in, stage_out));
    let mut to_stage = to_stage;
    let source = async move {
        let mut values = futures::stream::iter(0..500u64).map(Ok);
        to_stage.send_all(&mut values).await?;
        to_stage.close().await
    };
    let sink = async {
        let mut sum = 0;
        while let Some(v) = from_stage.try_next().await? {
            sum += v;
        }
        Ok::<u64, Error>(sum)
    };
    let (stage, source, sum) = futures::join!(stage, source, sink);
    stage.map_err(s)??;
    source.map_err(s)?;
    if sum.map_err(s)? != 2 * (499 * 500 / 2) {
        return Err("the stage lost values".into());
    }

    // A channel end sent over a channel.
    let (reply_end, mut replies) = channel::<u64>(p2, here()).map_err(s)?;
    let (mut ends, ends_at_2) = channel::<Sender<u64>>(here(), p2).map_err(s)?;
    ends.send(reply_end).await.map_err(s)?;
    at!(p2, answer_on(ends_at_2)).await.map_err(s)??;
    if replies.recv().await.map_err(s)? != Some(42) || replies.recv().await.map_err(s)?.is_some() {
        return Err("the answer on a channel end sent over a channel was lost".into());
    }

    // Misuse: an end used away from its place; an end in use sent elsewhere.
    let (mut tx, _rx) = channel::<u64>(p1, p2).map_err(s)?;
    match tx.send(1).await {
        Err(Error::ChannelElsewhere { .. }) => {}
        other => return Err(format!("a Sender used away from its place gave {other:?}")),
    }
    let (mut tx, rx) = channel::<u64>(here(), p1).map_err(s)?;
    tx.send(5).await.map_err(s)?;
    match at!(p2, feed(tx, 1)).await {
        Err(error) if error.to_string().contains("cannot move") => {}
        other => return Err(format!("moving a used Sender gave {other:?}")),
    }
    // That Sender was dropped in the failed call: its receiver (at place 1) gets 5, then None.
    match at!(p1, collect(rx)).await.map_err(s)? {
        Err(error) if error.contains("value #0 came as 5") => {}
        other => return Err(format!("the receiver of a dropped Sender gave {other:?}")),
    }

    // Loopback: both ends here.
    let (mut tx, mut rx) = channel_with_capacity::<String>(here(), here(), 4).map_err(s)?;
    let send = async move {
        for i in 0..100 {
            tx.send(format!("v{i}")).await?;
        }
        Ok::<(), Error>(())
    };
    let receive = async {
        let mut got = Vec::new();
        while let Some(v) = rx.recv().await? {
            got.push(v);
        }
        Ok::<Vec<String>, Error>(got)
    };
    let (sent, got) = futures::join!(send, receive);
    sent.map_err(s)?;
    if got.map_err(s)? != (0..100).map(|i| format!("v{i}")).collect::<Vec<_>>() {
        return Err("a loopback channel lost or reordered values".into());
    }

    // try_recv: empty before the sender has sent, then the values, then the end.
    let mut rx = Receiver::<u64>::new(p2, 40).map_err(s)?;
    if !matches!(rx.try_recv(), Err(TryRecvError::Empty)) {
        return Err("try_recv on an empty channel did not say Empty".into());
    }
    at!(p2, send_range(here(), 40, 3, 8)).await.map_err(s)?;
    let mut got = Vec::new();
    loop {
        match rx.try_recv() {
            Ok(Some(v)) => got.push(v),
            Ok(None) => break,
            Err(TryRecvError::Empty) => yield_now().await,
            Err(error) => return Err(error.to_string()),
        }
    }
    if got != [0, 1, 2] {
        return Err(format!("try_recv gave {got:?}"));
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------
// The blocking forms, from threads outside the worker pool

/// Runs `work` on a thread of its own; its result comes back through a oneshot, so that no
/// worker blocks.
async fn on_thread<R: Send + 'static>(
    work: impl FnOnce() -> R + Send + 'static,
) -> Result<R, String> {
    let (done, result) = futures::channel::oneshot::channel();
    std::thread::spawn(move || {
        let _ = done.send(work());
    });
    result.await.map_err(|_| "the thread panicked".to_string())
}

#[atoll::remote]
async fn blocking_feed(to: Place, id: u64, n: u64) -> Result<(), String> {
    on_thread(move || {
        let mut tx = Sender::<u64>::with_capacity(to, id, 4)?;
        for i in 0..n {
            tx.send(i).block()?;
        }
        Ok::<(), Error>(())
    })
    .await?
    .map_err(s)
}

async fn blocking() -> Result<(), String> {
    const N: u64 = 2_000;
    let receiving = on_thread(|| {
        let mut rx = Receiver::<u64>::new(Place::new(1), 50)?;
        let mut next = 0;
        while let Some(v) = rx.recv().block()? {
            if v != next {
                return Ok(Some(format!("value #{next} came as {v}")));
            }
            next += 1;
        }
        Ok::<_, Error>((next != N).then(|| format!("{next} of {N} values")))
    });
    let sending = at!(Place::new(1), blocking_feed(here(), 50, N));
    let (received, sent) = futures::join!(receiving, sending);
    sent.map_err(s)??;
    match received?.map_err(s)? {
        None => Ok(()),
        Some(wrong) => Err(wrong),
    }
}

// ------------------------------------------------------------------------------------------
// Killed peers: a sender's place and a receiver's place die

fn kill_self() {
    let pid = std::process::id().to_string();
    let _ = std::process::Command::new("kill")
        .args(["-9", &pid])
        .status();
    std::thread::sleep(Duration::from_secs(30));
}

/// Sends 10 values on named channel `id` to `to`, then dies.
#[atoll::remote]
async fn send_then_die(to: Place, id: u64) {
    let mut tx = must(Sender::<u64>::new(to, id), "Sender::new");
    for i in 0..10 {
        must(tx.send(i).await, "send");
    }
    kill_self();
}

/// Opens the receiving end of named channel `id` from `from`, then dies without reading.
#[atoll::remote]
async fn receive_then_die(from: Place, id: u64) {
    let _rx = must(Receiver::<u64>::new(from, id), "Receiver::new");
    kill_self();
}

async fn killed() -> Result<(), String> {
    let (p1, p2) = (Place::new(1), Place::new(2));
    let mut rx = Receiver::<u64>::new(p1, 60).map_err(s)?;
    let mut tx = Sender::<u64>::with_capacity(p2, 61, 4).map_err(s)?;
    async_at!(p1, send_then_die(here(), 60));
    async_at!(p2, receive_then_die(here(), 61));
    let mut got = 0;
    let received = loop {
        match rx.recv().await {
            Ok(Some(v)) if v == got => got += 1,
            other => break other,
        }
    };
    match received {
        Err(Error::PlaceFailed(place)) if place == p1 && got <= 10 => {}
        other => return Err(format!("receiving from a killed place gave {other:?}")),
    }
    let mut sent = 0;
    let refused = loop {
        match tx.send(sent).await {
            Ok(()) => sent += 1,
            Err(error) => break error,
        }
    };
    match refused {
        Error::PlaceFailed(place) if place == p2 => {}
        other => return Err(format!("sending to a killed place gave {other:?}")),
    }
    println!("got {got} values before the sender's place failed");
    Ok(())
}
