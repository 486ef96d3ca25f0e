//! The implicit current context: [`Context::scope`] sets it while a future is polled,
//! [`Context::enter`] and [`Context::sync_scope`] while synchronous code runs; [`Context::run`] and
//! [`spawn`] carry it along.
//!
//! # One slot per thread
//!
//! The current context lives in one thread-local slot. A [`Scoped`] future moves its context into
//! the slot for the length of each poll and takes it back afterwards (as `tokio::task_local!`
//! does); a [`CurrentGuard`] puts a context there until it is dropped. So whatever made a
//! context current most recently on this thread wins, both ways round:
//! - a guard entered inside a scoped future's poll (sync code, `block_in_place`) wins over the
//!   future's context until the guard is dropped;
//! - a scoped future polled while a guard is live (`Handle::block_on` on a thread that entered
//!   a context) sees its own context during its polls.
//!
//! A guard (and `sync_scope`) also records the tokio task it was entered in, if any, and is seen
//! only from that same task (or, entered outside every task, only outside every task). So a
//! current-thread runtime driven by `block_on` inside a guard does not hand the guard's context
//! to unrelated tasks it happens to poll on that thread: they were not spawned under it.
//!
//! Reading the slot is one thread-local access and one reference-count increment, plus one read
//! of tokio's task id when a guard set it.

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::Location;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use pin_project::pin_project;
use tokio::task::JoinHandle;

use crate::done::Registration;
use crate::missing;
use crate::race;
use crate::{Context, Error};

/// Who put the context in the slot, which decides who may see it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// A [`Scoped`] future, for the length of one poll: whatever runs in that poll is part of it.
    Future,
    /// A [`CurrentGuard`] or `sync_scope`, entered in this tokio task (`None`: outside every
    /// task).
    Thread(Option<tokio::task::Id>),
}

struct Slot {
    ctx: Cell<Option<Context>>,
    owner: Cell<Owner>,
    /// How many scopes and guards are entered on this thread: each checks on exit that it is the
    /// innermost one, so that a guard that escaped its region is an error, not a wrong context.
    depth: Cell<usize>,
}

thread_local! {
    static SLOT: Slot = const {
        Slot {
            ctx: Cell::new(None),
            owner: Cell::new(Owner::Future),
            depth: Cell::new(0),
        }
    };
}

/// What an entered scope or guard gives back on exit.
struct Saved {
    ctx: Option<Context>,
    owner: Owner,
    depth: usize,
}

/// Puts `ctx` in this thread's slot; `None` when the thread is being torn down (then nothing is
/// current, and `ctx` is handed back).
fn enter(ctx: Option<Context>, owner: Owner) -> Result<Saved, Option<Context>> {
    let mut ctx = Some(ctx);
    SLOT.try_with(|s| {
        let depth = s.depth.get() + 1;
        s.depth.set(depth);
        Saved {
            ctx: s.ctx.replace(ctx.take().flatten()),
            owner: s.owner.replace(owner),
            depth,
        }
    })
    .map_err(|_| ctx.take().flatten())
}

/// Restores what [`enter`] replaced and returns the context that was current meanwhile.
///
/// # Panics
///
/// When a guard entered after `saved` is still live (a [`CurrentGuard`] was kept beyond the
/// code it was meant for: held across an `.await`, or leaked).
fn exit(saved: Saved) -> Option<Context> {
    SLOT.try_with(|s| {
        let depth = s.depth.get();
        let ours = s.ctx.replace(saved.ctx);
        s.owner.set(saved.owner);
        s.depth.set(saved.depth - 1);
        if depth != saved.depth && !std::thread::panicking() {
            panic!(
                "a ctxkit CurrentGuard outlived the code it was entered for (held across an \
                 `.await`, leaked, or dropped out of order): guards are for synchronous code; \
                 make a context current for a future with `ctx.scope(fut)`"
            );
        }
        ours
    })
    .ok()
    .flatten()
}

/// The context this code sees as current, if any (no report).
#[inline]
pub(crate) fn lookup() -> Option<Context> {
    SLOT.try_with(|s| {
        let ctx = s.ctx.take()?;
        let visible = match s.owner.get() {
            Owner::Future => true,
            Owner::Thread(task) => task == tokio::task::try_id(),
        };
        let out = visible.then(|| ctx.clone());
        s.ctx.set(Some(ctx));
        out
    })
    .ok()
    .flatten()
}

/// The current context, or `background()` with a report naming `at` (and `function`, the
/// `#[cancellable]` fn whose implicit context this is) when there is none. See
/// [`missing`](crate::missing).
#[doc(hidden)]
#[inline]
pub fn current_at(at: &'static Location<'static>, function: Option<&'static str>) -> Context {
    match lookup() {
        Some(ctx) => ctx,
        None => {
            missing::report(at, function);
            Context::background()
        }
    }
}

