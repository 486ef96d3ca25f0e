//! What the code `ctxkit`'s macros generate reaches, and nothing else: not a public API, it may
//! change in any release. Generated code names std items as `::core::…` and these as
//! `::ctxkit::__private::…`.

pub use crate::cancellable_call::{
    AsContext, AwaitPoint, CallBody, CallFrame, CancelError, CancelResult, ShieldGuard,
    ShieldedAwait, await_point, cancelled, context_of, shielded,
};
pub use crate::key::CurrentValue;
pub use crate::{BoxError, Context, ContextKey, DisplayFromStr, Error, KeyCodec};
