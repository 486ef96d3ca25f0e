//! A cancellable node's state (live or done, and with which error) and how its cause is stored.
//!
//! The state is one atomic byte, so `is_done()` is one load. The cause is stored under the
//! node's lock before the state is set (invariant 1): a plain cause (`cancel()`, a dropped
//! handle, with the node's own error) as a [`Plain`] tag plus an inline location, any other in
//! the node's boxed extras.

use crate::error::{Cause, Error, PlainCause, PlainOrigin};
use crate::sync::{Ordering, lock};

use super::{CancelCore, Inner};

/// Whether a cancellable node is done, and why; kept in `CancelCore::state`.
#[repr(u8)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum State {
    Live = 0,
    Canceled = 1,
    DeadlineExceeded = 2,
}

impl State {
    #[inline]
    fn from_u8(v: u8) -> State {
        match v {
            0 => State::Live,
            1 => State::Canceled,
            _ => State::DeadlineExceeded,
        }
    }

    /// The error a context in this state reports (`None` while live).
    #[inline]
    pub(crate) fn err(self) -> Option<Error> {
        match self {
            State::Live => None,
            State::Canceled => Some(Error::Canceled),
            State::DeadlineExceeded => Some(Error::DeadlineExceeded),
        }
    }

    pub(super) fn done_with(err: Error) -> State {
        match err {
            Error::Canceled => State::Canceled,
            Error::DeadlineExceeded => State::DeadlineExceeded,
        }
    }
}

/// How a cancellable node keeps its cause; kept in `CancelCore::plain`.
#[repr(u8)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Plain {
    /// No cause yet, or one kept in `More::cause`.
    None = 0,
    /// The node's error with no origin.
    Bare = 1,
    /// The node's error, `cancel()` called at `Inner::plain_at`.
    Called = 2,
    /// The node's error, its handle (made at `Inner::plain_at`) dropped.
    Dropped = 3,
}

impl Plain {
    fn from_u8(v: u8) -> Plain {
        match v {
            1 => Plain::Bare,
            2 => Plain::Called,
            3 => Plain::Dropped,
            _ => Plain::None,
        }
    }
}

impl CancelCore {
    /// The state; after it reads done, the cause is there (under the lock) to be read.
    #[inline]
    pub(crate) fn state(&self) -> State {
        State::from_u8(self.state.load(Ordering::Acquire))
    }

    /// Whether the node is done: one load.
    #[inline]
    pub(crate) fn is_done(&self) -> bool {
        self.state.load(Ordering::Acquire) != State::Live as u8
    }

    /// The state, read under the node's lock (which orders it).
    #[inline]
    pub(super) fn state_locked(&self) -> State {
        State::from_u8(self.state.load(Ordering::Relaxed))
    }

    /// Sets the state, under the node's lock, after the cause was stored.
    #[inline]
    pub(super) fn set_state(&self, s: State) {
        self.state.store(s as u8, Ordering::Release);
    }

    pub(crate) fn cause(&self) -> Option<Cause> {
        if !self.is_done() {
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
                    PlainOrigin::None => (Plain::Bare, None),
                    PlainOrigin::Called(l) => (Plain::Called, Some(l)),
                    PlainOrigin::Dropped(l) => (Plain::Dropped, Some(l)),
                };
                g.plain_at = at;
                self.plain.store(kind as u8, Ordering::Relaxed);
            }
            _ => g.more().cause = Some(cause.clone()),
        }
    }

    /// The stored cause (under this node's lock).
    pub(super) fn load_cause(&self, g: &Inner) -> Option<Cause> {
        let origin = match (
            Plain::from_u8(self.plain.load(Ordering::Relaxed)),
            g.plain_at,
        ) {
            (Plain::None, _) => return g.more.as_ref()?.cause.clone(),
            (Plain::Called, Some(l)) => PlainOrigin::Called(l),
            (Plain::Dropped, Some(l)) => PlainOrigin::Dropped(l),
            _ => PlainOrigin::None,
        };
        let error = self.state_locked().err()?;
        Some(Cause::from(PlainCause { error, origin }))
    }
}
