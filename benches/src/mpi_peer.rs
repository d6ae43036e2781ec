//! Open MPI as a peer in the same run: a benchmark compiles a small C program with `mpicc`,
//! runs it under `mpirun`, and prints its figures beside Atoll's.
//!
//! The C program prints its figures as `key value` lines on standard output (anything else it
//! prints is ignored). Each program lives in `benches/peers/` ([`source`]); [`MpiPeer::build`]
//! compiles it once into the target directory (again only when the source is newer), and
//! [`MpiPeer::run`] starts it with `mpirun --oversubscribe -np N` (Debian's Open MPI then
//! talks over shared memory: ob1 with the vader BTL), bounded by `timeout -s KILL 120`.
//!
//! When `mpicc` or `mpirun` is missing, both return [`PeerError::Skipped`], whose text
//! (`skipped: ...`) says what to install; a benchmark prints it in its table instead of a
//! figure.
//!
//! ```no_run
//! use atoll_benches::mpi_peer::{source, MpiPeer};
//!
//! let figures = MpiPeer::build(&source("mpi_p2p.c"))
//!     .and_then(|peer| peer.run(2, &["31", "2000", "100000", "1000", "5"]));
//! match figures {
//!     Ok(figures) => println!("MPI round trip: {:?} ns", figures.get("pingpong_8_ns")),
//!     Err(why) => println!("{why}"), // "skipped: mpicc not found ..."
//! }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Seconds an MPI run may take before it is killed.
const RUN_LIMIT_S: u32 = 120;

/// What to install when Open MPI is missing.
const INSTALL: &str = "install Open MPI (Debian: apt-get install openmpi-bin libopenmpi-dev)";

/// Why a peer has no figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerError {
    /// The peer cannot run here (Open MPI is not installed): the reason, for the table.
    Skipped(String),
    /// The peer was there but failed: what happened.
    Failed(String),
}

impl fmt::Display for PeerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerError::Skipped(why) => write!(f, "skipped: {why}"),
            PeerError::Failed(why) => write!(f, "failed: {why}"),
        }
    }
}

impl std::error::Error for PeerError {}

/// The path of the peer program `name` in `benches/peers/`.
pub fn source(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("peers")
        .join(name)
}

/// An MPI program, compiled.
#[derive(Debug, Clone)]
pub struct MpiPeer {
    exe: PathBuf,
}

/// The figures a peer printed, by key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    values: BTreeMap<String, f64>,
}

impl Figures {
    /// The figures in `stdout`: every line of exactly two words whose second is a number.
    pub fn parse(stdout: &str) -> Figures {
        let values = stdout
            .lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                let (key, value, rest) = (words.next()?, words.next()?, words.next());
                if rest.is_some() {
                    return None;
                }
                Some((key.to_owned(), value.parse::<f64>().ok()?))
            })
            .collect();
        Figures { values }
    }

    /// The figure `key`, if the peer printed it.
    pub fn get(&self, key: &str) -> Option<f64> {
        self.values.get(key).copied()
    }

    /// The figure `key`, or a [`PeerError::Failed`] naming it.
    pub fn require(&self, key: &str) -> Result<f64, PeerError> {
        self.get(key)
            .ok_or_else(|| PeerError::Failed(format!("the peer printed no `{key}`")))
    }

    /// Every figure, by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, f64)> {
        self.values.iter().map(|(k, v)| (k.as_str(), *v))
    }
}

impl MpiPeer {
    /// Compiles `source` with `mpicc -O2` into `<target dir>/mpi-peers/<file stem>`, unless
    /// that is already newer than the source.
    pub fn build(source: &Path) -> Result<MpiPeer, PeerError> {
        let stem = source
            .file_stem()
            .and_then(|s| s.to_str())
            .ok_or_else(|| PeerError::Failed(format!("{} names no file", source.display())))?;
        let dir = target_dir().join("mpi-peers");
        let exe = dir.join(stem);
        if is_newer(&exe, source) {
            return Ok(MpiPeer { exe });
        }
        std::fs::create_dir_all(&dir)
            .map_err(|e| PeerError::Failed(format!("creating {}: {e}", dir.display())))?;
        // Compiled under a name of its own, then renamed: two runs never see half a binary.
        let partial = dir.join(format!("{stem}.{}.partial", std::process::id()));
        let output = Command::new("mpicc")
            .arg("-O2")
            .arg("-o")
            .arg(&partial)
            .arg(source)
            .output();
        check("mpicc", output)?;
        std::fs::rename(&partial, &exe).map_err(|e| {
            PeerError::Failed(format!(
                "renaming {} to {}: {e}",
                partial.display(),
                exe.display()
            ))
        })?;
        Ok(MpiPeer { exe })
    }

