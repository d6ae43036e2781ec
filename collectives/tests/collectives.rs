//! Every collective against a sequential reference, through real processes, on the transport
//! alone (no runtime): at 1, 2, 3, 4, 7 and 8 places with chaos mode on; teams split into odd
//! and even and split again, with collectives on several teams at once; 1000 back-to-back
//! allreduces; members that disagree; a place that dies mid-collective.
//!
//! The test binary is both the driver (run by `cargo test`: one job per case through the local
//! launcher) and the place program (with `ATOLL_COLLECTIVES_CASE` set). Under an external
//! launcher, `ATOLL_COLLECTIVES_CASE=reference` runs the reference case directly.

use std::process::ExitCode;

use atoll_collectives::{block_on, op, Collectives, Engine, Error, Parts, Team};
use atoll_comm::{Comm, CommBuilder, Place};
use atoll_testkit::{exit_code, Suite};
use libtest_mimic::Trial;

const SUITE: Suite = Suite::spmd("ATOLL_COLLECTIVES_CASE").chaos_seed("5");

fn main() -> ExitCode {
    let place = |case: String| exit_code(&format!("collectives case {case}"), place_main(&case));
    SUITE.main(place, || {
        let mut trials: Vec<Trial> = [1, 2, 3, 4, 7, 8]
            .into_iter()
            .map(|places| SUITE.trial("reference", places, true))
            .collect();
        trials.push(SUITE.trial("reference", 4, false));
        trials.extend([3, 8].map(|places| SUITE.trial("teams", places, true)));
        trials.push(SUITE.trial("back_to_back", 4, true));
        trials.push(SUITE.trial("mismatch", 3, false));
        trials.push(SUITE.failure_trial("place_failed", 4, 3, &["place 3"]));
        trials
    })
}

type CaseResult = Result<(), String>;

fn place_main(case: &str) -> CaseResult {
    let engine = Engine::new();
    let comm = engine
        .register(CommBuilder::new())
        .init()
        .map_err(|e| format!("init: {e}"))?;
    let world = engine.world(&comm);
    match case {
        "reference" => reference(&comm, &world)?,
        "teams" => teams(&comm, &world)?,
        "back_to_back" => back_to_back(&comm, &world)?,
        "mismatch" => mismatch(&comm, &world)?,
        "place_failed" => {
            // The job has a dead place: no flush or barrier with it.
            place_failed(&comm, &world)?;
            println!("{case}: ok");
            return Ok(());
        }
        other => return Err(format!("unknown case {other:?}")),
    }
    comm.flush().map_err(|e| e.to_string())?;
    comm.bootstrap_barrier().map_err(|e| e.to_string())?;
    println!("{case}: ok");
    Ok(())
}

/// `Err` naming `what` unless `got == expected`.
fn check<T: PartialEq + std::fmt::Debug>(what: &str, got: T, expected: T) -> CaseResult {
    if got == expected {
        Ok(())
    } else {
        Err(format!("{what}: got {got:?}, expected {expected:?}"))
    }
}

fn run<T>(
    comm: &Comm,
    what: &str,
    future: impl std::future::Future<Output = atoll_collectives::Result<T>>,
) -> Result<T, String> {
    block_on(comm, future).map_err(|e| format!("{what}: {e}"))
}

/// A 2×2 matrix of wrapping integers: multiplication is associative but not commutative, so
/// it shows whether a reduction combines in rank order.
type Matrix = [u64; 4];

fn multiply(a: Matrix, b: Matrix) -> Matrix {
    let m = |x: u64, y: u64| x.wrapping_mul(y);
    [
        m(a[0], b[0]).wrapping_add(m(a[1], b[2])),
        m(a[0], b[1]).wrapping_add(m(a[1], b[3])),
        m(a[2], b[0]).wrapping_add(m(a[3], b[2])),
        m(a[2], b[1]).wrapping_add(m(a[3], b[3])),
    ]
}

fn matrix(rank: usize, index: usize) -> Matrix {
    let (r, i) = (rank as u64, index as u64);
    [r + 2, i + 1, r * 3 + i, 1]
}

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq)]
struct Record {
    name: String,
    values: Vec<u64>,
    weight: Option<f64>,
}

fn record(rank: usize) -> Record {
    Record {
        name: format!("place {rank}"),
        values: (0..rank as u64 * 3).collect(),
        weight: (rank % 2 == 0).then_some(rank as f64 / 2.0),
    }
}

