//! What makes a type unfit to be a key, found before expanding.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{DeriveInput, GenericParam};

use crate::errors::Errors;

/// A key type ready to expand.
pub(crate) struct Checked {
    /// The input without its (reported) lifetime parameters.
    pub(crate) input: DeriveInput,
    /// The key type as written in the impls: `Key<'static, T, N>`, `'static` standing in for
    /// every removed lifetime parameter.
    pub(crate) self_ty: TokenStream,
}

/// Reports lifetime parameters (a key is looked up by its `TypeId`, so it must be `'static`) and
/// drops them: the expansion then uses `'static` in their place, which keeps the impl valid and
/// the user's other code free of follow-up errors.
pub(crate) fn key(mut input: DeriveInput, errors: &mut Errors) -> Checked {
    let ident = &input.ident;
    let mut args = Vec::new();
    for param in &input.generics.params {
        args.push(match param {
            GenericParam::Lifetime(l) => {
                errors.spanned(
                    &l.lifetime,
                    format_args!(
                        "context keys must be `'static`: remove the lifetime parameter `{}` from \
                         `{ident}` and store owned data (e.g. `String`, `Arc<T>`) instead",
                        l.lifetime
                    ),
                );
                quote!('static)
            }
            GenericParam::Type(t) => {
                let id = &t.ident;
                quote!(#id)
            }
            GenericParam::Const(c) => {
                let id = &c.ident;
                quote!(#id)
            }
        });
    }
    let self_ty = if args.is_empty() {
        quote!(#ident)
    } else {
        quote!(#ident<#(#args),*>)
    };
    let params = std::mem::take(&mut input.generics.params);
    input.generics.params = params
        .into_pairs()
        .filter(|p| !matches!(p.value(), GenericParam::Lifetime(_)))
        .collect();
    Checked { input, self_ty }
}
