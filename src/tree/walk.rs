//! The cancel walk: marking a node done and carrying the cancellation down its subtree, and the
//! shortcut for a node nobody can observe any more.
//!
//! The walk is breadth first and iterative (trees may be arbitrarily deep), takes one node's
//! lock at a time, and runs wakers and callbacks only after that lock is released (see the
//! module's `# Deadlock safety`).

use std::any::Any;
use std::collections::VecDeque;
use std::task::Waker;

use crate::error::{Cause, Error};
use crate::sync::{Arc, Ordering, lock};

use super::registry::{NO_KEY, Registry, detach_from_parent};
use super::state::State;
use super::{CancelCore, CancelNode, CancelRef, Entry};

/// Cancels `node` and every cancellable descendant with `err` and `cause`, if it is still live.
/// Returns whether this call did it.
///
/// Wake order: the waiters (and callbacks) of `node` itself and of every node with cancellable
/// children wait until the whole subtree is marked; then `node`'s go first, the others' level
/// by level. A node without cancellable children has nothing below it to wait for: its waiters
/// are woken as soon as it is marked, while the walk goes on, so with many leaves (a fan-out of
/// request handlers) the woken tasks start running at once. Either way a woken waiter sees the
/// whole subtree of the node it waited on done.
///
/// The walk allocates only to remember nodes with children of their own and the waiters that
/// wait for them: a wide, flat fan-out is cancelled without touching the allocator (whose locks
/// the woken tasks, freeing their nodes on other threads, need at the same time).
pub(crate) fn cancel(node: CancelRef<'_>, err: Error, cause: Cause) -> bool {
    cancel_and_report(node, err, cause, true)
}

/// [`cancel`] for a descendant that takes its ancestor's cancellation ahead of that ancestor's
/// own walk (which reported it): not reported a second time.
pub(crate) fn cancel_as_descendant(node: CancelRef<'_>, err: Error, cause: Cause) -> bool {
    cancel_and_report(node, err, cause, false)
}

fn cancel_and_report(node: CancelRef<'_>, err: Error, cause: Cause, report: bool) -> bool {
    let Some(taken) = mark_done(node.core(), err, &cause) else {
        return false;
    };
    detach_from_parent(node);
    // Outside every lock, once per cancellation that took effect. A subscriber's panic must not
    // keep the walk from waking the waiters: it resumes once the walk is done.
    let mut panic = None;
    if report {
        let reported = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            crate::observe::cancelled(err, &cause, crate::observe::Reached::Here)
        }));
        panic = reported.err();
    }
    if taken.is_empty() {
        // Nothing below and nobody waiting: the common case of a handle dropped after use.
        if let Some(p) = panic {
            std::panic::resume_unwind(p);
        }
        return true;
    }
    let mut walk = Walk {
        err,
        cause: &cause,
        pending: VecDeque::new(),
        later: Vec::new(),
        panic,
    };
    if taken.entries.has_children() {
        // Without recursion, breadth first: trees may be arbitrarily deep.
        walk.visit(taken);
        while let Some(taken) = walk.pending.pop_front() {
            walk.visit(taken);
        }
    } else {
        // Nothing below: its waiters need not wait for a walk.
        taken.notify_all(&mut walk.panic);
    }
    walk.finish();
    true
}

/// What a marked node hands to the walk: its inline waiter and its registry.
struct Taken {
    waiter: Option<Waker>,
    entries: Registry,
}

impl Taken {
    fn is_empty(&self) -> bool {
        self.waiter.is_none() && self.entries.is_empty()
    }

    /// Wakes the waiters and starts the callbacks of a node without cancellable children.
    fn notify_all(self, panic: &mut Option<Box<dyn Any + Send>>) {
        if let Some(w) = self.waiter {
            notify(Entry::Waiter(w), panic);
        }
        self.entries.for_each(|entry| notify(entry, panic));
    }
}

/// One cancellation's walk over a subtree.
struct Walk<'a> {
    err: Error,
    cause: &'a Cause,
    /// The registries of marked nodes that have cancellable children, breadth first.
    pending: VecDeque<Taken>,
    /// Waiters and callbacks of the cancelled node and of nodes with children: woken once the
    /// whole subtree is marked.
    later: Vec<Entry>,
    /// The first panic of a waker or of a drop; resumed once the walk is over.
    panic: Option<Box<dyn Any + Send>>,
}

