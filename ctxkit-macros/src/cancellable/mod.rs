//! `#[cancellable]`: parse the arguments and the fn, validate the signature, rewrite the body,
//! expand around it.

mod args;
mod expand;
mod parse;
mod rewrite;
mod validate;

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;

use crate::errors::Errors;
use parse::FnItem;

/// The attribute's whole pipeline. After an error the fn is still emitted (rewritten with what
/// could be understood, or as written when it cannot be), so the user sees the precise error
/// rather than a cascade at every caller.
pub(crate) fn cancellable(args: TokenStream, input: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let args = args::parse_fn_args(args, &mut errors);
    let mut item: FnItem = match syn::parse2(input.clone()) {
        Ok(item) => item,
        Err(_) => {
            errors.push(not_a_fn(&input));
            let mut out = input;
            out.extend(errors.into_compile_errors());
            return out;
        }
    };
    let mut out = if validate::is_async(&item.sig, &mut errors) {
        expand::item(item, &args, &mut errors)
    } else {
        if let parse::Body::Block(block) = &mut item.body {
            rewrite::strip_shields(block);
        }
        item.into_token_stream()
    };
    out.extend(errors.into_compile_errors());
    out
}

/// The error for anything but a fn, on the item's keyword.
fn not_a_fn(input: &TokenStream) -> syn::Error {
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
        _ => ("this item", Span::call_site()),
    };
    syn::Error::new(
        span,
        format_args!("`#[cancellable]` goes on an `async fn`, not on {what}"),
    )
}
