//! Every environment variable Atoll reads, with its default, in one place.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `ATOLL_PLACES` | `2` | places the local launcher starts when the program runs outside any launcher |
//! | `ATOLL_PROVIDER` | `shm` | transport: `shm` (built in), `ucx`, `ofi` (cargo features of those names) |
//! | `ATOLL_CHAOS` | unset | a `u64` seed: the receiver delays and reorders deliveries between different senders (never within one sender's stream) to prove that nothing depends on cross-sender order |
//! | `ATOLL_TAG_OUTPUT` | `1` | `0` lets places write straight to the terminal instead of prefixing each line with `[place k]` |
//! | `ATOLL_ON_PLACE_FAILURE` | `kill` | `kill`: when a place dies abnormally the launcher ends the others; `continue`: survivors keep running and learn of the death through [`crate::Comm::failed_places`] |
//! | `ATOLL_CONNECT_TIMEOUT_S` | `30` (`8` under `pmix`, `pmi`, `env`) | seconds the launcher waits for every place to reach the bootstrap before it reports the missing ones and ends the job; under an external bootstrap, the most each answer of the PMI server or coordinator may take |
//! | `ATOLL_SPIN_US` | `50` (`0` when oversubscribed) | microseconds an idle waiter polls before it yields and then parks; places outnumbering cores spin 0 |
//! | `ATOLL_SHM_HEAP_MB` | `256` | registered memory per place in the shm provider, and the registered heap of the ucx and ofi providers (regions, large messages, message buffers); pages are only used when touched |
//! | `ATOLL_SHM_RING_KB` | `256` | bytes of each (sender, receiver) inbox ring in the shm provider; a power of two |
//! | `ATOLL_WORKERS` | cores / places on the node (at least 1) | worker threads of each place's pool (the runtime's), the main thread included |
//! | `ATOLL_PIN` | `1` | `0` leaves workers unpinned; otherwise each worker is pinned to one core of its place's share of the node (no pinning when places outnumber cores) |
//! | `ATOLL_EAGER_MAX` | `8192` | largest payload sent inline; larger payloads go by rendezvous (the receiver pulls them with a one-sided get) |
//! | `ATOLL_BOOTSTRAP` | detected | `local`, `env`, `pmi` or `pmix`: which bootstrap to use, instead of detecting it (order: `ATOLL_BOOTSTRAP`; the local launcher's `ATOLL_RANK`; PMIx's `PMIX_RANK`+`PMIX_NAMESPACE`; PMI's `PMI_FD` or `PMI_PORT`; `ATOLL_COORDINATOR`; then the signs of a launcher without PMI are an error; otherwise the process becomes the local launcher) |
//! | `ATOLL_PMI_VERSION` | `1` | the wire protocol of the `pmi` bootstrap over `PMI_FD`: `1` (PMI-1 lines; hydra, `srun --mpi=pmi2`) or `2` (PMI-2 messages; the same launchers) |
//! | `ATOLL_COORDINATOR` | unset | `host:port` of the `env` bootstrap's coordinator, which place 0 runs (it listens there; the others connect) |
//! | `ATOLL_ENV_RANK` | unset | this place's rank in an `env` job (with `ATOLL_PLACES` as the job's size) |
//! | `ATOLL_ENV_SECRET` | unset | the `env` job's secret, 32 hexadecimal digits, the same at every place; every place presents it to the coordinator (make one with `openssl rand -hex 16`) |
//! | `ATOLL_LOG` | unset | a `tracing` filter (as `RUST_LOG` takes it, e.g. `debug` or `atoll_comm=debug`): Atoll's diagnostics on standard error, each place its own lines |
//! | `FI_PROVIDER` | unset (libfabric's first match) | read by libfabric itself, for `ATOLL_PROVIDER=ofi`: which libfabric providers it loads (`shm`, `tcp;ofi_rxm`, `verbs;ofi_rxm`, ...; `fi_info -t FI_EP_RDM` lists them). The first that offers what Atoll needs reaches every place (passing over `shm` when the job spans hosts); when it is not `shm` and `shm` is loaded, places of one host talk over `shm`: `FI_PROVIDER='shm,tcp;ofi_rxm'` (or unset) keeps shared memory within a host, `FI_PROVIDER='tcp;ofi_rxm'` sends everything over tcp. Every place must use the same. libfabric's own variables (`FI_TCP_IFACE`, `FI_LOG_LEVEL`, ...) apply as well |
//!
//! Under an external bootstrap (`pmix`, `pmi`, `env`), `ATOLL_CONNECT_TIMEOUT_S` (default `8`
//! there, [`EXTERNAL_CONNECT_TIMEOUT_S`]) bounds every wait on the launcher's side that should
//! end at once: `PMIx_Init`; connecting to `PMI_PORT`; each answer of the PMI server other than
//! the end of a barrier (or of a PMI-2 get, which hydra holds until the value is put); reaching
//! the `env` coordinator (retried while place 0 starts) and each of its answers. At the `env`
//! coordinator (place 0) it bounds the wait for every place to connect (counted from the
//! coordinator's start), for a connection to present the job's secret, and, when place 0
//! leaves, for the others to leave. The default keeps a server or coordinator that never
//! answers a clear error within 10 s of the place's start (8 s of waiting, the rest for
//! start-up); raise it where places start more than 8 s apart. A collective (all-gather,
//! barrier) waits for the slowest place without a time limit: the launcher (or the
//! coordinator, when a place's connection ends) ends it when a place dies. Under an external
//! launcher a dead place ends the job (the launcher's policy), so [`crate::Comm::is_failed`]
//! may stay `false`.
//!
//! Set by the local launcher for the places it starts (not for users): `ATOLL_RANK`, `ATOLL_JOB_ID`,
//! `ATOLL_LAUNCHER_SOCKET`, `ATOLL_JOB_SECRET`.

