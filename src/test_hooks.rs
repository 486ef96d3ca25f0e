//! Hooks for ctxkit's own tests of its bookkeeping. Not part of the API: hidden, unstable, and
//! free to change in any release.

use crate::Context;

/// How many children, waiters and callbacks `ctx`'s cancellation would reach directly (0 for a
/// context that cannot be cancelled): what the leak tests count.
///
/// ```
/// use ctxkit::Context;
/// use ctxkit::test_hooks::registered;
///
/// let (parent, _cancel) = Context::background().with_cancel();
/// let (child, cancel_child) = parent.with_cancel();
/// assert_eq!(registered(&parent), 1);
/// drop(cancel_child); // a cancelled child leaves at once
/// assert_eq!(registered(&parent), 0);
/// # drop(child);
/// ```
pub fn registered(ctx: &Context) -> usize {
    ctx.registered()
}

/// Whether debug builds reported a `CancelHandle` made on `line` of `file` as dropped before its
/// context was used (always `false` in release builds).
pub fn early_drop_reported(file: &str, line: u32) -> bool {
    crate::early_drop::was_reported(file, line)
}
