//! [`Context`]: the handle users pass around, its constructors and its readers.

use std::any::{Any, TypeId};
use std::fmt;
use std::panic::Location;
use std::time::Duration;

use crate::after::AfterFunc;
use crate::done::Done;
use crate::early_drop;
use crate::error::{Cause, Error};
use crate::handle::CancelHandle;
use crate::key::ContextKey;
use crate::sync::Arc;
use crate::tree::{self, CancelCore, CancelNode, CancelRef, KeyMeta, Kind, Node, State, ValueSlot};
use crate::{Instant, timer};

/// A request's context: cancellation, a deadline and request-scoped values, as in Go's
/// `context.Context`.
///
/// A `Context` is a cheap, immutable handle (`Clone` is one reference-count increment; the
/// `background()` root is not even that) into a tree. Deriving a child never changes the parent:
/// `with_cancel`, `with_deadline`, `with_timeout`, `with_value` and `without_cancel` each return a
/// new context. Cancelling a context cancels all its descendants at once; a child never cancels
/// its parent.
///
/// `Context` is `Send + Sync + 'static`; pass it by `&Context` (or make it the implicit current
/// context with [`Context::scope`]). Storing it inside long-lived structs is possible but, as in
/// Go, usually a sign the context should be a parameter instead.
///
/// ```
/// use std::time::Duration;
/// use ctxkit::{Context, ContextKey, Error};
///
/// struct RequestId;
/// impl ContextKey for RequestId {
///     type Value = u64;
/// }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let root = Context::background().with_value::<RequestId>(7);
/// let (ctx, _cancel) = root.with_timeout(Duration::from_millis(50));
///
/// let slow = tokio::time::sleep(Duration::from_secs(10));
/// assert_eq!(ctx.run(slow).await, Err(Error::DeadlineExceeded));
/// assert_eq!(ctx.value::<RequestId>(), Some(&7)); // values outlive cancellation
/// assert_eq!(root.err(), None); // the parent is untouched
/// # }
/// ```
#[derive(Default)]
pub struct Context {
    /// `None` is `background()`.
    pub(crate) node: Option<Arc<Node>>,
}

impl Clone for Context {
    #[inline]
    fn clone(&self) -> Self {
        early_drop::used();
        Context {
            node: self.node.clone(),
        }
    }
}

impl Context {
    /// The root of every tree: never cancelled, no deadline, no values. Costs nothing.
    ///
    /// ```
    /// use ctxkit::Context;
    ///
    /// let root = Context::background();
    /// assert!(!root.is_done());
    /// assert_eq!(root.deadline(), None);
    /// assert_eq!(format!("{root:?}"), "Background");
    /// ```
    pub fn background() -> Context {
        Context { node: None }
    }

    /// Like [`Context::background`], but says (in `Debug`) that the right context has yet to be
    /// plumbed through: a placeholder to find and replace later.
    ///
    /// ```
    /// use ctxkit::Context;
    ///
    /// let (ctx, _cancel) = Context::todo().with_cancel();
    /// assert_eq!(format!("{ctx:?}"), "TODO.WithCancel");
    /// ```
    pub fn todo() -> Context {
        Context {
            node: Some(Arc::new(Node {
                parent: None,
                kind: Kind::Todo,
            })),
        }
    }

