//! Collectives at 2 and 4 places — barrier, broadcast (8 B, 64 KiB, 1 MiB) and allreduce of
//! `f64` sums (8 B, 64 KiB) — beside Open MPI running the same operations (the C program
//! `benches/peers/mpi_collectives.c`, built with `mpicc` and run under `mpirun`) in the same
//! run, with the cache-line floor between places 0 and 1 measured just before and after each
//! Atoll figure.
//!
//! Both sides time back-to-back operations at rank 0 in batches and report the median over
//! batches of the time per operation; broadcasts rotate their root so that no root runs
//! ahead. Atoll's side runs on the transport alone (a thread that waits for each collective, as
//! an MPI rank does).
//!
//! Run: `cargo bench -p atoll-benches --bench collectives`. Without `--bench` (as `cargo test`
//! runs it) the sizes shrink to a smoke run. `ATOLL_BENCH_PLACES=2,4` picks the place counts;
//! a job run by hand (`ATOLL_BENCH_COLLECTIVES_JOB=full ATOLL_PLACES=2`, with
//! `ATOLL_BENCH_ONLY=barrier,allreduce_8` for a subset) prints Atoll's figures alone.

use std::collections::HashMap;
use std::process::{Command, ExitCode};
use std::time::Instant;

use atoll_benches::floor::FloorProbe;
use atoll_benches::mpi_peer::{self, MpiPeer};
use atoll_benches::setup::{full_run, Selection};
use atoll_benches::stats::median;
use atoll_benches::table::{ns, ratio, Table};
use atoll_collectives::{block_on, op, Collectives, Engine, Team};
use atoll_comm::{Comm, CommBuilder};

/// Set in the job the driver starts (its value: "full" or "smoke").
const JOB_VAR: &str = "ATOLL_BENCH_COLLECTIVES_JOB";

#[derive(Clone, Copy)]
struct Sizes {
    /// Operations per batch: small messages, 64 KiB, 1 MiB.
    small: usize,
    medium: usize,
    large: usize,
    batches: usize,
    probe: u64,
}

const FULL: Sizes = Sizes {
    small: 2000,
    medium: 200,
    large: 20,
    batches: 15,
    probe: 50_000,
};

const SMOKE: Sizes = Sizes {
    small: 50,
    medium: 5,
    large: 2,
    batches: 3,
    probe: 2_000,
};

#[derive(Clone, Copy)]
enum Kind {
    Barrier,
    Broadcast,
    Allreduce,
}

/// (name, kind, bytes per place)
const BENCHMARKS: &[(&str, Kind, usize)] = &[
    ("barrier", Kind::Barrier, 0),
    ("broadcast_8", Kind::Broadcast, 8),
    ("broadcast_65536", Kind::Broadcast, 65536),
    ("broadcast_1048576", Kind::Broadcast, 1 << 20),
    ("allreduce_8", Kind::Allreduce, 8),
    ("allreduce_65536", Kind::Allreduce, 65536),
];

fn main() -> ExitCode {
    let result = match std::env::var(JOB_VAR) {
        Ok(mode) => place(if mode == "full" { FULL } else { SMOKE }),
        Err(_) => driver(full_run()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("collectives benchmark failed: {message}");
            ExitCode::FAILURE
        }
    }
}

fn iterations(sizes: Sizes, bytes: usize) -> usize {
    match bytes {
        0..=4096 => sizes.small,
        4097..=262_144 => sizes.medium,
        _ => sizes.large,
    }
}

/// One place of a job: runs every benchmark; place 0 prints
/// `result NAME NS_PER_OP FLOOR_BEFORE FLOOR_AFTER`.
fn place(sizes: Sizes) -> Result<(), String> {
    let engine = Engine::new();
    let comm = engine
        .register(CommBuilder::new())
        .init()
        .map_err(|e| e.to_string())?;
    let world = engine.world(&comm);
    let probe = FloorProbe::open(&comm)?;
    let selection = Selection::from_env();
    for &(name, kind, bytes) in BENCHMARKS.iter().filter(|b| selection.wants(b.0)) {
        let before = probe.round_trip_ns(sizes.probe);
        let per_op = measure(
            &comm,
            &world,
            kind,
            bytes,
            iterations(sizes, bytes),
            sizes.batches,
        )?;
        let after = probe.round_trip_ns(sizes.probe);
        if comm.here().index() == 0 {
            println!("result {name} {per_op:.1} {before:.1} {after:.1}");
        }
    }
    comm.flush().map_err(|e| e.to_string())?;
    comm.bootstrap_barrier().map_err(|e| e.to_string())
}

