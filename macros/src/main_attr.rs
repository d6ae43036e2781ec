//! `#[atoll::main]`: runs `async fn main` on the runtime.
//!
//! ```text
//! /// Docs.
//! #[atoll::main]
//! async fn main() -> atoll::Result<()> { body }
//! ```
//!
//! becomes
//!
//! ```text
//! /// Docs.
//! fn main() -> ::std::process::ExitCode {
//!     async fn __atoll_main() -> atoll::Result<()> { body }
//!     ::atoll::__private::run_main(__atoll_main)
//! }
//! ```

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{AttrStyle, ItemFn, ReturnType, Signature};

use crate::common::{self, Errors};

const ATTRIBUTE: &str = "#[atoll::main]";

/// Expands `#[atoll::main]` with arguments `attr` on `item`.
///
/// On bad input, the output is one `compile_error!` per problem followed by the item, inside a
/// placeholder `fn main` if it is named `main` (see [`placeholder_main`]).
pub(crate) fn expand_main(attr: TokenStream, item: TokenStream) -> TokenStream {
    let function = match common::parse_fn(ATTRIBUTE, "`async fn main`", item.clone()) {
        Ok(function) => function,
        Err(error) => return common::errors_and_item(&error, item),
    };
    let mut errors = Errors::default();
    common::check_no_arguments(ATTRIBUTE, attr, &mut errors);
    check_signature(&function.sig, &mut errors);
    match errors.finish() {
        Ok(()) => generate(function),
        Err(error) if function.sig.ident == "main" => {
            common::errors_and_item(&error, placeholder_main(function))
        }
        Err(error) => common::errors_and_item(&error, function),
    }
}

/// A synchronous `fn main` that holds the rejected `main` as a nested item: rustc still checks
/// its body, but does not add its own complaints about the entry point (an `async fn main`, or
/// no `main` at all) to the report.
fn placeholder_main(function: ItemFn) -> TokenStream {
    quote! {
        fn main() -> ::std::process::ExitCode {
            #[allow(dead_code)]
            #function
            ::std::process::ExitCode::FAILURE
        }
    }
}

/// Records every reason why `sig` is not `async fn main() -> R`.
fn check_signature(sig: &Signature, errors: &mut Errors) {
    if sig.ident != "main" {
        errors.spanned(
            &sig.ident,
            format!(
                "{ATTRIBUTE} goes on `async fn main`, the program's entry point (found `{}`)",
                sig.ident
            ),
        );
    }
    if let Some(token) = &sig.constness {
        errors.spanned(
            token,
            format!("{ATTRIBUTE} needs `async fn main`, not `const`"),
        );
    }
    if sig.asyncness.is_none() {
        errors.spanned(
            sig.fn_token,
            format!("{ATTRIBUTE} needs `async fn main` (the function is not `async`)"),
        );
    }
    if let Some(token) = &sig.unsafety {
        errors.spanned(token, format!("{ATTRIBUTE}: `main` cannot be `unsafe`"));
    }
    if let Some(abi) = &sig.abi {
        errors.spanned(
            abi,
            format!("{ATTRIBUTE}: `main` cannot have an ABI (`extern`)"),
        );
    }
    if !sig.generics.params.is_empty() {
        errors.spanned(
            &sig.generics.params,
            format!("{ATTRIBUTE}: `main` cannot be generic"),
        );
    }
    if let Some(where_clause) = &sig.generics.where_clause {
        errors.spanned(
            where_clause,
            format!("{ATTRIBUTE}: `main` cannot have a `where` clause"),
        );
    }
    let arguments_message = format!(
        "{ATTRIBUTE}: `main` takes no arguments (read the command line with `std::env::args()`)"
    );
    if !sig.inputs.is_empty() {
        errors.spanned(&sig.inputs, arguments_message);
    } else if let Some(variadic) = &sig.variadic {
        errors.spanned(variadic, arguments_message);
    }
    if let ReturnType::Default = sig.output {
        errors.push(syn::Error::new(
            sig.paren_token.span.close(),
            format!("{ATTRIBUTE} needs `-> atoll::Result<()>` (or `Result<(), E>`)"),
        ));
    }
}

