//! Conversions between Cairn attributes and the kernel's: [`Iatt`] → [`FileAttr`], times,
//! file kinds and device numbers.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cairn_translators::{FileKind, Iatt, TimeSet, Timespec};
use fuser::{FileAttr, FileType, INodeNo, TimeOrNow};

/// The kernel's attributes for `iatt`, reported under node id `node` (the `st_ino`
/// applications see is always the node id).
pub(crate) fn file_attr(iatt: &Iatt, node: u64) -> FileAttr {
    let mtime = system_time(iatt.mtime);
    FileAttr {
        ino: INodeNo(node),
        size: iatt.size,
        blocks: iatt.blocks,
        atime: system_time(iatt.atime),
        mtime,
        ctime: system_time(iatt.ctime),
        crtime: mtime,
        kind: file_type(iatt.kind),
        perm: (iatt.perm & 0o7777) as u16,
        nlink: iatt.nlink,
        uid: iatt.uid,
        gid: iatt.gid,
        rdev: kernel_dev(iatt.rdev),
        blksize: if iatt.blksize == 0 {
            4096
        } else {
            iatt.blksize
        },
        flags: 0,
    }
}

/// Placeholder attributes for a directory entry the volume gave no attributes for (the
/// `.` and `..` entries of readdirplus, which the kernel does not look at).
pub(crate) fn dir_placeholder(node: u64) -> FileAttr {
    file_attr(
        &Iatt {
            kind: FileKind::Dir,
            nlink: 2,
            ..Iatt::default()
        },
        node,
    )
}

/// The kernel's file type for a Cairn kind.
pub(crate) fn file_type(kind: FileKind) -> FileType {
    match kind {
        FileKind::File => FileType::RegularFile,
        FileKind::Dir => FileType::Directory,
        FileKind::Symlink => FileType::Symlink,
        FileKind::Fifo => FileType::NamedPipe,
        FileKind::Socket => FileType::Socket,
        FileKind::CharDev => FileType::CharDevice,
        FileKind::BlockDev => FileType::BlockDevice,
    }
}

/// A Cairn time as a `SystemTime`. Times before 1970 (negative seconds) are fine; a time
/// too far away to represent saturates at the epoch rather than failing.
pub(crate) fn system_time(t: Timespec) -> SystemTime {
    let nanos = Duration::from_nanos(u64::from(t.nsec.min(999_999_999)));
    let whole = if t.sec >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(t.sec.unsigned_abs()))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(t.sec.unsigned_abs()))
    };
    whole
        .and_then(|w| w.checked_add(nanos))
        .unwrap_or(UNIX_EPOCH)
}

/// A `SystemTime` as a Cairn time (seconds may be negative; nanoseconds never are).
pub(crate) fn timespec(t: SystemTime) -> Timespec {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => Timespec {
            sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            nsec: d.subsec_nanos(),
        },
        Err(before) => {
            let d = before.duration();
            let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            if d.subsec_nanos() == 0 {
                Timespec {
                    sec: -secs,
                    nsec: 0,
                }
            } else {
                Timespec {
                    sec: -secs - 1,
                    nsec: 1_000_000_000 - d.subsec_nanos(),
                }
            }
        }
    }
}

/// A `setattr` time from the kernel as a Cairn [`TimeSet`].
pub(crate) fn time_set(t: TimeOrNow) -> TimeSet {
    match t {
        TimeOrNow::Now => TimeSet::Now,
        TimeOrNow::SpecificTime(t) => TimeSet::At(timespec(t)),
    }
}

/// A device number as the brick stores it (glibc's `dev_t` layout: 32-bit major and
/// minor split over 64 bits) in the kernel's 32-bit FUSE layout (12-bit major, 20-bit
/// minor). Numbers that do not fit are truncated, as the kernel itself would.
pub(crate) fn kernel_dev(dev: u64) -> u32 {
    let major = ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0x0fff);
    let minor = ((dev >> 12) & 0xffff_ff00) | (dev & 0x00ff);
    (((major & 0xfff) << 8) | (minor & 0xff) | ((minor & 0xfff00) << 12)) as u32
}

/// A device number from the kernel's 32-bit FUSE layout in glibc's `dev_t` layout (what
/// `mknod(2)` on the brick expects).
pub(crate) fn user_dev(dev: u32) -> u64 {
    let dev = u64::from(dev);
    let major = (dev >> 8) & 0xfff;
    let minor = (dev & 0xff) | ((dev >> 12) & 0xfff00);
    ((major & 0xffff_f000) << 32)
        | ((major & 0x0fff) << 8)
        | ((minor & 0xffff_ff00) << 12)
        | (minor & 0x00ff)
}

