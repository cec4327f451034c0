//! `#[handler]`: parse, validate, expand.
//!
//! The macro reads the shape (sync or async, with or without `Context`)
//! from the syntax and calls the function directly; the types are checked
//! by the compiler, each at the tokens the user wrote:
//!
//! - the message type once, where the entry is built (`M: Message`);
//! - the second parameter through a local trait implemented only for
//!   `Context`, whose `on_unimplemented` says what to write;
//! - the return type through `<R as HandlerResult>`;
//! - an async handler's future by boxing it as `dyn Future + Send`.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, ReturnType, Safety, Type};

use crate::common::{mentions_impl, wrong_item, Errors};

const SHAPES: &str =
    "`fn name(message: Ping)` or `fn name(message: Ping, cx: Context)`, optionally `async`";

/// The modes `#[handler(...)]` takes: the keyword, and the variant of the
/// runtime's `HandlerMode` it stands for. A new mode is one line here (and
/// its variant in the runtime).
const MODES: &[(&str, &str)] = &[("active", "Active"), ("shared", "Shared")];

/// The types of the standard library that a
/// handler is likely to be written for by mistake: they are not this
/// crate's to mark `#[message]`, so the fix is a newtype.
const FOREIGN: &[&str] = &[
    "String", "str", "bool", "char", "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16",
    "i32", "i64", "i128", "isize", "f32", "f64", "Vec", "Option", "HashMap", "BTreeMap", "Box",
    "Arc", "Rc",
];

/// The attribute's arguments and the function it is on.
struct Model {
    attr: TokenStream,
    item: ItemFn,
}

/// A mode keyword given to the attribute: its tokens, and the runtime's
/// variant.
struct Mode {
    keyword: syn::Ident,
    variant: &'static str,
}

/// Reads the attribute's arguments: none, or one mode keyword (see
/// [`MODES`]). Every problem is reported, not only the first.
fn parse_mode(attr: &TokenStream, errors: &mut Errors) -> Option<Mode> {
    use syn::parse::Parser as _;
    if attr.is_empty() {
        return None;
    }
    let expected = MODES
        .iter()
        .map(|(k, _)| format!("`#[handler({k})]`"))
        .collect::<Vec<_>>()
        .join(", ");
    let parser = syn::punctuated::Punctuated::<syn::Meta, syn::Token![,]>::parse_terminated;
    let metas = match parser.parse2(attr.clone()) {
        Ok(metas) => metas,
        Err(_) => {
            errors.spanned(
                attr,
                format!(
                    "`#[handler]` takes no kind: write `#[handler]` (the kind comes from the \
                     first parameter's type), or a mode: {expected}"
                ),
            );
            return None;
        }
    };
    let mut mode: Option<Mode> = None;
    for meta in metas {
        let known = match &meta {
            syn::Meta::Path(path) => path
                .get_ident()
                .and_then(|ident| MODES.iter().find(|(k, _)| ident == k).map(|m| (ident, m.1))),
            _ => None,
        };
        match (known, &mode) {
            (Some((ident, _)), Some(first)) => errors.spanned(
                ident,
                format!(
                    "a handler has one mode: remove `{ident}` (`{}` is already given)",
                    first.keyword
                ),
            ),
            (Some((ident, variant)), None) => {
                mode = Some(Mode {
                    keyword: ident.clone(),
                    variant,
                })
            }
            (None, _) => errors.spanned(
                &meta,
                format!(
                    "unknown argument `{}` of `#[handler]`: write `#[handler]`, or a mode: \
                     {expected}",
                    meta.to_token_stream()
                ),
            ),
        }
    }
    mode
}

/// The name of a standard type a message cannot be, if `ty` is one.
fn foreign(ty: &Type) -> Option<String> {
    match peel(ty) {
        Type::Path(p) if p.qself.is_none() => {
            let last = p.path.segments.last()?;
            FOREIGN
                .contains(&last.ident.to_string().as_str())
                .then(|| pretty(ty))
        }
        Type::Tuple(_) | Type::Array(_) | Type::Slice(_) => Some(pretty(ty)),
        _ => None,
    }
}