use std::str::FromStr;

use crate::{Error, Result};

/// Places the local launcher starts (`ATOLL_PLACES`).
pub const PLACES: &str = "ATOLL_PLACES";
/// Transport provider (`ATOLL_PROVIDER`).
pub const PROVIDER: &str = "ATOLL_PROVIDER";
/// Diagnostics filter (`ATOLL_LOG`).
pub const LOG: &str = "ATOLL_LOG";
/// Chaos-mode seed (`ATOLL_CHAOS`).
pub const CHAOS: &str = "ATOLL_CHAOS";
/// Output tagging by the local launcher (`ATOLL_TAG_OUTPUT`).
pub const TAG_OUTPUT: &str = "ATOLL_TAG_OUTPUT";
/// What the launcher does when a place dies (`ATOLL_ON_PLACE_FAILURE`).
pub const ON_PLACE_FAILURE: &str = "ATOLL_ON_PLACE_FAILURE";
/// Bootstrap connect timeout in seconds (`ATOLL_CONNECT_TIMEOUT_S`).
pub const CONNECT_TIMEOUT_S: &str = "ATOLL_CONNECT_TIMEOUT_S";
/// The default of [`CONNECT_TIMEOUT_S`] for the local launcher and its places, in seconds.
pub const DEFAULT_CONNECT_TIMEOUT_S: u64 = 30;
/// The default of [`CONNECT_TIMEOUT_S`] under an external bootstrap (`pmix`, `pmi`, `env`), in
/// seconds: a PMI server or coordinator that never answers is then an error within 10 s of
/// the place's start.
pub const EXTERNAL_CONNECT_TIMEOUT_S: u64 = 8;
/// Spin budget of idle waiters in microseconds (`ATOLL_SPIN_US`).
pub const SPIN_US: &str = "ATOLL_SPIN_US";
/// Registered memory per place for the shm provider, MiB (`ATOLL_SHM_HEAP_MB`).
pub const SHM_HEAP_MB: &str = "ATOLL_SHM_HEAP_MB";
/// Size of each shm inbox ring, KiB (`ATOLL_SHM_RING_KB`).
pub const SHM_RING_KB: &str = "ATOLL_SHM_RING_KB";
/// Worker threads per place (`ATOLL_WORKERS`).
pub const WORKERS: &str = "ATOLL_WORKERS";
/// Worker pinning (`ATOLL_PIN`).
pub const PIN: &str = "ATOLL_PIN";
/// Eager threshold in bytes (`ATOLL_EAGER_MAX`).
pub const EAGER_MAX: &str = "ATOLL_EAGER_MAX";
/// libfabric's own choice of provider (`FI_PROVIDER`), read by libfabric, not by Atoll.
pub const FI_PROVIDER: &str = "FI_PROVIDER";

