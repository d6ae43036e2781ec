//! Compiles and runs the macros' output against a mock of the runtime's hidden API.
//!
//! The unit tests check the shape of the expansions; this file checks that rustc accepts them
//! where users will write them: names resolved through `use super::*`, reanchored `self::` and
//! `super::` paths, a parent's own `Remote` type, private and restricted visibilities, a module
//! without the prelude, `#[cfg]` and `#[deprecated]` functions, types passed through
//! `macro_rules!`. The mock implements `::atoll::__private` as the runtime declares it, with
//! `inventory::submit!` reduced to a constant, so a registration must still be const-evaluable.

#![deny(warnings)]

// The generated code names `::atoll::__private`: here, that is this crate's mock.
extern crate self as atoll;

use std::any::TypeId;
use std::process::ExitCode;

use atoll::__private::{block_on, fn_id, RemoteFn};
use atoll_macros::remote;

/// The mock of the runtime's hidden API.
#[doc(hidden)]
pub mod __private {
    use std::fmt::Display;
    use std::future::Future;
    use std::pin::{pin, Pin};
    use std::process::ExitCode;
    use std::task::{Context, Poll, Waker};

    pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

    pub trait RemoteFn: 'static {
        type Args;
        type Output;
        const NAME: &'static str;
        const ID: u64;
        fn call(args: Self::Args) -> BoxFuture<Self::Output>;
    }

    pub struct RemoteEntry {
        pub name: &'static str,
        pub id: u64,
    }

    impl RemoteEntry {
        pub const fn of<R: RemoteFn>() -> RemoteEntry
        where
            R::Args: Send + 'static,
            R::Output: Send + 'static,
        {
            RemoteEntry {
                name: R::NAME,
                id: R::ID,
            }
        }
    }

    /// FNV-1a over the name, a separator, and the signature.
    pub const fn fn_id(name: &str, signature: &str) -> u64 {
        const fn feed(mut hash: u64, bytes: &[u8]) -> u64 {
            let mut i = 0;
            while i < bytes.len() {
                hash = (hash ^ bytes[i] as u64).wrapping_mul(0x0100_0000_01b3);
                i += 1;
            }
            hash
        }
        let hash = feed(0xcbf2_9ce4_8422_2325, name.as_bytes());
        feed(feed(hash, &[0xff]), signature.as_bytes())
    }

    pub fn run_main<F, Fut, E>(main: F) -> ExitCode
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Display + Send + 'static,
    {
        match block_on(main()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::FAILURE
            }
        }
    }

    /// Polls `future` to completion on this thread.
    pub fn block_on<F: Future>(future: F) -> F::Output {
        let mut future = pin!(future);
        let mut context = Context::from_waker(Waker::noop());
        loop {
            if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
                return output;
            }
            std::thread::yield_now();
        }
    }

    pub mod inventory {
        pub use crate::__mock_submit as submit;
    }
}

/// `inventory::submit!`, reduced to a check that the entry is a constant of the right type.
#[doc(hidden)]
#[macro_export]
macro_rules! __mock_submit {
    ($entry:expr) => {
        const _: $crate::__private::RemoteEntry = $entry;
    };
}

