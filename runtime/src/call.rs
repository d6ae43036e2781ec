//! `at!` and `async_at!`: running a remote function at a place, with or without waiting for
//! its result, and the receiving side of both.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use atoll_comm::{Message, Place};
use futures::channel::oneshot;
use futures::FutureExt;

use crate::activity::{self, Activity, InActivity};
use crate::error::{panic_message, Failure};
use crate::finish::return_credit;
use crate::remote::{RemoteFn, Wire};
use crate::runtime::{runtime, Runtime};
use crate::wire::{CallPrefix, Credit, ReplyPrefix, NO_FINISH};
use crate::{Error, Result};

/// What a caller does with the reply of its call (it knows the result type; the handler
/// that receives the reply does not).
/// What a caller does with the reply of its call (it knows the result type; the handler
/// that receives the reply does not): the reply (or why there is none), whether the callee
/// succeeded, and the finish credit the reply carries back.
type Complete = Box<dyn FnOnce(Result<Message<'_>>, bool, Option<(u64, u32)>) + Send>;

/// Calls waiting for their replies, by call id.
#[derive(Default)]
pub(crate) struct PendingCalls {
    calls: Mutex<HashMap<u64, (Place, Complete)>>,
}

impl std::fmt::Debug for PendingCalls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingCalls")
            .field("len", &self.lock().len())
            .finish()
    }
}

impl PendingCalls {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (Place, Complete)>> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn insert(&self, id: u64, place: Place, complete: Complete) {
        self.lock().insert(id, (place, complete));
    }

    fn take(&self, id: u64) -> Option<Complete> {
        self.lock().remove(&id).map(|(_, complete)| complete)
    }

    /// Fails every call waiting on `place`.
    pub(crate) fn fail_place(&self, place: Place) {
        let failed: Vec<Complete> = {
            let mut calls = self.lock();
            let ids: Vec<u64> = calls
                .iter()
                .filter(|(_, (p, _))| *p == place)
                .map(|(id, _)| *id)
                .collect();
            ids.into_iter()
                .filter_map(|id| calls.remove(&id))
                .map(|(_, c)| c)
                .collect()
        };
        for complete in failed {
            complete(Err(Error::PlaceFailed(place)), false, None);
        }
    }
}

/// Runs `R` with `args` at `place` and returns its result (what `at!` expands to).
///
/// At this place the function runs right here, inside the calling activity, without
/// serialization; elsewhere the arguments are serialized once into the message and the
/// remote part joins the caller's finish.
pub async fn call_at<R>(place: Place, args: R::Args) -> Result<R::Output>
where
    R: RemoteFn,
    R::Args: Wire,
    R::Output: Wire,
{
    let rt = runtime("at!")?;
    if place == rt.comm.here() {
        return std::panic::AssertUnwindSafe(R::call(args))
            .catch_unwind()
            .await
            .map_err(|panic| {
                Error::Remote(Failure {
                    place,
                    function: R::NAME.to_owned(),
                    message: panic_message(&*panic),
                })
            });
    }
    let credit = activity::current().and_then(|a| a.split());
    let call = rt.next_call.fetch_add(1, Ordering::Relaxed);
    let (sender, receiver) = oneshot::channel::<Result<R::Output>>();
    let caller = activity::current();
    let returns = rt.clone();
    let complete: Complete = Box::new(move |reply: Result<Message<'_>>, ok: bool, credit| {
        // The callee's credit comes back with the reply: fold it into the calling activity
        // when it is the half that activity gave away (a sequence of calls then never deepens
        // the split), else hand it to the finish.
        if let Some((finish, exponent)) = credit {
            // A reply carries credit only when the finish lives at the caller's place.
            let home = returns.comm.here();
            let merged = caller
                .as_ref()
                .is_some_and(|a| a.merge(home, finish, exponent));
            if !merged {
                returns
                    .finishes
                    .credit_returned(finish, exponent, Vec::new());
            }
        }
        let result = reply.and_then(|message| {
            if ok {
                R::Output::decode(&message).map_err(Error::from)
            } else {
                Err(Error::Remote(Failure::decode(&message)?))
            }
        });
        let _ = sender.send(result);
    });
    rt.calls.insert(call, place, complete);
    let prefix = call_prefix(&rt, R::ID, call, credit);
    if let Err(error) = rt
        .comm
        .send_framed(place, crate::runtime::CALL, &prefix.encode(), &args)
    {
        rt.calls.take(call);
        // The split-off share never left: give it back to the finish.
        return_credit(&rt, credit, Vec::new());
        return Err(error.into());
    }
    if rt.comm.is_failed(place) {
        rt.calls.fail_place(place);
    }
    receiver.await.unwrap_or(Err(Error::PlaceFailed(place)))
}

/// Starts `R` with `args` at `place` without waiting (what `async_at!` expands to). The new
/// activity joins the enclosing `finish`; its panic or failure is reported there.
///
/// # Panics
/// Outside the runtime (there is no finish to report to).
pub fn spawn_at<R>(place: Place, args: R::Args)
where
    R: RemoteFn,
    R::Args: Wire,
    R::Output: Wire,
{
    let rt = match runtime("async_at!") {
        Ok(rt) => rt,
        Err(error) => panic!("{error}"),
    };
    let credit = activity::current().and_then(|a| a.split());
    if place == rt.comm.here() {
        rt.spawn_activity(
            false,
            credit,
            R::NAME,
            R::call(args),
            |rt, outcome, credit| {
                return_credit(rt, credit, outcome.err().into_iter().collect());
            },
        );
        return;
    }
    let prefix = call_prefix(&rt, R::ID, 0, credit);
    if let Err(error) = rt
        .comm
        .send_framed(place, crate::runtime::CALL, &prefix.encode(), &args)
    {
        let failure = Failure {
            place,
            function: R::NAME.to_owned(),
            message: format!("could not start: {error}"),
        };
        return_credit(&rt, credit, vec![failure]);
    }
}

