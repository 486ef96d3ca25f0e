//! `#[cancellable]`: parse the arguments and the fn's shape, validate the signature, rewrite the
//! body, expand around it.

mod args;
mod expand;
mod parse;
mod rewrite;
mod validate;

use proc_macro2::{Span, TokenStream};

use crate::errors::Errors;
use parse::FnItem;

/// The attribute's whole pipeline. After an error the fn is still emitted (rewritten with what
/// could be understood, or as written when it cannot be), so the user sees the precise error
/// rather than a cascade at every caller; a body that does not parse is left to rustc.
pub(crate) fn cancellable(args: TokenStream, input: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let args = args::parse_fn_args(args, &mut errors);
    let mut out = match syn::parse2::<FnItem>(input.clone()) {
        Ok(item) => expand::item(item, &args, &mut errors),
        Err(_) => not_a_fn(input, &mut errors),
    };
    out.extend(errors.into_compile_errors());
    out
}

/// The item is not a fn: say so on its keyword. Tokens that are no item at all (a signature
/// being typed) are left to rustc, whose syntax error is the one that matters.
fn not_a_fn(input: TokenStream, errors: &mut Errors) -> TokenStream {
    let (what, span) = match syn::parse2::<syn::Item>(input.clone()) {
        Ok(syn::Item::Struct(s)) => ("a struct", s.struct_token.span),
        Ok(syn::Item::Enum(e)) => ("an enum", e.enum_token.span),
        Ok(syn::Item::Impl(i)) => (
            "an impl block; put it on each `async fn` inside",
            i.impl_token.span,
        ),
        Ok(syn::Item::Trait(t)) => (
            "a trait; put it on each `async fn` inside",
            t.trait_token.span,
        ),
        Ok(syn::Item::Mod(m)) => ("a module", m.mod_token.span),
        Ok(syn::Item::Const(c)) => ("a const", c.const_token.span),
        Ok(syn::Item::Static(s)) => ("a static", s.static_token.span),
        Ok(_) => ("this item", Span::call_site()),
        Err(_) => return rewrite::strip_shields(input),
    };
    errors.push(syn::Error::new(
        span,
        format_args!("`#[cancellable]` goes on an `async fn`, not on {what}"),
    ));
    input
}
