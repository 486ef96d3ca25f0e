//! The annotated item, read in two steps as tracing-attributes does: first its shape (a fn
//! signature followed by a body in braces, or by `;`), then its body's statements. A body that
//! does not parse is kept as tokens, so the expansion can still keep the signature and leave the
//! syntax error to rustc alone.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::parse::{Parse, ParseStream, Parser};
use syn::{Attribute, Block, Signature, Stmt, Token, Visibility, braced, token};

/// `#[attrs] vis [default] sig { body }` or `#[attrs] sig;`.
pub(crate) struct FnItem {
    pub(crate) attrs: Vec<Attribute>,
    pub(crate) vis: Visibility,
    pub(crate) defaultness: Option<Token![default]>,
    pub(crate) sig: Signature,
    pub(crate) body: Body,
}

pub(crate) enum Body {
    /// A body in braces, as tokens: it may not be valid Rust (the user may be typing).
    Braced {
        brace: token::Brace,
        tokens: TokenStream,
    },
    /// A trait method declaration.
    Semi(Token![;]),
}

/// A body that parses: its inner attributes (`#![allow(..)]`) and statements.
pub(crate) struct Statements {
    pub(crate) inner_attrs: Vec<Attribute>,
    pub(crate) stmts: Vec<Stmt>,
}

impl Parse for FnItem {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis: Visibility = input.parse()?;
        let defaultness = input.parse()?;
        let sig: Signature = input.parse()?;
        let body = if input.peek(Token![;]) {
            Body::Semi(input.parse()?)
        } else {
            let content;
            let brace = braced!(content in input);
            Body::Braced {
                brace,
                tokens: content.parse()?,
            }
        };
        Ok(FnItem {
            attrs,
            vis,
            defaultness,
            sig,
            body,
        })
    }
}

/// The statements of a body, or `Err` when it is not valid Rust.
pub(crate) fn statements(tokens: TokenStream) -> syn::Result<Statements> {
    let parser = |input: ParseStream| {
        Ok(Statements {
            inner_attrs: input.call(Attribute::parse_inner)?,
            stmts: input.call(Block::parse_within)?,
        })
    };
    parser.parse2(tokens)
}

impl ToTokens for FnItem {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        for attr in &self.attrs {
            attr.to_tokens(tokens);
        }
        self.vis.to_tokens(tokens);
        self.defaultness.to_tokens(tokens);
        self.sig.to_tokens(tokens);
        match &self.body {
            Body::Braced {
                brace,
                tokens: body,
            } => {
                brace.surround(tokens, |tokens| body.to_tokens(tokens));
            }
            Body::Semi(s) => s.to_tokens(tokens),
        }
    }
}
