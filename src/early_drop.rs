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
//! - a handle dropped while still marked, with its context live and held by someone, is the trap.
//!
//! The warning goes to a `tracing` subscriber (feature `tracing`) or standard error; in strict
//! mode ([`crate::missing::strict`], `CTXKIT_STRICT=1`) it panics. Cancelling on purpose through
//! [`CancelHandle::cancel`](crate::CancelHandle::cancel) never warns. Release builds do none of
//! this: every function here is empty.

#[cfg(debug_assertions)]
mod imp {
    use std::cell::Cell;
    use std::collections::HashSet;
    use std::panic::Location;
    use std::sync::{Mutex, PoisonError};

    thread_local! {
        /// The address of the node whose handle was made last on this thread, until a use.
        static JUST_MADE: Cell<usize> = const { Cell::new(0) };
    }

    static REPORTED: Mutex<Option<HashSet<&'static Location<'static>>>> = Mutex::new(None);

    #[inline]
    pub(crate) fn made<T>(node: &T) {
        let _ = JUST_MADE.try_with(|m| m.set(node as *const T as usize));
    }

    #[inline]
    pub(crate) fn used() {
        let _ = JUST_MADE.try_with(|m| m.set(0));
    }

    #[inline]
    pub(crate) fn dropped_unused<T>(node: &T) -> bool {
        JUST_MADE
            .try_with(|m| m.replace(0) == node as *const T as usize)
            .unwrap_or(false)
    }

    #[cold]
    pub(crate) fn report(made_at: &'static Location<'static>) {
        let message = format!(
            "the CancelHandle made at {made_at} was dropped before its context was used, which \
             cancelled that context at once. `let (ctx, _) = parent.with_timeout(..)` drops the \
             handle at the end of the statement: bind it to a name (`let (ctx, _cancel) = ..`) \
             to keep the context live until the scope ends, or call `cancel()` to cancel on \
             purpose"
        );
        if crate::missing::is_strict() {
            if !std::thread::panicking() {
                panic!("ctxkit strict mode: {message}");
            }
            return;
        }
        let first = REPORTED
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert_with(HashSet::new)
            .insert(made_at);
        if !first {
            return;
        }
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
}

pub(crate) use imp::{dropped_unused, made, report, used};
