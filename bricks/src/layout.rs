//! The brick's on-disk format, version 1.
//!
//! ```text
//! BRICK/                       the volume's files, as plain files at their own paths
//!   .cairn/                    Cairn's metadata (hidden from clients)
//!     format                   "1\n": the layout version of this brick
//!     handles/ab/cd/<gfid>     a hard link to every non-directory (file, symlink, node):
//!                              opens by gfid without a path walk
//!     dirs/ab/cd/<gfid>        a symlink per directory to "../../<pp>/<qq>/<parent-gfid>/<name>",
//!                              so the kernel (and `ls`) can follow it and Cairn can read the
//!                              parent and the name without touching the directory itself
//!   xattrs on BRICK:           trusted.cairn.brick = "cairn-brick/1 volume-id=<v> brick-id=<b>"
//!   xattrs on every object:    trusted.cairn.gfid = 16 raw bytes
//! ```
//!
//! `ab/cd` are the first two bytes of the gfid in hex. Everything here is versioned: a
//! future release reads `format` and the identity's `cairn-brick/N` prefix first, and says
//! clearly when a brick is newer than it understands (see docs/architecture.md, "Upgrades").
//!
//! Without any Cairn process the data stays readable: `cp -a BRICK/2024 /elsewhere` works,
//! and `.cairn/` can be ignored.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use cairn_translators::Gfid;
use cairn_translators::features::index::XATTR_DIRTY;

/// Metadata directory at the brick root.
pub const META_DIR: &str = ".cairn";
/// The layout version this release writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Xattr holding an object's gfid (16 raw bytes).
pub const XATTR_GFID: &str = "trusted.cairn.gfid";
/// Xattr on the brick root holding the brick's identity.
pub const XATTR_BRICK: &str = "trusted.cairn.brick";
/// Prefix of the identity value, with the identity format version.
const IDENTITY_PREFIX: &str = "cairn-brick/1";

/// `.cairn/handles`: hard links to non-directories.
pub fn handles_dir(root: &Path) -> PathBuf {
    root.join(META_DIR).join("handles")
}

/// `.cairn/dirs`: symlinks for directories.
pub fn dirs_dir(root: &Path) -> PathBuf {
    root.join(META_DIR).join("dirs")
}

fn fanout(gfid: Gfid) -> (String, String) {
    (format!("{:02x}", gfid.0[0]), format!("{:02x}", gfid.0[1]))
}

/// Path of a non-directory's handle.
pub fn file_handle(root: &Path, gfid: Gfid) -> PathBuf {
    let (a, b) = fanout(gfid);
    handles_dir(root).join(a).join(b).join(gfid.to_string())
}

/// Path of a directory's handle.
pub fn dir_handle(root: &Path, gfid: Gfid) -> PathBuf {
    let (a, b) = fanout(gfid);
    dirs_dir(root).join(a).join(b).join(gfid.to_string())
}

/// Symlink target of a directory handle: its parent's handle, then its name.
pub fn dir_handle_target(parent: Gfid, name: &str) -> String {
    let (a, b) = fanout(parent);
    format!("../../{a}/{b}/{parent}/{name}")
}

/// Symlink target of the root directory's handle (`.cairn/dirs/00/00/<root>` → brick root).
pub const ROOT_HANDLE_TARGET: &str = "../../../..";

/// Reads a directory handle target back into (parent gfid, name).
pub fn parse_dir_handle_target(target: &OsStr) -> Option<(Gfid, String)> {
    let s = target.to_str()?;
    let rest = s.strip_prefix("../../")?;
    let mut parts = rest.splitn(4, '/');
    let (a, b, parent, name) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let parent = Gfid::parse(parent)?;
    let (fa, fb) = fanout(parent);
    if a != fa || b != fb || name.is_empty() || name.contains('/') {
        return None;
    }
    Some((parent, name.to_string()))
}

/// Who a brick directory belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The volume's id.
    pub volume_id: String,
    /// The brick's id within the volume.
    pub brick_id: String,
}

impl Identity {
    /// The xattr value.
    pub fn encode(&self) -> String {
        format!(
            "{IDENTITY_PREFIX} volume-id={} brick-id={}",
            self.volume_id, self.brick_id
        )
    }

    /// Parses an xattr value; the error says what is wrong with it.
    pub fn decode(raw: &[u8]) -> Result<Identity, String> {
        let text = std::str::from_utf8(raw).map_err(|_| "identity is not UTF-8".to_string())?;
        let mut words = text.split_whitespace();
        let version = words.next().unwrap_or_default();
        if version != IDENTITY_PREFIX {
            return Err(format!(
                "identity format '{version}' is not understood by this release (it reads {IDENTITY_PREFIX})"
            ));
        }
        let mut id = Identity {
            volume_id: String::new(),
            brick_id: String::new(),
        };
        for w in words {
            if let Some(v) = w.strip_prefix("volume-id=") {
                id.volume_id = v.to_string();
            } else if let Some(v) = w.strip_prefix("brick-id=") {
                id.brick_id = v.to_string();
            }
        }
        Ok(id)
    }
}

