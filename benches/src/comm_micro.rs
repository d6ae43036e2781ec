//! The comm micro-benchmarks, measured once here and printed by two benchmarks: `comm` (one
//! provider, with its floors) and `transports` (every provider beside the transport's own tool).
//!
//! - 8-byte AM round trip: place 0 pings place 1, whose handler answers; a cache-line probe
//!   ([`FloorProbe`]) is taken just before and just after.
//! - One-way AM flood: place 0 sends 8-byte messages as fast as it can (one `send` each, then in
//!   batches of 1000 under one lock); place 1 counts, and its rate is the one reported.
//! - Put bandwidth into place 1's registered memory, beside `memcpy` of the same sizes.
//!
//! [`MicroFigures::to_lines`] prints the figures as `key value` lines, which
//! [`crate::mpi_peer::Figures::parse`] reads back in a driver.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use atoll_comm::{Comm, CommBuilder, HandlerId, Place};

use crate::floor::{memcpy_gbps, FloorProbe};
use crate::mpi_peer::Figures;
use crate::setup::Selection;
use crate::stats::{median, median_ns_per_op};

const PING: HandlerId = HandlerId::new(1);
const PONG: HandlerId = HandlerId::new(2);
const FLOOD: HandlerId = HandlerId::new(3);

/// Messages per batch of the batched flood.
const BATCH: u64 = 1000;

/// How much to measure.
#[derive(Clone, Copy, Debug)]
pub struct Scale {
    /// Round trips per floor probe.
    pub probe_round_trips: u64,
    /// Round trips per sample of the AM round trip (31 samples, after 10 000 warm-up ones).
    pub round_trips: u64,
    /// Rounds of the round-trip measurement (each with its own floors).
    pub round_trip_rounds: usize,
    /// Messages per flood sample (5 samples).
    pub flood_messages: u64,
    /// Bytes each put-bandwidth sample moves, at least 4 puts (7 samples).
    pub put_bytes: usize,
}

impl Scale {
    /// The sizes `cargo bench` uses.
    pub const FULL: Scale = Scale {
        probe_round_trips: 100_000,
        round_trips: 2_000,
        round_trip_rounds: 2,
        flood_messages: 2_000_000,
        put_bytes: 256 << 20,
    };
}

/// A latency beside the floor probes taken just before and just after it (ns).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Latency {
    /// The median of the measured operation.
    pub ns: f64,
    /// The cache-line round trip just before.
    pub floor_before: f64,
    /// The cache-line round trip just after.
    pub floor_after: f64,
}

impl Latency {
    /// The mean of the two floors.
    pub fn floor(&self) -> f64 {
        (self.floor_before + self.floor_after) / 2.0
    }
}

/// Put bandwidth at one size, beside `memcpy` of that size (bytes/s).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PutFigure {
    /// Bytes per put.
    pub size: usize,
    /// Median put bandwidth.
    pub put: f64,
    /// Median `memcpy` bandwidth into this place's own registered memory.
    pub memcpy: f64,
}

/// What one run measured (at place 0; other places return an empty set).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MicroFigures {
    /// One per round of the round-trip measurement.
    pub round_trips: Vec<Latency>,
    /// Median one-way flood rate (messages/s), one `send` per message.
    pub flood: Option<f64>,
    /// Median one-way flood rate (messages/s), batches of 1000.
    pub flood_batched: Option<f64>,
    /// The floor probes around each flood (ns): before the first, after the last.
    pub flood_floor: Option<(f64, f64)>,
    /// One per put size.
    pub puts: Vec<PutFigure>,
}

/// The message counters the benchmark's handlers advance.
#[derive(Debug, Default)]
pub struct Counters {
    pongs: AtomicU64,
    flood: AtomicU64,
}

/// Registers the benchmark's handlers (ids 1 to 3) on `builder`.
pub fn handlers(builder: CommBuilder) -> (CommBuilder, Arc<Counters>) {
    let counters = Arc::new(Counters::default());
    let (pongs, flood) = (counters.clone(), counters.clone());
    let builder = builder
        .handler(PING, |comm, msg| {
            let value = msg.access::<u64>()?.to_native();
            comm.send(msg.from(), PONG, &value)
        })
        .handler(PONG, move |_comm, _msg| {
            pongs.pongs.fetch_add(1, Ordering::Release);
            Ok(())
        })
        .handler(FLOOD, move |_comm, _msg| {
            flood.flood.fetch_add(1, Ordering::Relaxed);
            Ok(())
        });
    (builder, counters)
}

