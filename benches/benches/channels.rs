//! Channel benchmarks at 2 places, printed at place 0 as one table: the channel round trip
//! (8 B there and back, activity to activity) beside the bare active-message round trip of the
//! runtime's transport and Open MPI's `MPI_Send`/`MPI_Recv` ping-pong; streaming throughput of
//! 8 B and 64 KiB values beside Open MPI's streaming (osu_bw style). All from the same run, with
//! the cache-line floor between the two places measured just before and after each latency.
//!
//! Run: `cargo bench -p atoll-benches --bench channels` (2 places). Without `--bench` (as
//! `cargo test` runs it) the sizes shrink to a smoke run. Open MPI is compiled and started from
//! `benches/peers/mpi_p2p.c` (see `atoll_benches::mpi_peer`); without it its rows say why.
//! `ATOLL_BENCH_ONLY=rt,mpi,stream` runs a subset.

use std::process::ExitCode;
use std::time::Instant;

use atoll::channel::{channel, channel_with_capacity, Receiver, Sender};
use atoll::prelude::*;
use atoll_benches::mpi_peer::{source, Figures, MpiPeer, PeerError};
use atoll_benches::probe;
use atoll_benches::setup::{self, run_note, Load, Selection};
use atoll_benches::stats::median;
use atoll_benches::table::{gbps, ns, rate, ratio, ratio_in_state, verdict, Table};
use atoll_runtime::__private::__bench_echo_round_trip;

/// This benchmark's own sizes, beside those every runtime benchmark has.
#[derive(Clone, Copy)]
struct Own {
    /// Values per streaming run, 8 B and 64 KiB.
    small: u64,
    large: u64,
}

/// Its own sizes under `cargo bench`, and for a smoke run.
const FULL: Own = Own {
    small: 1_000_000,
    large: 20_000,
};
const SMOKE: Own = Own {
    small: 10_000,
    large: 200,
};

type Sizes = setup::Sizes<Own>;

/// Target of the channel round trip over the bare active-message round trip.
const CHANNEL_OVER_AM_TARGET: f64 = 1.5;
/// The streaming channels' window (Open MPI's peer keeps as many sends in flight).
const WINDOW: usize = 64;
/// Bytes of a large value.
const LARGE: usize = 64 * 1024;

fn text(error: atoll::Error) -> String {
    error.to_string()
}

/// Place 1's end of the round trip: sends back every value until the channel ends.
#[atoll::remote]
async fn echo(mut forth: Receiver<u64>, mut back: Sender<u64>) {
    loop {
        match forth.recv().await {
            Ok(Some(value)) => {
                if let Err(error) = back.send(value).await {
                    eprintln!("echo: {error}");
                    return;
                }
            }
            Ok(None) => return,
            Err(error) => {
                eprintln!("echo: {error}");
                return;
            }
        }
    }
}

/// Takes every value of a stream of `u64`; returns how many came.
#[atoll::remote]
async fn drain_small(mut values: Receiver<u64>) -> Result<u64, String> {
    let mut count = 0;
    while let Some(value) = values.recv().await.map_err(text)? {
        if value != count {
            return Err(format!("value #{count} came as {value}"));
        }
        count += 1;
    }
    Ok(count)
}

/// Takes every value of a stream of byte vectors; returns how many bytes came.
#[atoll::remote]
async fn drain_large(mut values: Receiver<Vec<u8>>) -> Result<u64, String> {
    let mut bytes = 0;
    while let Some(value) = values.recv().await.map_err(text)? {
        bytes += value.len() as u64;
    }
    Ok(bytes)
}