#[cfg(test)]
mod tests {
    use cairn_translators::Gfid;

    use super::*;

    fn sample() -> Iatt {
        Iatt {
            gfid: Gfid::random(),
            kind: FileKind::File,
            perm: 0o4755,
            nlink: 3,
            uid: 1000,
            gid: 100,
            rdev: 0,
            size: 517 * 1024,
            blocks: 1040,
            blksize: 131072,
            atime: Timespec {
                sec: 1_700_000_000,
                nsec: 5,
            },
            mtime: Timespec {
                sec: 1_700_000_100,
                nsec: 999_999_999,
            },
            ctime: Timespec {
                sec: 1_700_000_200,
                nsec: 0,
            },
        }
    }

    #[test]
    fn attributes_convert_field_by_field() {
        let iatt = sample();
        let a = file_attr(&iatt, 42);
        assert_eq!(a.ino, INodeNo(42), "st_ino is the node id");
        assert_eq!(a.size, iatt.size);
        assert_eq!(a.blocks, 1040);
        assert_eq!(a.kind, FileType::RegularFile);
        assert_eq!(a.perm, 0o4755);
        assert_eq!((a.nlink, a.uid, a.gid), (3, 1000, 100));
        assert_eq!(a.blksize, 131072);
        assert_eq!(a.flags, 0);
        assert_eq!(timespec(a.atime), iatt.atime);
        assert_eq!(timespec(a.mtime), iatt.mtime);
        assert_eq!(timespec(a.ctime), iatt.ctime);
        assert_eq!(a.crtime, a.mtime);
        let no_blksize = Iatt {
            blksize: 0,
            ..sample()
        };
        assert_eq!(file_attr(&no_blksize, 2).blksize, 4096);
    }

    #[test]
    fn every_kind_maps() {
        for (k, t) in [
            (FileKind::File, FileType::RegularFile),
            (FileKind::Dir, FileType::Directory),
            (FileKind::Symlink, FileType::Symlink),
            (FileKind::Fifo, FileType::NamedPipe),
            (FileKind::Socket, FileType::Socket),
            (FileKind::CharDev, FileType::CharDevice),
            (FileKind::BlockDev, FileType::BlockDevice),
        ] {
            assert_eq!(file_type(k), t);
        }
        assert_eq!(dir_placeholder(7).kind, FileType::Directory);
        assert_eq!(dir_placeholder(7).ino, INodeNo(7));
    }

    #[test]
    fn negative_and_extreme_times_do_not_panic() {
        let before = Timespec {
            sec: -2,
            nsec: 800_000_000,
        };
        let t = system_time(before);
        assert_eq!(
            UNIX_EPOCH.duration_since(t).unwrap(),
            Duration::from_millis(1200)
        );
        assert_eq!(timespec(t), before);
        let whole = Timespec {
            sec: -86400,
            nsec: 0,
        };
        assert_eq!(timespec(system_time(whole)), whole);
        for sec in [i64::MIN, i64::MAX, i64::MIN + 1] {
            let _ = system_time(Timespec { sec, nsec: 1 });
        }
        let bad_nsec = Timespec {
            sec: 1,
            nsec: u32::MAX,
        };
        assert_eq!(
            system_time(bad_nsec)
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .subsec_nanos(),
            999_999_999
        );
    }

    #[test]
    fn setattr_times_convert() {
        assert_eq!(time_set(TimeOrNow::Now), TimeSet::Now);
        let t = UNIX_EPOCH + Duration::new(1_600_000_000, 123);
        assert_eq!(
            time_set(TimeOrNow::SpecificTime(t)),
            TimeSet::At(Timespec {
                sec: 1_600_000_000,
                nsec: 123
            })
        );
    }

    #[test]
    fn device_numbers_round_trip_between_layouts() {
        // (major, minor) pairs that fit the kernel's 12/20-bit layout.
        for (major, minor) in [(0u32, 0u32), (1, 3), (8, 17), (259, 65536), (4095, 1048575)] {
            let user = libc::makedev(major, minor);
            let kernel = kernel_dev(user);
            assert_eq!(
                kernel,
                (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
            );
            assert_eq!(user_dev(kernel), user, "{major}:{minor}");
        }
        assert_eq!(
            file_attr(
                &Iatt {
                    rdev: libc::makedev(8, 1),
                    ..sample()
                },
                9
            )
            .rdev,
            0x801
        );
    }
}
