//! The `#[context_key(..)]` arguments. To add one: a field here, a row in `ACCEPTED`, a branch in
//! `parse_one`.

use syn::Attribute;
use syn::meta::ParseNestedMeta;

use crate::args::{name_value, set_once, skip_value};
use crate::errors::Errors;

/// What the user wrote in every `#[context_key(..)]` on the key type.
#[derive(Default)]
pub(crate) struct KeyArgs {
    /// `value = Type`: a marker key carrying a `Type`; absent, the key is its own value.
    pub(crate) value: Option<syn::Type>,
    /// `crate = path`: where `ctxkit` is, when it is re-exported.
    pub(crate) krate: Option<syn::Path>,
    /// `header = "x-request-id"`: the key's value travels between processes in this header.
    pub(crate) header: Option<syn::LitStr>,
    /// `codec = path`: the value's text codec (a `KeyCodec`); `DisplayFromStr` when absent.
    pub(crate) codec: Option<syn::Path>,
    /// `record` or `record = "field"`: the received value is a field of the request's span
    /// (named `field`, else the header).
    pub(crate) record: Option<Record>,
    /// `debug`: the live request tree shows the value's `Debug`.
    pub(crate) debug: Option<syn::Path>,
}

/// The `record` argument.
pub(crate) struct Record {
    /// The argument's own tokens, for errors.
    pub(crate) path: syn::Path,
    /// `record = "field"`: the span field's name; `None` for the header's name.
    pub(crate) field: Option<syn::LitStr>,
}

/// The accepted arguments, for the "unknown argument" message.
const ACCEPTED: &str = "`value = Type` (a marker key carrying a `Type`), \
                        `header = \"x-name\"` (the value travels in this header), \
                        `codec = path::to::Codec` (its text form, with `header`), \
                        `record` or `record = \"field\"` (a field of the request's span, with \
                        `header`), \
                        `debug` (the live request tree shows the value's `Debug`) and \
                        `crate = path::to::ctxkit` (when ctxkit is re-exported)";

pub(crate) fn parse(attrs: &[Attribute], errors: &mut Errors) -> KeyArgs {
    let mut args = KeyArgs::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident("context_key")) {
        if attr.meta.require_list().is_err() {
            errors.spanned(
                attr,
                "expected `#[context_key(value = Type)]`: the arguments go in parentheses",
            );
            continue;
        }
        let result = attr.parse_nested_meta(|meta| {
            if let Err(e) = parse_one(&meta, &mut args, errors) {
                errors.push(e);
            }
            Ok(())
        });
        errors.ok(result);
    }
    if let (Some(codec), None) = (&args.codec, &args.header) {
        errors.spanned(
            codec,
            "`codec` is the text form of a travelling value: add `header = \"x-name\"` too",
        );
    }
    match (&args.record, &args.header) {
        (Some(record), None) => errors.spanned(
            &record.path,
            "`record` makes a received value a field of the request's span, so the key must \
             travel: add `header = \"x-name\"` too",
        ),
        (Some(record), Some(header)) => {
            let field = record.field.as_ref().unwrap_or(header).value();
            if SPAN_FIELDS.contains(&field.as_str()) {
                let message = format!(
                    "`{field}` is one of the request span's own fields: give the key a field of \
                     its own with `record = \"…\"`"
                );
                match &record.field {
                    Some(lit) => errors.spanned(lit, message),
                    None => errors.spanned(&record.path, message),
                }
            }
        }
        _ => {}
    }
    args
}

/// Headers with a meaning of their own, which no travelling key may use. A copy of
/// `ctxkit::propagation::RESERVED_HEADERS` (a proc-macro crate cannot import it);
/// `tests/derive.rs` in `ctxkit` checks that the two agree.
const RESERVED: [&str; 8] = [
    "grpc-timeout",
    "traceparent",
    "tracestate",
    "baggage",
    "ctxkit-deadline",
    "ctxkit-sent",
    "ctxkit-cancel",
    "ctxkit-error",
];

/// The request span's own fields, which no recorded key may use. A copy of
/// `ctxkit::tracing::REQUEST_SPAN_FIELDS`; `tests/tracing.rs` in `ctxkit` checks that they agree.
const SPAN_FIELDS: [&str; 11] = [
    "otel.name",
    "otel.kind",
    "http.request.method",
    "url.path",
    "rpc.system",
    "rpc.service",
    "rpc.method",
    "trace_id",
    "http.response.status_code",
    "rpc.grpc.status_code",
    "otel.status_code",
];

/// What to write when `record` is used without ctxkit's `tracing` feature.
const NEEDS_TRACING: &str = "`record` makes the value a field of the request's `tracing` span, which \
                             needs ctxkit's `tracing` feature: \
                             `ctxkit = { version = \"…\", features = [\"tracing\"] }`";

/// Why `field` cannot name a span field, if it cannot; `tracing`: whether ctxkit's `tracing`
/// feature is on.
fn record_problem(field: Option<&str>, tracing: bool) -> Option<String> {
    if !tracing {
        return Some(NEEDS_TRACING.to_owned());
    }
    match field {
        Some("") => Some(
            "the field name is empty; write `record` alone to use the header's name".to_owned(),
        ),
        Some(f) if f.chars().any(|c| c.is_whitespace() || c.is_control()) => Some(format!(
            "`{f}` has white space or control characters: span fields are identifiers such as `request_id`"
        )),
        _ => None,
    }
}