/// `fn main() -> ExitCode` around the checked function.
fn generate(function: ItemFn) -> TokenStream {
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = function;
    // Outer attributes (docs, lints) go on the generated `fn main`; inner ones (`#![..]` at the
    // top of the body) stay in the body.
    let (inner_attrs, outer_attrs): (Vec<_>, Vec<_>) = attrs
        .into_iter()
        .partition(|attr| matches!(attr.style, AttrStyle::Inner(_)));
    let ident = &sig.ident;
    let output = &sig.output;
    let statements = &block.stmts;
    let body = quote_spanned! {block.brace_token.span.join()=>
        { #(#inner_attrs)* #(#statements)* }
    };
    // An unfit return type (not `Result<(), E: Display>`) or a future that is not `Send` is
    // reported at the return type, not at the attribute.
    let run = quote_spanned! {output.span()=>
        ::atoll::__private::run_main(__atoll_main)
    };
    quote! {
        #(#outer_attrs)*
        #vis fn #ident() -> ::std::process::ExitCode {
            async fn __atoll_main() #output #body
            #run
        }
    }
}

#[cfg(test)]
mod tests {
    use proc_macro2::TokenStream;
    use quote::{quote, ToTokens};
    use syn::{parse_quote, Attribute, Expr, Item, ItemFn, Stmt};

    use super::expand_main;
    use crate::common::test_support::{compile_errors, non_error_items, parse_file};

    /// The generated `fn main` and, inside it, the async function and the call to `run_main`.
    fn expand(item: TokenStream) -> (ItemFn, ItemFn, Expr) {
        let output = expand_main(TokenStream::new(), item);
        let items = parse_file(&output).items;
        let [Item::Fn(main)] = &items[..] else {
            panic!("expected one function:\n{output}");
        };
        let [Stmt::Item(Item::Fn(inner)), Stmt::Expr(run, None)] = &main.block.stmts[..] else {
            panic!("unexpected body:\n{output}");
        };
        (main.clone(), inner.clone(), run.clone())
    }

