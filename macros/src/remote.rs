//! `#[atoll::remote]`: registers an `async fn` as a remote function.
//!
//! For
//!
//! ```text
//! #[atoll::remote]
//! pub async fn scale(p: super::Point, factor: f64) -> super::Point { .. }
//! ```
//!
//! the output is the function unchanged, followed by
//!
//! ```text
//! #[doc(hidden)]
//! #[allow(..)]
//! pub mod scale {
//!     use super::*;
//!     /// Handle of the remote function `scale` (used by `at!` / `async_at!`).
//!     #[derive(::core::clone::Clone, ::core::marker::Copy, ::core::fmt::Debug)]
//!     pub struct Remote; // as visible as the function: `pub(super)` for a private one
//!     impl ::atoll::__private::RemoteFn for Remote {
//!         type Args = (super::super::Point, f64,);
//!         type Output = super::super::Point;
//!         const NAME: &'static str = ::core::module_path!();
//!         const ID: u64 = ::atoll::__private::fn_id(
//!             ::core::module_path!(),
//!             "fn(super::Point, f64) -> super::Point",
//!         );
//!         fn call((__atoll_arg0, __atoll_arg1,): Self::Args)
//!             -> ::atoll::__private::BoxFuture<Self::Output>
//!         {
//!             ::std::boxed::Box::pin(super::scale(__atoll_arg0, __atoll_arg1))
//!         }
//!     }
//!     ::atoll::__private::inventory::submit! { ::atoll::__private::RemoteEntry::of::<Remote>() }
//! }
//! ```
//!
//! The arguments of `call` are named `__atoll_arg{i}`, with mixed-site hygiene (as the locals of
//! a `macro_rules!` macro), so no name of the user's can refer to them.

use proc_macro2::{Delimiter, Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::visit::Visit;
use syn::visit_mut::VisitMut;
use syn::{
    AttrStyle, Attribute, FnArg, GenericParam, ItemFn, Path, PathSegment, QSelf, ReturnType,
    Signature, Type, Visibility,
};

use crate::common::{self, Errors};

const ATTRIBUTE: &str = "#[atoll::remote]";

/// Expands `#[atoll::remote]` with arguments `attr` on `item`.
///
/// On bad input, the output is one `compile_error!` per problem followed by the item unchanged.
pub(crate) fn expand_remote(attr: TokenStream, item: TokenStream) -> TokenStream {
    let function = match common::parse_fn(ATTRIBUTE, "a free `async fn`", item.clone()) {
        Ok(function) => function,
        Err(error) => return common::errors_and_item(&error, item),
    };
    let mut errors = Errors::default();
    common::check_no_arguments(ATTRIBUTE, attr, &mut errors);
    check_signature(&function.sig, &mut errors);
    match errors.finish() {
        Ok(()) => generate(&function),
        Err(error) => common::errors_and_item(&error, function),
    }
}

/// Records every reason why `sig` cannot be a remote function.
fn check_signature(sig: &Signature, errors: &mut Errors) {
    if let Some(token) = &sig.constness {
        errors.spanned(
            token,
            format!("{ATTRIBUTE} functions cannot be `const`: they run when a call arrives"),
        );
    }
    if sig.asyncness.is_none() {
        errors.spanned(
            sig.fn_token,
            format!(
                "{ATTRIBUTE} functions must be `async fn`: the caller awaits the result of a \
                 remote call (write `async fn {}(..)`)",
                sig.ident
            ),
        );
    }
    if let Some(token) = &sig.unsafety {
        errors.spanned(
            token,
            format!(
                "{ATTRIBUTE} functions cannot be `unsafe`: a place runs them on behalf of any \
                 caller, so they must be safe to call"
            ),
        );
    }
    if let Some(abi) = &sig.abi {
        errors.spanned(
            abi,
            format!(
                "{ATTRIBUTE} functions cannot have an ABI (`extern`): the runtime calls them, \
                 not foreign code"
            ),
        );
    }
    for param in &sig.generics.params {
        let message = match param {
            GenericParam::Lifetime(_) => format!(
                "{ATTRIBUTE} functions cannot have lifetime parameters: arguments must be owned \
                 values (they are serialized)"
            ),
            GenericParam::Type(_) | GenericParam::Const(_) => generic_message(),
        };
        errors.spanned(param, message);
    }
    if let Some(where_clause) = &sig.generics.where_clause {
        errors.spanned(where_clause, generic_message());
    }
    if let Some(variadic) = &sig.variadic {
        errors.spanned(
            variadic,
            format!("{ATTRIBUTE} functions cannot be variadic: they take a fixed list of values"),
        );
    }
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(receiver) => errors.spanned(
                receiver,
                format!(
                    "{ATTRIBUTE} functions cannot take `self`: a remote function is a free \
                     function (no object travels with the call; pass its data as an argument)"
                ),
            ),
            FnArg::Typed(arg) => {
                for attr in arg.attrs.iter().filter(|attr| is_conditional(attr)) {
                    errors.spanned(
                        attr,
                        format!(
                            "{ATTRIBUTE} functions cannot have conditional arguments: every \
                             build of the program must agree on the arguments of a remote call"
                        ),
                    );
                }
                OwnedTypeCheck::run(&arg.ty, Position::Argument, errors);
            }
        }
    }
    if let ReturnType::Type(_, ty) = &sig.output {
        OwnedTypeCheck::run(ty, Position::Return, errors);
    }
}

