//! Runtime micro-benchmarks at 2 places, printed at place 0 as one table: the `at!` round trip
//! beside the bare active-message round trip through the same transport in the same run; an
//! `async_at!` flood inside one `finish`; local spawn + `finish` per activity beside
//! `rayon::scope`. Every figure is printed with the cache-line floor between the two places
//! measured just before and just after it (the host flips between a fast and a slow state).
//!
//! Run: `cargo bench -p atoll-benches --bench runtime` (2 places unless `ATOLL_PLACES` says
//! otherwise; `ATOLL_WORKERS` sets each place's workers). Without `--bench` (as `cargo test`
//! runs it) the sizes shrink to a smoke run. `ATOLL_BENCH_ONLY=rt,flood,spawn` runs a subset.
//!
//! The bare round trip goes through the runtime's own `Comm` (one job per process, and the
//! runtime owns it): a built-in echo handler pair reserved for this benchmark, driven by
//! `atoll_runtime::__private::__bench_echo_round_trip`. UTS nodes/s joins this table when the
//! UTS example lands.

use std::hint::black_box;
use std::process::ExitCode;
use std::time::Instant;

use atoll::prelude::*;
use atoll_benches::probe;
use atoll_benches::setup::{self, run_note, Load, Selection};
use atoll_benches::stats::{median, median_ns_per_op};
use atoll_benches::table::{ns, rate, ratio, ratio_in_state, verdict, Table};
use atoll_runtime::__private::__bench_echo_round_trip;

/// This benchmark's own sizes, beside those every runtime benchmark has.
#[derive(Clone, Copy)]
struct Own {
    /// Activities per flood and per local spawn run.
    activities: u64,
}

/// Its own sizes under `cargo bench`, and for a smoke run.
const FULL: Own = Own {
    activities: 1_000_000,
};
const SMOKE: Own = Own { activities: 10_000 };

type Sizes = setup::Sizes<Own>;

/// Target of the `at!` round trip over the bare active-message round trip.
const AT_OVER_AM_TARGET: f64 = 1.5;
/// Target of the flood rate, activities per second.
const FLOOD_TARGET: f64 = 5e6;

/// The `at!` round trip's remote function.
#[atoll::remote]
async fn echo(x: u64) -> u64 {
    x
}

/// The flood's and the local spawn's activity.
#[atoll::remote]
async fn noop(i: u64) {
    black_box(i);
}

/// The floor now: a cache-line round trip between places 0 and 1 (median, ns).
async fn floor(sizes: Sizes) -> Result<f64, String> {
    probe::floor(sizes.probe).await
}

/// Median ns of the bare active-message round trip to place 1, over batches.
fn am_round_trip(sizes: Sizes) -> Result<f64, String> {
    let peer = Place::new(1);
    __bench_echo_round_trip(peer, sizes.warm_up).map_err(|e| e.to_string())?;
    let mut failure = None;
    let rt = median_ns_per_op(sizes.batches, sizes.batch, || {
        if let Err(e) = __bench_echo_round_trip(peer, sizes.batch) {
            failure = Some(e.to_string());
        }
    });
    failure.map_or(Ok(rt), Err)
}

/// Median ns of an `at!` round trip of `echo` to place 1, over batches.
async fn at_round_trip(sizes: Sizes) -> Result<f64, String> {
    let peer = Place::new(1);
    for i in 0..sizes.warm_up {
        at!(peer, echo(i)).await.map_err(|e| e.to_string())?;
    }
    let mut samples = Vec::with_capacity(sizes.batches);
    for _ in 0..sizes.batches {
        let start = Instant::now();
        for i in 0..sizes.batch {
            let back = at!(peer, echo(i)).await.map_err(|e| e.to_string())?;
            if back != i {
                return Err(format!("echo({i}) returned {back}"));
            }
        }
        samples.push(start.elapsed().as_nanos() as f64 / sizes.batch as f64);
    }
    Ok(median(&mut samples))
}

/// Median activities/s of `activities` `async_at!(place 1, noop(i))` in one finish.
async fn flood(sizes: Sizes) -> Result<f64, String> {
    let mut seconds = finish_of_noops(Place::new(1), sizes).await?;
    Ok(sizes.own.activities as f64 / median(&mut seconds))
}

/// Median ns per activity of `activities` `async_at!(here(), noop(i))` in one finish.
async fn local_spawn(sizes: Sizes) -> Result<f64, String> {
    let mut seconds = finish_of_noops(here(), sizes).await?;
    Ok(median(&mut seconds) * 1e9 / sizes.own.activities as f64)
}