/// This place's rank, set by the local launcher.
pub const RANK: &str = "ATOLL_RANK";
/// The job's id, set by the local launcher (names the job's shared-memory segments).
pub const JOB_ID: &str = "ATOLL_JOB_ID";
/// The launcher's bootstrap socket, set by the local launcher.
pub const LAUNCHER_SOCKET: &str = "ATOLL_LAUNCHER_SOCKET";
/// The per-job secret every place presents to the launcher's socket.
pub const JOB_SECRET: &str = "ATOLL_JOB_SECRET";

/// Which bootstrap to use (`ATOLL_BOOTSTRAP`), instead of detecting it.
pub const BOOTSTRAP: &str = "ATOLL_BOOTSTRAP";
/// The PMI wire protocol over `PMI_FD`, `1` or `2` (`ATOLL_PMI_VERSION`).
pub const PMI_VERSION: &str = "ATOLL_PMI_VERSION";
/// The `env` bootstrap's coordinator, `host:port` (`ATOLL_COORDINATOR`).
pub const COORDINATOR: &str = "ATOLL_COORDINATOR";
/// This place's rank in an `env` job (`ATOLL_ENV_RANK`).
pub const ENV_RANK: &str = "ATOLL_ENV_RANK";
/// The `env` job's secret, 32 hex digits (`ATOLL_ENV_SECRET`).
pub const ENV_SECRET: &str = "ATOLL_ENV_SECRET";

/// Which transport carries the job's messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProviderKind {
    /// The built-in shared-memory provider (one host).
    Shm,
    /// UCX (cargo feature `ucx`).
    Ucx,
    /// libfabric (cargo feature `ofi`).
    Ofi,
}

/// What the local launcher does when a place dies abnormally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnPlaceFailure {
    /// End every other place (the default).
    Kill,
    /// Let the survivors run; they see the failure through `Comm::failed_places`.
    Continue,
}

/// The settings of one place, read from the environment once at start.
#[derive(Clone, Debug)]
pub struct Config {
    /// `ATOLL_PLACES`.
    pub places: usize,
    /// `ATOLL_PROVIDER`.
    pub provider: ProviderKind,
    /// `ATOLL_CHAOS`.
    pub chaos_seed: Option<u64>,
    /// `ATOLL_TAG_OUTPUT`.
    pub tag_output: bool,
    /// `ATOLL_ON_PLACE_FAILURE`.
    pub on_place_failure: OnPlaceFailure,
    /// `ATOLL_CONNECT_TIMEOUT_S`.
    pub connect_timeout_s: u64,
    /// `ATOLL_SPIN_US`, if set (otherwise chosen from the core count).
    pub spin_us: Option<u64>,
    /// `ATOLL_SHM_HEAP_MB`, in bytes.
    pub shm_heap_bytes: usize,
    /// `ATOLL_SHM_RING_KB`, in bytes.
    pub shm_ring_bytes: usize,
    /// `ATOLL_EAGER_MAX`.
    pub eager_max: usize,
    /// `ATOLL_WORKERS`, if set (otherwise chosen from the core count).
    pub workers: Option<usize>,
    /// `ATOLL_PIN`.
    pub pin: bool,
}

