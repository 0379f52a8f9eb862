//! The one place where Cairn errors become FUSE errnos.
//!
//! Translators report every failure as a [`FopError`] carrying a Linux errno; the kernel
//! wants exactly that errno, so the mapping is the identity (`ENOSYS` and `ENOTSUP` pass
//! through too: the kernel remembers some of them and stops asking). A missing or
//! non-positive errno becomes `EIO`. This module also turns the kernel's names into Cairn
//! names: Cairn names are UTF-8 `String`s, so a name that is not UTF-8 fails with `EILSEQ`.

use std::ffi::OsStr;

use cairn_translators::FopError;
use fuser::Errno;

/// The errno the kernel gets for `err`, which is logged: at warn level when it says the
/// volume is in trouble (I/O errors, unreachable bricks), at debug level otherwise (a
/// missing name or a permission refusal is an ordinary answer).
pub(crate) fn to_errno(op: &str, err: &FopError) -> Errno {
    let errno = Errno::from_i32(err.errno);
    match errno.code() {
        libc::EIO | libc::ENOTCONN | libc::EPROTO | libc::ESTALE | libc::ETIMEDOUT => {
            tracing::warn!(op, errno = %err.errno_name(), "{}", err.msg)
        }
        _ => tracing::debug!(op, errno = %err.errno_name(), "{}", err.msg),
    }
    errno
}

/// A kernel name as a Cairn entry name: UTF-8 (else `EILSEQ`) and a valid single path
/// component (else `EINVAL`, or `ENAMETOOLONG` beyond 255 bytes).
pub(crate) fn entry_name(name: &OsStr) -> Result<String, Errno> {
    let name = utf8(name)?;
    cairn_translators::check_name(name).map_err(|e| Errno::from_i32(e.errno))?;
    Ok(name.to_string())
}

/// A kernel string (symlink target, xattr name) as UTF-8, else `EILSEQ`.
pub(crate) fn utf8(text: &OsStr) -> Result<&str, Errno> {
    text.to_str().ok_or(Errno::from_i32(libc::EILSEQ))
}

#[cfg(test)]
mod tests {
    use std::os::unix::ffi::OsStrExt;

    use super::*;

    #[test]
    fn errnos_pass_through_unchanged() {
        for errno in [
            libc::ENOENT,
            libc::EACCES,
            libc::ENOSPC,
            libc::ENOTCONN,
            libc::ENOSYS,
            libc::ENOTSUP,
            libc::EROFS,
            libc::ENODATA,
            libc::ESTALE,
        ] {
            let e = FopError::new(errno, "x");
            assert_eq!(to_errno("test", &e).code(), errno);
        }
    }

    #[test]
    fn a_missing_errno_becomes_eio() {
        assert_eq!(
            to_errno("t", &FopError::new(0, "no errno")).code(),
            libc::EIO
        );
        assert_eq!(
            to_errno("t", &FopError::new(-5, "negative")).code(),
            libc::EIO
        );
    }

    #[test]
    fn names_must_be_utf8_and_single_components() {
        assert_eq!(
            entry_name(OsStr::new("scan-001.dcm")).unwrap(),
            "scan-001.dcm"
        );
        let latin1 = OsStr::from_bytes(b"caf\xe9");
        assert_eq!(entry_name(latin1).unwrap_err().code(), libc::EILSEQ);
        assert_eq!(utf8(latin1).unwrap_err().code(), libc::EILSEQ);
        assert_eq!(
            entry_name(OsStr::new("..")).unwrap_err().code(),
            libc::EINVAL
        );
        assert_eq!(entry_name(OsStr::new("")).unwrap_err().code(), libc::EINVAL);
        let long = "x".repeat(256);
        assert_eq!(
            entry_name(OsStr::new(&long)).unwrap_err().code(),
            libc::ENAMETOOLONG
        );
    }
}
