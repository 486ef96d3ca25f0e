//! A cancellable node's registry: what must hear about its cancellation (cancellable children,
//! `done()` waiters, `after_func` callbacks), and how entries come and go.
//!
//! The first waiter is kept inline in the node; everything else goes to a slab that keeps a lone
//! entry inline too and is allocated on first use. Entries are read and changed only under the
//! node's lock; once the node is done the registry is empty for good (invariant 4).

use std::task::Waker;

use slab::Slab;

use crate::sync::{Ordering, lock};

use super::state::State;
use super::{CancelCore, CancelNode, CancelRef, Inner};

/// `CancelCore::key` of a node in no registry.
pub(super) const NO_KEY: u32 = u32::MAX;
/// The registry key of the inline waiter slot ([`Inner::waiter`]); no slab reaches it.
const INLINE_KEY: usize = usize::MAX;

/// Something that runs once its node is done: an `after_func` callback. `notify` is called
/// outside every lock, at most once per registration.
pub(crate) trait Notify: Send + Sync {
    fn notify(&self);
}

pub(crate) enum Entry {
    Child(CancelNode),
    Waiter(Waker),
    After(Box<dyn Notify>),
}

impl Inner {
    #[inline]
    pub(super) fn entries_len(&self) -> usize {
        usize::from(self.waiter.is_some()) + self.more.as_ref().map_or(0, |m| m.entries.len())
    }

    /// Registers `e`: a waiter in the inline slot if it is free, anything else in the registry.
    #[inline]
    pub(super) fn insert(&mut self, e: Entry) -> usize {
        match e {
            Entry::Waiter(w) if self.waiter.is_none() => {
                self.waiter = Some(w);
                INLINE_KEY
            }
            e => self.more().entries.insert(e),
        }
    }

    /// Removes entry `key`; gives the memory of a registry that grew under a burst back once
    /// it is empty.
    #[inline]
    pub(super) fn remove(&mut self, key: usize) -> Option<Entry> {
        if key == INLINE_KEY {
            return self.waiter.take().map(Entry::Waiter);
        }
        let m = self.more.as_mut()?;
        let e = m.entries.try_remove(key);
        if m.entries.is_empty() && m.entries.capacity() > 64 {
            if m.cause.is_none()
                && m.timer.is_none()
                && m.deadline_cause.is_none()
                && m.created.is_none()
                && m.deadline.is_none()
                && !m.keeps_token()
            {
                self.more = None;
            } else {
                m.entries = Registry::Empty;
            }
        }
        e
    }
}

/// A slab of entries that keeps a lone entry inline: most nodes have at most one waiter or
/// child, which then needs no slab of its own (no allocation, nothing to free at the walk).
/// Keys are the slab's; the lone entry's key is 0, as it would be in a slab.
#[derive(Default)]
pub(super) enum Registry {
    #[default]
    Empty,
    One(Entry),
    Many(Slab<Entry>),
}

impl Registry {
    #[inline]
    fn insert(&mut self, e: Entry) -> usize {
        if let Registry::Many(slab) = self {
            return slab.insert(e);
        }
        match std::mem::take(self) {
            Registry::Empty => {
                *self = Registry::One(e);
                0
            }
            Registry::One(first) => {
                let mut slab = Slab::with_capacity(4);
                slab.insert(first);
                let key = slab.insert(e);
                *self = Registry::Many(slab);
                key
            }
            Registry::Many(mut slab) => {
                let key = slab.insert(e);
                *self = Registry::Many(slab);
                key
            }
        }
    }

    fn get_mut(&mut self, key: usize) -> Option<&mut Entry> {
        match self {
            Registry::One(e) if key == 0 => Some(e),
            Registry::Many(slab) => slab.get_mut(key),
            _ => None,
        }
    }

    #[inline]
    fn try_remove(&mut self, key: usize) -> Option<Entry> {
        match self {
            Registry::One(_) if key == 0 => match std::mem::take(self) {
                Registry::One(e) => Some(e),
                _ => None,
            },
            Registry::Many(slab) => slab.try_remove(key),
            _ => None,
        }
    }

