//! Activities: the unit of work a `finish` waits for. Each activity carries a share of its
//! finish's credit (see [`crate::finish`]); the activity running on a thread is found through a
//! thread-local that [`InActivity`] sets while it polls the activity's future.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use atoll_comm::Place;

use crate::wire::Credit;

/// One activity's share of its finish's credit (`None` once returned).
#[derive(Debug)]
pub(crate) struct Activity {
    credit: Mutex<Option<Credit>>,
}

impl Activity {
    pub(crate) fn new(credit: Option<Credit>) -> Arc<Activity> {
        Arc::new(Activity {
            credit: Mutex::new(credit),
        })
    }

    /// Splits this activity's credit in two halves: it keeps one, the returned one goes to a
    /// new activity. `None` if the activity belongs to no finish.
    pub(crate) fn split(&self) -> Option<Credit> {
        let mut credit = self.credit.lock().unwrap_or_else(|p| p.into_inner());
        let share = credit.as_mut()?;
        // The reply prefix reserves u32::MAX; an activity that split this often (4 billion
        // starts without one `at!` reply folding credit back) cannot be tracked exactly.
        assert!(
            share.exponent < u32::MAX - 1,
            "an activity started more than 4 billion activities; start them from several \
             activities (each split halves the starter's share of its finish's credit)"
        );
        share.exponent += 1;
        Some(*share)
    }

    /// Folds a returned share `2^-exponent` of finish `finish` back into this activity's credit
    /// when it is the twin of what the activity holds (so the two halves make the whole of the
    /// previous split); false when it is not, and the share must go to the finish instead.
    pub(crate) fn merge(&self, home: Place, finish: u64, exponent: u32) -> bool {
        let mut credit = self.credit.lock().unwrap_or_else(|p| p.into_inner());
        match credit.as_mut() {
            Some(share)
                if share.home == home
                    && share.finish == finish
                    && share.exponent == exponent
                    && exponent > 0 =>
            {
                share.exponent -= 1;
                true
            }
            _ => false,
        }
    }

    /// Takes the credit back, at the end of the activity.
    pub(crate) fn take(&self) -> Option<Credit> {
        self.credit.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<Activity>>> = const { RefCell::new(None) };
}

/// The activity running on this thread, if any.
pub(crate) fn current() -> Option<Arc<Activity>> {
    CURRENT.with(|current| current.borrow().clone())
}

/// A future polled as part of `activity`: activities it starts take their credit from it.
pub(crate) struct InActivity<F> {
    activity: Arc<Activity>,
    future: Pin<Box<F>>,
}

impl<F> InActivity<F> {
    pub(crate) fn new(activity: Arc<Activity>, future: F) -> InActivity<F> {
        InActivity {
            activity,
            future: Box::pin(future),
        }
    }
}

impl<F: Future> Future for InActivity<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        let outer = CURRENT.with(|current| current.replace(Some(this.activity.clone())));
        // Restore the outer activity even if the future panics.
        struct Restore(Option<Arc<Activity>>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let outer = self.0.take();
                CURRENT.with(|current| *current.borrow_mut() = outer);
            }
        }
        let _restore = Restore(outer);
        this.future.as_mut().poll(cx)
    }
}
