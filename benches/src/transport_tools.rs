//! The transports' own benchmark tools as peers in the same run: `ucx_perftest` (UCX, from
//! Debian's `ucx-utils`) and `fi_pingpong` (libfabric, from `libfabric-bin`). Each runs as a
//! server and a client process on loopback, bounded by `timeout -s KILL`, with the
//! environment of the transport being measured (`UCX_TLS`, `FI_PROVIDER`, ...).
//!
//! Both tools report one-way latency (half a round trip); the functions here return round
//! trips, so that they sit beside Atoll's round trips unchanged.

use std::io::Read;
use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::Duration;

use crate::mpi_peer::PeerError;

/// Seconds a tool may run before it is killed.
const RUN_LIMIT_S: u32 = 60;

/// What a `ucx_perftest` run measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UcxFigure {
    /// Median round trip (ns): twice the reported one-way median.
    RoundTripNs(f64),
    /// Overall message rate (messages/s).
    MessagesPerS(f64),
    /// Overall bandwidth (bytes/s).
    BytesPerS(f64),
}

/// Runs `ucx_perftest -t test -s size -n iterations` between a server and a client on
/// loopback, with `env` added to both, and reads the figure that `test` reports: a round trip
/// for `*_lat` tests, a bandwidth for sizes above 8 bytes, a message rate otherwise.
pub fn ucx_perftest(
    test: &str,
    size: usize,
    iterations: u64,
    env: &[(String, String)],
) -> Result<UcxFigure, PeerError> {
    let port = free_port()?.to_string();
    let common = |cmd: &mut Command| {
        cmd.args(["-p", &port]).envs(env.iter().cloned());
    };
    let run = run_pair(
        "ucx_perftest",
        "ucx-utils",
        |server| common(server),
        |client| {
            client
                .arg("127.0.0.1")
                .args(["-t", test, "-s", &size.to_string()])
                .args(["-n", &iterations.to_string(), "-v"]);
            common(client)
        },
    )?;
    let csv = String::from_utf8_lossy(&run.stdout);
    let (header, values) = csv_record(&csv).ok_or_else(|| {
        PeerError::Failed(format!(
            "ucx_perftest printed no CSV figures: {}",
            last_words(&run)
        ))
    })?;
    let field = |name: &str| -> Result<f64, PeerError> {
        header
            .iter()
            .position(|h| *h == name)
            .and_then(|i| values.get(i))
            .and_then(|v| v.parse::<f64>().ok())
            .ok_or_else(|| PeerError::Failed(format!("ucx_perftest printed no `{name}`")))
    };
    if test.ends_with("_lat") {
        // One-way latency in microseconds.
        Ok(UcxFigure::RoundTripNs(field("50.0_percentile_lat")? * 2e3))
    } else if size > 8 {
        // UCX's "MB" is 2^20 bytes.
        Ok(UcxFigure::BytesPerS(
            field("overall_bw")? * (1u64 << 20) as f64,
        ))
    } else {
        Ok(UcxFigure::MessagesPerS(field("overall_mr")?))
    }
}

/// Runs `fi_pingpong` over the libfabric provider `provider` (`shm`, `tcp`, ...; RDM
/// endpoints) with `size`-byte messages, `iterations` round trips, with `env` added; returns
/// the round trip in ns (twice the reported time per transfer).
pub fn fi_pingpong(
    provider: &str,
    size: usize,
    iterations: u64,
    env: &[(String, String)],
) -> Result<f64, PeerError> {
    let port = free_port()?.to_string();
    let common = |cmd: &mut Command| {
        cmd.args(["-p", provider, "-e", "rdm", "-S", &size.to_string()])
            .args(["-I", &iterations.to_string()])
            .envs(env.iter().cloned());
    };
    let run = run_pair(
        "fi_pingpong",
        "libfabric-bin",
        |server| {
            common(server);
            server.args(["-B", &port]);
        },
        |client| {
            common(client);
            client.args(["-P", &port, "127.0.0.1"]);
        },
    )?;
    // "bytes #sent #ack total time MB/sec usec/xfer Mxfers/sec", then one line of values.
    let stdout = String::from_utf8_lossy(&run.stdout);
    let mut lines = stdout.lines().skip_while(|l| !l.starts_with("bytes"));
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let values: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    header
        .iter()
        .position(|h| *h == "usec/xfer")
        .and_then(|i| values.get(i))
        .and_then(|v| v.parse::<f64>().ok())
        .map(|one_way_us| one_way_us * 2e3)
        .ok_or_else(|| {
            PeerError::Failed(format!(
                "fi_pingpong printed no usec/xfer: {}",
                last_words(&run)
            ))
        })
}

