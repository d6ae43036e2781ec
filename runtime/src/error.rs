//! The runtime's error type, and the failures a `finish` collects.

use std::fmt;

use atoll_comm::Place;

use crate::channel::ChannelId;

/// What went wrong in an `at!`, an `async_at!` or a `finish`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The transport failed (see the inner error for the cause and what to do).
    #[error(transparent)]
    Comm(atoll_comm::Error),

    /// A place died: every future waiting on it fails with this.
    #[error("{0} failed (its process died)")]
    PlaceFailed(Place),

    /// The remote function panicked or could not run (its failure says where and why).
    #[error("{0}")]
    Remote(Failure),

    /// Activities of a `finish` failed.
    #[error(transparent)]
    Finish(FinishError),

    /// A [`crate::GlobalRef`] was dereferenced away from its home place.
    #[error(
        "the object lives at {home}, not here at {here}: use it there, with `at!(r.home(), ...)`"
    )]
    NotHome {
        /// Where the object lives.
        home: Place,
        /// Where it was dereferenced.
        here: Place,
    },

    /// A handle names no object of its type at this place (freed, or of another type).
    #[error("no such object (created at {0}): it was freed, or the handle's type differs from the object's")]
    NoSuchObject(Place),

    /// A runtime function was called outside the runtime (before `atoll::main` started it, or
    /// on a thread of the program's own).
    #[error("{0} was called outside the Atoll runtime: call it inside `#[atoll::main]` (or `atoll::run`), a remote function, or an activity")]
    NotInRuntime(&'static str),

    /// A channel end was used away from its place (a `Sender` sends from the channel's
    /// sending place, a `Receiver` receives at its receiving place).
    #[error("the {end} of {channel} belongs to {belongs} but was used at {here}: send it there inside `at!`/`async_at!` arguments, or create it there")]
    ChannelElsewhere {
        /// `"Sender"` or `"Receiver"`.
        end: &'static str,
        /// The channel.
        channel: ChannelId,
        /// Where the end must be used.
        belongs: Place,
        /// Where it was used.
        here: Place,
    },

    /// A channel end that has been used tried to move to another place (inside `at!` or
    /// `async_at!` arguments).
    #[error("the {end} of {channel} has been used at {place} and cannot move to another place: send a channel end inside `at!`/`async_at!` arguments before its first use")]
    ChannelEndInUse {
        /// `"Sender"` or `"Receiver"`.
        end: &'static str,
        /// The channel.
        channel: ChannelId,
        /// Where it is in use.
        place: Place,
    },

    /// The channel's `Receiver` was dropped: nothing sent any more would be read.
    #[error("the Receiver of {0} was dropped, so nothing more can be sent on it: keep the Receiver until the Sender is done")]
    ReceiverDropped(ChannelId),

    /// The `Sender` was closed (`SinkExt::close`) and then used again.
    #[error("the Sender of {0} was closed: make another channel to send more")]
    SenderClosed(ChannelId),

    /// `Sink::start_send` without a successful `Sink::poll_ready` while the channel's window
    /// was full.
    #[error("Sink::start_send on {0} without a successful poll_ready while its window is full: use `SinkExt::send`/`feed`, or `Sender::send`")]
    ChannelNotReady(ChannelId),

    /// A second end of the same kind for one channel at one place (a handle deserialized
    /// twice, or forged).
    #[error("{channel} already has a {end} at this place: every channel has one Sender and one Receiver")]
    ChannelTaken {
        /// `"Sender"` or `"Receiver"`.
        end: &'static str,
        /// The channel.
        channel: ChannelId,
    },

    /// A channel's capacity outside `1..=MAX_CAPACITY`.
    #[error("a channel's capacity must be between 1 and {max}, not {capacity}")]
    ChannelCapacity {
        /// What was asked for.
        capacity: usize,
        /// The largest capacity.
        max: usize,
    },

    /// A peer broke the channel protocol: a value that fails validation (or is of another type
    /// than the `Receiver`'s), a sequence number out of place, more values than the window
    /// allows. The values that arrived in order before it are still delivered.
    #[error(
        "{channel}: a bad message from {from}: {reason} (is every place running the same binary?)"
    )]
    ChannelProtocol {
        /// The channel.
        channel: ChannelId,
        /// The place that sent the message.
        from: Place,
        /// What was wrong.
        reason: String,
    },
}

impl From<atoll_comm::Error> for Error {
    fn from(error: atoll_comm::Error) -> Error {
        match error {
            atoll_comm::Error::PlaceFailed(place) => Error::PlaceFailed(place),
            other => Error::Comm(other),
        }
    }
}

/// `Result` with the runtime's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One activity that failed: where, in which remote function, and why.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Failure {
    /// The place it ran at.
    pub place: Place,
    /// The remote function's path (`crate::module::name`), or `finish` for the body of a
    /// finish itself.
    pub function: String,
    /// The panic message or the error.
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {}: {}", self.function, self.place, self.message)
    }
}

/// The failures of the activities of one `finish`, oldest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FinishError {
    /// Every failed activity.
    pub failures: Vec<Failure>,
}

impl fmt::Display for FinishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} activit{} of a finish failed",
            self.failures.len(),
            if self.failures.len() == 1 { "y" } else { "ies" }
        )?;
        for failure in &self.failures {
            write!(f, "\n  - {failure}")?;
        }
        Ok(())
    }
}

impl std::error::Error for FinishError {}

/// The message of a caught panic.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panicked with a non-string payload".to_owned()
    }
}
