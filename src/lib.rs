#![doc = include_str!("../README.md")]
//!
//! ## Guarantees
//!
//! Each claim names the test that proves it (in `tests/`); the concurrent ones are
//! also loom models (`tests/loom.rs`, run under `--cfg loom`), checked over every interleaving
//! up to loom's preemption bound.
//!
//! - **Cancellation is atomic per node and happens once.** A node's state and cause are set
//!   together, under its lock, by the first cancellation to arrive (its handle, its deadline, or
//!   an ancestor's cascade); `err()` and `cause()` never change afterwards, and every node of a
//!   subtree reports the cause of whichever cancellation reached it first.
//!   `tree.rs: err_is_none_until_done_then_fixed_forever, first_cause_wins,
//!   descendants_inherit_the_cause_of_the_ancestor_that_reached_them_first`;
//!   `loom.rs: two_cancels_with_different_causes_agree_on_one_winner_everywhere,
//!   nested_cancels_racing_give_each_subtree_one_cause`.
//! - **No child is missed.** A child attached while its parent is being cancelled is either
//!   reached by the cascade or born cancelled with the parent's cause.
//!   `loom.rs: child_attached_while_the_parent_is_cancelled_ends_up_cancelled`;
//!   `concurrency.rs: children_attached_while_the_parent_is_cancelled_end_up_cancelled`.
//! - **No lost wake-up.** A `done()` (or [`Context::run`]) registering its waker while another
//!   thread cancels is always woken, exactly once.
//!   `loom.rs: cancel_racing_a_done_registration_never_loses_the_wakeup`;
//!   `concurrency.rs: many_threads_cancelling_one_tree_wake_every_waiter_exactly_once`;
//!   `stress.rs` (100,000 nodes, tasks on every leaf, four cancelling threads).
//! - **Wake order.** A woken waiter (or started `after_func` callback) sees the whole subtree
//!   of the context it waited on done: the waiters of the cancelled node and of every node with
//!   cancellable children are woken only once the whole subtree is marked, the cancelled node's
//!   own first, then the others level by level; a node without cancellable children has
//!   nothing below it, so its waiters are woken as soon as it is marked, while the walk goes on
//!   (the tasks of a wide fan-out start running at once). The exception is a part of the tree
//!   that another thread is cancelling at the same moment: that thread finishes it before its
//!   `cancel()` returns. `concurrency.rs: every_waiter_sees_the_whole_subtree_done_when_woken,
//!   every_woken_waiter_sees_the_subtree_of_its_node_done`.
//! - **No lock is held while foreign code runs**: wakers, callbacks and the drop of values and
//!   nodes run outside every lock, so they may cancel, derive, wait or drop anything, including
//!   the tree being cancelled. That includes a waker's `clone` and `Drop` when a `done()` is
//!   polled with a new waker: the old one is dropped after the lock is released.
//!   `concurrency.rs: cancelling_deriving_and_dropping_inside_a_done_waker_works,
//!   cancelling_deriving_and_dropping_inside_an_after_func_works,
//!   cancelling_deriving_and_dropping_from_a_context_values_drop_works`;
//!   `walk_faults.rs: a_waker_whose_drop_uses_the_context_is_replaced_without_deadlock`;
//!   `loom.rs: a_waker_replaced_while_the_context_is_cancelled_is_dropped_outside_the_lock`.
//! - **Faults stay put.** An `after_func` callback never runs on the canceller's stack: its
//!   panic stays on its task or thread, other callbacks still run, and the tree stays usable. A
//!   panicking waker, or a context value whose `Drop` panics when the walk frees its node, does
//!   not keep the walk from finishing (every node marked, every waiter woken); the first panic
//!   resumes in the canceller once the whole subtree is done.
//!   `walk_faults.rs: a_panicking_value_drop_during_the_walk_neither_stops_the_walk_nor_is_lost`;
//!   `after_func.rs: panicking_after_func_neither_reaches_the_canceller_nor_stops_other_callbacks,
//!   cancelling_never_waits_for_the_callback`;
//!   `concurrency.rs: a_panicking_waker_neither_stops_other_wakeups_nor_breaks_the_tree,
//!   a_panicking_leaf_waker_does_not_stop_the_rest_of_the_walk`.
//! - **`after_func` runs exactly once, or `stop()` says it never will.**
//!   `loom.rs: after_func_stop_racing_cancellation_either_stops_or_runs`;
//!   `after_func.rs: stop_racing_cancellation_either_stops_or_runs_never_both_never_neither`.
//! - **No leak.** A cancelled or dropped child leaves its parent's registry at once, and so
//!   does a dropped `done()` waiter or a stopped callback; deep trees are cancelled and freed
//!   without recursion, also when context values hold contexts (a chain of 80,000 such values
//!   drops on a 2 MiB stack), and a flat fan-out without allocating. `leak.rs:
//!   a_million_dropped_children_leave_no_trace, cancelling_a_flat_fan_out_allocates_nothing` (and its
//!   siblings, with a counting allocator); `loom.rs:
//!   child_dropped_while_the_parent_cancels_leaves_no_trace`; `tree.rs:
//!   deep_chains_cancel_and_drop_without_overflowing_the_stack`; `walk_faults.rs:
//!   contexts_kept_in_values_are_dropped_without_recursion`.
//! - **Each cancellation is reported once.** With the `tracing` feature, the cancel walk emits
//!   one event (kind, cause, origin) for the context a cancellation starts at, outside every
//!   lock; its descendants, and a second cancellation that changes nothing, emit none.
//!   `tracing.rs: a_cancelled_context_emits_exactly_one_event_with_kind_and_origin`.
//! - **What cancellation drops.** [`Context::run`] drops the in-flight future as soon as it sees
//!   the cancellation (before returning `Err`), and with it everything that future owns;
//!   `#[cancellable]` (in `ctxkit`) does the same for the awaited future and then returns like an
//!   early `return Err(..)`, so the fn's locals drop as on any early return. Nothing else is
//!   dropped or aborted: spawned tasks keep running until they look at their context.
//!   `deadlines.rs: run_ends_with_deadline_exceeded_and_drops_the_future`.
//! - **Deadlines fire by themselves, wherever they were made.** Deadlines on the real clock are
//!   kept by one process-wide timer thread (an ordered map, no task per deadline), so they fire
//!   on time with no runtime at all, in a runtime built without timers (no panic, also under
//!   `panic = "abort"`), and in a current-thread runtime that nobody drives (under `rt.enter()`,
//!   after `block_on` returned); also for a context that outlives its runtime. In a runtime
//!   whose clock is tokio's test clock (paused or advanced), deadlines follow that clock. `err()`
//!   reports a passed deadline at once in every case, also on a descendant that the deadline's
//!   walk (on another thread) has not reached yet (`deadline_race.rs`). No waker, callback or value `Drop` that
//!   panics on the timer thread stops it. `deadlines.rs`, `no_runtime.rs`; `timer_edges.rs:
//!   a_runtime_without_timers_fires_deadlines_without_panicking,
//!   deadlines_fire_under_a_runtime_that_is_entered_but_not_driven,
//!   deadlines_made_in_block_on_fire_after_it_returns,
//!   a_panicking_waker_does_not_stop_later_deadlines_outside_a_runtime`.
//! - **A cancelled or dropped deadline gives its memory back at once**: its timer entry is
//!   removed synchronously, as Go stops its timer. `deadline_memory.rs:
//!   dropped_deadlines_give_their_memory_back_at_once` (a burst of 200,000, counted by the
//!   allocator right after it and 200 ms later).
//! - **Callback threads are bounded.** An `after_func` callback runs on a task of a runtime that
//!   is being driven (a multi-thread runtime, or a current-thread one from inside its
//!   `block_on`); otherwise (no runtime, a current-thread runtime nobody drives now, a deadline
//!   fired by the timer thread) on a pool of at most 16 threads, inside the callback's runtime if
//!   it had one. Every callback runs exactly once, and `cancel()` only queues them: it never waits
//!   for a callback or a thread. Up to 16 callbacks that block run at once; more wait for one of
//!   them to return. `after_func_pool.rs:
//!   many_callbacks_run_exactly_once_on_a_bounded_number_of_threads,
//!   cancel_returns_while_every_callback_is_still_blocked`; `timer_edges.rs:
//!   after_func_runs_under_a_runtime_that_is_entered_but_not_driven`.
#![cfg_attr(docsrs, feature(doc_cfg))]

