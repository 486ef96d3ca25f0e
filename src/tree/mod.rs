//! The context tree: its nodes and the operations on them. Only this module touches a node's
//! lock; everything above it (contexts, handles, `done()`, `after_func`, timers) goes through
//! the functions it exports.
//!
//! Only cancellable nodes (`with_cancel`, `with_deadline`, …) take part in cancellation. Each one
//! keeps a registry ([`registry`]) of what must hear about its cancellation: cancellable
//! children, `done()` waiters and `after_func` callbacks. A child registers with its *nearest
//! cancellable ancestor* only. A value node keeps a pointer to that ancestor (a [`CancelNode`]),
//! through which it answers `is_done()`; `todo()` and `without_cancel` nodes keep none: nothing
//! cancels them. A
//! context with no cancellable ancestor (under `background()`) registers nowhere at all.
//! A deadline ([`deadline`]) is kept once, by the node that owns it; its descendants only note
//! that one applies and find it by walking up. Cancelling ([`walk`]) marks a node done
//! ([`state`]) and walks its subtree.
//!
//! # Invariants
//!
//! 1. A cancellable node's state goes from live to done (canceled or deadline exceeded) once
//!    and never back. It is written under the node's lock, after the cause is stored there, so
//!    whoever sees it done (one atomic load) finds the cause under the lock.
//! 2. While a cancellable node and its nearest cancellable strict ancestor are both live, the
//!    node is in that ancestor's registry, under the key it keeps in `CancelCore::key`, and it
//!    leaves the registry when it is cancelled or its handle is dropped. The key is read and
//!    written only under the ancestor's lock.
//! 3. A node made under a done ancestor is born done, with the ancestor's error and cause: no
//!    child is missed by a cancellation that is under way.
//! 4. Once a node is done its registry is empty and stays so: the cancellation took it
//!    whole, `register` refuses new entries, and `unregister` and `update_waiter` do nothing.
//!    So each entry is taken exactly once, by one cancellation (each waiter woken once, each
//!    callback started once).
//! 5. Whether a deadline applies (`CancelCore::timing`) is fixed at a node's birth. An own
//!    deadline is set only when it comes before the inherited one, so the nearest cancellable
//!    ancestor with a deadline of its own has the effective one. Its timer is stopped once the
//!    node is done (by the cancellation, or at once when it is stored on a done node).
//! 6. A node holds its parent (and a value node its nearest cancellable ancestor), never a
//!    child: the only references downward are registry entries, which a cancellation or a
//!    leaving child drops. The tree holds no cycle, and nodes are freed without recursion, also
//!    when values hold contexts ([`dropping`]).
//!
//! # Deadlock safety
//!
//! The only locks are the nodes' (`CancelCore::inner`). No code path holds two of them at once:
//! a child registers under its ancestor's lock only; a child born under a done ancestor reads the
//! cause under the ancestor's lock, releases it, then stores it under its own; the walk marks one
//! node at a time and takes its registry out of the lock before visiting it; a node leaves its
//! ancestor's registry after its own lock is released. So no two threads can wait for each
//! other's lock.
//!
//! No foreign code runs under a lock either: wakers are woken, callbacks started, timers
//! stopped and `Arc`s (so the values and nodes they may free) dropped after the lock is
//! released. Whatever a waker, callback or value's `Drop` does (cancel, derive, wait, drop,
//! including the very nodes being cancelled) cannot deadlock.

use std::any::{Any, TypeId};
use std::panic::Location;
use std::task::Waker;

use crate::Instant;
use crate::error::Cause;
use crate::sync::{Arc, AtomicU8, AtomicU32, Mutex, Ordering, lock};

mod deadline;
mod dropping;
mod linked_token;
mod registry;
mod state;
mod walk;

pub(crate) use registry::{Entry, Notify};
pub(crate) use state::State;
pub(crate) use walk::{cancel, release_unobserved};

use registry::{NO_KEY, Registry};
use state::Plain;

/// One node of a context tree. `background()` has no node at all.
pub(crate) struct Node {
    /// The context this one was derived from (`None`: background).
    pub(crate) parent: Option<Arc<Node>>,
    pub(crate) kind: Kind,
}

pub(crate) enum Kind {
    /// `Context::todo()`.
    Todo,
    /// `with_cancel`, `with_deadline`, `with_timeout`.
    Cancel(CancelCore),
    /// `with_value`.
    Value(ValueSlot),
    /// `without_cancel`.
    WithoutCancel,
}

pub(crate) struct ValueSlot {
    pub(crate) key: TypeId,
    /// The key's name and codec: one static per key type, so a value node stays small.
    pub(crate) meta: &'static KeyMeta,
    pub(crate) value: Box<dyn Any + Send + Sync>,
    /// The nearest cancellable ancestor, which answers `is_done()` etc. for this node.
    pub(crate) cancellable: Option<CancelNode>,
}

