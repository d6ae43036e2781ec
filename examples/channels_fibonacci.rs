//! Recursive Fibonacci in the message-passing style (Constellation's example): every call above
//! a cut-off starts its two children at the next two places, handing each the sending end of a
//! channel back to itself, adds the two results that come back, and sends the sum to its own
//! parent over the channel it was given.
//!
//! `cargo run --release --example channels_fibonacci -- 30` (2 places; `ATOLL_PLACES=N` for
//! more).

use atoll::channel::{channel, Sender};
use atoll::prelude::*;
use atoll::{Error, Failure};

/// Below this, the work is not worth a message.
const CUTOFF: u64 = 18;

fn sequential(n: u64) -> u64 {
    if n < 2 {
        n
    } else {
        sequential(n - 1) + sequential(n - 2)
    }
}

/// The channels a run of `fib(n)` makes: one to each call at or above the cut-off's children.
fn channels(n: u64) -> u64 {
    if n < CUTOFF {
        0
    } else {
        2 + channels(n - 1) + channels(n - 2)
    }
}

fn failure(message: String) -> Error {
    Error::Remote(Failure {
        place: here(),
        function: "channels_fibonacci::fib".into(),
        message,
    })
}

/// Computes `fib(n)` here and sends it to `parent`. If it cannot, it drops `parent` unsent:
/// the parent's `recv` then ends without a value, and the parent reports that in turn.
#[atoll::remote]
async fn fib(n: u64, mut parent: Sender<u64>) {
    match compute(n).await {
        Ok(value) => {
            if let Err(error) = parent.send(value).await {
                eprintln!("fib({n}) at {} could not answer: {error}", here());
            }
        }
        Err(error) => eprintln!("fib({n}) at {} failed: {error}", here()),
    }
}

async fn compute(n: u64) -> atoll::Result<u64> {
    if n < CUTOFF {
        return Ok(sequential(n));
    }
    let (me, places) = (here(), num_places());
    let left_place = Place::new((me.index() + 1) % places);
    let right_place = Place::new((me.index() + 2) % places);
    let (left_end, mut left) = channel::<u64>(left_place, me)?;
    let (right_end, mut right) = channel::<u64>(right_place, me)?;
    async_at!(left_place, fib(n - 1, left_end));
    async_at!(right_place, fib(n - 2, right_end));
    let (a, b) = futures::join!(left.recv(), right.recv());
    match (a?, b?) {
        (Some(a), Some(b)) => Ok(a + b),
        _ => Err(failure(format!(
            "a child of fib({n}) ended without sending its result"
        ))),
    }
}

#[atoll::main]
async fn main() -> atoll::Result<()> {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(30);
    let start = std::time::Instant::now();
    let (root, mut result) = channel::<u64>(here(), here())?;
    async_at!(here(), fib(n, root));
    let value = result
        .recv()
        .await?
        .ok_or_else(|| failure(format!("fib({n}) ended without a result")))?;
    let elapsed = start.elapsed();
    let expected = sequential(n);
    if value != expected {
        return Err(failure(format!(
            "fib({n}) = {value}, but the sequential count is {expected}"
        )));
    }
    println!(
        "fib({n}) = {value} on {} places over {} channels in {elapsed:.2?} (checked)",
        num_places(),
        channels(n) + 1
    );
    Ok(())
}
