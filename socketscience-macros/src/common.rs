//! What the macros share: collecting errors, naming the item an attribute
//! was put on when it is the wrong kind of item, and the serde derive.

use proc_macro2::{TokenStream, TokenTree};
use quote::{quote, ToTokens};
use syn::Item;

/// Every problem found, combined into one error so the user sees them all
/// at once (serde's `Ctxt`).
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, e: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(e),
            None => self.0 = Some(e),
        }
    }

    pub(crate) fn spanned(&mut self, tokens: impl ToTokens, message: impl std::fmt::Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    pub(crate) fn into_compile_error(self) -> TokenStream {
        self.0
            .map(syn::Error::into_compile_error)
            .unwrap_or_default()
    }
}

/// The error for an attribute put on the wrong kind of item, spanned at the
/// item's keyword and name, followed by the item as written (so that the
/// rest of the program still finds it).
pub(crate) fn wrong_item(input: TokenStream, message: impl Fn(&str) -> String) -> TokenStream {
    let (tokens, what) = match syn::parse2::<Item>(input.clone()) {
        Ok(item) => describe(&item),
        Err(_) => (input.clone(), "this"),
    };
    let mut out = syn::Error::new_spanned(tokens, message(what)).into_compile_error();
    out.extend(input);
    out
}

/// The tokens naming an item (`fn ping`, `trait Ping`, ...) and what it is.
fn describe(item: &Item) -> (TokenStream, &'static str) {
    fn two(a: impl ToTokens, b: impl ToTokens) -> TokenStream {
        let mut t = a.into_token_stream();
        b.to_tokens(&mut t);
        t
    }
    match item {
        Item::Fn(f) => (two(f.sig.fn_token, &f.sig.ident), "a function"),
        Item::Struct(s) => (two(s.struct_token, &s.ident), "a struct"),
        Item::Enum(e) => (two(e.enum_token, &e.ident), "an enum"),
        Item::Union(u) => (two(u.union_token, &u.ident), "a union"),
        Item::Trait(t) => (two(t.trait_token, &t.ident), "a trait"),
        Item::Impl(i) => (i.impl_token.into_token_stream(), "an `impl` block"),
        Item::Mod(m) => (two(m.mod_token, &m.ident), "a module"),
        Item::Type(t) => (two(t.type_token, &t.ident), "a type alias"),
        Item::Const(c) => (two(c.const_token, &c.ident), "a constant"),
        Item::Static(s) => (two(s.static_token, &s.ident), "a static"),
        Item::Use(u) => (u.use_token.into_token_stream(), "a `use` declaration"),
        other => (other.into_token_stream(), "this item"),
    }
}

/// Whether `tokens` contain the keyword `impl` (an `impl Trait` type).
pub(crate) fn mentions_impl(tokens: TokenStream) -> bool {
    tokens.into_iter().any(|t| match t {
        TokenTree::Ident(i) => i == "impl",
        TokenTree::Group(g) => mentions_impl(g.stream()),
        _ => false,
    })
}

/// The serde derive that `#[message]` and `#[data]` put on their item,
/// through socketscience's own serde (users need no serde dependency).
pub(crate) fn serde_derive() -> TokenStream {
    quote! {
        #[derive(
            ::socketscience::__private::serde::Serialize,
            ::socketscience::__private::serde::Deserialize
        )]
        #[serde(crate = "::socketscience::__private::serde")]
    }
}
