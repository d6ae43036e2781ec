//! Collectives under the runtime, through real processes: one activity per place (started
//! with `async_at!` inside a `finish`) runs collectives on the world and on split teams;
//! collectives inside a `finish` inside an activity; `at!` calls answered while collectives
//! wait, with one worker per place; a place that dies mid-collective.
//!
//! The test binary is both the driver (run by `cargo test`: one job per case through the local
//! launcher) and the place program (with `ATOLL_RT_COLLECTIVES_CASE` set).

use std::process::ExitCode;

use atoll::prelude::*;
use atoll_testkit::{runtime_place, Suite};

const SUITE: Suite = Suite::runtime("ATOLL_RT_COLLECTIVES_CASE").chaos_seed("3");

fn main() -> ExitCode {
    let place = runtime_place!(spmd, place_failed);
    SUITE.main(place, || {
        vec![
            SUITE.trial("spmd", 3, true),
            SUITE.trial_with("one_worker", "spmd", 4, &[("ATOLL_WORKERS", "1")]),
            SUITE.failure_trial("place_failed", 3, 1, &[]),
        ]
    })
}

/// Panics (which the `finish` reports, naming the place) unless `got == expected`.
fn expect_eq<T: PartialEq + std::fmt::Debug>(what: &str, got: T, expected: T) {
    assert!(
        got == expected,
        "{what} at {}: got {got:?}, expected {expected:?}",
        here()
    );
}

#[atoll::remote]
async fn square(x: u64) -> u64 {
    x * x
}

#[atoll::remote]
async fn inner_allreduce(round: u64) {
    let total = world()
        .allreduce(here().index() as u64 * round, op::Sum)
        .await
        .expect("allreduce in a nested finish");
    let n = num_places() as u64;
    expect_eq("nested allreduce", total, round * n * (n - 1) / 2);
}

/// The body every place runs.
#[atoll::remote]
async fn body() {
    let world = world();
    let (n, r) = (world.size(), world.rank());
    expect_eq("rank", Place::new(r), here());
    world.barrier().await.expect("barrier");

    // Every kind of collective, against what it must give.
    let sum = world.allreduce(r as u64, op::Sum).await.expect("allreduce");
    expect_eq("allreduce", sum, (n * (n - 1) / 2) as u64);
    let greeting = world
        .broadcast(n - 1, (r == n - 1).then(|| format!("from {}", here())))
        .await
        .expect("broadcast");
    expect_eq("broadcast", greeting, format!("from place {}", n - 1));
    let everyone = world.allgather(&(r as u32)).await.expect("allgather");
    expect_eq("allgather", everyone, (0..n as u32).collect::<Vec<_>>());
    let prefix = world.exscan(1u64, op::Sum).await.expect("exscan");
    expect_eq("exscan", prefix, (r > 0).then_some(r as u64));
    let swapped = world
        .alltoall((0..n).map(|q| (r, q)).collect())
        .await
        .expect("alltoall");
    expect_eq(
        "alltoall",
        swapped,
        (0..n).map(|q| (q, r)).collect::<Vec<_>>(),
    );
    let big: Vec<f64> = (0..5000).map(|i| (i * (r + 1)) as f64).collect();
    let total = world
        .allreduce_slice(&big, op::Sum)
        .await
        .expect("allreduce_slice");
    expect_eq(
        "allreduce_slice",
        total[10],
        10.0 * (n * (n + 1) / 2) as f64,
    );

    // A split team, and an `at!` answered while a collective waits (one worker per place in
    // one of the jobs: waiting must not hold it).
    let parity = world.split((r % 2) as u64, 0).await.expect("split");
    let next = Place::new((r + 1) % n);
    let (members, squared) =
        futures::join!(parity.allreduce(1u32, op::Sum), at!(next, square(r as u64)));
    expect_eq(
        "parity size",
        members.expect("parity allreduce") as usize,
        parity.size(),
    );
    expect_eq(
        "at! during a collective",
        squared.expect("at!"),
        (r * r) as u64,
    );

    // Collectives inside a finish inside this activity.
    finish(async {
        async_at!(here(), inner_allreduce(3));
    })
    .await
    .expect("nested finish");
    world.barrier().await.expect("last barrier");
}

async fn spmd() -> Result<(), String> {
    finish(async {
        for place in places() {
            async_at!(place, body());
        }
    })
    .await
    .map_err(|e| e.to_string())
}

#[atoll::remote]
async fn barrier_or_die() -> String {
    if here() == Place::new(2) {
        std::process::exit(3);
    }
    format!("{:?}", world().barrier().await)
}

async fn place_failed() -> Result<(), String> {
    let futures: Vec<_> = places().map(|p| at!(p, barrier_or_die())).collect();
    let results = futures::future::join_all(futures).await;
    for (place, result) in results.into_iter().enumerate() {
        match (place, result) {
            (2, Err(atoll::Error::PlaceFailed(p))) if p == Place::new(2) => {}
            (0 | 1, Ok(text)) if text.contains("PlaceFailed") && text.contains("Place(2)") => {}
            (place, other) => return Err(format!("place {place}: {other:?}")),
        }
    }
    Ok(())
}
