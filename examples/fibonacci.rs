//! Recursive Fibonacci spreading across places (the Constellation README's example): each
//! call above a cut-off runs `fib(n - 1)` at the next place and `fib(n - 2)` here, overlapped.
//!
//! `cargo run --release --example fibonacci -- 30` (2 places; `ATOLL_PLACES=N` for more).

use atoll::prelude::*;

/// Below this, the work is not worth a message.
const CUTOFF: u64 = 18;

fn sequential(n: u64) -> u64 {
    if n < 2 {
        n
    } else {
        sequential(n - 1) + sequential(n - 2)
    }
}

#[atoll::remote]
async fn fib(n: u64) -> u64 {
    if n < CUTOFF {
        return sequential(n);
    }
    let next = Place::new((here().index() + 1) % num_places());
    let (left, right) = futures::join!(at!(next, fib(n - 1)), at!(here(), fib(n - 2)));
    match (left, right) {
        (Ok(left), Ok(right)) => left + right,
        (Err(error), _) | (_, Err(error)) => panic!("fib({n}) failed: {error}"),
    }
}

#[atoll::main]
async fn main() -> atoll::Result<()> {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(30);
    let start = std::time::Instant::now();
    let value = at!(here(), fib(n)).await?;
    let elapsed = start.elapsed();
    let expected = sequential(n);
    if value != expected {
        return Err(atoll::Error::Remote(atoll::Failure {
            place: here(),
            function: "fibonacci::main".into(),
            message: format!("fib({n}) = {value}, but the sequential count is {expected}"),
        }));
    }
    println!(
        "fib({n}) = {value} on {} places in {elapsed:.2?} (checked)",
        num_places()
    );
    Ok(())
}
