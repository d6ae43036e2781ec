//! The closed set of transports, dispatched by `match` (no trait objects on the data path).
//! UCX and libfabric join as variants behind their cargo features.

use std::time::Duration;

use crate::bootstrap::Bootstrap;
use crate::config::{Config, ProviderKind};
use crate::payload::Payload;
use crate::rma::{Region, RemoteKey};
use std::sync::MutexGuard;

use crate::shm::{ProducerState, Sent, ShmProvider};
#[cfg(feature = "ucx")]
use crate::ucx::{Producer as UcxProducer, UcxProvider};
use crate::{Place, Result};

#[derive(Debug)]
pub(crate) enum Provider {
    Shm(ShmProvider),
    #[cfg(feature = "ucx")]
    Ucx(UcxProvider),
    #[cfg(feature = "ofi")]
    Ofi(Box<crate::ofi::OfiProvider>),
}

/// The locked sending side of one destination, held across a batch of sends.
#[derive(Debug)]
pub(crate) enum ProducerGuard<'a> {
    Shm(MutexGuard<'a, ProducerState>),
    #[cfg(feature = "ucx")]
    Ucx(MutexGuard<'a, UcxProducer>),
    #[cfg(feature = "ofi")]
    Ofi(MutexGuard<'a, crate::ofi::Producer>),
}

impl Provider {
    pub(crate) fn new(bootstrap: &Bootstrap, config: &Config) -> Result<Provider> {
        match config.provider {
            ProviderKind::Shm => Ok(Provider::Shm(ShmProvider::new(bootstrap, config)?)),
            #[cfg(feature = "ucx")]
            ProviderKind::Ucx => Ok(Provider::Ucx(UcxProvider::new(bootstrap, config)?)),
            #[cfg(not(feature = "ucx"))]
            ProviderKind::Ucx => Err(crate::Error::ProviderNotCompiled {
                provider: "ucx",
                feature: "ucx",
            }),
            #[cfg(feature = "ofi")]
            ProviderKind::Ofi => Ok(Provider::Ofi(Box::new(crate::ofi::OfiProvider::new(
                bootstrap, config,
            )?))),
            #[cfg(not(feature = "ofi"))]
            ProviderKind::Ofi => Err(crate::Error::ProviderNotCompiled {
                provider: "ofi",
                feature: "ofi",
            }),
        }
    }

    pub(crate) fn name(&self) -> &'static str {
        match self {
            Provider::Shm(_) => "shm",
            #[cfg(feature = "ucx")]
            Provider::Ucx(_) => "ucx",
            #[cfg(feature = "ofi")]
            Provider::Ofi(_) => "ofi",
        }
    }

    pub(crate) fn send<T: Payload>(
        &self,
        to: usize,
        handler: u16,
        prefix: &[u8],
        value: &T,
        queue_if_full: bool,
    ) -> Result<Sent> {
        match self {
            Provider::Shm(shm) => shm.send(to, handler, prefix, value, queue_if_full),
            #[cfg(feature = "ucx")]
            Provider::Ucx(ucx) => ucx.send(to, handler, prefix, value, queue_if_full),
            #[cfg(feature = "ofi")]
            Provider::Ofi(ofi) => ofi.send(to, handler, prefix, value, queue_if_full),
        }
    }

    pub(crate) fn lock_producer(&self, to: usize) -> ProducerGuard<'_> {
        match self {
            Provider::Shm(shm) => ProducerGuard::Shm(shm.lock_producer(to)),
            #[cfg(feature = "ucx")]
            Provider::Ucx(ucx) => ProducerGuard::Ucx(ucx.lock_producer(to)),
            #[cfg(feature = "ofi")]
            Provider::Ofi(ofi) => ProducerGuard::Ofi(ofi.lock_producer(to)),
        }
    }

    pub(crate) fn send_locked<T: Payload>(
        &self,
        guard: &mut ProducerGuard<'_>,
        handler: u16,
        prefix: &[u8],
        value: &T,
        queue_if_full: bool,
    ) -> Result<Sent> {
        match (self, guard) {
            (Provider::Shm(shm), ProducerGuard::Shm(producer)) => {
                shm.send_locked(producer, handler, prefix, value, queue_if_full)
            }
            #[cfg(feature = "ucx")]
            (Provider::Ucx(ucx), ProducerGuard::Ucx(producer)) => {
                ucx.send_locked(producer, handler, prefix, value, queue_if_full)
            }
            #[cfg(feature = "ofi")]
            (Provider::Ofi(ofi), ProducerGuard::Ofi(producer)) => {
                ofi.send_locked(producer, handler, prefix, value, queue_if_full)
            }
            #[cfg(any(feature = "ucx", feature = "ofi"))]
            (_, guard) => unreachable!("a producer guard of another provider: {guard:?}"),
        }
    }

    pub(crate) fn ring_doorbell(&self, to: usize) {
        match self {
            Provider::Shm(shm) => shm.ring_doorbell(to),
            #[cfg(feature = "ucx")]
            Provider::Ucx(ucx) => ucx.ring_doorbell(to),
            #[cfg(feature = "ofi")]
            Provider::Ofi(ofi) => ofi.ring_doorbell(to),
        }
    }

    pub(crate) fn inject(
        &self,
        to: usize,
        kind: u8,
        src: u32,
        handler: u16,
        payload: &[u8],
    ) -> Result<Sent> {
        match self {
            Provider::Shm(shm) => shm.inject(to, kind, src, handler, payload),
            #[cfg(feature = "ucx")]
            Provider::Ucx(ucx) => ucx.inject(to, kind, src, handler, payload),
            #[cfg(feature = "ofi")]
            Provider::Ofi(ofi) => ofi.inject(to, kind, src, handler, payload),
        }
    }

    pub(crate) fn progress<F: FnMut(Place, u16, &[u8]) -> Result<()>>(
        &self,
        deliver: &mut F,
    ) -> Result<usize> {
        match self {
            Provider::Shm(shm) => shm.progress(deliver),
            #[cfg(feature = "ucx")]
            Provider::Ucx(ucx) => ucx.progress(deliver),
            #[cfg(feature = "ofi")]
            Provider::Ofi(ofi) => ofi.progress(deliver),
        }
    }

    /// Whether the transport itself saw `place` fail (the bootstrap reports deaths too).
    pub(crate) fn is_failed(&self, place: usize) -> bool {
        match self {
            Provider::Shm(_) => {
                let _ = place;
                false
            }
            #[cfg(feature = "ucx")]
            Provider::Ucx(ucx) => ucx.is_failed(place),
            // The ofi provider reports a peer's failure through the bootstrap's notices.
            #[cfg(feature = "ofi")]
            Provider::Ofi(_) => false,
        }
    }

    pub(crate) fn is_drained_to(&self, to: usize) -> bool {
        match self {
            Provider::Shm(shm) => shm.is_drained_to(to),
            #[cfg(feature = "ucx")]
            Provider::Ucx(ucx) => ucx.is_drained_to(to),
            #[cfg(feature = "ofi")]
            Provider::Ofi(ofi) => ofi.is_drained_to(to),
        }
    }

    /// Removes the names of this place's shared-memory objects that peers look up by name
    /// (after the last message of the job: a peer could not reach this place afterwards).
    pub(crate) fn remove_shared_names(&self) {
        match self {
            // The shm provider and UCX unlink theirs as soon as they are mapped.
            Provider::Shm(_) => {}
            #[cfg(feature = "ucx")]
            Provider::Ucx(_) => {}
            #[cfg(feature = "ofi")]
            Provider::Ofi(ofi) => ofi.remove_shared_names(),
        }
    }

    pub(crate) fn park(&self, timeout: Duration, ready: &mut dyn FnMut() -> bool) {
        match self {
            Provider::Shm(shm) => shm.park(timeout, ready),
            #[cfg(feature = "ucx")]
            Provider::Ucx(ucx) => ucx.park(timeout, ready),
            #[cfg(feature = "ofi")]
            Provider::Ofi(ofi) => ofi.park(timeout, ready),
        }
    }

    pub(crate) fn alloc_region(&self, len: usize) -> Result<Region> {
        match self {
            Provider::Shm(shm) => shm.alloc_region(len),
            #[cfg(feature = "ucx")]
            Provider::Ucx(ucx) => ucx.alloc_region(len),
            #[cfg(feature = "ofi")]
            Provider::Ofi(ofi) => ofi.alloc_region(len),
        }
    }

    pub(crate) fn put(&self, key: &RemoteKey, offset: usize, data: &[u8]) -> Result<()> {
        match self {
            Provider::Shm(shm) => shm.put(key, offset, data),
            #[cfg(feature = "ucx")]
            Provider::Ucx(ucx) => ucx.put(key, offset, data),
            #[cfg(feature = "ofi")]
            Provider::Ofi(ofi) => ofi.put(key, offset, data),
        }
    }

    pub(crate) fn get(&self, key: &RemoteKey, offset: usize, dst: &mut [u8]) -> Result<()> {
        match self {
            Provider::Shm(shm) => shm.get(key, offset, dst),
            #[cfg(feature = "ucx")]
            Provider::Ucx(ucx) => ucx.get(key, offset, dst),
            #[cfg(feature = "ofi")]
            Provider::Ofi(ofi) => ofi.get(key, offset, dst),
        }
    }

    pub(crate) fn fetch_add(&self, key: &RemoteKey, offset: usize, value: u64) -> Result<u64> {
        match self {
            Provider::Shm(shm) => shm.fetch_add(key, offset, value),
            #[cfg(feature = "ucx")]
            Provider::Ucx(ucx) => ucx.fetch_add(key, offset, value),
            #[cfg(feature = "ofi")]
            Provider::Ofi(ofi) => ofi.fetch_add(key, offset, value),
        }
    }

    pub(crate) fn compare_swap(
        &self,
        key: &RemoteKey,
        offset: usize,
        expected: u64,
        new: u64,
    ) -> Result<u64> {
        match self {
            Provider::Shm(shm) => shm.compare_swap(key, offset, expected, new),
            #[cfg(feature = "ucx")]
            Provider::Ucx(ucx) => ucx.compare_swap(key, offset, expected, new),
            #[cfg(feature = "ofi")]
            Provider::Ofi(ofi) => ofi.compare_swap(key, offset, expected, new),
        }
    }
}
