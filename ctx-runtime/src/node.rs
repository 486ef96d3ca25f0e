//! The tree: nodes, their kinds, and how cancellation travels down it.
//!
//! Only cancellable nodes (`with_cancel`, `with_deadline`, …) take part in cancellation. Each one
//! keeps a registry (a slab) of what must hear about its cancellation: cancellable children,
//! `done()` waiters and `after_func` callbacks. A child registers with its *nearest cancellable
//! ancestor* only; value and `without_cancel` nodes never register and answer `is_done()` through
//! a pointer to that ancestor. A context with no cancellable ancestor (under `background()`)
//! registers nowhere at all.
//!
//! Locking: a node's mutex guards its registry and cause. No code path ever holds two node locks
//! at once, and no waker, callback or user code runs under a lock, so cancellation cannot
//! deadlock, whatever a waker or callback does (re-entrancy is allowed).

use std::any::{Any, TypeId};
use std::panic::Location;
use std::task::Waker;

use slab::Slab;

use crate::Instant;
use crate::after::AfterShared;
use crate::error::{Cause, Error};
use crate::sync::{Arc, AtomicU8, AtomicUsize, Mutex, Ordering, arc_into_inner, lock};
use crate::timer::TimerHandle;

pub(crate) const LIVE: u8 = 0;
pub(crate) const CANCELED: u8 = 1;
pub(crate) const DEADLINE: u8 = 2;

const NO_KEY: usize = usize::MAX;

pub(crate) fn state_err(state: u8) -> Option<Error> {
    match state {
        LIVE => None,
        CANCELED => Some(Error::Canceled),
        _ => Some(Error::DeadlineExceeded),
    }
}

fn err_state(err: Error) -> u8 {
    match err {
        Error::Canceled => CANCELED,
        Error::DeadlineExceeded => DEADLINE,
    }
}

/// One node of a context tree. `background()` has no node at all.
pub(crate) struct Node {
    /// The context this one was derived from (`None`: background).
    pub(crate) parent: Option<Arc<Node>>,
    pub(crate) kind: Kind,
}

pub(crate) enum Kind {
    /// `Context::todo()`.
    Todo,
    /// `with_cancel`, `with_cancel_cause`, `with_deadline`, `with_timeout`.
    Cancel(CancelCore),
    /// `with_value`.
    Value(ValueSlot),
    /// `without_cancel`.
    WithoutCancel,
}

pub(crate) struct ValueSlot {
    pub(crate) key: TypeId,
    pub(crate) key_name: fn() -> &'static str,
    /// Encodes the value for a header if its key travels (`ContextKey::HEADER`).
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) travel: crate::key::TravelFn,
    pub(crate) value: Box<dyn Any + Send + Sync>,
    /// The nearest cancellable ancestor, which answers `is_done()` etc. for this node.
    pub(crate) source: Option<Arc<Node>>,
}

pub(crate) struct CancelCore {
    /// `LIVE`, `CANCELED` or `DEADLINE`; written once, under `inner`'s lock, after the cause.
    pub(crate) state: AtomicU8,
    /// The effective deadline: this node's own or an earlier one inherited from an ancestor.
    pub(crate) deadline: Option<Instant>,
    /// Whether `deadline` is this node's own (it runs a timer), for `Debug`.
    pub(crate) own_deadline: bool,
    /// Where this node was made (for `Debug` and for causes).
    pub(crate) created: &'static Location<'static>,
    /// The nearest cancellable ancestor, which holds this node in its registry.
    parent: Option<Arc<Node>>,
    /// This node's slot in `parent`'s registry; read and written under `parent`'s lock.
    key: AtomicUsize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: Slab<Entry>,
    cause: Option<Cause>,
    timer: Option<TimerHandle>,
    /// What a deadline hit reports instead of `DeadlineExceeded` (`with_deadline_cause`).
    deadline_cause: Option<Cause>,
}

pub(crate) enum Entry {
    Child(Arc<Node>),
    Waiter(Waker),
    After(Arc<AfterShared>),
}

impl Node {
    pub(crate) fn core(&self) -> Option<&CancelCore> {
        match &self.kind {
            Kind::Cancel(c) => Some(c),
            _ => None,
        }
    }

    pub(crate) fn expect_core(&self) -> &CancelCore {
        self.core().expect("a cancellable node")
    }
}

impl CancelCore {
    #[inline]
    pub(crate) fn state(&self) -> u8 {
        self.state.load(Ordering::Acquire)
    }

    pub(crate) fn cause(&self) -> Option<Cause> {
        if self.state() == LIVE {
            return None;
        }
        lock(&self.inner).cause.clone()
    }

