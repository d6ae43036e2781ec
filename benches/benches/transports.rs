//! Every transport side by side, each beside its own tool measured in the same run: the comm
//! micro-benchmarks ([`atoll_benches::comm_micro`]: 8-byte AM round trip, AM flood rate, put
//! bandwidth) over shm, UCX (`sm`, `tcp`) and libfabric (`shm`, `tcp`), next to `ucx_perftest`
//! (`ucp_am_lat`, `ucp_am_bw`, `ucp_put_bw`) and `fi_pingpong`, with the cache-line floor
//! probe beside each latency.
//!
//! Run: `cargo bench -p atoll-benches --bench transports --features atoll-benches/ucx,atoll-benches/ofi`.
//! Each transport runs as its own 2-place job (this binary started again with
//! `ATOLL_PROVIDER` and the transport's variables); a provider the build lacks is listed as
//! skipped with the feature to enable. Under `cargo test` the sizes shrink to a smoke run.
//! `ATOLL_BENCH_TRANSPORTS=shm,ucx-sm,...` picks transports.

use std::process::Command;

use atoll_benches::comm_micro::{self, MicroFigures, Scale};
use atoll_benches::floor::FloorProbe;
use atoll_benches::mpi_peer::{Figures, PeerError};
use atoll_benches::setup::{full_run, run_note, Selection};
use atoll_benches::table::{gbps, ns, rate, ratio, Table};
use atoll_benches::transport_tools::{fi_pingpong, ucx_perftest, UcxFigure};
use atoll_comm::CommBuilder;

/// Set in the job of one transport: "full" or "smoke".
const CHILD: &str = "ATOLL_TRANSPORTS_CHILD";
/// Bytes per put of the bandwidth table (the sizes).
const PUT_SIZES: [usize; 3] = [64 << 10, 1 << 20, 16 << 20];

