//! Waiting for a channel's future on the calling thread, for code outside async: the thread
//! delivers this place's messages while it waits (values and credit arrive by handlers, so a
//! channel makes progress without any activity running).

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use atoll_comm::{Comm, Place};
use futures::task::ArcWake;

use crate::runtime::runtime_ref;
use crate::Result;

/// Wakes the blocked thread: sets the flag and rings this place's doorbell (the thread may be
/// asleep on it).
struct Signal {
    woken: AtomicBool,
    comm: Comm,
}

impl ArcWake for Signal {
    fn wake_by_ref(signal: &Arc<Signal>) {
        signal.woken.store(true, Ordering::Release);
        signal.comm.notify();
    }
}

/// Polls `future` to completion on this thread, driving the transport between polls; `peer`'s
/// death also ends a wait (the future then sees it and fails). `what` names the caller for the
/// error outside the runtime.
pub(crate) fn block_on<R>(
    what: &'static str,
    peer: Place,
    future: impl Future<Output = Result<R>>,
) -> Result<R> {
    let rt = runtime_ref(what)?;
    let signal = Arc::new(Signal {
        woken: AtomicBool::new(false),
        comm: rt.comm.clone(),
    });
    let waker = futures::task::waker(signal.clone());
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        signal.woken.store(false, Ordering::Release);
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        rt.comm
            .wait_until(|| signal.woken.load(Ordering::Acquire) || rt.comm.is_failed(peer))?;
    }
}
