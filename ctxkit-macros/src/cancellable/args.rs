//! The `#[cancellable(..)]` and `#[shield(..)]` arguments. To add one: a field, a row in the
//! `ACCEPTED` text, a branch in the parser.

use proc_macro2::{Span, TokenStream};
use syn::LitStr;
use syn::meta::ParseNestedMeta;
use syn::parse::Parser;

use crate::args::{name_value, set_once, skip_value};
use crate::errors::Errors;

/// What the user wrote in `#[cancellable(..)]`.
#[derive(Default)]
pub(crate) struct FnArgs {
    /// `timeout = "250ms"`, in nanoseconds once validated.
    pub(crate) timeout: Option<Timeout>,
    /// `crate = path`: where `ctxkit` is, when it is re-exported.
    pub(crate) krate: Option<syn::Path>,
}

/// A validated `timeout = ".."` argument.
pub(crate) struct Timeout {
    pub(crate) nanos: u64,
    pub(crate) span: Span,
}

const ACCEPTED: &str = "`timeout = \"250ms\"` (units ns, us, ms, s, m, h) and \
                        `crate = path::to::ctxkit` (when ctxkit is re-exported)";

pub(crate) fn parse_fn_args(args: TokenStream, errors: &mut Errors) -> FnArgs {
    let mut out = FnArgs::default();
    let parser = syn::meta::parser(|meta| {
        if let Err(e) = parse_fn_arg(&meta, &mut out, errors) {
            errors.push(e);
        }
        Ok(())
    });
    if let Err(e) = parser.parse2(args) {
        errors.push(e);
    }
    out
}

fn parse_fn_arg(meta: &ParseNestedMeta, out: &mut FnArgs, errors: &mut Errors) -> syn::Result<()> {
    if meta.path.is_ident("timeout") {
        let timeout = timeout_value(meta)?;
        set_once(&mut out.timeout, timeout, &meta.path, errors);
    } else if meta.path.is_ident("crate") {
        let path = name_value(meta, "a path: `crate = path::to::ctxkit`", |input| {
            input.call(syn::Path::parse_mod_style)
        })?;
        set_once(&mut out.krate, path, &meta.path, errors);
    } else {
        return Err(unknown(meta, "cancellable", ACCEPTED));
    }
    Ok(())
}

/// What the user wrote in `#[shield(..)]` (nothing, or a timeout).
#[derive(Default)]
pub(crate) struct ShieldArgs {
    pub(crate) timeout: Option<Timeout>,
}

const SHIELD_ACCEPTED: &str = "`timeout = \"1s\"` (units ns, us, ms, s, m, h), or none";

pub(crate) fn parse_shield_args(attr: &syn::Attribute, errors: &mut Errors) -> ShieldArgs {
    let mut out = ShieldArgs::default();
    match &attr.meta {
        syn::Meta::Path(_) => {}
        syn::Meta::NameValue(nv) => errors.spanned(
            nv,
            "expected `#[shield]` or `#[shield(timeout = \"1s\")]`: the arguments go in parentheses",
        ),
        syn::Meta::List(_) => {
            let result = attr.parse_nested_meta(|meta| {
                let one = if meta.path.is_ident("timeout") {
                    timeout_value(&meta).map(|t| set_once(&mut out.timeout, t, &meta.path, errors))
                } else {
                    Err(unknown(&meta, "shield", SHIELD_ACCEPTED))
                };
                if let Err(e) = one {
                    errors.push(e);
                }
                Ok(())
            });
            errors.ok(result);
        }
    }
    out
}

fn unknown(meta: &ParseNestedMeta, attr: &str, accepted: &str) -> syn::Error {
    let name = quote::ToTokens::to_token_stream(&meta.path)
        .to_string()
        .replace(' ', "");
    let err = syn::Error::new_spanned(
        &meta.path,
        format_args!("unknown `{attr}` argument `{name}`; the accepted ones are {accepted}"),
    );
    match skip_value(meta) {
        Ok(()) => err,
        Err(e) => e,
    }
}

