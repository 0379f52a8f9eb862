//! Core types every translator speaks: gfid, iatt, loc, fd, xdata, caller context, payload.
//!
//! They are all serde types because the same values cross the wire between `protocol/client`
//! and `protocol/server` (see [`crate::wire`]). Data payloads are the exception: a
//! [`Payload`] serialises only its length, and the bytes travel raw after the control part.

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{FopError, FopResult};

/// A 128-bit file identity, the same on every brick that holds a copy of the file.
///
/// The client chooses it when the file is created, so every replica records the same gfid;
/// bricks store it in the `trusted.cairn.gfid` xattr and in the `.cairn/handles` tree.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
pub struct Gfid(pub [u8; 16]);

impl Gfid {
    /// The all-zero gfid: "unknown".
    pub const NULL: Gfid = Gfid([0; 16]);
    /// The volume root directory.
    pub const ROOT: Gfid = Gfid([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);

    /// A fresh random (version 4) gfid.
    pub fn random() -> Gfid {
        Gfid(uuid::Uuid::new_v4().into_bytes())
    }

    /// Parses the hyphenated form `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
    pub fn parse(text: &str) -> Option<Gfid> {
        uuid::Uuid::try_parse(text)
            .ok()
            .map(|u| Gfid(u.into_bytes()))
    }

    /// Reads a gfid from its 16 raw bytes (the xattr format).
    pub fn from_slice(raw: &[u8]) -> Option<Gfid> {
        <[u8; 16]>::try_from(raw).ok().map(Gfid)
    }

    /// True for [`Gfid::NULL`].
    pub fn is_null(&self) -> bool {
        *self == Gfid::NULL
    }

    /// True for [`Gfid::ROOT`].
    pub fn is_root(&self) -> bool {
        *self == Gfid::ROOT
    }

    /// The 64-bit inode number shown to applications: the low 64 bits of the gfid, so it is
    /// the same on every client and across remounts. The root is always 1.
    pub fn ino(&self) -> u64 {
        let mut low = [0u8; 8];
        low.copy_from_slice(&self.0[8..]);
        u64::from_be_bytes(low)
    }
}

impl fmt::Display for Gfid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        uuid::Uuid::from_bytes(self.0).hyphenated().fmt(f)
    }
}

impl fmt::Debug for Gfid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The kind of a filesystem object.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize, Default)]
pub enum FileKind {
    /// A regular file.
    #[default]
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A named pipe.
    Fifo,
    /// A unix socket.
    Socket,
    /// A character device.
    CharDev,
    /// A block device.
    BlockDev,
}

impl FileKind {
    /// The `S_IFMT` bits of this kind.
    pub fn mode_bits(self) -> u32 {
        match self {
            FileKind::File => libc::S_IFREG,
            FileKind::Dir => libc::S_IFDIR,
            FileKind::Symlink => libc::S_IFLNK,
            FileKind::Fifo => libc::S_IFIFO,
            FileKind::Socket => libc::S_IFSOCK,
            FileKind::CharDev => libc::S_IFCHR,
            FileKind::BlockDev => libc::S_IFBLK,
        }
    }

    /// The kind encoded in the `S_IFMT` bits of a mode, if any.
    pub fn from_mode(mode: u32) -> Option<FileKind> {
        match mode & libc::S_IFMT {
            libc::S_IFREG => Some(FileKind::File),
            libc::S_IFDIR => Some(FileKind::Dir),
            libc::S_IFLNK => Some(FileKind::Symlink),
            libc::S_IFIFO => Some(FileKind::Fifo),
            libc::S_IFSOCK => Some(FileKind::Socket),
            libc::S_IFCHR => Some(FileKind::CharDev),
            libc::S_IFBLK => Some(FileKind::BlockDev),
            _ => None,
        }
    }
}

/// A point in time, seconds and nanoseconds since the epoch.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize, Default,
)]
pub struct Timespec {
    /// Seconds since 1970-01-01 UTC.
    pub sec: i64,
    /// Nanoseconds, `0..1_000_000_000`.
    pub nsec: u32,
}

