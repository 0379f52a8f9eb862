//! Conversions between Cairn attributes and NFSv3's: [`Iatt`] → `fattr3`, `sattr3` →
//! [`SetAttr`] plus a size.

use cairn_translators::{FileKind, Iatt, SetAttr, TimeSet, Timespec};
use nfs3_server::nfs3_types::nfs3::{
    Nfs3Option, fattr3, ftype3, nfstime3, sattr3, set_atime, set_mtime, specdata3,
};

/// The NFS attributes of `iatt`, on the file system `fsid`.
pub(crate) fn fattr(iatt: &Iatt, fsid: u64) -> fattr3 {
    let (major, minor) = split_dev(iatt.rdev);
    fattr3 {
        type_: ftype(iatt.kind),
        mode: iatt.perm & 0o7777,
        nlink: iatt.nlink,
        uid: iatt.uid,
        gid: iatt.gid,
        size: iatt.size,
        used: iatt.blocks.saturating_mul(512),
        rdev: specdata3 {
            specdata1: major,
            specdata2: minor,
        },
        fsid,
        fileid: iatt.gfid.ino(),
        atime: nfstime(iatt.atime),
        mtime: nfstime(iatt.mtime),
        ctime: nfstime(iatt.ctime),
    }
}

/// The NFS type of a Cairn kind.
pub(crate) fn ftype(kind: FileKind) -> ftype3 {
    match kind {
        FileKind::File => ftype3::NF3REG,
        FileKind::Dir => ftype3::NF3DIR,
        FileKind::Symlink => ftype3::NF3LNK,
        FileKind::Fifo => ftype3::NF3FIFO,
        FileKind::Socket => ftype3::NF3SOCK,
        FileKind::CharDev => ftype3::NF3CHR,
        FileKind::BlockDev => ftype3::NF3BLK,
    }
}

/// A Cairn time in NFSv3's unsigned 32-bit seconds (times before 1970 show as 1970, times
/// after 2106 as 2106).
pub(crate) fn nfstime(t: Timespec) -> nfstime3 {
    nfstime3 {
        seconds: u32::try_from(t.sec.max(0)).unwrap_or(u32::MAX),
        nseconds: t.nsec.min(999_999_999),
    }
}

/// An NFS time as a Cairn time.
pub(crate) fn timespec(t: nfstime3) -> Timespec {
    Timespec {
        sec: i64::from(t.seconds),
        nsec: t.nseconds.min(999_999_999),
    }
}

/// glibc's `dev_t` layout (as bricks store it) split into major and minor.
fn split_dev(dev: u64) -> (u32, u32) {
    let major = ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0x0fff);
    let minor = ((dev >> 12) & 0xffff_ff00) | (dev & 0x00ff);
    (major as u32, minor as u32)
}

/// What a `sattr3` asks: the attributes to change and the size to truncate to.
pub(crate) fn set_attr(s: &sattr3) -> (SetAttr, Option<u64>) {
    let opt = |o: &Nfs3Option<u32>| match o {
        Nfs3Option::Some(v) => Some(*v),
        Nfs3Option::None => None,
    };
    let attr = SetAttr {
        perm: opt(&s.mode).map(|m| m & 0o7777),
        uid: opt(&s.uid),
        gid: opt(&s.gid),
        atime: match s.atime {
            set_atime::DONT_CHANGE => None,
            set_atime::SET_TO_SERVER_TIME => Some(TimeSet::Now),
            set_atime::SET_TO_CLIENT_TIME(t) => Some(TimeSet::At(timespec(t))),
        },
        mtime: match s.mtime {
            set_mtime::DONT_CHANGE => None,
            set_mtime::SET_TO_SERVER_TIME => Some(TimeSet::Now),
            set_mtime::SET_TO_CLIENT_TIME(t) => Some(TimeSet::At(timespec(t))),
        },
    };
    let size = match s.size {
        Nfs3Option::Some(v) => Some(v),
        Nfs3Option::None => None,
    };
    (attr, size)
}

#[cfg(test)]
mod tests {
    use cairn_translators::Gfid;

    use super::*;

    #[test]
    fn attributes_carry_over() {
        let gfid = Gfid::random();
        let iatt = Iatt {
            gfid,
            kind: FileKind::File,
            perm: 0o100644,
            nlink: 1,
            uid: 7,
            gid: 8,
            size: 517 * 1024,
            blocks: 1040,
            mtime: Timespec {
                sec: 1_700_000_000,
                nsec: 5,
            },
            atime: Timespec { sec: -5, nsec: 0 },
            ..Iatt::default()
        };
        let f = fattr(&iatt, 42);
        assert_eq!(f.type_, ftype3::NF3REG);
        assert_eq!(f.mode, 0o644);
        assert_eq!(
            (f.uid, f.gid, f.size, f.used),
            (7, 8, 517 * 1024, 1040 * 512)
        );
        assert_eq!(f.fileid, gfid.ino());
        assert_eq!(f.fsid, 42);
        assert_eq!((f.mtime.seconds, f.mtime.nseconds), (1_700_000_000, 5));
        assert_eq!(f.atime.seconds, 0);
    }

    #[test]
    fn a_device_number_splits_like_glibc() {
        // makedev(8, 1) in glibc's layout.
        let dev = (8u64 << 8) | 1;
        assert_eq!(split_dev(dev), (8, 1));
        // glibc's makedev.
        let makedev = |major: u64, minor: u64| {
            ((major & 0xffff_f000) << 32)
                | ((major & 0x0fff) << 8)
                | ((minor & 0xffff_ff00) << 12)
                | (minor & 0x00ff)
        };
        assert_eq!(split_dev(makedev(0x1234, 0x45678)), (0x1234, 0x45678));
    }

    #[test]
    fn sattr_becomes_setattr_and_size() {
        let s = sattr3 {
            mode: Nfs3Option::Some(0o100600),
            size: Nfs3Option::Some(0),
            mtime: set_mtime::SET_TO_CLIENT_TIME(nfstime3 {
                seconds: 10,
                nseconds: 2,
            }),
            atime: set_atime::SET_TO_SERVER_TIME,
            ..sattr3::default()
        };
        let (a, size) = set_attr(&s);
        assert_eq!(size, Some(0));
        assert_eq!(a.perm, Some(0o600));
        assert_eq!(a.uid, None);
        assert_eq!(a.atime, Some(TimeSet::Now));
        assert_eq!(a.mtime, Some(TimeSet::At(Timespec { sec: 10, nsec: 2 })));
        assert!(set_attr(&sattr3::default()).0.is_empty());
    }
}
