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

#[cfg(test)]
mod tests {
    use super::derive;

    /// With ctxkit's `propagation` feature (on whenever ctxkit's is) the header is recorded.
    #[cfg(feature = "propagation")]
    #[test]
    fn a_header_is_recorded_on_the_key() {
        let out = derive(syn::parse_quote! {
            #[context_key(value = u64, header = "x-request-id")]
            struct RequestId;
        })
        .to_string();
        assert!(out.contains("const HEADER"), "{out}");
        assert!(!out.contains("compile_error"), "{out}");
    }

    /// `record` names the span field: the header's name, or the one given.
    #[cfg(all(feature = "propagation", feature = "tracing"))]
    #[test]
    fn record_names_the_span_field() {
        let out = derive(syn::parse_quote! {
            #[context_key(value = u64, header = "x-request-id", record)]
            struct RequestId;
        })
        .to_string();
        assert!(out.contains("const RECORD"), "{out}");
        assert!(out.contains(r#"Some ("x-request-id")"#), "{out}");
        let out = derive(syn::parse_quote! {
            #[context_key(value = u64, header = "x-request-id", record = "request_id")]
            struct RequestId;
        })
        .to_string();
        assert!(out.contains(r#"Some ("request_id")"#), "{out}");
        assert!(!out.contains("compile_error"), "{out}");
    }

    #[test]
    fn record_without_a_header_says_to_add_one() {
        let out = derive(syn::parse_quote! {
            #[context_key(value = u64, record)]
            struct RequestId;
        })
        .to_string();
        assert!(out.contains("add `header"), "{out}");
    }
}
