//! `finish`: wait for every activity a block started, transitively, at every place.
//!
//! # The termination protocol: credit recovery
//!
//! A finish starts with one unit of credit, held by its body. Starting an activity (by
//! `async_at!`, or the remote part of an `at!`) splits the starter's credit `2^-k` into two
//! halves `2^-(k+1)`: the starter keeps one, the new activity carries the other inside its
//! message. An activity that ends returns its credit to the finish's home place (in one
//! message, or with the reply of an `at!` when the caller is at the home place, or locally).
//! The home adds what comes back; the finish is complete exactly when the sum is 1 again.
//!
//! Why it is correct under any delay and reordering: credit is conserved (a split never
//! creates or loses any; it only moves in messages), every share is a power of two that some
//! live activity or in-flight message holds until it reaches home, and the home only adds
//! shares that have reached it. So the sum at home is 1 if and only if no live activity and
//! no in-flight message holds credit, i.e. every activity has ended. No ordering between
//! messages is assumed: a return that overtakes the spawn message of a sibling simply leaves
//! the sum below 1 until that sibling's share arrives too.
//!
//! Cost: one message per remote activity (its credit return), none for activities that end at
//! the home place, and no global counting. Shares are exact: the home keeps the sum as a
//! sparse binary fraction (the set of exponents whose bit is set, with carries), so
//! arbitrarily deep splitting never rounds.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use atoll_comm::Place;

use crate::activity::{Activity, InActivity};
use crate::error::{Failure, FinishError};
use crate::runtime::{runtime, Runtime};
use crate::wire::Credit;
use crate::{Error, Result};

/// The state of one finish at its home place.
#[derive(Debug, Default)]
pub(crate) struct FinishState {
    returned: BinaryFraction,
    failures: Vec<Failure>,
    waker: Option<Waker>,
}

impl FinishState {
    fn add(&mut self, exponent: u32) {
        self.returned.add(exponent);
    }

    fn is_complete(&self) -> bool {
        self.returned.is_one()
    }
}

/// A sum of shares `2^-e`, exact: bit `e` of `bits` is the digit of `2^-e`. Adding carries as
/// binary addition does (amortised O(1)); `ones` counts the set bits, so "is the sum exactly
/// 1" is O(1) too.
#[derive(Debug, Default)]
struct BinaryFraction {
    bits: Vec<u64>,
    ones: usize,
}

impl BinaryFraction {
    fn bit(&self, e: u32) -> bool {
        let (word, bit) = (e as usize / 64, e % 64);
        self.bits.get(word).is_some_and(|w| w & (1 << bit) != 0)
    }

    fn flip(&mut self, e: u32) {
        let (word, bit) = (e as usize / 64, e % 64);
        if self.bits.len() <= word {
            self.bits.resize(word + 1, 0);
        }
        self.bits[word] ^= 1 << bit;
        if self.bits[word] & (1 << bit) != 0 {
            self.ones += 1;
        } else {
            self.ones -= 1;
        }
    }

    /// Adds `2^-exponent`.
    fn add(&mut self, mut exponent: u32) {
        while self.bit(exponent) {
            if exponent == 0 {
                // More than one unit came back: only a peer's forged credit can do that.
                tracing::warn!("a finish received more credit than it handed out; ignoring it");
                return;
            }
            self.flip(exponent);
            exponent -= 1;
        }
        self.flip(exponent);
    }

    fn is_one(&self) -> bool {
        self.ones == 1 && self.bit(0)
    }

    /// The exponents of the set bits: the sum as a list of shares.
    fn exponents(&self) -> Vec<u32> {
        let mut exponents = Vec::with_capacity(self.ones);
        for (w, &word) in self.bits.iter().enumerate() {
            let mut rest = word;
            while rest != 0 {
                let bit = rest.trailing_zeros();
                exponents.push(w as u32 * 64 + bit);
                rest &= rest - 1;
            }
        }
        exponents
    }
}