/// What a value node needs to know about its key beyond its `TypeId`.
pub(crate) struct KeyMeta {
    pub(crate) name: fn() -> &'static str,
    /// Whether dropping a value of the key does anything (it may then hold contexts: see
    /// [`dropping`]).
    pub(crate) needs_drop: bool,
    /// Encodes the value for a header if its key travels (`ContextKey::HEADER`).
    #[cfg(feature = "propagation")]
    pub(crate) travel: crate::key::TravelFn,
    /// Shows the value in the live tree.
    #[cfg(feature = "live")]
    pub(crate) debug: crate::live::DebugFn,
}

pub(crate) struct CancelCore {
    /// A [`State`]; written once, under `inner`'s lock, after the cause.
    state: AtomicU8,
    /// Whether a deadline applies. The instant itself is kept once, by the node that owns it: a
    /// node stays small enough for a `done()` waiter to fit inline.
    timing: Timing,
    /// This node's slot in the registry of its nearest cancellable ancestor (see
    /// [`CancelRef::parent`]); read and written under that ancestor's lock. `u32` keeps the
    /// node small: a registry never holds 4 billion live entries (they would take 300 GB).
    key: AtomicU32,
    /// How the cause is stored (a [`Plain`]); read and written under `inner`'s lock.
    plain: AtomicU8,
    inner: Mutex<Inner>,
    /// When and where the node was made, for the live tree.
    #[cfg(feature = "live")]
    pub(crate) live: crate::live::Birth,
}

/// What a node's lock guards. Kept small (every node of every kind is as large as the largest
/// kind): a plain cancellation's cause fits inline, everything else that most nodes never need
/// (a registry, a timer, a custom cause) lives in `more`, boxed on first use.
#[derive(Default)]
struct Inner {
    /// With `CancelCore::plain`: the cause, when it is a plain one (`cancel()`, a dropped
    /// handle) of the node's own error.
    plain_at: Option<&'static Location<'static>>,
    /// The first `done()` waiter, kept inline: a node that is waited on usually has one waiter,
    /// which then needs no registry (no allocation when it comes, one cache line less for the
    /// cancellation to touch).
    waiter: Option<Waker>,
    more: Option<Box<More>>,
}

#[derive(Default)]
struct More {
    entries: Registry,
    /// The cause, when it is not a plain one.
    cause: Option<Cause>,
    timer: Option<Box<dyn DeadlineTimer>>,
    /// What a deadline hit reports instead of `DeadlineExceeded` (`with_deadline_cause`).
    deadline_cause: Option<Cause>,
    /// Where a node with its own deadline was made, for the cause its deadline reports.
    created: Option<&'static Location<'static>>,
    /// The node's own deadline ([`Timing::Own`]).
    deadline: Option<Instant>,
    /// The token `Context::cancellation_token` hands out children of (feature `tokio-util`).
    #[cfg(feature = "tokio-util")]
    token: Option<tokio_util::sync::CancellationToken>,
}

impl Inner {
    fn more(&mut self) -> &mut More {
        self.more.get_or_insert_with(Box::default)
    }
}

/// Which deadline applies to a cancellable node; fixed at its birth (invariant 5).
#[repr(u8)]
#[derive(Clone, Copy, PartialEq, Eq)]
enum Timing {
    /// None.
    None,
    /// The node's own, kept in `More::deadline`, with a timer.
    Own,
    /// An ancestor's: the nearest cancellable ancestor has one, its own or inherited.
    Inherited,
}

/// A running deadline timer, kept by the node whose own deadline it fires. The tree stops it
/// (outside every lock) once the node is done, releasing what it holds.
pub(crate) trait DeadlineTimer: Send + Sync {
    /// Whether it is a timer task of a runtime, as opposed to the timer thread's.
    fn is_task(&self) -> bool;
    fn stop(self: Box<Self>);
}

/// A cancellable node, owned. Only a cancellable node can become one ([`new_cancel`],
/// [`CancelRef::to_owned`]), so its [`CancelCore`] is always there.
#[derive(Clone)]
pub(crate) struct CancelNode(Arc<Node>);

/// A cancellable node, borrowed, with its [`CancelCore`] (which it derefs to). Only a
/// cancellable node can become one.
#[derive(Clone, Copy)]
pub(crate) struct CancelRef<'a> {
    node: &'a Arc<Node>,
    core: &'a CancelCore,
}

impl CancelNode {
    #[inline]
    pub(crate) fn get(&self) -> CancelRef<'_> {
        match &self.0.kind {
            Kind::Cancel(core) => CancelRef {
                node: &self.0,
                core,
            },
            _ => unreachable!("a CancelNode is made from a cancellable node only"),
        }
    }

    /// The node, as a context holds it.
    pub(crate) fn node(&self) -> &Arc<Node> {
        &self.0
    }
}

