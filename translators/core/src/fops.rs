//! The table of file operations, written once.
//!
//! [`with_fops!`](crate::with_fops) hands the table to a callback macro, which generates
//! one piece of code per fop from it:
//!
//! | generated                       | where                                   |
//! |---------------------------------|-----------------------------------------|
//! | `Translator` trait methods      | [`crate::xlator`]                       |
//! | [`FopKind`]                     | here                                    |
//! | wire `Request` / `Reply`, `dispatch` | [`crate::wire`]                    |
//! | `protocol/client` methods       | [`crate::protocol::client`]             |
//! | wrapping translators (io-stats, error-gen) | [`crate::impl_wrapping_translator`] |
//!
//! Adding a fop means adding one line here (at the end: the position is the wire opcode)
//! and implementing it where a translator needs something other than pass-through.
//!
//! Every fop also receives `cx: &Cx` (the caller) as its first argument.

/// Calls `$cb! { [extra tokens] <the fop table> }`.
///
/// Each table row reads `fn name / Variant (arg: Type, ...) -> Reply;`. Types are written
/// with `$crate::` paths so the expansion works in any crate.
#[macro_export]
macro_rules! with_fops {
    ($cb:path $(, $extra:tt)*) => {
        $cb! { [$($extra)*]
            /// Resolves a name in a directory (or a bare gfid) to an object and its attributes.
            fn lookup / Lookup (loc: $crate::types::Loc, xdata: $crate::types::Xdata) -> $crate::types::Entry;
            /// Attributes of an object.
            fn stat / Stat (target: $crate::types::Target, xdata: $crate::types::Xdata) -> $crate::types::Iatt;
            /// Changes mode, owner or times.
            fn setattr / Setattr (target: $crate::types::Target, attr: $crate::types::SetAttr, xdata: $crate::types::Xdata) -> $crate::types::Iatt;
            /// Sets a file's size.
            fn truncate / Truncate (target: $crate::types::Target, size: u64, xdata: $crate::types::Xdata) -> $crate::types::Iatt;
            /// Checks access rights (`access(2)` mask).
            fn access / Access (loc: $crate::types::Loc, mask: u32, xdata: $crate::types::Xdata) -> ();
            /// Reads a symlink's target.
            fn readlink / Readlink (loc: $crate::types::Loc, xdata: $crate::types::Xdata) -> String;
            /// Creates a device, fifo or socket node.
            fn mknod / Mknod (loc: $crate::types::Loc, mode: u32, rdev: u64, umask: u32, xdata: $crate::types::Xdata) -> $crate::types::Entry;
            /// Creates a directory.
            fn mkdir / Mkdir (loc: $crate::types::Loc, mode: u32, umask: u32, xdata: $crate::types::Xdata) -> $crate::types::Entry;
            /// Removes a name that is not a directory.
            fn unlink / Unlink (loc: $crate::types::Loc, xdata: $crate::types::Xdata) -> ();
            /// Removes an empty directory.
            fn rmdir / Rmdir (loc: $crate::types::Loc, xdata: $crate::types::Xdata) -> ();
            /// Creates a symlink pointing at `link_target`.
            fn symlink / Symlink (link_target: String, loc: $crate::types::Loc, umask: u32, xdata: $crate::types::Xdata) -> $crate::types::Entry;
            /// Renames `old` to `new` (`flags`: `RENAME_NOREPLACE`, ...).
            fn rename / Rename (old: $crate::types::Loc, new: $crate::types::Loc, flags: u32, xdata: $crate::types::Xdata) -> ();
            /// Adds a hard link `new` to the object at `old`.
            fn link / Link (old: $crate::types::Loc, new: $crate::types::Loc, xdata: $crate::types::Xdata) -> $crate::types::Entry;
            /// Creates and opens a regular file; `fd` becomes the open handle.
            fn create / Create (loc: $crate::types::Loc, flags: i32, mode: u32, umask: u32, fd: $crate::types::Fd, xdata: $crate::types::Xdata) -> $crate::types::Entry;
            /// Opens a file; `fd` becomes the open handle.
            fn open / Open (loc: $crate::types::Loc, flags: i32, fd: $crate::types::Fd, xdata: $crate::types::Xdata) -> ();
            /// Reads up to `size` bytes at `offset` (short at end of file).
            fn read / Read (fd: $crate::types::Fd, offset: u64, size: u32, xdata: $crate::types::Xdata) -> $crate::types::Payload;
            /// Writes `data` at `offset`; returns the attributes after the write.
            fn write / Write (fd: $crate::types::Fd, offset: u64, data: $crate::types::Payload, xdata: $crate::types::Xdata) -> $crate::types::Iatt;
            /// Called on each `close(2)` of a descriptor.
            fn flush / Flush (fd: $crate::types::Fd, xdata: $crate::types::Xdata) -> ();
            /// Makes written data durable.
            fn fsync / Fsync (fd: $crate::types::Fd, datasync: bool, xdata: $crate::types::Xdata) -> ();
            /// The last close of an open file: frees the handle.
            fn release / Release (fd: $crate::types::Fd) -> ();
            /// Opens a directory for reading.
            fn opendir / Opendir (loc: $crate::types::Loc, fd: $crate::types::Fd, xdata: $crate::types::Xdata) -> ();
            /// Lists entries after cookie `offset`, about `size` bytes' worth; `plus` adds attributes.
            fn readdir / Readdir (fd: $crate::types::Fd, offset: u64, size: u32, plus: bool, xdata: $crate::types::Xdata) -> Vec<$crate::types::DirEntry>;
            /// Frees a directory handle.
            fn releasedir / Releasedir (fd: $crate::types::Fd) -> ();
            /// Makes a directory's entries durable.
            fn fsyncdir / Fsyncdir (fd: $crate::types::Fd, datasync: bool, xdata: $crate::types::Xdata) -> ();
            /// Capacity of the filesystem holding `loc`.
            fn statfs / Statfs (loc: $crate::types::Loc, xdata: $crate::types::Xdata) -> $crate::types::Statfs;
            /// Sets extended attributes (`flags`: `XATTR_CREATE`, `XATTR_REPLACE`).
            fn setxattr / Setxattr (target: $crate::types::Target, xattrs: $crate::types::Xdata, flags: i32, xdata: $crate::types::Xdata) -> ();
            /// Gets one extended attribute, or all of them when `name` is `None`.
            fn getxattr / Getxattr (target: $crate::types::Target, name: Option<String>, xdata: $crate::types::Xdata) -> $crate::types::Xdata;
            /// Removes an extended attribute.
            fn removexattr / Removexattr (target: $crate::types::Target, name: String, xdata: $crate::types::Xdata) -> ();
            /// Atomically updates extended attributes (counters); returns the new values.
            fn xattrop / Xattrop (target: $crate::types::Target, op: $crate::types::XattropOp, xattrs: $crate::types::Xdata, xdata: $crate::types::Xdata) -> $crate::types::Xdata;
            /// Takes or releases an internal byte-range lock in `domain`.
            fn inodelk / Inodelk (domain: String, target: $crate::types::Target, wait: $crate::types::LockWait, lock: $crate::types::Flock, xdata: $crate::types::Xdata) -> ();
            /// Takes or releases an internal lock on a name (or the whole directory) in `domain`.
            fn entrylk / Entrylk (domain: String, loc: $crate::types::Loc, name: Option<String>, wait: $crate::types::LockWait, kind: $crate::types::LockType, xdata: $crate::types::Xdata) -> ();
            /// Preallocates or punches space (`fallocate(2)` mode).
            fn fallocate / Fallocate (fd: $crate::types::Fd, mode: i32, offset: u64, len: u64, xdata: $crate::types::Xdata) -> ();
            /// Finds the next data or hole at or after `offset`.
            fn lseek / Lseek (fd: $crate::types::Fd, offset: u64, whence: $crate::types::Whence, xdata: $crate::types::Xdata) -> u64;
            /// Several fops executed in order as one request; stops at the first failure
            /// (the rest report `ECANCELED`, but unlocks and releases still run). Later fops
            /// may use an `Fd` an earlier one opened.
            fn compound / Compound (ops: $crate::wire::Batch<$crate::wire::Request>) -> $crate::wire::Batch<$crate::wire::CompoundResult>;
        }
    };
}

