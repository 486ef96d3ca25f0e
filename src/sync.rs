//! The synchronisation primitives of the tree, swappable for loom's in model checks.

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::{Arc, Mutex, MutexGuard};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU8, AtomicU32, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::{Arc, Mutex, MutexGuard};

/// Locks `m`, ignoring poisoning: no code of ours panics while holding a lock, and a user's
/// panic elsewhere must never make the tree unusable.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// `Arc::into_inner`: the value if this was the last reference (race-free: of several threads
/// dropping the last references at once, exactly one gets it).
#[cfg(not(loom))]
pub(crate) fn arc_into_inner<T>(a: Arc<T>) -> Option<T> {
    Arc::into_inner(a)
}

#[cfg(loom)]
pub(crate) fn arc_into_inner<T>(a: Arc<T>) -> Option<T> {
    Arc::try_unwrap(a).ok()
}