fn generic_message() -> String {
    format!(
        "{ATTRIBUTE} functions cannot be generic: their arguments travel between processes, so \
         their types must be concrete"
    )
}

/// `#[cfg(..)]` or `#[cfg_attr(..)]` (which may expand to a `cfg`).
fn is_conditional(attr: &Attribute) -> bool {
    attr.path().is_ident("cfg") || attr.path().is_ident("cfg_attr")
}

/// Where a checked type appears in the signature.
#[derive(Clone, Copy)]
enum Position {
    Argument,
    Return,
}

/// Finds what makes a type unfit to travel between processes: `impl Trait` (not a concrete
/// type), references and non-`'static` lifetimes (borrowed data).
///
/// It does not look inside expressions (array lengths), function-pointer types or `Fn(..)`
/// sugar, and accepts the lifetimes of higher-ranked bounds (`dyn for<'a> Tr<'a>`): a borrow
/// there belongs to a signature, not to the value.
struct OwnedTypeCheck<'a> {
    position: Position,
    errors: &'a mut Errors,
    /// Lifetimes bound by the enclosing `for<..>` binders.
    higher_ranked: Vec<syn::Ident>,
}

impl OwnedTypeCheck<'_> {
    fn run(ty: &Type, position: Position, errors: &mut Errors) {
        let mut check = OwnedTypeCheck {
            position,
            errors,
            higher_ranked: Vec::new(),
        };
        check.visit_type(ty);
    }
}

impl<'ast> Visit<'ast> for OwnedTypeCheck<'_> {
    fn visit_type_impl_trait(&mut self, node: &'ast syn::TypeImplTrait) {
        let message = match self.position {
            Position::Argument => format!(
                "{ATTRIBUTE} arguments cannot be `impl Trait`: their types travel between \
                 processes, so they must be concrete"
            ),
            Position::Return => format!(
                "{ATTRIBUTE} functions cannot return `impl Trait`: the result travels back to \
                 the caller, so its type must be concrete"
            ),
        };
        self.errors.spanned(node, message);
    }

    fn visit_type_reference(&mut self, node: &'ast syn::TypeReference) {
        self.errors.spanned(node, self.borrow_message());
    }

    fn visit_lifetime(&mut self, node: &'ast syn::Lifetime) {
        if node.ident != "static" && !self.higher_ranked.contains(&node.ident) {
            self.errors.spanned(node, self.borrow_message());
        }
    }

    fn visit_expr(&mut self, _: &'ast syn::Expr) {}

    fn visit_type_bare_fn(&mut self, _: &'ast syn::TypeBareFn) {}

    fn visit_parenthesized_generic_arguments(
        &mut self,
        _: &'ast syn::ParenthesizedGenericArguments,
    ) {
    }

    fn visit_trait_bound(&mut self, node: &'ast syn::TraitBound) {
        let outer = self.higher_ranked.len();
        if let Some(binder) = &node.lifetimes {
            self.higher_ranked
                .extend(binder.lifetimes.iter().filter_map(|param| match param {
                    GenericParam::Lifetime(param) => Some(param.lifetime.ident.clone()),
                    _ => None,
                }));
        }
        self.visit_path(&node.path);
        self.higher_ranked.truncate(outer);
    }
}

impl OwnedTypeCheck<'_> {
    fn borrow_message(&self) -> String {
        match self.position {
            Position::Argument => format!(
                "{ATTRIBUTE} arguments must be owned values (they are serialized): take \
                 `Vec<T>`/`String` instead of a reference"
            ),
            Position::Return => format!(
                "{ATTRIBUTE} functions must return owned values (the result is serialized back \
                 to the caller): return `Vec<T>`/`String` instead of a reference"
            ),
        }
    }
}

