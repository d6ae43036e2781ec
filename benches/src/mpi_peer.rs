//! A peer measured in the same run: a small C program built with Open MPI's `mpicc` and run
//! under its `mpirun`, which prints `name value` lines at rank 0.
//!
//! When Open MPI is not installed (`mpicc` or `mpirun` missing), [`MpiPeer::build`] says why,
//! and the benchmark prints that reason in place of the peer's figures.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A built MPI peer program.
#[derive(Debug)]
pub struct MpiPeer {
    binary: PathBuf,
}

/// The figures a peer printed, by name.
pub type Figures = HashMap<String, f64>;

impl MpiPeer {
    /// Compiles `source` with `mpicc -O2` next to the running benchmark's executable.
    /// `Err` says why there is no peer (Open MPI missing, or the build failed).
    pub fn build(source: &Path) -> Result<MpiPeer, String> {
        for tool in ["mpicc", "mpirun"] {
            if !on_path(tool) {
                return Err(format!(
                    "skipped: `{tool}` not found (install Debian's openmpi-bin and libopenmpi-dev)"
                ));
            }
        }
        let stem = source
            .file_stem()
            .ok_or_else(|| format!("{} names no file", source.display()))?;
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let dir = exe.parent().unwrap_or(Path::new("."));
        let binary = dir.join(stem);
        let output = Command::new("mpicc")
            .arg("-O2")
            .arg("-o")
            .arg(&binary)
            .arg(source)
            .output()
            .map_err(|e| format!("mpicc: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "mpicc {} failed: {}",
                source.display(),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        Ok(MpiPeer { binary })
    }

    /// Runs the peer on `places` processes of this host with `args`, killed after `timeout`,
    /// and returns the `name value` lines it printed.
    pub fn run(
        &self,
        places: usize,
        args: &[String],
        timeout: Duration,
    ) -> Result<Figures, String> {
        let output = Command::new("timeout")
            .args(["-s", "KILL", &timeout.as_secs().max(1).to_string()])
            .arg("mpirun")
            .args(["--oversubscribe", "-np", &places.to_string()])
            .arg(&self.binary)
            .args(args)
            // Open MPI refuses root unless told twice (CI runs as root).
            .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
            .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
            .output()
            .map_err(|e| format!("mpirun: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "mpirun -np {places} {} failed ({}): {}",
                self.binary.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        Ok(parse_figures(&String::from_utf8_lossy(&output.stdout)))
    }
}

/// The `name value` lines of `text` (other lines are ignored).
pub fn parse_figures(text: &str) -> Figures {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let name = words.next()?;
            let value = words.next()?.parse().ok()?;
            words.next().is_none().then(|| (name.to_string(), value))
        })
        .collect()
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_name_value_lines() {
        let figures = parse_figures("barrier 522.5\nnoise here too\nbroadcast_8 10\n\n");
        assert_eq!(figures.len(), 2);
        assert_eq!(figures["barrier"], 522.5);
        assert_eq!(figures["broadcast_8"], 10.0);
    }
}
