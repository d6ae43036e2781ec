//! Data with a place: [`GlobalRef`] (an object at its home place, named from anywhere) and
//! [`PlaceLocal`] (one instance per place behind one handle). Both handles are plain ids, so
//! they travel inside `at!` / `async_at!` arguments; the objects never move.

use std::any::Any;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use atoll_comm::Place;

use crate::runtime::runtime;
use crate::{Error, Result};

type Objects = Mutex<HashMap<u64, Arc<dyn Any + Send + Sync>>>;

/// This place's objects of both kinds, by id.
#[derive(Debug, Default)]
pub(crate) struct ObjectTable {
    objects: Objects,
    next: AtomicU64,
}

impl ObjectTable {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<dyn Any + Send + Sync>>> {
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An id unique in the job: the creating place in the high bits.
    fn fresh_id(&self, here: Place) -> u64 {
        ((here.index() as u64) << 40) | self.next.fetch_add(1, Ordering::Relaxed)
    }
}

/// The raw id of a [`GlobalRef`] or [`PlaceLocal`], the part that travels.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub struct ObjectId {
    home: Place,
    id: u64,
}

/// An object at its home place, named from anywhere.
///
/// `GlobalRef::new(value)` keeps `value` at this place; the handle can be sent to any place
/// (inside `at!` arguments, as its [`ObjectId`]) and dereferenced only at home: elsewhere
/// [`GlobalRef::get`] is an error naming the home. The way to use it from another place is
/// `at!(r.home(), f(r.id()))` with a remote function that calls [`GlobalRef::from_id`] and
/// `get` there. The object lives until [`GlobalRef::free`] (distributed reference counting is
/// not done: free it when no place will use it again).
///
/// ```
/// use atoll::prelude::*;
/// use atoll::{GlobalRef, ObjectId};
/// use std::sync::atomic::{AtomicU64, Ordering};
///
/// /// Runs at the counter's home.
/// #[atoll::remote]
/// async fn bump(counter: ObjectId) -> u64 {
///     let counter = GlobalRef::<AtomicU64>::from_id(counter);
///     counter.get().expect("runs at the counter's home").fetch_add(1, Ordering::Relaxed) + 1
/// }
///
/// /// Runs anywhere: asks the home to act on the object.
/// #[atoll::remote]
/// async fn ask(counter: ObjectId) -> u64 {
///     at!(counter.home(), bump(counter)).await.expect("the home answers")
/// }
///
/// #[atoll::main]
/// async fn main() -> atoll::Result<()> {
///     let counter = GlobalRef::new(AtomicU64::new(0))?;
///     let other = Place::new(num_places() - 1);
///     assert_eq!(at!(other, ask(counter.id())).await?, 1);
///     assert_eq!(counter.get()?.load(Ordering::Relaxed), 1);
///     counter.free()?;
///     Ok(())
/// }
/// ```
#[derive(Debug)]
pub struct GlobalRef<T> {
    id: ObjectId,
    _type: PhantomData<fn() -> T>,
}

impl<T> Clone for GlobalRef<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for GlobalRef<T> {}

impl ObjectId {
    /// The place the object lives at.
    pub fn home(&self) -> Place {
        self.home
    }
}

impl ArchivedObjectId {
    /// The id this archived value names.
    pub fn to_id(&self) -> ObjectId {
        ObjectId {
            home: self.home.to_place(),
            id: self.id.to_native(),
        }
    }
}

