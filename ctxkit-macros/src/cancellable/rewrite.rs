//! The body rewrite: every `.await` the fn itself suspends at goes through the runtime's checks,
//! and `#[shield]` statements get their guard.
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
pub(crate) struct Names {
    pub(crate) private: TokenStream,
    pub(crate) frame: syn::Ident,
}

/// Rewrites `block` in place.
pub(crate) fn body(block: &mut Block, names: &Names, errors: &mut Errors) {
    Rewriter {
        names,
        shield: None,
        errors,
    }
    .visit_block_mut(block);
}

/// Removes every `#[shield]` in `block`, reporting them, for the expansion of a fn that could
/// not be rewritten (so rustc does not add "cannot find attribute `shield`").
pub(crate) fn strip_shields(block: &mut Block) {
    struct Strip;
    impl VisitMut for Strip {
        fn visit_stmt_mut(&mut self, stmt: &mut Stmt) {
            drop(take_shield_attrs(stmt));
            visit_mut::visit_stmt_mut(self, stmt);
        }
        fn visit_item_mut(&mut self, _: &mut syn::Item) {}
    }
    Strip.visit_block_mut(block);
}

struct Rewriter<'a> {
    names: &'a Names,
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
                Some(timeout) => self.shielded(&mut block.stmts, stmt, timeout, i == last),
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
                // Spanned where the user's expression starts, so that errors about the whole
                // `x.await` (or `x.await?`) underline the user's code.
                let span = syn::spanned::Spanned::span(&**base);
                let private = krate::respan(self.names.private.clone(), span);
                let wrapped = match &self.shield {
                    None => {
                        let frame = &self.names.frame;
                        quote_spanned!(span=> #private::checked(#frame, #base))
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

    fn visit_item_mut(&mut self, _: &mut syn::Item) {}
    fn visit_macro_mut(&mut self, _: &mut syn::Macro) {}
}

impl Rewriter<'_> {
    /// The timeout (nanos) of a `#[shield]` on `stmt`, `Some(None)` for an unbounded one, `None`
    /// for no (usable) shield. Misplaced shields are reported here.
    fn shield_of(&mut self, stmt: &Stmt, shields: Vec<Attribute>) -> Option<Option<u64>> {
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
        Some(args.timeout.map(|t| t.nanos))
    }

    /// `let guard = frame.shield(..); <stmt, awaits shielded>; drop(guard);`
    fn shielded(&mut self, out: &mut Vec<Stmt>, mut stmt: Stmt, timeout: Option<u64>, last: bool) {
        let private = &self.names.private;
        let frame = &self.names.frame;
        let guard = syn::Ident::new("__ctxkit_shield", Span::mixed_site());
        let timeout = match timeout {
            Some(n) => quote!(#private::Option::Some(#n)),
            None => quote!(#private::Option::None),
        };
        out.push(syn::parse_quote!(let #guard = #frame.shield(#timeout);));
        self.shield = Some(guard.clone());
        self.visit_stmt_mut(&mut stmt);
        self.shield = None;
        match stmt {
            // A tail expression: keep its value as the block's.
            Stmt::Expr(expr, None) if last => {
                let value = syn::Ident::new("__ctxkit_value", Span::mixed_site());
                out.push(syn::parse_quote!(let #value = #expr;));
                out.push(syn::parse_quote!(#private::drop(#guard);));
                out.push(Stmt::Expr(syn::parse_quote!(#value), None));
            }
            stmt => {
                out.push(stmt);
                out.push(syn::parse_quote!(#private::drop(#guard);));
            }
        }
    }
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