/// The module and registration that follow a checked function.
fn generate(function: &ItemFn) -> TokenStream {
    let sig = &function.sig;
    let name = &sig.ident;
    let vis = &function.vis;
    let handle_vis = handle_visibility(vis);
    // The module exists exactly when the function does.
    let cfgs = function
        .attrs
        .iter()
        .filter(|attr| matches!(attr.style, AttrStyle::Outer) && attr.path().is_ident("cfg"));

    let mut arg_types: Vec<Type> = sig
        .inputs
        .iter()
        .filter_map(|input| match input {
            FnArg::Typed(arg) => Some((*arg.ty).clone()),
            FnArg::Receiver(_) => None, // rejected by `check_signature`
        })
        .collect();
    let mut output_type: Type = match &sig.output {
        ReturnType::Default => syn::parse_quote!(()),
        ReturnType::Type(_, ty) => (**ty).clone(),
    };
    for ty in arg_types.iter_mut().chain([&mut output_type]) {
        ReanchorPaths.visit_type_mut(ty);
    }
    let arg_names: Vec<_> = (0..arg_types.len())
        .map(|i| format_ident!("__atoll_arg{}", i, span = Span::mixed_site()))
        .collect();

    // A type less visible than the handle is an error (E0446, "private type in public
    // interface"): point it at the argument list or the return type, not at the attribute.
    let args_item = quote_spanned! {sig.paren_token.span.join()=>
        type Args = (#(#arg_types,)*);
    };
    let output_span = match &sig.output {
        ReturnType::Default => sig.paren_token.span.join(),
        ReturnType::Type(_, ty) => syn::spanned::Spanned::span(&**ty),
    };
    let output_item = quote_spanned! {output_span=>
        type Output = #output_type;
    };
    let doc = format!(" Handle of the remote function `{name}` (used by `at!` / `async_at!`).");
    let signature = signature_string(sig);
    // Errors about the future (not `Send`) and about the types (not serializable) point at the
    // function's name rather than at the attribute.
    let call = quote_spanned! {name.span()=>
        ::std::boxed::Box::pin(super::#name(#(#arg_names),*))
    };
    let register = quote_spanned! {name.span()=>
        ::atoll::__private::inventory::submit! { ::atoll::__private::RemoteEntry::of::<Remote>() }
    };

    quote! {
        #function

        #(#cfgs)*
        #[doc(hidden)]
        #[allow(
            non_snake_case,
            non_camel_case_types,
            unused_imports,
            unreachable_pub,
            deprecated
        )]
        #vis mod #name {
            use super::*;

            #[doc = #doc]
            #[derive(::core::clone::Clone, ::core::marker::Copy, ::core::fmt::Debug)]
            #handle_vis struct Remote;

            impl ::atoll::__private::RemoteFn for Remote {
                #args_item
                #output_item
                const NAME: &'static str = ::core::module_path!();
                const ID: u64 = ::atoll::__private::fn_id(::core::module_path!(), #signature);

                fn call(
                    (#(#arg_names,)*): Self::Args,
                ) -> ::atoll::__private::BoxFuture<Self::Output> {
                    #call
                }
            }

            #register
        }
    }
}

/// The visibility of `Remote` inside the generated module: the function's visibility, restated
/// from one module down, so that the handle is visible exactly where the function is.
///
/// Neither more (`pub struct Remote` in the module of a private function would be "public",
/// and its `Args` naming a private type would be error E0446) nor less (callers must name it).
fn handle_visibility(vis: &Visibility) -> TokenStream {
    match vis {
        Visibility::Public(token) => quote!(#token),
        Visibility::Inherited => quote!(pub(super)),
        Visibility::Restricted(restricted) => {
            let pub_token = &restricted.pub_token;
            let mut path = (*restricted.path).clone();
            if path.is_ident("crate") {
                return quote!(#pub_token(crate));
            }
            // `pub(self)`, `pub(super)` and `pub(in super::a)` are relative to the function's
            // module, `pub(in crate::a)` is absolute.
            move_down(&mut path);
            quote!(#pub_token(in #path))
        }
    }
}

/// Rewrites the paths of a type copied from the function's signature so that they name the
/// same items from inside the generated module, one level down:
///
/// - `self::X` becomes `super::X`, and `super::X` becomes `super::super::X`;
/// - a path that starts with `Remote` becomes `super::Remote…`, since inside the module the
///   generated `struct Remote` shadows the parent's `Remote` that `use super::*` imports.
///
/// Everything else (`crate::`, `::`, and names that `use super::*` imports) already resolves
/// the same way in both places. Paths inside types written as macro calls are not visible.
struct ReanchorPaths;

impl ReanchorPaths {
    /// Reanchors a path that may carry a qualified self (`<T as Trait>::Assoc`).
    fn visit_qualified_path_mut(&mut self, qself: Option<&mut QSelf>, path: &mut Path) {
        match qself {
            None => self.visit_path_mut(path),
            Some(qself) => {
                self.visit_type_mut(&mut qself.ty);
                // `<T as a::Trait>::Assoc` is the path `a::Trait::Assoc`, with `position` its
                // trait's length; `<T>::Assoc` (position 0) names no module at all.
                if qself.position > 0 && reanchor(path) {
                    qself.position += 1;
                }
                syn::visit_mut::visit_path_mut(self, path);
            }
        }
    }
}

impl VisitMut for ReanchorPaths {
    fn visit_path_mut(&mut self, path: &mut Path) {
        reanchor(path);
        syn::visit_mut::visit_path_mut(self, path);
    }

    fn visit_type_path_mut(&mut self, node: &mut syn::TypePath) {
        self.visit_qualified_path_mut(node.qself.as_mut(), &mut node.path);
    }

    fn visit_expr_path_mut(&mut self, node: &mut syn::ExprPath) {
        for attr in &mut node.attrs {
            self.visit_attribute_mut(attr);
        }
        self.visit_qualified_path_mut(node.qself.as_mut(), &mut node.path);
    }
}

/// Moves a path of a type one module down (see [`ReanchorPaths`]); returns whether a segment
/// was prepended.
fn reanchor(path: &mut Path) -> bool {
    match path.segments.first() {
        // A lone `self` is a value, not a module.
        Some(first) if first.ident == "self" && path.segments.len() == 1 => false,
        Some(first) if first.ident == "Remote" && path.leading_colon.is_none() => {
            prepend_super(path);
            true
        }
        _ => move_down(path),
    }
}

/// Restates a path that starts with `self` or `super` from one module down: `self` becomes
/// `super`, `super` becomes `super::super`. Returns whether a segment was prepended.
fn move_down(path: &mut Path) -> bool {
    if path.leading_colon.is_some() {
        return false;
    }
    match path.segments.first_mut() {
        Some(first) if first.ident == "self" => {
            first.ident = syn::Ident::new("super", first.ident.span());
            false
        }
        Some(first) if first.ident == "super" => {
            prepend_super(path);
            true
        }
        _ => false,
    }
}

fn prepend_super(path: &mut Path) {
    let span = path.segments[0].ident.span();
    path.segments
        .insert(0, PathSegment::from(syn::Ident::new("super", span)));
}

/// The signature as the text that, with the module path, makes the function's id:
/// `fn(A, B) -> R`, with `-> ()` for a function that returns nothing.
///
/// The text is built from the tokens as written (before [`ReanchorPaths`]) by a fixed rule, not
/// by the compiler's token printer, so that it does not change with the compiler's version.
fn signature_string(sig: &Signature) -> String {
    let mut text = String::from("fn(");
    for (i, input) in sig.inputs.iter().enumerate() {
        if let FnArg::Typed(arg) = input {
            if i > 0 {
                text.push_str(", ");
            }
            write_tokens(arg.ty.to_token_stream(), &mut text, &mut false);
        }
    }
    text.push_str(") -> ");
    match &sig.output {
        ReturnType::Default => text.push_str("()"),
        ReturnType::Type(_, ty) => write_tokens(ty.to_token_stream(), &mut text, &mut false),
    }
    text
}

/// Appends `tokens` to `text`: a space between two words (identifiers, literals) and after `,`
/// and `;`, nothing elsewhere. Invisible groups (types passed through a `macro_rules!`
/// fragment) are transparent. `after_word` says whether the text ends with a word.
fn write_tokens(tokens: TokenStream, text: &mut String, after_word: &mut bool) {
    for token in tokens {
        match token {
            TokenTree::Ident(_) | TokenTree::Literal(_) => {
                if *after_word {
                    text.push(' ');
                }
                text.push_str(&token.to_string());
                *after_word = true;
            }
            TokenTree::Punct(punct) => {
                text.push(punct.as_char());
                if matches!(punct.as_char(), ',' | ';') {
                    text.push(' ');
                }
                *after_word = false;
            }
            TokenTree::Group(group) => {
                let (open, close) = match group.delimiter() {
                    Delimiter::Parenthesis => ('(', ')'),
                    Delimiter::Bracket => ('[', ']'),
                    Delimiter::Brace => ('{', '}'),
                    Delimiter::None => {
                        write_tokens(group.stream(), text, after_word);
                        continue;
                    }
                };
                text.push(open);
                *after_word = false;
                write_tokens(group.stream(), text, after_word);
                // No space before a closing delimiter: `(A, B,)`, not `(A, B, )`.
                if text.ends_with(' ') {
                    text.pop();
                }
                text.push(close);
                *after_word = false;
            }
        }
    }
}

#[cfg(test)]
mod tests;
