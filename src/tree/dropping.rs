//! Freeing nodes without recursion. A deep chain of contexts is unlinked in a loop; a value that
//! holds contexts (which hold values holding contexts, …) is dropped from a per-thread queue:
//! inside a value's drop, the values of nodes freed by it wait in the queue instead of being
//! dropped one inside the other. The stack a drop needs stays the same however long the chain.

use std::any::Any;
use std::cell::RefCell;

use crate::sync::arc_into_inner;

use super::{CancelNode, Kind, Node};

type Value = Box<dyn Any + Send + Sync>;

thread_local! {
    /// `Some` while a value is being dropped on this thread: the values whose drop waits.
    static WAITING: RefCell<Option<Vec<Value>>> = const { RefCell::new(None) };
}

impl Drop for Node {
    fn drop(&mut self) {
        let mut next = self.parent.take();
        // An ancestor that `next` still keeps alive: this is never the last `Arc`.
        drop(self.kind.take_cancellable());
        let value = self.kind.take_value();
        while let Some(parent) = next {
            match arc_into_inner(parent) {
                Some(mut node) => {
                    next = node.parent.take();
                    drop(node.kind.take_cancellable());
                    // `node` drops here with nothing left to unlink (its own drop takes care
                    // of its value).
                }
                None => break,
            }
        }
        if let Some(v) = value {
            drop_value(v);
        }
    }
}

impl Kind {
    fn take_cancellable(&mut self) -> Option<CancelNode> {
        match self {
            Kind::Cancel(_) => None,
            Kind::Value(v) => v.cancellable.take(),
            Kind::Todo | Kind::WithoutCancel => None,
        }
    }

    /// The value, if dropping it does something (a zero-sized stand-in takes its place, which
    /// allocates nothing).
    fn take_value(&mut self) -> Option<Value> {
        match self {
            Kind::Value(v) if v.meta.needs_drop => {
                Some(std::mem::replace(&mut v.value, Box::new(())))
            }
            _ => None,
        }
    }
}

/// Drops `v` now, or queues it when a value is being dropped on this thread already (`v` is one
/// of the contexts that value held, or nested deeper): the outermost drop then drops the queue,
/// so nested values never recurse. A panicking drop does not stop the others; the first panic
/// is resumed once the queue is empty.
fn drop_value(v: Value) {
    let first = WAITING.try_with(|w| {
        let mut w = w.borrow_mut();
        match w.as_mut() {
            Some(queue) => {
                queue.push(v);
                None
            }
            None => {
                *w = Some(Vec::new());
                Some(v)
            }
        }
    });
    let mut next = match first {
        Ok(Some(v)) => Some(v),
        Ok(None) => return,
        // The thread's locals are gone (a drop during thread exit): nothing to queue in.
        Err(_) => return,
    };
    let mut panic = None;
    while let Some(v) = next {
        if let Err(p) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(v))) {
            panic.get_or_insert(p);
        }
        next = WAITING.with(|w| w.borrow_mut().as_mut().and_then(Vec::pop));
    }
    WAITING.with(|w| *w.borrow_mut() = None);
    if let Some(p) = panic {
        std::panic::resume_unwind(p);
    }
}
