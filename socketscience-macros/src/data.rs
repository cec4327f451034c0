//! `#[data]`: parse, validate, expand. A type carried inside a message
//! (a field's struct or enum) gets the same serde derive as a message,
//! through socketscience's own serde, and nothing else.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Data, DeriveInput};

use crate::common::{serde_derive, wrong_item, Errors};

/// The parsed attribute and item.
struct Model {
    /// Whatever was written between the parentheses (nothing is expected).
    args: TokenStream,
    item: DeriveInput,
}

pub fn expand(attr: TokenStream, input: TokenStream) -> TokenStream {
    let item: DeriveInput = match syn::parse2(input.clone()) {
        Ok(item) => item,
        Err(_) => {
            return wrong_item(input, |what| {
                format!(
                    "`#[data]` goes on a struct or an enum carried inside a message, \
                     not on {what}: write `#[data] pub struct Location {{ .. }}`"
                )
            })
        }
    };
    let model = Model { args: attr, item };
    let mut errors = Errors::default();
    model.validate(&mut errors);
    model.expand(errors)
}

impl Model {
    fn validate(&self, errors: &mut Errors) {
        if !self.args.is_empty() {
            errors.spanned(
                &self.args,
                "`#[data]` takes no arguments (a nested type has no kind of its own): \
                 write `#[data]`, or `#[message(\"kind\")]` for a message",
            );
        }
        if let Data::Union(u) = &self.item.data {
            errors.spanned(
                u.union_token,
                "`#[data]` cannot go on a union: use a struct or an enum",
            );
        }
    }

    fn expand(self, errors: Errors) -> TokenStream {
        let item = &self.item;
        if matches!(item.data, Data::Union(_)) {
            // The item as written, so that the rest of the program still
            // resolves it; the error says why it has no derive.
            let errors = errors.into_compile_error();
            return quote! { #errors #item };
        }
        // A wrong argument still gets the derive: the messages that hold
        // the type do not add errors of their own.
        let errors = errors.into_compile_error();
        let derive = serde_derive();
        quote! {
            #errors
            #derive
            #item
        }
    }
}
