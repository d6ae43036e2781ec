//! Two places bounce a message back and forth; every place reports from its own process.
//!
//! `cargo run --release --example pingpong` starts 2 places (`ATOLL_PLACES=N` for more: place 0
//! then plays ping-pong with each of them in turn).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use atoll::{CommBuilder, HandlerId, Place};

const PING: HandlerId = HandlerId::new(1);
const PONG: HandlerId = HandlerId::new(2);
const DONE: HandlerId = HandlerId::new(3);

/// The ball: how many times it has been hit, and some cargo.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug)]
struct Ball {
    hits: u64,
    cargo: Vec<u8>,
}

fn main() -> atoll::Result<()> {
    let returned = Arc::new(AtomicU64::new(0));
    let counter = returned.clone();
    let finished = Arc::new(AtomicU64::new(0));
    let finish_flag = finished.clone();
    let comm = CommBuilder::new()
        .handler(PING, |comm, msg| {
            let ball = msg.deserialize::<Ball>()?;
            let ball = Ball {
                hits: ball.hits + 1,
                cargo: ball.cargo,
            };
            comm.send(msg.from(), PONG, &ball)
        })
        .handler(PONG, move |_comm, msg| {
            let ball = msg.access::<Ball>()?;
            counter.store(ball.hits.to_native(), Ordering::Release);
            Ok(())
        })
        .handler(DONE, move |_comm, _msg| {
            finish_flag.store(1, Ordering::Release);
            Ok(())
        })
        .init()?;
    println!(
        "hello from {} of {} (pid {})",
        comm.here(),
        comm.len(),
        std::process::id()
    );
    comm.bootstrap_barrier()?;
    if comm.here() == Place::new(0) {
        for peer in comm.places().skip(1) {
            for size in [8usize, 1 << 10, 64 << 10, 1 << 20] {
                const ROUNDS: u64 = 1000;
                let start = Instant::now();
                for round in 0..ROUNDS {
                    let ball = Ball {
                        hits: 2 * round,
                        cargo: vec![7; size],
                    };
                    comm.send(peer, PING, &ball)?;
                    comm.wait_until(|| returned.load(Ordering::Acquire) == 2 * round + 1)?;
                }
                let per_round = start.elapsed() / ROUNDS as u32;
                println!("ping-pong with {peer}, {size:>8} B: {per_round:?} per round trip");
            }
            comm.send(peer, DONE, &())?;
        }
    } else {
        // Serve pings until place 0 says it is done.
        comm.wait_until(|| finished.load(Ordering::Acquire) == 1)?;
    }
    comm.flush()?;
    comm.bootstrap_barrier()?;
    println!("{} done", comm.here());
    Ok(())
}
