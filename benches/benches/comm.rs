//! `comm` micro-benchmarks at 2 places: 8-byte AM round trip, AM flood rate, put bandwidth;
//! each beside its floor (cache-line round trip, memcpy) measured in the same run. The
//! measurements live in [`atoll_benches::comm_micro`]; the `transports` benchmark runs the same
//! ones over every provider beside the transports' own tools.
//!
//! Run: `cargo bench -p atoll-benches --bench comm` (starts 2 places through the local
//! launcher; `ATOLL_PROVIDER` picks the transport; `ATOLL_BENCH_ONLY=rt,flood,put` runs a
//! subset).

use atoll_benches::comm_micro::{self, Scale};
use atoll_benches::floor::FloorProbe;
use atoll_benches::setup::Selection;
use atoll_benches::table::{gbps, ns, rate, ratio, Table};
use atoll_comm::CommBuilder;

/// Bytes per put of the bandwidth table.
const PUT_SIZES: [usize; 4] = [4 << 10, 64 << 10, 1 << 20, 16 << 20];

fn main() {
    if std::env::var_os("ATOLL_PLACES").is_none() {
        // Single-threaded at this point, before any place starts.
        std::env::set_var("ATOLL_PLACES", "2");
    }
    if let Err(message) = run() {
        eprintln!("comm benchmark failed: {message}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let (builder, counters) = comm_micro::handlers(CommBuilder::new());
    let comm = builder.init().map_err(|e| e.to_string())?;
    let probe = FloorProbe::open(&comm)?;
    let scale = Scale::FULL;
    let figures = comm_micro::measure(
        &comm,
        &counters,
        &probe,
        &Selection::from_env(),
        scale,
        &PUT_SIZES,
    )?;
    if comm.here().index() == 0 {
        let mut table = Table::new(&[
            "benchmark",
            "Atoll",
            "floor before",
            "floor after",
            "Atoll/floor",
        ]);
        for rt in &figures.round_trips {
            table.row(vec![
                "8 B AM round trip (median)".into(),
                ns(rt.ns),
                ns(rt.floor_before),
                ns(rt.floor_after),
                ratio(rt.ns, rt.floor()),
            ]);
        }
        let floods = [
            ("8 B AM flood, one way (median of 5)", figures.flood),
            (
                "8 B AM flood, one way, batches of 1000 (median of 5)",
                figures.flood_batched,
            ),
        ];
        for (name, flood) in floods {
            if let (Some(flood), Some((before, after))) = (flood, figures.flood_floor) {
                table.row(vec![
                    name.into(),
                    rate(flood, "msg"),
                    ns(before),
                    ns(after),
                    "(state)".into(),
                ]);
            }
        }
        let mut bw = Table::new(&["put size", "Atoll put", "memcpy (floor)", "Atoll/floor"]);
        for put in &figures.puts {
            bw.row(vec![
                format!("{} KiB", put.size >> 10),
                gbps(put.put),
                gbps(put.memcpy),
                ratio(put.put, put.memcpy),
            ]);
        }
        println!(
            "Atoll comm micro-benchmarks: provider {}, {} places, floor = cache-line round trip between the two places (median of {} round trips)\n",
            comm.provider_name(),
            comm.len(),
            scale.probe_round_trips
        );
        println!("{}\n", table.render());
        println!("{}", bw.render());
    }
    comm.flush().map_err(|e| e.to_string())?;
    comm.bootstrap_barrier().map_err(|e| e.to_string())?;
    Ok(())
}
