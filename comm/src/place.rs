//! Place identities: the processes of a job, numbered `0..N`.

use std::fmt;

/// One process of an Atoll job, identified by its index in `0..N`.
///
/// Places are fixed for the life of a job. `Place` is a plain index: it can be
/// copied, compared, hashed and sent to other places inside messages.
///
/// ```
/// use atoll_comm::Place;
/// let p = Place::new(3);
/// assert_eq!(p.index(), 3);
/// assert_eq!(p.to_string(), "place 3");
/// ```
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[rkyv(derive(Debug, PartialEq, Eq))]
pub struct Place(u32);

impl Place {
    /// The place with index `index`.
    ///
    /// # Panics
    /// If `index` does not fit in a `u32` (no job has that many places).
    pub const fn new(index: usize) -> Place {
        assert!(
            index <= u32::MAX as usize,
            "place index does not fit in u32"
        );
        Place(index as u32)
    }

    /// This place's index in `0..N`.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

impl ArchivedPlace {
    /// The place this archived value names (not yet checked against the job's size).
    pub fn to_place(&self) -> Place {
        Place(self.0.to_native())
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "place {}", self.0)
    }
}

impl fmt::Debug for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Place({})", self.0)
    }
}
