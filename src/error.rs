//! Why a context ended: [`Error`] (the kind) and [`Cause`] (the reason, with where it came from).

use std::fmt;
use std::panic::Location;
use std::sync::Arc;

use crate::Instant;

/// How a context ended: Go's `context.Canceled` and `context.DeadlineExceeded`.
///
/// `Context::err()` returns `None` while the context is live and one of these, fixed forever,
/// once it is done.
///
/// ```
/// use ctxkit::{Context, Error};
///
/// let (ctx, cancel) = Context::background().with_cancel();
/// assert_eq!(ctx.err(), None);
/// cancel.cancel();
/// assert_eq!(ctx.err(), Some(Error::Canceled));
/// assert_eq!(Error::Canceled.to_string(), "context canceled");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Error {
    /// The context was cancelled: its handle's `cancel()` was called or the handle was dropped,
    /// or an ancestor was cancelled.
    Canceled,
    /// The context's deadline (or an ancestor's) passed.
    DeadlineExceeded,
}

impl Error {
    /// `true` for [`Error::DeadlineExceeded`].
    pub fn is_deadline_exceeded(&self) -> bool {
        matches!(self, Error::DeadlineExceeded)
    }

    /// `true` for [`Error::Canceled`].
    pub fn is_canceled(&self) -> bool {
        matches!(self, Error::Canceled)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::Canceled => "context canceled",
            Error::DeadlineExceeded => "context deadline exceeded",
        })
    }
}

impl std::error::Error for Error {}

impl From<Error> for std::io::Error {
    /// A deadline becomes [`std::io::ErrorKind::TimedOut`], a cancellation
    /// [`std::io::ErrorKind::Interrupted`], so `io::Result` functions can be `#[cancellable]`.
    fn from(e: Error) -> Self {
        let kind = match e {
            Error::Canceled => std::io::ErrorKind::Interrupted,
            Error::DeadlineExceeded => std::io::ErrorKind::TimedOut,
        };
        std::io::Error::new(kind, e)
    }
}

/// Where a cancellation came from; kept in every [`Cause`] so that "why was I cancelled?" has
/// an answer (golang/go#26356).
#[derive(Clone, Copy)]
pub(crate) enum Origin {
    /// `cancel()` was called at this place.
    Called(&'static Location<'static>),
    /// The handle made at this place was dropped without an explicit `cancel()`.
    Dropped(&'static Location<'static>),
    /// The deadline set at this place passed.
    Deadline {
        set_at: &'static Location<'static>,
        at: Instant,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Called(l) => write!(f, "cancel() called at {l}"),
            Origin::Dropped(l) => write!(f, "cancel handle created at {l} was dropped"),
            Origin::Deadline { set_at, .. } => write!(f, "deadline set at {set_at} passed"),
        }
    }
}

/// The reason a context was cancelled: any error, shared cheaply, plus where the cancellation came
/// from.
///
/// A plain `cancel()` (or a handle's drop) gives the [`Error`] itself as cause; a deadline gives
/// [`Error::DeadlineExceeded`] unless the `_cause` constructor named another one. `Debug` names the
/// origin: the `file:line` of the `cancel()` call, of the dropped handle's creation, or of the
/// deadline that fired.
///
/// `Cause` does not implement `std::error::Error` itself (it converts *from* every error, like
/// `anyhow::Error`); use [`Cause::as_error`] or convert it into a `Box<dyn Error>`.
///
/// ```
/// use ctxkit::{Cause, Context};
///
/// #[derive(Debug)]
/// struct Shutdown;
/// impl std::fmt::Display for Shutdown {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         f.write_str("server shutting down")
///     }
/// }
/// impl std::error::Error for Shutdown {}
///
/// let (ctx, cancel) = Context::background().with_cancel();
/// cancel.cancel_with(Shutdown);
/// let cause = ctx.cause().unwrap();
/// assert!(cause.downcast_ref::<Shutdown>().is_some());
/// assert_eq!(cause.to_string(), "server shutting down");
/// assert!(format!("{cause:?}").contains(file!()));
/// ```
#[derive(Clone)]
pub struct Cause {
    error: Reason,
    origin: Option<Origin>,
}

/// A [`Cause`] that is a context [`Error`] from a call or a dropped handle (or from nowhere):
/// what nearly every cancellation stores, in a few bytes instead of a whole `Cause`.
#[derive(Clone, Copy)]
pub(crate) struct PlainCause {
    pub(crate) error: Error,
    pub(crate) origin: PlainOrigin,
}

/// The origin of a [`PlainCause`].
#[derive(Clone, Copy)]
pub(crate) enum PlainOrigin {
    None,
    Called(&'static Location<'static>),
    Dropped(&'static Location<'static>),
}

