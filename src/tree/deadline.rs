//! Deadline bookkeeping: which node owns the deadline that applies, its instant, its timer, the
//! cause a deadline hit reports, and firing a deadline that has passed without its timer.
//!
//! A deadline is kept once, by the node that owns it ([`Timing::Own`]); its cancellable
//! descendants only note that one applies ([`Timing::Inherited`]) and find it by walking up
//! (invariant 5). The timers themselves live in `crate::timer`.

use std::panic::Location;

use crate::Instant;
use crate::error::{Cause, Error, Origin};
use crate::sync::lock;

use super::state::State;
use super::walk::{cancel, cancel_as_descendant};
use super::{CancelCore, CancelRef, DeadlineTimer, Timing};

impl CancelCore {
    pub(crate) fn set_deadline_cause(&self, c: Cause) {
        lock(&self.inner).more().deadline_cause = Some(c);
    }

    pub(crate) fn custom_deadline_cause(&self) -> Option<Cause> {
        lock(&self.inner)
            .more
            .as_ref()
            .and_then(|m| m.deadline_cause.clone())
    }

    /// The cause a deadline hit reports for this node.
    pub(crate) fn deadline_cause(&self, at: Instant) -> Cause {
        let origin = Origin::Deadline {
            // Only nodes with their own deadline report one, and they know where they were made.
            set_at: self.created().unwrap_or(Location::caller()),
            at,
        };
        match self.custom_deadline_cause() {
            Some(c) => c.with_origin(origin),
            None => Cause::from_error(Error::DeadlineExceeded, origin),
        }
    }

    /// Stores the deadline timer, or stops it at once if the node is already done.
    ///
    /// A timer task dropped before it fired (its runtime shut down) hands the deadline to the
    /// timer thread, possibly before `timer::start` stored the task's handle: a task handle
    /// never replaces a thread one (that task is gone).
    pub(crate) fn set_timer(&self, t: Box<dyn DeadlineTimer>) {
        let mut g = lock(&self.inner);
        if self.state_locked() == State::Live {
            let more = g.more();
            if !(t.is_task() && more.timer.as_ref().is_some_and(|old| !old.is_task())) {
                more.timer = Some(t);
            }
        } else {
            drop(g);
            t.stop();
        }
    }

    /// Where this node was made, if it has its own deadline.
    pub(crate) fn created(&self) -> Option<&'static Location<'static>> {
        lock(&self.inner).more.as_ref().and_then(|m| m.created)
    }

    /// Whether this node has a deadline of its own (it runs a timer).
    #[inline]
    pub(crate) fn has_own_deadline(&self) -> bool {
        self.timing == Timing::Own
    }

    /// Whether any deadline applies to this node: its own or an ancestor's. One load.
    #[inline]
    pub(crate) fn under_deadline(&self) -> bool {
        self.timing != Timing::None
    }

    /// This node's own deadline, if it has one.
    pub(crate) fn own_deadline(&self) -> Option<Instant> {
        if !self.has_own_deadline() {
            return None;
        }
        lock(&self.inner).more.as_ref().and_then(|m| m.deadline)
    }
}

impl<'a> CancelRef<'a> {
    /// The node whose own deadline applies to this one: itself or its nearest cancellable
    /// ancestor with a deadline. An own deadline is only ever set when it comes before the
    /// inherited one, so the nearest is the earliest.
    fn deadline_owner(self) -> Option<CancelRef<'a>> {
        let mut n = self;
        loop {
            match n.timing {
                Timing::None => return None,
                Timing::Own => return Some(n),
                Timing::Inherited => n = n.parent()?,
            }
        }
    }

    /// The effective deadline of this node: its own or the nearest earlier one of its
    /// ancestors. Without a deadline, one load.
    pub(crate) fn deadline(self) -> Option<Instant> {
        self.deadline_owner()?.own_deadline()
    }

    /// If this node's effective deadline has passed but its timer has not fired yet (no runtime
    /// drives it, or it is just late), fire it now, on the node that owns that deadline.
    ///
    /// While no deadline anywhere can have passed (`timer::none_passed`), that is all it costs:
    /// no walk to the owner and no lock.
    #[inline]
    pub(crate) fn catch_up_deadline(self) {
        if self.under_deadline() {
            self.catch_up_if_any_passed();
        }
    }

    #[cold]
    fn catch_up_if_any_passed(self) {
        if !crate::timer::none_passed() {
            self.catch_up_owned_deadline();
        }
    }

    #[cold]
    fn catch_up_owned_deadline(self) {
        if self.is_done() {
            return;
        }
        let Some(owner) = self.deadline_owner() else {
            return;
        };
        let Some(at) = owner.own_deadline() else {
            return;
        };
        if Instant::now() >= at {
            let cause = owner.deadline_cause(at);
            if !cancel(owner, Error::DeadlineExceeded, cause) {
                // Another thread (the deadline's timer) marked the owner first, and its walk has
                // not reached this node yet: take what the walk will bring, now.
                if let (Some(err), Some(cause)) = (owner.state().err(), owner.cause()) {
                    cancel_as_descendant(self, err, cause);
                }
            }
        }
    }
}