/// What to write when `header` is used without ctxkit's `propagation` feature.
const NEEDS_PROPAGATION: &str = "`header = \"…\"` makes the value travel between processes, which \
                                 needs ctxkit's `propagation` feature (or `http`, which enables it): \
                                 `ctxkit = { version = \"…\", features = [\"propagation\"] }`";

/// Why `name` cannot be a travelling key's header, if it cannot; `propagation`: whether ctxkit's
/// `propagation` feature is on.
fn header_problem(name: &str, propagation: bool) -> Option<String> {
    if !propagation {
        return Some(NEEDS_PROPAGATION.to_owned());
    }
    if name.is_empty() {
        return Some("the header name is empty".to_owned());
    }
    if let Some(c) = name.chars().find(|c| c.is_ascii_uppercase()) {
        return Some(format!(
            "header names are lower case here: write `{}` (`{c}` is upper case)",
            name.to_ascii_lowercase()
        ));
    }
    let token =
        |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "!#$%&'*+-.^_`|~".contains(c);
    if let Some(c) = name.chars().find(|&c| !token(c)) {
        return Some(format!("`{c}` cannot appear in a header name"));
    }
    if RESERVED.contains(&name) {
        return Some(format!(
            "`{name}` carries the context's own deadline or trace; pick another header"
        ));
    }
    None
}

fn parse_one(meta: &ParseNestedMeta, args: &mut KeyArgs, errors: &mut Errors) -> syn::Result<()> {
    if meta.path.is_ident("value") {
        let ty = name_value(
            meta,
            "a type: `value = Type`, e.g. `value = String`",
            |input| input.parse::<syn::Type>(),
        )?;
        set_once(&mut args.value, ty, &meta.path, errors);
    } else if meta.path.is_ident("header") {
        let lit = name_value(meta, "a string: `header = \"x-request-id\"`", |input| {
            input.parse::<syn::LitStr>()
        })?;
        if let Some(problem) = header_problem(&lit.value(), cfg!(feature = "propagation")) {
            errors.spanned(&lit, problem);
        }
        set_once(&mut args.header, lit, &meta.path, errors);
    } else if meta.path.is_ident("codec") {
        let path = name_value(meta, "a path: `codec = path::to::Codec`", |input| {
            input.parse::<syn::Path>()
        })?;
        set_once(&mut args.codec, path, &meta.path, errors);
    } else if meta.path.is_ident("record") {
        let field = if meta.input.peek(syn::Token![=]) {
            Some(name_value(
                meta,
                "a string: `record = \"request_id\"`",
                |input| input.parse::<syn::LitStr>(),
            )?)
        } else {
            None
        };
        let value = field.as_ref().map(syn::LitStr::value);
        if let Some(problem) = record_problem(value.as_deref(), cfg!(feature = "tracing")) {
            match &field {
                Some(lit) => errors.spanned(lit, problem),
                None => errors.spanned(&meta.path, problem),
            }
        }
        let record = Record {
            path: meta.path.clone(),
            field,
        };
        set_once(&mut args.record, record, &meta.path, errors);
    } else if meta.path.is_ident("debug") {
        set_once(&mut args.debug, meta.path.clone(), &meta.path, errors);
    } else if meta.path.is_ident("crate") {
        let path = name_value(meta, "a path: `crate = path::to::ctxkit`", |input| {
            input.call(syn::Path::parse_mod_style)
        })?;
        set_once(&mut args.krate, path, &meta.path, errors);
    } else {
        let name = quote::ToTokens::to_token_stream(&meta.path)
            .to_string()
            .replace(' ', "");
        let err = syn::Error::new_spanned(
            &meta.path,
            format_args!(
                "unknown `context_key` argument `{name}`; the accepted ones are {ACCEPTED}"
            ),
        );
        skip_value(meta)?;
        return Err(err);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{header_problem, record_problem};

    #[test]
    fn record_without_the_tracing_feature_names_the_feature() {
        let problem = record_problem(None, false).unwrap();
        assert!(problem.contains(r#"features = ["tracing"]"#), "{problem}");
        assert_eq!(record_problem(None, true), None);
        assert_eq!(record_problem(Some("request_id"), true), None);
        assert!(record_problem(Some(""), true).is_some());
        assert!(record_problem(Some("request id"), true).is_some());
    }

    #[test]
    fn a_header_without_the_propagation_feature_names_the_feature() {
        let problem = header_problem("x-request-id", false).unwrap();
        assert!(problem.contains("`propagation` feature"), "{problem}");
        assert!(
            problem.contains(r#"features = ["propagation"]"#),
            "{problem}"
        );
        assert_eq!(header_problem("x-request-id", true), None);
        assert!(header_problem("X-Request-Id", true).is_some());
        assert!(header_problem("ctxkit-deadline", true).is_some());
    }
}