/// What a valid handler looks like, read from its signature.
struct Shape<'a> {
    message: &'a Type,
    context: Option<&'a Type>,
    /// The declared return type; `None` for `()`.
    output: Option<&'a Type>,
    is_async: bool,
}

pub fn expand(attr: TokenStream, input: TokenStream) -> TokenStream {
    let item: ItemFn = match syn::parse2(input.clone()) {
        Ok(item) => item,
        Err(_) => {
            return wrong_item(input, |what| {
                format!("`#[handler]` goes on a free function, not on {what}: {SHAPES}")
            })
        }
    };
    let model = Model { attr, item };
    let mut errors = Errors::default();
    let mode = parse_mode(&model.attr, &mut errors);
    match model.validate(&mut errors) {
        Some(shape) if errors.is_empty() => model.expand(&shape, mode.as_ref()),
        _ => {
            // The function as written, so that calls to it still resolve.
            let errors = errors.into_compile_error();
            let item = &model.item;
            quote! { #errors #item }
        }
    }
}

/// The parameter types, `self` aside.
fn typed_inputs(item: &ItemFn) -> impl Iterator<Item = &Type> {
    item.sig.inputs.iter().filter_map(|a| match a {
        FnArg::Typed(pt) => Some(peel(&pt.ty)),
        FnArg::Receiver(_) => None,
    })
}

/// The type inside the invisible group that `macro_rules!` puts around a
/// `$t:ty`.
fn peel(ty: &Type) -> &Type {
    match ty {
        Type::Group(g) => peel(&g.elem),
        _ => ty,
    }
}

/// Whether `ty` is (a path ending in) `Context`.
/// `tokens` with every span set to `span`.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut t| {
            if let proc_macro2::TokenTree::Group(g) = &t {
                let mut group = proc_macro2::Group::new(g.delimiter(), respan(g.stream(), span));
                group.set_span(span);
                t = proc_macro2::TokenTree::Group(group);
            } else {
                t.set_span(span);
            }
            t
        })
        .collect()
}

/// Whether a return type is `()` or `Result<(), E>` (any `Result` whose
/// first argument is `()`): an ordinary handler, not an answer.
fn returns_nothing(ty: &Type) -> bool {
    match peel(ty) {
        Type::Tuple(t) => t.elems.is_empty(),
        Type::Path(p) => p.path.segments.last().is_some_and(|s| {
            s.ident == "Result"
                && match &s.arguments {
                    syn::PathArguments::AngleBracketed(a) => matches!(
                        a.args.first(),
                        Some(syn::GenericArgument::Type(Type::Tuple(t))) if t.elems.is_empty()
                    ),
                    _ => false,
                }
        }),
        _ => false,
    }
}

fn is_context(ty: &Type) -> bool {
    matches!(ty, Type::Path(p) if p.qself.is_none()
        && p.path.segments.last().is_some_and(|s| s.ident == "Context" && s.arguments.is_none()))
}

/// A type as the user would write it, for messages: `&Ping`, not `& Ping`.
fn pretty(ty: &Type) -> String {
    let mut s = ty.to_token_stream().to_string();
    for (from, to) in [
        (" :: ", "::"),
        (" < ", "<"),
        ("< ", "<"),
        (" >", ">"),
        ("& ", "&"),
        (" ,", ","),
    ] {
        s = s.replace(from, to);
    }
    s
}

