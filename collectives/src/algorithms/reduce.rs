//! Reduce: a binomial tree over ranks rooted at rank 0, which combines in rank order (the
//! lower subtree's value on the left), then one message to the root if it is not rank 0.
//! Cost: ⌈log₂ p⌉ (α + nβ + nγ), plus α + nβ for a root other than 0.

use super::Accumulator;
use crate::team::Call;
use crate::Result;

const TREE: u32 = 0;
const TO_ROOT: u32 = 1;

/// The reduction of every member's accumulator, at `root` (`None` elsewhere).
pub(crate) async fn reduce<A: Accumulator>(
    call: &Call,
    root: usize,
    mut acc: A,
) -> Result<Option<A>> {
    let (size, rank) = (call.size(), call.rank());
    let mut mask = 1;
    while mask < size {
        if rank & mask != 0 {
            call.send(rank - mask, TREE, &acc.encoded()?)?;
            break;
        }
        if rank + mask < size {
            let incoming = call.receive(rank + mask, TREE).await?;
            acc.fold(&incoming, false)
                .map_err(|reason| call.invalid(rank + mask, reason))?;
        }
        mask <<= 1;
    }
    // Rank 0 now holds the result.
    match (rank == 0, rank == root) {
        (true, true) => Ok(Some(acc)),
        (true, false) => {
            call.send(root, TO_ROOT, &acc.encoded()?)?;
            Ok(None)
        }
        (false, true) => {
            let incoming = call.receive(0, TO_ROOT).await?;
            let result = acc
                .decoded(&incoming)
                .map_err(|reason| call.invalid(0, reason))?;
            Ok(Some(result))
        }
        (false, false) => Ok(None),
    }
}
