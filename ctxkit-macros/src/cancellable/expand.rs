//! The expansion around the rewritten body:
//!
//! ```text
//! async fn f(args) -> R' {
//!     let frame = __private::Frame::new(<ctx param clone | Context::current()>, <timeout>);
//!     let frame = &frame;
//!     match __private::Body::new(frame, async move { <fake return of R>; <rewritten body> }).await {
//!         Ok(v) => v,                                   // R' = R = Result<T, E>
//!         Err(e) => Err(__private::convert(e)),         // E: From<ctxkit::Error>
//!     }                                                 // (R' = Result<R, Error>: just the await)
//! }
//! ```

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use syn::ReturnType;

use super::args::FnArgs;
use super::parse::{Body, FnItem};
use super::rewrite::{self, Names};
use super::validate::{self, Output, Source};
use crate::errors::Errors;
use crate::krate;

pub(crate) fn item(mut item: FnItem, args: &FnArgs, errors: &mut Errors) -> TokenStream {
    let private = krate::private(args.krate.as_ref());
    let output = validate::output(&item.sig);
    if let Output::Wrap { ty, span } = &output {
        let wrapped = quote_spanned!(*span=> ::core::result::Result<#ty, #private::Error>);
        let arrow = match &item.sig.output {
            ReturnType::Type(arrow, _) => *arrow,
            ReturnType::Default => syn::Token![->](*span),
        };
        item.sig.output = ReturnType::Type(arrow, Box::new(syn::Type::Verbatim(wrapped)));
    }
    let Body::Block(block) = &mut item.body else {
        // A trait method declaration: only its return type changes, so that annotated impls
        // match it.
        return item.into_token_stream();
    };

    let source = validate::source(&item.sig, errors);
    let names = Names {
        private: private.clone(),
        frame: syn::Ident::new("__ctxkit_frame", Span::mixed_site()),
    };
    rewrite::body(block, &names, errors);
    let stmts = &block.stmts;
    let frame = &names.frame;

    let ctx = match &source {
        Source::Implicit => quote!(#private::Context::current()),
        Source::Param { ident, ty } => {
            let span = syn::spanned::Spanned::span(ty);
            quote_spanned!(span=> #private::context_of(&#ident))
        }
    };
    let timeout = match &args.timeout {
        Some(t) => {
            let n = t.nanos;
            quote_spanned!(t.span=> #private::Option::Some(#n))
        }
        None => quote!(#private::Option::None),
    };
    // Spanned on the fn's name: a timeout's origin (in `Debug` of its cause) names this fn.
    let new_frame = quote_spanned!(item.sig.ident.span()=> #private::Frame::new(#ctx, #timeout));

    // The never-taken return of the declared type fixes the async block's output type before
    // the body is checked (so `?` and `return` infer), and makes type errors in the body point
    // at the user's return type.
    let fake_return = if output.nameable() {
        let ty = output.body_ty();
        let span = match &output {
            Output::Keep { ty, .. } => syn::spanned::Spanned::span(ty),
            Output::Wrap { span, .. } => *span,
        };
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
    } else {
        TokenStream::new()
    };

    let body = quote! {
        #private::Body::new(#frame, async move {
            #fake_return
            #(#stmts)*
        })
        .await
    };
    let finish = match &output {
        Output::Wrap { .. } => body,
        Output::Keep { err_span, .. } => {
            let e = syn::Ident::new("__ctxkit_err", Span::mixed_site());
            let ok = syn::Ident::new("__ctxkit_ok", Span::mixed_site());
            let path = krate::respan(private.clone(), *err_span);
            let convert = quote_spanned!(*err_span=> #path::convert(#e));
            quote! {
                match #body {
                    #private::Result::Ok(#ok) => #ok,
                    #private::Result::Err(#e) => #private::Result::Err(#convert),
                }
            }
        }
    };

    let frame_value = syn::Ident::new("__ctxkit_frame_value", Span::mixed_site());
    let new_block: syn::Block = syn::parse_quote!({
        let #frame_value = #new_frame;
        let #frame = &#frame_value;
        #finish
    });
    *block = new_block;
    item.into_token_stream()
}