/// Credit going home from this place, coalesced: activities of one finish that end here add
/// their shares (and failures) to one pending return, sent when it has gathered
/// [`COALESCE`] returns or when a worker of this place goes idle. A flood of small activities
/// then costs one credit message per batch instead of one per activity; the finish only
/// completes later by the time a worker takes to go idle.
#[derive(Debug, Default)]
pub(crate) struct CreditReturns {
    pending: Mutex<HashMap<(Place, u64), PendingReturn>>,
    count: std::sync::atomic::AtomicUsize,
}

#[derive(Debug, Default)]
struct PendingReturn {
    shares: BinaryFraction,
    failures: Vec<Failure>,
    returns: usize,
}

/// Returns gathered for one finish before they are sent without waiting for idleness.
const COALESCE: usize = 256;

/// What a credit message carries: the shares (as exponents) and the failures of the activities
/// that held them.
#[derive(Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub(crate) struct CreditReturn {
    pub(crate) exponents: Vec<u32>,
    pub(crate) failures: Vec<Failure>,
}

impl CreditReturns {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(Place, u64), PendingReturn>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a return for `credit`'s finish; the batch to send now, if it is full.
    fn add(&self, credit: Credit, failures: Vec<Failure>) -> Option<(Place, u64, CreditReturn)> {
        let mut pending = self.lock();
        let key = (credit.home, credit.finish);
        let entry = pending.entry(key).or_default();
        entry.shares.add(credit.exponent);
        entry.failures.extend(failures);
        entry.returns += 1;
        self.count.fetch_add(1, Ordering::Relaxed);
        if entry.returns < COALESCE {
            return None;
        }
        let entry = pending.remove(&key)?;
        self.count.fetch_sub(entry.returns, Ordering::Relaxed);
        Some((key.0, key.1, entry.into_return()))
    }

    /// Takes every pending return (cheap when there is none).
    fn take_all(&self) -> Vec<(Place, u64, CreditReturn)> {
        if self.count.load(Ordering::Relaxed) == 0 {
            return Vec::new();
        }
        let drained: Vec<_> = self.lock().drain().collect();
        drained
            .into_iter()
            .map(|((home, finish), entry)| {
                self.count.fetch_sub(entry.returns, Ordering::Relaxed);
                (home, finish, entry.into_return())
            })
            .collect()
    }
}

impl PendingReturn {
    fn into_return(self) -> CreditReturn {
        CreditReturn {
            exponents: self.shares.exponents(),
            failures: self.failures,
        }
    }
}

/// Sends every pending credit return home (a worker of this place is about to idle).
pub(crate) fn flush_credit(rt: &Runtime) {
    for (home, finish, batch) in rt.credit_returns.take_all() {
        send_return(rt, home, finish, &batch);
    }
}

fn send_return(rt: &Runtime, home: Place, finish: u64, batch: &CreditReturn) {
    if let Err(error) = rt.send_credit(home, finish, batch) {
        // The home is gone (or unreachable): its finish fails with PlaceFailed there.
        tracing::warn!(%error, %home, "could not return credit");
    }
}

/// The finishes whose home is this place.
#[derive(Debug, Default)]
pub(crate) struct Finishes {
    states: Mutex<HashMap<u64, FinishState>>,
}

impl Finishes {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, FinishState>> {
        self.states.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn open(&self, id: u64) {
        self.lock().insert(id, FinishState::default());
    }

