//! Teams: ordered sets of places that run collectives together. The world team holds every
//! place; [`Team::split`] makes sub-teams as `MPI_Comm_split` does, and
//! [`Team::split_by_node`] the team of the places that share this place's node.
//!
//! A team's id is the same at every member without asking anyone: the world is 0, and a team
//! split from a parent is named by a hash of the parent's id, the split's sequence number on
//! the parent, and the color. A collective's sequence number on its team is taken when it is
//! called, so the members must call a team's collectives in the same order (as in MPI); to run
//! collectives at once from independent activities, give each its own team ([`Team::split`]
//! with one color makes a copy).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use atoll_comm::{Comm, CommBuilder, HandlerId, Place, Region};
use rkyv::util::AlignedVec;

use crate::mailbox::{Key, Mailbox, Receive, Received, ABORT};
use crate::{Error, Result};

/// The transport handler id of collective messages: every place registers it (see
/// [`Engine::register`]); ids 16 and up belong to this crate.
pub const HANDLER: HandlerId = HandlerId::new(16);

/// The collectives of one place: registers their message handler with the transport, and
/// makes the world team once the transport is up. The runtime owns one; code that uses the
/// transport directly makes its own.
///
/// ```no_run
/// use atoll_collectives::{block_on, Collectives, Engine};
/// use atoll_comm::CommBuilder;
///
/// let engine = Engine::new();
/// let comm = engine.register(CommBuilder::new()).init()?;
/// let world = engine.world(&comm);
/// let places = block_on(&comm, world.allreduce(1u64, atoll_collectives::op::Sum))?;
/// assert_eq!(places, comm.len() as u64);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct Engine {
    mailbox: Arc<Mailbox>,
}

impl Engine {
    /// An engine with no messages yet.
    pub fn new() -> Engine {
        Engine::default()
    }

    /// `builder` with the collectives' handler ([`HANDLER`]) registered.
    pub fn register(&self, builder: CommBuilder) -> CommBuilder {
        let mailbox = self.mailbox.clone();
        builder.handler(HANDLER, move |comm, message| mailbox.deliver(comm, message))
    }

    /// The team of every place of `comm`'s job (id 0), in place order.
    pub fn world(&self, comm: &Comm) -> Team {
        Team::new(
            0,
            comm.places().collect(),
            comm.here().index(),
            comm.clone(),
            self.mailbox.clone(),
        )
    }

    /// Wakes every collective step that waits for a message, so that each looks again at
    /// whether the place it waits for died: call it when a place's death is noticed (the
    /// runtime does; [`crate::block_on`] looks by itself).
    pub fn wake_all(&self) {
        self.mailbox.wake_all();
    }
}

/// An ordered set of places that run collectives together: the world, or a team split from
/// another. Cloning is cheap and the clones share the team's sequence numbers.
///
/// Members are numbered by *rank*, `0..size()`; a collective's roots and parts are by rank.
#[derive(Clone)]
pub struct Team {
    inner: Arc<TeamInner>,
}

struct TeamInner {
    id: u64,
    members: Vec<Place>,
    rank: usize,
    next_seq: AtomicU64,
    comm: Comm,
    mailbox: Arc<Mailbox>,
    /// Registered memory kept between large broadcasts from this place.
    scratch: Mutex<Option<Region>>,
}

impl fmt::Debug for Team {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Team")
            .field("id", &format_args!("{:#x}", self.inner.id))
            .field("rank", &self.inner.rank)
            .field("members", &self.inner.members)
            .finish()
    }
}

impl Team {
    fn new(id: u64, members: Vec<Place>, rank: usize, comm: Comm, mailbox: Arc<Mailbox>) -> Team {
        Team {
            inner: Arc::new(TeamInner {
                id,
                members,
                rank,
                next_seq: AtomicU64::new(0),
                comm,
                mailbox,
                scratch: Mutex::new(None),
            }),
        }
    }

    /// The team's id: the same at every member.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// This place's rank in the team.
    pub fn rank(&self) -> usize {
        self.inner.rank
    }

