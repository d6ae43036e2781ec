//! A 4-stage pipeline over typed channels, one stage per place, written with `Stream` and
//! `Sink` combinators: place 0 streams the numbers `0..N` to place 1, which squares them for
//! place 2, which keeps the odd squares (halved) for place 3, which counts and sums them. The
//! result is checked against the same computation done sequentially.
//!
//! `ATOLL_PLACES=4 cargo run --release --example pipeline -- 1000000`

use std::future::ready;

use atoll::channel::{Receiver, Sender};
use atoll::prelude::*;
use atoll::{Error, Failure};
use futures::{StreamExt, TryStreamExt};

/// The id of every stage's channel (channels are told apart by their places too).
const PIPE: u64 = 1;
/// Each channel's window: values on their way or waiting at the next stage at most.
const WINDOW: usize = 256;

fn square(x: u64) -> u64 {
    x * x
}

fn is_odd(x: &u64) -> bool {
    x % 2 == 1
}

fn half(x: u64) -> u64 {
    x / 2
}

fn text(error: Error) -> String {
    error.to_string()
}

/// Stage 1: squares what comes from `from` and passes it to `to`.
#[atoll::remote]
async fn squares(from: Place, to: Place) -> Result<(), String> {
    let input = Receiver::<u64>::new(from, PIPE).map_err(text)?;
    let output = Sender::<u64>::with_capacity(to, PIPE, WINDOW).map_err(text)?;
    input.map_ok(square).forward(output).await.map_err(text)
}

/// Stage 2: keeps the odd values, halved.
#[atoll::remote]
async fn odd_halves(from: Place, to: Place) -> Result<(), String> {
    let input = Receiver::<u64>::new(from, PIPE).map_err(text)?;
    let output = Sender::<u64>::with_capacity(to, PIPE, WINDOW).map_err(text)?;
    input
        .try_filter(|x| ready(is_odd(x)))
        .map_ok(half)
        .forward(output)
        .await
        .map_err(text)
}

/// Stage 3: how many values arrived, and their sum.
#[atoll::remote]
async fn total(from: Place) -> Result<(u64, u64), String> {
    let input = Receiver::<u64>::new(from, PIPE).map_err(text)?;
    input
        .try_fold((0u64, 0u64), |(count, sum), x| {
            ready(Ok((count + 1, sum.wrapping_add(x))))
        })
        .await
        .map_err(text)
}

fn failure(message: String) -> Error {
    Error::Remote(Failure {
        place: here(),
        function: "pipeline::main".into(),
        message,
    })
}

#[atoll::main]
async fn main() -> atoll::Result<()> {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    if num_places() < 4 {
        return Err(failure(format!(
            "the pipeline has 4 stages, one per place, but the job has {} places: run it with \
             ATOLL_PLACES=4",
            num_places()
        )));
    }
    let [p0, p1, p2, p3] = [0, 1, 2, 3].map(Place::new);
    let start = std::time::Instant::now();
    let source = async {
        let output = Sender::<u64>::with_capacity(p1, PIPE, WINDOW)?;
        futures::stream::iter(0..n).map(Ok).forward(output).await
    };
    let (sent, first, second, last) = futures::join!(
        source,
        at!(p1, squares(p0, p2)),
        at!(p2, odd_halves(p1, p3)),
        at!(p3, total(p2)),
    );
    let elapsed = start.elapsed();
    sent?;
    first?.map_err(failure)?;
    second?.map_err(failure)?;
    let (count, sum) = last?.map_err(failure)?;
    let expected = (0..n)
        .map(square)
        .filter(is_odd)
        .map(half)
        .fold((0u64, 0u64), |(c, s), x| (c + 1, s.wrapping_add(x)));
    if (count, sum) != expected {
        return Err(failure(format!(
            "the pipeline gave {count} values summing to {sum}, but sequentially it is {} \
             summing to {}",
            expected.0, expected.1
        )));
    }
    println!(
        "pipeline of 4 places streamed {n} values (square at {p1}, odd halves at {p2}, sum at \
         {p3}): {count} arrived, sum {sum}, in {elapsed:.2?} ({:.2e} values/s) (checked)",
        n as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}
