//! `comm` micro-benchmarks at 2 places: 8-byte AM round trip, AM flood rate, put bandwidth;
//! each beside its floor (cache-line round trip, memcpy) measured in the same run.
//!
//! Run: `cargo bench -p atoll-benches --bench comm` (starts 2 places through the local
//! launcher; `ATOLL_PROVIDER` picks the transport; `ATOLL_BENCH_ONLY=rt,flood,put` runs a
//! subset).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use atoll_benches::floor::{memcpy_gbps, FloorProbe};
use atoll_benches::stats::{median, median_ns_per_op};
use atoll_benches::table::{gbps, ns, rate, ratio, Table};
use atoll_comm::{CommBuilder, HandlerId, Place};

const PING: HandlerId = HandlerId::new(1);
const PONG: HandlerId = HandlerId::new(2);
const FLOOD: HandlerId = HandlerId::new(3);

/// Round trips per floor probe.
const PROBE: u64 = 100_000;

fn main() {
    if std::env::var_os("ATOLL_PLACES").is_none() {
        // SAFETY-free in 2021 edition: single-threaded at this point, before any place starts.
        std::env::set_var("ATOLL_PLACES", "2");
    }
    if let Err(message) = run() {
        eprintln!("comm benchmark failed: {message}");
        std::process::exit(1);
    }
}

struct Counters {
    pongs: AtomicU64,
    flood: AtomicU64,
}