fn timeout_value(meta: &ParseNestedMeta) -> syn::Result<Timeout> {
    let lit = name_value(meta, "a duration string: `timeout = \"250ms\"`", |input| {
        input.parse::<LitStr>()
    })?;
    let nanos = parse_duration(&lit.value()).map_err(|msg| syn::Error::new(lit.span(), msg))?;
    Ok(Timeout {
        nanos,
        span: lit.span(),
    })
}

/// `"250ms"` → nanoseconds: a whole number and a unit, positive, at most `u64::MAX` ns.
pub(crate) fn parse_duration(text: &str) -> Result<u64, String> {
    const HELP: &str = "write a whole number followed by a unit: `ns`, `us`, `ms`, `s`, `m` or \
                        `h`, e.g. `timeout = \"250ms\"` or `timeout = \"2s\"`";
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit() && c != '_')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    let number: String = number.chars().filter(|&c| c != '_').collect();
    let per_unit: u64 = match unit {
        "ns" => 1,
        "us" | "µs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60 * 1_000_000_000,
        "h" => 3_600 * 1_000_000_000,
        "" if !number.is_empty() => {
            return Err(format!("timeout `{text}` has no unit; {HELP}"));
        }
        _ if number.is_empty() => return Err(format!("malformed timeout `{text}`; {HELP}")),
        fraction if fraction.starts_with(['.', ',']) => {
            return Err(format!(
                "timeout `{text}` is not a whole number: use a smaller unit instead of a \
                 fraction (e.g. \"1500ms\" for 1.5s); {HELP}"
            ));
        }
        spaced if spaced.starts_with(char::is_whitespace) => {
            return Err(format!(
                "timeout `{text}` has a space before its unit; write it without one, e.g. \
                 \"250ms\""
            ));
        }
        other => {
            return Err(format!(
                "unknown unit `{other}` in timeout `{text}`; {HELP}"
            ));
        }
    };
    if number.is_empty() {
        return Err(format!("malformed timeout `{text}`; {HELP}"));
    }
    let too_long = || {
        format!(
            "timeout `{text}` is too long: the limit is 2^64 nanoseconds (about 584 years); \
             for \"no timeout\" remove the argument"
        )
    };
    let count: u64 = number.parse().map_err(|_| too_long())?;
    let nanos = count.checked_mul(per_unit).ok_or_else(too_long)?;
    if nanos == 0 {
        return Err(format!(
            "a zero timeout would end every call before it starts; give a positive duration or \
             remove the argument (`{text}`)"
        ));
    }
    Ok(nanos)
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn durations_in_every_unit() {
        assert_eq!(parse_duration("250ms"), Ok(250_000_000));
        assert_eq!(parse_duration("1ns"), Ok(1));
        assert_eq!(parse_duration("3us"), Ok(3_000));
        assert_eq!(parse_duration("2s"), Ok(2_000_000_000));
        assert_eq!(parse_duration("1m"), Ok(60_000_000_000));
        assert_eq!(parse_duration("1h"), Ok(3_600_000_000_000));
        assert_eq!(parse_duration("1_500ms"), Ok(1_500_000_000));
    }

    #[test]
    fn bad_durations_say_why() {
        assert!(parse_duration("0s").unwrap_err().contains("zero"));
        assert!(parse_duration("10").unwrap_err().contains("no unit"));
        assert!(parse_duration("ms").unwrap_err().contains("malformed"));
        assert!(parse_duration("").unwrap_err().contains("malformed"));
        assert!(
            parse_duration("1.5s")
                .unwrap_err()
                .contains("not a whole number")
        );
        assert!(parse_duration("5 s").unwrap_err().contains("space"));
        assert!(
            parse_duration("10d")
                .unwrap_err()
                .contains("unknown unit `d`")
        );
        assert!(
            parse_duration("99999999999h")
                .unwrap_err()
                .contains("too long")
        );
        assert!(
            parse_duration("99999999999999999999999ns")
                .unwrap_err()
                .contains("too long")
        );
    }
}