fn xattr_get(path: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; 256];
    match rustix::fs::lgetxattr(path, name, &mut buf) {
        Ok(n) => {
            buf.truncate(n);
            Ok(Some(buf))
        }
        Err(rustix::io::Errno::NODATA) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Reads the identity of a brick directory, if it has one.
pub fn read_identity(root: &Path) -> Result<Option<Identity>, String> {
    match xattr_get(root, XATTR_BRICK) {
        Ok(Some(raw)) => Identity::decode(&raw)
            .map(Some)
            .map_err(|e| format!("{}: {e}", root.display())),
        Ok(None) => Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => Err(format!(
            "{}: the filesystem does not support trusted.* extended attributes, which a brick needs",
            root.display()
        )),
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => Err(format!(
            "{}: reading trusted.* extended attributes needs root (CAP_SYS_ADMIN)",
            root.display()
        )),
        Err(e) => Err(format!(
            "{}: cannot read the brick identity: {e}",
            root.display()
        )),
    }
}

/// Checks that `root` can be served as the brick `expected`, and prepares its metadata.
///
/// Refuses, saying why: a path that does not exist or is not a directory; a directory that
/// belongs to another volume or another brick; a directory with no identity unless `init`
/// (which protects against serving an empty mount point when the brick's disk did not
/// mount); a brick with a newer on-disk format. With `init`, stamps the identity on a
/// directory that has none. Empty expected ids are not compared.
pub fn prepare(root: &Path, expected: &Identity, init: bool) -> Result<(), String> {
    let meta = fs::metadata(root).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => format!("brick directory {} does not exist", root.display()),
        _ => format!("brick directory {}: {e}", root.display()),
    })?;
    if !meta.is_dir() {
        return Err(format!("brick path {} is not a directory", root.display()));
    }
    match read_identity(root)? {
        Some(found) => {
            if !expected.volume_id.is_empty() && found.volume_id != expected.volume_id {
                return Err(format!(
                    "brick directory {} belongs to volume id {}, not {}: refusing to serve another volume's brick",
                    root.display(),
                    found.volume_id,
                    expected.volume_id
                ));
            }
            if !expected.brick_id.is_empty() && found.brick_id != expected.brick_id {
                return Err(format!(
                    "brick directory {} is brick {} of its volume, not {}: refusing to serve it as another brick",
                    root.display(),
                    found.brick_id,
                    expected.brick_id
                ));
            }
        }
        None if init => {
            if expected.volume_id.is_empty() || expected.brick_id.is_empty() {
                return Err("initialising a brick needs a volume id and a brick id".into());
            }
            rustix::fs::lsetxattr(
                root,
                XATTR_BRICK,
                expected.encode().as_bytes(),
                rustix::fs::XattrFlags::CREATE,
            )
            .map_err(|e| format!("{}: cannot write the brick identity: {e}", root.display()))?;
        }
        None => {
            return Err(format!(
                "{} has no Cairn brick identity: it is not a brick, or the disk that holds the brick is not mounted. \
                 Initialise a new brick explicitly (cairn-brickd --init, or volume create)",
                root.display()
            ));
        }
    }
    prepare_meta(root)
}

