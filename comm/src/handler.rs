//! Active-message handlers: ids, and the table a place dispatches arrived messages through.

use std::cell::Cell;
use std::fmt;

use crate::{Comm, Message, Result};

/// The id a message names its handler by. Every place registers the same handlers under the
/// same ids (see [`crate::CommBuilder::handler`]); an id nobody registered is a typed error at
/// the receiver, never a jump.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HandlerId(u16);

impl HandlerId {
    /// The handler id `id`.
    pub const fn new(id: u16) -> HandlerId {
        HandlerId(id)
    }

    /// The raw id.
    pub const fn get(self) -> u16 {
        self.0
    }
}

impl fmt::Debug for HandlerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HandlerId({})", self.0)
    }
}

impl fmt::Display for HandlerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "handler {}", self.0)
    }
}

/// A registered handler: runs on the thread that called [`Comm::progress`], with the message
/// in place. It may send (a send that finds its ring full is queued, never blocked), but
/// should not wait.
pub type Handler = Box<dyn Fn(&Comm, Message<'_>) -> Result<()> + Send + Sync>;

/// Handlers by id.
#[derive(Default)]
pub(crate) struct HandlerTable {
    handlers: Vec<Option<Handler>>,
}

impl HandlerTable {
    pub(crate) fn insert(&mut self, id: HandlerId, handler: Handler) {
        let index = usize::from(id.get());
        if self.handlers.len() <= index {
            self.handlers.resize_with(index + 1, || None);
        }
        self.handlers[index] = Some(handler);
    }

    pub(crate) fn get(&self, id: u16) -> Option<&Handler> {
        self.handlers.get(usize::from(id)).and_then(Option::as_ref)
    }
}

impl fmt::Debug for HandlerTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<usize> = (0..self.handlers.len())
            .filter(|&i| self.handlers[i].is_some())
            .collect();
        f.debug_struct("HandlerTable").field("ids", &ids).finish()
    }
}

thread_local! {
    static HANDLER_DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// Whether the current thread is inside a handler (sends must not wait there).
pub(crate) fn in_handler() -> bool {
    HANDLER_DEPTH.with(|depth| depth.get() > 0)
}

/// Marks the current thread as running a handler while the guard lives.
pub(crate) struct HandlerScope(());

impl HandlerScope {
    pub(crate) fn enter() -> HandlerScope {
        HANDLER_DEPTH.with(|depth| depth.set(depth.get() + 1));
        HandlerScope(())
    }
}

impl Drop for HandlerScope {
    fn drop(&mut self) {
        HANDLER_DEPTH.with(|depth| depth.set(depth.get() - 1));
    }
}