/// Inode attributes, as a brick reports them.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, Default)]
pub struct Iatt {
    /// The object's identity.
    pub gfid: Gfid,
    /// File, directory, ...
    pub kind: FileKind,
    /// Permission bits (`0o7777`), without the type bits.
    pub perm: u32,
    /// Hard links, not counting Cairn's own handle link.
    pub nlink: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Device number for device files.
    pub rdev: u64,
    /// Size in bytes.
    pub size: u64,
    /// Allocated 512-byte blocks.
    pub blocks: u64,
    /// Preferred I/O size.
    pub blksize: u32,
    /// Last access.
    pub atime: Timespec,
    /// Last data change.
    pub mtime: Timespec,
    /// Last status change.
    pub ctime: Timespec,
}

impl Iatt {
    /// The full `st_mode`: type bits plus permission bits.
    pub fn mode(&self) -> u32 {
        self.kind.mode_bits() | (self.perm & 0o7777)
    }

    /// The inode number applications see.
    pub fn ino(&self) -> u64 {
        self.gfid.ino()
    }
}

/// Where an operation applies: an inode by gfid, or a name in a parent directory.
///
/// - inode operations (stat, open, ...) set `gfid`;
/// - entry operations (lookup, create, unlink, ...) set `parent` and `name`;
/// - operations that create an entry also set `gfid` to the identity the new object gets.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, Default)]
pub struct Loc {
    /// The object itself, when known.
    pub gfid: Option<Gfid>,
    /// The parent directory, for entry operations.
    pub parent: Option<Gfid>,
    /// The entry name in `parent`: one path component, never `/`, `.` or `..`.
    pub name: Option<String>,
}

impl Loc {
    /// An inode location: the object with this gfid.
    pub fn inode(gfid: Gfid) -> Loc {
        Loc {
            gfid: Some(gfid),
            parent: None,
            name: None,
        }
    }

    /// An entry location: `name` inside directory `parent`.
    pub fn entry(parent: Gfid, name: impl Into<String>) -> Loc {
        Loc {
            gfid: None,
            parent: Some(parent),
            name: Some(name.into()),
        }
    }

    /// The same location with the object's gfid set (new objects get the caller's gfid).
    pub fn with_gfid(mut self, gfid: Gfid) -> Loc {
        self.gfid = Some(gfid);
        self
    }

    /// The parent and name of an entry location, or `EINVAL`.
    pub fn parent_and_name(&self) -> FopResult<(Gfid, &str)> {
        match (self.parent, self.name.as_deref()) {
            (Some(p), Some(n)) => Ok((p, n)),
            _ => Err(FopError::invalid(format!(
                "operation needs a parent and a name, got {self}"
            ))),
        }
    }

    /// The gfid of an inode location, or `EINVAL`.
    pub fn require_gfid(&self) -> FopResult<Gfid> {
        self.gfid
            .ok_or_else(|| FopError::invalid(format!("operation needs a gfid, got {self}")))
    }
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.parent, &self.name, &self.gfid) {
            (Some(p), Some(n), Some(g)) => write!(f, "<{p}>/{n} ({g})"),
            (Some(p), Some(n), None) => write!(f, "<{p}>/{n}"),
            (_, _, Some(g)) => write!(f, "<{g}>"),
            _ => write!(f, "<empty loc>"),
        }
    }
}

