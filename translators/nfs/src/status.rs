//! The one place where Cairn errors become NFSv3 status codes.

use cairn_translators::FopError;
use nfs3_server::nfs3_types::nfs3::nfsstat3;

/// The status an NFS client gets for `errno`.
///
/// Cairn reports every failure as a Linux errno. Most have an NFSv3 twin with the same
/// number. The rest map as a Linux NFS server would map them, except that "the volume is
/// unreachable right now" (`ENOTCONN`, `ETIMEDOUT`, `EAGAIN`) becomes `NFS3ERR_JUKEBOX`:
/// the client waits and retries instead of failing the application, which is what a PACS
/// server wants while a node restarts.
pub fn status_for_errno(errno: i32) -> nfsstat3 {
    use nfsstat3::*;
    match errno {
        libc::EPERM => NFS3ERR_PERM,
        libc::ENOENT => NFS3ERR_NOENT,
        libc::ENXIO => NFS3ERR_NXIO,
        libc::EACCES => NFS3ERR_ACCES,
        libc::EEXIST => NFS3ERR_EXIST,
        libc::EXDEV => NFS3ERR_XDEV,
        libc::ENODEV => NFS3ERR_NODEV,
        libc::ENOTDIR => NFS3ERR_NOTDIR,
        libc::EISDIR => NFS3ERR_ISDIR,
        libc::EINVAL | libc::EILSEQ => NFS3ERR_INVAL,
        libc::EFBIG => NFS3ERR_FBIG,
        libc::ENOSPC => NFS3ERR_NOSPC,
        libc::EROFS => NFS3ERR_ROFS,
        libc::EMLINK => NFS3ERR_MLINK,
        libc::ENAMETOOLONG => NFS3ERR_NAMETOOLONG,
        libc::ENOTEMPTY => NFS3ERR_NOTEMPTY,
        libc::EDQUOT => NFS3ERR_DQUOT,
        libc::ESTALE => NFS3ERR_STALE,
        libc::ENOTSUP | libc::ENOSYS => NFS3ERR_NOTSUPP,
        libc::ENOTCONN | libc::ETIMEDOUT | libc::EAGAIN => NFS3ERR_JUKEBOX,
        libc::EBADF => NFS3ERR_STALE,
        _ => NFS3ERR_IO,
    }
}

/// The status for a failed fop `op`, which is logged: at warn level when the volume is in
/// trouble, at debug level when it is an ordinary answer (no such name, a WORM refusal).
pub fn nfs_status(op: &str, err: &FopError) -> nfsstat3 {
    let st = status_for_errno(err.errno);
    match st {
        nfsstat3::NFS3ERR_IO | nfsstat3::NFS3ERR_JUKEBOX | nfsstat3::NFS3ERR_SERVERFAULT => {
            tracing::warn!(op, errno = %err.errno_name(), status = %st, "{}", err.msg)
        }
        _ => tracing::debug!(op, errno = %err.errno_name(), status = %st, "{}", err.msg),
    }
    st
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errnos_with_an_nfs_twin_keep_their_number() {
        for errno in [
            libc::EPERM,
            libc::ENOENT,
            libc::EACCES,
            libc::EEXIST,
            libc::ENOTDIR,
            libc::EISDIR,
            libc::EINVAL,
            libc::EFBIG,
            libc::ENOSPC,
            libc::EROFS,
            libc::EMLINK,
        ] {
            assert_eq!(status_for_errno(errno) as i32, errno, "errno {errno}");
        }
        // Linux numbers these differently from NFSv3.
        assert_eq!(
            status_for_errno(libc::ENAMETOOLONG),
            nfsstat3::NFS3ERR_NAMETOOLONG
        );
        assert_eq!(
            status_for_errno(libc::ENOTEMPTY),
            nfsstat3::NFS3ERR_NOTEMPTY
        );
        assert_eq!(status_for_errno(libc::ESTALE), nfsstat3::NFS3ERR_STALE);
        assert_eq!(status_for_errno(libc::EDQUOT), nfsstat3::NFS3ERR_DQUOT);
    }

    #[test]
    fn worm_refusals_stay_visible_and_outages_are_retried() {
        // WORM: EROFS for a write to a retained file, EPERM where POSIX says so.
        assert_eq!(status_for_errno(libc::EROFS), nfsstat3::NFS3ERR_ROFS);
        assert_eq!(status_for_errno(libc::EPERM), nfsstat3::NFS3ERR_PERM);
        assert_eq!(status_for_errno(libc::ENOTCONN), nfsstat3::NFS3ERR_JUKEBOX);
        assert_eq!(status_for_errno(libc::EIO), nfsstat3::NFS3ERR_IO);
        assert_eq!(status_for_errno(libc::ENOSYS), nfsstat3::NFS3ERR_NOTSUPP);
        assert_eq!(status_for_errno(libc::EILSEQ), nfsstat3::NFS3ERR_INVAL);
        assert_eq!(status_for_errno(0), nfsstat3::NFS3ERR_IO);
        assert_eq!(status_for_errno(-3), nfsstat3::NFS3ERR_IO);
    }
}
