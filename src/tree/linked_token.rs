//! The `tokio-util` bridge's state in a node: the one `CancellationToken` linked to it, whose
//! children `Context::cancellation_token` hands out.

#[cfg(feature = "tokio-util")]
use crate::sync::lock;

#[cfg(feature = "tokio-util")]
use super::CancelCore;
use super::More;

impl More {
    /// Whether a linked token is kept (feature `tokio-util`): then `More` must stay.
    pub(super) fn keeps_token(&self) -> bool {
        #[cfg(feature = "tokio-util")]
        return self.token.is_some();
        #[cfg(not(feature = "tokio-util"))]
        false
    }
}

#[cfg(feature = "tokio-util")]
impl CancelCore {
    /// The token linked to this node by `Context::cancellation_token`, if one was made.
    pub(crate) fn linked_token(&self) -> Option<tokio_util::sync::CancellationToken> {
        lock(&self.inner).more.as_ref()?.token.clone()
    }

    /// Keeps `token` as this node's linked token, unless another was kept first: then that one
    /// is returned, and `token` is not kept.
    pub(crate) fn keep_linked_token(
        &self,
        token: &tokio_util::sync::CancellationToken,
    ) -> Option<tokio_util::sync::CancellationToken> {
        let mut g = lock(&self.inner);
        if let Some(kept) = g.more.as_ref().and_then(|m| m.token.clone()) {
            return Some(kept);
        }
        g.more().token = Some(token.clone());
        None
    }
}
