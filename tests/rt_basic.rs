//! The runtime through real processes: `at!` with every kind of argument, `finish` over a
//! recursive tree of activities across 4 places under chaos, a panic two levels deep, an
//! unknown remote function.
//!
//! The test binary is both the driver (run by `cargo test`: one job per case through the local
//! launcher) and the place program (with `ATOLL_RT_CASE` set).

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use atoll::prelude::*;
use atoll::Error;
use atoll_testkit::{runtime_place, Suite};

const SUITE: Suite = Suite::runtime("ATOLL_RT_CASE").chaos_seed("11");

fn main() -> ExitCode {
    let place = runtime_place!(
        at_arguments,
        finish_tree,
        panic_two_levels,
        unknown_function,
        global_data,
        killed_in_finish
    );
    SUITE.main(place, || {
        let dead = &["place 1 was killed by signal 9"];
        let mut trials = vec![SUITE.failure_trial("killed_in_finish", 3, 1, dead)];
        trials.push(SUITE.trial("at_arguments", 3, false));
        trials.extend([false, true].map(|chaos| SUITE.trial("finish_tree", 4, chaos)));
        trials.push(SUITE.trial("panic_two_levels", 3, true));
        trials.push(SUITE.trial("unknown_function", 2, false));
        trials.push(SUITE.trial("global_data", 3, true));
        trials
    })
}

// ------------------------------------------------------------------------------------------
// at! with every kind of argument

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq)]
struct Inner {
    name: String,
    weights: Vec<f64>,
}

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq)]
struct Outer {
    id: u32,
    inner: Vec<Inner>,
    tag: Option<String>,
}

#[atoll::remote]
async fn unit() {}

#[atoll::remote]
async fn add(a: u64, b: i32, c: f64) -> f64 {
    a as f64 + f64::from(b) + c
}

#[atoll::remote]
async fn describe(name: String, values: Vec<u32>) -> String {
    format!("{name}:{}@{}", values.iter().sum::<u32>(), here())
}

#[atoll::remote]
async fn grow(mut outer: Outer) -> Outer {
    outer.id += 1;
    outer.inner.push(Inner {
        name: format!("{}", here()),
        weights: vec![1.5],
    });
    outer
}

#[atoll::remote]
async fn checksum(data: Vec<u8>) -> (u64, usize) {
    (data.iter().map(|&b| u64::from(b)).sum(), data.len())
}

