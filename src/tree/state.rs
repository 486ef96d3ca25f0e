//! A cancellable node's state (live or done, and with which error) and how its cause is stored.
//!
//! The state is one atomic byte, so `is_done()` is one load. The cause is stored under the
//! node's lock before the state is set (invariant 1): a plain cause (`cancel()`, a dropped
//! handle, with the node's own error) as a tag in `CancelCore::plain` plus an inline location,
//! any other in the node's boxed extras.

use crate::error::{Cause, Error, PlainCause, PlainOrigin};
use crate::sync::{Ordering, lock};

use super::{CancelCore, Inner};

pub(crate) const LIVE: u8 = 0;
pub(crate) const CANCELED: u8 = 1;
pub(crate) const DEADLINE: u8 = 2;

/// `CancelCore::plain`: no cause yet, or one kept in `More::cause`.
pub(super) const PLAIN_NONE: u8 = 0;
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

pub(super) fn err_state(err: Error) -> u8 {
    match err {
        Error::Canceled => CANCELED,
        Error::DeadlineExceeded => DEADLINE,
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
    pub(super) fn store_cause(&self, g: &mut Inner, err: Error, cause: &Cause) {
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
    pub(super) fn load_cause(&self, g: &Inner) -> Option<Cause> {
        let origin = match (self.plain.load(Ordering::Relaxed), g.plain_at) {
            (PLAIN_NONE, _) => return g.more.as_ref()?.cause.clone(),
            (PLAIN_CALLED, Some(l)) => PlainOrigin::Called(l),
            (PLAIN_DROPPED, Some(l)) => PlainOrigin::Dropped(l),
            _ => PlainOrigin::None,
        };
        let error = state_err(self.state.load(Ordering::Relaxed))?;
        Some(Cause::from(PlainCause { error, origin }))
    }
}