/// Runs the selected measurements (`rt`, `flood`, `put`) between places 0 and 1. Collective: every place calls it.
pub fn measure(
    comm: &Comm,
    counters: &Counters,
    probe: &FloorProbe,
    selection: &Selection,
    scale: Scale,
    put_sizes: &[usize],
) -> Result<MicroFigures, String> {
    if comm.len() < 2 {
        return Err("needs at least 2 places (ATOLL_PLACES=2)".into());
    }
    let mut figures = MicroFigures::default();
    if selection.wants("rt") {
        for _ in 0..scale.round_trip_rounds {
            figures
                .round_trips
                .push(round_trip(comm, counters, probe, scale)?);
        }
    }
    if selection.wants("flood") {
        let before = probe.round_trip_ns(scale.probe_round_trips);
        figures.flood = Some(flood(comm, counters, scale, false)?);
        figures.flood_batched = Some(flood(comm, counters, scale, true)?);
        let after = probe.round_trip_ns(scale.probe_round_trips);
        figures.flood_floor = Some((before, after));
    }
    if selection.wants("put") {
        figures.puts = puts(comm, scale, put_sizes)?;
    }
    comm.bootstrap_barrier().map_err(err)?;
    Ok(figures)
}

fn err(e: atoll_comm::Error) -> String {
    e.to_string()
}

fn round_trip(
    comm: &Comm,
    counters: &Counters,
    probe: &FloorProbe,
    scale: Scale,
) -> Result<Latency, String> {
    let floor_before = probe.round_trip_ns(scale.probe_round_trips);
    comm.bootstrap_barrier().map_err(err)?;
    let ns = if comm.here().index() == 0 {
        let peer = Place::new(1);
        let mut sent = counters.pongs.load(Ordering::Acquire);
        let mut one = || -> Result<(), String> {
            comm.send(peer, PING, &7u64).map_err(err)?;
            sent += 1;
            comm.wait_until(|| counters.pongs.load(Ordering::Acquire) == sent)
                .map_err(err)
        };
        for _ in 0..10_000 {
            one()?;
        }
        let mut failure = None;
        let ns = median_ns_per_op(31, scale.round_trips, || {
            for _ in 0..scale.round_trips {
                if let Err(e) = one() {
                    failure = Some(e);
                }
            }
        });
        if let Some(e) = failure {
            return Err(e);
        }
        ns
    } else {
        0.0
    };
    // Place 1 keeps answering pings while it waits here for place 0 to finish.
    comm.bootstrap_barrier().map_err(err)?;
    let floor_after = probe.round_trip_ns(scale.probe_round_trips);
    Ok(Latency {
        ns,
        floor_before,
        floor_after,
    })
}

/// The median rate over 5 samples, as place 1 (which knows when the last message arrived)
/// measured it.
fn flood(comm: &Comm, counters: &Counters, scale: Scale, batched: bool) -> Result<f64, String> {
    let messages = scale.flood_messages.div_ceil(BATCH) * BATCH;
    let mut rates = Vec::new();
    for _ in 0..5 {
        comm.bootstrap_barrier().map_err(err)?;
        let start = Instant::now();
        match comm.here().index() {
            0 => {
                let peer = Place::new(1);
                if batched {
                    for chunk in 0..messages / BATCH {
                        let mut batch = comm.batch(peer).map_err(err)?;
                        for i in 0..BATCH {
                            batch.send(FLOOD, &(chunk * BATCH + i)).map_err(err)?;
                        }
                    }
                } else {
                    for i in 0..messages {
                        comm.send(peer, FLOOD, &i).map_err(err)?;
                    }
                }
                comm.flush().map_err(err)?;
            }
            1 => {
                comm.wait_until(|| counters.flood.load(Ordering::Relaxed) >= messages)
                    .map_err(err)?;
                counters.flood.fetch_sub(messages, Ordering::Relaxed);
            }
            _ => {}
        }
        let elapsed = start.elapsed().as_secs_f64();
        let blobs = comm
            .bootstrap_allgather(&elapsed.to_le_bytes())
            .map_err(err)?;
        let secs = blobs
            .get(1)
            .and_then(|blob| <[u8; 8]>::try_from(blob.as_slice()).ok())
            .map(f64::from_le_bytes)
            .ok_or("place 1 sent no elapsed time")?;
        rates.push(messages as f64 / secs);
    }
    Ok(median(&mut rates))
}