/// Which tool measures a transport's own figures.
#[derive(Clone, Copy, Debug)]
enum Tool {
    /// The floors only: cache-line round trip and memcpy.
    Floor,
    /// `ucx_perftest` with the transport's environment.
    UcxPerftest,
    /// `fi_pingpong -p <provider>`.
    FiPingpong(&'static str),
}

/// One transport: a name, the environment of its job, its tool, and whether it crosses the
/// kernel's network stack (tens of microseconds a message: its full run is made smaller).
struct Transport {
    name: &'static str,
    env: &'static [(&'static str, &'static str)],
    tool: Tool,
    networked: bool,
}

const TRANSPORTS: &[Transport] = &[
    Transport {
        name: "shm",
        env: &[("ATOLL_PROVIDER", "shm")],
        tool: Tool::Floor,
        networked: false,
    },
    Transport {
        name: "ucx-sm",
        env: &[("ATOLL_PROVIDER", "ucx"), ("UCX_TLS", "sm,self")],
        tool: Tool::UcxPerftest,
        networked: false,
    },
    Transport {
        name: "ucx-tcp",
        env: &[
            ("ATOLL_PROVIDER", "ucx"),
            ("UCX_TLS", "tcp,self"),
            ("UCX_NET_DEVICES", "lo"),
        ],
        tool: Tool::UcxPerftest,
        networked: true,
    },
    Transport {
        name: "ofi-shm",
        env: &[("ATOLL_PROVIDER", "ofi"), ("FI_PROVIDER", "shm")],
        tool: Tool::FiPingpong("shm"),
        networked: false,
    },
    Transport {
        name: "ofi-tcp",
        env: &[("ATOLL_PROVIDER", "ofi"), ("FI_PROVIDER", "tcp")],
        tool: Tool::FiPingpong("tcp"),
        networked: true,
    },
];

/// How much one run measures.
#[derive(Clone, Copy)]
struct Size {
    micro: Scale,
    tool_round_trips: u64,
    tool_messages: u64,
}

const FULL: Size = Size {
    micro: Scale::FULL,
    tool_round_trips: 200_000,
    tool_messages: 2_000_000,
};

/// The full run of a networked transport: a tenth of the messages and bytes.
const FULL_NETWORKED: Size = Size {
    micro: Scale {
        probe_round_trips: 100_000,
        round_trips: 200,
        round_trip_rounds: 2,
        flood_messages: 200_000,
        put_bytes: 32 << 20,
    },
    tool_round_trips: 20_000,
    tool_messages: 200_000,
};

const SMOKE: Size = Size {
    micro: Scale {
        probe_round_trips: 2_000,
        round_trips: 100,
        round_trip_rounds: 1,
        flood_messages: 20_000,
        put_bytes: 4 << 20,
    },
    tool_round_trips: 2_000,
    tool_messages: 20_000,
};

fn main() {
    let result = match std::env::var(CHILD) {
        Ok(size) => child(match size.as_str() {
            "full" => FULL,
            "full-networked" => FULL_NETWORKED,
            _ => SMOKE,
        }),
        Err(_) => driver(full_run()),
    };
    if let Err(message) = result {
        eprintln!("transports benchmark failed: {message}");
        std::process::exit(1);
    }
}

/// One place of one transport's job: measures, and place 0 prints `key value` lines.
fn child(size: Size) -> Result<(), String> {
    let (builder, counters) = comm_micro::handlers(CommBuilder::new());
    let comm = builder.init().map_err(|e| e.to_string())?;
    let probe = FloorProbe::open(&comm)?;
    let figures = comm_micro::measure(
        &comm,
        &counters,
        &probe,
        &Selection::from_env(),
        size.micro,
        &PUT_SIZES,
    )?;
    if comm.here().index() == 0 {
        println!("{}", figures.to_lines());
    }
    comm.flush().map_err(|e| e.to_string())?;
    comm.bootstrap_barrier().map_err(|e| e.to_string())
}

/// What one transport's row holds.
struct Measured {
    atoll: Result<MicroFigures, PeerError>,
    tool_rt: Result<f64, PeerError>,
    tool_rate: Result<f64, PeerError>,
    tool_put: Vec<Result<f64, PeerError>>,
}

fn driver(full: bool) -> Result<(), String> {
    let picked = std::env::var("ATOLL_BENCH_TRANSPORTS").unwrap_or_default();
    let picked = |name: &str| picked.is_empty() || picked.split(',').any(|p| p.trim() == name);
    let exe = std::env::current_exe().map_err(|e| format!("finding this benchmark: {e}"))?;
    let mut rows = Vec::new();
    for transport in TRANSPORTS.iter().filter(|t| picked(t.name)) {
        eprintln!("transports: measuring {}", transport.name);
        let size = match (full, transport.networked) {
            (false, _) => SMOKE,
            (true, false) => FULL,
            (true, true) => FULL_NETWORKED,
        };
        let atoll = run_job(&exe, transport, full);
        let env: Vec<(String, String)> = transport
            .env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        // A transport Atoll could not run (not compiled in) is not worth its tool's time.
        let tool = match atoll {
            Err(_) => Err(PeerError::Skipped("-".into())),
            Ok(_) => Ok(transport.tool),
        };
        let measured = match tool {
            Err(why) => Measured {
                atoll,
                tool_rt: Err(why.clone()),
                tool_rate: Err(why.clone()),
                tool_put: PUT_SIZES.iter().map(|_| Err(why.clone())).collect(),
            },
            Ok(Tool::Floor) => {
                let memcpy = atoll.as_ref().map(|a| a.puts.clone()).unwrap_or_default();
                Measured {
                    tool_rt: atoll
                        .as_ref()
                        .ok()
                        .and_then(|a| a.round_trips.first())
                        .map(|rt| rt.floor())
                        .ok_or_else(|| PeerError::Failed("no floor".into())),
                    tool_rate: Err(PeerError::Skipped("no tool: shm is Atoll's own".into())),
                    tool_put: PUT_SIZES
                        .iter()
                        .map(|&s| {
                            memcpy
                                .iter()
                                .find(|p| p.size == s)
                                .map(|p| p.memcpy)
                                .ok_or_else(|| PeerError::Failed("no memcpy".into()))
                        })
                        .collect(),
                    atoll,
                }
            }
            Ok(Tool::UcxPerftest) => Measured {
                tool_rt: ucx_perftest("ucp_am_lat", 8, size.tool_round_trips, &env)
                    .and_then(|f| expect(f, "round trip")),
                tool_rate: ucx_perftest("ucp_am_bw", 8, size.tool_messages, &env)
                    .and_then(|f| expect(f, "message rate")),
                tool_put: PUT_SIZES
                    .iter()
                    .map(|&s| {
                        let iterations = (size.micro.put_bytes / s).max(4) as u64;
                        ucx_perftest("ucp_put_bw", s, iterations, &env)
                            .and_then(|f| expect(f, "bandwidth"))
                    })
                    .collect(),
                atoll,
            },
            Ok(Tool::FiPingpong(provider)) => Measured {
                tool_rt: fi_pingpong(provider, 8, size.tool_round_trips, &env),
                tool_rate: Err(PeerError::Skipped(
                    "fi_pingpong measures latency only".into(),
                )),
                tool_put: PUT_SIZES
                    .iter()
                    .map(|_| {
                        Err(PeerError::Skipped(
                            "no fi_rma_bw: Debian has no fabtests package".into(),
                        ))
                    })
                    .collect(),
                atoll,
            },
        };
        rows.push((transport, measured));
    }
    print_tables(&rows, full);
    Ok(())
}

/// The figure of the kind a test reports, or a failure saying it reported another.
fn expect(figure: UcxFigure, kind: &str) -> Result<f64, PeerError> {
    match (figure, kind) {
        (UcxFigure::RoundTripNs(v), "round trip")
        | (UcxFigure::MessagesPerS(v), "message rate")
        | (UcxFigure::BytesPerS(v), "bandwidth") => Ok(v),
        (other, _) => Err(PeerError::Failed(format!(
            "ucx_perftest reported {other:?}, not a {kind}"
        ))),
    }
}

/// Runs one transport's 2-place job and reads its figures. A provider the build lacks is
/// [`PeerError::Skipped`] with the place's own error (which names the feature to enable).
fn run_job(
    exe: &std::path::Path,
    transport: &Transport,
    full: bool,
) -> Result<MicroFigures, PeerError> {
    let output = Command::new("timeout")
        .args(["-s", "KILL", if full { "600" } else { "120" }])
        .arg(exe)
        .env(
            CHILD,
            match (full, transport.networked) {
                (false, _) => "smoke",
                (true, false) => "full",
                (true, true) => "full-networked",
            },
        )
        .env("ATOLL_PLACES", "2")
        .env("ATOLL_TAG_OUTPUT", "0")
        .envs(transport.env.iter().copied())
        .output()
        .map_err(|e| PeerError::Failed(format!("starting {}: {e}", exe.display())))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        // The place's own error names the cause; the launcher's closing lines come after it.
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        if let Some(line) = lines.iter().find(|l| l.contains("is not in this build")) {
            return Err(PeerError::Skipped(not_compiled(line)));
        }
        let why = lines
            .iter()
            .find(|l| l.contains("transports benchmark failed"))
            .or(lines.last())
            .unwrap_or(&"no message");
        return Err(PeerError::Failed(format!("{}: {why}", output.status)));
    }
    let figures = Figures::parse(&String::from_utf8_lossy(&output.stdout));
    Ok(MicroFigures::from_figures(&figures, &PUT_SIZES))
}