/// Per-translator context attached to an open file (for example the brick's open file).
type FdCtx = Mutex<Vec<(&'static str, Arc<dyn Any + Send + Sync>)>>;

static NEXT_FD_ID: AtomicU64 = AtomicU64::new(1);

struct FdInner {
    id: u64,
    gfid: Gfid,
    flags: i32,
    ctx: FdCtx,
}

/// An open file or directory.
///
/// The same `Fd` value travels down the whole graph, so every translator may hang its own
/// state on it ([`Fd::set_ctx`]). Across the wire only `(id, gfid, flags)` travel: the
/// server maps the client's id to its own `Fd` for the life of the connection, which lets a
/// compound request create a file and write to it in one round trip.
#[derive(Clone)]
pub struct Fd(Arc<FdInner>);

impl Fd {
    /// A new open-file handle for `gfid` with `open(2)` flags, with a process-unique id.
    pub fn new(gfid: Gfid, flags: i32) -> Fd {
        let id = NEXT_FD_ID.fetch_add(1, Ordering::Relaxed);
        Fd::with_id(id, gfid, flags)
    }

    /// A handle with a chosen id (used when decoding a wire fd).
    pub fn with_id(id: u64, gfid: Gfid, flags: i32) -> Fd {
        Fd(Arc::new(FdInner {
            id,
            gfid,
            flags,
            ctx: Mutex::new(Vec::new()),
        }))
    }

    /// The handle's id (unique in the process that created it).
    pub fn id(&self) -> u64 {
        self.0.id
    }

    /// The open object.
    pub fn gfid(&self) -> Gfid {
        self.0.gfid
    }

    /// The `open(2)` flags it was opened with.
    pub fn flags(&self) -> i32 {
        self.0.flags
    }

    /// Attaches a translator's context under `key` (replacing an earlier one).
    pub fn set_ctx<T: Any + Send + Sync>(&self, key: &'static str, value: Arc<T>) {
        if let Ok(mut ctx) = self.0.ctx.lock() {
            ctx.retain(|(k, _)| *k != key);
            ctx.push((key, value));
        }
    }

    /// The context a translator attached under `key`, if it has the expected type.
    pub fn ctx<T: Any + Send + Sync>(&self, key: &'static str) -> Option<Arc<T>> {
        let ctx = self.0.ctx.lock().ok()?;
        let (_, v) = ctx.iter().find(|(k, _)| *k == key)?;
        Arc::clone(v).downcast::<T>().ok()
    }

    /// Removes and returns the context under `key`.
    pub fn take_ctx<T: Any + Send + Sync>(&self, key: &'static str) -> Option<Arc<T>> {
        let mut ctx = self.0.ctx.lock().ok()?;
        let pos = ctx.iter().position(|(k, _)| *k == key)?;
        let (_, v) = ctx.remove(pos);
        v.downcast::<T>().ok()
    }
}

impl PartialEq for Fd {
    fn eq(&self, other: &Fd) -> bool {
        self.id() == other.id() && self.gfid() == other.gfid() && self.flags() == other.flags()
    }
}

impl fmt::Debug for Fd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "fd#{}<{}>", self.id(), self.gfid())
    }
}

#[derive(Serialize, Deserialize)]
struct WireFd {
    id: u64,
    gfid: Gfid,
    flags: i32,
}

