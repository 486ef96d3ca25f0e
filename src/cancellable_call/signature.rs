//! What a `#[cancellable]` fn's signature must satisfy, as traits whose unmet bounds say what to
//! write: the context parameter is a `ctxkit::Context`, and the return type is a `Result` whose
//! error can hold the context's error.

use crate::{Context, Error};

/// What a `#[cancellable]` fn accepts as its explicit context parameter.
#[diagnostic::on_unimplemented(
    message = "`#[cancellable]` takes a parameter typed `Context` as the fn's context, but `{Self}` is not `ctxkit::Context`",
    label = "not a `ctxkit::Context`",
    note = "import this other type under another name (`use path::to::Context as AppContext;`) so that `#[cancellable]` does not take it for the fn's context"
)]
pub trait AsContext {
    /// The context, cloned.
    fn to_context(&self) -> Context;
}

impl AsContext for Context {
    #[inline]
    fn to_context(&self) -> Context {
        self.clone()
    }
}

impl<T: AsContext + ?Sized> AsContext for &T {
    #[inline]
    fn to_context(&self) -> Context {
        (**self).to_context()
    }
}

// The macro rejects a `&mut Context` parameter; this keeps its expansion free of a second error.
impl<T: AsContext + ?Sized> AsContext for &mut T {
    #[inline]
    fn to_context(&self) -> Context {
        (**self).to_context()
    }
}

/// The explicit context parameter, cloned.
#[inline]
pub fn context_of<C: AsContext + ?Sized>(ctx: &C) -> Context {
    ctx.to_context()
}

/// The return type of a `#[cancellable]` fn: what the call returns when its context is done
/// first. Implemented for `Result<T, E>` only, so a type alias (`io::Result<T>`,
/// `anyhow::Result<T>`, an application's `ApiResult<T>`) is whatever it names, and any other
/// type is an error at the fn's return type that says what to write.
#[diagnostic::on_unimplemented(
    message = "`#[cancellable]` fn returns `Err(..)` when its context is done, but `{Self}` is not a `Result`",
    label = "return `Result<{Self}, ctxkit::Error>` here (or a `Result` of your own error type with `From<ctxkit::Error>`)",
    note = "`#[cancellable]` keeps the signature as written, so the cancellation must be part of it"
)]
pub trait CancelResult {
    /// The `E` of `Result<T, E>`.
    type Error;

    /// `Err(err)`.
    fn from_error(err: Self::Error) -> Self;
}

impl<T, E> CancelResult for Result<T, E> {
    type Error = E;

    #[inline]
    fn from_error(err: E) -> Self {
        Err(err)
    }
}

/// The error type of a `#[cancellable]` fn returning `Result<T, E>` must absorb the context's
/// error. Its own trait, required of `E` itself, so that the error names `E` and says what to
/// add.
#[diagnostic::on_unimplemented(
    message = "`#[cancellable]` returns `Err(..)` when cancelled, but `{Self}` cannot hold a `ctxkit::Error`",
    label = "the trait `From<ctxkit::Error>` is not implemented for `{Self}`",
    note = "add `impl From<ctxkit::Error> for {Self}` (e.g. a `Cancelled(ctxkit::Error)` variant), or return `Result<T, ctxkit::Error>`"
)]
pub trait CancelError: From<Error> {}

impl<E: From<Error>> CancelError for E {}

/// The value a call returns when its context is done first (the expansion spans this call on the
/// fn's return type, where an unmet bound is reported).
#[inline]
pub fn cancelled<R>(err: Error) -> R
where
    R: CancelResult,
    R::Error: CancelError,
{
    R::from_error(R::Error::from(err))
}
