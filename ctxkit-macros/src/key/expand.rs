//! The generated `ContextKey` impl and the `get` / `set` / `current` accessors.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{GenericParam, parse_quote};

use super::args::KeyArgs;
use super::validate::Checked;
use crate::krate;

pub(crate) fn key(checked: &Checked, args: &KeyArgs) -> TokenStream {
    let private = krate::private(args.krate.as_ref());
    let input = &checked.input;
    let self_ty = &checked.self_ty;
    let ident = &input.ident;
    let vis = &input.vis;

    // The value type, spanned on what the user wrote so that "not `Send`/`Sync`" points there.
    let (value, value_span) = match &args.value {
        Some(ty) => (quote!(#ty), ty.span()),
        None => (quote!(#self_ty), ident.span()),
    };

    // Generic keys get the bounds the trait needs (like `derive(Clone)` adds `T: Clone`): the
    // impl then exists exactly for the `'static`, `Send + Sync` instantiations.
    let mut generics = input.generics.clone();
    if generics
        .params
        .iter()
        .any(|p| !matches!(p, GenericParam::Lifetime(_)))
    {
        let where_clause = generics.make_where_clause();
        for param in &input.generics.params {
            if let GenericParam::Type(t) = param {
                let id = &t.ident;
                where_clause.predicates.push(parse_quote!(#id: 'static));
            }
        }
        where_clause
            .predicates
            .push(parse_quote!(#value: ::core::marker::Send + ::core::marker::Sync));
    }
    let (impl_generics, _, where_clause) = generics.split_for_impl();

    let value_item = quote_spanned!(value_span=> type Value = #value;);
    // Without ctxkit's `propagation` feature the trait has no travel items: `header` was
    // reported (args.rs), and the rest expands as for a key that stays in the process.
    let header = args
        .header
        .as_ref()
        .filter(|_| cfg!(feature = "propagation"));
    let travel_items = header.map(|header| {
        let codec = match &args.codec {
            Some(path) => quote!(#path),
            None => quote!(#private::DisplayFromStr),
        };
        let span = args.codec.as_ref().map_or(header.span(), |c| c.span());
        let codec_trait =
            quote_spanned!(span=> <#codec as #private::KeyCodec<<Self as #private::ContextKey>::Value>>);
        // Without ctxkit's `tracing` feature the trait has no `RECORD`: `record` was reported.
        let record = args
            .record
            .as_ref()
            .filter(|_| cfg!(feature = "tracing"))
            .map(|record| {
                let field = record.field.as_ref().unwrap_or(header);
                quote! {
                    const RECORD: ::core::option::Option<&'static str> =
                        ::core::option::Option::Some(#field);
                }
            });
        quote! {
            #record
            const HEADER: ::core::option::Option<&'static str> = ::core::option::Option::Some(#header);
            fn encode(
                value: &<Self as #private::ContextKey>::Value,
            ) -> ::core::option::Option<::std::string::String> {
                ::core::option::Option::Some(#codec_trait::encode(value))
            }
            fn decode(
                text: &str,
            ) -> ::core::result::Result<<Self as #private::ContextKey>::Value, #private::BoxError> {
                #codec_trait::decode(text)
            }
        }
    });
    // Without ctxkit's `live` feature the trait has no `debug` and nothing shows values: the
    // argument is accepted (a library's keys need not know whether an application looks) and
    // expands to nothing.
    let debug_item = args
        .debug
        .as_ref()
        .filter(|_| cfg!(feature = "live"))
        .map(|path| {
            quote_spanned! {path.span()=>
                fn debug(
                    value: &<Self as #private::ContextKey>::Value,
                ) -> ::core::option::Option<&dyn ::core::fmt::Debug> {
                    ::core::option::Option::Some(value)
                }
            }
        });
    let key_name = ident.to_string();
    let get_doc =
        format!("The `{key_name}` value of `ctx`: the nearest one towards the root, if any.");
    let set_doc = format!(
        "A child of `ctx` carrying `value` under `{key_name}` (`ctx` itself is unchanged)."
    );
    let current_doc = format!(
        "A clone of the `{key_name}` value of the current context (`Context::current()`), if \
         any. Needs a `Clone` value."
    );

    quote! {
        impl #impl_generics #private::ContextKey for #self_ty #where_clause {
            #value_item
            #travel_items
            #debug_item
        }

        impl #impl_generics #self_ty #where_clause {
            #[doc = #get_doc]
            #[inline]
            #[allow(dead_code)]
            #vis fn get(
                ctx: &#private::Context,
            ) -> ::core::option::Option<&<Self as #private::ContextKey>::Value> {
                ctx.value::<Self>()
            }

            #[doc = #set_doc]
            #[inline]
            #[allow(dead_code)]
            #vis fn set(
                ctx: &#private::Context,
                value: <Self as #private::ContextKey>::Value,
            ) -> #private::Context {
                ctx.with_value::<Self>(value)
            }

            #[doc = #current_doc]
            #[inline]
            #[track_caller]
            #[allow(dead_code)]
            #vis fn current<__CtxkitValue>() -> ::core::option::Option<__CtxkitValue>
            where
                Self: #private::ContextKey<Value = __CtxkitValue>,
                __CtxkitValue: #private::CurrentValue,
            {
                #private::Context::current()
                    .value::<Self>()
                    .map(::core::clone::Clone::clone)
            }
        }
    }
}
