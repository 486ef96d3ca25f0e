//! What the code `ctxkit`'s macros generate reaches, and nothing else: not a public API, it may
//! change in any release. Generated code names std items as `::core::…` and these as
//! `::ctxkit::__private::…`. The traits are here for the bounds they put on user code, so that an
//! error names them by this path.

pub use crate::cancellable_call::{
    AsContext, CallBody, CallFrame, CancelError, CancelResult, ShieldGuard, await_point, cancelled,
    context_of, shielded,
};
pub use crate::key::CurrentValue;
#[cfg(feature = "propagation")]
pub use crate::propagation::{DisplayFromStr, KeyCodec};
pub use crate::scope::current_at as implicit_context;
pub use crate::{BoxError, Context, ContextKey};