/// Seconds each of `sizes.runs` finishes takes over `sizes.own.activities` no-op activities at
/// `place`.
async fn finish_of_noops(place: Place, sizes: Sizes) -> Result<Vec<f64>, String> {
    let n = sizes.own.activities;
    let mut seconds = Vec::with_capacity(sizes.runs);
    for _ in 0..sizes.runs {
        let start = Instant::now();
        finish(async move {
            for i in 0..n {
                async_at!(place, noop(i));
            }
        })
        .await
        .map_err(|e| e.to_string())?;
        seconds.push(start.elapsed().as_secs_f64());
    }
    Ok(seconds)
}

/// Median ns per task of `activities` spawns in one `rayon::scope` (rayon's global pool).
fn rayon_spawn(sizes: Sizes) -> f64 {
    let n = sizes.own.activities;
    let scope = || {
        rayon::scope(|s| {
            for i in 0..n {
                s.spawn(move |_| {
                    black_box(i);
                })
            }
        })
    };
    scope(); // starts the pool's threads
    median_ns_per_op(sizes.runs, n, scope)
}

async fn bench(sizes: Sizes) -> Result<(), String> {
    probe::open().await?;
    let mut table = Table::beside_floors();
    let selection = Selection::from_env();
    let wanted = |name: &str| selection.wants(name);
    let load = Load::now();
    let batches = sizes.batches_label();
    let n = sizes.own.activities;

    // Round trips: the bare AM one and `at!`, back to back, twice (the host state flips).
    for _ in 0..if wanted("rt") { 2 } else { 0 } {
        let f0 = floor(sizes).await?;
        let am = am_round_trip(sizes)?;
        let f1 = floor(sizes).await?;
        let at = at_round_trip(sizes).await?;
        let f2 = floor(sizes).await?;
        table.row(vec![
            format!("8 B AM round trip, the runtime's comm, handler to handler ({batches})"),
            ns(am),
            ns(f0),
            ns(f1),
            "floor (mean)".into(),
            ratio(am, (f0 + f1) / 2.0),
            String::new(),
        ]);
        let over = am.max(f64::MIN_POSITIVE);
        table.row(vec![
            format!("at! round trip, u64 -> u64 at place 1 ({batches})"),
            ns(at),
            ns(f1),
            ns(f2),
            "AM round trip".into(),
            ratio_in_state(at, over, &[f0, f1, f2]),
            verdict(
                at / over <= AT_OVER_AM_TARGET,
                format!("<= {AT_OVER_AM_TARGET:.2}x"),
            ),
        ]);
    }

    // The flood: place 0 starts every activity, place 1 runs them and returns their credit.
    if wanted("flood") {
        let before = floor(sizes).await?;
        let flooded = flood(sizes).await?;
        let after = floor(sizes).await?;
        table.row(vec![
            format!(
                "async_at! flood: {n:.0e} noop at place 1 in one finish (median of {})",
                sizes.runs
            ),
            rate(flooded, "act"),
            ns(before),
            ns(after),
            "target".into(),
            ratio(flooded, FLOOD_TARGET),
            verdict(flooded >= FLOOD_TARGET, format!(">= {FLOOD_TARGET:.0e}/s")),
        ]);
    }

    // Local spawn + finish, beside rayon::scope in the same run.
    if wanted("spawn") {
        let before = floor(sizes).await?;
        let local = local_spawn(sizes).await?;
        let middle = floor(sizes).await?;
        let peer = rayon_spawn(sizes);
        let after = floor(sizes).await?;
        table.row(vec![
            format!(
                "local spawn + finish: {n:.0e} async_at!(here(), noop) per activity (median of {})",
                sizes.runs
            ),
            ns(local),
            ns(before),
            ns(middle),
            "rayon::scope spawn".into(),
            ratio_in_state(local, peer, &[before, middle, after]),
            String::new(),
        ]);
        table.row(vec![
            format!(
                "rayon::scope: {n:.0e} s.spawn(black_box) per task (median of {})",
                sizes.runs
            ),
            ns(peer),
            ns(middle),
            ns(after),
            String::new(),
            String::new(),
            String::new(),
        ]);
    }

    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let workers = atoll::comm::config::Config::from_env()
        .ok()
        .and_then(|c| c.workers)
        .unwrap_or((cores / num_places()).max(1));
    println!(
        "Atoll runtime micro-benchmarks{}: {} places, {workers} worker(s) per place (ATOLL_WORKERS), {cores} cores; \
         floor = cache-line round trip between places 0 and 1 (median of {} round trips)\n",
        run_note(sizes.full),
        num_places(),
        sizes.probe,
    );
    println!("{}\n", table.render());
    load.print_with_now();
    if wanted("rt") {
        println!(
            "The at! round trips run in main's root finish, as a program's would: each call \
             splits main's finish credit once more."
        );
    }
    if wanted("spawn") {
        println!(
            "rayon runs on all cores of the process (its global pool: {} threads), while each \
             Atoll place runs {workers} worker(s) and its {} places share the {cores} cores.",
            rayon::current_num_threads(),
            num_places(),
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    setup::main(FULL, SMOKE, bench)
}
