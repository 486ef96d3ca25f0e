//! The body rewrite: every `.await` the fn itself suspends at goes through the runtime's
//! checks, `#[shield]` statements get their guard, and the context parameter is never rebound.
//!
//! Rewritten: `.await`s anywhere in the fn's own control flow, including nested blocks, `if`,
//! `match`, loops and `let … else`. Left alone: closures and async blocks (their awaits belong to
//! another future, which cannot return from this fn), nested items (their own code) and macro
//! invocations (their tokens are not Rust syntax until they expand).

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{ToTokens, quote, quote_spanned};
use syn::visit_mut::{self, VisitMut};
use syn::{Attribute, Block, Expr, Stmt};

use super::args;
use crate::errors::Errors;
use crate::krate;

/// The names the rewritten body uses (mixed-site, so user code cannot see or shadow them).
pub(crate) struct Names<'a> {
    pub(crate) private: TokenStream,
    pub(crate) frame: syn::Ident,
    /// The context parameter, which the body must not rebind.
    pub(crate) context: Option<&'a syn::Ident>,
}

/// Rewrites the statements of a body in place.
pub(crate) fn body(stmts: &mut Vec<Stmt>, names: &Names, errors: &mut Errors) {
    let mut block = Block {
        brace_token: Default::default(),
        stmts: std::mem::take(stmts),
    };
    Rewriter {
        names,
        shield: None,
        errors,
    }
    .visit_block_mut(&mut block);
    *stmts = block.stmts;
}

/// Removes every `#[shield]` / `#[shield(..)]` from tokens that are emitted without the rewrite
/// (a body that does not parse, or a fn the macro cannot expand), so that rustc does not add
/// "cannot find attribute `shield`" to the error that matters. Groups without a shield are kept
/// as they came: rebuilding one would lose the exact spans of its delimiters, and rustc would
/// report a syntax error in it twice (once on the user's tokens, once on the rebuilt ones).
pub(crate) fn strip_shields(tokens: TokenStream) -> TokenStream {
    if !has_shield(&tokens) {
        return tokens;
    }
    let mut out = Vec::new();
    let mut iter = tokens.into_iter().peekable();
    while let Some(tt) = iter.next() {
        match tt {
            TokenTree::Punct(p) if p.as_char() == '#' => {
                if iter.peek().is_some_and(is_shield_attr) {
                    iter.next();
                    continue;
                }
                out.push(TokenTree::Punct(p));
            }
            TokenTree::Group(g) if has_shield(&g.stream()) => {
                let mut stripped =
                    proc_macro2::Group::new(g.delimiter(), strip_shields(g.stream()));
                stripped.set_span(g.span());
                out.push(TokenTree::Group(stripped));
            }
            tt => out.push(tt),
        }
    }
    out.into_iter().collect()
}

/// `[shield]` or `[shield(..)]`, after a `#`.
fn is_shield_attr(tt: &TokenTree) -> bool {
    matches!(tt, TokenTree::Group(g)
        if g.delimiter() == proc_macro2::Delimiter::Bracket
            && matches!(g.stream().into_iter().next(), Some(TokenTree::Ident(i)) if i == "shield"))
}

fn has_shield(tokens: &TokenStream) -> bool {
    let mut after_hash = false;
    tokens.clone().into_iter().any(|tt| {
        let found = (after_hash && is_shield_attr(&tt))
            || matches!(&tt, TokenTree::Group(g) if has_shield(&g.stream()));
        after_hash = matches!(&tt, TokenTree::Punct(p) if p.as_char() == '#');
        found
    })
}

struct Rewriter<'a> {
    names: &'a Names<'a>,
    /// The guard of the shielded statement being rewritten, if any.
    shield: Option<syn::Ident>,
    errors: &'a mut Errors,
}

