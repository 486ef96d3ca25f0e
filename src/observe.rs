//! What the cancel walk tells the observability integrations: one call per cancellation.
//!
//! Without the `tracing` feature [`cancelled`] is empty and inlined away: the walk pays nothing.
//! With it, each call is one `tracing` event ([`crate::tracing`]); with `opentelemetry` also one
//! increment of the cancellation counter ([`crate::opentelemetry`]).

use crate::{Cause, Error};

/// How the cancellation reached the context it is reported for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reached {
    /// The context was cancelled itself (its handle, its deadline, a layer on its behalf): the
    /// walk starts here. Counted.
    Here,
    /// An ancestor's cancellation reached it; reported with the kind `parent` and the ancestor's
    /// cause and origin, for a context whose own report matters (a request's). Not counted: the
    /// ancestor's cancellation was.
    #[allow(dead_code)] // reported by nothing but the unit tests yet
    FromParent,
}

/// Reports one cancellation: `err` and `cause` as the cancelled context stores them.
///
/// The cancel walk calls it once per cancellation that takes effect (the first to mark the
/// context done), outside every lock, with [`Reached::Here`]; the event is emitted in the
/// `tracing` span current where the cancellation happens.
#[inline]
pub(crate) fn cancelled(err: Error, cause: &Cause, reached: Reached) {
    #[cfg(feature = "tracing")]
    crate::tracing::cancelled(err, cause, reached);
    #[cfg(not(feature = "tracing"))]
    let _ = (err, cause, reached);
}
