//! Which endpoint reaches each place.
//!
//! Every place opens a network endpoint that reaches every place (the provider `fi_getinfo`
//! offers first; `FI_PROVIDER` narrows the choice). When that provider is not libfabric's
//! `shm` and other places share this host, it also opens an endpoint of `shm` and reaches
//! those places through it: libfabric 1.17 has no provider that picks shared memory for
//! same-host peers by itself (`linkx` came later). Whether a place opened one travels in its
//! start-up record, so two places agree on the endpoint between them; a place whose `shm`
//! endpoint could not open (libfabric loads shm only where `FI_PROVIDER` allows it, so
//! `FI_PROVIDER='tcp;ofi_rxm'` keeps everything on tcp) is reached over the network.
//!
//! Both endpoints register the same memory, each with its own key; a peer's key and address
//! are those of the endpoint that reaches it.

use std::time::Duration;

use atoll_ofi_sys as sys;

use super::fabric::{self, Endpoint, Want, SHM};
use super::memory::{EndpointRecord, Mapping, PeerMemory, StartRecord};
use crate::bootstrap::Bootstrap;
use crate::{Error, Place, Result};

/// Which of a place's endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Via {
    Network,
    SharedMemory,
}

/// How this place reaches one peer.
#[derive(Clone, Copy, Debug)]
struct Route {
    via: Via,
    /// The peer's `fi_addr_t` in that endpoint's address vector.
    addr: sys::fi_addr_t,
    /// The peer's memory as that endpoint's registration names it.
    memory: PeerMemory,
}

/// A peer as one operation addresses it.
#[derive(Clone, Copy)]
pub(super) struct Path<'a> {
    pub(super) endpoint: &'a Endpoint,
    pub(super) addr: sys::fi_addr_t,
    pub(super) memory: PeerMemory,
}

/// The endpoints of one place, and the route to every place.
///
/// Field order is drop order: the endpoints close before anything they may touch.
#[derive(Debug)]
pub(super) struct Routes {
    network: Endpoint,
    shared_memory: Option<Endpoint>,
    routes: Box<[Route]>,
    /// The place at each `fi_addr_t` of the shm endpoint's address vector.
    shm_places: Box<[usize]>,
}

impl Routes {
    /// Opens this place's endpoints, registers `mapping` with each, exchanges start-up records
    /// with every place (collective: every place calls it once, in step) and inserts the
    /// peers' addresses.
    pub(super) fn establish(
        bootstrap: &Bootstrap,
        mapping: &Mapping,
        shm_name: &str,
    ) -> Result<Routes> {
        let (here, places) = (bootstrap.rank(), bootstrap.size());
        let host_of = bootstrap.host_of_places();
        let here_host = host_of.get(here).copied().unwrap_or(usize::MAX);
        let other_hosts = host_of.iter().any(|&host| host != here_host);
        let neighbours = host_of.iter().filter(|&&host| host == here_host).count() - 1;
        // Open and register first, but always take part in the exchange: a place that failed
        // contributes an empty record, so that the others fail too instead of waiting.
        let opened = Self::open(mapping, shm_name, other_hosts, neighbours > 0);
        let record = match &opened {
            Ok((_, _, record)) => record.encode(),
            Err(_) => Vec::new(),
        };
        let blobs = bootstrap.allgather(&record)?;
        let (network, shared_memory, own) = opened?;
        let records = blobs
            .iter()
            .enumerate()
            .map(|(place, blob)| StartRecord::decode(place, blob))
            .collect::<Result<Vec<_>>>()?;
        if records.len() != places || host_of.len() != places {
            return Err(Error::bootstrap(format!(
                "the start-up exchange gave {} records and {} hosts for {places} places",
                records.len(),
                host_of.len()
            )));
        }

        let address_error = |place: usize, reason: String| Error::SegmentMismatch {
            place: Place::new(place),
            reason,
        };
        let mut routes = Vec::with_capacity(places);
        let mut shm_names: Vec<&[u8]> = Vec::new();
        let mut shm_places = Vec::new();
        for (place, record) in records.iter().enumerate() {
            network
                .check_address(&record.network.name, own.network.name.len())
                .map_err(|reason| address_error(place, reason))?;
            let same_host = host_of[place] == here_host;
            let route = match (&shared_memory, &own.local, &record.local) {
                (Some(endpoint), Some(ours), Some(theirs)) if same_host => {
                    endpoint
                        .check_address(&theirs.name, ours.name.len())
                        .map_err(|reason| address_error(place, reason))?;
                    shm_names.push(&theirs.name);
                    shm_places.push(place);
                    Route {
                        via: Via::SharedMemory,
                        addr: (shm_places.len() - 1) as sys::fi_addr_t,
                        memory: theirs.memory,
                    }
                }
                _ => Route {
                    via: Via::Network,
                    addr: place as sys::fi_addr_t,
                    memory: record.network.memory,
                },
            };
            if route.memory.len != own.network.memory.len {
                return Err(address_error(
                    place,
                    format!(
                        "it registered {} bytes, this place {} (are all places started with the \
                         same ATOLL_SHM_HEAP_MB?)",
                        route.memory.len, own.network.memory.len
                    ),
                ));
            }
            routes.push(route);
        }
        let network_names: Vec<&[u8]> = records.iter().map(|r| r.network.name.as_slice()).collect();
        let all: Vec<usize> = (0..places).collect();
        network.insert_addresses(&network_names, &all)?;
        if let Some(endpoint) = &shared_memory {
            endpoint.insert_addresses(&shm_names, &shm_places)?;
        }
        let routes = Routes {
            network,
            shared_memory,
            routes: routes.into(),
            shm_places: shm_places.into(),
        };
        tracing::debug!(
            here,
            network = %routes.network.caps().name,
            over_shm = ?routes.shm_places,
            "ofi routes"
        );
        Ok(routes)
    }

