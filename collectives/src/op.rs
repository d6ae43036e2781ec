//! Reduction operations: the usual ones (sum, product, min, max, bitwise, logical), and any
//! closure `Fn(T, T) -> T`.
//!
//! Every reduction combines values in team-rank order — `reduce` over ranks 0, 1, 2 computes
//! `(v0 ∘ v1) ∘ v2` up to associativity — so an operation must be associative, but need not be
//! commutative (string concatenation, matrix products, "first non-empty" all work).
//!
//! ```
//! use atoll_collectives::op::{self, Reduction};
//!
//! assert_eq!(op::Sum.combine(2, 3), 5);
//! assert_eq!(op::Max.combine(2.5, -1.0), 2.5);
//! assert_eq!(op::BitXor.combine(0b1100u8, 0b1010), 0b0110);
//! assert_eq!(op::LogicalAnd.combine(3u32, 0), 0);
//! let concatenate = |a: String, b: String| a + &b;
//! assert_eq!(concatenate.combine("ab".into(), "c".into()), "abc");
//! ```

/// An associative operation that combines two values into one (`left` comes from lower team
/// ranks than `right`).
pub trait Reduction<T>: Send + Sync {
    /// `left ∘ right`.
    fn combine(&self, left: T, right: T) -> T;
}

impl<T, F> Reduction<T> for F
where
    F: Fn(T, T) -> T + Send + Sync,
{
    fn combine(&self, left: T, right: T) -> T {
        self(left, right)
    }
}

/// `left + right`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sum;

impl<T: std::ops::Add<Output = T>> Reduction<T> for Sum {
    fn combine(&self, left: T, right: T) -> T {
        left + right
    }
}

/// `left * right`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Product;

impl<T: std::ops::Mul<Output = T>> Reduction<T> for Product {
    fn combine(&self, left: T, right: T) -> T {
        left * right
    }
}

/// The smaller value (the left one on ties, and when the two do not compare, as with NaN).
#[derive(Clone, Copy, Debug, Default)]
pub struct Min;

impl<T: PartialOrd> Reduction<T> for Min {
    fn combine(&self, left: T, right: T) -> T {
        if right < left {
            right
        } else {
            left
        }
    }
}

/// The larger value (the left one on ties, and when the two do not compare, as with NaN).
#[derive(Clone, Copy, Debug, Default)]
pub struct Max;

impl<T: PartialOrd> Reduction<T> for Max {
    fn combine(&self, left: T, right: T) -> T {
        if right > left {
            right
        } else {
            left
        }
    }
}

/// `left & right`.
#[derive(Clone, Copy, Debug, Default)]
pub struct BitAnd;

impl<T: std::ops::BitAnd<Output = T>> Reduction<T> for BitAnd {
    fn combine(&self, left: T, right: T) -> T {
        left & right
    }
}

/// `left | right`.
#[derive(Clone, Copy, Debug, Default)]
pub struct BitOr;

impl<T: std::ops::BitOr<Output = T>> Reduction<T> for BitOr {
    fn combine(&self, left: T, right: T) -> T {
        left | right
    }
}

/// `left ^ right`.
#[derive(Clone, Copy, Debug, Default)]
pub struct BitXor;

impl<T: std::ops::BitXor<Output = T>> Reduction<T> for BitXor {
    fn combine(&self, left: T, right: T) -> T {
        left ^ right
    }
}

/// Logical and: on `bool`, and on numbers as C and MPI do (non-zero is true; the result is
/// 1 or 0).
#[derive(Clone, Copy, Debug, Default)]
pub struct LogicalAnd;

/// Logical or: on `bool`, and on numbers as C and MPI do (non-zero is true; the result is
/// 1 or 0).
#[derive(Clone, Copy, Debug, Default)]
pub struct LogicalOr;

/// Logical exclusive or: on `bool`, and on numbers as C and MPI do (non-zero is true; the
/// result is 1 or 0).
#[derive(Clone, Copy, Debug, Default)]
pub struct LogicalXor;

impl Reduction<bool> for LogicalAnd {
    fn combine(&self, left: bool, right: bool) -> bool {
        left && right
    }
}

impl Reduction<bool> for LogicalOr {
    fn combine(&self, left: bool, right: bool) -> bool {
        left || right
    }
}

impl Reduction<bool> for LogicalXor {
    fn combine(&self, left: bool, right: bool) -> bool {
        left != right
    }
}

macro_rules! logical_on_numbers {
    ($zero:expr, $one:expr; $($t:ty),*) => {$(
        impl Reduction<$t> for LogicalAnd {
            fn combine(&self, left: $t, right: $t) -> $t {
                if left != $zero && right != $zero { $one } else { $zero }
            }
        }
        impl Reduction<$t> for LogicalOr {
            fn combine(&self, left: $t, right: $t) -> $t {
                if left != $zero || right != $zero { $one } else { $zero }
            }
        }
        impl Reduction<$t> for LogicalXor {
            fn combine(&self, left: $t, right: $t) -> $t {
                if (left != $zero) != (right != $zero) { $one } else { $zero }
            }
        }
    )*};
}

logical_on_numbers!(0, 1; u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize);
logical_on_numbers!(0.0, 1.0; f32, f64);
