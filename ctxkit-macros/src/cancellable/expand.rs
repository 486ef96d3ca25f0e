//! The expansion around the rewritten body. The signature is kept exactly as written:
//!
//! ```text
//! async fn f(args) -> R {
//!     let frame = __private::CallFrame::new(<ctx param, cloned | Context::current()>, <timeout>, "path::f");
//!     let frame = &frame;
//!     match __private::CallBody::new(frame, async move { <fake return of R>; <rewritten body> }).await {
//!         Ok(value) => value,                         // the body's own `R`
//!         Err(err) => __private::cancelled(err),      // R: CancelResult, i.e. Result<T, E>
//!     }                                               // with E: From<ctxkit::Error>
//! }
//! ```
//!
//! A body that does not parse gets the same expansion with its tokens left as they are
//! (speculative, as tracing-attributes does): rustc reports the syntax error, and nothing else
//! changes for the fn's callers.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};

use super::args::FnArgs;
use super::parse::{self, Body, FnItem};
use super::rewrite::{self, Names};
use super::validate::{self, Output, Source};
use crate::errors::Errors;
use crate::krate;

pub(crate) fn item(mut item: FnItem, args: &FnArgs, errors: &mut Errors) -> TokenStream {
    if !validate::is_async(&item.sig, errors) {
        return as_written(item);
    }
    let Body::Braced { brace, tokens } = &item.body else {
        errors.spanned(
            &item.sig.ident,
            "`#[cancellable]` has nothing to do on a declaration without a body (the signature is \
             kept as written): remove it here, and put it on the `async fn`s that implement this \
             one",
        );
        return as_written(item);
    };
    let (brace, tokens) = (*brace, tokens.clone());
    let source = validate::source(&item.sig, errors);
    let Some(output) = validate::output(&item.sig, errors) else {
        return as_written(item);
    };

    let private = krate::private(args.krate.as_ref());
    let frame = syn::Ident::new("__ctxkit_frame", Span::mixed_site());
    let (inner_attrs, stmts) = match parse::statements(tokens.clone()) {
        Ok(mut body) => {
            let names = Names {
                private: private.clone(),
                frame: frame.clone(),
                context: source.name(),
            };
            rewrite::body(&mut body.stmts, &names, errors);
            let stmts = &body.stmts;
            (body.inner_attrs, quote!(#(#stmts)*))
        }
        // Speculative: rustc reports the syntax error on the user's tokens.
        Err(_) => (Vec::new(), rewrite::strip_shields(tokens)),
    };

    let ctx = match &source {
        // A lookup that finds no context is reported at the fn's name (see `ctxkit::missing`).
        Source::Implicit => {
            let name = item.sig.ident.to_string();
            quote_spanned! {item.sig.ident.span()=>
                #private::implicit_context(
                    ::core::panic::Location::caller(),
                    ::core::option::Option::Some(::core::concat!(::core::module_path!(), "::", #name)),
                )
            }
        }
        Source::Param { ident, ty } => {
            let span = syn::spanned::Spanned::span(ty);
            quote_spanned!(span=> #private::context_of(&#ident))
        }
    };
    let timeout = match &args.timeout {
        Some(t) => {
            let n = t.nanos;
            quote_spanned!(t.span=> ::core::option::Option::Some(#n))
        }
        None => quote!(::core::option::Option::None),
    };
    // Spanned on the fn's name, path included (the call's location is where its first token
    // is): a timeout's origin (in `Debug` of its cause) names this fn's line, and so does the
    // live tree (with the fn's path).
    let fn_name = item.sig.ident.to_string();
    let frame_path = krate::respan(quote!(#private::CallFrame::new), item.sig.ident.span());
    let new_frame = quote_spanned! {item.sig.ident.span()=>
        #frame_path(
            #ctx,
            #timeout,
            ::core::concat!(::core::module_path!(), "::", #fn_name),
        )
    };
    let fake_return = fake_return(&output);
    let err = syn::Ident::new("__ctxkit_err", Span::mixed_site());
    let ok = syn::Ident::new("__ctxkit_ok", Span::mixed_site());
    // Spanned on the return type, where a type that is not a `Result`, or whose error lacks
    // `From<ctxkit::Error>`, is reported: the path starts at its first token and ends at its
    // last, so the report underlines all of it.
    let (first, last) = output.bound_spans;
    let path = krate::respan(quote!(#private::), first);
    let cancelled = quote_spanned!(last=> #path cancelled(#err));
    let frame_value = syn::Ident::new("__ctxkit_frame_value", Span::mixed_site());

    let body = quote! {
        #(#inner_attrs)*
        let #frame_value = #new_frame;
        let #frame = &#frame_value;
        match #private::CallBody::new(#frame, async move {
            #fake_return
            #stmts
        })
        .await
        {
            ::core::result::Result::Ok(#ok) => #ok,
            ::core::result::Result::Err(#err) => #cancelled,
        }
    };
    item.body = Body::Braced {
        brace,
        tokens: body,
    };
    item.into_token_stream()
}

/// The never-taken return of the declared type: it fixes the body's type before the body is
/// checked (so `?` and `return` infer), and makes type errors in the body point at the user's
/// return type. `impl Trait` in it becomes `_`.
fn fake_return(output: &Output) -> TokenStream {
    let span = output.type_span;
    let ty = output.nameable();
    let fake = syn::Ident::new("__ctxkit_fake_return", Span::mixed_site().located_at(span));
    quote_spanned! {span=>
        #[allow(
            unknown_lints,
            unreachable_code,
            clippy::diverging_sub_expression,
            clippy::empty_loop,
            clippy::let_unit_value,
            clippy::let_with_type_underscore,
            clippy::needless_return,
            clippy::unreachable
        )]
        if false {
            let #fake: #ty = loop {};
            return #fake;
        }
    }
}

/// The fn as written (but for `#[shield]`s, which only mean something after the rewrite), for a
/// fn the macro cannot expand: the error recorded says why, and callers still see the fn.
fn as_written(mut item: FnItem) -> TokenStream {
    if let Body::Braced { tokens, .. } = &mut item.body {
        *tokens = rewrite::strip_shields(std::mem::take(tokens));
    }
    item.into_token_stream()
}
