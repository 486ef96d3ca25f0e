//! Reading the signature: is it an `async fn`, which parameter is the context, what does it
//! return. Problems are recorded; the expansion goes on with the best reading.

use proc_macro2::Span;
use quote::ToTokens;
use syn::visit_mut::{self, VisitMut};
use syn::{FnArg, Pat, PathArguments, ReturnType, Signature, Type};

use crate::errors::Errors;

/// Where the call's context comes from.
pub(crate) enum Source {
    /// `Context::current()` at the first poll.
    Implicit,
    /// The parameter with this name (typed `Context` or `&Context`).
    Param { ident: syn::Ident, ty: Box<Type> },
}

impl Source {
    /// The context parameter's name, which the body must not rebind.
    pub(crate) fn name(&self) -> Option<&syn::Ident> {
        match self {
            Source::Implicit => None,
            Source::Param { ident, .. } => Some(ident),
        }
    }
}

/// The declared return type: kept as written. It must be a `Result` whose error has
/// `From<ctxkit::Error>`; the compiler checks that (through `CancelResult`), so an alias is
/// whatever it names and nothing is guessed from the type's spelling.
pub(crate) struct Output {
    pub(crate) ty: Box<Type>,
    /// Where a bound the return type misses is reported (first and last token): on `E` of a
    /// visible `X<T, E>` (the usual miss is `From<ctxkit::Error>`), else on the whole type.
    pub(crate) bound_spans: (Span, Span),
    /// Where the type starts: the never-taken return of it is spanned there.
    pub(crate) type_span: Span,
}

impl Output {
    /// The type for the never-taken `let` that fixes the body's type: `impl Trait` cannot be
    /// named there, so it becomes `_` (inferred from the body), keeping the rest of the type.
    pub(crate) fn nameable(&self) -> Type {
        struct Erase;
        impl VisitMut for Erase {
            fn visit_type_mut(&mut self, ty: &mut Type) {
                if let Type::ImplTrait(it) = ty {
                    let underscore = syn::Token![_](it.impl_token.span);
                    *ty = Type::Infer(syn::TypeInfer {
                        attrs: Vec::new(),
                        underscore_token: underscore,
                    });
                } else {
                    visit_mut::visit_type_mut(self, ty);
                }
            }
        }
        let mut ty = (*self.ty).clone();
        Erase.visit_type_mut(&mut ty);
        ty
    }
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

/// The context parameter, if any. A second one is an error, and so is one the body could
/// replace (`&mut Context`, `mut ctx`): the call's context is fixed when it starts.
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
        if let Some(mutable) = mut_reference(&pt.ty) {
            errors.spanned(
                mutable,
                format_args!(
                    "`#[cancellable]` races every `.await` against the context `{}` has when the \
                     call starts, so assigning a new one through `&mut Context` would be ignored: \
                     take `&Context`. For a shorter deadline use `#[cancellable(timeout = \
                     \"250ms\")]`; to run part of the body under a derived context, move it into \
                     a `#[cancellable]` fn that takes the child as its context parameter",
                    pi.ident
                ),
            );
        }
        if let Some(mutable) = &pi.mutability {
            errors.spanned(
                mutable,
                format_args!(
                    "`#[cancellable]` races every `.await` against the context `{0}` has when the \
                     call starts, so assigning a new one to `{0}` would be ignored: remove `mut`. \
                     For a shorter deadline use `#[cancellable(timeout = \"250ms\")]`; to run part \
                     of the body under a derived context, move it into a `#[cancellable]` fn that \
                     takes the child as its context parameter",
                    pi.ident
                ),
            );
        }
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

/// The `&mut` of a context parameter's type, if it has one (at any depth).
fn mut_reference(ty: &Type) -> Option<proc_macro2::TokenStream> {
    match ty {
        Type::Reference(r) => match &r.mutability {
            Some(_) => Some(quote::quote!(#r)),
            None => mut_reference(&r.elem),
        },
        Type::Paren(p) => mut_reference(&p.elem),
        Type::Group(g) => mut_reference(&g.elem),
        _ => None,
    }
}

/// The return type, kept as written; `None` (with the error recorded) when it cannot be a
/// `Result`: none at all, an `impl Trait`, or one of the fn's type parameters.
pub(crate) fn output(sig: &Signature, errors: &mut Errors) -> Option<Output> {
    let ty = match &sig.output {
        ReturnType::Default => {
            errors.spanned(
                &sig.ident,
                "`#[cancellable]` ends the call with `Err(..)` when its context is done, so the \
                 fn must return a `Result`: add `-> Result<(), ctxkit::Error>` (or a `Result` of \
                 your own error type with `From<ctxkit::Error>`) and end the body with `Ok(())`",
            );
            return None;
        }
        ReturnType::Type(_, ty) => ty,
    };
    let type_param = match &**ty {
        Type::Path(p) if p.qself.is_none() => p.path.get_ident().filter(|ident| {
            sig.generics
                .type_params()
                .any(|param| param.ident == **ident)
        }),
        _ => None,
    };
    if matches!(&**ty, Type::ImplTrait(_)) || type_param.is_some() {
        errors.spanned(
            ty,
            format_args!(
                "`#[cancellable]` ends the call with `Err(..)` when its context is done, so the \
                 fn must return a `Result`: write `-> Result<{}, ctxkit::Error>` and return \
                 `Ok(..)`",
                readable(ty)
            ),
        );
        return None;
    }
    let bound_spans = match &**ty {
        Type::Path(p) => match p.path.segments.last().map(|s| &s.arguments) {
            Some(PathArguments::AngleBracketed(args)) if args.args.len() == 2 => {
                span_range(&args.args[1])
            }
            _ => span_range(ty),
        },
        _ => span_range(ty),
    };
    Some(Output {
        ty: ty.clone(),
        bound_spans,
        type_span: span_range(ty).0,
    })
}

/// The spans of the first and last tokens: generated code that starts at one and ends at the
/// other is reported on all of them (a joined span needs a nightly compiler).
fn span_range(tokens: &impl ToTokens) -> (Span, Span) {
    let mut iter = tokens.to_token_stream().into_iter();
    let first = iter.next().map_or_else(Span::call_site, |tt| tt.span());
    let last = iter.last().map_or(first, |tt| tt.span());
    (first, last)
}

/// A type as a user would write it (no spaces around `<`, `>` and `::`).
fn readable(ty: &Type) -> String {
    ty.to_token_stream()
        .to_string()
        .replace(" < ", "<")
        .replace("< ", "<")
        .replace(" <", "<")
        .replace(" >", ">")
        .replace(" :: ", "::")
        .replace(":: ", "::")
        .replace(" ,", ",")
}
