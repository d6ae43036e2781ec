//! The algorithms, on byte blocks and accumulators; `crate::collectives` puts the typed API
//! over them. Costs are in the crate docs (α: a message's latency, β: time per byte, γ: time
//! per byte combined, p: the team's size, n: the bytes per place).

pub(crate) mod allreduce;
pub(crate) mod alltoall;
pub(crate) mod barrier;
pub(crate) mod broadcast;
pub(crate) mod gather;
pub(crate) mod reduce;
pub(crate) mod scan;
pub(crate) mod scatter;

use std::ops::Deref;

use rkyv::util::AlignedVec;

use crate::data::{elements, Data, Element};
use crate::op::Reduction;
use crate::{Error, Result};

/// Bytes to send: borrowed from an accumulator, or freshly serialized.
pub(crate) enum Encoded<'a> {
    Borrowed(&'a [u8]),
    Owned(AlignedVec),
}

impl Deref for Encoded<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Encoded::Borrowed(bytes) => bytes,
            Encoded::Owned(bytes) => bytes,
        }
    }
}

/// A partial reduction that travels between places: its bytes, and how to fold a peer's
/// bytes into it (peer's bytes are untrusted: a fold that finds them malformed says why).
pub(crate) trait Accumulator: Sized + Send {
    /// What to send.
    fn encoded(&self) -> Result<Encoded<'_>>;

    /// `self = incoming ∘ self` if `incoming_on_left` (it covers lower ranks), else
    /// `self = self ∘ incoming`.
    fn fold(&mut self, incoming: &[u8], incoming_on_left: bool) -> Result<(), String>;

    /// A new accumulator holding `incoming` (a peer's finished result).
    fn decoded(&self, incoming: &[u8]) -> Result<Self, String>;
}

/// A partial reduction of rkyv values.
pub(crate) struct ValueAccumulator<'o, T, O> {
    pub(crate) value: Option<T>,
    pub(crate) op: &'o O,
}

impl<'o, E: Element, O> SliceAccumulator<'o, E, O> {
    /// A partial reduction holding a copy of `data`, combined with `op`.
    pub(crate) fn new(data: &[E], op: &'o O) -> Self {
        SliceAccumulator {
            data: data.to_vec(),
            op,
        }
    }
}

impl<'o, T: Data, O: Reduction<T>> ValueAccumulator<'o, T, O> {
    pub(crate) fn new(value: T, op: &'o O) -> Self {
        ValueAccumulator {
            value: Some(value),
            op,
        }
    }

    pub(crate) fn into_value(self) -> Option<T> {
        self.value
    }
}

fn decode_value<T: Data>(bytes: &[u8]) -> Result<T, String> {
    T::decode(bytes).map_err(|error| format!("a value that does not validate: {error}"))
}

pub(crate) fn encode_value<T: Data>(value: &T) -> Result<AlignedVec> {
    value.encode().map_err(|error| Error::Serialize {
        reason: error.to_string(),
    })
}

impl<T: Data, O: Reduction<T>> Accumulator for ValueAccumulator<'_, T, O> {
    fn encoded(&self) -> Result<Encoded<'_>> {
        match &self.value {
            Some(value) => Ok(Encoded::Owned(encode_value(value)?)),
            None => Err(Error::Serialize {
                reason: "a reduction lost its value to a panicking operation".into(),
            }),
        }
    }

    fn fold(&mut self, incoming: &[u8], incoming_on_left: bool) -> Result<(), String> {
        let other = decode_value::<T>(incoming)?;
        let mine = self
            .value
            .take()
            .ok_or("a reduction lost its value to a panicking operation")?;
        self.value = Some(if incoming_on_left {
            self.op.combine(other, mine)
        } else {
            self.op.combine(mine, other)
        });
        Ok(())
    }

    fn decoded(&self, incoming: &[u8]) -> Result<Self, String> {
        Ok(ValueAccumulator {
            value: Some(decode_value(incoming)?),
            op: self.op,
        })
    }
}

/// A partial element-wise reduction of a slice of numbers: their bytes travel as they are.
pub(crate) struct SliceAccumulator<'o, E, O> {
    pub(crate) data: Vec<E>,
    pub(crate) op: &'o O,
}

/// `mine[i] = incoming[i] ∘ mine[i]` (or the other way round) for every `i`.
pub(crate) fn fold_elements<E: Element, O: Reduction<E>>(
    op: &O,
    mine: &mut [E],
    incoming: &[u8],
    incoming_on_left: bool,
) -> Result<(), String> {
    let other = elements::<E>(incoming)
        .filter(|other| other.len() == mine.len())
        .ok_or_else(|| {
            format!(
                "{} bytes where {} elements of {} bytes were expected",
                incoming.len(),
                mine.len(),
                std::mem::size_of::<E>()
            )
        })?;
    if incoming_on_left {
        for (m, &o) in mine.iter_mut().zip(other.iter()) {
            *m = op.combine(o, *m);
        }
    } else {
        for (m, &o) in mine.iter_mut().zip(other.iter()) {
            *m = op.combine(*m, o);
        }
    }
    Ok(())
}

impl<E: Element, O: Reduction<E>> Accumulator for SliceAccumulator<'_, E, O> {
    fn encoded(&self) -> Result<Encoded<'_>> {
        Ok(Encoded::Borrowed(bytemuck::cast_slice(&self.data)))
    }

    fn fold(&mut self, incoming: &[u8], incoming_on_left: bool) -> Result<(), String> {
        fold_elements(self.op, &mut self.data, incoming, incoming_on_left)
    }

    fn decoded(&self, incoming: &[u8]) -> Result<Self, String> {
        let data = elements::<E>(incoming)
            .filter(|data| data.len() == self.data.len())
            .ok_or_else(|| {
                format!(
                    "{} bytes where {} elements were expected",
                    incoming.len(),
                    self.data.len()
                )
            })?
            .into_owned();
        Ok(SliceAccumulator { data, op: self.op })
    }
}