/// Creates `.cairn/` (format file, handle trees, the root's gfid and handle) if missing, and
/// checks the format version.
fn prepare_meta(root: &Path) -> Result<(), String> {
    let meta_dir = root.join(META_DIR);
    let format_file = meta_dir.join("format");
    let err = |what: &str, e: io::Error| format!("{}: {what}: {e}", root.display());
    match fs::read_to_string(&format_file) {
        Ok(text) => {
            let version: u32 = text.trim().parse().map_err(|_| {
                format!(
                    "{}: unreadable format version {text:?}",
                    format_file.display()
                )
            })?;
            if version > FORMAT_VERSION {
                return Err(format!(
                    "{}: brick format version {version} is newer than this release understands ({FORMAT_VERSION}); upgrade Cairn",
                    root.display()
                ));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(&meta_dir).map_err(|e| err("cannot create .cairn", e))?;
            fs::write(&format_file, format!("{FORMAT_VERSION}\n"))
                .map_err(|e| err("cannot write .cairn/format", e))?;
        }
        Err(e) => return Err(err("cannot read .cairn/format", e)),
    }
    for dir in [handles_dir(root), dirs_dir(root)] {
        fs::create_dir_all(&dir).map_err(|e| err("cannot create the handle trees", e))?;
    }
    // The root directory's gfid and handle.
    match xattr_get(root, XATTR_GFID).map_err(|e| err("cannot read the root gfid", e))? {
        Some(raw) if Gfid::from_slice(&raw) == Some(Gfid::ROOT) => {}
        Some(raw) => {
            return Err(format!(
                "{}: the brick root carries gfid {:02x?}, not the volume root's",
                root.display(),
                raw
            ));
        }
        None => rustix::fs::lsetxattr(
            root,
            XATTR_GFID,
            &Gfid::ROOT.0,
            rustix::fs::XattrFlags::empty(),
        )
        .map_err(|e| err("cannot set the root gfid", e.into()))?,
    }
    let root_handle = dir_handle(root, Gfid::ROOT);
    if fs::symlink_metadata(&root_handle).is_err() {
        if let Some(parent) = root_handle.parent() {
            fs::create_dir_all(parent).map_err(|e| err("cannot create the root handle", e))?;
        }
        std::os::unix::fs::symlink(ROOT_HANDLE_TARGET, &root_handle)
            .map_err(|e| err("cannot create the root handle", e))?;
    }
    // The metadata must be on the same filesystem as the data, or hard links fail.
    let data_dev = fs::metadata(root)
        .map(|m| m.dev())
        .map_err(|e| err("stat", e))?;
    let meta_dev = fs::metadata(&meta_dir)
        .map(|m| m.dev())
        .map_err(|e| err("stat .cairn", e))?;
    if data_dev != meta_dev {
        return Err(format!(
            "{}/.cairn is on another filesystem than the brick; it must be a plain directory of the brick",
            root.display()
        ));
    }
    Ok(())
}

/// Whether a file's Cairn xattrs at rest (its gfid and replicate's 24-byte dirty counters)
/// fit inside its inode on the brick's filesystem, found by trying: a probe file in `.cairn`
/// gets both, and any block it then takes is one the filesystem had to allocate for them.
///
/// Where they do not fit (ext4's default 256-byte inodes), every file on the brick carries
/// one more 4 KiB block (a tenth more space for a 57 KB MR image), which a cold lookup reads
/// from disk besides the inode. Filesystems made with 512-byte inodes hold them.
pub fn xattrs_fit_in_inode(root: &Path) -> Result<bool, String> {
    let probe = root
        .join(META_DIR)
        .join(format!("xattr-probe.{}", std::process::id()));
    let err = |what: &str, e: io::Error| format!("{}: {what}: {e}", probe.display());
    let file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&probe)
        .map_err(|e| err("create", e))?;
    let fits = |file: &fs::File| -> Result<bool, String> {
        for (name, len) in [(XATTR_GFID, 16), (XATTR_DIRTY, 24)] {
            rustix::fs::fsetxattr(file, name, &vec![1u8; len], rustix::fs::XattrFlags::empty())
                .map_err(|e| err(&format!("set {name}"), e.into()))?;
        }
        let meta = file.metadata().map_err(|e| err("stat", e))?;
        Ok(meta.blocks() == 0)
    };
    let checked = fits(&file);
    drop(file);
    fs::remove_file(&probe).map_err(|e| err("remove", e))?;
    checked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_handle_targets_round_trip() {
        let p = Gfid::random();
        let t = dir_handle_target(p, "series 1");
        assert!(t.starts_with("../../"));
        assert_eq!(
            parse_dir_handle_target(OsStr::new(&t)),
            Some((p, "series 1".into()))
        );
        assert_eq!(
            parse_dir_handle_target(OsStr::new(ROOT_HANDLE_TARGET)),
            None
        );
        assert_eq!(
            parse_dir_handle_target(OsStr::new("../../00/00/nope/x")),
            None
        );
        let wrong_fanout = format!("../../ff/ff/{p}/x");
        if !t.starts_with("../../ff/ff/") {
            assert_eq!(parse_dir_handle_target(OsStr::new(&wrong_fanout)), None);
        }
    }

    #[test]
    fn handle_paths_fan_out_by_the_first_two_bytes() {
        let g = Gfid::parse("abcd0000-0000-4000-8000-000000000001").unwrap();
        let root = Path::new("/b");
        assert_eq!(
            file_handle(root, g),
            Path::new("/b/.cairn/handles/ab/cd/abcd0000-0000-4000-8000-000000000001")
        );
        assert_eq!(
            dir_handle(root, g),
            Path::new("/b/.cairn/dirs/ab/cd/abcd0000-0000-4000-8000-000000000001")
        );
    }

    #[test]
    fn identity_round_trips_and_rejects_unknown_formats() {
        let id = Identity {
            volume_id: "v-1".into(),
            brick_id: "b-2".into(),
        };
        assert_eq!(Identity::decode(id.encode().as_bytes()).unwrap(), id);
        let e = Identity::decode(b"cairn-brick/9 volume-id=x").unwrap_err();
        assert!(e.contains("cairn-brick/9"), "{e}");
    }
}
