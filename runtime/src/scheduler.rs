//! The worker pool of one place: work-stealing deques (crossbeam-deque), one per worker, and
//! an injector for tasks made ready by threads that are not workers. Idle workers drive the
//! transport: they deliver arrived messages (which spawn activities) and sleep on the place's
//! doorbell, which both a sender and a local `spawn` ring.

use std::cell::RefCell;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_task::Runnable;
use atoll_comm::Comm;
use crossbeam_deque::{Injector, Steal, Stealer, Worker};

/// Tasks a worker runs between two looks at the transport while it has work.
const POLL_EVERY_TASKS: u32 = 16;

thread_local! {
    /// The deque of the worker running on this thread, if it is one.
    static LOCAL: RefCell<Option<Worker<Runnable>>> = const { RefCell::new(None) };
    /// Its index.
    static INDEX: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The tasks of one place.
pub(crate) struct Scheduler {
    injector: Injector<Runnable>,
    stealers: Vec<Stealer<Runnable>>,
    /// For each worker: the core it is pinned to, if any, and the order it steals from the
    /// others in (workers on its own NUMA node first).
    placement: Vec<Option<usize>>,
    steal_order: Vec<Vec<usize>>,
    comm: Comm,
    stop: AtomicBool,
}

impl Scheduler {
    /// A scheduler for one worker per entry of `placement` (the core each is pinned to, if
    /// any), and their deques (to hand to [`Scheduler::work`]).
    pub(crate) fn new(
        comm: Comm,
        placement: Vec<Option<usize>>,
    ) -> (Arc<Scheduler>, Vec<Worker<Runnable>>) {
        let deques: Vec<Worker<Runnable>> = placement.iter().map(|_| Worker::new_lifo()).collect();
        let nodes = crate::affinity::numa_nodes();
        let node_of = |w: usize| placement[w].and_then(|cpu| nodes.get(&cpu).copied());
        let steal_order = (0..placement.len())
            .map(|w| {
                let mut others: Vec<usize> = (0..placement.len()).filter(|&o| o != w).collect();
                // Same node first; stable, so otherwise in index order.
                others.sort_by_key(|&o| node_of(o) != node_of(w));
                others
            })
            .collect();
        let scheduler = Scheduler {
            injector: Injector::new(),
            stealers: deques.iter().map(Worker::stealer).collect(),
            placement,
            steal_order,
            comm,
            stop: AtomicBool::new(false),
        };
        (Arc::new(scheduler), deques)
    }

    /// Runs `future` as a task of this place.
    pub(crate) fn spawn<F>(self: &Arc<Self>, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.task(future).schedule();
    }

    /// A detached task of this place running `future`, not yet scheduled.
    fn task<F>(self: &Arc<Self>, future: F) -> Runnable
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let scheduler = Arc::downgrade(self);
        let schedule = move |runnable: Runnable| {
            if let Some(scheduler) = scheduler.upgrade() {
                scheduler.schedule(runnable);
            }
        };
        let (runnable, task) = async_task::spawn(future, schedule);
        task.detach();
        runnable
    }

    /// Runs `future` as a task of this place, polling it once right now on this thread: a
    /// remote call that completes at once (most do) then answers from inside the handler that
    /// received it, without a trip through the queues. Later polls are scheduled as usual.
    pub(crate) fn spawn_now<F>(self: &Arc<Self>, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.task(future).run();
    }

    fn schedule(&self, runnable: Runnable) {
        let pushed_locally = LOCAL.with(|local| match local.borrow().as_ref() {
            Some(worker) => {
                worker.push(runnable);
                None
            }
            None => Some(runnable),
        });
        if let Some(runnable) = pushed_locally {
            self.injector.push(runnable);
        }
        // A sleeping worker of this place looks again.
        self.comm.notify();
    }

    /// Whether any task waits to run.
    fn has_work(&self) -> bool {
        !self.injector.is_empty() || self.stealers.iter().any(|s| !s.is_empty())
    }

    fn find_task(&self) -> Option<Runnable> {
        if let Some(task) = LOCAL.with(|local| local.borrow().as_ref().and_then(Worker::pop)) {
            return Some(task);
        }
        loop {
            let mut retry = false;
            let stolen = LOCAL.with(|local| match local.borrow().as_ref() {
                Some(worker) => self.injector.steal_batch_and_pop(worker),
                None => self.injector.steal(),
            });
            match stolen {
                Steal::Success(task) => return Some(task),
                Steal::Retry => retry = true,
                Steal::Empty => {}
            }
            let me = INDEX.with(std::cell::Cell::get);
            let order = self.steal_order.get(me).map_or(&[][..], Vec::as_slice);
            for stealer in order.iter().filter_map(|&o| self.stealers.get(o)) {
                match stealer.steal() {
                    Steal::Success(task) => return Some(task),
                    Steal::Retry => retry = true,
                    Steal::Empty => {}
                }
            }
            if !retry {
                return None;
            }
        }
    }

    /// Runs tasks on this thread as worker `index`, with `deque` as its deque, until `done()`
    /// holds or the scheduler stops. `on_idle` runs whenever the worker finds nothing to do.
    pub(crate) fn work(
        &self,
        index: usize,
        deque: Worker<Runnable>,
        mut done: impl FnMut() -> bool,
        mut on_idle: impl FnMut(),
    ) {
        if let Some(cpu) = self.placement.get(index).copied().flatten() {
            if let Err(error) = crate::affinity::pin_current_thread(cpu) {
                tracing::warn!(%error, cpu, "could not pin a worker");
            }
        }
        INDEX.with(|i| i.set(index));
        LOCAL.with(|local| *local.borrow_mut() = Some(deque));
        let mut ran: u32 = 0;
        while !done() && !self.stop.load(Ordering::Acquire) {
            if let Some(task) = self.find_task() {
                task.run();
                ran = ran.wrapping_add(1);
                // A busy place still answers: deliver arrived messages every few tasks.
                if ran % POLL_EVERY_TASKS == 0 {
                    self.comm.poll();
                }
                continue;
            }
            // Deliver messages (they spawn activities) and sleep until there is work.
            let _ = self.comm.wait_until(|| {
                on_idle();
                done() || self.stop.load(Ordering::Acquire) || self.has_work()
            });
        }
        // Tasks left in this deque go to the injector, for whoever still runs.
        LOCAL.with(|local| {
            if let Some(worker) = local.borrow_mut().take() {
                while let Some(task) = worker.pop() {
                    self.injector.push(task);
                }
            }
        });
    }

    /// Makes every worker leave [`Scheduler::work`].
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.comm.notify();
    }
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("workers", &self.stealers.len())
            .field("placement", &self.placement)
            .finish_non_exhaustive()
    }
}
