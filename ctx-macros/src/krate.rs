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
