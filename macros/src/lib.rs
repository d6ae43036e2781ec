//! Atoll's procedural macros: [`#[remote]`](macro@remote) and [`#[main]`](macro@main).
//!
//! Do not depend on this crate directly: use the macros through the `atoll` facade, as
//! `#[atoll::remote]` and `#[atoll::main]`. The code they generate names the runtime only
//! through `::atoll::__private::`, the facade's hidden re-export of the runtime's API, so it
//! compiles in any crate that depends on `atoll`, whatever that crate has in scope.

mod common;
mod main_attr;
mod remote;

use proc_macro::TokenStream;

/// Makes an `async fn` callable from any place, with `at!` and `async_at!`.
///
/// ```
/// /// Sums the caller's numbers, at the place that runs it.
/// #[atoll::remote]
/// pub async fn sum(values: Vec<u64>) -> u64 {
///     values.iter().sum()
/// }
///
/// #[atoll::main]
/// async fn main() -> atoll::Result<()> {
///     let place = atoll::Place::new(atoll::num_places() - 1);
///     let total = atoll::at!(place, sum(vec![1, 2, 3])).await?;
///     assert_eq!(total, 6);
///     Ok(())
/// }
/// ```
///
/// Arguments travel between processes, so a generic function is refused:
///
/// ```compile_fail
/// #[atoll::remote]
/// async fn first<T: Clone>(values: Vec<T>) -> T {
///     values[0].clone()
/// }
/// # fn main() {}
/// ```
///
/// and so is one whose future is not `Send` (it may be stolen by another worker thread), such
/// as one that keeps an `Rc` across an `.await`:
///
/// ```compile_fail
/// #[atoll::remote]
/// async fn shared(n: u64) -> u64 {
///     let counted = std::rc::Rc::new(n);
///     std::future::ready(()).await;
///     *counted
/// }
/// # fn main() {}
/// ```
///
/// The function stays as written and can still be called locally. Beside it, the macro emits a
/// hidden module of the same name (modules live in the type namespace, functions in the value
/// namespace), with the function's visibility, holding a unit struct `Remote` that implements
/// the runtime's `RemoteFn` trait (`Args` is the tuple of the argument types, `Output` the
/// return type), and registers it with the runtime under a stable id. That id is a hash of the
/// function's module path and of its signature as written, so a call names its target by id,
/// never by a raw function pointer, and an unknown id is a clear error at the receiver.
///
/// # Requirements
///
/// Arguments and the result are serialized between processes, so the function must be:
///
/// - a free `async fn` (not `const`, `unsafe`, `extern`, or variadic, and without `self`);
/// - non-generic, with concrete argument and return types (no `impl Trait`);
/// - over owned values: no references, and no lifetimes other than `'static`.
///
/// Each of these is a compile error that says why. The types must also meet the runtime's
/// serialization bounds, and the future must be `Send`: rustc checks both, and points at the
/// function's name when they fail.
///
/// `Remote` is exactly as visible as the function (a private function's handle is visible in
/// its module), since whoever may call the function remotely must be able to name it. So the
/// argument and return types must be at least as visible as the function: a `pub` function that
/// takes a `pub(crate)` type, which rustc only warns about (`private_interfaces`), is an error
/// here (E0446, "private type in public interface", pointing at the argument list).
///
/// Argument patterns (`mut x: T`, `(a, b): (u32, u32)`), doc comments and other attributes are
/// kept. A `#[cfg(..)]` on the function also applies to the generated module; `#[cfg]` on a
/// single argument is rejected, since the argument tuple would then depend on the build.
///
/// # Limitations
///
/// - The function must be an item of a module (not of a function body or an `impl` block): the
///   generated module reaches it as `super::name`.
/// - The module takes the function's name in the type namespace, so a struct, enum, trait or
///   module of the same name in the same scope is a conflict.
/// - Types are resolved inside the generated module through `use super::*`. The macro rewrites
///   paths that would resolve differently there (a leading `self::` or `super::`, and a leading
///   `Remote`, which would name the generated struct), but it cannot see into types written as
///   macro calls.
#[proc_macro_attribute]
pub fn remote(attr: TokenStream, item: TokenStream) -> TokenStream {
    remote::expand_remote(attr.into(), item.into()).into()
}

/// Runs `async fn main` on the Atoll runtime: at place 0, while every other place of the job
/// serves remote activities.
///
/// ```
/// #[atoll::main]
/// async fn main() -> atoll::Result<()> {
///     println!("hello");
///     Ok(())
/// }
/// ```
///
/// expands to a synchronous `fn main() -> std::process::ExitCode` (with the original function's
/// attributes) that hands the body, as an inner `async fn`, to the runtime's `run_main`. The
/// runtime starts or joins the job, runs the body, shuts the job down cleanly and turns the
/// result into the process's exit status, printing the error if there is one.
///
/// The function must be named `main`, be `async`, take no arguments, not be generic, and
/// return `Result<(), E>` with `E: Display` (for example `atoll::Result<()>`): a missing return
/// type is an error rather than an implicit `()`, so that errors are never silently dropped.
/// Its future must be `Send`.
#[proc_macro_attribute]
pub fn main(attr: TokenStream, item: TokenStream) -> TokenStream {
    main_attr::expand_main(attr.into(), item.into()).into()
}
