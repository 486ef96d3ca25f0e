//! The tree: nodes, their kinds, and how cancellation travels down it.
//!
//! Only cancellable nodes (`with_cancel`, `with_deadline`, …) take part in cancellation. Each one
//! keeps a registry of what must hear about its cancellation: cancellable children, `done()`
//! waiters and `after_func` callbacks (the first waiter inline in the node, the rest in a slab
//! allocated on first use). A deadline is kept once, by the node that owns it; its descendants
//! only note that one applies and find it by walking up. A child registers with its *nearest cancellable
//! ancestor* only; value and `without_cancel` nodes never register and answer `is_done()` through
//! a pointer to that ancestor. A context with no cancellable ancestor (under `background()`)
//! registers nowhere at all.
//!
//! Locking: a node's mutex guards its registry and cause. No code path ever holds two node locks
//! at once, and no waker, callback or user code runs under a lock, so cancellation cannot
//! deadlock, whatever a waker or callback does (re-entrancy is allowed).

use std::any::{Any, TypeId};
use std::collections::VecDeque;
use std::panic::Location;
use std::task::Waker;

use slab::Slab;

use crate::Instant;
use crate::after::AfterShared;
use crate::error::{Cause, Error, PlainCause, PlainOrigin};
use crate::sync::{Arc, AtomicU8, AtomicU32, Mutex, Ordering, arc_into_inner, lock};
use crate::timer::TimerHandle;

pub(crate) const LIVE: u8 = 0;
pub(crate) const CANCELED: u8 = 1;
pub(crate) const DEADLINE: u8 = 2;

const NO_KEY: u32 = u32::MAX;
/// The registry key of the inline waiter slot ([`Inner::waiter`]); no slab reaches it.
const INLINE_KEY: usize = usize::MAX;

/// `CancelCore::timing`.
const NO_DEADLINE: u8 = 0;
const OWN_DEADLINE: u8 = 1;
const INHERITED_DEADLINE: u8 = 2;

/// `CancelCore::plain`: no cause yet, or one kept in `More::cause`.
const PLAIN_NONE: u8 = 0;
/// `CancelCore::plain`: the node's error with no origin, or called / dropped at `plain_at`.
const PLAIN_BARE: u8 = 1;
const PLAIN_CALLED: u8 = 2;
const PLAIN_DROPPED: u8 = 3;

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
    pub(crate) source: Option<Arc<Node>>,
}

/// What a value node needs to know about its key beyond its `TypeId`.
pub(crate) struct KeyMeta {
    pub(crate) name: fn() -> &'static str,
    /// Encodes the value for a header if its key travels (`ContextKey::HEADER`).
    #[cfg(feature = "propagation")]
    pub(crate) travel: crate::key::TravelFn,
    /// Shows the value in the live tree.
    #[cfg(feature = "live")]
    pub(crate) debug: crate::live::DebugFn,
}

pub(crate) struct CancelCore {
    /// `LIVE`, `CANCELED` or `DEADLINE`; written once, under `inner`'s lock, after the cause.
    pub(crate) state: AtomicU8,
    /// Whether a deadline applies: none (`NO_DEADLINE`), this node's own (`OWN_DEADLINE`, kept in
    /// `More::deadline`, with a timer), or an ancestor's (`INHERITED_DEADLINE`: the nearest
    /// cancellable ancestor has one, its own or inherited). The instant itself is kept once, by
    /// the node that owns it: a node stays small enough for a `done()` waiter to fit inline.
    timing: u8,
    /// This node's slot in the registry of its nearest cancellable ancestor (see
    /// [`Node::source_parent`]); read and written under that ancestor's lock. `u32` keeps the
    /// node small: a registry never holds 4 billion live entries (they would take 300 GB).
    key: AtomicU32,
    /// How the cause is stored (`PLAIN_*`); read and written under `inner`'s lock.
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
    timer: Option<TimerHandle>,
    /// What a deadline hit reports instead of `DeadlineExceeded` (`with_deadline_cause`).
    deadline_cause: Option<Cause>,
    /// Where a node with its own deadline was made, for the cause its deadline reports.
    created: Option<&'static Location<'static>>,
    /// The node's own deadline (`OWN_DEADLINE`).
    deadline: Option<Instant>,
}

impl Inner {
    fn more(&mut self) -> &mut More {
        self.more.get_or_insert_with(Box::default)
    }