impl Serialize for Fd {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        WireFd {
            id: self.id(),
            gfid: self.gfid(),
            flags: self.flags(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Fd {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Fd, D::Error> {
        let w = WireFd::deserialize(d)?;
        Ok(Fd::with_id(w.id, w.gfid, w.flags))
    }
}

/// Either an inode location or an open file: the target of inode operations that exist in
/// both forms (`stat`/`fstat`, `setxattr`/`fsetxattr`, ...).
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub enum Target {
    /// By location.
    Loc(Loc),
    /// By open file.
    Fd(Fd),
}

impl Target {
    /// The gfid of the object, when it is known without resolving a name.
    pub fn gfid(&self) -> Option<Gfid> {
        match self {
            Target::Loc(l) => l.gfid,
            Target::Fd(fd) => Some(fd.gfid()),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Loc(l) => l.fmt(f),
            Target::Fd(fd) => write!(f, "{fd:?}"),
        }
    }
}

/// Extra key/value data riding along with a fop, both ways (gluster's `dict_t`).
///
/// Internal keys are named `cairn.<translator>.<what>`; values are raw bytes.
///
/// On the wire each value is a byte string (length + bytes, the same bytes bincode writes
/// for a sequence of `u8`), encoded and decoded in one piece rather than byte by byte:
/// quick-read carries whole files in it. A value of at least [`XDATA_SHARE_MIN`] bytes is
/// copied neither into a frame being sent (see [`crate::wire::frame::offer_shared`]) nor
/// out of a frame received: it shares the frame's buffer (see
/// [`crate::wire::frame::decode_control`]). Smaller values are copied, so that a cache
/// keeping a few small values never pins a large frame.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Xdata(pub BTreeMap<String, Bytes>);

/// Values at least this long share buffers with the frames that carry them.
pub const XDATA_SHARE_MIN: usize = 4096;

struct ByteStr<'a>(&'a [u8]);

impl Serialize for ByteStr<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

struct ByteBuf(Bytes);

impl<'de> Deserialize<'de> for ByteBuf {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = ByteBuf;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_borrowed_bytes<E: serde::de::Error>(self, v: &'de [u8]) -> Result<ByteBuf, E> {
                if v.len() >= XDATA_SHARE_MIN
                    && let Some(shared) = crate::wire::frame::share_decoded(v)
                {
                    return Ok(ByteBuf(shared));
                }
                Ok(ByteBuf(Bytes::copy_from_slice(v)))
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<ByteBuf, E> {
                Ok(ByteBuf(Bytes::copy_from_slice(v)))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<ByteBuf, E> {
                Ok(ByteBuf(Bytes::from(v)))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<ByteBuf, A::Error> {
                let mut out = Vec::with_capacity(a.size_hint().unwrap_or(0).min(1 << 16));
                while let Some(b) = a.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(ByteBuf(Bytes::from(out)))
            }
        }
        d.deserialize_bytes(V)
    }
}

impl Serialize for Xdata {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            if v.len() >= XDATA_SHARE_MIN {
                crate::wire::frame::offer_shared(v);
            }
            m.serialize_entry(k, &ByteStr(v))?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for Xdata {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let m = BTreeMap::<String, ByteBuf>::deserialize(d)?;
        Ok(Xdata(m.into_iter().map(|(k, v)| (k, v.0)).collect()))
    }
}

impl Xdata {
    /// An empty map.
    pub fn new() -> Xdata {
        Xdata::default()
    }

    /// True when there are no keys.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Sets a raw value.
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<Bytes>) {
        self.0.insert(key.into(), value.into());
    }

    /// A raw value.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.0.get(key).map(Bytes::as_ref)
    }

    /// Sets a big-endian u64.
    pub fn set_u64(&mut self, key: impl Into<String>, value: u64) {
        self.set(key, value.to_be_bytes().to_vec());
    }

    /// A big-endian u64, if present and 8 bytes long.
    pub fn get_u64(&self, key: &str) -> Option<u64> {
        let raw = <[u8; 8]>::try_from(self.get(key)?).ok()?;
        Some(u64::from_be_bytes(raw))
    }

    /// True when `key` is present.
    pub fn contains(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    /// Removes a key, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<Bytes> {
        self.0.remove(key)
    }

    /// Iterates over the entries.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Bytes)> {
        self.0.iter()
    }
}

/// Lookup xdata key: a list of xattr name prefixes separated by `'\n'`; the brick returns, in
/// the reply's xdata, every xattr of the object whose name starts with any of them (empty
/// items are ignored). Replication reads its counters this way, in the same round trip as
/// the lookup, and a translator above it can ask for its own xattrs in the same call: add
/// prefixes with [`add_lookup_prefix`], read them with [`lookup_prefixes`].
pub const LOOKUP_XATTR_PREFIX: &str = "cairn.xattr-prefix";