impl<'a> CancelRef<'a> {
    /// `node` if it is cancellable.
    #[cfg(feature = "live")]
    pub(crate) fn of(node: &'a Arc<Node>) -> Option<Self> {
        match &node.kind {
            Kind::Cancel(core) => Some(CancelRef { node, core }),
            _ => None,
        }
    }

    pub(crate) fn to_owned(self) -> CancelNode {
        CancelNode(self.node.clone())
    }

    pub(crate) fn core(self) -> &'a CancelCore {
        self.core
    }

    /// The nearest cancellable strict ancestor: the node whose cancellation reaches this one,
    /// and which holds it in its registry.
    #[inline]
    pub(crate) fn parent(self) -> Option<CancelRef<'a>> {
        nearest_cancellable(self.node.parent.as_ref()?)
    }
}

impl std::ops::Deref for CancelRef<'_> {
    type Target = CancelCore;

    #[inline]
    fn deref(&self) -> &CancelCore {
        self.core
    }
}

/// The nearest cancellable node at or above `node`: itself, or the one a value node points at
/// (`None` under `background()`, `todo()` or `without_cancel()`). What a context's `is_done()`
/// reads, and where a child made under it registers.
#[inline]
pub(crate) fn nearest_cancellable(node: &Arc<Node>) -> Option<CancelRef<'_>> {
    match &node.kind {
        Kind::Cancel(core) => Some(CancelRef { node, core }),
        Kind::Value(v) => v.cancellable.as_ref().map(CancelNode::get),
        Kind::Todo | Kind::WithoutCancel => None,
    }
}

/// Makes a new cancellable node under `parent` (the context's node) and registers it with its
/// nearest cancellable ancestor. A node made under a done ancestor is born done with the
/// ancestor's error and cause (invariant 3).
pub(crate) fn new_cancel(
    parent: Option<Arc<Node>>,
    own_deadline: Option<Instant>,
    created: &'static Location<'static>,
) -> CancelNode {
    let timing = match (own_deadline, parent.as_ref().and_then(nearest_cancellable)) {
        (Some(_), _) => Timing::Own,
        (None, Some(src)) if src.under_deadline() => Timing::Inherited,
        (None, _) => Timing::None,
    };
    let node = CancelNode(Arc::new(Node {
        parent,
        kind: Kind::Cancel(CancelCore {
            state: AtomicU8::new(State::Live as u8),
            timing,
            key: AtomicU32::new(NO_KEY),
            plain: AtomicU8::new(Plain::None as u8),
            inner: Mutex::new(Inner {
                plain_at: None,
                waiter: None,
                // Only a node with its own deadline reports where it was made (and it needs the
                // box for its timer anyway).
                more: own_deadline.map(|at| {
                    Box::new(More {
                        created: Some(created),
                        deadline: Some(at),
                        ..More::default()
                    })
                }),
            }),
            #[cfg(feature = "live")]
            live: crate::live::Birth::now(created),
        }),
    }));
    let me = node.get();
    if let Some(ancestor) = me.parent() {
        let mut g = lock(&ancestor.inner);
        let st = ancestor.state_locked();
        if st == State::Live {
            let key = g.insert(Entry::Child(node.clone()));
            me.key
                .store(u32::try_from(key).unwrap_or(NO_KEY), Ordering::Relaxed);
        } else {
            let cause = ancestor.load_cause(&g);
            drop(g);
            // Born done: nobody else can see this node yet, so no one waits on it.
            let mut mine = lock(&me.inner);
            if let (Some(c), Some(err)) = (&cause, st.err()) {
                me.store_cause(&mut mine, err, c);
            }
            me.set_state(st);
        }
    }
    node
}

#[cfg(all(test, target_pointer_width = "64", not(loom)))]
mod tests {
    use super::*;

    /// A node (with the `Arc`'s two counts: 80 bytes) is as large as Go's `cancelCtx`, and a
    /// `done()` waiter still fits in it.
    #[test]
    #[cfg(not(feature = "live"))]
    fn a_node_is_64_bytes_plus_the_arc_counts() {
        assert_eq!(size_of::<Node>(), 64);
        assert_eq!(size_of::<Inner>(), 32, "the lock guards an inline waiter");
    }

    /// The live tree's timestamp and place of creation: 8 bytes more (the kind's tag lives in
    /// the niche of `CancelCore::timing`).
    #[test]
    #[cfg(feature = "live")]
    fn a_live_node_is_72_bytes_plus_the_arc_counts() {
        assert_eq!(size_of::<Node>(), 72);
    }
}
