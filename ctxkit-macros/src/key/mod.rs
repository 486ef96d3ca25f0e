//! `#[derive(ContextKey)]`: parse the `#[context_key(..)]` arguments, validate the key type,
//! expand to the trait impl and the accessors.

mod args;
mod expand;
mod validate;

use proc_macro2::TokenStream;

use crate::errors::Errors;

/// The derive's whole pipeline. Errors are reported together; the impl is still emitted (with
/// what could be understood) so the user sees the precise errors, not a cascade of
/// "`ContextKey` is not implemented" at every use of the key.
pub(crate) fn derive(input: syn::DeriveInput) -> TokenStream {
    let mut errors = Errors::default();
    let args = args::parse(&input.attrs, &mut errors);
    let input = validate::key(input, &mut errors);
    let mut out = expand::key(&input, &args);
    out.extend(errors.into_compile_errors());
    out
}
