//! What a benchmark sets up before it measures: whether this is a full run or a smoke run,
//! the measurements asked for (`ATOLL_BENCH_ONLY`), the host's load around the run, and for
//! the runtime benchmarks (`channels`, `runtime`) their sizes and their main at 2 places.

use std::fmt;
use std::future::Future;
use std::process::ExitCode;

/// Whether this is a full run: `cargo bench` passes `--bench` to a benchmark, and `cargo test`
/// runs it without, as a smoke run with reduced sizes.
pub fn full_run() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// What a table's heading says of the run: nothing for a full run, that the sizes are reduced
/// for a smoke run.
pub fn run_note(full: bool) -> &'static str {
    if full {
        ""
    } else {
        " (smoke run: sizes reduced; `cargo bench` for the real ones)"
    }
}

/// Which measurements to run: `ATOLL_BENCH_ONLY=rt,flood` (all when unset).
#[derive(Clone, Debug)]
pub struct Selection {
    only: String,
}

impl Selection {
    /// The selection in `ATOLL_BENCH_ONLY`.
    pub fn from_env() -> Selection {
        Selection {
            only: std::env::var("ATOLL_BENCH_ONLY").unwrap_or_default(),
        }
    }

    /// Whether measurement `name` (one of the benchmark's, such as `rt`) runs.
    pub fn wants(&self, name: &str) -> bool {
        self.only.is_empty() || self.only.split(',').any(|s| s.trim() == name)
    }
}

/// The host's load average (its 1, 5 and 15 minute figures), to print beside the figures:
/// other processes on these cores skew every one of them.
#[derive(Clone, Debug)]
pub struct Load(String);

impl Load {
    /// The load average now (empty where `/proc/loadavg` cannot be read).
    pub fn now() -> Load {
        let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        Load(
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" "),
        )
    }

    /// Prints the load average before the run (this one) and after it (now).
    pub fn print_with_now(&self) {
        println!(
            "load average before / after: {self} / {} (other processes on these cores skew every figure)",
            Load::now()
        );
    }
}

impl fmt::Display for Load {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The sizes of a runtime benchmark's run: those of the floor probe and of the round trips that
/// every runtime benchmark measures, full or smoke, and the benchmark's own (`B`).
#[derive(Clone, Copy, Debug)]
pub struct Sizes<B> {
    /// Whether this is a full run (see [`full_run`]).
    pub full: bool,
    /// Cache-line round trips per floor probe.
    pub probe: u64,
    /// Round trips before the measured batches.
    pub warm_up: u64,
    /// Measured batches of round trips.
    pub batches: usize,
    /// Round trips per batch.
    pub batch: u64,
    /// Runs of each measurement that is not a round trip.
    pub runs: usize,
    /// The benchmark's own sizes.
    pub own: B,
}

impl<B> Sizes<B> {
    /// The full sizes (`full`) or the smoke ones, with the benchmark's own sizes `own`.
    pub fn new(full: bool, own: B) -> Sizes<B> {
        let (probe, warm_up, batches, batch, runs) = if full {
            (100_000, 10_000, 31, 2000, 5)
        } else {
            (2_000, 100, 5, 100, 3)
        };
        Sizes {
            full,
            probe,
            warm_up,
            batches,
            batch,
            runs,
            own,
        }
    }

    /// How a round trip's figure was taken, for its row: `median of B batches of N`.
    pub fn batches_label(&self) -> String {
        format!("median of {} batches of {}", self.batches, self.batch)
    }
}

/// Runs the runtime benchmark `bench` as this process's `main` (call it first, while the
/// process has one thread): at 2 places unless `ATOLL_PLACES` says otherwise, with the full
/// sizes and the benchmark's own `full` ones under `cargo bench`, the smoke sizes and its
/// `smoke` ones otherwise.
pub fn main<B, F, Fut>(full: B, smoke: B, bench: F) -> ExitCode
where
    B: Send + 'static,
    F: FnOnce(Sizes<B>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    if std::env::var_os("ATOLL_PLACES").is_none() {
        // Single-threaded at this point, before any place starts.
        std::env::set_var("ATOLL_PLACES", "2");
    }
    let sizes = if full_run() {
        Sizes::new(true, full)
    } else {
        Sizes::new(false, smoke)
    };
    atoll::run(move || bench(sizes))
}
