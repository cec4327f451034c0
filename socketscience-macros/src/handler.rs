//! `#[handler]`: parse, validate, expand.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, ReturnType, Type};

const SHAPES: &str =
    "`fn name(message: Ping)` or `fn name(message: Ping, cx: Context)`, optionally `async`";

/// The parsed handler: the function and its parameters' types.
struct Model {
    item: ItemFn,
}

pub fn expand(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item: ItemFn = match syn::parse2(item.clone()) {
        Ok(item) => item,
        Err(_) => {
            let e = syn::Error::new(
                Span::call_site(),
                format!("`#[handler]` goes on a free function: {SHAPES}"),
            );
            let mut out = e.into_compile_error();
            out.extend(item);
            return out;
        }
    };
    let mut errors: Option<syn::Error> = None;
    let mut push = |e: syn::Error| match &mut errors {
        Some(all) => all.combine(e),
        None => errors = Some(e),
    };
    if !attr.is_empty() {
        push(syn::Error::new_spanned(
            attr,
            "`#[handler]` takes no arguments: the kind comes from the first parameter's type",
        ));
    }
    let model = Model { item };
    model.validate(&mut push);
    match errors {
        Some(e) => {
            let e = e.into_compile_error();
            let item = &model.item;
            quote! { #e #item }
        }
        None => model.expand(),
    }
}

impl Model {
    fn validate(&self, push: &mut impl FnMut(syn::Error)) {
        let sig = &self.item.sig;
        if let Some(receiver) = sig.receiver() {
            push(syn::Error::new_spanned(
                receiver,
                format!(
                    "a handler is a free function and cannot take `self`: \
                     move it out of the `impl` block, as {SHAPES}"
                ),
            ));
        }
        if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
            push(syn::Error::new(
                sig.generics.span(),
                format!("a handler cannot be generic: name the message type, as {SHAPES}"),
            ));
        }
        for arg in &sig.inputs {
            if let FnArg::Typed(pt) = arg {
                if let Type::ImplTrait(_) = &*pt.ty {
                    push(syn::Error::new_spanned(
                        &pt.ty,
                        format!("a handler cannot be generic: name the message type, as {SHAPES}"),
                    ));
                }
            }
        }
        match sig.inputs.len() {
            0 => push(syn::Error::new(
                sig.paren_token.span.join(),
                format!("a handler takes the message as its first parameter: {SHAPES}"),
            )),
            1 | 2 => {}
            _ => {
                let extra: TokenStream =
                    sig.inputs.iter().skip(2).map(|a| quote! { #a, }).collect();
                push(syn::Error::new_spanned(
                    extra,
                    format!(
                        "a handler takes at most two parameters, the message and a `Context`: \
                         remove these, as {SHAPES}"
                    ),
                ))
            }
        }
        if let Some(v) = &sig.variadic {
            push(syn::Error::new_spanned(v, "a handler cannot be variadic"));
        }
    }

    fn expand(&self) -> TokenStream {
        let item = &self.item;
        let ident = &item.sig.ident;
        let typed: Vec<&Type> = item
            .sig
            .inputs
            .iter()
            .filter_map(|a| match a {
                FnArg::Typed(pt) => Some(&*pt.ty),
                FnArg::Receiver(_) => None,
            })
            .collect();
        let message = typed[0];
        let message_check = quote_spanned! {message.span()=>
            <#message as ::socketscience::Message>::KIND
        };
        let context_check = typed.get(1).map(|cx| {
            quote_spanned! {cx.span()=>
                ::socketscience::__private::assert_context::<#cx>();
            }
        });
        let result_check = match &item.sig.output {
            ReturnType::Default => None,
            ReturnType::Type(_, ty) => Some(quote_spanned! {ty.span()=>
                ::socketscience::__private::assert_result::<#ty>();
            }),
        };
        quote! {
            #item

            #[doc(hidden)]
            #[allow(non_upper_case_globals)]
            const _: () = {
                fn __socketscience_call(
                    raw: ::socketscience::__private::RawValueRef<'_>,
                    cx: ::socketscience::__private::Context,
                ) -> ::core::result::Result<::socketscience::__private::Call, ::std::string::String> {
                    #context_check
                    #result_check
                    ::socketscience::__private::call::<#message, _, _>(&#ident, raw, cx)
                }
                ::socketscience::__private::inventory::submit! {
                    ::socketscience::__private::StaticHandler::new(
                        #message_check,
                        ::core::concat!(::core::module_path!(), "::", ::core::stringify!(#ident)),
                        __socketscience_call,
                    )
                }
            };
        }
    }
}