/// Adds `prefix` to the list in `xdata`'s [`LOOKUP_XATTR_PREFIX`] key, creating the key when
/// it is absent. A prefix already in the list (or an empty one) is not added again.
pub fn add_lookup_prefix(xdata: &mut Xdata, prefix: &str) {
    if prefix.is_empty() {
        return;
    }
    let mut list: Vec<u8> = xdata
        .remove(LOOKUP_XATTR_PREFIX)
        .map(Vec::from)
        .unwrap_or_default();
    if !list
        .split(|b| *b == b'\n')
        .any(|item| item == prefix.as_bytes())
    {
        if !list.is_empty() && !list.ends_with(b"\n") {
            list.push(b'\n');
        }
        list.extend_from_slice(prefix.as_bytes());
    }
    xdata.set(LOOKUP_XATTR_PREFIX, list);
}

/// The prefixes listed in `xdata`'s [`LOOKUP_XATTR_PREFIX`] key (none when it is absent);
/// empty items and items that are not UTF-8 are skipped.
pub fn lookup_prefixes(xdata: &Xdata) -> Vec<&str> {
    xdata
        .get(LOOKUP_XATTR_PREFIX)
        .map(|list| {
            list.split(|b| *b == b'\n')
                .filter(|item| !item.is_empty())
                .filter_map(|item| std::str::from_utf8(item).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Prefix of create-time xattr keys: mkdir, mknod, create and symlink take xdata keys
/// `cairn.setxattr.<name>` and the brick sets xattr `<name>` to the key's value on the new
/// object before replying (if that fails, the object is removed and the fop fails). Only
/// names under `trusted.cairn.dht.` are accepted; any other name fails the fop with EINVAL
/// before anything is created. Distribute gives a new directory its layout this way.
pub const SETXATTR_ON_CREATE: &str = "cairn.setxattr.";

/// Reply xdata key of `create`: the storage translator sets it when it made a new file (not
/// when an existing file was opened). Translators above it may take it out.
pub const CREATED_KEY: &str = "cairn.posix.created";

/// Request xdata key of `open` and `create` (any value): the caller is about to rewrite the
/// file's contents in place, as heal does when it rebuilds a copy (it empties the copy and
/// fills it again). Until that fd is released the brick serves no content of the file: reads
/// of it fail with `EIO` (replicate then reads another copy) and lookups carry no quick-read
/// content, so a reader whose lookup judged this copy good before heal blamed it never gets
/// the half-rebuilt bytes. Unless a flush of the fd carried [`REWRITE_DONE_KEY`] first, the
/// contents stay refused after the release too (the copy may hold zeros), until a later
/// rewrite finishes.
pub const REWRITE_KEY: &str = "cairn.posix.rewrite";

/// Request xdata key of `flush` (any value) on an fd opened with [`REWRITE_KEY`]: the
/// rewrite is finished and the copy whole.
pub const REWRITE_DONE_KEY: &str = "cairn.posix.rewrite-done";

/// Request xdata key of `xattrop`: names or name prefixes, each ending in a NUL byte. After
/// applying the change, under the same per-object lock, the storage translator adds to the
/// reply the value of every xattr of the object whose name starts with one of them (the
/// changed ones are there anyway), and sets this key in the reply to say it did. The
/// index uses it to judge an object clean from the xattrop that lowered its counter,
/// without reading every xattr again.
pub const XATTROP_REPORT_KEY: &str = "cairn.xattrop.report";

/// Xdata key of entry-creating fops (mkdir, mknod, create, symlink, and link and rename for
/// the new name): the layout generation of the parent directory the caller placed the name
/// by, a big-endian u32 (4 bytes). The brick fails the fop with ESTALE, creating nothing,
/// when the parent's stored layout (`trusted.cairn.dht.layout`) has a greater generation;
/// without a stored layout the fop proceeds. A value that is not 4 bytes fails with EINVAL.
pub const LAYOUT_GEN_KEY: &str = "cairn.dht.layout-gen";

/// Request xdata key of rename: as [`LAYOUT_GEN_KEY`], for the *old* name's parent (the
/// layout the caller found the source by). A rebalance may have laid that directory out
/// again, leaving pointers the caller's layout cannot see.
pub const LAYOUT_GEN_SRC_KEY: &str = "cairn.dht.layout-gen-src";

/// Who is calling: credentials of the application behind the operation, and its lock owner.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct Cx {
    /// Effective user id.
    pub uid: u32,
    /// Effective group id.
    pub gid: u32,
    /// Process id on the client host (0 for internal operations).
    pub pid: u32,
    /// Lock owner for inodelk/entrylk/posix locks.
    pub lk_owner: u64,
    /// The client connection a brick received the call on. Set by `protocol/server`;
    /// whatever a client sends here is overwritten.
    pub client: u64,
}

impl Cx {
    /// The context for operations Cairn makes on its own behalf (heal, rebalance, ...).
    pub fn internal() -> Cx {
        Cx::default()
    }
}

/// An entry reply: the object's attributes plus extra data.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct Entry {
    /// Attributes of the object.
    pub iatt: Iatt,
    /// Extra data (for example xattrs asked for in the request's xdata).
    pub xdata: Xdata,
}

/// One directory entry from `readdir`.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct DirEntry {
    /// The entry name.
    pub name: String,
    /// Cookie to pass as `offset` to continue after this entry.
    pub offset: u64,
    /// The object's gfid (NULL when unknown, in plain readdir).
    pub gfid: Gfid,
    /// The object's kind.
    pub kind: FileKind,
    /// Full attributes, in readdirplus.
    pub iatt: Option<Iatt>,
}

/// A time to set: now, or a given time.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum TimeSet {
    /// The brick's current time.
    Now,
    /// This time.
    At(Timespec),
}