impl VisitMut for Rewriter<'_> {
    fn visit_block_mut(&mut self, block: &mut Block) {
        let stmts = std::mem::take(&mut block.stmts);
        let last = stmts.len().saturating_sub(1);
        for (i, mut stmt) in stmts.into_iter().enumerate() {
            let shields = take_shield_attrs(&mut stmt);
            match self.shield_of(&stmt, shields) {
                Some(shield) => self.shielded(&mut block.stmts, stmt, shield, i == last),
                None => {
                    self.visit_stmt_mut(&mut stmt);
                    block.stmts.push(stmt);
                }
            }
        }
    }

    fn visit_expr_mut(&mut self, expr: &mut Expr) {
        match expr {
            Expr::Await(aw) => {
                self.visit_expr_mut(&mut aw.base);
                let base = &aw.base;
                // The call is spanned on the user's `.await`: with a feature that records await
                // sites, `#[track_caller]` reports that place; errors about the awaited value
                // point at the user's expression, which keeps its own spans.
                let span = aw.await_token.span;
                let private = krate::respan(self.names.private.clone(), span);
                let wrapped = match &self.shield {
                    None => {
                        let frame = &self.names.frame;
                        quote_spanned!(span=> #private::await_point(#frame, #base))
                    }
                    Some(guard) => quote_spanned!(span=> #private::shielded(&#guard, #base)),
                };
                *aw.base = Expr::Verbatim(wrapped);
            }
            Expr::Closure(c) => Stray(self.errors).visit_expr_mut(&mut c.body),
            Expr::Async(a) => Stray(self.errors).visit_block_mut(&mut a.block),
            Expr::Macro(_) => {}
            _ => visit_mut::visit_expr_mut(self, expr),
        }
    }

    /// A binding of the context parameter's name would silently not become the call's context.
    fn visit_pat_ident_mut(&mut self, pi: &mut syn::PatIdent) {
        if let Some(ctx) = self.names.context
            && pi.ident == *ctx
        {
            self.errors.spanned(
                &pi.ident,
                format_args!(
                    "`{ctx}` is this `#[cancellable]` fn's context: its `.await`s race the context \
                     it was called with, and rebinding the name changes neither that nor what \
                     callees see as the current context. For a shorter deadline use \
                     `#[cancellable(timeout = \"250ms\")]`; to run part of the body under a \
                     derived context, move that part into a `#[cancellable]` fn that takes the \
                     child as its context parameter (or await `child.run(fut)`); to keep a copy, \
                     give it another name"
                ),
            );
        }
        visit_mut::visit_pat_ident_mut(self, pi);
    }

    fn visit_item_mut(&mut self, _: &mut syn::Item) {}
    fn visit_macro_mut(&mut self, _: &mut syn::Macro) {}
}

impl Rewriter<'_> {
    /// The `#[shield]` on `stmt`, `None` for no (usable) shield. Misplaced shields are reported
    /// here.
    fn shield_of(&mut self, stmt: &Stmt, shields: Vec<Attribute>) -> Option<Shield> {
        let mut shields = shields.into_iter();
        let attr = shields.next()?;
        for extra in shields {
            self.errors.spanned(
                &extra,
                "`#[shield]` is given twice on this statement; keep one",
            );
        }
        let args = args::parse_shield_args(&attr, self.errors);
        if self.shield.is_some() {
            self.errors.spanned(
                &attr,
                "this statement is already inside a `#[shield]` statement; remove the inner \
                 `#[shield]`",
            );
            return None;
        }
        if let Stmt::Item(_) = stmt {
            self.errors.spanned(
                &attr,
                "`#[shield]` goes on a statement with an `.await` (`let` or expression), not on \
                 an item",
            );
            return None;
        }
        if !may_suspend(stmt.to_token_stream()) {
            self.errors.spanned(
                &attr,
                "`#[shield]` protects the `.await`s of its statement from cancellation, but this \
                 statement has no `.await`: remove `#[shield]`",
            );
            return None;
        }
        Some(Shield {
            timeout: args.timeout.map(|t| t.nanos),
            span: syn::spanned::Spanned::span(&attr),
        })
    }

    /// `let guard = frame.shield(..); <stmt, awaits shielded>; drop(guard);`
    fn shielded(&mut self, out: &mut Vec<Stmt>, mut stmt: Stmt, shield: Shield, last: bool) {
        let frame = &self.names.frame;
        let guard = syn::Ident::new("__ctxkit_shield", Span::mixed_site());
        let timeout = match shield.timeout {
            Some(n) => quote!(::core::option::Option::Some(#n)),
            None => quote!(::core::option::Option::None),
        };
        // Spanned on the attribute: a bounded shield's deadline names it as its origin.
        let enter = quote_spanned!(shield.span=> #frame.shield(#timeout));
        out.push(syn::parse_quote!(let #guard = #enter;));
        self.shield = Some(guard.clone());
        self.visit_stmt_mut(&mut stmt);
        self.shield = None;
        match stmt {
            // A tail expression: keep its value as the block's.
            Stmt::Expr(expr, None) if last => {
                let value = syn::Ident::new("__ctxkit_value", Span::mixed_site());
                out.push(syn::parse_quote!(let #value = #expr;));
                out.push(syn::parse_quote!(::core::mem::drop(#guard);));
                out.push(Stmt::Expr(syn::parse_quote!(#value), None));
            }
            stmt => {
                out.push(stmt);
                out.push(syn::parse_quote!(::core::mem::drop(#guard);));
            }
        }
    }
}

/// A usable `#[shield]`: its timeout in nanoseconds, if bounded, and where it was written.
struct Shield {
    timeout: Option<u64>,
    span: Span,
}

/// Inside closures and async blocks: nothing is rewritten, but a `#[shield]` there is a mistake
/// worth a clear message.
struct Stray<'a>(&'a mut Errors);

impl VisitMut for Stray<'_> {
    fn visit_stmt_mut(&mut self, stmt: &mut Stmt) {
        for attr in take_shield_attrs(stmt) {
            self.0.spanned(
                &attr,
                "`#[shield]` works on statements of the `#[cancellable]` fn itself, not inside \
                 closures or async blocks (their `.await`s are not raced against the context)",
            );
        }
        visit_mut::visit_stmt_mut(self, stmt);
    }
    fn visit_item_mut(&mut self, _: &mut syn::Item) {}
    fn visit_macro_mut(&mut self, _: &mut syn::Macro) {}
}

/// Removes and returns the `#[shield]` / `#[shield(..)]` attributes of a statement (for an
/// expression statement they sit on its leftmost sub-expression).
fn take_shield_attrs(stmt: &mut Stmt) -> Vec<Attribute> {
    let attrs = match stmt {
        Stmt::Local(l) => &mut l.attrs,
        Stmt::Macro(m) => &mut m.attrs,
        Stmt::Item(_) => return take_item_shields(stmt),
        Stmt::Expr(e, _) => {
            let mut found = Vec::new();
            let mut cur = Some(e);
            while let Some(e) = cur {
                if let Some(attrs) = expr_attrs(e) {
                    found.extend(take_shields(attrs));
                }
                cur = leftmost(e);
            }
            return found;
        }
    };
    take_shields(attrs)
}

fn take_item_shields(stmt: &mut Stmt) -> Vec<Attribute> {
    let Stmt::Item(item) = stmt else {
        return Vec::new();
    };
    let attrs = match item {
        syn::Item::Fn(i) => &mut i.attrs,
        syn::Item::Const(i) => &mut i.attrs,
        syn::Item::Static(i) => &mut i.attrs,
        syn::Item::Struct(i) => &mut i.attrs,
        syn::Item::Enum(i) => &mut i.attrs,
        syn::Item::Use(i) => &mut i.attrs,
        syn::Item::Impl(i) => &mut i.attrs,
        _ => return Vec::new(),
    };
    take_shields(attrs)
}

fn take_shields(attrs: &mut Vec<Attribute>) -> Vec<Attribute> {
    let (shields, rest) = std::mem::take(attrs)
        .into_iter()
        .partition(|a| a.path().is_ident("shield"));
    *attrs = rest;
    shields
}

/// The leftmost sub-expression, where a statement's outer attributes may have been attached.
fn leftmost(e: &mut Expr) -> Option<&mut Expr> {
    Some(match e {
        Expr::Await(x) => &mut x.base,
        Expr::Try(x) => &mut x.expr,
        Expr::MethodCall(x) => &mut x.receiver,
        Expr::Field(x) => &mut x.base,
        Expr::Call(x) => &mut x.func,
        Expr::Index(x) => &mut x.expr,
        Expr::Cast(x) => &mut x.expr,
        Expr::Binary(x) => &mut x.left,
        Expr::Assign(x) => &mut x.left,
        Expr::Range(x) => x.start.as_mut()?,
        _ => return None,
    })
}

fn expr_attrs(e: &mut Expr) -> Option<&mut Vec<Attribute>> {
    Some(match e {
        Expr::Array(x) => &mut x.attrs,
        Expr::Assign(x) => &mut x.attrs,
        Expr::Async(x) => &mut x.attrs,
        Expr::Await(x) => &mut x.attrs,
        Expr::Binary(x) => &mut x.attrs,
        Expr::Block(x) => &mut x.attrs,
        Expr::Break(x) => &mut x.attrs,
        Expr::Call(x) => &mut x.attrs,
        Expr::Cast(x) => &mut x.attrs,
        Expr::Closure(x) => &mut x.attrs,
        Expr::Field(x) => &mut x.attrs,
        Expr::ForLoop(x) => &mut x.attrs,
        Expr::If(x) => &mut x.attrs,
        Expr::Index(x) => &mut x.attrs,
        Expr::Let(x) => &mut x.attrs,
        Expr::Loop(x) => &mut x.attrs,
        Expr::Macro(x) => &mut x.attrs,
        Expr::Match(x) => &mut x.attrs,
        Expr::MethodCall(x) => &mut x.attrs,
        Expr::Paren(x) => &mut x.attrs,
        Expr::Path(x) => &mut x.attrs,
        Expr::Range(x) => &mut x.attrs,
        Expr::Reference(x) => &mut x.attrs,
        Expr::Return(x) => &mut x.attrs,
        Expr::Struct(x) => &mut x.attrs,
        Expr::Try(x) => &mut x.attrs,
        Expr::Tuple(x) => &mut x.attrs,
        Expr::Unary(x) => &mut x.attrs,
        Expr::Unsafe(x) => &mut x.attrs,
        Expr::While(x) => &mut x.attrs,
        _ => return None,
    })
}

/// Whether the tokens may suspend: an `.await` anywhere, or a macro invocation (a shield over
/// `tokio::select!` still keeps the call from being stopped inside it, though its awaits cannot
/// be seen).
fn may_suspend(tokens: TokenStream) -> bool {
    let mut before_prev: Option<TokenTree> = None;
    let mut prev: Option<TokenTree> = None;
    for tt in tokens {
        let suspends = match (&before_prev, &prev, &tt) {
            (_, Some(TokenTree::Punct(dot)), TokenTree::Ident(i)) => {
                dot.as_char() == '.' && i == "await"
            }
            (Some(TokenTree::Ident(_)), Some(TokenTree::Punct(bang)), TokenTree::Group(_)) => {
                bang.as_char() == '!'
            }
            _ => false,
        };
        if suspends || matches!(&tt, TokenTree::Group(g) if may_suspend(g.stream())) {
            return true;
        }
        before_prev = prev;
        prev = Some(tt);
    }
    false
}