async fn at_arguments() -> Result<(), String> {
    let err = |e: Error| e.to_string();
    for place in places() {
        at!(place, unit()).await.map_err(err)?;
        let sum = at!(place, add(1, -2, 0.5)).await.map_err(err)?;
        if sum != -0.5 {
            return Err(format!("add at {place} gave {sum}"));
        }
        let text = at!(place, describe("n".to_string(), vec![1, 2, 3]))
            .await
            .map_err(err)?;
        if text != format!("n:6@{place}") {
            return Err(format!("describe at {place} gave {text}"));
        }
        let outer = Outer {
            id: 7,
            inner: vec![Inner {
                name: "x".into(),
                weights: vec![0.25, 2.0],
            }],
            tag: Some("t".into()),
        };
        let grown = at!(place, grow(outer.clone())).await.map_err(err)?;
        let mut expected = outer;
        expected.id = 8;
        expected.inner.push(Inner {
            name: place.to_string(),
            weights: vec![1.5],
        });
        if grown != expected {
            return Err(format!("grow at {place} gave {grown:?}"));
        }
        // Above the eager threshold: rendezvous.
        let data: Vec<u8> = (0..(3 << 20)).map(|i| (i % 251) as u8).collect();
        let want = (data.iter().map(|&b| u64::from(b)).sum::<u64>(), data.len());
        let got = at!(place, checksum(data)).await.map_err(err)?;
        if got != want {
            return Err(format!(
                "checksum at {place} gave {got:?}, expected {want:?}"
            ));
        }
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------
// finish over a recursive tree of activities

static EXECUTED: AtomicU64 = AtomicU64::new(0);
const LEAVES: u64 = 50_000;

/// One activity per node of a binary tree over `lo..hi`; children go to the next places.
#[atoll::remote]
async fn tree(lo: u64, hi: u64) {
    EXECUTED.fetch_add(1, Ordering::Relaxed);
    if hi - lo > 1 {
        let mid = (lo + hi) / 2;
        let n = num_places();
        async_at!(Place::new((here().index() + 1) % n), tree(lo, mid));
        async_at!(Place::new((here().index() + 2) % n), tree(mid, hi));
    }
}

#[atoll::remote]
async fn executed() -> u64 {
    EXECUTED.load(Ordering::Relaxed)
}

async fn finish_tree() -> Result<(), String> {
    finish(async {
        async_at!(Place::new(1), tree(0, LEAVES));
    })
    .await
    .map_err(|e| e.to_string())?;
    // Counted right after the finish: had it returned before the last activity ended, the
    // sum would fall short.
    let mut total = 0;
    for place in places() {
        total += at!(place, executed()).await.map_err(|e| e.to_string())?;
    }
    let expected = 2 * LEAVES - 1;
    if total != expected {
        return Err(format!("{total} activities ran, expected {expected}"));
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------
// failures

#[atoll::remote]
async fn level_two() {
    panic!("deliberate failure two levels down");
}

#[atoll::remote]
async fn level_one() {
    async_at!(Place::new(2), level_two());
}

async fn panic_two_levels() -> Result<(), String> {
    let outcome = finish(async {
        async_at!(Place::new(1), level_one());
    })
    .await;
    match outcome {
        Err(Error::Finish(error)) => {
            let [failure] = error.failures.as_slice() else {
                return Err(format!("expected one failure, got {error}"));
            };
            let ok = failure.place == Place::new(2)
                && failure.function.ends_with("::level_two")
                && failure.message.contains("deliberate failure");
            if !ok {
                return Err(format!("wrong failure: {failure}"));
            }
            Ok(())
        }
        other => Err(format!("finish gave {other:?}")),
    }
}

/// A remote function no place registered (as a message from a different binary would name).
struct Unregistered;

impl atoll::__private::RemoteFn for Unregistered {
    type Args = (u64,);
    type Output = u64;
    const NAME: &'static str = "rt_basic::unregistered";
    const ID: u64 = 0xA701_1000_0000_0001;
    fn call((x,): (u64,)) -> atoll::__private::BoxFuture<u64> {
        Box::pin(async move { x })
    }
}

async fn unknown_function() -> Result<(), String> {
    match atoll_runtime_call::<Unregistered>(Place::new(1), (5,)).await {
        Err(Error::Remote(failure)) if failure.message.contains("no remote function with id") => {
            Ok(())
        }
        other => Err(format!("an unknown function gave {other:?}")),
    }
}

/// `at!` spelled out, for a type that is not a `#[atoll::remote]` module.
async fn atoll_runtime_call<R>(place: Place, args: R::Args) -> atoll::Result<R::Output>
where
    R: atoll::__private::RemoteFn,
    R::Args: atoll::__private::Wire,
    R::Output: atoll::__private::Wire,
{
    atoll::__private::call_at::<R>(place, args).await
}

// ------------------------------------------------------------------------------------------
// GlobalRef and PlaceLocal

#[atoll::remote]
async fn deref_elsewhere(object: atoll::ObjectId) -> String {
    match atoll::GlobalRef::<Vec<u64>>::from_id(object).get() {
        Err(error @ Error::NotHome { .. }) => error.to_string(),
        other => format!("unexpected {other:?}"),
    }
}

#[atoll::remote]
async fn sum_at_home(object: atoll::ObjectId) -> u64 {
    atoll::GlobalRef::<Vec<u64>>::from_id(object)
        .get()
        .map_or(0, |v| v.iter().sum())
}

#[atoll::remote]
async fn mark(local: atoll::ObjectId, value: u64) {
    if let Ok(slot) = atoll::PlaceLocal::<AtomicU64>::from_id(local).get() {
        slot.fetch_add(value, Ordering::Relaxed);
    }
}

#[atoll::remote]
async fn marked(local: atoll::ObjectId) -> u64 {
    atoll::PlaceLocal::<AtomicU64>::from_id(local)
        .get()
        .map_or(u64::MAX, |slot| slot.load(Ordering::Relaxed))
}

async fn global_data() -> Result<(), String> {
    let err = |e: Error| e.to_string();
    let data = atoll::GlobalRef::new(vec![1u64, 2, 3]).map_err(err)?;
    let text = at!(Place::new(1), deref_elsewhere(data.id()))
        .await
        .map_err(err)?;
    if !text.contains("lives at place 0") {
        return Err(format!("dereferencing away from home gave: {text}"));
    }
    let sum = at!(Place::new(2), sum_at_home(data.id()))
        .await
        .map_err(err)?;
    if sum != 0 {
        return Err("a GlobalRef was dereferenced away from its home".into());
    }
    if at!(here(), sum_at_home(data.id())).await.map_err(err)? != 6 {
        return Err("a GlobalRef at home lost its object".into());
    }
    data.free().map_err(err)?;
    let local = atoll::PlaceLocal::<AtomicU64>::new().map_err(err)?;
    finish(async {
        for place in places() {
            for _ in 0..=place.index() {
                async_at!(place, mark(local.id(), 10));
            }
        }
    })
    .await
    .map_err(err)?;
    for place in places() {
        let value = at!(place, marked(local.id())).await.map_err(err)?;
        if value != 10 * (place.index() as u64 + 1) {
            return Err(format!("the instance at {place} holds {value}"));
        }
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------
// A place killed inside a finish

#[atoll::remote]
async fn die() {
    let pid = std::process::id().to_string();
    let _ = std::process::Command::new("kill")
        .args(["-9", &pid])
        .status();
    std::thread::sleep(Duration::from_secs(30));
}

async fn killed_in_finish() -> Result<(), String> {
    let start = std::time::Instant::now();
    let outcome = finish(async {
        async_at!(Place::new(1), die());
        async_at!(Place::new(2), executed());
    })
    .await;
    match outcome {
        Err(Error::PlaceFailed(place)) if place == Place::new(1) => {
            println!("finish failed with {place} after {:?}", start.elapsed());
            Ok(())
        }
        other => Err(format!("finish gave {other:?}")),
    }
}
