//! The identities of a job: its id, its secret, and the build id of the binary.

use std::collections::hash_map::DefaultHasher;
use std::fmt;
use std::fs::File;
use std::hash::Hasher;
use std::io::{self, Read};
use std::sync::OnceLock;

use crate::{Error, Result};

/// Bytes of the per-job secret (128 bits).
pub(crate) const SECRET_LEN: usize = 16;

/// The per-job secret every place presents to the launcher's socket.
///
/// Anyone on the host can connect to the socket; only the launcher's children know the
/// secret (it travels in their environment). `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct JobSecret([u8; SECRET_LEN]);

impl JobSecret {
    /// A fresh secret from the kernel's random source.
    pub(crate) fn random() -> Result<JobSecret> {
        random_bytes().map(JobSecret)
    }

    /// The secret as raw bytes (as it travels on the socket).
    pub(crate) fn as_bytes(&self) -> &[u8; SECRET_LEN] {
        &self.0
    }

    /// The secret as it travels in the environment: 32 lowercase hex digits.
    pub(crate) fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// Parses [`JobSecret::to_hex`]'s form; `None` when `s` is not 32 hex digits.
    pub(crate) fn from_hex(s: &str) -> Option<JobSecret> {
        // Checked digit by digit: `from_str_radix` alone would also take a sign.
        if s.len() != 2 * SECRET_LEN || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut bytes = [0; SECRET_LEN];
        for (byte, pair) in bytes.iter_mut().zip(s.as_bytes().chunks_exact(2)) {
            *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
        }
        Some(JobSecret(bytes))
    }

    /// Compares with `presented` in time independent of where they differ, so that a
    /// local attacker cannot learn the secret a byte at a time from response times.
    pub(crate) fn matches(&self, presented: &[u8; SECRET_LEN]) -> bool {
        let diff = self
            .0
            .iter()
            .zip(presented)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(diff) == 0
    }
}

impl fmt::Debug for JobSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JobSecret(..)")
    }
}

/// A fresh job id: 16 lowercase hex digits (so letters and digits only, as segment names need).
pub(crate) fn new_job_id() -> Result<String> {
    random_bytes::<8>().map(|bytes| hex(&bytes))
}

/// Whether `id` can be a job id: 1 to 64 ASCII letters, digits or `-`.
pub(crate) fn is_valid_job_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// A hash of this process's executable file, computed once per process.
///
/// Two places with the same build id run byte-identical binaries, so they agree on handler
/// ids, wire formats and layouts.
pub(crate) fn build_id() -> Result<u64> {
    static BUILD_ID: OnceLock<u64> = OnceLock::new();
    if let Some(&id) = BUILD_ID.get() {
        return Ok(id);
    }
    let id = hash_file("/proc/self/exe")
        .map_err(|e| Error::io("hashing this program's executable (/proc/self/exe)", e))?;
    Ok(*BUILD_ID.get_or_init(|| id))
}

/// SipHash-1-3 (std's `DefaultHasher` with its fixed keys) over the whole file.
///
/// `DefaultHasher`'s algorithm may change between Rust releases; that only matters for
/// binaries built by different compilers, which differ in their bytes anyway.
fn hash_file(path: &str) -> io::Result<u64> {
    let mut file = File::open(path)?;
    let mut hasher = DefaultHasher::new();
    let mut buf = vec![0; 1 << 16];
    loop {
        match file.read(&mut buf) {
            Ok(0) => return Ok(hasher.finish()),
            Ok(n) => hasher.write(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0; N];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| Error::io("reading /dev/urandom for the job's id and secret", e))?;
    Ok(bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_round_trips_through_hex() {
        let secret = JobSecret::random().unwrap();
        let hex = secret.to_hex();
        assert_eq!(hex.len(), 32);
        assert_eq!(JobSecret::from_hex(&hex), Some(secret.clone()));
        assert!(secret.matches(secret.as_bytes()));
        assert!(!secret.matches(&[0; SECRET_LEN]) || secret.as_bytes() == &[0; SECRET_LEN]);
        assert_eq!(format!("{secret:?}"), "JobSecret(..)");
    }

    #[test]
    fn malformed_secrets_are_rejected() {
        assert_eq!(JobSecret::from_hex(""), None);
        assert_eq!(JobSecret::from_hex(&"g".repeat(32)), None);
        assert_eq!(JobSecret::from_hex(&"0".repeat(31)), None);
        assert_eq!(JobSecret::from_hex(&"é".repeat(16)), None);
        assert_eq!(JobSecret::from_hex("+1".repeat(16).as_str()), None);
    }

    #[test]
    fn job_ids_are_segment_safe() {
        let id = new_job_id().unwrap();
        assert_eq!(id.len(), 16);
        assert!(is_valid_job_id(&id));
        assert!(!is_valid_job_id(""));
        assert!(!is_valid_job_id("a/b"));
        assert!(!is_valid_job_id(&"a".repeat(65)));
    }

    #[test]
    fn build_id_is_stable() {
        assert_eq!(build_id().unwrap(), build_id().unwrap());
    }
}