impl Model {
    fn validate(&self, errors: &mut Errors) -> Option<Shape<'_>> {
        let sig = &self.item.sig;
        if let Some(receiver) = sig.receiver() {
            errors.spanned(
                receiver,
                format!(
                    "a handler is a free function and cannot take `self`: \
                     move it out of the `impl` block, as {SHAPES}"
                ),
            );
        }
        if !sig.generics.params.is_empty() {
            errors.spanned(
                &sig.generics,
                format!(
                    "a handler cannot be generic: remove the type parameters and name the \
                     message type, as {SHAPES}"
                ),
            );
        } else if let Some(where_clause) = &sig.generics.where_clause {
            errors.spanned(
                where_clause,
                "a handler cannot have a `where` clause: remove it",
            );
        }
        if let Safety::Unsafe(unsafety) = &sig.safety {
            errors.spanned(unsafety, "a handler cannot be `unsafe`: remove `unsafe`");
        }
        if let Some(variadic) = &sig.variadic {
            errors.spanned(variadic, "a handler cannot be variadic: remove `...`");
        }
        for ty in typed_inputs(&self.item) {
            match ty {
                Type::ImplTrait(_) => errors.spanned(
                    ty,
                    format!(
                        "a handler cannot be generic: name the message type instead of \
                         `impl ..`, as {SHAPES}"
                    ),
                ),
                Type::Reference(r) => errors.spanned(
                    ty,
                    format!(
                        "a handler takes its parameters by value: write `{}` instead of `{}`",
                        pretty(&r.elem),
                        pretty(ty),
                    ),
                ),
                _ => {}
            }
        }
        if let ReturnType::Type(_, ty) = &sig.output {
            if mentions_impl(ty.to_token_stream()) {
                errors.spanned(
                    ty,
                    "a handler returns `()` or `Result<(), E>` where `E: Display`, \
                     not `impl ..`: name the type, or make the function `async`",
                );
            }
        }

        let inputs: Vec<&Type> = typed_inputs(&self.item).collect();
        if let Some(ty) = inputs.first().copied().filter(|ty| !is_context(ty)) {
            if let Some(name) = foreign(ty) {
                errors.spanned(
                    ty,
                    format!(
                        "`{name}` cannot be a message: a message is a type of your crate with \
                         its own kind; wrap it in a newtype, `#[message(\"kind\")] pub struct \
                         Name(pub {name});`, and take `Name` here"
                    ),
                );
            }
        }
        match inputs.len() {
            0 if sig.receiver().is_none() => errors.push(syn::Error::new(
                sig.paren_token.span.join(),
                format!("a handler takes the message as its first parameter: {SHAPES}"),
            )),
            3.. => {
                let mut extra = sig.inputs.iter().skip(sig.inputs.len() - inputs.len() + 2);
                let first = extra.next();
                let last = extra.last().or(first);
                errors.spanned(
                    quote! { #first #last },
                    format!(
                        "a handler takes at most two parameters, the message and a `Context`: \
                         remove these, as {SHAPES}"
                    ),
                );
            }
            2 if is_context(inputs[0]) && !is_context(inputs[1]) => errors.spanned(
                &sig.inputs,
                format!(
                    "the message comes first and the `Context` second: write `fn {}(message: {}, cx: Context)`",
                    sig.ident,
                    pretty(inputs[1]),
                ),
            ),
            _ => {}
        }
        Some(Shape {
            message: inputs.first()?,
            context: inputs.get(1).copied(),
            output: match &sig.output {
                ReturnType::Default => None,
                ReturnType::Type(_, ty) => Some(ty),
            },
            is_async: sig.asyncness.is_some(),
        })
    }