    fn entries_len(&self) -> usize {
        usize::from(self.waiter.is_some()) + self.more.as_ref().map_or(0, |m| m.entries.len())
    }

    /// Registers `e`: a waiter in the inline slot if it is free, anything else in the registry.
    fn insert(&mut self, e: Entry) -> usize {
        match e {
            Entry::Waiter(w) if self.waiter.is_none() => {
                self.waiter = Some(w);
                INLINE_KEY
            }
            e => self.more().entries.insert(e),
        }
    }

    /// Removes entry `key`; gives the memory of a registry that grew under a burst back once
    /// it is empty.
    fn remove(&mut self, key: usize) -> Option<Entry> {
        if key == INLINE_KEY {
            return self.waiter.take().map(Entry::Waiter);
        }
        let m = self.more.as_mut()?;
        let e = m.entries.try_remove(key);
        if m.entries.is_empty() && m.entries.capacity() > 64 {
            if m.cause.is_none()
                && m.timer.is_none()
                && m.deadline_cause.is_none()
                && m.created.is_none()
                && m.deadline.is_none()
            {
                self.more = None;
            } else {
                m.entries = Registry::Empty;
            }
        }
        e
    }
}

/// A slab of entries that keeps a lone entry inline: most nodes have at most one waiter or
/// child, which then needs no slab of its own (no allocation, nothing to free at the walk).
/// Keys are the slab's; the lone entry's key is 0, as it would be in a slab.
#[derive(Default)]
enum Registry {
    #[default]
    Empty,
    One(Entry),
    Many(Slab<Entry>),
}

impl Registry {
    fn insert(&mut self, e: Entry) -> usize {
        if let Registry::Many(slab) = self {
            return slab.insert(e);
        }
        match std::mem::take(self) {
            Registry::Empty => {
                *self = Registry::One(e);
                0
            }
            Registry::One(first) => {
                let mut slab = Slab::with_capacity(4);
                slab.insert(first);
                let key = slab.insert(e);
                *self = Registry::Many(slab);
                key
            }
            Registry::Many(mut slab) => {
                let key = slab.insert(e);
                *self = Registry::Many(slab);
                key
            }
        }
    }

    fn get_mut(&mut self, key: usize) -> Option<&mut Entry> {
        match self {
            Registry::One(e) if key == 0 => Some(e),
            Registry::Many(slab) => slab.get_mut(key),
            _ => None,
        }
    }

    fn try_remove(&mut self, key: usize) -> Option<Entry> {
        match self {
            Registry::One(_) if key == 0 => match std::mem::take(self) {
                Registry::One(e) => Some(e),
                _ => None,
            },
            Registry::Many(slab) => slab.try_remove(key),
            _ => None,
        }
    }