impl Walk<'_> {
    /// Goes through the registry of a marked node that has children (or is where the
    /// cancellation started): marks its children, keeps its waiters and callbacks for later.
    fn visit(&mut self, taken: Taken) {
        if let Some(w) = taken.waiter {
            self.later.push(Entry::Waiter(w));
        }
        taken.entries.for_each(|entry| match entry {
            Entry::Child(c) => self.child(c),
            other => self.later.push(other),
        });
    }

    fn child(&mut self, child: CancelNode) {
        // Its parent (the node being visited) is done and has dropped its registry already.
        if let Some(taken) = mark_done(child.get().core(), self.err, self.cause) {
            if taken.entries.has_children() {
                self.pending.push_back(taken);
            } else {
                // Nothing below it to wait for.
                taken.notify_all(&mut self.panic);
            }
        }
        // Outside every lock. The child's owners (its contexts, handle, waiters' tasks) usually
        // still hold it, so this is a decrement: freeing it is left to them. When the walk held
        // the last reference (a waiter just woken dropped the others), the drop frees the node
        // and may run a value's `Drop`, whose panic must not stop the walk either.
        drop_caught(child, &mut self.panic);
    }

    /// Wakes what waited for the whole subtree, then resumes a waker's panic, if any.
    fn finish(mut self) {
        for entry in std::mem::take(&mut self.later) {
            notify(entry, &mut self.panic);
        }
        if let Some(p) = self.panic {
            std::panic::resume_unwind(p);
        }
    }
}

/// Marks `core` done and takes its registry, or `None` if it was done already.
#[inline]
fn mark_done(core: &CancelCore, err: Error, cause: &Cause) -> Option<Taken> {
    // Once done, never live again: a handle dropped after its node was cancelled takes no lock.
    if core.is_done() {
        return None;
    }
    let mut g = lock(&core.inner);
    if core.state_locked() != State::Live {
        return None;
    }
    core.store_cause(&mut g, err, cause);
    core.set_state(State::done_with(err));
    let waiter = g.waiter.take();
    let (entries, timer) = match g.more.as_mut() {
        Some(m) => (std::mem::take(&mut m.entries), m.timer.take()),
        None => (Registry::Empty, None),
    };
    drop(g);
    if let Some(t) = timer {
        t.stop();
    }
    Some(Taken { waiter, entries })
}

/// Drops `x`, outside every lock; a panic of the drop (a value's `Drop`, when `x` held the last
/// reference to a node) is kept in `panic`, as a waker's is.
fn drop_caught<T>(x: T, panic: &mut Option<Box<dyn Any + Send>>) {
    if let Err(p) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(x))) {
        panic.get_or_insert(p);
    }
}

/// Wakes a waiter or starts a callback, outside every lock. A panicking waker neither stops
/// the others from being woken nor leaves the tree half cancelled: its panic (the first one) is
/// kept in `panic` and resumed once the walk is over.
fn notify(entry: Entry, panic: &mut Option<Box<dyn Any + Send>>) {
    let run = std::panic::AssertUnwindSafe(move || match entry {
        Entry::Waiter(w) => w.wake(),
        Entry::After(a) => a.notify(),
        Entry::Child(_) => {}
    });
    if let Err(p) = std::panic::catch_unwind(run) {
        panic.get_or_insert(p);
    }
}

/// The drop of `node`'s handle when nobody else can see the node any more: no context, child,
/// waiter, callback or timer holds it or waits in its registry. Cancelling it could not be
/// observed, so it only leaves its parent's registry; marking it, storing a cause and the walk
/// are skipped (the common case of a request's handle dropped after use). Returns `false`,
/// having done nothing but perhaps the leaving, when the node may be observed: the caller then
/// cancels it as usual.
///
/// Nobody can start observing it meanwhile: a new reference needs an existing one, and besides
/// the caller's only the parent's registry may hold one, which hands out clones only briefly,
/// to a cancelling parent (which takes it to mark the node: then this sees it done, or still
/// held, and returns `false`) or to a live-tree snapshot (feature `live`; the final strong-count
/// check sees its clone and returns `false`, and the context is cancelled as usual).
#[inline]
pub(crate) fn release_unobserved(node: &CancelNode) -> bool {
    let core = node.get();
    if core.is_done() {
        return false;
    }
    let registered = usize::from(core.key.load(Ordering::Relaxed) != NO_KEY);
    if Arc::strong_count(node.node()) != 1 + registered {
        return false;
    }
    {
        // Callbacks wait in the registry without holding the node.
        let g = lock(&core.inner);
        let timer = g.more.as_ref().is_some_and(|m| m.timer.is_some());
        if core.state_locked() != State::Live || g.entries_len() != 0 || timer {
            return false;
        }
    }
    if registered == 1 {
        detach_from_parent(core);
    }
    Arc::strong_count(node.node()) == 1
}
