//! The one error type of `atoll-comm`.

use std::io;

use crate::Place;

/// What went wrong in the transport layer.
///
/// Every variant names the cause and, where there is one, what to do about it.
/// Errors caused by a peer's bytes (`Malformed`, `PlaceOutOfRange`,
/// `UnknownHandler`, `InvalidPayload`) are reported by [`crate::Comm::progress`]
/// after the offending message has been discarded; the place keeps running
/// and no other message is lost.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An environment variable holds a value Atoll cannot use.
    #[error("environment variable {var}={value:?} is invalid: expected {expected}")]
    Config {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// What it should look like.
        expected: &'static str,
    },

    /// `ATOLL_PROVIDER` asks for a provider this build does not contain.
    #[error(
        "provider {provider:?} is not in this build of Atoll: it comes with the cargo feature \
         `{feature}` (rebuild with it, where this version has it), or use ATOLL_PROVIDER=shm"
    )]
    ProviderNotCompiled {
        /// The provider asked for.
        provider: &'static str,
        /// The cargo feature that compiles it in.
        feature: &'static str,
    },

    /// The bootstrap (the launcher's rendezvous) failed or was left in an unusable state.
    #[error("bootstrap failed: {reason}")]
    Bootstrap {
        /// What happened.
        reason: String,
    },

    /// The process was started by a launcher that gives it no PMI (for example plain `srun`,
    /// or `mpirun` without PMIx), so it cannot learn its place in the job.
    #[error("{found}, but no PMI reaches this process: {fix}")]
    LauncherWithoutPmi {
        /// What the environment shows (the launcher's variables that were found).
        found: String,
        /// What to do instead.
        fix: &'static str,
    },

    /// A place of the job runs another build of the program than this place.
    #[error(
        "{place} runs a different build of the program (build id {theirs:016x}, this place's \
         {ours:016x}): every place of a job must run the same executable; build once and \
         launch that one binary everywhere"
    )]
    BuildMismatch {
        /// The first place (lowest index) whose build differs.
        place: Place,
        /// This place's build id.
        ours: u64,
        /// That place's build id.
        theirs: u64,
    },

    /// The shared-memory provider was chosen for a job whose places run on several hosts.
    #[error(
        "the shm provider needs every place on one host, but this job's places run on {hosts} \
         hosts ({names}); use ATOLL_PROVIDER=ucx or ATOLL_PROVIDER=ofi"
    )]
    ShmAcrossHosts {
        /// How many hosts.
        hosts: usize,
        /// Some of their names.
        names: String,
    },

    /// An operating-system call of the bootstrap or the launcher failed.
    #[error("{what}: {source}")]
    Io {
        /// What Atoll was doing.
        what: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// Creating or mapping a shared-memory segment failed.
    #[error(
        "shared memory: {op} {name} failed: {source} (is /dev/shm mounted and large enough? \
         in a container, raise --shm-size; or lower ATOLL_SHM_HEAP_MB)"
    )]
    SharedMemory {
        /// The operation (`shm_open`, `ftruncate`, `mmap`).
        op: &'static str,
        /// The segment's name.
        name: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// A peer's shared-memory segment does not have the layout this place expects.
    #[error("the segment of {place} does not match this place's: {reason} (are all places the same binary, started with the same ATOLL_* settings?)")]
    SegmentMismatch {
        /// The peer.
        place: Place,
        /// What differs.
        reason: String,
    },

    /// A message in the inbox is not a well-formed record (bad length, kind or header).
    #[error("malformed message from {from}: {reason}; the message was discarded")]
    Malformed {
        /// The ring the message came through.
        from: Place,
        /// What is wrong with it.
        reason: String,
    },

    /// A message claims to come from a place outside the job.
    #[error("message through the ring of {ring} claims to come from place index {claimed}, outside 0..{places}; the message was discarded")]
    PlaceOutOfRange {
        /// The ring it arrived through.
        ring: Place,
        /// The index it claims.
        claimed: u64,
        /// The number of places of the job.
        places: usize,
    },

    /// A message names a handler that is not registered at this place.
    #[error("message from {from} names handler {handler}, which is not registered at {here}; register every handler in `CommBuilder` at every place before `init`")]
    UnknownHandler {
        /// The sender.
        from: Place,
        /// The receiving place.
        here: Place,
        /// The handler id in the message.
        handler: u16,
    },

    /// A payload failed validation: its bytes are not a valid archive of the expected type.
    #[error("payload from {from} to handler {handler} failed validation: {source}")]
    InvalidPayload {
        /// The sender.
        from: Place,
        /// The handler it was sent to.
        handler: u16,
        /// Why rkyv/bytecheck rejected it.
        #[source]
        source: rkyv::rancor::BoxedError,
    },

    /// A handler reported a failure of its own.
    #[error("handler {handler} failed on a message from {from}: {message}")]
    Handler {
        /// The sender.
        from: Place,
        /// The handler.
        handler: u16,
        /// What the handler said.
        message: String,
    },

    /// Serializing a value failed.
    #[error("serializing a payload failed: {source}")]
    Serialize {
        /// rkyv's error.
        #[source]
        source: rkyv::rancor::BoxedError,
    },

    /// A payload is larger than any buffer Atoll can give it.
    #[error("payload of {len} bytes is larger than the {limit} bytes available for one message; raise ATOLL_SHM_HEAP_MB or send it in pieces")]
    PayloadTooLarge {
        /// The payload's size (at least).
        len: usize,
        /// The most one message may carry now.
        limit: usize,
    },

    /// Registered memory is exhausted.
    #[error("registered memory exhausted: {requested} bytes requested, {available} free at {here}; raise ATOLL_SHM_HEAP_MB or free regions")]
    OutOfRegisteredMemory {
        /// The place.
        here: Place,
        /// Bytes asked for.
        requested: usize,
        /// Bytes still free (possibly fragmented).
        available: usize,
    },

    /// An RMA operation reaches outside its region.
    #[error(
        "RMA out of bounds: offset {offset} + length {len} exceeds the region's {region_len} bytes"
    )]
    OutOfBounds {
        /// Offset into the region.
        offset: usize,
        /// Length of the access.
        len: usize,
        /// The region's length.
        region_len: usize,
    },

    /// An atomic operation's offset is not aligned.
    #[error("atomic RMA at offset {offset} is not aligned to {align} bytes")]
    Misaligned {
        /// Offset into the region.
        offset: usize,
        /// Required alignment.
        align: usize,
    },

    /// A remote key does not describe memory registered at its place.
    #[error("invalid remote key: {reason}")]
    InvalidRemoteKey {
        /// What is wrong with it.
        reason: String,
    },

    /// A place index outside the job.
    #[error("{place} does not exist: this job has {places} places (0..{places})")]
    NoSuchPlace {
        /// The place asked for.
        place: Place,
        /// The number of places.
        places: usize,
    },

    /// A libfabric call or completion failed (the `ofi` provider).
    #[error(
        "libfabric: {what} failed: {text} (error {code}; FI_PROVIDER picks libfabric's provider, \
         `fi_info -t FI_EP_RDM` lists those available, FI_LOG_LEVEL=warn shows libfabric's own log)"
    )]
    Ofi {
        /// The call or operation.
        what: String,
        /// libfabric's error number (`FI_E*`), positive; 0 when Atoll itself refused.
        code: i32,
        /// `fi_strerror`'s text, with the provider's detail where it gave one.
        text: String,
    },

    /// A place of the job has died; nothing it was asked to do will complete.
    #[error("{0} failed (its process died)")]
    PlaceFailed(Place),

    /// A UCX call failed (provider `ucx`).
    #[error(
        "UCX: {op} failed: {message} (status {code}); check the UCX_* environment \
         (UCX_TLS, UCX_NET_DEVICES; `ucx_info -d` lists what this host offers)"
    )]
    Ucx {
        /// The UCX function.
        op: &'static str,
        /// Its `ucs_status_t` code.
        code: i8,
        /// UCX's description of the code.
        message: String,
    },
}

impl Error {
    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> Error {
        Error::Io {
            what: what.into(),
            source,
        }
    }

    pub(crate) fn bootstrap(reason: impl Into<String>) -> Error {
        Error::Bootstrap {
            reason: reason.into(),
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
