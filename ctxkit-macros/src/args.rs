//! Helpers shared by the argument parsers of both macros.

use proc_macro2::TokenTree;
use syn::Token;
use syn::meta::ParseNestedMeta;

use crate::errors::Errors;

/// Stores an argument's value, or records "given twice" on its name.
pub(crate) fn set_once<T>(slot: &mut Option<T>, value: T, name: &syn::Path, errors: &mut Errors) {
    if slot.is_some() {
        let id = name
            .get_ident()
            .map(ToString::to_string)
            .unwrap_or_default();
        errors.spanned(name, format_args!("`{id}` is given twice; keep one"));
    } else {
        *slot = Some(value);
    }
}

/// Consumes whatever follows an argument's name (`= value` or `(...)`) up to the next top-level
/// comma, so that one bad argument does not hide the others.
pub(crate) fn skip_value(meta: &ParseNestedMeta) -> syn::Result<()> {
    meta.input.step(|cursor| {
        let mut rest = *cursor;
        while let Some((tt, next)) = rest.token_tree() {
            if matches!(&tt, TokenTree::Punct(p) if p.as_char() == ',') {
                break;
            }
            rest = next;
        }
        Ok(((), rest))
    })
}

/// `name = <value>` where `<value>` is parsed by `parse`; a missing `=` or a malformed value gives
/// `expected` as the message, on the offending tokens.
pub(crate) fn name_value<T>(
    meta: &ParseNestedMeta,
    expected: &str,
    parse: impl FnOnce(syn::parse::ParseStream) -> syn::Result<T>,
) -> syn::Result<T> {
    if !meta.input.peek(Token![=]) {
        let err = meta.error(format_args!("expected {expected}"));
        skip_value(meta)?;
        return Err(err);
    }
    let input = meta.value()?;
    parse(input).or_else(|e| {
        skip_value(meta)?;
        Err(syn::Error::new(
            e.span(),
            format_args!("expected {expected}"),
        ))
    })
}