fn reference(comm: &Comm, world: &Team) -> CaseResult {
    let (p, r) = (world.size(), world.rank());
    let ranks = 0..p;
    for _ in 0..3 {
        run(comm, "barrier", world.barrier())?;
    }

    // Broadcast: values from every root, slices of several sizes (the largest goes by
    // rendezvous).
    for root in ranks.clone() {
        let value = (r == root).then(|| record(root));
        let got = run(comm, "broadcast", world.broadcast(root, value))?;
        check("broadcast", got, record(root))?;
    }
    // A large value through registered memory, from the last rank.
    let big: Vec<u64> = (0..200_000).collect();
    let value = (r == p - 1).then(|| big.clone());
    check(
        "large broadcast",
        run(comm, "broadcast", world.broadcast(p - 1, value))? == big,
        true,
    )?;
    for len in [0usize, 1, 1000, 300_000] {
        let root = p - 1;
        let expected: Vec<u64> = (0..len as u64).map(|i| i * 7 + root as u64).collect();
        let mut buffer = if r == root {
            expected.clone()
        } else {
            vec![0; len]
        };
        run(
            comm,
            "broadcast_into",
            world.broadcast_into(root, &mut buffer),
        )?;
        check(
            &format!("broadcast_into of {len}"),
            buffer == expected,
            true,
        )?;
    }

    // Reduce: at every root; a sum, and a concatenation (not commutative).
    for root in ranks.clone() {
        let sum = run(comm, "reduce", world.reduce(root, r as u64 + 1, op::Sum))?;
        check(
            "reduce sum",
            sum,
            (r == root).then_some((p * (p + 1) / 2) as u64),
        )?;
        let concatenate = |a: String, b: String| a + &b;
        let text = run(
            comm,
            "reduce",
            world.reduce(root, format!("{r},"), concatenate),
        )?;
        let expected: String = ranks.clone().map(|i| format!("{i},")).collect();
        check(
            "reduce concatenation",
            text,
            (r == root).then_some(expected),
        )?;
        let data: Vec<u64> = (0..100).map(|i| (r * 1000 + i) as u64).collect();
        let max = run(
            comm,
            "reduce_slice",
            world.reduce_slice(root, &data, op::Max),
        )?;
        let expected: Vec<u64> = (0..100).map(|i| ((p - 1) * 1000 + i) as u64).collect();
        check("reduce_slice max", max, (r == root).then_some(expected))?;
    }

    // Allreduce: the usual operations, a closure that does not commute, a struct.
    let me = r as u64 + 1;
    check(
        "allreduce sum",
        run(comm, "allreduce", world.allreduce(me, op::Sum))?,
        (p * (p + 1) / 2) as u64,
    )?;
    check(
        "allreduce min",
        run(comm, "allreduce", world.allreduce(me, op::Min))?,
        1,
    )?;
    check(
        "allreduce max",
        run(comm, "allreduce", world.allreduce(-(me as f64), op::Max))?,
        -1.0,
    )?;
    check(
        "allreduce product",
        run(comm, "allreduce", world.allreduce(me, op::Product))?,
        (1..=p as u64).product(),
    )?;
    check(
        "allreduce bit or",
        run(comm, "allreduce", world.allreduce(1u64 << r, op::BitOr))?,
        (1u64 << p) - 1,
    )?;
    check(
        "allreduce bit and",
        run(comm, "allreduce", world.allreduce(!(1u64 << r), op::BitAnd))?,
        !((1u64 << p) - 1),
    )?;
    check(
        "allreduce bit xor",
        run(comm, "allreduce", world.allreduce(3u8, op::BitXor))?,
        if p % 2 == 1 { 3 } else { 0 },
    )?;
    check(
        "allreduce logical and",
        run(comm, "allreduce", world.allreduce(r != 1, op::LogicalAnd))?,
        p < 2,
    )?;
    check(
        "allreduce logical or",
        run(
            comm,
            "allreduce",
            world.allreduce(r == p - 1, op::LogicalOr),
        )?,
        true,
    )?;
    check(
        "allreduce logical xor on numbers",
        run(comm, "allreduce", world.allreduce(7i32, op::LogicalXor))?,
        if p == 1 { 7 } else { (p % 2) as i32 },
    )?;
    let text = run(
        comm,
        "allreduce",
        world.allreduce(format!("{r},"), |a: String, b: String| a + &b),
    )?;
    check(
        "allreduce concatenation",
        text,
        ranks.clone().map(|i| format!("{i},")).collect::<String>(),
    )?;
    let merged = run(
        comm,
        "allreduce",
        world.allreduce(record(r), |mut a: Record, b: Record| {
            a.name.push_str(&b.name);
            a.values.extend(b.values);
            a
        }),
    )?;
    check(
        "allreduce records",
        merged.values.len(),
        ranks.clone().map(|i| i * 3).sum::<usize>(),
    )?;

    // Allreduce of slices: below and above the segmented algorithm's threshold; a sum, a
    // minimum, and matrices (not commutative).
    for len in [0usize, 7, 1500, 10_000] {
        let data: Vec<i64> = (0..len as i64)
            .map(|i| i * (r as i64 + 1) - r as i64)
            .collect();
        let sum = run(
            comm,
            "allreduce_slice",
            world.allreduce_slice(&data, op::Sum),
        )?;
        let expected: Vec<i64> = (0..len as i64)
            .map(|i| ranks.clone().map(|q| i * (q as i64 + 1) - q as i64).sum())
            .collect();
        check(
            &format!("allreduce_slice sum of {len}"),
            sum == expected,
            true,
        )?;
        let floats: Vec<f32> = (0..len).map(|i| (i as f32) - r as f32).collect();
        let min = run(
            comm,
            "allreduce_slice",
            world.allreduce_slice(&floats, op::Min),
        )?;
        let expected: Vec<f32> = (0..len).map(|i| i as f32 - (p - 1) as f32).collect();
        check(
            &format!("allreduce_slice min of {len}"),
            min == expected,
            true,
        )?;
    }
    for len in [3usize, 5000] {
        let data: Vec<Matrix> = (0..len).map(|i| matrix(r, i)).collect();
        let product = run(
            comm,
            "allreduce_slice",
            world.allreduce_slice(&data, multiply),
        )?;
        let expected: Vec<Matrix> = (0..len)
            .map(|i| {
                ranks
                    .clone()
                    .map(|q| matrix(q, i))
                    .reduce(multiply)
                    .unwrap_or_default()
            })
            .collect();
        check(
            &format!("allreduce_slice matrix product of {len}"),
            product == expected,
            true,
        )?;
    }

    // Gather and allgather: values of different sizes, slices of different lengths.
    for root in ranks.clone() {
        let values: Vec<u64> = (0..r as u64).collect();
        let got = run(comm, "gather", world.gather(root, &values))?;
        let expected: Vec<Vec<u64>> = ranks.clone().map(|q| (0..q as u64).collect()).collect();
        check("gather", got, (r == root).then_some(expected))?;
    }
    let slice: Vec<u16> = vec![r as u16; r + 1];
    let got = run(comm, "gatherv", world.gatherv(p - 1, &slice))?;
    let expected = Parts::from_parts(
        &ranks
            .clone()
            .map(|q| vec![q as u16; q + 1])
            .collect::<Vec<_>>(),
    );
    check("gatherv", got, (r == p - 1).then_some(expected))?;
    let got = run(comm, "allgather", world.allgather(&record(r)))?;
    check(
        "allgather",
        got,
        ranks.clone().map(record).collect::<Vec<_>>(),
    )?;
    let slice: Vec<u32> = (0..3 * r as u32).collect();
    let got = run(comm, "allgatherv", world.allgatherv(&slice))?;
    let expected = Parts::from_parts(
        &ranks
            .clone()
            .map(|q| (0..3 * q as u32).collect::<Vec<_>>())
            .collect::<Vec<_>>(),
    );
    check("allgatherv", got, expected)?;

    // Scatter: values from every root, parts of different lengths.
    for root in ranks.clone() {
        let values = (r == root).then(|| ranks.clone().map(|q| format!("{root}->{q}")).collect());
        let got = run(comm, "scatter", world.scatter(root, values))?;
        check("scatter", got, format!("{root}->{r}"))?;
    }
    let parts = Parts::from_parts(&ranks.clone().map(|q| vec![q as f64; q]).collect::<Vec<_>>());
    let got = run(
        comm,
        "scatterv",
        world.scatterv(0, (r == 0).then_some(&parts)),
    )?;
    check("scatterv", got, vec![r as f64; r])?;

    // All-to-all.
    let values: Vec<String> = ranks.clone().map(|q| format!("{r}->{q}")).collect();
    let got = run(comm, "alltoall", world.alltoall(values))?;
    check(
        "alltoall",
        got,
        ranks
            .clone()
            .map(|q| format!("{q}->{r}"))
            .collect::<Vec<_>>(),
    )?;
    let parts = Parts::from_parts(
        &ranks
            .clone()
            .map(|q| vec![(r * 100 + q) as u32; q + r])
            .collect::<Vec<_>>(),
    );
    let got = run(comm, "alltoallv", world.alltoallv(&parts))?;
    let expected = Parts::from_parts(
        &ranks
            .clone()
            .map(|q| vec![(q * 100 + r) as u32; q + r])
            .collect::<Vec<_>>(),
    );
    check("alltoallv", got, expected)?;

    // Scans.
    check(
        "scan sum",
        run(comm, "scan", world.scan(me, op::Sum))?,
        (1..=me).sum::<u64>(),
    )?;
    let text = run(
        comm,
        "scan",
        world.scan(format!("{r},"), |a: String, b: String| a + &b),
    )?;
    check(
        "scan concatenation",
        text,
        (0..=r).map(|i| format!("{i},")).collect::<String>(),
    )?;
    let text = run(
        comm,
        "exscan",
        world.exscan(format!("{r},"), |a: String, b: String| a + &b),
    )?;
    check(
        "exscan concatenation",
        text,
        (r > 0).then(|| (0..r).map(|i| format!("{i},")).collect::<String>()),
    )?;
    let data: Vec<Matrix> = (0..3).map(|i| matrix(r, i)).collect();
    let got = run(comm, "scan_slice", world.scan_slice(&data, multiply))?;
    let expected: Vec<Matrix> = (0..3)
        .map(|i| {
            (0..=r)
                .map(|q| matrix(q, i))
                .reduce(multiply)
                .unwrap_or_default()
        })
        .collect();
    check("scan_slice matrices", got, expected)?;
    let got = run(
        comm,
        "exscan_slice",
        world.exscan_slice(&[me, 2 * me], op::Sum),
    )?;
    let below: u64 = (1..me).sum();
    check(
        "exscan_slice",
        got,
        (r > 0).then_some(vec![below, 2 * below]),
    )?;
    Ok(())
}