/// The prefix of a call of `function` (call id 0: no reply) carrying `credit`, if any.
fn call_prefix(rt: &Runtime, function: u64, call: u64, credit: Option<Credit>) -> CallPrefix {
    CallPrefix {
        function,
        call,
        credit: credit.unwrap_or(Credit {
            home: rt.comm.here(),
            finish: NO_FINISH,
            exponent: 0,
        }),
    }
}

/// The receiving side of a call of `R` (registered for it by `#[atoll::remote]`).
pub(crate) fn invoke<R>(rt: &Arc<Runtime>, from: Place, prefix: CallPrefix, message: Message<'_>)
where
    R: RemoteFn,
    R::Args: Wire,
    R::Output: Wire,
{
    let credit = (prefix.credit.finish != NO_FINISH).then_some(prefix.credit);
    let args = match R::Args::decode(&message) {
        Ok(args) => args,
        Err(error) => {
            let failure = Failure {
                place: rt.comm.here(),
                function: R::NAME.to_owned(),
                message: format!("its arguments from {from} were rejected: {error}"),
            };
            rt.fail_call(from, prefix, failure);
            return;
        }
    };
    let call = prefix.call;
    rt.spawn_activity(
        true,
        credit,
        R::NAME,
        R::call(args),
        move |rt, outcome, credit| {
            if call == 0 {
                return_credit(rt, credit, outcome.err().into_iter().collect());
                return;
            }
            // The caller's place is the finish's home: the credit travels with the reply.
            let (piggyback, credit) = match credit {
                Some(c) if c.home == from => (Some((c.finish, c.exponent)), None),
                other => (None, other),
            };
            return_credit(rt, credit, Vec::new());
            let sent = match &outcome {
                Ok(value) => rt.send_reply(
                    from,
                    ReplyPrefix {
                        call,
                        ok: true,
                        credit: piggyback,
                    },
                    value,
                ),
                Err(failure) => rt.send_reply(
                    from,
                    ReplyPrefix {
                        call,
                        ok: false,
                        credit: piggyback,
                    },
                    failure,
                ),
            };
            if let Err(error) = sent {
                let failure = Failure {
                    place: rt.comm.here(),
                    function: R::NAME.to_owned(),
                    message: format!("its result could not be sent: {error}"),
                };
                let _ = rt.send_reply(
                    from,
                    ReplyPrefix {
                        call,
                        ok: false,
                        credit: piggyback,
                    },
                    &failure,
                );
            }
        },
    );
}

impl Runtime {
    /// Runs `future` as an activity holding `credit`; `done` gets its outcome (a panic becomes
    /// a [`Failure`]) and the activity's remaining credit. `now`: poll it once right away (for
    /// arrived calls; never for local spawns, whose recursion would then grow the stack).
    pub(crate) fn spawn_activity<T, D>(
        self: &Arc<Self>,
        now: bool,
        credit: Option<Credit>,
        name: &'static str,
        future: crate::remote::BoxFuture<T>,
        done: D,
    ) where
        T: Send + 'static,
        D: FnOnce(&Arc<Runtime>, std::result::Result<T, Failure>, Option<Credit>) + Send + 'static,
    {
        let rt = self.clone();
        let activity: Arc<Activity> = Activity::new(credit);
        let task = async move {
            let outcome = InActivity::new(
                activity.clone(),
                std::panic::AssertUnwindSafe(future).catch_unwind(),
            )
            .await
            .map_err(|panic| Failure {
                place: rt.comm.here(),
                function: name.to_owned(),
                message: panic_message(&*panic),
            });
            done(&rt, outcome, activity.take());
        };
        if now {
            self.scheduler.spawn_now(task);
        } else {
            self.scheduler.spawn(task);
        }
    }

    /// Answers a call that cannot run (unknown function, rejected arguments): the caller gets
    /// the failure, and the finish its credit back.
    pub(crate) fn fail_call(&self, from: Place, prefix: CallPrefix, failure: Failure) {
        let credit = (prefix.credit.finish != NO_FINISH).then_some(prefix.credit);
        if prefix.call == 0 {
            return_credit(self, credit, vec![failure]);
            return;
        }
        let (piggyback, credit) = match credit {
            Some(c) if c.home == from => (Some((c.finish, c.exponent)), None),
            other => (None, other),
        };
        return_credit(self, credit, Vec::new());
        let reply = ReplyPrefix {
            call: prefix.call,
            ok: false,
            credit: piggyback,
        };
        if let Err(error) = self.send_reply(from, reply, &failure) {
            tracing::warn!(%error, %from, "could not answer a failed call");
        }
    }

    /// A reply arrived.
    pub(crate) fn reply_arrived(&self, prefix: ReplyPrefix, message: Message<'_>) {
        match self.calls.take(prefix.call) {
            Some(complete) => complete(Ok(message), prefix.ok, prefix.credit),
            None => {
                tracing::debug!(call = prefix.call, "reply for a call nobody waits for");
                if let Some((finish, exponent)) = prefix.credit {
                    self.finishes.credit_returned(finish, exponent, Vec::new());
                }
            }
        }
    }

    pub(crate) fn fail_calls_to(&self, place: Place) {
        self.calls.fail_place(place);
    }
}

impl Failure {
    fn decode(message: &Message<'_>) -> atoll_comm::Result<Failure> {
        message.deserialize::<Failure>()
    }
}