    /// Credit (and the failures of the activity that held it) came back to finish `id`.
    pub(crate) fn credit_returned(&self, id: u64, exponent: u32, failures: Vec<Failure>) {
        let waker = {
            let mut states = self.lock();
            let Some(state) = states.get_mut(&id) else {
                tracing::warn!(
                    finish = id,
                    "credit for a finish this place does not know; ignored"
                );
                return;
            };
            state.failures.extend(failures);
            state.add(exponent);
            if !state.is_complete() {
                return;
            }
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Several shares came back to finish `id` at once (a coalesced return).
    pub(crate) fn credits_returned(&self, id: u64, batch: CreditReturn) {
        let mut failures = Some(batch.failures);
        for exponent in batch.exponents {
            self.credit_returned(id, exponent, failures.take().unwrap_or_default());
        }
    }

    /// Wakes every waiting finish (a place died: they must look at the failed places).
    pub(crate) fn wake_all(&self) {
        let wakers: Vec<Waker> = self
            .lock()
            .values_mut()
            .filter_map(|s| s.waker.take())
            .collect();
        wakers.into_iter().for_each(Waker::wake);
    }

    fn poll_complete(&self, id: u64, cx: &mut Context<'_>) -> Poll<Option<Vec<Failure>>> {
        let mut states = self.lock();
        match states.get_mut(&id) {
            None => Poll::Ready(None),
            Some(state) if state.is_complete() => {
                let failures = std::mem::take(&mut state.failures);
                states.remove(&id);
                Poll::Ready(Some(failures))
            }
            Some(state) => {
                state.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    fn close(&self, id: u64) {
        self.lock().remove(&id);
    }
}

/// Runs `body`, then waits until every activity it started, at any place, including the
/// activities those started, transitively, has ended.
///
/// Returns the body's value, or [`Error::Finish`] listing every activity that panicked or
/// failed (with its place and remote function), or [`Error::PlaceFailed`] if a place died
/// while the finish was not complete. Finishes nest; a finish awaited inside an activity
/// keeps its worker busy with other tasks while it waits.
///
/// ```
/// use atoll::prelude::*;
///
/// #[atoll::remote]
/// async fn work(n: u64) -> u64 {
///     n * 2
/// }
///
/// #[atoll::main]
/// async fn main() -> atoll::Result<()> {
///     finish(async {
///         for p in places() {
///             async_at!(p, work(p.index() as u64));
///         }
///     })
///     .await?;
///     Ok(())
/// }
/// ```
pub async fn finish<F: Future>(body: F) -> Result<F::Output> {
    let rt = runtime("finish")?;
    let id = rt.next_finish.fetch_add(1, Ordering::Relaxed);
    rt.finishes.open(id);
    let here = rt.comm.here();
    let activity = Activity::new(Some(Credit {
        home: here,
        finish: id,
        exponent: 0,
    }));
    let output = InActivity::new(activity.clone(), body).await;
    if let Some(credit) = activity.take() {
        rt.finishes.credit_returned(id, credit.exponent, Vec::new());
    }
    let failures = FinishWait { rt: &rt, id }.await?;
    if failures.is_empty() {
        Ok(output)
    } else {
        Err(Error::Finish(FinishError { failures }))
    }
}

struct FinishWait<'a> {
    rt: &'a Runtime,
    id: u64,
}

impl Future for FinishWait<'_> {
    type Output = Result<Vec<Failure>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.rt.finishes.poll_complete(self.id, cx) {
            Poll::Ready(Some(failures)) => Poll::Ready(Ok(failures)),
            Poll::Ready(None) => Poll::Ready(Ok(Vec::new())),
            Poll::Pending => match self.rt.comm.failed_places().first() {
                Some(&place) => {
                    self.rt.finishes.close(self.id);
                    Poll::Ready(Err(Error::PlaceFailed(place)))
                }
                None => Poll::Pending,
            },
        }
    }
}

/// Returns `credit` (and `failures`) to its finish: locally at its home, by message elsewhere.
pub(crate) fn return_credit(rt: &Runtime, credit: Option<Credit>, failures: Vec<Failure>) {
    let Some(credit) = credit else {
        for failure in failures {
            tracing::error!(%failure, "an activity outside any finish failed");
        }
        return;
    };
    if credit.home == rt.comm.here() {
        rt.finishes
            .credit_returned(credit.finish, credit.exponent, failures);
    } else if let Some((home, finish, batch)) = rt.credit_returns.add(credit, failures) {
        send_return(rt, home, finish, &batch);
    }
}

#[cfg(test)]
mod tests {
    use super::FinishState;

    #[test]
    fn credit_sums_exactly() {
        let mut state = FinishState::default();
        // 1 = 1/2 + 1/4 + 1/8 + 1/8, returned out of order.
        for exponent in [3, 1, 3, 2] {
            assert!(!state.is_complete());
            state.add(exponent);
        }
        assert!(state.is_complete());
        // Deep splits: 2^-1 + 2^-2 + ... + 2^-200 + 2^-200.
        let mut state = FinishState::default();
        state.add(200);
        for exponent in (1..=200).rev() {
            assert!(!state.is_complete());
            state.add(exponent);
        }
        assert!(state.is_complete());
    }
}