/// Attributes to change in `setattr`; `None` leaves an attribute unchanged.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct SetAttr {
    /// New permission bits.
    pub perm: Option<u32>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New access time.
    pub atime: Option<TimeSet>,
    /// New modification time.
    pub mtime: Option<TimeSet>,
}

impl SetAttr {
    /// True when nothing would change.
    pub fn is_empty(&self) -> bool {
        *self == SetAttr::default()
    }
}

/// Filesystem capacity, as `statvfs(2)` reports it.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct Statfs {
    /// Total blocks of `frsize` bytes.
    pub blocks: u64,
    /// Free blocks.
    pub bfree: u64,
    /// Free blocks for unprivileged users.
    pub bavail: u64,
    /// Total inodes.
    pub files: u64,
    /// Free inodes.
    pub ffree: u64,
    /// Preferred block size.
    pub bsize: u32,
    /// Fragment size (the unit of `blocks`).
    pub frsize: u32,
    /// Longest name.
    pub namelen: u32,
}

/// Lock type for inodelk/entrylk.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub enum LockType {
    /// Shared.
    Read,
    /// Exclusive.
    Write,
    /// Release.
    Unlock,
}

/// Whether a lock request waits for a conflicting lock to go away.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum LockWait {
    /// Fail with `EAGAIN` at once on conflict.
    NoWait,
    /// Wait until granted (or the client disconnects).
    Wait,
}

/// A byte-range lock request.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Flock {
    /// Read, write or unlock.
    pub kind: LockType,
    /// First byte.
    pub start: u64,
    /// Length; 0 means "to the end of the file".
    pub len: u64,
}

impl Flock {
    /// A lock over the whole file.
    pub fn whole(kind: LockType) -> Flock {
        Flock {
            kind,
            start: 0,
            len: 0,
        }
    }
}

/// Atomic xattr updates (the basis of replicate's pending counters).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum XattropOp {
    /// Treat each value as an array of big-endian i64 and add the given array element-wise
    /// (a missing xattr counts as zeros). Returns the new values.
    AddArray64,
    /// As `AddArray64`, then any element of the result below zero becomes zero. Used to
    /// clear replication marks: when two parties (a client's batched clear and self-heal)
    /// clear the same mark, the counter settles at zero instead of drifting negative and
    /// hiding a later mark.
    AddArray64Floor,
}