/// A TCP port that was free a moment ago on loopback.
fn free_port() -> Result<u16, PeerError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| PeerError::Failed(format!("finding a free port: {e}")))
}

/// Starts `tool` as a server (`server` adds its arguments), then as a client (tried again
/// while the server is not yet listening), and returns the client's output once both ended. A
/// missing tool is [`PeerError::Skipped`] naming `package`.
fn run_pair(
    tool: &str,
    package: &str,
    server: impl FnOnce(&mut Command),
    client: impl Fn(&mut Command),
) -> Result<Output, PeerError> {
    let limit = RUN_LIMIT_S.to_string();
    let bounded = || {
        let mut cmd = Command::new("timeout");
        cmd.args(["-s", "KILL", &limit, tool]);
        cmd
    };
    let missing = || PeerError::Skipped(format!("{tool} not found: install Debian's {package}"));
    let mut server_cmd = bounded();
    server(&mut server_cmd);
    let spawned = server_cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| PeerError::Failed(format!("starting timeout {tool}: {e}")))?;
    let mut server = KillOnDrop(spawned);
    for _ in 0..20 {
        thread::sleep(Duration::from_millis(250));
        if let Ok(Some(status)) = server.0.try_wait() {
            if status.code() == Some(127) {
                return Err(missing());
            }
            let mut stderr = String::new();
            if let Some(mut pipe) = server.0.stderr.take() {
                let _ = pipe.read_to_string(&mut stderr);
            }
            return Err(PeerError::Failed(format!(
                "{tool} server exited with {status}: {}",
                stderr.lines().last().unwrap_or_default()
            )));
        }
        let mut client_cmd = bounded();
        client(&mut client_cmd);
        let output = client_cmd
            .output()
            .map_err(|e| PeerError::Failed(format!("starting timeout {tool}: {e}")))?;
        if output.status.success() {
            let _ = server.0.wait();
            return Ok(output);
        }
        if output.status.code() == Some(127) {
            return Err(missing());
        }
        if !refused(&output) {
            return Err(PeerError::Failed(format!(
                "{tool} client exited with {}: {}",
                output.status,
                last_words(&output)
            )));
        }
    }
    Err(PeerError::Failed(format!(
        "{tool} server never accepted the client in 5 s"
    )))
}

fn refused(output: &Output) -> bool {
    let stderr = String::from_utf8_lossy(&output.stderr);
    stderr.contains("refused") || stderr.contains("Connection refused")
}

fn last_words(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let text = if stderr.trim().is_empty() {
        stdout
    } else {
        stderr
    };
    let tail: Vec<&str> = text.lines().rev().take(3).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
}

/// The header and the last record of CSV output (lines with commas; the header is the first).
fn csv_record(text: &str) -> Option<(Vec<&str>, Vec<&str>)> {
    let mut rows = text.lines().filter(|l| l.contains(','));
    let header = rows.next()?.split(',').map(str::trim).collect();
    let values = rows.next_back()?.split(',').map(str::trim).collect();
    Some((header, values))
}

/// A child process killed (and reaped) when dropped, so a failed run leaves no server behind.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}