    fn len(&self) -> usize {
        match self {
            Registry::Empty => 0,
            Registry::One(_) => 1,
            Registry::Many(slab) => slab.len(),
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether any entry is a cancellable child.
    fn has_children(&self) -> bool {
        match self {
            Registry::Empty => false,
            Registry::One(e) => matches!(e, Entry::Child(_)),
            Registry::Many(slab) => slab.iter().any(|(_, e)| matches!(e, Entry::Child(_))),
        }
    }

    fn capacity(&self) -> usize {
        match self {
            Registry::Many(slab) => slab.capacity(),
            _ => 0,
        }
    }

    /// Every entry, in registration order (key order, for a slab that never reused a key).
    fn for_each(self, mut f: impl FnMut(Entry)) {
        match self {
            Registry::Empty => {}
            Registry::One(e) => f(e),
            Registry::Many(slab) => slab.into_iter().for_each(|(_, e)| f(e)),
        }
    }
}

pub(crate) enum Entry {
    Child(Arc<Node>),
    Waiter(Waker),
    After(Arc<AfterShared>),
}

/// The nearest cancellable node at or above `node`: itself, or the one a value node points at
/// (`None` under `background()`, `todo()` or `without_cancel()`). What a context's `is_done()`
/// reads, and where a child made under it registers.
#[inline]
pub(crate) fn source_of(node: &Arc<Node>) -> Option<&Arc<Node>> {
    match &node.kind {
        Kind::Cancel(_) => Some(node),
        Kind::Value(v) => v.source.as_ref(),
        Kind::Todo | Kind::WithoutCancel => None,
    }
}

impl Node {
    /// The nearest cancellable strict ancestor: the node whose cancellation reaches this one
    /// and, for a cancellable node, the one holding it in its registry.
    #[inline]
    pub(crate) fn source_parent(&self) -> Option<&Arc<Node>> {
        source_of(self.parent.as_ref()?)
    }

    #[inline]
    pub(crate) fn core(&self) -> Option<&CancelCore> {
        match &self.kind {
            Kind::Cancel(c) => Some(c),
            _ => None,
        }
    }

    #[inline]
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
        let g = lock(&self.inner);
        self.load_cause(&g)
    }

    /// Stores the cause of this node's cancellation with `err` (under its lock).
    fn store_cause(&self, g: &mut Inner, err: Error, cause: &Cause) {
        match cause.to_plain() {
            Some(p) if p.error == err => {
                let (kind, at) = match p.origin {
                    PlainOrigin::None => (PLAIN_BARE, None),
                    PlainOrigin::Called(l) => (PLAIN_CALLED, Some(l)),
                    PlainOrigin::Dropped(l) => (PLAIN_DROPPED, Some(l)),
                };
                g.plain_at = at;
                self.plain.store(kind, Ordering::Relaxed);
            }
            _ => g.more().cause = Some(cause.clone()),
        }
    }

    /// The stored cause (under this node's lock).
    fn load_cause(&self, g: &Inner) -> Option<Cause> {
        let origin = match (self.plain.load(Ordering::Relaxed), g.plain_at) {
            (PLAIN_NONE, _) => return g.more.as_ref()?.cause.clone(),
            (PLAIN_CALLED, Some(l)) => PlainOrigin::Called(l),
            (PLAIN_DROPPED, Some(l)) => PlainOrigin::Dropped(l),
            _ => PlainOrigin::None,
        };
        let error = state_err(self.state.load(Ordering::Relaxed))?;
        Some(Cause::from(PlainCause { error, origin }))
    }

    /// Registers `entry`; gives it back when the node is already done.
    pub(crate) fn register(&self, entry: Entry) -> Result<usize, Entry> {
        let mut g = lock(&self.inner);
        if self.state.load(Ordering::Relaxed) != LIVE {
            return Err(entry);
        }
        Ok(g.insert(entry))
    }

    /// Replaces the waker of waiter `key` (no-op once done).
    pub(crate) fn update_waiter(&self, key: usize, waker: &Waker) {
        let mut g = lock(&self.inner);
        if self.state.load(Ordering::Relaxed) != LIVE {
            return;
        }
        let slot = match key {
            INLINE_KEY => g.waiter.as_mut(),
            _ => match g.more.as_mut().and_then(|m| m.entries.get_mut(key)) {
                Some(Entry::Waiter(w)) => Some(w),
                _ => None,
            },
        };
        if let Some(w) = slot {
            w.clone_from(waker);
        }
    }

    /// Removes entry `key` (no-op once done: the registry was emptied by the cancellation).
    pub(crate) fn unregister(&self, key: usize) -> Option<Entry> {
        // Once done, never live again: no need for the lock (a woken waiter's common case).
        if self.state() != LIVE {
            return None;
        }
        let mut g = lock(&self.inner);
        if self.state.load(Ordering::Relaxed) != LIVE {
            return None;
        }
        g.remove(key)
    }

    pub(crate) fn set_deadline_cause(&self, c: Cause) {
        lock(&self.inner).more().deadline_cause = Some(c);
    }

    pub(crate) fn custom_deadline_cause(&self) -> Option<Cause> {
        lock(&self.inner)
            .more
            .as_ref()
            .and_then(|m| m.deadline_cause.clone())
    }

    /// Stores the deadline timer, or stops it at once if the node is already done.
    ///
    /// A timer task dropped before it fired (its runtime shut down) hands the deadline to the
    /// fallback thread, possibly before `timer::start` stored the task's handle: a task handle
    /// never replaces a thread one (that task is gone).
    pub(crate) fn set_timer(&self, t: TimerHandle) {
        let mut g = lock(&self.inner);
        if self.state.load(Ordering::Relaxed) == LIVE {
            let more = g.more();
            if !(t.is_task() && more.timer.as_ref().is_some_and(|old| !old.is_task())) {
                more.timer = Some(t);
            }
        } else {
            drop(g);
            t.stop();
        }
    }

    /// Adds this node's live cancellable children to `out` (for the live tree; the lock is held
    /// only while their pointers are copied).
    #[cfg(feature = "live")]
    pub(crate) fn live_children(&self, out: &mut Vec<Arc<Node>>) {
        let g = lock(&self.inner);
        if self.state.load(Ordering::Relaxed) != LIVE {
            return;
        }
        match g.more.as_deref().map(|m| &m.entries) {
            Some(Registry::One(Entry::Child(c))) => out.push(c.clone()),
            Some(Registry::Many(slab)) => out.extend(slab.iter().filter_map(|(_, e)| match e {
                Entry::Child(c) => Some(c.clone()),
                _ => None,
            })),
            _ => {}
        }
    }

    /// Number of registered entries (children, waiters, callbacks); for tests of the bookkeeping.
    pub(crate) fn registered(&self) -> usize {
        lock(&self.inner).entries_len()
    }

    /// Where this node was made, if it has its own deadline.
    pub(crate) fn created(&self) -> Option<&'static Location<'static>> {
        lock(&self.inner).more.as_ref().and_then(|m| m.created)
    }

    /// Whether this node has a deadline of its own (it runs a timer).
    #[inline]
    pub(crate) fn has_own_deadline(&self) -> bool {
        self.timing == OWN_DEADLINE
    }

    /// Whether any deadline applies to this node: its own or an ancestor's. One load.
    #[inline]
    pub(crate) fn under_deadline(&self) -> bool {
        self.timing != NO_DEADLINE
    }

    /// This node's own deadline, if it has one.
    pub(crate) fn own_deadline(&self) -> Option<Instant> {
        if !self.has_own_deadline() {
            return None;
        }
        lock(&self.inner).more.as_ref().and_then(|m| m.deadline)
    }
}

impl Node {
    /// The node whose own deadline applies to this cancellable node: itself or its nearest
    /// cancellable ancestor with a deadline. An own deadline is only ever set when it comes
    /// before the inherited one, so the nearest is the earliest.
    fn deadline_owner(&self) -> Option<&Node> {
        let mut n = self;
        loop {
            let c = n.expect_core();
            match c.timing {
                NO_DEADLINE => return None,
                OWN_DEADLINE => return Some(n),
                _ => n = n.source_parent()?,
            }
        }
    }