impl<T: Send + Sync + 'static> GlobalRef<T> {
    /// Keeps `value` at this place and returns its handle.
    pub fn new(value: T) -> Result<GlobalRef<T>> {
        let rt = runtime("GlobalRef::new")?;
        let home = rt.comm.here();
        let id = rt.objects.fresh_id(home);
        rt.objects.lock().insert(id, Arc::new(value));
        Ok(GlobalRef {
            id: ObjectId { home, id },
            _type: PhantomData,
        })
    }

    /// The handle named by `id` (received from another place).
    pub fn from_id(id: ObjectId) -> GlobalRef<T> {
        GlobalRef {
            id,
            _type: PhantomData,
        }
    }

    /// What travels: send this in `at!` arguments.
    pub fn id(&self) -> ObjectId {
        self.id
    }

    /// The place the object lives at.
    pub fn home(&self) -> Place {
        self.id.home
    }

    /// The object, at its home place. Elsewhere: [`Error::NotHome`]; at home, after `free`
    /// or for a handle of another type: [`Error::NoSuchObject`].
    pub fn get(&self) -> Result<Arc<T>> {
        let rt = runtime("GlobalRef::get")?;
        if rt.comm.here() != self.id.home {
            return Err(Error::NotHome {
                home: self.id.home,
                here: rt.comm.here(),
            });
        }
        let object = rt.objects.lock().get(&self.id.id).cloned();
        object
            .and_then(|object| object.downcast::<T>().ok())
            .ok_or(Error::NoSuchObject(self.id.home))
    }

    /// Drops the object at its home (call it there).
    pub fn free(self) -> Result<()> {
        self.get()?;
        let rt = runtime("GlobalRef::free")?;
        rt.objects.lock().remove(&self.id.id);
        Ok(())
    }
}

/// One `T` per place behind one handle: [`PlaceLocal::get`] at any place returns that place's
/// instance, created with `T::default()` the first time the place asks. The handle is a plain
/// id ([`PlaceLocal::id`] / [`PlaceLocal::from_id`]) that travels in `at!` arguments.
///
/// ```
/// use atoll::prelude::*;
/// use atoll::{ObjectId, PlaceLocal};
/// use std::sync::atomic::{AtomicU64, Ordering};
///
/// #[atoll::remote]
/// async fn count(hits: ObjectId) {
///     let hits = PlaceLocal::<AtomicU64>::from_id(hits).get().expect("an AtomicU64 handle");
///     hits.fetch_add(1, Ordering::Relaxed);
/// }
///
/// #[atoll::remote]
/// async fn read(hits: ObjectId) -> u64 {
///     let hits = PlaceLocal::<AtomicU64>::from_id(hits).get().expect("an AtomicU64 handle");
///     hits.load(Ordering::Relaxed)
/// }
///
/// #[atoll::main]
/// async fn main() -> atoll::Result<()> {
///     let hits = PlaceLocal::<AtomicU64>::new()?;
///     finish(async {
///         for p in places() {
///             async_at!(p, count(hits.id()));
///         }
///     })
///     .await?;
///     for p in places() {
///         assert_eq!(at!(p, read(hits.id())).await?, 1); // one instance per place
///     }
///     Ok(())
/// }
/// ```
#[derive(Debug)]
pub struct PlaceLocal<T> {
    id: ObjectId,
    _type: PhantomData<fn() -> T>,
}

impl<T> Clone for PlaceLocal<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for PlaceLocal<T> {}

impl<T: Default + Send + Sync + 'static> PlaceLocal<T> {
    /// A new handle (no instance exists until a place asks for its own).
    pub fn new() -> Result<PlaceLocal<T>> {
        let rt = runtime("PlaceLocal::new")?;
        let home = rt.comm.here();
        Ok(PlaceLocal {
            id: ObjectId {
                home,
                id: rt.objects.fresh_id(home),
            },
            _type: PhantomData,
        })
    }

    /// The handle named by `id` (received from another place).
    pub fn from_id(id: ObjectId) -> PlaceLocal<T> {
        PlaceLocal {
            id,
            _type: PhantomData,
        }
    }

    /// What travels: send this in `at!` arguments.
    pub fn id(&self) -> ObjectId {
        self.id
    }

    /// This place's instance. [`Error::NoSuchObject`] if the id names an instance of another
    /// type (a handle forged or mixed up by its user).
    pub fn get(&self) -> Result<Arc<T>> {
        let rt = runtime("PlaceLocal::get")?;
        let object = rt
            .objects
            .lock()
            .entry(self.id.id)
            .or_insert_with(|| Arc::new(T::default()))
            .clone();
        object
            .downcast::<T>()
            .map_err(|_| Error::NoSuchObject(self.id.home))
    }
}
