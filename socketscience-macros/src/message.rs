//! `#[message("kind")]`: parse, validate, expand.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Expr, ExprLit, Lit, LitStr, MetaNameValue};

use crate::common::{serde_derive, wrong_item, Errors};

/// The parsed attribute and item.
struct Model {
    /// The kind as written, when it is a string literal.
    kind: Option<LitStr>,
    /// The reply kind of a question (`reply = Type`).
    reply: Option<syn::Type>,
    item: DeriveInput,
}

pub fn expand(attr: TokenStream, input: TokenStream) -> TokenStream {
    let item: DeriveInput = match syn::parse2(input.clone()) {
        Ok(item) => item,
        Err(_) => {
            return wrong_item(input, |what| {
                format!(
                    "`#[message]` goes on a struct or an enum holding the message's data, \
                     not on {what}: write `#[message(\"ping\")] pub struct Ping {{ .. }}`"
                )
            })
        }
    };
    let mut errors = Errors::default();
    let mut reply = None;
    let kind = parse_kind(attr, &mut errors, &mut reply);
    let model = Model { kind, reply, item };
    model.validate(&mut errors);
    model.expand(errors)
}

/// The kind: one string literal. Anything else is an error saying what to
/// write, with the kind when it can be guessed.
fn parse_kind(
    attr: TokenStream,
    errors: &mut Errors,
    reply: &mut Option<syn::Type>,
) -> Option<LitStr> {
    if attr.is_empty() {
        errors.push(syn::Error::new(
            Span::call_site(),
            "`#[message]` needs the message's kind, a string: write `#[message(\"ping\")]`",
        ));
        return None;
    }
    let mut tokens = attr.clone().into_iter();
    let first = tokens.next();
    if let Some(kind) = first
        .clone()
        .and_then(|t| syn::parse2::<LitStr>(t.into()).ok())
    {
        let rest: Vec<TokenTree> = tokens.collect();
        // A trailing comma is fine; anything after it is not.
        let extra = match rest.first() {
            Some(TokenTree::Punct(p)) if p.as_char() == ',' => &rest[1..],
            _ => &rest[..],
        };
        // A question: `reply = Type`.
        if let [TokenTree::Ident(name), TokenTree::Punct(eq), ty @ ..] = extra {
            if name == "reply" && eq.as_char() == '=' {
                let ty: TokenStream = ty.iter().cloned().collect();
                let ty: TokenStream = match ty.clone().into_iter().last() {
                    Some(TokenTree::Punct(p)) if p.as_char() == ',' => {
                        let n = ty.clone().into_iter().count();
                        ty.into_iter().take(n - 1).collect()
                    }
                    _ => ty,
                };
                match syn::parse2::<syn::Type>(ty.clone()) {
                    Ok(t) => *reply = Some(t),
                    Err(_) => errors.spanned(
                        if ty.is_empty() { quote!(#eq) } else { ty },
                        "the reply must name a message type: write `reply = Location`",
                    ),
                }
                return Some(kind);
            }
        }
        if !extra.is_empty() {
            errors.spanned(
                extra.iter().cloned().collect::<TokenStream>(),
                "`#[message]` takes the kind and, for a question, its reply kind \
                 (`#[message(\"where_are_you\", reply = Location)]`): remove this",
            );
        }
        return Some(kind);
    }
    if let (Some(TokenTree::Ident(ident)), None) = (&first, tokens.next()) {
        errors.spanned(
            ident,
            format!(
                "the kind must be a string literal, in quotes: write `#[message(\"{ident}\")]`"
            ),
        );
        return None;
    }
    if let Ok(MetaNameValue {
        value: Expr::Lit(ExprLit {
            lit: Lit::Str(kind),
            ..
        }),
        ..
    }) = syn::parse2::<MetaNameValue>(attr.clone())
    {
        errors.spanned(
            attr,
            format!(
                "write the kind alone, without a name: `#[message({})]`",
                quote!(#kind)
            ),
        );
        return Some(kind);
    }
    errors.spanned(
        attr,
        "the kind must be a string literal: write `#[message(\"ping\")]`",
    );
    None
}

impl Model {
    fn validate(&self, errors: &mut Errors) {
        if let Some(kind) = &self.kind {
            let value = kind.value();
            if value.is_empty() {
                errors.spanned(
                    kind,
                    "the kind is empty: name it, as in `#[message(\"ping\")]`",
                );
            } else if value.starts_with('_') {
                let suggestion = match value.trim_start_matches('_') {
                    "" => "ping",
                    rest => rest,
                };
                errors.spanned(
                    kind,
                    format!(
                        "kinds starting with `_` are reserved for socketscience's metadata: \
                         write `#[message(\"{suggestion}\")]`"
                    ),
                );
            }
        }
        if let Data::Union(u) = &self.item.data {
            errors.spanned(
                u.union_token,
                "`#[message]` cannot go on a union: use a struct or an enum",
            );
        }
        let generics = &self.item.generics;
        if !generics.params.is_empty() {
            let message = if generics.lifetimes().count() == generics.params.len() {
                "a message type cannot borrow: messages are decoded into owned values; \
                 remove the lifetime and use owned fields such as `String`"
            } else {
                "a message type cannot be generic: each kind is decoded into one concrete type; \
                 remove the type parameters and use concrete field types, one type per kind"
            };
            errors.spanned(generics, message);
        } else if let Some(where_clause) = &generics.where_clause {
            errors.spanned(
                where_clause,
                "a message type cannot have a `where` clause: remove it",
            );
        }
    }

    /// Whether the item can carry the derive and the impls at all.
    fn can_derive(&self) -> bool {
        let generics = &self.item.generics;
        !matches!(self.item.data, Data::Union(_))
            && generics.params.is_empty()
            && generics.where_clause.is_none()
    }

    fn expand(self, errors: Errors) -> TokenStream {
        let item = &self.item;
        if !self.can_derive() {
            // The item as written, so that the rest of the program still
            // resolves it; the error says why it is not a message.
            let errors = errors.into_compile_error();
            return quote! { #errors #item };
        }
        let ident = &item.ident;
        let derive = serde_derive();
        let kind_value = self.kind.as_ref().map(LitStr::value).unwrap_or_default();
        let kind = LitStr::new(&kind_value, Span::call_site());
        let doc = format!(
            "Sends this `{kind_value}` message to every instance in the room, this one included, \
             through the process's default node (see `socketscience::Node::scope`).\n\n\
             Never blocks: the message is queued for the node's sender task.\n\n\
             # Errors\n\n\
             Fails when no node runs, when the node's queue is full, or when the message \
             can never fit the transport."
        );
        let question_impl = self.reply.as_ref().map(|reply| {
            quote_spanned! {reply.span()=>
                #[automatically_derived]
                impl ::socketscience::ask::Question for #ident {
                    type Reply = #reply;
                }
            }
        });
        let message_impl = quote! {
            #[automatically_derived]
            impl ::socketscience::Message for #ident {
                const KIND: &'static str = #kind;
            }
            #question_impl

            #[allow(dead_code)]
            impl #ident {
                #[doc = #doc]
                pub fn broadcast(self) -> ::socketscience::Result<()> {
                    ::socketscience::__private::broadcast(self)
                }
            }
        };
        if !errors.is_empty() {
            // The type with its impls but unregistered: handlers and
            // `broadcast()` calls of this type do not cascade into errors.
            let errors = errors.into_compile_error();
            return quote! { #errors #derive #item #message_impl };
        }
        quote! {
            #derive
            #item
            #message_impl
            ::socketscience::__private::inventory::submit! {
                ::socketscience::__private::MessageType::new(
                    #kind,
                    ::core::concat!(::core::module_path!(), "::", ::core::stringify!(#ident)),
                )
            }
        }
    }
}