fn teams(comm: &Comm, world: &Team) -> CaseResult {
    let (p, r) = (world.size(), world.rank());
    // Odd and even places; then each of those split in halves, ranked backwards.
    let parity = run(comm, "split", world.split((r % 2) as u64, 0))?;
    let members: Vec<Place> = (0..p).filter(|q| q % 2 == r % 2).map(Place::new).collect();
    check("parity members", parity.places().to_vec(), members.clone())?;
    let nested = run(
        comm,
        "split",
        parity.split(
            (parity.rank() * 2 / parity.size().max(1)) as u64,
            -(parity.rank() as i64),
        ),
    )?;
    let half: Vec<Place> = {
        let size = members.len();
        let mine = parity.rank() * 2 / size;
        let mut half: Vec<Place> = (0..size)
            .filter(|q| q * 2 / size == mine)
            .map(|q| members[q])
            .collect();
        half.reverse();
        half
    };
    check("nested members", nested.places().to_vec(), half)?;
    // Team ids agree within a team and differ between teams.
    let ids = run(
        comm,
        "allgather",
        world.allgather(&(parity.id(), nested.id())),
    )?;
    for (q, &(parity_id, nested_id)) in ids.iter().enumerate() {
        check("parity ids", parity_id == parity.id(), q % 2 == r % 2)?;
        check(
            "nested ids",
            nested_id == nested.id(),
            nested.rank_of(Place::new(q)).is_some(),
        )?;
    }
    // Collectives on three teams at once, interleaved on this thread.
    let copy = run(comm, "split", world.split(0, r as i64))?;
    let (a, b, c, d) = block_on(comm, async {
        futures::join!(
            world.allreduce(1u64, op::Sum),
            parity.allgather(&r),
            nested.allreduce(r as u64, op::Max),
            copy.barrier(),
        )
    });
    check("world sum", a.map_err(|e| e.to_string())?, p as u64)?;
    check(
        "parity allgather",
        b.map_err(|e| e.to_string())?,
        (0..p).filter(|q| q % 2 == r % 2).collect::<Vec<_>>(),
    )?;
    let nested_max = nested.places().iter().map(|q| q.index() as u64).max();
    check(
        "nested max",
        Some(c.map_err(|e| e.to_string())?),
        nested_max,
    )?;
    d.map_err(|e| e.to_string())?;
    // The node team: every place of a local job shares this host.
    let node = run(comm, "split_by_node", world.split_by_node())?;
    check("node team", node.places().to_vec(), world.places().to_vec())?;
    // Rooted collectives on a sub-team, by the sub-team's ranks.
    let root = parity.size() - 1;
    let got = run(
        comm,
        "broadcast",
        parity.broadcast(root, (parity.rank() == root).then_some(parity.id())),
    )?;
    check("sub-team broadcast", got, parity.id())?;
    Ok(())
}

