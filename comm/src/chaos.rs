//! Chaos mode (`ATOLL_CHAOS=seed`), the same in every provider: after a delivery, a receiver
//! holds back that sender's stream for a random short spell now and then, so that messages of
//! different senders arrive reordered and delayed, while each sender's own stream stays in
//! order. Code that passes the conformance and runtime tests under chaos does not depend on
//! order across senders.

use std::time::{Duration, Instant};

/// The chaos of one (sender, receiver) stream: nothing without a seed.
#[derive(Debug)]
pub(crate) struct Chaos {
    rng: Option<fastrand::Rng>,
    held_until: Option<Instant>,
}

impl Chaos {
    /// The chaos of the stream from place `from` to place `here`, seeded from `seed` (none
    /// when `seed` is `None`); every stream gets its own sequence.
    pub(crate) fn new(seed: Option<u64>, here: usize, from: usize) -> Chaos {
        Chaos {
            rng: seed
                .map(|seed| fastrand::Rng::with_seed(seed ^ ((here as u64) << 32) ^ from as u64)),
            held_until: None,
        }
    }

    /// Whether the stream is held back now (a spell that has run out ends here).
    pub(crate) fn is_holding(&mut self) -> bool {
        match self.held_until {
            Some(until) if Instant::now() < until => true,
            Some(_) => {
                self.held_until = None;
                false
            }
            None => false,
        }
    }

    /// Called after each delivery from the stream: whether a spell of holding back starts now
    /// (one time in eight, up to 400 µs); the caller then stops delivering from this stream.
    pub(crate) fn hold_after_delivery(&mut self) -> bool {
        let Some(rng) = self.rng.as_mut() else {
            return false;
        };
        if rng.u8(..) < 32 {
            self.held_until = Some(Instant::now() + Duration::from_micros(rng.u64(1..400)));
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::Chaos;

    #[test]
    fn without_a_seed_nothing_is_held() {
        let mut chaos = Chaos::new(None, 0, 1);
        assert!((0..1000).all(|_| !chaos.hold_after_delivery() && !chaos.is_holding()));
    }

    #[test]
    fn with_a_seed_streams_are_held_now_and_then() {
        let mut chaos = Chaos::new(Some(7), 0, 1);
        let holds = (0..1000).filter(|_| chaos.hold_after_delivery()).count();
        assert!(
            holds > 0 && holds < 1000,
            "{holds} holds in 1000 deliveries"
        );
    }
}
