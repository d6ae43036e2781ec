//! Barrier: dissemination (Hensgen, Finkel and Manber). In round k every member signals the
//! member 2^k ranks ahead and waits for the one 2^k behind: ⌈log₂ p⌉ rounds of one empty
//! message each, for any p. Cost: ⌈log₂ p⌉ α.

use crate::team::Call;
use crate::Result;

pub(crate) async fn barrier(call: &Call) -> Result<()> {
    let (size, rank) = (call.size(), call.rank());
    let (mut distance, mut round) = (1, 0u32);
    while distance < size {
        call.send((rank + distance) % size, round, &[])?;
        call.receive((rank + size - distance) % size, round).await?;
        distance <<= 1;
        round += 1;
    }
    Ok(())
}