    /// Registers `entry`; gives it back when the node is already done.
    pub(crate) fn register(&self, entry: Entry) -> Result<usize, Entry> {
        let mut g = lock(&self.inner);
        if self.state.load(Ordering::Relaxed) != LIVE {
            return Err(entry);
        }
        Ok(g.entries.insert(entry))
    }

    /// Replaces the waker of waiter `key` (no-op once done).
    pub(crate) fn update_waiter(&self, key: usize, waker: &Waker) {
        let mut g = lock(&self.inner);
        if self.state.load(Ordering::Relaxed) != LIVE {
            return;
        }
        if let Some(Entry::Waiter(w)) = g.entries.get_mut(key) {
            w.clone_from(waker);
        }
    }

    /// Removes entry `key` (no-op once done: the registry was emptied by the cancellation).
    pub(crate) fn unregister(&self, key: usize) -> Option<Entry> {
        let mut g = lock(&self.inner);
        if self.state.load(Ordering::Relaxed) != LIVE {
            return None;
        }
        let e = g.entries.try_remove(key);
        // Give the memory of a registry that grew under a burst back once it is empty.
        if g.entries.is_empty() && g.entries.capacity() > 64 {
            g.entries = Slab::new();
        }
        e
    }

    pub(crate) fn set_deadline_cause(&self, c: Cause) {
        lock(&self.inner).deadline_cause = Some(c);
    }

    pub(crate) fn custom_deadline_cause(&self) -> Option<Cause> {
        lock(&self.inner).deadline_cause.clone()
    }

    /// Stores the deadline timer, or stops it at once if the node is already done.
    ///
    /// A timer task dropped before it fired (its runtime shut down) hands the deadline to the
    /// fallback thread, possibly before `timer::start` stored the task's handle: a task handle
    /// never replaces a thread one (that task is gone).
    pub(crate) fn set_timer(&self, t: TimerHandle) {
        let mut g = lock(&self.inner);
        if self.state.load(Ordering::Relaxed) == LIVE {
            if !(t.is_task() && g.timer.as_ref().is_some_and(|old| !old.is_task())) {
                g.timer = Some(t);
            }
        } else {
            drop(g);
            t.stop();
        }
    }

    /// Number of registered entries (children, waiters, callbacks); for tests of the bookkeeping.
    pub(crate) fn registered(&self) -> usize {
        lock(&self.inner).entries.len()
    }

    /// If this node's effective deadline has passed but its timer has not fired yet (no runtime
    /// drives it, or it is just late), fire it now, on the node that owns that deadline.
    pub(crate) fn catch_up_deadline(&self) {
        let Some(at) = self.deadline else { return };
        if self.state() != LIVE || Instant::now() < at {
            return;
        }
        // Find the node whose own deadline this is: this one or a cancellable ancestor.
        if self.own_deadline {
            fire_own_deadline(self, at);
            return;
        }
        let mut p = self.parent.clone();
        while let Some(n) = p {
            let c = n.expect_core();
            if c.own_deadline && c.deadline == Some(at) {
                c.catch_up_deadline();
                return;
            }
            p = c.parent.clone();
        }
    }
}

/// Cancels a node that owns a passed deadline, given only a reference to its core. The cascade
/// needs the node's children, not its `Arc`, so this is the same as [`cancel`] minus the `Arc`.
fn fire_own_deadline(core: &CancelCore, at: Instant) {
    let cause = core.deadline_cause(at);
    cancel_core(core, Error::DeadlineExceeded, cause, true);
}

impl Drop for Node {
    /// Unlinks a chain of nodes that dies with this one iteratively: dropping a deep tree
    /// recursively would overflow the stack.
    fn drop(&mut self) {
        let mut next = self.parent.take();
        // The source is an ancestor that `next` still keeps alive: this is never the last `Arc`.
        drop(self.kind.take_source());
        while let Some(parent) = next {
            match arc_into_inner(parent) {
                Some(mut node) => {
                    next = node.parent.take();
                    drop(node.kind.take_source());
                    // `node` drops here with nothing left to unlink.
                }
                None => break,
            }
        }
    }
}

impl Kind {
    fn take_source(&mut self) -> Option<Arc<Node>> {
        match self {
            Kind::Cancel(c) => c.parent.take(),
            Kind::Value(v) => v.source.take(),
            Kind::Todo | Kind::WithoutCancel => None,
        }
    }
}

