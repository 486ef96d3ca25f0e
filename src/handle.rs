//! The handle that cancels a context: [`CancelHandle`].

use std::fmt;
use std::panic::Location;

use crate::early_drop;
use crate::error::{Cause, Error, Origin};
use crate::tree::{self, CancelNode};

/// Cancels the context it came with: explicitly with [`CancelHandle::cancel`], or when dropped,
/// so a forgotten cancel can never leak the context (Go's `lostcancel` vet check, enforced by
/// ownership).
///
/// `Send + Sync`; share it with an `Arc` or pass it to the task that decides. Cancelling twice is
/// a no-op: the first cancellation wins.
///
/// The cause's `Debug` names where the cancellation came from: the `file:line` of the `cancel()`
/// call, or, when the handle was dropped, where the handle was *created* (a `Drop` impl cannot
/// know the place of its own call).
///
/// ```
/// use ctxkit::{Context, Error};
///
/// let (ctx, cancel) = Context::background().with_cancel();
/// let worker = ctx.clone(); // handed on, e.g. to a task
/// drop(cancel); // dropping cancels too
/// assert_eq!(worker.err(), Some(Error::Canceled));
/// assert!(format!("{:?}", worker.cause().unwrap()).contains("dropped"));
/// ```
///
/// # Bind it to a name
///
/// `let (ctx, _) = parent.with_timeout(d);` drops the handle at the end of that statement
/// (`_` binds nothing), so `ctx` is cancelled before its first use, and neither rustc nor clippy
/// say so. Write `let (ctx, _cancel) = ..`: a named handle lives to the end of the scope. Debug
/// builds report a handle dropped before anything used its context (read, waited on, derived
/// from, cloned or made current) on its thread, within 50 ms of being made, once per place it
/// was made: a `WARN` event of target `ctxkit::handle` with the `tracing` feature, else a line
/// on standard error (never a panic). Calling [`cancel`](CancelHandle::cancel) says that you
/// mean it and is never reported. Release builds check nothing.
#[must_use = "dropping a CancelHandle cancels its context at once; bind it (`let (ctx, _cancel) = ..`) to keep the context alive"]
pub struct CancelHandle {
    node: CancelNode,
    created: &'static Location<'static>,
}

impl CancelHandle {
    pub(crate) fn new(node: CancelNode, created: &'static Location<'static>) -> Self {
        early_drop::made(&**node.node());
        CancelHandle { node, created }
    }

    /// Cancels the context and all its descendants with [`Error::Canceled`] (no-op if it is
    /// done already). The cause records this call's `file:line`.
    #[track_caller]
    pub fn cancel(&self) {
        cancel_plain(&self.node, Origin::Called(Location::caller()));
    }

    /// Cancels the context and all its descendants with [`Error::Canceled`] and `cause`, which
    /// [`Context::cause`](crate::Context::cause) then reports (Go's `CancelCauseFunc`). No-op if
    /// the context is done already: the first cause wins, and this one is dropped.
    ///
    /// ```
    /// use ctxkit::{Context, Error};
    ///
    /// let (ctx, cancel) = Context::background().with_cancel();
    /// cancel.cancel_with(std::io::Error::other("upstream closed"));
    /// cancel.cancel_with(std::io::Error::other("ignored: the first cause wins"));
    /// assert_eq!(ctx.err(), Some(Error::Canceled));
    /// assert_eq!(ctx.cause().unwrap().to_string(), "upstream closed");
    /// ```
    #[track_caller]
    pub fn cancel_with(&self, cause: impl Into<Cause>) {
        let origin = Origin::Called(Location::caller());
        let node = self.node.get();
        if !node.is_done() {
            tree::cancel(node, Error::Canceled, cause.into().with_origin(origin));
        }
    }

    /// Whether the context is done (by this handle or otherwise).
    pub fn is_done(&self) -> bool {
        self.node.get().is_done()
    }
}

fn cancel_plain(node: &CancelNode, origin: Origin) {
    let node = node.get();
    if !node.is_done() {
        tree::cancel(
            node,
            Error::Canceled,
            Cause::from_error(Error::Canceled, origin),
        );
    }
}

impl Drop for CancelHandle {
    fn drop(&mut self) {
        let unused = early_drop::dropped_unused(&**self.node.node());
        if !tree::release_unobserved(&self.node) {
            if unused && !self.is_done() {
                early_drop::report(self.created);
            }
            cancel_plain(&self.node, Origin::Dropped(self.created));
        }
    }
}

impl fmt::Debug for CancelHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelHandle")
            .field("created", &format_args!("{}", self.created))
            .field("done", &self.is_done())
            .finish()
    }
}