/// The bare active-message round trip and the channel round trip, in alternating batches so
/// that each pair sees the same host state: the median ns of each, and the median of the
/// pairs' ratios (channel / AM).
async fn round_trips(
    sizes: Sizes,
    forth: &mut Sender<u64>,
    back: &mut Receiver<u64>,
) -> Result<(f64, f64, f64), String> {
    let peer = Place::new(1);
    __bench_echo_round_trip(peer, sizes.warm_up).map_err(text)?;
    for i in 0..sizes.warm_up {
        there_and_back(i, forth, back).await?;
    }
    let per_op = |elapsed: std::time::Duration| elapsed.as_nanos() as f64 / sizes.batch as f64;
    let (mut am, mut channel, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..sizes.batches {
        let a = per_op(__bench_echo_round_trip(peer, sizes.batch).map_err(text)?);
        let start = Instant::now();
        for i in 0..sizes.batch {
            there_and_back(i, forth, back).await?;
        }
        let c = per_op(start.elapsed());
        am.push(a);
        channel.push(c);
        ratios.push(c / a.max(f64::MIN_POSITIVE));
    }
    Ok((median(&mut am), median(&mut channel), median(&mut ratios)))
}

/// One round trip of `i` through place 1's echo.
async fn there_and_back(
    i: u64,
    forth: &mut Sender<u64>,
    back: &mut Receiver<u64>,
) -> Result<(), String> {
    forth.send(i).await.map_err(text)?;
    match back.recv().await.map_err(text)? {
        Some(value) if value == i => Ok(()),
        other => Err(format!("sent {i}, {other:?} came back")),
    }
}

/// Median values/s of streaming `sizes.own.small` `u64` to place 1 (until it has them all).
async fn stream_small(sizes: Sizes) -> Result<f64, String> {
    let n = sizes.own.small;
    let mut rates = Vec::with_capacity(sizes.runs);
    for _ in 0..sizes.runs {
        let (mut tx, rx) =
            channel_with_capacity::<u64>(here(), Place::new(1), WINDOW).map_err(text)?;
        let start = Instant::now();
        let send = async move {
            for i in 0..n {
                tx.send(i).await?;
            }
            Ok::<(), atoll::Error>(())
        };
        let (sent, drained) = futures::join!(send, at!(Place::new(1), drain_small(rx)));
        let seconds = start.elapsed().as_secs_f64();
        sent.map_err(text)?;
        let count = drained.map_err(text)??;
        if count != n {
            return Err(format!("{count} values of {n} arrived"));
        }
        rates.push(n as f64 / seconds);
    }
    Ok(median(&mut rates))
}

/// Median bytes/s of streaming `sizes.own.large` values of 64 KiB to place 1.
async fn stream_large(sizes: Sizes) -> Result<f64, String> {
    let n = sizes.own.large;
    let block: Vec<u8> = (0..LARGE).map(|i| i as u8).collect();
    let mut rates = Vec::with_capacity(sizes.runs);
    for _ in 0..sizes.runs {
        let (mut tx, rx) =
            channel_with_capacity::<Vec<u8>>(here(), Place::new(1), WINDOW).map_err(text)?;
        let block = &block;
        let start = Instant::now();
        let send = async move {
            for _ in 0..n {
                tx.send(block.clone()).await?;
            }
            Ok::<(), atoll::Error>(())
        };
        let (sent, drained) = futures::join!(send, at!(Place::new(1), drain_large(rx)));
        let seconds = start.elapsed().as_secs_f64();
        sent.map_err(text)?;
        let bytes = drained.map_err(text)??;
        if bytes != n * LARGE as u64 {
            return Err(format!("{bytes} bytes of {} arrived", n * LARGE as u64));
        }
        rates.push(bytes as f64 / seconds);
    }
    Ok(median(&mut rates))
}

/// Open MPI's figures at 2 processes, from the same sizes.
fn mpi_figures(sizes: Sizes) -> Result<Figures, PeerError> {
    let peer = MpiPeer::build(&source("mpi_p2p.c"))?;
    let args = [
        sizes.batches.to_string(),
        sizes.batch.to_string(),
        sizes.own.small.to_string(),
        sizes.own.large.to_string(),
        sizes.runs.to_string(),
    ];
    peer.run(2, &args)
}

/// An MPI figure for the table, or why there is none.
fn mpi_cell(figures: &Result<Figures, PeerError>, key: &str, show: fn(f64) -> String) -> String {
    match figures
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|f| f.require(key))
    {
        Ok(value) => show(value),
        Err(why) => why.to_string(),
    }
}

/// `atoll / mpi` (or `mpi / atoll` for rates, so that above 1 is always Atoll behind), or
/// nothing without an MPI figure.
fn mpi_ratio(
    figures: &Result<Figures, PeerError>,
    key: &str,
    atoll: f64,
    floors: &[f64],
) -> String {
    match figures.as_ref().ok().and_then(|f| f.get(key)) {
        Some(mpi) if key.ends_with("_ns") => ratio_in_state(atoll, mpi, floors),
        Some(mpi) => ratio(mpi, atoll),
        None => String::new(),
    }
}