impl Context {
    /// The implicit context of the running code: the one set by the nearest enclosing
    /// [`Context::scope`], [`Context::enter`] or [`Context::sync_scope`] (or `#[cancellable]`
    /// fn), else [`Context::background`].
    ///
    /// A lookup that finds no context, in a process that has made a context current before, is
    /// reported once per call site (see [`missing`](crate::missing)): the usual reason is a task
    /// or thread started without ctxkit (`tokio::spawn`, `spawn_blocking`, `std::thread::spawn`),
    /// where the context does not follow. Call [`Context::try_current`] where having none is
    /// expected.
    #[track_caller]
    #[inline]
    pub fn current() -> Context {
        current_at(Location::caller(), None)
    }

    /// The implicit context, or `None` outside every scope. Never reported.
    #[inline]
    pub fn try_current() -> Option<Context> {
        lookup()
    }

    /// Makes `self` the current context while `fut` runs (on every poll, on whatever thread).
    /// The returned future owns a clone of `self`: it is `'static` and `Send` whenever `fut` is.
    ///
    /// ```
    /// use ctxkit::{Context, ContextKey};
    ///
    /// struct Tenant;
    /// impl ContextKey for Tenant {
    ///     type Value = &'static str;
    /// }
    ///
    /// async fn handler() -> Option<&'static str> {
    ///     Context::try_current()?.value::<Tenant>().copied()
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let ctx = Context::background().with_value::<Tenant>("acme");
    /// assert_eq!(ctx.scope(handler()).await, Some("acme"));
    /// assert_eq!(handler().await, None);
    /// # }
    /// ```
    pub fn scope<F: Future>(&self, fut: F) -> Scoped<F> {
        missing::note_scope_used();
        Scoped {
            ctx: Some(self.clone()),
            fut: Some(fut),
        }
    }

    /// Makes `self` the current context on this thread until the returned guard is dropped: for
    /// synchronous code that has no future to scope, such as a closure run by
    /// `tokio::task::block_in_place`, rayon or a thread started without ctxkit.
    ///
    /// The guard is seen only from where it was entered: on this thread, and in the same tokio
    /// task (or, entered outside every task, outside every task). It is neither `Send` nor
    /// meant to cross an `.await`: use [`Context::scope`] for a future.
    ///
    /// ```
    /// use ctxkit::{Context, ContextKey};
    ///
    /// struct Tenant;
    /// impl ContextKey for Tenant {
    ///     type Value = &'static str;
    /// }
    ///
    /// let ctx = Context::background().with_value::<Tenant>("acme");
    /// let worker = std::thread::spawn(move || {
    ///     let _current = ctx.enter();
    ///     Context::current().value::<Tenant>().copied()
    /// });
    /// assert_eq!(worker.join().unwrap(), Some("acme"));
    /// ```
    ///
    /// # Panics
    ///
    /// On drop, when a guard entered after this one is still live (guards must be dropped in
    /// reverse order), unless the thread is panicking already.
    pub fn enter(&self) -> CurrentGuard {
        missing::note_scope_used();
        let saved = enter(Some(self.clone()), Owner::Thread(tokio::task::try_id())).ok();
        CurrentGuard {
            saved,
            _not_send: PhantomData,
        }
    }

    /// Makes `self` the current context while `f` runs (synchronous code, this thread): the
    /// closure form of [`Context::enter`].
    ///
    /// ```
    /// use ctxkit::Context;
    ///
    /// let (ctx, _cancel) = Context::background().with_cancel();
    /// let seen = ctx.sync_scope(Context::current);
    /// assert!(seen.ptr_eq(&ctx));
    /// assert!(Context::try_current().is_none());
    /// ```
    pub fn sync_scope<R>(&self, f: impl FnOnce() -> R) -> R {
        let _current = self.enter();
        f()
    }

    /// Runs `fut` scoped to `self` and races it against cancellation: `Err` as soon as this
    /// context is done (dropping `fut` at once), `Ok` with its output otherwise.
    ///
    /// # Fairness
    ///
    /// The cancellation is checked before every poll of `fut` and wins if it is visible then; a
    /// poll of `fut` that completes wins over a cancellation that arrives during it. So when the
    /// output and the cancellation arrive in the same wake-up, the cancellation wins. The same
    /// rule holds for `#[cancellable]` fns, for the tower layers and everywhere else ctxkit races
    /// a future against a context.
    ///
    /// ```
    /// use ctxkit::{Context, Error};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let (ctx, cancel) = Context::background().with_cancel();
    /// assert_eq!(ctx.run(async { 1 + 1 }).await, Ok(2));
    /// cancel.cancel();
    /// assert_eq!(ctx.run(async { 1 + 1 }).await, Err(Error::Canceled));
    /// # }
    /// ```
    pub fn run<F: Future>(&self, fut: F) -> Run<F> {
        Run {
            reg: Registration::new(self.cancellable().map(crate::tree::CancelRef::to_owned)),
            ctx: self.clone(),
            fut: Some(self.scope(fut)),
        }
    }
}

