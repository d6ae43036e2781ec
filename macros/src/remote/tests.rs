//! Unit tests of `#[atoll::remote]`'s expansion: errors, the generated module, rewritten
//! paths, visibilities and the signature text.

use proc_macro2::{Group, TokenStream};
use quote::{quote, ToTokens};
use syn::{
    parse_quote, Expr, ImplItem, ImplItemConst, ImplItemFn, ImplItemType, Item, ItemFn, ItemImpl,
    ItemMod, Lit, Pat, Type, Visibility,
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
                ImplItem::Type(ImplItemType { ident, ty, .. }) if ident == name => Some(ty.clone()),
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
            Box::new(())
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
