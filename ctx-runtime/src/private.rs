//! Support for the code that `ctxkit`'s macros generate. Not a public API: everything here may
//! change in any release; generated code reaches it only as `::ctxkit::__private::…`.

pub use crate::{BoxError, Context, ContextKey, DisplayFromStr, Error, KeyCodec};
pub use ::core::clone::Clone;
pub use ::core::option::Option;
pub use ::core::result::Result;
pub use ::std::string::String;

/// Bound of `K::current()`: the value is cloned out of the context, so it must be `Clone`. Its
/// own trait so the error says what to do.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not `Clone`, so `current()` cannot copy it out of the context",
    label = "`K::current()` needs a `Clone` value",
    note = "derive or implement `Clone` for `{Self}`, store an `Arc<{Self}>`, or borrow it with `K::get(&Context::current())`"
)]
pub trait CurrentValue: Clone {}
impl<T: Clone> CurrentValue for T {}