    #[inline]
    fn len(&self) -> usize {
        match self {
            Registry::Empty => 0,
            Registry::One(_) => 1,
            Registry::Many(slab) => slab.len(),
        }
    }

    #[inline]
    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether any entry is a cancellable child.
    pub(super) fn has_children(&self) -> bool {
        match self {
            Registry::Empty => false,
            Registry::One(e) => matches!(e, Entry::Child(_)),
            Registry::Many(slab) => slab.iter().any(|(_, e)| matches!(e, Entry::Child(_))),
        }
    }

    fn capacity(&self) -> usize {
        match self {
            Registry::Many(slab) => slab.capacity(),
            _ => 0,
        }
    }

    /// Every entry, in registration order (key order, for a slab that never reused a key).
    pub(super) fn for_each(self, mut f: impl FnMut(Entry)) {
        match self {
            Registry::Empty => {}
            Registry::One(e) => f(e),
            Registry::Many(slab) => slab.into_iter().for_each(|(_, e)| f(e)),
        }
    }
}

impl CancelCore {
    /// Registers `entry`; gives it back when the node is already done.
    pub(crate) fn register(&self, entry: Entry) -> Result<usize, Entry> {
        let mut g = lock(&self.inner);
        if self.state_locked() != State::Live {
            return Err(entry);
        }
        Ok(g.insert(entry))
    }

    /// Replaces the waker of waiter `key` (no-op once done). The new waker is cloned before the
    /// lock is taken and the old one dropped after it is released: a waker's `clone` and `Drop`
    /// are foreign code, which may use this very context.
    pub(crate) fn update_waiter(&self, key: usize, waker: &Waker) {
        let mut new = waker.clone();
        {
            let mut g = lock(&self.inner);
            if self.state_locked() == State::Live {
                let slot = match key {
                    INLINE_KEY => g.waiter.as_mut(),
                    _ => match g.more.as_mut().and_then(|m| m.entries.get_mut(key)) {
                        Some(Entry::Waiter(w)) => Some(w),
                        _ => None,
                    },
                };
                if let Some(w) = slot {
                    std::mem::swap(w, &mut new);
                }
            }
        }
        // The old waker (or the unused new one), outside the lock.
        drop(new);
    }

    /// Removes entry `key` (no-op once done: the registry was emptied by the cancellation).
    pub(crate) fn unregister(&self, key: usize) -> Option<Entry> {
        // Once done, never live again: no need for the lock (a woken waiter's common case).
        if self.is_done() {
            return None;
        }
        let mut g = lock(&self.inner);
        if self.state_locked() != State::Live {
            return None;
        }
        g.remove(key)
    }

    /// Adds this node's live cancellable children to `out` (for the live tree; the lock is held
    /// only while their pointers are copied).
    #[cfg(feature = "live")]
    pub(crate) fn live_children(&self, out: &mut Vec<CancelNode>) {
        let g = lock(&self.inner);
        if self.state_locked() != State::Live {
            return;
        }
        match g.more.as_deref().map(|m| &m.entries) {
            Some(Registry::One(Entry::Child(c))) => out.push(c.clone()),
            Some(Registry::Many(slab)) => out.extend(slab.iter().filter_map(|(_, e)| match e {
                Entry::Child(c) => Some(c.clone()),
                _ => None,
            })),
            _ => {}
        }
    }

    /// Number of registered entries (children, waiters, callbacks); for tests of the bookkeeping.
    pub(crate) fn registered(&self) -> usize {
        lock(&self.inner).entries_len()
    }
}

/// Leaves the nearest cancellable ancestor's registry (no-op if it is done: it dropped us).
#[inline]
pub(super) fn detach_from_parent(node: CancelRef<'_>) {
    if let Some(p) = node.parent() {
        let mut g = lock(&p.inner);
        if p.state_locked() == State::Live {
            let key = node.key.load(Ordering::Relaxed);
            if key != NO_KEY {
                let removed = g.remove(key as usize);
                node.key.store(NO_KEY, Ordering::Relaxed);
                drop(g);
                // The child's Arc is dropped outside the lock (it may be the last one).
                drop(removed);
            }
        }
    }
}
