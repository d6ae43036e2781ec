//! What a collective can fail with.

use atoll_comm::Place;

/// A collective's error. Every member of the team sees an error when a collective cannot
/// complete: arguments that disagree are caught where they are given, a malformed message
/// where it arrives, and a member that died at each member that waits on it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The transport failed (a send, the registered memory of a large broadcast).
    #[error(transparent)]
    Comm(#[from] atoll_comm::Error),

    /// A member of the team died while this collective waited for it.
    #[error("{place} died during a collective on team {team:#x}; the collective cannot complete (the job's ATOLL_ON_PLACE_FAILURE=continue lets the survivors go on without it)")]
    PlaceFailed {
        /// The dead place.
        place: Place,
        /// The team's id.
        team: u64,
    },

    /// A team rank (a root, a destination) outside the team.
    #[error("{what} is rank {rank}, but the team has {size} members (ranks 0..{size})")]
    NoSuchRank {
        /// Which argument.
        what: &'static str,
        /// The rank given.
        rank: usize,
        /// The team's size.
        size: usize,
    },

    /// An argument whose length must match the team or the other members does not.
    #[error("{what}: expected {expected}, got {got}")]
    WrongLength {
        /// Which argument, and what it is measured in.
        what: &'static str,
        /// What it must be.
        expected: usize,
        /// What it is.
        got: usize,
    },

    /// The root of a rooted collective gave no value (`None` where the root must give one).
    #[error("the root (rank {root}) of {collective} gave no value: pass Some(..) at the root")]
    RootWithoutValue {
        /// The collective.
        collective: &'static str,
        /// The root's rank.
        root: usize,
    },

    /// A peer's message was malformed, or did not match the collective it claimed to be part
    /// of (a member that called a different collective, or different sizes, at this point).
    #[error("a malformed collective message from {from} on team {team:#x}: {reason} (do all members call the same collectives, in the same order, with matching sizes?)")]
    InvalidMessage {
        /// The sender.
        from: Place,
        /// The team's id.
        team: u64,
        /// What was wrong.
        reason: String,
    },

    /// A value could not be serialized.
    #[error("a value given to a collective could not be serialized: {reason}")]
    Serialize {
        /// What rkyv said.
        reason: String,
    },

    /// This place is not a member of the team it was asked to use.
    #[error("{place} is not a member of team {team:#x}")]
    NotAMember {
        /// This place.
        place: Place,
        /// The team's id.
        team: u64,
    },
}

/// A collective's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