    /// The number of members.
    pub fn size(&self) -> usize {
        self.inner.members.len()
    }

    /// The members, by rank.
    pub fn places(&self) -> &[Place] {
        &self.inner.members
    }

    /// The place of rank `rank`, if there is one.
    pub fn place(&self, rank: usize) -> Option<Place> {
        self.inner.members.get(rank).copied()
    }

    /// The rank of `place` in the team, if it is a member.
    pub fn rank_of(&self, place: Place) -> Option<usize> {
        self.inner.members.iter().position(|&p| p == place)
    }

    /// The transport the team's messages go through.
    pub fn comm(&self) -> &Comm {
        &self.inner.comm
    }

    /// Starts a collective: takes its sequence number (now, so that the order of calls is the
    /// order of collectives).
    pub(crate) fn begin(&self) -> Call {
        Call {
            team: self.clone(),
            seq: self.inner.next_seq.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// A region of at least `len` bytes of registered memory for this place's use: the kept
    /// one if it is large enough, else a new one (`None` if registered memory is short).
    /// Concurrent users each get their own.
    pub(crate) fn take_scratch(&self, comm: &Comm, len: usize) -> Option<Region> {
        let kept = self.scratch().take();
        match kept {
            Some(region) if region.len() >= len => Some(region),
            _ => comm.alloc_region(len).ok(),
        }
    }

    /// Keeps `region` for the next large broadcast (the larger of it and the one kept).
    pub(crate) fn keep_scratch(&self, region: Region) {
        let mut kept = self.scratch();
        if kept.as_ref().is_none_or(|k| k.len() < region.len()) {
            *kept = Some(region);
        }
    }

    fn scratch(&self) -> std::sync::MutexGuard<'_, Option<Region>> {
        self.inner.scratch.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Splits the team as `MPI_Comm_split` does: members that give the same `color` form a
    /// new team, ranked by `key` (ties by their rank here). A collective over this team: every
    /// member calls it.
    ///
    /// ```no_run
    /// # use atoll_collectives::{block_on, Collectives, Engine};
    /// # let engine = Engine::new();
    /// # let comm = engine.register(atoll_comm::CommBuilder::new()).init()?;
    /// # let world = engine.world(&comm);
    /// // Even and odd places, each in rank order.
    /// let parity = block_on(&comm, world.split((world.rank() % 2) as u64, 0))?;
    /// assert_eq!(parity.size(), (world.size() + 1 - world.rank() % 2) / 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn split(
        &self,
        color: u64,
        key: i64,
    ) -> impl std::future::Future<Output = Result<Team>> + Send + 'static {
        let call = self.begin();
        async move {
            let all = crate::algorithms::gather::allgather_values(&call, &(color, key)).await?;
            Ok(call.team.subteam(call.seq, &all))
        }
    }

    /// The team of the members on this place's node (the places that can share memory with
    /// it), in rank order: nodes are told apart by host name. A collective over this team.
    pub fn split_by_node(
        &self,
    ) -> impl std::future::Future<Output = Result<Team>> + Send + 'static {
        let call = self.begin();
        async move {
            let hosts = crate::algorithms::gather::allgather_values(&call, &host_name()).await?;
            let colors: Vec<(u64, i64)> = hosts
                .iter()
                .map(|host| {
                    let first = hosts.iter().position(|h| h == host).unwrap_or(0);
                    (first as u64, 0)
                })
                .collect();
            Ok(call.team.subteam(call.seq, &colors))
        }
    }

    /// The sub-team of this place's color, from every member's `(color, key)`.
    fn subteam(&self, seq: u64, all: &[(u64, i64)]) -> Team {
        let (color, _) = all[self.rank()];
        let mut ranks: Vec<usize> = (0..all.len()).filter(|&r| all[r].0 == color).collect();
        ranks.sort_by_key(|&r| (all[r].1, r));
        let members: Vec<Place> = ranks.iter().map(|&r| self.inner.members[r]).collect();
        let rank = ranks
            .iter()
            .position(|&r| r == self.rank())
            .unwrap_or_default();
        let id = team_id(self.id(), seq, color);
        Team::new(
            id,
            members,
            rank,
            self.inner.comm.clone(),
            self.inner.mailbox.clone(),
        )
    }
}