/// `lseek` whence values FUSE forwards (the others are handled by the kernel).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum Whence {
    /// Next offset holding data.
    Data,
    /// Next hole.
    Hole,
}

/// Raw data (file contents) carried outside serde.
///
/// A `Payload` serialises only its length; [`crate::wire`] writes the bytes after the
/// control part and fills them back in after decoding, so data is never copied through the
/// serializer.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Payload {
    data: Bytes,
    /// The length announced on the wire; equal to `data.len()` except between decoding the
    /// control part and filling the payload in.
    wire_len: u64,
}

impl Payload {
    /// Wraps bytes.
    pub fn new(data: impl Into<Bytes>) -> Payload {
        let data = data.into();
        let wire_len = data.len() as u64;
        Payload { data, wire_len }
    }

    /// The bytes.
    pub fn bytes(&self) -> &Bytes {
        &self.data
    }

    /// Takes the bytes out.
    pub fn into_bytes(self) -> Bytes {
        self.data
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The length announced on the wire (used while decoding).
    pub(crate) fn wire_len(&self) -> u64 {
        self.wire_len
    }

    /// Fills a decoded placeholder with its bytes.
    pub(crate) fn fill(&mut self, data: Bytes) {
        self.wire_len = data.len() as u64;
        self.data = data;
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Payload({} bytes)", self.wire_len)
    }
}

impl From<Vec<u8>> for Payload {
    fn from(v: Vec<u8>) -> Payload {
        Payload::new(v)
    }
}

impl From<Bytes> for Payload {
    fn from(b: Bytes) -> Payload {
        Payload::new(b)
    }
}

impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.data.len() as u64)
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Payload, D::Error> {
        let wire_len = u64::deserialize(d)?;
        Ok(Payload {
            data: Bytes::new(),
            wire_len,
        })
    }
}

