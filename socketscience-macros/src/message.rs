//! `#[message("kind")]`: parse, validate, expand.

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, LitStr};

/// The parsed attribute and item.
struct Model {
    kind: Option<LitStr>,
    item: DeriveInput,
}

pub fn expand(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item: DeriveInput = match syn::parse2(item.clone()) {
        Ok(item) => item,
        Err(_) => {
            let e = syn::Error::new(
                Span::call_site(),
                "`#[message]` goes on a struct or an enum",
            );
            let mut out = e.into_compile_error();
            out.extend(item);
            return out;
        }
    };
    let mut errors = Errors::default();
    let kind = parse_kind(attr, &mut errors);
    let model = Model { kind, item };
    model.validate(&mut errors);
    model.expand(errors.take())
}

#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, e: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(e),
            None => self.0 = Some(e),
        }
    }
    fn take(self) -> Option<syn::Error> {
        self.0
    }
}

fn parse_kind(attr: TokenStream, errors: &mut Errors) -> Option<LitStr> {
    if attr.is_empty() {
        errors.push(syn::Error::new(
            Span::call_site(),
            "`#[message]` needs the message's kind: write `#[message(\"ping\")]`",
        ));
        return None;
    }
    match syn::parse2::<LitStr>(attr.clone()) {
        Ok(kind) => Some(kind),
        Err(_) => {
            errors.push(syn::Error::new_spanned(
                attr,
                "expected the kind as one string literal: `#[message(\"ping\")]`",
            ));
            None
        }
    }
}

impl Model {
    fn validate(&self, errors: &mut Errors) {
        if let Some(kind) = &self.kind {
            let value = kind.value();
            if value.is_empty() {
                errors.push(syn::Error::new_spanned(
                    kind,
                    "the kind is empty: name it, as in `#[message(\"ping\")]`",
                ));
            } else if value.starts_with('_') {
                errors.push(syn::Error::new_spanned(
                    kind,
                    "kinds starting with `_` are reserved for socketscience's metadata: \
                     choose a kind such as `\"ping\"`",
                ));
            }
        }
        if let Data::Union(u) = &self.item.data {
            errors.push(syn::Error::new_spanned(
                u.union_token,
                "`#[message]` cannot go on a union: use a struct or an enum",
            ));
        }
        let generics = &self.item.generics;
        if !generics.params.is_empty() || generics.where_clause.is_some() {
            errors.push(syn::Error::new(
                generics.span(),
                "a message type cannot be generic: each kind needs one concrete type; \
                 declare a type per kind, such as `struct PingV2 { .. }`",
            ));
        }
    }

    fn expand(self, errors: Option<syn::Error>) -> TokenStream {
        let item = &self.item;
        let ident = &item.ident;
        let shape_ok = !matches!(item.data, Data::Union(_))
            && item.generics.params.is_empty()
            && item.generics.where_clause.is_none();
        if !shape_ok {
            // Emit the item as written so other code still resolves it.
            let errors = errors.map(syn::Error::into_compile_error);
            return quote! { #errors #item };
        }
        let derive = quote! {
            #[derive(
                ::socketscience::__private::serde::Serialize,
                ::socketscience::__private::serde::Deserialize
            )]
            #[serde(crate = "::socketscience::__private::serde")]
        };
        let kind_value = self.kind.as_ref().map(LitStr::value).unwrap_or_default();
        let kind = LitStr::new(&kind_value, Span::call_site());
        let doc = format!(
            "Sends this `{kind_value}` message to every instance in the room, this one included, \
             through the process's default node (see `socketscience::Node::scope`). Never blocks; \
             fails when no node runs or its queue is full."
        );
        let message_impl = quote! {
            #[automatically_derived]
            impl ::socketscience::Message for #ident {
                const KIND: &'static str = #kind;
            }

            #[allow(dead_code)]
            impl #ident {
                #[doc = #doc]
                pub fn broadcast(self) -> ::socketscience::Result<()> {
                    ::socketscience::__private::broadcast(self)
                }
            }
        };
        match errors {
            // A stub impl, so that handlers of this type do not cascade.
            Some(errors) => {
                let errors = errors.into_compile_error();
                quote! { #errors #derive #item #message_impl }
            }
            None => quote! {
                #derive
                #item
                #message_impl
                ::socketscience::__private::inventory::submit! {
                    ::socketscience::__private::MessageType::new(
                        #kind,
                        ::core::concat!(::core::module_path!(), "::", ::core::stringify!(#ident)),
                    )
                }
            },
        }
    }
}
