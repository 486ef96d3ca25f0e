//! Bridges to tokio-util's `CancellationToken` (feature `tokio-util`), for APIs that take one.
//!
//! Both links are cut as soon as either side no longer needs them, so neither side keeps the
//! other alive:
//! - [`Context::cancellation_token`] hands out children of one token per context, linked by one
//!   callback (no task) that goes when the context is done or freed; a dropped child leaves at
//!   once.
//! - [`Context::with_cancellation_token`] runs one small task that waits for the token; it ends
//!   when the token is cancelled, when the child context is done, or when every clone of the
//!   child context is dropped, whichever comes first.

use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::task::Poll;

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::{Context, ContextKey};

impl Context {
    /// A `CancellationToken` that is cancelled when this context is done: at once if it is done
    /// already, otherwise right after its cancellation (by a callback on its own task, as
    /// [`Context::after_func`] runs one). Cancelling the token does not touch the context.
    ///
    /// The context keeps one token of its own, linked by one callback, made on the first call
    /// and freed with the context; every call hands out a child of it (`child_token`), which
    /// leaves that token as soon as it is dropped. So calling this often, on a context that
    /// lives long, costs nothing that stays. On a context that can never be cancelled there is
    /// no link at all.
    ///
    /// ```
    /// use ctxkit::Context;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let (ctx, cancel) = Context::background().with_cancel();
    /// let token = ctx.cancellation_token(); // e.g. for rmcp's `RequestContext::ct`
    /// assert!(!token.is_cancelled());
    /// cancel.cancel();
    /// token.cancelled().await;
    /// # }
    /// ```
    pub fn cancellation_token(&self) -> CancellationToken {
        let Some(core) = self.core() else {
            return CancellationToken::new(); // never cancelled
        };
        if self.is_done() {
            let token = CancellationToken::new();
            token.cancel();
            return token;
        }
        if let Some(kept) = core.linked_token() {
            return kept.child_token();
        }
        let token = CancellationToken::new();
        let link = token.clone();
        let after = self.after_func(move || link.cancel());
        match core.keep_linked_token(&token) {
            // Another thread linked one first: ours goes.
            Some(kept) => {
                after.stop();
                kept.child_token()
            }
            // Dropping the `AfterFunc` leaves the callback registered, which is what we want.
            None => token.child_token(),
        }
    }

    /// A child of this context that is also cancelled when `token` is (its cause is then
    /// [`TokenCancelled`]). Cancelling the child, or this context, never cancels `token`.
    ///
    /// The link is a small task that ends when the token is cancelled, when the child is done,
    /// or when every clone of the child (and of contexts derived from it) is dropped. The
    /// child is therefore a value node over a cancellable one: its `Debug` reads
    /// `….WithCancel.WithValue(TokenLink)`.
    ///
    /// ```
    /// use ctxkit::{Context, Error, TokenCancelled};
    /// use tokio_util::sync::CancellationToken;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let token = CancellationToken::new();
    /// let ctx = Context::background().with_cancellation_token(token.clone());
    /// token.cancel();
    /// ctx.done().await;
    /// assert_eq!(ctx.err(), Some(Error::Canceled));
    /// assert!(ctx.cause().unwrap().is::<TokenCancelled>());
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, unless `token` is cancelled already or this context is done.
    #[track_caller]
    pub fn with_cancellation_token(&self, token: CancellationToken) -> Context {
        let (child, cancel) = self.with_cancel();
        if token.is_cancelled() {
            cancel.cancel_with(TokenCancelled);
        }
        let (alive, dropped) = oneshot::channel();
        let visible = child.with_value::<TokenLink>(Alive { _tell: alive });
        if child.is_done() {
            return visible;
        }
        tokio::spawn(async move {
            let mut cancelled = pin!(token.cancelled_owned());
            let mut done = child.done();
            let mut dropped = dropped;
            let by_token = poll_fn(|cx| {
                if cancelled.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(true);
                }
                if std::pin::Pin::new(&mut done).poll(cx).is_ready()
                    || std::pin::Pin::new(&mut dropped).poll(cx).is_ready()
                {
                    return Poll::Ready(false);
                }
                Poll::Pending
            })
            .await;
            if by_token {
                cancel.cancel_with(TokenCancelled);
            }
            // Otherwise the child is done, or nobody can see it any more: `cancel` drops here
            // and the node leaves its parent.
            drop(child);
        });
        visible
    }
}

/// The cause of a context made by [`Context::with_cancellation_token`] that its token
/// cancelled. Its text is `the CancellationToken was cancelled`.
///
/// ```
/// assert_eq!(ctxkit::TokenCancelled.to_string(), "the CancellationToken was cancelled");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TokenCancelled;

impl fmt::Display for TokenCancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the CancellationToken was cancelled")
    }
}

impl std::error::Error for TokenCancelled {}

/// The key of the value node that tells the link task when the child is no longer visible.
struct TokenLink;

/// Dropped with the last clone of the child context: its channel then tells the link task.
struct Alive {
    _tell: oneshot::Sender<()>,
}

impl ContextKey for TokenLink {
    type Value = Alive;
}
