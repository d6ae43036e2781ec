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
mod tests {
    use proc_macro2::{Group, TokenStream};
    use quote::{quote, ToTokens};
    use syn::{
        parse_quote, Expr, ImplItem, ImplItemConst, ImplItemFn, ImplItemType, Item, ItemFn,
        ItemImpl, ItemMod, Lit, Pat, Type, Visibility,
    };

    use super::{expand_remote, signature_string};
    use crate::common::test_support::{compile_errors, non_error_items, parse_file};

    /// The parts of a successful expansion.
    struct Expansion {
        function: ItemFn,
        module: ItemMod,
    }

    impl Expansion {
        fn of(item: TokenStream) -> Self {
            let output = expand_remote(TokenStream::new(), item);
            assert_eq!(compile_errors(&output), Vec::<String>::new(), "{output}");
            let items = parse_file(&output).items;
            let [Item::Fn(function), Item::Mod(module)] = &items[..] else {
                panic!("expected a function and a module:\n{output}");
            };
            Expansion {
                function: function.clone(),
                module: module.clone(),
            }
        }

        fn items(&self) -> &[Item] {
            &self.module.content.as_ref().expect("inline module").1
        }

        fn remote_impl(&self) -> &ItemImpl {
            self.items()
                .iter()
                .find_map(|item| match item {
                    Item::Impl(item) => Some(item),
                    _ => None,
                })
                .expect("impl RemoteFn for Remote")
        }

        fn assoc_type(&self, name: &str) -> Type {
            self.remote_impl()
                .items
                .iter()
                .find_map(|item| match item {
                    ImplItem::Type(ImplItemType { ident, ty, .. }) if ident == name => {
                        Some(ty.clone())
                    }
                    _ => None,
                })
                .unwrap_or_else(|| panic!("type {name}"))
        }

        fn assoc_const(&self, name: &str) -> Expr {
            self.remote_impl()
                .items
                .iter()
                .find_map(|item| match item {
                    ImplItem::Const(ImplItemConst { ident, expr, .. }) if ident == name => {
                        Some(expr.clone())
                    }
                    _ => None,
                })
                .unwrap_or_else(|| panic!("const {name}"))
        }

        fn call_fn(&self) -> &ImplItemFn {
            self.remote_impl()
                .items
                .iter()
                .find_map(|item| match item {
                    ImplItem::Fn(item) if item.sig.ident == "call" => Some(item),
                    _ => None,
                })
                .expect("fn call")
        }

        /// The one expression in the body of `call`.
        fn call_body(&self) -> Expr {
            match &self.call_fn().block.stmts[..] {
                [syn::Stmt::Expr(expr, None)] => expr.clone(),
                other => panic!("call's body is {other:?}"),
            }
        }

        /// The string literal given to `fn_id` as the signature.
        fn id_signature(&self) -> String {
            let Expr::Call(call) = self.assoc_const("ID") else {
                panic!("ID is not a call");
            };
            let expected: Expr = parse_quote!(::atoll::__private::fn_id);
            assert_eq!(*call.func, expected);
            let expected: Expr = parse_quote!(::core::module_path!());
            assert_eq!(call.args[0], expected);
            match &call.args[1] {
                Expr::Lit(lit) => match &lit.lit {
                    Lit::Str(text) => text.value(),
                    other => panic!("signature is {other:?}"),
                },
                other => panic!("signature is {other:?}"),
            }
        }
    }

    fn errors_of(attr: TokenStream, item: TokenStream) -> Vec<String> {
        let output = expand_remote(attr, item.clone());
        let errors = compile_errors(&output);
        // The item is kept, so that its uses do not add errors of their own.
        let items = non_error_items(&output);
        assert_eq!(items.len(), 1, "{output}");
        assert_eq!(items[0], syn::parse2::<Item>(item).unwrap());
        errors
    }