    /// The compiled program.
    pub fn exe(&self) -> &Path {
        &self.exe
    }

    /// Runs the program as `processes` MPI processes with `args`, killed after 120 s, and
    /// returns the figures it printed.
    pub fn run<S: AsRef<str>>(&self, processes: usize, args: &[S]) -> Result<Figures, PeerError> {
        let output = Command::new("timeout")
            .args(["-s", "KILL", &RUN_LIMIT_S.to_string()])
            .args(["mpirun", "--oversubscribe", "--allow-run-as-root"])
            .args(["-np", &processes.to_string()])
            .arg(&self.exe)
            .args(args.iter().map(AsRef::as_ref))
            .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
            .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
            .output();
        let output = check("mpirun", output)?;
        Ok(Figures::parse(&String::from_utf8_lossy(&output.stdout)))
    }
}

/// The output of `tool`, or why there is none: a missing tool is [`PeerError::Skipped`]; a
/// failed one [`PeerError::Failed`] with its last words.
fn check(tool: &str, output: std::io::Result<Output>) -> Result<Output, PeerError> {
    let output = match output {
        Ok(output) => output,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let missing = if tool == "mpirun" {
                "timeout or mpirun"
            } else {
                tool
            };
            return Err(PeerError::Skipped(format!(
                "{missing} not found: {INSTALL}"
            )));
        }
        Err(e) => return Err(PeerError::Failed(format!("starting {tool}: {e}"))),
    };
    // `timeout` answers 127 when the command it runs is missing.
    if tool == "mpirun" && output.status.code() == Some(127) {
        return Err(PeerError::Skipped(format!("mpirun not found: {INSTALL}")));
    }
    if output.status.success() {
        return Ok(output);
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    let status = match output.status.code() {
        Some(code) => format!("status {code}"),
        None => format!("{} (killed after {RUN_LIMIT_S} s?)", output.status),
    };
    Err(PeerError::Failed(format!(
        "{tool} exited with {status}: {}",
        tail.join(" / ")
    )))
}

/// Whether `exe` exists and is at least as new as `source`.
fn is_newer(exe: &Path, source: &Path) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match (modified(exe), modified(source)) {
        (Some(built), Some(written)) => built >= written,
        _ => false,
    }
}

/// Cargo's target directory: `CARGO_TARGET_DIR`, else the ancestor of this executable that
/// holds cargo's `CACHEDIR.TAG`, else the system's temporary directory.
fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            exe.ancestors()
                .find(|dir| dir.join("CACHEDIR.TAG").is_file())
                .map(Path::to_path_buf)
        })
        .unwrap_or_else(std::env::temp_dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_key_value_lines() {
        let figures = Figures::parse("a 1.5\nnoise here and there\nb 2e3\nc x\n\n");
        assert_eq!(figures.get("a"), Some(1.5));
        assert_eq!(figures.get("b"), Some(2000.0));
        assert_eq!(figures.get("c"), None);
        assert_eq!(figures.iter().count(), 2);
        assert!(figures.require("d").is_err());
    }

    #[test]
    fn reasons_say_what_happened() {
        let skipped = PeerError::Skipped("mpicc not found".into());
        assert_eq!(skipped.to_string(), "skipped: mpicc not found");
        let missing = check("mpicc", Err(std::io::Error::from(ErrorKind::NotFound)));
        assert!(matches!(missing, Err(PeerError::Skipped(why)) if why.contains("openmpi-bin")));
    }

    #[test]
    fn peers_are_in_the_peers_directory() {
        assert!(source("mpi_p2p.c").is_file());
    }
}