/// The helpers every downstream error with a `Context { kind, sent, source }` variant has
/// (`reqwest::Error`, `postgres::Error`): `$what` names the operation in the docs.
#[cfg(any(feature = "reqwest", feature = "postgres"))]
macro_rules! context_error_helpers {
    ($what:literal) => {
        fn unsent(kind: crate::Error) -> Error {
            Error::Context {
                kind,
                sent: false,
                source: None,
            }
        }

        #[doc = concat!("The context's kind when the ", $what, " failed because its context ended, `None` otherwise.")]
        pub fn kind(&self) -> Option<crate::Error> {
            match self {
                Error::Context { kind, .. } => Some(*kind),
                _ => None,
            }
        }

        #[doc = concat!("`true` when the context's deadline ended the ", $what, ".")]
        pub fn is_deadline_exceeded(&self) -> bool {
            self.kind() == Some(crate::Error::DeadlineExceeded)
        }

        #[doc = concat!("`true` when the context's cancellation ended the ", $what, ".")]
        pub fn is_canceled(&self) -> bool {
            self.kind() == Some(crate::Error::Canceled)
        }
    };
}

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;
mod after;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod axum;
mod blocking;
mod cancellable_call;
mod checkpoint;
mod context;
mod done;
mod early_drop;
mod error;
mod group;
mod handle;
mod key;
#[cfg(feature = "live")]
#[cfg_attr(docsrs, doc(cfg(feature = "live")))]
pub mod live;
pub mod missing;
#[cfg(feature = "nats")]
#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
pub mod nats;
mod observe;
#[cfg(feature = "opentelemetry")]
#[cfg_attr(docsrs, doc(cfg(feature = "opentelemetry")))]
pub mod opentelemetry;
#[cfg(not(loom))]
mod pool;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;
#[cfg(feature = "propagation")]
#[cfg_attr(docsrs, doc(cfg(feature = "propagation")))]
pub mod propagation;
mod race;
#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
pub mod reqwest;
#[cfg(feature = "retry")]
#[cfg_attr(docsrs, doc(cfg(feature = "retry")))]
pub mod retry;
mod scope;
#[cfg(not(loom))]
mod shutdown;
// tokio has no signal support under `--cfg loom` (the loom models need none).
#[cfg(all(feature = "signal", not(loom)))]
#[cfg_attr(docsrs, doc(cfg(feature = "signal")))]
pub mod signal;
#[cfg(feature = "stream")]
#[cfg_attr(docsrs, doc(cfg(feature = "stream")))]
mod stream;
mod sync;
mod task_set;
#[doc(hidden)]
pub mod test_hooks;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
pub mod thread;
mod timer;
#[cfg(feature = "tokio-util")]
mod token;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub mod tower;
#[cfg(feature = "tracing")]
#[cfg_attr(docsrs, doc(cfg(feature = "tracing")))]
pub mod tracing;
mod tree;
mod values;

pub use after::AfterFunc;
pub use blocking::{SpawnBlocking, spawn_blocking};
pub use checkpoint::checkpoint;
pub use context::Context;
pub use done::Done;
pub use error::{Cause, Error};
pub use group::{Group, TaskFailed};
pub use handle::CancelHandle;
pub use key::{BoxError, ContextKey};
#[cfg(feature = "retry")]
#[cfg_attr(docsrs, doc(cfg(feature = "retry")))]
pub use retry::{retry, retry_if};
pub use scope::{CurrentGuard, Run, Scoped, spawn};
#[cfg(not(loom))]
pub use shutdown::{GraceExpired, Shutdown, ShutdownRequested};
#[cfg(feature = "stream")]
#[cfg_attr(docsrs, doc(cfg(feature = "stream")))]
pub use stream::{ScopedStream, UntilDone};
pub use task_set::TaskSet;
#[cfg(feature = "tokio-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio-util")))]
pub use token::TokenCancelled;
/// Deadlines are tokio's instants, so they follow tokio's (pausable) clock.
pub use tokio::time::Instant;

pub use ctxkit_macros::{ContextKey, cancellable};

// The macros' generated code names `::ctxkit::__private`; this makes that path work inside this
// crate too.
extern crate self as ctxkit;