/// The remote function's name, id and argument and result types.
fn describe<R: RemoteFn>() -> (&'static str, u64, TypeId, TypeId)
where
    R::Args: 'static,
    R::Output: 'static,
{
    (
        R::NAME,
        R::ID,
        TypeId::of::<R::Args>(),
        TypeId::of::<R::Output>(),
    )
}

/// Types and remote functions over them, in nested modules.
pub mod shapes {
    /// A point.
    #[derive(Debug, PartialEq)]
    pub struct Point {
        /// Abscissa.
        pub x: i64,
        /// Ordinate.
        pub y: i64,
    }

    /// Remote functions on points.
    pub mod ops {
        use std::collections::BTreeMap;

        /// A scaling factor.
        pub struct Factor(pub i64);

        /// A length, used in an array type.
        pub const LEN: usize = 2;

        /// Visible in the crate, as is the function that takes it.
        pub(crate) struct Offset(pub(crate) i64);

        #[atoll_macros::remote]
        pub(crate) async fn shift(p: super::Point, by: Offset) -> super::Point {
            super::Point {
                x: p.x + by.0,
                y: p.y + by.0,
            }
        }

        /// Scales `p` by `factor`.
        #[atoll_macros::remote]
        pub async fn scale(p: super::Point, factor: self::Factor) -> super::Point {
            super::Point {
                x: p.x * factor.0,
                y: p.y * factor.0,
            }
        }

        /// Private to this module, as are its types.
        struct Secret(i64);

        #[atoll_macros::remote]
        async fn reveal(
            mut values: [i64; self::LEN],
            (a, b): (i64, i64),
            Secret(s): Secret,
            _: BTreeMap<u8, u8>,
        ) -> i64 {
            values[0] += a;
            values[0] + values[1] + b + s
        }

        #[test]
        fn private_functions_are_callable_from_their_module() {
            let total = crate::block_on(<reveal::Remote as crate::RemoteFn>::call((
                [1, 2],
                (10, 20),
                Secret(100),
                BTreeMap::new(),
            )));
            assert_eq!(total, 133);
            assert_eq!(
                <reveal::Remote as crate::RemoteFn>::NAME,
                "expansion::shapes::ops::reveal"
            );
        }

        /// A function visible in its parent only.
        pub mod nested {
            #[atoll_macros::remote]
            pub(super) async fn restricted(p: super::super::Point) -> i64 {
                p.x + p.y
            }
        }

        #[test]
        fn crate_visible_functions_take_crate_visible_types() {
            let shifted = crate::block_on(<shift::Remote as crate::RemoteFn>::call((
                super::Point { x: 1, y: 2 },
                Offset(10),
            )));
            assert_eq!(shifted, super::Point { x: 11, y: 12 });
        }

        #[test]
        fn restricted_functions_are_callable_where_they_are_visible() {
            let sum = crate::block_on(<nested::restricted::Remote as crate::RemoteFn>::call((
                super::Point { x: 2, y: 3 },
            )));
            assert_eq!(sum, 5);
        }
    }
}

#[test]
fn relative_paths_resolve_from_the_generated_module() {
    use shapes::ops::{scale, Factor};
    use shapes::Point;

    let scaled = block_on(<scale::Remote as RemoteFn>::call((
        Point { x: 1, y: -2 },
        Factor(3),
    )));
    assert_eq!(scaled, Point { x: 3, y: -6 });
    // The local call still works too.
    assert_eq!(
        block_on(scale(Point { x: 1, y: 1 }, Factor(2))),
        Point { x: 2, y: 2 }
    );

    let (name, id, args, output) = describe::<scale::Remote>();
    assert_eq!(name, "expansion::shapes::ops::scale");
    assert_eq!(
        id,
        fn_id(
            "expansion::shapes::ops::scale",
            "fn(super::Point, self::Factor) -> super::Point"
        )
    );
    assert_eq!(args, TypeId::of::<(Point, Factor)>());
    assert_eq!(output, TypeId::of::<Point>());
}

#[remote]
async fn square(x: u64) -> u64 {
    x * x
}

/// Does nothing.
#[remote]
pub async fn ping() {}

#[test]
fn argument_lists_are_tuples() {
    let args: <square::Remote as RemoteFn>::Args = (7,);
    assert_eq!(block_on(<square::Remote as RemoteFn>::call(args)), 49);
    assert_eq!(describe::<square::Remote>().2, TypeId::of::<(u64,)>());

    block_on(<ping::Remote as RemoteFn>::call(()));
    assert_eq!(describe::<ping::Remote>().2, TypeId::of::<()>());
    assert_eq!(describe::<ping::Remote>().3, TypeId::of::<()>());
    assert_eq!(
        describe::<ping::Remote>().1,
        fn_id("expansion::ping", "fn() -> ()")
    );
    assert_ne!(describe::<ping::Remote>().1, describe::<square::Remote>().1);
}

/// A module with its own `Remote` type, which the generated `Remote` must not hide.
pub mod shadow {
    /// Not the generated handle.
    #[derive(Debug, PartialEq)]
    pub struct Remote(pub u8);

    /// Returns its argument.
    #[atoll_macros::remote]
    pub async fn echo(r: Remote) -> Option<Remote> {
        Some(r)
    }
}

#[test]
fn a_parent_type_named_remote_is_not_shadowed() {
    let echoed = block_on(<shadow::echo::Remote as RemoteFn>::call((shadow::Remote(
        9,
    ),)));
    assert_eq!(echoed, Some(shadow::Remote(9)));
}

/// A module without the prelude.
pub mod bare {
    #![no_implicit_prelude]

    /// Doubles.
    #[::atoll_macros::remote]
    pub async fn double(x: u32) -> u32 {
        x * 2
    }
}

#[test]
fn expansions_do_not_need_the_prelude() {
    assert_eq!(
        block_on(<bare::double::Remote as RemoteFn>::call((21,))),
        42
    );
}

// `#[cfg]` comes after the macro, so the macro sees it: the module must go with the function
// (if it stayed, the missing type would not compile).
#[remote]
#[cfg(any())]
async fn configured_out(x: DoesNotExist) {}

#[remote]
#[deprecated(note = "registering it must not warn")]
async fn old() -> u8 {
    1
}

#[test]
fn deprecated_functions_register_without_warnings() {
    assert_eq!(block_on(<old::Remote as RemoteFn>::call(())), 1);
}

macro_rules! remote_identity {
    ($name:ident, $ty:ty) => {
        /// Returns its argument.
        #[remote]
        pub async fn $name(x: $ty) -> $ty {
            x
        }
    };
}

remote_identity!(identity_u16, u16);

#[test]
fn types_from_macro_fragments_read_as_written() {
    assert_eq!(block_on(<identity_u16::Remote as RemoteFn>::call((5,))), 5);
    assert_eq!(
        describe::<identity_u16::Remote>().1,
        fn_id("expansion::identity_u16", "fn(u16) -> u16")
    );
}

mod entry {
    use std::sync::atomic::{AtomicU64, Ordering};

    pub(crate) static RESULT: AtomicU64 = AtomicU64::new(0);

    /// Runs a remote function through its handle.
    #[atoll_macros::main]
    pub async fn main() -> Result<(), String> {
        #![allow(clippy::unnecessary_cast)]
        let squared = <super::square::Remote as super::RemoteFn>::call((12,)).await;
        RESULT.store(squared as u64, Ordering::SeqCst);
        Ok(())
    }
}

mod failing_entry {
    #[atoll_macros::main]
    pub async fn main() -> std::io::Result<()> {
        Err(std::io::Error::other("expected failure"))
    }
}

#[test]
fn main_runs_the_body_and_reports_its_result() {
    assert_eq!(entry::main(), ExitCode::SUCCESS);
    assert_eq!(entry::RESULT.load(std::sync::atomic::Ordering::SeqCst), 144);
    assert_eq!(failing_entry::main(), ExitCode::FAILURE);
}