/// The id of the team of `color` split from team `parent` by its collective `seq`: FNV-1a
/// over the three, never 0 (the world's).
fn team_id(parent: u64, seq: u64, color: u64) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for word in [parent, seq, color] {
        for byte in word.to_le_bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash.max(1)
}

/// This host's name (empty if the system will not say).
fn host_name() -> String {
    let mut buffer = [0u8; 256];
    // SAFETY: the buffer is writable for its whole length, which is what we pass; gethostname
    // writes at most that many bytes.
    let status = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    if status != 0 {
        return String::new();
    }
    let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    String::from_utf8_lossy(&buffer[..end]).into_owned()
}

/// One collective in progress on a team: its sequence number, and its messages' sending and
/// receiving by team rank and step tag.
pub(crate) struct Call {
    pub(crate) team: Team,
    pub(crate) seq: u64,
}

impl Call {
    pub(crate) fn rank(&self) -> usize {
        self.team.rank()
    }

    pub(crate) fn size(&self) -> usize {
        self.team.size()
    }

    pub(crate) fn comm(&self) -> &Comm {
        &self.team.inner.comm
    }

    fn key(&self, tag: u32, from: Place) -> Key {
        Key {
            team: self.team.id(),
            seq: self.seq,
            tag,
            from,
        }
    }

    /// Sends `bytes` to rank `to` for its step `tag`.
    pub(crate) fn send(&self, to: usize, tag: u32, bytes: &[u8]) -> Result<()> {
        let place = self.team.inner.members[to];
        let key = self.key(tag, self.comm().here());
        self.comm()
            .send_bytes(place, HANDLER, &key.prefix(), bytes)
            .map_err(|error| match error {
                atoll_comm::Error::PlaceFailed(place) => self.abort(place),
                error => Error::Comm(error),
            })
    }

    /// Gives up on this collective because `dead` died: tells every other live member (so
    /// that none waits for this one), and returns the error.
    fn abort(&self, dead: Place) -> Error {
        let team = self.team.id();
        self.team.inner.mailbox.abort(team, self.seq, dead);
        let key = self.key(ABORT, self.comm().here());
        let payload = (dead.index() as u32).to_le_bytes();
        for &member in &self.team.inner.members {
            if member != self.comm().here() && !self.comm().is_failed(member) {
                // A member that died meanwhile needs no telling.
                let _ = self
                    .comm()
                    .send_bytes(member, HANDLER, &key.prefix(), &payload);
            }
        }
        Error::PlaceFailed { place: dead, team }
    }

    /// The bytes rank `from` sent for step `tag`, once they arrive.
    pub(crate) async fn receive(&self, from: usize, tag: u32) -> Result<AlignedVec> {
        let place = self.team.inner.members[from];
        let key = self.key(tag, place);
        match Receive::new(self.team.inner.mailbox.clone(), self.comm().clone(), key).await {
            Received::Bytes(bytes) => Ok(bytes),
            Received::PlaceFailed => Err(self.abort(place)),
            Received::Aborted(dead) => Err(Error::PlaceFailed {
                place: dead,
                team: self.team.id(),
            }),
        }
    }

    /// A malformed message from rank `from`.
    pub(crate) fn invalid(&self, from: usize, reason: impl Into<String>) -> Error {
        Error::InvalidMessage {
            from: self.team.inner.members[from],
            team: self.team.id(),
            reason: reason.into(),
        }
    }

    /// Checks that `rank` (the argument `what`) is a rank of the team.
    pub(crate) fn check_rank(&self, what: &'static str, rank: usize) -> Result<()> {
        if rank < self.size() {
            Ok(())
        } else {
            Err(Error::NoSuchRank {
                what,
                rank,
                size: self.size(),
            })
        }
    }
}
