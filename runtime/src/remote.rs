//! The registry of remote functions: every `#[atoll::remote] async fn` registers an entry
//! under a stable id derived from its path and signature (collected at link time with
//! `inventory`), never a function pointer sent over the wire. An id nobody registered is a
//! typed error returned to the caller.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use atoll_comm::{CheckedArchive, Message, Payload, Place};
use rkyv::api::high::HighDeserializer;
use rkyv::rancor::BoxedError;
use rkyv::{Archive, Deserialize};

use crate::runtime::Runtime;
use crate::wire::CallPrefix;

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What `#[atoll::remote]` implements for each remote function (on a hidden `Remote` type in
/// a module named after the function).
pub trait RemoteFn: 'static {
    /// The arguments, as a tuple.
    type Args;
    /// The result.
    type Output;
    /// The function's path.
    const NAME: &'static str;
    /// Its stable id (see [`fn_id`]).
    const ID: u64;
    /// Calls the function.
    fn call(args: Self::Args) -> BoxFuture<Self::Output>;
}

/// A value that can travel between places as a remote function's arguments or result, or on
/// a channel: serialized once by the sender, validated and deserialized by the receiver. Every
/// rkyv type (`#[derive(Archive, Serialize, Deserialize)]`, the standard types) is one.
pub trait Wire: Payload + Send + Sized + 'static {
    /// The value carried by `message`, validated.
    fn decode(message: &Message<'_>) -> atoll_comm::Result<Self>;

    /// The value archived in `bytes` (a payload kept after its message was gone; 16-aligned),
    /// validated.
    fn decode_bytes(bytes: &[u8]) -> Result<Self, BoxedError>;
}

impl<T> Wire for T
where
    T: Payload + Archive + Send + 'static,
    T::Archived: CheckedArchive + Deserialize<T, HighDeserializer<BoxedError>>,
{
    fn decode(message: &Message<'_>) -> atoll_comm::Result<T> {
        message.deserialize::<T>()
    }

    fn decode_bytes(bytes: &[u8]) -> Result<T, BoxedError> {
        rkyv::from_bytes::<T, BoxedError>(bytes)
    }
}

type Invoke = fn(&Arc<Runtime>, Place, CallPrefix, Message<'_>);

/// One registered remote function.
#[derive(Debug)]
pub struct RemoteEntry {
    id: u64,
    name: &'static str,
    invoke: Invoke,
}

impl RemoteEntry {
    /// The entry of `R` (what `#[atoll::remote]` submits).
    pub const fn of<R>() -> RemoteEntry
    where
        R: RemoteFn,
        R::Args: Wire,
        R::Output: Wire,
    {
        RemoteEntry {
            id: R::ID,
            name: R::NAME,
            invoke: crate::call::invoke::<R>,
        }
    }
}

inventory::collect!(RemoteEntry);

/// Every remote function of this binary, by id.
#[derive(Debug)]
pub(crate) struct Registry {
    by_id: HashMap<u64, &'static RemoteEntry>,
}

impl Registry {
    /// Collects the entries; two functions with the same id (a 64-bit hash collision of their
    /// paths and signatures) is a start-up error naming both.
    pub(crate) fn collect() -> Result<Registry, String> {
        let mut by_id = HashMap::new();
        for entry in inventory::iter::<RemoteEntry> {
            if let Some(other) = by_id.insert(entry.id, entry) {
                if other.name != entry.name {
                    return Err(format!(
                        "remote functions {} and {} have the same id {:#x}; rename one",
                        other.name, entry.name, entry.id
                    ));
                }
            }
        }
        Ok(Registry { by_id })
    }

    pub(crate) fn get(&self, id: u64) -> Option<&'static RemoteEntry> {
        self.by_id.get(&id).copied()
    }
}

impl RemoteEntry {
    pub(crate) fn name(&self) -> &'static str {
        self.name
    }

    pub(crate) fn invoke(
        &self,
        rt: &Arc<Runtime>,
        from: Place,
        prefix: CallPrefix,
        message: Message<'_>,
    ) {
        (self.invoke)(rt, from, prefix, message)
    }
}

/// The stable id of a remote function: FNV-1a over its path and its signature, so that a
/// changed signature never matches an old caller.
pub const fn fn_id(name: &str, signature: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    let parts = [name.as_bytes(), b"|", signature.as_bytes()];
    let mut p = 0;
    while p < parts.len() {
        let bytes = parts[p];
        let mut i = 0;
        while i < bytes.len() {
            hash ^= bytes[i] as u64;
            hash = hash.wrapping_mul(PRIME);
            i += 1;
        }
        p += 1;
    }
    hash
}