    /// The effective deadline of this cancellable node: its own or the nearest earlier one of
    /// its ancestors. Without a deadline, one load.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline_owner()?.expect_core().own_deadline()
    }

    /// If this node's effective deadline has passed but its timer has not fired yet (no runtime
    /// drives it, or it is just late), fire it now, on the node that owns that deadline.
    #[inline]
    pub(crate) fn catch_up_deadline(&self) {
        if self.expect_core().under_deadline() {
            self.catch_up_owned_deadline();
        }
    }

    #[cold]
    fn catch_up_owned_deadline(&self) {
        if self.expect_core().state() != LIVE {
            return;
        }
        let Some(owner) = self.deadline_owner() else {
            return;
        };
        let c = owner.expect_core();
        let Some(at) = c.own_deadline() else { return };
        if Instant::now() >= at {
            let cause = c.deadline_cause(at);
            cancel(owner, Error::DeadlineExceeded, cause);
        }
    }
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
            Kind::Cancel(_) => None,
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
    own_deadline: Option<Instant>,
    created: &'static Location<'static>,
) -> Arc<Node> {
    let timing = match (own_deadline, parent.as_ref().and_then(source_of)) {
        (Some(_), _) => OWN_DEADLINE,
        (None, Some(src)) if src.expect_core().under_deadline() => INHERITED_DEADLINE,
        (None, _) => NO_DEADLINE,
    };
    let node = Arc::new(Node {
        parent,
        kind: Kind::Cancel(CancelCore {
            state: AtomicU8::new(LIVE),
            timing,
            key: AtomicU32::new(NO_KEY),
            plain: AtomicU8::new(PLAIN_NONE),
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
    });
    let core = node.expect_core();
    if let Some(src) = node.source_parent() {
        let sc = src.expect_core();
        let mut g = lock(&sc.inner);
        let st = sc.state.load(Ordering::Relaxed);
        if st == LIVE {
            let key = g.insert(Entry::Child(node.clone()));
            core.key
                .store(u32::try_from(key).unwrap_or(NO_KEY), Ordering::Relaxed);
        } else {
            let cause = sc.load_cause(&g);
            drop(g);
            // Born done: nobody else can see this node yet, so no one waits on it.
            let mut mine = lock(&core.inner);
            if let (Some(c), Some(err)) = (&cause, state_err(st)) {
                core.store_cause(&mut mine, err, c);
            }
            core.state.store(st, Ordering::Release);
        }
    }
    node
}

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
pub(crate) fn cancel(node: &Node, err: Error, cause: Cause) -> bool {
    let Some(taken) = mark_done(node.expect_core(), err, &cause) else {
        return false;
    };
    detach_from_parent(node);
    if taken.is_empty() {
        // Nothing below and nobody waiting: the common case of a handle dropped after use.
        return true;
    }
    let mut walk = Walk {
        err,
        cause: &cause,
        pending: VecDeque::new(),
        later: Vec::new(),
        panic: None,
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
    /// The first panic of a waker; resumed once the walk is over.
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

    fn child(&mut self, child: Arc<Node>) {
        // Its parent (the node being visited) is done and has dropped its registry already.
        if let Some(taken) = mark_done(child.expect_core(), self.err, self.cause) {
            if taken.entries.has_children() {
                self.pending.push_back(taken);
            } else {
                // Nothing below it to wait for.
                taken.notify_all(&mut self.panic);
            }
        }
        // Outside every lock. The child's owners (its contexts, handle, waiters' tasks) usually
        // still hold it, so this is a decrement: freeing it is left to them.
        drop(child);
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
fn mark_done(core: &CancelCore, err: Error, cause: &Cause) -> Option<Taken> {
    // Once done, never live again: a handle dropped after its node was cancelled takes no lock.
    if core.state() != LIVE {
        return None;
    }
    let mut g = lock(&core.inner);
    if core.state.load(Ordering::Relaxed) != LIVE {
        return None;
    }
    core.store_cause(&mut g, err, cause);
    core.state.store(err_state(err), Ordering::Release);
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

/// Wakes a waiter or starts a callback, outside every lock. A panicking waker neither stops
/// the others from being woken nor leaves the tree half cancelled: its panic (the first one) is
/// kept in `panic` and resumed once the walk is over.
fn notify(entry: Entry, panic: &mut Option<Box<dyn Any + Send>>) {
    let run = std::panic::AssertUnwindSafe(move || match entry {
        Entry::Waiter(w) => w.wake(),
        Entry::After(a) => a.fire(),
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
/// the caller's only the parent's registry may hold one, which never hands out clones: a
/// cancelling parent takes it to mark the node (then this sees it done, or still held, and
/// returns `false`).
pub(crate) fn release_unobserved(node: &Arc<Node>) -> bool {
    let core = node.expect_core();
    if core.state() != LIVE {
        return false;
    }
    let registered = usize::from(core.key.load(Ordering::Relaxed) != NO_KEY);
    if Arc::strong_count(node) != 1 + registered {
        return false;
    }
    {
        // Callbacks wait in the registry without holding the node.
        let g = lock(&core.inner);
        let timer = g.more.as_ref().is_some_and(|m| m.timer.is_some());
        if core.state.load(Ordering::Relaxed) != LIVE || g.entries_len() != 0 || timer {
            return false;
        }
    }
    if registered == 1 {
        detach_from_parent(node);
    }
    Arc::strong_count(node) == 1
}

/// Leaves the nearest cancellable ancestor's registry (no-op if it is done: it dropped us).
fn detach_from_parent(node: &Node) {
    let core = node.expect_core();
    if let Some(p) = node.source_parent() {
        let pc = p.expect_core();
        let mut g = lock(&pc.inner);
        if pc.state.load(Ordering::Relaxed) == LIVE {
            let key = core.key.load(Ordering::Relaxed);
            if key != NO_KEY {
                let removed = g.remove(key as usize);
                core.key.store(NO_KEY, Ordering::Relaxed);
                drop(g);
                // The child's Arc is dropped outside the lock (it may be the last one).
                drop(removed);
            }
        }
    }
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

    /// The live tree's timestamp and place of creation: 16 bytes more.
    #[test]
    #[cfg(feature = "live")]
    fn a_live_node_is_80_bytes_plus_the_arc_counts() {
        assert_eq!(size_of::<Node>(), 80);
    }
}
