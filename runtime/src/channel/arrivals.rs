//! What the receiving place knows of one channel: the values that arrived and were not taken
//! yet, in order, and the checks every arrival passes (order, window, type, close).
//!
//! The same state serves a channel whose `Receiver` does not exist yet (values kept as the
//! bytes of their archives) and one whose `Receiver` is here (values deserialized).

use std::collections::{BTreeMap, VecDeque};

use super::wire::DataPrefix;

/// The values of one channel at its receiving place.
#[derive(Debug)]
pub(crate) struct Arrivals<V> {
    /// Arrived in order and not yet taken.
    queue: VecDeque<V>,
    /// Arrived ahead of a gap (only if a transport reorders one sender's messages).
    early: BTreeMap<u64, V>,
    /// The number of the next value in order (all below it have arrived).
    next: u64,
    /// Values taken by the receiver.
    taken: u64,
    /// The taken count last sent back as credit.
    credited: u64,
    /// The sender's window (0 until the first value says).
    capacity: u32,
    /// The values' type fingerprint (0 until known).
    type_hash: u32,
    /// How many values the sender sent in all, once it is done.
    closed_at: Option<u64>,
    /// The first breach of the protocol: what was wrong.
    error: Option<String>,
}

impl<V> Default for Arrivals<V> {
    fn default() -> Self {
        Arrivals {
            queue: VecDeque::new(),
            early: BTreeMap::new(),
            next: 0,
            taken: 0,
            credited: 0,
            capacity: 0,
            type_hash: 0,
            closed_at: None,
            error: None,
        }
    }
}

impl<V> Arrivals<V> {
    /// An empty channel whose receiver expects values of type fingerprint `type_hash`.
    pub(crate) fn expecting(type_hash: u32) -> Arrivals<V> {
        Arrivals {
            type_hash,
            ..Arrivals::default()
        }
    }

    /// Takes in value `prefix.seq`. An arrival that breaks the protocol is refused (and
    /// recorded: [`Arrivals::error`]); the values before it stay.
    pub(crate) fn arrive(&mut self, prefix: &DataPrefix, value: V) -> Result<(), String> {
        let checked = self.check(prefix);
        if let Err(reason) = &checked {
            self.refuse(reason.clone());
            return checked;
        }
        if prefix.seq == self.next {
            self.queue.push_back(value);
            self.next += 1;
            while let Some(value) = self.early.remove(&self.next) {
                self.queue.push_back(value);
                self.next += 1;
            }
        } else {
            self.early.insert(prefix.seq, value);
        }
        Ok(())
    }

    fn check(&mut self, prefix: &DataPrefix) -> Result<(), String> {
        if prefix.capacity == 0 {
            return Err("a window of 0 values".into());
        }
        if self.capacity == 0 {
            self.capacity = prefix.capacity;
        } else if self.capacity != prefix.capacity {
            return Err(format!(
                "the window changed from {} to {} values",
                self.capacity, prefix.capacity
            ));
        }
        if self.type_hash == 0 {
            self.type_hash = prefix.type_hash;
        } else if self.type_hash != prefix.type_hash {
            return Err(
                "a value of another type than the Receiver's (the two ends disagree on the \
                 channel's type)"
                    .into(),
            );
        }
        let seq = prefix.seq;
        if seq < self.next || self.early.contains_key(&seq) {
            return Err(format!("value #{seq} arrived twice"));
        }
        if let Some(sent) = self.closed_at {
            if seq >= sent {
                return Err(format!(
                    "value #{seq} arrived after the sender closed at {sent} values"
                ));
            }
        }
        if seq >= self.credited + u64::from(self.capacity) {
            return Err(format!(
                "value #{seq} is beyond the window ({} values, {} taken and credited)",
                self.capacity, self.credited
            ));
        }
        Ok(())
    }

    /// The sender is done after `sent` values.
    pub(crate) fn close(&mut self, sent: u64) -> Result<(), String> {
        let wrong = if self.closed_at.is_some() {
            Some("the sender closed twice".to_string())
        } else if sent < self.next || self.early.last_key_value().is_some_and(|(&s, _)| s >= sent) {
            Some(format!(
                "the sender closed at {sent} values, but more arrived"
            ))
        } else {
            None
        };
        if let Some(reason) = wrong {
            self.refuse(reason.clone());
            return Err(reason);
        }
        self.closed_at = Some(sent);
        Ok(())
    }

    /// Records a breach of the protocol (the first one is kept).
    pub(crate) fn refuse(&mut self, reason: String) {
        self.error.get_or_insert(reason);
    }

    /// The next value in order, if it has arrived.
    pub(crate) fn take(&mut self) -> Option<V> {
        let value = self.queue.pop_front()?;
        self.taken += 1;
        Some(value)
    }

    /// The running total of taken values to send back as credit, when enough were taken since
    /// the last credit (a quarter of the window, at least one): the sender is then never held
    /// for long, and a stream costs one credit message per quarter window.
    pub(crate) fn credit_due(&mut self) -> Option<u64> {
        let threshold = u64::from((self.capacity / 4).max(1));
        if self.taken - self.credited < threshold {
            return None;
        }
        self.credited = self.taken;
        Some(self.taken)
    }

    /// Values arrived and not yet taken.
    pub(crate) fn buffered(&self) -> usize {
        self.queue.len() + self.early.len()
    }

    /// The sender closed and every value it sent has been taken.
    pub(crate) fn is_finished(&self) -> bool {
        self.closed_at == Some(self.next) && self.queue.is_empty()
    }

