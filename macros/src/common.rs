//! What both attributes share: reading the annotated function and reporting errors.

use std::fmt::Display;

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::{Item, ItemFn};

/// Collects every error found in one item, so that one compilation reports all of them.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    /// Records `error`.
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(first) => first.combine(error),
            None => self.0 = Some(error),
        }
    }

    /// Records an error with `message`, pointing at `tokens`.
    pub(crate) fn spanned(&mut self, tokens: impl ToTokens, message: impl Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    /// `Err` with every recorded error (as one combined [`syn::Error`]), `Ok` if there is none.
    pub(crate) fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

/// Parses the item that `attribute` (e.g. `#[atoll::remote]`) was put on as a function, or
/// explains that it applies to `what` (e.g. "a free `async fn`").
pub(crate) fn parse_fn(attribute: &str, what: &str, item: TokenStream) -> syn::Result<ItemFn> {
    match syn::parse2::<Item>(item)? {
        Item::Fn(function) => Ok(function),
        other => Err(syn::Error::new_spanned(
            other,
            format!("{attribute} applies to {what}"),
        )),
    }
}

/// Records an error if the attribute was given arguments (`#[atoll::remote(..)]`).
pub(crate) fn check_no_arguments(attribute: &str, arguments: TokenStream, errors: &mut Errors) {
    if !arguments.is_empty() {
        errors.spanned(arguments, format!("{attribute} takes no arguments"));
    }
}

/// The output of an attribute whose input has errors: the errors, as `compile_error!`
/// invocations pointing at their causes, followed by the item unchanged, so that the item's
/// own uses do not add a cascade of "cannot find" errors to the report.
pub(crate) fn errors_and_item(error: &syn::Error, item: impl ToTokens) -> TokenStream {
    let mut output = error.to_compile_error();
    item.to_tokens(&mut output);
    output
}

/// Helpers for the expansion tests of both attributes.
#[cfg(test)]
pub(crate) mod test_support {
    use proc_macro2::TokenStream;
    use syn::{File, Item, LitStr};

    /// Parses an expansion as a file of items (it must be valid Rust syntax).
    pub(crate) fn parse_file(output: &TokenStream) -> File {
        syn::parse2(output.clone())
            .unwrap_or_else(|error| panic!("expansion is not valid Rust ({error}):\n{output}"))
    }

    /// The messages of the `compile_error!` items at the top of an expansion, in order.
    pub(crate) fn compile_errors(output: &TokenStream) -> Vec<String> {
        parse_file(output)
            .items
            .iter()
            .filter_map(|item| match item {
                Item::Macro(item)
                    if item
                        .mac
                        .path
                        .segments
                        .last()
                        .is_some_and(|segment| segment.ident == "compile_error") =>
                {
                    Some(item.mac.parse_body::<LitStr>().unwrap().value())
                }
                _ => None,
            })
            .collect()
    }

    /// The items of an expansion that are not `compile_error!`s.
    pub(crate) fn non_error_items(output: &TokenStream) -> Vec<Item> {
        parse_file(output)
            .items
            .into_iter()
            .filter(|item| !matches!(item, Item::Macro(_)))
            .collect()
    }
}
