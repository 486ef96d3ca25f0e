//! Waiting for cancellation: the [`Done`] future and the waker registration behind it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll, RawWakerVTable, Waker};

use crate::Error;
use crate::race::Watch;
use crate::tree::{CancelNode, Entry};

/// A waker slot in a cancellable node's registry, taken only while someone is pending on it.
///
/// Re-polling with the same waker takes no lock; a changed waker replaces the stored one. Dropping
/// it leaves the registry.
pub(crate) struct Registration {
    node: Option<CancelNode>,
    /// The registry key and which waker is registered there (see [`WakerId`]).
    slot: Option<(usize, WakerId)>,
}

/// Which waker a registration holds, to tell whether a poll brings another one without keeping
/// a clone of it (a clone is a reference count on the task, taken and given back per wait). The
/// registry's clone keeps the waker alive, so its address cannot be reused while we compare.
/// Compared like `Waker::will_wake`: same data pointer, same vtable.
#[derive(Clone, Copy)]
struct WakerId {
    data: usize,
    /// A reference, not an address: its niche keeps `Option<(usize, WakerId)>` at 24 bytes.
    vtable: &'static RawWakerVTable,
}

impl WakerId {
    fn of(w: &Waker) -> Self {
        WakerId {
            data: w.data() as usize,
            vtable: w.vtable(),
        }
    }
}

impl PartialEq for WakerId {
    fn eq(&self, other: &Self) -> bool {
        self.data == other.data && std::ptr::eq(self.vtable, other.vtable)
    }
}

impl Registration {
    pub(crate) fn new(node: Option<CancelNode>) -> Self {
        Registration { node, slot: None }
    }

    /// Whether the node is done; one atomic load.
    #[inline]
    pub(crate) fn is_done(&self) -> bool {
        match &self.node {
            Some(n) => n.get().is_done(),
            None => false,
        }
    }

    /// `Ready` once the node is done; otherwise makes sure `cx`'s waker will be woken then.
    pub(crate) fn poll_done(&mut self, cx: &mut TaskContext<'_>) -> Poll<()> {
        let Some(node) = &self.node else {
            return Poll::Pending;
        };
        let core = node.get();
        if core.is_done() {
            return Poll::Ready(());
        }
        match &mut self.slot {
            Some((key, id)) => {
                let now = WakerId::of(cx.waker());
                if *id != now {
                    *id = now;
                    core.update_waiter(*key, cx.waker());
                }
            }
            None => match core.register(Entry::Waiter(cx.waker().clone())) {
                Ok(key) => self.slot = Some((key, WakerId::of(cx.waker()))),
                Err(_) => return Poll::Ready(()),
            },
        }
        // Registration happens under the node's lock, after which a cancellation must see us;
        // one that came before it is visible now.
        if core.is_done() {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

/// A race against a context: it stops once the context is done, with its error.
impl Watch for Registration {
    #[inline]
    fn stopped(&self) -> Option<Error> {
        self.node.as_ref()?.get().state().err()
    }

    fn poll_stopped(&mut self, cx: &mut TaskContext<'_>) -> Poll<Error> {
        match self.poll_done(cx) {
            Poll::Ready(()) => Poll::Ready(self.stopped().unwrap_or(Error::Canceled)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let (Some(node), Some((key, _))) = (&self.node, self.slot.take()) {
            drop(node.get().unregister(key));
        }
    }
}

/// The future returned by [`Context::done`](crate::Context::done): resolves once the context is
/// done. `'static`, `Unpin` and `Send`; never resolves for a context that cannot be cancelled.
///
/// ```
/// use ctxkit::Context;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let (ctx, cancel) = Context::background().with_cancel();
/// let waiter = tokio::spawn(ctx.done());
/// cancel.cancel();
/// waiter.await.unwrap();
/// # }
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct Done {
    reg: Registration,
}

impl Done {
    pub(crate) fn new(node: Option<CancelNode>) -> Self {
        Done {
            reg: Registration::new(node),
        }
    }
}

impl Future for Done {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<()> {
        self.reg.poll_done(cx)
    }
}

impl fmt::Debug for Done {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Done")
            .field("done", &self.reg.is_done())
            .finish()
    }
}