    /// Whether the sender has closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed_at.is_some()
    }

    /// The first breach of the protocol, if any.
    pub(crate) fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// The same state with every value converted by `convert` (kept bytes deserialized once the
    /// receiver appears); a value that fails to convert is an error, in its place.
    pub(crate) fn convert<W>(
        self,
        type_hash: u32,
        mut convert: impl FnMut(V) -> Result<W, String>,
    ) -> Arrivals<W> {
        let mut error = self.error;
        if self.type_hash != 0 && self.type_hash != type_hash {
            error.get_or_insert_with(|| {
                "values of another type than the Receiver's (the two ends disagree on the \
                 channel's type)"
                    .into()
            });
        }
        let mut queue = VecDeque::with_capacity(self.queue.len());
        for value in self.queue {
            match convert(value) {
                Ok(value) => queue.push_back(value),
                Err(reason) => {
                    error.get_or_insert(reason);
                    break;
                }
            }
        }
        // After a value that failed, nothing later is delivered (order would be broken).
        let failed = error.is_some();
        let early = if failed {
            BTreeMap::new()
        } else {
            let mut early = BTreeMap::new();
            for (seq, value) in self.early {
                match convert(value) {
                    Ok(value) => {
                        early.insert(seq, value);
                    }
                    Err(reason) => {
                        error.get_or_insert(reason);
                        break;
                    }
                }
            }
            early
        };
        Arrivals {
            queue,
            early,
            next: self.next,
            taken: self.taken,
            credited: self.credited,
            capacity: self.capacity,
            type_hash,
            closed_at: self.closed_at,
            error,
        }
    }
}

#[cfg(test)]
mod tests {
    use atoll_comm::Place;

    use super::*;
    use crate::channel::wire::PAIR;
    use crate::channel::ChannelId;

    fn prefix(seq: u64, capacity: u32) -> DataPrefix {
        DataPrefix {
            channel: ChannelId {
                sender: Place::new(1),
                receiver: Place::new(0),
                tag: PAIR,
                id: 1,
            },
            seq,
            type_hash: 7,
            capacity,
        }
    }

    #[test]
    fn in_order_and_reordered_arrivals_come_out_in_order() {
        let mut a = Arrivals::expecting(7);
        for seq in [0, 2, 3, 1] {
            a.arrive(&prefix(seq, 8), seq).expect("in the window");
        }
        assert_eq!(a.buffered(), 4);
        let taken: Vec<u64> = std::iter::from_fn(|| a.take()).collect();
        assert_eq!(taken, [0, 1, 2, 3]);
        assert!(!a.is_finished());
        a.close(4).expect("a proper close");
        assert!(a.is_finished());
    }

    #[test]
    fn window_is_enforced_and_moves_with_credit() {
        let mut a = Arrivals::expecting(7);
        for seq in 0..4 {
            a.arrive(&prefix(seq, 4), seq).expect("in the window");
        }
        assert!(a.arrive(&prefix(4, 4), 4).is_err(), "beyond the window");
        assert!(a.error().is_some_and(|e| e.contains("beyond the window")));
        let mut a = Arrivals::expecting(7);
        for seq in 0..4 {
            a.arrive(&prefix(seq, 4), seq).expect("in the window");
        }
        assert_eq!(a.take(), Some(0));
        assert_eq!(a.credit_due(), Some(1), "a quarter of 4 is 1");
        a.arrive(&prefix(4, 4), 4)
            .expect("the credit moved the window");
        assert_eq!(a.credit_due(), None);
    }

    #[test]
    fn breaches_are_errors() {
        let mut a = Arrivals::expecting(7);
        a.arrive(&prefix(0, 4), 0).expect("first");
        assert!(a.arrive(&prefix(0, 4), 0).is_err(), "twice");
        let mut a = Arrivals::expecting(7);
        a.arrive(&prefix(0, 4), 0).expect("first");
        assert!(a.arrive(&prefix(1, 8), 1).is_err(), "window changed");
        let mut a = Arrivals::expecting(8);
        assert!(a.arrive(&prefix(0, 4), 0).is_err(), "type differs");
        let mut a: Arrivals<u64> = Arrivals::expecting(7);
        a.arrive(&prefix(0, 4), 0).expect("first");
        a.arrive(&prefix(1, 4), 1).expect("second");
        assert!(a.close(1).is_err(), "closed below what arrived");
        let mut a: Arrivals<u64> = Arrivals::expecting(7);
        a.close(1).expect("close first");
        assert!(a.arrive(&prefix(1, 4), 1).is_err(), "after the close count");
        a.arrive(&prefix(0, 4), 0).expect("within the close count");
        assert!(a.close(1).is_err(), "closed twice");
    }

    #[test]
    fn kept_bytes_convert_in_order_and_stop_at_a_bad_one() {
        let mut a: Arrivals<u64> = Arrivals::default();
        for seq in 0..4 {
            a.arrive(&prefix(seq, 8), seq).expect("in the window");
        }
        let mut b = a.convert(7, |v| {
            if v == 2 {
                Err("bad".into())
            } else {
                Ok(v * 10)
            }
        });
        assert_eq!(b.take(), Some(0));
        assert_eq!(b.take(), Some(10));
        assert_eq!(b.take(), None);
        assert_eq!(b.error(), Some("bad"));
        let c: Arrivals<u64> = Arrivals::<u64>::default();
        let mut a = c;
        a.arrive(&prefix(0, 8), 0).expect("first");
        let d = a.convert(9, Ok);
        assert!(d.error().is_some(), "type fingerprints differ");
    }
}
