//! The path generated code uses to reach the runtime.

use proc_macro2::TokenStream;
use quote::quote;

/// `::ctxkit::__private`, or `<crate>::__private` for `crate = path` (re-exports).
pub(crate) fn private(krate: Option<&syn::Path>) -> TokenStream {
    match krate {
        Some(path) => quote!(#path::__private),
        None => quote!(::ctxkit::__private),
    }
}

/// `tokens` with every span set to `span`, so that generated code around user code reports
/// errors at the user's tokens.
pub(crate) fn respan(tokens: TokenStream, span: proc_macro2::Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut tt| {
            if let proc_macro2::TokenTree::Group(g) = &tt {
                let mut group = proc_macro2::Group::new(g.delimiter(), respan(g.stream(), span));
                group.set_span(span);
                tt = proc_macro2::TokenTree::Group(group);
            } else {
                tt.set_span(span);
            }
            tt
        })
        .collect()
}