    /// Opens the network endpoint and, when `neighbours` and the network provider is not shm,
    /// a shm endpoint (its failure only logged: those places are then reached over the
    /// network); registers `mapping` with each.
    fn open(
        mapping: &Mapping,
        shm_name: &str,
        other_hosts: bool,
        neighbours: bool,
    ) -> Result<(Endpoint, Option<Endpoint>, StartRecord)> {
        let mut network = Endpoint::open(Want::Network { other_hosts }, shm_name)?;
        let network_record = register(&mut network, mapping)?;
        let mut shared_memory = None;
        let mut local = None;
        if neighbours && network.caps().name != SHM {
            match Endpoint::open(Want::SharedMemory, shm_name).and_then(|mut endpoint| {
                let record = register(&mut endpoint, mapping)?;
                Ok((endpoint, record))
            }) {
                Ok((endpoint, record)) => {
                    shared_memory = Some(endpoint);
                    local = Some(record);
                }
                Err(error) => tracing::debug!(
                    %error,
                    "no libfabric shm endpoint (FI_PROVIDER may leave shm out): places of this \
                     host are reached over the network provider"
                ),
            }
        }
        for endpoint in std::iter::once(&network).chain(&shared_memory) {
            if !endpoint.has_u64_atomics() {
                return Err(Error::Ofi {
                    what: format!("libfabric provider {}", endpoint.caps().name),
                    code: sys::FI_ENOSYS as i32,
                    text: "it offers no fetching u64 sum or compare-and-swap, which Atoll's \
                           fetch_add and compare_swap need; choose another with FI_PROVIDER"
                        .into(),
                });
            }
        }
        let record = StartRecord {
            network: network_record,
            local,
        };
        Ok((network, shared_memory, record))
    }

    /// How to address `place` (in range: the caller checked).
    pub(super) fn to(&self, place: usize) -> Path<'_> {
        let route = self.routes[place];
        Path {
            endpoint: self.endpoint(route.via),
            addr: route.addr,
            memory: route.memory,
        }
    }

    /// The endpoint `via` names (the network one when there is no shm endpoint).
    pub(super) fn endpoint(&self, via: Via) -> &Endpoint {
        match (via, &self.shared_memory) {
            (Via::SharedMemory, Some(endpoint)) => endpoint,
            _ => &self.network,
        }
    }

    /// The endpoints that reach some place, network first.
    ///
    /// A network endpoint that reaches no place (every place shares this host and is reached
    /// over shm) is left out: it has nothing to complete, and reading its queue on every
    /// `progress` would only cost time.
    pub(super) fn endpoints(&self) -> impl Iterator<Item = (Via, &Endpoint)> {
        let network_used = self.shm_places.len() < self.routes.len();
        network_used
            .then_some((Via::Network, &self.network))
            .into_iter()
            .chain(self.shared_memory.iter().map(|e| (Via::SharedMemory, e)))
    }

    /// Whether one of this place's endpoints is of libfabric's shm provider (and so has a
    /// shared-memory region named after the job).
    pub(super) fn uses_shm(&self) -> bool {
        self.shared_memory.is_some() || self.network.caps().name == SHM
    }

    /// How many places each endpoint reaches: (network, shm).
    pub(super) fn peer_counts(&self) -> (usize, usize) {
        let shm = self.shm_places.len();
        (self.routes.len() - shm, shm)
    }

    /// The place that sent from `addr` of endpoint `via`'s address vector; `None` when
    /// unknown (the caller then trusts no one's claim without checking it).
    pub(super) fn place_at(&self, via: Via, addr: sys::fi_addr_t) -> Option<usize> {
        let index = usize::try_from(addr).ok()?;
        match via {
            Via::Network => (index < self.routes.len()).then_some(index),
            Via::SharedMemory => self.shm_places.get(index).copied(),
        }
    }

    /// The libfabric provider names, as `network` or `network + shm`.
    pub(super) fn describe(&self) -> String {
        match &self.shared_memory {
            Some(shm) => format!("{} + {}", self.network.caps().name, shm.caps().name),
            None => self.network.caps().name.clone(),
        }
    }

    /// The largest single message or RMA transfer both endpoints take.
    pub(super) fn max_msg_size(&self) -> usize {
        self.endpoints()
            .map(|(_, endpoint)| endpoint.caps().max_msg_size)
            .min()
            .unwrap_or(0)
    }

    /// Sleeps until a completion may be there, `extra` is readable or `timeout`; `false` at
    /// once when an endpoint has no descriptor to sleep on.
    pub(super) fn wait(&self, extra: i32, timeout: Duration) -> bool {
        let endpoints: Vec<&Endpoint> = self.endpoints().map(|(_, e)| e).collect();
        fabric::wait(&endpoints, extra, timeout)
    }
}

/// Registers `mapping` with `endpoint`: its record for the peers.
fn register(endpoint: &mut Endpoint, mapping: &Mapping) -> Result<EndpointRecord> {
    // SAFETY: the mapping outlives the endpoint: the provider drops its routes (and so every
    // endpoint) first and holds the mapping's Arc after them.
    let key = unsafe { endpoint.register(mapping.base(), mapping.len())? };
    let virt = endpoint.caps().mr_mode & sys::FI_MR_VIRT_ADDR != 0;
    Ok(EndpointRecord {
        memory: PeerMemory {
            base: if virt { mapping.base() as u64 } else { 0 },
            key,
            len: mapping.len() as u64,
        },
        name: endpoint.name()?,
    })
}
