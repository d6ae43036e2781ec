//! Every place says hello from a remote activity; place 0 then asks the last place for a
//! greeting and prints the answer.
//!
//! `cargo run --release --example hello` (2 places; `ATOLL_PLACES=N` for more).

use atoll::prelude::*;

/// Runs at `here()`, asked by `from`.
#[atoll::remote]
async fn greet(from: Place) -> String {
    let greeting = format!("hello from {} of {}, asked by {from}", here(), num_places());
    println!("{greeting}");
    greeting
}

#[atoll::main]
async fn main() -> atoll::Result<()> {
    finish(async {
        for place in places() {
            async_at!(place, greet(here()));
        }
    })
    .await?;
    let last = Place::new(num_places() - 1);
    let answer = at!(last, greet(here())).await?;
    println!("{last} answered: {answer}");
    Ok(())
}