    /// Asserts that the expansion of `item` reports exactly one error, containing `expected`.
    #[track_caller]
    fn assert_error(item: TokenStream, expected: &str) {
        let errors = errors_of(TokenStream::new(), item);
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(
            errors[0].contains(expected),
            "`{}` does not contain `{expected}`",
            errors[0]
        );
        assert!(errors[0].starts_with("#[atoll::remote] "), "{}", errors[0]);
    }

    #[test]
    fn keeps_the_function_and_adds_a_module_of_the_same_name() {
        let input: ItemFn = parse_quote! {
            /// Adds.
            #[inline]
            pub async fn add(a: u32, b: u32) -> u64 {
                u64::from(a) + u64::from(b)
            }
        };
        let expansion = Expansion::of(input.to_token_stream());
        assert_eq!(expansion.function, input);

        let module = &expansion.module;
        assert_eq!(module.ident, "add");
        assert_eq!(module.vis, parse_quote!(pub));
        assert!(module.attrs.contains(&parse_quote!(#[doc(hidden)])));
        // Docs and other attributes stay on the function only.
        assert!(!module
            .attrs
            .iter()
            .any(|attr| attr.path().is_ident("inline")));

        let items = expansion.items();
        assert_eq!(
            items[0],
            parse_quote!(
                use super::*;
            )
        );
        let Item::Struct(handle) = &items[1] else {
            panic!("expected struct Remote, got {:?}", items[1]);
        };
        assert_eq!(handle.ident, "Remote");
        assert_eq!(handle.vis, parse_quote!(pub)); // as the function
        assert!(matches!(handle.fields, syn::Fields::Unit));

        let remote_impl = expansion.remote_impl();
        let trait_path = &remote_impl.trait_.as_ref().unwrap().1;
        assert_eq!(*trait_path, parse_quote!(::atoll::__private::RemoteFn));
        assert_eq!(*remote_impl.self_ty, parse_quote!(Remote));
        assert_eq!(expansion.assoc_type("Args"), parse_quote!((u32, u32,)));
        assert_eq!(expansion.assoc_type("Output"), parse_quote!(u64));
        assert_eq!(
            expansion.assoc_const("NAME"),
            parse_quote!(::core::module_path!())
        );
        assert_eq!(expansion.id_signature(), "fn(u32, u32) -> u64");

        assert_eq!(
            expansion.call_body(),
            parse_quote!(::std::boxed::Box::pin(super::add(
                __atoll_arg0,
                __atoll_arg1
            )))
        );

        let registration = items.last().unwrap();
        let expected: Item = parse_quote! {
            ::atoll::__private::inventory::submit! {
                ::atoll::__private::RemoteEntry::of::<Remote>()
            }
        };
        assert_eq!(
            registration.to_token_stream().to_string(),
            expected.to_token_stream().to_string()
        );
    }

    #[test]
    fn one_argument_is_a_one_tuple() {
        let expansion = Expansion::of(quote! { async fn square(x: u64) -> u64 { x * x } });
        let Type::Tuple(args) = expansion.assoc_type("Args") else {
            panic!("Args is not a tuple");
        };
        assert_eq!(args.elems.len(), 1);
        assert!(
            args.elems.trailing_punct(),
            "(u64) is not a tuple, (u64,) is"
        );

        let syn::FnArg::Typed(param) = &expansion.call_fn().sig.inputs[0] else {
            panic!("call takes self");
        };
        let Pat::Tuple(pattern) = &*param.pat else {
            panic!("call's argument is not a tuple pattern");
        };
        assert_eq!(pattern.elems.len(), 1);
        assert!(pattern.elems.trailing_punct());
        assert_eq!(*param.ty, parse_quote!(Self::Args));
    }

    #[test]
    fn no_arguments_and_no_return_type_are_unit() {
        let expansion = Expansion::of(quote! { async fn ping() {} });
        assert_eq!(expansion.assoc_type("Args"), parse_quote!(()));
        assert_eq!(expansion.assoc_type("Output"), parse_quote!(()));
        assert_eq!(expansion.id_signature(), "fn() -> ()");
        let syn::FnArg::Typed(param) = &expansion.call_fn().sig.inputs[0] else {
            panic!("call takes self");
        };
        assert_eq!(*param.pat, parse_quote!(()));
    }

    #[test]
    fn patterns_are_left_to_the_function() {
        let input: ItemFn = parse_quote! {
            async fn f(mut x: Vec<u8>, (a, b): (u32, u32), _: String) -> usize {
                x.push(0);
                x.len() + (a + b) as usize
            }
        };
        let expansion = Expansion::of(input.to_token_stream());
        assert_eq!(expansion.function, input);
        assert_eq!(
            expansion.assoc_type("Args"),
            parse_quote!((Vec<u8>, (u32, u32), String,))
        );
        assert_eq!(
            expansion.call_body(),
            parse_quote!(::std::boxed::Box::pin(super::f(
                __atoll_arg0,
                __atoll_arg1,
                __atoll_arg2
            )))
        );
        assert_eq!(
            expansion.id_signature(),
            "fn(Vec<u8>, (u32, u32), String) -> usize"
        );
    }

    #[test]
    fn relative_paths_are_reanchored_one_module_down() {
        let input: ItemFn = parse_quote! {
            pub(crate) async fn f(
                a: self::A,
                b: super::B,
                c: Vec<super::super::C>,
                d: <self::D as super::Tr>::Assoc,
                e: <self::E>::Assoc,
                f: crate::F,
                g: ::std::string::String,
                h: [u8; self::N],
                i: Box<dyn self::Tr + Send>,
                j: Remote,
                k: Option<Remote>,
                l: self_type::X,
            ) -> super::Out {}
        };
        let expansion = Expansion::of(input.to_token_stream());
        // The function itself is untouched.
        assert_eq!(expansion.function, input);
        let Type::Tuple(args) = expansion.assoc_type("Args") else {
            panic!("Args is not a tuple");
        };
        let expected: [Type; 12] = [
            parse_quote!(super::A),
            parse_quote!(super::super::B),
            parse_quote!(Vec<super::super::super::C>),
            parse_quote!(<super::D as super::super::Tr>::Assoc),
            parse_quote!(<super::E>::Assoc),
            parse_quote!(crate::F),
            parse_quote!(::std::string::String),
            parse_quote!([u8; super::N]),
            parse_quote!(Box<dyn super::Tr + Send>),
            parse_quote!(super::Remote),
            parse_quote!(Option<super::Remote>),
            parse_quote!(self_type::X),
        ];
        for (arg, expected) in args.elems.iter().zip(&expected) {
            // Compare as parsed from text: that checks `QSelf::position` too.
            let reparsed: Type = syn::parse_str(&arg.to_token_stream().to_string()).unwrap();
            assert_eq!(reparsed, *expected);
            assert_eq!(arg, expected);
        }
        assert_eq!(args.elems.len(), expected.len());
        assert_eq!(
            expansion.assoc_type("Output"),
            parse_quote!(super::super::Out)
        );
        // The id names the signature as written.
        assert!(expansion
            .id_signature()
            .starts_with("fn(self::A, super::B, "));
    }

    #[test]
    fn the_module_has_the_function_visibility() {
        let cases: [(TokenStream, Visibility); 5] = [
            (quote!(), Visibility::Inherited),
            (quote!(pub), parse_quote!(pub)),
            (quote!(pub(crate)), parse_quote!(pub(crate))),
            (quote!(pub(super)), parse_quote!(pub(super))),
            (quote!(pub(in crate::a)), parse_quote!(pub(in crate::a))),
        ];
        for (vis, expected) in cases {
            let expansion = Expansion::of(quote! { #vis async fn f() {} });
            assert_eq!(expansion.module.vis, expected);
            assert_eq!(expansion.function.vis, expected);
        }
    }

    #[test]
    fn the_handle_is_visible_where_the_function_is() {
        let cases: [(TokenStream, Visibility); 7] = [
            (quote!(), parse_quote!(pub(super))),
            (quote!(pub(self)), parse_quote!(pub(in super))),
            (quote!(pub(super)), parse_quote!(pub(in super::super))),
            (
                quote!(pub(in super::super)),
                parse_quote!(pub(in super::super::super)),
            ),
            (quote!(pub(crate)), parse_quote!(pub(crate))),
            (quote!(pub(in crate::a)), parse_quote!(pub(in crate::a))),
            (quote!(pub), parse_quote!(pub)),
        ];
        for (vis, expected) in cases {
            let expansion = Expansion::of(quote! { #vis async fn f() {} });
            let Item::Struct(handle) = &expansion.items()[1] else {
                panic!("expected struct Remote");
            };
            assert_eq!(handle.vis, expected, "for `{vis}`");
        }
    }

    #[test]
    fn cfg_applies_to_the_module_too() {
        let expansion = Expansion::of(quote! {
            /// Docs.
            #[cfg(feature = "extra")]
            #[cfg_attr(test, inline)]
            #[deprecated]
            async fn f() {}
        });
        let cfgs: Vec<_> = expansion
            .module
            .attrs
            .iter()
            .filter(|attr| attr.path().is_ident("cfg"))
            .collect();
        assert_eq!(cfgs, [&parse_quote!(#[cfg(feature = "extra")])]);
        for attr in &expansion.module.attrs {
            assert!(!attr.path().is_ident("cfg_attr") && !attr.path().is_ident("deprecated"));
        }
        // Calling a deprecated function from its own module is not worth a warning.
        let allow = expansion
            .module
            .attrs
            .iter()
            .find(|attr| attr.path().is_ident("allow"))
            .unwrap();
        assert!(allow.to_token_stream().to_string().contains("deprecated"));
    }

    #[test]
    fn raw_identifiers_name_the_module() {
        let expansion = Expansion::of(quote! { async fn r#match(x: u8) -> u8 { x } });
        assert_eq!(expansion.module.ident, "r#match");
        assert_eq!(
            expansion.call_body(),
            parse_quote!(::std::boxed::Box::pin(super::r#match(__atoll_arg0)))
        );
    }

    #[test]
    fn owned_types_with_borrows_inside_signatures_are_accepted() {
        let expansion = Expansion::of(quote! {
            async fn f(
                a: std::borrow::Cow<'static, str>,
                b: Box<dyn Fn(&str) -> &str + Send + 'static>,
                c: fn(&u8) -> u8,
                d: Box<dyn for<'a> Tr<'a>>,
                e: [u8; { let r = &3; *r }],
            ) -> Box<dyn std::any::Any + 'static> {
                todo!()
            }
        });
        let Type::Tuple(args) = expansion.assoc_type("Args") else {
            panic!("Args is not a tuple");
        };
        assert_eq!(args.elems.len(), 5);
    }

    #[test]
    fn signature_text_is_canonical() {
        let sig = |item: TokenStream| signature_string(&syn::parse2::<ItemFn>(item).unwrap().sig);
        assert_eq!(
            sig(
                quote! { async fn f(a: std::collections::HashMap<String, Vec<(u8, i64,)>>, b: [u8; 4]) -> Result<(), E> {} }
            ),
            "fn(std::collections::HashMap<String, Vec<(u8, i64,)>>, [u8; 4]) -> Result<(), E>"
        );
        // Spacing in the source does not matter.
        assert_eq!(
            sig(quote! { async fn f(a : Vec < u8 > , b : Option<Box<dyn Tr+Send>>) -> ( ) {} }),
            sig(quote! { async fn f(a: Vec<u8>, b: Option<Box<dyn Tr + Send>>) {} }),
        );
        // A type that went through a `macro_rules!` `$t:ty` fragment is wrapped in an invisible
        // group: it reads as if written directly.
        let wrapped = Group::new(proc_macro2::Delimiter::None, quote!(Vec<u8>));
        assert_eq!(
            sig(quote! { async fn f(a: #wrapped) -> #wrapped {} }),
            "fn(Vec<u8>) -> Vec<u8>"
        );
    }

    #[test]
    fn rejects_functions_that_are_not_async() {
        assert_error(
            quote! { fn f(x: u32) -> u32 { x } },
            "functions must be `async fn`",
        );
    }

    #[test]
    fn rejects_const_unsafe_extern_and_variadic_functions() {
        assert_error(quote! { const async fn f() {} }, "cannot be `const`");
        assert_error(quote! { async unsafe fn f() {} }, "cannot be `unsafe`");
        assert_error(
            quote! { async extern "C" fn f() {} },
            "cannot have an ABI (`extern`)",
        );
        assert_error(quote! { async fn f(x: u32, ...) {} }, "cannot be variadic");
    }

    #[test]
    fn rejects_generics() {
        let message = "#[atoll::remote] functions cannot be generic: their arguments travel \
                       between processes, so their types must be concrete";
        assert_eq!(
            errors_of(quote!(), quote! { async fn f<T: Send>(x: T) {} }),
            [message]
        );
        assert_eq!(
            errors_of(
                quote!(),
                quote! { async fn f<const N: usize>(x: [u8; N]) {} }
            ),
            [message]
        );
        assert_eq!(
            errors_of(quote!(), quote! { async fn f(x: u32) where u32: Send {} }),
            [message]
        );
        assert_error(
            quote! { async fn f<'a>(x: Vec<u8>) {} },
            "cannot have lifetime parameters",
        );
    }

    #[test]
    fn rejects_self_receivers() {
        for receiver in [
            quote!(self),
            quote!(&self),
            quote!(&mut self),
            quote!(self: Box<Self>),
        ] {
            assert_error(
                quote! { async fn f(#receiver, x: u32) {} },
                "functions cannot take `self`",
            );
        }
    }

    #[test]
    fn rejects_impl_trait() {
        assert_error(
            quote! { async fn f(x: impl Into<String>) {} },
            "arguments cannot be `impl Trait`",
        );
        assert_error(
            quote! { async fn f(x: Vec<impl Send>) {} },
            "arguments cannot be `impl Trait`",
        );
        assert_error(
            quote! { async fn f() -> impl std::fmt::Display { 1 } },
            "functions cannot return `impl Trait`",
        );
    }

    #[test]
    fn rejects_borrowed_arguments_and_results() {
        let message = "#[atoll::remote] arguments must be owned values (they are serialized): \
                       take `Vec<T>`/`String` instead of a reference";
        assert_eq!(
            errors_of(quote!(), quote! { async fn f(x: &str) {} }),
            [message]
        );
        assert_eq!(
            errors_of(quote!(), quote! { async fn f(x: &'static [u8]) {} }),
            [message]
        );
        assert_eq!(
            errors_of(quote!(), quote! { async fn f(x: Option<&mut u8>) {} }),
            [message]
        );
        assert_eq!(
            errors_of(quote!(), quote! { async fn f(x: Cow<'_, str>) {} }),
            [message]
        );
        assert_error(
            quote! { async fn f() -> &'static str { "" } },
            "functions must return owned values",
        );
    }

    #[test]
    fn rejects_conditional_arguments() {
        assert_error(
            quote! { async fn f(#[cfg(unix)] x: u32) {} },
            "cannot have conditional arguments",
        );
        assert_error(
            quote! { async fn f(#[cfg_attr(unix, cfg(unix))] x: u32) {} },
            "cannot have conditional arguments",
        );
        // Other argument attributes are harmless.
        Expansion::of(quote! { async fn f(#[allow(unused_mut)] mut x: u32) {} });
    }

    #[test]
    fn rejects_attribute_arguments() {
        let errors = errors_of(quote!(name = "x"), quote! { async fn f() {} });
        assert_eq!(errors, ["#[atoll::remote] takes no arguments"]);
    }

    #[test]
    fn rejects_items_that_are_not_functions() {
        let errors = errors_of(quote!(), quote! { struct S; });
        assert_eq!(errors, ["#[atoll::remote] applies to a free `async fn`"]);
    }

    #[test]
    fn reports_every_error_at_once() {
        let errors = errors_of(
            quote!(x),
            quote! { unsafe fn f<T>(&self, y: &T) -> impl Send {} },
        );
        assert_eq!(errors.len(), 7, "{errors:#?}");
    }
}