impl Config {
    /// Reads every variable; an unusable value is an [`Error::Config`] naming it.
    pub fn from_env() -> Result<Config> {
        let provider = match var(PROVIDER).as_deref() {
            None | Some("shm") => ProviderKind::Shm,
            Some("ucx") => ProviderKind::Ucx,
            Some("ofi") => ProviderKind::Ofi,
            Some(other) => return Err(invalid(PROVIDER, other, "one of shm, ucx, ofi")),
        };
        let on_place_failure = match var(ON_PLACE_FAILURE).as_deref() {
            None | Some("kill") => OnPlaceFailure::Kill,
            Some("continue") => OnPlaceFailure::Continue,
            Some(other) => return Err(invalid(ON_PLACE_FAILURE, other, "kill or continue")),
        };
        let tag_output = flag(TAG_OUTPUT, true)?;
        let config = Config {
            places: parse(PLACES, "a whole number of places, at least 1")?.unwrap_or(2),
            provider,
            chaos_seed: parse(CHAOS, "a u64 seed")?,
            tag_output,
            on_place_failure,
            connect_timeout_s: parse(CONNECT_TIMEOUT_S, "seconds")?
                .unwrap_or(DEFAULT_CONNECT_TIMEOUT_S),
            spin_us: parse(SPIN_US, "microseconds")?,
            shm_heap_bytes: parse::<usize>(SHM_HEAP_MB, "MiB of registered memory, at least 1")?
                .unwrap_or(256)
                .saturating_mul(1 << 20),
            shm_ring_bytes: parse::<usize>(SHM_RING_KB, "a power of two of KiB, 16 to 65536")?
                .unwrap_or(256)
                .saturating_mul(1024),
            eager_max: parse(EAGER_MAX, "bytes, 64 up to a quarter of the ring")?.unwrap_or(8192),
            workers: parse(WORKERS, "a whole number of worker threads, at least 1")?,
            pin: flag(PIN, true)?,
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks the settings against each other; [`crate::CommBuilder::init`] calls it, so a
    /// `Config` built by hand gets the same checks as one read from the environment.
    pub fn validate(&self) -> Result<()> {
        if self.workers == Some(0) {
            return Err(invalid(
                WORKERS,
                "0",
                "a whole number of worker threads, at least 1",
            ));
        }
        if self.places == 0 {
            return Err(invalid(PLACES, "0", "a whole number of places, at least 1"));
        }
        let ring = self.shm_ring_bytes;
        if ring % 1024 != 0
            || !(ring / 1024).is_power_of_two()
            || !(16..=65536).contains(&(ring / 1024))
        {
            return Err(invalid(
                SHM_RING_KB,
                &format!("{} KiB", ring / 1024),
                "a power of two of KiB, 16 to 65536",
            ));
        }
        if self.eager_max < 64 || self.eager_max > ring / 4 {
            return Err(invalid(
                EAGER_MAX,
                &self.eager_max.to_string(),
                "bytes, 64 up to a quarter of ATOLL_SHM_RING_KB",
            ));
        }
        if self.shm_heap_bytes < (1 << 20) || self.shm_heap_bytes % (1 << 20) != 0 {
            return Err(invalid(
                SHM_HEAP_MB,
                &format!("{} bytes", self.shm_heap_bytes),
                "whole MiB of registered memory, at least 1",
            ));
        }
        Ok(())
    }
}
/// The value of `name`, if set and not empty.
pub(crate) fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// A yes/no variable (`1`/`0`, `true`/`false`, `yes`/`no`), `default` when unset.
fn flag(name: &'static str, default: bool) -> Result<bool> {
    match var(name).as_deref() {
        None => Ok(default),
        Some("1") | Some("true") | Some("yes") => Ok(true),
        Some("0") | Some("false") | Some("no") => Ok(false),
        Some(other) => Err(invalid(name, other, "0 or 1")),
    }
}

/// `name` parsed as `T`, `None` when unset.
pub(crate) fn parse<T: FromStr>(name: &'static str, expected: &'static str) -> Result<Option<T>> {
    match var(name) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| invalid(name, &v, expected)),
    }
}

fn invalid(var: &'static str, value: &str, expected: &'static str) -> Error {
    Error::Config {
        var,
        value: value.to_owned(),
        expected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Config {
        Config {
            places: 2,
            provider: ProviderKind::Shm,
            chaos_seed: None,
            tag_output: true,
            on_place_failure: OnPlaceFailure::Kill,
            connect_timeout_s: DEFAULT_CONNECT_TIMEOUT_S,
            spin_us: None,
            shm_heap_bytes: 256 << 20,
            shm_ring_bytes: 256 << 10,
            eager_max: 8192,
            workers: None,
            pin: true,
        }
    }

    #[test]
    fn defaults_are_valid() {
        assert!(defaults().validate().is_ok());
    }

    #[test]
    fn hand_built_configs_are_checked() {
        let bad_ring = Config {
            shm_ring_bytes: 1002,
            ..defaults()
        };
        assert!(matches!(
            bad_ring.validate(),
            Err(Error::Config {
                var: SHM_RING_KB,
                ..
            })
        ));
        let eager_too_big = Config {
            shm_ring_bytes: 16 << 10,
            eager_max: 8192,
            ..defaults()
        };
        assert!(matches!(
            eager_too_big.validate(),
            Err(Error::Config { var: EAGER_MAX, .. })
        ));
        let odd_heap = Config {
            shm_heap_bytes: (1 << 20) + 3,
            ..defaults()
        };
        assert!(matches!(
            odd_heap.validate(),
            Err(Error::Config {
                var: SHM_HEAP_MB,
                ..
            })
        ));
        let no_places = Config {
            places: 0,
            ..defaults()
        };
        assert!(matches!(
            no_places.validate(),
            Err(Error::Config { var: PLACES, .. })
        ));
    }
}