    /// The nearest cancellable node: this one, or the one a value node points at.
    #[inline]
    pub(crate) fn cancellable(&self) -> Option<CancelRef<'_>> {
        early_drop::used();
        tree::nearest_cancellable(self.node.as_ref()?)
    }

    #[inline]
    pub(crate) fn core(&self) -> Option<&CancelCore> {
        // Tested in order of likelihood: a 4-way `match` compiles to a jump table here.
        early_drop::used();
        let node = self.node.as_deref()?;
        if let Kind::Cancel(c) = &node.kind {
            return Some(c);
        }
        if let Kind::Value(v) = &node.kind {
            return v.cancellable.as_ref().map(|c| c.get().core());
        }
        None
    }

    /// A child that is cancelled when the returned handle is cancelled or dropped, or when this
    /// context is. Keep the handle in a named binding for as long as the child should live
    /// (`let (child, _cancel) = ..`; `_` alone drops it at once: see [`CancelHandle`]).
    ///
    /// ```
    /// use ctxkit::{Context, Error};
    ///
    /// let parent = Context::background();
    /// let (child, cancel) = parent.with_cancel();
    /// cancel.cancel();
    /// assert_eq!(child.err(), Some(Error::Canceled));
    /// assert_eq!(parent.err(), None);
    /// ```
    #[track_caller]
    pub fn with_cancel(&self) -> (Context, CancelHandle) {
        self.child(None, None, Location::caller())
    }

    /// A child that is cancelled with [`Error::DeadlineExceeded`] at `at`, or earlier through its
    /// handle or its parent. If the parent's deadline is earlier, the child keeps the parent's.
    ///
    /// Deadlines fire without anyone polling the context: on the real clock, one timer thread
    /// keeps them all, so they fire with or without a runtime, also one built without timers or
    /// one nobody drives; inside a runtime on tokio's test clock (`tokio::time::pause()`), they
    /// follow that clock. A deadline that has passed already gives a context that is done at once.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ctxkit::{Context, Error, Instant};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let soon = Instant::now() + Duration::from_secs(30);
    /// let (parent, _p) = Context::background().with_deadline(soon);
    /// let (child, _c) = parent.with_deadline(soon + Duration::from_secs(60));
    /// assert_eq!(child.deadline(), Some(soon)); // the parent's earlier deadline wins
    ///
    /// let (late, _l) = Context::background().with_deadline(Instant::now());
    /// assert_eq!(late.err(), Some(Error::DeadlineExceeded));
    /// # }
    /// ```
    #[track_caller]
    pub fn with_deadline(&self, at: Instant) -> (Context, CancelHandle) {
        self.child(Some(at), None, Location::caller())
    }

    /// Like [`Context::with_deadline`], but a deadline hit reports `cause` from
    /// [`Context::cause`] (`err()` still says [`Error::DeadlineExceeded`]). If the parent's
    /// deadline comes first, it is the parent's cause that is reported, as in Go.
    ///
    /// ```
    /// use ctxkit::{Context, Error, Instant};
    ///
    /// let at = Instant::now();
    /// let (ctx, _cancel) =
    ///     Context::background().with_deadline_cause(at, std::io::Error::other("slow backend"));
    /// assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
    /// assert_eq!(ctx.cause().unwrap().to_string(), "slow backend");
    /// ```
    #[track_caller]
    pub fn with_deadline_cause(
        &self,
        at: Instant,
        cause: impl Into<Cause>,
    ) -> (Context, CancelHandle) {
        self.child(Some(at), Some(cause.into()), Location::caller())
    }

    /// `with_deadline(now + after)`. A zero timeout gives a context that is done at once; a
    /// timeout too large to represent (such as `Duration::MAX`) means no deadline of its own
    /// (the context is then like [`Context::with_cancel`]).
    ///
    /// Bind the handle to a name (`_cancel`, not `_`): `let (ctx, _) = ..` drops it at once,
    /// cancelling `ctx` (debug builds report it; see [`CancelHandle`]'s "Bind it to a name").
    ///
    /// ```
    /// use std::time::Duration;
    /// use ctxkit::{Context, Error};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let (ctx, _cancel) = Context::background().with_timeout(Duration::from_secs(1));
    /// ctx.done().await; // resolves after one (paused-clock) second
    /// assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
    /// # }
    /// ```
    #[track_caller]
    pub fn with_timeout(&self, after: Duration) -> (Context, CancelHandle) {
        self.child(Instant::now().checked_add(after), None, Location::caller())
    }

    /// `with_deadline_cause(now + after, cause)`; the same rules as [`Context::with_timeout`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use ctxkit::{Context, Error};
    ///
    /// let (ctx, _cancel) =
    ///     Context::background().with_timeout_cause(Duration::ZERO, std::io::Error::other("no budget"));
    /// assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
    /// assert_eq!(ctx.cause().unwrap().to_string(), "no budget");
    /// ```
    #[track_caller]
    pub fn with_timeout_cause(
        &self,
        after: Duration,
        cause: impl Into<Cause>,
    ) -> (Context, CancelHandle) {
        self.child(
            Instant::now().checked_add(after),
            Some(cause.into()),
            Location::caller(),
        )
    }

    /// A cancellable child with its handle: the constructor every `with_*` goes through. `at`
    /// is the deadline asked for (`None`: none of its own); a parent's earlier deadline wins.
    fn child(
        &self,
        at: Option<Instant>,
        cause: Option<Cause>,
        here: &'static Location<'static>,
    ) -> (Context, CancelHandle) {
        // A deadline after the parent's changes nothing: the parent's will fire first.
        let own = at.filter(|at| self.deadline().is_none_or(|parent_at| *at < parent_at));
        let node = self.cancel_child(own, here);
        if let Some(at) = own {
            let me = node.get();
            if let Some(c) = cause {
                me.set_deadline_cause(c);
            }
            if !me.is_done() {
                if at <= Instant::now() {
                    let cause = me.deadline_cause(at);
                    tree::cancel(me, Error::DeadlineExceeded, cause);
                } else {
                    timer::start(&node, at);
                }
            }
        }
        (
            self.wrap(node.node().clone()),
            CancelHandle::new(node, here),
        )
    }

    /// A cancellable child; `own_deadline` is `Some` only when it comes before the inherited one.
    fn cancel_child(
        &self,
        own_deadline: Option<Instant>,
        here: &'static Location<'static>,
    ) -> CancelNode {
        tree::new_cancel(self.node.clone(), own_deadline, here)
    }

    fn wrap(&self, node: Arc<Node>) -> Context {
        Context { node: Some(node) }
    }

    /// A child carrying `value` under key `K`. Lookups from the child and its descendants find it
    /// unless a nearer `K` shadows it; keys of different types never collide.
    ///
    /// ```
    /// use ctxkit::{Context, ContextKey};
    ///
    /// struct Tenant;
    /// impl ContextKey for Tenant {
    ///     type Value = &'static str;
    /// }
    ///
    /// let a = Context::background().with_value::<Tenant>("acme");
    /// let b = a.with_value::<Tenant>("globex");
    /// assert_eq!(a.value::<Tenant>(), Some(&"acme"));
    /// assert_eq!(b.value::<Tenant>(), Some(&"globex"));
    /// ```
    pub fn with_value<K: ContextKey>(&self, value: K::Value) -> Context {
        early_drop::used();
        self.wrap(Arc::new(Node {
            parent: self.node.clone(),
            kind: Kind::Value(ValueSlot {
                key: TypeId::of::<K>(),
                meta: const {
                    &KeyMeta {
                        name: std::any::type_name::<K>,
                        needs_drop: std::mem::needs_drop::<K::Value>(),
                        #[cfg(feature = "propagation")]
                        travel: crate::key::travel::<K>,
                        #[cfg(feature = "live")]
                        debug: crate::live::debug_of::<K>,
                    }
                },
                value: Box::new(value),
                cancellable: self.cancellable().map(CancelRef::to_owned),
            }),
        }))
    }

    /// A child that keeps this context's values but is never cancelled and has no deadline (Go's
    /// `WithoutCancel`): for work that must outlive the request, such as an audit write.
    ///
    /// ```
    /// use ctxkit::{Context, ContextKey};
    ///
    /// struct RequestId;
    /// impl ContextKey for RequestId {
    ///     type Value = u64;
    /// }
    ///
    /// let (request, cancel) = Context::background().with_value::<RequestId>(9).with_cancel();
    /// let audit = request.without_cancel();
    /// cancel.cancel();
    /// assert!(request.is_done());
    /// assert!(!audit.is_done());
    /// assert_eq!(audit.value::<RequestId>(), Some(&9));
    /// ```
    pub fn without_cancel(&self) -> Context {
        early_drop::used();
        self.wrap(Arc::new(Node {
            parent: self.node.clone(),
            kind: Kind::WithoutCancel,
        }))
    }

    /// Runs `f` once, on its own task (or, where no runtime is being driven, on a pool of at most
    /// 16 threads shared by every callback), after this context is done; at once if it is done
    /// already. Cancelling never waits for `f`, and a panic in `f` stays on its task or thread.
    /// Up to 16 callbacks that block can run at once outside a driven runtime; more wait for one
    /// of them to return. On a context that can never be cancelled `f` never runs (and
    /// the first [`AfterFunc::stop`] returns `true`).
    ///
    /// ```
    /// use std::sync::mpsc;
    /// use ctxkit::Context;
    ///
    /// let (ctx, cancel) = Context::background().with_cancel();
    /// let (tx, rx) = mpsc::channel();
    /// let _after = ctx.after_func(move || tx.send("cleaned up").unwrap());
    /// cancel.cancel();
    /// assert_eq!(rx.recv().unwrap(), "cleaned up");
    /// ```
    pub fn after_func(&self, f: impl FnOnce() + Send + 'static) -> AfterFunc {
        AfterFunc::new(self.cancellable(), Box::new(f))
    }

    /// A future that resolves once this context is done. It is `'static` (it holds its own
    /// reference to the tree), `Unpin`, and allocation-free: it registers its waker only while
    /// pending and leaves the registry when dropped. On a context that can never be cancelled it
    /// never resolves.
    pub fn done(&self) -> Done {
        Done::new(self.cancellable().map(CancelRef::to_owned))
    }

    /// Whether this context is done. One atomic load.
    ///
    /// ```
    /// use ctxkit::Context;
    ///
    /// let (ctx, cancel) = Context::background().with_cancel();
    /// assert!(!ctx.is_done());
    /// cancel.cancel();
    /// assert!(ctx.is_done());
    /// ```
    #[inline]
    pub fn is_done(&self) -> bool {
        match self.core() {
            Some(c) => c.is_done(),
            None => false,
        }
    }

    /// `None` while live; once done, why: [`Error::Canceled`] or [`Error::DeadlineExceeded`],
    /// fixed forever. `err().is_some()` implies `is_done()`.
    ///
    /// A deadline that has passed is reported even if its timer has not fired yet (for instance
    /// outside a runtime): reading it fires it.
    ///
    /// ```
    /// use ctxkit::{Context, Error};
    ///
    /// let (ctx, cancel) = Context::background().with_cancel();
    /// assert_eq!(ctx.err(), None);
    /// drop(cancel);
    /// assert_eq!(ctx.err(), Some(Error::Canceled));
    /// ```
    pub fn err(&self) -> Option<Error> {
        let node = self.cancellable()?;
        let st = node.state();
        if st == State::Live {
            node.catch_up_deadline();
            return node.state().err();
        }
        st.err()
    }

    /// The cause of the cancellation: the cause given to [`CancelHandle::cancel_with`] or to a `_cause`
    /// constructor, else the [`Error`] itself; inherited from the ancestor whose cancellation
    /// reached this context first. `None` while live. Its `Debug` names where the cancellation
    /// came from.
    ///
    /// ```
    /// use ctxkit::{Context, Error};
    ///
    /// let (parent, cancel) = Context::background().with_cancel();
    /// let (child, _cancel_child) = parent.with_cancel();
    /// cancel.cancel();
    /// let cause = child.cause().unwrap();
    /// assert_eq!(cause.downcast_ref::<Error>(), Some(&Error::Canceled));
    /// assert!(format!("{cause:?}").contains("cancel() called at"));
    /// ```
    pub fn cause(&self) -> Option<Cause> {
        self.err()?;
        self.core()?.cause()
    }

    /// The time at which this context will be cancelled by a deadline: its own or the nearest
    /// earlier one of its ancestors. `None` without a deadline.
    pub fn deadline(&self) -> Option<Instant> {
        self.cancellable()?.deadline()
    }

    /// The nearest value stored under key `K`, walking towards the root (see
    /// [`Context::with_value`]).
    #[inline]
    pub fn value<K: ContextKey>(&self) -> Option<&K::Value> {
        let want = TypeId::of::<K>();
        early_drop::used();
        let mut cur = self.node.as_deref();
        while let Some(n) = cur {
            if let Kind::Value(v) = &n.kind
                && v.key == want
            {
                let any: &dyn Any = &*v.value;
                return any.downcast_ref::<K::Value>();
            }
            cur = n.parent.as_deref();
        }
        None
    }

    /// Whether `self` and `other` are the same node of the tree (not: equal contents).
    ///
    /// ```
    /// use ctxkit::Context;
    ///
    /// let (a, _cancel) = Context::background().with_cancel();
    /// assert!(a.ptr_eq(&a.clone()));
    /// assert!(!a.ptr_eq(&Context::background()));
    /// ```
    pub fn ptr_eq(&self, other: &Context) -> bool {
        match (&self.node, &other.node) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// How many children, waiters and callbacks this context's cancellation would reach directly
    /// (0 for a context that cannot be cancelled): [`crate::test_hooks::registered`].
    pub(crate) fn registered(&self) -> usize {
        self.core().map_or(0, |c| c.registered())
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut chain: Vec<&Node> = Vec::new();
        let mut cur = self.node.as_deref();
        while let Some(n) = cur {
            chain.push(n);
            cur = n.parent.as_deref();
        }
        match chain.last().map(|n| &n.kind) {
            Some(Kind::Todo) => {
                chain.pop();
                f.write_str("TODO")?
            }
            _ => f.write_str("Background")?,
        }
        for n in chain.iter().rev() {
            match &n.kind {
                Kind::Todo => f.write_str(".TODO")?,
                Kind::WithoutCancel => f.write_str(".WithoutCancel")?,
                Kind::Value(v) => write!(f, ".WithValue({})", short_type_name((v.meta.name)()))?,
                Kind::Cancel(c) if c.has_own_deadline() => {
                    let at = c.own_deadline().expect("own deadline");
                    let now = Instant::now();
                    // An `Instant` has no readable form of its own: say how far away it is.
                    if at > now {
                        write!(f, ".WithDeadline(in {:?})", at - now)?
                    } else {
                        write!(f, ".WithDeadline({:?} ago)", now - at)?
                    }
                }
                Kind::Cancel(_) => f.write_str(".WithCancel")?,
            }
        }
        if let Some(cause) = self.core().and_then(|c| c.cause()) {
            let err = self.err().expect("done");
            write!(f, " [{err}")?;
            if let Some(o) = cause.origin() {
                write!(f, ": {o}")?;
            }
            f.write_str("]")?;
        }
        Ok(())
    }
}

/// `my_crate::keys::RequestId` -> `RequestId`; `a::B<c::D>` -> `B<D>`.
pub(crate) fn short_type_name(full: &str) -> String {
    let mut out = String::with_capacity(full.len());
    let mut word = String::new();
    for ch in full.chars() {
        if ch.is_alphanumeric() || ch == '_' || ch == ':' {
            word.push(ch);
        } else {
            out.push_str(word.rsplit("::").next().unwrap_or(&word));
            word.clear();
            out.push(ch);
        }
    }
    out.push_str(word.rsplit("::").next().unwrap_or(&word));
    out
}

#[cfg(test)]
mod tests {
    use super::short_type_name;

    #[test]
    fn short_names_drop_paths() {
        assert_eq!(short_type_name("a::b::RequestId"), "RequestId");
        assert_eq!(short_type_name("a::Wrap<b::c::D, u8>"), "Wrap<D, u8>");
    }
}