    fn expand(&self, shape: &Shape<'_>, mode: Option<&Mode>) -> TokenStream {
        let item = &self.item;
        let ident = &item.sig.ident;
        let private = quote! { ::socketscience::__private };
        let message = shape.message;

        // The arguments, each converted where the user's type is, so that a
        // wrong type is reported there.
        let cx = format_ident!("__socketscience_cx");
        let message_arg =
            quote! { __SocketscienceSame::__socketscience_same(__socketscience_message) };
        let (context_check, args) = match shape.context {
            None => (quote! { let _ = #cx; }, message_arg),
            Some(ty) => {
                let arg = quote_spanned! {ty.span()=>
                    <#ty as __SocketscienceContext>::__socketscience_context(#cx)
                };
                (quote! {}, quote! { #message_arg, #arg })
            }
        };
        let context_trait = shape.context.map(|_| {
            quote! {
                #[diagnostic::on_unimplemented(
                    message = "the second parameter of a handler must be `Context`, not `{Self}`",
                    label = "write `cx: Context` here, or remove this parameter",
                )]
                trait __SocketscienceContext {
                    fn __socketscience_context(cx: &#private::Context) -> Self;
                }
                impl __SocketscienceContext for #private::Context {
                    #[inline(always)]
                    fn __socketscience_context(cx: &#private::Context) -> Self {
                        ::core::clone::Clone::clone(cx)
                    }
                }
            }
        });

        let output = match shape.output {
            Some(ty) => ty.to_token_stream(),
            None => quote! { () },
        };
        let output_span = shape.output.map_or_else(Span::call_site, Spanned::span);
        // A handler returning anything but `()` or `Result<(), E>` answers
        // a question: its reply is posted to the asker.
        let answers = shape.output.is_some_and(|ty| !returns_nothing(ty));
        let into_result = if answers {
            let reply_cx = format_ident!("__socketscience_reply_cx");
            // The question's type respanned to the return type: a wrong
            // reply is reported there.
            let question = respan(message.to_token_stream(), output_span);
            let call = quote_spanned! {output_span=>
                #private::answer_with::<#output, #question>
            };
            quote! {
                (|__socketscience_out: #output| #call(__socketscience_out, &#reply_cx))
            }
        } else {
            quote_spanned! {output_span=>
                <#output as ::socketscience::handlers::HandlerResult>::into_result
            }
        };
        let reply_setup = if answers {
            quote! { let __socketscience_reply_cx = ::core::clone::Clone::clone(#cx); }
        } else {
            quote! {}
        };
        let body = if shape.is_async {
            // Call first: the future owns its arguments, not the borrowed
            // context.
            let boxed = quote_spanned! {item.sig.asyncness.span()=>
                ::std::boxed::Box::pin(async move { #into_result(__socketscience_future.await) })
            };
            quote! {{
                #reply_setup
                let __socketscience_future = #ident(#args);
                #private::Call::Pending(#boxed)
            }}
        } else {
            quote! {{
                #reply_setup
                #private::Call::Ready(#into_result(#ident(#args)))
            }}
        };
        let message_spanned = quote_spanned! {message.span()=>
            __socketscience_entry::<#message>
        };
        let with_mode = mode.map(|m| {
            let variant = format_ident!("{}", m.variant, span = m.keyword.span());
            quote! { .mode(#private::HandlerMode::#variant) }
        });

        quote! {
            #item

            #[doc(hidden)]
            const _: () = {
                // `M` is the message type: generic so that `M: Message` is
                // checked once, where the entry is built below.
                trait __SocketscienceSame<T> {
                    fn __socketscience_same(self) -> T;
                }
                impl<T> __SocketscienceSame<T> for T {
                    #[inline(always)]
                    fn __socketscience_same(self) -> T {
                        self
                    }
                }

                #context_trait

                fn __socketscience_call<M>(
                    __socketscience_raw: #private::RawValueRef<'_>,
                    #cx: &#private::Context,
                ) -> ::core::result::Result<#private::Call, ::std::string::String>
                where
                    M: ::socketscience::Message + __SocketscienceSame<#message>,
                {
                    let __socketscience_message: M = __socketscience_raw.decode()?;
                    #context_check
                    ::core::result::Result::Ok(#body)
                }

                const fn __socketscience_entry<M>(
                    name: &'static str,
                ) -> #private::StaticHandler
                where
                    M: ::socketscience::Message + __SocketscienceSame<#message>,
                {
                    #private::StaticHandler::new(
                        <M as ::socketscience::Message>::KIND,
                        name,
                        __socketscience_call::<M>,
                    )
                    #with_mode
                }

                #private::inventory::submit! {
                    #message_spanned(
                        ::core::concat!(::core::module_path!(), "::", ::core::stringify!(#ident))
                    )
                }
            };
        }
    }
}
