//! The runtime of [ctxkit](https://docs.rs/ctxkit): Go's `context` for async Rust, on tokio.
//!
//! Most users depend on the `ctxkit` crate, which re-exports everything here together with the
//! `#[cancellable]` and `#[derive(ContextKey)]` macros.
//!
//! A [`Context`] carries a cancellation signal, an optional deadline and typed request-scoped
//! values through a tree: deriving a child never changes its parent, cancelling a parent cancels
//! every descendant, and dropping a [`CancelHandle`] cancels too, so nothing leaks.
//!
//! ```
//! use std::time::Duration;
//! use ctx_runtime::{Context, Error};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let (request, _cancel) = Context::background().with_timeout(Duration::from_millis(100));
//! let (subtask, _cancel_subtask) = request.with_cancel();
//!
//! request.done().await; // the deadline fires without anyone polling
//! assert_eq!(subtask.err(), Some(Error::DeadlineExceeded));
//! # }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;
mod after;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod axum;
mod checkpoint;
mod context;
mod done;
mod error;
mod group;
mod handle;
mod key;
mod node;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod propagation;
mod scope;
pub mod signal;
mod sync;
mod timer;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub mod tower;

pub use after::AfterFunc;
pub use checkpoint::checkpoint;
pub use context::Context;
pub use done::Done;
pub use error::{Cause, Error};
pub use group::{Group, TaskFailed};
pub use handle::{CancelCauseHandle, CancelHandle};
pub use key::{BoxError, ContextKey, DisplayFromStr, KeyCodec};
pub use scope::{Run, Scoped, spawn};
/// Deadlines are tokio's instants, so they follow tokio's (pausable) clock.
pub use tokio::time::Instant;