async fn bench(sizes: Sizes) -> Result<(), String> {
    probe::open().await?;
    let floor = || probe::floor(sizes.probe);
    let mut table = Table::beside_floors();
    let load = Load::now();
    let batches = sizes.batches_label();
    let runs = format!("median of {} runs", sizes.runs);
    let peer = Place::new(1);
    let selection = Selection::from_env();
    let wanted = |name: &str| selection.wants(name);

    // Round trips: the bare AM and the channel, back to back, twice (the host state flips).
    let (mut forth, forth_end) = channel::<u64>(here(), peer).map_err(text)?;
    let (back_end, mut back) = channel::<u64>(peer, here()).map_err(text)?;
    async_at!(peer, echo(forth_end, back_end));
    let mut channel_rts = Vec::new();
    for _ in 0..if wanted("rt") { 2 } else { 0 } {
        let before = floor().await?;
        let (am, rt, over) = round_trips(sizes, &mut forth, &mut back).await?;
        let after = floor().await?;
        channel_rts.push((rt, before, after));
        table.row(vec![
            format!("8 B AM round trip, the runtime's comm, handler to handler ({batches})"),
            ns(am),
            ns(before),
            ns(after),
            "floor (mean)".into(),
            ratio_in_state(am, (before + after) / 2.0, &[before, after]),
            String::new(),
        ]);
        table.row(vec![
            format!(
                "channel round trip: u64 to place 1 and back, task to task (the same {} batches, \
                 each after its AM batch)",
                sizes.batches
            ),
            ns(rt),
            ns(before),
            ns(after),
            "AM round trip (median of the batch pairs' ratios)".into(),
            format!("{over:.2}x"),
            verdict(
                over <= CHANNEL_OVER_AM_TARGET,
                format!("<= {CHANNEL_OVER_AM_TARGET:.2}x"),
            ),
        ]);
    }
    drop(forth); // place 1's echo ends

    // Open MPI, in the same run: one mpirun for all its figures, the floor around it.
    let (before, mpi, after) = if wanted("mpi") {
        (floor().await?, mpi_figures(sizes), floor().await?)
    } else {
        let off = PeerError::Skipped("not asked for (ATOLL_BENCH_ONLY)".into());
        (f64::NAN, Err(off), f64::NAN)
    };
    let (rt, f1, f2) = channel_rts
        .last()
        .copied()
        .unwrap_or((f64::NAN, f64::NAN, f64::NAN));
    table.row(vec![
        format!("Open MPI MPI_Send/MPI_Recv ping-pong, 8 B, np 2 ({batches})"),
        mpi_cell(&mpi, "pingpong_8_ns", ns),
        ns(before),
        ns(after),
        "last channel round trip / MPI".into(),
        mpi_ratio(&mpi, "pingpong_8_ns", rt, &[f1, f2, before, after]),
        String::new(),
    ]);

    // Streaming, 8 B and 64 KiB values.
    let (small, large) = if wanted("stream") {
        (stream_small(sizes).await?, stream_large(sizes).await?)
    } else {
        (f64::NAN, f64::NAN)
    };
    table.row(vec![
        format!(
            "channel streaming: {:.0e} u64 to place 1, window {WINDOW} ({runs})",
            sizes.own.small as f64
        ),
        rate(small, "val"),
        String::new(),
        String::new(),
        "Open MPI 8 B / channel".into(),
        mpi_ratio(&mpi, "stream_8_msgs_per_s", small, &[]),
        String::new(),
    ]);
    table.row(vec![
        format!(
            "Open MPI streaming: {:.0e} MPI_Isend of 8 B, window {WINDOW}, osu_bw style ({runs})",
            sizes.own.small as f64
        ),
        mpi_cell(&mpi, "stream_8_msgs_per_s", |v| rate(v, "msg")),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
    ]);
    table.row(vec![
        format!(
            "channel streaming: {} Vec<u8> of 64 KiB to place 1, window {WINDOW} ({runs})",
            sizes.own.large
        ),
        gbps(large),
        String::new(),
        String::new(),
        "Open MPI 64 KiB / channel".into(),
        mpi_ratio(&mpi, "stream_65536_bytes_per_s", large, &[]),
        String::new(),
    ]);
    table.row(vec![
        format!(
            "Open MPI streaming: {} MPI_Isend of 64 KiB, window {WINDOW}, osu_bw style ({runs})",
            sizes.own.large
        ),
        mpi_cell(&mpi, "stream_65536_bytes_per_s", gbps),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
    ]);

    // The node's cores (this process is pinned to its share of them).
    // SAFETY: sysconf reads a system setting; no memory is involved.
    let cores = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1);
    println!(
        "Atoll channel benchmarks{}: {} places, {cores} cores; floor = cache-line round trip \
         between places 0 and 1 (median of {} round trips); Open MPI at 2 processes \
         (mpirun --oversubscribe, shared memory)\n",
        run_note(sizes.full),
        num_places(),
        sizes.probe,
    );
    println!("{}\n", table.render());
    load.print_with_now();
    println!(
        "The 64 KiB values are cloned from one block before each send (an owned value per \
         send); Open MPI sends from a reused buffer."
    );
    Ok(())
}

fn main() -> ExitCode {
    setup::main(FULL, SMOKE, bench)
}
