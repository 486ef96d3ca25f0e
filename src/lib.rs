//! # ctxkit
//!
//! Go's `context` package, done right for async Rust: request cancellation, deadlines and typed
//! request-scoped values that flow through your code, your tasks and across process boundaries.
//!
//! This is the facade crate: it re-exports the runtime ([`Context`], handles, errors, keys) and
//! the macros. See the README for a tour and a table mapping Go's API to ctxkit's.
//!
//! ```
//! use std::time::Duration;
//! use ctxkit::{Context, Error};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let (ctx, _cancel) = Context::background().with_timeout(Duration::from_millis(20));
//! let slow = tokio::time::sleep(Duration::from_secs(5));
//! assert_eq!(ctx.run(slow).await, Err(Error::DeadlineExceeded));
//! # }
//! ```

pub use ctx_runtime::*;

pub use ctx_macros::{ContextKey, cancellable};
#[doc(hidden)]
pub use ctx_runtime::__private;

/// The README's examples run as doctests, so the README stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