/// Keeps a context current on this thread until dropped: see [`Context::enter`].
#[must_use = "the context is current only until the guard is dropped"]
pub struct CurrentGuard {
    /// `None` when the thread was being torn down and nothing could be entered.
    saved: Option<Saved>,
    /// Current on this thread only.
    _not_send: PhantomData<*const ()>,
}

impl Drop for CurrentGuard {
    fn drop(&mut self) {
        if let Some(saved) = self.saved.take() {
            drop(exit(saved));
        }
    }
}

impl fmt::Debug for CurrentGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CurrentGuard").finish_non_exhaustive()
    }
}

/// The future returned by [`Context::scope`]. Its future is also dropped with the context
/// current, so the drop of a local sees the context it ran under.
#[pin_project(PinnedDrop)]
#[must_use = "futures do nothing unless polled"]
pub struct Scoped<F> {
    /// In the thread's slot during a poll, here between polls.
    ctx: Option<Context>,
    /// `None` once dropped (in `drop`, under the context).
    #[pin]
    fut: Option<F>,
}

#[pin_project::pinned_drop]
impl<F> PinnedDrop for Scoped<F> {
    fn drop(self: Pin<&mut Self>) {
        let this = self.project();
        let mut fut = this.fut;
        if fut.is_some() {
            poll_in(this.ctx, || fut.set(None));
        }
    }
}

/// Gives the context back to its owner when a poll ends, also by a panic.
struct Polling<'a> {
    home: &'a mut Option<Context>,
    saved: Option<Saved>,
}

impl Drop for Polling<'_> {
    fn drop(&mut self) {
        if let Some(saved) = self.saved.take() {
            *self.home = exit(saved);
        }
    }
}

/// Runs `poll` (one poll of a future or stream) with `ctx` current: `ctx` moves into this
/// thread's slot for the call and back afterwards. What [`Scoped`] does on every poll.
#[inline]
pub(crate) fn poll_in<R>(ctx: &mut Option<Context>, poll: impl FnOnce() -> R) -> R {
    let saved = match enter(ctx.take(), Owner::Future) {
        Ok(saved) => Some(saved),
        Err(back) => {
            *ctx = back;
            None
        }
    };
    let _polling = Polling { home: ctx, saved };
    poll()
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<F::Output> {
        let this = self.project();
        let Some(fut) = this.fut.as_pin_mut() else {
            unreachable!("a Scoped future is only emptied by its drop");
        };
        poll_in(this.ctx, || fut.poll(cx))
    }
}

impl<F> fmt::Debug for Scoped<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scoped").finish_non_exhaustive()
    }
}

/// The future returned by [`Context::run`].
#[pin_project]
#[must_use = "futures do nothing unless polled"]
pub struct Run<F: Future> {
    reg: Registration,
    ctx: Context,
    #[pin]
    fut: Option<Scoped<F>>,
}

impl<F: Future> Future for Run<F> {
    type Output = Result<F::Output, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.project();
        race::poll_race(this.reg, this.fut, cx)
    }
}

impl<F: Future> fmt::Debug for Run<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Run")
            .field("ctx", &self.ctx)
            .finish_non_exhaustive()
    }
}

/// `tokio::spawn` that carries the current context into the new task, so it stays current there
/// (and the task's `#[cancellable]` fns are cancelled with it). With no current context, the
/// task has none either (and a lookup there is reported, as it would be here). With the `tracing`
/// feature the current span goes along too.
///
/// ```
/// use ctxkit::{Context, spawn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let (ctx, _cancel) = Context::background().with_cancel();
/// let seen = ctx
///     .scope(async { spawn(async { Context::current() }).await.unwrap() })
///     .await;
/// assert!(seen.ptr_eq(&ctx));
/// # }
/// ```
///
/// # Panics
///
/// Like `tokio::spawn`, outside a tokio runtime.
#[track_caller]
pub fn spawn<F>(fut: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    // The current span goes along too, so what the task logs stays in the caller's span.
    #[cfg(feature = "tracing")]
    let fut = ::tracing::Instrument::in_current_span(fut);
    tokio::spawn(Scoped {
        ctx: Context::try_current(),
        fut: Some(fut),
    })
}
