//! Inclusive and exclusive scans: recursive doubling over ranks. In round k each member
//! swaps its partial reduction (over a block of ranks ending at its own) with the member whose
//! rank differs in bit k; one from a lower rank is folded into both the partial and the
//! result, one from a higher rank into the partial only. Cost: ⌈log₂ p⌉ (α + nβ + nγ).

use super::Accumulator;
use crate::team::Call;
use crate::Result;

/// The inclusive scan at this member (ranks 0..=rank reduced) if `inclusive`, else the
/// exclusive one (ranks 0..rank; `None` at rank 0).
pub(crate) async fn scan<A: Accumulator>(
    call: &Call,
    value: A,
    inclusive: bool,
) -> Result<Option<A>> {
    let (size, rank) = (call.size(), call.rank());
    let mut result: Option<A> = if inclusive {
        let copy = value.encoded()?;
        Some(
            value
                .decoded(&copy)
                .map_err(|reason| call.invalid(rank, reason))?,
        )
    } else {
        None
    };
    let mut partial = value;
    let (mut mask, mut round) = (1, 0u32);
    while mask < size {
        let partner = rank ^ mask;
        if partner < size {
            call.send(partner, round, &partial.encoded()?)?;
            let incoming = call.receive(partner, round).await?;
            let bad = |reason| call.invalid(partner, reason);
            if partner < rank {
                partial.fold(&incoming, true).map_err(bad)?;
                match &mut result {
                    Some(result) => result.fold(&incoming, true).map_err(bad)?,
                    None => result = Some(partial.decoded(&incoming).map_err(bad)?),
                }
            } else {
                partial.fold(&incoming, false).map_err(bad)?;
            }
        }
        mask <<= 1;
        round += 1;
    }
    Ok(result)
}