macro_rules! define_fop_kinds {
    ([$($extra:tt)*] $( $(#[$doc:meta])* fn $name:ident / $V:ident ( $($arg:ident : $ty:ty),* ) -> $ret:ty ; )*) => {
        /// Every file operation, by name. The discriminant (starting at 1) is the wire opcode.
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
        #[repr(u16)]
        pub enum FopKind {
            $( $(#[$doc])* $V ),*
        }

        impl FopKind {
            /// All fops, in table order.
            pub const ALL: &'static [FopKind] = &[ $( FopKind::$V ),* ];

            /// All fop names, in table order (for option declarations).
            pub const NAMES: &'static [&'static str] = &[ $( stringify!($name) ),* ];

            /// The fop's lowercase name (`"lookup"`).
            pub fn name(self) -> &'static str {
                match self { $( FopKind::$V => stringify!($name) ),* }
            }
        }
    };
}

crate::with_fops!(define_fop_kinds);

impl FopKind {
    /// The wire opcode (table position + 1).
    pub fn opcode(self) -> u16 {
        self as u16 + 1
    }

    /// The fop with this wire opcode.
    pub fn from_opcode(op: u16) -> Option<FopKind> {
        let idx = usize::from(op.checked_sub(1)?);
        FopKind::ALL.get(idx).copied()
    }

    /// The fop with this name.
    pub fn from_name(name: &str) -> Option<FopKind> {
        FopKind::ALL.iter().copied().find(|k| k.name() == name)
    }

    /// True for fops that change nothing on disk.
    pub fn is_read_only(self) -> bool {
        matches!(
            self,
            FopKind::Lookup
                | FopKind::Stat
                | FopKind::Access
                | FopKind::Readlink
                | FopKind::Open
                | FopKind::Read
                | FopKind::Flush
                | FopKind::Release
                | FopKind::Opendir
                | FopKind::Readdir
                | FopKind::Releasedir
                | FopKind::Statfs
                | FopKind::Getxattr
                | FopKind::Lseek
        )
    }
}

impl std::fmt::Display for FopKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opcodes_and_names_round_trip() {
        assert!(FopKind::ALL.len() > 30);
        for (i, k) in FopKind::ALL.iter().enumerate() {
            assert_eq!(usize::from(k.opcode()), i + 1);
            assert_eq!(FopKind::from_opcode(k.opcode()), Some(*k));
            assert_eq!(FopKind::from_name(k.name()), Some(*k));
        }
        assert_eq!(FopKind::from_opcode(0), None);
        assert_eq!(FopKind::from_opcode(999), None);
        assert_eq!(
            FopKind::Lookup.opcode(),
            1,
            "opcodes are part of the wire format"
        );
    }
}
