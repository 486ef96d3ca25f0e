//! Reading the signature: is it an `async fn`, which parameter is the context, what does it
//! return. Problems are recorded; the expansion goes on with the best reading.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::ToTokens;
use syn::spanned::Spanned;
use syn::{FnArg, Pat, PathArguments, ReturnType, Signature, Type};

use crate::errors::Errors;

/// Where the call's context comes from.
pub(crate) enum Source {
    /// `Context::current()` at the first poll.
    Implicit,
    /// The parameter with this name (typed `Context`, `&Context`).
    Param { ident: syn::Ident, ty: Box<Type> },
}

/// What the fn returns, and what the rewritten fn returns.
pub(crate) enum Output {
    /// `Result<T, E>` (or an alias such as `io::Result<T>`): kept; the context's error goes
    /// through `From`. `err_span` is where to report a missing `From<ctxkit::Error>`.
    Keep { ty: Box<Type>, err_span: Span },
    /// Any other `T` (`()` when omitted): the fn returns `Result<T, ctxkit::Error>`.
    Wrap { ty: Box<Type>, span: Span },
}

impl Output {
    /// The body's own type (what its `return`s and tail produce).
    pub(crate) fn body_ty(&self) -> &Type {
        match self {
            Output::Keep { ty, .. } | Output::Wrap { ty, .. } => ty,
        }
    }

    /// Whether the type can be named in a `let` (no `impl Trait` in it).
    pub(crate) fn nameable(&self) -> bool {
        !mentions_impl(self.body_ty().to_token_stream())
    }
}

fn mentions_impl(tokens: TokenStream) -> bool {
    tokens.into_iter().any(|tt| match tt {
        TokenTree::Ident(i) => i == "impl",
        TokenTree::Group(g) => mentions_impl(g.stream()),
        _ => false,
    })
}

/// `#[cancellable]` only makes sense on an `async fn`.
pub(crate) fn is_async(sig: &Signature, errors: &mut Errors) -> bool {
    if sig.asyncness.is_some() {
        return true;
    }
    errors.spanned(
        sig.fn_token,
        "`#[cancellable]` needs an `async fn`: make it `async`, or race the future against the \
         context where it is awaited with `ctx.run(fut).await`",
    );
    false
}

/// The context parameter, if any; a second one is an error.
pub(crate) fn source(sig: &Signature, errors: &mut Errors) -> Source {
    let mut found: Option<(syn::Ident, Box<Type>)> = None;
    for arg in &sig.inputs {
        let FnArg::Typed(pt) = arg else { continue };
        if !is_context(&pt.ty) {
            continue;
        }
        let Pat::Ident(pi) = &*pt.pat else {
            errors.spanned(
                &pt.pat,
                "`#[cancellable]` uses this `Context` parameter as the fn's context: bind it to a \
                 name, e.g. `ctx: &Context`",
            );
            continue;
        };
        match &found {
            Some((first, _)) => errors.spanned(
                pt,
                format_args!(
                    "`#[cancellable]` takes the fn's context from one parameter, but `{first}` and \
                     `{}` are both `Context`s: keep one (derive others inside the fn, e.g. with \
                     `{first}.with_cancel()`), or remove `#[cancellable]` and race the work \
                     yourself with `ctx.run(..)`",
                    pi.ident
                ),
            ),
            None => found = Some((pi.ident.clone(), pt.ty.clone())),
        }
    }
    match found {
        Some((ident, ty)) => Source::Param { ident, ty },
        None => Source::Implicit,
    }
}

/// `Context`, `&Context`, `&mut Context`, `ctxkit::Context`, but not `std::task::Context<'_>`.
fn is_context(ty: &Type) -> bool {
    match ty {
        Type::Reference(r) => is_context(&r.elem),
        Type::Paren(p) => is_context(&p.elem),
        Type::Group(g) => is_context(&g.elem),
        Type::Path(p) if p.qself.is_none() => {
            let segments = &p.path.segments;
            segments.last().is_some_and(|last| {
                last.ident == "Context" && matches!(last.arguments, PathArguments::None)
            }) && !segments.iter().any(|s| s.ident == "task")
        }
        _ => false,
    }
}

/// Keep a `…Result<..>` return type, wrap any other.
pub(crate) fn output(sig: &Signature) -> Output {
    let ty: Box<Type> = match &sig.output {
        ReturnType::Default => {
            return Output::Wrap {
                ty: Box::new(syn::parse_quote!(())),
                span: sig.paren_token.span.close(),
            };
        }
        ReturnType::Type(_, ty) => ty.clone(),
    };
    if let Type::Path(p) = &*ty
        && p.qself.is_none()
        && let Some(last) = p.path.segments.last()
        && last.ident == "Result"
    {
        let err_span = match &last.arguments {
            PathArguments::AngleBracketed(args) if args.args.len() >= 2 => args.args[1].span(),
            _ => ty.span(),
        };
        return Output::Keep { ty, err_span };
    }
    let span = ty.span();
    Output::Wrap { ty, span }
}
