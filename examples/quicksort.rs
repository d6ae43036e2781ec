//! Parallel quicksort across places (the Crayfish README's example): above a cut-off, each
//! call splits its numbers around a pivot, sorts the smaller part at the next place and the
//! larger part here (without serialization), overlapped, and concatenates the results. The
//! partition is three-way (less, equal, greater than the pivot), so duplicates, even an input
//! of one repeated value, end the recursion. Each input is checked against a sequential
//! `sort_unstable` of a copy: the result must be sorted and a permutation of the input.
//!
//! This shows the pattern, not a speedup: on one machine a number crosses between places
//! through shared memory, and moving it costs more than sorting it, so the sequential time is
//! printed beside the parallel one.
//!
//! `cargo run --release --example quicksort -- 1000000` (2 places; `ATOLL_PLACES=N` for more).

use std::time::{Duration, Instant};

use atoll::prelude::*;

/// Below this many numbers, the work is not worth a message: sort here.
const CUTOFF: usize = 1 << 14;

const _: () = assert!(CUTOFF >= 31, "choose_pivot samples 31 numbers");

/// The median of 31 numbers spread evenly over `nums` (at least 31 of them).
fn choose_pivot(nums: &[u64]) -> u64 {
    let mut sample: [u64; 31] = std::array::from_fn(|i| nums[(2 * i + 1) * nums.len() / 62]);
    *sample.select_nth_unstable(15).1
}

/// Moves the numbers for which `first` holds to the front, keeping none of the order, and
/// returns how many there are. Branch-free: every step swaps, and the front grows by 0 or 1.
fn partition_by(nums: &mut [u64], first: impl Fn(u64) -> bool) -> usize {
    let mut front = 0;
    for i in 0..nums.len() {
        nums.swap(i, front);
        front += usize::from(first(nums[front]));
    }
    front
}

/// Three-way partition around `pivot`: afterwards `nums[..lt]` are less, `nums[lt..gt]`
/// equal and `nums[gt..]` greater. Returns `(lt, gt)`; `gt > lt` when `pivot` is one of
/// `nums`, so every level of the recursion removes at least one number.
fn partition3(nums: &mut [u64], pivot: u64) -> (usize, usize) {
    let lt = partition_by(nums, |x| x < pivot);
    let equal = partition_by(&mut nums[lt..], |x| x == pivot);
    (lt, lt + equal)
}

/// Sorts `nums`, at whichever place runs it. The result reuses `nums`'s buffer: the larger
/// part is sorted in it, in place, and the smaller part's result is copied back into it.
#[atoll::remote]
async fn quick_sort(mut nums: Vec<u64>) -> Vec<u64> {
    let n = nums.len();
    if n <= CUTOFF {
        nums.sort_unstable();
        return nums;
    }
    let pivot = choose_pivot(&nums);
    let (lt, gt) = partition3(&mut nums, pivot);
    // The smaller part travels (copied out, then serialized once); the larger one stays, moved
    // to the front of the buffer.
    let less_is_smaller = lt <= n - gt;
    let smaller = if less_is_smaller {
        let less = nums[..lt].to_vec();
        nums.copy_within(gt.., 0);
        nums.truncate(n - gt);
        less
    } else {
        let greater = nums[gt..].to_vec();
        nums.truncate(lt);
        greater
    };
    let next = Place::new((here().index() + 1) % num_places());
    // The remote call is polled first, so its message leaves before the local sort starts.
    let (smaller, larger) = futures::join!(
        at!(next, quick_sort(smaller)),
        at!(here(), quick_sort(nums))
    );
    let (smaller, mut sorted) = match (smaller, larger) {
        (Ok(smaller), Ok(larger)) => (smaller, larger),
        (Err(error), _) | (_, Err(error)) => panic!("quick_sort failed: {error}"),
    };
    // Less, equal, greater, in the larger part's buffer (whose capacity is still `n`).
    sorted.resize(n, pivot);
    if less_is_smaller {
        sorted.copy_within(..n - gt, gt);
        sorted[..lt].copy_from_slice(&smaller);
        sorted[lt..gt].fill(pivot);
    } else {
        sorted[gt..].copy_from_slice(&smaller);
    }
    sorted
}

/// SplitMix64: the next number of the generator whose state is `state`.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Sorts `nums` across the places, starting at place 1, and checks the result against a
/// sequential sort of a copy. Returns the distributed and the sequential time.
async fn sort_and_check(what: &str, nums: Vec<u64>) -> atoll::Result<(Duration, Duration)> {
    let mut expected = nums.clone();
    let start = Instant::now();
    expected.sort_unstable();
    let sequential = start.elapsed();

    let first = Place::new(1 % num_places());
    let start = Instant::now();
    let sorted = at!(first, quick_sort(nums)).await?;
    let parallel = start.elapsed();

    let problem = if !sorted.is_sorted() {
        Some("is not sorted".to_owned())
    } else if sorted.len() != expected.len() {
        Some(format!(
            "has {} numbers, the input {}",
            sorted.len(),
            expected.len()
        ))
    } else if sorted != expected {
        Some("is sorted but not a permutation of the input".to_owned())
    } else {
        None
    };
    match problem {
        Some(problem) => Err(atoll::Error::Remote(atoll::Failure {
            place: here(),
            function: "quicksort::main".into(),
            message: format!("the result of sorting the {what} numbers {problem}"),
        })),
        None => Ok((parallel, sequential)),
    }
}

#[atoll::main]
async fn main() -> atoll::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let mut state = 0x5EED;
    let inputs = [
        ("random", (0..n).map(|_| splitmix64(&mut state)).collect()),
        (
            "3-valued",
            (0..n).map(|_| splitmix64(&mut state) % 3).collect(),
        ),
        ("equal", vec![42; n]),
    ];
    for (what, nums) in inputs {
        let (parallel, sequential) = sort_and_check(what, nums).await?;
        println!(
            "sorted {n} {what} numbers on {} places in {parallel:.2?} (sequential sort_unstable: {sequential:.2?}) (checked)",
            num_places()
        );
    }
    Ok(())
}
