//! Debug builds: a [`CancelHandle`](crate::CancelHandle) dropped before anything used its context.
//!
//! `let (ctx, _) = parent.with_timeout(d);` drops the handle at the end of the statement, which
//! cancels `ctx` before it is ever used: rustc and clippy say nothing (`_` is not a binding). The
//! pair stays (it is Go's shape, and the handle owns the cancel), but in debug builds this case
//! is reported, once per place the handle was made:
//!
//! - making a handle marks it, on this thread, as *just made*;
//! - any use of a context on this thread (reading, waiting, deriving, cloning, making current)
//!   clears the mark;
//! - a handle dropped while still marked, within 50 ms of being made, with its context live and
//!   held by someone, is the trap.
//!
//! The warning goes to a `tracing` subscriber (feature `tracing`) or standard error, never a
//! panic (a heuristic must not abort a program, even in strict mode). Cancelling on purpose through
//! [`CancelHandle::cancel`](crate::CancelHandle::cancel) never warns. Release builds do none of
//! this: every function here is empty.

#[cfg(debug_assertions)]
mod imp {
    use std::cell::Cell;
    use std::collections::HashSet;
    use std::panic::Location;
    use std::sync::{Mutex, PoisonError};
    use std::time::{Duration, Instant};

    thread_local! {
        /// The node whose handle was made last on this thread, and when, until a use.
        static JUST_MADE: Cell<(usize, Option<Instant>)> = const { Cell::new((0, None)) };
    }

    /// A handle dropped later than this after it was made is not the trap (`let (ctx, _) = ..`
    /// drops it within the statement): it was kept, and its context used elsewhere.
    const WITHIN: Duration = Duration::from_millis(50);

    static REPORTED: Mutex<Option<HashSet<&'static Location<'static>>>> = Mutex::new(None);

    #[inline]
    pub(crate) fn made<T>(node: &T) {
        let _ = JUST_MADE.try_with(|m| m.set((node as *const T as usize, Some(Instant::now()))));
    }

    #[inline]
    pub(crate) fn used() {
        let _ = JUST_MADE.try_with(|m| m.set((0, None)));
    }

    #[inline]
    pub(crate) fn dropped_unused<T>(node: &T) -> bool {
        JUST_MADE
            .try_with(|m| match m.replace((0, None)) {
                (made, Some(at)) => made == node as *const T as usize && at.elapsed() < WITHIN,
                _ => false,
            })
            .unwrap_or(false)
    }

    /// Whether a handle made on `line` of `file` was reported (for ctxkit's own tests).
    pub(crate) fn was_reported(file: &str, line: u32) -> bool {
        REPORTED
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|r| r.iter().any(|at| at.file() == file && at.line() == line))
    }

    #[cold]
    pub(crate) fn report(made_at: &'static Location<'static>) {
        let first = REPORTED
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert_with(HashSet::new)
            .insert(made_at);
        if !first {
            return;
        }
        let message = format!(
            "the CancelHandle made at {made_at} was dropped before its context was used, which \
             cancelled that context at once. `let (ctx, _) = parent.with_timeout(..)` drops the \
             handle at the end of the statement: bind it to a name (`let (ctx, _cancel) = ..`) \
             to keep the context live until the scope ends, or call `cancel()` to cancel on \
             purpose"
        );
        #[cfg(feature = "tracing")]
        if ::tracing::enabled!(target: "ctxkit::handle", ::tracing::Level::WARN) {
            ::tracing::event!(
                target: "ctxkit::handle",
                ::tracing::Level::WARN,
                ctxkit.handle.made = %made_at,
                "{message}"
            );
            return;
        }
        eprintln!("warning: ctxkit: {message} (reported once per place)");
    }
}

#[cfg(not(debug_assertions))]
mod imp {
    use std::panic::Location;

    #[inline(always)]
    pub(crate) fn made<T>(_: &T) {}
    #[inline(always)]
    pub(crate) fn used() {}
    #[inline(always)]
    pub(crate) fn dropped_unused<T>(_: &T) -> bool {
        false
    }
    #[inline(always)]
    pub(crate) fn report(_: &'static Location<'static>) {}
    pub(crate) fn was_reported(_: &str, _: u32) -> bool {
        false
    }
}

pub(crate) use imp::{dropped_unused, made, report, used, was_reported};