fn run() -> Result<(), String> {
    let counters = Arc::new(Counters {
        pongs: AtomicU64::new(0),
        flood: AtomicU64::new(0),
    });
    let (c1, c2) = (counters.clone(), counters.clone());
    let comm = CommBuilder::new()
        .handler(PING, |comm, msg| {
            let value = msg.access::<u64>()?.to_native();
            comm.send(msg.from(), PONG, &value)
        })
        .handler(PONG, move |_comm, _msg| {
            c1.pongs.fetch_add(1, Ordering::Release);
            Ok(())
        })
        .handler(FLOOD, move |_comm, _msg| {
            c2.flood.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .init()
        .map_err(|e| e.to_string())?;
    if comm.len() < 2 {
        return Err("needs at least 2 places (ATOLL_PLACES=2)".into());
    }
    let err = |e: atoll_comm::Error| e.to_string();
    let here = comm.here().index();
    let probe = FloorProbe::open(&comm)?;
    let mut table = Table::new(&[
        "benchmark",
        "Atoll",
        "floor before",
        "floor after",
        "Atoll/floor",
    ]);

    let only = std::env::var("ATOLL_BENCH_ONLY").unwrap_or_default();
    let wanted = |name: &str| only.is_empty() || only.split(',').any(|s| s.trim() == name);

    // 8-byte AM round trip: place 0 pings place 1, which answers from its handler.
    for _ in 0..if wanted("rt") { 2 } else { 0 } {
        let before = probe.round_trip_ns(PROBE);
        comm.bootstrap_barrier().map_err(err)?;
        let rt = if here == 0 {
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
            let rt = median_ns_per_op(31, 2000, || {
                for _ in 0..2000 {
                    if let Err(e) = one() {
                        failure = Some(e);
                    }
                }
            });
            if let Some(e) = failure {
                return Err(e);
            }
            rt
        } else {
            0.0
        };
        // Place 1 keeps answering pings while it waits here for place 0 to finish.
        comm.bootstrap_barrier().map_err(err)?;
        let after = probe.round_trip_ns(PROBE);
        if here == 0 {
            table.row(vec![
                "8 B AM round trip (median)".into(),
                ns(rt),
                ns(before),
                ns(after),
                ratio(rt, (before + after) / 2.0),
            ]);
        }
    }

    // One-way AM flood: place 0 sends 8-byte messages as fast as it can; place 1 counts. Once
    // with one `send` per message, once in batches that take the pair's lock once per 1000.
    const FLOOD_MSGS: u64 = 2_000_000;
    const BATCH: u64 = 1000;
    let mut flooded = 0;
    for batched in [false, true] {
        if !wanted("flood") {
            break;
        }
        let before = probe.round_trip_ns(PROBE);
        let mut rates = Vec::new();
        for _ in 0..5 {
            comm.bootstrap_barrier().map_err(err)?;
            flooded += FLOOD_MSGS;
            let start = Instant::now();
            if here == 0 {
                let peer = Place::new(1);
                if batched {
                    for chunk in 0..FLOOD_MSGS / BATCH {
                        let mut batch = comm.batch(peer).map_err(err)?;
                        for i in 0..BATCH {
                            batch.send(FLOOD, &(chunk * BATCH + i)).map_err(err)?;
                        }
                    }
                } else {
                    for i in 0..FLOOD_MSGS {
                        comm.send(peer, FLOOD, &i).map_err(err)?;
                    }
                }
                comm.flush().map_err(err)?;
            } else if here == 1 {
                comm.wait_until(|| counters.flood.load(Ordering::Relaxed) >= flooded)
                    .map_err(err)?;
            }
            let elapsed = start.elapsed();
            // Place 1 knows when the last message was handled; its rate is the one reported.
            let blobs = comm
                .bootstrap_allgather(&elapsed.as_secs_f64().to_le_bytes())
                .map_err(err)?;
            let secs = f64::from_le_bytes(blobs[1].as_slice().try_into().map_err(|_| "bad blob")?);
            rates.push(FLOOD_MSGS as f64 / secs);
        }
        let after = probe.round_trip_ns(PROBE);
        if here == 0 {
            let name = if batched {
                "8 B AM flood, one way, batches of 1000 (median of 5)"
            } else {
                "8 B AM flood, one way (median of 5)"
            };
            table.row(vec![
                name.into(),
                rate(median(&mut rates), "msg"),
                ns(before),
                ns(after),
                "(state)".into(),
            ]);
        }
    }

    // Put bandwidth into place 1's registered memory, beside memcpy of the same sizes.
    let region = comm.alloc_region(16 << 20).map_err(err)?;
    let local = comm.alloc_region(16 << 20).map_err(err)?;
    let keys = comm.allgather_keys(region.key()).map_err(err)?;
    let mut bw = Table::new(&["put size", "Atoll put", "memcpy (floor)", "Atoll/floor"]);
    let sizes: &[usize] = if wanted("put") {
        &[4 << 10, 64 << 10, 1 << 20, 16 << 20]
    } else {
        &[]
    };
    for &size in sizes {
        comm.bootstrap_barrier().map_err(err)?;
        if here == 0 {
            let data = vec![0xA5u8; size];
            let total = (256usize << 20).max(size * 4);
            let reps = total / size;
            let mut rates: Vec<f64> = (0..7)
                .map(|_| {
                    let start = Instant::now();
                    for _ in 0..reps {
                        if let Err(e) = comm.put(&keys[1], 0, &data).wait() {
                            eprintln!("put failed: {e}");
                        }
                    }
                    (size * reps) as f64 / start.elapsed().as_secs_f64()
                })
                .collect();
            let put = median(&mut rates);
            // The floor: the same copy into this place's own registered memory.
            let floor = memcpy_gbps(&local, &data, total, 7);
            bw.row(vec![
                format!("{} KiB", size >> 10),
                gbps(put),
                gbps(floor),
                ratio(put, floor),
            ]);
        }
    }
    comm.bootstrap_barrier().map_err(err)?;
    drop(region);
    if here == 0 {
        println!(
            "Atoll comm micro-benchmarks: provider {}, {} places, floor = cache-line round trip between the two places (median of {} round trips)\n",
            comm.provider_name(),
            comm.len(),
            PROBE
        );
        println!("{}\n", table.render());
        println!("{}", bw.render());
    }
    comm.flush().map_err(err)?;
    comm.bootstrap_barrier().map_err(err)?;
    Ok(())
}