fn puts(comm: &Comm, scale: Scale, sizes: &[usize]) -> Result<Vec<PutFigure>, String> {
    let largest = sizes.iter().copied().max().unwrap_or(0).max(1);
    let region = comm.alloc_region(largest).map_err(err)?;
    let local = comm.alloc_region(largest).map_err(err)?;
    let keys = comm.allgather_keys(region.key()).map_err(err)?;
    let mut figures = Vec::new();
    for &size in sizes {
        comm.bootstrap_barrier().map_err(err)?;
        if comm.here().index() != 0 {
            continue;
        }
        let data = vec![0xA5u8; size];
        let total = scale.put_bytes.max(size * 4);
        let reps = total / size;
        let mut rates = Vec::with_capacity(7);
        for _ in 0..7 {
            let start = Instant::now();
            for _ in 0..reps {
                comm.put(&keys[1], 0, &data).wait().map_err(err)?;
            }
            rates.push((size * reps) as f64 / start.elapsed().as_secs_f64());
        }
        figures.push(PutFigure {
            size,
            put: median(&mut rates),
            memcpy: memcpy_gbps(&local, &data, total, 7),
        });
    }
    comm.bootstrap_barrier().map_err(err)?;
    Ok(figures)
}

impl MicroFigures {
    /// The figures as `key value` lines (round trips in ns, rates in messages/s, bandwidths in
    /// bytes/s): the median round trip over the rounds, with the floors of that round.
    pub fn to_lines(&self) -> String {
        let mut lines = Vec::new();
        let mut rts = self.round_trips.clone();
        rts.sort_by(|a, b| a.ns.total_cmp(&b.ns));
        if let Some(rt) = rts.get(rts.len().saturating_sub(1) / 2) {
            lines.push(format!("rt_ns {}", rt.ns));
            lines.push(format!("rt_floor_before_ns {}", rt.floor_before));
            lines.push(format!("rt_floor_after_ns {}", rt.floor_after));
        }
        if let Some(flood) = self.flood {
            lines.push(format!("flood_per_s {flood}"));
        }
        if let Some(flood) = self.flood_batched {
            lines.push(format!("flood_batched_per_s {flood}"));
        }
        for put in &self.puts {
            lines.push(format!("put_{}_bytes_per_s {}", put.size, put.put));
            lines.push(format!("memcpy_{}_bytes_per_s {}", put.size, put.memcpy));
        }
        lines.join("\n")
    }

    /// The figures [`MicroFigures::to_lines`] printed, read back (what is missing stays empty).
    pub fn from_figures(figures: &Figures, put_sizes: &[usize]) -> MicroFigures {
        let round_trips = match (
            figures.get("rt_ns"),
            figures.get("rt_floor_before_ns"),
            figures.get("rt_floor_after_ns"),
        ) {
            (Some(ns), Some(floor_before), Some(floor_after)) => vec![Latency {
                ns,
                floor_before,
                floor_after,
            }],
            _ => Vec::new(),
        };
        let puts = put_sizes
            .iter()
            .filter_map(|&size| {
                Some(PutFigure {
                    size,
                    put: figures.get(&format!("put_{size}_bytes_per_s"))?,
                    memcpy: figures.get(&format!("memcpy_{size}_bytes_per_s"))?,
                })
            })
            .collect();
        MicroFigures {
            round_trips,
            flood: figures.get("flood_per_s"),
            flood_batched: figures.get("flood_batched_per_s"),
            flood_floor: None,
            puts,
        }
    }
}