    fn errors_of(attr: TokenStream, item: TokenStream) -> Vec<String> {
        let output = expand_main(attr, item.clone());
        let item = syn::parse2::<Item>(item).unwrap();
        let kept = match &non_error_items(&output)[..] {
            // A function named `main` is kept inside a placeholder `fn main`.
            [Item::Fn(placeholder)] if matches!(&item, Item::Fn(f) if f.sig.ident == "main") => {
                let expected: ItemFn = parse_quote! {
                    fn main() -> ::std::process::ExitCode {
                        ::std::process::ExitCode::FAILURE
                    }
                };
                assert_eq!(placeholder.sig, expected.sig);
                let [Stmt::Item(Item::Fn(kept)), Stmt::Expr(failure, None)] =
                    &placeholder.block.stmts[..]
                else {
                    panic!("unexpected placeholder:\n{output}");
                };
                assert_eq!(failure, &parse_quote!(::std::process::ExitCode::FAILURE));
                let mut kept = kept.clone();
                assert_eq!(kept.attrs.remove(0), parse_quote!(#[allow(dead_code)]));
                Item::Fn(kept)
            }
            [kept] => kept.clone(),
            other => panic!("unexpected items {other:?}"),
        };
        // The item is kept unchanged, so that rustc still checks it.
        assert_eq!(kept, item);
        compile_errors(&output)
    }

    #[track_caller]
    fn assert_error(item: TokenStream, expected: &str) {
        let errors = errors_of(TokenStream::new(), item);
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(
            errors[0].contains(expected),
            "`{}` does not contain `{expected}`",
            errors[0]
        );
    }

    #[test]
    fn wraps_the_body_in_an_async_fn_given_to_run_main() {
        let (main, inner, run) = expand(quote! {
            /// The program.
            #[allow(clippy::needless_return)]
            async fn main() -> atoll::Result<()> {
                let x = 1;
                work(x).await?;
                return Ok(());
            }
        });
        let expected: ItemFn = parse_quote! {
            /// The program.
            #[allow(clippy::needless_return)]
            fn main() -> ::std::process::ExitCode {}
        };
        assert_eq!(main.attrs, expected.attrs);
        assert_eq!(main.sig, expected.sig);

        let expected: ItemFn = parse_quote! {
            async fn __atoll_main() -> atoll::Result<()> {
                let x = 1;
                work(x).await?;
                return Ok(());
            }
        };
        assert_eq!(inner, expected);
        assert_eq!(
            run,
            parse_quote!(::atoll::__private::run_main(__atoll_main))
        );
    }

    #[test]
    fn inner_attributes_stay_in_the_body() {
        let (main, inner, _) = expand(quote! {
            #[doc = "outer"]
            pub async fn main() -> Result<(), String> {
                #![allow(unused_variables)]
                let unused = 1;
                Ok(())
            }
        });
        let outer: Attribute = parse_quote!(#[doc = "outer"]);
        assert_eq!(main.attrs, [outer]);
        assert_eq!(main.vis, parse_quote!(pub));
        let inner_attr: Attribute = parse_quote!(#![allow(unused_variables)]);
        assert_eq!(inner.attrs, [inner_attr]);
        // Printed back, the inner attribute sits at the top of the body.
        let printed = inner.to_token_stream().to_string();
        assert!(
            printed.contains("{ # ! [allow (unused_variables)] let unused"),
            "{printed}"
        );
    }

    #[test]
    fn requires_a_return_type() {
        assert_eq!(
            errors_of(quote!(), quote! { async fn main() {} }),
            ["#[atoll::main] needs `-> atoll::Result<()>` (or `Result<(), E>`)"]
        );
    }

    #[test]
    fn requires_async_fn_main() {
        assert_error(
            quote! { fn main() -> atoll::Result<()> { Ok(()) } },
            "needs `async fn main` (the function is not `async`)",
        );
        assert_error(
            quote! { async fn start() -> atoll::Result<()> { Ok(()) } },
            "goes on `async fn main`, the program's entry point (found `start`)",
        );
        assert_error(
            quote! { const async fn main() -> atoll::Result<()> { Ok(()) } },
            "not `const`",
        );
        assert_error(
            quote! { async unsafe fn main() -> atoll::Result<()> { Ok(()) } },
            "cannot be `unsafe`",
        );
        assert_error(
            quote! { async extern "C" fn main() -> atoll::Result<()> { Ok(()) } },
            "cannot have an ABI",
        );
    }

    #[test]
    fn rejects_arguments_and_generics() {
        assert_error(
            quote! { async fn main(args: Vec<String>) -> atoll::Result<()> { Ok(()) } },
            "`main` takes no arguments",
        );
        assert_error(
            quote! { async fn main<T>() -> atoll::Result<()> { Ok(()) } },
            "`main` cannot be generic",
        );
        assert_error(
            quote! { async fn main() -> atoll::Result<()> where u8: Send { Ok(()) } },
            "`main` cannot have a `where` clause",
        );
    }

    #[test]
    fn rejects_attribute_arguments_and_other_items() {
        assert_eq!(
            errors_of(
                quote!(places = 4),
                quote! { async fn main() -> Result<(), E> { Ok(()) } }
            ),
            ["#[atoll::main] takes no arguments"]
        );
        assert_eq!(
            errors_of(quote!(), quote! { static MAIN: u8 = 0; }),
            ["#[atoll::main] applies to `async fn main`"]
        );
    }

    #[test]
    fn reports_every_error_at_once() {
        let errors = errors_of(quote!(), quote! { fn start(x: u8) {} });
        assert_eq!(errors.len(), 4, "{errors:#?}");
    }
}
