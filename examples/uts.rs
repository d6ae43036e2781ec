//! Unbalanced Tree Search (UTS) on a geometric tree shaped like UTS's T1 (the same mean
//! branching at every depth, cut at a depth limit): the root has `b0` children, every other
//! node a number drawn from a geometric distribution of mean `m`, and nodes at depth `d` none.
//! The tree is implicit: a node is its 64-bit state, and its children's states derive from it,
//! so any place can expand any node it is handed.
//!
//! UTS proper uses SHA-1; we use SplitMix64 mixing, a documented splittable RNG, so counts are
//! reproducible across places and runs. A node's state seeds a SplitMix64 generator (Steele,
//! Lea and Flood, "Fast splittable pseudorandom number generators", OOPSLA 2014): its output 0
//! draws the number of children, and its output `1 + i` is the state of child `i`. The root's
//! state is output 0 of the generator seeded with `r`.
//!
//! The search counts the nodes: above depth `s`, each node spreads its children across the
//! places round robin with `at!`, overlapped with `join_all`; from depth `s` on, a subtree is
//! counted sequentially where it landed. Place 0 then counts the tree again sequentially and
//! checks that the two counts agree.
//!
//! `cargo run --release --example uts -- -b 4 -m 4 -d 11 -r 19 -s 5` (the defaults: 4,894,967
//! nodes; T1 itself is `-d 10`, but our generator grows a different tree from the same seed).
//! 2 places; `ATOLL_PLACES=N` for more.

use std::time::Instant;

use atoll::prelude::*;

/// SplitMix64's increment (the golden ratio in 64-bit fixed point).
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output function (Stafford's Mix13 variant of the MurmurHash3 finalizer).
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Output `k` of the SplitMix64 generator seeded with `state`.
fn output(state: u64, k: u64) -> u64 {
    mix(state.wrapping_add(k.wrapping_add(1).wrapping_mul(GAMMA)))
}

/// The tree's parameters: every place gets them with each call, so the tree is the same
/// everywhere.
#[derive(Clone, Copy, Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct Tree {
    /// Children of the root (`-b`).
    root_children: u64,
    /// Mean number of children of the other nodes (`-m`).
    mean_children: f64,
    /// Depth of the leaves: nodes this deep have no children (`-d`).
    depth_limit: u32,
    /// The root's seed (`-r`).
    seed: u64,
    /// Nodes above this depth spread their children across places (`-s`).
    spread_depth: u32,
}

impl Tree {
    fn root(&self) -> u64 {
        output(self.seed, 0)
    }

    /// The number of children of the node `state` at `depth`.
    fn children(&self, state: u64, depth: u32) -> u64 {
        if depth >= self.depth_limit {
            return 0;
        }
        if depth == 0 {
            return self.root_children;
        }
        // Geometric of mean m: P(k children) = p (1 - p)^k with p = 1 / (1 + m), by inversion
        // of a uniform u in [0, 1) (UTS's formula).
        let u = (output(state, 0) >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
        let q = self.mean_children / (1.0 + self.mean_children);
        ((1.0 - u).ln() / q.ln()).floor() as u64
    }

    /// The state of child `i` of the node `state`.
    fn child(state: u64, i: u64) -> u64 {
        output(state, 1 + i)
    }

    /// Nodes of the subtree of `state` at `depth`, counted here: depth first, with a stack of
    /// the nodes still to expand (as UTS does), so that no depth limit overflows the stack.
    fn count(&self, state: u64, depth: u32) -> u64 {
        let mut nodes = 0;
        let mut pending = vec![(state, depth)];
        while let Some((state, depth)) = pending.pop() {
            nodes += 1;
            for i in 0..self.children(state, depth) {
                pending.push((Tree::child(state, i), depth + 1));
            }
        }
        nodes
    }
}

/// Nodes of the subtree of `state` at `depth`, counted across the places.
#[atoll::remote]
async fn explore(tree: Tree, state: u64, depth: u32) -> u64 {
    if depth >= tree.spread_depth {
        return tree.count(state, depth);
    }
    let (me, places) = (here().index(), num_places());
    let (mut away, mut home) = (Vec::new(), Vec::new());
    for i in 0..tree.children(state, depth) {
        let place = Place::new((me + 1 + i as usize) % places);
        let call = at!(place, explore(tree, Tree::child(state, i), depth + 1));
        if place.index() == me {
            home.push(call);
        } else {
            away.push(call);
        }
    }
    // The calls away are polled first, so their messages leave before this place starts on
    // its own share (which runs inline, without serialization).
    let (away, home) = futures::join!(
        futures::future::join_all(away),
        futures::future::join_all(home)
    );
    let mut nodes = 1;
    for counted in away.into_iter().chain(home) {
        match counted {
            Ok(count) => nodes += count,
            Err(error) => panic!("explore at depth {}: {error}", depth + 1),
        }
    }
    nodes
}

const USAGE: &str =
    "usage: uts [-b ROOT_CHILDREN] [-m MEAN_CHILDREN] [-d DEPTH] [-r SEED] [-s SPREAD_DEPTH]";

/// The tree the command line asks for (UTS's flags, plus `-s`).
fn parse_args() -> Result<Tree, String> {
    let mut tree = Tree {
        root_children: 4,
        mean_children: 4.0,
        depth_limit: 11,
        seed: 19,
        spread_depth: 5,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let [flag, value] = pair else {
            return Err(format!("{} has no value; {USAGE}", pair[0]));
        };
        let bad = || format!("{flag} {value}: not a number; {USAGE}");
        match flag.as_str() {
            "-b" => tree.root_children = value.parse().map_err(|_| bad())?,
            "-m" => tree.mean_children = value.parse().map_err(|_| bad())?,
            "-d" => tree.depth_limit = value.parse().map_err(|_| bad())?,
            "-r" => tree.seed = value.parse().map_err(|_| bad())?,
            "-s" => tree.spread_depth = value.parse().map_err(|_| bad())?,
            _ => return Err(format!("unknown flag {flag}; {USAGE}")),
        }
    }
    Ok(tree)
}

#[atoll::main]
async fn main() -> atoll::Result<()> {
    let fail = |message: String| {
        Err(atoll::Error::Remote(atoll::Failure {
            place: here(),
            function: "uts::main".into(),
            message,
        }))
    };
    let tree = match parse_args() {
        Ok(tree) => tree,
        Err(message) => return fail(message),
    };
    let start = Instant::now();
    let nodes = at!(here(), explore(tree, tree.root(), 0)).await?;
    let elapsed = start.elapsed();

    let start = Instant::now();
    let expected = tree.count(tree.root(), 0);
    let sequential = start.elapsed();
    if nodes != expected {
        return fail(format!(
            "the search counted {nodes} nodes, but the sequential count is {expected}"
        ));
    }
    println!(
        "UTS geometric tree (b0 {}, m {}, depth {}, seed {}): {nodes} nodes on {} places in {elapsed:.2?}, {:.2} Mnodes/s (sequential: {sequential:.2?}) (checked)",
        tree.root_children,
        tree.mean_children,
        tree.depth_limit,
        tree.seed,
        num_places(),
        nodes as f64 / elapsed.as_secs_f64() / 1e6,
    );
    Ok(())
}