fn back_to_back(comm: &Comm, world: &Team) -> CaseResult {
    let (p, r) = (world.size(), world.rank());
    block_on(comm, async {
        for i in 0..1000u64 {
            let sum = world
                .allreduce(i + r as u64, op::Sum)
                .await
                .map_err(|e| e.to_string())?;
            check("allreduce", sum, p as u64 * i + (p * (p - 1) / 2) as u64)?;
            if i % 10 == 0 {
                let root = (i as usize / 10) % p;
                let got = world
                    .broadcast(root, (r == root).then_some(i))
                    .await
                    .map_err(|e| e.to_string())?;
                check("broadcast", got, i)?;
            }
        }
        Ok(())
    })
}

fn mismatch(comm: &Comm, world: &Team) -> CaseResult {
    let (p, r) = (world.size(), world.rank());
    // A root that is not a member: every member says so, and nothing is sent.
    match block_on(comm, world.broadcast(p, Some(1u8))) {
        Err(Error::NoSuchRank { rank, size, .. }) if rank == p && size == p => {}
        other => return Err(format!("broadcast from rank {p}: {other:?}")),
    }
    // The root sends a u8, the others expect a u128: a malformed message, named.
    if r == 0 {
        run(comm, "broadcast", world.broadcast(0, Some(7u8)))?;
    } else {
        match block_on(comm, world.broadcast::<u128>(0, None)) {
            Err(Error::InvalidMessage { from, .. }) if from == Place::new(0) => {}
            other => return Err(format!("mismatched broadcast: {other:?}")),
        }
    }
    // One member's buffer is shorter than the root's.
    let mut buffer = vec![r as u32; if r == 1 { 3 } else { 4 }];
    let result = block_on(comm, world.broadcast_into(0, &mut buffer));
    match (r, result) {
        (
            1,
            Err(Error::WrongLength {
                expected: 12,
                got: 16,
                ..
            }),
        ) => {}
        (1, other) => return Err(format!("short buffer: {other:?}")),
        (_, other) => other.map_err(|e| e.to_string())?,
    }
    // A message too short to be a collective's: discarded and reported where it arrives, and
    // nothing else is lost.
    if r == 1 {
        comm.send_bytes(Place::new(0), atoll_collectives::HANDLER, &[0u8; 16], b"x")
            .map_err(|e| e.to_string())?;
    }
    run(comm, "barrier", world.barrier())?;
    if r == 0 {
        let errors = comm.take_errors();
        let reported = errors
            .iter()
            .any(|e| e.to_string().contains("shorter than its prefix"));
        check(
            &format!("the short message reported ({errors:?})"),
            reported,
            true,
        )?;
    }
    // The team goes on.
    check(
        "after",
        run(comm, "allreduce", world.allreduce(1u32, op::Sum))?,
        p as u32,
    )
}

fn place_failed(comm: &Comm, world: &Team) -> CaseResult {
    let r = world.rank();
    run(comm, "barrier", world.barrier())?;
    if r == 3 {
        std::process::exit(3);
    }
    // Every survivor's collective fails, naming place 3: directly, or by another member's
    // abort.
    let start = std::time::Instant::now();
    for _ in 0..2 {
        match block_on(comm, world.allreduce(1u64, op::Sum)) {
            Err(Error::PlaceFailed { place, .. }) if place == Place::new(3) => {}
            other => return Err(format!("allreduce with a dead member: {other:?}")),
        }
    }
    println!("failed after {:?}", start.elapsed());
    // So does making a team with it.
    let alive = run(comm, "split", world.split(0, 0)).err();
    check(
        "split of a team with a dead member fails",
        alive.is_some(),
        true,
    )?;
    Ok(())
}
