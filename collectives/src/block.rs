//! Running a collective to completion on a thread that is not a runtime worker.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use atoll_comm::Comm;

/// Idle steps between two looks at a pending future that no message woke: how soon a wait
/// notices that the place it waits for died.
const REPOLL_EVERY: u32 = 64;

struct Flag {
    woken: AtomicBool,
    comm: Comm,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.comm.notify();
    }
}

/// Runs `future` (a collective, or anything that waits on `comm`'s messages) on this thread,
/// delivering `comm`'s messages while it waits: for programs and tests that use the transport
/// without the runtime. Under the runtime, `.await` the collective instead; calling this from
/// inside an activity holds the worker until the collective completes.
///
/// A collective that waits for a place that died completes with
/// [`crate::Error::PlaceFailed`] within milliseconds.
pub fn block_on<F: Future>(comm: &Comm, future: F) -> F::Output {
    let flag = Arc::new(Flag {
        woken: AtomicBool::new(false),
        comm: comm.clone(),
    });
    let waker = Waker::from(flag.clone());
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        flag.woken.store(false, Ordering::Release);
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        let mut steps = 0u32;
        let waited = comm.wait_until(|| {
            steps = steps.wrapping_add(1);
            flag.woken.load(Ordering::Acquire) || steps % REPOLL_EVERY == 0
        });
        if let Err(error) = waited {
            tracing::warn!(%error, "while waiting for a collective");
        }
    }
}
