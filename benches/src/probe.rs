//! The floor probe of an Atoll benchmark, driven from place 0's main: [`open`] maps one
//! [`FloorProbe`] line at places 0 and 1 (through remote functions, so the runtime's own
//! transport needs no bootstrap barrier), and [`floor`] measures the cache-line round trip
//! between them now, both places taking part.

use std::sync::Mutex;

use atoll::prelude::*;

use crate::floor::FloorProbe;

/// This place's end of the probe (places 0 and 1).
static PROBE: Mutex<Option<FloorProbe>> = Mutex::new(None);

/// Maps the probe line `name` (made by place 0) at this place; an error message if it cannot.
#[atoll::remote]
async fn attach_probe(name: String) -> Option<String> {
    match FloorProbe::attach(&name, here().index()) {
        Ok(probe) => {
            *PROBE.lock().unwrap_or_else(|p| p.into_inner()) = Some(probe);
            None
        }
        Err(message) => Some(message),
    }
}

/// Place 1's side of one floor probe.
#[atoll::remote]
async fn probe_partner(round_trips: u64) {
    probe_here(round_trips);
}

/// This place's side of a probe: the median round trip in ns at place 0.
fn probe_here(round_trips: u64) -> f64 {
    match PROBE.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
        Some(probe) => probe.round_trip_ns(round_trips),
        None => f64::NAN,
    }
}

/// Opens the probe, at place 0: created here, attached at place 1, then here; the name is gone
/// once both have mapped it. Fails with fewer than 2 places.
pub async fn open() -> Result<(), String> {
    if num_places() < 2 {
        return Err("needs at least 2 places (ATOLL_PLACES=2)".into());
    }
    let job = std::env::var(atoll::comm::config::JOB_ID)
        .unwrap_or_else(|_| format!("bench-{}", std::process::id()));
    let name = FloorProbe::name(&job);
    FloorProbe::create(&name)?;
    let attached = at!(Place::new(1), attach_probe(name.clone())).await;
    let here_too = FloorProbe::attach(&name, 0);
    FloorProbe::unlink(&name);
    if let Some(message) = attached.map_err(|e| e.to_string())? {
        return Err(format!("place 1: {message}"));
    }
    *PROBE.lock().unwrap_or_else(|p| p.into_inner()) = Some(here_too?);
    Ok(())
}

/// The floor now, at place 0: the median cache-line round trip between places 0 and 1 over
/// `round_trips` round trips, in ns.
pub async fn floor(round_trips: u64) -> Result<f64, String> {
    finish(async move {
        async_at!(Place::new(1), probe_partner(round_trips));
        probe_here(round_trips)
    })
    .await
    .map_err(|e| e.to_string())
}