/// Checks that `name` is a single path component a brick may create: not empty, not `.` or
/// `..`, no `/` or NUL, at most 255 bytes.
pub fn check_name(name: &str) -> FopResult<()> {
    if name.is_empty() || name == "." || name == ".." {
        return Err(FopError::invalid(format!("invalid entry name {name:?}")));
    }
    if name.contains('/') || name.contains('\0') {
        return Err(FopError::invalid(format!(
            "entry name {name:?} contains '/' or NUL"
        )));
    }
    if name.len() > 255 {
        return Err(FopError::new(
            libc::ENAMETOOLONG,
            format!("entry name is {} bytes, the limit is 255", name.len()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gfid_formats_and_parses() {
        assert_eq!(
            Gfid::ROOT.to_string(),
            "00000000-0000-0000-0000-000000000001"
        );
        assert_eq!(Gfid::ROOT.ino(), 1);
        let g = Gfid::random();
        assert_eq!(Gfid::parse(&g.to_string()), Some(g));
        assert_ne!(g, Gfid::random());
        assert_eq!(Gfid::parse("not-a-gfid"), None);
        assert_eq!(Gfid::from_slice(&[1; 15]), None);
        assert_eq!(Gfid::from_slice(&[7; 16]), Some(Gfid([7; 16])));
    }

    #[test]
    fn kinds_round_trip_through_mode_bits() {
        for k in [
            FileKind::File,
            FileKind::Dir,
            FileKind::Symlink,
            FileKind::Fifo,
            FileKind::Socket,
            FileKind::CharDev,
            FileKind::BlockDev,
        ] {
            assert_eq!(FileKind::from_mode(k.mode_bits() | 0o644), Some(k));
        }
        assert_eq!(FileKind::from_mode(0o644), None);
    }

    #[test]
    fn fd_ctx_is_typed_and_keyed() {
        let fd = Fd::new(Gfid::random(), libc::O_RDWR);
        fd.set_ctx("posix", Arc::new(42u32));
        assert_eq!(fd.ctx::<u32>("posix").as_deref(), Some(&42));
        assert!(
            fd.ctx::<u64>("posix").is_none(),
            "wrong type is not returned"
        );
        assert!(fd.ctx::<u32>("other").is_none());
        fd.set_ctx("posix", Arc::new(7u32));
        assert_eq!(fd.take_ctx::<u32>("posix").as_deref(), Some(&7));
        assert!(fd.ctx::<u32>("posix").is_none());
        assert_ne!(Fd::new(Gfid::ROOT, 0).id(), Fd::new(Gfid::ROOT, 0).id());
    }

    #[test]
    fn names_are_checked() {
        for bad in ["", ".", "..", "a/b", "a\0b"] {
            assert_eq!(check_name(bad).unwrap_err().errno, libc::EINVAL, "{bad:?}");
        }
        assert_eq!(
            check_name(&"x".repeat(256)).unwrap_err().errno,
            libc::ENAMETOOLONG
        );
        check_name(&"x".repeat(255)).unwrap();
        check_name(".hidden").unwrap();
    }

    #[test]
    fn xdata_u64_helpers() {
        let mut x = Xdata::new();
        x.set_u64("k", 1 << 40);
        assert_eq!(x.get_u64("k"), Some(1 << 40));
        x.set("bad", vec![1, 2]);
        assert_eq!(x.get_u64("bad"), None);
        assert!(x.contains("k"));
        assert_eq!(x.remove("k").map(|v| v.len()), Some(8));
    }

    #[test]
    fn lookup_prefixes_form_a_list() {
        let mut x = Xdata::new();
        assert!(lookup_prefixes(&x).is_empty());
        add_lookup_prefix(&mut x, "trusted.cairn.afr.");
        assert_eq!(x.get(LOOKUP_XATTR_PREFIX), Some(&b"trusted.cairn.afr."[..]));
        add_lookup_prefix(&mut x, "trusted.cairn.dht.");
        add_lookup_prefix(&mut x, "trusted.cairn.afr.");
        add_lookup_prefix(&mut x, "");
        assert_eq!(
            x.get(LOOKUP_XATTR_PREFIX),
            Some(&b"trusted.cairn.afr.\ntrusted.cairn.dht."[..])
        );
        assert_eq!(
            lookup_prefixes(&x),
            vec!["trusted.cairn.afr.", "trusted.cairn.dht."]
        );
        // A value set by hand, as older callers did, is a one-item list; empty items are
        // skipped.
        let mut y = Xdata::new();
        y.set(LOOKUP_XATTR_PREFIX, b"user.\n\n".to_vec());
        assert_eq!(lookup_prefixes(&y), vec!["user."]);
        add_lookup_prefix(&mut y, "trusted.");
        assert_eq!(lookup_prefixes(&y), vec!["user.", "trusted."]);
    }
}

#[cfg(test)]
mod xdata_wire_tests {
    use super::*;

    #[test]
    fn xdata_values_encode_as_the_same_bytes_as_a_sequence_of_u8_and_round_trip() {
        let mut x = Xdata::new();
        x.set(
            "cairn.quick-read.content",
            (0..70_000u32).map(|i| i as u8).collect::<Vec<u8>>(),
        );
        x.set("trusted.afr.pending", vec![0u8; 12]);
        x.set("empty", Vec::new());
        let cfg = bincode::config::standard();
        let new = bincode::serde::encode_to_vec(&x, cfg).unwrap();
        let old = bincode::serde::encode_to_vec(&x.0, cfg).unwrap();
        assert_eq!(new, old, "the wire format is unchanged");
        let (back, used): (Xdata, usize) = bincode::serde::decode_from_slice(&new, cfg).unwrap();
        assert_eq!(used, new.len());
        assert_eq!(back, x);
        let (back, _): (Xdata, usize) = bincode::serde::decode_from_slice(&old, cfg).unwrap();
        assert_eq!(back, x);
    }
}
