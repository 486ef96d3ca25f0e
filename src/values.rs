//! What the integrations read of a context's chain without touching its nodes: the values of
//! travelling keys (for `propagation`) and whether one context derives from another (for the axum
//! extractor).

#[cfg(feature = "propagation")]
use std::any::TypeId;

use crate::Context;
#[cfg(feature = "propagation")]
use crate::tree::Kind;

/// A value of a travelling key, found walking a context towards its root.
#[cfg(feature = "propagation")]
pub(crate) struct TravellingValue {
    /// The key type's identity: two keys are one key only if these are equal.
    pub(crate) key: TypeId,
    /// The key type's name, for messages.
    pub(crate) key_name: &'static str,
    /// The key's `ContextKey::HEADER`.
    pub(crate) header: &'static str,
    /// The value's text, or `None` when the key's encoder declines to send it.
    pub(crate) text: Option<String>,
}

impl Context {
    /// Every value of a travelling key from this context towards the root, nearest first. A key
    /// set several times along the chain appears once per value.
    #[cfg(feature = "propagation")]
    pub(crate) fn travelling_values(&self) -> impl Iterator<Item = TravellingValue> + '_ {
        let mut cur = self.node.as_deref();
        std::iter::from_fn(move || {
            while let Some(n) = cur {
                cur = n.parent.as_deref();
                if let Kind::Value(slot) = &n.kind
                    && let Some((header, text)) = (slot.meta.travel)(&*slot.value)
                {
                    return Some(TravellingValue {
                        key: slot.key,
                        key_name: (slot.meta.name)(),
                        header,
                        text,
                    });
                }
            }
            None
        })
    }

    /// Whether `self` is `descendant` or one of its ancestors (`background()` is everyone's).
    #[cfg(feature = "axum")]
    pub(crate) fn is_ancestor_or_same(&self, descendant: &Context) -> bool {
        let Some(me) = &self.node else {
            return true;
        };
        let mut cur = descendant.node.as_ref();
        while let Some(n) = cur {
            if crate::sync::Arc::ptr_eq(n, me) {
                return true;
            }
            cur = n.parent.as_ref();
        }
        false
    }
}