/// Makes a new cancellable node under `parent` (the context's node) whose nearest cancellable
/// ancestor is `source`, and registers it there. A node made under a done ancestor is born done
/// with the ancestor's error and cause.
pub(crate) fn new_cancel(
    parent: Option<Arc<Node>>,
    source: Option<Arc<Node>>,
    deadline: Option<Instant>,
    own_deadline: bool,
    created: &'static Location<'static>,
) -> Arc<Node> {
    let node = Arc::new(Node {
        parent,
        kind: Kind::Cancel(CancelCore {
            state: AtomicU8::new(LIVE),
            deadline,
            own_deadline,
            created,
            parent: source,
            key: AtomicUsize::new(NO_KEY),
            inner: Mutex::new(Inner::default()),
        }),
    });
    let core = node.expect_core();
    if let Some(src) = &core.parent {
        let sc = src.expect_core();
        let mut g = lock(&sc.inner);
        let st = sc.state.load(Ordering::Relaxed);
        if st == LIVE {
            let key = g.entries.insert(Entry::Child(node.clone()));
            core.key.store(key, Ordering::Relaxed);
        } else {
            let cause = g.cause.clone();
            drop(g);
            // Born done: nobody else can see this node yet, so no one waits on it.
            let mut mine = lock(&core.inner);
            mine.cause = cause;
            core.state.store(st, Ordering::Release);
        }
    }
    node
}

/// Cancels `node` and every cancellable descendant with `err` and `cause`, if it is still live.
/// Returns whether this call did it. Every node of the subtree is marked done before any waiter
/// is woken or callback started.
pub(crate) fn cancel(node: &Node, err: Error, cause: Cause) -> bool {
    cancel_core(node.expect_core(), err, cause, true)
}

fn cancel_core(core: &CancelCore, err: Error, cause: Cause, detach: bool) -> bool {
    let Some(entries) = mark_done(core, err, &cause) else {
        return false;
    };
    if detach {
        detach_from_parent(core);
    }
    // Mark the whole subtree first, then wake: whoever is woken sees every descendant done
    // (except those another thread is cancelling at the same moment, which it finishes itself).
    // Walk without recursion, breadth first: trees may be arbitrarily deep.
    let mut wake: Vec<Entry> = Vec::new();
    let mut queue: Vec<Arc<Node>> = Vec::new();
    sort(entries, &mut queue, &mut wake);
    let mut next = 0;
    while let Some(child) = queue.get(next) {
        next += 1;
        if let Some(entries) = mark_done(child.expect_core(), err, &cause) {
            // Its parent (us, or a node below us) is done and has dropped its registry already.
            sort(entries, &mut queue, &mut wake);
        }
    }
    notify(wake);
    // The children's `Arc`s (possibly the last ones) go here, outside every lock.
    drop(queue);
    true
}

/// Marks `core` done and takes its registry, or `None` if it was done already.
fn mark_done(core: &CancelCore, err: Error, cause: &Cause) -> Option<Slab<Entry>> {
    let mut g = lock(&core.inner);
    if core.state.load(Ordering::Relaxed) != LIVE {
        return None;
    }
    g.cause = Some(cause.clone());
    core.state.store(err_state(err), Ordering::Release);
    let entries = std::mem::take(&mut g.entries);
    let timer = g.timer.take();
    drop(g);
    if let Some(t) = timer {
        t.stop();
    }
    Some(entries)
}

/// Queues children for the walk, and waiters and callbacks for waking, in registration order.
fn sort(entries: Slab<Entry>, queue: &mut Vec<Arc<Node>>, wake: &mut Vec<Entry>) {
    for (_, entry) in entries {
        match entry {
            Entry::Child(c) => queue.push(c),
            other => wake.push(other),
        }
    }
}

/// Wakes waiters and starts callbacks, outside every lock. A panicking waker neither stops the
/// others from being woken nor leaves the tree half cancelled; its panic resumes afterwards.
fn notify(wake: Vec<Entry>) {
    let mut panic = None;
    for entry in wake {
        let run = std::panic::AssertUnwindSafe(move || match entry {
            Entry::Waiter(w) => w.wake(),
            Entry::After(a) => a.fire(),
            Entry::Child(_) => {}
        });
        if let Err(p) = std::panic::catch_unwind(run) {
            panic.get_or_insert(p);
        }
    }
    if let Some(p) = panic {
        std::panic::resume_unwind(p);
    }
}

/// Leaves the nearest cancellable ancestor's registry (no-op if it is done: it dropped us).
fn detach_from_parent(core: &CancelCore) {
    if let Some(p) = &core.parent {
        let pc = p.expect_core();
        let mut g = lock(&pc.inner);
        if pc.state.load(Ordering::Relaxed) == LIVE {
            let key = core.key.load(Ordering::Relaxed);
            if key != NO_KEY {
                let removed = g.entries.try_remove(key);
                if g.entries.is_empty() && g.entries.capacity() > 64 {
                    g.entries = Slab::new();
                }
                drop(g);
                // The child's Arc is dropped outside the lock (it may be the last one).
                drop(removed);
            }
        }
    }
}