impl Cause {
    /// This cause as a [`PlainCause`], if it is one.
    pub(crate) fn to_plain(&self) -> Option<PlainCause> {
        let Reason::Context(error) = self.error else {
            return None;
        };
        let origin = match self.origin {
            None => PlainOrigin::None,
            Some(Origin::Called(l)) => PlainOrigin::Called(l),
            Some(Origin::Dropped(l)) => PlainOrigin::Dropped(l),
            Some(Origin::Deadline { .. }) => return None,
        };
        Some(PlainCause { error, origin })
    }
}

impl From<PlainCause> for Cause {
    fn from(p: PlainCause) -> Cause {
        let origin = match p.origin {
            PlainOrigin::None => None,
            PlainOrigin::Called(l) => Some(Origin::Called(l)),
            PlainOrigin::Dropped(l) => Some(Origin::Dropped(l)),
        };
        Cause {
            error: Reason::Context(p.error),
            origin,
        }
    }
}

/// A plain `Error` needs no allocation; anything else is shared.
#[derive(Clone)]
enum Reason {
    Context(Error),
    Other(Arc<dyn std::error::Error + Send + Sync + 'static>),
}

impl Cause {
    pub(crate) fn with_origin(mut self, origin: Origin) -> Cause {
        if self.origin.is_none() {
            self.origin = Some(origin);
        }
        self
    }

    pub(crate) fn from_error(e: Error, origin: Origin) -> Cause {
        Cause {
            error: Reason::Context(e),
            origin: Some(origin),
        }
    }

    /// The cause as an error, e.g. to return it or to walk its `source()` chain.
    pub fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        match &self.error {
            Reason::Context(e) => e,
            Reason::Other(e) => &**e,
        }
    }

    /// The cause as `E`, if it is one.
    pub fn downcast_ref<E: std::error::Error + 'static>(&self) -> Option<&E> {
        let e: &(dyn std::error::Error + 'static) = self.as_error();
        e.downcast_ref::<E>()
    }

    /// `true` if the cause is an `E`.
    pub fn is<E: std::error::Error + 'static>(&self) -> bool {
        self.downcast_ref::<E>().is_some()
    }

    /// The deadline whose passing caused the cancellation, if a deadline did.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ctxkit::Context;
    ///
    /// let (ctx, _cancel) = Context::background().with_timeout(Duration::ZERO);
    /// assert_eq!(ctx.cause().unwrap().deadline(), ctx.deadline());
    /// ```
    pub fn deadline(&self) -> Option<Instant> {
        match self.origin {
            Some(Origin::Deadline { at, .. }) => Some(at),
            _ => None,
        }
    }

    /// The place in the code the cancellation came from (the `cancel()` call, the dropped
    /// handle's creation, the deadline's setting), when known.
    #[cfg(feature = "tracing")]
    pub(crate) fn origin_location(&self) -> Option<&'static Location<'static>> {
        self.origin.map(|o| match o {
            Origin::Called(l) | Origin::Dropped(l) => l,
            Origin::Deadline { set_at, .. } => set_at,
        })
    }

    /// Where the cancellation came from, as text (`cancel() called at src/main.rs:12:5`, …), when
    /// known.
    pub fn origin(&self) -> Option<String> {
        self.origin.map(|o| o.to_string())
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for Cause {
    fn from(error: E) -> Self {
        let e: &(dyn std::error::Error + 'static) = &error;
        // A context `Error` passed in as a cause stays allocation-free and comparable.
        if let Some(ce) = e.downcast_ref::<Error>() {
            return Cause {
                error: Reason::Context(*ce),
                origin: None,
            };
        }
        Cause {
            error: Reason::Other(Arc::new(error)),
            origin: None,
        }
    }
}

impl From<Cause> for Box<dyn std::error::Error + Send + Sync + 'static> {
    fn from(c: Cause) -> Self {
        match c.error {
            Reason::Context(e) => Box::new(e),
            Reason::Other(e) => Box::new(SharedError(e)),
        }
    }
}

impl AsRef<dyn std::error::Error + Send + Sync + 'static> for Cause {
    fn as_ref(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self.as_error()
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_error(), f)
    }
}

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Cause");
        d.field("error", &self.as_error());
        if let Some(o) = &self.origin {
            d.field("origin", &format_args!("{o}"));
        }
        d.finish()
    }
}

/// An `Arc`'d error as a `Box`able error (the cause's own error is shared, not cloned).
struct SharedError(Arc<dyn std::error::Error + Send + Sync + 'static>);

impl fmt::Debug for SharedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}
impl fmt::Display for SharedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}
impl std::error::Error for SharedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}