/// The median over batches of the time per operation at this place, in ns.
fn measure(
    comm: &Comm,
    world: &Team,
    kind: Kind,
    bytes: usize,
    iterations: usize,
    batches: usize,
) -> Result<f64, String> {
    let size = world.size();
    let mut buffer: Vec<f64> = (0..bytes / 8).map(|i| (i + world.rank()) as f64).collect();
    let mut samples = Vec::with_capacity(batches);
    for batch in 0..=batches {
        block_on(comm, world.barrier()).map_err(|e| e.to_string())?;
        let start = Instant::now();
        block_on(comm, async {
            for i in 0..iterations {
                match kind {
                    Kind::Barrier => world.barrier().await?,
                    Kind::Broadcast => world.broadcast_into(i % size, &mut buffer).await?,
                    Kind::Allreduce => {
                        std::hint::black_box(world.allreduce_slice(&buffer, op::Sum).await?);
                    }
                }
            }
            Ok::<(), atoll_collectives::Error>(())
        })
        .map_err(|e| e.to_string())?;
        // Batch 0 warms up.
        if batch > 0 {
            samples.push(start.elapsed().as_nanos() as f64 / iterations as f64);
        }
    }
    Ok(median(&mut samples))
}

/// Atoll's figures at `places`: name → (ns per op, floor before, floor after).
type AtollFigures = HashMap<String, (f64, f64, f64)>;

fn run_job(places: usize, full: bool) -> Result<AtollFigures, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let output = Command::new("timeout")
        .args(["-s", "KILL", "600"])
        .arg(exe)
        .env("ATOLL_PLACES", places.to_string())
        .env(JOB_VAR, if full { "full" } else { "smoke" })
        .env_remove("ATOLL_RANK")
        .output()
        .map_err(|e| format!("starting the job: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "the {places}-place job failed ({}):\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(stdout
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("[place 0] result ")?;
            let words: Vec<&str> = rest.split_whitespace().collect();
            let number = |i: usize| words.get(i)?.parse::<f64>().ok();
            Some((
                words.first()?.to_string(),
                (number(1)?, number(2)?, number(3)?),
            ))
        })
        .collect())
}

fn driver(full: bool) -> Result<(), String> {
    let sizes = if full { FULL } else { SMOKE };
    let places: Vec<usize> = std::env::var("ATOLL_BENCH_PLACES")
        .unwrap_or_else(|_| "2,4".into())
        .split(',')
        .filter_map(|p| p.trim().parse().ok())
        .collect();
    let peer = MpiPeer::build(&mpi_peer::source("mpi_collectives.c"));
    let mut table = Table::new(&[
        "collective",
        "places",
        "Atoll",
        "Open MPI",
        "Atoll/MPI",
        "floor before",
        "floor after",
    ]);
    let mut peer_note = None;
    // Atoll and Open MPI take turns, `rounds` times: the host's speed drifts over seconds, and
    // each figure is the median of its rounds.
    let rounds = if full { 3 } else { 1 };
    for &n in &places {
        let mut atoll: HashMap<&str, [Vec<f64>; 3]> = HashMap::new();
        let mut mpi: HashMap<&str, Vec<f64>> = HashMap::new();
        for _ in 0..rounds {
            let job = run_job(n, full)?;
            for &(name, _, _) in BENCHMARKS {
                let Some(&(ours, before, after)) = job.get(name) else {
                    return Err(format!("the {n}-place job printed no result for {name}"));
                };
                let entry = atoll.entry(name).or_default();
                entry[0].push(ours);
                entry[1].push(before);
                entry[2].push(after);
            }
            let figures = match &peer {
                Ok(peer) => {
                    let args = [sizes.small, sizes.large, sizes.batches].map(|v| v.to_string());
                    peer.run(n, &args)
                }
                Err(reason) => Err(reason.clone()),
            };
            match figures {
                Ok(figures) => {
                    for &(name, _, _) in BENCHMARKS {
                        if let Some(value) = figures.get(name) {
                            mpi.entry(name).or_default().push(value);
                        }
                    }
                }
                Err(reason) => peer_note = Some(reason.to_string()),
            }
        }
        for &(name, _, _) in BENCHMARKS {
            let [mut ours, mut before, mut after] = atoll.remove(name).unwrap_or_default();
            let (ours, before, after) =
                (median(&mut ours), median(&mut before), median(&mut after));
            let theirs = mpi.get_mut(name).map(|v| median(v));
            table.row(vec![
                name.replace('_', " ")
                    + if name.starts_with("barrier") {
                        ""
                    } else {
                        " B"
                    },
                n.to_string(),
                ns(ours),
                theirs.map_or("-".into(), ns),
                theirs.map_or("-".into(), |t| ratio(ours, t)),
                ns(before),
                ns(after),
            ]);
        }
    }
    println!(
        "\nCollectives ({} run; median over {rounds} rounds of the median time per operation at place 0; floor = cache-line round trip between places 0 and 1)\n",
        if full { "full" } else { "smoke" },
    );
    println!("{}", table.render());
    if let Some(note) = peer_note {
        println!("\nOpen MPI: {note}");
    }
    Ok(())
}
