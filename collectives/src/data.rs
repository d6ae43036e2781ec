//! What collectives carry: any rkyv type ([`Data`], serialized once where it enters the
//! collective and validated where it leaves), and slices of plain numbers ([`Element`], moved
//! as their bytes, with no per-element serialization).

use rkyv::api::high::{HighDeserializer, HighSerializer};
use rkyv::rancor::BoxedError;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize};

use atoll_comm::CheckedArchive;

/// A value a collective can carry: any type that derives `rkyv::Archive`, `rkyv::Serialize`
/// and `rkyv::Deserialize` (and the standard types rkyv supports: integers, `String`, `Vec`,
/// tuples, options, ...). Implemented for every such type; there is nothing to implement.
///
/// A value is serialized once where it enters a collective; places that relay it (the inner
/// nodes of a tree) forward its bytes without deserializing them, and each place that receives
/// it validates the bytes before it reads them.
pub trait Data: Sized + Send + 'static {
    /// The value's archive.
    #[doc(hidden)]
    fn encode(&self) -> Result<AlignedVec, BoxedError>;

    /// A value from an archive a peer sent: validated, then deserialized.
    #[doc(hidden)]
    fn decode(bytes: &[u8]) -> Result<Self, BoxedError>;
}

impl<T> Data for T
where
    T: Archive + Send + 'static,
    T: for<'a> rkyv::Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, BoxedError>>,
    T::Archived: CheckedArchive + Deserialize<T, HighDeserializer<BoxedError>>,
{
    fn encode(&self) -> Result<AlignedVec, BoxedError> {
        rkyv::to_bytes::<BoxedError>(self)
    }

    fn decode(bytes: &[u8]) -> Result<Self, BoxedError> {
        rkyv::from_bytes::<T, BoxedError>(bytes)
    }
}

/// A plain number (or any plain-old-data type): the element of the slice collectives
/// (`broadcast_into`, `allreduce_slice`, `gatherv`, ...), which move a slice's bytes as they
/// are, without serializing each element.
///
/// Implemented for every [`bytemuck::Pod`] type: the integers, `f32`, `f64`, and arrays and
/// `#[repr(C)]` structs of them that derive `Pod`. Every place runs the same binary, so they
/// agree on the layout and byte order.
pub trait Element: bytemuck::Pod + Send + Sync {}

impl<T: bytemuck::Pod + Send + Sync> Element for T {}

/// The bytes of `bytes` as elements: in place when they are aligned for `E` (they are when a
/// peer sent them: messages arrive 16-byte aligned), copied otherwise. `None` if the length is
/// not a whole number of elements.
pub(crate) fn elements<E: Element>(bytes: &[u8]) -> Option<std::borrow::Cow<'_, [E]>> {
    if bytes.len() % std::mem::size_of::<E>().max(1) != 0 {
        return None;
    }
    match bytemuck::try_cast_slice::<u8, E>(bytes) {
        Ok(slice) => Some(std::borrow::Cow::Borrowed(slice)),
        Err(_) => Some(std::borrow::Cow::Owned(bytemuck::pod_collect_to_vec(bytes))),
    }
}

/// Per-place parts of one flat vector: what the `v` collectives (`gatherv`, `allgatherv`,
/// `scatterv`, `alltoallv`) take and give. Part `i` belongs to (or came from) team rank `i`.
///
/// ```
/// use atoll_collectives::Parts;
///
/// let parts = Parts::new(vec![1u32, 2, 3, 4, 5, 6], vec![1, 0, 2, 3]).unwrap();
/// assert_eq!(parts.part(2), &[2, 3]);
/// assert_eq!(parts.displacements(), vec![0, 1, 1, 3]);
/// assert_eq!(Parts::from_parts(&[vec![7u8], vec![], vec![8, 9]]).data(), &[7, 8, 9]);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parts<E> {
    data: Vec<E>,
    counts: Vec<usize>,
}

impl<E: Element> Parts<E> {
    /// `data` cut into consecutive parts of `counts[i]` elements; `None` if the counts do not
    /// add up to `data.len()`.
    pub fn new(data: Vec<E>, counts: Vec<usize>) -> Option<Parts<E>> {
        (counts.iter().sum::<usize>() == data.len()).then_some(Parts { data, counts })
    }

    /// The parts of `parts`, concatenated.
    pub fn from_parts<P: AsRef<[E]>>(parts: &[P]) -> Parts<E> {
        let counts = parts.iter().map(|p| p.as_ref().len()).collect();
        let data = parts
            .iter()
            .flat_map(|p| p.as_ref().iter().copied())
            .collect();
        Parts { data, counts }
    }

    /// All parts, one after the other.
    pub fn data(&self) -> &[E] {
        &self.data
    }

    /// All parts, one after the other, owned.
    pub fn into_data(self) -> Vec<E> {
        self.data
    }

    /// The number of elements of each part.
    pub fn counts(&self) -> &[usize] {
        &self.counts
    }

    /// Where each part starts in [`Parts::data`].
    pub fn displacements(&self) -> Vec<usize> {
        self.counts
            .iter()
            .scan(0, |start, &count| {
                let this = *start;
                *start += count;
                Some(this)
            })
            .collect()
    }

    /// The number of parts.
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    /// Whether there are no parts.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Part `i`.
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn part(&self, i: usize) -> &[E] {
        let start: usize = self.counts[..i].iter().sum();
        &self.data[start..start + self.counts[i]]
    }

    /// Every part, in order.
    pub fn iter(&self) -> impl Iterator<Item = &[E]> + '_ {
        self.displacements()
            .into_iter()
            .zip(&self.counts)
            .map(|(start, &count)| &self.data[start..start + count])
    }
}