/// "built without --features X" from a place's `ProviderNotCompiled` error.
fn not_compiled(line: &str) -> String {
    let feature = line.split('`').nth(1).map_or_else(
        || "the provider's feature".to_owned(),
        |f| format!("--features {f}"),
    );
    format!("built without {feature}")
}

fn cell<T>(value: &Result<T, PeerError>, show: impl Fn(&T) -> String) -> String {
    match value {
        Ok(v) => show(v),
        Err(PeerError::Skipped(why)) if why == "-" => "-".into(),
        Err(why) => format!("({why})"),
    }
}

fn ratio_cell(atoll: Option<f64>, tool: &Result<f64, PeerError>) -> String {
    match (atoll, tool) {
        (Some(a), Ok(t)) => ratio(a, *t),
        _ => "-".into(),
    }
}

fn print_tables(rows: &[(&Transport, Measured)], full: bool) {
    let mut latency = Table::new(&[
        "transport",
        "Atoll 8 B AM round trip",
        "tool's 8 B round trip",
        "Atoll/tool",
        "floor before",
        "floor after",
    ]);
    let mut flood = Table::new(&[
        "transport",
        "Atoll 8 B AM flood",
        "Atoll, batches of 1000",
        "tool's 8 B message rate",
        "tool/Atoll",
    ]);
    let mut put = Table::new(&[
        "transport",
        "put size",
        "Atoll put",
        "tool's put",
        "Atoll/tool",
    ]);
    for (transport, m) in rows {
        let rt = m.atoll.as_ref().ok().and_then(|a| a.round_trips.first());
        latency.row(vec![
            transport.name.into(),
            match (&m.atoll, rt) {
                (Err(why), _) => format!("({why})"),
                (Ok(_), Some(rt)) => ns(rt.ns),
                (Ok(_), None) => "-".into(),
            },
            cell(&m.tool_rt, |v| {
                format!("{} ({})", ns(*v), tool_name(transport.tool, "lat"))
            }),
            ratio_cell(rt.map(|r| r.ns), &m.tool_rt),
            rt.map_or("-".into(), |r| ns(r.floor_before)),
            rt.map_or("-".into(), |r| ns(r.floor_after)),
        ]);
        let atoll_flood = m.atoll.as_ref().ok().and_then(|a| a.flood);
        flood.row(vec![
            transport.name.into(),
            atoll_flood.map_or("-".into(), |v| rate(v, "msg")),
            m.atoll
                .as_ref()
                .ok()
                .and_then(|a| a.flood_batched)
                .map_or("-".into(), |v| rate(v, "msg")),
            cell(&m.tool_rate, |v| rate(*v, "msg")),
            match (atoll_flood, &m.tool_rate) {
                (Some(a), Ok(t)) => ratio(*t, a),
                _ => "-".into(),
            },
        ]);
        if let Err(why) = &m.atoll {
            put.row(vec![
                transport.name.into(),
                "all".into(),
                format!("({why})"),
                "-".into(),
                "-".into(),
            ]);
            continue;
        }
        for (i, &size) in PUT_SIZES.iter().enumerate() {
            let atoll_put = m
                .atoll
                .as_ref()
                .ok()
                .and_then(|a| a.puts.iter().find(|p| p.size == size))
                .map(|p| p.put);
            let tool = &m.tool_put[i];
            put.row(vec![
                transport.name.into(),
                format!("{} KiB", size >> 10),
                atoll_put.map_or("-".into(), gbps),
                cell(tool, |v| {
                    format!("{} ({})", gbps(*v), tool_name(transport.tool, "put"))
                }),
                ratio_cell(atoll_put, tool),
            ]);
        }
    }
    println!(
        "Atoll over every transport, 2 places on this host, beside each transport's own tool in the same run{}\n\
         (round trips are medians; the tools report one-way latency, doubled here; floor = cache-line round trip)\n",
        run_note(full)
    );
    println!("{}\n", latency.render());
    println!("{}\n", flood.render());
    println!("{}", put.render());
}

fn tool_name(tool: Tool, what: &str) -> &'static str {
    match (tool, what) {
        (Tool::Floor, "lat") => "cache-line floor",
        (Tool::Floor, _) => "memcpy",
        (Tool::UcxPerftest, "lat") => "ucp_am_lat",
        (Tool::UcxPerftest, _) => "ucp_put_bw",
        (Tool::FiPingpong(_), _) => "fi_pingpong",
    }
}
